//! The header of a `.safetensors` file, read and checked without touching the weights: an 8-byte
//! little-endian header length, then that many bytes of JSON naming each tensor's dtype, shape
//! and byte range. A truncated download, a file that is not safetensors or a header that points
//! past the end is caught here, before anything is copied.

use std::{
    collections::BTreeMap,
    io::Read as _,
    path::{Path, PathBuf},
};

use serde_json::Value;

/// The largest header accepted (the format's own reference reader allows 100 MB).
const HEADER_LIMIT: u64 = 100_000_000;

#[derive(Debug, thiserror::Error)]
pub enum SafetensorsError {
    #[error(transparent)]
    Read(#[from] crate::fsio::ReadError),
    #[error("{path} is not a safetensors file: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// What a header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Tensor name → dtype as the file names it (`BF16`, `F32`, …).
    pub tensors: BTreeMap<String, String>,
}

impl Header {
    /// The dtype most tensors have (by count), as torch names it (`bfloat16`, `float32`, …).
    pub fn main_dtype(&self) -> Option<&'static str> {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for dtype in self.tensors.values() {
            *counts.entry(dtype.as_str()).or_default() += 1;
        }
        let (dtype, _) = counts.into_iter().max_by_key(|(_, count)| *count)?;
        torch_dtype_name(dtype)
    }
}

/// torch's name for a safetensors dtype (floating point ones only: they say what the model is).
fn torch_dtype_name(dtype: &str) -> Option<&'static str> {
    Some(match dtype {
        "BF16" => "bfloat16",
        "F16" => "float16",
        "F32" => "float32",
        "F64" => "float64",
        _ => return None,
    })
}

/// Reads and checks the header of the file at `path`: the length fits the file, the JSON is an
/// object of tensors, and every tensor's byte range lies inside the data, which ends exactly at
/// the end of the file.
pub fn read_header(path: &Path) -> Result<Header, SafetensorsError> {
    let invalid = |reason: String| SafetensorsError::Invalid { path: path.to_path_buf(), reason };
    let mut file = crate::fsio::open_regular(path)?;
    let size = file.metadata().map(|m| m.len()).map_err(|error| crate::fsio::ReadError::Io { path: path.to_path_buf(), error })?;
    let mut length = [0u8; 8];
    file.read_exact(&mut length).map_err(|_| invalid(format!("it is {size} bytes, shorter than the 8-byte header length")))?;
    let header_length = u64::from_le_bytes(length);
    if header_length > HEADER_LIMIT || header_length > size - 8 {
        return Err(invalid(format!("the header length {header_length} does not fit a file of {size} bytes (a truncated download?)")));
    }
    let mut header = Vec::new();
    (&mut file)
        .take(header_length)
        .read_to_end(&mut header)
        .map_err(|error| crate::fsio::ReadError::Io { path: path.to_path_buf(), error })?;
    let json: Value = serde_json::from_slice(&header).map_err(|e| invalid(format!("the header is not JSON ({e})")))?;
    let Value::Object(entries) = json else {
        return Err(invalid("the header is not a JSON object".into()));
    };
    let data_size = size - 8 - header_length;
    let mut tensors = BTreeMap::new();
    let mut data_end = 0u64;
    for (name, entry) in entries {
        if name == "__metadata__" {
            continue;
        }
        let dtype = entry.get("dtype").and_then(Value::as_str);
        let offsets = entry.get("data_offsets").and_then(Value::as_array).map(|o| o.iter().map(Value::as_u64).collect::<Vec<_>>());
        let (Some(dtype), Some([Some(begin), Some(end)])) = (dtype, offsets.as_deref()) else {
            return Err(invalid(format!("tensor `{name}` has no dtype or no [begin, end] data_offsets")));
        };
        if begin > end || *end > data_size {
            return Err(invalid(format!(
                "tensor `{name}` occupies bytes {begin}..{end} but the file holds {data_size} bytes of data (a truncated download?)"
            )));
        }
        data_end = data_end.max(*end);
        tensors.insert(name, dtype.to_owned());
    }
    if data_end != data_size {
        return Err(invalid(format!("the tensors end at byte {data_end} of the data but the file holds {data_size}")));
    }
    Ok(Header { tensors })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file with the given header JSON and `data` bytes of data.
    fn file(dir: &Path, header: &str, data: usize) -> PathBuf {
        let path = dir.join("w.safetensors");
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend(std::iter::repeat_n(0u8, data));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn good_headers_are_read_and_broken_files_named() {
        let dir = tempfile::tempdir().unwrap();
        let header = r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"BF16","shape":[1],"data_offsets":[4,6]},"n":{"dtype":"F32","shape":[],"data_offsets":[6,10]}}"#;
        let read = read_header(&file(dir.path(), header, 10)).unwrap();
        assert_eq!(read.tensors.len(), 3);
        assert_eq!(read.main_dtype(), Some("bfloat16"));

        let truncated = read_header(&file(dir.path(), header, 9)).unwrap_err().to_string();
        assert!(truncated.contains("tensor `n` occupies bytes 6..10") && truncated.contains("w.safetensors"), "{truncated}");
        let padded = read_header(&file(dir.path(), header, 11)).unwrap_err().to_string();
        assert!(padded.contains("end at byte 10"), "{padded}");
        let not_json = read_header(&file(dir.path(), "{nope", 0)).unwrap_err().to_string();
        assert!(not_json.contains("not JSON"), "{not_json}");
        let no_offsets = read_header(&file(dir.path(), r#"{"a":{"dtype":"F32"}}"#, 0)).unwrap_err().to_string();
        assert!(no_offsets.contains("data_offsets"), "{no_offsets}");

        // A length larger than the file (a text file renamed, a cut download) is refused at once.
        let path = dir.path().join("text.safetensors");
        std::fs::write(&path, "this is not a weights file").unwrap();
        let error = read_header(&path).unwrap_err().to_string();
        assert!(error.contains("does not fit"), "{error}");
        std::fs::write(&path, "short").unwrap();
        assert!(read_header(&path).unwrap_err().to_string().contains("shorter than"));
    }
}
