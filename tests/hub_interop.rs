//! ModelDesk and Python's huggingface_hub share one cache: each finds what the other downloaded,
//! against the Hub-protocol test server of tests/support/hub_server.rs.

mod support;

use std::{path::Path, sync::atomic::AtomicBool, time::Duration};

use modeldesk::{
    hub::{DownloadRequest, Downloader, HubCache, HubSettings, RepoId},
    transfer::RetryPolicy,
};
use support::hub_server::{HubServer, REPO, VARIANT};

fn downloader(server: &HubServer, cache: &Path, offline: bool) -> Downloader {
    let settings = HubSettings { endpoint: server.url.clone(), token: None, cache_dir: cache.to_path_buf(), offline, symlinks: true };
    let policy = RetryPolicy { max_attempts: 2, base_delay: Duration::from_millis(10), max_delay: Duration::from_secs(1) };
    Downloader::new(settings).unwrap().with_policy(policy)
}

#[test]
fn huggingface_hub_finds_a_modeldesk_download_in_its_cache() {
    let server = HubServer::start();
    let cache = tempfile::tempdir().unwrap();
    let request = DownloadRequest::new(REPO, None, Some(VARIANT)).unwrap();
    let outcome = downloader(&server, cache.path(), false).download(&request, &AtomicBool::new(false), &mut |_| {}).unwrap();
    let script = r#"
import json, sys
from huggingface_hub import scan_cache_dir, snapshot_download, try_to_load_from_cache
cache, repo, variant = sys.argv[1:4]
found = try_to_load_from_cache(repo, variant + "/model.onnx.data", cache_dir=cache, revision="main")
info = scan_cache_dir(cache)
repos = [
    {"id": r.repo_id, "revisions": [{"refs": sorted(v.refs), "files": len(v.files), "commit": v.commit_hash} for v in r.revisions]}
    for r in info.repos
]
snapshot = snapshot_download(repo, cache_dir=cache, allow_patterns=[variant + "/*"], local_files_only=True)
print(json.dumps({"found": found, "repos": repos, "warnings": [str(w) for w in info.warnings], "snapshot": snapshot}))
"#;
    let cache_arg = cache.path().to_str().unwrap();
    let seen: serde_json::Value = serde_json::from_str(&support::python(script, &[cache_arg, REPO, VARIANT])).unwrap();
    let commit = &server.repo(REPO).commit;
    assert_eq!(seen["found"].as_str().map(Path::new), Some(outcome.folder.join("model.onnx.data").as_path()), "{seen}");
    assert_eq!(seen["warnings"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["repos"], serde_json::json!([{"id": REPO, "revisions": [{"refs": ["main"], "files": 5, "commit": commit}]}]));
    let snapshot = cache.path().join(RepoId::parse(REPO).unwrap().cache_folder()).join("snapshots").join(commit);
    assert_eq!(seen["snapshot"].as_str().map(Path::new), Some(snapshot.as_path()));
}

#[test]
fn modeldesk_reuses_a_huggingface_hub_download_without_fetching() {
    let server = HubServer::start();
    let cache = tempfile::tempdir().unwrap();
    // huggingface_hub reads HF_ENDPOINT when it is imported.
    let script = r#"
import json, os, sys
os.environ["HF_ENDPOINT"] = sys.argv[1]
os.environ.pop("HF_TOKEN", None)
from huggingface_hub import snapshot_download
print(json.dumps({"snapshot": snapshot_download(sys.argv[2], cache_dir=sys.argv[3], allow_patterns=[sys.argv[4] + "/*"])}))
"#;
    let cache_arg = cache.path().to_str().unwrap();
    let made: serde_json::Value = serde_json::from_str(&support::python(script, &[&server.url, REPO, cache_arg, VARIANT])).unwrap();
    let python_folder = Path::new(made["snapshot"].as_str().unwrap()).join(VARIANT);
    assert!(server.requests("cdn") >= 3, "huggingface_hub downloaded through the test server");

    let before = server.total_requests();
    let repo = RepoId::parse(REPO).unwrap();
    let found = HubCache::new(cache.path()).find_local(&repo, "main", Some(VARIANT)).expect("ModelDesk finds the snapshot");
    assert_eq!((found.folder.as_path(), found.files), (python_folder.as_path(), 5));
    let commit = server.repo(REPO).commit.clone();
    let pinned = DownloadRequest::new(REPO, Some(&commit), Some(VARIANT)).unwrap();
    let by_commit = downloader(&server, cache.path(), false).download(&pinned, &AtomicBool::new(false), &mut |_| {}).unwrap();
    let main = DownloadRequest::new(REPO, None, Some(VARIANT)).unwrap();
    let offline = downloader(&server, cache.path(), true).download(&main, &AtomicBool::new(false), &mut |_| {}).unwrap();
    assert_eq!((by_commit.folder.as_path(), by_commit.already_cached), (python_folder.as_path(), true));
    assert_eq!(offline.folder, python_folder);
    assert_eq!(server.total_requests(), before, "no request at all");

    // Online with a branch: the branch is checked (huggingface_hub saved the commit's listing),
    // no file is fetched.
    let files_before = server.requests("resolve") + server.requests("cdn");
    let online = downloader(&server, cache.path(), false).download(&main, &AtomicBool::new(false), &mut |_| {}).unwrap();
    assert!(online.already_cached);
    assert_eq!(server.total_requests() - before, 1);
    assert_eq!(server.requests("resolve") + server.requests("cdn"), files_before);
}
