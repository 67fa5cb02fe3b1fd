//! The foundation: ONNX Runtime found by itself, the tiny Phi-3 fixture is real and runs, and
//! the CLI explains a missing runtime.

mod support;

use std::process::Command;

use modeldesk::engine::{DecoderSettings, Engine, KvMode};

#[test]
fn the_fixture_runs_one_forward_pass_through_the_runtime_module() {
    let runtime = support::runtime();
    assert!(runtime.version.starts_with("1.31"), "version {}", runtime.version);
    let mut engine = Engine::load(runtime, &support::tiny_phi3(), &DecoderSettings::default()).unwrap();
    assert_eq!(engine.facts.layers, 2);
    assert!(engine.facts.kv_heads < engine.facts.attention_heads.unwrap(), "grouped-query attention");
    assert!(!engine.facts.has_position_ids);
    let ids = engine.tokenizer.encode("Hello there").unwrap();
    let mut cache = engine.decoder.new_cache(KvMode::Shared);
    let logits = engine.decoder.step(&mut cache, &ids, 64).unwrap();
    assert_eq!(logits.rows, ids.len());
    assert_eq!(logits.vocab, engine.facts.vocab_size);
    assert!(logits.data.iter().all(|v| v.is_finite()));
    assert_eq!(cache.len(), ids.len());
}

#[test]
fn the_fixture_graph_uses_the_published_int4_operators() {
    let graph = std::fs::read(support::tiny_phi3().join("model.onnx")).unwrap();
    let count = |needle: &[u8]| graph.windows(needle.len()).filter(|w| *w == needle).count();
    assert_eq!(count(b"MatMulNBits"), 2 * 5 + 1, "QKV, o, gate, up, down per layer plus lm_head");
    assert_eq!(count(b"GroupQueryAttention"), 2, "one per layer");
    assert!(count(b"SkipSimplifiedLayerNormalization") >= 2);
    assert!(count(b"com.microsoft") > 0);
    let total: u64 = std::fs::read_dir(support::tiny_phi3()).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    assert!(total < 5_000_000, "fixture is {total} bytes");
}

#[test]
fn onnxruntime_genai_loads_and_generates_from_the_fixture() {
    let reference = support::genai_reference(&support::tiny_phi3(), "Hello there", 24, &[]);
    let generated = reference["generated_ids"].as_array().unwrap();
    assert!(!generated.is_empty(), "{reference}");
}

#[test]
fn doctor_succeeds_from_another_directory_without_ort_dylib_path() {
    let elsewhere = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_modeldesk"))
        .args(["doctor", "--json", "--model"])
        .arg(support::tiny_phi3())
        .current_dir(elsewhere.path())
        .env_remove("ORT_DYLIB_PATH")
        .env("MODELDESK_HOME", elsewhere.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["onnxruntime"]["version"], "1.31.1");
    assert_eq!(report["onnxruntime"]["found_via"], "beside_executable");
    assert!(report["onnxruntime"]["execution_providers"].as_array().unwrap().iter().any(|p| p == "CPUExecutionProvider"));
    assert_eq!(report["model"]["forward_pass"]["logits_shape"][2], report["model"]["facts"]["vocab_size"]);
    let inputs = report["model"]["facts"]["inputs"].as_array().unwrap();
    assert!(inputs.iter().any(|i| i == "past_key_values.1.value"), "{inputs:?}");
}

#[test]
fn a_subcommand_without_a_usable_runtime_exits_with_a_clear_error() {
    let scratch = tempfile::tempdir().unwrap();
    // A copy of the binary with no library beside it, and ORT_DYLIB_PATH naming a text file.
    let binary = scratch.path().join("modeldesk");
    std::fs::copy(env!("CARGO_BIN_EXE_modeldesk"), &binary).unwrap();
    let fake = scratch.path().join("fake-onnxruntime.so");
    std::fs::write(&fake, "this is not ONNX Runtime").unwrap();
    let output = Command::new(&binary)
        .args(["doctor"])
        .env("ORT_DYLIB_PATH", &fake)
        .env("MODELDESK_HOME", scratch.path().join("home"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ONNX Runtime"), "{stderr}");
    assert!(stderr.contains("fake-onnxruntime.so"), "the tried path is named: {stderr}");
    assert!(stderr.contains("ORT_DYLIB_PATH"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
