//! A checkpoint as the MLflow model `mlflow.transformers.log_model(pipeline, task="llm/v1/chat")`
//! writes (spec §5; compare `../shared/fixtures/mlflow-examples/v3-transformers-llm-v1-chat`):
//! `model/` (config, generation config, weights), `components/tokenizer/`, `MLmodel` with the
//! `transformers` and `python_function` flavors, `metadata.task`, the chat signature, both input
//! example files, the three environment files, the license and model card. Written without
//! Python: the weights stream through (or are hard-linked when asked and possible) into a staging
//! folder beside the destination that is renamed at the end, so a cancelled or failed run leaves
//! nothing.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
};

use serde_json::json;

use super::{Checkpoint, CheckpointError, signature};
use crate::{
    fsio::walk::TreeFile,
    mlflow::{
        create::{local_python_version, utc_now},
        export::{Copier, CopyProgress, ExportError, IfExists, check_replaceable, tree_size},
        files::{InputExample, PythonEnv, write_input_example},
        mlmodel::{MlModel, write_atomically},
        yaml::{self, Mapping, Node},
    },
    staging::Staging,
};

/// The folders MLflow's transformers flavor uses.
pub const MODEL_BINARY: &str = "model";
pub const COMPONENTS: &str = "components";
pub const TOKENIZER: &str = "tokenizer";

/// Package versions that work together: what the package's environment files pin and the
/// transformers flavor records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versions {
    pub mlflow: String,
    pub transformers: String,
    pub torch: String,
    pub accelerate: String,
}

impl Versions {
    /// MLflow 3 with transformers 5 (the default; what `v3-transformers-llm-v1-chat` was made with).
    pub fn mlflow3() -> Self {
        Self { mlflow: "3.17.2".into(), transformers: "5.23.0".into(), torch: "2.15.0".into(), accelerate: "1.15.0".into() }
    }

    /// MLflow 2 with transformers 4 (`v2-transformers-llm-v1-chat`).
    pub fn mlflow2() -> Self {
        Self { mlflow: "2.22.5".into(), transformers: "4.51.3".into(), torch: "2.15.0".into(), accelerate: "1.15.0".into() }
    }

    fn major(version: &str) -> Option<u64> {
        version.split('.').next()?.parse().ok()
    }

    /// Every version is a plain release number (`5.23.0`), so it can be pinned with `==`.
    fn check(&self) -> Result<(), PackageError> {
        for (package, version) in [("mlflow", &self.mlflow), ("transformers", &self.transformers), ("torch", &self.torch), ("accelerate", &self.accelerate)] {
            let plain = !version.is_empty()
                && version.split('.').all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric()))
                && version.starts_with(|c: char| c.is_ascii_digit());
            if !plain {
                return Err(PackageError::Options(format!("`{version}` is not a version number for {package} (for example 5.23.0)")));
            }
        }
        if Self::major(&self.mlflow).is_some_and(|major| major < 2) {
            return Err(PackageError::Options(format!("MLflow {} has no llm/v1/chat transformers models; choose 2.x or 3.x", self.mlflow)));
        }
        Ok(())
    }
}

impl Default for Versions {
    fn default() -> Self {
        Self::mlflow3()
    }
}

#[derive(Debug, Clone)]
pub struct PackageOptions {
    /// `source_model_name` (echoed as `model` in every response); default: the repository id of
    /// a cache snapshot, else the folder's absolute path, as MLflow records it.
    pub name: Option<String>,
    pub versions: Versions,
    /// `python_version` to record; `None` = the local `python3`'s, else 3.11.
    pub python_version: Option<String>,
    /// The pyfunc `config` (model_config): generation defaults MLflow passes to the pipeline.
    pub model_config: Mapping,
    /// `torch_dtype` to record (`bfloat16`); default: the checkpoint's.
    pub torch_dtype: Option<String>,
    /// Hard-link the weights instead of copying them where the file system allows (same disk).
    /// The package then shares those files with the checkpoint: never edit them in place.
    pub link_weights: bool,
    /// An existing `out` is refused, or replaced once the package is complete (only what
    /// [`check_replaceable`] allows: an MLflow model folder, an empty folder).
    pub if_exists: IfExists,
}

impl Default for PackageOptions {
    fn default() -> Self {
        Self {
            name: None,
            versions: Versions::default(),
            python_version: None,
            model_config: default_model_config(),
            torch_dtype: None,
            link_weights: false,
            if_exists: IfExists::Refuse,
        }
    }
}

/// Without `max_new_tokens` transformers stops at 20 tokens in total (prompt included).
pub fn default_model_config() -> Mapping {
    let mut config = Mapping::new();
    config.insert("max_new_tokens", Node::Int(256));
    config
}

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("{0}")]
    Options(String),
    #[error(transparent)]
    Copy(#[from] ExportError),
    #[error("writing the package failed: {0}")]
    Write(String),
}

/// What a packaging run did.
#[derive(Debug, Clone, PartialEq)]
pub struct PackageSummary {
    pub path: PathBuf,
    pub copied_bytes: u64,
    /// Weight files hard-linked instead of copied.
    pub linked_files: usize,
}

/// The tokenizer class MLflow records for the target transformers: the class `AutoTokenizer`
/// returns for this `tokenizer_config.json` (5.x: one tokenizers-backed class per model, `Fast`
/// names are aliases; 4.x: the `Fast` class when `tokenizer.json` is there).
fn tokenizer_type(checkpoint: &Checkpoint, transformers_major: u64) -> Result<String, PackageError> {
    let class = checkpoint.tokenizer_class.clone();
    let has_fast_file = checkpoint.tokenizer_files.iter().any(|f| f.relative.as_os_str() == "tokenizer.json");
    if transformers_major >= 5 {
        return Ok(match class.as_deref() {
            None | Some("PreTrainedTokenizer" | "PreTrainedTokenizerFast") => "TokenizersBackend".into(),
            Some(name) => name.strip_suffix("Fast").unwrap_or(name).to_owned(),
        });
    }
    match class.as_deref() {
        Some("TokenizersBackend") => Err(PackageError::Options(format!(
            "the tokenizer was saved by transformers 5 (`TokenizersBackend`), which transformers {transformers_major}.x cannot load; choose transformers 5 (MLflow 3)"
        ))),
        None => Ok("PreTrainedTokenizerFast".into()),
        Some(name) if has_fast_file && !name.ends_with("Fast") => Ok(format!("{name}Fast")),
        Some(name) => Ok(name.to_owned()),
    }
}

/// The transformers version that saved the checkpoint (`config.json`), when it says.
fn saved_by(checkpoint: &Checkpoint) -> Option<String> {
    let text = crate::fsio::read_text(&checkpoint.dir.join(super::CONFIG), crate::fsio::CONFIG_LIMIT).ok()?;
    let config: serde_json::Value = serde_json::from_str(&text).ok()?;
    config.get("transformers_version")?.as_str().map(str::to_owned)
}

/// `README.md` split as huggingface_hub's `ModelCard` splits it: the YAML front matter (card
/// data) and the text after it.
fn split_model_card(text: &str) -> (Option<&str>, &str) {
    let Some(rest) = text.strip_prefix("---\n").or_else(|| text.strip_prefix("---\r\n")) else {
        return (None, text);
    };
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        if line.trim_end() == "---" {
            return (Some(&rest[..offset]), &rest[offset + line.len()..]);
        }
        offset += line.len();
    }
    (None, text)
}

/// Tries a hard link to the file's real location (a cache snapshot's link is resolved first, so
/// the package never points into `snapshots/`).
fn try_link(checkpoint: &Checkpoint, file: &TreeFile, to: &Path) -> bool {
    let Ok(real) = std::fs::canonicalize(checkpoint.dir.join(&file.relative)) else { return false };
    if let Some(parent) = to.parent() {
        if std::fs::create_dir_all(parent).is_err() {
            return false;
        }
    }
    std::fs::hard_link(real, to).is_ok()
}

/// Writes the package for `checkpoint` in `out` (which must not exist, unless replacing).
pub fn create_transformers_package(
    checkpoint: &Checkpoint,
    out: &Path,
    options: &PackageOptions,
    on_progress: &mut dyn FnMut(CopyProgress),
    cancel: &AtomicBool,
) -> Result<PackageSummary, PackageError> {
    let versions = &options.versions;
    versions.check()?;
    let transformers_major = Versions::major(&versions.transformers).unwrap_or(5);
    if let Some(saved) = saved_by(checkpoint).filter(|saved| Versions::major(saved).is_some_and(|m| m > transformers_major)) {
        return Err(PackageError::Options(format!(
            "{} was saved by transformers {saved}; transformers {} cannot read it. Choose transformers {}.x or later (MLflow 3)",
            checkpoint.dir.display(),
            versions.transformers,
            Versions::major(&saved).unwrap_or(transformers_major)
        )));
    }
    let tokenizer_type = tokenizer_type(checkpoint, transformers_major)?;
    match options.if_exists {
        IfExists::Refuse if out.symlink_metadata().is_ok() => return Err(ExportError::Exists(out.to_path_buf()).into()),
        IfExists::Refuse => {}
        IfExists::Replace => check_replaceable(&checkpoint.dir, out)?,
    }
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| PackageError::Write(format!("{}: {e}", parent.display())))?;
    let staging = Staging::new_in(parent, "create").map_err(|e| PackageError::Write(format!("{}: {e}", parent.display())))?;
    let root = staging.path().to_path_buf();
    let model_dir = root.join(MODEL_BINARY);
    let tokenizer_dir = root.join(COMPONENTS).join(TOKENIZER);

    // Link first (instant), then copy the rest with progress over the bytes really copied.
    let mut linked = Vec::new();
    if options.link_weights {
        for file in &checkpoint.weights {
            if try_link(checkpoint, file, &model_dir.join(&file.relative)) {
                linked.push(file.relative.clone());
            }
        }
    }
    let to_copy: Vec<(&TreeFile, PathBuf)> = checkpoint
        .weights
        .iter()
        .filter(|f| !linked.contains(&f.relative))
        .chain(&checkpoint.model_files)
        .map(|f| (f, model_dir.join(&f.relative)))
        .chain(checkpoint.tokenizer_files.iter().map(|f| (f, tokenizer_dir.join(&f.relative))))
        .chain(checkpoint.license.iter().map(|f| (f, root.join(&f.relative))))
        .collect();
    let total = to_copy.iter().fold(0u64, |sum, (f, _)| sum.saturating_add(f.size));
    let mut copier = Copier::new(total, on_progress, cancel);
    for (file, to) in &to_copy {
        copier.copy_file(&checkpoint.dir.join(&file.relative), to, file.size)?;
    }
    if !linked.is_empty() {
        crate::staging::sync_dir(&model_dir);
    }

    let write = |name: &str, text: &str| {
        write_atomically(&root.join(name), text.as_bytes()).map_err(|e| PackageError::Write(format!("{name}: {e}")))
    };
    let source_name = options.name.clone().filter(|n| !n.trim().is_empty()).unwrap_or_else(|| checkpoint.source_name());
    let card = match &checkpoint.model_card {
        Some(file) => crate::fsio::read_text(&checkpoint.dir.join(&file.relative), crate::fsio::CONFIG_LIMIT).ok(),
        None => None,
    };
    let (card_data, card_text) = card.as_deref().map(split_model_card).unwrap_or((None, ""));
    let card_data = card_data.and_then(|text| yaml::parse(text).ok()).filter(|node| node.as_map().is_some());
    if card.is_some() {
        write("model_card.md", card_text)?;
    }
    if let Some(data) = &card_data {
        write("model_card_data.yaml", &yaml::emit(data))?;
    }
    if checkpoint.license.is_none() {
        // MLflow's words when it finds no license file.
        let mut text = format!(
            "A license file could not be found for the '{source_name}' repository. \nTo ensure that you are in compliance with the license requirements for this model, please visit the model repository here: https://huggingface.co/{source_name}"
        );
        if let Some(license) = card_data.as_ref().and_then(|d| d.as_map()).and_then(|m| m.get("license")).and_then(Node::as_str) {
            if license != "other" {
                text.push_str(&format!("\nThe declared license type is: '{license}'"));
            }
        }
        write("LICENSE.txt", &text)?;
    }

    let python = options.python_version.clone().or_else(local_python_version).unwrap_or_else(|| "3.11".into());
    let env = PythonEnv {
        python: python.clone(),
        build_dependencies: vec!["pip".into(), "setuptools".into(), "wheel".into()],
        requirements: vec![
            format!("mlflow=={}", versions.mlflow),
            format!("accelerate=={}", versions.accelerate),
            format!("torch=={}", versions.torch),
            format!("transformers=={}", versions.transformers),
        ],
    };
    env.write(&root).map_err(|e| PackageError::Write(e.to_string()))?;

    let mut model = MlModel::new(&root);
    let mut env_block = Mapping::new();
    env_block.insert("conda", Node::Str("conda.yaml".into()));
    env_block.insert("virtualenv", Node::Str("python_env.yaml".into()));
    let mut pyfunc = Mapping::new();
    pyfunc.insert("config", Node::Map(options.model_config.clone()));
    pyfunc.insert("env", Node::Map(env_block));
    pyfunc.insert("loader_module", Node::Str("mlflow.transformers".into()));
    pyfunc.insert("python_version", Node::Str(python));
    let dtype = options.torch_dtype.clone().or_else(|| checkpoint.dtype.clone());
    let mut flavor = Mapping::new();
    flavor.insert("code", Node::Null);
    flavor.insert("components", Node::Seq(vec![Node::Str(TOKENIZER.into())]));
    if transformers_major < 5 {
        // Pipelines had a framework until transformers 5.
        flavor.insert("framework", Node::Str("pt".into()));
    }
    flavor.insert("inference_task", Node::Str("llm/v1/chat".into()));
    flavor.insert("instance_type", Node::Str("TextGenerationPipeline".into()));
    flavor.insert("model_binary", Node::Str(MODEL_BINARY.into()));
    flavor.insert("pipeline_model_type", Node::Str(checkpoint.architecture.clone()));
    flavor.insert("source_model_name", Node::Str(source_name));
    flavor.insert("task", Node::Str("text-generation".into()));
    flavor.insert("tokenizer_type", Node::Str(tokenizer_type));
    flavor.insert("torch_dtype", dtype.map(|d| Node::Str(format!("torch.{}", d.trim_start_matches("torch.")))).unwrap_or(Node::Null));
    flavor.insert("transformers_version", Node::Str(versions.transformers.clone()));
    let mut flavors = Mapping::new();
    flavors.insert("python_function", Node::Map(pyfunc));
    flavors.insert("transformers", Node::Map(flavor));
    let mut metadata = Mapping::new();
    metadata.insert("task", Node::Str("llm/v1/chat".into()));
    let document = model.root_mut();
    document.insert("flavors", Node::Map(flavors));
    document.insert("metadata", Node::Map(metadata));
    document.insert("mlflow_version", Node::Str(versions.mlflow.clone()));
    if Versions::major(&versions.mlflow).is_some_and(|major| major >= 3) {
        document.insert("model_id", Node::Null);
    }
    document.insert("model_uuid", Node::Str(uuid::Uuid::new_v4().simple().to_string()));
    document.insert("prompts", Node::Null);
    document.insert("utc_time_created", Node::Str(utc_now()));
    model.set_signature(&signature::llm_v1_chat());
    let example = InputExample::from_json(json!({"messages": [{"role": "user", "content": "Hello! What can you do?"}]}), None);
    write_input_example(&mut model, &example).map_err(|e| PackageError::Write(e.to_string()))?;
    model.root_mut().insert("model_size_bytes", Node::Int(i128::from(tree_size(&root))));
    model.save().map_err(|e| PackageError::Write(e.to_string()))?;
    copier.sync_created_dirs();
    if cancel.load(Ordering::Relaxed) {
        return Err(ExportError::Cancelled.into());
    }
    match options.if_exists {
        IfExists::Refuse => staging.finish(&root, out),
        IfExists::Replace => staging.finish_replacing(&root, out),
    }
    .map_err(|e| PackageError::Write(format!("{}: {e}", out.display())))?;
    Ok(PackageSummary { path: out.to_path_buf(), copied_bytes: total, linked_files: linked.len() })
}

#[cfg(test)]
#[path = "package_tests.rs"]
mod tests;
