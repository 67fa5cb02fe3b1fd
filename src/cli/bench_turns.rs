//! `modeldesk bench --turns N`: time to first token per turn of a conversation, with the KV cache
//! reused between turns (the default) or the whole conversation read again (`--no-reuse`).

use std::{sync::atomic::AtomicBool, time::Instant};

use anyhow::{Result, bail};
use serde_json::json;

use super::{bench::BenchArgs, load_runtime};
use crate::engine::{ChatMessage, ContextPolicy, Engine, GenerateOptions, Prompt};

const SYSTEM_PROMPT: &str = "You are a helpful assistant.";
const WORDS: &str = "The quick brown fox jumps over the lazy dog while the small model counts its tokens and \
                     the river carries boats past the old mill where sailors sing about the weather";

/// A user message of about `tokens` tokens (the first word count that reaches it), different for
/// every turn so no two turns share text beyond the template.
pub fn user_message(engine: &Engine, turn: usize, tokens: usize) -> Result<String> {
    let words: Vec<&str> = WORDS.split(' ').collect();
    let mut text = format!("Turn {turn}:");
    let mut next = turn;
    while engine.tokenizer.encode(&text)?.len() < tokens {
        text.push(' ');
        text.push_str(words[next % words.len()]);
        next += 1;
        if text.len() > tokens.saturating_mul(64).max(64) {
            bail!("the tokenizer does not reach {tokens} tokens on the benchmark text");
        }
    }
    Ok(text)
}

pub fn run(args: &BenchArgs, turns: usize) -> Result<()> {
    if turns == 0 || args.runs == 0 || args.user_tokens == 0 || args.reply_tokens == 0 {
        bail!("--turns, --runs, --user-tokens and --reply-tokens must be at least 1");
    }
    let runtime = load_runtime()?;
    let settings = args.decoder.settings();
    let started = Instant::now();
    let mut engine = Engine::load(runtime, &args.model, &settings)?;
    let load_ms = started.elapsed().as_secs_f64() * 1000.0;
    let users: Vec<String> = (1..=turns).map(|turn| user_message(&engine, turn, args.user_tokens)).collect::<Result<_>>()?;
    let options = GenerateOptions {
        max_length: args.max_length,
        max_tokens: Some(args.reply_tokens),
        do_sample: Some(false),
        suppress_eos: true,
        kv_mode: args.decoder.kv_mode.into(),
        ignore_cached_prefix: args.no_reuse,
        ..GenerateOptions::default()
    };
    let cancel = AtomicBool::new(false);
    // One warm-up request, then `runs` whole conversations, each starting from an empty cache.
    let warm_up = vec![ChatMessage::new("system", SYSTEM_PROMPT), ChatMessage::new("user", &users[0])];
    engine.generate(&Prompt::Chat(warm_up), &options, ContextPolicy::Refuse, &cancel, &mut |_| {})?;
    let mut per_turn: Vec<Vec<(usize, usize, f64)>> = vec![Vec::new(); turns];
    for _ in 0..args.runs {
        engine.clear_cache();
        let mut messages = vec![ChatMessage::new("system", SYSTEM_PROMPT)];
        for (turn, user) in users.iter().enumerate() {
            messages.push(ChatMessage::new("user", user));
            let (_, completion) = engine.generate(&Prompt::Chat(messages.clone()), &options, ContextPolicy::Refuse, &cancel, &mut |_| {})?;
            if completion.usage.completion_tokens != args.reply_tokens {
                bail!("turn {} generated {} tokens, expected {}", turn + 1, completion.usage.completion_tokens, args.reply_tokens);
            }
            per_turn[turn].push((completion.usage.prompt_tokens, completion.usage.cached_tokens, completion.timings.time_to_first_token_ms));
            messages.push(ChatMessage::reply(&completion.text, completion.completion_ids.clone()));
            // What the app's worker does once a reply is delivered, outside the timed request.
            if turn + 1 < turns {
                engine.prepare_next_turn()?;
            }
        }
    }
    args.decoder.finish_profile(&mut engine)?;
    let rows: Vec<serde_json::Value> = per_turn
        .iter()
        .enumerate()
        .map(|(turn, samples)| {
            let mut times: Vec<f64> = samples.iter().map(|s| s.2).collect();
            times.sort_by(f64::total_cmp);
            json!({
                "turn": turn + 1,
                "prompt_tokens": samples[0].0,
                "reused_tokens": samples[0].1,
                "time_to_first_token_ms": {"median": times[times.len() / 2], "min": times[0], "max": times[times.len() - 1]},
                "samples": samples.iter().map(|s| s.2).collect::<Vec<_>>(),
            })
        })
        .collect();
    let report = json!({
        "model": engine.facts.folder,
        "threads": engine.facts.intra_threads,
        "reuse": !args.no_reuse,
        "turns": turns,
        "user_tokens": args.user_tokens,
        "reply_tokens": args.reply_tokens,
        "runs": args.runs,
        "load_ms": load_ms,
        "system_prompt": SYSTEM_PROMPT,
        "user_messages": users,
        "per_turn": rows,
        "peak_rss_mb": crate::memory::peak_rss().map(|b| b as f64 / 1_048_576.0),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{} turns of {} user + {} reply tokens, {} ({} threads, medians of {} runs)",
        turns,
        args.user_tokens,
        args.reply_tokens,
        if args.no_reuse { "whole conversation re-read each turn" } else { "KV cache reused" },
        engine.facts.intra_threads,
        args.runs
    );
    println!("{:>5} {:>14} {:>8} {:>22}", "turn", "prompt tokens", "reused", "first token (ms)");
    for row in &rows {
        println!(
            "{:>5} {:>14} {:>8} {:>22.1}",
            row["turn"],
            row["prompt_tokens"],
            row["reused_tokens"],
            row["time_to_first_token_ms"]["median"].as_f64().unwrap_or_default()
        );
    }
    Ok(())
}
