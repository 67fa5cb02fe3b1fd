//! `modeldesk bench --prompt-lookup`: decode speed with and without prompt-lookup decoding, on
//! free text and on a copy-heavy context, the two modes alternating run by run; and whether
//! lookup gave exactly the ids plain greedy decoding gave.
//!
//! * Free text: the benchmark prompt (`--prompt-tokens`), as plain `bench` uses it.
//! * Copy-heavy: that prompt, the model's own greedy reply to it, and the prompt again, so the
//!   reply the model is about to give is already in its context (as when it is asked to repeat
//!   or lightly edit text it was given). A model that copies from context repeats it; a
//!   random-weight model does not copy, so there it measures drafts that keep failing.

use std::{sync::atomic::AtomicBool, time::Instant};

use anyhow::{Result, bail};
use serde_json::json;

use super::{
    bench::{BenchArgs, measured_run},
    bench_prompt, load_runtime,
};
use crate::engine::{Completion, Engine, GenerateOptions};

/// One context's measurements: decode tokens/s per run and mode, and how lookup fared.
struct Case {
    name: &'static str,
    prompt_tokens: usize,
    plain: Vec<f64>,
    lookup: Vec<f64>,
    drafted: usize,
    accepted: usize,
    verifications: usize,
    verification_ms: f64,
    /// Plain decode steps and their time, over the plain runs.
    plain_steps: usize,
    plain_step_ms: f64,
    /// Lookup runs whose ids equal the plain runs' ids.
    identical: usize,
    /// Where the first differing lookup run left the plain ids (index into the completion).
    first_difference: Option<usize>,
}

pub fn run(args: &BenchArgs) -> Result<()> {
    if args.runs == 0 || args.gen_tokens == 0 || args.prompt_tokens == 0 {
        bail!("--runs, --gen-tokens and --prompt-tokens must be at least 1");
    }
    let runtime = load_runtime()?;
    let settings = args.decoder.settings();
    let mut engine = Engine::load(runtime, &args.model, &settings)?;
    let free = bench_prompt(&engine, args.prompt_tokens)?;
    let plain_options = |prompt: usize| measured_run(args, args.max_length.unwrap_or(prompt + args.gen_tokens).max(prompt + args.gen_tokens));
    let reply = generate(&mut engine, &free, &plain_options(free.len()))?;
    let copy_heavy: Vec<i64> = free.iter().chain(&reply.completion_ids).chain(&free).copied().collect();
    let mut cases = Vec::new();
    for (name, prompt) in [("free text", &free), ("copy-heavy", &copy_heavy)] {
        let plain = plain_options(prompt.len());
        let lookup = GenerateOptions { prompt_lookup: Some(true), ..plain.clone() };
        // Warm-up, and the reference ids every run is compared with.
        let reference = generate(&mut engine, prompt, &plain)?.completion_ids;
        generate(&mut engine, prompt, &lookup)?;
        let mut case = Case {
            name,
            prompt_tokens: prompt.len(),
            plain: Vec::new(),
            lookup: Vec::new(),
            drafted: 0,
            accepted: 0,
            verifications: 0,
            verification_ms: 0.0,
            plain_steps: 0,
            plain_step_ms: 0.0,
            identical: 0,
            first_difference: None,
        };
        for run in 0..args.runs {
            // Alternate which mode goes first, so drift in the machine's speed favours neither.
            let order = if run % 2 == 0 { [false, true] } else { [true, false] };
            for with_lookup in order {
                let completion = generate(&mut engine, prompt, if with_lookup { &lookup } else { &plain })?;
                let speed = completion.timings.decode_tokens_per_second;
                if !with_lookup {
                    if completion.completion_ids != reference {
                        bail!("plain greedy decoding gave different ids on two runs of the same prompt");
                    }
                    case.plain.push(speed);
                    case.plain_steps += completion.timings.decode_profile.steps;
                    case.plain_step_ms += completion.timings.decode_ms;
                    continue;
                }
                case.lookup.push(speed);
                let stats = completion.timings.prompt_lookup;
                case.drafted += stats.drafted;
                case.accepted += stats.accepted;
                case.verifications += stats.verifications;
                case.verification_ms += stats.verification_ms;
                if completion.completion_ids == reference {
                    case.identical += 1;
                } else if case.first_difference.is_none() {
                    case.first_difference = completion.completion_ids.iter().zip(&reference).position(|(a, b)| a != b);
                }
            }
        }
        cases.push(case);
    }
    args.decoder.finish_profile(&mut engine)?;
    report(args, &engine, &cases)
}

fn generate(engine: &mut Engine, prompt: &[i64], options: &GenerateOptions) -> Result<Completion> {
    let cancel = AtomicBool::new(false);
    let started = Instant::now();
    let completion = engine.generate_ids(prompt, options, &cancel, &mut |_| {})?;
    if completion.usage.completion_tokens != options.max_tokens.unwrap_or_default() {
        bail!(
            "a run generated {} tokens, expected {} ({:.0} ms)",
            completion.usage.completion_tokens,
            options.max_tokens.unwrap_or_default(),
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
    Ok(completion)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn spread(values: &[f64]) -> serde_json::Value {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    json!({"median": median(values), "min": sorted.first(), "max": sorted.last(), "samples": values})
}

fn report(args: &BenchArgs, engine: &Engine, cases: &[Case]) -> Result<()> {
    let rows: Vec<serde_json::Value> = cases
        .iter()
        .map(|case| {
            json!({
                "context": case.name,
                "prompt_tokens": case.prompt_tokens,
                "plain_decode_tokens_per_second": spread(&case.plain),
                "lookup_decode_tokens_per_second": spread(&case.lookup),
                "speedup": median(&case.lookup) / median(&case.plain),
                "drafted_tokens": case.drafted,
                "accepted_tokens": case.accepted,
                "verification_runs": case.verifications,
                "verification_run_ms": case.verification_ms / case.verifications.max(1) as f64,
                "plain_step_ms": case.plain_step_ms / case.plain_steps.max(1) as f64,
                "lookup_runs": case.lookup.len(),
                "identical_runs": case.identical,
                "first_difference_at": case.first_difference,
            })
        })
        .collect();
    if args.json {
        let report = json!({
            "model": engine.facts.folder,
            "threads": engine.facts.intra_threads,
            "gen_tokens": args.gen_tokens,
            "runs": args.runs,
            "cases": rows,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "prompt lookup: {} generated tokens, {} threads, medians of {} alternating runs per mode",
        args.gen_tokens, engine.facts.intra_threads, args.runs
    );
    println!(
        "{:<12}{:>8}{:>14}{:>14}{:>8}{:>18}{:>22}{:>11}",
        "context", "prompt", "plain tok/s", "lookup tok/s", "ratio", "accepted/drafted", "verify ms (k̄) / step", "identical"
    );
    for case in cases {
        let verifications = case.verifications.max(1) as f64;
        println!(
            "{:<12}{:>8}{:>14.1}{:>14.1}{:>8.2}{:>18}{:>22}{:>11}",
            case.name,
            case.prompt_tokens,
            median(&case.plain),
            median(&case.lookup),
            median(&case.lookup) / median(&case.plain),
            format!("{}/{}", case.accepted, case.drafted),
            format!(
                "{:.2} ({:.1}) / {:.2}",
                case.verification_ms / verifications,
                case.drafted as f64 / verifications,
                case.plain_step_ms / case.plain_steps.max(1) as f64
            ),
            format!("{}/{}", case.identical, case.lookup.len()),
        );
    }
    Ok(())
}
