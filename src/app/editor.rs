//! The model editor's state: editable copies of model_config, the signature, the input example
//! and the description, checked as they change and applied onto the loaded `MLmodel` only where
//! they differ, so an untouched file is never rewritten.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{
    engine::{GenaiConfig, folder},
    mlflow::{
        files::{InputExample, read_input_example, write_input_example},
        mlmodel::MlModel,
        schema::{self, DataType, ParamSpec, ParamType, Schema, Signature},
        validate,
        yaml::{Mapping, Node},
    },
};

/// A model_config value as the form edits it.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigValue {
    Number(f64),
    Integer(i64),
    Bool(bool),
    Text(String),
    /// Lists, mappings and nulls: edited as JSON text.
    Json(String),
}

impl ConfigValue {
    pub fn from_node(node: &Node) -> Self {
        match node {
            Node::Float(f) => ConfigValue::Number(*f),
            Node::Int(i) => i64::try_from(*i).map(ConfigValue::Integer).unwrap_or_else(|_| ConfigValue::Json(i.to_string())),
            Node::Bool(b) => ConfigValue::Bool(*b),
            Node::Str(s) => ConfigValue::Text(s.clone()),
            other => ConfigValue::Json(other.to_json().to_string()),
        }
    }

    pub fn to_node(&self) -> Result<Node, String> {
        Ok(match self {
            ConfigValue::Number(f) => Node::Float(*f),
            ConfigValue::Integer(i) => Node::Int(i128::from(*i)),
            ConfigValue::Bool(b) => Node::Bool(*b),
            ConfigValue::Text(s) => Node::Str(s.clone()),
            ConfigValue::Json(text) => Node::from_json(&serde_json::from_str::<Value>(text).map_err(|e| format!("not JSON: {e}"))?),
        })
    }

    pub fn kind_label(&self) -> &'static str {
        match self {
            ConfigValue::Number(_) => "number",
            ConfigValue::Integer(_) => "integer",
            ConfigValue::Bool(_) => "bool",
            ConfigValue::Text(_) => "text",
            ConfigValue::Json(_) => "JSON",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConfigRow {
    pub key: String,
    pub value: ConfigValue,
}

/// Generation keys the form offers, with what they mean.
pub const KNOWN_CONFIG_KEYS: &[(&str, &str, fn() -> ConfigValue)] = &[
    ("max_length", "prompt + completion tokens at most", || ConfigValue::Integer(2048)),
    ("max_tokens", "completion tokens at most", || ConfigValue::Integer(256)),
    ("temperature", "randomness of sampling (0 = greedy)", || ConfigValue::Number(0.7)),
    ("top_p", "nucleus sampling: keep the most likely tokens up to this probability mass", || ConfigValue::Number(0.9)),
    ("top_k", "sample among the k most likely tokens", || ConfigValue::Integer(50)),
    ("do_sample", "sample instead of always taking the most likely token", || ConfigValue::Bool(false)),
    ("repetition_penalty", "above 1 discourages repeating tokens", || ConfigValue::Number(1.1)),
];

/// A parameter spec as the form edits it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamDraft {
    pub name: String,
    pub ty: DataType,
    pub default_json: String,
    pub list: bool,
}

impl ParamDraft {
    fn from_spec(spec: &ParamSpec) -> Option<Self> {
        let ParamType::Base(ty) = spec.ty else { return None };
        Some(Self { name: spec.name.clone(), ty, default_json: spec.default.to_string(), list: spec.shape.is_some() })
    }

    fn to_spec(&self) -> Result<ParamSpec, String> {
        let default: Value = serde_json::from_str(&self.default_json).map_err(|e| format!("default is not JSON: {e}"))?;
        let spec = ParamSpec { name: self.name.clone(), ty: ParamType::Base(self.ty), default, shape: self.list.then(|| vec![-1]) };
        spec.check_default()?;
        Ok(spec)
    }
}

/// What the editor shows for a plain Phi-3 ONNX folder.
#[derive(Debug, Clone)]
pub struct OnnxFacts {
    pub config: Result<GenaiConfig, String>,
    pub warnings: Vec<String>,
}

/// Everything the editor loads from disk (done on a background thread).
pub struct Loaded {
    pub dir: PathBuf,
    /// Files of the folder with their sizes (relative paths).
    pub files: Vec<(PathBuf, u64)>,
    pub model: Option<Result<MlModel, String>>,
    pub onnx: Option<OnnxFacts>,
    pub example: Option<Result<InputExample, String>>,
}

pub fn load(dir: &Path) -> Loaded {
    let model = dir.join(crate::mlflow::mlmodel::MLMODEL).is_file().then(|| MlModel::load(dir).map_err(|e| e.to_string()));
    let example = model.as_ref().and_then(|m| m.as_ref().ok()).and_then(read_input_example);
    let onnx = folder::ModelFolder::locate(dir).ok().map(|onnx_dir| match GenaiConfig::load(&onnx_dir.join(folder::GENAI_CONFIG)) {
        Ok(loaded) => OnnxFacts { config: Ok(loaded.config), warnings: loaded.warnings },
        Err(e) => OnnxFacts { config: Err(e.to_string()), warnings: Vec::new() },
    });
    Loaded { dir: dir.to_path_buf(), files: validate::list_files(dir), model, onnx, example }
}

pub struct ModelEditor {
    pub dir: PathBuf,
    pub files: Vec<(PathBuf, u64)>,
    pub original: Option<MlModel>,
    pub load_error: Option<String>,
    pub onnx: Option<OnnxFacts>,
    pub config: Vec<ConfigRow>,
    original_config: Vec<ConfigRow>,
    /// `None` when the file has no signature; an unreadable one is shown as an error.
    pub signature: Option<Signature>,
    original_signature: Option<Signature>,
    pub signature_error: Option<String>,
    pub params: Vec<ParamDraft>,
    pub example_text: String,
    original_example_text: String,
    pub description: String,
    original_description: String,
    /// Field → message, for messages next to the field (`config.temperature`, `inputs[0]…`,
    /// `example`, `params[1]`).
    pub messages: Vec<(String, String)>,
    pub dirty: bool,
}

impl ModelEditor {
    pub fn new(loaded: Loaded) -> Self {
        let (original, load_error) = match loaded.model {
            Some(Ok(model)) => (Some(model), None),
            Some(Err(e)) => (None, Some(e)),
            None => (None, None),
        };
        let config: Vec<ConfigRow> = match original.as_ref().and_then(MlModel::model_config) {
            Some(Node::Map(map)) => map
                .iter()
                .map(|(k, v)| ConfigRow { key: k.as_str().unwrap_or_default().to_owned(), value: ConfigValue::from_node(v) })
                .collect(),
            _ => Vec::new(),
        };
        let (signature, signature_error) = match original.as_ref().and_then(MlModel::signature) {
            None => (None, None),
            Some(Ok(signature)) => (Some(signature), None),
            Some(Err(e)) => (None, Some(e.to_string())),
        };
        let params: Vec<ParamDraft> = signature.as_ref().and_then(|s| s.params.as_ref()).map(|p| p.iter().filter_map(ParamDraft::from_spec).collect()).unwrap_or_default();
        let example_text = match &loaded.example {
            Some(Ok(example)) => serde_json::to_string_pretty(&match &example.params {
                Some(params) => serde_json::json!({"inputs": example.data, "params": params}),
                None => example.data.clone(),
            })
            .unwrap_or_default(),
            _ => String::new(),
        };
        let description = original.as_ref().and_then(MlModel::description).unwrap_or_default();
        let mut editor = Self {
            dir: loaded.dir,
            files: loaded.files,
            original,
            load_error,
            onnx: loaded.onnx,
            original_config: config.clone(),
            config,
            original_signature: signature.clone(),
            signature,
            signature_error,
            params,
            original_example_text: example_text.clone(),
            example_text,
            original_description: description.clone(),
            description,
            messages: Vec::new(),
            dirty: false,
        };
        editor.check();
        editor
    }

    pub fn is_mlflow(&self) -> bool {
        self.original.is_some()
    }

    /// The edited signature (params from the param rows), or why it is not valid.
    fn edited_signature(&self) -> Result<Option<Signature>, Vec<(String, String)>> {
        let Some(signature) = &self.signature else { return Ok(None) };
        let mut messages = Vec::new();
        let mut result = signature.clone();
        let original_params = self.original_signature.as_ref().and_then(|s| s.params.clone());
        let params: Result<Vec<ParamSpec>, _> = self.params.iter().map(ParamDraft::to_spec).collect();
        match params {
            Ok(params) => {
                // Object-typed params are not editable here; keep them as they were.
                let mut all = params;
                all.extend(original_params.unwrap_or_default().into_iter().filter(|p| matches!(p.ty, ParamType::Object(_))));
                result.params = if all.is_empty() { None } else { Some(all) };
            }
            Err(e) => messages.push(("params".into(), e)),
        }
        // Round-trip through MLflow's rules so every problem gets a path.
        for (block, schema) in [("inputs", &result.inputs), ("outputs", &result.outputs)] {
            if let Some(schema) = schema {
                if let Err(e) = Schema::from_json(&schema.to_json(), block) {
                    messages.push((e.path.clone(), e.message));
                }
            }
        }
        if let Some(params) = &result.params {
            if let Err(e) = schema::params_from_json(&schema::params_to_json(params)) {
                messages.push((e.path.clone(), e.message));
            }
        }
        if messages.is_empty() { Ok(Some(result)) } else { Err(messages) }
    }

    fn edited_example(&self) -> Result<Option<InputExample>, String> {
        if self.example_text.trim() == self.original_example_text.trim() {
            return Ok(None);
        }
        if self.example_text.trim().is_empty() {
            return Err("an input example cannot be removed here; edit it instead".into());
        }
        let value: Value = serde_json::from_str(&self.example_text).map_err(|e| format!("not valid JSON: {e}"))?;
        let (data, params) = match value {
            Value::Object(mut map) if map.len() == 2 && map.contains_key("inputs") && map.contains_key("params") => {
                (map.remove("inputs").unwrap_or_default(), map.remove("params"))
            }
            other => (other, None),
        };
        Ok(Some(InputExample::from_json(data, params)))
    }

    /// Re-checks every field; call after any edit.
    pub fn check(&mut self) {
        let mut messages = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for row in &self.config {
            if row.key.trim().is_empty() {
                messages.push((format!("config.{}", row.key), "a key needs a name".into()));
            } else if !seen.insert(row.key.clone()) {
                messages.push((format!("config.{}", row.key), "this key appears twice".into()));
            }
            if let Err(e) = row.value.to_node() {
                messages.push((format!("config.{}", row.key), e));
            }
        }
        let signature = match self.edited_signature() {
            Ok(signature) => signature,
            Err(errors) => {
                messages.extend(errors);
                None
            }
        };
        let example_json = if self.example_text.trim().is_empty() {
            None
        } else {
            match serde_json::from_str::<Value>(&self.example_text) {
                Ok(value) => Some(value),
                Err(e) => {
                    messages.push(("example".into(), format!("not valid JSON: {e}")));
                    None
                }
            }
        };
        if let (Some(value), Some(Signature { inputs: Some(inputs), .. })) = (example_json, signature.as_ref()) {
            let example = match value {
                Value::Object(mut map) if map.len() == 2 && map.contains_key("inputs") && map.contains_key("params") => {
                    InputExample::from_json(map.remove("inputs").unwrap_or_default(), map.remove("params"))
                }
                other => InputExample::from_json(other, None),
            };
            for problem in schema::check_example(&example.model_input(), inputs) {
                messages.push(("example".into(), problem));
            }
        }
        self.messages = messages;
        self.dirty = self.config != self.original_config
            || self.edited_signature().ok().flatten() != self.original_signature
            || self.signature.is_some() != self.original_signature.is_some()
            || self.example_text.trim() != self.original_example_text.trim()
            || self.description != self.original_description;
    }

    /// Messages for fields whose name starts with `prefix`.
    pub fn messages_for<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.messages.iter().filter(move |(field, _)| field.starts_with(prefix)).map(|(_, m)| m.as_str())
    }

    /// Infers the input signature from the example text.
    pub fn infer_signature_from_example(&mut self) -> Result<(), String> {
        let value: Value = serde_json::from_str(&self.example_text).map_err(|e| format!("the example is not valid JSON: {e}"))?;
        let data = match &value {
            Value::Object(map) if map.len() == 2 && map.contains_key("inputs") && map.contains_key("params") => map["inputs"].clone(),
            _ => value,
        };
        let inputs = schema::infer_inputs(&data).map_err(|e| e.to_string())?;
        let signature = self.signature.get_or_insert_with(Signature::default);
        signature.inputs = Some(inputs);
        self.check();
        Ok(())
    }

    /// The MLmodel with the edits applied, and the example to write, or the first problem.
    pub fn build(&self) -> Result<(MlModel, Option<InputExample>), String> {
        if let Some((field, message)) = self.messages.first() {
            return Err(format!("{field}: {message}"));
        }
        let mut model = self.original.clone().ok_or("this folder has no MLmodel file to save into")?;
        if self.config != self.original_config {
            let mut map = Mapping::new();
            for row in &self.config {
                map.insert(&row.key, row.value.to_node()?);
            }
            model.set_model_config(map);
        }
        let signature = self.edited_signature().map_err(|e| e.first().map(|(f, m)| format!("{f}: {m}")).unwrap_or_default())?;
        if signature != self.original_signature {
            if let Some(signature) = &signature {
                model.set_signature(signature);
            }
        }
        if self.description != self.original_description {
            model.set_description(&self.description);
        }
        Ok((model, self.edited_example()?))
    }

    /// Restores what the files hold.
    pub fn revert(&mut self) {
        self.config = self.original_config.clone();
        self.signature = self.original_signature.clone();
        self.params = self.signature.as_ref().and_then(|s| s.params.as_ref()).map(|p| p.iter().filter_map(ParamDraft::from_spec).collect()).unwrap_or_default();
        self.example_text = self.original_example_text.clone();
        self.description = self.original_description.clone();
        self.check();
    }
}

/// Writes the edited model (off the GUI thread): example files first, then MLmodel, each
/// atomically; then validates the result.
pub fn save(mut model: MlModel, example: Option<InputExample>) -> Result<std::sync::Arc<validate::Report>, String> {
    if let Some(example) = &example {
        write_input_example(&mut model, example).map_err(|e| e.to_string())?;
    }
    model.save().map_err(|e| e.to_string())?;
    Ok(crate::inspect::checked(model.dir()))
}
