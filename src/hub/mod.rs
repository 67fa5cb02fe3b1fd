//! Models from the Hugging Face Hub: a catalog of the Phi ONNX releases (`catalog`), the Hub's
//! HTTP protocol (`api`), the standard cache shared with Python tools (`cache`), downloading a
//! repository folder into it (`download`) and the background service the GUI drives (`service`).
//! Settings come from the same environment variables huggingface_hub reads (`settings`).
//! Knows nothing of egui.

pub mod api;
pub mod cache;
pub mod catalog;
pub mod download;
pub mod service;
pub mod settings;

use std::{fmt, path::PathBuf};

pub use api::{HubApi, RepoFile};
pub use cache::{CachedModel, HubCache, LocalSnapshot};
pub use download::{DownloadRequest, Downloader, Outcome, Plan, Prepared, Progress};
pub use service::{DownloadEvent, DownloadService, Rate};
pub use settings::HubSettings;

use crate::{memory::human_bytes, transfer::TransferError};

/// A model repository id, `owner/name` (or a bare legacy `name`), checked so it can be used in
/// URLs and cache folder names as is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepoId(String);

impl RepoId {
    pub fn parse(text: &str) -> Result<Self, HubError> {
        let text = text.trim();
        let bad = || HubError::BadRepoId(text.to_owned());
        let parts: Vec<&str> = text.split('/').collect();
        if parts.len() > 2 || text.len() > 96 {
            return Err(bad());
        }
        for part in &parts {
            let allowed = part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            let edges = part.starts_with(|c: char| c.is_ascii_alphanumeric()) && !part.ends_with('.');
            if !allowed || !edges || part.contains("--") || part.contains("..") {
                return Err(bad());
            }
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The cache folder name: `models--owner--name`.
    pub fn cache_folder(&self) -> String {
        format!("models--{}", self.0.replace('/', "--"))
    }

    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl fmt::Display for RepoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A 40-hex-digit commit id: immutable, so its files never need a request once cached.
pub fn is_commit_hash(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// A path inside a repository (`/`-separated), or `None` when it could escape the folder it is
/// joined to or cannot be a file name on Windows.
pub fn clean_relative_path(text: &str) -> Option<String> {
    if text.is_empty() || text.len() > 1024 {
        return None;
    }
    let usable = |part: &str| {
        !part.is_empty() && part != "." && part != ".." && !part.contains(['\\', ':']) && !part.chars().any(char::is_control)
    };
    text.split('/').all(usable).then(|| text.to_owned())
}

const TOKEN_HELP: &str = "create a token at https://huggingface.co/settings/tokens and set it in the HF_TOKEN \
environment variable (or run `hf auth login`)";

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("`{0}` is not a repository id: expected `owner/name` made of letters, digits, `-`, `_` and `.`")]
    BadRepoId(String),
    #[error("`{0}` is not a usable revision (a branch, tag or commit id)")]
    BadRevision(String),
    #[error("`{0}` is not a usable folder inside a repository (a relative path without `..`)")]
    BadSubfolder(String),
    #[error("HF_TOKEN (or the token file) holds characters that cannot be sent in an HTTP header")]
    BadToken,
    #[error("{endpoint} is not a usable Hub address (HF_ENDPOINT): {reason}")]
    BadEndpoint { endpoint: String, reason: String },
    #[error("{repo} is gated or private, so the Hub wants a token: {TOKEN_HELP}, and accept the model's terms on https://huggingface.co/{repo} if it asks. (Hub: {message})")]
    NeedsToken { repo: RepoId, message: String },
    #[error("the Hub refused the token for {repo}: check HF_TOKEN, or {TOKEN_HELP}. (Hub: {message})")]
    TokenRefused { repo: RepoId, message: String },
    #[error("your token has no access to {repo}: visit https://huggingface.co/{repo} to accept its terms or ask for access; a fine-grained token also needs read access to gated repositories. (Hub: {message})")]
    AccessDenied { repo: RepoId, message: String },
    #[error("{repo} was not found on {endpoint}; check the name (a private repository also needs a token: {TOKEN_HELP})")]
    RepoNotFound { repo: RepoId, endpoint: String },
    #[error("{repo} has no revision `{revision}`")]
    RevisionNotFound { repo: RepoId, revision: String },
    #[error("{repo} has no files under `{folder}` at revision {revision}")]
    FolderNotFound { repo: RepoId, revision: String, folder: String },
    #[error("{path} is listed in {repo} at {revision} but the Hub has no such file")]
    FileMissing { repo: RepoId, revision: String, path: String },
    #[error("not enough disk space in {}: the download needs {}, {} is free", dir.display(), human_bytes(*needed), human_bytes(*available))]
    NoSpace { dir: PathBuf, needed: u64, available: u64 },
    #[error("HF_HUB_OFFLINE is set and {repo} (revision {revision}) is not complete in the cache at {}", cache.display())]
    Offline { repo: RepoId, revision: String, cache: PathBuf },
    #[error("cannot reach the Hub ({reason}); check the network connection, a proxy, or HF_ENDPOINT. Nothing of {repo} at revision {revision} is in the cache yet")]
    NoNetwork { repo: RepoId, revision: String, reason: String },
    #[error("the Hub's file list for {repo} is unusable: {reason}")]
    BadListing { repo: RepoId, reason: String },
    #[error("{path} in {repo} was downloaded but is corrupt (sha256 {actual}, the Hub lists {expected}); it was discarded, try again")]
    Corrupt { repo: RepoId, path: String, expected: String, actual: String },
    #[error("{path} in {repo} is {actual} bytes on the Hub, but its listing says {expected}")]
    SizeChanged { repo: RepoId, path: String, expected: u64, actual: u64 },
    #[error("the Hugging Face cache at {}: {source}", path.display())]
    Cache { path: PathBuf, source: std::io::Error },
    #[error("cancelled")]
    Cancelled,
    #[error("the download thread could not run: {0}")]
    Thread(String),
    #[error(transparent)]
    Transfer(TransferError),
}

impl HubError {
    pub(crate) fn cache(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| {
            if source.kind() == std::io::ErrorKind::StorageFull {
                HubError::Transfer(TransferError::NoSpace { path })
            } else {
                HubError::Cache { path, source }
            }
        }
    }

    /// Whether a cached copy may stand in for the Hub after this error (as huggingface_hub does):
    /// the Hub is unreachable, busy or refuses us, but did not say the revision is gone.
    pub fn allows_cache_fallback(&self) -> bool {
        !matches!(
            self,
            HubError::RevisionNotFound { .. } | HubError::Cancelled | HubError::BadRepoId(_) | HubError::BadRevision(_) | HubError::BadSubfolder(_)
        )
    }

    /// A token would help: the GUI offers a token field.
    pub fn wants_token(&self) -> bool {
        matches!(self, HubError::NeedsToken { .. } | HubError::TokenRefused { .. } | HubError::AccessDenied { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_are_checked() {
        for good in ["microsoft/Phi-3-mini-4k-instruct-onnx", "gpt2", "a/b.c_d-1"] {
            assert_eq!(RepoId::parse(good).unwrap().as_str(), good);
        }
        for bad in ["", "a/b/c", "../x", "a/..", "a//b", "a/b c", "a/-b", "a--b/c", "a/b.", "/a", "a/"] {
            assert!(matches!(RepoId::parse(bad), Err(HubError::BadRepoId(_))), "{bad:?} was accepted");
        }
        assert_eq!(RepoId::parse(" microsoft/Phi ").unwrap().cache_folder(), "models--microsoft--Phi");
    }

    #[test]
    fn commit_hashes_are_recognised() {
        assert!(is_commit_hash("0123456789abcdef0123456789abcdef01234567"));
        assert!(!is_commit_hash("main"));
        assert!(!is_commit_hash("0123456789ABCDEF0123456789abcdef01234567"));
        assert!(!is_commit_hash("0123456789abcdef0123456789abcdef0123456"));
    }
}
