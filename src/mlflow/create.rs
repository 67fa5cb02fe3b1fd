//! Creating an MLflow model from a Phi-3 ONNX folder: a "models from code" pyfunc package whose
//! code file (ours, in `assets/mlflow/`) runs the folder with onnxruntime-genai (spec §4.3, §10).

use std::{
    path::{Path, PathBuf},
    sync::atomic::AtomicBool,
};

use serde_json::json;

use super::{
    super::engine::GenaiConfig,
    export::{CopyProgress, Copier, ExportError, IfExists, check_replaceable, tree_size},
    files::{InputExample, PythonEnv, write_input_example},
    mlmodel::{MlModel, write_atomically},
    schema::{ColSpec, ColType, DataType, ParamSpec, ParamType, Property, Schema, Signature},
    yaml::{Mapping, Node},
};
use crate::{
    engine::folder::{GENAI_CONFIG, ModelFolder},
    fsio::walk::walk,
    staging::Staging,
};

/// The wrapper's code, written to the package root.
pub const WRAPPER_FILE: &str = "phi3_onnx_model.py";
const WRAPPER_SOURCE: &str = include_str!("../../assets/mlflow/phi3_onnx_model.py");
/// The MLflow release packages are written for (and pinned in requirements.txt).
pub const MLFLOW_VERSION: &str = "3.17.2";
pub const GENAI_REQUIREMENT: &str = "onnxruntime-genai==0.18.0";
pub const ORT_REQUIREMENT: &str = "onnxruntime==1.31.1";
/// The artifact name the wrapper reads.
const ARTIFACT: &str = "phi3";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// `prompt: string` → `string`.
    Prompt,
    /// `llm/v1/chat`: messages in, `chat.completion` with usage out.
    Chat,
}

#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub task: Task,
    pub name: Option<String>,
    /// `python_version` to record; `None` = the local `python3`'s, else 3.11.
    pub python_version: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("{path} is not a Phi-3 ONNX folder: {message}")]
    NotOnnx { path: PathBuf, message: String },
    #[error(transparent)]
    Copy(#[from] ExportError),
    #[error("writing the package failed: {0}")]
    Write(String),
}

/// The package's model_config: the task and name, and the folder's search defaults as
/// onnxruntime-genai reads them from `genai_config.json` (the same parse the engine uses, so
/// the package, ModelDesk's chat and the command line start from the same values).
fn model_config(source: &Path, task: Task, name: &str) -> Result<Mapping, CreateError> {
    let loaded = GenaiConfig::load(&source.join(GENAI_CONFIG))
        .map_err(|e| CreateError::NotOnnx { path: source.to_path_buf(), message: e.to_string() })?;
    let search = &loaded.config.search;
    let mut map = Mapping::new();
    map.insert("task", Node::Str(match task {
        Task::Prompt => "prompt".into(),
        Task::Chat => "chat".into(),
    }));
    map.insert("model_name", Node::Str(name.to_owned()));
    map.insert("max_length", Node::Int(i128::try_from(loaded.config.default_max_length()).unwrap_or(i128::MAX)));
    map.insert("temperature", Node::Float(as_written(search.temperature)));
    map.insert("top_p", Node::Float(as_written(search.top_p)));
    map.insert("top_k", Node::Int(i128::try_from(search.top_k).unwrap_or(i128::MAX)));
    map.insert("do_sample", Node::Bool(search.do_sample));
    map.insert("repetition_penalty", Node::Float(as_written(search.repetition_penalty)));
    Ok(map)
}

/// An f32 option as the config file wrote it (0.9, not 0.8999999761581421).
fn as_written(value: f32) -> f64 {
    value.to_string().parse().unwrap_or(f64::from(value))
}

fn col(name: &str, ty: ColType, required: bool) -> ColSpec {
    ColSpec { name: Some(name.into()), ty, required: Some(required) }
}

fn prop(name: &str, ty: ColType, required: bool) -> Property {
    Property { name: name.into(), ty, required }
}

fn base(t: DataType) -> ColType {
    ColType::Base(t)
}

/// The `llm/v1/chat` outputs and the generation options this wrapper honours; tool calling is
/// not offered. No input schema: MLflow's enforcement of a `messages` column turns the
/// `instances` request form and a dict of conversations away before the wrapper sees them; the
/// wrapper reads every request shape itself (see its docstring).
pub fn chat_signature() -> Signature {
    use DataType::*;
    let message = |required_content: bool| {
        ColType::Object(vec![
            prop("content", base(String), required_content),
            prop("name", base(String), false),
            prop("role", base(String), true),
        ])
    };
    let outputs = Schema::Columns(vec![
        col("id", base(String), true),
        col("object", base(String), true),
        col("created", base(Long), true),
        col("model", base(String), true),
        col(
            "choices",
            ColType::Array(Box::new(ColType::Object(vec![
                prop("finish_reason", base(String), true),
                prop("index", base(Long), true),
                prop("message", message(false), true),
            ]))),
            true,
        ),
        col(
            "usage",
            ColType::Object(vec![
                prop("completion_tokens", base(Long), true),
                prop("prompt_tokens", base(Long), true),
                prop("total_tokens", base(Long), true),
            ]),
            false,
        ),
    ]);
    Signature { inputs: None, outputs: Some(outputs), params: Some(generation_params()) }
}

/// Generation options a request may give as predict params (top-level keys of the request body
/// over `mlflow models serve`), with the types MLflow checks them against before the wrapper
/// sees them. `seed` is onnxruntime-genai's `random_seed`: sampling with one is repeatable.
pub const GENERATION_PARAMS: [(&str, DataType); 8] = [
    ("max_tokens", DataType::Long),
    ("max_length", DataType::Long),
    ("temperature", DataType::Double),
    ("top_p", DataType::Double),
    ("top_k", DataType::Long),
    ("do_sample", DataType::Boolean),
    ("repetition_penalty", DataType::Double),
    ("seed", DataType::Long),
];

/// [`GENERATION_PARAMS`] as a params schema; a null default means the model's own setting.
fn generation_params() -> Vec<ParamSpec> {
    GENERATION_PARAMS
        .into_iter()
        .map(|(name, ty)| ParamSpec { name: name.into(), ty: ParamType::Base(ty), default: serde_json::Value::Null, shape: None })
        .collect()
}

/// No input schema, as for chat: MLflow's enforcement of a `prompt` column turns a bare string
/// away and folds a dict of lists into one row.
pub fn prompt_signature() -> Signature {
    Signature {
        inputs: None,
        outputs: Some(Schema::Columns(vec![ColSpec { name: None, ty: base(DataType::String), required: Some(true) }])),
        params: Some(generation_params()),
    }
}

/// The local `python3`'s version (`$PYTHON` overrides the interpreter), if it runs.
pub(crate) fn local_python_version() -> Option<String> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| if cfg!(windows) { "python".into() } else { "python3".into() });
    let output = std::process::Command::new(python).args(["-c", "import platform; print(platform.python_version())"]).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned()).filter(|v| !v.is_empty())
}

/// `YYYY-MM-DD HH:MM:SS.ffffff` in UTC, as MLflow writes `utc_time_created`.
pub(crate) fn utc_now() -> String {
    mlflow_timestamp(time::OffsetDateTime::now_utc())
}

fn mlflow_timestamp(now: time::OffsetDateTime) -> String {
    let now = now.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.microsecond()
    )
}

/// Creates the package in `out` (which must not exist).
pub fn create_from_onnx(
    source: &Path,
    out: &Path,
    options: &CreateOptions,
    on_progress: &mut dyn FnMut(CopyProgress),
    cancel: &AtomicBool,
) -> Result<PathBuf, CreateError> {
    create_from_onnx_to(source, out, options, IfExists::Refuse, on_progress, cancel)
}

/// [`create_from_onnx`] with a choice for an existing `out` (see [`check_replaceable`]).
pub fn create_from_onnx_to(
    source: &Path,
    out: &Path,
    options: &CreateOptions,
    if_exists: IfExists,
    on_progress: &mut dyn FnMut(CopyProgress),
    cancel: &AtomicBool,
) -> Result<PathBuf, CreateError> {
    // The same checks as opening the folder for chat: config ranges, decoder, weights, tokenizer.
    ModelFolder::open(source).map_err(|e| CreateError::NotOnnx { path: source.to_path_buf(), message: e.to_string() })?;
    match if_exists {
        IfExists::Refuse if out.symlink_metadata().is_ok() => return Err(ExportError::Exists(out.to_path_buf()).into()),
        IfExists::Refuse => {}
        IfExists::Replace => check_replaceable(source, out)?,
    }
    let name = options.name.clone().unwrap_or_else(|| {
        source.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "phi3".into())
    });
    let config = model_config(source, options.task, &name)?;
    let files = walk(source).and_then(|tree| tree.into_files()).map_err(ExportError::from)?;
    let total = files.iter().fold(0u64, |sum, f| sum.saturating_add(f.size));
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| CreateError::Write(format!("{}: {e}", parent.display())))?;
    // Built in a staging folder beside `out` and renamed at the end (see `crate::staging`).
    let staging = Staging::new_in(parent, "create").map_err(|e| CreateError::Write(format!("{}: {e}", parent.display())))?;
    let root = staging.path().to_path_buf();
    let mut copier = Copier::new(total, on_progress, cancel);
    copier.copy_files(source, &files, &root.join("artifacts").join(ARTIFACT))?;
    let write = |name: &str, text: &str| {
        write_atomically(&root.join(name), text.as_bytes()).map_err(|e| CreateError::Write(format!("{name}: {e}")))
    };
    write(WRAPPER_FILE, WRAPPER_SOURCE)?;

    let python = options.python_version.clone().or_else(local_python_version).unwrap_or_else(|| "3.11".into());
    let env = PythonEnv {
        python: python.clone(),
        build_dependencies: vec!["pip".into(), "setuptools".into(), "wheel".into()],
        requirements: vec![format!("mlflow=={MLFLOW_VERSION}"), ORT_REQUIREMENT.into(), GENAI_REQUIREMENT.into()],
    };
    env.write(&root).map_err(|e| CreateError::Write(e.to_string()))?;

    let mut model = MlModel::new(&root);
    let mut artifact = Mapping::new();
    artifact.insert("path", Node::Str(format!("artifacts/{ARTIFACT}")));
    artifact.insert("uri", Node::Str(std::path::absolute(source).unwrap_or_else(|_| source.to_path_buf()).display().to_string()));
    let mut artifacts = Mapping::new();
    artifacts.insert(ARTIFACT, Node::Map(artifact));
    let mut env_block = Mapping::new();
    env_block.insert("conda", Node::Str("conda.yaml".into()));
    env_block.insert("virtualenv", Node::Str("python_env.yaml".into()));
    let mut pyfunc = Mapping::new();
    pyfunc.insert("artifacts", Node::Map(artifacts));
    pyfunc.insert("config", Node::Map(config));
    pyfunc.insert("env", Node::Map(env_block));
    pyfunc.insert("loader_module", Node::Str("mlflow.pyfunc.loaders.code_model".into()));
    pyfunc.insert("model_code_path", Node::Str(WRAPPER_FILE.into()));
    pyfunc.insert("python_version", Node::Str(python));
    pyfunc.insert("streamable", Node::Bool(false));
    let mut flavors = Mapping::new();
    flavors.insert("python_function", Node::Map(pyfunc));
    let mut metadata = Mapping::new();
    metadata.insert("created_by", Node::Str(format!("modeldesk {}", env!("CARGO_PKG_VERSION"))));
    metadata.insert("name", Node::Str(name));
    if options.task == Task::Chat {
        metadata.insert("task", Node::Str("llm/v1/chat".into()));
    }
    let document = model.root_mut();
    document.insert("flavors", Node::Map(flavors));
    document.insert("metadata", Node::Map(metadata));
    document.insert("mlflow_version", Node::Str(MLFLOW_VERSION.into()));
    document.insert("model_id", Node::Null);
    document.insert("model_uuid", Node::Str(uuid::Uuid::new_v4().simple().to_string()));
    document.insert("prompts", Node::Null);
    document.insert("utc_time_created", Node::Str(utc_now()));
    let (signature, example) = match options.task {
        Task::Prompt => (prompt_signature(), InputExample::from_json(json!({"prompt": "Hello! What can you do?"}), None)),
        Task::Chat => (
            chat_signature(),
            InputExample::from_json(json!({"messages": [{"role": "user", "content": "Hello! What can you do?"}], "max_tokens": 32}), None),
        ),
    };
    model.set_signature(&signature);
    write_input_example(&mut model, &example).map_err(|e| CreateError::Write(e.to_string()))?;
    model.root_mut().insert("model_size_bytes", Node::Int(i128::from(tree_size(&root))));
    model.save().map_err(|e| CreateError::Write(e.to_string()))?;
    copier.sync_created_dirs();
    if cancel.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(ExportError::Cancelled.into());
    }
    match if_exists {
        IfExists::Refuse => staging.finish(&root, out),
        IfExists::Replace => staging.finish_replacing(&root, out),
    }
    .map_err(|e| CreateError::Write(format!("{}: {e}", out.display())))?;
    Ok(out.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_time_has_mlflows_layout() {
        let now = utc_now();
        assert_eq!(now.len(), 26, "{now}");
        assert_eq!(&now[4..5], "-");
        assert_eq!(&now[10..11], " ");
        assert_eq!(&now[19..20], ".");
        // A leap day just before midnight, with microseconds, as Python's str(datetime) writes it.
        let leap = time::OffsetDateTime::from_unix_timestamp_nanos(1_709_251_199_000_123_456).unwrap();
        assert_eq!(mlflow_timestamp(leap), "2024-02-29 23:59:59.000123");
    }

    #[test]
    fn a_package_from_the_fixture_validates() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-phi3");
        let out = tempfile::tempdir().unwrap();
        for task in [Task::Prompt, Task::Chat] {
            let target = out.path().join(format!("{task:?}"));
            let options = CreateOptions { task, name: None, python_version: Some("3.11.7".into()) };
            create_from_onnx(&fixture, &target, &options, &mut |_| {}, &AtomicBool::new(false)).unwrap();
            let report = super::super::validate::validate_folder(&target);
            assert!(report.is_usable(), "{task:?}: {:?}", report.problems);
            assert!(target.join("artifacts/phi3/model.onnx.data").is_file());
        }
    }
}
