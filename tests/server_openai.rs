//! The official `openai` Python client against `modeldesk serve`: non-streaming and streaming
//! (with usage), seeded sampling and stop strings give the text and usage of
//! `modeldesk generate --json` for the same messages and settings, on the tiny fixture and the
//! onnxruntime-genai-built micro model.

mod support;

use std::{path::Path, process::Command};

use serde_json::{Value, json};
use support::server::{Serve, request, sse_data};

/// `modeldesk generate --json` for a system + user message.
fn generate(model: &Path, system: &str, user: &str, extra: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_modeldesk"))
        .args(["generate", "--model"])
        .arg(model)
        .args(["--system", system, "--user", user, "--json"])
        .args(extra)
        .output()
        .expect("run modeldesk generate");
    assert!(output.status.success(), "generate {extra:?}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("generate --json prints JSON")
}

fn openai(serve: &Serve, requests: &[Value]) -> Vec<Value> {
    let spec = json!({"base_url": format!("{}/v1", serve.url), "api_key": "ci", "requests": requests});
    let results = support::python_script("openai_chat.py", &spec);
    let results = results.as_array().expect("a list of results").clone();
    assert_eq!(results.len(), requests.len());
    results
}

fn usage_of(value: &Value) -> Value {
    json!({
        "prompt_tokens": value["prompt_tokens"],
        "completion_tokens": value["completion_tokens"],
        "total_tokens": value["total_tokens"],
    })
}

/// Asserts the client's result equals generate's text, finish reason and usage.
fn assert_same(label: &str, result: &Value, reference: &Value) {
    assert!(result.get("error").is_none(), "{label}: {result}");
    assert_eq!(result["text"], reference["choices"][0]["message"]["content"], "{label}: text");
    assert_eq!(result["finish_reason"], reference["choices"][0]["finish_reason"], "{label}: finish_reason");
    assert_eq!(usage_of(&result["usage"]), usage_of(&reference["usage"]), "{label}: usage");
}

/// A stop string that occurs in the middle of `text` (a few characters, on char boundaries).
fn stop_inside(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    assert!(chars.len() > 12, "the greedy reply is too short to cut: {text:?}");
    let middle = chars.len() / 2;
    chars[middle..middle + 3].iter().collect()
}

fn check_model(model: &Path) {
    let serve = Serve::start(model, &[]);
    let models = request(serve.port, "GET", "/v1/models", &[], b"").json();
    let id = models["data"][0]["id"].as_str().expect("a model id").to_owned();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(models["data"][0]["owned_by"], "modeldesk");

    let (system, user) = ("You are a helpful assistant.", "Name three colours of the rainbow.");
    let messages = json!([{"role": "system", "content": system}, {"role": "user", "content": user}]);
    let greedy = generate(model, system, user, &["--max-tokens", "24"]);
    let sampled = generate(model, system, user, &["--max-tokens", "16", "--do-sample", "--temperature", "0.8", "--top-p", "0.9", "--top-k", "20", "--seed", "42"]);
    let long = generate(model, system, user, &["--max-tokens", "60"]);
    let stop = stop_inside(long["choices"][0]["message"]["content"].as_str().unwrap());
    let stopped = generate(model, system, user, &["--max-tokens", "60", "--stop", &stop]);
    assert_eq!(stopped["choices"][0]["finish_reason"], "stop", "the stop string {stop:?} ends generate's reply");

    let greedy_args = json!({"model": id, "messages": messages, "max_tokens": 24, "temperature": 0});
    let sampled_args = json!({"model": id, "messages": messages, "max_completion_tokens": 16, "temperature": 0.8, "top_p": 0.9, "seed": 42, "extra_body": {"top_k": 20}});
    let stop_args = json!({"model": id, "messages": messages, "max_tokens": 60, "stop": [stop]});
    let parts_args = json!({"model": id, "max_tokens": 24, "messages": [
        {"role": "developer", "content": [{"type": "text", "text": system}]},
        {"role": "user", "content": [{"type": "text", "text": "Name three colours "}, {"type": "text", "text": "of the rainbow."}]},
    ]});
    let results = openai(&serve, &[
        json!({"kwargs": greedy_args, "stream": false}),
        json!({"kwargs": with_usage(&greedy_args), "stream": true}),
        json!({"kwargs": sampled_args, "stream": false}),
        json!({"kwargs": with_usage(&sampled_args), "stream": true}),
        json!({"kwargs": stop_args, "stream": false}),
        json!({"kwargs": stop_args, "stream": true}),
        json!({"kwargs": parts_args, "stream": false}),
    ]);
    let label = model.display();
    assert_same(&format!("{label} greedy"), &results[0], &greedy);
    assert_eq!(results[0]["model"], id.as_str());
    assert_eq!(results[0]["object"], "chat.completion");
    assert_same(&format!("{label} greedy stream"), &results[1], &greedy);
    assert_same(&format!("{label} sampled"), &results[2], &sampled);
    assert_same(&format!("{label} sampled stream"), &results[3], &sampled);
    assert_ne!(results[2]["text"], results[0]["text"], "{label}: sampling changed the reply");
    assert_same(&format!("{label} stop"), &results[4], &stopped);
    assert!(!results[4]["text"].as_str().unwrap().contains(&stop));
    // Without include_usage a stream carries no usage.
    assert_eq!(results[5]["text"], stopped["choices"][0]["message"]["content"]);
    assert_eq!(results[5]["usage"], Value::Null);
    assert_same(&format!("{label} text parts"), &results[6], &greedy);

    // The parsed stream: role first, content deltas, finish, then the usage-only chunk.
    let chunks = results[1]["chunks"].as_array().unwrap();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(usage_of(&last["usage"]), usage_of(&greedy["usage"]));
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], greedy["choices"][0]["finish_reason"]);
    assert!(chunks.iter().all(|c| c["id"] == chunks[0]["id"] && c["object"] == "chat.completion.chunk"));
}

fn with_usage(arguments: &Value) -> Value {
    let mut arguments = arguments.clone();
    arguments["stream_options"] = json!({"include_usage": true});
    arguments
}

#[test]
fn the_openai_client_gets_what_generate_gives_on_the_tiny_fixture() {
    check_model(&support::tiny_phi3());
}

#[test]
fn the_openai_client_gets_what_generate_gives_on_the_micro_model() {
    check_model(&support::shared().join("fixtures/phi3-micro-int4"));
}

/// What `curl -sN` sees: the SSE bytes, ending with the usage chunk and `data: [DONE]`.
#[test]
fn the_raw_stream_is_server_sent_events_ending_in_done() {
    let serve = Serve::start(&support::tiny_phi3(), &[]);
    let body = json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8, "stream": true, "stream_options": {"include_usage": true}});
    let response = support::server::post_json(serve.port, "/v1/chat/completions", &body, &[("Accept", "application/json")]);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("text/event-stream"));
    assert_eq!(response.header("cache-control"), Some("no-cache"));
    let text = response.text();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let events = sse_data(&text);
    assert!(events.len() >= 4, "{text}");
    let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    let usage = &usage["usage"];
    assert_eq!(usage["total_tokens"].as_u64().unwrap(), usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap());
    for event in &events[..events.len() - 2] {
        let chunk: Value = serde_json::from_str(event).unwrap();
        assert_eq!(chunk["usage"], Value::Null, "with include_usage every other chunk has usage null");
    }
}
