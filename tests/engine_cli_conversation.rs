//! The conversation CLI (`generate --conversation`) and the per-turn benchmark (`bench --turns`),
//! run as the real binary.

mod support;

use std::process::Command;

use serde_json::{Value, json};

fn modeldesk(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_modeldesk")).args(args).output().expect("run modeldesk");
    assert!(output.status.success(), "modeldesk {args:?} failed:\n{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

#[test]
fn a_conversation_file_is_answered_turn_by_turn_with_reuse_and_genais_ids() {
    let model = support::shared().join("fixtures/phi3-micro-int4");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("chat.json");
    let turns = json!([{"role": "system", "content": "You are a helpful assistant."}, "What is the capital of Spain?", "And of France?", "Tell me more."]);
    std::fs::write(&file, turns.to_string()).unwrap();
    let before = std::fs::read(&file).unwrap();
    let stdout = modeldesk(&["generate", "--model", model.to_str().unwrap(), "--conversation", file.to_str().unwrap(), "--json", "--max-tokens", "10"]);
    assert_eq!(std::fs::read(&file).unwrap(), before, "the conversation file is only read");
    let lines: Vec<Value> = stdout.lines().map(|line| serde_json::from_str(line).expect("one JSON object per line")).collect();
    assert_eq!(lines.len(), 3);
    let mut requests = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        assert_eq!(line["turn"], index + 1);
        let prompt = line["token_ids"]["prompt"].as_array().unwrap();
        assert_eq!(line["usage"]["prompt_tokens"], prompt.len());
        // OpenAI's field, present when something was reused.
        let cached = line["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64();
        assert_eq!(cached.unwrap_or(0), line["reused_tokens"].as_u64().unwrap());
        assert_eq!(cached.is_some(), index > 0);
        assert!(line["metrics"]["time_to_first_token_ms"].as_f64().unwrap() > 0.0);
        requests.push(json!({"ids": prompt, "max_tokens": 10}));
    }
    assert_eq!(lines[0]["reused_tokens"], 0);
    for pair in lines.windows(2) {
        // The reply's ids go into the next prompt as generated (not its text encoded again), so
        // the reuse reaches the end of the reply: every token fed through the model (a token cut
        // by max_tokens never was).
        let previous_prompt = pair[0]["token_ids"]["prompt"].as_array().unwrap().len();
        let reply = pair[0]["token_ids"]["completion"].as_array().unwrap();
        let fed = reply.len() - usize::from(pair[0]["finish_reason"] == "length");
        assert_eq!(pair[1]["token_ids"]["prompt"].as_array().unwrap()[previous_prompt..previous_prompt + reply.len()], reply[..]);
        assert_eq!(pair[1]["reused_tokens"], previous_prompt + fed, "turn {} reuses the whole previous exchange", pair[1]["turn"]);
    }
    // onnxruntime-genai replaying the same requests on one generator gives the same ids.
    let config: Value = serde_json::from_str(&std::fs::read_to_string(model.join("genai_config.json")).unwrap()).unwrap();
    let max_length = config["search"]["max_length"].as_u64().filter(|&m| m > 0).or(config["model"]["context_length"].as_u64()).unwrap();
    let input = json!([{"model": model, "max_length": max_length, "options": {}, "requests": requests}]);
    let reference = support::python_script("genai_conversation.py", &input);
    let reference = reference[0].as_array().unwrap();
    assert_eq!(reference.len(), 3);
    for (ours, theirs) in lines.iter().zip(reference) {
        assert_eq!(ours["token_ids"]["completion"], theirs["generated_ids"], "turn {}", ours["turn"]);
        assert_eq!(ours["reused_tokens"], theirs["reused"], "turn {}", ours["turn"]);
    }
}

#[test]
fn a_bad_conversation_file_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.json");
    std::fs::write(&file, r#"{"not": "a list"}"#).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_modeldesk"))
        .args(["generate", "--model", support::tiny_phi3().to_str().unwrap(), "--conversation", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.json") && stderr.contains("JSON list"), "{stderr}");
}

#[test]
fn bench_turns_reports_reuse_per_turn_and_none_without_it() {
    let model = support::tiny_phi3();
    let run = |extra: &[&str]| -> Value {
        let mut args = vec!["bench", "--model", model.to_str().unwrap(), "--turns", "3", "--user-tokens", "20", "--reply-tokens", "5", "--runs", "2", "--json"];
        args.extend_from_slice(extra);
        serde_json::from_str(&modeldesk(&args)).expect("bench prints JSON")
    };
    let reuse = run(&[]);
    let fresh = run(&["--no-reuse"]);
    let turns = |report: &Value| report["per_turn"].as_array().unwrap().clone();
    assert_eq!(turns(&reuse).len(), 3);
    assert_eq!(turns(&fresh).len(), 3);
    for (with, without) in turns(&reuse).iter().zip(turns(&fresh)) {
        assert_eq!(with["prompt_tokens"], without["prompt_tokens"], "same shapes either way");
        assert_eq!(without["reused_tokens"], 0);
        assert_eq!(with["samples"].as_array().unwrap().len(), 2);
    }
    let rows = turns(&reuse);
    assert_eq!(rows[0]["reused_tokens"], 0);
    // Each reply is cut at 5 tokens, so its last one was never fed: the next turn reuses the
    // previous prompt and the reply's first 4.
    for pair in rows.windows(2) {
        assert_eq!(pair[1]["reused_tokens"], pair[0]["prompt_tokens"].as_u64().unwrap() + 4);
    }
    assert!(rows[0]["prompt_tokens"].as_u64().unwrap() >= 20);
}

/// `--ort-profile` writes ONNX Runtime's profile of exactly the runs the engine made: per turn
/// one run over the new tokens (the reused ones are not read again), then one per fed reply token.
#[test]
fn ort_profile_records_each_run_the_engine_made() {
    let model = support::tiny_phi3();
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("turns");
    let output = Command::new(env!("CARGO_BIN_EXE_modeldesk"))
        .args(["bench", "--model", model.to_str().unwrap(), "--turns", "2", "--user-tokens", "20", "--reply-tokens", "5"])
        .args(["--runs", "1", "--json", "--ort-profile", prefix.to_str().unwrap()])
        .output()
        .expect("run modeldesk");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench --ort-profile failed:\n{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("bench prints JSON");
    let named = stderr.lines().find_map(|line| line.strip_prefix("ONNX Runtime profile: ")).expect("the profile's path on stderr");
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|entry| entry.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "one profile: {files:?}");
    assert!(files[0].file_name().unwrap().to_string_lossy().starts_with("turns_"), "{files:?}");
    assert!(files[0].ends_with(std::path::Path::new(named).file_name().unwrap()), "{named} names {files:?}");
    let events: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).expect("the profile is JSON");
    let mut runs: Vec<&Value> = events.iter().filter(|e| e["name"] == "model_run").collect();
    runs.sort_by_key(|e| e["ts"].as_u64());
    // New tokens per run, read from the attention node's query input ([1, new, …]).
    let new_tokens: Vec<u64> = runs
        .iter()
        .map(|run| {
            let (start, end) = (run["ts"].as_u64().unwrap(), run["ts"].as_u64().unwrap() + run["dur"].as_u64().unwrap());
            let attention = events
                .iter()
                .find(|e| e["args"]["op_name"] == "GroupQueryAttention" && (start..=end).contains(&e["ts"].as_u64().unwrap_or(0)))
                .expect("each run ran the attention node");
            attention["args"]["input_type_shape"][0]["float"][1].as_u64().unwrap()
        })
        .collect();
    // A warm-up request and the two turns, each a prompt run and 4 one-token steps (the fifth
    // reply token is never fed).
    assert_eq!(new_tokens.len(), 3 * 5, "runs: {new_tokens:?}");
    let turns = report["per_turn"].as_array().unwrap();
    let read = |turn: &Value| turn["prompt_tokens"].as_u64().unwrap() - turn["reused_tokens"].as_u64().unwrap();
    let expected: Vec<u64> =
        [turns[0]["prompt_tokens"].as_u64().unwrap(), read(&turns[0]), read(&turns[1])].iter().flat_map(|&n| [n, 1, 1, 1, 1]).collect();
    assert_eq!(new_tokens, expected);
    assert!(read(&turns[1]) < turns[1]["prompt_tokens"].as_u64().unwrap() / 2, "turn 2 reads only what is new: {new_tokens:?}");
}
