//! Downloading a repository folder into the shared cache: what is already there is used as is
//! (no request at all for an immutable commit, offline, or when the Hub cannot be reached), what
//! is missing is fetched one file at a time with resume, size and sha256 checks, and the
//! snapshot is linked the way huggingface_hub links it.

use std::{
    path::PathBuf,
    sync::atomic::AtomicBool,
};

use super::{
    HubApi, HubCache, HubError, HubSettings, RepoFile, RepoId, cache::LocalSnapshot, clean_relative_path, is_commit_hash,
};
use crate::transfer::{self, FileRequest, RetryPolicy, TransferError};

/// What to download: a repository at a revision, whole or one folder of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadRequest {
    pub repo: RepoId,
    /// A branch, tag or commit id.
    pub revision: String,
    /// A folder inside the repository (`cpu_and_mobile/cpu-int4-rtn-block-32-acc-level-4`).
    pub folder: Option<String>,
}

impl DownloadRequest {
    /// Checks the user's text: `revision` defaults to `main`; the folder may have leading or
    /// trailing slashes.
    pub fn new(repo: &str, revision: Option<&str>, folder: Option<&str>) -> Result<Self, HubError> {
        let repo = RepoId::parse(repo)?;
        let revision = revision.map(str::trim).filter(|r| !r.is_empty()).unwrap_or("main");
        if clean_relative_path(revision).is_none() || revision.len() > 255 {
            return Err(HubError::BadRevision(revision.to_owned()));
        }
        let folder = match folder.map(|f| f.trim().trim_matches('/')).filter(|f| !f.is_empty()) {
            Some(folder) => Some(clean_relative_path(folder).ok_or_else(|| HubError::BadSubfolder(folder.to_owned()))?),
            None => None,
        };
        Ok(Self { repo, revision: revision.to_owned(), folder })
    }
}

/// One file of a plan and what the cache already has of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFile {
    pub file: RepoFile,
    /// In the snapshot with its size: nothing to fetch.
    pub cached: bool,
    /// Bytes of an interrupted earlier download that will be resumed.
    pub partial: u64,
}

/// The files of a request at its commit, known after the listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub request: DownloadRequest,
    pub commit: String,
    pub files: Vec<PlannedFile>,
}

impl Plan {
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.file.size).sum()
    }

    /// Bytes of the files still to fetch (resumed parts included).
    pub fn missing_bytes(&self) -> u64 {
        self.files.iter().filter(|f| !f.cached).map(|f| f.file.size).sum()
    }

    /// Bytes still to come over the network.
    pub fn to_fetch_bytes(&self) -> u64 {
        self.files.iter().filter(|f| !f.cached).map(|f| f.file.size - f.partial.min(f.file.size)).sum()
    }
}

/// What a plan needs: nothing (found complete in the cache without a request) or a fetch.
#[derive(Debug, Clone)]
pub enum Prepared {
    Cached(LocalSnapshot),
    Fetch(Plan),
}

/// Progress of a running download. `done`/`total` cover the files that were missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub file_index: usize,
    pub file_count: usize,
    pub file_path: String,
    pub file_done: u64,
    pub file_size: u64,
    pub done: u64,
    pub total: u64,
}

/// A finished download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub repo: RepoId,
    pub commit: String,
    /// The snapshot folder (joined with the requested folder): open this.
    pub folder: PathBuf,
    pub files: usize,
    pub bytes: u64,
    /// Bytes that came over the network; 0 when everything was already on this computer.
    pub fetched_bytes: u64,
    /// Found complete in the cache: not a byte fetched.
    pub already_cached: bool,
}

impl Outcome {
    pub(super) fn cached(repo: &RepoId, local: LocalSnapshot) -> Self {
        Self {
            repo: repo.clone(),
            commit: local.commit,
            folder: local.folder,
            files: local.files,
            bytes: local.bytes,
            fetched_bytes: 0,
            already_cached: true,
        }
    }
}

pub struct Downloader {
    settings: HubSettings,
    api: HubApi,
    cache: HubCache,
}

impl Downloader {
    pub fn new(settings: HubSettings) -> Result<Self, HubError> {
        let api = HubApi::new(&settings)?;
        let cache = HubCache::new(settings.cache_dir.clone());
        Ok(Self { settings, api, cache })
    }

    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.api = self.api.with_policy(policy);
        self
    }

    pub fn cache(&self) -> &HubCache {
        &self.cache
    }

    pub fn settings(&self) -> &HubSettings {
        &self.settings
    }

    /// Prepares and fetches; returns the local folder.
    pub fn download(&self, request: &DownloadRequest, cancel: &AtomicBool, on_progress: &mut dyn FnMut(&Progress)) -> Result<Outcome, HubError> {
        match self.prepare(request, cancel)? {
            Prepared::Cached(local) => Ok(Outcome::cached(&request.repo, local)),
            Prepared::Fetch(plan) => self.fetch(&plan, cancel, on_progress),
        }
    }

    /// Decides what to fetch. No request is made offline or for a commit id already complete in
    /// the cache; when the Hub cannot be reached (or refuses), a complete cached copy is used.
    pub fn prepare(&self, request: &DownloadRequest, cancel: &AtomicBool) -> Result<Prepared, HubError> {
        let local = || self.cache.find_local(&request.repo, &request.revision, request.folder.as_deref());
        if self.settings.offline || is_commit_hash(&request.revision) {
            if let Some(found) = local() {
                return Ok(Prepared::Cached(found));
            }
            if self.settings.offline {
                return Err(HubError::Offline {
                    repo: request.repo.clone(),
                    revision: request.revision.clone(),
                    cache: self.cache.root().to_path_buf(),
                });
            }
        }
        match self.plan(request, cancel) {
            Ok(plan) if plan.files.iter().all(|f| f.cached) => {
                self.cache.write_ref(&request.repo, &request.revision, &plan.commit)?;
                Ok(Prepared::Cached(LocalSnapshot {
                    folder: self.folder_of(&plan),
                    files: plan.files.len(),
                    bytes: plan.total_bytes(),
                    commit: plan.commit,
                }))
            }
            Ok(plan) => Ok(Prepared::Fetch(plan)),
            Err(error) if error.allows_cache_fallback() => local().map(Prepared::Cached).ok_or(error),
            Err(error) => Err(error),
        }
    }

    /// Resolves the revision and lists the files (the listing of a commit is kept in the cache,
    /// so it is asked for once).
    pub fn plan(&self, request: &DownloadRequest, cancel: &AtomicBool) -> Result<Plan, HubError> {
        let repo = &request.repo;
        let commit = if is_commit_hash(&request.revision) {
            request.revision.clone()
        } else {
            self.api.commit_for(repo, &request.revision, cancel)?
        };
        let listing = match self.cache.read_tree(repo, &commit) {
            Some(files) => files,
            None => {
                let files = self.api.list_files(repo, &commit, cancel)?;
                self.cache.write_tree(repo, &commit, &files)?;
                files
            }
        };
        let folder = request.folder.as_deref();
        let files: Vec<PlannedFile> = listing
            .into_iter()
            .filter(|file| file.is_in(folder))
            .map(|file| {
                let cached = self.cache.has(repo, &commit, &file);
                let partial = if cached { 0 } else { std::fs::metadata(self.cache.incomplete_path(repo, file.etag())).map_or(0, |m| m.len()) };
                PlannedFile { file, cached, partial }
            })
            .collect();
        if files.is_empty() {
            return Err(HubError::FolderNotFound {
                repo: repo.clone(),
                revision: request.revision.clone(),
                folder: folder.unwrap_or("/").to_owned(),
            });
        }
        Ok(Plan { request: request.clone(), commit, files })
    }

    fn folder_of(&self, plan: &Plan) -> PathBuf {
        let snapshot = self.cache.snapshot_dir(&plan.request.repo, &plan.commit);
        match plan.request.folder.as_deref() {
            Some(folder) => folder.split('/').fold(snapshot, |path, part| path.join(part)),
            None => snapshot,
        }
    }

    /// Fetches the missing files of `plan` after checking there is room for them.
    pub fn fetch(&self, plan: &Plan, cancel: &AtomicBool, on_progress: &mut dyn FnMut(&Progress)) -> Result<Outcome, HubError> {
        let repo = &plan.request.repo;
        let blobs = self.cache.blobs_dir(repo);
        std::fs::create_dir_all(&blobs).map_err(HubError::cache(&blobs))?;
        check_space(&blobs, plan.to_fetch_bytes())?;
        let symlinks = self.settings.symlinks && self.cache.symlinks_supported();
        let headers = self.api.auth_headers();
        let total = plan.missing_bytes();
        let file_count = plan.files.len();
        let mut done = 0u64;
        let mut fetched_bytes = 0u64;
        for (file_index, planned) in plan.files.iter().enumerate().filter(|(_, f)| !f.cached) {
            let file = &planned.file;
            let _lock = self.cache.lock(repo, file.etag(), cancel)?;
            // Another process (or an earlier file with the same content) may have brought it.
            if !self.cache.has(repo, &plan.commit, file) {
                let blob = self.cache.blob_path(repo, file.etag());
                if std::fs::metadata(&blob).is_ok_and(|m| m.len() == file.size) {
                    self.cache.link(repo, &plan.commit, file, symlinks)?;
                } else {
                    // Without symlinks a new blob goes straight into the snapshot.
                    let pointer = self.cache.pointer_path(repo, &plan.commit, file);
                    let request = FileRequest {
                        url: self.api.resolve_url(repo, &plan.commit, &file.path),
                        headers: headers.clone(),
                        dest: if symlinks { &blob } else { &pointer },
                        partial: Some(self.cache.incomplete_path(repo, file.etag())),
                        expected_size: Some(file.size),
                        expected_sha256: file.lfs_sha256.clone(),
                    };
                    let mut report = |file_done: u64, _total: Option<u64>| {
                        on_progress(&Progress {
                            file_index,
                            file_count,
                            file_path: file.path.clone(),
                            file_done,
                            file_size: file.size,
                            done: done + file_done,
                            total,
                        })
                    };
                    let downloaded = transfer::download_file(self.api.http(), self.api.policy(), &request, cancel, &mut report)
                        .map_err(|error| self.file_error(error, plan, file))?;
                    fetched_bytes += downloaded.fetched;
                    if symlinks {
                        self.cache.link(repo, &plan.commit, file, true)?;
                    }
                }
            }
            done += file.size;
            on_progress(&Progress { file_index, file_count, file_path: file.path.clone(), file_done: file.size, file_size: file.size, done, total });
        }
        self.cache.write_ref(repo, &plan.request.revision, &plan.commit)?;
        Ok(Outcome {
            repo: repo.clone(),
            commit: plan.commit.clone(),
            folder: self.folder_of(plan),
            files: file_count,
            bytes: plan.total_bytes(),
            fetched_bytes,
            already_cached: false,
        })
    }

    fn file_error(&self, error: TransferError, plan: &Plan, file: &RepoFile) -> HubError {
        let repo = plan.request.repo.clone();
        match error {
            TransferError::Sha256Mismatch { expected, actual, .. } => HubError::Corrupt { repo, path: file.path.clone(), expected, actual },
            TransferError::SizeMismatch { expected, actual, .. } => HubError::SizeChanged { repo, path: file.path.clone(), expected, actual },
            TransferError::NotFound(_) => HubError::FileMissing { repo, revision: plan.commit.clone(), path: file.path.clone() },
            other => self.api.classify(other, &repo, &plan.request.revision),
        }
    }
}

/// Refuses to start when the disk holding the cache has less room than the download needs.
fn check_space(dir: &std::path::Path, needed: u64) -> Result<(), HubError> {
    match fs4::available_space(dir) {
        Ok(available) if available < needed => Err(HubError::NoSpace { dir: dir.to_path_buf(), needed, available }),
        // A file system that cannot say is not a reason to refuse; writing will tell.
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked_and_normalised() {
        let request = DownloadRequest::new("org/model", None, Some("/cpu/int4/")).unwrap();
        assert_eq!((request.revision.as_str(), request.folder.as_deref()), ("main", Some("cpu/int4")));
        assert_eq!(DownloadRequest::new("org/model", Some("refs/pr/2"), Some("")).unwrap().folder, None);
        assert!(matches!(DownloadRequest::new("org/model", Some("../x"), None), Err(HubError::BadRevision(_))));
        assert!(matches!(DownloadRequest::new("org/model", None, Some("a/../../b")), Err(HubError::BadSubfolder(_))));
        assert!(matches!(DownloadRequest::new("org model", None, None), Err(HubError::BadRepoId(_))));
    }

    #[test]
    fn space_is_checked_before_starting() {
        let dir = tempfile::tempdir().unwrap();
        check_space(dir.path(), 1).unwrap();
        let error = check_space(dir.path(), u64::MAX).unwrap_err();
        assert!(matches!(error, HubError::NoSpace { needed: u64::MAX, .. }), "{error:?}");
        assert!(error.to_string().contains("not enough disk space"), "{error}");
    }
}
