//! The Registry view and the Publish dialog driven through egui_kittest against a real
//! `mlflow server` 3.17.2: connect by typing the tracking URI, see a pushed model, filter by
//! typing, read a version's alias, tags and description, pull it (it opens in the library), then
//! publish the open package from the Model view and find the new version through the REST API.

mod support;

use std::{
    path::{Path, PathBuf},
    sync::atomic::AtomicBool,
    time::{Duration, Instant},
};

use egui::accesskit::Role;
use egui_kittest::{Harness, kittest::Queryable as _};
use modeldesk::{
    app::{StartupOptions, Tab},
    app_dirs::AppDirs,
    gui::ModelDeskApp,
    mlflow::create::{CreateOptions, Task, create_from_onnx},
    runtime::Candidates,
    tracking::{
        TrackingClient,
        config::{Auth, Connection, TrackingSettings},
        push::{PushRequest, push},
        types::KeyValue,
    },
};
use support::mlflow_server::MlflowServer;

fn app(home: &Path) -> Harness<'static, ModelDeskApp> {
    let startup = StartupOptions { open: None, candidates: Candidates::discover(None), dirs: Some(AppDirs::under(home)) };
    Harness::builder().with_size([1280.0, 900.0]).build_eframe(|cc| ModelDeskApp::new(cc, startup))
}

/// Steps until `done` holds; the network and the server may be slow on a busy machine.
fn step_until(harness: &mut Harness<'_, ModelDeskApp>, what: &str, done: impl Fn(&Harness<'_, ModelDeskApp>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done(harness) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
        harness.step();
    }
}

fn idle(harness: &mut Harness<'_, ModelDeskApp>) {
    harness.run_steps(5);
    step_until(harness, "background work to finish", |h| !h.state().state.is_busy());
    harness.run_steps(3);
}

fn type_into(harness: &mut Harness<'_, ModelDeskApp>, label: &str, text: &str) {
    harness.get_by_role_and_label(Role::TextInput, label).focus();
    harness.step();
    harness.get_by_role_and_label(Role::TextInput, label).type_text(text);
    harness.run_steps(3);
}

fn create_package(out: &Path) {
    let options = CreateOptions { task: Task::Prompt, name: None, python_version: Some("3.11.7".into()) };
    create_from_onnx(&support::tiny_phi3(), out, &options, &mut |_| {}, &AtomicBool::new(false)).expect("create the package");
}

#[test]
fn the_registry_view_connects_searches_pulls_and_publishes() {
    let server = MlflowServer::shared();
    let scratch = tempfile::tempdir().unwrap();
    let package = scratch.path().join("package");
    create_package(&package);
    let client = TrackingClient::new(Connection::new(&server.url, Auth::Anonymous).unwrap()).unwrap();
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let (wanted, other, published) = (format!("gui-{tag}"), format!("other-{tag}"), format!("published-{tag}"));
    for name in [&wanted, &other] {
        let request = PushRequest {
            folder: package.clone(),
            name: name.clone(),
            experiment: None,
            aliases: vec!["champion".into()],
            tags: vec![KeyValue::new("team", "desk")],
            description: Some("pushed by the GUI test".into()),
        };
        push(&client, &request, &mut |_| {}).unwrap_or_else(|e| panic!("push {name}: {e}"));
    }

    let home = scratch.path().join("home");
    let mut harness = app(&home);
    idle(&mut harness);
    harness.get_by_role_and_label(Role::Button, "Registry").click();
    harness.run_steps(3);
    type_into(&mut harness, "Tracking URI", &server.url);
    harness.get_by_role_and_label(Role::Button, "Connect").click();
    idle(&mut harness);
    assert!(harness.query_by_label_contains("Connected to http://127.0.0.1").is_some(), "the view says it is connected");
    // The URI is remembered in the settings file, with no secret in it.
    let settings = TrackingSettings::load(&AppDirs::under(&home).config).unwrap();
    assert_eq!(settings.tracking_uri.as_deref(), Some(server.url.as_str()));
    assert_eq!((settings.username, settings.token_in_keyring), (None, false));

    // Both pushed models are listed; typing filters them.
    assert!(harness.query_by_label(&format!("{wanted} · v1")).is_some(), "{wanted} is listed");
    assert!(harness.query_by_label(&format!("{other} · v1")).is_some(), "{other} is listed");
    type_into(&mut harness, "Search", &wanted);
    idle(&mut harness);
    assert!(harness.query_by_label(&format!("{wanted} · v1")).is_some(), "{wanted} matches the search");
    assert!(harness.query_by_label(&format!("{other} · v1")).is_none(), "{other} is filtered out");

    // The version: alias, status, tags, description.
    harness.get_by_label(&format!("{wanted} · v1")).click();
    idle(&mut harness);
    assert!(harness.query_by_label("Version 1").is_some());
    assert!(harness.query_by_label("@champion").is_some(), "the alias shows on its version");
    assert!(harness.query_by_label("READY").is_some());
    assert!(harness.query_by_label("team=desk").is_some(), "tags show");
    assert!(harness.query_by_label("pushed by the GUI test").is_some(), "the description shows");

    // Pull: the folder lands in the cache under the app's data dir and opens like any folder.
    harness.get_by_role_and_label(Role::Button, "Pull").click();
    idle(&mut harness);
    let selected: PathBuf = harness.state().state.persisted.selected.clone().expect("the pulled model is selected");
    assert!(selected.starts_with(AppDirs::under(&home).data.join("mlflow")), "pulled into the cache: {}", selected.display());
    assert!(selected.join("MLmodel").is_file() && selected.join("registered_model_meta").is_file());
    assert!(!harness.state().state.registry.visible, "the model view replaces the registry view");
    assert!(harness.query_by_label_contains("MLflow model").is_some(), "the library shows the pulled package");

    // Publish it from the Model view under a new name with an alias.
    harness.state_mut().state.tab = Tab::Model;
    harness.run_steps(3);
    harness.get_by_label("Publish to MLflow…").click();
    harness.run_steps(3);
    {
        let dialog = harness.state_mut().state.registry.publish.as_mut().expect("the publish dialog is open");
        dialog.name = published.clone();
    }
    type_into(&mut harness, "Aliases", "beta");
    harness.get_by_role_and_label(Role::Button, "Publish").click();
    idle(&mut harness);
    let outcome = harness.state().state.registry.publish.as_ref().and_then(|d| d.outcome.clone()).expect("the push finished");
    let pushed = outcome.unwrap_or_else(|e| panic!("publish failed: {e}"));
    assert!(harness.query_by_label(&format!("Registered {published} version 1")).is_some(), "the dialog reports the version");
    assert!(harness.query_by_label("done · Uploading the files").is_some(), "the steps are listed");
    assert_eq!(pushed.version, "1");
    // What MLflow itself now holds.
    let version = client.get_model_version(&published, "1").unwrap();
    assert_eq!(version.status, "READY");
    assert_eq!(client.version_by_alias(&published, "beta").unwrap().version, "1");
    assert_eq!(version.source, format!("models:/{}", pushed.model_id.expect("an MLflow 3 server has logged models")));
    harness.get_by_label("Close").click();
    idle(&mut harness);
    assert!(harness.state().state.registry.publish.is_none());
}
