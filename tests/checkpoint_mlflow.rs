//! A Hugging Face checkpoint packaged by ModelDesk (no Python) as a transformers-flavor
//! `llm/v1/chat` model, loaded by real MLflow 3.17.2 with torch and transformers 5
//! (`tests/python/requirements-torch.txt`, a venv made once per machine): `pyfunc.load_model`
//! predicts `{"messages": [...]}` and returns a `chat.completion` with `usage`; `mlflow models
//! serve` answers `/invocations`, also through ModelDesk's own "Run with MLflow" client. The
//! checkpoint comes from `tools/make_tiny_hf_checkpoint.py`, which must still reproduce the
//! committed `tests/fixtures/tiny-phi3-hf` bit for bit.

mod support;

use std::{
    path::{Path, PathBuf},
    sync::atomic::AtomicBool,
    time::Duration,
};

use modeldesk::{
    checkpoint::{
        Checkpoint,
        package::{PackageOptions, create_transformers_package},
    },
    remote::{
        chat::{ChatRequest, Endpoint, chat},
        serve::{ModelServer, ServeOptions},
    },
    transfer::{HttpOptions, client},
};
use serde_json::{Value, json};

fn fixture() -> PathBuf {
    support::repo().join("tests/fixtures/tiny-phi3-hf")
}

/// The fixture as a snapshot in a Hugging Face cache: files in `blobs/`, relative links in
/// `snapshots/<commit>/`, as huggingface_hub lays it out.
fn cache_snapshot(cache: &Path) -> PathBuf {
    let repo = cache.join("models--modeldesk--tiny-phi3-hf");
    let snapshot = repo.join("snapshots/89abcdef0123456789abcdef0123456789abcdef");
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(&snapshot).unwrap();
    let mut linked = 0;
    for entry in std::fs::read_dir(fixture()).unwrap() {
        let entry = entry.unwrap();
        let blob = format!("blob{linked:03}");
        std::fs::copy(entry.path(), repo.join("blobs").join(&blob)).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(format!("../../blobs/{blob}"), snapshot.join(entry.file_name())).unwrap();
        #[cfg(not(unix))]
        std::fs::copy(entry.path(), snapshot.join(entry.file_name())).unwrap();
        linked += 1;
    }
    assert_eq!(linked, 11);
    snapshot
}

fn package(checkpoint: &Path, out: &Path, name: Option<&str>) {
    let checkpoint = Checkpoint::open(checkpoint).unwrap_or_else(|e| panic!("{e}"));
    let options = PackageOptions { name: name.map(str::to_owned), ..PackageOptions::default() };
    create_transformers_package(&checkpoint, out, &options, &mut |_| {}, &AtomicBool::new(false)).unwrap_or_else(|e| panic!("{e}"));
}

/// One `chat.completion` as MLflow's transformers flavor returns it.
fn assert_completion(completion: &Value, model: &str, max_tokens: u64) {
    assert_eq!(completion["object"], "chat.completion", "{completion}");
    assert_eq!(completion["model"], model, "{completion}");
    let usage = &completion["usage"];
    let (prompt, reply, total) =
        (usage["prompt_tokens"].as_u64().unwrap(), usage["completion_tokens"].as_u64().unwrap(), usage["total_tokens"].as_u64().unwrap());
    assert!(prompt >= 2 && reply >= 1 && reply <= max_tokens && total == prompt + reply, "{usage}");
    let choice = &completion["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant", "{completion}");
    assert!(choice["message"]["content"].is_string(), "{completion}");
    // Random weights rarely stop early; when they reach the limit MLflow says `length`.
    if reply == max_tokens {
        assert_eq!(choice["finish_reason"], "length", "{completion}");
    }
}

#[test]
fn the_tool_still_makes_the_committed_checkpoint() {
    let out = tempfile::tempdir().unwrap();
    let made = out.path().join("made");
    let status = std::process::Command::new(support::torch_python())
        .arg(support::repo().join("tools/make_tiny_hf_checkpoint.py"))
        .arg(&made)
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let mut names: Vec<String> = std::fs::read_dir(&made).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names.len(), 11, "{names:?}");
    for name in &names {
        assert_eq!(std::fs::read(made.join(name)).unwrap(), std::fs::read(fixture().join(name)).unwrap(), "{name} differs from the committed fixture");
    }
}

#[test]
fn mlflow_loads_the_package_and_answers_chat_with_usage() {
    let scratch = tempfile::tempdir().unwrap();
    // From a cache snapshot: the repository id becomes the model's name, links become files.
    let snapshot = cache_snapshot(&scratch.path().join("hub"));
    let from_cache = scratch.path().join("from-cache");
    package(&snapshot, &from_cache, None);
    let named = scratch.path().join("named");
    package(&fixture(), &named, Some("tiny-chat"));

    let messages = json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello! What can you do?"}]);
    let mut checked = 0;
    for (folder, model) in [(&from_cache, "modeldesk/tiny-phi3-hf"), (&named, "tiny-chat")] {
        let results = support::python_script_with(&support::torch_python(), "predict_shapes.py", &json!({
            "model": folder,
            "cases": [
                {"name": "options", "input": {"messages": messages, "max_tokens": 5, "temperature": 0.7}},
                {"name": "defaults", "input": {"messages": messages}},
            ],
        }));
        for (case, limit) in [("options", 5), ("defaults", 256)] {
            let completions = results[case].as_array().unwrap_or_else(|| panic!("{case}: {}", results[case]));
            assert_eq!(completions.len(), 1, "{case}: one completion per conversation");
            assert_completion(&completions[0], model, limit);
            checked += 1;
        }
        // Sampled without a seed, a random model may still stop before the limit (one CI run's
        // reply ended at 4 tokens): then it stopped at EOS, and `assert_completion` has already
        // checked that the reply is within the limit.
        let options = &results["options"][0];
        let reply = options["usage"]["completion_tokens"].as_u64().unwrap_or_default();
        assert!(reply == 5 || options["choices"][0]["finish_reason"] == "stop", "max_tokens is honoured: {}", results["options"]);
    }
    assert_eq!(checked, 4);
}

#[test]
fn mlflow_models_serve_answers_invocations() {
    let scratch = tempfile::tempdir().unwrap();
    let folder = scratch.path().join("pkg");
    package(&fixture(), &folder, Some("tiny-chat"));
    let cancel = AtomicBool::new(false);
    let options = ServeOptions { python: Some(support::torch_python()), start_timeout: Duration::from_secs(600), ..ServeOptions::new(&folder) };
    let server = ModelServer::start(&options, &cancel).unwrap_or_else(|e| panic!("{e}"));
    let http = client(&HttpOptions { connect_timeout: Duration::from_secs(5), read_timeout: Duration::from_secs(300), insecure_tls: false }).unwrap();

    // The unified LLM body: the answer is a JSON list of completions (MLflow's scoring protocol).
    // The served pipeline may sample, and a random checkpoint then sometimes picks an EOS first
    // (seen in a fresh-clone run: one token, `stop`), so the cap is shown by the first of at most
    // five answers that reaches it; none may pass it.
    let body = json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4});
    let mut answers = Vec::new();
    while answers.len() < 5 {
        let response = http.post(server.invocations_url()).json(&body).send().unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let answer: Value = response.json().unwrap();
        assert_eq!(answer.as_array().map(Vec::len), Some(1), "{answer}");
        assert_completion(&answer[0], "tiny-chat", 4);
        let capped = answer[0]["usage"]["completion_tokens"] == 4;
        answers.push(answer);
        if capped {
            break;
        }
    }
    assert_eq!(answers.last().unwrap()[0]["usage"]["completion_tokens"], 4, "max_tokens is reached: {answers:?}");
    // `stream` is refused by the transformers pipeline, as MLflow documents.
    let streamed = http.post(server.invocations_url()).json(&json!({"messages": [{"role": "user", "content": "Hi"}], "stream": true})).send().unwrap();
    assert_eq!(streamed.status().as_u16(), 400);

    // ModelDesk's own "Run with MLflow" chat reads the reply and its usage.
    let endpoint = Endpoint::MlflowInvocations { url: server.invocations_url(), token: None };
    let request = ChatRequest { messages: vec![("user".into(), "Hello there".into())], max_tokens: Some(3), ..Default::default() };
    let reply = chat(&http, &endpoint, &request, &cancel).unwrap_or_else(|e| panic!("{e}"));
    let usage = reply.usage.expect("usage");
    assert_eq!(usage.completion_tokens, 3);
    assert_eq!(usage.total_tokens, usage.prompt_tokens + 3);
    assert_eq!(reply.finish_reason.as_deref(), Some("length"));
}
