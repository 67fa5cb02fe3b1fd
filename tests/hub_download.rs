//! The Hugging Face Hub downloader (src/hub) against the Hub-protocol server of
//! tests/support/hub_server.rs on 127.0.0.1: the standard cache layout, the model running after
//! `modeldesk download`, cache reuse without requests, resume, corruption, tokens and errors.

mod support;

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use modeldesk::{
    hub::{DownloadEvent, DownloadRequest, DownloadService, Downloader, HubError, HubSettings, Outcome, Progress},
    transfer::RetryPolicy,
};
use support::hub_server::{GATED_REPO, GOOD_TOKEN, HUGE_REPO, HubServer, NO_ACCESS_TOKEN, REPO, VARIANT};

fn settings(server_url: &str, cache: &Path) -> HubSettings {
    HubSettings { endpoint: server_url.to_owned(), token: None, cache_dir: cache.to_path_buf(), offline: false, symlinks: true }
}

fn quick() -> RetryPolicy {
    RetryPolicy { max_attempts: 3, base_delay: Duration::from_millis(10), max_delay: Duration::from_secs(2) }
}

fn downloader(settings: HubSettings) -> Downloader {
    Downloader::new(settings).unwrap().with_policy(quick())
}

fn variant(repo: &str, revision: &str) -> DownloadRequest {
    DownloadRequest::new(repo, Some(revision), Some(VARIANT)).unwrap()
}

fn download(downloader: &Downloader, request: &DownloadRequest) -> Result<Outcome, HubError> {
    downloader.download(request, &AtomicBool::new(false), &mut |_| {})
}

fn repo_dir(cache: &Path, repo: &str) -> PathBuf {
    cache.join(format!("models--{}", repo.replace('/', "--")))
}

/// Every file of `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[test]
fn variant_lands_in_the_standard_cache_layout() {
    let server = HubServer::start();
    let cache = tempfile::tempdir().unwrap();
    let mut reports: Vec<Progress> = Vec::new();
    let outcome = downloader(settings(&server.url, cache.path()))
        .download(&variant(REPO, "main"), &AtomicBool::new(false), &mut |p| reports.push(p.clone()))
        .unwrap();
    let repo = server.repo(REPO);
    let repo_dir = repo_dir(cache.path(), REPO);
    let snapshot = repo_dir.join("snapshots").join(&repo.commit);
    assert_eq!(outcome.folder, snapshot.join(VARIANT));
    assert_eq!((outcome.files, outcome.already_cached), (5, false));
    assert_eq!(std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(), repo.commit);
    let wanted: Vec<_> = repo.files.iter().filter(|f| f.path.starts_with(VARIANT)).collect();
    assert_eq!(wanted.len(), 5);
    for file in &wanted {
        let pointer = snapshot.join(&file.path);
        let etag = if file.lfs { &file.sha256 } else { &file.git_sha1 };
        let depth = file.path.split('/').count() + 1;
        let expected_target = Path::new(&"../".repeat(depth)).join("blobs").join(etag);
        assert_eq!(std::fs::read_link(&pointer).unwrap(), expected_target, "{}", file.path);
        assert_eq!(std::fs::read(&pointer).unwrap(), *file.content, "{}", file.path);
    }
    assert_eq!(files_under(&snapshot).len(), 5, "only the requested folder");
    let blobs = files_under(&repo_dir.join("blobs"));
    assert_eq!(blobs.len(), 5);
    assert!(blobs.iter().all(|b| !b.to_string_lossy().ends_with(".incomplete")));
    assert!(repo_dir.join("trees").join(format!("{}.json", repo.commit)).is_file());
    // Three LFS files came from the CDN, without the token; the listing took 6 pages of 2.
    assert_eq!((server.requests("revision"), server.requests("resolve"), server.requests("cdn")), (1, 5, 3));
    assert_eq!(server.requests("tree"), 6);
    assert_eq!(server.tokens_at_cdn(), 0);
    let total: u64 = wanted.iter().map(|f| f.content.len() as u64).sum();
    assert_eq!(outcome.fetched_bytes, total);
    let last = reports.last().unwrap();
    assert_eq!((last.done, last.total, last.file_count), (total, total, 5));
    assert!(reports.windows(2).all(|w| w[0].done <= w[1].done), "overall progress never goes back");
}

#[test]
fn downloaded_model_generates_from_the_command_line() {
    let server = HubServer::start();
    let cache = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_modeldesk"))
        .args(["download", REPO, "--include", VARIANT, "--json"])
        .env("HF_ENDPOINT", &server.url)
        .env("HF_HUB_CACHE", cache.path())
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_OFFLINE")
        .output()
        .unwrap();
    assert!(output.status.success(), "download failed: {}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let folder = PathBuf::from(report["folder"].as_str().unwrap());
    assert!(folder.starts_with(cache.path()), "{folder:?}");
    assert_eq!(report["commit"], server.repo(REPO).commit.as_str());
    assert_eq!(report["already_cached"], false);

    let generated = Command::new(env!("CARGO_BIN_EXE_modeldesk"))
        .args(["generate", "--prompt", "Hello", "--max-tokens", "8", "--json", "--model"])
        .arg(&folder)
        .output()
        .unwrap();
    assert!(generated.status.success(), "generate failed: {}", String::from_utf8_lossy(&generated.stderr));
    let reply: serde_json::Value = serde_json::from_slice(&generated.stdout).unwrap();
    let completion = reply["usage"]["completion_tokens"].as_u64().unwrap();
    assert!((1..=8).contains(&completion), "{reply}");

    // The plain form prints just the folder, and the second run says it had everything.
    let again = Command::new(env!("CARGO_BIN_EXE_modeldesk"))
        .args(["download", REPO, "--include", VARIANT])
        .env("HF_ENDPOINT", &server.url)
        .env("HF_HUB_CACHE", cache.path())
        .output()
        .unwrap();
    assert!(again.status.success());
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim_end(), folder.to_string_lossy());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already on this computer"));
}

#[test]
fn second_run_fetches_nothing_and_a_commit_or_offline_run_asks_nothing() {
    let server = HubServer::start();
    let cache = tempfile::tempdir().unwrap();
    let first = download(&downloader(settings(&server.url, cache.path())), &variant(REPO, "main")).unwrap();
    let before = server.total_requests();

    let again = download(&downloader(settings(&server.url, cache.path())), &variant(REPO, "main")).unwrap();
    assert_eq!((again.folder.as_path(), again.already_cached, again.fetched_bytes), (first.folder.as_path(), true, 0));
    // A branch is asked for once (it may have moved); the commit's listing is in the cache.
    assert_eq!(server.total_requests() - before, 1);
    assert_eq!(server.requests("revision"), 2);

    let commit = server.repo(REPO).commit.clone();
    let pinned = download(&downloader(settings(&server.url, cache.path())), &variant(REPO, &commit)).unwrap();
    assert_eq!((pinned.folder.as_path(), pinned.already_cached), (first.folder.as_path(), true));
    let offline = HubSettings { offline: true, ..settings(&server.url, cache.path()) };
    let offline_outcome = download(&downloader(offline.clone()), &variant(REPO, "main")).unwrap();
    assert_eq!(offline_outcome.folder, first.folder);
    assert_eq!(server.total_requests() - before, 1, "no request for a commit id nor offline");

    let error = download(&downloader(offline), &DownloadRequest::new(REPO, None, Some("cuda/cuda-int4-rtn-block-32")).unwrap()).unwrap_err();
    assert!(matches!(error, HubError::Offline { .. }), "{error:?}");
    assert!(error.to_string().contains("HF_HUB_OFFLINE"), "{error}");
}

#[test]
fn cancelled_download_resumes_where_it_stopped() {
    let server = HubServer::start();
    let cache = tempfile::tempdir().unwrap();
    let repo = server.repo(REPO);
    let data = repo.files.iter().find(|f| f.path.ends_with("model.onnx.data")).unwrap();
    server.switches().stall_after = Some(3_000_000);
    let cancel = AtomicBool::new(false);
    let error = downloader(settings(&server.url, cache.path()))
        .download(&variant(REPO, "main"), &cancel, &mut |p| {
            if p.file_path.ends_with("model.onnx.data") && p.file_done >= 1_000_000 {
                cancel.store(true, Ordering::SeqCst);
            }
        })
        .unwrap_err();
    assert!(matches!(error, HubError::Cancelled), "{error:?}");
    let partial = repo_dir(cache.path(), REPO).join("blobs").join(format!("{}.incomplete", data.sha256));
    let kept = std::fs::metadata(&partial).unwrap().len();
    assert!((1_000_000..=3_000_000).contains(&kept), "kept {kept} bytes");

    server.switches().stall_after = None;
    let served_before = server.cdn_bytes();
    let outcome = download(&downloader(settings(&server.url, cache.path())), &variant(REPO, "main")).unwrap();
    assert_eq!(std::fs::read(outcome.folder.join("model.onnx.data")).unwrap(), *data.content);
    assert!(server.cdn_ranges().contains(&format!("bytes={kept}-")), "{:?}", server.cdn_ranges());
    assert!(!partial.exists());
    // The second run fetched only what was missing: the rest of the weights and tokenizer.json.
    let rest = data.content.len() as u64 - kept + 1_844_408;
    assert_eq!(server.cdn_bytes() - served_before, rest);
}

#[test]
fn connection_cut_mid_file_is_resumed_and_range_ignored_still_correct() {
    let server = HubServer::start();
    let cache = tempfile::tempdir().unwrap();
    server.switches().cut_after = Some(500_000);
    let outcome = download(&downloader(settings(&server.url, cache.path())), &variant(REPO, "main")).unwrap();
    let sizes: u64 = server.repo(REPO).files.iter().filter(|f| f.lfs && f.path.starts_with(VARIANT)).map(|f| f.content.len() as u64).sum();
    assert_eq!(server.cdn_ranges(), ["bytes=500000-"]);
    assert_eq!(server.cdn_bytes(), sizes, "every byte served once");
    for file in server.repo(REPO).files.iter().filter(|f| f.path.starts_with(VARIANT)) {
        let name = file.path.rsplit('/').next().unwrap();
        assert_eq!(std::fs::read(outcome.folder.join(name)).unwrap(), *file.content, "{name}");
    }

    // A CDN that ignores Range: the partial is thrown away and the files still come out right.
    let other = tempfile::tempdir().unwrap();
    server.switches().cut_after = Some(500_000);
    server.switches().ignore_range = true;
    let served_before = server.cdn_bytes();
    let outcome = download(&downloader(settings(&server.url, other.path())), &variant(REPO, "main")).unwrap();
    assert_eq!(server.cdn_bytes() - served_before, sizes + 500_000, "the cut file came again in full");
    for file in server.repo(REPO).files.iter().filter(|f| f.path.starts_with(VARIANT)) {
        let name = file.path.rsplit('/').next().unwrap();
        assert_eq!(std::fs::read(outcome.folder.join(name)).unwrap(), *file.content, "{name}");
    }
}

#[test]
fn corrupted_file_is_detected_and_nothing_is_linked() {
    let server = HubServer::start();
    let cache = tempfile::tempdir().unwrap();
    server.switches().corrupt = true;
    let error = download(&downloader(settings(&server.url, cache.path())), &variant(REPO, "main")).unwrap_err();
    let HubError::Corrupt { path, expected, .. } = &error else { panic!("{error:?}") };
    let graph = server.repo(REPO).files.iter().find(|f| f.path.ends_with("model.onnx")).unwrap();
    assert_eq!((path.as_str(), expected.as_str()), (graph.path.as_str(), graph.sha256.as_str()));
    assert!(error.to_string().contains("corrupt"), "{error}");
    let repo_dir = repo_dir(cache.path(), REPO);
    assert!(!repo_dir.join("blobs").join(&graph.sha256).exists());
    assert!(!repo_dir.join("blobs").join(format!("{}.incomplete", graph.sha256)).exists());
    let snapshot = repo_dir.join("snapshots").join(&server.repo(REPO).commit);
    assert!(std::fs::symlink_metadata(snapshot.join(&graph.path)).is_err(), "no link to a corrupt blob");
}

#[test]
fn gated_repo_explains_the_token_and_the_token_never_reaches_the_cdn() {
    let server = HubServer::start();
    let cache = tempfile::tempdir().unwrap();
    let with_token = |token: Option<&str>| HubSettings { token: token.map(str::to_owned), ..settings(&server.url, cache.path()) };

    let anonymous = download(&downloader(with_token(None)), &variant(GATED_REPO, "main")).unwrap_err();
    assert!(matches!(anonymous, HubError::NeedsToken { .. }), "{anonymous:?}");
    assert!(anonymous.to_string().contains("HF_TOKEN") && anonymous.wants_token(), "{anonymous}");
    let refused = download(&downloader(with_token(Some("hf_wrong"))), &variant(GATED_REPO, "main")).unwrap_err();
    assert!(matches!(refused, HubError::TokenRefused { .. }), "{refused:?}");
    let denied = download(&downloader(with_token(Some(NO_ACCESS_TOKEN))), &variant(GATED_REPO, "main")).unwrap_err();
    assert!(matches!(denied, HubError::AccessDenied { .. }), "{denied:?}");
    assert!(denied.to_string().contains("not in the authorized list"), "{denied}");
    assert_eq!(server.requests("cdn"), 0);

    let outcome = download(&downloader(with_token(Some(GOOD_TOKEN))), &variant(GATED_REPO, "main")).unwrap();
    assert_eq!(outcome.files, 5);
    assert_eq!(server.requests("cdn"), 3);
    assert_eq!(server.tokens_at_cdn(), 0, "the token went to the CDN");
}

#[test]
fn missing_repo_revision_folder_and_space_are_clear_errors() {
    let server = HubServer::start();
    let cache = tempfile::tempdir().unwrap();
    let hub = downloader(settings(&server.url, cache.path()));
    let missing = download(&hub, &variant("test-org/no-such-model", "main")).unwrap_err();
    assert!(matches!(missing, HubError::RepoNotFound { .. }), "{missing:?}");
    assert!(missing.to_string().contains("was not found"), "{missing}");
    let revision = download(&hub, &variant(REPO, "v9")).unwrap_err();
    assert!(matches!(revision, HubError::RevisionNotFound { .. }), "{revision:?}");
    let folder = download(&hub, &DownloadRequest::new(REPO, None, Some("cpu_and_mobile/nope")).unwrap()).unwrap_err();
    assert!(matches!(folder, HubError::FolderNotFound { .. }), "{folder:?}");
    let huge = download(&hub, &variant(HUGE_REPO, "main")).unwrap_err();
    assert!(matches!(huge, HubError::NoSpace { .. }), "{huge:?}");
    assert!(huge.to_string().contains("not enough disk space"), "{huge}");
    assert_eq!(server.requests("resolve") + server.requests("cdn"), 0, "no file was requested");
}

#[test]
fn no_network_is_explained_and_a_cached_copy_stands_in() {
    let server = HubServer::start();
    let cache = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let unreachable = format!("http://127.0.0.1:{port}");
    let error = download(&downloader(settings(&unreachable, cache.path())), &variant(REPO, "main")).unwrap_err();
    assert!(matches!(error, HubError::NoNetwork { .. }), "{error:?}");
    assert!(error.to_string().contains("cannot reach the Hub"), "{error}");

    let online = download(&downloader(settings(&server.url, cache.path())), &variant(REPO, "main")).unwrap();
    let offline = download(&downloader(settings(&unreachable, cache.path())), &variant(REPO, "main")).unwrap();
    assert_eq!((offline.folder, offline.already_cached), (online.folder, true));
}

#[test]
fn without_symlinks_files_live_in_the_snapshot_and_are_reused() {
    let server = HubServer::start();
    let cache = tempfile::tempdir().unwrap();
    let no_links = HubSettings { symlinks: false, ..settings(&server.url, cache.path()) };
    let outcome = download(&downloader(no_links.clone()), &variant(REPO, "main")).unwrap();
    for file in server.repo(REPO).files.iter().filter(|f| f.path.starts_with(VARIANT)) {
        let path = outcome.folder.join(file.path.rsplit('/').next().unwrap());
        assert!(std::fs::symlink_metadata(&path).unwrap().file_type().is_file(), "{path:?}");
        assert_eq!(std::fs::read(&path).unwrap(), *file.content);
    }
    assert!(files_under(&repo_dir(cache.path(), REPO).join("blobs")).is_empty(), "new blobs are moved into the snapshot");
    let before = server.requests("resolve");
    let again = download(&downloader(no_links), &variant(REPO, "main")).unwrap();
    assert!(again.already_cached);
    assert_eq!(server.requests("resolve"), before);
}

#[test]
fn service_reports_progress_cancels_and_resumes() {
    let server = HubServer::start();
    let cache = tempfile::tempdir().unwrap();
    let wakes = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&wakes);
    let mut service = DownloadService::spawn_with_policy(settings(&server.url, cache.path()), quick(), Arc::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    }));
    server.switches().stall_after = Some(2_000_000);
    let first = service.start(variant(REPO, "main"));
    let data = server.repo(REPO).files.iter().find(|f| f.path.ends_with("model.onnx.data")).unwrap();
    let partial = repo_dir(cache.path(), REPO).join("blobs").join(format!("{}.incomplete", data.sha256));
    let mut events = Vec::new();
    for _ in 0..600 {
        // The server stalls after 2 MB: cancel once 1 MB of the weights is on disk.
        if std::fs::metadata(&partial).is_ok_and(|m| m.len() >= 1_000_000) {
            service.cancel(first);
        }
        let Some(event) = service.recv_timeout(Duration::from_millis(50)) else { continue };
        let end = matches!(event, DownloadEvent::Cancelled { .. } | DownloadEvent::Failed { .. } | DownloadEvent::Finished { .. });
        events.push(event);
        if end {
            break;
        }
    }
    assert!(matches!(events.first(), Some(DownloadEvent::Planned { plan, .. }) if plan.files.len() == 5), "{:?}", events.first());
    assert!(matches!(events.last(), Some(DownloadEvent::Cancelled { id }) if *id == first), "{:?}", events.last());
    // Every event is followed by a wake; the last one may land just after its event arrived.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while wakes.load(Ordering::SeqCst) < events.len() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(wakes.load(Ordering::SeqCst) >= events.len(), "{} wakes for {} events", wakes.load(Ordering::SeqCst), events.len());

    server.switches().stall_after = None;
    let second = service.start(variant(REPO, "main"));
    // A queued download cancelled before it starts ends without a request.
    let queued = service.start(variant(REPO, "main"));
    service.cancel(queued);
    let mut outcome = None;
    let mut queued_cancelled = false;
    while outcome.is_none() || !queued_cancelled {
        match service.recv_timeout(Duration::from_secs(30)).expect("an event within 30 s") {
            DownloadEvent::Finished { id, outcome: done } if id == second => outcome = Some(done),
            DownloadEvent::Cancelled { id } if id == queued => queued_cancelled = true,
            DownloadEvent::Progress { progress, rate, .. } => assert!(progress.done <= progress.total && rate.bytes_per_second >= 0.0),
            DownloadEvent::Planned { id, .. } => assert_eq!(id, second),
            other => panic!("{other:?}"),
        }
    }
    let outcome = outcome.unwrap();
    assert_eq!(outcome.files, 5);
    assert!(server.cdn_ranges().iter().any(|r| r != "bytes=0-"), "the second run resumed: {:?}", server.cdn_ranges());
    drop(service);
}
