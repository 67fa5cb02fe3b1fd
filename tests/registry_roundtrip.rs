//! The registry round trip against a real `mlflow server` 3.17.2 (one per test binary): push a
//! created chat package and a created prompt package with aliases, tags and a description, list
//! them, pull them back byte for byte by version, alias, model id and run URI, resume an
//! interrupted pull, and load what ModelDesk pushed with `mlflow.pyfunc.load_model` in a fresh
//! Python process.

mod support;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::Arc,
    time::{Duration, Instant},
};

use modeldesk::tracking::{
    TrackingClient,
    api::all_pages,
    config::{Auth, Connection},
    push::PushRequest,
    pull::{Destination, PullEvent, PullService},
    uri::ModelUri,
};
use serde_json::{Value, json};
use support::mlflow_server::MlflowServer;

fn server() -> &'static MlflowServer {
    MlflowServer::shared()
}

/// A registered-model name no other test (or earlier run against a reused server) has used.
fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// `modeldesk mlflow ARGS` against the shared server, with its own app home.
fn mlflow_cli(home: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_modeldesk"));
    command.arg("mlflow").args(args).env("MODELDESK_HOME", home);
    for variable in ["MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"] {
        command.env_remove(variable);
    }
    command.envs(server().client_env()).output().expect("run modeldesk mlflow")
}

fn json_of(output: &Output) -> Value {
    assert!(output.status.success(), "modeldesk mlflow failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&output.stdout)))
}

/// Every file under `root` (relative paths, sorted) with its bytes.
fn tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
                files.push((relative, std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

/// The pulled folder equals the pushed one byte for byte, plus MLflow's `registered_model_meta`.
fn assert_same_model(pushed: &Path, pulled: &Path, meta: Option<&str>) {
    let mut got = tree(pulled);
    let meta_file = got.iter().position(|(path, _)| path == "registered_model_meta").map(|i| got.remove(i));
    assert_eq!(meta_file.map(|(_, bytes)| String::from_utf8(bytes).unwrap()).as_deref(), meta, "registered_model_meta of {}", pulled.display());
    let want = tree(pushed);
    assert!(want.len() >= 8, "the package has its files: {}", want.len());
    assert_eq!(got.iter().map(|(p, _)| p).collect::<Vec<_>>(), want.iter().map(|(p, _)| p).collect::<Vec<_>>());
    for ((path, a), (_, b)) in got.iter().zip(&want) {
        assert!(a == b, "{path} differs after the round trip");
    }
}

fn push(home: &Path, package: &Path, name: &str, extra: &[&str]) -> Value {
    let mut args = vec!["push", package.to_str().unwrap(), "--name", name, "--json"];
    args.extend_from_slice(extra);
    json_of(&mlflow_cli(home, &args))
}

fn client() -> TrackingClient {
    TrackingClient::new(Connection::new(&server().url, Auth::Anonymous).unwrap()).unwrap()
}

#[test]
fn push_list_pull_round_trip_for_chat_and_prompt_packages() {
    let scratch = tempfile::tempdir().unwrap();
    let home = scratch.path().join("home");
    for task in ["chat", "prompt"] {
        let package = scratch.path().join(task);
        support::create_with_cli(task, &package);
        let name = unique(&format!("rt-{task}"));
        let pushed = push(&home, &package, &name, &["--alias", "champion", "--alias", "candidate", "--tag", "team=desk", "--tag", "task=" , "--description", "pushed by the test"]);
        assert_eq!(pushed["name"], name.as_str());
        assert_eq!(pushed["version"], "1");
        let model_id = pushed["model_id"].as_str().expect("a LoggedModel id on MLflow 3").to_owned();
        assert!(model_id.starts_with("m-"), "{model_id}");
        assert_eq!(pushed["source"], format!("models:/{model_id}"));

        let listed = json_of(&mlflow_cli(&home, &["list", "--filter", &name, "--json"]));
        assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
        let model = &listed[0];
        assert_eq!(model["name"], name.as_str());
        assert_eq!(model["aliases"], json!({"champion": "1", "candidate": "1"}));
        let version = &model["versions"][0];
        assert_eq!(version["status"], "READY");
        assert_eq!(version["description"], "pushed by the test");
        assert_eq!(version["tags"], json!({"team": "desk", "task": ""}));
        assert_eq!(version["model_id"], model_id.as_str());

        let meta = format!("model_name: {name}\nmodel_version: '1'\n");
        let started = Instant::now();
        let pulled = json_of(&mlflow_cli(&home, &["pull", &format!("models:/{name}@champion"), "--json"]));
        let first_pull = started.elapsed();
        assert_eq!(pulled["cached"], false);
        assert_eq!(pulled["version"], "1");
        let folder = PathBuf::from(pulled["folder"].as_str().unwrap());
        assert!(folder.starts_with(&home), "pulled into the app's cache: {}", folder.display());
        assert_same_model(&package, &folder, Some(&meta));

        // The same version again, by number this time: from the cache, nothing downloaded.
        let again = json_of(&mlflow_cli(&home, &["pull", &format!("models:/{name}/1"), "--json"]));
        assert_eq!(again["cached"], true);
        assert_eq!(again["folder"], pulled["folder"]);
        eprintln!("{task}: first pull {first_pull:?}, cached pull {:.3} s", again["seconds"].as_f64().unwrap());
    }
}

#[test]
fn pulls_by_version_alias_model_id_and_run_uri_into_a_chosen_folder() {
    let scratch = tempfile::tempdir().unwrap();
    let home = scratch.path().join("home");
    let package = scratch.path().join("chat");
    support::create_with_cli("chat", &package);
    let name = unique("uris");
    push(&home, &package, &name, &[]);
    let second = push(&home, &package, &name, &["--alias", "latest-good"]);
    assert_eq!(second["version"], "2");
    let model_id = second["model_id"].as_str().unwrap();

    // A run whose own artifacts hold the model (as MLflow 2.x logs models).
    let client = client();
    let experiment = client.get_or_create_experiment("Default").unwrap();
    let run = client.create_run(&experiment, "run-artifacts", &[]).unwrap().info;
    let root = modeldesk::tracking::uri::proxied_artifact_path(&run.artifact_uri).unwrap();
    for (relative, _) in modeldesk::tracking::push::local_files(&package).unwrap() {
        client.upload_artifact(&format!("{root}/model/{relative}"), &package.join(&relative), Arc::new(|_| {})).unwrap();
    }

    let cases = [
        (format!("models:/{name}/2"), Some(format!("model_name: {name}\nmodel_version: '2'\n"))),
        (format!("models:/{name}@latest-good"), Some(format!("model_name: {name}\nmodel_version: '2'\n"))),
        (format!("models:/{name}/latest"), Some(format!("model_name: {name}\nmodel_version: '2'\n"))),
        (format!("models:/{model_id}"), Some("model_name: null\nmodel_version: null\n".to_owned())),
        (format!("runs:/{}/model", run.run_id), None),
    ];
    for (index, (uri, meta)) in cases.iter().enumerate() {
        let dest = scratch.path().join(format!("pulled-{index}"));
        let pulled = json_of(&mlflow_cli(&home, &["pull", uri, "--dest", dest.to_str().unwrap(), "--json"]));
        assert_eq!(PathBuf::from(pulled["folder"].as_str().unwrap()), dest, "{uri}");
        assert_same_model(&package, &dest, meta.as_deref());
    }
    assert_eq!(cases.len(), 5);

    // A destination that exists is refused, and unknown names, versions and aliases say so.
    let exists = mlflow_cli(&home, &["pull", &cases[0].0, "--dest", scratch.path().join("pulled-0").to_str().unwrap()]);
    assert!(!exists.status.success());
    assert!(String::from_utf8_lossy(&exists.stderr).contains("already exists"), "{}", String::from_utf8_lossy(&exists.stderr));
    for (uri, says) in [(format!("models:/{name}/9"), "not found"), (format!("models:/{name}@nope"), "alias nope"), ("models:/no-such-model/1".to_owned(), "not found")] {
        let output = mlflow_cli(&home, &["pull", &uri]);
        assert!(!output.status.success(), "{uri}");
        let message = String::from_utf8_lossy(&output.stderr);
        assert!(message.contains(says), "{uri}: {message}");
    }
}

/// Browsing as the Registry view does, a small page at a time so every listing needs several:
/// experiments → runs → logged models, registered models by name, and a model's versions.
#[test]
fn experiments_runs_logged_models_and_versions_list_page_by_page() {
    let scratch = tempfile::tempdir().unwrap();
    let package = scratch.path().join("prompt");
    support::create_with_cli("prompt", &package);
    let prefix = unique("browse");
    let (first, second) = (format!("{prefix}-a"), format!("{prefix}-b"));
    let experiment = format!("{prefix}-experiment");
    let client = client();
    let mut pushed = Vec::new();
    for name in [&first, &first, &second] {
        let request = PushRequest { folder: package.clone(), name: name.clone(), experiment: Some(experiment.clone()), aliases: vec![], tags: vec![], description: None };
        pushed.push(modeldesk::tracking::push::push(&client, &request, &mut |_| {}).unwrap_or_else(|e| panic!("push {name}: {e}")));
    }
    let paged = client.with_page_size(2);

    let experiments = all_pages(|token| paged.search_experiments(Some(&format!("name = '{experiment}'")), token)).unwrap();
    assert_eq!(experiments.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), [experiment.as_str()]);
    let experiment_ids = vec![experiments[0].experiment_id.clone()];

    let first_page = paged.search_runs(&experiment_ids, None, None).unwrap();
    assert_eq!(first_page.items.len(), 2, "a page holds two runs");
    assert!(first_page.next_page_token.is_some(), "the third run is on the next page");
    let runs = all_pages(|token| paged.search_runs(&experiment_ids, None, token)).unwrap();
    let mut run_ids: Vec<&str> = runs.iter().map(|r| r.info.run_id.as_str()).collect();
    run_ids.sort_unstable();
    let mut pushed_runs: Vec<&str> = pushed.iter().map(|p| p.run_id.as_str()).collect();
    pushed_runs.sort_unstable();
    assert_eq!(run_ids, pushed_runs, "every push made one run, and only that");
    assert!(runs.iter().all(|r| r.info.status == "FINISHED"), "{runs:?}");

    let models = all_pages(|token| paged.search_logged_models(&experiment_ids, token)).unwrap();
    assert_eq!(models.len(), 3);
    for model in &models {
        assert_eq!(model.info.status, "LOGGED_MODEL_READY", "{model:?}");
        assert!(pushed_runs.contains(&model.info.source_run_id.as_str()), "{} came from a pushed run", model.info.model_id);
        assert!(pushed.iter().any(|p| p.model_id.as_deref() == Some(model.info.model_id.as_str())));
    }

    let one_per_page = client.with_page_size(1);
    let registered = all_pages(|token| one_per_page.search_registered_models(Some(&prefix), token)).unwrap();
    assert_eq!(registered.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), [first.as_str(), second.as_str()], "sorted by name");
    let versions = all_pages(|token| one_per_page.search_model_versions(&first, token)).unwrap();
    assert_eq!(versions.iter().map(|v| v.version.as_str()).collect::<Vec<_>>(), ["2", "1"], "newest first");
}

#[test]
fn an_interrupted_pull_resumes_where_it_stopped() {
    let scratch = tempfile::tempdir().unwrap();
    let home = scratch.path().join("home");
    let package = scratch.path().join("prompt");
    support::create_with_cli("prompt", &package);
    let name = unique("resume");
    push(&home, &package, &name, &[]);
    let cache = scratch.path().join("cache");
    let uri = ModelUri::parse(&format!("models:/{name}/1")).unwrap();
    let service = PullService::spawn(client(), modeldesk::service::no_waker()).unwrap();

    // Stop the first pull as soon as some bytes have arrived.
    assert!(service.pull(uri.clone(), Destination::Cache(cache.clone())));
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut cancelled = false;
    while Instant::now() < deadline {
        match service.recv_timeout(Duration::from_secs(30)) {
            Some(PullEvent::Progress(p)) if p.bytes_done > 0 && !cancelled => {
                service.cancel();
                cancelled = true;
            }
            Some(PullEvent::Cancelled) => break,
            Some(PullEvent::Finished { .. }) => panic!("the pull finished before the cancel reached it"),
            Some(PullEvent::Failed { message }) => panic!("{message}"),
            Some(_) => {}
            None => panic!("no event from the pull service"),
        }
    }
    let partial: u64 = tree(&cache).iter().map(|(_, bytes)| bytes.len() as u64).sum();
    assert!(partial > 0, "the cancelled pull kept its partial files");

    assert!(service.pull(uri, Destination::Cache(cache.clone())));
    let finished = loop {
        match service.recv_timeout(Duration::from_secs(60)).expect("an event") {
            PullEvent::Finished { folder, resumed_bytes, cached, .. } => break (folder, resumed_bytes, cached),
            PullEvent::Failed { message } => panic!("{message}"),
            _ => {}
        }
    };
    let (folder, resumed_bytes, cached) = finished;
    assert!(!cached);
    assert_eq!(resumed_bytes, partial, "the second pull kept every byte the first had fetched");
    assert_same_model(&package, &folder, Some(&format!("model_name: {name}\nmodel_version: '1'\n")));
}

#[test]
fn mlflow_loads_what_modeldesk_pushed_and_predicts_what_modeldesk_generates() {
    let scratch = tempfile::tempdir().unwrap();
    let home = scratch.path().join("home");
    let package = scratch.path().join("chat");
    support::create_with_cli("chat", &package);
    let name = unique("load");
    push(&home, &package, &name, &["--alias", "champion"]);
    let question = "Hello! What can you do?";
    let script = "import json, sys, mlflow\n\
        m = mlflow.pyfunc.load_model(sys.argv[1])\n\
        print(json.dumps(m.predict({'messages': [{'role': 'user', 'content': sys.argv[2]}]}, params={'max_tokens': 12})))";
    let out = server().python(script, &[&format!("models:/{name}@champion"), question]);
    let theirs: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let ours = Command::new(env!("CARGO_BIN_EXE_modeldesk"))
        .args(["generate", "--model", support::tiny_phi3().to_str().unwrap(), "--user", question, "--max-tokens", "12", "--json"])
        .output()
        .unwrap();
    assert!(ours.status.success());
    let ours: Value = serde_json::from_slice(&ours.stdout).unwrap();
    assert_eq!(theirs[0]["choices"][0]["message"]["content"], ours["choices"][0]["message"]["content"]);
    assert_eq!(theirs[0]["usage"], ours["usage"]);
}

/// An MLflow 2.x server has no LoggedModel API: the push falls back to run artifacts and a
/// `runs:/` source, and the version pulls back byte for byte (through the 2.x-looking proxy,
/// which 404s the MLflow 3 routes as 2.22 does).
#[test]
fn an_mlflow_2_server_gets_run_artifacts_and_a_runs_source() {
    let proxy = support::mlflow_server::Mlflow2Proxy::start(server());
    let scratch = tempfile::tempdir().unwrap();
    let home = scratch.path().join("home");
    let package = scratch.path().join("prompt");
    support::create_with_cli("prompt", &package);
    let name = unique("v2");
    let cli = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_modeldesk"));
        command.arg("mlflow").args(args).args(["--tracking-uri", &proxy.url]).env("MODELDESK_HOME", &home);
        command.output().expect("run modeldesk mlflow")
    };
    let pushed = json_of(&cli(&["push", package.to_str().unwrap(), "--name", &name, "--alias", "champion", "--json"]));
    assert_eq!(pushed["model_id"], Value::Null);
    let run_id = pushed["run_id"].as_str().unwrap();
    assert_eq!(pushed["source"], format!("runs:/{run_id}/model"));
    let dest = scratch.path().join("pulled");
    let pulled = json_of(&cli(&["pull", &format!("models:/{name}@champion"), "--dest", dest.to_str().unwrap(), "--json"]));
    assert_eq!(pulled["version"], "1");
    assert_same_model(&package, &dest, Some(&format!("model_name: {name}\nmodel_version: '1'\n")));
}

fn turn() -> modeldesk::tracking::traces::ChatTurn {
    let started = std::time::SystemTime::now();
    modeldesk::tracking::traces::ChatTurn {
        model: "tiny-phi3".into(),
        messages: vec![("user".into(), "Hello?".into())],
        reply: "Hi there".into(),
        finish_reason: "stop".into(),
        options: serde_json::from_value(json!({"max_tokens": 16, "temperature": 0.0})).unwrap(),
        tokens: Some(modeldesk::tracking::traces::TokenCounts { prompt: 12, completion: 5 }),
        started,
        ended: started + Duration::from_millis(800),
    }
}

/// A chat turn sent in the background is visible to `mlflow.search_traces()` as a CHAT_MODEL
/// span with its token usage; a turn for an unreachable server is dropped with an event.
#[test]
fn chat_turns_become_traces_with_token_usage() {
    use modeldesk::tracking::traces::{TraceEvent, TraceSender};
    let experiment = unique("traces");
    let sender = TraceSender::spawn(client(), experiment.clone(), modeldesk::service::no_waker()).unwrap();
    assert!(sender.record(turn()));
    let trace_id = match sender.recv_timeout(Duration::from_secs(120)) {
        Some(TraceEvent::Sent { trace_id }) => trace_id,
        other => panic!("expected the trace to be sent, got {other:?}"),
    };
    let experiment_id = client().experiment_by_name(&experiment).unwrap().expect("the experiment was created").experiment_id;
    let script = "import json, sys, mlflow\n\
        traces = mlflow.search_traces(locations=[sys.argv[1]], return_type='list')\n\
        print(json.dumps([{'id': t.info.trace_id, 'usage': t.info.token_usage, 'types': [s.span_type for s in t.data.spans],\n\
            'request': t.info.request_preview, 'response': t.info.response_preview} for t in traces]))";
    let out = server().python(script, &[&experiment_id]);
    let traces: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(traces.as_array().map(Vec::len), Some(1), "{traces}");
    assert_eq!(traces[0]["id"], trace_id.as_str());
    assert_eq!(traces[0]["usage"], json!({"input_tokens": 12, "output_tokens": 5, "total_tokens": 17}));
    assert_eq!(traces[0]["types"], json!(["CHAT_MODEL"]));
    assert!(traces[0]["request"].as_str().unwrap_or_default().contains("Hello?"), "{traces}");
    assert!(traces[0]["response"].as_str().unwrap_or_default().contains("Hi there"), "{traces}");

    let nowhere = Connection::new(&format!("http://127.0.0.1:{}", support::mlflow_server::free_port()), Auth::Anonymous).unwrap();
    let unreachable = TraceSender::spawn(TrackingClient::new(nowhere).unwrap(), "chats".into(), modeldesk::service::no_waker()).unwrap();
    let started = Instant::now();
    assert!(unreachable.record(turn()), "recording returns at once");
    assert!(started.elapsed() < Duration::from_secs(1));
    match unreachable.recv_timeout(Duration::from_secs(60)) {
        Some(TraceEvent::Dropped { message }) => assert!(message.contains("cannot reach"), "{message}"),
        other => panic!("expected the turn to be dropped, got {other:?}"),
    }
}
