//! `modeldesk create --from-hf` and `modeldesk convert` from the command line, without torch:
//! packaging the committed tiny checkpoint gives a folder `modeldesk validate` accepts; broken
//! checkpoints are refused with the file and the reason, and neither the input nor the
//! destination's folder changes; a Python without onnxruntime-genai's builder gets the pip line.

mod support;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn modeldesk(args: &[&std::ffi::OsStr], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_modeldesk")).args(args).env("MODELDESK_HOME", home).output().expect("run modeldesk")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn fixture() -> PathBuf {
    support::repo().join("tests/fixtures/tiny-phi3-hf")
}

/// Every file of a folder with its bytes, to show nothing changed.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect();
    files.sort();
    files
}

fn copy_of_fixture(into: &Path) -> PathBuf {
    let copy = into.join("checkpoint");
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(fixture()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    copy
}

#[test]
fn create_from_hf_writes_a_transformers_package_that_validates() {
    let fixture = fixture();
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("pkg");
    let result = modeldesk(&["create".as_ref(), "--from-hf".as_ref(), fixture.as_os_str(), "--out".as_ref(), out.as_os_str(), "--name".as_ref(), "tiny".as_ref(), "--flavor".as_ref(), "transformers".as_ref(), "--max-new-tokens".as_ref(), "64".as_ref()], scratch.path());
    assert!(result.status.success(), "{}", text(&result.stderr));
    assert_eq!(text(&result.stdout).trim(), format!("created {}", out.display()));
    assert!(text(&result.stderr).contains("Phi3ForCausalLM"), "{}", text(&result.stderr));
    let validated = modeldesk(&["validate".as_ref(), out.as_os_str()], scratch.path());
    assert!(validated.status.success(), "{}{}", text(&validated.stdout), text(&validated.stderr));
    let mlmodel = std::fs::read_to_string(out.join("MLmodel")).unwrap();
    for line in ["    loader_module: mlflow.transformers", "      max_new_tokens: 64", "    source_model_name: tiny", "    transformers_version: 5.23.0", "mlflow_version: 3.17.2"] {
        assert!(mlmodel.lines().any(|l| l == line), "`{line}` in:\n{mlmodel}");
    }
    let shown = modeldesk(&["show".as_ref(), out.as_os_str()], scratch.path());
    assert!(shown.status.success() && text(&shown.stdout).contains("transformers"), "{}", text(&shown.stdout));
}

#[test]
fn wrong_combinations_are_explained() {
    let fixture = fixture();
    let tiny = support::tiny_phi3();
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("pkg");
    let cases: [(&[&str], &str); 3] = [
        (&["--flavor", "onnx"], "modeldesk convert"),
        (&["--mlflow-version", "2.22.5"], "saved by transformers 5.23.0"),
        (&["--torch-version", "latest"], "not a version number for torch"),
    ];
    for (extra, expected) in cases {
        let mut args: Vec<&std::ffi::OsStr> = vec!["create".as_ref(), "--from-hf".as_ref(), fixture.as_os_str(), "--out".as_ref(), out.as_os_str()];
        args.extend(extra.iter().map(|a| std::ffi::OsStr::new(a)));
        let result = modeldesk(&args, scratch.path());
        assert_eq!(result.status.code(), Some(1), "{extra:?}");
        assert!(text(&result.stderr).contains(expected), "{extra:?}: {}", text(&result.stderr));
        assert!(!out.exists());
    }
    let both = modeldesk(&["create".as_ref(), "--from-hf".as_ref(), fixture.as_os_str(), "--from-onnx".as_ref(), tiny.as_os_str(), "--out".as_ref(), out.as_os_str()], scratch.path());
    assert_eq!(both.status.code(), Some(2), "clap refuses two sources");
}

#[test]
fn broken_checkpoints_are_refused_and_nothing_changes() {
    let damages: [(&str, fn(&Path), &str); 3] = [
        ("truncated shard", |dir| {
            let shard = dir.join("model-00003-of-00004.safetensors");
            let bytes = std::fs::read(&shard).unwrap();
            std::fs::write(&shard, &bytes[..bytes.len() / 2]).unwrap();
        }, "model-00003-of-00004.safetensors is not a safetensors file"),
        ("missing shard", |dir| std::fs::remove_file(dir.join("model-00001-of-00004.safetensors")).unwrap(), "names model-00001-of-00004.safetensors, which is missing"),
        ("tokenizer config not JSON", |dir| std::fs::write(dir.join("tokenizer_config.json"), "{\"chat_template\": ").unwrap(), "tokenizer_config.json: not valid JSON"),
    ];
    let mut refused = 0;
    for (name, damage, expected) in damages {
        let scratch = tempfile::tempdir().unwrap();
        let checkpoint = copy_of_fixture(scratch.path());
        damage(&checkpoint);
        let before = snapshot(&checkpoint);
        let out = scratch.path().join("pkg");
        for command in [["create", "--from-hf"].as_slice(), ["convert"].as_slice()] {
            let mut args: Vec<&std::ffi::OsStr> = command.iter().map(std::ffi::OsStr::new).collect();
            args.extend([checkpoint.as_os_str(), "--out".as_ref(), out.as_os_str()]);
            let result = modeldesk(&args, scratch.path());
            assert_eq!(result.status.code(), Some(1), "{name} ({command:?})");
            assert!(text(&result.stderr).contains(expected), "{name} ({command:?}): {}", text(&result.stderr));
            assert_eq!(snapshot(&checkpoint), before, "{name}: the checkpoint changed");
            let mut left: Vec<String> = std::fs::read_dir(scratch.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
            left.sort();
            assert_eq!(left, ["checkpoint", "data"], "{name}: nothing but the input and ModelDesk's data folder");
        }
        refused += 1;
    }
    assert_eq!(refused, 3);
}

#[test]
fn convert_says_what_python_lacks_before_starting() {
    let fixture = fixture();
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("onnx");
    // A bare Python (a venv without packages): every package of the builder is missing.
    let venv = scratch.path().join("bare");
    let made = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())).args(["-m", "venv", "--without-pip"]).arg(&venv).output().unwrap();
    assert!(made.status.success(), "{}", text(&made.stderr));
    let python = if cfg!(windows) { venv.join("Scripts/python.exe") } else { venv.join("bin/python") };
    let result = modeldesk(&["convert".as_ref(), fixture.as_os_str(), "--out".as_ref(), out.as_os_str(), "--python".as_ref(), python.as_os_str()], scratch.path());
    assert_eq!(result.status.code(), Some(1));
    let message = text(&result.stderr);
    assert!(message.contains("lacks onnxruntime_genai, torch, transformers, onnx, onnx_ir, onnxruntime"), "{message}");
    assert!(message.contains(&format!("\"{}\" -m pip install onnxruntime-genai==0.18.0 torch transformers onnx onnx-ir onnxruntime", python.display())), "{message}");
    assert!(!out.exists());

    let missing = modeldesk(&["convert".as_ref(), fixture.as_os_str(), "--out".as_ref(), out.as_os_str(), "--python".as_ref(), "/nonexistent/python3".as_ref()], scratch.path());
    assert!(text(&missing.stderr).contains("no Python 3 found (tried /nonexistent/python3)"), "{}", text(&missing.stderr));
    let unsupported = modeldesk(&["convert".as_ref(), fixture.as_os_str(), "--out".as_ref(), out.as_os_str(), "--precision".as_ref(), "fp16".as_ref()], scratch.path());
    assert!(text(&unsupported.stderr).contains("cannot make fp16 models for CPU"), "{}", text(&unsupported.stderr));
    assert!(!out.exists());
}
