//! What is loaded, from where, with which defaults — and the one rule for search options:
//! the folder's `genai_config.json`, then an MLflow package's `model_config`, then the user's
//! overrides. The command line, the window's chat, the local server and the packages `create`
//! writes all go through [`request_options`] and [`model_config_options`], so the same messages
//! give the same reply everywhere. Knows nothing of the GUI.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{
    engine::{GenerateOptions, ModelFacts, SearchOptions},
    mlflow::mlmodel::{MLMODEL, MlModel},
};

/// The `model_config` keys that are search options, exactly those ModelDesk's MLflow wrapper
/// (`assets/mlflow/phi3_onnx_model.py`, `SEARCH_KEYS`) hands to onnxruntime-genai.
pub const MODEL_CONFIG_SEARCH_KEYS: [&str; 6] = ["max_length", "temperature", "top_p", "top_k", "do_sample", "repetition_penalty"];

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{path}: {message}")]
    ModelFile { path: PathBuf, message: String },
    #[error("model_config.{key} in {path}: {problem}")]
    ConfigValue { path: PathBuf, key: &'static str, problem: String },
}

/// The search options a package's `model_config` sets (keys it leaves out stay `None`, so the
/// folder's `genai_config.json` decides them). `origin` names the file in errors.
pub fn model_config_options(config: &serde_json::Map<String, Value>, origin: &Path) -> Result<GenerateOptions, SessionError> {
    let wrong = |key: &'static str, expected: &str, value: &Value| SessionError::ConfigValue {
        path: origin.to_path_buf(),
        key,
        problem: format!("expected {expected}, found {value}"),
    };
    let get = |key: &'static str| config.get(key).filter(|v| !v.is_null());
    let count = |key: &'static str| -> Result<Option<usize>, SessionError> {
        get(key)
            .map(|v| v.as_u64().and_then(|n| usize::try_from(n).ok()).ok_or_else(|| wrong(key, "a whole number ≥ 0", v)))
            .transpose()
    };
    let number = |key: &'static str| -> Result<Option<f32>, SessionError> {
        get(key)
            .map(|v| v.as_f64().filter(|n| n.is_finite()).map(|n| n as f32).ok_or_else(|| wrong(key, "a number", v)))
            .transpose()
    };
    Ok(GenerateOptions {
        max_length: count("max_length")?.filter(|&n| n > 0),
        temperature: number("temperature")?,
        top_p: number("top_p")?,
        top_k: count("top_k")?,
        do_sample: get("do_sample").map(|v| v.as_bool().ok_or_else(|| wrong("do_sample", "true or false", v))).transpose()?,
        repetition_penalty: number("repetition_penalty")?,
        ..GenerateOptions::default()
    })
}

/// `over`'s settings where it has them, `base`'s elsewhere.
pub fn layer(base: &GenerateOptions, over: &GenerateOptions) -> GenerateOptions {
    GenerateOptions {
        max_length: over.max_length.or(base.max_length),
        max_tokens: over.max_tokens.or(base.max_tokens),
        do_sample: over.do_sample.or(base.do_sample),
        top_k: over.top_k.or(base.top_k),
        top_p: over.top_p.or(base.top_p),
        temperature: over.temperature.or(base.temperature),
        repetition_penalty: over.repetition_penalty.or(base.repetition_penalty),
        min_length: over.min_length.or(base.min_length),
        no_repeat_ngram_size: over.no_repeat_ngram_size.or(base.no_repeat_ngram_size),
        seed: over.seed.or(base.seed),
        stop: if over.stop.is_empty() { base.stop.clone() } else { over.stop.clone() },
        suppress_eos: over.suppress_eos || base.suppress_eos,
        kv_mode: over.kv_mode,
        ignore_cached_prefix: over.ignore_cached_prefix || base.ignore_cached_prefix,
        prompt_lookup: over.prompt_lookup.or(base.prompt_lookup),
    }
}

/// The options a request runs with: the package's defaults under the user's overrides (the
/// engine fills what is still open from `genai_config.json`).
pub fn request_options(model_defaults: &GenerateOptions, user: &GenerateOptions) -> GenerateOptions {
    layer(model_defaults, user)
}

/// The model's own defaults as the user sees them: `genai_config.json`'s search options with the
/// package's `model_config` applied.
pub fn effective_search(genai: &SearchOptions, model_defaults: &GenerateOptions) -> SearchOptions {
    SearchOptions {
        do_sample: model_defaults.do_sample.unwrap_or(genai.do_sample),
        max_length: model_defaults.max_length.unwrap_or(genai.max_length),
        top_k: model_defaults.top_k.unwrap_or(genai.top_k),
        top_p: model_defaults.top_p.unwrap_or(genai.top_p),
        temperature: model_defaults.temperature.unwrap_or(genai.temperature),
        repetition_penalty: model_defaults.repetition_penalty.unwrap_or(genai.repetition_penalty),
        ..genai.clone()
    }
}

/// Reads the defaults of the folder a model is loaded from: an MLflow package's `model_config`,
/// or nothing for a plain Phi ONNX folder. Does file I/O: call it off the GUI thread.
pub fn load_model_defaults(folder: &Path) -> Result<GenerateOptions, SessionError> {
    if !folder.join(MLMODEL).is_file() {
        return Ok(GenerateOptions::default());
    }
    let model = MlModel::load(folder).map_err(|e| SessionError::ModelFile { path: folder.join(MLMODEL), message: e.to_string() })?;
    match model.model_config().map(|node| node.to_json()) {
        Some(Value::Object(map)) => model_config_options(&map, &folder.join(MLMODEL)),
        _ => Ok(GenerateOptions::default()),
    }
}

/// Where a model session stands.
#[derive(Debug, Clone)]
pub enum SessionStatus {
    Loading,
    Ready(Box<ModelFacts>),
    Failed(String),
}

/// The model the app has loaded (or is loading): the one owner of "what is loaded, from where,
/// with which defaults". Dropped on unload, so nothing about a model outlives it.
#[derive(Debug, Clone)]
pub struct ModelSession {
    /// The folder the user loaded: a Phi ONNX folder or an MLflow package wrapping one.
    pub folder: PathBuf,
    pub status: SessionStatus,
    /// The package's `model_config` search options; `None` until read (off the GUI thread).
    pub defaults: Option<GenerateOptions>,
}

impl ModelSession {
    pub fn loading(folder: PathBuf) -> Self {
        Self { folder, status: SessionStatus::Loading, defaults: None }
    }

    pub fn facts(&self) -> Option<&ModelFacts> {
        match &self.status {
            SessionStatus::Ready(facts) => Some(facts),
            _ => None,
        }
    }

    pub fn is_loading(&self) -> bool {
        matches!(self.status, SessionStatus::Loading) || (self.facts().is_some() && self.defaults.is_none())
    }

    /// Loaded, with its defaults known: ready to chat.
    pub fn is_ready(&self) -> bool {
        self.facts().is_some() && self.defaults.is_some()
    }

    pub fn error(&self) -> Option<&str> {
        match &self.status {
            SessionStatus::Failed(message) => Some(message),
            _ => None,
        }
    }

    /// Prompt + completion tokens a reply may use by default (the context meter's scale).
    pub fn max_length(&self) -> Option<usize> {
        let facts = self.facts()?;
        Some(self.defaults.as_ref().and_then(|d| d.max_length).unwrap_or(facts.default_max_length))
    }

    /// The model's defaults as shown next to the chat settings.
    pub fn effective_search(&self) -> Option<SearchOptions> {
        let facts = self.facts()?;
        Some(effective_search(&facts.search, self.defaults.as_ref()?))
    }

    /// The options a request with the user's `overrides` runs with.
    pub fn request_options(&self, overrides: &GenerateOptions) -> GenerateOptions {
        request_options(&self.defaults.clone().unwrap_or_default(), overrides)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn options(value: Value) -> Result<GenerateOptions, SessionError> {
        let Value::Object(map) = value else { unreachable!("tests pass objects") };
        model_config_options(&map, Path::new("pkg/MLmodel"))
    }

    #[test]
    fn model_config_sets_only_the_search_keys_it_has() {
        let parsed = options(json!({"task": "chat", "temperature": 0.5, "top_k": 7, "do_sample": true, "top_p": null})).unwrap();
        assert_eq!(parsed.temperature, Some(0.5));
        assert_eq!(parsed.top_k, Some(7));
        assert_eq!(parsed.do_sample, Some(true));
        assert_eq!(parsed.top_p, None, "null leaves the key to genai_config.json");
        assert_eq!(parsed.max_length, None);
    }

    #[test]
    fn a_wrong_type_names_the_key_and_file() {
        let error = options(json!({"top_k": "five"})).unwrap_err().to_string();
        assert!(error.contains("model_config.top_k") && error.contains("pkg/MLmodel") && error.contains("\"five\""), "{error}");
        assert!(options(json!({"temperature": "hot"})).is_err());
        assert!(options(json!({"do_sample": 1})).is_err());
    }

    #[test]
    fn user_overrides_win_over_model_config_which_wins_over_genai_config() {
        let model = options(json!({"temperature": 0.5, "top_k": 7})).unwrap();
        let user = GenerateOptions { temperature: Some(0.9), ..GenerateOptions::default() };
        let request = request_options(&model, &user);
        assert_eq!((request.temperature, request.top_k), (Some(0.9), Some(7)));
        let genai = SearchOptions { temperature: 1.0, top_k: 50, top_p: 0.3, ..SearchOptions::default() };
        let shown = effective_search(&genai, &model);
        assert_eq!((shown.temperature, shown.top_k, shown.top_p), (0.5, 7, 0.3));
    }

    #[test]
    fn the_wrapper_reads_the_same_keys() {
        let wrapper = include_str!("../assets/mlflow/phi3_onnx_model.py");
        let line = wrapper.lines().find(|l| l.starts_with("SEARCH_KEYS")).expect("the wrapper defines SEARCH_KEYS");
        let keys: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
        assert_eq!(keys, MODEL_CONFIG_SEARCH_KEYS, "the wrapper and the resolver must honour the same model_config keys");
    }
}
