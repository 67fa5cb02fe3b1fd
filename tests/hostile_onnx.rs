//! Hostile Phi ONNX folders and arguments against the real binary: numbers in
//! `genai_config.json` that size or divide something, truncated graph and weights files, a
//! corrupt tokenizer, chat templates that loop or flood, a prompt far beyond the context and a
//! thread count that once exhausted the machine. Each case names the key or file, stays under
//! 5 s and a memory bound, and leaves the folder byte-identical.
//!
//! Figures: `cargo test --release --test hostile_onnx -- --nocapture --test-threads=1`.

mod hostile_support;

use std::path::Path;

use hostile_support::{Run, edit_genai_config, onnx_folder_in, run, snapshot};

const VALIDATE_MB: f64 = 150.0;
/// `generate` loads ONNX Runtime and the model: about 40 MB for the tiny fixture.
const GENERATE_MB: f64 = 300.0;
const SECONDS: f64 = 5.0;

fn validate(case: &str, dir: &Path, needle: &str) -> Run {
    let before = snapshot(dir);
    let home = tempfile::tempdir().unwrap();
    let result = run(&["validate", dir.to_str().unwrap()], home.path());
    result.assert_bounded(case, needle, SECONDS, VALIDATE_MB);
    assert_eq!(result.code, Some(1), "{case}: must be unusable:\n{}", result.output());
    assert_eq!(snapshot(dir), before, "{case}: the input changed");
    result
}

fn generate(case: &str, dir: &Path, extra: &[&str], needle: &str) -> Run {
    let before = snapshot(dir);
    let home = tempfile::tempdir().unwrap();
    let mut args = vec!["generate", "--model", dir.to_str().unwrap(), "--max-tokens", "4"];
    args.extend_from_slice(extra);
    let result = run(&args, home.path());
    result.assert_bounded(case, needle, SECONDS, GENERATE_MB);
    assert_ne!(result.code, Some(0), "{case}");
    assert_eq!(snapshot(dir), before, "{case}: the input changed");
    result
}

#[test]
fn config_numbers_that_size_or_divide() {
    let scratch = tempfile::tempdir().unwrap();
    let cases: [(&str, &str, fn(&mut serde_json::Value)); 6] = [
        ("num_attention_heads: 0", "model.decoder.num_attention_heads", |c| c["model"]["decoder"]["num_attention_heads"] = 0.into()),
        ("head_size: 0", "model.decoder.head_size", |c| c["model"]["decoder"]["head_size"] = 0.into()),
        ("context_length: 0", "model.context_length", |c| c["model"]["context_length"] = 0.into()),
        ("max_length: 10^12", "search.max_length", |c| c["search"]["max_length"] = 1_000_000_000_000u64.into()),
        ("repetition_penalty: 0", "search.repetition_penalty", |c| c["search"]["repetition_penalty"] = 0.into()),
        ("num_key_value_heads: 3 of 4", "model.decoder.num_key_value_heads", |c| c["model"]["decoder"]["num_key_value_heads"] = 3.into()),
    ];
    for (index, (case, key, change)) in cases.into_iter().enumerate() {
        let dir = onnx_folder_in(scratch.path(), &format!("case{index}"));
        edit_genai_config(&dir, change);
        validate(case, &dir, key);
        generate(&format!("{case} (generate)"), &dir, &["--prompt", "hi"], key);
    }
}

#[test]
fn head_size_times_heads_must_be_hidden_size() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = onnx_folder_in(scratch.path(), "inconsistent");
    edit_genai_config(&dir, |c| c["model"]["decoder"]["hidden_size"] = 100.into());
    validate("head_size x heads != hidden_size", &dir, "head_size 32 × num_attention_heads 4 is not hidden_size 100");
}

#[test]
fn truncated_graph_and_weights() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = onnx_folder_in(scratch.path(), "graph");
    let graph = std::fs::read(dir.join("model.onnx")).unwrap();
    std::fs::write(dir.join("model.onnx"), &graph[..graph.len() / 2]).unwrap();
    validate("truncated model.onnx", &dir, "model.onnx: is truncated");

    let dir = onnx_folder_in(scratch.path(), "missing-data");
    std::fs::remove_file(dir.join("model.onnx.data")).unwrap();
    validate("missing model.onnx.data", &dir, "model.onnx.data`, which is missing");

    let dir = onnx_folder_in(scratch.path(), "short-data");
    let data = std::fs::read(dir.join("model.onnx.data")).unwrap();
    std::fs::write(dir.join("model.onnx.data"), &data[..data.len() / 2]).unwrap();
    validate("truncated model.onnx.data", &dir, "but the decoder reads its weights up to byte");
}

#[test]
fn corrupt_tokenizer() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = onnx_folder_in(scratch.path(), "tokenizer");
    let text = std::fs::read(dir.join("tokenizer.json")).unwrap();
    std::fs::write(dir.join("tokenizer.json"), &text[..text.len() / 3]).unwrap();
    validate("corrupt tokenizer.json", &dir, "cannot load the tokenizer");
}

fn with_template(scratch: &Path, name: &str, template: &str) -> std::path::PathBuf {
    let dir = onnx_folder_in(scratch, name);
    let path = dir.join("tokenizer_config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["chat_template"] = template.into();
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    dir
}

#[test]
fn chat_template_that_loops() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = with_template(scratch.path(), "loop", "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}");
    validate("looping chat template", &dir, "chat template exceeded its budget");
    generate("looping chat template (generate)", &dir, &["--user", "hi"], "chat template exceeded its budget");
}

#[test]
fn chat_template_that_renders_10_mb() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = with_template(scratch.path(), "flood", "{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}");
    validate("10 MB chat template output", &dir, "chat template exceeded the 4194304-byte limit");
    generate("10 MB chat template output (generate)", &dir, &["--user", "hi"], "chat template exceeded the 4194304-byte limit");
}

#[test]
fn prompt_far_beyond_the_context() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = onnx_folder_in(scratch.path(), "small-context");
    // 100 KB of text cannot fit 512 tokens (no token of this vocabulary covers 200 bytes).
    edit_genai_config(&dir, |c| {
        c["model"]["context_length"] = 512.into();
        c["search"]["max_length"] = 512.into();
    });
    let text = "word ".repeat(20_000);
    generate("prompt far beyond the context", &dir, &["--prompt", &text], "far beyond the model's context of 512 tokens");
}

#[test]
fn thread_count_out_of_range() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-phi3");
    let home = tempfile::tempdir().unwrap();
    let result = run(&["generate", "--model", fixture.to_str().unwrap(), "--prompt", "hi", "--threads", "100000"], home.path());
    result.assert_bounded("--threads 100000", "1 to 1024", SECONDS, VALIDATE_MB);
    assert_eq!(result.code, Some(2), "clap's usage error");
}
