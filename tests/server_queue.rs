//! The engine queue on the tiny fixture: one generation at a time in FIFO order, a bounded
//! queue, cancel of queued (never starts) and running (stops within a step) requests, counts,
//! and model changes that drop what waits.

mod support;

use std::{
    sync::mpsc::Receiver,
    time::{Duration, Instant},
};

use modeldesk::{
    engine::{ChatMessage, ContextPolicy, DecoderSettings, FinishReason, GenerateOptions, Prompt},
    engine_queue::{EngineQueue, QueueConfig, QueueCounts, QueueEvent, Request, RequestEvent, SubmitError, channel_sink},
};

fn loaded_queue(max_queue: usize) -> EngineQueue {
    let queue = EngineQueue::spawn(support::runtime(), QueueConfig { max_queue }, Box::new(|| {}));
    assert_eq!(queue.submit(request(1), channel_sink(Box::new(|| {})).0).err(), Some(SubmitError::NoModel));
    queue.load(support::tiny_phi3(), DecoderSettings::default());
    loop {
        match queue.recv_timeout(Duration::from_secs(60)).expect("the queue reports the load") {
            QueueEvent::Loaded(facts) => {
                assert_eq!(facts.layers, 2);
                break;
            }
            QueueEvent::LoadFailed { message, .. } => panic!("{message}"),
            _ => {}
        }
    }
    assert!(queue.model().is_some());
    queue
}

fn request(max_tokens: usize) -> Request {
    Request {
        prompt: Prompt::Chat(vec![ChatMessage::new("user", "Tell me a long story")]),
        options: GenerateOptions { max_tokens: Some(max_tokens), suppress_eos: true, ..GenerateOptions::default() },
        policy: ContextPolicy::Refuse,
    }
}

/// A request long enough (about 2,000 tokens) to be running while the test acts.
fn long_request() -> Request {
    request(2000)
}

fn next(events: &Receiver<RequestEvent>) -> RequestEvent {
    events.recv_timeout(Duration::from_secs(60)).expect("an event within a minute")
}

/// Waits for the end of a request; returns its completion's finish reason and token count.
fn finish(events: &Receiver<RequestEvent>) -> (FinishReason, usize) {
    loop {
        match next(events) {
            RequestEvent::Finished(completion) => return (completion.finish_reason, completion.usage.completion_tokens),
            RequestEvent::Failed(message) => panic!("failed: {message}"),
            RequestEvent::Cancelled => panic!("cancelled before it started"),
            RequestEvent::Started { .. } | RequestEvent::Chunk { .. } => {}
        }
    }
}

fn wait_started(events: &Receiver<RequestEvent>) -> Duration {
    match next(events) {
        RequestEvent::Started { queue_wait, prompt_tokens, .. } => {
            assert!(prompt_tokens > 0);
            queue_wait
        }
        other => panic!("expected Started, got {other:?}"),
    }
}

#[test]
fn requests_run_one_at_a_time_in_order_and_a_full_queue_refuses() {
    let queue = loaded_queue(2);
    let (sink_a, a) = channel_sink(Box::new(|| {}));
    let ticket_a = queue.submit(long_request(), sink_a).unwrap();
    wait_started(&a);
    let (sink_b, b) = channel_sink(Box::new(|| {}));
    let (sink_c, c) = channel_sink(Box::new(|| {}));
    queue.submit(request(3), sink_b).unwrap();
    queue.submit(request(3), sink_c).unwrap();
    let refused = queue.submit(request(3), channel_sink(Box::new(|| {})).0);
    assert_eq!(refused.err(), Some(SubmitError::Full { queued: 2, max_queue: 2 }));
    // Counts are published by the queue's thread; give it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while queue.counts() != (QueueCounts { in_flight: 1, queued: 2 }) {
        assert!(Instant::now() < deadline, "counts stayed {:?}", queue.counts());
        std::thread::sleep(Duration::from_millis(10));
    }
    // Nothing queued starts while A runs.
    assert!(b.try_recv().is_err() && c.try_recv().is_err());
    ticket_a.cancel();
    assert_eq!(finish(&a).0, FinishReason::Cancelled);
    wait_started(&b);
    assert!(c.try_recv().is_err(), "C starts only after B");
    assert_eq!(finish(&b), (FinishReason::Length, 3));
    let waited = wait_started(&c);
    assert!(waited > Duration::ZERO);
    assert_eq!(finish(&c), (FinishReason::Length, 3));
}

#[test]
fn a_cancelled_queued_request_never_starts_and_a_running_one_stops_within_a_step() {
    let queue = loaded_queue(4);
    let (sink_a, a) = channel_sink(Box::new(|| {}));
    let ticket_a = queue.submit(long_request(), sink_a).unwrap();
    wait_started(&a);
    let (sink_b, b) = channel_sink(Box::new(|| {}));
    let ticket_b = queue.submit(long_request(), sink_b).unwrap();
    ticket_b.cancel();
    assert!(matches!(next(&b), RequestEvent::Cancelled));
    // The running one stops within a step: far fewer than its 2,000 tokens.
    std::thread::sleep(Duration::from_millis(50));
    let cancelled_at = Instant::now();
    ticket_a.cancel();
    let (reason, tokens) = finish(&a);
    assert_eq!(reason, FinishReason::Cancelled);
    assert!(tokens < 2000, "{tokens} tokens");
    assert!(cancelled_at.elapsed() < Duration::from_secs(2), "stopping took {:?}", cancelled_at.elapsed());
    // B never ran: no event after its Cancelled, and the queue is idle.
    std::thread::sleep(Duration::from_millis(100));
    assert!(b.try_recv().is_err());
    assert_eq!(queue.counts(), QueueCounts { in_flight: 0, queued: 0 });
    // A cancel after the end changes nothing, and the queue goes on serving.
    ticket_a.cancel();
    let (sink_d, d) = channel_sink(Box::new(|| {}));
    queue.submit(request(4), sink_d).unwrap();
    assert_eq!(finish(&d), (FinishReason::Length, 4));
}

#[test]
fn unloading_stops_the_running_request_and_drops_the_queued_ones() {
    let queue = loaded_queue(4);
    let (sink_a, a) = channel_sink(Box::new(|| {}));
    queue.submit(long_request(), sink_a).unwrap();
    wait_started(&a);
    let (sink_b, b) = channel_sink(Box::new(|| {}));
    queue.submit(request(3), sink_b).unwrap();
    queue.unload();
    assert!(matches!(next(&b), RequestEvent::Cancelled));
    assert_eq!(finish(&a).0, FinishReason::Cancelled);
    let deadline = Instant::now() + Duration::from_secs(10);
    while queue.model().is_some() {
        assert!(Instant::now() < deadline, "the model stayed loaded");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(queue.submit(request(3), channel_sink(Box::new(|| {})).0).err(), Some(SubmitError::NoModel));
    // Shutting down with nothing running returns promptly.
    let started = Instant::now();
    queue.shutdown();
    assert!(started.elapsed() < Duration::from_secs(5));
}
