//! `genai_config.json`: the model folder's description as onnxruntime-genai reads it.
//!
//! Defaults are onnxruntime-genai's (`src/config.h`). Unlike onnxruntime-genai, which rejects
//! unknown keys, this parser keeps going and reports each unknown key as a warning with its path,
//! so a folder written by a newer builder still opens.

use std::{collections::BTreeMap, path::Path};

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error(transparent)]
    File(#[from] crate::fsio::ReadError),
    #[error("{path} is not valid JSON: {error}")]
    Json { path: String, error: serde_json::Error },
    #[error("{path}: `{key}` {problem}")]
    Invalid { path: String, key: String, problem: String },
}

/// `eos_token_id` is an int or a list of ints.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    One(i64),
    Many(Vec<i64>),
}

impl TokenIds {
    pub fn to_vec(&self) -> Vec<i64> {
        match self {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SessionOptions {
    pub log_id: Option<String>,
    /// `[{"cuda": {"enable_cuda_graph": "0"}}, …]`: execution providers in order of preference.
    pub provider_options: Vec<BTreeMap<String, BTreeMap<String, String>>>,
    pub intra_op_num_threads: Option<usize>,
    pub inter_op_num_threads: Option<usize>,
    pub enable_cpu_mem_arena: Option<bool>,
    pub enable_mem_pattern: Option<bool>,
    pub graph_optimization_level: Option<String>,
    pub log_severity_level: Option<i64>,
    pub custom_ops_library: Option<String>,
    /// Read only to say it is not honoured (see `DecoderSettings::ort_profile`).
    pub enable_profiling: Option<serde_json::Value>,
    /// ONNX Runtime session config entries (`{"session.intra_op.allow_spinning": "0"}`), applied
    /// as onnxruntime-genai applies them.
    pub config_entries: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DecoderInputs {
    pub input_ids: String,
    pub attention_mask: String,
    pub position_ids: String,
    pub past_key_names: String,
    pub past_value_names: String,
}

impl Default for DecoderInputs {
    fn default() -> Self {
        Self {
            input_ids: "input_ids".into(),
            attention_mask: "attention_mask".into(),
            position_ids: "position_ids".into(),
            past_key_names: "past_key_values.%d.key".into(),
            past_value_names: "past_key_values.%d.value".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DecoderOutputs {
    pub logits: String,
    pub present_key_names: String,
    pub present_value_names: String,
}

impl Default for DecoderOutputs {
    fn default() -> Self {
        Self {
            logits: "logits".into(),
            present_key_names: "present.%d.key".into(),
            present_value_names: "present.%d.value".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Decoder {
    pub filename: String,
    #[serde(default)]
    pub session_options: SessionOptions,
    #[serde(default)]
    pub head_size: Option<usize>,
    #[serde(default)]
    pub hidden_size: Option<usize>,
    #[serde(default)]
    pub num_attention_heads: Option<usize>,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub num_hidden_layers: Option<usize>,
    #[serde(default)]
    pub inputs: DecoderInputs,
    #[serde(default)]
    pub outputs: DecoderOutputs,
    #[serde(default)]
    pub sliding_window: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ModelSection {
    #[serde(rename = "type")]
    pub model_type: String,
    #[serde(default)]
    pub bos_token_id: Option<i64>,
    #[serde(default)]
    pub eos_token_id: Option<TokenIds>,
    #[serde(default)]
    pub pad_token_id: Option<i64>,
    pub vocab_size: usize,
    pub context_length: usize,
    pub decoder: Decoder,
}

/// The `search` section with onnxruntime-genai's defaults.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(default)]
pub struct SearchOptions {
    pub do_sample: bool,
    pub min_length: usize,
    pub max_length: usize,
    pub batch_size: usize,
    pub num_beams: usize,
    pub num_return_sequences: usize,
    pub repetition_penalty: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub temperature: f32,
    pub early_stopping: bool,
    pub no_repeat_ngram_size: usize,
    pub length_penalty: f32,
    pub diversity_penalty: f32,
    pub past_present_share_buffer: bool,
    pub random_seed: i64,
    pub chunk_size: Option<usize>,
}

impl Default for SearchOptions {
    fn default() -> Self {
        Self {
            do_sample: false,
            min_length: 0,
            max_length: 0,
            batch_size: 1,
            num_beams: 1,
            num_return_sequences: 1,
            repetition_penalty: 1.0,
            top_k: 50,
            top_p: 0.0,
            temperature: 1.0,
            early_stopping: true,
            no_repeat_ngram_size: 0,
            length_penalty: 1.0,
            diversity_penalty: 0.0,
            past_present_share_buffer: false,
            random_seed: -1,
            chunk_size: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct GenaiConfig {
    pub model: ModelSection,
    #[serde(default)]
    pub search: SearchOptions,
}

/// A parsed config plus what was odd about it.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: GenaiConfig,
    pub warnings: Vec<String>,
}

/// Keys onnxruntime-genai 0.18 understands, per section; anything else is reported.
const KNOWN_KEYS: &[(&str, &[&str])] = &[
    ("", &["model", "search", "engine"]),
    (
        "model",
        &[
            "type", "bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id",
            "vocab_size", "context_length", "decoder", "encoder", "embedding", "vision", "speech", "prompt_templates",
            "image_token_id", "video_token_id", "vision_start_token_id",
        ],
    ),
    (
        "model.decoder",
        &[
            "filename", "session_options", "head_size", "hidden_size", "num_attention_heads", "num_key_value_heads",
            "num_hidden_layers", "inputs", "outputs", "sliding_window", "pipeline", "run_options",
        ],
    ),
    (
        "model.decoder.session_options",
        &[
            "log_id", "provider_options", "intra_op_num_threads", "inter_op_num_threads", "enable_cpu_mem_arena",
            "enable_mem_pattern", "graph_optimization_level", "log_severity_level", "custom_ops_library",
            "enable_profiling", "disable_cpu_ep_fallback", "disable_quant_qdq", "enable_quant_qdq_cleanup",
            "ep_context_enable", "ep_context_embed_mode", "ep_context_file_path", "use_env_allocators", "config_entries",
        ],
    ),
    (
        "model.decoder.inputs",
        &[
            "input_ids", "attention_mask", "position_ids", "past_key_names", "past_value_names", "past_names",
            "inputs_embeds", "past_sequence_length", "current_sequence_length", "total_sequence_length",
            "cache_indirection", "encoder_hidden_states", "encoder_attention_mask", "rnn_states_prev",
        ],
    ),
    (
        "model.decoder.outputs",
        &["logits", "present_key_names", "present_value_names", "present_names", "output_cross_qk_names", "rnn_states"],
    ),
    (
        "search",
        &[
            "do_sample", "min_length", "max_length", "batch_size", "num_beams", "num_return_sequences",
            "repetition_penalty", "top_k", "top_p", "temperature", "early_stopping", "no_repeat_ngram_size",
            "length_penalty", "diversity_penalty", "past_present_share_buffer", "random_seed", "chunk_size",
        ],
    ),
];

impl GenaiConfig {
    /// Reads and checks `genai_config.json` (a regular file of at most
    /// [`crate::fsio::CONFIG_LIMIT`] bytes).
    pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
        let text = crate::fsio::read_text(path, crate::fsio::CONFIG_LIMIT)?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses the text of a `genai_config.json`; `origin` names it in messages.
    pub fn parse(text: &str, origin: &str) -> Result<LoadedConfig, ConfigError> {
        let raw: Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
            .map_err(|error| ConfigError::Json { path: origin.to_owned(), error })?;
        let mut warnings = Vec::new();
        collect_unknown_keys(&raw, "", &mut warnings);
        let config: GenaiConfig = serde_path_to_error::deserialize(&raw).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Invalid { path: origin.to_owned(), key, problem: e.into_inner().to_string() }
        })?;
        let invalid = |key: &str, problem: String| ConfigError::Invalid {
            path: origin.to_owned(),
            key: key.to_owned(),
            problem,
        };
        let model = &config.model;
        check_ranges(&config).map_err(|(key, problem)| invalid(&key, problem))?;
        for id in config.eos_token_ids() {
            if id < 0 || id as usize >= model.vocab_size {
                return Err(invalid(
                    "model.eos_token_id",
                    format!("{id} is outside the vocabulary (vocab_size {})", model.vocab_size),
                ));
            }
        }
        if model.decoder.filename.trim().is_empty() {
            return Err(invalid("model.decoder.filename", "is empty".into()));
        }
        if config.search.num_beams > 1 {
            warnings.push(format!(
                "{origin}: search.num_beams is {}; ModelDesk runs greedy or sampling search with one beam",
                config.search.num_beams
            ));
        }
        if model.model_type != "phi3" {
            warnings.push(format!(
                "{origin}: model.type is \"{}\"; ModelDesk is built and tested for \"phi3\" decoders",
                model.model_type
            ));
        }
        Ok(LoadedConfig { config, warnings })
    }

    /// The EOS ids; onnxruntime-genai falls back to the pad token when none is given.
    pub fn eos_token_ids(&self) -> Vec<i64> {
        match (&self.model.eos_token_id, self.model.pad_token_id) {
            (Some(ids), _) => ids.to_vec(),
            (None, Some(pad)) => vec![pad],
            (None, None) => Vec::new(),
        }
    }

    /// The pad token (the first EOS id when absent, as onnxruntime-genai does).
    pub fn pad_token_id(&self) -> Option<i64> {
        self.model.pad_token_id.or_else(|| self.eos_token_ids().first().copied())
    }

    /// `search.max_length`, where 0 or absent means the context length.
    pub fn default_max_length(&self) -> usize {
        if self.search.max_length == 0 { self.model.context_length } else { self.search.max_length }
    }
}

/// Largest context length accepted (16 M tokens; the largest Phi models have 128 K).
pub const MAX_CONTEXT_LENGTH: usize = 1 << 24;
/// Largest vocabulary accepted (token ids are 32-bit in the tokenizer).
pub const MAX_VOCAB_SIZE: usize = 1 << 24;
/// Largest head count, head size and layer count accepted.
pub const MAX_HEADS: usize = 1 << 12;
pub const MAX_HEAD_SIZE: usize = 1 << 12;
pub const MAX_LAYERS: usize = 1 << 12;
pub const MAX_HIDDEN_SIZE: usize = 1 << 20;
/// Most threads a session may ask for.
pub const MAX_THREADS: usize = 1024;

/// `graph_optimization_level` as onnxruntime-genai spells it.
const OPTIMIZATION_LEVELS: [(&str, ort::session::builder::GraphOptimizationLevel); 5] = {
    use ort::session::builder::GraphOptimizationLevel as Level;
    [
        ("ORT_DISABLE_ALL", Level::Disable),
        ("ORT_ENABLE_BASIC", Level::Level1),
        ("ORT_ENABLE_EXTENDED", Level::Level2),
        ("ORT_ENABLE_LAYOUT", Level::Level3),
        ("ORT_ENABLE_ALL", Level::All),
    ]
};

/// The ONNX Runtime level a `graph_optimization_level` value names.
pub fn optimization_level(name: &str) -> Option<ort::session::builder::GraphOptimizationLevel> {
    OPTIMIZATION_LEVELS.iter().find(|(known, _)| *known == name).map(|(_, level)| *level)
}

fn in_range(key: &str, value: usize, min: usize, max: usize) -> Result<(), (String, String)> {
    if value < min || value > max {
        return Err((key.to_owned(), format!("is {value}; it must be between {min} and {max}")));
    }
    Ok(())
}

/// Every number that sizes or divides something, checked before anything uses it; the error
/// names the key.
fn check_ranges(config: &GenaiConfig) -> Result<(), (String, String)> {
    let model = &config.model;
    in_range("model.context_length", model.context_length, 1, MAX_CONTEXT_LENGTH)?;
    in_range("model.vocab_size", model.vocab_size, 1, MAX_VOCAB_SIZE)?;
    let decoder = &model.decoder;
    let optional = [
        ("model.decoder.head_size", decoder.head_size, MAX_HEAD_SIZE),
        ("model.decoder.hidden_size", decoder.hidden_size, MAX_HIDDEN_SIZE),
        ("model.decoder.num_attention_heads", decoder.num_attention_heads, MAX_HEADS),
        ("model.decoder.num_key_value_heads", decoder.num_key_value_heads, MAX_HEADS),
        ("model.decoder.num_hidden_layers", decoder.num_hidden_layers, MAX_LAYERS),
    ];
    for (key, value, max) in optional {
        if let Some(value) = value {
            in_range(key, value, 1, max)?;
        }
    }
    if let (Some(heads), Some(kv_heads)) = (decoder.num_attention_heads, decoder.num_key_value_heads) {
        if kv_heads > heads || heads % kv_heads != 0 {
            return Err((
                "model.decoder.num_key_value_heads".into(),
                format!("is {kv_heads}; it must divide num_attention_heads ({heads})"),
            ));
        }
    }
    let threads = &decoder.session_options;
    for (key, value) in [
        ("model.decoder.session_options.intra_op_num_threads", threads.intra_op_num_threads),
        ("model.decoder.session_options.inter_op_num_threads", threads.inter_op_num_threads),
    ] {
        if let Some(value) = value {
            in_range(key, value, 0, MAX_THREADS)?;
        }
    }
    if let Some(level) = &threads.graph_optimization_level {
        if optimization_level(level).is_none() {
            return Err((
                "model.decoder.session_options.graph_optimization_level".into(),
                format!("is \"{level}\"; expected one of {}", OPTIMIZATION_LEVELS.map(|(name, _)| name).join(", ")),
            ));
        }
    }
    config.search.check("search", model.context_length)
}

impl SearchOptions {
    /// Checks the values that steer generation (`prefix` names the section in messages, e.g.
    /// `search` or `model_config`): lengths within the context, probabilities within 0..=1,
    /// temperature and penalties finite and positive. Callers that take these values from a user
    /// (settings, command line, an MLflow package's model_config) check them the same way.
    pub fn check(&self, prefix: &str, context_length: usize) -> Result<(), (String, String)> {
        let key = |name: &str| format!("{prefix}.{name}");
        if self.max_length > context_length {
            return Err((key("max_length"), format!("is {} but the model's context_length is {context_length}", self.max_length)));
        }
        in_range(&key("min_length"), self.min_length, 0, context_length)?;
        in_range(&key("batch_size"), self.batch_size, 1, 1 << 10)?;
        in_range(&key("num_beams"), self.num_beams, 1, 1 << 10)?;
        in_range(&key("num_return_sequences"), self.num_return_sequences, 1, 1 << 10)?;
        in_range(&key("no_repeat_ngram_size"), self.no_repeat_ngram_size, 0, context_length)?;
        in_range(&key("top_k"), self.top_k, 0, MAX_VOCAB_SIZE)?;
        if let Some(chunk) = self.chunk_size {
            in_range(&key("chunk_size"), chunk, 1, context_length)?;
        }
        let unit = |name: &str, value: f32| {
            if (0.0..=1.0).contains(&value) { Ok(()) } else { Err((key(name), format!("is {value}; it must be between 0 and 1"))) }
        };
        unit("top_p", self.top_p)?;
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err((key("temperature"), format!("is {}; it must be a number ≥ 0", self.temperature)));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return Err((key("repetition_penalty"), format!("is {}; it must be a number > 0 (1 means no penalty)", self.repetition_penalty)));
        }
        for (name, value) in [("length_penalty", self.length_penalty), ("diversity_penalty", self.diversity_penalty)] {
            if !value.is_finite() {
                return Err((key(name), format!("is {value}; it must be a finite number")));
            }
        }
        Ok(())
    }
}

fn collect_unknown_keys(value: &Value, path: &str, warnings: &mut Vec<String>) {
    let Value::Object(map) = value else { return };
    let Some((_, known)) = KNOWN_KEYS.iter().find(|(section, _)| *section == path) else { return };
    for (key, child) in map {
        let child_path = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
        if known.contains(&key.as_str()) {
            collect_unknown_keys(child, &child_path, warnings);
        } else {
            warnings.push(format!("unknown key `{child_path}` ignored"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal(extra_model: &str, search: &str) -> String {
        format!(
            r#"{{"model": {{"type": "phi3", "vocab_size": 100, "context_length": 64, {extra_model}
                 "decoder": {{"filename": "model.onnx"}}}}, "search": {{{search}}}}}"#
        )
    }

    #[test]
    fn eos_may_be_an_int_or_a_list_and_falls_back_to_pad() {
        let one = GenaiConfig::parse(&minimal(r#""eos_token_id": 7, "pad_token_id": 9,"#, ""), "x").unwrap();
        assert_eq!(one.config.eos_token_ids(), vec![7]);
        let many = GenaiConfig::parse(&minimal(r#""eos_token_id": [7, 8],"#, ""), "x").unwrap();
        assert_eq!(many.config.eos_token_ids(), vec![7, 8]);
        let pad_only = GenaiConfig::parse(&minimal(r#""pad_token_id": 9,"#, ""), "x").unwrap();
        assert_eq!(pad_only.config.eos_token_ids(), vec![9]);
    }

    #[test]
    fn max_length_zero_or_absent_means_context_length() {
        let absent = GenaiConfig::parse(&minimal("", ""), "x").unwrap();
        assert_eq!(absent.config.default_max_length(), 64);
        let zero = GenaiConfig::parse(&minimal("", r#""max_length": 0"#), "x").unwrap();
        assert_eq!(zero.config.default_max_length(), 64);
        let set = GenaiConfig::parse(&minimal("", r#""max_length": 32"#), "x").unwrap();
        assert_eq!(set.config.default_max_length(), 32);
    }

    #[test]
    fn search_defaults_are_onnxruntime_genais() {
        let parsed = GenaiConfig::parse(&minimal("", ""), "x").unwrap().config.search;
        assert_eq!(parsed.top_k, 50);
        assert_eq!(parsed.top_p, 0.0);
        assert_eq!(parsed.temperature, 1.0);
        assert_eq!(parsed.random_seed, -1);
        assert!(!parsed.do_sample && !parsed.past_present_share_buffer);
    }

    #[test]
    fn unknown_keys_are_warnings_with_their_path() {
        let loaded = GenaiConfig::parse(&minimal(r#""shiny_new_key": 1,"#, r#""turbo": true"#), "x").unwrap();
        assert!(loaded.warnings.iter().any(|w| w.contains("model.shiny_new_key")), "{:?}", loaded.warnings);
        assert!(loaded.warnings.iter().any(|w| w.contains("search.turbo")), "{:?}", loaded.warnings);
    }

    #[test]
    fn bad_values_name_the_key() {
        let too_long = GenaiConfig::parse(&minimal("", r#""max_length": 65"#), "cfg.json").unwrap_err();
        assert!(too_long.to_string().contains("search.max_length"), "{too_long}");
        let bad_eos = GenaiConfig::parse(&minimal(r#""eos_token_id": 100,"#, ""), "cfg.json").unwrap_err();
        assert!(bad_eos.to_string().contains("model.eos_token_id"), "{bad_eos}");
        let wrong_type = GenaiConfig::parse(&minimal("", r#""top_k": "many""#), "cfg.json").unwrap_err();
        assert!(wrong_type.to_string().contains("search.top_k"), "{wrong_type}");
        let missing = GenaiConfig::parse(r#"{"model": {"type": "phi3"}}"#, "cfg.json").unwrap_err();
        assert!(missing.to_string().contains("cfg.json"), "{missing}");
    }

    #[test]
    fn sizes_that_divide_or_allocate_are_range_checked() {
        let with_decoder = |decoder: &str| {
            minimal("", "").replace(r#""filename": "model.onnx""#, &format!(r#""filename": "model.onnx", {decoder}"#))
        };
        for (decoder, key) in [
            (r#""num_attention_heads": 0"#, "model.decoder.num_attention_heads"),
            (r#""head_size": 0"#, "model.decoder.head_size"),
            (r#""num_attention_heads": 32, "num_key_value_heads": 5"#, "model.decoder.num_key_value_heads"),
            (r#""session_options": {"intra_op_num_threads": 100000}"#, "intra_op_num_threads"),
        ] {
            let error = GenaiConfig::parse(&with_decoder(decoder), "cfg.json").unwrap_err().to_string();
            assert!(error.contains(key), "{decoder}: {error}");
        }
        let zero_context = minimal("", "").replace(r#""context_length": 64"#, r#""context_length": 0"#);
        assert!(GenaiConfig::parse(&zero_context, "x").unwrap_err().to_string().contains("model.context_length"));
        let huge = GenaiConfig::parse(&minimal("", r#""max_length": 1000000000000"#), "x").unwrap_err().to_string();
        assert!(huge.contains("search.max_length"), "{huge}");
        for search in [r#""repetition_penalty": 0"#, r#""top_p": 1.5"#, r#""temperature": -1"#] {
            let error = GenaiConfig::parse(&minimal("", search), "x").unwrap_err().to_string();
            let key = search.split('"').nth(1).unwrap();
            assert!(error.contains(&format!("search.{key}")), "{search}: {error}");
        }
        let mut nan = GenaiConfig::parse(&minimal("", ""), "x").unwrap().config.search;
        nan.repetition_penalty = f32::NAN;
        assert_eq!(nan.check("model_config", 64).unwrap_err().0, "model_config.repetition_penalty");
    }

    #[test]
    fn provider_options_parse() {
        let text = minimal("", "").replace(
            r#""filename": "model.onnx""#,
            r#""filename": "model.onnx", "session_options": {"provider_options": [{"cuda": {"enable_cuda_graph": "0"}}]}"#,
        );
        let parsed = GenaiConfig::parse(&text, "x").unwrap().config;
        let providers = &parsed.model.decoder.session_options.provider_options;
        assert_eq!(providers[0]["cuda"]["enable_cuda_graph"], "0");
    }
}
