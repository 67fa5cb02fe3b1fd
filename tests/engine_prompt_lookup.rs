//! Prompt-lookup decoding gives exactly the ids plain greedy decoding gives, stops where it
//! stops, and leaves the KV cache as it leaves it: on the repository's fixtures (including one
//! that copies from its context, so drafts are accepted) and on the shared Phi-3, Phi-3.5 and
//! Phi-4-mini builds, in both KV modes.

mod support;

use std::{
    path::PathBuf,
    sync::atomic::{AtomicBool, Ordering},
};

use modeldesk::engine::{
    ChatMessage, Completion, ContextPolicy, DecoderSettings, Engine, GenerateOptions, KvMode, Progress, Prompt,
    prompt_lookup::LookupStats,
};

fn copying_fixture() -> PathBuf {
    support::repo().join("tests/fixtures/tiny-phi3-copying")
}

/// A reply generated from a fresh cache, with the ids the cache holds afterwards.
struct Run {
    completion: Completion,
    cached: Vec<i64>,
}

fn run(engine: &mut Engine, prompt: &[i64], options: &GenerateOptions, cancel_after: Option<usize>) -> Run {
    engine.clear_cache();
    let cancel = AtomicBool::new(false);
    let mut tokens = 0;
    let completion = engine
        .generate_ids(prompt, options, &cancel, &mut |progress| {
            if let Progress::Token { .. } = progress {
                tokens += 1;
                if Some(tokens) == cancel_after {
                    cancel.store(true, Ordering::SeqCst);
                }
            }
        })
        .unwrap();
    Run { cached: engine.cached_ids().to_vec(), completion }
}

/// Runs `prompt` plainly and with prompt lookup; asserts both end the same way. Returns the
/// lookup run's drafting totals.
fn compare(engine: &mut Engine, label: &str, prompt: &[i64], options: &GenerateOptions, cancel_after: Option<usize>) -> LookupStats {
    let plain = run(engine, prompt, &GenerateOptions { prompt_lookup: None, ..options.clone() }, cancel_after);
    let lookup = run(engine, prompt, &GenerateOptions { prompt_lookup: Some(true), ..options.clone() }, cancel_after);
    let (p, l) = (&plain.completion, &lookup.completion);
    assert_eq!(l.completion_ids, p.completion_ids, "{label}: lookup gives plain greedy's ids");
    assert_eq!((l.eos_token, l.finish_reason), (p.eos_token, p.finish_reason), "{label}: and ends the same way");
    assert_eq!(l.text, p.text, "{label}: and the same text");
    assert_eq!(lookup.cached, plain.cached, "{label}: the cache holds the same ids afterwards");
    assert_eq!(p.timings.prompt_lookup, LookupStats::default(), "{label}: plain decoding drafts nothing");
    l.timings.prompt_lookup
}

fn chat(engine: &Engine, user: &str) -> Vec<i64> {
    engine.prepare(&Prompt::Chat(vec![ChatMessage::new("user", user)]), usize::MAX, ContextPolicy::Refuse).unwrap().ids
}

const FREE: &str = "Write a short story about a cat who learns to fly.";
const CODE: &str = "Repeat this function with the variable renamed from total to sum:\n\n\
                    def add_all(values):\n    total = 0\n    for value in values:\n        total += value\n    return total\n";

/// The prompt, the model's own greedy reply to it, and the prompt again: the context holds the
/// reply the model is about to give.
/// The repository's fixtures and the shared ones: every Phi family member and precision.
fn every_fixture() -> [PathBuf; 8] {
    let shared = support::shared().join("fixtures");
    [
        support::tiny_phi3(),
        copying_fixture(),
        support::repo().join("tests/fixtures/tiny-phi3-fp16"),
        support::repo().join("tests/fixtures/tiny-phi4mini"),
        shared.join("phi3-micro-int4"),
        shared.join("phi3-micro-fp16"),
        shared.join("phi35-micro-int4"),
        shared.join("phi4mini-micro-int4"),
    ]
}

fn copy_heavy(engine: &mut Engine, prompt: &[i64], tokens: usize) -> Vec<i64> {
    let options = GenerateOptions { max_tokens: Some(tokens), do_sample: Some(false), suppress_eos: true, ..GenerateOptions::default() };
    let reply = run(engine, prompt, &options, None).completion.completion_ids;
    prompt.iter().chain(&reply).chain(prompt).copied().collect()
}

#[test]
fn lookup_gives_plain_greedy_ids_on_every_fixture() {
    let runtime = support::runtime();
    let models = every_fixture();
    let mut compared = 0;
    let mut copying_accepted = 0;
    let mut other_verifications = 0;
    for model in &models {
        let name = model.file_name().unwrap().to_string_lossy().into_owned();
        let mut engine = Engine::load(runtime, model, &DecoderSettings::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let free = chat(&engine, FREE);
        let code = chat(&engine, CODE);
        let copy = copy_heavy(&mut engine, &free, 40);
        let greedy = GenerateOptions { max_tokens: Some(48), do_sample: Some(false), ..GenerateOptions::default() };
        let cases = [
            ("free text", &free, greedy.clone()),
            ("code to repeat", &code, greedy.clone()),
            ("copy-heavy", &copy, GenerateOptions { suppress_eos: true, ..greedy.clone() }),
            ("copy-heavy, repetition penalty 1.2", &copy, GenerateOptions { repetition_penalty: Some(1.2), suppress_eos: true, ..greedy.clone() }),
            ("copy-heavy, no-repeat 4-grams", &copy, GenerateOptions { no_repeat_ngram_size: Some(4), suppress_eos: true, ..greedy.clone() }),
        ];
        for kv_mode in [KvMode::Shared, KvMode::Growing] {
            for (label, prompt, options) in &cases {
                let options = GenerateOptions { kv_mode, ..options.clone() };
                let stats = compare(&mut engine, &format!("{name} / {label} / {kv_mode:?}"), prompt, &options, None);
                compared += 1;
                if model != &copying_fixture() {
                    other_verifications += stats.verifications;
                } else if *label == "copy-heavy" {
                    copying_accepted += stats.accepted;
                }
            }
        }
    }
    assert_eq!(compared, models.len() * 5 * 2);
    // The copying fixture repeats the reply its context holds, so most of it comes from drafts.
    assert!(copying_accepted >= 2 * 24, "drafts accepted on the copying fixture: {copying_accepted}");
    // The random-weight models copy nothing, but their replies still meet drafts, whose
    // verification runs' first rows (computed for k+1 tokens at once) choose the next token.
    assert!(other_verifications >= 1, "verification runs on the other fixtures: {other_verifications}");
}

/// Every way a reply can end inside an accepted draft: the token limit, a stop string, an EOS,
/// the user stopping it; the cache afterwards is what plain decoding leaves, so the next turn
/// reuses the same prefix.
#[test]
fn lookup_stops_exactly_where_plain_decoding_stops() {
    let runtime = support::runtime();
    let mut engine = Engine::load(runtime, &copying_fixture(), &DecoderSettings::default()).unwrap();
    let code = chat(&engine, CODE);
    let prompt = copy_heavy(&mut engine, &code, 40);
    let greedy = GenerateOptions { do_sample: Some(false), suppress_eos: true, ..GenerateOptions::default() };
    let mut accepted = 0;
    for max_tokens in 1..=24 {
        let options = GenerateOptions { max_tokens: Some(max_tokens), ..greedy.clone() };
        accepted += compare(&mut engine, &format!("max_tokens {max_tokens}"), &prompt, &options, None).accepted;
        let options = GenerateOptions { max_tokens: Some(40), ..greedy.clone() };
        accepted += compare(&mut engine, &format!("stopped after {max_tokens}"), &prompt, &options, Some(max_tokens)).accepted;
    }
    assert!(accepted > 24 * 10, "the limits fall inside accepted drafts: {accepted} accepted");

    let full = run(&mut engine, &prompt, &GenerateOptions { max_tokens: Some(40), ..greedy.clone() }, None).completion;
    assert_eq!(full.completion_ids.len(), 40);
    // Stop strings cut at text positions inside the reply.
    let mut stops_checked = 0;
    for at in [3, 9, 17, 30] {
        let piece: String = full.text.chars().skip(at).take(2).collect();
        if piece.trim().is_empty() {
            continue;
        }
        let options = GenerateOptions { max_tokens: Some(40), stop: vec![piece.clone()], ..greedy.clone() };
        compare(&mut engine, &format!("stop {piece:?}"), &prompt, &options, None);
        stops_checked += 1;
    }
    assert!(stops_checked >= 2, "stop strings tried: {stops_checked}");

    // An EOS the reply meets in the middle of a draft: the copy whose EOS set holds a token the
    // reply generates at position 12.
    let temp = tempfile::tempdir().unwrap();
    let eos_model = support::with_extra_eos(&copying_fixture(), full.completion_ids[12], temp.path());
    let mut eos_engine = Engine::load(runtime, &eos_model, &DecoderSettings::default()).unwrap();
    let options = GenerateOptions { max_tokens: Some(40), do_sample: Some(false), ..GenerateOptions::default() };
    compare(&mut eos_engine, "EOS inside a draft", &prompt, &options, None);
    let ended = run(&mut eos_engine, &prompt, &GenerateOptions { prompt_lookup: Some(true), ..options }, None).completion;
    assert_eq!(ended.eos_token, Some(full.completion_ids[12]), "the reply ended at the extra EOS");
    assert!(ended.completion_ids.len() <= 12);

    // The next turn after a lookup reply reuses what it would after a plain one.
    for lookup in [None, Some(true)] {
        let options = GenerateOptions { max_tokens: Some(20), prompt_lookup: lookup, ..greedy.clone() };
        let first = run(&mut engine, &prompt, &options, None).completion;
        let next: Vec<i64> = prompt.iter().chain(&first.completion_ids).chain(&chat(&engine, "Thanks!")).copied().collect();
        let cancel = AtomicBool::new(false);
        let second = engine.generate_ids(&next, &options, &cancel, &mut |_| {}).unwrap();
        assert_eq!(second.usage.cached_tokens, prompt.len() + 19, "lookup {lookup:?}: the next turn reuses all but the reply's last token");
    }
}

/// Sampling ignores the setting: seeded replies are the same with it on or off.
#[test]
fn sampling_falls_back_to_plain_decoding() {
    let runtime = support::runtime();
    let mut engine = Engine::load(runtime, &copying_fixture(), &DecoderSettings::default()).unwrap();
    let free = chat(&engine, FREE);
    let prompt = copy_heavy(&mut engine, &free, 30);
    let sampled = GenerateOptions {
        max_tokens: Some(30),
        do_sample: Some(true),
        top_k: Some(5),
        temperature: Some(0.8),
        seed: Some(11),
        ..GenerateOptions::default()
    };
    let plain = run(&mut engine, &prompt, &sampled, None).completion;
    let with = run(&mut engine, &prompt, &GenerateOptions { prompt_lookup: Some(true), ..sampled }, None).completion;
    assert_eq!(with.completion_ids, plain.completion_ids);
    assert_eq!(with.timings.prompt_lookup, LookupStats::default(), "no drafts while sampling");
    assert_eq!(plain.completion_ids.len(), 30);
}

/// Drafts never carry a reply across onnxruntime-genai's 4,097-token re-read of phi3 models: the
/// re-read happens at the same step as in plain decoding.
#[test]
fn lookup_crosses_the_4097_token_reread_like_plain_decoding() {
    let runtime = support::runtime();
    let mut engine = Engine::load(runtime, &copying_fixture(), &DecoderSettings::default()).unwrap();
    assert!(engine.facts.context_length > 4200, "the copying fixture's context reaches past 4097");
    let unit = chat(&engine, CODE);
    let mut prompt: Vec<i64> = unit.iter().copied().cycle().take(2000).collect();
    prompt = copy_heavy(&mut engine, &prompt, 60);
    prompt.truncate(4080);
    let options = |max_tokens| GenerateOptions { max_tokens: Some(max_tokens), do_sample: Some(false), suppress_eos: true, ..GenerateOptions::default() };
    let before = compare(&mut engine, "up to 4096", &prompt, &options(16), None);
    let across = compare(&mut engine, "across 4097", &prompt, &options(40), None);
    assert!(before.accepted > 5, "drafts were accepted before the re-read: {before:?}");
    assert!(across.accepted >= before.accepted + 10, "and after it: {across:?} (before: {before:?})");
}



/// A verification run computes k+1 rows at once, with matrix kernels for M = k+1 rows instead of
/// 1. Its rows are not bitwise the one-token steps' (at accuracy level 4 the int4 kernels quantise
/// activations differently for one row and for several), but on every fixture each row picks the
/// same greedy token, unless the run straddles LongRoPE's switch: then all its rows use the table
/// its last row picks, so the engine never drafts across it (`prompt_lookup::draft_room`).
#[test]
fn verification_rows_choose_what_one_token_steps_choose() {
    let runtime = support::runtime();
    let models = every_fixture();
    let (mut rows_compared, mut straddling_runs, mut straddling_changed) = (0, 0, 0);
    for model in &models {
        let name = model.file_name().unwrap().to_string_lossy().into_owned();
        let mut engine = Engine::load(runtime, model, &DecoderSettings::default()).unwrap();
        let switch = engine.facts.graph.as_ref().and_then(|graph| graph.long_rope_switch);
        let prompt = chat(&engine, CODE);
        let tokens = 30;
        let capacity = prompt.len() + tokens + 1;
        // One token at a time: the row after each token of the greedy reply.
        let mut cache = engine.decoder.new_cache(KvMode::Shared);
        let first = engine.decoder.step_row(&mut cache, &prompt, capacity, prompt.len() - 1).unwrap();
        let mut reply = vec![argmax(first.row(prompt.len() - 1))];
        let mut single = Vec::new();
        for _ in 0..tokens {
            let step = engine.decoder.step(&mut cache, &reply[reply.len() - 1..], capacity).unwrap();
            single.push(step.row(0).to_vec());
            reply.push(argmax(step.row(0)));
        }
        // The same reply fed in runs of 2, 3, 5 and 9 tokens, each after the rows before it.
        for width in [2, 3, 5, 9] {
            let mut cache = engine.decoder.new_cache(KvMode::Shared);
            engine.decoder.step_row(&mut cache, &prompt, capacity, prompt.len() - 1).unwrap();
            let mut at = 0;
            while at + width <= tokens {
                let run = engine.decoder.step(&mut cache, &reply[at..at + width], capacity).unwrap();
                // Plain steps' masks are prompt + at + 1 ..= prompt + at + width long.
                let first_mask = prompt.len() + at + 1;
                let straddles = switch.is_some_and(|switch| first_mask <= switch && switch < first_mask + width - 1);
                let max_difference = (0..width)
                    .flat_map(|row| run.row(row).iter().zip(&single[at + row]).map(|(a, b)| (a - b).abs()))
                    .fold(0.0f32, f32::max);
                if straddles {
                    straddling_runs += 1;
                    straddling_changed += usize::from(max_difference > 1.0);
                    // The rows after it hold keys computed with the other table: start afresh.
                    break;
                }
                for row in 0..width {
                    assert_eq!(argmax(run.row(row)), argmax(&single[at + row]), "{name}: width {width}, row {}", at + row);
                    rows_compared += 1;
                }
                assert!(max_difference < 1.0, "{name}: width {width} from row {at}: rows differ by {max_difference}");
                at += width;
            }
        }
    }
    assert!(rows_compared >= 8 * 100, "rows compared: {rows_compared}");
    // The shared LongRoPE builds switch at 64 tokens, inside these replies.
    assert!(straddling_runs >= 4, "runs across the LongRoPE switch: {straddling_runs}");
    assert_eq!(straddling_changed, straddling_runs, "a run across the switch computes its rows with the other table");
}

fn argmax(row: &[f32]) -> i64 {
    let mut best = 0;
    for (index, &value) in row.iter().enumerate() {
        if value > row[best] {
            best = index;
        }
    }
    best as i64
}
