//! Reading files that come from anywhere (a colleague's zip, a download, a half-copied stick)
//! with a bounded cost: only regular files are opened (never a FIFO, a device or a folder), no
//! more than a stated number of bytes is read, and text must be UTF-8. Every error names the
//! file and, for a bad byte, its offset.
//!
//! Submodules: `walk` (one folder walk for every module: links followed, loops and dangling
//! links reported, our own temporary files skipped) and `names` (names from files made safe to
//! use as paths).

pub mod names;
pub mod swap;
pub mod walk;

use std::{
    fs::File,
    io::Read as _,
    path::{Path, PathBuf},
};

use crate::memory::human_bytes;

/// The most `MLmodel` may hold (MLflow's own files are a few KB).
pub const MLMODEL_LIMIT: u64 = 16 << 20;
/// JSON configuration files: `genai_config.json`, `tokenizer_config.json`, signature files.
pub const CONFIG_LIMIT: u64 = 16 << 20;
/// `tokenizer.json` (Phi-3's is 1.8 MB; the largest published vocabularies are about 35 MB).
pub const TOKENIZER_LIMIT: u64 = 64 << 20;
/// Chat templates (`chat_template.jinja`).
pub const TEMPLATE_LIMIT: u64 = 1 << 20;
/// `requirements.txt`, `python_env.yaml`, `conda.yaml`.
pub const ENV_FILE_LIMIT: u64 = 1 << 20;
/// Input examples and their serving form.
pub const EXAMPLE_LIMIT: u64 = 16 << 20;
/// Python source files a package runs (`model_code_path`).
pub const CODE_LIMIT: u64 = 16 << 20;
/// One stored conversation.
pub const CONVERSATION_LIMIT: u64 = 32 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path} does not exist")]
    Missing { path: PathBuf },
    #[error("{path} is {kind}, not a regular file")]
    NotAFile { path: PathBuf, kind: &'static str },
    #[error("{path} is {}; files of this kind may be at most {}", human_bytes(*size), limit_text(*limit))]
    TooLarge { path: PathBuf, size: u64, limit: u64 },
    #[error("{path} is not UTF-8 text: invalid byte 0x{byte:02X} at offset {offset}")]
    NotUtf8 { path: PathBuf, offset: usize, byte: u8 },
    #[error("cannot read {path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
}

/// A limit as people write it: `16 MiB`, `512 KiB`, or bytes.
fn limit_text(limit: u64) -> String {
    match limit {
        l if l >= 1 << 20 && l % (1 << 20) == 0 => format!("{} MiB", l >> 20),
        l if l >= 1 << 10 && l % (1 << 10) == 0 => format!("{} KiB", l >> 10),
        l => format!("{l} bytes"),
    }
}

impl ReadError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ReadError::Missing { path }
            | ReadError::NotAFile { path, .. }
            | ReadError::TooLarge { path, .. }
            | ReadError::NotUtf8 { path, .. }
            | ReadError::Io { path, .. } => path,
        }
    }

    pub fn is_missing(&self) -> bool {
        matches!(self, ReadError::Missing { .. })
    }
}

/// What kind of thing a non-regular file is, for messages.
pub fn kind_name(file_type: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if file_type.is_fifo() {
            return "a named pipe (FIFO)";
        }
        if file_type.is_socket() {
            return "a socket";
        }
        if file_type.is_char_device() {
            return "a character device";
        }
        if file_type.is_block_device() {
            return "a block device";
        }
    }
    if file_type.is_dir() {
        "a folder"
    } else if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// Opens `path` (following links) only if it is a regular file. On Unix the open itself does not
/// block on a FIFO (`O_NONBLOCK`), and the type is checked on the opened handle, so a file
/// swapped between check and open is still caught.
pub fn open_regular(path: &Path) -> Result<File, ReadError> {
    let io = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ReadError::Missing { path: path.to_path_buf() }
        } else {
            ReadError::Io { path: path.to_path_buf(), error: source }
        }
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    #[cfg(not(unix))]
    {
        // Opening a folder fails differently per platform; ask first so the message is clear.
        let meta = std::fs::metadata(path).map_err(io)?;
        if !meta.is_file() {
            return Err(ReadError::NotAFile { path: path.to_path_buf(), kind: kind_name(&meta.file_type()) });
        }
    }
    let file = options.open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(ReadError::NotAFile { path: path.to_path_buf(), kind: kind_name(&meta.file_type()) });
    }
    Ok(file)
}

/// The bytes of a regular file of at most `limit` bytes. A file that grows while it is read is
/// still cut off at the limit.
pub fn read_bytes(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let file = open_regular(path)?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if size > limit {
        return Err(ReadError::TooLarge { path: path.to_path_buf(), size, limit });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|error| ReadError::Io { path: path.to_path_buf(), error })?;
    let read = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if read > limit {
        return Err(ReadError::TooLarge { path: path.to_path_buf(), size: read, limit });
    }
    Ok(bytes)
}

/// The UTF-8 text of a regular file of at most `limit` bytes.
pub fn read_text(path: &Path, limit: u64) -> Result<String, ReadError> {
    let bytes = read_bytes(path, limit)?;
    String::from_utf8(bytes).map_err(|error| {
        let offset = error.utf8_error().valid_up_to();
        let byte = error.as_bytes().get(offset).copied().unwrap_or(0);
        ReadError::NotUtf8 { path: path.to_path_buf(), offset, byte }
    })
}

/// Like [`read_text`], but a missing file is `Ok(None)`.
pub fn read_text_if_present(path: &Path, limit: u64) -> Result<Option<String>, ReadError> {
    match read_text(path, limit) {
        Ok(text) => Ok(Some(text)),
        Err(ReadError::Missing { .. }) => Ok(None),
        Err(other) => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_types_and_encodings_are_enforced_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("ok.txt");
        std::fs::write(&text, "héllo").unwrap();
        assert_eq!(read_text(&text, 6).unwrap(), "héllo");
        let error = read_text(&text, 5).unwrap_err();
        assert!(matches!(error, ReadError::TooLarge { size: 6, limit: 5, .. }), "{error}");
        assert!(error.to_string().contains("ok.txt"), "{error}");

        let junk = dir.path().join("junk.bin");
        std::fs::write(&junk, b"abc\xff\xfe").unwrap();
        let error = read_text(&junk, 100).unwrap_err();
        assert!(matches!(error, ReadError::NotUtf8 { offset: 3, byte: 0xFF, .. }), "{error}");
        assert!(error.to_string().contains("offset 3"), "{error}");

        let folder = dir.path().join("folder");
        std::fs::create_dir(&folder).unwrap();
        let error = read_text(&folder, 100).unwrap_err();
        assert!(error.to_string().contains("a folder"), "{error}");

        let missing = dir.path().join("missing");
        assert!(read_text(&missing, 100).unwrap_err().is_missing());
        assert_eq!(read_text_if_present(&missing, 100).unwrap(), None);
    }

    #[cfg(unix)]
    #[test]
    fn pipes_and_devices_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe.json");
        let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let error = read_text(&fifo, 100).unwrap_err();
        assert!(error.to_string().contains("named pipe"), "{error}");
        let link = dir.path().join("zero.txt");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let error = read_bytes(&link, 100).unwrap_err();
        assert!(error.to_string().contains("character device"), "{error}");
    }
}
