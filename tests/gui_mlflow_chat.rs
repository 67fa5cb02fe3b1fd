//! The window's chat and MLflow, driven through egui_kittest against real servers: chat turns
//! recorded as traces on a live `mlflow server` 3.17.2 (read back with `mlflow.search_traces()`),
//! a trace that cannot be delivered dropped with one notice, "Run with MLflow" for a pyfunc
//! `ChatModel` package written by MLflow itself (no torch), and chat with an MLflow scoring URL
//! and an OpenAI-compatible URL typed by the user.

mod support;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use egui::accesskit::Role;
use egui_kittest::{Harness, kittest::Queryable as _};
use modeldesk::{
    app::{Intent, RemoteStatus},
    app_dirs::AppDirs,
    gui::ModelDeskApp,
    tracking::{
        TrackingClient,
        config::{Auth, Connection, TrackingSettings},
    },
};
use serde_json::{Value, json};
use support::{
    gui::{drop_folder, idle, step_until, type_into},
    mlflow_server::{Mlflow2Proxy, MlflowServer, ScoringServer, echo_chat_package, http_get},
};

fn app(home: &Path) -> Harness<'static, ModelDeskApp> {
    support::gui::app_sized(home, [1280.0, 900.0])
}

fn open_folder(harness: &mut Harness<'_, ModelDeskApp>, path: &Path) {
    drop_folder(harness, path);
    idle(harness);
}

fn message_count(harness: &Harness<'_, ModelDeskApp>) -> usize {
    harness.state().state.current_conversation().map_or(0, |c| c.messages.len())
}

/// Types a message and sends it with Enter; waits for the whole reply.
fn send(harness: &mut Harness<'_, ModelDeskApp>, text: &str) {
    let before = message_count(harness);
    harness.get_by_role(Role::MultilineTextInput).focus();
    harness.step();
    harness.get_by_role(Role::MultilineTextInput).type_text(text);
    harness.step();
    harness.key_press(egui::Key::Enter);
    harness.step();
    step_until(harness, "the reply", |h| h.state().state.chat.streaming.is_none() && message_count(h) == before + 2);
    harness.run_steps(2);
}

/// Replies stay short: the conversation asks for `tokens` at most.
fn limit_reply(harness: &mut Harness<'_, ModelDeskApp>, tokens: usize) {
    harness.state_mut().state.current_conversation_mut().expect("a conversation").settings.max_tokens = Some(tokens);
}

fn last_reply(harness: &Harness<'_, ModelDeskApp>) -> modeldesk::chat::Message {
    harness.state().state.current_conversation().and_then(|c| c.messages.last().cloned()).expect("a reply")
}

/// Opens the Registry view, connects to `url` and goes back to the model.
fn connect_with_traces(harness: &mut Harness<'_, ModelDeskApp>, url: &str, experiment: &str) {
    harness.get_by_role_and_label(Role::Button, "Registry").click();
    harness.run_steps(3);
    type_into(harness, "Tracking URI", url);
    harness.get_by_role_and_label(Role::Button, "Connect").click();
    idle(harness);
    assert!(harness.query_by_label_contains("Connected to").is_some(), "connected to {url}");
    harness.get_by_label("Record chat turns as MLflow traces").click();
    harness.run_steps(2);
    type_into(harness, "in experiment", experiment);
    harness.key_press(egui::Key::Tab);
    idle(harness);
    harness.get_by_role_and_label(Role::Button, "Back to the model").click();
    harness.run_steps(3);
}

fn micro_phi3() -> PathBuf {
    support::shared().join("fixtures/phi3-micro-int4")
}

fn load_model(harness: &mut Harness<'_, ModelDeskApp>) {
    harness.get_by_label("Load model").click();
    step_until(harness, "the model to load", |h| h.query_by_label("Unload").is_some());
    // A random-weight model's replies hold any script.
    harness.ctx.set_missing_glyph_policy(egui::epaint::text::MissingGlyphPolicy::Tofu);
}

#[test]
fn a_chat_turn_in_the_window_becomes_an_mlflow_trace_with_its_token_usage() {
    let server = MlflowServer::shared();
    let home = tempfile::tempdir().unwrap();
    let experiment = format!("gui-traces-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let mut harness = app(home.path());
    idle(&mut harness);
    connect_with_traces(&mut harness, &server.url, &experiment);
    let settings = TrackingSettings::load(&AppDirs::under(home.path()).config).unwrap();
    assert!(settings.traces_enabled, "the switch is remembered");
    assert_eq!(settings.trace_experiment.as_deref(), Some(experiment.as_str()));

    open_folder(&mut harness, &micro_phi3());
    load_model(&mut harness);
    limit_reply(&mut harness, 8);
    send(&mut harness, "Hello there");
    idle(&mut harness);
    let reply = last_reply(&harness);
    let usage = reply.stats.expect("the reply has usage").usage;
    let traces = &harness.state().state.registry.traces;
    assert_eq!((traces.sent, traces.dropped), (1, 0), "one trace delivered");

    // What MLflow itself now holds.
    let client = TrackingClient::new(Connection::new(&server.url, Auth::Anonymous).unwrap()).unwrap();
    let experiment_id = client.experiment_by_name(&experiment).unwrap().expect("the experiment was created").experiment_id;
    let script = "import json, sys, mlflow\n\
        traces = mlflow.search_traces(locations=[sys.argv[1]], return_type='list')\n\
        print(json.dumps([{'usage': t.info.token_usage, 'types': [s.span_type for s in t.data.spans],\n\
            'inputs': t.data.spans[0].inputs, 'outputs': t.data.spans[0].outputs} for t in traces]))";
    let out = server.python(script, &[&experiment_id]);
    let found: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(found.as_array().map(Vec::len), Some(1), "{found}");
    let trace = &found[0];
    assert_eq!(trace["usage"], json!({"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens, "total_tokens": usage.total_tokens}));
    assert_eq!(trace["types"], json!(["CHAT_MODEL"]));
    assert_eq!(trace["inputs"]["messages"], json!([{"role": "user", "content": "Hello there"}]));
    assert_eq!(trace["inputs"]["max_tokens"], 8);
    assert_eq!(trace["outputs"]["choices"][0]["message"]["content"], reply.content.as_str());
}

#[test]
fn a_trace_the_server_cannot_take_is_dropped_with_one_notice_and_the_chat_goes_on() {
    let server = MlflowServer::shared();
    let proxy = Mlflow2Proxy::start(server);
    let home = tempfile::tempdir().unwrap();
    let mut harness = app(home.path());
    idle(&mut harness);
    connect_with_traces(&mut harness, &proxy.url, "gui-unreachable");
    open_folder(&mut harness, &micro_phi3());
    load_model(&mut harness);
    // The tracking server goes away after connecting.
    proxy.stop();
    assert!(http_get(proxy.url.rsplit(':').next().unwrap().parse().unwrap(), "/health").is_none(), "the proxy is down");
    limit_reply(&mut harness, 4);
    for message in ["First", "Second"] {
        send(&mut harness, message);
        assert!(last_reply(&harness).stats.is_some(), "the reply to {message} arrived");
    }
    idle(&mut harness);
    let state = &harness.state().state;
    assert_eq!((state.registry.traces.sent, state.registry.traces.dropped), (0, 2));
    let warnings = state.notices.iter().filter(|n| n.error && n.text.contains("not being recorded in MLflow")).count();
    assert_eq!(warnings, 1, "one notice for both dropped traces: {:?}", state.notices.iter().map(|n| &n.text).collect::<Vec<_>>());
    assert_eq!(state.current_conversation().unwrap().messages.len(), 4);
}

/// The port of the running "Run with MLflow" server, from the chat header's label.
fn serve_port(harness: &Harness<'_, ModelDeskApp>) -> u16 {
    let label = &harness.state().state.remote.backend.as_ref().expect("a remote backend").label;
    label.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("no port in {label}"))
}

fn remote_status(harness: &Harness<'_, ModelDeskApp>) -> Option<RemoteStatus> {
    harness.state().state.remote.backend.as_ref().map(|b| b.status.clone())
}

/// Waits (longer than for anything else: MLflow imports a lot on a busy machine) until the
/// scoring server answers `/ping`; fails with its own words if it did not start.
fn wait_until_served(harness: &mut Harness<'_, ModelDeskApp>) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !matches!(remote_status(harness), Some(RemoteStatus::Ready | RemoteStatus::Failed(_))) {
        assert!(Instant::now() < deadline, "mlflow models serve did not answer /ping in time");
        std::thread::sleep(Duration::from_millis(5));
        harness.step();
    }
    if let Some(RemoteStatus::Failed(message)) = remote_status(harness) {
        panic!("mlflow models serve did not start: {message}");
    }
    harness.run_steps(2);
}

#[test]
fn run_with_mlflow_chats_with_a_pyfunc_chat_model_and_stops_it_when_closed_cancelled_or_quit() {
    let scratch = tempfile::tempdir().unwrap();
    let package = echo_chat_package(scratch.path());
    let home = tempfile::tempdir().unwrap();
    let mut harness = app(home.path());
    idle(&mut harness);
    open_folder(&mut harness, &package);
    // The server's own lines (progress bars, logs) show while it starts: any script.
    harness.ctx.set_missing_glyph_policy(egui::epaint::text::MissingGlyphPolicy::Tofu);
    // No dead end: the chat offers to run it, with the Python to run it with.
    assert!(harness.query_by_label_contains("ModelDesk cannot run itself").is_some(), "the chat explains");
    type_into(&mut harness, "Python with mlflow", support::reference_python().to_str().unwrap());
    harness.key_press(egui::Key::Tab);
    idle(&mut harness);
    assert_eq!(TrackingSettings::load(&AppDirs::under(home.path()).config).unwrap().python, Some(support::reference_python()), "the Python is remembered");

    harness.get_by_role_and_label(Role::Button, "Run with MLflow").click();
    harness.run_steps(3);
    assert!(harness.query_by_label_contains("Starting mlflow models serve").is_some(), "the wait shows");
    assert!(harness.query_by_role_and_label(Role::Button, "Cancel").is_some(), "and can be cancelled");
    wait_until_served(&mut harness);
    let port = serve_port(&harness);
    assert!(harness.query_by_label(&format!("mlflow models serve · http://127.0.0.1:{port}")).is_some(), "the header names the server");

    limit_reply(&mut harness, 7);
    send(&mut harness, "Hello there");
    let reply = last_reply(&harness);
    assert_eq!(reply.content, "echo: Hello there (7)");
    assert!(harness.query_by_label("echo: Hello there (7)").is_some(), "the reply is in the transcript");
    let usage = reply.stats.expect("the server's usage is shown").usage;
    assert_eq!((usage.prompt_tokens, usage.completion_tokens, usage.total_tokens), (1, 2, 3));
    assert!(harness.query_by_label_contains("1 prompt + 2 completion = 3 tokens").is_some(), "the usage line shows");

    // Closing the model (removing it from the library) stops its server.
    harness.state_mut().state.apply(Intent::RemoveEntry(package.clone()));
    idle(&mut harness);
    assert!(harness.state().state.remote.backend.is_none());
    assert!(http_get(port, "/ping").is_none(), "the scoring server still answers after the model was closed");

    // Cancelling the wait stops the process too.
    open_folder(&mut harness, &package);
    harness.get_by_role_and_label(Role::Button, "Run with MLflow").click();
    step_until(&mut harness, "the first progress report", |h| {
        matches!(remote_status(h), Some(RemoteStatus::Starting { progress: Some(_), .. }))
    });
    let Some(RemoteStatus::Starting { progress: Some(progress), .. }) = remote_status(&harness) else { unreachable!() };
    harness.run_steps(2);
    harness.get_by_role_and_label(Role::Button, "Cancel").click();
    idle(&mut harness);
    assert!(harness.state().state.remote.backend.is_none(), "cancelled");
    assert!(http_get(progress.port, "/ping").is_none(), "the cancelled server answers");

    // Quitting the app stops it.
    harness.get_by_role_and_label(Role::Button, "Run with MLflow").click();
    wait_until_served(&mut harness);
    let port = serve_port(&harness);
    drop(harness);
    assert!(http_get(port, "/ping").is_none(), "the scoring server outlived the app");
}

/// The "Chat with an endpoint" window (a new window is laid out unseen in its first frame).
fn open_endpoint_form(harness: &mut Harness<'_, ModelDeskApp>) {
    harness.get_by_role_and_label(Role::Button, "Chat with an endpoint…").click();
    harness.run_steps(4);
}

#[test]
fn the_chat_talks_to_an_mlflow_scoring_url_and_an_openai_compatible_url() {
    let scratch = tempfile::tempdir().unwrap();
    let scoring = ScoringServer::start(&echo_chat_package(scratch.path()));
    let home = tempfile::tempdir().unwrap();
    let mut harness = app(home.path());
    idle(&mut harness);
    // The app's own OpenAI-compatible server, on a free port, in front of the micro model.
    harness.state_mut().state.persisted.serve.port = 0;
    open_folder(&mut harness, &micro_phi3());
    load_model(&mut harness);
    harness.get_by_label("Serve").click();
    idle(&mut harness);
    let served = harness.state().state.serve.url().expect("serving").to_owned();

    // Any folder's chat can talk to an endpoint: here a pyfunc package MLflow wrote.
    let other = support::shared().join("fixtures/mlflow-examples/v3-pyfunc-chatmodel");
    open_folder(&mut harness, &other);
    open_endpoint_form(&mut harness);
    type_into(&mut harness, "URL", &format!("http://127.0.0.1:{}", scoring.port));
    harness.get_by_role_and_label(Role::Button, "Use this endpoint").click();
    harness.run_steps(3);
    assert!(harness.query_by_label_contains(&format!("http://127.0.0.1:{}/invocations", scoring.port)).is_some(), "the scoring route is used");
    limit_reply(&mut harness, 5);
    send(&mut harness, "Scored?");
    assert_eq!(last_reply(&harness).content, "echo: Scored? (5)");
    assert!(last_reply(&harness).stats.is_some(), "usage came back");

    // The same chat, now through an OpenAI-compatible URL.
    harness.get_by_role_and_label(Role::Button, "Disconnect").click();
    harness.run_steps(3);
    open_endpoint_form(&mut harness);
    harness.get_by_label("OpenAI-compatible").click();
    harness.run_steps(2);
    type_into(&mut harness, "URL", &format!("{served}/v1"));
    harness.get_by_role_and_label(Role::Button, "Use this endpoint").click();
    harness.run_steps(3);
    limit_reply(&mut harness, 6);
    send(&mut harness, "And you?");
    let reply = last_reply(&harness);
    let usage = reply.stats.expect("usage came back").usage;
    assert!(usage.completion_tokens >= 1 && usage.completion_tokens <= 6, "{usage:?}");
    assert!(usage.prompt_tokens > 0);
    let log = &harness.state().state.serve.log;
    assert!(log.iter().any(|entry| entry.endpoint.contains("chat/completions")), "the request reached the app's own server");
    assert_eq!(harness.state().state.current_conversation().unwrap().messages.len(), 4, "one conversation, both endpoints");
}
