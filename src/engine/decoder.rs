//! The decoder session: ONNX Runtime session creation from a model folder, I/O discovery, and one
//! forward step with the KV cache kept in ONNX Runtime buffers.
//!
//! Two KV modes, bitwise equal on GroupQueryAttention graphs (see the contract, §0 and §5):
//! * **Shared** (default): each layer's key and value live in one tensor bound both as
//!   `past_key_values.N.*` and `present.N.*` through IoBinding, so GQA appends in place and nothing
//!   is copied per step. Unlike onnxruntime-genai, which reserves `max_length` rows up front
//!   (3 GiB for Phi-3-mini at 4096), the buffers start at the prompt's size rounded up to a chunk
//!   and grow by chunks, so a short chat uses little memory.
//! * **Growing**: past = previous present, a fresh present each step. Kept for graphs whose
//!   attention cannot write into a shared buffer.

use std::{collections::BTreeSet, path::PathBuf, sync::Arc, time::Instant};

use half::f16;
use ort::{
    memory::Allocator,
    session::{
        RunOptions, Session, SessionInputValue,
        builder::{GraphOptimizationLevel, SessionBuilder},
    },
    value::{DynValue, Tensor, TensorElementType, ValueType},
};

pub use super::kv_cache::{KV_CHUNK_TOKENS, KvCache};
use super::{
    folder::ModelFolder,
    kv_cache::{KvElement, ensure_capacity},
};
use crate::runtime::Runtime;

#[derive(Debug, thiserror::Error)]
pub enum DecoderError {
    #[error("ONNX Runtime could not open {path}: {message}")]
    Session { path: PathBuf, message: String },
    #[error("the decoder graph does not match genai_config.json: {0}")]
    Contract(String),
    #[error("ONNX Runtime failed while running the model: {0}")]
    Run(String),
    #[error("stopped")]
    Cancelled,
}

pub(super) fn run_error(error: ort::Error) -> DecoderError {
    DecoderError::Run(error.to_string())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ElementType {
    F32,
    F16,
}

/// How the KV cache is kept between steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvMode {
    #[default]
    Shared,
    Growing,
}

/// Session settings a caller may choose.
#[derive(Debug, Clone, Default)]
pub struct DecoderSettings {
    /// Intra-op threads; `None` = the config's value, else all physical cores.
    pub intra_threads: Option<usize>,
    pub kv_mode: KvMode,
    /// Whether idle intra-op threads spin while waiting for work (ONNX Runtime's default, and so
    /// onnxruntime-genai's) instead of sleeping; `None` = the folder's
    /// `session.intra_op.allow_spinning` config entry, else [`SPINNING_BY_DEFAULT`].
    pub thread_spinning: Option<bool>,
    /// Where ONNX Runtime writes its profile of every run (a file name prefix; the file is
    /// `<prefix>_<date>.json`, written by [`Decoder::end_profiling`]). Only a caller's choice:
    /// genai_config.json's `enable_profiling` is not honoured, so opening a folder never writes
    /// files outside it.
    pub ort_profile: Option<std::path::PathBuf>,
}

/// ModelDesk lets idle intra-op threads sleep. Spinning saves a thread's wake-up at each of a
/// decode step's parallel sections (a few microseconds each) on an idle machine, but a spinning
/// thread holds its core: when other programs want the CPU (a browser, a build, the window's own
/// drawing) the spinners take time slices from the thread that has work, and decode slowed by
/// about a quarter in alternating runs on a busy 2-core machine (see README, Performance).
pub const SPINNING_BY_DEFAULT: bool = false;

/// The ONNX Runtime session option that decides [`DecoderSettings::thread_spinning`].
const SPINNING_KEY: &str = "session.intra_op.allow_spinning";

/// What the graph looks like, discovered from the session.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DecoderIo {
    pub input_ids: String,
    pub attention_mask: String,
    pub position_ids: Option<String>,
    pub past_keys: Vec<String>,
    pub past_values: Vec<String>,
    pub present_keys: Vec<String>,
    pub present_values: Vec<String>,
    pub logits: String,
    pub kv_heads: usize,
    pub head_size: usize,
    pub kv_type: ElementType,
    pub logits_type: ElementType,
    pub vocab_size: usize,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
}

impl DecoderIo {
    pub fn layers(&self) -> usize {
        self.past_keys.len()
    }
}

/// Facts shown to the user about a loaded session.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionFacts {
    pub execution_providers: Vec<String>,
    pub intra_threads: usize,
    /// Whether idle intra-op threads spin (see [`DecoderSettings::thread_spinning`]).
    pub thread_spinning: bool,
    pub warnings: Vec<String>,
}

pub struct Decoder {
    session: Session,
    pub io: DecoderIo,
    pub facts: SessionFacts,
    run_options: Arc<RunOptions>,
}

fn element_type(ty: &ValueType, what: &str) -> Result<ElementType, DecoderError> {
    match ty {
        ValueType::Tensor { ty: TensorElementType::Float32, .. } => Ok(ElementType::F32),
        ValueType::Tensor { ty: TensorElementType::Float16, .. } => Ok(ElementType::F16),
        other => Err(DecoderError::Contract(format!("{what} has type {other:?}; expected float32 or float16 tensors"))),
    }
}

/// The default thread count: all physical cores.
pub fn default_intra_threads() -> usize {
    num_cpus::get_physical().max(1)
}

impl Decoder {
    /// Creates the session for a model folder.
    pub fn load(runtime: &Runtime, folder: &ModelFolder, settings: &DecoderSettings) -> Result<Self, DecoderError> {
        let options = &folder.config.model.decoder.session_options;
        let threads = settings.intra_threads.or(options.intra_op_num_threads).unwrap_or_else(default_intra_threads);
        let session_error =
            |message: String| DecoderError::Session { path: folder.decoder.clone(), message };
        // A builder step's error hands the builder back; only its message is kept.
        let option_error = |e: ort::Error<SessionBuilder>| session_error(ort::Error::<()>::from(e).to_string());
        let (providers, mut warnings) = execution_providers(&options.provider_options);
        let mut builder = Session::builder(runtime.environment()).map_err(|e| session_error(e.to_string()))?;
        // The folder's own choices, as onnxruntime-genai applies them (the level was checked when
        // the config was read).
        let level = options.graph_optimization_level.as_deref().and_then(super::config::optimization_level);
        builder = builder
            .with_intra_threads(threads)
            .and_then(|b| b.with_optimization_level(level.unwrap_or(GraphOptimizationLevel::All)))
            .map_err(option_error)?;
        if let Some(inter) = options.inter_op_num_threads {
            builder = builder.with_inter_threads(inter).map_err(option_error)?;
        }
        if options.enable_mem_pattern == Some(false) {
            builder = builder.with_memory_pattern(false).map_err(option_error)?;
        }
        warnings.extend(unapplied_session_options(options));
        // The folder's own config entries, as onnxruntime-genai applies them, then spinning.
        let from_config = options.config_entries.get(SPINNING_KEY).map(|value| value != "0");
        let spinning = settings.thread_spinning.or(from_config).unwrap_or(SPINNING_BY_DEFAULT);
        for (key, value) in options.config_entries.iter().filter(|(key, _)| key.as_str() != SPINNING_KEY) {
            builder = builder.with_config_entry(key, value).map_err(|e| {
                session_error(format!("session option `{key}` from genai_config.json: {}", ort::Error::<()>::from(e)))
            })?;
        }
        builder = builder.with_intra_op_spinning(spinning).map_err(option_error)?;
        if let Some(prefix) = &settings.ort_profile {
            builder = builder.with_profiling(prefix).map_err(option_error)?;
        }
        if !providers.is_empty() {
            builder = builder
                .with_execution_providers(providers.iter().map(|(_, ep)| ep.clone()).collect::<Vec<_>>())
                .map_err(option_error)?;
        }
        let session = builder.commit_from_file(&folder.decoder).map_err(|e| session_error(e.to_string()))?;
        let io = discover_io(&session, folder)?;
        let mut execution_providers: Vec<String> = providers.into_iter().map(|(name, _)| name).collect();
        execution_providers.push("CPUExecutionProvider".into());
        warnings.extend(folder.warnings.iter().cloned());
        let run_options = Arc::new(RunOptions::new().map_err(|e| session_error(e.to_string()))?);
        let facts = SessionFacts { execution_providers, intra_threads: threads, thread_spinning: spinning, warnings };
        Ok(Self { session, io, facts, run_options })
    }

    /// Ends ONNX Runtime's profiling (see [`DecoderSettings::ort_profile`]) and returns the file
    /// it wrote.
    pub fn end_profiling(&mut self) -> Result<String, DecoderError> {
        self.session.end_profiling().map_err(run_error)
    }

    /// Grows a shared-mode cache's buffers to hold `rows` rows now (at most `capacity_hint`, by
    /// the same chunked, at-least-doubling rule a step uses), copying the rows it holds, so the
    /// step that needs them later does not wait for it. A growing-mode cache has nothing to
    /// reserve. Returns whether buffers were made.
    pub fn reserve(&self, cache: &mut KvCache, rows: usize, capacity_hint: usize) -> Result<bool, DecoderError> {
        if cache.mode != KvMode::Shared {
            return Ok(false);
        }
        self.check_cache_type(cache)?;
        let (held, rows) = (cache.len(), rows.min(capacity_hint));
        let grown = match self.io.kv_type {
            ElementType::F32 => ensure_capacity::<f32>(f32::shared_buffers(&mut cache.storage), &self.io, held, rows, capacity_hint)?,
            ElementType::F16 => ensure_capacity::<f16>(f16::shared_buffers(&mut cache.storage), &self.io, held, rows, capacity_hint)?,
        };
        if grown {
            // The binding names the old buffers; the next step binds the new ones.
            cache.binding = None;
        }
        Ok(grown)
    }

    fn check_cache_type(&self, cache: &KvCache) -> Result<(), DecoderError> {
        if cache.kv_type != self.io.kv_type {
            return Err(DecoderError::Contract("a KV cache made for another model was passed to this decoder".into()));
        }
        Ok(())
    }

    /// A handle that stops a running step from another thread.
    pub fn canceller(&self) -> Canceller {
        Canceller(Arc::clone(&self.run_options))
    }

    /// Clears a previous cancellation so the next run proceeds.
    pub fn reset_cancel(&self) -> Result<(), DecoderError> {
        self.run_options.unterminate().map_err(run_error)
    }

    /// Empty caches for a new sequence.
    pub fn new_cache(&self, mode: KvMode) -> KvCache {
        KvCache::new(mode, self.io.kv_type)
    }

    /// Runs the model on `new_ids` appended to the cache; returns the logits rows (one per new
    /// token) as f32. On success the cache holds `new_ids` too; on failure it holds what it held
    /// before (in shared mode rows past that may have been written, and are written over later).
    pub fn step(&mut self, cache: &mut KvCache, new_ids: &[i64], capacity_hint: usize) -> Result<Logits, DecoderError> {
        self.step_rows(cache, new_ids, capacity_hint, None)
    }

    /// Like [`Self::step`], but copies out only logits row `row` (the generation loop needs one
    /// row; a prefill's full logits are `prompt × vocab` floats).
    pub fn step_row(&mut self, cache: &mut KvCache, new_ids: &[i64], capacity_hint: usize, row: usize) -> Result<Logits, DecoderError> {
        self.step_rows(cache, new_ids, capacity_hint, Some(row))
    }

    fn step_rows(&mut self, cache: &mut KvCache, new_ids: &[i64], capacity_hint: usize, row: Option<usize>) -> Result<Logits, DecoderError> {
        match self.io.kv_type {
            ElementType::F32 => self.step_typed::<f32>(cache, new_ids, capacity_hint, row),
            ElementType::F16 => self.step_typed::<f16>(cache, new_ids, capacity_hint, row),
        }
    }

    fn step_typed<T: KvElement>(
        &mut self,
        cache: &mut KvCache,
        new_ids: &[i64],
        capacity_hint: usize,
        row: Option<usize>,
    ) -> Result<Logits, DecoderError> {
        self.check_cache_type(cache)?;
        let past_len = cache.len();
        let total = past_len + new_ids.len();
        let ids = Tensor::from_array(([1usize, new_ids.len()], new_ids.to_vec())).map_err(run_error)?;
        let mask = Tensor::from_array(([1usize, total], vec![1i64; total])).map_err(run_error)?;
        let positions = match &self.io.position_ids {
            Some(_) => Some(
                Tensor::from_array(([1usize, new_ids.len()], (past_len as i64..total as i64).collect::<Vec<_>>()))
                    .map_err(run_error)?,
            ),
            None => None,
        };
        let rows = match row {
            Some(index) if index < new_ids.len() => index..index + 1,
            Some(index) => return Err(DecoderError::Contract(format!("logits row {index} of {} requested", new_ids.len()))),
            None => 0..new_ids.len(),
        };
        let started = Instant::now();
        let run_elapsed;
        let logits = match cache.mode {
            KvMode::Shared => {
                let grown = ensure_capacity::<T>(T::shared_buffers(&mut cache.storage), &self.io, past_len, total, capacity_hint)?;
                // One binding per sequence: the KV buffers are bound once (again only after they
                // grow); each step rebinds just the small inputs and the logits output.
                if cache.binding.is_none() || grown {
                    let mut binding = self.session.create_binding().map_err(run_error)?;
                    let layers = self.io.layers();
                    for (index, buffer) in T::shared_buffers(&mut cache.storage).iter_mut().enumerate() {
                        let layer = index % layers;
                        let (past, present) = if index < layers {
                            (&self.io.past_keys[layer], &self.io.present_keys[layer])
                        } else {
                            (&self.io.past_values[layer], &self.io.present_values[layer])
                        };
                        binding.bind_input(past, &*buffer).map_err(run_error)?;
                        binding.bind_output(present, &mut *buffer).map_err(run_error)?;
                    }
                    cache.binding = Some(binding);
                    cache.logits_bound_rows = 0;
                }
                let Some(binding) = cache.binding.as_mut() else { unreachable!("binding created above") };
                binding.bind_input(&self.io.input_ids, &ids).map_err(run_error)?;
                binding.bind_input(&self.io.attention_mask, &mask).map_err(run_error)?;
                if let (Some(name), Some(positions)) = (&self.io.position_ids, &positions) {
                    binding.bind_input(name, positions).map_err(run_error)?;
                }
                // Decode steps write their one logits row into a tensor allocated once.
                if new_ids.len() == 1 {
                    if cache.logits_bound_rows != 1 {
                        let allocator = Allocator::default();
                        let shape = [1usize, 1, self.io.vocab_size];
                        match self.io.logits_type {
                            ElementType::F32 => binding
                                .bind_output(&self.io.logits, Tensor::<f32>::new(&allocator, shape).map_err(run_error)?)
                                .map_err(run_error)?,
                            ElementType::F16 => binding
                                .bind_output(&self.io.logits, Tensor::<f16>::new(&allocator, shape).map_err(run_error)?)
                                .map_err(run_error)?,
                        }
                        cache.logits_bound_rows = 1;
                    }
                } else {
                    binding
                        .bind_output_to_device(&self.io.logits, &self.session.allocator().memory_info())
                        .map_err(run_error)?;
                    cache.logits_bound_rows = 0;
                }
                let run_started = Instant::now();
                let outputs = self.session.run_binding_with_options(binding, &self.run_options).map_err(classify)?;
                run_elapsed = run_started.elapsed();
                extract_logits(&outputs[self.io.logits.as_str()], self.io.logits_type, new_ids.len(), self.io.vocab_size, rows.clone())?
            }
            KvMode::Growing => {
                let past = T::growing_past(&mut cache.storage, &self.io)?;
                let mut inputs: Vec<(std::borrow::Cow<'_, str>, SessionInputValue<'_>)> = vec![
                    (self.io.input_ids.as_str().into(), (&ids).into()),
                    (self.io.attention_mask.as_str().into(), (&mask).into()),
                ];
                if let (Some(name), Some(positions)) = (&self.io.position_ids, &positions) {
                    inputs.push((name.as_str().into(), positions.into()));
                }
                let layers = self.io.layers();
                for (index, value) in past.iter().enumerate() {
                    let name = if index < layers { &self.io.past_keys[index] } else { &self.io.past_values[index - layers] };
                    inputs.push((name.as_str().into(), value.into()));
                }
                let run_started = Instant::now();
                let mut outputs = self.session.run_with_options(inputs, &self.run_options).map_err(classify)?;
                run_elapsed = run_started.elapsed();
                let logits = extract_logits(
                    &outputs[self.io.logits.as_str()],
                    self.io.logits_type,
                    new_ids.len(),
                    self.io.vocab_size,
                    rows.clone(),
                )?;
                let mut presents = Vec::with_capacity(2 * layers);
                for name in self.io.present_keys.iter().chain(&self.io.present_values) {
                    let value = outputs
                        .remove(name.as_str())
                        .ok_or_else(|| DecoderError::Contract(format!("output `{name}` missing from the run")))?;
                    presents.push(value);
                }
                drop(outputs);
                *past = presents;
                logits
            }
        };
        cache.tokens.extend_from_slice(new_ids);
        Ok(Logits { first_row: rows.start, rows: rows.len(), vocab: self.io.vocab_size, data: logits, elapsed: started.elapsed(), run_elapsed })
    }
}

/// genai_config.json session options that onnxruntime-genai applies and ModelDesk does not, each
/// as a warning for the Model view: a native operator library and a profile file would make
/// opening a folder load code or write files outside it; the CPU arena switch is not offered by
/// the ONNX Runtime binding.
fn unapplied_session_options(options: &super::config::SessionOptions) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(library) = &options.custom_ops_library {
        warnings.push(format!("genai_config.json asks to load the operator library `{library}`; ModelDesk never loads native code a model folder names"));
    }
    if options.enable_profiling.as_ref().is_some_and(|value| !value.is_null() && value != &serde_json::Value::Bool(false)) {
        warnings.push("genai_config.json turns on ONNX Runtime profiling; ModelDesk writes a profile only when asked (`--ort-profile`)".into());
    }
    if options.enable_cpu_mem_arena == Some(false) {
        warnings.push("genai_config.json turns off ONNX Runtime's CPU memory arena; ModelDesk keeps it on".into());
    }
    warnings
}

/// A run stopped through `RunOptions::terminate` reports "Exiting due to terminate flag".
fn classify(error: ort::Error) -> DecoderError {
    let text = error.to_string();
    if text.contains("terminate flag") { DecoderError::Cancelled } else { DecoderError::Run(text) }
}

/// Stops the step in progress (and any later one until the decoder's `reset_cancel`).
#[derive(Clone)]
pub struct Canceller(Arc<RunOptions>);

impl Canceller {
    pub fn cancel(&self) {
        // terminate() only fails on an invalid RunOptions, which this cannot be.
        let _ = self.0.terminate();
    }
}

/// Logits rows of one step, as f32 (f16 models are widened exactly).
pub struct Logits {
    /// Index (among the step's tokens) of the first row held.
    pub first_row: usize,
    /// Rows held.
    pub rows: usize,
    pub vocab: usize,
    pub data: Vec<f32>,
    pub elapsed: std::time::Duration,
    /// The part of `elapsed` spent inside ONNX Runtime's run (the rest is binding inputs,
    /// growing the KV buffers and copying the logits out).
    pub run_elapsed: std::time::Duration,
}

impl Logits {
    /// The logits for token `index` of the step.
    pub fn row(&self, index: usize) -> &[f32] {
        let local = index - self.first_row;
        &self.data[local * self.vocab..(local + 1) * self.vocab]
    }

    /// The logits for token `index`, taking ownership (no copy when only that row is held).
    pub fn into_row(mut self, index: usize) -> Vec<f32> {
        let local = index - self.first_row;
        if self.rows == 1 && local == 0 {
            return self.data;
        }
        self.data.truncate((local + 1) * self.vocab);
        self.data.split_off(local * self.vocab)
    }
}

fn extract_logits(
    value: &DynValue,
    ty: ElementType,
    tokens: usize,
    vocab: usize,
    rows: std::ops::Range<usize>,
) -> Result<Vec<f32>, DecoderError> {
    let check = |len: usize| {
        if len == tokens * vocab {
            Ok(())
        } else {
            Err(DecoderError::Contract(format!(
                "logits have {len} values for {tokens} tokens; expected {tokens} × vocab_size {vocab}"
            )))
        }
    };
    let span = rows.start * vocab..rows.end * vocab;
    Ok(match ty {
        ElementType::F32 => {
            let (_, data) = value.try_extract_tensor::<f32>().map_err(run_error)?;
            check(data.len())?;
            data[span].to_vec()
        }
        ElementType::F16 => {
            let (_, data) = value.try_extract_tensor::<f16>().map_err(run_error)?;
            check(data.len())?;
            data[span].iter().map(|v| v.to_f32()).collect()
        }
    })
}

fn discover_io(session: &Session, folder: &ModelFolder) -> Result<DecoderIo, DecoderError> {
    let config = &folder.config.model.decoder;
    let inputs: Vec<String> = session.inputs().iter().map(|i| i.name().to_owned()).collect();
    let outputs: Vec<String> = session.outputs().iter().map(|o| o.name().to_owned()).collect();
    let input_set: BTreeSet<&str> = inputs.iter().map(String::as_str).collect();
    let output_set: BTreeSet<&str> = outputs.iter().map(String::as_str).collect();
    let require = |set: &BTreeSet<&str>, name: &str, kind: &str| {
        if set.contains(name) {
            Ok(name.to_owned())
        } else {
            Err(DecoderError::Contract(format!("the graph has no {kind} named `{name}` (it has: {})", {
                let all: Vec<&str> = set.iter().copied().collect();
                all.join(", ")
            })))
        }
    };
    let input_ids = require(&input_set, &config.inputs.input_ids, "input")?;
    let attention_mask = require(&input_set, &config.inputs.attention_mask, "input")?;
    let logits = require(&output_set, &config.outputs.logits, "output")?;
    let position_ids = input_set.contains(config.inputs.position_ids.as_str()).then(|| config.inputs.position_ids.clone());
    let name_of = |pattern: &str, layer: usize| pattern.replace("%d", &layer.to_string());
    let mut past_keys = Vec::new();
    while input_set.contains(name_of(&config.inputs.past_key_names, past_keys.len()).as_str()) {
        past_keys.push(name_of(&config.inputs.past_key_names, past_keys.len()));
    }
    if past_keys.is_empty() {
        return Err(DecoderError::Contract(format!(
            "no KV-cache inputs named like `{}` were found",
            config.inputs.past_key_names
        )));
    }
    let layers = past_keys.len();
    let mut past_values = Vec::new();
    let mut present_keys = Vec::new();
    let mut present_values = Vec::new();
    for layer in 0..layers {
        past_values.push(require(&input_set, &name_of(&config.inputs.past_value_names, layer), "input")?);
        present_keys.push(require(&output_set, &name_of(&config.outputs.present_key_names, layer), "output")?);
        present_values.push(require(&output_set, &name_of(&config.outputs.present_value_names, layer), "output")?);
    }
    if let Some(configured) = config.num_hidden_layers {
        if configured != layers {
            return Err(DecoderError::Contract(format!(
                "genai_config.json says {configured} layers but the graph has {layers} past-key inputs"
            )));
        }
    }
    let past_outlet = session
        .inputs()
        .iter()
        .find(|i| i.name() == past_keys[0])
        .ok_or_else(|| DecoderError::Contract("past key input vanished".into()))?;
    let kv_type = element_type(past_outlet.dtype(), &past_keys[0])?;
    let dims: Vec<i64> = match past_outlet.dtype() {
        ValueType::Tensor { shape, .. } => shape.iter().copied().collect(),
        _ => Vec::new(),
    };
    let from_graph = |index: usize| dims.get(index).copied().filter(|d| *d > 0).map(|d| d as usize);
    let kv_heads = from_graph(1).or(config.num_key_value_heads).ok_or_else(|| {
        DecoderError::Contract("the KV-head count is neither in the graph nor in genai_config.json".into())
    })?;
    let head_size = from_graph(3)
        .or(config.head_size)
        .or_else(|| Some(config.hidden_size? / config.num_attention_heads?))
        .ok_or_else(|| DecoderError::Contract("the head size is neither in the graph nor in genai_config.json".into()))?;
    let logits_outlet = session
        .outputs()
        .iter()
        .find(|o| o.name() == logits)
        .ok_or_else(|| DecoderError::Contract("logits output vanished".into()))?;
    let logits_type = element_type(logits_outlet.dtype(), &logits)?;
    let vocab_size = folder.config.model.vocab_size;
    if let ValueType::Tensor { shape, .. } = logits_outlet.dtype() {
        if let Some(width) = shape.iter().last().copied().filter(|d| *d > 0) {
            if width as usize != vocab_size {
                return Err(DecoderError::Contract(format!(
                    "logits are {width} wide but genai_config.json says vocab_size {vocab_size}"
                )));
            }
        }
    }
    Ok(DecoderIo {
        input_ids,
        attention_mask,
        position_ids,
        past_keys,
        past_values,
        present_keys,
        present_values,
        logits,
        kv_heads,
        head_size,
        kv_type,
        logits_type,
        vocab_size,
        inputs,
        outputs,
    })
}

/// Maps `provider_options` to execution providers this build can register; unavailable ones
/// become warnings and the session runs on CPU.
fn execution_providers(
    requested: &[std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>],
) -> (Vec<(String, ort::ep::ExecutionProviderDispatch)>, Vec<String>) {
    use ort::ep::ExecutionProvider as _;
    let mut chosen = Vec::new();
    let mut warnings = Vec::new();
    for entry in requested {
        for (name, options) in entry {
            let device_id = options.get("device_id").and_then(|v| v.parse::<i32>().ok()).unwrap_or(0);
            let candidate: Option<(String, ort::ep::ExecutionProviderDispatch, bool)> = match name.as_str() {
                "cuda" => {
                    let ep = ort::ep::CUDA::default().with_device_id(device_id);
                    let available = ort::ep::CUDA::is_available().unwrap_or(false);
                    Some(("CUDAExecutionProvider".into(), ep.build(), available))
                }
                "dml" => {
                    let ep = ort::ep::DirectML::default().with_device_id(device_id);
                    let available = ort::ep::DirectML::is_available().unwrap_or(false);
                    Some(("DmlExecutionProvider".into(), ep.build(), available))
                }
                "coreml" => {
                    let ep = ort::ep::CoreML::default();
                    let available = ort::ep::CoreML::is_available().unwrap_or(false);
                    Some(("CoreMLExecutionProvider".into(), ep.build(), available))
                }
                "cpu" => None,
                other => {
                    warnings.push(format!(
                        "execution provider `{other}` from genai_config.json is not supported by ModelDesk; running on CPU"
                    ));
                    None
                }
            };
            if let Some((label, ep, available)) = candidate {
                if available {
                    chosen.push((label, ep));
                } else {
                    warnings.push(format!(
                        "genai_config.json asks for {label}, which this ONNX Runtime library does not offer; running on CPU"
                    ));
                }
            }
        }
    }
    (chosen, warnings)
}
