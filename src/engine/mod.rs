//! The Phi-3 inference engine: model folders, tokenizer and chat template, the generation loop
//! with onnxruntime-genai's exact rules, and a worker thread that owns the session.
//! Knows nothing of MLflow or the GUI.

pub mod config;
pub mod decoder;
pub mod folder;
pub mod generate;
pub mod sampling;
pub mod tokenizer;
pub mod worker;

use std::{path::Path, sync::atomic::AtomicBool, time::Instant};

pub use config::{GenaiConfig, SearchOptions};
pub use decoder::{Decoder, DecoderError, DecoderSettings, KvMode};
pub use folder::{FolderError, ModelFolder};
pub use generate::{Completion, FinishReason, GenerateError, GenerateOptions, Progress, Timings, Usage};
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
    pub warnings: Vec<String>,
    pub template_source: tokenizer::TemplateSource,
    pub load_ms: f64,
}

/// A loaded model: session plus tokenizer.
pub struct Engine {
    pub folder: ModelFolder,
    pub decoder: Decoder,
    pub tokenizer: PromptTokenizer,
    pub facts: ModelFacts,
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
            warnings: decoder.facts.warnings.clone(),
            template_source: tokenizer.template_source,
            load_ms: started.elapsed().as_secs_f64() * 1000.0,
        };
        Ok(Self { folder, decoder, tokenizer, facts })
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
                let encode = |messages: &[ChatMessage]| -> Result<(String, Vec<i64>), EngineError> {
                    let text = self.tokenizer.apply_chat_template(messages, true)?;
                    let ids = self.tokenizer.encode(&text)?;
                    Ok((text, ids))
                };
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
        generate::resolve(options, &config.search, config.default_max_length(), config.model.context_length)
    }

    /// Generates a reply for already encoded prompt ids.
    pub fn generate_ids(
        &mut self,
        prompt_ids: &[i64],
        options: &GenerateOptions,
        cancel: &AtomicBool,
        on_progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<Completion, EngineError> {
        let resolved = self.resolve(options)?;
        let config = &self.folder.config;
        let eos = config.eos_token_ids();
        let pad = config.pad_token_id();
        let context_length = config.model.context_length;
        Ok(generate::run(
            &mut self.decoder,
            &self.tokenizer,
            prompt_ids,
            options,
            &resolved,
            &eos,
            pad,
            context_length,
            cancel,
            on_progress,
        )?)
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
