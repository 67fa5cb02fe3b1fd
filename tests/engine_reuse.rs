//! KV-cache reuse across requests: every request is token-identical to onnxruntime-genai
//! replaying the same requests on one generator (`rewind_to` the common prefix, `append_tokens`
//! the rest; tests/python/genai_conversation.py), in both KV modes, on the repository's fixture
//! and on the shared micro Phi-3 with the real tokenizer.

mod support;

use std::{
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
};

use modeldesk::engine::{
    ChatMessage, ContextPolicy, DecoderSettings, Engine, GenerateOptions, KvMode, Progress, Prompt,
    kv_cache::KV_CHUNK_TOKENS,
};
use serde_json::{Value, json};

/// One request as sent: its prompt ids, its token limit, and where the user stopped it.
struct Sent {
    label: &'static str,
    ids: Vec<i64>,
    max_tokens: usize,
    stop_after: Option<usize>,
}

/// What our engine did with one request.
#[derive(Debug, PartialEq)]
struct Outcome {
    reused: usize,
    generated: Vec<i64>,
    eos: Option<i64>,
}

fn generate(engine: &mut Engine, sent: &Sent, options: &GenerateOptions) -> (Outcome, String, String) {
    let cancel = AtomicBool::new(false);
    let options = GenerateOptions { max_tokens: Some(sent.max_tokens), ..options.clone() };
    let expected_reuse = engine.reusable_prefix(&sent.ids, &options);
    let mut tokens = 0;
    let mut reported_reuse = None;
    let completion = engine
        .generate_ids(&sent.ids, &options, &cancel, &mut |progress| match progress {
            Progress::Prefilled { cached_tokens, .. } => reported_reuse = Some(cached_tokens),
            Progress::Token { .. } => {
                tokens += 1;
                if Some(tokens) == sent.stop_after {
                    cancel.store(true, Ordering::SeqCst);
                }
            }
        })
        .unwrap_or_else(|e| panic!("{}: {e}", sent.label));
    assert_eq!(completion.usage.cached_tokens, expected_reuse, "{}: reusable_prefix tells what generate reuses", sent.label);
    assert_eq!(reported_reuse, Some(expected_reuse), "{}: progress reports the reuse", sent.label);
    assert_eq!(completion.usage.prompt_tokens, sent.ids.len(), "{}: usage counts the whole prompt", sent.label);
    let outcome = Outcome { reused: completion.usage.cached_tokens, generated: completion.completion_ids.clone(), eos: completion.eos_token };
    (outcome, completion.text, completion.finish_reason.as_str().to_owned())
}

fn chat_ids(engine: &Engine, messages: &[ChatMessage]) -> Vec<i64> {
    engine.prepare(&Prompt::Chat(messages.to_vec()), usize::MAX, ContextPolicy::Refuse).unwrap().ids
}

/// A conversation that exercises every way a request can relate to the cache. Returns what was
/// sent (for the reference) and what our engine did.
fn conversation(engine: &mut Engine, kv_mode: KvMode) -> (Vec<Sent>, Vec<Outcome>) {
    engine.clear_cache();
    let options = GenerateOptions { kv_mode, ..GenerateOptions::default() };
    let mut sent = Vec::new();
    let mut outcomes = Vec::new();
    let mut messages = vec![ChatMessage::new("system", "You are a helpful assistant."), ChatMessage::new("user", "What is the capital of Spain?")];
    let mut ask = |engine: &mut Engine, label, ids: Vec<i64>, max_tokens, stop_after| {
        let request = Sent { label, ids, max_tokens, stop_after };
        let (outcome, text, _) = generate(engine, &request, &options);
        sent.push(request);
        outcomes.push(outcome);
        text
    };
    // Three turns, each carrying the reply before it.
    let ids = chat_ids(engine, &messages);
    let reply = ask(engine, "turn 1", ids, 12, None);
    messages.extend([ChatMessage::new("assistant", &reply), ChatMessage::new("user", "And of France?")]);
    let ids = chat_ids(engine, &messages);
    let reply = ask(engine, "turn 2", ids, 12, None);
    messages.extend([ChatMessage::new("assistant", &reply), ChatMessage::new("user", "Tell me a story about a river.")]);
    let turn3 = chat_ids(engine, &messages);
    ask(engine, "turn 3", turn3.clone(), 16, None);
    // Regenerate turn 3: the whole prompt is cached; only its last token runs again.
    ask(engine, "regenerate turn 3", turn3, 16, None);
    // Edit the second question and resend: the cache is rewound into its middle.
    let mut edited = messages[..4].to_vec();
    edited[3] = ChatMessage::new("user", "And of Portugal?");
    let ids = chat_ids(engine, &edited);
    ask(engine, "edit turn 2", ids, 10, None);
    // A request sharing nothing with the cache.
    let raw = engine.tokenizer.encode("Once upon a time a boat sailed down a long river").unwrap();
    ask(engine, "unrelated prompt", raw, 10, None);
    // A reply stopped by the user, then a new turn on top of the text that was kept.
    let mut stopped = vec![ChatMessage::new("system", "You are a helpful assistant."), ChatMessage::new("user", "Count to ten.")];
    let ids = chat_ids(engine, &stopped);
    let partial = ask(engine, "stopped reply", ids, 40, Some(5));
    stopped.extend([ChatMessage::new("assistant", &partial), ChatMessage::new("user", "Go on.")]);
    let ids = chat_ids(engine, &stopped);
    ask(engine, "turn after a stopped reply", ids, 12, None);
    (sent, outcomes)
}

fn reference(model: &Path, max_length: usize, options: Value, sent: &[Sent]) -> Vec<Outcome> {
    let requests: Vec<Value> = sent.iter().map(|s| json!({"ids": s.ids, "max_tokens": s.stop_after.unwrap_or(s.max_tokens)})).collect();
    let input = json!([{"model": model, "max_length": max_length, "options": options, "requests": requests}]);
    let results = support::python_script("genai_conversation.py", &input);
    let results = results[0].as_array().expect("one list of results");
    assert_eq!(results.len(), sent.len());
    results
        .iter()
        .map(|r| Outcome {
            reused: r["reused"].as_u64().unwrap() as usize,
            generated: serde_json::from_value(r["generated_ids"].clone()).unwrap(),
            eos: r["eos"].as_i64(),
        })
        .collect()
}

#[test]
fn reused_prefixes_give_genais_ids_over_a_whole_conversation() {
    let runtime = support::runtime();
    let models = [support::tiny_phi3(), support::shared().join("fixtures/phi3-micro-int4")];
    let mut compared = 0;
    for model in &models {
        let mut engine = Engine::load(runtime, model, &DecoderSettings::default()).unwrap();
        let max_length = engine.facts.default_max_length;
        let (sent, shared) = conversation(&mut engine, KvMode::Shared);
        let (_, growing) = conversation(&mut engine, KvMode::Growing);
        assert_eq!(shared, growing, "{}: both KV modes reuse and generate the same", model.display());
        let want = reference(model, max_length, json!({}), &sent);
        for ((request, ours), theirs) in sent.iter().zip(&shared).zip(&want) {
            assert_eq!(ours, theirs, "{} / {}", model.display(), request.label);
            compared += 1;
        }
        // The shapes the scenario promises: reuse where the prompt continues the cache, a rewind
        // to one token short of a repeated prompt, nothing for an unrelated prompt.
        let by = |label: &str| sent.iter().position(|s| s.label == label).unwrap();
        assert_eq!(shared[0].reused, 0);
        // The reply's text, encoded again, may split differently from the ids that were generated,
        // so reuse covers at least the previous prompt, and the reply as far as it agrees.
        assert!(shared[by("turn 2")].reused >= sent[by("turn 1")].ids.len(), "turn 2 reuses turn 1");
        assert!(shared[by("turn 3")].reused >= sent[by("turn 2")].ids.len());
        assert_eq!(shared[by("regenerate turn 3")].reused, sent[by("turn 3")].ids.len() - 1);
        let edit = shared[by("edit turn 2")].reused;
        assert!(edit > sent[by("turn 1")].ids.len() && edit < sent[by("turn 2")].ids.len(), "rewound into the middle: {edit}");
        assert_eq!(shared[by("unrelated prompt")].reused, 0);
        let stopped = by("stopped reply");
        assert_eq!(shared[stopped].generated.len(), 5, "the stop came after five tokens");
        assert!(shared[stopped + 1].reused >= sent[stopped].ids.len(), "the turn after a stop reuses the prompt before it");
    }
    assert_eq!(compared, 2 * 8);
}

#[test]
fn dropping_old_turns_invalidates_the_prefix_and_still_matches_genai() {
    let runtime = support::runtime();
    let model = support::tiny_phi3();
    let mut engine = Engine::load(runtime, &model, &DecoderSettings::default()).unwrap();
    let max_length = 260;
    let options = GenerateOptions { max_length: Some(max_length), ..GenerateOptions::default() };
    let question = "Tell me a story about a river and a boat, and about the sailors who sang.";
    let mut messages = vec![ChatMessage::new("system", "Be brief.")];
    let mut sent = Vec::new();
    let mut outcomes = Vec::new();
    let mut dropped = Vec::new();
    for turn in 0..8 {
        messages.push(ChatMessage::new("user", &format!("{turn}: {question}")));
        let prepared = engine.prepare(&Prompt::Chat(messages.clone()), max_length, ContextPolicy::DropOldestTurns).unwrap();
        let request = Sent { label: "turn", ids: prepared.ids, max_tokens: 24, stop_after: None };
        let (outcome, text, _) = generate(&mut engine, &request, &options);
        dropped.push(prepared.dropped_messages);
        messages.push(ChatMessage::new("assistant", &text));
        sent.push(request);
        outcomes.push(outcome);
    }
    let first_drop = dropped.iter().position(|&d| d > 0).expect("the window fills up within eight turns");
    assert!(first_drop >= 2, "turns fit at first: {dropped:?}");
    // Dropping the oldest turn changes the prompt right after the system prompt.
    assert!(outcomes[first_drop].reused < sent[first_drop - 1].ids.len() / 2, "the cached turns after the system prompt are not reused");
    assert!(outcomes[first_drop].reused > 0, "the system prompt is");
    let want = reference(&model, max_length, json!({}), &sent);
    assert_eq!(outcomes, want);
}

#[test]
fn seeded_sampling_with_reuse_equals_sampling_without_it() {
    let runtime = support::runtime();
    let mut checked = 0;
    for model in [support::tiny_phi3(), support::shared().join("fixtures/phi3-micro-int4")] {
        let mut engine = Engine::load(runtime, &model, &DecoderSettings::default()).unwrap();
        for sampling in [
            GenerateOptions { do_sample: Some(true), top_k: Some(5), temperature: Some(0.8), seed: Some(42), ..Default::default() },
            GenerateOptions { do_sample: Some(true), top_k: Some(0), top_p: Some(0.9), temperature: Some(0.7), seed: Some(7), ..Default::default() },
        ] {
            let mut messages = vec![ChatMessage::new("user", "What is the capital of Spain?")];
            for turn in 0..3 {
                let ids = chat_ids(&engine, &messages);
                let request = Sent { label: "turn", ids, max_tokens: 16, stop_after: None };
                let (reused, text, _) = generate(&mut engine, &request, &sampling);
                let fresh_options = GenerateOptions { ignore_cached_prefix: true, ..sampling.clone() };
                let (fresh, _, _) = generate(&mut engine, &request, &fresh_options);
                assert_eq!(fresh.reused, 0);
                assert_eq!(reused.generated, fresh.generated, "{} turn {turn}", model.display());
                assert_eq!(reused.eos, fresh.eos);
                if turn > 0 {
                    assert!(reused.reused > 0, "turn {turn} reused the cache");
                }
                messages.extend([ChatMessage::new("assistant", &text), ChatMessage::new("user", "Why?")]);
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 12);
}

#[test]
fn the_cache_grows_in_chunks_is_kept_across_rewinds_and_can_be_freed() {
    let runtime = support::runtime();
    let mut engine = Engine::load(runtime, &support::tiny_phi3(), &DecoderSettings::default()).unwrap();
    let options = GenerateOptions { max_length: Some(2048), max_tokens: Some(200), suppress_eos: true, ..Default::default() };
    let long = engine.tokenizer.encode(&"The quick brown fox jumps over the lazy dog. ".repeat(12)).unwrap();
    let cancel = AtomicBool::new(false);
    let first = engine.generate_ids(&long, &options, &cancel, &mut |_| {}).unwrap();
    let held = engine.cached_ids().len();
    assert_eq!(held, long.len() + first.completion_ids.len() - 1, "prompt plus every reply token but the last (never fed)");
    let capacity = engine.cache_capacity();
    assert!(capacity >= held && capacity % KV_CHUNK_TOKENS == 0, "{capacity} rows for {held} tokens");
    // A short request sharing only a little: the cache is rewound, its buffers stay.
    let short = long[..20].to_vec();
    let again = engine.generate_ids(&short, &GenerateOptions { max_tokens: Some(4), ..options.clone() }, &cancel, &mut |_| {}).unwrap();
    assert_eq!(again.usage.cached_tokens, 19);
    assert_eq!(engine.cache_capacity(), capacity, "a rewind keeps the buffers for the next turn");
    assert_eq!(engine.cached_ids().len(), 20 + 3);
    engine.clear_cache();
    assert_eq!(engine.cache_capacity(), 0);
    assert!(engine.cached_ids().is_empty());
}

#[test]
fn preparing_the_next_turn_grows_the_cache_between_requests_and_changes_no_id() {
    let runtime = support::runtime();
    let mut engine = Engine::load(runtime, &support::tiny_phi3(), &DecoderSettings::default()).unwrap();
    let options = GenerateOptions { max_length: Some(2048), max_tokens: Some(40), suppress_eos: true, ..Default::default() };
    let cancel = AtomicBool::new(false);
    let long_turn = |turn: usize| format!("Turn {turn}: {}", "the river carries boats past the old mill. ".repeat(10));
    // Four turns of about 150 tokens: the cache crosses a 256-row chunk at least twice.
    let run = |engine: &mut Engine, prepare: bool| {
        engine.clear_cache();
        let mut messages = vec![ChatMessage::new("system", "You are a helpful assistant.")];
        let mut replies = Vec::new();
        let mut grew_during_a_request = false;
        let mut previous_held = 0;
        for turn in 1..=4 {
            messages.push(ChatMessage::new("user", &long_turn(turn)));
            let before = engine.cache_capacity();
            let (_, completion) = engine.generate(&Prompt::Chat(messages.clone()), &options, ContextPolicy::Refuse, &cancel, &mut |_| {}).unwrap();
            grew_during_a_request |= turn > 1 && engine.cache_capacity() != before;
            assert!(completion.usage.cached_tokens > 0 || turn == 1, "turn {turn} reuses the cache");
            messages.push(ChatMessage::reply(&completion.text, completion.completion_ids.clone()));
            let held = engine.cached_ids().len();
            if prepare {
                // This turn made the conversation this much longer; the next is taken to be alike.
                let added = held - previous_held;
                let rows_before = engine.cache_capacity();
                let reserved = engine.prepare_next_turn().unwrap();
                assert_eq!(reserved, engine.cache_capacity());
                // The documented growth rule: whole chunks, at least doubling, within max_length.
                let wanted = (held + added).next_multiple_of(KV_CHUNK_TOKENS);
                let expected = if rows_before >= held + added { rows_before } else { wanted.max(2 * rows_before).min(2048) };
                assert_eq!(reserved, expected, "turn {turn}: {held} held + {added} expected, {rows_before} rows before");
                assert!(reserved >= (held + added).min(2048));
            }
            previous_held = held;
            replies.push(completion.completion_ids);
        }
        (replies, grew_during_a_request)
    };
    let (plain, plain_grew) = run(&mut engine, false);
    let (prepared, prepared_grew) = run(&mut engine, true);
    assert_eq!(plain.len(), 4);
    assert_eq!(prepared, plain, "the reserve copies every kept row: the same replies");
    assert!(plain_grew, "without preparation some request grows the cache itself");
    assert!(!prepared_grew, "with it, no request waits for the cache to grow");
    // A request stopped before its first run added nothing, so nothing more is reserved (were
    // it counted as adding what the cache holds, the cache would grow: held is over half of it).
    engine.clear_cache();
    let turn = vec![ChatMessage::new("system", "You are a helpful assistant."), ChatMessage::new("user", &long_turn(1))];
    engine.generate(&Prompt::Chat(turn), &options, ContextPolicy::Refuse, &cancel, &mut |_| {}).unwrap();
    let (held, capacity) = (engine.cached_ids().to_vec(), engine.cache_capacity());
    assert!(2 * held.len() > capacity, "{} held in {capacity} rows", held.len());
    let mut longer = held.clone();
    longer.extend(engine.tokenizer.encode(&long_turn(5)).unwrap());
    let stopped = engine.generate_ids(&longer, &options, &AtomicBool::new(true), &mut |_| {}).unwrap();
    assert!(stopped.completion_ids.is_empty());
    assert_eq!(engine.cached_ids(), &held[..]);
    assert_eq!(engine.prepare_next_turn().unwrap(), capacity);
    // A cleared cache has nothing to prepare; a growing-mode cache holds just its rows.
    engine.clear_cache();
    assert_eq!(engine.prepare_next_turn().unwrap(), 0);
    let growing = GenerateOptions { kv_mode: KvMode::Growing, ..options.clone() };
    engine.generate(&Prompt::Raw(long_turn(1)), &growing, ContextPolicy::Refuse, &cancel, &mut |_| {}).unwrap();
    assert_eq!(engine.prepare_next_turn().unwrap(), engine.cached_ids().len());
}
