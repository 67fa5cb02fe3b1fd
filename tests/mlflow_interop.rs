//! Packages ModelDesk creates are loaded, predicted and served by real MLflow 3.17.2, and give
//! the same text and usage as `modeldesk generate` (both build text with onnxruntime-genai's
//! TokenizerStream rules; see the engine's tokenizer module).

mod support;

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

fn modeldesk(args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_modeldesk")).args(args).output().unwrap();
    assert!(output.status.success(), "modeldesk {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
}


/// `mlflow.pyfunc.load_model(path).predict(input)` as JSON.
fn mlflow_predict(model: &Path, input: &Value) -> Value {
    let script = "import json, sys, mlflow\nm = mlflow.pyfunc.load_model(sys.argv[1])\nprint(json.dumps(m.predict(json.loads(sys.argv[2]))))";
    let out = support::python(script, &[model.to_str().unwrap(), &input.to_string()]);
    serde_json::from_str(out.lines().last().unwrap()).unwrap()
}

#[test]
fn chat_package_predicts_what_modeldesk_generates() {
    let scratch = tempfile::tempdir().unwrap();
    let package = scratch.path().join("chat");
    support::create_with_cli("chat", &package);
    for (question, max_tokens) in [("Hello! What can you do?", 12), ("What is the capital of Spain?", 40), ("Tell me a story.", 3)] {
        let ours = modeldesk(&[
            "generate", "--model", support::tiny_phi3().to_str().unwrap(), "--user", question,
            "--max-tokens", &max_tokens.to_string(), "--json",
        ]);
        let input = json!({"messages": [{"role": "user", "content": question}], "max_tokens": max_tokens});
        let theirs = mlflow_predict(&package, &input);
        let reply = &theirs[0];
        assert_eq!(reply["object"], "chat.completion");
        assert_eq!(reply["choices"][0]["message"]["content"], ours["choices"][0]["message"]["content"], "{question}");
        assert_eq!(reply["choices"][0]["finish_reason"], ours["choices"][0]["finish_reason"], "{question}");
        assert_eq!(reply["usage"], ours["usage"], "{question}");
    }
}

#[test]
fn prompt_package_predicts_what_modeldesk_generates() {
    let scratch = tempfile::tempdir().unwrap();
    let package = scratch.path().join("prompt");
    support::create_with_cli("prompt", &package);
    let prompts = ["Hello there", "The quick brown fox"];
    let records: Vec<Value> = prompts.iter().map(|p| json!({"prompt": p})).collect();
    let theirs = mlflow_predict(&package, &Value::Array(records));
    for (index, prompt) in prompts.iter().enumerate() {
        let ours = modeldesk(&["generate", "--model", support::tiny_phi3().to_str().unwrap(), "--prompt", prompt, "--json"]);
        assert_eq!(theirs[index], ours["choices"][0]["message"]["content"], "{prompt}");
    }
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn http(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(120))).ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    // Chunked bodies: keep the JSON between the first '[' or '{' and the last ']' or '}'.
    let start = body.find(['[', '{']).unwrap_or(0);
    let end = body.rfind([']', '}']).map(|i| i + 1).unwrap_or(body.len());
    Some((status, body[start..end].to_owned()))
}

fn serve(model: &Path) -> (Server, u16) {
    let python = support::reference_python();
    let bin = python.parent().unwrap().to_path_buf();
    let port = free_port();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let child = Command::new(bin.join("mlflow"))
        .args(["models", "serve", "--env-manager", "local", "--host", "127.0.0.1", "-p", &port.to_string(), "-m"])
        .arg(model)
        .env("PATH", path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(180);
    while http(port, "GET", "/ping", "").is_none_or(|(status, _)| status != 200) {
        assert!(Instant::now() < deadline, "mlflow models serve did not come up");
        std::thread::sleep(Duration::from_millis(500));
    }
    (server, port)
}

#[test]
fn served_chat_package_answers_invocations_with_usage_and_the_exported_zip_loads() {
    let scratch = tempfile::tempdir().unwrap();
    let package = scratch.path().join("chat");
    support::create_with_cli("chat", &package);
    let (_server, port) = serve(&package);
    let body = json!({"messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 8}).to_string();
    let (status, text) = http(port, "POST", "/invocations", &body).expect("an answer");
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    let completion = &answer[0];
    assert_eq!(completion["object"], "chat.completion");
    assert_eq!(completion["usage"]["completion_tokens"].as_u64().unwrap() + completion["usage"]["prompt_tokens"].as_u64().unwrap(),
        completion["usage"]["total_tokens"].as_u64().unwrap());
    assert!(completion["usage"]["completion_tokens"].as_u64().unwrap() <= 8);

    // Export as a zip, unpack it elsewhere, and load it the same way.
    let zip_path = scratch.path().join("chat.zip");
    let export = Command::new(env!("CARGO_BIN_EXE_modeldesk"))
        .arg("export")
        .arg(&package)
        .arg("--out")
        .arg(&zip_path)
        .arg("--zip")
        .output()
        .unwrap();
    assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));
    let unpacked: PathBuf = scratch.path().join("unpacked");
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&zip_path).unwrap()).unwrap();
    archive.extract(&unpacked).unwrap();
    let input = json!({"messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 8});
    assert_eq!(mlflow_predict(&unpacked, &input)[0]["choices"], mlflow_predict(&package, &input)[0]["choices"]);
}
