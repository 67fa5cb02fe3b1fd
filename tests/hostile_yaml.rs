//! Hostile MLmodel files against the real binary: each case is generated here, run through
//! `modeldesk validate` (and `edit` where it writes), and must give a clear error naming the
//! problem, in under 5 s, below a memory bound, leaving the input byte-identical.
//!
//! Figures for the report: `cargo test --release --test hostile_yaml -- --nocapture --test-threads=1`
//! prints `| case | seconds | peak MB |` rows.

mod hostile_support;

use std::path::{Path, PathBuf};

use hostile_support::{Run, junk, package_in, run, snapshot};

/// Resident memory a validate of a small folder needs is about 12 MB; hostile input may use a
/// few times that, never the gigabytes it once did.
const VALIDATE_MB: f64 = 150.0;
const SECONDS: f64 = 5.0;

/// A folder holding only `MLmodel` with `text`.
fn mlmodel_folder(scratch: &Path, name: &str, text: &[u8]) -> PathBuf {
    let dir = scratch.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("MLmodel"), text).unwrap();
    dir
}

/// Validates `dir`, checks the bounds and that nothing changed, and returns the run.
fn validate_case(case: &str, dir: &Path, needle: &str) -> Run {
    let before = snapshot(dir);
    let home = tempfile::tempdir().unwrap();
    let result = run(&["validate", dir.to_str().unwrap()], home.path());
    result.assert_bounded(case, needle, SECONDS, VALIDATE_MB);
    assert_eq!(result.code, Some(1), "{case}: validate must call the folder unusable:\n{}", result.output());
    assert_eq!(snapshot(dir), before, "{case}: the input changed");
    result
}

#[test]
fn yaml_alias_bomb() {
    let scratch = tempfile::tempdir().unwrap();
    let mut doc = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    let names: Vec<char> = "abcdefghij".chars().collect();
    for pair in names.windows(2) {
        let (previous, name) = (pair[0], pair[1]);
        doc.push_str(&format!("{name}: &{name} [{}]\n", vec![format!("*{previous}"); 9].join(", ")));
    }
    let dir = mlmodel_folder(scratch.path(), "bomb", doc.as_bytes());
    validate_case("YAML alias bomb (9^10 values)", &dir, "values once aliases are expanded");
}

#[test]
fn yaml_aliases_of_large_strings_in_validate_and_edit() {
    // 113 KB: one 100 KB string and 3,000 aliases of it (300 MB once expanded).
    let scratch = tempfile::tempdir().unwrap();
    let big = "x".repeat(100_000);
    let aliases = vec!["*big"; 3000].join(", ");
    let doc = format!("flavors:\n  python_function:\n    loader_module: mlflow.pyfunc.model\n    config: {{text: &big {big}}}\nmetadata: {{copies: [{aliases}]}}\n");
    let dir = mlmodel_folder(scratch.path(), "aliases", doc.as_bytes());
    validate_case("YAML aliases of a 100 KB string", &dir, "aliases copy more than");
    let before = snapshot(&dir);
    let home = tempfile::tempdir().unwrap();
    let edit = run(&["edit", dir.to_str().unwrap(), "--set-config", "temperature=0.5"], home.path());
    edit.assert_bounded("edit of the same file", "aliases copy more than", SECONDS, VALIDATE_MB);
    assert_ne!(edit.code, Some(0));
    assert_eq!(snapshot(&dir), before, "edit must not write");
}

#[test]
fn yaml_50000_deep_nesting() {
    let scratch = tempfile::tempdir().unwrap();
    // Block sequences nest one level per "- ", all on one line.
    let block = format!("{}x\n", "- ".repeat(50_000));
    let dir = mlmodel_folder(scratch.path(), "block", block.as_bytes());
    validate_case("50,000-deep block nesting", &dir, "nested more than 200 levels");
    // Flow collections: the parser's own limit.
    let flow = format!("a: {}{}\n", "[".repeat(50_000), "]".repeat(50_000));
    let dir = mlmodel_folder(scratch.path(), "flow", flow.as_bytes());
    validate_case("50,000-deep flow nesting", &dir, "MLmodel is not valid YAML");
}

#[test]
fn yaml_80000_keys_in_linear_time() {
    // Once quadratic (8.6 s): every key was compared with every earlier one.
    let scratch = tempfile::tempdir().unwrap();
    let mut doc = String::from("flavors:\n  python_function:\n    loader_module: mlflow.pyfunc.model\n    config:\n");
    for i in 0..80_000 {
        doc.push_str(&format!("      key_{i}: {i}\n"));
    }
    let dir = mlmodel_folder(scratch.path(), "keys", doc.as_bytes());
    let home = tempfile::tempdir().unwrap();
    let show = run(&["show", dir.to_str().unwrap(), "--json"], home.path());
    show.assert_bounded("80,000 keys (show)", "\"key_79999\": 79999", SECONDS, VALIDATE_MB);
    assert_eq!(show.code, Some(0), "{}", show.output());
    // Reading and writing them back (the emitter sorts and quotes 80,000 keys).
    let edit = run(&["edit", dir.to_str().unwrap(), "--set-config", "key_80000=1"], home.path());
    edit.assert_bounded("80,000 keys (edit)", "saved", SECONDS, VALIDATE_MB);
    let saved = std::fs::read_to_string(dir.join("MLmodel")).unwrap();
    assert_eq!(saved.matches("key_").count(), 80_001);
}

#[test]
fn mlmodel_of_60_mb() {
    let scratch = tempfile::tempdir().unwrap();
    let mut doc = String::with_capacity(61 << 20);
    doc.push_str("metadata:\n");
    let mut i = 0u64;
    while doc.len() < 60_000_000 {
        doc.push_str(&format!("  k{i}: {i}\n"));
        i += 1;
    }
    let dir = mlmodel_folder(scratch.path(), "huge", doc.as_bytes());
    validate_case("60 MB MLmodel (2.6 M keys)", &dir, "may be at most 16 MiB");
}

#[test]
fn mlmodel_of_binary_junk() {
    let scratch = tempfile::tempdir().unwrap();
    let bytes = junk(4096, 7);
    let offset = std::str::from_utf8(&bytes).unwrap_err().valid_up_to();
    let dir = mlmodel_folder(scratch.path(), "junk", &bytes);
    validate_case("MLmodel of binary junk", &dir, &format!("is not UTF-8 text: invalid byte 0x{:02X} at offset {offset}", bytes[offset]));
}

#[test]
fn mlmodel_with_invalid_utf8() {
    let scratch = tempfile::tempdir().unwrap();
    let text = b"flavors:\n  python_function:\n    loader_module: caf\xe9\n";
    let dir = mlmodel_folder(scratch.path(), "latin1", text);
    validate_case("MLmodel with a Latin-1 byte", &dir, "invalid byte 0xE9 at offset 50");
}

#[test]
fn mlmodel_that_is_a_folder() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("folder");
    std::fs::create_dir_all(dir.join("MLmodel")).unwrap();
    validate_case("MLmodel that is a folder", &dir, "MLmodel is a folder, not a regular file");
}

#[test]
fn edit_signature_never_turns_a_bad_part_into_null() {
    let scratch = tempfile::tempdir().unwrap();
    let package = package_in(scratch.path(), "package");
    let home = tempfile::tempdir().unwrap();
    for (case, signature, needle) in [
        ("signature part that is not JSON", r#"{"inputs": "[{not json", "outputs": [{"type": "string"}]}"#, "`inputs` is a string that is not JSON text"),
        ("signature with an unknown part", r#"{"inputs": [{"type": "string"}], "input": []}"#, "unknown part `input`"),
        ("signature that is a list", r#"[{"type": "string"}]"#, "a signature file is a JSON object"),
    ] {
        let file = scratch.path().join("signature.json");
        std::fs::write(&file, signature).unwrap();
        let before = snapshot(&package);
        let edit = run(&["edit", package.to_str().unwrap(), "--signature", file.to_str().unwrap()], home.path());
        edit.assert_bounded(case, needle, SECONDS, VALIDATE_MB);
        assert_ne!(edit.code, Some(0), "{case}");
        assert_eq!(snapshot(&package), before, "{case}: nothing may be written");
    }
    // An out-of-range model_config value is refused too.
    let before = snapshot(&package);
    let edit = run(&["edit", package.to_str().unwrap(), "--set-config", "repetition_penalty=0"], home.path());
    edit.assert_bounded("model_config repetition_penalty 0", "repetition_penalty", SECONDS, VALIDATE_MB);
    assert_ne!(edit.code, Some(0));
    assert_eq!(snapshot(&package), before);
}
