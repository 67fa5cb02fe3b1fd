//! What `modeldesk serve` refuses, in OpenAI's error shape: missing or wrong API key, bodies
//! over the limit, malformed JSON, `n: 2`, unsupported fields, prompts over the window, unknown
//! routes and models, wrong methods, a full queue; CORS only when asked; and Ctrl-C ending a
//! stream in flight with an error event.

mod support;

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use support::server::{Serve, post_json, request};

const KEY: &str = "test-key-123";

fn hello() -> Value {
    json!({"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4})
}

fn assert_error(response: &support::server::Response, status: u16, kind: &str, param: Option<&str>, code: Option<&str>) {
    assert_eq!(response.status, status, "{}", response.text());
    let body = response.json();
    let error = &body["error"];
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert_eq!(error["type"], kind, "{body}");
    assert_eq!(error["param"].as_str(), param, "{body}");
    assert_eq!(error["code"].as_str(), code, "{body}");
}

#[test]
fn bad_requests_get_openai_errors_and_the_server_goes_on() {
    let serve = Serve::start_with_env(&support::tiny_phi3(), &[], &[("MODELDESK_API_KEY", KEY)]);
    let port = serve.port;
    let bearer = format!("Bearer {KEY}");
    let auth: &[(&str, &str)] = &[("Authorization", &bearer)];

    // The key: missing, wrong, right (as Bearer or x-api-key); health stays public.
    assert_error(&post_json(port, "/v1/chat/completions", &hello(), &[]), 401, "authentication_error", None, Some("invalid_api_key"));
    assert_error(&post_json(port, "/v1/chat/completions", &hello(), &[("Authorization", "Bearer nope")]), 401, "authentication_error", None, Some("invalid_api_key"));
    assert_eq!(request(port, "GET", "/v1/models", &[("x-api-key", KEY)], b"").status, 200);
    assert_eq!(request(port, "GET", "/health", &[], b"").status, 200);
    assert_eq!(post_json(port, "/v1/chat/completions", &hello(), auth).status, 200);

    // Over 4 MB.
    let big = vec![b'x'; 4 * 1024 * 1024 + 1];
    let mut headers = auth.to_vec();
    headers.push(("Content-Type", "application/json"));
    let response = request(port, "POST", "/v1/chat/completions", &headers, &big);
    assert_error(&response, 413, "invalid_request_error", None, None);

    // Malformed JSON, wrong types, empty messages, n=2, tools, a prompt over the window.
    assert_error(&request(port, "POST", "/v1/chat/completions", &headers, b"{\"messages\": ["), 400, "invalid_request_error", None, None);
    let cases = [
        (json!({"messages": [{"role": "user", "content": 5}]}), "messages[0].content"),
        (json!({"messages": []}), "messages"),
        (json!({"messages": [{"role": "user", "content": "Hi"}], "n": 2}), "n"),
        (json!({"messages": [{"role": "user", "content": "Hi"}], "tools": [{"type": "function", "function": {"name": "f"}}]}), "tools"),
        (json!({"messages": [{"role": "user", "content": "Hi"}], "response_format": {"type": "json_object"}}), "response_format"),
        (json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": "8"}), "max_tokens"),
    ];
    for (body, param) in &cases {
        assert_error(&post_json(port, "/v1/chat/completions", body, auth), 400, "invalid_request_error", Some(param), None);
    }
    assert_eq!(cases.len(), 6);
    let long = "word ".repeat(3000);
    let overflow = json!({"messages": [{"role": "user", "content": long}]});
    let response = post_json(port, "/v1/chat/completions", &overflow, auth);
    assert_error(&response, 400, "invalid_request_error", Some("messages"), Some("context_length_exceeded"));
    assert!(response.json()["error"]["message"].as_str().unwrap().contains("2048"), "names the window");

    // Unknown model, route and method.
    let mut wrong_model = hello();
    wrong_model["model"] = json!("gpt-4o");
    assert_error(&post_json(port, "/v1/chat/completions", &wrong_model, auth), 404, "not_found_error", Some("model"), Some("model_not_found"));
    assert_error(&request(port, "GET", "/v1/nothing-here", auth, b""), 404, "not_found_error", None, None);
    assert_error(&request(port, "GET", "/v1/chat/completions", auth, b""), 405, "invalid_request_error", None, None);
    assert_error(&request(port, "DELETE", "/v1/models", auth, b""), 405, "invalid_request_error", None, None);

    // No CORS unless asked.
    let preflight = request(port, "OPTIONS", "/v1/chat/completions", &[("Origin", "http://localhost:3000"), ("Access-Control-Request-Method", "POST")], b"");
    assert!(preflight.header("access-control-allow-origin").is_none(), "{:?}", preflight.headers);

    // After all that, it still answers, and the official client sees the same errors.
    assert_eq!(post_json(port, "/v1/chat/completions", &hello(), auth).status, 200);
    let spec = json!({"base_url": format!("{}/v1", serve.url), "api_key": "wrong", "requests": [{"kwargs": {"model": "x", "messages": [{"role": "user", "content": "Hi"}]}}]});
    let results = support::python_script("openai_chat.py", &spec);
    assert_eq!(results[0]["error"]["class"], "AuthenticationError", "{results}");
    let spec = json!({"base_url": format!("{}/v1", serve.url), "api_key": KEY, "requests": [{"kwargs": {"model": "tiny-phi3", "messages": [{"role": "user", "content": "Hi"}], "n": 2}}]});
    let results = support::python_script("openai_chat.py", &spec);
    assert_eq!(results[0]["error"]["class"], "BadRequestError", "{results}");
    assert_eq!(results[0]["error"]["status"], 400);
}

#[test]
fn cors_answers_only_the_named_origins() {
    let serve = Serve::start(&support::tiny_phi3(), &["--cors", "http://localhost:3000"]);
    let preflight = |origin: &str| {
        request(serve.port, "OPTIONS", "/v1/chat/completions", &[
            ("Origin", origin),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "authorization, content-type"),
            ("Access-Control-Request-Private-Network", "true"),
        ], b"")
    };
    let allowed = preflight("http://localhost:3000");
    assert_eq!(allowed.header("access-control-allow-origin"), Some("http://localhost:3000"), "{:?}", allowed.headers);
    assert_eq!(allowed.header("access-control-allow-private-network"), Some("true"));
    let other = preflight("http://evil.example");
    assert!(other.header("access-control-allow-origin").is_none(), "{:?}", other.headers);
}

#[test]
fn a_full_queue_answers_429_with_retry_after() {
    let serve = Serve::start(&support::shared().join("fixtures/phi3-micro-int4"), &["--max-queue", "0"]);
    // A long reply holds the engine while the second request arrives.
    let long = json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3000, "ignore_eos": true, "stream": true});
    let mut running = TcpStream::connect(("127.0.0.1", serve.port)).unwrap();
    let body = long.to_string();
    write!(running, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut first = [0u8; 64];
    running.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    assert!(running.read(&mut first).unwrap() > 0, "the long reply started");
    let refused = post_json(serve.port, "/v1/chat/completions", &hello(), &[]);
    assert_error(&refused, 429, "rate_limit_error", None, Some("queue_full"));
    assert_eq!(refused.header("retry-after"), Some("1"));
}

#[cfg(unix)]
#[test]
fn ctrl_c_ends_a_stream_in_flight_with_an_error_event_and_exits_cleanly() {
    let mut serve = Serve::start(&support::shared().join("fixtures/phi3-micro-int4"), &[]);
    let long = json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4000, "ignore_eos": true, "stream": true});
    let mut stream = TcpStream::connect(("127.0.0.1", serve.port)).unwrap();
    let body = long.to_string();
    write!(stream, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut start = [0u8; 256];
    assert!(stream.read(&mut start).unwrap() > 0, "the stream started");
    // The client keeps reading while the server stops.
    let reader = std::thread::spawn(move || {
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        rest
    });
    let interrupted = Instant::now();
    assert!(serve.interrupt(), "serve exits 0 after Ctrl-C: {:?}", serve.lines());
    assert!(interrupted.elapsed() < Duration::from_secs(10), "stopping took {:?}", interrupted.elapsed());
    let rest = reader.join().unwrap();
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("\"error\":{\"message\":\"The server is shutting down.\""), "the stream ends with an error event: …{}", &rest[rest.len().saturating_sub(300)..]);
    assert!(!rest.contains("data: [DONE]"));
    assert!(serve.lines().iter().any(|l| l == "stopped"), "{:?}", serve.lines());
}
