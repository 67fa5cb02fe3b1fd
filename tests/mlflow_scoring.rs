//! Packages ModelDesk creates answer every input shape real MLflow 3.17.2 hands them: through
//! `mlflow.pyfunc.load_model(...).predict` (a string, a dict of scalars, a dict of lists, a pandas
//! DataFrame, a list of dicts, per-request params) and through `mlflow models serve`
//! (`dataframe_split`, `dataframe_records`, `inputs`, `instances`, the unwrapped LLM body), for
//! both package kinds; requests without a prompt or messages get a clear error. Every answer is compared with `modeldesk generate` (greedy) on the same
//! prompt and token limit.

mod support;

use std::{collections::HashMap, path::PathBuf, process::Command, sync::OnceLock};

use serde_json::{Value, json};
use support::mlflow_server::ScoringServer;

const P1: &str = "Hello there";
const P2: &str = "The quick brown fox";
const Q1: &str = "Hello! What can you do?";
const Q2: &str = "Tell me a story.";
const SYSTEM: &str = "You answer briefly.";

/// The package of `task` created from the tiny fixture, once per test binary.
fn package(task: &str) -> PathBuf {
    static PACKAGES: OnceLock<PathBuf> = OnceLock::new();
    let root = PACKAGES.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("mlflow-scoring");
        let _ = std::fs::remove_dir_all(&root);
        for kind in ["prompt", "chat"] {
            let output = Command::new(env!("CARGO_BIN_EXE_modeldesk"))
                .args(["create", "--from-onnx"])
                .arg(support::tiny_phi3())
                .arg("--out")
                .arg(root.join(kind))
                .args(["--task", kind])
                .output()
                .expect("run modeldesk create");
            assert!(output.status.success(), "create {kind}: {}", String::from_utf8_lossy(&output.stderr));
        }
        root
    });
    root.join(task)
}

fn generate(args: &[&str], max_tokens: u32) -> Value {
    let fixture = support::tiny_phi3();
    let output = Command::new(env!("CARGO_BIN_EXE_modeldesk"))
        .args(["generate", "--model", fixture.to_str().expect("UTF-8 path"), "--json", "--max-tokens", &max_tokens.to_string()])
        .args(args)
        .output()
        .expect("run modeldesk generate");
    assert!(output.status.success(), "generate {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("generate --json prints JSON")
}

/// What `modeldesk generate --prompt` answers (greedy), memoised per test.
struct Expected(HashMap<(String, u32), String>);

impl Expected {
    fn new() -> Self {
        Self(HashMap::new())
    }

    fn prompt(&mut self, prompt: &str, max_tokens: u32) -> Value {
        let text = self.0.entry((prompt.to_owned(), max_tokens)).or_insert_with(|| {
            let reply = generate(&["--prompt", prompt], max_tokens);
            reply["choices"][0]["message"]["content"].as_str().expect("a text reply").to_owned()
        });
        Value::String(text.clone())
    }
}

/// `modeldesk generate --user` (with an optional system prompt): text, finish reason and usage.
fn chat_reply(question: &str, system: Option<&str>, max_tokens: u32) -> Value {
    let mut args = vec!["--user", question];
    if let Some(system) = system {
        args.extend(["--system", system]);
    }
    let reply = generate(&args, max_tokens);
    json!({"content": reply["choices"][0]["message"]["content"], "finish_reason": reply["choices"][0]["finish_reason"], "usage": reply["usage"]})
}

fn messages(question: &str) -> Value {
    json!([{"role": "user", "content": question}])
}

/// The parts of `chat.completion` answers that must equal ModelDesk's.
fn completions(answer: &Value) -> Value {
    let Some(items) = answer.as_array() else { panic!("expected a list of chat.completion objects, got {answer}") };
    Value::Array(
        items
            .iter()
            .map(|c| {
                assert_eq!(c["object"], "chat.completion", "{c}");
                json!({"content": c["choices"][0]["message"]["content"], "finish_reason": c["choices"][0]["finish_reason"], "usage": c["usage"]})
            })
            .collect(),
    )
}

fn predict_all(model: &PathBuf, cases: &[Value]) -> Value {
    let results = support::python_script("predict_shapes.py", &json!({"model": model, "cases": cases}));
    assert_eq!(results.as_object().map(|r| r.len()), Some(cases.len()), "one result per case: {results}");
    results
}

#[test]
fn prompt_package_predicts_every_input_shape() {
    let mut expected = Expected::new();
    let cases = [
        json!({"name": "string", "input": P1, "params": {"max_tokens": 5}}),
        json!({"name": "list of strings", "input": [P1, P2], "params": {"max_tokens": 5}}),
        json!({"name": "dict of scalars", "input": {"prompt": P1, "max_tokens": 5}}),
        json!({"name": "dict of lists", "input": {"prompt": [P1, P2], "max_tokens": [5, 7]}}),
        json!({"name": "dict of lists, options as params", "input": {"prompt": [P1, P2]}, "params": {"max_tokens": 5}}),
        json!({"name": "dataframe", "input": {"prompt": [P1, P2], "max_tokens": [5, 7]}, "dataframe": true}),
        json!({"name": "list of dicts", "input": [{"prompt": P1, "max_tokens": 5}, {"prompt": P2, "max_tokens": 7}]}),
        json!({"name": "a row's option beats params", "input": {"prompt": P1, "max_tokens": 5}, "params": {"max_tokens": 7}}),
        json!({"name": "no prompt", "input": {"question": P1}}),
    ];
    let results = predict_all(&package("prompt"), &cases);
    let one = json!([expected.prompt(P1, 5)]);
    let two_limits = json!([expected.prompt(P1, 5), expected.prompt(P2, 7)]);
    let two_same = json!([expected.prompt(P1, 5), expected.prompt(P2, 5)]);
    assert_ne!(expected.prompt(P1, 5), expected.prompt(P1, 7), "the limits must make a difference for this test");
    assert_eq!(results["string"], one);
    assert_eq!(results["list of strings"], two_same);
    assert_eq!(results["dict of scalars"], one);
    assert_eq!(results["dict of lists"], two_limits);
    assert_eq!(results["dict of lists, options as params"], two_same);
    assert_eq!(results["dataframe"], two_limits);
    assert_eq!(results["list of dicts"], two_limits);
    assert_eq!(results["a row's option beats params"], one);
    let error = results["no prompt"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("`prompt`") && error.contains("question"), "{}", results["no prompt"]);
}

#[test]
fn chat_package_predicts_every_input_shape() {
    let (m1, m2) = (messages(Q1), messages(Q2));
    let with_system = json!([{"role": "system", "content": SYSTEM}, {"role": "user", "content": Q1}]);
    let cases = [
        json!({"name": "messages with params", "input": {"messages": m1}, "params": {"max_tokens": 6}}),
        json!({"name": "messages with options", "input": {"messages": m1, "max_tokens": 6}}),
        json!({"name": "system prompt", "input": {"messages": with_system, "max_tokens": 6}}),
        json!({"name": "a string is a user message", "input": Q1, "params": {"max_tokens": 6}}),
        json!({"name": "a bare conversation", "input": m1, "params": {"max_tokens": 6}}),
        json!({"name": "dict of lists", "input": {"messages": [m1, m2], "max_tokens": [6, 4]}}),
        json!({"name": "dataframe", "input": {"messages": [m1, m2], "max_tokens": [6, 4]}, "dataframe": true}),
        json!({"name": "list of dicts", "input": [{"messages": m1, "max_tokens": 6}, {"messages": m2, "max_tokens": 4}]}),
        json!({"name": "no messages", "input": {"question": Q1}}),
        json!({"name": "a message without a role", "input": {"messages": [{"content": Q1}]}}),
        json!({"name": "a row's option beats params", "input": {"messages": m1, "max_tokens": 6}, "params": {"max_tokens": 2}}),
        json!({"name": "greedy params", "input": {"messages": m1}, "params": {"max_tokens": 6, "do_sample": false, "temperature": 0.5}}),
    ];
    let results = predict_all(&package("chat"), &cases);
    let one = json!([chat_reply(Q1, None, 6)]);
    let two = json!([chat_reply(Q1, None, 6), chat_reply(Q2, None, 4)]);
    assert_ne!(chat_reply(Q1, None, 6)["usage"], chat_reply(Q1, None, 2)["usage"], "the limits must make a difference for this test");
    assert_eq!(completions(&results["messages with params"]), one);
    assert_eq!(completions(&results["messages with options"]), one);
    assert_eq!(completions(&results["system prompt"]), json!([chat_reply(Q1, Some(SYSTEM), 6)]));
    assert_eq!(completions(&results["a string is a user message"]), one);
    assert_eq!(completions(&results["a bare conversation"]), one);
    assert_eq!(completions(&results["dict of lists"]), two);
    assert_eq!(completions(&results["dataframe"]), two);
    assert_eq!(completions(&results["list of dicts"]), two);
    assert_eq!(completions(&results["a row's option beats params"]), one);
    assert_eq!(completions(&results["greedy params"]), one);
    let error = results["no messages"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("`messages`") && error.contains("question"), "{}", results["no messages"]);
    let error = results["a message without a role"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("role"), "{}", results["a message without a role"]);
}

#[test]
fn served_prompt_package_answers_every_request_form() {
    let mut expected = Expected::new();
    let server = ScoringServer::start(&package("prompt"));
    let two_same = json!({"predictions": [expected.prompt(P1, 5), expected.prompt(P2, 5)]});
    let two_limits = json!({"predictions": [expected.prompt(P1, 5), expected.prompt(P2, 7)]});
    let forms = [
        ("dataframe_split", json!({"dataframe_split": {"columns": ["prompt"], "data": [[P1], [P2]]}, "params": {"max_tokens": 5}}), two_same.clone()),
        ("dataframe_records", json!({"dataframe_records": [{"prompt": P1, "max_tokens": 5}, {"prompt": P2, "max_tokens": 7}]}), two_limits.clone()),
        ("inputs, a string", json!({"inputs": P1, "params": {"max_tokens": 5}}), json!({"predictions": [expected.prompt(P1, 5)]})),
        ("inputs, a dict of lists", json!({"inputs": {"prompt": [P1, P2], "max_tokens": [5, 7]}}), two_limits.clone()),
        ("instances", json!({"instances": [{"prompt": P1}, {"prompt": P2}], "params": {"max_tokens": 5}}), two_same),
        // The unified LLM body: answered unwrapped; `max_tokens` is a param by the signature.
        ("prompt body", json!({"prompt": P1, "max_tokens": 5}), json!([expected.prompt(P1, 5)])),
    ];
    for (form, body, want) in &forms {
        let (status, answer) = server.invoke(body);
        assert_eq!(status, 200, "{form}: {answer}");
        assert_eq!(&answer, want, "{form}");
    }
    assert_eq!(forms.len(), 6);
}

#[test]
fn served_chat_package_answers_every_request_form() {
    let server = ScoringServer::start(&package("chat"));
    let (m1, m2) = (messages(Q1), messages(Q2));
    let one = json!([chat_reply(Q1, None, 6)]);
    let two = json!([chat_reply(Q1, None, 6), chat_reply(Q2, None, 4)]);
    let forms = [
        ("dataframe_split", json!({"dataframe_split": {"columns": ["messages", "max_tokens"], "data": [[m1, 6], [m2, 4]]}}), &two),
        ("dataframe_records", json!({"dataframe_records": [{"messages": m1, "max_tokens": 6}, {"messages": m2, "max_tokens": 4}]}), &two),
        ("inputs", json!({"inputs": {"messages": m1}, "params": {"max_tokens": 6}}), &one),
        ("instances", json!({"instances": [{"messages": m1, "max_tokens": 6}, {"messages": m2, "max_tokens": 4}]}), &two),
        ("chat body", json!({"messages": m1, "max_tokens": 6}), &one),
    ];
    for (form, body, want) in &forms {
        let (status, answer) = server.invoke(body);
        assert_eq!(status, 200, "{form}: {answer}");
        // Wrapped forms answer {"predictions": [...]}, the chat body the list itself.
        let list = if *form == "chat body" { &answer } else { &answer["predictions"] };
        assert_eq!(&completions(list), *want, "{form}");
    }
    assert_eq!(forms.len(), 5);
}
