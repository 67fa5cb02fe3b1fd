//! The real app state driven through egui_kittest: what a user clicks, types and drops, and
//! what they then see.

mod support;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use egui::accesskit::Role;
use egui_kittest::{
    Harness,
    kittest::Queryable as _,
};
use modeldesk::{
    app::{StartupOptions, Tab},
    gui::ModelDeskApp,
    app_dirs::AppDirs,
    mlflow::{mlmodel::MlModel, schema::{ColType, DataType, Schema}, yaml::Node},
    runtime::Candidates,
};

#[derive(Debug)]
struct Dropped(PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        Err("a folder has no bytes".into())
    }
}

fn app(home: &Path) -> Harness<'static, ModelDeskApp> {
    let startup = StartupOptions { open: None, candidates: Candidates::discover(None), dirs: Some(AppDirs::under(home)) };
    Harness::builder().with_size([1280.0, 860.0]).build_eframe(|cc| ModelDeskApp::new(cc, startup))
}

/// Steps until `done` holds (background work reports through repaints).
fn step_until(harness: &mut Harness<'_, ModelDeskApp>, what: &str, done: impl Fn(&Harness<'_, ModelDeskApp>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(harness) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
        harness.step();
    }
}

fn idle(harness: &mut Harness<'_, ModelDeskApp>) {
    // Queued input is delivered one event per frame; let it arrive before waiting.
    harness.run_steps(5);
    step_until(harness, "background work to finish", |h| !h.state().state.is_busy());
    harness.run_steps(3);
}

fn is_combo_showing(text: &'static str) -> impl Fn(&egui_kittest::kittest::AccessKitNode<'_>) -> bool {
    move |node| node.role() == Role::ComboBox && node.value().as_deref() == Some(text)
}

/// Opens the first type dropdown showing `from` and picks `to`, as a user would.
fn change_first_type(harness: &mut Harness<'_, ModelDeskApp>, from: &'static str, to: &str) {
    harness.get_all_by(is_combo_showing(from)).next().expect("a type dropdown").scroll_to_me();
    harness.run_steps(2);
    harness.get_all_by(is_combo_showing(from)).next().expect("a type dropdown").click_accesskit();
    harness.run_steps(2);
    harness.get_by_label(to).click();
    harness.run_steps(2);
}

fn drop_folder(harness: &mut Harness<'_, ModelDeskApp>, path: &Path) {
    harness.input_mut().dropped_files.push(Arc::new(Dropped(path.to_path_buf())));
    harness.step();
}

/// A fresh app (its own home) with `folder` dropped on it and everything settled.
fn app_with(folder: &Path) -> (tempfile::TempDir, Harness<'static, ModelDeskApp>) {
    let home = tempfile::tempdir().unwrap();
    let mut harness = app(home.path());
    idle(&mut harness);
    drop_folder(&mut harness, folder);
    idle(&mut harness);
    (home, harness)
}

#[test]
fn dropping_the_fixture_folder_opens_it() {
    let home = tempfile::tempdir().unwrap();
    let mut harness = app(home.path());
    idle(&mut harness);
    assert!(harness.query_by_label("Welcome to ModelDesk").is_some(), "the first start greets the user");
    drop_folder(&mut harness, &support::tiny_phi3());
    idle(&mut harness);
    assert!(harness.query_by_label_contains("Phi-3 ONNX folder ·").is_some(), "the library shows its kind and size");
    assert!(harness.query_by_label("Load model").is_some());
    // A file inside the folder opens the folder; something else is explained.
    drop_folder(&mut harness, &support::tiny_phi3().join("tokenizer.json"));
    idle(&mut harness);
    assert_eq!(harness.state().state.persisted.library.len(), 1);
    let elsewhere = tempfile::tempdir().unwrap();
    drop_folder(&mut harness, elsewhere.path());
    // Opening works out what the path holds in the background; wait for it.
    idle(&mut harness);
    assert!(harness.query_by_label_contains("is not a model folder").is_some());
    // Idle means idle: no repaint keeps being requested.
    harness.state_mut().state.notices.clear();
    assert!(harness.run_ok().is_some(), "the app keeps repainting while idle");
}

#[test]
fn editing_the_signature_and_model_config_then_saving() {
    let home = tempfile::tempdir().unwrap();
    let package = home.path().join("package");
    modeldesk::mlflow::create::create_from_onnx(
        &support::tiny_phi3(),
        &package,
        &modeldesk::mlflow::create::CreateOptions { task: modeldesk::mlflow::create::Task::Prompt, name: None, python_version: Some("3.11.7".into()) },
        &mut |_| {},
        &std::sync::atomic::AtomicBool::new(false),
    )
    .unwrap();
    // Created packages have no input schema (their wrapper reads every request shape); give this
    // one a `prompt` column to edit.
    let mut model = MlModel::load(&package).unwrap();
    let mut signature = model.signature().unwrap().unwrap();
    signature.inputs = Some(Schema::parse(r#"[{"type": "string", "name": "prompt", "required": true}]"#, "inputs").unwrap());
    model.set_signature(&signature);
    model.save().unwrap();
    let mut harness = app(home.path());
    idle(&mut harness);
    drop_folder(&mut harness, &package);
    idle(&mut harness);
    harness.get_by_label("Model").click();
    harness.run_steps(2);
    assert!(harness.query_by_label("model_config").is_some());
    assert!(harness.query_by_label("Inputs (1)").is_some());

    // model_config: change the model name.
    let name_field = |node: &egui_kittest::kittest::AccessKitNode<'_>| {
        node.role() == Role::TextInput && node.value().as_deref() == Some("tiny-phi3")
    };
    harness.get_by(name_field).focus();
    harness.step();
    harness.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    harness.get_by(name_field).type_text("renamed-model");
    harness.run_steps(2);
    assert!(harness.query_by_label("(unsaved)").is_some(), "the dirty marker shows");

    // The signature: the input column's type from string to long.
    change_first_type(&mut harness, "string", "long");
    // The example no longer fits, and the user is told next to the example.
    assert!(harness.query_by_label_contains("is not a long").is_some(), "live example check");
    // Infer it back from the example, then save with Ctrl+S.
    harness.get_by_label("Infer signature from example").scroll_to_me();
    harness.run_steps(2);
    harness.get_by_label("Infer signature from example").click();
    harness.run_steps(2);
    change_first_type(&mut harness, "string", "long");
    // Make the example match the new type, then save.
    harness.state_mut().state.editor.as_mut().unwrap().example_text = r#"{"prompt": 7}"#.into();
    harness.state_mut().state.editor.as_mut().unwrap().check();
    harness.run_steps(2);
    harness.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::S);
    idle(&mut harness);
    assert!(harness.query_by_label("(unsaved)").is_none());
    assert!(harness.query_by_label_contains("Saved").is_some());

    // What the mlflow module reads back.
    let model = MlModel::load(&package).unwrap();
    let config = model.model_config().unwrap().as_map().unwrap();
    assert_eq!(config.get("model_name"), Some(&Node::Str("renamed-model".into())));
    let Some(Ok(signature)) = model.signature() else { panic!("signature") };
    let Some(Schema::Columns(cols)) = signature.inputs else { panic!("columns") };
    assert_eq!(cols[0].ty, ColType::Base(DataType::Long));
    assert_eq!(std::fs::read_to_string(package.join("input_example.json")).unwrap(), r#"{"prompt": 7}"#);

    // The checks ran once per folder state: the first scan, and the save (the rescan after the
    // save and "Check again" on the unchanged folder reuse that verdict).
    assert_eq!(modeldesk::inspect::check_runs(&package), 2);
    harness.state_mut().state.apply(modeldesk::app::Intent::CheckAgain);
    idle(&mut harness);
    assert_eq!(modeldesk::inspect::check_runs(&package), 2, "checking an unchanged folder again reuses the verdict");
}

fn send(harness: &mut Harness<'_, ModelDeskApp>, text: &str) {
    let composer = harness.get_by_role(Role::MultilineTextInput);
    composer.focus();
    harness.step();
    harness.get_by_role(Role::MultilineTextInput).type_text(text);
    harness.step();
    harness.key_press(egui::Key::Enter);
    harness.step();
}

#[test]
fn chatting_shows_the_reply_with_usage_and_stop_stops() {
    let (home, mut harness) = app_with(&support::tiny_phi3());
    harness.get_by_label("Load model").click();
    step_until(&mut harness, "the model to load", |h| h.query_by_label("Unload").is_some());
    assert!(harness.query_by_label_contains("tiny-phi3 loaded").is_some(), "the status bar says so");
    // Replies of a random-weight model contain any script; the bundled fonts draw what they
    // can and boxes for the rest (only the interface's own text must never miss a glyph).
    harness.ctx.set_missing_glyph_policy(egui::epaint::text::MissingGlyphPolicy::Tofu);
    send(&mut harness, "Hello there");
    step_until(&mut harness, "the reply", |h| h.query_by_label_contains(" completion = ").is_some());
    assert!(harness.query_all_by_label("Hello there").count() >= 2, "the message is in the transcript and names the chat");
    for part in ["prompt + ", "first token", "tokens/s"] {
        assert!(harness.query_by_label_contains(part).is_some(), "the usage line shows {part}");
    }
    assert!(harness.query_by_label_contains("/ 2048 tokens").is_some(), "the context meter shows tokens used of the context");

    // A long reply, stopped with Esc right away.
    send(&mut harness, "The weather is sunny");
    assert!(harness.state().state.chat.streaming.is_some());
    harness.key_press(egui::Key::Escape);
    step_until(&mut harness, "the stopped reply", |h| h.state().state.chat.streaming.is_none());
    harness.run_steps(2);
    let conversation = harness.state().state.current_conversation().unwrap().clone();
    let last = conversation.messages.last().unwrap();
    let stats = last.stats.unwrap();
    assert_eq!(stats.finish_reason, modeldesk::engine::FinishReason::Cancelled);
    assert!(stats.usage.completion_tokens < 1298, "stopped early ({} tokens)", stats.usage.completion_tokens);
    assert!(harness.query_by_label_contains("· cancelled").is_some(), "the reply says it was stopped");
    // Conversations are kept on disk.
    idle(&mut harness);
    let store = modeldesk::chat::ChatStore::new(&AppDirs::under(home.path()).data);
    let listing = store.list();
    assert_eq!(listing.summaries.len(), 1);
    assert_eq!(store.load(&listing.summaries[0].id).unwrap().messages.len(), 4);
}

#[test]
fn creating_and_exporting_a_package_with_progress() {
    let (home, mut harness) = app_with(&support::tiny_phi3());
    harness.get_by_label("Model").click();
    harness.run_steps(2);
    assert!(harness.query_by_label("Layers").is_some(), "genai_config facts are shown");
    harness.get_by_label("Create MLflow model…").click();
    harness.run_steps(2);
    let destination = home.path().join("created");
    harness.state_mut().state.dialog.as_mut().unwrap().destination = destination.display().to_string();
    harness.run_steps(1);
    harness.get_by_role_and_label(Role::Button, "Create").click();
    step_until(&mut harness, "the package", |h| h.query_by_label("Done (100%)").is_some());
    assert!(harness.query_by_label_contains("Written to").is_some());
    assert!(destination.join("MLmodel").is_file());
    harness.get_by_label("Close").click();
    idle(&mut harness);

    // Export the new package as a zip.
    harness.state_mut().state.select(&destination);
    idle(&mut harness);
    harness.state_mut().state.tab = Tab::Model;
    harness.run_steps(2);
    harness.get_by_label("Export package…").click();
    harness.run_steps(2);
    let zip = home.path().join("exported.zip");
    {
        let dialog = harness.state_mut().state.dialog.as_mut().unwrap();
        dialog.destination = zip.display().to_string();
        dialog.zip = true;
    }
    harness.run_steps(1);
    harness.get_by_role_and_label(Role::Button, "Export").click();
    let deadline = Instant::now() + Duration::from_secs(60);
    while harness.query_by_label("Done (100%)").is_none() {
        assert!(Instant::now() < deadline, "export timed out");
        std::thread::sleep(Duration::from_millis(2));
        harness.step();
    }
    assert!(zip.is_file());
    // The bar was fed: the job reported progress up to every byte of the package (a small
    // package may finish between two frames, so the bar itself may never be drawn mid-way).
    let dialog = harness.state().state.dialog.as_ref().unwrap();
    let last = dialog.last_progress.expect("the export reported progress");
    assert!(dialog.progress_reports >= 2, "progress was reported as the copy went ({} reports)", dialog.progress_reports);
    assert!(last.total_bytes > 0 && last.done_bytes == last.total_bytes, "the last report covers the whole package: {last:?}");
}

/// One rule for search options: genai_config.json, then the package's model_config, then the
/// user's settings. A package whose model_config differs from its genai_config.json answers the
/// same in the window's chat, on the command line and through MLflow with the package's wrapper.
#[test]
fn a_packages_model_config_drives_the_chat_the_cli_and_the_package_alike() {
    let home = tempfile::tempdir().unwrap();
    let package = home.path().join("package");
    modeldesk::mlflow::create::create_from_onnx(
        &support::tiny_phi3(),
        &package,
        &modeldesk::mlflow::create::CreateOptions { task: modeldesk::mlflow::create::Task::Chat, name: None, python_version: Some("3.11.7".into()) },
        &mut |_| {},
        &std::sync::atomic::AtomicBool::new(false),
    )
    .unwrap();
    // genai_config.json says greedy without a penalty up to 2048 tokens; the package differs.
    let mut model = MlModel::load(&package).unwrap();
    model.set_config_value("repetition_penalty", Node::Float(1.5));
    model.set_config_value("max_length", Node::Int(40));
    assert!(model.save().unwrap());
    let question = "Hello there";

    let generate = |folder: &Path| -> serde_json::Value {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_modeldesk"))
            .args(["generate", "--model"])
            .arg(folder)
            .args(["--user", question, "--json"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let cli = generate(&package);
    let plain = generate(&support::tiny_phi3());
    assert_ne!(cli["token_ids"]["completion"], plain["token_ids"]["completion"], "the package's model_config changes the reply");
    assert_eq!(cli["choices"][0]["finish_reason"], "length", "max_length 40 from model_config ends the reply");

    let script = "import json, sys, mlflow\nm = mlflow.pyfunc.load_model(sys.argv[1])\nprint(json.dumps(m.predict({'messages': [{'role': 'user', 'content': sys.argv[2]}]})))";
    let predicted: serde_json::Value = serde_json::from_str(support::python(script, &[package.to_str().unwrap(), question]).lines().last().unwrap()).unwrap();
    let wrapper = &predicted[0];

    let (_home, mut harness) = app_with(&package);
    harness.get_by_label("Load model").click();
    step_until(&mut harness, "the model to load", |h| h.query_by_label("Unload").is_some());
    harness.ctx.set_missing_glyph_policy(egui::epaint::text::MissingGlyphPolicy::Tofu);
    send(&mut harness, question);
    step_until(&mut harness, "the reply", |h| h.state().state.chat.streaming.is_none() && h.query_by_label_contains(" completion = ").is_some());
    let reply = harness.state().state.current_conversation().unwrap().messages.last().unwrap().clone();
    let usage = reply.stats.unwrap().usage;
    assert!(harness.query_by_label_contains("/ 40 tokens").is_some(), "the context meter uses the package's max_length");

    let text = cli["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(reply.content, text, "window and command line");
    assert_eq!(wrapper["choices"][0]["message"]["content"].as_str(), Some(text), "MLflow's package and command line");
    for key in ["prompt_tokens", "completion_tokens", "total_tokens"] {
        assert_eq!(wrapper["usage"][key], cli["usage"][key], "{key}: MLflow's package and command line");
    }
    assert_eq!(usage.completion_tokens as u64, cli["usage"]["completion_tokens"].as_u64().unwrap(), "window and command line");
}

/// Start-up reads a small index, not every conversation: with a thousand stored, only the one
/// shown is read. Files in the conversations folder that are not ModelDesk's are reported once
/// and left exactly as they were.
#[test]
fn a_thousand_conversations_load_lazily_and_foreign_files_are_left_alone() {
    let home = tempfile::tempdir().unwrap();
    let store = modeldesk::chat::ChatStore::new(&AppDirs::under(home.path()).data);
    for n in 0..1000u64 {
        let mut conversation = modeldesk::chat::Conversation::new(&support::tiny_phi3());
        conversation.push_user(&format!("question {n}"));
        conversation.updated = n;
        // Written directly (no fsync per file) to keep the test quick.
        std::fs::create_dir_all(store.dir()).unwrap();
        std::fs::write(store.dir().join(format!("{}.json", conversation.id)), serde_json::to_vec(&conversation).unwrap()).unwrap();
    }
    let junk = store.dir().join("junk.json");
    std::fs::write(&junk, b"\x00\xffnot json").unwrap();
    let foreign = store.dir().join("my notes.json");
    std::fs::write(&foreign, b"{\"hello\": 1}").unwrap();

    let mut harness = app(home.path());
    idle(&mut harness);
    assert!(harness.query_by_label_contains("were skipped (left as they are)").is_some(), "the skipped files are reported");
    drop_folder(&mut harness, &support::tiny_phi3());
    idle(&mut harness);
    let chat = &harness.state().state.chat;
    assert_eq!(chat.summaries.len(), 1000, "every stored conversation is listed");
    assert_eq!(chat.conversations.len(), 1, "only the conversation shown was read");
    assert_eq!(harness.state().state.current_conversation().unwrap().messages[0].content, "question 999", "the newest one");
    assert!(harness.query_by_label("question 998").is_some(), "the list shows titles from the index");
    assert_eq!(std::fs::read(&junk).unwrap(), b"\x00\xffnot json");
    assert_eq!(std::fs::read(&foreign).unwrap(), b"{\"hello\": 1}");
}
