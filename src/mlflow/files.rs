//! The files beside `MLmodel`: input examples (`input_example.json`,
//! `serving_input_example.json` and the `saved_input_example_info` block) and environment
//! files (`requirements.txt`, `python_env.yaml`, `conda.yaml`), in the forms MLflow writes.

use std::path::Path;

use serde_json::{Value, json};

use super::{
    mlmodel::{MlModel, write_atomically},
    yaml::{self, Mapping, Node},
};

pub const INPUT_EXAMPLE: &str = "input_example.json";
pub const SERVING_INPUT_EXAMPLE: &str = "serving_input_example.json";
pub const REQUIREMENTS: &str = "requirements.txt";
pub const PYTHON_ENV: &str = "python_env.yaml";
pub const CONDA: &str = "conda.yaml";

/// Top-level keys that make MLflow treat a dict example as an LLM request (served unwrapped).
const LLM_KEYS: [&str; 3] = ["messages", "prompt", "input"];

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("cannot write {path}: {error}")]
    Write { path: String, error: std::io::Error },
}

/// An input example as MLflow stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct InputExample {
    /// `json_object`, `dataframe`, `ndarray`, …
    pub kind: String,
    /// The model input.
    pub data: Value,
    /// Parameters saved with it (`params: 'true'` in the info block).
    pub params: Option<Value>,
}

impl InputExample {
    /// An example for JSON data, typed the way MLflow types it: a pandas split dict is a
    /// dataframe, anything else a JSON object example.
    pub fn from_json(data: Value, params: Option<Value>) -> Self {
        let is_split = data.as_object().is_some_and(|m| m.contains_key("columns") && m.contains_key("data"));
        Self { kind: if is_split { "dataframe".into() } else { "json_object".into() }, data, params }
    }

    /// The data as the model sees it: a dataframe's split form becomes a list of records.
    pub fn model_input(&self) -> Value {
        let split = (self.data.get("columns").and_then(Value::as_array), self.data.get("data").and_then(Value::as_array));
        match (self.kind.as_str(), split) {
            ("dataframe", (Some(columns), Some(rows))) => Value::Array(
                rows.iter()
                    .map(|row| {
                        let cells = row.as_array().cloned().unwrap_or_default();
                        Value::Object(
                            columns.iter().zip(cells).map(|(c, v)| (c.as_str().unwrap_or_default().to_owned(), v)).collect(),
                        )
                    })
                    .collect(),
            ),
            _ => self.data.clone(),
        }
    }

    /// The `input_example.json` text (compact, as `json.dumps` writes it).
    pub fn file_text(&self) -> String {
        let value = match &self.params {
            Some(params) => json!({"inputs": self.data, "params": params}),
            None => self.data.clone(),
        };
        super::schema::python_json(&value)
    }

    /// The request body `mlflow models serve` accepts for this example.
    pub fn serving_body(&self) -> Value {
        let is_llm = self.data.as_object().is_some_and(|m| LLM_KEYS.iter().any(|k| m.contains_key(*k)));
        let mut body = match (self.kind.as_str(), is_llm) {
            ("dataframe", _) => json!({"dataframe_split": self.data}),
            (_, true) => self.data.clone(),
            _ => json!({"inputs": self.data}),
        };
        if let (Some(Value::Object(params)), Some(object)) = (&self.params, body.as_object_mut()) {
            if is_llm {
                // Unified LLM bodies carry params at the top level.
                for (k, v) in params {
                    object.insert(k.clone(), v.clone());
                }
            } else {
                object.insert("params".into(), Value::Object(params.clone()));
            }
        }
        body
    }

    /// The `saved_input_example_info` block.
    pub fn info_block(&self) -> Mapping {
        let mut info = Mapping::new();
        info.insert("artifact_path", Node::Str(INPUT_EXAMPLE.into()));
        if self.kind == "dataframe" {
            info.insert("pandas_orient", Node::Str("split".into()));
        }
        if self.params.is_some() {
            info.insert("params", Node::Str("true".into()));
        }
        info.insert("serving_input_path", Node::Str(SERVING_INPUT_EXAMPLE.into()));
        info.insert("type", Node::Str(self.kind.clone()));
        info
    }
}

/// What the model folder says about its example, and whether the example can be read.
pub fn read_input_example(model: &MlModel) -> Option<Result<InputExample, String>> {
    let info = model.root().get("saved_input_example_info")?;
    let Some(info) = info.as_map() else {
        return Some(Err(format!("saved_input_example_info must be a mapping, not {}", info.kind())));
    };
    let path = info.get("artifact_path").and_then(Node::as_str).unwrap_or(INPUT_EXAMPLE);
    let kind = info.get("type").and_then(Node::as_str).unwrap_or_default().to_owned();
    if !matches!(kind.as_str(), "dataframe" | "ndarray" | "json_object" | "sparse_matrix_csc" | "sparse_matrix_csr") {
        return Some(Err(format!("saved_input_example_info.type `{kind}` is not one MLflow knows")));
    }
    let Some(file) = safe_join(model.dir(), path) else {
        return Some(Err(format!("saved_input_example_info.artifact_path `{path}` points outside the folder")));
    };
    let text = match crate::fsio::read_text(&file, crate::fsio::EXAMPLE_LIMIT) {
        Ok(text) => text,
        Err(e) => return Some(Err(e.to_string())),
    };
    let value: Value = match serde_json::from_str(&text) {
        Ok(value) => value,
        Err(e) => return Some(Err(format!("{path} is not valid JSON ({e})"))),
    };
    let with_params = info.get("params").is_some_and(|p| p.as_str() == Some("true") || p.as_bool() == Some(true));
    let (data, params) = if with_params {
        match value {
            Value::Object(mut map) if map.contains_key("params") => {
                let params = map.remove("params");
                (map.remove("inputs").unwrap_or(Value::Null), params)
            }
            _ => return Some(Err(format!("{path}: saved_input_example_info says params: 'true' but the file has no params"))),
        }
    } else {
        (value, None)
    };
    Some(Ok(InputExample { kind, data, params }))
}

/// Writes both example files and the info block into the model (the caller saves `MLmodel`).
pub fn write_input_example(model: &mut MlModel, example: &InputExample) -> Result<(), FileError> {
    let dir = model.dir().to_path_buf();
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        write_atomically(&path, text.as_bytes()).map_err(|error| FileError::Write { path: path.display().to_string(), error })
    };
    write(INPUT_EXAMPLE, example.file_text())?;
    let serving = serde_json::to_string_pretty(&example.serving_body()).unwrap_or_default();
    write(SERVING_INPUT_EXAMPLE, serving)?;
    model.root_mut().insert("saved_input_example_info", Node::Map(example.info_block()));
    Ok(())
}

/// `base/relative` when `relative` stays inside `base` (no absolute paths, no `..`).
pub use crate::fsio::names::safe_join;

/// The Python environment a package declares.
#[derive(Debug, Clone, PartialEq)]
pub struct PythonEnv {
    pub python: String,
    pub build_dependencies: Vec<String>,
    /// pip requirement lines (requirements.txt), `mlflow==…` first.
    pub requirements: Vec<String>,
}

impl PythonEnv {
    /// `requirements.txt`: lines joined by newlines, no trailing newline (as MLflow writes it).
    pub fn requirements_text(&self) -> String {
        self.requirements.join("\n")
    }

    pub fn python_env_text(&self) -> String {
        let mut map = Mapping::new();
        map.insert("python", Node::Str(self.python.clone()));
        map.insert("build_dependencies", Node::Seq(self.build_dependencies.iter().map(|d| Node::Str(d.clone())).collect()));
        map.insert("dependencies", Node::Seq(vec![Node::Str(format!("-r {REQUIREMENTS}"))]));
        yaml::emit_with(&Node::Map(map), false)
    }

    pub fn conda_text(&self) -> String {
        let pip_version = self
            .build_dependencies
            .iter()
            .find_map(|d| d.strip_prefix("pip=="))
            .map(|v| format!("pip<={v}"))
            .unwrap_or_else(|| "pip".into());
        let mut pip = Mapping::new();
        pip.insert("pip", Node::Seq(self.requirements.iter().map(|r| Node::Str(r.clone())).collect()));
        let mut map = Mapping::new();
        map.insert("channels", Node::Seq(vec![Node::Str("conda-forge".into())]));
        map.insert(
            "dependencies",
            Node::Seq(vec![Node::Str(format!("python={}", self.python)), Node::Str(pip_version), Node::Map(pip)]),
        );
        map.insert("name", Node::Str("mlflow-env".into()));
        yaml::emit(&Node::Map(map))
    }

    /// Writes the three files into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), FileError> {
        for (name, text) in [
            (REQUIREMENTS, self.requirements_text()),
            (PYTHON_ENV, self.python_env_text()),
            (CONDA, self.conda_text()),
        ] {
            let path = dir.join(name);
            write_atomically(&path, text.as_bytes()).map_err(|error| FileError::Write { path: path.display().to_string(), error })?;
        }
        Ok(())
    }

    /// Reads what a folder declares (missing files give empty parts; unreadable ones an error).
    pub fn read(dir: &Path) -> Result<Self, FileError> {
        let read = |name: &str| {
            crate::fsio::read_text_if_present(&dir.join(name), crate::fsio::ENV_FILE_LIMIT)
                .map_err(|e| FileError::Invalid { path: name.into(), message: e.to_string() })
        };
        let requirements = read(REQUIREMENTS)?.map(|text| parse_requirements(&text)).unwrap_or_default();
        let (python, build_dependencies) = match read(PYTHON_ENV)? {
            Some(text) => {
                let node = yaml::parse(&text)
                    .map_err(|e| FileError::Invalid { path: PYTHON_ENV.into(), message: e.to_string() })?;
                let map = node.as_map().cloned().unwrap_or_default();
                let python = match map.get("python") {
                    Some(Node::Str(s)) => s.clone(),
                    Some(Node::Float(f)) => yaml::python_float(*f),
                    _ => String::new(),
                };
                let build = match map.get("build_dependencies") {
                    Some(Node::Seq(items)) => items.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect(),
                    _ => Vec::new(),
                };
                (python, build)
            }
            None => (String::new(), Vec::new()),
        };
        Ok(Self { python, build_dependencies, requirements })
    }
}

/// Requirement lines without comments and blank lines.
pub fn parse_requirements(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| line.split(" #").next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_match_mlflows_layout() {
        let env = PythonEnv {
            python: "3.11.7".into(),
            build_dependencies: vec!["pip==26.3".into(), "setuptools==84.2.1".into(), "wheel".into()],
            requirements: vec!["mlflow==3.17.2".into(), "cloudpickle==3.1.2".into()],
        };
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/mlflow-examples/v3-pyfunc-log_model");
        assert!(fixture.is_dir(), "{} is missing: the tests need ../shared beside the clone", fixture.display());
        assert_eq!(env.python_env_text(), std::fs::read_to_string(fixture.join(PYTHON_ENV)).unwrap());
        assert_eq!(env.conda_text(), std::fs::read_to_string(fixture.join(CONDA)).unwrap());
        assert_eq!(env.requirements_text(), std::fs::read_to_string(fixture.join(REQUIREMENTS)).unwrap());
    }

    #[test]
    fn examples_take_mlflows_forms() {
        let llm = InputExample::from_json(json!({"prompt": "hello"}), Some(json!({"max_tokens": 16})));
        assert_eq!(llm.file_text(), r#"{"inputs": {"prompt": "hello"}, "params": {"max_tokens": 16}}"#);
        assert_eq!(llm.serving_body(), json!({"prompt": "hello", "max_tokens": 16}));
        let plain = InputExample::from_json(json!({"question": "q"}), None);
        assert_eq!(plain.serving_body(), json!({"inputs": {"question": "q"}}));
        let frame = InputExample::from_json(json!({"columns": ["a"], "data": [[1]]}), None);
        assert_eq!(frame.kind, "dataframe");
        assert_eq!(frame.serving_body(), json!({"dataframe_split": {"columns": ["a"], "data": [[1]]}}));
        assert!(safe_join(Path::new("/m"), "../x").is_none());
        assert!(safe_join(Path::new("/m"), "/etc/passwd").is_none());
    }
}
