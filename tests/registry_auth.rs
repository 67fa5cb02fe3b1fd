//! Connection failures say what went wrong: a basic-auth MLflow server (`--app-name
//! basic-auth`) refuses wrong credentials (401) and a read-only user's push (403, naming the
//! step), accepts the admin; an unreachable server is reported as such. Also checks the test
//! servers themselves start, answer and stop.

mod support;

use std::{path::Path, process::Command};

use modeldesk::tracking::{
    TrackingClient, TrackingError,
    config::{Auth, Connection},
};
use serde_json::json;
use support::mlflow_server::{ADMIN_USER, Flavour, MlflowServer, free_port, http_get};

fn cli(home: &Path, tracking_uri: &str, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_modeldesk"));
    command.arg("mlflow").args(args).args(["--tracking-uri", tracking_uri]).env("MODELDESK_HOME", home);
    for variable in ["MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"] {
        command.env_remove(variable);
    }
    command.envs(env.iter().copied()).output().expect("run modeldesk mlflow")
}

#[test]
fn test_servers_start_answer_and_stop_when_dropped() {
    let open = MlflowServer::start(Flavour::Open);
    assert_eq!(http_get(open.port, "/version").map(|(s, b)| (s, b.trim().to_owned())), Some((200, "3.17.2".into())));
    let port = open.port;
    drop(open);
    assert!(http_get(port, "/health").is_none(), "the dropped server still answers");
}

#[test]
fn wrong_credentials_and_missing_permissions_are_named() {
    let server = MlflowServer::shared_basic_auth();
    assert_eq!(http_get(server.port, "/version").map(|(s, _)| s), Some(401), "the server wants credentials");
    let home = tempfile::tempdir().unwrap();

    // No credentials, a wrong password, a token: all 401, and the message says what to set.
    for env in [vec![], vec![("MLFLOW_TRACKING_USERNAME", ADMIN_USER), ("MLFLOW_TRACKING_PASSWORD", "wrong-password")], vec![("MLFLOW_TRACKING_TOKEN", "a-token")]] {
        let output = cli(home.path(), &server.url, &env, &["list"]);
        assert!(!output.status.success(), "{env:?}");
        let message = String::from_utf8_lossy(&output.stderr);
        assert!(message.contains("401") && message.contains("MLFLOW_TRACKING_USERNAME"), "{env:?}: {message}");
    }

    // The admin may list.
    let admin = [("MLFLOW_TRACKING_USERNAME", ADMIN_USER), ("MLFLOW_TRACKING_PASSWORD", server.admin_password.as_str())];
    let output = cli(home.path(), &server.url, &admin, &["list", "--json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    // A user with the default READ permission may not change the admin's registered model nor
    // log to the admin's experiment: 403, and the failing step is named.
    let admin_client = TrackingClient::new(
        Connection::new(&server.url, Auth::Basic { username: ADMIN_USER.into(), password: server.admin_password.clone() }).unwrap(),
    )
    .unwrap();
    let password = "reader-password-123";
    let _: serde_json::Value = admin_client
        .post("user reader", "/api/2.0/mlflow/users/create", &json!({"username": "reader", "password": password}))
        .unwrap();
    admin_client.ensure_registered_model("admin-model", None).unwrap();
    let reader_client = TrackingClient::new(Connection::new(&server.url, Auth::Basic { username: "reader".into(), password: password.into() }).unwrap()).unwrap();
    match reader_client.ensure_registered_model("admin-model", Some("changed by a reader")) {
        Err(TrackingError::Forbidden { .. }) => {}
        other => panic!("expected a 403, got {other:?}"),
    }
    let package = home.path().join("package");
    let created = Command::new(env!("CARGO_BIN_EXE_modeldesk"))
        .args(["create", "--task", "prompt", "--from-onnx"])
        .arg(support::tiny_phi3())
        .arg("--out")
        .arg(&package)
        .output()
        .unwrap();
    assert!(created.status.success());
    let reader = [("MLFLOW_TRACKING_USERNAME", "reader"), ("MLFLOW_TRACKING_PASSWORD", password)];
    let output = cli(home.path(), &server.url, &reader, &["push", package.to_str().unwrap(), "--name", "admin-model"]);
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("permission denied") && message.contains("failed"), "{message}");
}

#[test]
fn an_unreachable_server_is_reported_as_unreachable() {
    let home = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}", free_port());
    let output = cli(home.path(), &url, &[], &["list"]);
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("cannot reach") && message.contains(&url), "{message}");
    let output = cli(home.path(), "file:///tmp/mlruns", &[], &["list"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("local folder"), "{}", String::from_utf8_lossy(&output.stderr));
}
