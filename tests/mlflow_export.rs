//! Export: a cancelled export leaves nothing behind; edits through the CLI are validated first
//! and written atomically.

mod support;

use std::{
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
};

use modeldesk::mlflow::{export::export, mlmodel::MlModel, yaml::Node};

fn package(scratch: &std::path::Path) -> std::path::PathBuf {
    let out = scratch.join("package");
    let status = Command::new(env!("CARGO_BIN_EXE_modeldesk"))
        .args(["create", "--task", "prompt", "--from-onnx"])
        .arg(support::tiny_phi3())
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    out
}

fn leftovers(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

#[test]
fn cancelling_half_way_leaves_no_output() {
    let scratch = tempfile::tempdir().unwrap();
    let source = package(scratch.path());
    // A large artifact so the export takes several progress steps.
    let big = source.join("artifacts/phi3/extra.bin");
    let file = std::fs::File::create(&big).unwrap();
    file.set_len(200 << 20).unwrap();
    let outputs = scratch.path().join("out");
    std::fs::create_dir_all(&outputs).unwrap();
    for zip in [false, true] {
        let destination = outputs.join(if zip { "model.zip" } else { "model" });
        let cancel = AtomicBool::new(false);
        let mut calls = 0;
        let result = export(&source, &destination, zip, &mut |progress| {
            calls += 1;
            if progress.fraction() >= 0.5 {
                cancel.store(true, Ordering::Relaxed);
            }
        }, &cancel);
        assert!(matches!(result, Err(modeldesk::mlflow::export::ExportError::Cancelled)), "{result:?}");
        assert!(calls >= 3);
        assert!(leftovers(&outputs).is_empty(), "left behind: {:?}", leftovers(&outputs));
    }
    // And a full export produces the package.
    let destination = outputs.join("complete");
    let mut last = None;
    export(&source, &destination, false, &mut |p| last = Some(p), &AtomicBool::new(false)).unwrap();
    let last = last.unwrap();
    assert_eq!(last.done_bytes, last.total_bytes);
    assert!(destination.join("artifacts/phi3/extra.bin").is_file());
    assert_eq!(leftovers(&outputs), vec!["complete".to_string()]);
}

#[test]
fn exporting_an_invalid_folder_is_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let source = package(scratch.path());
    std::fs::remove_file(source.join("phi3_onnx_model.py")).unwrap();
    let error = export(&source, &scratch.path().join("out"), false, &mut |_| {}, &AtomicBool::new(false)).unwrap_err();
    assert!(error.to_string().contains("phi3_onnx_model.py"), "{error}");
    assert!(!scratch.path().join("out").exists());
}

#[test]
fn edit_changes_only_what_it_is_asked_and_refuses_bad_input() {
    let scratch = tempfile::tempdir().unwrap();
    let source = package(scratch.path());
    let before = MlModel::load(&source).unwrap();
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_modeldesk")).arg("edit").arg(&source).args(args).output().unwrap();
    let ok = run(&["--set-config", "temperature=0.5", "--unset-config", "top_p", "--description", "A tiny test model"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let after = MlModel::load(&source).unwrap();
    let config = after.model_config().unwrap().as_map().unwrap();
    assert_eq!(config.get("temperature"), Some(&Node::Float(0.5)));
    assert!(!config.contains_key("top_p"));
    assert_eq!(after.description().as_deref(), Some("A tiny test model"));
    assert_eq!(after.root().get("signature"), before.root().get("signature"));
    assert_eq!(after.root().get("model_uuid"), before.root().get("model_uuid"));

    // An example that does not fit the signature: refused, nothing written. (Created packages
    // have no input schema; give this one a `prompt` column first.)
    let signature = scratch.path().join("signature.json");
    std::fs::write(&signature, r#"{"inputs": [{"type": "string", "name": "prompt", "required": true}], "outputs": [{"type": "string", "required": true}]}"#).unwrap();
    assert!(run(&["--signature", signature.to_str().unwrap()]).status.success());
    let example = scratch.path().join("bad_example.json");
    std::fs::write(&example, r#"{"prompt": 42}"#).unwrap();
    let snapshot = std::fs::read(source.join("MLmodel")).unwrap();
    let example_before = std::fs::read(source.join("input_example.json")).unwrap();
    let refused = run(&["--input-example", example.to_str().unwrap(), "--set-config", "temperature=0.9"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("does not match"), "{}", String::from_utf8_lossy(&refused.stderr));
    assert_eq!(std::fs::read(source.join("MLmodel")).unwrap(), snapshot);
    assert_eq!(std::fs::read(source.join("input_example.json")).unwrap(), example_before);

    // A broken signature file: refused with the faulty element named.
    std::fs::write(&signature, r#"{"inputs": [{"type": "array", "name": "p", "items": {"type": "str"}}]}"#).unwrap();
    let refused = run(&["--signature", signature.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("inputs[0].items.type"), "{}", String::from_utf8_lossy(&refused.stderr));
    assert_eq!(std::fs::read(source.join("MLmodel")).unwrap(), snapshot);

    // A valid signature + matching example are both written.
    std::fs::write(&signature, r#"{"inputs": [{"type": "string", "name": "prompt", "required": true}, {"type": "long", "name": "max_tokens", "required": false}], "outputs": [{"type": "string", "required": true}]}"#).unwrap();
    std::fs::write(&example, r#"{"prompt": "Hi", "max_tokens": 4}"#).unwrap();
    let ok = run(&["--signature", signature.to_str().unwrap(), "--input-example", example.to_str().unwrap()]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let validate = Command::new(env!("CARGO_BIN_EXE_modeldesk")).arg("validate").arg(&source).output().unwrap();
    assert!(validate.status.success(), "{}", String::from_utf8_lossy(&validate.stdout));
}

#[test]
fn validate_exits_one_for_an_unusable_folder_and_names_the_file() {
    let scratch = tempfile::tempdir().unwrap();
    let source = package(scratch.path());
    std::fs::remove_file(source.join("artifacts/phi3/model.onnx.data")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_modeldesk")).arg("validate").arg(&source).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("model.onnx.data"), "{text}");
    let ok = Command::new(env!("CARGO_BIN_EXE_modeldesk")).arg("validate").arg(support::tiny_phi3()).output().unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stdout));
}

#[test]
fn a_file_that_grows_while_copied_is_refused_and_progress_never_passes_100_percent() {
    let scratch = tempfile::tempdir().unwrap();
    let source = package(scratch.path());
    // Written to after the walk measured it (the first progress report comes from an earlier
    // file: `artifacts/` sorts before `zz-log.txt`).
    let growing = source.join("zz-log.txt");
    std::fs::write(&growing, "first line\n").unwrap();
    let outputs = scratch.path().join("out");
    std::fs::create_dir_all(&outputs).unwrap();
    for zip in [false, true] {
        let destination = outputs.join(if zip { "model.zip" } else { "model" });
        let mut reports = Vec::new();
        let result = export(&source, &destination, zip, &mut |progress| {
            if reports.is_empty() {
                use std::io::Write as _;
                let mut file = std::fs::OpenOptions::new().append(true).open(&growing).unwrap();
                file.write_all(&[b'x'; 4096]).unwrap();
            }
            reports.push(progress);
        }, &AtomicBool::new(false));
        let error = result.unwrap_err().to_string();
        assert!(error.contains("zz-log.txt") && error.contains("changed while it was being copied"), "{error}");
        assert!(reports.len() >= 2, "{reports:?}");
        assert!(reports.iter().all(|p| p.done_bytes <= p.total_bytes && p.fraction() <= 1.0), "{reports:?}");
        assert!(leftovers(&outputs).is_empty(), "left behind: {:?}", leftovers(&outputs));
        std::fs::write(&growing, "first line\n").unwrap();
    }
}

#[cfg(unix)]
#[test]
fn created_and_exported_files_get_ordinary_permissions() {
    use std::os::unix::fs::PermissionsExt as _;
    let scratch = tempfile::tempdir().unwrap();
    // What this process's umask gives an ordinary new file and folder.
    let probe_file = scratch.path().join("probe");
    std::fs::File::create(&probe_file).unwrap();
    let probe_dir = scratch.path().join("probe-dir");
    std::fs::create_dir(&probe_dir).unwrap();
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let (file_mode, dir_mode) = (mode(&probe_file), mode(&probe_dir));
    assert_ne!(file_mode, 0o600, "this test needs a umask that differs from tempfile's 0600");
    let source = package(scratch.path());
    assert_eq!(mode(&source), dir_mode, "the package folder");
    for name in ["MLmodel", "input_example.json", "requirements.txt", "phi3_onnx_model.py"] {
        assert_eq!(mode(&source.join(name)), file_mode, "{name}");
    }
    let destination = scratch.path().join("exported");
    export(&source, &destination, false, &mut |_| {}, &AtomicBool::new(false)).unwrap();
    assert_eq!(mode(&destination), dir_mode, "the exported folder");
    assert_eq!(mode(&destination.join("MLmodel")), file_mode);
}

#[test]
fn an_absolute_artifact_path_inside_the_folder_is_made_relative_in_the_copy() {
    let scratch = tempfile::tempdir().unwrap();
    let source = package(scratch.path());
    let mut model = MlModel::load(&source).unwrap();
    let absolute = std::fs::canonicalize(source.join("artifacts/phi3")).unwrap();
    let artifact = model
        .root_mut()
        .get_mut("flavors").and_then(Node::as_map_mut)
        .and_then(|f| f.get_mut("python_function")).and_then(Node::as_map_mut)
        .and_then(|p| p.get_mut("artifacts")).and_then(Node::as_map_mut)
        .and_then(|a| a.get_mut("phi3")).and_then(Node::as_map_mut)
        .unwrap();
    artifact.insert("path", Node::Str(absolute.display().to_string()));
    model.save().unwrap();
    let report = modeldesk::mlflow::validate::validate_folder(&source);
    assert!(report.is_usable(), "{:?}", report.problems);
    assert!(report.problems.iter().any(|p| p.message.contains("is absolute")), "{:?}", report.problems);
    for zip in [false, true] {
        let destination = scratch.path().join(if zip { "copy.zip" } else { "copy" });
        export(&source, &destination, zip, &mut |_| {}, &AtomicBool::new(false)).unwrap();
        let copied = if zip {
            let unpacked = scratch.path().join("unpacked");
            zip::ZipArchive::new(std::fs::File::open(&destination).unwrap()).unwrap().extract(&unpacked).unwrap();
            unpacked
        } else {
            destination
        };
        let copy = MlModel::load(&copied).unwrap();
        let path = copy.python_function().unwrap().artifacts.into_iter().find(|(name, _)| name == "phi3").unwrap().1;
        assert_eq!(path.as_deref(), Some("artifacts/phi3"), "zip: {zip}");
        // The original keeps its own text.
        assert!(std::fs::read_to_string(source.join("MLmodel")).unwrap().contains(&absolute.display().to_string()));
    }
}

/// Runs `modeldesk export` and returns (success, stderr).
fn export_cli(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_modeldesk")).arg("export").args(args).output().unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Every file under `dir` with its bytes, for before/after comparisons.
fn snapshot(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.path().strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(e.path()).unwrap()))
        .collect();
    files.sort();
    files
}

#[test]
fn an_existing_package_or_zip_is_replaced_only_when_asked_and_only_by_a_complete_one() {
    use modeldesk::mlflow::export::{ExportError, IfExists, export_to};
    let scratch = tempfile::tempdir().unwrap();
    let source = package(scratch.path());
    let outputs = scratch.path().join("out");
    std::fs::create_dir_all(&outputs).unwrap();
    for zip in [false, true] {
        let destination = outputs.join(if zip { "model.zip" } else { "model" });
        // An older export with a file the new one does not have.
        export(&source, &destination, zip, &mut |_| {}, &AtomicBool::new(false)).unwrap();
        if !zip {
            std::fs::write(destination.join("stale.txt"), "from the old export").unwrap();
        }
        let before = if zip { vec![(destination.clone(), std::fs::read(&destination).unwrap())] } else { snapshot(&destination) };
        // Without --replace: refused, untouched.
        let (ok, stderr) = export_cli(&[source.as_os_str(), "--out".as_ref(), destination.as_os_str(), if zip { "--zip" } else { "--json" }.as_ref()]);
        assert!(!ok && stderr.contains("already exists"), "{stderr}");
        // A cancelled replace leaves the old one as it was, and nothing beside it.
        let cancel = AtomicBool::new(true);
        let result = export_to(&source, &destination, zip, IfExists::Replace, &mut |_| {}, &cancel);
        assert!(matches!(result, Err(ExportError::Cancelled)), "{result:?}");
        let after = if zip { vec![(destination.clone(), std::fs::read(&destination).unwrap())] } else { snapshot(&destination) };
        assert_eq!(after, before);
        assert_eq!(leftovers(&outputs).len(), if zip { 2 } else { 1 }, "{:?}", leftovers(&outputs));
        // With --replace: the new package takes its place.
        let (ok, stderr) = export_cli(&[source.as_os_str(), "--out".as_ref(), destination.as_os_str(), "--replace".as_ref(), if zip { "--zip" } else { "--json" }.as_ref()]);
        assert!(ok, "{stderr}");
        if zip {
            let archive = zip::ZipArchive::new(std::fs::File::open(&destination).unwrap()).unwrap();
            assert!(archive.file_names().any(|n| n.is_ok_and(|n| n == "MLmodel")));
        } else {
            assert!(!destination.join("stale.txt").exists());
            assert_eq!(snapshot(&destination), snapshot(&source));
        }
    }
    let mut names = leftovers(&outputs);
    names.sort();
    assert_eq!(names, vec!["model".to_string(), "model.zip".to_string()]);
}

#[test]
fn replacing_never_touches_the_source_a_folder_holding_it_or_a_folder_that_is_not_a_package() {
    use modeldesk::mlflow::export::{IfExists, export_to};
    let scratch = tempfile::tempdir().unwrap();
    let source = package(scratch.path());
    let documents = scratch.path().join("documents");
    std::fs::create_dir_all(&documents).unwrap();
    std::fs::write(documents.join("notes.txt"), "keep me").unwrap();
    let text_file = scratch.path().join("notes.txt");
    std::fs::write(&text_file, "keep me too").unwrap();
    let cases = [
        (source.clone(), "holds the model"),
        (scratch.path().to_path_buf(), "holds the model"),
        (source.join("artifacts"), "inside the model"),
        (documents.clone(), "not an MLflow model"),
        (text_file.clone(), "not a .zip package"),
    ];
    let before = snapshot(scratch.path());
    for (destination, reason) in &cases {
        let error = export_to(&source, destination, false, IfExists::Replace, &mut |_| {}, &AtomicBool::new(false)).unwrap_err();
        let message = error.to_string();
        assert!(message.contains(reason) && message.contains(&destination.display().to_string()), "{message}");
    }
    assert_eq!(cases.len(), 5);
    assert_eq!(snapshot(scratch.path()), before);
}

#[test]
fn a_free_name_is_offered_beside_an_existing_destination() {
    use modeldesk::mlflow::export::next_free_name;
    let scratch = tempfile::tempdir().unwrap();
    let taken = scratch.path().join("phi3-export");
    std::fs::create_dir_all(&taken).unwrap();
    std::fs::create_dir_all(scratch.path().join("phi3-export-2")).unwrap();
    assert_eq!(next_free_name(&taken), scratch.path().join("phi3-export-3"));
    assert_eq!(next_free_name(&scratch.path().join("phi3-export-2")), scratch.path().join("phi3-export-3"));
    std::fs::write(scratch.path().join("model.zip"), "").unwrap();
    assert_eq!(next_free_name(&scratch.path().join("model.zip")), scratch.path().join("model-2.zip"));
}
