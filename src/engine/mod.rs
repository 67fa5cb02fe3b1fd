//! The Phi-3 inference engine: model folders, tokenizer and chat template, the generation loop
//! with onnxruntime-genai's exact rules, and a worker thread that owns the session.
//! Knows nothing of MLflow or the GUI.

pub mod config;
mod conversation;
mod cpp_sort;
pub mod decoder;
pub mod folder;
pub mod generate;
pub mod graph_scan;
pub mod kv_cache;
pub mod prompt_lookup;
pub mod sampling;
mod stop;
pub mod tokenizer;
pub mod worker;

use std::{path::Path, sync::atomic::AtomicBool, time::Instant};

pub use config::{GenaiConfig, SearchOptions};
pub use decoder::{Decoder, DecoderError, DecoderSettings, KvCache, KvMode};
pub use folder::{FolderError, ModelFolder};
pub use generate::{Completion, DecodeProfile, FinishReason, GenerateError, GenerateOptions, Progress, Timings, Usage};
pub use tokenizer::{ChatMessage, PromptTokenizer, TokenizerError};

use crate::runtime::Runtime;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Folder(#[from] FolderError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Decoder(#[from] DecoderError),
    #[error(transparent)]
    Generate(#[from] GenerateError),
    #[error(
        "the conversation does not fit: the last message alone is {needed} tokens, and at most {available} fit in max_length {max_length}"
    )]
    ConversationTooLong { needed: usize, available: usize, max_length: usize },
}

/// What to generate from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Prompt {
    /// Text encoded as is (no template).
    Raw(String),
    /// A conversation rendered with the model's chat template, ending with a generation prompt.
    Chat(Vec<ChatMessage>),
}

/// How a conversation that is too long is made to fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum ContextPolicy {
    /// Refuse with an error naming the sizes.
    #[default]
    Refuse,
    /// Drop the oldest turns (never the system prompt or the last message) and say so.
    DropOldestTurns,
}

/// An encoded prompt and what was done to make it fit.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PreparedPrompt {
    pub text: String,
    pub ids: Vec<i64>,
    /// Conversation turns left out to fit the context (0 unless the policy allows dropping).
    pub dropped_messages: usize,
}

/// Facts about a loaded model, for the UI and `doctor`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelFacts {
    pub name: String,
    pub folder: std::path::PathBuf,
    pub model_type: String,
    pub layers: usize,
    pub attention_heads: Option<usize>,
    pub kv_heads: usize,
    pub head_size: usize,
    pub hidden_size: Option<usize>,
    pub vocab_size: usize,
    pub context_length: usize,
    pub default_max_length: usize,
    pub eos_token_ids: Vec<i64>,
    pub pad_token_id: Option<i64>,
    pub search: SearchOptions,
    pub kv_type: decoder::ElementType,
    pub has_position_ids: bool,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub execution_providers: Vec<String>,
    pub intra_threads: usize,
    /// Whether idle intra-op threads spin (see `DecoderSettings::thread_spinning`).
    pub thread_spinning: bool,
    pub warnings: Vec<String>,
    pub template_source: tokenizer::TemplateSource,
    pub load_ms: f64,
    /// Which Phi model this looks like ("Phi-3-mini", "Phi-4-mini", … with its distinguishing
    /// features), from the config and the graph.
    pub family: String,
    /// How the weights are stored ("int4 (block 32)", "float16", …).
    pub quantization: String,
    /// The execution provider that runs the model (the first that registered).
    pub provider: String,
    /// The graph's structure (operators, rotary table, LongRoPE, tied embeddings), when readable.
    pub graph: Option<graph_scan::GraphSummary>,
}

/// The Phi model a folder looks like: Phi-4-mini by its tied embeddings or 200k vocabulary,
/// Phi-3-medium / Phi-3-mini by width, with LongRoPE (Phi-3-mini-128k, Phi-3.5-mini) and partial
/// rotary named when the graph has them.
fn family(facts: &ModelFacts) -> String {
    let graph = facts.graph.as_ref();
    let tied = graph.is_some_and(|g| g.tied_embeddings);
    let long_rope = graph.is_some_and(|g| g.long_rope);
    let base = if tied || facts.vocab_size >= 200_000 {
        "Phi-4-mini"
    } else {
        match facts.hidden_size {
            Some(5120) => "Phi-3-medium",
            Some(3072) if long_rope => "Phi-3.5-mini / Phi-3-mini-128k",
            Some(3072) => "Phi-3-mini",
            _ => "Phi-3 architecture",
        }
    };
    let mut features = Vec::new();
    if long_rope {
        features.push("LongRoPE".to_owned());
    }
    if let Some(columns) = graph.and_then(|g| g.rotary_columns).filter(|&c| 2 * c < facts.head_size) {
        features.push(format!("partial rotary {} of {}", 2 * columns, facts.head_size));
    }
    if tied {
        features.push("tied embeddings".to_owned());
    }
    if features.is_empty() { base.to_owned() } else { format!("{base} ({})", features.join(", ")) }
}

/// How the weights are stored, from the graph (block-quantized MatMulNBits, or float MatMuls).
fn quantization(facts: &ModelFacts) -> String {
    match facts.graph.as_ref() {
        Some(graph) => match (graph.quantized_bits, graph.quantized_block_size, &graph.float_weights) {
            (Some(bits), Some(block), _) => format!("int{bits} (block {block})"),
            (Some(bits), None, _) => format!("int{bits}"),
            (None, _, Some(float)) => float.clone(),
            (None, _, None) => "unknown".to_owned(),
        },
        None => "unknown".to_owned(),
    }
}

/// A loaded model: session plus tokenizer, and the KV cache of the last request, kept so the
/// next request that starts the same way (the next turn of a chat, a regenerated reply, an
/// edited message) runs only what is new.
pub struct Engine {
    pub folder: ModelFolder,
    pub decoder: Decoder,
    pub tokenizer: PromptTokenizer,
    pub facts: ModelFacts,
    cache: Option<KvCache>,
    /// What the last successful request added to the cache, for [`Self::prepare_next_turn`].
    last_request: Option<LastRequest>,
}

/// The size of the last request, from which the next one is guessed.
#[derive(Debug, Clone, Copy)]
struct LastRequest {
    /// Tokens it put into the cache beyond what the cache already held (the new part of the
    /// prompt and the reply).
    added_tokens: usize,
    /// The max_length it ran with (the cache never grows beyond it).
    max_length: usize,
}

impl Engine {
    /// Opens a model folder (or an MLflow model wrapping one) and creates its session.
    pub fn load(runtime: &Runtime, path: &Path, settings: &DecoderSettings) -> Result<Self, EngineError> {
        let started = Instant::now();
        let folder = ModelFolder::open(path)?;
        let mut tokenizer = PromptTokenizer::load(&folder.dir)?;
        tokenizer.limit_prompt_tokens(folder.config.model.context_length);
        let decoder = Decoder::load(runtime, &folder, settings)?;
        let config = &folder.config;
        let facts = ModelFacts {
            name: folder.name(),
            folder: folder.dir.clone(),
            model_type: config.model.model_type.clone(),
            layers: decoder.io.layers(),
            attention_heads: config.model.decoder.num_attention_heads,
            kv_heads: decoder.io.kv_heads,
            head_size: decoder.io.head_size,
            hidden_size: config.model.decoder.hidden_size,
            vocab_size: config.model.vocab_size,
            context_length: config.model.context_length,
            default_max_length: config.default_max_length(),
            eos_token_ids: config.eos_token_ids(),
            pad_token_id: config.pad_token_id(),
            search: config.search.clone(),
            kv_type: decoder.io.kv_type,
            has_position_ids: decoder.io.position_ids.is_some(),
            inputs: decoder.io.inputs.clone(),
            outputs: decoder.io.outputs.clone(),
            execution_providers: decoder.facts.execution_providers.clone(),
            intra_threads: decoder.facts.intra_threads,
            thread_spinning: decoder.facts.thread_spinning,
            warnings: decoder.facts.warnings.clone(),
            template_source: tokenizer.template_source,
            load_ms: 0.0,
            family: String::new(),
            quantization: String::new(),
            provider: decoder.facts.execution_providers.first().cloned().unwrap_or_default(),
            graph: None,
        };
        let mut facts = facts;
        match graph_scan::scan(&folder.decoder) {
            Ok(summary) => facts.graph = Some(summary),
            Err(error) => facts.warnings.push(error.to_string()),
        }
        facts.family = family(&facts);
        facts.quantization = quantization(&facts);
        facts.load_ms = started.elapsed().as_secs_f64() * 1000.0;
        Ok(Self { folder, decoder, tokenizer, facts, cache: None, last_request: None })
    }

    /// The ids whose keys and values the kept cache holds (empty before the first request).
    pub fn cached_ids(&self) -> &[i64] {
        self.cache.as_ref().map(KvCache::tokens).unwrap_or_default()
    }

    /// Rows reserved per layer by the kept cache.
    pub fn cache_capacity(&self) -> usize {
        self.cache.as_ref().map(KvCache::capacity).unwrap_or(0)
    }

    /// Frees the kept cache.
    pub fn clear_cache(&mut self) {
        self.cache = None;
        self.last_request = None;
    }

    /// Between requests: grows the kept cache's buffers to also hold a next turn as long as the
    /// last request (the tokens it added), so that turn's prompt run does not first wait for
    /// larger buffers and a copy of the kept rows (19 ms at turn 2 of the chat benchmark on the
    /// Phi-3-mini-shaped model), and a reply crossing a chunk does not stall half-way.
    /// onnxruntime-genai avoids the wait by reserving max_length up front; this keeps memory to
    /// at most about twice the conversation. Callers run it while idle, after a reply was
    /// delivered; it never changes what a request generates. Returns the rows now reserved.
    pub fn prepare_next_turn(&mut self) -> Result<usize, EngineError> {
        let (Some(cache), Some(last)) = (self.cache.as_mut(), self.last_request) else {
            return Ok(self.cache_capacity());
        };
        let rows = cache.len().saturating_add(last.added_tokens);
        self.decoder.reserve(cache, rows, last.max_length)?;
        Ok(cache.capacity())
    }

    /// How many leading tokens of `prompt_ids` [`Self::generate_ids`] would take from the cache.
    pub fn reusable_prefix(&self, prompt_ids: &[i64], options: &GenerateOptions) -> usize {
        generate::reusable_prefix(self.cache.as_ref(), prompt_ids, self.folder.config.pad_token_id(), options)
    }

    /// Renders and encodes a prompt, fitting a conversation into `max_length` per `policy`
    /// while leaving room for at least one completion token.
    pub fn prepare(&self, prompt: &Prompt, max_length: usize, policy: ContextPolicy) -> Result<PreparedPrompt, EngineError> {
        let prepared = self.prepare_unchecked(prompt, max_length, policy)?;
        if prepared.ids.len() > max_length {
            return Err(GenerateError::PromptTooLong {
                prompt_tokens: prepared.ids.len(),
                max_length,
                context_length: self.facts.context_length,
            }
            .into());
        }
        Ok(prepared)
    }

    fn prepare_unchecked(&self, prompt: &Prompt, max_length: usize, policy: ContextPolicy) -> Result<PreparedPrompt, EngineError> {
        match prompt {
            Prompt::Raw(text) => Ok(PreparedPrompt { text: text.clone(), ids: self.tokenizer.encode(text)?, dropped_messages: 0 }),
            Prompt::Chat(messages) => {
                let encode = |messages: &[ChatMessage]| -> Result<(String, Vec<i64>), EngineError> { Ok(self.tokenizer.encode_conversation(messages, true)?) };
                let (text, ids) = encode(messages)?;
                if ids.len() < max_length || policy == ContextPolicy::Refuse {
                    return Ok(PreparedPrompt { text, ids, dropped_messages: 0 });
                }
                let mut kept: Vec<ChatMessage> = messages.to_vec();
                let mut dropped = 0;
                loop {
                    let system = usize::from(kept.first().is_some_and(|m| m.role == "system"));
                    if kept.len() <= system + 1 {
                        let (_, ids) = encode(&kept)?;
                        return Err(EngineError::ConversationTooLong {
                            needed: ids.len(),
                            available: max_length.saturating_sub(1),
                            max_length,
                        });
                    }
                    kept.remove(system);
                    dropped += 1;
                    let (text, ids) = encode(&kept)?;
                    if ids.len() < max_length {
                        return Ok(PreparedPrompt { text, ids, dropped_messages: dropped });
                    }
                }
            }
        }
    }

    /// Resolves options against the folder's defaults (used by callers that need max_length
    /// before encoding).
    pub fn resolve(&self, options: &GenerateOptions) -> Result<generate::ResolvedOptions, GenerateError> {
        let config = &self.folder.config;
        let mut resolved = generate::resolve(options, &config.search, config.default_max_length(), config.model.context_length)?;
        resolved.rope_rewind_at = generate::rope_rewind_threshold(&config.model.model_type);
        // A verification run must not straddle LongRoPE's switch (its rows would all use the
        // table the last one picks), so drafts need to know where it is.
        if let Some(graph) = &self.facts.graph {
            resolved.long_rope_switch = graph.long_rope_switch;
            resolved.drafts_allowed = !graph.long_rope || graph.long_rope_switch.is_some();
        }
        Ok(resolved)
    }

    /// Generates a reply for already encoded prompt ids, reusing the kept cache's common prefix
    /// (unless `options.ignore_cached_prefix`).
    pub fn generate_ids(
        &mut self,
        prompt_ids: &[i64],
        options: &GenerateOptions,
        cancel: &AtomicBool,
        on_progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<Completion, EngineError> {
        let resolved = self.resolve(options)?;
        // The ids held before, to tell what this request added (see `LastRequest`).
        let held_before = self.cached_ids().to_vec();
        let config = &self.folder.config;
        let eos = config.eos_token_ids();
        let pad = config.pad_token_id();
        let context_length = config.model.context_length;
        let result = generate::run(
            &mut self.decoder,
            &mut self.cache,
            &self.tokenizer,
            prompt_ids,
            options,
            &resolved,
            &eos,
            pad,
            context_length,
            cancel,
            on_progress,
        );
        if matches!(result, Err(GenerateError::Decoder(_))) {
            // A failed run may leave the cache in any state; the next request starts afresh.
            self.cache = None;
        }
        self.last_request = match (&result, &self.cache) {
            (Ok(completion), Some(cache)) => Some(LastRequest {
                // Not `len - cached_tokens`: a re-read (`ignore_cached_prefix`, the RoPE rewind)
                // runs the held ids again without making the conversation longer, and a request
                // that ran nothing (stopped before its first token) added nothing.
                added_tokens: cache.len().saturating_sub(cache.reusable_prefix(&held_before)),
                max_length: completion.max_length,
            }),
            _ => None,
        };
        Ok(result?)
    }

    /// Renders, encodes and generates.
    pub fn generate(
        &mut self,
        prompt: &Prompt,
        options: &GenerateOptions,
        policy: ContextPolicy,
        cancel: &AtomicBool,
        on_progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<(PreparedPrompt, Completion), EngineError> {
        let resolved = self.resolve(options)?;
        let prepared = self.prepare(prompt, resolved.max_length, policy)?;
        let completion = self.generate_ids(&prepared.ids, options, cancel, on_progress)?;
        Ok((prepared, completion))
    }
}
