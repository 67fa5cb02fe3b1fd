//! A Phi-3 ONNX model folder on disk: where its config, decoder, weights and tokenizer are, and
//! what is missing, checked before anything is handed to ONNX Runtime so errors name the file.

use std::path::{Path, PathBuf};

use super::config::{ConfigError, GenaiConfig, LoadedConfig};

pub const GENAI_CONFIG: &str = "genai_config.json";
pub const TOKENIZER_JSON: &str = "tokenizer.json";
pub const TOKENIZER_CONFIG: &str = "tokenizer_config.json";
pub const CHAT_TEMPLATE_JINJA: &str = "chat_template.jinja";

#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error("{0} does not exist")]
    Missing(PathBuf),
    #[error(
        "{0} is not a Phi-3 ONNX model folder: it has no genai_config.json (nor an MLflow model wrapping one under artifacts/)"
    )]
    NotAModelFolder(PathBuf),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the decoder `{file}` named by model.decoder.filename in {config} does not exist")]
    MissingDecoder { file: PathBuf, config: PathBuf },
    #[error("model.decoder.filename `{0}` points outside the model folder")]
    DecoderOutsideFolder(String),
    #[error("the decoder {decoder} keeps its weights in `{data}`, which is missing")]
    MissingExternalData { decoder: PathBuf, data: PathBuf },
    #[error("the tokenizer file {0} is missing")]
    MissingTokenizer(PathBuf),
}

/// A located, checked model folder.
#[derive(Debug, Clone)]
pub struct ModelFolder {
    /// The folder holding `genai_config.json`.
    pub dir: PathBuf,
    /// The path the user opened (differs from `dir` for an MLflow model wrapping the ONNX folder).
    pub opened: PathBuf,
    pub config: GenaiConfig,
    pub warnings: Vec<String>,
    pub decoder: PathBuf,
    /// External weight files the decoder references (`model.onnx.data`).
    pub external_data: Vec<PathBuf>,
}

impl ModelFolder {
    /// Finds the ONNX folder at `path`: the folder itself, or the single `artifacts/*/` folder of an
    /// MLflow model that wraps one.
    pub fn locate(path: &Path) -> Result<PathBuf, FolderError> {
        if !path.exists() {
            return Err(FolderError::Missing(path.to_path_buf()));
        }
        let dir = if path.is_file() { path.parent().unwrap_or(path) } else { path };
        if dir.join(GENAI_CONFIG).is_file() {
            return Ok(dir.to_path_buf());
        }
        let artifacts = dir.join("artifacts");
        if let Ok(entries) = std::fs::read_dir(&artifacts) {
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|candidate| candidate.join(GENAI_CONFIG).is_file())
                .collect();
            found.sort();
            if let Some(first) = found.into_iter().next() {
                return Ok(first);
            }
        }
        Err(FolderError::NotAModelFolder(path.to_path_buf()))
    }

    /// Locates and checks a model folder: config parses, the decoder and its external data exist,
    /// the tokenizer is there.
    pub fn open(path: &Path) -> Result<Self, FolderError> {
        let dir = Self::locate(path)?;
        let config_path = dir.join(GENAI_CONFIG);
        let LoadedConfig { config, warnings } = GenaiConfig::load(&config_path)?;
        let decoder_name = &config.model.decoder.filename;
        let relative = Path::new(decoder_name);
        if relative.is_absolute() || relative.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return Err(FolderError::DecoderOutsideFolder(decoder_name.clone()));
        }
        let decoder = dir.join(relative);
        if !decoder.is_file() {
            return Err(FolderError::MissingDecoder { file: decoder, config: config_path });
        }
        let external_data = external_data_files(&decoder);
        for data in &external_data {
            if !data.is_file() {
                return Err(FolderError::MissingExternalData { decoder: decoder.clone(), data: data.clone() });
            }
        }
        let tokenizer = dir.join(TOKENIZER_JSON);
        if !tokenizer.is_file() {
            return Err(FolderError::MissingTokenizer(tokenizer));
        }
        Ok(Self { dir, opened: path.to_path_buf(), config, warnings, decoder, external_data })
    }

    pub fn tokenizer_path(&self) -> PathBuf {
        self.dir.join(TOKENIZER_JSON)
    }

    /// A short display name: the opened folder's name.
    pub fn name(&self) -> String {
        self.opened
            .file_name()
            .or_else(|| self.dir.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.dir.display().to_string())
    }
}

/// The external-data files an ONNX graph references, found without a protobuf parser: every
/// external tensor carries a `StringStringEntryProto {key: "location", value: <file>}`, whose
/// encoding is the fixed bytes `0A 08 "location" 12 <varint length> <file name>`.
/// Graphs above 64 MiB hold their weights inline and are not scanned.
pub fn external_data_files(decoder: &Path) -> Vec<PathBuf> {
    const MAX_SCAN: u64 = 64 << 20;
    let Ok(meta) = std::fs::metadata(decoder) else { return Vec::new() };
    if meta.len() > MAX_SCAN {
        return Vec::new();
    }
    let Ok(bytes) = std::fs::read(decoder) else { return Vec::new() };
    let Some(dir) = decoder.parent() else { return Vec::new() };
    let marker = b"\x0a\x08location\x12";
    let mut names: Vec<String> = Vec::new();
    let mut start = 0;
    while let Some(offset) = find(&bytes[start..], marker) {
        let mut at = start + offset + marker.len();
        let mut length: usize = 0;
        let mut shift = 0;
        while let Some(&byte) = bytes.get(at) {
            length |= usize::from(byte & 0x7f) << shift;
            at += 1;
            shift += 7;
            if byte & 0x80 == 0 || shift > 28 {
                break;
            }
        }
        if let Some(name) = bytes.get(at..at + length).and_then(|raw| std::str::from_utf8(raw).ok()) {
            if !names.iter().any(|known| known == name) {
                names.push(name.to_owned());
            }
        }
        start = at;
    }
    names.into_iter().map(|name| dir.join(name)).collect()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_external_data_of_the_fixture() {
        let decoder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-phi3/model.onnx");
        let files = external_data_files(&decoder);
        assert_eq!(files, vec![decoder.with_file_name("model.onnx.data")]);
    }

    #[test]
    fn a_missing_data_file_is_named() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-phi3");
        let copy = tempfile::tempdir().unwrap();
        for name in ["genai_config.json", "model.onnx", "tokenizer.json", "tokenizer_config.json"] {
            std::fs::copy(fixture.join(name), copy.path().join(name)).unwrap();
        }
        let error = ModelFolder::open(copy.path()).unwrap_err();
        assert!(matches!(error, FolderError::MissingExternalData { .. }), "{error}");
        assert!(error.to_string().contains("model.onnx.data"), "{error}");
    }

    #[test]
    fn a_folder_without_config_explains_itself() {
        let empty = tempfile::tempdir().unwrap();
        let error = ModelFolder::open(empty.path()).unwrap_err();
        assert!(error.to_string().contains("genai_config.json"), "{error}");
    }

    #[test]
    fn an_mlflow_model_resolves_to_its_wrapped_folder() {
        let root = tempfile::tempdir().unwrap();
        let inner = root.path().join("artifacts/phi3");
        std::fs::create_dir_all(&inner).unwrap();
        std::fs::write(inner.join(GENAI_CONFIG), "{}").unwrap();
        assert_eq!(ModelFolder::locate(root.path()).unwrap(), inner);
    }
}
