//! The Hugging Face cache as huggingface_hub 2.x lays it out, so both tools share every byte:
//!
//! ```text
//! <cache>/models--owner--name/blobs/<etag>                  the content (sha256 for LFS, git sha1 otherwise)
//!                            /blobs/<etag>.incomplete       a partial download (resumed by the next run)
//!                            /refs/<revision>               the commit a branch or tag pointed to
//!                            /snapshots/<commit>/<path>     relative symlink to ../…/blobs/<etag>
//!                            /trees/<commit>.json           the commit's full file listing
//! <cache>/.locks/models--owner--name/<etag>.lock            held while a blob is written
//! ```
//!
//! Where symlinks cannot be made (Windows without Developer Mode, `HF_HUB_DISABLE_SYMLINKS`), a
//! snapshot holds the files themselves: a new download lands in the snapshot directly, a blob
//! already present is copied (huggingface_hub's rule).

use std::{
    collections::BTreeMap,
    fs::File,
    io::Write as _,
    path::{Path, PathBuf},
    sync::{
        OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use serde::{Deserialize, Serialize};

use super::{HubError, RepoFile, RepoId, is_commit_hash};
use crate::engine::folder::{GENAI_CONFIG, ModelFolder};

/// The version of `trees/<commit>.json` huggingface_hub reads.
const TREE_FORMAT_VERSION: u32 = 1;
/// A tree file larger than this is not one.
const TREE_FILE_CAP: u64 = 64 << 20;
/// A ref file holds a commit id (40 characters, maybe a newline).
const REF_FILE_CAP: u64 = 256;

pub struct HubCache {
    root: PathBuf,
    symlinks: OnceLock<bool>,
}

/// A complete copy of a repository folder found in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSnapshot {
    pub commit: String,
    /// The snapshot folder joined with the requested subfolder.
    pub folder: PathBuf,
    pub files: usize,
    pub bytes: u64,
}

impl HubCache {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), symlinks: OnceLock::new() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn repo_dir(&self, repo: &RepoId) -> PathBuf {
        self.root.join(repo.cache_folder())
    }

    pub fn snapshot_dir(&self, repo: &RepoId, commit: &str) -> PathBuf {
        self.repo_dir(repo).join("snapshots").join(commit)
    }

    /// Where `file` appears in the snapshot of `commit`.
    pub fn pointer_path(&self, repo: &RepoId, commit: &str, file: &RepoFile) -> PathBuf {
        file.path.split('/').fold(self.snapshot_dir(repo, commit), |path, part| path.join(part))
    }

    pub fn blobs_dir(&self, repo: &RepoId) -> PathBuf {
        self.repo_dir(repo).join("blobs")
    }

    pub fn blob_path(&self, repo: &RepoId, etag: &str) -> PathBuf {
        self.blobs_dir(repo).join(etag)
    }

    pub fn incomplete_path(&self, repo: &RepoId, etag: &str) -> PathBuf {
        self.blobs_dir(repo).join(format!("{etag}.incomplete"))
    }

    fn ref_path(&self, repo: &RepoId, revision: &str) -> PathBuf {
        revision.split('/').fold(self.repo_dir(repo).join("refs"), |path, part| path.join(part))
    }

    fn tree_path(&self, repo: &RepoId, commit: &str) -> PathBuf {
        self.repo_dir(repo).join("trees").join(format!("{commit}.json"))
    }

    /// The commit `refs/<revision>` records (a commit id is its own answer).
    pub fn read_ref(&self, repo: &RepoId, revision: &str) -> Option<String> {
        if is_commit_hash(revision) {
            return Some(revision.to_owned());
        }
        let text = crate::fsio::read_text(&self.ref_path(repo, revision), REF_FILE_CAP).ok()?;
        let commit = text.trim();
        is_commit_hash(commit).then(|| commit.to_owned())
    }

    /// Records `revision` → `commit` (no newline, as huggingface_hub writes it). The temporary file
    /// stays outside `refs/`, where huggingface_hub would read it as a ref.
    pub fn write_ref(&self, repo: &RepoId, revision: &str, commit: &str) -> Result<(), HubError> {
        if revision == commit || self.read_ref(repo, revision).as_deref() == Some(commit) {
            return Ok(());
        }
        let path = self.ref_path(repo, revision);
        let parent = path.parent().unwrap_or(&self.root).to_path_buf();
        std::fs::create_dir_all(&parent).map_err(HubError::cache(&parent))?;
        let repo_dir = self.repo_dir(repo);
        let mut temp = tempfile::Builder::new().prefix(".ref-").tempfile_in(&repo_dir).map_err(HubError::cache(&repo_dir))?;
        temp.write_all(commit.as_bytes()).map_err(HubError::cache(temp.path()))?;
        temp.as_file().sync_all().map_err(HubError::cache(temp.path()))?;
        temp.persist(&path).map_err(|e| HubError::cache(&path)(e.error))?;
        crate::staging::sync_dir(&parent);
        Ok(())
    }

    /// The full listing of `commit` saved by an earlier download (ours or huggingface_hub's).
    pub fn read_tree(&self, repo: &RepoId, commit: &str) -> Option<Vec<RepoFile>> {
        let bytes = crate::fsio::read_bytes(&self.tree_path(repo, commit), TREE_FILE_CAP).ok()?;
        let tree: TreeFile = serde_json::from_slice(&bytes).ok()?;
        if tree.format_version != TREE_FORMAT_VERSION {
            return None;
        }
        let files = tree.files.into_iter().map(|(path, entry)| {
            let lfs = entry.lfs_sha256.map(|sha| (sha, entry.lfs_size.unwrap_or(entry.size)));
            RepoFile::checked(&path, entry.size, entry.blob_id, lfs, entry.xet_hash)
        });
        files.collect::<Result<Vec<_>, _>>().ok()
    }

    pub fn write_tree(&self, repo: &RepoId, commit: &str, files: &[RepoFile]) -> Result<(), HubError> {
        let entries = files.iter().map(|file| {
            let entry = TreeEntry {
                size: file.size,
                blob_id: file.blob_id.clone(),
                lfs_sha256: file.lfs_sha256.clone(),
                lfs_size: file.lfs_sha256.as_ref().map(|_| file.size),
                xet_hash: file.xet_hash.clone(),
            };
            (file.path.clone(), entry)
        });
        let tree = TreeFile { format_version: TREE_FORMAT_VERSION, files: entries.collect() };
        let path = self.tree_path(repo, commit);
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(HubError::cache(&dir))?;
        let json = serde_json::to_vec_pretty(&tree).unwrap_or_default();
        crate::mlflow::mlmodel::write_atomically(&path, &json).map_err(HubError::cache(&path))
    }

    /// Whether the snapshot of `commit` already has `file` with its listed size (a broken link or
    /// a file of another size does not count).
    pub fn has(&self, repo: &RepoId, commit: &str, file: &RepoFile) -> bool {
        std::fs::metadata(self.pointer_path(repo, commit, file)).is_ok_and(|m| m.is_file() && m.len() == file.size)
    }

    /// Whether this cache's file system takes symlinks (checked once, as huggingface_hub does).
    pub fn symlinks_supported(&self) -> bool {
        *self.symlinks.get_or_init(|| {
            let _ = std::fs::create_dir_all(&self.root);
            let Ok(probe) = tempfile::Builder::new().prefix(".symlink-probe-").tempdir_in(&self.root) else { return false };
            std::fs::write(probe.path().join("target"), b"").is_ok() && make_symlink(Path::new("target"), &probe.path().join("link")).is_ok()
        })
    }

    /// Makes `file` appear in the snapshot of `commit` from its blob: a relative symlink, or a
    /// copy where symlinks are not available.
    pub fn link(&self, repo: &RepoId, commit: &str, file: &RepoFile, symlinks: bool) -> Result<(), HubError> {
        let pointer = self.pointer_path(repo, commit, file);
        let blob = self.blob_path(repo, file.etag());
        let parent = pointer.parent().unwrap_or(&self.root).to_path_buf();
        std::fs::create_dir_all(&parent).map_err(HubError::cache(&parent))?;
        match std::fs::remove_file(&pointer) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(HubError::cache(&pointer)(e)),
            _ => {}
        }
        if symlinks && self.symlinks_supported() {
            // From snapshots/<commit>/<a>/<b>/<file> up to the repository folder: one `..` per
            // path component plus two.
            let depth = file.path.split('/').count() + 1;
            let target = (0..depth).fold(PathBuf::new(), |path, _| path.join("..")).join("blobs").join(file.etag());
            return make_symlink(&target, &pointer).map_err(HubError::cache(&pointer));
        }
        let mut temp = tempfile::Builder::new().prefix(".copy-").tempfile_in(&parent).map_err(HubError::cache(&parent))?;
        let mut source = File::open(&blob).map_err(HubError::cache(&blob))?;
        std::io::copy(&mut source, temp.as_file_mut()).map_err(HubError::cache(&pointer))?;
        temp.as_file().sync_all().map_err(HubError::cache(&pointer))?;
        temp.persist(&pointer).map_err(|e| HubError::cache(&pointer)(e.error))?;
        Ok(())
    }

    /// Holds `.locks/<repo>/<etag>.lock` (the lock huggingface_hub takes for the same blob) until
    /// dropped; waits while another process holds it.
    pub fn lock(&self, repo: &RepoId, etag: &str, cancel: &AtomicBool) -> Result<File, HubError> {
        let dir = self.root.join(".locks").join(repo.cache_folder());
        std::fs::create_dir_all(&dir).map_err(HubError::cache(&dir))?;
        let path = dir.join(format!("{etag}.lock"));
        let file = File::options().create(true).truncate(false).write(true).open(&path).map_err(HubError::cache(&path))?;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(std::fs::TryLockError::WouldBlock) if !cancel.load(Ordering::SeqCst) => std::thread::sleep(Duration::from_millis(100)),
                Err(std::fs::TryLockError::WouldBlock) => return Err(HubError::Cancelled),
                Err(std::fs::TryLockError::Error(e)) => return Err(HubError::cache(&path)(e)),
            }
        }
    }

    /// A complete copy of `folder` (or the whole repository) at `revision`, found without a request:
    /// every file of the saved listing present with its size or, without a listing, a model
    /// folder whose config, decoder, weights and tokenizer are all there.
    pub fn find_local(&self, repo: &RepoId, revision: &str, folder: Option<&str>) -> Option<LocalSnapshot> {
        let commit = self.read_ref(repo, revision)?;
        let snapshot = self.snapshot_dir(repo, &commit);
        let dir = folder.map_or(snapshot.clone(), |folder| folder.split('/').fold(snapshot.clone(), |p, part| p.join(part)));
        if !dir.is_dir() {
            return None;
        }
        if let Some(tree) = self.read_tree(repo, &commit) {
            let wanted: Vec<&RepoFile> = tree.iter().filter(|file| file.is_in(folder)).collect();
            let complete = !wanted.is_empty() && wanted.iter().all(|file| self.has(repo, &commit, file));
            let bytes = wanted.iter().map(|file| file.size).sum();
            return complete.then(|| LocalSnapshot { commit, folder: dir, files: wanted.len(), bytes });
        }
        if !dir.join(GENAI_CONFIG).is_file() {
            return None;
        }
        let model = ModelFolder::open(&dir).ok()?;
        let mut files: Vec<PathBuf> = vec![dir.join(GENAI_CONFIG), model.decoder.clone()];
        files.extend(model.external_data.iter().cloned());
        let bytes = files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
        Some(LocalSnapshot { commit, folder: dir, files: files.len(), bytes })
    }
}

/// A Phi ONNX model folder (one holding `genai_config.json`) somewhere in the cache, downloaded
/// by ModelDesk, huggingface_hub or any tool sharing the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedModel {
    /// `owner/name`, from the cache folder's name.
    pub repo: String,
    pub commit: String,
    /// The folder inside the repository (empty for its root).
    pub subfolder: String,
    pub folder: PathBuf,
    pub bytes: u64,
}

/// Repositories [`HubCache::scan_models`] looks into at most.
const MAX_SCANNED_REPOS: usize = 500;

impl HubCache {
    /// Every model folder in every snapshot of the cache, sorted by repository and folder. Reads
    /// folder listings only (a snapshot walk is bounded by [`crate::fsio::walk::MAX_ENTRIES`]);
    /// snapshots that cannot be read are skipped.
    pub fn scan_models(&self) -> Vec<CachedModel> {
        let Ok(entries) = std::fs::read_dir(&self.root) else { return Vec::new() };
        let mut repos: Vec<(String, PathBuf)> = entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let repo = name.strip_prefix("models--")?.replace("--", "/");
                RepoId::parse(&repo).ok()?;
                Some((repo, entry.path()))
            })
            .collect();
        repos.sort();
        repos.truncate(MAX_SCANNED_REPOS);
        let mut found = Vec::new();
        for (repo, dir) in repos {
            let Ok(snapshots) = std::fs::read_dir(dir.join("snapshots")) else { continue };
            for snapshot in snapshots.flatten() {
                let Some(commit) = snapshot.file_name().into_string().ok().filter(|c| is_commit_hash(c)) else { continue };
                let Ok(tree) = crate::fsio::walk::walk(&snapshot.path()) else { continue };
                for config in tree.files.iter().filter(|f| f.relative.file_name().is_some_and(|n| n == GENAI_CONFIG)) {
                    let subfolder = config.relative.parent().unwrap_or(Path::new(""));
                    let bytes = tree.files.iter().filter(|f| f.relative.starts_with(subfolder)).map(|f| f.size).sum();
                    let subfolder_text = subfolder.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
                    found.push(CachedModel { repo: repo.clone(), commit: commit.clone(), subfolder: subfolder_text, folder: snapshot.path().join(subfolder), bytes });
                }
            }
        }
        found.sort_by(|a, b| (&a.repo, &a.subfolder, &a.commit).cmp(&(&b.repo, &b.subfolder, &b.commit)));
        found
    }
}

#[cfg(unix)]
fn make_symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(windows)]
fn make_symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::windows::fs::symlink_file(target, link)
}

#[derive(Serialize, Deserialize)]
struct TreeFile {
    format_version: u32,
    files: BTreeMap<String, TreeEntry>,
}

#[derive(Serialize, Deserialize)]
struct TreeEntry {
    size: u64,
    blob_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lfs_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lfs_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    xet_hash: Option<String>,
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    fn repo() -> RepoId {
        RepoId::parse("org/model").unwrap()
    }

    fn file(path: &str, content: &[u8], lfs: bool) -> RepoFile {
        use sha2::Digest as _;
        let sha256 = format!("{:x}", sha2::Sha256::digest(content));
        let lfs = lfs.then(|| (sha256.clone(), content.len() as u64));
        RepoFile::checked(path, content.len() as u64, sha256[..40].to_owned(), lfs, None).unwrap()
    }

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn refs_and_trees_round_trip_in_huggingface_hub_format() {
        let dir = tempfile::tempdir().unwrap();
        let cache = HubCache::new(dir.path());
        let repo = repo();
        std::fs::create_dir_all(cache.repo_dir(&repo)).unwrap();
        cache.write_ref(&repo, "refs/pr/1", COMMIT).unwrap();
        let raw = std::fs::read_to_string(cache.repo_dir(&repo).join("refs/refs/pr/1")).unwrap();
        assert_eq!(raw, COMMIT, "no newline, as huggingface_hub writes it");
        assert_eq!(cache.read_ref(&repo, "refs/pr/1").as_deref(), Some(COMMIT));
        assert_eq!(cache.read_ref(&repo, "main"), None);
        assert_eq!(std::fs::read_dir(cache.repo_dir(&repo)).unwrap().count(), 1, "no temporary file left beside refs/");

        let files = vec![file("a/model.onnx.data", b"weights", true), file("a/genai_config.json", b"{}", false)];
        cache.write_tree(&repo, COMMIT, &files).unwrap();
        let mut read = cache.read_tree(&repo, COMMIT).unwrap();
        read.sort_by(|a, b| b.path.cmp(&a.path));
        assert_eq!(read, files);
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(cache.tree_path(&repo, COMMIT)).unwrap()).unwrap();
        assert_eq!(json["format_version"], 1);
        assert_eq!(json["files"]["a/model.onnx.data"]["lfs_size"], 7);
        assert!(json["files"]["a/genai_config.json"].get("lfs_sha256").is_none());
    }

    #[test]
    fn links_are_relative_and_copies_stand_in_without_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let cache = HubCache::new(dir.path());
        let repo = repo();
        let nested = file("cpu/int4/model.onnx", b"graph", true);
        std::fs::create_dir_all(cache.blobs_dir(&repo)).unwrap();
        std::fs::write(cache.blob_path(&repo, nested.etag()), b"graph").unwrap();
        assert!(!cache.has(&repo, COMMIT, &nested));
        cache.link(&repo, COMMIT, &nested, true).unwrap();
        let pointer = cache.pointer_path(&repo, COMMIT, &nested);
        #[cfg(unix)]
        assert_eq!(std::fs::read_link(&pointer).unwrap(), Path::new("../../../../blobs").join(nested.etag()));
        assert!(cache.has(&repo, COMMIT, &nested));
        cache.link(&repo, COMMIT, &nested, false).unwrap();
        assert!(!std::fs::symlink_metadata(&pointer).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&pointer).unwrap(), b"graph");
        assert!(cache.blob_path(&repo, nested.etag()).is_file(), "an existing blob is copied, not moved");
        std::fs::remove_file(cache.blob_path(&repo, nested.etag())).unwrap();
        cache.link(&repo, COMMIT, &nested, true).unwrap();
        assert!(!cache.has(&repo, COMMIT, &nested), "a broken link is not a cached file");
    }

    #[test]
    fn model_folders_in_any_snapshot_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let cache = HubCache::new(dir.path());
        let repo = repo();
        let config = file("cpu/int4/genai_config.json", b"{}", false);
        let weights = file("cpu/int4/model.onnx", b"graph", true);
        let readme = file("README.md", b"# model", false);
        std::fs::create_dir_all(cache.blobs_dir(&repo)).unwrap();
        for (entry, content) in [(&config, &b"{}"[..]), (&weights, b"graph"), (&readme, b"# model")] {
            std::fs::write(cache.blob_path(&repo, entry.etag()), content).unwrap();
            cache.link(&repo, COMMIT, entry, true).unwrap();
        }
        // Not a repository folder, and a snapshot without a model: neither is listed.
        std::fs::create_dir_all(dir.path().join("datasets--org--data/snapshots").join(COMMIT)).unwrap();
        std::fs::create_dir_all(dir.path().join("models--org--empty/snapshots").join(COMMIT)).unwrap();
        let found = cache.scan_models();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].repo.as_str(), found[0].subfolder.as_str(), found[0].commit.as_str()), ("org/model", "cpu/int4", COMMIT));
        assert_eq!(found[0].folder, cache.snapshot_dir(&repo, COMMIT).join("cpu/int4"));
        assert_eq!(found[0].bytes, 2 + 5);
        assert!(HubCache::new(dir.path().join("missing")).scan_models().is_empty());
    }

    #[test]
    fn a_lock_waits_for_its_holder_and_gives_up_on_cancel() {
        let dir = tempfile::tempdir().unwrap();
        let cache = HubCache::new(dir.path());
        let held = cache.lock(&repo(), "abc", &AtomicBool::new(false)).unwrap();
        let cancelled = AtomicBool::new(true);
        assert!(matches!(cache.lock(&repo(), "abc", &cancelled), Err(HubError::Cancelled)));
        drop(held);
        cache.lock(&repo(), "abc", &cancelled).unwrap();
    }
}
