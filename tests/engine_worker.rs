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
