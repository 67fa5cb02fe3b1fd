//! The "Get a model" view driven through egui_kittest against the Hub-protocol server of
//! tests/support/hub_server.rs: the catalog, a download with its progress bar that is cancelled,
//! resumed and ends in the library, models already in the cache, and a gated model's error.

mod support;

use std::path::Path;

use egui::accesskit::Role;
use egui_kittest::{
    Harness,
    kittest::{NodeT as _, Queryable as _},
};
use modeldesk::{
    gui::ModelDeskApp,
    hub::{DownloadRequest, Downloader, HubSettings},
};
use support::{
    gui::{app_sized, idle, step_until},
    hub_server::{CATALOG_REPO, HubServer, REPO, VARIANT},
};

/// Settings as `HF_ENDPOINT` and `HF_HUB_CACHE` would give them, without touching this
/// process's environment (tests run in parallel).
fn hub_settings(server: &HubServer, cache: &Path) -> HubSettings {
    let cache = cache.to_string_lossy().into_owned();
    let lookup = |name: &str| match name {
        "HF_ENDPOINT" => Some(server.url.clone()),
        "HF_HUB_CACHE" => Some(cache.clone()),
        _ => None,
    };
    HubSettings::from_lookup(lookup, Some(Path::new("/nonexistent-home"))).unwrap()
}

/// The app with the Hub settings of a test server, the Get a model view open.
fn app_in_view(home: &Path, settings: HubSettings) -> Harness<'static, ModelDeskApp> {
    let mut harness = app_sized(home, [1280.0, 1100.0]);
    harness.state_mut().state.get_model.use_settings(settings);
    idle(&mut harness);
    open_view(&mut harness);
    harness
}

/// Opens the view the way a user does, from the welcome screen, and waits for the cache scan.
fn open_view(harness: &mut Harness<'_, ModelDeskApp>) {
    harness.get_all_by_label("Get a model…").next().expect("a Get a model button").click();
    idle(harness);
    assert!(harness.query_by_label("Get a model").is_some(), "the view is showing");
}

/// The download progress bar's label (bytes, speed, time left), if one is showing.
fn progress_text(harness: &Harness<'_, ModelDeskApp>) -> Option<String> {
    harness.query_all_by_role(Role::ProgressIndicator).find_map(|node| node.accesskit_node().label().filter(|label| label.contains(" of ")))
}

#[test]
fn catalog_download_shows_progress_cancels_resumes_and_opens_in_the_library() {
    let server = HubServer::start();
    let cache = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let mut harness = app_in_view(home.path(), hub_settings(&server, cache.path()));

    // Four models, each with its CPU int4 variant preselected, its size and what it needs.
    for title in ["Phi-3 mini 4k instruct", "Phi-3 mini 128k instruct", "Phi-3.5 mini instruct", "Phi-4 mini instruct"] {
        assert!(harness.query_by_label(title).is_some(), "{title} is in the catalog");
    }
    let preselected = harness.query_all_by(|node| node.role() == Role::ComboBox && node.value().as_deref() == Some("CPU, int4")).count();
    assert_eq!(preselected, 4);
    assert_eq!(harness.query_all_by_label("needs CPU").count(), 4);
    assert!(harness.query_by_label("about 2.7 GB").is_some());
    assert!(harness.query_by_label("Already on this computer").is_none());
    assert_eq!(server.total_requests(), 0, "showing the catalog asks the Hub nothing");
    // Where downloads go and how much room is there, before anything is fetched.
    assert!(harness.query_by_label_contains(&format!("Hugging Face cache at {}", cache.path().display())).is_some());
    assert!(harness.query_by_label_contains("free there.").is_some(), "the free disk space is shown");

    // The server sends 2 MB of each large file and then stalls: the bar shows, then Cancel.
    server.switches().stall_after = Some(2_000_000);
    harness.get_all_by_label("Download").next().expect("a Download button").click();
    let weights = server.repo(CATALOG_REPO).files.iter().find(|f| f.path.ends_with("model.onnx.data")).unwrap();
    let partial = cache.path().join(format!("models--{}/blobs/{}.incomplete", CATALOG_REPO.replace('/', "--"), weights.sha256));
    step_until(&mut harness, "the weights to stall at 2 MB", |h| {
        let on_disk = std::fs::metadata(&partial).map_or(0, |m| m.len());
        on_disk == 2_000_000 && h.state().state.get_model.download.as_ref().and_then(|d| d.progress.as_ref()).is_some_and(|p| p.file_index == 2)
    });
    harness.run_steps(2);
    let text = progress_text(&harness).expect("a progress bar with bytes");
    assert!(text.contains(" of 12 MB (") && text.contains("/s"), "{text}");
    assert!(harness.query_by_label_contains("file 3 of 5: model.onnx.data").is_some());
    harness.get_by_label("Cancel").click();
    step_until(&mut harness, "the cancel to land", |h| h.query_by_label("Resume").is_some());
    assert!(harness.query_by_label_contains("Cancelled").is_some());
    assert!(harness.state().state.persisted.library.is_empty());

    // Resume: the partial file is continued, the folder joins the library and opens.
    server.switches().stall_after = None;
    harness.get_by_label("Resume").click();
    idle(&mut harness);
    let folder = cache
        .path()
        .join(format!("models--{}", CATALOG_REPO.replace('/', "--")))
        .join("snapshots")
        .join(&server.repo(CATALOG_REPO).commit)
        .join(VARIANT);
    let state = &harness.state().state;
    assert_eq!(state.persisted.library.iter().map(|e| e.path.clone()).collect::<Vec<_>>(), [folder.clone()]);
    assert_eq!(state.persisted.selected.as_ref(), Some(&folder));
    assert!(!state.get_model.visible, "the view closes on the opened model");
    assert_eq!(server.cdn_ranges(), ["bytes=2000000-"], "resumed, not restarted");
    assert!(harness.query_by_label_contains("Phi-3 mini 4k instruct downloaded").is_some());
    assert!(harness.query_by_label_contains("Phi-3 ONNX folder ·").is_some(), "the library shows the new model");
}

#[test]
fn models_already_in_the_cache_open_without_a_request() {
    let server = HubServer::start();
    let cache = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    // One catalog model and one other model, downloaded before (as Python would).
    let downloader = Downloader::new(hub_settings(&server, cache.path())).unwrap();
    let no_cancel = std::sync::atomic::AtomicBool::new(false);
    let catalog = downloader.download(&DownloadRequest::new(CATALOG_REPO, None, Some(VARIANT)).unwrap(), &no_cancel, &mut |_| {}).unwrap();
    let other = downloader.download(&DownloadRequest::new(REPO, None, Some(VARIANT)).unwrap(), &no_cancel, &mut |_| {}).unwrap();
    let before = server.total_requests();

    let mut harness = app_in_view(home.path(), hub_settings(&server, cache.path()));
    assert_eq!(harness.query_all_by_label("Already on this computer").count(), 1);
    assert!(harness.query_by_label("Also in your Hugging Face cache").is_some());
    assert!(harness.query_by_label(&format!("{REPO} · {VARIANT}")).is_some());
    assert!(harness.query_by_label(&format!("{CATALOG_REPO} · {VARIANT}")).is_none(), "a catalog model is not listed twice");
    assert_eq!(server.total_requests(), before, "the scan reads the cache only");

    harness.get_by_label("Add to library").click();
    idle(&mut harness);
    assert_eq!(harness.state().state.persisted.selected.as_ref(), Some(&other.folder));
    open_view(&mut harness);
    assert!(harness.query_by_label("in the library").is_some());
    harness.get_by_label("Open").click();
    idle(&mut harness);
    let state = &harness.state().state;
    assert_eq!(state.persisted.library.iter().map(|e| e.path.clone()).collect::<Vec<_>>(), [other.folder.clone(), catalog.folder.clone()]);
    assert_eq!(state.persisted.selected.as_ref(), Some(&catalog.folder));
    assert_eq!(server.total_requests(), before);
}

#[test]
fn a_gated_model_explains_hf_token() {
    let server = HubServer::start();
    let cache = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let mut harness = app_in_view(home.path(), hub_settings(&server, cache.path()));
    // The second entry (Phi-3 mini 128k) is gated on this server.
    harness.get_all_by_label("Download").nth(1).expect("a second Download button").click();
    idle(&mut harness);
    assert!(harness.query_by_label_contains("is gated or private, so the Hub wants a token").is_some());
    assert!(harness.query_by_label_contains("set it in the HF_TOKEN environment variable").is_some(), "the error names HF_TOKEN");
    assert!(harness.query_by_label_contains("Create a Hugging Face token").is_some());
    assert!(harness.query_by_label("Try again").is_some());
    assert_eq!(server.requests("cdn"), 0);
    assert!(harness.state().state.persisted.library.is_empty());
}
