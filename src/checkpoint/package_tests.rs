use std::collections::BTreeSet;

use super::*;
use crate::{
    checkpoint::tests::{copy_of_fixture, fixture},
    mlflow::validate::validate_folder,
};

fn shared_example(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/mlflow-examples").join(name);
    assert!(path.is_dir(), "{} is missing: the tests need ../shared beside the clone", path.display());
    path
}

fn options() -> PackageOptions {
    PackageOptions { python_version: Some("3.11.7".into()), ..PackageOptions::default() }
}

fn package(checkpoint_dir: &Path, out: &Path, options: &PackageOptions) -> Result<PackageSummary, PackageError> {
    let checkpoint = Checkpoint::open(checkpoint_dir)?;
    create_transformers_package(&checkpoint, out, options, &mut |_| {}, &AtomicBool::new(false))
}

/// Every key path of a mapping (`flavors.transformers.task`), values left out.
fn key_paths(node: &Node, prefix: &str, into: &mut BTreeSet<String>) {
    if let Some(map) = node.as_map() {
        for key in map.keys() {
            let path = if prefix.is_empty() { key.to_owned() } else { format!("{prefix}.{key}") };
            into.insert(path.clone());
            // The signature and model_config are compared elsewhere; their keys are content.
            if !matches!(path.as_str(), "signature" | "flavors.python_function.config") {
                key_paths(map.get(key).unwrap_or(&Node::Null), &path, into);
            }
        }
    }
}

fn keys_of(dir: &Path) -> BTreeSet<String> {
    let model = MlModel::load(dir).unwrap();
    let mut keys = BTreeSet::new();
    key_paths(&Node::Map(model.root().clone()), "", &mut keys);
    keys
}

#[test]
fn the_package_has_mlflow_3s_keys_files_and_environment() {
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("pkg");
    let summary = package(&fixture(), &target, &options()).unwrap();
    assert_eq!(summary.linked_files, 0);
    assert_eq!(keys_of(&target), keys_of(&shared_example("v3-transformers-llm-v1-chat")));
    let report = validate_folder(&target);
    assert!(report.is_usable() && report.errors().count() == 0, "{:?}", report.problems);

    let model = MlModel::load(&target).unwrap();
    let flavor = model.flavor("transformers").unwrap();
    let text = |key: &str| flavor.get(key).and_then(Node::as_str).map(str::to_owned);
    assert_eq!(text("pipeline_model_type").as_deref(), Some("Phi3ForCausalLM"));
    assert_eq!(text("tokenizer_type").as_deref(), Some("LlamaTokenizer"));
    assert_eq!(text("torch_dtype").as_deref(), Some("torch.bfloat16"));
    assert_eq!(text("inference_task").as_deref(), Some("llm/v1/chat"));
    assert_eq!(text("transformers_version").as_deref(), Some("5.23.0"));
    assert_eq!(text("source_model_name"), Some(std::path::absolute(fixture()).unwrap().display().to_string()));
    assert_eq!(model.model_config().and_then(|c| c.as_map()).and_then(|c| c.get("max_new_tokens")), Some(&Node::Int(256)));

    let listing: Vec<String> =
        crate::fsio::walk::walk(&target).unwrap().into_files().unwrap().iter().map(|f| f.relative.display().to_string()).collect();
    let expected = [
        "LICENSE",
        "MLmodel",
        "components/tokenizer/tokenizer.json",
        "components/tokenizer/tokenizer_config.json",
        "conda.yaml",
        "input_example.json",
        "model/config.json",
        "model/generation_config.json",
        "model/model-00001-of-00004.safetensors",
        "model/model-00002-of-00004.safetensors",
        "model/model-00003-of-00004.safetensors",
        "model/model-00004-of-00004.safetensors",
        "model/model.safetensors.index.json",
        "model_card.md",
        "model_card_data.yaml",
        "python_env.yaml",
        "requirements.txt",
        "serving_input_example.json",
    ];
    assert_eq!(listing, expected);
    for file in ["model/model-00003-of-00004.safetensors", "components/tokenizer/tokenizer.json"] {
        let source = fixture().join(Path::new(file).file_name().unwrap());
        assert_eq!(std::fs::read(target.join(file)).unwrap(), std::fs::read(source).unwrap(), "{file}");
    }
    assert_eq!(
        std::fs::read_to_string(target.join("requirements.txt")).unwrap(),
        "mlflow==3.17.2\naccelerate==1.15.0\ntorch==2.15.0\ntransformers==5.23.0"
    );
    assert_eq!(std::fs::read_to_string(target.join("model_card_data.yaml")).unwrap(), "language:\n- en\nlicense: mit\npipeline_tag: text-generation\ntags:\n- test\n");
    assert!(std::fs::read_to_string(target.join("model_card.md")).unwrap().starts_with("# tiny-phi3-hf\n"));
    assert_eq!(
        std::fs::read_to_string(target.join("serving_input_example.json")).unwrap(),
        "{\n  \"messages\": [\n    {\n      \"role\": \"user\",\n      \"content\": \"Hello! What can you do?\"\n    }\n  ]\n}"
    );
}

#[test]
fn mlflow_2_versions_write_mlflow_2s_keys_for_a_transformers_4_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let copy = copy_of_fixture(dir.path());
    let mlflow2 = PackageOptions { versions: Versions::mlflow2(), ..options() };
    // Saved by transformers 5: transformers 4 cannot read it, which is said before anything is written.
    let error = package(&copy, &dir.path().join("refused"), &mlflow2).unwrap_err().to_string();
    assert!(error.contains("saved by transformers 5.23.0") && error.contains("4.51.3"), "{error}");
    assert!(!dir.path().join("refused").exists());

    let config = std::fs::read_to_string(copy.join("config.json")).unwrap();
    std::fs::write(copy.join("config.json"), config.replace("\"5.23.0\"", "\"4.51.3\"")).unwrap();
    let target = dir.path().join("pkg");
    package(&copy, &target, &mlflow2).unwrap();
    assert_eq!(keys_of(&target), keys_of(&shared_example("v2-transformers-llm-v1-chat")));
    let model = MlModel::load(&target).unwrap();
    assert_eq!(model.flavor("transformers").unwrap().get("tokenizer_type").and_then(Node::as_str), Some("LlamaTokenizerFast"));
    assert_eq!(model.get_str("mlflow_version").as_deref(), Some("2.22.5"));
}

#[test]
fn tokenizer_types_follow_the_target_transformers() {
    let mut checkpoint = Checkpoint::open(&fixture()).unwrap();
    let cases = [
        (Some("LlamaTokenizer"), 5, Some("LlamaTokenizer")),
        (Some("LlamaTokenizerFast"), 5, Some("LlamaTokenizer")),
        (Some("PreTrainedTokenizerFast"), 5, Some("TokenizersBackend")),
        (None, 5, Some("TokenizersBackend")),
        (Some("LlamaTokenizer"), 4, Some("LlamaTokenizerFast")),
        (Some("GPT2TokenizerFast"), 4, Some("GPT2TokenizerFast")),
        (None, 4, Some("PreTrainedTokenizerFast")),
        (Some("TokenizersBackend"), 4, None),
    ];
    for (class, major, expected) in &cases {
        checkpoint.tokenizer_class = class.map(str::to_owned);
        let got = tokenizer_type(&checkpoint, *major).ok();
        assert_eq!(got.as_deref(), *expected, "{class:?} for transformers {major}");
    }
    assert_eq!(cases.len(), 8);
}

#[test]
fn bad_versions_and_an_existing_destination_are_refused_before_writing() {
    let out = tempfile::tempdir().unwrap();
    let mut bad = options();
    bad.versions.transformers = "5.23.0; rm -rf /".into();
    let error = package(&fixture(), &out.path().join("x"), &bad).unwrap_err().to_string();
    assert!(error.contains("not a version number for transformers"), "{error}");
    std::fs::create_dir(out.path().join("taken")).unwrap();
    std::fs::write(out.path().join("taken/keep.txt"), "mine").unwrap();
    let error = package(&fixture(), &out.path().join("taken"), &options()).unwrap_err().to_string();
    assert!(error.contains("already exists"), "{error}");
    assert_eq!(std::fs::read_to_string(out.path().join("taken/keep.txt")).unwrap(), "mine");
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 1, "nothing else was written");

    // Replacing: an MLflow model folder gives way once the new package is complete; the
    // checkpoint itself never does.
    package(&fixture(), &out.path().join("old"), &options()).unwrap();
    std::fs::write(out.path().join("old/stale.txt"), "old package").unwrap();
    let replace = PackageOptions { if_exists: IfExists::Replace, ..options() };
    package(&fixture(), &out.path().join("old"), &replace).unwrap();
    assert!(!out.path().join("old/stale.txt").exists() && out.path().join("old/MLmodel").is_file());
    let error = package(&fixture(), &out.path().join("taken"), &replace).unwrap_err().to_string();
    assert!(error.contains("not an MLflow model"), "a folder that is not a model is not replaced: {error}");
    assert_eq!(std::fs::read_to_string(out.path().join("taken/keep.txt")).unwrap(), "mine");
    let dir = tempfile::tempdir().unwrap();
    let copy = copy_of_fixture(dir.path());
    let error = package(&copy, &copy, &replace).unwrap_err().to_string();
    assert!(error.contains("holds the model being written from"), "the checkpoint is never replaced: {error}");
    assert!(copy.join("config.json").is_file());
}

#[test]
fn a_cancelled_package_leaves_nothing() {
    let out = tempfile::tempdir().unwrap();
    let checkpoint = Checkpoint::open(&fixture()).unwrap();
    let cancel = AtomicBool::new(false);
    let mut reports = 0;
    let result = create_transformers_package(
        &checkpoint,
        &out.path().join("pkg"),
        &options(),
        &mut |_| {
            reports += 1;
            cancel.store(true, Ordering::Relaxed);
        },
        &cancel,
    );
    assert!(matches!(result, Err(PackageError::Copy(ExportError::Cancelled))), "{result:?}");
    assert_eq!(reports, 1, "the copy stops at the first report after cancel");
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0, "no package, no staging folder");
}

#[cfg(unix)]
#[test]
fn weights_from_a_cache_snapshot_are_linked_when_asked_and_copied_otherwise() {
    use std::os::unix::fs::MetadataExt as _;
    let cache = tempfile::tempdir().unwrap();
    let snapshot = crate::checkpoint::tests::cached_fixture(cache.path());
    let checkpoint = Checkpoint::open(&snapshot).unwrap();
    let mut totals = Vec::new();
    let linked_options = PackageOptions { link_weights: true, ..options() };
    let linked = create_transformers_package(&checkpoint, &cache.path().join("linked"), &linked_options, &mut |p| totals.push(p.total_bytes), &AtomicBool::new(false)).unwrap();
    assert_eq!(linked.linked_files, 5);
    assert_eq!(linked.copied_bytes + checkpoint.weight_bytes(), checkpoint.model_files.iter().chain(&checkpoint.weights).chain(&checkpoint.tokenizer_files).chain(&checkpoint.license).map(|f| f.size).sum::<u64>());
    assert!(totals.iter().all(|t| *t == linked.copied_bytes), "progress counts only the bytes copied");
    let copied = package(&snapshot, &cache.path().join("copied"), &options()).unwrap();
    assert_eq!(copied.linked_files, 0);
    let mut compared = 0;
    for file in &checkpoint.weights {
        let blob = std::fs::metadata(snapshot.join(&file.relative)).unwrap();
        let in_linked = cache.path().join("linked/model").join(&file.relative);
        let in_copied = cache.path().join("copied/model").join(&file.relative);
        assert!(!in_linked.symlink_metadata().unwrap().file_type().is_symlink());
        assert_eq!(std::fs::metadata(&in_linked).unwrap().ino(), blob.ino(), "a hard link to the blob");
        assert_ne!(std::fs::metadata(&in_copied).unwrap().ino(), blob.ino());
        assert_eq!(std::fs::read(&in_copied).unwrap(), std::fs::read(&in_linked).unwrap());
        compared += 1;
    }
    assert_eq!(compared, 5);
    let model = MlModel::load(&cache.path().join("copied")).unwrap();
    assert_eq!(model.flavor("transformers").unwrap().get("source_model_name").and_then(Node::as_str), Some("someone/tiny-phi3-hf"));
}

#[test]
fn model_cards_split_like_huggingface_hub() {
    assert_eq!(split_model_card("---\nlicense: mit\n---\n# Title\n"), (Some("license: mit\n"), "# Title\n"));
    assert_eq!(split_model_card("# No front matter\n"), (None, "# No front matter\n"));
    assert_eq!(split_model_card("---\nnever closed\n"), (None, "---\nnever closed\n"));
}
