//! Load and disconnects against `modeldesk serve` on the micro model: 32 concurrent clients ×
//! 3 requests are all answered or refused with 429 (none lost, no deadlock), with p50/p95
//! latency and queue wait printed; a client that drops a long stream frees the engine within a
//! step, and one that goes away while queued never runs.

mod support;

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::{Shutdown, TcpStream},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use support::server::{Serve, post_json, request};

fn micro() -> PathBuf {
    support::shared().join("fixtures/phi3-micro-int4")
}

fn chat(max_tokens: usize, stream: bool) -> Value {
    json!({"messages": [{"role": "user", "content": "Tell me about the sea."}], "max_tokens": max_tokens, "ignore_eos": true, "stream": stream})
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Queue waits printed in the server's request log (`queued N ms`).
fn logged_queue_waits(serve: &Serve) -> Vec<Duration> {
    serve
        .lines()
        .iter()
        .filter(|line| line.contains("POST /v1/chat/completions 200"))
        .filter_map(|line| line.split("queued ").nth(1)?.split(' ').next()?.parse::<f64>().ok())
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .collect()
}

fn stats(serve: &Serve) -> Value {
    request(serve.port, "GET", "/stats", &[], b"").json()
}

#[test]
fn thirty_two_clients_are_all_answered_or_refused_with_429() {
    const CLIENTS: usize = 32;
    const EACH: usize = 3;
    const MAX_TOKENS: usize = 16;
    let serve = Serve::start(&micro(), &["--max-queue", "8"]);
    let port = serve.port;
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let outcomes = Arc::clone(&outcomes);
            std::thread::spawn(move || {
                for _ in 0..EACH {
                    let sent = Instant::now();
                    let response = post_json(port, "/v1/chat/completions", &chat(MAX_TOKENS, false), &[]);
                    let latency = sent.elapsed();
                    let tokens = (response.status == 200).then(|| response.json()["usage"]["completion_tokens"].as_u64()).flatten();
                    let retry_after = response.header("retry-after").map(str::to_owned);
                    outcomes.lock().unwrap().push((response.status, latency, tokens, retry_after));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a client thread");
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(180), "the load took {elapsed:?}");
    let outcomes = outcomes.lock().unwrap().clone();
    assert_eq!(outcomes.len(), CLIENTS * EACH, "every request got an answer");
    let answered: Vec<_> = outcomes.iter().filter(|o| o.0 == 200).collect();
    let refused: Vec<_> = outcomes.iter().filter(|o| o.0 == 429).collect();
    assert_eq!(answered.len() + refused.len(), outcomes.len(), "only 200 or 429: {:?}", outcomes.iter().map(|o| o.0).collect::<Vec<_>>());
    assert!(answered.len() >= 9, "at least the running one and a full queue are served: {}", answered.len());
    assert!(answered.iter().all(|o| o.2 == Some(MAX_TOKENS as u64)), "every answer has its {MAX_TOKENS} tokens");
    assert!(refused.iter().all(|o| o.3.as_deref() == Some("1")), "429s say when to retry");

    // Nothing is left running or waiting, and the server still answers.
    let idle = stats(&serve);
    assert_eq!((idle["in_flight"].as_u64(), idle["queued"].as_u64()), (Some(0), Some(0)), "{idle}");
    assert_eq!(post_json(port, "/v1/chat/completions", &chat(2, false), &[]).status, 200);

    let mut latencies: Vec<Duration> = answered.iter().map(|o| o.1).collect();
    latencies.sort();
    // The server prints its request log from its main thread; the last lines may lag a little.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut waits = logged_queue_waits(&serve);
    while waits.len() < answered.len() + 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        waits = logged_queue_waits(&serve);
    }
    assert_eq!(waits.len(), answered.len() + 1, "one log line per answered request");
    waits.sort();
    println!(
        "load: {} requests in {:.2} s: {} answered, {} refused with 429; latency p50 {:.0} ms, p95 {:.0} ms; queue wait p50 {:.0} ms, p95 {:.0} ms",
        outcomes.len(),
        elapsed.as_secs_f64(),
        answered.len(),
        refused.len(),
        percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.95).as_secs_f64() * 1000.0,
        percentile(&waits, 0.5).as_secs_f64() * 1000.0,
        percentile(&waits, 0.95).as_secs_f64() * 1000.0,
    );
}

/// Opens a stream and reads until the first content delta; returns the open connection.
fn stream_until_content(port: u16, body: &Value) -> (TcpStream, Duration) {
    let sent = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.to_string();
    let head = format!("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the stream ended before any content");
        if line.starts_with("data: ") && line.contains("\"delta\":{\"content\":\"") && !line.contains("\"content\":\"\"") {
            return (stream, sent.elapsed());
        }
    }
}

/// The generated-token count the server logged for the request that went away.
fn logged_stopped_tokens(serve: &Serve) -> Option<usize> {
    let line = serve.lines().into_iter().find(|line| line.contains("the client went away"))?;
    line.split(" tokens").next()?.rsplit('+').next()?.parse().ok()
}

#[test]
fn a_dropped_stream_frees_the_engine_within_a_step_and_a_dropped_queued_request_never_runs() {
    const LONG: usize = 3000;
    let serve = Serve::start(&micro(), &[]);
    let port = serve.port;
    // How long the long reply takes when nobody stops it.
    let full_started = Instant::now();
    let full = post_json(port, "/v1/chat/completions", &chat(LONG, false), &[]);
    let full_time = full_started.elapsed();
    assert_eq!(full.json()["usage"]["completion_tokens"], LONG);

    // A client reads the start of a long stream and goes away.
    let (stream, _) = stream_until_content(port, &chat(LONG, true));
    stream.shutdown(Shutdown::Both).unwrap();
    drop(stream);
    let dropped_at = Instant::now();
    let (next, next_first_token) = stream_until_content(port, &chat(4, true));
    drop(next);
    println!(
        "disconnect: the full {LONG}-token reply takes {:.0} ms; after a client dropped it, the next request's first token came {:.0} ms later ({:.0} ms after the drop)",
        full_time.as_secs_f64() * 1000.0,
        next_first_token.as_secs_f64() * 1000.0,
        dropped_at.elapsed().as_secs_f64() * 1000.0
    );
    assert!(next_first_token < full_time / 4, "the engine was still busy with the dropped reply");
    let deadline = Instant::now() + Duration::from_secs(20);
    let stopped = loop {
        if let Some(tokens) = logged_stopped_tokens(&serve) {
            break tokens;
        }
        assert!(Instant::now() < deadline, "no log line for the dropped stream: {:?}", serve.lines());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(stopped < LONG / 2, "the dropped reply ran on to {stopped} tokens");

    // A request that goes away while queued is removed and never runs.
    let (running, _) = stream_until_content(port, &chat(LONG, true));
    let queued = {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let body = chat(LONG, false).to_string();
        let head = format!("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len());
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body.as_bytes()).unwrap();
        stream
    };
    let wait_for = |wanted: u64, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let now = stats(&serve);
            if now["queued"].as_u64() == Some(wanted) {
                return now;
            }
            assert!(Instant::now() < deadline, "{what}: {now}");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait_for(1, "the second request waits");
    queued.shutdown(Shutdown::Both).unwrap();
    drop(queued);
    let after = wait_for(0, "the request that went away left the queue");
    assert_eq!(after["in_flight"], 1, "while the first one still runs: {after}");
    drop(running);
}
