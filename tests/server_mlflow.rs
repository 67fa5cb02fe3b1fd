//! MLflow's scoring protocol: every request shape against `modeldesk serve` and against
//! `mlflow models serve --env-manager local` on the same package made by `modeldesk create`
//! gives the same answers (chat completions without their id and time; texts; error codes).

mod support;

use serde_json::{Value, json};
use support::server::{MlflowServe, Serve, post_json, request};


/// An answer with what legitimately differs between two servers (ids, times) taken out.
fn comparable(answer: &Value) -> Value {
    match answer {
        Value::Array(items) => Value::Array(items.iter().map(comparable).collect()),
        Value::Object(fields) if fields.get("object") == Some(&json!("chat.completion")) => {
            let mut fields = fields.clone();
            fields.remove("id");
            fields.remove("created");
            Value::Object(fields)
        }
        Value::Object(fields) => Value::Object(fields.iter().map(|(k, v)| (k.clone(), comparable(v))).collect()),
        other => other.clone(),
    }
}

/// Sends each body to both servers; successes must be equal, failures must share status and
/// error code.
fn compare(ours: u16, theirs: u16, bodies: &[(&str, String)]) -> usize {
    let mut compared = 0;
    for (label, body) in bodies {
        let headers = [("Content-Type", "application/json")];
        let mine = request(ours, "POST", "/invocations", &headers, body.as_bytes());
        let reference = request(theirs, "POST", "/invocations", &headers, body.as_bytes());
        assert_eq!(mine.status, reference.status, "{label}: ours {} / MLflow {}", mine.text(), reference.text());
        if reference.status == 200 {
            assert_eq!(comparable(&mine.json()), comparable(&reference.json()), "{label}");
        } else {
            assert_eq!(mine.json()["error_code"], reference.json()["error_code"], "{label}: ours {} / MLflow {}", mine.text(), reference.text());
        }
        compared += 1;
    }
    compared
}

fn bodies(items: &[(&'static str, Value)]) -> Vec<(&'static str, String)> {
    items.iter().map(|(label, body)| (*label, body.to_string())).collect()
}

#[test]
fn a_chat_package_scores_like_mlflow_models_serve() {
    let scratch = tempfile::tempdir().unwrap();
    let package = scratch.path().join("chat");
    support::create_with_cli("chat", &package);
    let theirs = MlflowServe::start(&package);
    let ours = Serve::start(&package, &[]);
    let hello = json!([{"role": "user", "content": "Hello"}]);
    let two = json!([{"role": "system", "content": "Be nice"}, {"role": "user", "content": "Hi"}]);
    let mut cases = bodies(&[
        ("llm/v1/chat", json!({"messages": hello, "max_tokens": 5})),
        ("llm/v1/chat with sampling values", json!({"messages": hello, "max_tokens": 6, "temperature": 0.5, "top_k": 3, "top_p": 0.9})),
        ("seeded sampling, with keys the wrapper ignores", json!({"messages": two, "max_tokens": 5, "do_sample": true, "temperature": 0.9, "seed": 3, "stream": true})),
        ("dataframe_records", json!({"dataframe_records": [{"messages": hello, "max_tokens": 5}, {"messages": two, "max_tokens": 3}]})),
        ("dataframe_split", json!({"dataframe_split": {"columns": ["messages", "max_tokens"], "data": [[hello, 5], [two, 4]]}})),
        ("inputs as columns", json!({"inputs": {"messages": hello, "max_tokens": 5}})),
        ("inputs as rows", json!({"inputs": [{"messages": two, "max_tokens": 5}]})),
        ("inputs as a bare conversation", json!({"inputs": two, "params": {"max_tokens": 3}})),
        ("inputs as a string", json!({"inputs": "Hello", "params": {"max_tokens": 3}})),
        ("instances", json!({"instances": [{"messages": hello, "max_tokens": 5}]})),
        ("a row's value beats params", json!({"dataframe_records": [{"messages": hello, "max_tokens": 4}], "params": {"max_tokens": 9}})),
        ("params apply to every row", json!({"dataframe_records": [{"messages": hello}, {"messages": two, "max_tokens": 2}], "params": {"max_tokens": 3}})),
        ("seeded sampling as params", json!({"dataframe_records": [{"messages": hello}], "params": {"max_tokens": 4, "do_sample": true, "top_k": 5, "seed": 11}})),
        ("a params key in the unified form is a column", json!({"messages": hello, "max_tokens": 3, "params": {"max_tokens": 2}})),
        ("row values converted as Python does (\"false\" is true)", json!({"dataframe_records": [{"messages": hello, "max_tokens": "3", "temperature": 1, "do_sample": "false", "seed": "5"}]})),
        ("a fractional max_tokens in a row", json!({"dataframe_records": [{"messages": hello, "max_tokens": 2.5}]})),
        ("no room for a reply", json!({"messages": hello, "max_tokens": 0})),
        ("a max_length below the prompt", json!({"messages": hello, "max_length": 2})),
        ("a list body", json!([{"messages": hello}])),
        ("no input key", json!({"foo": 1})),
        ("two input keys", json!({"dataframe_records": [], "inputs": []})),
        ("messages as a string", json!({"messages": "hi"})),
        ("a message without a role", json!({"messages": [{"content": "hi"}]})),
        ("a fractional max_tokens param", json!({"messages": hello, "max_tokens": 2.5})),
        ("a string max_tokens param", json!({"messages": hello, "max_tokens": "5"})),
        ("a number as do_sample param", json!({"dataframe_records": [{"messages": hello}], "params": {"do_sample": 1}})),
        ("a row value Python cannot convert", json!({"dataframe_records": [{"messages": hello, "max_tokens": "many"}]})),
        ("a row without messages", json!({"dataframe_records": [{"prompt": "Hello"}]})),
    ]);
    cases.push(("malformed JSON", "{\"messages\": [".to_owned()));
    assert_eq!(compare(ours.port, theirs.port, &cases), 29);
    for path in ["/ping", "/health", "/version"] {
        let (mine, reference) = (request(ours.port, "GET", path, &[], b""), request(theirs.port, "GET", path, &[], b""));
        assert_eq!((mine.status, mine.text()), (reference.status, reference.text()), "{path}");
    }
    let wrong_type = request(ours.port, "POST", "/invocations", &[("Content-Type", "text/plain")], b"hi");
    assert_eq!(wrong_type.status, request(theirs.port, "POST", "/invocations", &[("Content-Type", "text/plain")], b"hi").status);
    // The seeded case above compares sampled replies: sampling really happened, and repeats.
    let seeded = json!({"messages": two, "max_tokens": 5, "do_sample": true, "temperature": 0.9, "seed": 3});
    let greedy = json!({"messages": two, "max_tokens": 5});
    let reply = |body: &Value| post_json(ours.port, "/invocations", body, &[]).json()[0]["choices"][0]["message"]["content"].clone();
    assert_eq!(reply(&seeded), reply(&seeded));
    assert_ne!(reply(&seeded), reply(&greedy));
}

#[test]
fn a_prompt_package_scores_like_mlflow_models_serve() {
    let scratch = tempfile::tempdir().unwrap();
    let package = scratch.path().join("prompt");
    support::create_with_cli("prompt", &package);
    let theirs = MlflowServe::start(&package);
    let ours = Serve::start(&package, &[]);
    let cases = bodies(&[
        ("unified prompt", json!({"prompt": "Hello"})),
        ("unified prompt with max_tokens", json!({"prompt": "The quick", "max_tokens": 4})),
        ("unified prompts with one option", json!({"prompt": ["Hello", "The quick"], "max_tokens": 2})),
        ("dataframe_records", json!({"dataframe_records": [{"prompt": "Hello"}, {"prompt": "The quick"}]})),
        ("dataframe_split", json!({"dataframe_split": {"columns": ["prompt"], "data": [["Hello"], ["The quick"]]}})),
        ("instances as records", json!({"instances": [{"prompt": "Hello", "max_tokens": 2}]})),
        ("instances as strings", json!({"instances": ["Hello", "The quick"]})),
        ("inputs as a column", json!({"inputs": {"prompt": ["Hello", "The quick"]}})),
        ("inputs as columns with options per row", json!({"inputs": {"prompt": ["Hello", "The quick"], "max_tokens": [2, 3]}})),
        ("inputs as a scalar column", json!({"inputs": {"prompt": "Hello"}})),
        ("inputs as a list", json!({"inputs": ["The quick"]})),
        ("inputs as a bare string", json!({"inputs": "Hello"})),
        ("params", json!({"dataframe_records": [{"prompt": "Hello"}], "params": {"max_tokens": 3}})),
        ("a row's value beats params", json!({"dataframe_records": [{"prompt": "Hello", "max_tokens": 2}], "params": {"max_tokens": 3}})),
        ("seeded sampling", json!({"prompt": "Hello", "max_tokens": 5, "do_sample": true, "seed": 7})),
        ("a negative max_length", json!({"prompt": "Hello", "max_length": -1})),
        ("a missing prompt column", json!({"dataframe_records": [{"text": "Hello"}]})),
        ("a number as prompt", json!({"prompt": 5})),
        ("messages to a prompt model", json!({"messages": [{"role": "user", "content": "Hello"}]})),
        ("a boolean max_length param", json!({"prompt": "Hello", "max_length": true})),
    ]);
    assert_eq!(compare(ours.port, theirs.port, &cases), 20);
}
