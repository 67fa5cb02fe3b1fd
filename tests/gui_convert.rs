//! A Hugging Face checkpoint in the window, driven through egui_kittest: its view (architecture,
//! weights, what converting costs); "Create MLflow model" offers the kind and writes the
//! transformers package with progress, which joins the library; "Convert to ONNX" with a Python
//! that lacks the builder shows the pip line; with the torch venv it shows the builder's
//! progress, can be cancelled (nothing left) and opens the converted folder, which chats.

mod support;

use std::{
    path::{Path, PathBuf},
};

use egui::accesskit::Role;
use egui_kittest::{
    Harness,
    kittest::Queryable as _,
};
use modeldesk::{
    app::{FolderKind, PackageKind},
    gui::ModelDeskApp,
};
use support::gui::{app_sized, drop_folder, idle, step_until};

/// A copy of the checkpoint fixture in `dir` (destinations are written beside it).
fn checkpoint_in(dir: &Path) -> PathBuf {
    let copy = dir.join("tiny-phi3-hf");
    std::fs::create_dir_all(&copy).unwrap();
    let mut copied = 0;
    for entry in std::fs::read_dir(support::repo().join("tests/fixtures/tiny-phi3-hf")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
        copied += 1;
    }
    assert_eq!(copied, 11);
    copy
}

/// The app with the checkpoint dropped on it.
fn app_with_checkpoint(home: &Path, checkpoint: &Path) -> Harness<'static, ModelDeskApp> {
    let mut harness = app_sized(home, [1280.0, 900.0]);
    idle(&mut harness);
    drop_folder(&mut harness, checkpoint);
    idle(&mut harness);
    harness
}

#[test]
fn a_checkpoint_shows_what_it_is_and_becomes_a_transformers_package() {
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let checkpoint = checkpoint_in(work.path());
    let mut harness = app_with_checkpoint(home.path(), &checkpoint);
    assert!(harness.query_by_label("Hugging Face checkpoint (PyTorch / safetensors)").is_some());
    assert!(harness.query_by_label("Phi3ForCausalLM").is_some());
    assert!(harness.query_by_label_contains("in 5 file(s),").is_some());
    assert!(harness.query_by_label_contains("parameters, bfloat16").is_some());
    assert!(harness.query_by_label_contains("of processor time").is_some(), "what converting costs is said before starting");

    harness.get_by_label("Create MLflow model…").click();
    // A modal's first frame only measures it.
    harness.run_steps(4);
    assert!(harness.query_by_label("transformers (MLflow's transformers flavor, runs with PyTorch)").is_some());
    // The ONNX kind explains that it converts first, and offers to.
    harness.get_by_label("ONNX pyfunc (runs with onnxruntime-genai, as ModelDesk does)").click_accesskit();
    harness.run_steps(4);
    assert!(harness.query_by_label_contains("convert the checkpoint first").is_some());
    assert!(harness.query_by_role_and_label(Role::Button, "Create").is_none());
    harness.get_by_label("transformers (MLflow's transformers flavor, runs with PyTorch)").click_accesskit();
    harness.run_steps(4);
    assert_eq!(harness.state().state.convert.package.as_ref().unwrap().kind, PackageKind::Transformers);
    let destination = work.path().join("tiny-phi3-hf-mlflow");
    assert_eq!(harness.state().state.convert.package.as_ref().unwrap().destination, destination.display().to_string());
    harness.get_by_role_and_label(Role::Button, "Create").click();
    step_until(&mut harness, "the package", |h| h.query_by_label_contains("Written to").is_some());
    let mlmodel = std::fs::read_to_string(destination.join("MLmodel")).unwrap();
    assert!(mlmodel.contains("loader_module: mlflow.transformers") && mlmodel.contains("inference_task: llm/v1/chat"), "{mlmodel}");
    assert!(destination.join("model/model-00004-of-00004.safetensors").is_file());
    harness.run_steps(3);
    harness.get_by_label("Open").click_accesskit();
    idle(&mut harness);
    let state = &harness.state().state;
    assert_eq!(state.persisted.selected.as_ref(), Some(&destination));
    assert_eq!(state.entries.get(&destination).map(|e| e.kind), Some(FolderKind::MlflowModel));
    assert!(state.convert.package.is_none());
}

#[test]
fn convert_with_a_python_without_the_builder_says_what_to_install() {
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let checkpoint = checkpoint_in(work.path());
    let venv = work.path().join("bare");
    let made = std::process::Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
        .args(["-m", "venv", "--without-pip"])
        .arg(&venv)
        .output()
        .unwrap();
    assert!(made.status.success());
    let python = venv.join("bin/python");
    let mut harness = app_with_checkpoint(home.path(), &checkpoint);
    harness.get_by_label("Convert to ONNX…").click();
    harness.run_steps(4);
    harness.state_mut().state.convert.convert.as_mut().unwrap().settings.python = python.display().to_string();
    harness.run_steps(1);
    harness.get_by_role_and_label(Role::Button, "Convert").click();
    step_until(&mut harness, "the check to fail", |h| h.query_by_label_contains("-m pip install").is_some());
    assert!(harness.query_by_label_contains("onnxruntime-genai==0.18.0 torch transformers").is_some());
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 2, "nothing written beside the checkpoint");
    // The chosen Python is remembered for next time.
    assert_eq!(harness.state().state.persisted.convert.python, python.display().to_string());
}

#[test]
fn convert_shows_progress_cancels_cleanly_and_opens_the_result() {
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let checkpoint = checkpoint_in(work.path());
    let mut harness = app_with_checkpoint(home.path(), &checkpoint);
    let torch = support::torch_python().display().to_string();

    // Cancelled while the builder runs: nothing is left beside the checkpoint.
    harness.get_by_label("Convert to ONNX…").click();
    harness.run_steps(4);
    harness.state_mut().state.convert.convert.as_mut().unwrap().settings.python = torch.clone();
    harness.run_steps(1);
    harness.get_by_role_and_label(Role::Button, "Convert").click();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(900);
    while !harness.state().state.convert.convert.as_ref().is_some_and(|d| d.progress.is_some()) {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for the builder to report");
        std::thread::sleep(std::time::Duration::from_millis(20));
        harness.step();
    }
    assert!(harness.query_by_role(Role::ProgressIndicator).is_some());
    harness.get_by_label("Cancel").click();
    step_until(&mut harness, "the cancel", |h| h.query_by_label("Cancelled; nothing was written.").is_some());
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 1, "only the checkpoint");
    // The dialog shrinks to the outcome; let it settle before clicking.
    harness.run_steps(3);
    harness.get_by_label("Close").click();
    harness.run_steps(4);
    assert!(harness.state().state.convert.convert.is_none(), "Close closes the dialog");

    // Run to the end: the converted folder joins the library, opens, and chats.
    harness.get_by_label("Convert to ONNX…").click();
    harness.run_steps(4);
    assert_eq!(harness.state().state.convert.convert.as_ref().unwrap().settings.python, torch, "the Python is remembered");
    harness.get_by_role_and_label(Role::Button, "Convert").click();
    // The builder imports torch and converts: minutes on a busy machine, so a longer bound.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(900);
    while !harness.state().state.convert.convert.as_ref().is_some_and(|d| d.outcome.is_some()) {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for the conversion");
        std::thread::sleep(std::time::Duration::from_millis(20));
        harness.step();
    }
    let converted = work.path().join("tiny-phi3-hf-onnx-int4-cpu");
    let dialog = harness.state().state.convert.convert.as_ref().unwrap();
    assert_eq!(dialog.outcome, Some(Ok(converted.clone())));
    assert_eq!(dialog.progress.as_ref().map(|p| p.stage), Some(modeldesk::convert::Stage::Finishing), "the builder's last stage was shown");
    idle(&mut harness);
    harness.run_steps(3);
    assert_eq!(harness.state().state.persisted.selected.as_ref(), Some(&converted));
    assert_eq!(harness.state().state.entries.get(&converted).map(|e| e.kind), Some(FolderKind::Phi3Onnx));
    harness.get_by_label("Close").click();
    harness.run_steps(4);
    harness.get_by_label("Load model").click();
    step_until(&mut harness, "the model to load", |h| h.query_by_label("Unload").is_some());
}
