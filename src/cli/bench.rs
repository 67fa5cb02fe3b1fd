//! `modeldesk bench`: load time, time to first token, prefill and decode speed, peak memory.

use std::{path::PathBuf, sync::atomic::AtomicBool, time::Instant};

use anyhow::{Result, bail};
use clap::Args;
use serde_json::json;

use super::{DecoderArgs, load_runtime};
use crate::engine::{Engine, GenerateOptions};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[arg(long)]
    pub model: PathBuf,
    /// Prompt length in tokens.
    #[arg(long, default_value_t = 128, value_parser = super::value::tokens)]
    pub prompt_tokens: usize,
    /// Tokens generated per run (end-of-sequence is suppressed so every run generates exactly this).
    #[arg(long, default_value_t = 128, value_parser = super::value::tokens)]
    pub gen_tokens: usize,
    /// Measured runs, after one warm-up run.
    #[arg(long, default_value_t = 5, value_parser = super::value::runs)]
    pub runs: usize,
    #[command(flatten)]
    pub decoder: DecoderArgs,
    /// The sequence limit (default: prompt + generated tokens). ModelDesk reserves KV memory as
    /// the sequence grows, whatever this is.
    #[arg(long, value_parser = super::value::tokens)]
    pub max_length: Option<usize>,
    #[arg(long)]
    pub json: bool,
    /// Measure a conversation of this many turns instead of one prompt: each turn is a user
    /// message of about --user-tokens tokens answered with exactly --reply-tokens tokens, and
    /// each turn's time to first token is reported.
    #[arg(long)]
    pub turns: Option<usize>,
    /// Tokens per user message (conversation mode).
    #[arg(long, default_value_t = 120, requires = "turns")]
    pub user_tokens: usize,
    /// Tokens per reply (conversation mode).
    #[arg(long, default_value_t = 60, requires = "turns")]
    pub reply_tokens: usize,
    /// Re-read the whole conversation every turn instead of reusing the KV cache.
    #[arg(long, requires = "turns")]
    pub no_reuse: bool,
    /// Measure prompt-lookup decoding: decode speed with and without it, alternating run by
    /// run, on free text and on a copy-heavy context (the prompt, the model's reply, the prompt
    /// again), and whether it gave plain greedy decoding's ids.
    #[arg(long, conflicts_with = "turns")]
    pub prompt_lookup: bool,
}

pub fn run(args: BenchArgs) -> Result<()> {
    if let Some(turns) = args.turns {
        return super::bench_turns::run(&args, turns);
    }
    if args.prompt_lookup {
        return super::bench_lookup::run(&args);
    }
    if args.runs == 0 || args.gen_tokens == 0 || args.prompt_tokens == 0 {
        bail!("--runs, --gen-tokens and --prompt-tokens must be at least 1");
    }
    let runtime = load_runtime()?;
    let settings = args.decoder.settings();
    let started = Instant::now();
    let mut engine = Engine::load(runtime, &args.model, &settings)?;
    let load_ms = started.elapsed().as_secs_f64() * 1000.0;
    let prompt_ids = bench_prompt(&engine, args.prompt_tokens)?;
    let options = measured_run(&args, args.max_length.unwrap_or(args.prompt_tokens + args.gen_tokens));
    let cancel = AtomicBool::new(false);
    let mut samples = Vec::new();
    for run in 0..=args.runs {
        let completion = engine.generate_ids(&prompt_ids, &options, &cancel, &mut |_| {})?;
        if completion.usage.completion_tokens != args.gen_tokens {
            bail!("run generated {} tokens, expected {}", completion.usage.completion_tokens, args.gen_tokens);
        }
        if run > 0 {
            samples.push(completion.timings);
        }
    }
    args.decoder.finish_profile(&mut engine)?;
    let stat = |pick: fn(&crate::engine::Timings) -> f64| {
        let mut values: Vec<f64> = samples.iter().map(pick).collect();
        values.sort_by(f64::total_cmp);
        json!({"median": values[values.len() / 2], "min": values[0], "max": values[values.len() - 1]})
    };
    let report = json!({
        "model": engine.facts.folder,
        "threads": engine.facts.intra_threads,
        "thread_spinning": engine.facts.thread_spinning,
        "prompt_tokens": args.prompt_tokens,
        "gen_tokens": args.gen_tokens,
        "runs": args.runs,
        "load_ms": load_ms,
        "time_to_first_token_ms": stat(|t| t.time_to_first_token_ms),
        "prefill_tokens_per_second": stat(|t| t.prefill_tokens_per_second),
        "decode_tokens_per_second": stat(|t| t.decode_tokens_per_second),
        "peak_rss_mb": crate::memory::peak_rss().map(|b| b as f64 / 1_048_576.0),
        "decode_step_ms": decode_step_profile(&samples),
        "samples": {
            "time_to_first_token_ms": samples.iter().map(|t| t.time_to_first_token_ms).collect::<Vec<_>>(),
            "prefill_tokens_per_second": samples.iter().map(|t| t.prefill_tokens_per_second).collect::<Vec<_>>(),
            "decode_tokens_per_second": samples.iter().map(|t| t.decode_tokens_per_second).collect::<Vec<_>>(),
        },
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "load {:.0} ms · first token {:.1} ms · prefill {:.1} tok/s · decode {:.1} tok/s (medians of {} runs, {} threads{}) · peak RSS {:.0} MB",
            load_ms,
            report["time_to_first_token_ms"]["median"].as_f64().unwrap_or_default(),
            report["prefill_tokens_per_second"]["median"].as_f64().unwrap_or_default(),
            report["decode_tokens_per_second"]["median"].as_f64().unwrap_or_default(),
            args.runs,
            engine.facts.intra_threads,
            if engine.facts.thread_spinning { ", spinning" } else { "" },
            report["peak_rss_mb"].as_f64().unwrap_or_default(),
        );
        let step = &report["decode_step_ms"];
        println!(
            "per decode step (ms): ONNX Runtime run {:.3} · binding, KV and logits copy {:.3} · sampling {:.3} · text {:.3} · events {:.3}",
            step["run"].as_f64().unwrap_or_default(),
            step["io"].as_f64().unwrap_or_default(),
            step["sampling"].as_f64().unwrap_or_default(),
            step["text"].as_f64().unwrap_or_default(),
            step["events"].as_f64().unwrap_or_default(),
        );
    }
    Ok(())
}

/// The average decode step over all measured runs, split by what its time was spent on.
/// Greedy generation of exactly `--gen-tokens` tokens within `max_length`, as every measured
/// run does.
pub(super) fn measured_run(args: &BenchArgs, max_length: usize) -> GenerateOptions {
    GenerateOptions {
        max_length: Some(max_length),
        max_tokens: Some(args.gen_tokens),
        do_sample: Some(false),
        suppress_eos: true,
        kv_mode: args.decoder.kv_mode.into(),
        // Every run measures a whole prefill, not a reuse of the previous run's cache.
        ignore_cached_prefix: true,
        ..GenerateOptions::default()
    }
}

fn decode_step_profile(samples: &[crate::engine::Timings]) -> serde_json::Value {
    let steps: usize = samples.iter().map(|t| t.decode_profile.steps).sum();
    let per_step = |pick: fn(&crate::engine::DecodeProfile) -> f64| {
        if steps == 0 { 0.0 } else { samples.iter().map(|t| pick(&t.decode_profile)).sum::<f64>() / steps as f64 }
    };
    json!({
        "steps": steps,
        "run": per_step(|p| p.run_ms),
        "io": per_step(|p| p.io_ms),
        "sampling": per_step(|p| p.sampling_ms),
        "text": per_step(|p| p.text_ms),
        "events": per_step(|p| p.events_ms),
    })
}

/// A prompt of exactly `count` ordinary tokens: English text repeated, never a special token.
pub fn bench_prompt(engine: &Engine, count: usize) -> Result<Vec<i64>> {
    let text = "The quick brown fox jumps over the lazy dog while the small model counts its tokens. ";
    let unit = engine.tokenizer.encode(text)?;
    if unit.is_empty() {
        bail!("the tokenizer produced no tokens for the benchmark text");
    }
    Ok(unit.iter().copied().cycle().take(count).collect())
}
