//! The Registry view and the Publish dialog driven through egui_kittest against a real
//! `mlflow server` 3.17.2: connect by typing the tracking URI, see a pushed model, filter by
//! typing, read a version's alias, tags and description, pull it (it opens in the library), then
//! publish the open package from the Model view and find the new version through the REST API.

mod support;

use std::path::{Path, PathBuf};

use egui::accesskit::Role;
use egui_kittest::{Harness, kittest::Queryable as _};
use modeldesk::{
    app::Tab,
    app_dirs::AppDirs,
    gui::ModelDeskApp,
    mlflow::create::Task,
    tracking::{
        TrackingClient,
        config::{Auth, Connection, TrackingSettings},
        push::{PushRequest, push},
        types::KeyValue,
    },
};
use support::{gui::{idle, type_into}, mlflow_server::MlflowServer};

fn app(home: &Path) -> Harness<'static, ModelDeskApp> {
    support::gui::app_sized(home, [1280.0, 900.0])
}


#[test]
fn the_registry_view_connects_searches_pulls_and_publishes() {
    let server = MlflowServer::shared();
    let scratch = tempfile::tempdir().unwrap();
    let package = scratch.path().join("package");
    support::gui::create_package(&package, Task::Prompt);
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

/// Pushes `folder` as `name` into `experiment`; returns what was registered.
fn push_into(client: &TrackingClient, folder: &Path, name: &str, experiment: &str) -> modeldesk::tracking::push::Pushed {
    let request = PushRequest {
        folder: folder.to_path_buf(),
        name: name.to_owned(),
        experiment: Some(experiment.to_owned()),
        aliases: vec!["champion".into()],
        tags: Vec::new(),
        description: None,
    };
    push(client, &request, &mut |_| {}).unwrap_or_else(|e| panic!("push {name}: {e}"))
}

/// Files and bytes of a folder, relative paths sorted (MLflow's `registered_model_meta` left out:
/// a pull adds it).
fn tree(folder: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = walkdir::WalkDir::new(folder)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file() && e.file_name() != "registered_model_meta")
        .map(|e| (e.path().strip_prefix(folder).unwrap().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect();
    files.sort();
    files
}

fn pulled_folder(harness: &Harness<'_, ModelDeskApp>) -> PathBuf {
    harness.state().state.persisted.selected.clone().expect("the pulled model is selected")
}

/// Types a model URI in the Registry view and pulls it; returns the folder it opened.
fn pull_typed(harness: &mut Harness<'_, ModelDeskApp>, uri: &str) -> PathBuf {
    harness.get_by_role_and_label(Role::Button, "Registry").click();
    harness.run_steps(3);
    harness.state_mut().state.registry.browse.uri.clear();
    type_into(harness, "Model URI", uri);
    harness.get_by_role_and_label(Role::Button, "Pull URI").click();
    idle(harness);
    assert!(!harness.state().state.registry.visible, "{uri} was pulled and opened");
    pulled_folder(harness)
}

#[test]
fn experiments_runs_and_logged_models_are_browsed_page_by_page_and_any_typed_uri_pulls() {
    let server = MlflowServer::shared();
    let fixture = support::shared().join("fixtures/mlflow-examples/v3-pyfunc-chatmodel");
    let client = TrackingClient::new(Connection::new(&server.url, Auth::Anonymous).unwrap()).unwrap();
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let experiment = format!("browse-{tag}");
    // Three logged models and runs, and a fourth run whose files are run artifacts (an MLflow
    // 2.x-style push through the proxy, into the same experiment).
    let logged: Vec<_> = (0..3).map(|i| push_into(&client, &fixture, &format!("browse-{tag}-{i}"), &experiment)).collect();
    let proxy = support::mlflow_server::Mlflow2Proxy::start(server);
    let old_style_client = TrackingClient::new(Connection::new(&proxy.url, Auth::Anonymous).unwrap()).unwrap();
    let old_style = push_into(&old_style_client, &fixture, &format!("browse-{tag}-runs"), &experiment);
    proxy.stop();
    assert_eq!(old_style.model_id, None, "the proxy pushed run artifacts");

    let scratch = tempfile::tempdir().unwrap();
    let home = scratch.path().join("home");
    let mut harness = app(&home);
    idle(&mut harness);
    // Two rows per page, so every list has a second page to ask for.
    harness.state_mut().state.registry.page_size = Some(2);
    harness.get_by_role_and_label(Role::Button, "Registry").click();
    harness.run_steps(3);
    type_into(&mut harness, "Tracking URI", &server.url);
    harness.get_by_role_and_label(Role::Button, "Connect").click();
    idle(&mut harness);
    harness.get_by_label("Experiments").click();
    idle(&mut harness);
    type_into(&mut harness, "Experiment", tag);
    idle(&mut harness);
    let experiment_id = client.experiment_by_name(&experiment).unwrap().expect("the experiment exists").experiment_id;
    harness.get_by_label(&format!("{experiment} · id {experiment_id}")).click();
    idle(&mut harness);

    // Runs: two, then all four after "More runs".
    assert!(harness.query_by_label(&format!("Runs of {experiment} (2+)")).is_some(), "the first page of runs");
    harness.get_by_role_and_label(Role::Button, "More runs").click();
    idle(&mut harness);
    assert!(harness.query_by_label(&format!("Runs of {experiment} (4)")).is_some(), "every run after the second page");
    assert!(harness.query_by_role_and_label(Role::Button, "More runs").is_none(), "no third page");
    // Logged models: two, then three.
    assert!(harness.query_by_label("Logged models (2+)").is_some(), "the first page of logged models");
    harness.get_by_role_and_label(Role::Button, "More logged models").click();
    idle(&mut harness);
    assert!(harness.query_by_label("Logged models (3)").is_some(), "every logged model");
    for pushed in &logged {
        assert!(harness.query_by_label_contains(pushed.model_id.as_deref().unwrap()).is_some(), "{pushed:?} is listed");
    }

    // A run's folders, pulled as runs:/<run>/<folder>.
    harness.get_by_label_contains(&format!("modeldesk-push-browse-{tag}-runs ·")).click();
    idle(&mut harness);
    harness.get_by_role_and_label(Role::Button, "Pull model/").click();
    idle(&mut harness);
    let from_run = pulled_folder(&harness);
    assert!(from_run.starts_with(AppDirs::under(&home).data.join("mlflow")), "{}", from_run.display());
    assert!(from_run.to_string_lossy().contains(&old_style.run_id), "keyed by the run: {}", from_run.display());
    assert_eq!(tree(&from_run), tree(&fixture), "the run's folder arrived byte for byte");

    // Typed URIs: a logged model's id and an alias.
    let model_id = logged[1].model_id.clone().unwrap();
    let by_id = pull_typed(&mut harness, &format!("models:/{model_id}"));
    assert!(by_id.to_string_lossy().contains(&model_id), "{}", by_id.display());
    assert_eq!(tree(&by_id), tree(&fixture));
    let by_alias = pull_typed(&mut harness, &format!("models:/browse-{tag}-2@champion"));
    assert_eq!(tree(&by_alias), tree(&fixture));
    let meta = std::fs::read_to_string(by_alias.join("registered_model_meta")).unwrap();
    assert!(meta.contains(&format!("model_name: browse-{tag}-2")), "{meta}");
    // A URI that is none is explained.
    harness.get_by_role_and_label(Role::Button, "Registry").click();
    harness.run_steps(3);
    harness.state_mut().state.registry.browse.uri.clear();
    type_into(&mut harness, "Model URI", "models:/only-a-name");
    harness.get_by_role_and_label(Role::Button, "Pull URI").click();
    idle(&mut harness);
    assert!(harness.query_by_label_contains("Cannot pull models:/only-a-name").is_some(), "a bad URI is explained");
}
