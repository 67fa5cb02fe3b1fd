//! The Hub's HTTP API, as huggingface_hub uses it: a revision resolved to its commit
//! (`/api/models/{id}/revision/{rev}`), the recursive file listing with sizes, git blob ids and
//! LFS sha256 (`/api/models/{id}/tree/{commit}`, paged with `Link: rel="next"`), and the resolve
//! URL of a file (`/{id}/resolve/{commit}/{path}`, which redirects large files to a CDN).
//! Everything a server sends is checked before it names a file on disk.

use std::{io::Read as _, sync::atomic::AtomicBool};

use reqwest::{
    Url,
    blocking::{Client, Response},
    header::{AUTHORIZATION, HeaderMap, HeaderValue, LINK},
};
use serde::{Deserialize, Serialize};

use super::{HubError, HubSettings, RepoId, clean_relative_path, is_commit_hash};
use crate::transfer::{self, HttpOptions, RetryPolicy, TransferError};

/// A JSON answer larger than this is refused (a listing page of 1000 entries is about 300 kB).
const JSON_CAP: u64 = 32 << 20;
/// Listing pages followed at most (the Hub sends 1000 entries a page).
const MAX_PAGES: usize = 1000;

/// One file of a repository at a commit, as `/tree` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoFile {
    pub path: String,
    pub size: u64,
    /// The git blob id (sha1); for an LFS file, the id of its pointer.
    pub blob_id: String,
    /// The content's sha256, for LFS files.
    pub lfs_sha256: Option<String>,
    pub xet_hash: Option<String>,
}

impl RepoFile {
    /// Checks what a server or a cache file says about a file before it names anything on disk.
    pub fn checked(path: &str, size: u64, blob_id: String, lfs: Option<(String, u64)>, xet_hash: Option<String>) -> Result<Self, String> {
        let path = clean_relative_path(path).ok_or_else(|| format!("unsafe path {path:?}"))?;
        if !is_hex(&blob_id, &[40, 64]) {
            return Err(format!("{path}: blob id {blob_id:?} is not a git object id"));
        }
        if let Some((oid, lfs_size)) = &lfs {
            if !is_hex(oid, &[64]) {
                return Err(format!("{path}: LFS id {oid:?} is not a sha256"));
            }
            if *lfs_size != size {
                return Err(format!("{path}: size {size} differs from its LFS size {lfs_size}"));
            }
        }
        let xet_hash = xet_hash.filter(|hash| is_hex(hash, &[64]));
        Ok(RepoFile { path, size, blob_id: blob_id.to_ascii_lowercase(), lfs_sha256: lfs.map(|(oid, _)| oid.to_ascii_lowercase()), xet_hash })
    }

    /// The name of its blob in the cache: what the Hub sends as the (linked) ETag.
    pub fn etag(&self) -> &str {
        self.lfs_sha256.as_deref().unwrap_or(&self.blob_id)
    }

    /// Whether `path` lies in `folder` (`None`: the whole repository).
    pub fn is_in(&self, folder: Option<&str>) -> bool {
        folder.is_none_or(|folder| self.path.strip_prefix(folder).is_some_and(|rest| rest.starts_with('/')))
    }
}

pub struct HubApi {
    http: Client,
    policy: RetryPolicy,
    endpoint: Url,
    token: Option<String>,
}

impl HubApi {
    pub fn new(settings: &HubSettings) -> Result<Self, HubError> {
        let endpoint = Url::parse(&settings.endpoint)
            .map_err(|e| HubError::BadEndpoint { endpoint: settings.endpoint.clone(), reason: e.to_string() })?;
        let http = transfer::client(&HttpOptions::default()).map_err(HubError::Transfer)?;
        Ok(Self { http, policy: RetryPolicy::default(), endpoint, token: settings.token.clone() })
    }

    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn http(&self) -> &Client {
        &self.http
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    pub fn endpoint(&self) -> &str {
        self.endpoint.as_str().trim_end_matches('/')
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// `Authorization: Bearer …` when there is a token. reqwest drops it on a redirect to another
    /// host, so it never reaches the CDN.
    pub fn auth_headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = self.token.as_ref().and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok()) {
            headers.insert(AUTHORIZATION, value);
        }
        headers
    }

    /// The endpoint with `segments` appended, each percent-encoded as one segment.
    fn url<'a>(&self, segments: impl IntoIterator<Item = &'a str>) -> Url {
        let mut url = self.endpoint.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// `{endpoint}/{repo}/resolve/{revision}/{path}`.
    pub fn resolve_url(&self, repo: &RepoId, revision: &str, path: &str) -> String {
        self.url(repo.segments().chain(["resolve", revision]).chain(path.split('/'))).to_string()
    }

    fn get(&self, url: &Url, cancel: &AtomicBool) -> Result<Response, TransferError> {
        let headers = self.auth_headers();
        transfer::send(&self.policy, cancel, &|| self.http.get(url.clone()).headers(headers.clone()))
    }

    /// The commit a branch or tag points to.
    pub fn commit_for(&self, repo: &RepoId, revision: &str, cancel: &AtomicBool) -> Result<String, HubError> {
        #[derive(Deserialize)]
        struct RevisionInfo {
            sha: Option<String>,
        }
        let url = self.url(["api", "models"].into_iter().chain(repo.segments()).chain(["revision", revision]));
        let response = self.get(&url, cancel).map_err(|e| self.classify(e, repo, revision))?;
        let info: RevisionInfo = read_json(response, repo)?;
        match info.sha {
            Some(sha) if is_commit_hash(&sha) => Ok(sha),
            other => Err(HubError::BadListing { repo: repo.clone(), reason: format!("revision {revision} resolved to {other:?}, not a commit id") }),
        }
    }

    /// Every file of the repository at `commit`, all pages.
    pub fn list_files(&self, repo: &RepoId, commit: &str, cancel: &AtomicBool) -> Result<Vec<RepoFile>, HubError> {
        let mut url = self.url(["api", "models"].into_iter().chain(repo.segments()).chain(["tree", commit]));
        url.query_pairs_mut().append_pair("recursive", "true");
        let mut files = Vec::new();
        for _ in 0..MAX_PAGES {
            let response = self.get(&url, cancel).map_err(|e| self.classify(e, repo, commit))?;
            let next = next_page(response.headers());
            let entries: Vec<TreeEntry> = read_json(response, repo)?;
            for entry in entries {
                if let Some(file) = entry.into_file().map_err(|reason| HubError::BadListing { repo: repo.clone(), reason })? {
                    files.push(file);
                }
            }
            match next.map(|link| url.join(&link)) {
                None => return Ok(files),
                Some(Ok(next)) if next.origin() == self.endpoint.origin() => url = next,
                Some(_) => return Err(HubError::BadListing { repo: repo.clone(), reason: "the next page is on another server".into() }),
            }
        }
        Err(HubError::BadListing { repo: repo.clone(), reason: format!("more than {MAX_PAGES} pages") })
    }

    /// The error a user should see for a failed Hub request about `repo` at `revision`.
    pub fn classify(&self, error: TransferError, repo: &RepoId, revision: &str) -> HubError {
        let repo = repo.clone();
        let code = |f: &transfer::HttpFailure| f.error_code.clone().unwrap_or_default();
        match error {
            TransferError::Unauthorized(f) => match (code(&f).as_str(), self.has_token()) {
                ("RepoNotFound", _) => HubError::RepoNotFound { repo, endpoint: self.endpoint().to_owned() },
                (_, true) => HubError::TokenRefused { repo, message: f.message },
                (_, false) => HubError::NeedsToken { repo, message: f.message },
            },
            TransferError::Forbidden(f) => HubError::AccessDenied { repo, message: f.message },
            TransferError::NotFound(f) => match code(&f).as_str() {
                "RevisionNotFound" => HubError::RevisionNotFound { repo, revision: revision.to_owned() },
                "EntryNotFound" => HubError::FolderNotFound { repo, revision: revision.to_owned(), folder: f.url },
                _ => HubError::RepoNotFound { repo, endpoint: self.endpoint().to_owned() },
            },
            TransferError::Unreachable { reason, .. } | TransferError::Interrupted { reason, .. } => {
                HubError::NoNetwork { repo, revision: revision.to_owned(), reason }
            }
            TransferError::Cancelled => HubError::Cancelled,
            other => HubError::Transfer(other),
        }
    }
}

#[derive(Deserialize)]
struct TreeEntry {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    oid: String,
    lfs: Option<TreeLfs>,
    #[serde(rename = "xetHash")]
    xet_hash: Option<String>,
}

#[derive(Deserialize)]
struct TreeLfs {
    oid: String,
    size: u64,
}

impl TreeEntry {
    /// A checked file, `None` for a directory.
    fn into_file(self) -> Result<Option<RepoFile>, String> {
        if self.kind != "file" {
            return Ok(None);
        }
        let lfs = self.lfs.map(|lfs| (lfs.oid, lfs.size));
        RepoFile::checked(&self.path, self.size, self.oid, lfs, self.xet_hash).map(Some)
    }
}


fn is_hex(text: &str, lengths: &[usize]) -> bool {
    lengths.contains(&text.len()) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The `rel="next"` target of a `Link` header.
fn next_page(headers: &HeaderMap) -> Option<String> {
    headers.get_all(LINK).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).find_map(|link| {
        let (target, params) = link.split_once(';')?;
        let is_next = params.split(';').any(|p| p.trim().replace(' ', "").eq_ignore_ascii_case("rel=\"next\""));
        is_next.then(|| target.trim().trim_start_matches('<').trim_end_matches('>').to_owned())
    })
}

fn read_json<T: serde::de::DeserializeOwned>(response: Response, repo: &RepoId) -> Result<T, HubError> {
    let url = response.url().to_string();
    let mut body = Vec::new();
    let bad = |reason: String| HubError::BadListing { repo: repo.clone(), reason: format!("{url}: {reason}") };
    response.take(JSON_CAP + 1).read_to_end(&mut body).map_err(|e| bad(format!("the answer broke off: {e}")))?;
    if body.len() as u64 > JSON_CAP {
        return Err(bad(format!("the answer is larger than {} MB", JSON_CAP >> 20)));
    }
    serde_json::from_slice(&body).map_err(|e| bad(format!("not the expected JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_page_links_are_found() {
        let mut headers = HeaderMap::new();
        headers.insert(LINK, HeaderValue::from_static("<https://h/a?c=1>; rel=\"prev\", <https://h/a?c=3>; rel=\"next\""));
        assert_eq!(next_page(&headers).as_deref(), Some("https://h/a?c=3"));
        headers.insert(LINK, HeaderValue::from_static("<https://h/a?c=1>; rel=\"prev\""));
        assert_eq!(next_page(&headers), None);
    }

    #[test]
    fn listing_entries_are_checked() {
        let entry = |path: &str, oid: &str, lfs: Option<(&str, u64)>| TreeEntry {
            kind: "file".into(),
            path: path.into(),
            size: 10,
            oid: oid.into(),
            lfs: lfs.map(|(oid, size)| TreeLfs { oid: oid.into(), size }),
            xet_hash: None,
        };
        let sha1 = "a".repeat(40);
        let sha256 = "B".repeat(64);
        let file = entry("dir/model.onnx", &sha1, Some((&sha256, 10))).into_file().unwrap().unwrap();
        assert_eq!((file.etag(), file.is_in(Some("dir")), file.is_in(Some("di")), file.is_in(None)), ("b".repeat(64).as_str(), true, false, true));
        assert!(entry("../escape", &sha1, None).into_file().is_err());
        assert!(entry("/abs", &sha1, None).into_file().is_err());
        assert!(entry("a/../../b", &sha1, None).into_file().is_err());
        assert!(entry("ok", "../../x", None).into_file().is_err());
        assert!(entry("ok", &sha1, Some(("nothex", 10))).into_file().is_err());
        assert!(entry("ok", &sha1, Some((&sha256, 11))).into_file().is_err());
        let directory = TreeEntry { kind: "directory".into(), ..entry("dir", "", None) };
        assert_eq!(directory.into_file(), Ok(None));
    }
}
