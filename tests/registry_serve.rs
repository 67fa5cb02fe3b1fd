//! "Run with MLflow": ModelDesk starts `mlflow models serve` for a pyfunc `ChatModel` package
//! written by this test (no torch), reporting the wait, chats with it through `/invocations`
//! with the `llm/v1/chat` body, reads its usage, and stops it when the handle is dropped. A folder without MLmodel and
//! a package that cannot load are refused with the server's own words.

mod support;

use std::{sync::atomic::AtomicBool, time::Duration};

use modeldesk::{
    remote::{
        chat::{ChatRequest, Endpoint, Usage, chat},
        serve::{ModelServer, ServeError, ServeOptions},
    },
    transfer::{HttpOptions, client},
};

fn options(model: &std::path::Path) -> ServeOptions {
    ServeOptions { python: Some(support::reference_python()), start_timeout: Duration::from_secs(300), ..ServeOptions::new(model) }
}

#[test]
fn run_with_mlflow_chats_with_a_chat_model_and_stops_on_drop() {
    let scratch = tempfile::tempdir().unwrap();
    let package = support::mlflow_server::echo_chat_package(scratch.path());
    let cancel = AtomicBool::new(false);
    let mut reports = Vec::new();
    let server = ModelServer::start_with_progress(&options(&package), &cancel, &mut |p| reports.push(p)).unwrap_or_else(|e| panic!("{e}"));
    // The wait is reported (the first report at once), for the server's own port.
    assert!(!reports.is_empty(), "no progress was reported");
    assert!(reports.iter().all(|p| p.port == server.port), "{reports:?}");
    assert!(reports.windows(2).all(|w| w[0].waited <= w[1].waited), "{reports:?}");
    let http = client(&HttpOptions { connect_timeout: Duration::from_secs(5), read_timeout: Duration::from_secs(120), insecure_tls: false }).unwrap();
    let endpoint = Endpoint::MlflowInvocations { url: server.invocations_url(), token: None };
    let request = ChatRequest {
        messages: vec![("system".into(), "Be brief.".into()), ("user".into(), "Hello there".into())],
        max_tokens: Some(7),
        ..Default::default()
    };
    let reply = chat(&http, &endpoint, &request, &cancel).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reply.text, "echo: Hello there (7)");
    assert_eq!(reply.usage, Some(Usage { prompt_tokens: 2, completion_tokens: 2, total_tokens: 4 }));
    assert_eq!(reply.finish_reason.as_deref(), Some("stop"));

    let port = server.port;
    drop(server);
    assert!(support::mlflow_server::http_get(port, "/ping").is_none(), "the scoring server still answers after drop");
}

#[test]
fn folders_that_cannot_be_served_are_refused_with_the_reason() {
    let scratch = tempfile::tempdir().unwrap();
    let cancel = AtomicBool::new(false);
    match ModelServer::start(&options(scratch.path()), &cancel) {
        Err(ServeError::NotAModel { .. }) => {}
        Err(other) => panic!("expected NotAModel, got {other}"),
        Ok(_) => panic!("an empty folder was served"),
    }
    // A package whose code file is broken: MLflow's own error reaches the caller.
    let package = support::mlflow_server::echo_chat_package(scratch.path());
    std::fs::write(package.join("echo_chat.py"), "import mlflow\nraise RuntimeError('broken on purpose')\n").unwrap();
    match ModelServer::start(&options(&package), &cancel) {
        Err(ServeError::Exited { stderr, .. }) => assert!(stderr.contains("broken on purpose"), "{stderr}"),
        Err(other) => panic!("expected the server to exit, got {other}"),
        Ok(_) => panic!("a broken package was served"),
    }
}
