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
    #[error("the decoder {decoder} names its weights file `{name}`, which is outside the model folder")]
    DataOutsideFolder { decoder: PathBuf, name: String },
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
        for name in external_data_names(&decoder) {
            if crate::fsio::names::inside_path(&name).is_err() {
                return Err(FolderError::DataOutsideFolder { decoder: decoder.clone(), name });
            }
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

    /// What opening only finds present, checked cheaply (a few reads, no ONNX Runtime): the
    /// decoder is a whole ONNX file with a graph, its weights files hold every byte the graph
    /// reads from them, the tokenizer and chat template load, and `head_size` × heads equals
    /// `hidden_size`. Each problem names its file.
    pub fn check_contents(&self) -> Vec<(PathBuf, String)> {
        let mut problems = Vec::new();
        if let Err(message) = check_onnx_file(&self.decoder) {
            problems.push((self.decoder.clone(), message));
        }
        problems.extend(check_external_data(&self.decoder));
        match super::tokenizer::PromptTokenizer::load(&self.dir) {
            Ok(tokenizer) => {
                let hello = [super::tokenizer::ChatMessage::new("user", "Hello")];
                if let Err(error) = tokenizer.apply_chat_template(&hello, true) {
                    problems.push((self.dir.join(TOKENIZER_CONFIG), error.to_string()));
                }
            }
            Err(error) => problems.push((self.tokenizer_path(), error.to_string())),
        }
        let decoder = &self.config.model.decoder;
        if let (Some(head_size), Some(heads), Some(hidden)) = (decoder.head_size, decoder.num_attention_heads, decoder.hidden_size) {
            if head_size.checked_mul(heads) != Some(hidden) {
                problems.push((
                    self.dir.join(GENAI_CONFIG),
                    format!("model.decoder.head_size {head_size} × num_attention_heads {heads} is not hidden_size {hidden}"),
                ));
            }
        }
        problems
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

/// The external-data files an ONNX graph references (only names that stay inside the folder;
/// [`ModelFolder::open`] refuses the others).
pub fn external_data_files(decoder: &Path) -> Vec<PathBuf> {
    let Some(dir) = decoder.parent() else { return Vec::new() };
    external_data_names(decoder)
        .into_iter()
        .filter_map(|name| crate::fsio::names::inside_path(&name).ok().map(|inside| dir.join(inside)))
        .collect()
}

/// Graphs above this hold their weights inline and are not scanned for external data.
const MAX_SCAN: u64 = 64 << 20;

/// The `location` names of a graph's external tensors, found without a protobuf parser: every
/// external tensor carries a `StringStringEntryProto {key: "location", value: <file>}`, whose
/// encoding is the fixed bytes `0A 08 "location" 12 <varint length> <file name>`.
fn external_data_names(decoder: &Path) -> Vec<String> {
    let Ok(bytes) = crate::fsio::read_bytes(decoder, MAX_SCAN) else { return Vec::new() };
    let mut names: Vec<String> = Vec::new();
    for entry in string_entries(&bytes, b"location") {
        if let Ok(name) = std::str::from_utf8(entry.value) {
            if !names.iter().any(|known| known == name) {
                names.push(name.to_owned());
            }
        }
    }
    names
}

/// One `StringStringEntryProto` with a given key, and where it sits in the file.
struct StringEntry<'b> {
    at: usize,
    value: &'b [u8],
}

/// Every `{key: <key>, value: …}` entry in a serialized graph, in file order.
fn string_entries<'b>(bytes: &'b [u8], key: &[u8]) -> Vec<StringEntry<'b>> {
    let mut marker = vec![0x0a, u8::try_from(key.len()).unwrap_or(0)];
    marker.extend_from_slice(key);
    marker.push(0x12);
    let mut entries = Vec::new();
    let mut start = 0;
    while let Some(offset) = find(&bytes[start..], &marker) {
        let at = start + offset;
        let mut cursor = at + marker.len();
        let length = read_varint(bytes, &mut cursor).and_then(|l| usize::try_from(l).ok());
        if let Some(value) = length.and_then(|l| cursor.checked_add(l)).and_then(|end| bytes.get(cursor..end)) {
            entries.push(StringEntry { at, value });
            cursor += value.len();
        }
        start = cursor.max(at + 1);
    }
    entries
}

/// A protobuf varint at `*at`, advancing past it; `None` when cut off or longer than 64 bits.
fn read_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Walks the top-level fields of an ONNX `ModelProto` (tag, length, skip) to the end of the
/// file: a truncated file has a field that runs past its end. Reads only the field headers, so
/// a 2 GB file with inline weights costs a few reads.
fn check_onnx_file(path: &Path) -> Result<(), String> {
    use std::io::{BufReader, Read as _};
    let file = crate::fsio::open_regular(path).map_err(|e| e.to_string())?;
    let size = file.metadata().map(|m| m.len()).map_err(|e| e.to_string())?;
    if size == 0 {
        return Err("is empty, not an ONNX model".into());
    }
    let mut reader = BufReader::new(file);
    let mut at = 0u64;
    let mut has_graph = false;
    let varint = |reader: &mut BufReader<std::fs::File>, at: &mut u64| -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let mut byte = [0u8];
            reader.read_exact(&mut byte).map_err(|_| format!("is cut off at byte {} (truncated?)", *at))?;
            *at += 1;
            value |= u64::from(byte[0] & 0x7f) << shift;
            if byte[0] & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(format!("is not an ONNX model (malformed field at byte {})", *at))
    };
    while at < size {
        let field_start = at;
        let tag = varint(&mut reader, &mut at)?;
        let skip = match tag & 7 {
            0 => {
                varint(&mut reader, &mut at)?;
                0
            }
            1 => 8,
            2 => varint(&mut reader, &mut at)?,
            5 => 4,
            _ => return Err(format!("is not an ONNX model (unexpected data at byte {field_start})")),
        };
        if tag >> 3 == 0 {
            return Err(format!("is not an ONNX model (unexpected data at byte {field_start})"));
        }
        let end = at.checked_add(skip).filter(|end| *end <= size).ok_or_else(|| {
            format!("is truncated: a field at byte {field_start} needs {skip} bytes but the file is {size} bytes long")
        })?;
        reader.seek_relative(i64::try_from(skip).map_err(|_| "has a field too large to be real".to_owned())?).map_err(|e| e.to_string())?;
        at = end;
        has_graph |= tag == (7 << 3 | 2);
    }
    if has_graph { Ok(()) } else { Err("holds no graph, so it is not an ONNX model".into()) }
}

/// Each external weights file must hold every byte the graph reads from it (`offset` +
/// `length` of each tensor).
fn check_external_data(decoder: &Path) -> Vec<(PathBuf, String)> {
    let Some(dir) = decoder.parent() else { return Vec::new() };
    let Ok(bytes) = crate::fsio::read_bytes(decoder, MAX_SCAN) else { return Vec::new() };
    let number = |value: &[u8]| std::str::from_utf8(value).ok().and_then(|t| t.parse::<u64>().ok());
    // Entries in file order: a tensor's location, then its offset and length.
    let mut events: Vec<(usize, &[u8], &[u8])> = Vec::new();
    for key in [&b"location"[..], b"offset", b"length"] {
        events.extend(string_entries(&bytes, key).into_iter().map(|e| (e.at, key, e.value)));
    }
    events.sort_by_key(|(at, _, _)| *at);
    let mut needed: Vec<(String, u64)> = Vec::new();
    let mut current: Option<(String, u64, u64)> = None;
    let finish = |entry: Option<(String, u64, u64)>, needed: &mut Vec<(String, u64)>| {
        if let Some((name, offset, length)) = entry {
            let end = offset.saturating_add(length);
            match needed.iter_mut().find(|(known, _)| *known == name) {
                Some((_, max)) => *max = (*max).max(end),
                None => needed.push((name, end)),
            }
        }
    };
    for (_, key, value) in events {
        match key {
            b"location" => {
                finish(current.take(), &mut needed);
                current = std::str::from_utf8(value).ok().map(|name| (name.to_owned(), 0, 0));
            }
            b"offset" => {
                if let (Some(entry), Some(n)) = (current.as_mut(), number(value)) {
                    entry.1 = n;
                }
            }
            _ => {
                if let (Some(entry), Some(n)) = (current.as_mut(), number(value)) {
                    entry.2 = n;
                }
            }
        }
    }
    finish(current.take(), &mut needed);
    let mut problems = Vec::new();
    for (name, end) in needed {
        let Ok(inside) = crate::fsio::names::inside_path(&name) else { continue };
        let path = dir.join(inside);
        match std::fs::metadata(&path) {
            Ok(meta) if meta.len() < end => problems.push((
                path,
                format!("is {} bytes but the decoder reads its weights up to byte {end} (truncated or from another model)", meta.len()),
            )),
            Ok(_) => {}
            Err(error) => problems.push((path, format!("cannot be read: {error}"))),
        }
    }
    problems
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
