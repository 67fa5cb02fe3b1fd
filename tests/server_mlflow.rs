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
        ("llm/v1/chat with columns MLflow drops", json!({"messages": two, "max_tokens": 5, "do_sample": true, "seed": 3, "stream": true})),
        ("dataframe_records", json!({"dataframe_records": [{"messages": hello, "max_tokens": 5}, {"messages": two, "max_tokens": 3}]})),
        ("dataframe_split", json!({"dataframe_split": {"columns": ["messages", "max_tokens"], "data": [[hello, 5], [two, 4]]}})),
        ("inputs as columns", json!({"inputs": {"messages": hello, "max_tokens": 5}})),
        ("inputs as rows", json!({"inputs": [{"messages": two, "max_tokens": 5}]})),
        ("params are ignored", json!({"dataframe_records": [{"messages": hello, "max_tokens": 4}], "params": {"max_tokens": 9}})),
        ("a list body", json!([{"messages": hello}])),
        ("no input key", json!({"foo": 1})),
        ("two input keys", json!({"dataframe_records": [], "inputs": []})),
        ("messages as a string", json!({"messages": "hi"})),
        ("a message without a role", json!({"messages": [{"content": "hi"}]})),
        ("a fractional max_tokens", json!({"messages": hello, "max_tokens": 2.5})),
        ("a string max_tokens", json!({"messages": hello, "max_tokens": "5"})),
    ]);
    cases.push(("malformed JSON", "{\"messages\": [".to_owned()));
    assert_eq!(compare(ours.port, theirs.port, &cases), 16);
    for path in ["/ping", "/health", "/version"] {
        let (mine, reference) = (request(ours.port, "GET", path, &[], b""), request(theirs.port, "GET", path, &[], b""));
        assert_eq!((mine.status, mine.text()), (reference.status, reference.text()), "{path}");
    }
    let wrong_type = request(ours.port, "POST", "/invocations", &[("Content-Type", "text/plain")], b"hi");
    assert_eq!(wrong_type.status, request(theirs.port, "POST", "/invocations", &[("Content-Type", "text/plain")], b"hi").status);
    // One difference on purpose: `instances` rows also work for chat here (MLflow cannot
    // convert them); the answer is what the same row gives as dataframe_records.
    let instances = post_json(ours.port, "/invocations", &json!({"instances": [{"messages": hello, "max_tokens": 5}]}), &[]);
    let records = post_json(ours.port, "/invocations", &json!({"dataframe_records": [{"messages": hello, "max_tokens": 5}]}), &[]);
    assert_eq!(comparable(&instances.json()), comparable(&records.json()));
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
        ("unified prompt with a column MLflow drops", json!({"prompt": "The quick", "max_tokens": 4})),
        ("dataframe_records", json!({"dataframe_records": [{"prompt": "Hello"}, {"prompt": "The quick"}]})),
        ("dataframe_split", json!({"dataframe_split": {"columns": ["prompt"], "data": [["Hello"], ["The quick"]]}})),
        ("instances as records", json!({"instances": [{"prompt": "Hello"}]})),
        ("instances as strings", json!({"instances": ["Hello", "The quick"]})),
        ("inputs as a column", json!({"inputs": {"prompt": ["Hello", "The quick"]}})),
        ("inputs as a scalar column", json!({"inputs": {"prompt": "Hello"}})),
        ("inputs as a list", json!({"inputs": ["The quick"]})),
        ("params are ignored", json!({"dataframe_records": [{"prompt": "Hello"}], "params": {"max_tokens": 3}})),
        ("a missing prompt column", json!({"dataframe_records": [{"text": "Hello"}]})),
        ("a number as prompt", json!({"prompt": 5})),
        ("messages to a prompt model", json!({"messages": [{"role": "user", "content": "Hello"}]})),
        ("inputs as a bare string", json!({"inputs": "Hello"})),
    ]);
    assert_eq!(compare(ours.port, theirs.port, &cases), 14);
}
