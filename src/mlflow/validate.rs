//! Checking an MLflow model folder the way MLflow would load it (spec §9): every problem with
//! the file, the key and the reason, as an error (MLflow cannot load or serve it) or a warning.
//! Paths are only resolved inside the folder; nothing is executed except an optional Python
//! syntax check of the model's code file.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{
    files::{self, read_input_example, safe_join},
    mlmodel::{MLMODEL, MlModel, MlModelError},
    schema::{ColType, Schema, check_example},
    yaml::Node,
};
use crate::fsio::{
    self,
    names::{inside_path, relative_inside, single_name},
    walk::walk,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub severity: Severity,
    /// The file, relative to the folder.
    pub file: String,
    /// The key or element (`flavors.python_function.loader_module`, `inputs[0].type`).
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if self.key.is_empty() {
            write!(f, "{severity}: {}: {}", self.file, self.message)
        } else {
            write!(f, "{severity}: {}: {}: {}", self.file, self.key, self.message)
        }
    }
}

/// The outcome of a check.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    pub problems: Vec<Problem>,
}

impl Report {
    fn push(&mut self, severity: Severity, file: &str, key: &str, message: impl Into<String>) {
        self.problems.push(Problem { severity, file: file.to_owned(), key: key.to_owned(), message: message.into() });
    }

    pub fn error(&mut self, file: &str, key: &str, message: impl Into<String>) {
        self.push(Severity::Error, file, key, message);
    }

    pub fn warning(&mut self, file: &str, key: &str, message: impl Into<String>) {
        self.push(Severity::Warning, file, key, message);
    }

    /// Usable when nothing is an error.
    pub fn is_usable(&self) -> bool {
        !self.problems.iter().any(|p| p.severity == Severity::Error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| p.severity == Severity::Error)
    }
}

/// Loaders MLflow ships (any `mlflow.*` module is accepted; these are the common ones).
const CODE_MODEL_LOADER: &str = "mlflow.pyfunc.loaders.code_model";
const PICKLE_LOADER: &str = "mlflow.pyfunc.model";

/// Checks an MLflow model folder.
pub fn validate_folder(dir: &Path) -> Report {
    let mut report = Report::default();
    let model = match MlModel::load(dir) {
        Ok(model) => model,
        Err(error) => {
            let message = match &error {
                MlModelError::Missing(_) => "there is no MLmodel file; MLflow cannot load this folder".to_owned(),
                other => other.to_string(),
            };
            report.error(MLMODEL, "", message);
            return report;
        }
    };
    validate_model(&model, &mut report);
    report
}

fn validate_model(model: &MlModel, report: &mut Report) {
    let root = model.root();
    let dir = model.dir();
    for key in root.keys().filter(|k| k.starts_with('_')) {
        report.warning(MLMODEL, key, "MLflow drops keys that start with `_` when it saves the model again");
    }
    if let Some(env_vars) = root.get("env_vars") {
        let ok = matches!(env_vars, Node::Seq(items) if items.iter().all(|i| matches!(i, Node::Str(_))));
        if !ok && !env_vars.is_null() {
            report.error(MLMODEL, "env_vars", format!("must be a list of strings, not {}", env_vars.kind()));
        }
    }
    if let Some(metadata) = root.get("metadata") {
        if !matches!(metadata, Node::Map(_) | Node::Null) {
            report.error(MLMODEL, "metadata", format!("must be a mapping, not {} (MLflow 3 fails to load it)", metadata.kind()));
        }
    }
    check_signature(model, report);
    check_example_block(model, report);
    match root.get("flavors") {
        None | Some(Node::Null) => report.error(MLMODEL, "flavors", "is missing, so MLflow has no way to load the model"),
        Some(Node::Map(_)) => {}
        Some(other) => report.error(MLMODEL, "flavors", format!("must be a mapping, not {}", other.kind())),
    }
    match model.flavor("python_function") {
        None => {
            if model.flavor_names().is_empty() || root.get("flavors").is_some_and(|f| f.as_map().is_some()) {
                report.error(MLMODEL, "flavors.python_function", "is missing: mlflow.pyfunc.load_model and `mlflow models serve` need it");
            }
        }
        Some(_) => check_pyfunc(model, dir, report),
    }
    if model.flavor("transformers").is_some() {
        check_transformers(model, dir, report);
    }
    check_env_files(model, dir, report);
    check_tree(dir, report);
}

/// Every entry of the folder must be a file or folder (links followed): loops, dangling links
/// and pipes or devices are errors, as export and create would fail on them.
pub fn check_tree(dir: &Path, report: &mut Report) {
    match walk(dir) {
        Ok(tree) => {
            for problem in &tree.problems {
                let file = problem.path().strip_prefix(dir).unwrap_or(problem.path()).display().to_string();
                report.error(&file, "", problem.to_string());
            }
        }
        Err(error) => report.error("", "", error.to_string()),
    }
}

/// A path written in MLmodel at `key`: an error when it is absolute or climbs out with `..`.
fn check_inside(report: &mut Report, key: &str, value: &str) -> Option<PathBuf> {
    match inside_path(value) {
        Ok(path) => Some(path),
        Err(error) => {
            report.error(MLMODEL, key, format!("{error}; MLflow would read a file outside the model, and export never copies one"));
            None
        }
    }
}

fn check_signature(model: &MlModel, report: &mut Report) {
    let Some(result) = model.signature() else { return };
    match result {
        Err(error) => {
            let key = if error.path.starts_with("signature") { error.path.clone() } else { format!("signature.{}", error.path) };
            report.error(MLMODEL, &key, format!("{} (MLflow cannot load the model)", error.message));
        }
        Ok(signature) => {
            for (block, schema) in [("inputs", &signature.inputs), ("outputs", &signature.outputs)] {
                let Some(Schema::Columns(cols)) = schema else { continue };
                for (i, col) in cols.iter().enumerate() {
                    if col.required.is_none() && !matches!(col.ty, ColType::Base(_)) {
                        report.warning(
                            MLMODEL,
                            &format!("signature.{block}[{i}]"),
                            "has no `required`; MLflow then treats this column as optional",
                        );
                    }
                }
                if schema.as_ref().is_some_and(Schema::uses_any) {
                    report.warning(MLMODEL, &format!("signature.{block}"), "uses the `any` type, which MLflow before 2.19 cannot load");
                }
            }
        }
    }
}

fn check_example_block(model: &MlModel, report: &mut Report) {
    if let Some(info) = model.root().get("saved_input_example_info").and_then(Node::as_map) {
        let mut inside = true;
        for name in ["artifact_path", "serving_input_path"] {
            if let Some(path) = info.get(name).and_then(Node::as_str) {
                inside &= check_inside(report, &format!("saved_input_example_info.{name}"), path).is_some();
            }
        }
        if !inside {
            return;
        }
    }
    let Some(result) = read_input_example(model) else { return };
    match result {
        Err(message) => report.warning(
            MLMODEL,
            "saved_input_example_info",
            format!("{message}; MLflow loads the model but without an input example"),
        ),
        Ok(example) => {
            let Some(Ok(signature)) = model.signature() else { return };
            let Some(inputs) = &signature.inputs else { return };
            for problem in check_example(&example.model_input(), inputs) {
                report.error(
                    files::INPUT_EXAMPLE,
                    "",
                    format!("does not match the input signature ({problem}); MLflow's schema enforcement rejects it"),
                );
            }
        }
    }
}

fn posix_basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn check_pyfunc(model: &MlModel, dir: &Path, report: &mut Report) {
    let Some(pyfunc) = model.python_function() else { return };
    let key = |k: &str| format!("flavors.python_function.{k}");
    let Some(loader) = pyfunc.loader_module.clone() else {
        report.error(MLMODEL, &key("loader_module"), "is missing (MLflow raises KeyError: 'loader_module')");
        return;
    };
    if pyfunc.python_version.is_none() {
        report.warning(MLMODEL, &key("python_version"), "is missing; MLflow only warns, but environment managers need it");
    }
    if let Some(config) = &pyfunc.config {
        if !matches!(config, Node::Map(_) | Node::Null) {
            report.warning(MLMODEL, &key("config"), format!("model_config should be a mapping, not {}", config.kind()));
        }
    }
    if let Some(code) = &pyfunc.code {
        if check_inside(report, &key("code"), code).is_some_and(|inside| !dir.join(inside).exists()) {
            report.warning(MLMODEL, &key("code"), format!("`{code}` is not a folder inside the model"));
        }
    }
    if let Some(data) = &pyfunc.data {
        check_inside(report, &key("data"), data);
    }
    match &pyfunc.env {
        Some(Node::Str(file)) => {
            check_inside(report, &key("env"), file);
        }
        Some(Node::Map(envs)) => {
            for (name, value) in envs.iter() {
                if let (Some(name), Some(file)) = (name.as_str(), value.as_str()) {
                    check_inside(report, &key(&format!("env.{name}")), file);
                }
            }
        }
        _ => {}
    }
    let code_file = match (&pyfunc.model_code_path, loader.as_str()) {
        (Some(code_path), CODE_MODEL_LOADER | PICKLE_LOADER) => {
            if code_path.contains('\\') {
                report.error(
                    MLMODEL,
                    &key("model_code_path"),
                    format!("`{code_path}` is a Windows path; MLflow takes everything after the last `/` as the file name, so it will not find the file (write just the file name)"),
                );
                None
            } else if single_name(posix_basename(code_path)).is_err() {
                report.error(MLMODEL, &key("model_code_path"), format!("`{code_path}` does not name a file"));
                None
            } else {
                let name = posix_basename(code_path);
                let file = dir.join(name);
                if !file.is_file() {
                    report.error(
                        MLMODEL,
                        &key("model_code_path"),
                        format!("MLflow runs `{name}` from the model's root folder, and there is no such file"),
                    );
                    None
                } else {
                    Some(file)
                }
            }
        }
        (None, CODE_MODEL_LOADER) => {
            report.error(MLMODEL, &key("model_code_path"), "is missing; the code_model loader needs the model's code file");
            None
        }
        (None, PICKLE_LOADER) => {
            match &pyfunc.python_model {
                None => report.error(MLMODEL, &key("python_model"), "is missing: MLflow needs python_model.pkl or a model_code_path"),
                Some(pkl) if single_name(posix_basename(pkl)).is_err() => {
                    report.error(MLMODEL, &key("python_model"), format!("`{pkl}` does not name a file"))
                }
                Some(pkl) if !dir.join(posix_basename(pkl)).is_file() => {
                    report.error(MLMODEL, &key("python_model"), format!("`{pkl}` does not exist in the folder"))
                }
                Some(_) => {}
            }
            None
        }
        _ => None,
    };
    if loader != CODE_MODEL_LOADER && loader != PICKLE_LOADER && !loader.starts_with("mlflow.") {
        let module_file = pyfunc
            .code
            .as_deref()
            .and_then(|code| safe_join(dir, code))
            .map(|code| code.join(format!("{}.py", loader.replace('.', "/"))));
        if !module_file.is_some_and(|f| f.is_file()) {
            report.error(
                MLMODEL,
                &key("loader_module"),
                format!("`{loader}` is not an MLflow loader and is not in the model's code folder, so Python cannot import it"),
            );
        }
    }
    if pyfunc.data.is_some() && pyfunc.model_code_path.is_some() {
        report.error(MLMODEL, &key("data"), "must not be set for a models-from-code model (MLflow then looks for MLmodel inside it)");
    }
    if let Some(file) = code_file {
        check_code_file(&file, &pyfunc, report);
    }
    for (name, path) in &pyfunc.artifacts {
        let artifact_key = key(&format!("artifacts.{name}"));
        if let Err(error) = single_name(name) {
            report.error(MLMODEL, &artifact_key, format!("the artifact's name is not a plain name: {error}"));
        }
        match path {
            None => report.error(MLMODEL, &artifact_key, "has no `path` (MLflow raises KeyError: 'path')"),
            // MLflow loads an absolute path; one into this folder only ties the package to this
            // machine (export rewrites it), one anywhere else would carry a foreign file along.
            Some(path) if Path::new(path).is_absolute() => match relative_inside(dir, Path::new(path)) {
                Some(_) => report.warning(
                    MLMODEL,
                    &artifact_key,
                    format!("`{path}` is absolute, so the package only works on this machine (export makes it relative)"),
                ),
                None => report.error(
                    MLMODEL,
                    &format!("{artifact_key}.path"),
                    format!("`{path}` is an absolute path outside the model folder (or missing); export never copies a file from outside"),
                ),
            },
            Some(path) => {
                if let Some(inside) = check_inside(report, &format!("{artifact_key}.path"), path) {
                    if !dir.join(inside).exists() {
                        report.error(MLMODEL, &artifact_key, format!("`{path}` does not exist in the model folder"));
                    }
                }
            }
        }
    }
}

fn check_code_file(file: &Path, pyfunc: &super::mlmodel::PyFuncFlavor, report: &mut Report) {
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let source = match fsio::read_text(file, fsio::CODE_LIMIT) {
        Ok(source) => source,
        Err(error) => {
            report.error(&name, "", error.to_string());
            return;
        }
    };
    if !source.contains("set_model") {
        report.error(&name, "", "never calls mlflow.models.set_model(...), so MLflow finds no model in it");
    }
    if let Some(predict_fn) = &pyfunc.predict_fn {
        if !source.contains(&format!("def {predict_fn}")) {
            report.error(MLMODEL, "flavors.python_function.predict_fn", format!("the code file defines no `{predict_fn}` method"));
        }
    }
    if pyfunc.streamable == Some(true) && !source.contains("def predict_stream") {
        report.warning(MLMODEL, "flavors.python_function.streamable", "is true but the code defines no predict_stream");
    }
    match python_syntax_error(file) {
        Some(Ok(())) => {}
        Some(Err(message)) => report.error(&name, "", format!("is not valid Python: {message}")),
        None => report.warning(&name, "", "Python 3 was not found, so the code's syntax was not checked"),
    }
}

/// `Some(Ok)` when Python parses the file, `Some(Err)` with the message when it does not,
/// `None` when no Python interpreter is available.
fn python_syntax_error(file: &Path) -> Option<Result<(), String>> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| if cfg!(windows) { "python".into() } else { "python3".into() });
    let output = std::process::Command::new(python)
        .args(["-c", "import ast, sys\ntry:\n    ast.parse(open(sys.argv[1], encoding='utf-8').read())\nexcept SyntaxError as e:\n    print(f'{e.msg} (line {e.lineno})'); sys.exit(3)"])
        .arg(file)
        .output()
        .ok()?;
    match output.status.code() {
        Some(0) => Some(Ok(())),
        Some(3) => Some(Err(String::from_utf8_lossy(&output.stdout).trim().to_owned())),
        _ => None,
    }
}

fn check_transformers(model: &MlModel, dir: &Path, report: &mut Report) {
    let Some(flavor) = model.flavor("transformers") else { return };
    let key = |k: &str| format!("flavors.transformers.{k}");
    for required in ["task", "pipeline_model_type"] {
        if !flavor.contains_key(required) {
            report.error(MLMODEL, &key(required), format!("is missing (MLflow raises KeyError: '{required}')"));
        }
    }
    let components: Vec<String> = match flavor.get("components") {
        Some(Node::Seq(items)) => items.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect(),
        _ => {
            report.error(MLMODEL, &key("components"), "is missing, so MLflow cannot tell which tokenizer to load");
            Vec::new()
        }
    };
    for component in &components {
        if let Err(error) = single_name(component) {
            report.error(MLMODEL, &key("components"), format!("{error}"));
            continue;
        }
        if !flavor.contains_key(&format!("{component}_type")) {
            report.error(MLMODEL, &key(&format!("{component}_type")), format!("is missing (MLflow raises KeyError: '{component}_type')"));
        }
        if !dir.join("components").join(component).is_dir() {
            report.error(MLMODEL, &key("components"), format!("components/{component}/ does not exist"));
        }
    }
    let binary = flavor.get("model_binary").and_then(Node::as_str).unwrap_or("pipeline");
    if check_inside(report, &key("model_binary"), binary).is_some_and(|inside| !dir.join(inside).is_dir()) {
        report.error(MLMODEL, &key("model_binary"), format!("the model folder `{binary}/` does not exist"));
    }
    if !flavor.contains_key("inference_task") {
        report.warning(MLMODEL, &key("inference_task"), "is missing: chat-shaped input will fail at predict time");
    }
}

fn check_env_files(model: &MlModel, dir: &Path, report: &mut Report) {
    if model.flavor("python_function").is_none() {
        return;
    }
    let mut read = |name: &str| match fsio::read_text_if_present(&dir.join(name), fsio::ENV_FILE_LIMIT) {
        Ok(text) => text,
        Err(error) => {
            report.error(name, "", error.to_string());
            None
        }
    };
    let requirements = read(files::REQUIREMENTS);
    let env_files = [files::PYTHON_ENV, files::CONDA].map(|name| (name, read(name)));
    if let Some(text) = requirements {
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('-') {
                continue;
            }
            let valid = line.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && line.chars().all(|c| c.is_ascii_alphanumeric() || "._-[]<>=!~,;*+ ':\"@/()".contains(c));
            if !valid {
                report.warning(files::REQUIREMENTS, &format!("line {}", number + 1), format!("`{line}` is not a pip requirement"));
            }
        }
    }
    for (name, text) in env_files {
        if let Some(Err(e)) = text.map(|text| super::yaml::parse(&text)) {
            report.warning(name, "", format!("is not valid YAML ({e})"));
        }
    }
}

/// Paths of every file in the folder with its size (links followed; entries that cannot be
/// read are left out: [`validate_folder`] reports them).
pub fn list_files(dir: &Path) -> Vec<(PathBuf, u64)> {
    walk(dir).map(|tree| tree.files.into_iter().map(|f| (f.relative, f.size)).collect()).unwrap_or_default()
}

/// A JSON summary of a folder (what `modeldesk show --json` prints).
pub fn summary(model: &MlModel) -> Value {
    use serde_json::json;
    let pyfunc = model.python_function();
    let signature = match model.signature() {
        None => Value::Null,
        Some(Ok(sig)) => json!({
            "inputs": sig.inputs.as_ref().map(Schema::to_json),
            "outputs": sig.outputs.as_ref().map(Schema::to_json),
            "params": sig.params.as_ref().map(|p| super::schema::params_to_json(p)),
        }),
        Some(Err(e)) => json!({"error": e.to_string()}),
    };
    let example = match read_input_example(model) {
        None => Value::Null,
        Some(Ok(example)) => json!({"type": example.kind, "data": example.data, "params": example.params}),
        Some(Err(e)) => json!({"error": e}),
    };
    let env = files::PythonEnv::read(model.dir()).ok();
    let files: Vec<Value> = list_files(model.dir())
        .into_iter()
        .map(|(path, size)| json!({"path": path.to_string_lossy(), "bytes": size}))
        .collect();
    json!({
        "path": model.dir(),
        "flavors": model.flavor_names(),
        "loader_module": pyfunc.as_ref().and_then(|p| p.loader_module.clone()),
        "model_code_path": pyfunc.as_ref().and_then(|p| p.model_code_path.clone()),
        "mlflow_version": model.get_str("mlflow_version"),
        "model_uuid": model.get_str("model_uuid"),
        "utc_time_created": model.get_str("utc_time_created"),
        "task": model.root().get("metadata").and_then(Node::as_map).and_then(|m| m.get("task")).and_then(Node::as_str),
        "model_config": model.model_config().map(Node::to_json),
        "signature": signature,
        "input_example": example,
        "environment": env.map(|e| json!({"python": e.python, "requirements": e.requirements})),
        "files": files,
    })
}
