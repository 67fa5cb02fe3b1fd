//! `modeldesk generate`: one reply from a model folder.

use std::{
    io::Write as _,
    path::PathBuf,
    sync::atomic::AtomicBool,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use serde_json::json;

use super::{DecoderArgs, load_runtime};
use crate::session;
use crate::engine::{ChatMessage, ContextPolicy, Engine, FinishReason, GenerateOptions, Progress, Prompt};

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The model folder (Phi-3 ONNX, or an MLflow model wrapping one).
    #[arg(long)]
    pub model: PathBuf,
    /// Text encoded as is, without a chat template.
    #[arg(long, conflicts_with_all = ["user", "system", "conversation"], required_unless_present_any = ["user", "conversation"])]
    pub prompt: Option<String>,
    /// A user message, rendered with the model's chat template.
    #[arg(long)]
    pub user: Option<String>,
    /// A system message (with --user).
    #[arg(long, requires = "user")]
    pub system: Option<String>,
    /// A JSON file listing user turns (strings), optionally preceded by a system prompt
    /// (`{"role": "system", "content": "…"}`): each turn is answered in one process, the reply
    /// appended before the next, so later turns reuse the KV cache.
    #[arg(long, conflicts_with_all = ["user", "system"])]
    pub conversation: Option<PathBuf>,
    /// Most completion tokens.
    #[arg(long, value_parser = super::value::tokens)]
    pub max_tokens: Option<usize>,
    /// Most prompt + completion tokens (onnxruntime-genai's max_length).
    #[arg(long, value_parser = super::value::tokens)]
    pub max_length: Option<usize>,
    #[arg(long, value_parser = super::value::temperature)]
    pub temperature: Option<f32>,
    #[arg(long, value_parser = super::value::top_k)]
    pub top_k: Option<usize>,
    #[arg(long, value_parser = super::value::probability)]
    pub top_p: Option<f32>,
    #[arg(long, value_parser = super::value::penalty)]
    pub repetition_penalty: Option<f32>,
    /// Sample instead of taking the most likely token.
    #[arg(long)]
    pub do_sample: bool,
    #[arg(long)]
    pub seed: Option<i64>,
    /// Stop when this text appears (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Print text as it is generated.
    #[arg(long)]
    pub stream: bool,
    /// Print one llm/v1/chat JSON object with metrics and token ids.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub decoder: DecoderArgs,
    /// Prompt-lookup decoding: draft the next tokens from text the context already holds and
    /// check them in one run (greedy only; can differ from plain decoding at a close choice, since
    /// a run of several tokens uses other kernels than a one-token step).
    #[arg(long)]
    pub prompt_lookup: bool,
}

pub fn run(args: GenerateArgs) -> Result<()> {
    let runtime = load_runtime()?;
    let settings = args.decoder.settings();
    let mut engine =
        Engine::load(runtime, &args.model, &settings).with_context(|| format!("loading {}", args.model.display()))?;
    for warning in &engine.facts.warnings {
        eprintln!("warning: {warning}");
    }
    if let Some(path) = &args.conversation {
        super::conversation::run(&mut engine, path, &options_from(&args)?, args.json)?;
        return args.decoder.finish_profile(&mut engine);
    }
    let prompt = match (&args.prompt, &args.user) {
        (Some(text), _) => Prompt::Raw(unescape(text)),
        (None, Some(user)) => {
            let mut messages = Vec::new();
            if let Some(system) = &args.system {
                messages.push(ChatMessage::new("system", system));
            }
            messages.push(ChatMessage::new("user", user));
            Prompt::Chat(messages)
        }
        (None, None) => bail!("give --prompt, --user or --conversation"),
    };
    let options = options_from(&args)?;
    let cancel = AtomicBool::new(false);
    let stream = args.stream && !args.json;
    let mut stdout = std::io::stdout();
    let (_, completion) = engine.generate(&prompt, &options, ContextPolicy::Refuse, &cancel, &mut |progress| {
        if let (true, Progress::Token { text, .. }) = (stream, progress) {
            let _ = stdout.write_all(text.as_bytes());
            let _ = stdout.flush();
        }
    })?;
    args.decoder.finish_profile(&mut engine)?;
    if args.json {
        let response = chat_completion_json(&engine.facts.name, &completion);
        println!("{}", serde_json::to_string_pretty(&response)?);
    } else {
        if !stream {
            print!("{}", completion.text);
        }
        println!();
        let t = &completion.timings;
        eprintln!(
            "[{} prompt + {} completion = {} tokens · finish: {} · first token {:.0} ms · prefill {:.1} tok/s · decode {:.1} tok/s]",
            completion.usage.prompt_tokens,
            completion.usage.completion_tokens,
            completion.usage.total_tokens,
            completion.finish_reason.as_str(),
            t.time_to_first_token_ms,
            t.prefill_tokens_per_second,
            t.decode_tokens_per_second
        );
        let lookup = &t.prompt_lookup;
        if lookup.verifications > 0 {
            eprintln!(
                "[prompt lookup: {} of {} drafted tokens accepted in {} verification runs]",
                lookup.accepted, lookup.drafted, lookup.verifications
            );
        }
    }
    Ok(())
}

/// The generation options the arguments ask for.
/// The flags' options over the folder's defaults: an MLflow package's model_config sits between
/// genai_config.json and these flags.
fn options_from(args: &GenerateArgs) -> Result<GenerateOptions> {
    let flags = GenerateOptions {
        max_length: args.max_length,
        max_tokens: args.max_tokens,
        do_sample: args.do_sample.then_some(true),
        top_k: args.top_k,
        top_p: args.top_p,
        temperature: args.temperature,
        repetition_penalty: args.repetition_penalty,
        seed: args.seed,
        stop: args.stop.clone(),
        kv_mode: args.decoder.kv_mode.into(),
        prompt_lookup: args.prompt_lookup.then_some(true),
        ..GenerateOptions::default()
    };
    Ok(session::request_options(&session::load_model_defaults(&args.model)?, &flags))
}

/// The `llm/v1/chat` response body for a completion, with ModelDesk's metrics and token ids.
pub fn chat_completion_json(model: &str, completion: &crate::engine::Completion) -> serde_json::Value {
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    let finish = match completion.finish_reason {
        FinishReason::Cancelled => "cancelled",
        other => other.as_str(),
    };
    json!({
        "id": format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": completion.text},
            "finish_reason": finish,
        }],
        "usage": completion.usage.openai_json(),
        "metrics": metrics_json(completion),
        "token_ids": {"prompt": completion.prompt_ids, "completion": completion.completion_ids},
    })
}

/// Speed figures of a completion, as the JSON outputs show them.
pub(super) fn metrics_json(completion: &crate::engine::Completion) -> serde_json::Value {
    json!({
        "time_to_first_token_ms": completion.timings.time_to_first_token_ms,
        "prefill_tokens_per_second": completion.timings.prefill_tokens_per_second,
        "decode_tokens_per_second": completion.timings.decode_tokens_per_second,
        "prompt_lookup": completion.timings.prompt_lookup,
    })
}

/// `\n`, `\t`, `\\` in command-line prompts, as the reference script accepts them.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}
