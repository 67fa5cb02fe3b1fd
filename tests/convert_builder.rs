//! Converting the tiny Hugging Face checkpoint with onnxruntime-genai 0.18.0's own model builder
//! (torch venv, `tests/python/requirements-torch.txt`): the int4 CPU folder (library, with
//! progress) and the fp32 one (`modeldesk convert`) open like any Phi ONNX folder and ModelDesk
//! generates the same token ids as onnxruntime-genai on them, greedy and seeded sampling. A
//! cancelled conversion kills the builder and leaves nothing, whether it is cancelled while
//! Python starts or while the builder writes its output.

mod support;

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use modeldesk::{
    convert::{
        ConvertError, ConvertRequest, Precision, Provider, Stage, convert,
        service::{ConvertEvent, ConvertService},
    },
    engine::{ChatMessage, DecoderSettings, Engine, GenerateOptions, Prompt},
    service::no_waker,
};
use serde_json::{Value, json};

fn fixture() -> PathBuf {
    support::repo().join("tests/fixtures/tiny-phi3-hf")
}

fn request(out: &Path, precision: Precision) -> ConvertRequest {
    ConvertRequest { checkpoint: fixture(), out: out.to_path_buf(), precision, provider: Provider::Cpu, python: Some(support::torch_python()) }
}

/// Names in `dir` (staging folders included).
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

/// Processes whose command line mentions `needle` (Linux: /proc).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(needle) {
                found.push(text);
            }
        }
    }
    found
}

/// Our ids for the cases genai_cases.py runs.
fn ours(engine: &mut Engine, case: &Value) -> (Vec<i64>, Vec<i64>) {
    let messages: Vec<ChatMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
    let ids = engine.prepare(&Prompt::Chat(messages), usize::MAX, Default::default()).unwrap().ids;
    let o = &case["options"];
    let options = GenerateOptions {
        max_length: case["max_length"].as_u64().map(|v| v as usize),
        do_sample: o["do_sample"].as_bool(),
        top_k: o["top_k"].as_u64().map(|v| v as usize),
        top_p: o["top_p"].as_f64().map(|v| v as f32),
        temperature: o["temperature"].as_f64().map(|v| v as f32),
        seed: o["random_seed"].as_i64(),
        ignore_cached_prefix: true,
        ..GenerateOptions::default()
    };
    let completion = engine.generate_ids(&ids, &options, &AtomicBool::new(false), &mut |_| {}).unwrap();
    (completion.prompt_ids, completion.completion_ids)
}

fn assert_same_ids_as_genai(folder: &Path) -> usize {
    let user = json!({"role": "user", "content": "What is the capital of Spain?"});
    let system = json!({"role": "system", "content": "You are a helpful assistant."});
    let cases: Vec<Value> = [
        (json!([user]), json!({})),
        (json!([system, user]), json!({})),
        (json!([user]), json!({"do_sample": true, "top_k": 5, "temperature": 0.8, "random_seed": 42})),
        (json!([user]), json!({"do_sample": true, "top_k": 0, "top_p": 0.9, "temperature": 0.7, "random_seed": 7})),
    ]
    .into_iter()
    .map(|(messages, options)| json!({"model": folder, "messages": messages, "max_length": 64, "options": options}))
    .collect();
    let expected = support::python_script_with(&support::torch_python(), "genai_cases.py", &Value::Array(cases.clone()));
    let mut engine = Engine::load(support::runtime(), folder, &DecoderSettings::default()).unwrap_or_else(|e| panic!("{e}"));
    let mut compared = 0;
    for (case, want) in cases.iter().zip(expected.as_array().unwrap()) {
        assert!(want["error"].is_null(), "genai failed: {want}");
        let (prompt, completion) = ours(&mut engine, case);
        assert_eq!(json!(prompt), want["prompt_ids"], "{}: prompt ids", case["options"]);
        assert_eq!(json!(completion), want["generated_ids"], "{}: generated ids", case["options"]);
        assert!(!completion.is_empty());
        compared += 1;
    }
    compared
}

#[test]
fn converted_folders_generate_what_onnxruntime_genai_generates() {
    let scratch = tempfile::tempdir().unwrap();
    let int4 = scratch.path().join("int4");
    let mut seen: Vec<(Stage, f32)> = Vec::new();
    let converted = convert(&request(&int4, Precision::Int4), &mut |p| seen.push((p.stage, p.fraction)), &AtomicBool::new(false))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(converted.folder, int4);
    assert!(seen.windows(2).all(|w| w[1].0 >= w[0].0 && w[1].1 >= w[0].1), "progress only moves forward: {seen:?}");
    for stage in [Stage::Loading, Stage::Reading, Stage::Quantizing, Stage::Writing, Stage::Finishing] {
        assert!(seen.iter().any(|(s, _)| *s == stage), "{stage:?} reported: {seen:?}");
    }
    assert_eq!(entries(scratch.path()), ["int4"], "no staging left");
    let mut files = entries(&int4);
    files.sort();
    assert_eq!(files, ["chat_template.jinja", "genai_config.json", "model.onnx", "model.onnx.data", "tokenizer.json", "tokenizer_config.json"]);
    let report = modeldesk::inspect::check_folder(&int4);
    assert_eq!(report.errors().count(), 0, "{:?}", report.problems);
    assert_eq!(assert_same_ids_as_genai(&int4), 4);

    // The command line, fp32.
    let fp32 = scratch.path().join("fp32");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_modeldesk"))
        .args(["convert", fixture().to_str().unwrap(), "--precision", "fp32", "--json", "--python"])
        .arg(support::torch_python())
        .arg("--out")
        .arg(&fp32)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed["folder"], json!(fp32));
    assert!(String::from_utf8_lossy(&output.stderr).contains("Writing the weights"));
    assert_eq!(assert_same_ids_as_genai(&fp32), 4);
}

#[test]
fn a_cancelled_conversion_kills_the_builder_and_leaves_nothing() {
    // While the builder writes its output (cancelled from the progress callback, so the moment
    // is certain): the half-written folder exists, then nothing does.
    let scratch = tempfile::tempdir().unwrap();
    let cancel = AtomicBool::new(false);
    let mut half_written = Vec::new();
    let result = convert(
        &request(&scratch.path().join("out"), Precision::Int4),
        &mut |progress| {
            if progress.stage >= Stage::Writing && !cancel.load(Ordering::SeqCst) {
                let staging = entries(scratch.path()).into_iter().find(|n| n.starts_with(".modeldesk-convert-")).expect("the staging folder");
                half_written = entries(&scratch.path().join(staging).join("onnx"));
                cancel.store(true, Ordering::SeqCst);
            }
        },
        &cancel,
    );
    assert!(matches!(result, Err(ConvertError::Cancelled)), "{result:?}");
    assert!(half_written.iter().any(|n| n.contains("model.onnx")), "cancelled mid-write: {half_written:?}");
    assert!(entries(scratch.path()).is_empty(), "left: {:?}", entries(scratch.path()));

    // Through the service, while Python is still starting.
    let scratch = tempfile::tempdir().unwrap();
    let mut service = ConvertService::start(no_waker()).unwrap();
    let id = service.convert(request(&scratch.path().join("out"), Precision::Int4));
    assert!(matches!(service.recv_timeout(Duration::from_secs(120)), Some(ConvertEvent::Started { id: started, .. }) if started == id));
    // The builder process is running once its staging folder exists and a process names it.
    let deadline = Instant::now() + Duration::from_secs(120);
    let staging = loop {
        let staging = entries(scratch.path()).into_iter().find(|n| n.starts_with(".modeldesk-convert-"));
        if let Some(name) = staging.filter(|name| !processes_mentioning(name).is_empty()) {
            break name;
        }
        assert!(Instant::now() < deadline, "the builder never started");
        std::thread::sleep(Duration::from_millis(50));
    };
    let asked = Instant::now();
    service.cancel();
    let end = std::iter::from_fn(|| service.recv_timeout(Duration::from_secs(30))).find(|e| !matches!(e, ConvertEvent::Progress { .. }));
    assert_eq!(end, Some(ConvertEvent::Cancelled { id }));
    assert!(asked.elapsed() < Duration::from_secs(5), "cancel took {:?}", asked.elapsed());
    assert!(processes_mentioning(&staging).is_empty(), "the builder still runs");
    assert!(entries(scratch.path()).is_empty(), "left: {:?}", entries(scratch.path()));
}
