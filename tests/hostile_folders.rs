//! Hostile folders against the real binary: symbolic links (loops, dangling, leading outside),
//! paths in MLmodel that leave the folder, a zip-slip file name, pipes and devices, and a full
//! disk. Each case names the problem, stays under 5 s and a memory bound, writes nothing
//! outside its destination and leaves the input byte-identical.
//!
//! Figures: `cargo test --release --test hostile_folders -- --nocapture --test-threads=1`.

mod hostile_support;

use std::{
    os::unix::fs::symlink,
    path::{Path, PathBuf},
};

use hostile_support::{ChildLimits, Run, modeldesk, package_in, run, snapshot};

const MB: f64 = 150.0;
const SECONDS: f64 = 5.0;

fn validate(case: &str, dir: &Path, needle: &str) -> Run {
    let before = snapshot(dir);
    let home = tempfile::tempdir().unwrap();
    let result = run(&["validate", dir.to_str().unwrap()], home.path());
    result.assert_bounded(case, needle, SECONDS, MB);
    assert_eq!(snapshot(dir), before, "{case}: the input changed");
    result
}

/// Exports `dir` to `<scratch>/out/model[.zip]`; returns the run and the output folder.
fn export(case: &str, dir: &Path, scratch: &Path, zip: bool, needle: &str) -> (Run, PathBuf) {
    let before = snapshot(dir);
    let out = scratch.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let destination = out.join(if zip { "model.zip" } else { "model" });
    let home = tempfile::tempdir().unwrap();
    let mut args = vec!["export", dir.to_str().unwrap(), "--out", destination.to_str().unwrap()];
    if zip {
        args.push("--zip");
    }
    let result = run(&args, home.path());
    result.assert_bounded(case, needle, SECONDS, MB);
    assert_eq!(snapshot(dir), before, "{case}: the source changed");
    (result, out)
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn link_loop() {
    let scratch = tempfile::tempdir().unwrap();
    let package = package_in(scratch.path(), "package");
    symlink("..", package.join("artifacts/phi3/loop")).unwrap();
    let result = validate("link loop", &package, "loops back to");
    assert_eq!(result.code, Some(1));
    let (result, out) = export("export with a link loop", &package, scratch.path(), false, "loops back to");
    assert_ne!(result.code, Some(0));
    assert!(names_in(&out).is_empty(), "{:?}", names_in(&out));
}

#[test]
fn dangling_link() {
    let scratch = tempfile::tempdir().unwrap();
    let package = package_in(scratch.path(), "package");
    let data = package.join("artifacts/phi3/model.onnx.data");
    std::fs::remove_file(&data).unwrap();
    symlink("../../../blobs/gone", &data).unwrap();
    let result = validate("dangling link", &package, "which does not exist");
    assert!(result.output().contains("model.onnx.data"), "{}", result.output());
    assert_eq!(result.code, Some(1));
}

#[test]
fn link_to_a_file_outside_is_copied_and_listed() {
    // A Hugging Face cache snapshot: the weights are links into ../../blobs/.
    let scratch = tempfile::tempdir().unwrap();
    let package = package_in(scratch.path(), "package");
    let blobs = scratch.path().join("blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let data = package.join("artifacts/phi3/model.onnx.data");
    std::fs::rename(&data, blobs.join("0123abcd")).unwrap();
    symlink("../../../blobs/0123abcd", &data).unwrap();
    let result = validate("link to a file outside (validate)", &package, "usable (0 errors");
    assert_eq!(result.code, Some(0));
    let (result, out) = export("link to a file outside (export)", &package, scratch.path(), false, "came through links from outside the folder");
    assert_eq!(result.code, Some(0), "{}", result.output());
    assert!(result.output().contains("artifacts/phi3/model.onnx.data <- "), "{}", result.output());
    let copied = out.join("model/artifacts/phi3/model.onnx.data");
    assert!(copied.symlink_metadata().unwrap().is_file(), "the copy holds the bytes, not a link");
    assert_eq!(std::fs::read(&copied).unwrap(), std::fs::read(blobs.join("0123abcd")).unwrap());
}

#[test]
fn absolute_artifact_path_outside_is_rejected_and_never_copied() {
    let scratch = tempfile::tempdir().unwrap();
    let package = package_in(scratch.path(), "package");
    let secret = scratch.path().join("secret.key");
    std::fs::write(&secret, "PRIVATE KEY").unwrap();
    let mlmodel = package.join("MLmodel");
    let text = std::fs::read_to_string(&mlmodel).unwrap().replace(
        "    artifacts:\n",
        &format!("    artifacts:\n      stolen:\n        path: {}\n", secret.display()),
    );
    std::fs::write(&mlmodel, text).unwrap();
    let result = validate("absolute artifact path", &package, "flavors.python_function.artifacts.stolen.path");
    assert!(result.output().contains("absolute path outside the model folder"), "{}", result.output());
    assert_eq!(result.code, Some(1));
    for zip in [false, true] {
        let (result, out) = export("export with an absolute artifact path", &package, scratch.path(), zip, "artifacts.stolen.path");
        assert_ne!(result.code, Some(0));
        assert!(names_in(&out).is_empty(), "nothing written: {:?}", names_in(&out));
    }
}

#[test]
fn dotdot_artifact_name_and_path_write_nothing_outside() {
    let scratch = tempfile::tempdir().unwrap();
    let package = package_in(scratch.path(), "package");
    let mlmodel = package.join("MLmodel");
    let text = std::fs::read_to_string(&mlmodel)
        .unwrap()
        .replace("    artifacts:\n", "    artifacts:\n      ../../../somewhere:\n        path: ..\n");
    std::fs::write(&mlmodel, text).unwrap();
    let result = validate("../ artifact name and path", &package, "climbs out of the folder with `..`");
    assert!(result.output().contains("is not a plain name"), "{}", result.output());
    assert_eq!(result.code, Some(1));
    let around = names_in(scratch.path());
    let (result, out) = export("export with ../ artifact", &package, scratch.path(), false, "climbs out");
    assert_ne!(result.code, Some(0));
    assert!(names_in(&out).is_empty());
    // Nothing appeared next to the destination or the package (only the empty out/ folder).
    let mut expected = around.clone();
    expected.push("out".into());
    expected.sort();
    expected.dedup();
    assert_eq!(names_in(scratch.path()), expected);
}

#[test]
fn zip_slip_entry_name_is_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let package = package_in(scratch.path(), "package");
    std::fs::write(package.join("artifacts/..\\..\\evil.txt"), "escapes on Windows").unwrap();
    let (result, out) = export("zip-slip entry name", &package, scratch.path(), true, "cannot be stored in a zip file that unpacks safely");
    assert!(result.output().contains("evil.txt"), "{}", result.output());
    assert_ne!(result.code, Some(0));
    assert!(names_in(&out).is_empty(), "{:?}", names_in(&out));
}

#[test]
fn requirements_linked_to_dev_zero() {
    // Once read until the machine ran out of memory (4 GB in 3 s).
    let scratch = tempfile::tempdir().unwrap();
    let package = package_in(scratch.path(), "package");
    std::fs::remove_file(package.join("requirements.txt")).unwrap();
    symlink("/dev/zero", package.join("requirements.txt")).unwrap();
    let result = validate("requirements.txt -> /dev/zero", &package, "requirements.txt is a character device, not a regular file");
    assert_eq!(result.code, Some(1));
}

#[test]
fn input_example_that_is_a_fifo() {
    let scratch = tempfile::tempdir().unwrap();
    let package = package_in(scratch.path(), "package");
    let example = package.join("input_example.json");
    std::fs::remove_file(&example).unwrap();
    let name = std::ffi::CString::new(example.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o644) }, 0);
    let result = validate("input_example.json is a FIFO", &package, "is a named pipe (FIFO), not a regular file");
    assert_eq!(result.code, Some(1));
}

#[test]
fn full_disk_during_export_create_and_save() {
    // RLIMIT_FSIZE makes every write past the limit fail (EFBIG), exactly where a full disk
    // fails with ENOSPC; no root, no special file system.
    let scratch = tempfile::tempdir().unwrap();
    let package = package_in(scratch.path(), "package");
    // Incompressible, so the zip grows past the limit too.
    std::fs::write(package.join("artifacts/phi3/extra.bin"), hostile_support::junk(8 << 20, 3)).unwrap();
    let before = snapshot(&package);
    let limits = ChildLimits { max_file_bytes: Some(4 << 20) };
    let home = tempfile::tempdir().unwrap();
    for zip in [false, true] {
        let out = scratch.path().join(if zip { "zip-out" } else { "folder-out" });
        std::fs::create_dir_all(&out).unwrap();
        let destination = out.join("model");
        let mut args: Vec<&std::ffi::OsStr> = vec!["export".as_ref(), package.as_os_str(), "--out".as_ref(), destination.as_os_str()];
        if zip {
            args.push("--zip".as_ref());
        }
        let result = modeldesk(&args, home.path(), limits);
        let case = if zip { "full disk during export --zip" } else { "full disk during export" };
        result.assert_bounded(case, "no space left for the copy", SECONDS, MB);
        assert_ne!(result.code, Some(0));
        assert!(names_in(&out).is_empty(), "{case}: left {:?}", names_in(&out));
        assert_eq!(snapshot(&package), before, "{case}: the source changed");
    }
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-phi3");
    let onnx = scratch.path().join("onnx");
    hostile_support::copy_dir(&fixture, &onnx);
    std::fs::write(onnx.join("padding.bin"), hostile_support::junk(8 << 20, 4)).unwrap();
    let out = scratch.path().join("create-out");
    std::fs::create_dir_all(&out).unwrap();
    let target = out.join("package");
    let result = modeldesk(
        &["create".as_ref(), "--from-onnx".as_ref(), onnx.as_os_str(), "--out".as_ref(), target.as_os_str()],
        home.path(),
        limits,
    );
    result.assert_bounded("full disk during create", "no space left for the copy", SECONDS, MB);
    assert!(names_in(&out).is_empty(), "create left {:?}", names_in(&out));
    // A save whose example cannot be written: MLmodel and the old example stay as they were.
    let example = scratch.path().join("example.json");
    std::fs::write(&example, format!(r#"{{"prompt": "{}"}}"#, "y".repeat(6 << 20))).unwrap();
    let result = modeldesk(
        &["edit".as_ref(), package.as_os_str(), "--input-example".as_ref(), example.as_os_str()],
        home.path(),
        limits,
    );
    result.assert_bounded("full disk during edit", "File too large", SECONDS, MB);
    assert_eq!(snapshot(&package), before, "edit changed the package");
}
