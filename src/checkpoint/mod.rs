//! Hugging Face checkpoints (a PyTorch model as `save_pretrained` writes it and the Hub serves
//! it): reading and checking one (`Checkpoint::open`), packaging it as a transformers-flavor
//! MLflow chat model (`package`, with MLflow's `llm/v1/chat` signature in `signature`). A
//! checkpoint may be a snapshot inside the Hugging Face cache, whose files are links into
//! `../../blobs/`; links are followed and the repository id is taken from the cache path.
//! Knows nothing of egui.

pub mod package;
pub mod safetensors;
pub mod signature;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use serde_json::Value;

use crate::fsio::{self, ReadError, walk::TreeFile};

pub const CONFIG: &str = "config.json";
pub const GENERATION_CONFIG: &str = "generation_config.json";
pub const SAFETENSORS_INDEX: &str = "model.safetensors.index.json";
pub const PYTORCH_INDEX: &str = "pytorch_model.bin.index.json";
pub const TOKENIZER_CONFIG: &str = "tokenizer_config.json";
pub const CHAT_TEMPLATE_JINJA: &str = "chat_template.jinja";
pub const CHAT_TEMPLATE_JSON: &str = "chat_template.json";

/// Files of the tokenizer (what `save_pretrained` of a tokenizer writes, in any version).
const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    TOKENIZER_CONFIG,
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    CHAT_TEMPLATE_JINJA,
    CHAT_TEMPLATE_JSON,
];
/// Files that define a tokenizer's vocabulary: one of them must be there.
const VOCABULARY_FILES: &[&str] = &["tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt"];

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{0} is not a folder")]
    NotAFolder(PathBuf),
    #[error("{dir} is not a Hugging Face checkpoint: {reason}")]
    NotACheckpoint { dir: PathBuf, reason: String },
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Walk(#[from] fsio::walk::WalkError),
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error(transparent)]
    Weights(#[from] safetensors::SafetensorsError),
}

/// Where a checkpoint's files came from, when it is a snapshot in the Hugging Face cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubOrigin {
    pub repo: String,
    pub commit: String,
}

/// The format of the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    Safetensors,
    /// `pytorch_model*.bin` (pickles; transformers still loads them).
    PyTorch,
}

/// A checked checkpoint folder.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub dir: PathBuf,
    /// `architectures[0]` of `config.json` (`Phi3ForCausalLM`).
    pub architecture: String,
    /// `model_type` of `config.json` (`phi3`).
    pub model_type: String,
    /// The weights' dtype as torch names it: `dtype` / `torch_dtype` of `config.json`, else the
    /// safetensors headers' most common one.
    pub dtype: Option<String>,
    pub num_layers: Option<u64>,
    pub weight_format: WeightFormat,
    /// The weights (every shard the index names, or the single file) and the index.
    pub weights: Vec<TreeFile>,
    /// Files for `model/` besides the weights: `config.json`, `generation_config.json` and the
    /// Python files of a model with its own code (`auto_map`).
    pub model_files: Vec<TreeFile>,
    /// Files for `components/tokenizer/`.
    pub tokenizer_files: Vec<TreeFile>,
    /// `tokenizer_class` of `tokenizer_config.json`.
    pub tokenizer_class: Option<String>,
    /// The `LICENSE*` file, if any.
    pub license: Option<TreeFile>,
    /// `README.md`, the model card.
    pub model_card: Option<TreeFile>,
    pub hub: Option<HubOrigin>,
}

impl Checkpoint {
    /// Reads and checks `dir`: `config.json` names an architecture, the weights are complete (every
    /// shard of the index present, every safetensors header consistent with its file), and the
    /// tokenizer has a vocabulary, a `tokenizer_config.json` and a chat template.
    pub fn open(dir: &Path) -> Result<Self, CheckpointError> {
        if !dir.is_dir() {
            return Err(CheckpointError::NotAFolder(dir.to_path_buf()));
        }
        let not = |reason: String| CheckpointError::NotACheckpoint { dir: dir.to_path_buf(), reason };
        let files = fsio::walk::walk(dir)?.into_files()?;
        let top: Vec<&TreeFile> = files.iter().filter(|f| f.relative.components().count() == 1).collect();
        let find = |name: &str| top.iter().find(|f| f.relative.as_os_str() == name).map(|f| (*f).clone());
        let Some(config_file) = find(CONFIG) else {
            return Err(not(format!("it has no {CONFIG}")));
        };
        let config = read_json(&dir.join(CONFIG))?;
        let invalid_config = |reason: &str| CheckpointError::Invalid { path: dir.join(CONFIG), reason: reason.to_owned() };
        let architecture = config
            .get("architectures")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .ok_or_else(|| invalid_config("`architectures` must list the model class (for example Phi3ForCausalLM)"))?
            .to_owned();
        let model_type = config.get("model_type").and_then(Value::as_str).unwrap_or_default().to_owned();
        let num_layers = config.get("num_hidden_layers").and_then(Value::as_u64);

        let (weight_format, weights) = weight_files(dir, &top, &not)?;
        let mut dtype = ["dtype", "torch_dtype"]
            .iter()
            .find_map(|key| config.get(*key).and_then(Value::as_str))
            .filter(|d| *d != "auto")
            .map(str::to_owned);
        if weight_format == WeightFormat::Safetensors {
            let mut named = BTreeSet::new();
            for file in weights.iter().filter(|f| f.relative.extension().is_some_and(|e| e == "safetensors")) {
                let header = safetensors::read_header(&dir.join(&file.relative))?;
                if dtype.is_none() {
                    dtype = header.main_dtype().map(str::to_owned);
                }
                named.extend(header.tensors.into_keys().map(|t| (file.relative.clone(), t)));
            }
            check_index_tensors(dir, &named)?;
        }

        let mut model_files = vec![config_file];
        model_files.extend(find(GENERATION_CONFIG));
        // A model with its own code (`auto_map`) needs its Python files beside config.json.
        if config.get("auto_map").is_some() {
            model_files.extend(
                top.iter().filter(|f| f.relative.extension().is_some_and(|e| e == "py") && !is_tokenizer_code(f)).map(|f| (*f).clone()),
            );
        }

        let tokenizer_files: Vec<TreeFile> = top
            .iter()
            .filter(|f| TOKENIZER_FILES.iter().any(|n| f.relative.as_os_str() == *n) || is_tokenizer_code(f))
            .map(|f| (*f).clone())
            .collect();
        if !tokenizer_files.iter().any(|f| VOCABULARY_FILES.iter().any(|n| f.relative.as_os_str() == *n)) {
            return Err(not(format!("it has no tokenizer (none of {})", VOCABULARY_FILES.join(", "))));
        }
        if find(TOKENIZER_CONFIG).is_none() {
            return Err(not(format!("it has no {TOKENIZER_CONFIG}, so transformers cannot tell which tokenizer to load")));
        }
        let tokenizer_config = read_json(&dir.join(TOKENIZER_CONFIG))?;
        let tokenizer_class = tokenizer_config.get("tokenizer_class").and_then(Value::as_str).map(str::to_owned);
        if !has_chat_template(dir, &tokenizer_config)? {
            return Err(not(format!(
                "its tokenizer has no chat template ({CHAT_TEMPLATE_JINJA}, or `chat_template` in {TOKENIZER_CONFIG}); an llm/v1/chat model renders the messages with it"
            )));
        }

        let license = top
            .iter()
            .find(|f| f.relative.to_string_lossy().to_ascii_lowercase().starts_with("license"))
            .map(|f| (*f).clone());
        let model_card = find("README.md");
        Ok(Self {
            dir: dir.to_path_buf(),
            architecture,
            model_type,
            dtype,
            num_layers,
            weight_format,
            weights,
            model_files,
            tokenizer_files,
            tokenizer_class,
            license,
            model_card,
            hub: hub_origin(dir),
        })
    }

    /// Bytes of the weights (what a copy costs).
    pub fn weight_bytes(&self) -> u64 {
        self.weights.iter().fold(0u64, |sum, f| sum.saturating_add(f.size))
    }

    /// The model's name as MLflow records it (`source_model_name`): the repository id for a
    /// Hugging Face cache snapshot, else the folder's absolute path.
    pub fn source_name(&self) -> String {
        match &self.hub {
            Some(origin) => origin.repo.clone(),
            None => std::path::absolute(&self.dir).unwrap_or_else(|_| self.dir.clone()).display().to_string(),
        }
    }
}

fn read_json(path: &Path) -> Result<Value, CheckpointError> {
    let text = fsio::read_text(path, fsio::CONFIG_LIMIT)?;
    serde_json::from_str(&text).map_err(|e| CheckpointError::Invalid { path: path.to_path_buf(), reason: format!("not valid JSON ({e})") })
}

fn is_tokenizer_code(file: &TreeFile) -> bool {
    let name = file.relative.to_string_lossy();
    name.starts_with("tokenization_") && name.ends_with(".py")
}

/// The weight files and their index: safetensors when there are any, else PyTorch `.bin`. With
/// an index, exactly the files it names (each must be there); without, the single file.
fn weight_files(
    dir: &Path,
    top: &[&TreeFile],
    not: &dyn Fn(String) -> CheckpointError,
) -> Result<(WeightFormat, Vec<TreeFile>), CheckpointError> {
    let named = |name: &str| top.iter().find(|f| f.relative.as_os_str() == name).map(|f| (*f).clone());
    let has_extension = |ext: &str| top.iter().any(|f| f.relative.extension().is_some_and(|e| e == ext));
    let (format, index_name, single) = if has_extension("safetensors") {
        (WeightFormat::Safetensors, SAFETENSORS_INDEX, "model.safetensors")
    } else if top.iter().any(|f| f.relative.to_string_lossy().starts_with("pytorch_model") && f.relative.extension().is_some_and(|e| e == "bin")) {
        (WeightFormat::PyTorch, PYTORCH_INDEX, "pytorch_model.bin")
    } else {
        return Err(not("it has no weights (*.safetensors or pytorch_model*.bin)".into()));
    };
    let Some(index) = named(index_name) else {
        return match named(single) {
            Some(file) => Ok((format, vec![file])),
            None => Err(not(format!("it has neither {single} nor {index_name} listing the shards"))),
        };
    };
    let index_path = dir.join(index_name);
    let json = read_json(&index_path)?;
    let invalid = |reason: String| CheckpointError::Invalid { path: index_path.clone(), reason };
    let Some(map) = json.get("weight_map").and_then(Value::as_object) else {
        return Err(invalid("has no `weight_map` object".into()));
    };
    let mut shards = BTreeSet::new();
    for (tensor, shard) in map {
        let shard = shard.as_str().ok_or_else(|| invalid(format!("`weight_map.{tensor}` is not a file name")))?;
        fsio::names::single_name(shard).map_err(|e| invalid(format!("`weight_map.{tensor}`: {e}")))?;
        shards.insert(shard.to_owned());
    }
    if shards.is_empty() {
        return Err(invalid("`weight_map` is empty".into()));
    }
    let mut files = Vec::new();
    for shard in &shards {
        files.push(named(shard).ok_or_else(|| invalid(format!("names {shard}, which is missing (an incomplete download?)")))?);
    }
    files.push(index);
    Ok((format, files))
}

/// Every tensor the safetensors index places in a shard is in that shard's header.
fn check_index_tensors(dir: &Path, named: &BTreeSet<(PathBuf, String)>) -> Result<(), CheckpointError> {
    let index_path = dir.join(SAFETENSORS_INDEX);
    if !index_path.is_file() {
        return Ok(());
    }
    let json = read_json(&index_path)?;
    for (tensor, shard) in json.get("weight_map").and_then(Value::as_object).into_iter().flatten() {
        let shard = PathBuf::from(shard.as_str().unwrap_or_default());
        if !named.contains(&(shard.clone(), tensor.clone())) {
            return Err(CheckpointError::Invalid {
                path: index_path,
                reason: format!("places `{tensor}` in {} but that file has no such tensor", shard.display()),
            });
        }
    }
    Ok(())
}

/// Whether the tokenizer has a chat template: `chat_template.jinja`, `chat_template.json` or a
/// `chat_template` (a string, or a list of named templates) in `tokenizer_config.json`.
fn has_chat_template(dir: &Path, tokenizer_config: &Value) -> Result<bool, CheckpointError> {
    if let Some(text) = fsio::read_text_if_present(&dir.join(CHAT_TEMPLATE_JINJA), fsio::TEMPLATE_LIMIT)? {
        return Ok(!text.trim().is_empty());
    }
    let usable = |value: Option<&Value>| match value {
        Some(Value::String(text)) => !text.trim().is_empty(),
        Some(Value::Array(named)) => named.iter().any(|t| t.get("template").and_then(Value::as_str).is_some_and(|s| !s.trim().is_empty())),
        _ => false,
    };
    if dir.join(CHAT_TEMPLATE_JSON).is_file() && usable(read_json(&dir.join(CHAT_TEMPLATE_JSON))?.get("chat_template")) {
        return Ok(true);
    }
    Ok(usable(tokenizer_config.get("chat_template")))
}

/// `org/name` and the commit when `dir` is `…/models--org--name/snapshots/<commit>` in a
/// Hugging Face cache.
fn hub_origin(dir: &Path) -> Option<HubOrigin> {
    let absolute = std::path::absolute(dir).ok()?;
    let commit = absolute.file_name()?.to_str()?;
    let snapshots = absolute.parent()?;
    if snapshots.file_name()? != "snapshots" {
        return None;
    }
    let repo_folder = snapshots.parent()?.file_name()?.to_str()?;
    let repo = repo_folder.strip_prefix("models--")?.replace("--", "/");
    crate::hub::RepoId::parse(&repo).ok()?;
    Some(HubOrigin { repo, commit: commit.to_owned() })
}

#[cfg(test)]
mod tests;
