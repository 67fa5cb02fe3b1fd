//! The engine worker thread: streaming events, stop within one step, errors as events.

mod support;

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use modeldesk::engine::{
    ChatMessage, ContextPolicy, DecoderSettings, FinishReason, GenerateOptions, Prompt,
    worker::{Event, Stopper, Worker},
};

fn next_event(worker: &Worker) -> Event {
    worker.recv_timeout(Duration::from_secs(60)).expect("the worker answers within a minute")
}

fn loaded_worker() -> Worker {
    let worker = Worker::spawn(support::runtime(), Box::new(|| {}));
    worker.load(support::tiny_phi3(), DecoderSettings::default());
    assert!(matches!(next_event(&worker), Event::Loading { .. }));
    match next_event(&worker) {
        Event::Loaded(facts) => assert_eq!(facts.layers, 2),
        other => panic!("expected Loaded, got {other:?}"),
    }
    worker
}

#[test]
fn a_reply_streams_and_finishes_with_usage() {
    let mut worker = loaded_worker();
    let request = worker.generate(
        Prompt::Chat(vec![ChatMessage::new("user", "Hello there")]),
        GenerateOptions { max_tokens: Some(12), ..Default::default() },
        ContextPolicy::Refuse,
    );
    let mut streamed = String::new();
    let mut chunks = 0;
    loop {
        match next_event(&worker) {
            Event::Started { id, prompt_tokens, .. } => {
                assert_eq!(id, request.id);
                assert!(prompt_tokens > 0);
            }
            Event::Chunk { text, .. } => {
                chunks += 1;
                streamed.push_str(&text);
            }
            Event::Finished { completion, .. } => {
                assert_eq!(completion.text, streamed, "what streamed is what is kept");
                assert_eq!(completion.usage.completion_tokens, chunks.min(12));
                assert_eq!(completion.usage.total_tokens, completion.usage.prompt_tokens + completion.usage.completion_tokens);
                assert!(completion.timings.time_to_first_token_ms > 0.0);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn stop_ends_a_long_reply_within_one_step() {
    // Stop from inside the waker, which the worker calls right after sending each event, so the
    // number of tokens produced before Stop is known exactly: Started, then 20 chunks.
    let stopper: Arc<OnceLock<Stopper>> = Arc::new(OnceLock::new());
    let events = Arc::new(AtomicUsize::new(0));
    let stop_after = 1 + 20;
    let waker = {
        let (stopper, events) = (Arc::clone(&stopper), Arc::clone(&events));
        Box::new(move || {
            if events.fetch_add(1, Ordering::SeqCst) + 1 == 2 + stop_after {
                stopper.get().expect("stopper set before generating").stop();
            }
        })
    };
    let mut worker = Worker::spawn(support::runtime(), waker);
    let _ = stopper.set(worker.stopper());
    worker.load(support::tiny_phi3(), DecoderSettings::default()); // Loading + Loaded: 2 events
    let started = Instant::now();
    worker.generate(
        Prompt::Raw("The quick brown fox".into()),
        GenerateOptions { max_length: Some(2048), ..Default::default() },
        ContextPolicy::Refuse,
    );
    let completion = loop {
        if let Event::Finished { completion, .. } = next_event(&worker) {
            break completion;
        }
    };
    assert_eq!(completion.finish_reason, FinishReason::Cancelled);
    assert!(completion.usage.completion_tokens <= 21, "{} tokens after Stop at 20", completion.usage.completion_tokens);
    assert!(completion.usage.completion_tokens >= 20);
    assert!(started.elapsed() < Duration::from_secs(30));
    // The worker is usable again right after.
    let again = worker.generate(Prompt::Raw("Hello".into()), GenerateOptions { max_tokens: Some(3), ..Default::default() }, ContextPolicy::Refuse);
    loop {
        if let Event::Finished { id, completion } = next_event(&worker) {
            assert_eq!(id, again.id);
            assert_eq!(completion.usage.completion_tokens, 3);
            assert_eq!(completion.finish_reason, FinishReason::Length);
            break;
        }
    }
}

#[test]
fn errors_arrive_as_events_not_panics() {
    let mut worker = Worker::spawn(support::runtime(), Box::new(|| {}));
    let request = worker.generate(Prompt::Raw("x".into()), GenerateOptions::default(), ContextPolicy::Refuse);
    match next_event(&worker) {
        Event::Failed { id, message } => {
            assert_eq!(id, request.id);
            assert!(message.contains("no model"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    let missing = tempfile::tempdir().unwrap();
    worker.load(missing.path().to_path_buf(), DecoderSettings::default());
    assert!(matches!(next_event(&worker), Event::Loading { .. }));
    match next_event(&worker) {
        Event::LoadFailed { message, .. } => assert!(message.contains("genai_config.json"), "{message}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_conversation_too_long_is_refused_or_trimmed_visibly() {
    let mut worker = loaded_worker();
    let long = "The small model reads a long story about rivers and boats. ".repeat(40);
    let messages = vec![
        ChatMessage::new("system", "Be brief."),
        ChatMessage::new("user", &long),
        ChatMessage::new("assistant", &long),
        ChatMessage::new("user", "And then?"),
    ];
    let options = GenerateOptions { max_length: Some(400), max_tokens: Some(4), ..Default::default() };
    let refused = worker.generate(Prompt::Chat(messages.clone()), options.clone(), ContextPolicy::Refuse);
    match next_event(&worker) {
        Event::Failed { id, message } => {
            assert_eq!(id, refused.id);
            assert!(message.contains("max_length is 400"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    worker.generate(Prompt::Chat(messages), options, ContextPolicy::DropOldestTurns);
    match next_event(&worker) {
        Event::Started { dropped_messages, prompt_tokens, .. } => {
            assert_eq!(dropped_messages, 2, "the two long turns go, the system prompt and last question stay");
            assert!(prompt_tokens < 400);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_panic_while_loading_becomes_load_failed_and_the_worker_goes_on() {
    fn panicking_loader(
        _: &modeldesk::runtime::Runtime,
        path: &std::path::Path,
        _: &DecoderSettings,
    ) -> Result<modeldesk::engine::Engine, modeldesk::engine::EngineError> {
        panic!("a parser fell over on {}", path.display())
    }
    let worker = Worker::spawn_with_loader(support::runtime(), Box::new(|| {}), panicking_loader);
    worker.load(support::tiny_phi3(), DecoderSettings::default());
    assert!(matches!(next_event(&worker), Event::Loading { .. }));
    match next_event(&worker) {
        Event::LoadFailed { message, .. } => {
            assert!(message.starts_with("could not load: "), "{message}");
            assert!(message.contains("a parser fell over"), "{message}");
        }
        other => panic!("expected LoadFailed, got {other:?}"),
    }
    // The thread is alive: it still answers.
    worker.unload();
    assert!(matches!(next_event(&worker), Event::Unloaded));
}

#[test]
fn the_next_turn_reports_the_tokens_it_reuses() {
    let mut worker = loaded_worker();
    let options = GenerateOptions { max_tokens: Some(6), ..Default::default() };
    let mut messages = vec![ChatMessage::new("user", "Hello there")];
    let mut starts = Vec::new();
    for _ in 0..2 {
        worker.generate(Prompt::Chat(messages.clone()), options.clone(), ContextPolicy::Refuse);
        loop {
            match next_event(&worker) {
                Event::Started { prompt_tokens, cached_tokens, .. } => starts.push((prompt_tokens, cached_tokens)),
                Event::Finished { completion, .. } => {
                    assert_eq!(completion.usage.cached_tokens, starts.last().unwrap().1, "Started and usage agree");
                    messages.extend([ChatMessage::new("assistant", &completion.text), ChatMessage::new("user", "And?")]);
                    break;
                }
                Event::Failed { message, .. } => panic!("{message}"),
                _ => {}
            }
        }
    }
    assert_eq!(starts[0].1, 0, "nothing is cached before the first request");
    assert!(starts[1].1 >= starts[0].0, "the second turn reuses at least the first prompt: {starts:?}");
}

#[test]
fn a_reply_that_reaches_the_graphs_own_limit_keeps_its_text() {
    // A copy of the fixture whose genai_config.json claims a longer context than the graph's
    // rotary tables (2048 rows) can serve: ONNX Runtime refuses the step at 2048 tokens.
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(support::tiny_phi3()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
    }
    let config_path = copy.path().join("genai_config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["model"]["context_length"] = 4096.into();
    config["search"]["max_length"] = 4096.into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    let mut worker = Worker::spawn(support::runtime(), Box::new(|| {}));
    worker.load(copy.path().to_path_buf(), DecoderSettings::default());
    assert!(matches!(next_event(&worker), Event::Loading { .. }));
    assert!(matches!(next_event(&worker), Event::Loaded(_)));
    let prompt = "The quick brown fox jumps over the lazy dog. ".repeat(120);
    worker.generate(
        Prompt::Raw(prompt),
        GenerateOptions { max_tokens: Some(4000), suppress_eos: true, ..Default::default() },
        ContextPolicy::Refuse,
    );
    let (mut prompt_tokens, mut streamed) = (0, String::new());
    let completion = loop {
        match next_event(&worker) {
            Event::Started { prompt_tokens: p, .. } => prompt_tokens = p,
            Event::Chunk { text, .. } => streamed.push_str(&text),
            Event::Finished { completion, .. } => break completion,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(prompt_tokens < 2048, "the prompt fits the graph: {prompt_tokens}");
    assert_eq!(completion.finish_reason, FinishReason::Length);
    // 2048 positions ran through the graph; the token their last logits chose is kept too.
    assert_eq!(prompt_tokens + completion.usage.completion_tokens, 2049, "it ends exactly where the graph does");
    assert!(!completion.text.is_empty());
    assert_eq!(completion.text, streamed, "the text produced so far is kept");
    let note = completion.note.as_deref().unwrap_or_default();
    assert!(note.contains("2048") && note.contains("cos_cache"), "{note}");
}
