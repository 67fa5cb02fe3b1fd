use std::path::{Path, PathBuf};

use super::*;

pub(super) fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-phi3-hf")
}

/// A writable copy of the fixture.
pub(super) fn copy_of_fixture(into: &Path) -> PathBuf {
    let copy = into.join("tiny-phi3-hf");
    std::fs::create_dir_all(&copy).unwrap();
    let mut copied = 0;
    for entry in std::fs::read_dir(fixture()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
        copied += 1;
    }
    assert_eq!(copied, 11, "the fixture's files");
    copy
}

/// The fixture laid out as huggingface_hub caches it: files in `blobs/`, the snapshot a folder
/// of relative links. Returns the snapshot folder.
#[cfg(unix)]
pub(super) fn cached_fixture(cache: &Path) -> PathBuf {
    let repo = cache.join("models--someone--tiny-phi3-hf");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    for (number, entry) in std::fs::read_dir(fixture()).unwrap().enumerate() {
        let entry = entry.unwrap();
        let blob = format!("{number:064x}");
        std::fs::copy(entry.path(), repo.join("blobs").join(&blob)).unwrap();
        std::os::unix::fs::symlink(format!("../../blobs/{blob}"), snapshot.join(entry.file_name())).unwrap();
    }
    snapshot
}

fn names(files: &[TreeFile]) -> Vec<String> {
    files.iter().map(|f| f.relative.display().to_string()).collect()
}

#[test]
fn the_fixture_reads_as_a_sharded_bfloat16_phi3() {
    let checkpoint = Checkpoint::open(&fixture()).unwrap();
    assert_eq!(checkpoint.architecture, "Phi3ForCausalLM");
    assert_eq!(checkpoint.model_type, "phi3");
    assert_eq!(checkpoint.dtype.as_deref(), Some("bfloat16"));
    assert_eq!(checkpoint.num_layers, Some(2));
    assert_eq!(checkpoint.weight_format, WeightFormat::Safetensors);
    assert_eq!(
        names(&checkpoint.weights),
        (1..=4).map(|n| format!("model-{n:05}-of-00004.safetensors")).chain([SAFETENSORS_INDEX.to_owned()]).collect::<Vec<_>>()
    );
    assert_eq!(names(&checkpoint.model_files), [CONFIG, GENERATION_CONFIG]);
    assert_eq!(names(&checkpoint.tokenizer_files), ["tokenizer.json", TOKENIZER_CONFIG]);
    assert_eq!(checkpoint.tokenizer_class.as_deref(), Some("LlamaTokenizer"));
    assert_eq!(checkpoint.license.as_ref().map(|f| f.relative.clone()), Some(PathBuf::from("LICENSE")));
    assert!(checkpoint.model_card.is_some());
    assert_eq!(checkpoint.hub, None);
    assert!(Path::new(&checkpoint.source_name()).is_absolute());
    let on_disk: u64 = checkpoint.weights.iter().map(|f| std::fs::metadata(fixture().join(&f.relative)).unwrap().len()).sum();
    assert_eq!(checkpoint.weight_bytes(), on_disk);
}

#[cfg(unix)]
#[test]
fn a_cache_snapshot_is_read_through_its_links_and_named_by_its_repository() {
    let cache = tempfile::tempdir().unwrap();
    let snapshot = cached_fixture(cache.path());
    let checkpoint = Checkpoint::open(&snapshot).unwrap();
    assert_eq!(
        checkpoint.hub,
        Some(HubOrigin { repo: "someone/tiny-phi3-hf".into(), commit: "0123456789abcdef0123456789abcdef01234567".into() })
    );
    assert_eq!(checkpoint.source_name(), "someone/tiny-phi3-hf");
    assert_eq!(checkpoint.weights.len(), 5);
    assert!(checkpoint.weights.iter().all(|f| f.outside.is_some()), "the bytes live in blobs/, outside the snapshot");
}

/// Breaks a copy of the fixture with `damage`, then expects an error containing `expected`.
fn refused(damage: impl FnOnce(&Path), expected: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let copy = copy_of_fixture(dir.path());
    damage(&copy);
    let error = Checkpoint::open(&copy).unwrap_err().to_string();
    for part in expected {
        assert!(error.contains(part), "`{part}` not in: {error}");
    }
}

#[test]
fn broken_checkpoints_are_refused_with_the_file_and_the_reason() {
    let shard = "model-00002-of-00004.safetensors";
    refused(|dir| std::fs::remove_file(dir.join(shard)).unwrap(), &[SAFETENSORS_INDEX, shard, "missing"]);
    refused(
        |dir| {
            let bytes = std::fs::read(dir.join(shard)).unwrap();
            std::fs::write(dir.join(shard), &bytes[..bytes.len() - 100]).unwrap();
        },
        &[shard, "truncated"],
    );
    refused(
        |dir| {
            let index = std::fs::read_to_string(dir.join(SAFETENSORS_INDEX)).unwrap();
            let moved = index.replacen("\"lm_head.weight\": \"model-00004-of-00004", "\"lm_head.weight\": \"model-00001-of-00004", 1);
            assert_ne!(index, moved);
            std::fs::write(dir.join(SAFETENSORS_INDEX), moved).unwrap();
        },
        &[SAFETENSORS_INDEX, "lm_head.weight", "no such tensor"],
    );
    refused(
        |dir| {
            let index = std::fs::read_to_string(dir.join(SAFETENSORS_INDEX)).unwrap();
            std::fs::write(dir.join(SAFETENSORS_INDEX), index.replacen(shard, "../outside.safetensors", 1)).unwrap();
        },
        &[SAFETENSORS_INDEX, "separator"],
    );
    refused(|dir| std::fs::remove_file(dir.join(CONFIG)).unwrap(), &["not a Hugging Face checkpoint", "config.json"]);
    refused(|dir| std::fs::write(dir.join(CONFIG), r#"{"model_type": "phi3"}"#).unwrap(), &[CONFIG, "architectures"]);
    refused(|dir| std::fs::write(dir.join(CONFIG), "{ nope").unwrap(), &[CONFIG, "not valid JSON"]);
    refused(
        |dir| {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "safetensors") {
                    std::fs::remove_file(path).unwrap();
                }
            }
        },
        &["no weights"],
    );
    refused(|dir| std::fs::remove_file(dir.join("tokenizer.json")).unwrap(), &["no tokenizer"]);
    refused(
        |dir| {
            let config = std::fs::read_to_string(dir.join(TOKENIZER_CONFIG)).unwrap();
            let mut json: Value = serde_json::from_str(&config).unwrap();
            json.as_object_mut().unwrap().remove("chat_template").unwrap();
            std::fs::write(dir.join(TOKENIZER_CONFIG), json.to_string()).unwrap();
        },
        &["no chat template"],
    );
}

#[test]
fn chat_templates_are_found_where_transformers_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let copy = copy_of_fixture(dir.path());
    let config = std::fs::read_to_string(copy.join(TOKENIZER_CONFIG)).unwrap();
    let mut json: Value = serde_json::from_str(&config).unwrap();
    let template = json.as_object_mut().unwrap().remove("chat_template").unwrap();
    std::fs::write(copy.join(TOKENIZER_CONFIG), json.to_string()).unwrap();
    assert!(Checkpoint::open(&copy).is_err());
    // transformers 5 writes the template beside the tokenizer config.
    std::fs::write(copy.join(CHAT_TEMPLATE_JINJA), template.as_str().unwrap()).unwrap();
    let checkpoint = Checkpoint::open(&copy).unwrap();
    assert!(names(&checkpoint.tokenizer_files).contains(&CHAT_TEMPLATE_JINJA.to_owned()));
    // Named templates, as some tokenizer configs list them.
    std::fs::remove_file(copy.join(CHAT_TEMPLATE_JINJA)).unwrap();
    json["chat_template"] = serde_json::json!([{"name": "default", "template": template}]);
    std::fs::write(copy.join(TOKENIZER_CONFIG), json.to_string()).unwrap();
    assert!(Checkpoint::open(&copy).is_ok());
}
