//! The real app state driven through egui_kittest: what a user clicks, types and drops, and
//! what they then see.

mod support;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use egui::accesskit::Role;
use egui_kittest::{
    Harness,
    kittest::{NodeT as _, Queryable as _},
};
use modeldesk::{
    app::Tab,
    app_dirs::AppDirs,
    gui::ModelDeskApp,
    mlflow::{create::Task, mlmodel::MlModel, schema::{ColType, DataType, Schema}, yaml::Node},
};
use support::gui::{app_sized, create_package, drop_folder, idle, step_until};

fn app(home: &Path) -> Harness<'static, ModelDeskApp> {
    app_sized(home, [1280.0, 860.0])
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
    create_package(&package, Task::Prompt);
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

    // A long reply, stopped with Esc right away. (Greedy, this model answers "Why?" after the
    // first reply with 1,137 tokens: `generate --conversation` on the same two turns. A short
    // reply could end before Esc arrives.)
    send(&mut harness, "Why?");
    assert!(harness.state().state.chat.streaming.is_some());
    harness.key_press(egui::Key::Escape);
    step_until(&mut harness, "the stopped reply", |h| h.state().state.chat.streaming.is_none());
    harness.run_steps(2);
    let conversation = harness.state().state.current_conversation().unwrap().clone();
    let last = conversation.messages.last().unwrap();
    let stats = last.stats.unwrap();
    assert_eq!(stats.finish_reason, modeldesk::engine::FinishReason::Cancelled);
    assert!(stats.usage.completion_tokens < 1137, "stopped early ({} tokens)", stats.usage.completion_tokens);
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

/// Exporting onto something that exists is not a dead end: a package can be replaced (the new
/// one takes its place once complete), or a free name beside it taken; a folder that is not a
/// package cannot be replaced.
#[test]
fn exporting_onto_an_existing_package_offers_replace_or_a_new_name() {
    let home = tempfile::tempdir().unwrap();
    let package = home.path().join("package");
    create_package(&package, Task::Prompt);
    let old_export = home.path().join("package-export");
    std::fs::create_dir_all(&old_export).unwrap();
    std::fs::write(old_export.join("MLmodel"), "flavors: {}\n").unwrap();
    std::fs::write(old_export.join("stale.txt"), "old").unwrap();
    let not_a_package = home.path().join("documents");
    std::fs::create_dir_all(&not_a_package).unwrap();
    std::fs::write(not_a_package.join("notes.txt"), "keep").unwrap();

    let mut harness = app(home.path());
    idle(&mut harness);
    drop_folder(&mut harness, &package);
    idle(&mut harness);
    harness.state_mut().state.tab = Tab::Model;
    harness.run_steps(2);
    harness.get_by_label("Export package…").click();
    // The dialog proposes `package-export` beside the package, which exists and is a package.
    step_until(&mut harness, "the destination check", |h| h.query_by_label("That destination already exists.").is_some());
    assert!(harness.get_by_role_and_label(Role::Button, "Export").accesskit_node().is_disabled(), "no silent overwrite");
    assert!(harness.query_by_label("Use a new name: package-export-2").is_some());

    // A folder that is not a package cannot be replaced, only renamed around.
    harness.state_mut().state.dialog.as_mut().unwrap().destination = not_a_package.display().to_string();
    step_until(&mut harness, "the second check", |h| h.query_by_label_contains("It cannot be replaced: it is a folder that is not an MLflow model").is_some());
    assert!(harness.query_by_label_contains("Replace it").is_none());
    harness.get_by_label("Use a new name: documents-2").click_accesskit();
    step_until(&mut harness, "the free name's check", |h| h.query_by_label("That destination already exists.").is_none());
    assert_eq!(harness.state().state.dialog.as_ref().unwrap().destination, home.path().join("documents-2").display().to_string());

    // Back to the old export: replace it.
    harness.state_mut().state.dialog.as_mut().unwrap().destination = old_export.display().to_string();
    step_until(&mut harness, "the third check", |h| h.query_by_label_contains("Replace it").is_some());
    harness.get_by_label_contains("Replace it").click_accesskit();
    harness.run_steps(1);
    harness.get_by_role_and_label(Role::Button, "Replace").click_accesskit();
    step_until(&mut harness, "the replacing export", |h| h.query_by_label("Done (100%)").is_some());
    assert!(!old_export.join("stale.txt").exists(), "the old export was replaced");
    assert!(old_export.join("artifacts").is_dir());
    assert_eq!(std::fs::read_to_string(not_a_package.join("notes.txt")).unwrap(), "keep");
    assert!(!home.path().join("documents-2").exists(), "the free name was only proposed");
    let leftovers: Vec<_> = std::fs::read_dir(home.path()).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with('.') && n.contains("modeldesk")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// One rule for search options: genai_config.json, then the package's model_config, then the
/// user's settings. A package whose model_config differs from its genai_config.json answers the
/// same in the window's chat, on the command line and through MLflow with the package's wrapper.
#[test]
fn a_packages_model_config_drives_the_chat_the_cli_and_the_package_alike() {
    let home = tempfile::tempdir().unwrap();
    let package = home.path().join("package");
    create_package(&package, Task::Chat);
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

/// One HTTP/1.1 request over a fresh connection; returns the status line and the body.
fn http_post(url: &str, path: &str, body: &str) -> (String, String) {
    use std::io::{Read as _, Write as _};
    let address = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(stream, "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
}

#[test]
fn serving_shares_the_engine_with_the_window_and_logs_requests() {
    let (_home, mut harness) = app_with(&support::tiny_phi3());
    assert!(harness.query_by_label_contains("http://127.0.0.1").is_none());
    harness.get_by_label("Load model").click();
    step_until(&mut harness, "the model to load", |h| h.query_by_label("Unload").is_some());
    harness.ctx.set_missing_glyph_policy(egui::epaint::text::MissingGlyphPolicy::Tofu);
    // A free port, so parallel test runs do not collide on 8080.
    harness.state_mut().state.persisted.serve.port = 0;
    harness.get_by_label("Serve").click();
    step_until(&mut harness, "the server to start", |h| h.state().state.serve.url().is_some());
    let url = harness.state().state.serve.url().unwrap().to_owned();
    assert!(harness.query_by_label(&format!("{url}/v1")).is_some(), "the OpenAI base URL is shown");
    assert!(harness.query_by_label("Copy").is_some());

    // A long request from another program holds the engine...
    let long = serde_json::json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1500, "ignore_eos": true}).to_string();
    let client_url = url.clone();
    let client = std::thread::spawn(move || http_post(&client_url, "/v1/chat/completions", &long));
    step_until(&mut harness, "the request to run", |h| h.query_by_label("1 in flight · 0 queued").is_some());
    // ...so a message typed in the window waits behind it in the same queue, then is answered.
    send(&mut harness, "Hello there");
    step_until(&mut harness, "the window's reply to queue", |h| h.query_by_label("1 in flight · 1 queued").is_some());
    let (status, body) = client.join().unwrap();
    assert!(status.contains("200"), "{status}: {body}");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["usage"]["completion_tokens"], 1500);
    step_until(&mut harness, "the window's reply", |h| h.state().state.chat.streaming.is_none());
    let conversation = harness.state().state.current_conversation().unwrap().clone();
    assert_eq!(conversation.messages.last().unwrap().role, modeldesk::chat::Role::Assistant, "the window got its reply");

    // The request log shows the request with its tokens and status.
    step_until(&mut harness, "the request log", |h| h.query_by_label("POST /v1/chat/completions").is_some());
    assert!(harness.query_by_label_contains("Server requests (1)").is_some());
    assert!(harness.query_by_label("200").is_some());
    assert!(harness.query_by_label_contains("→ 1500").is_some(), "prompt → completion tokens");

    // Switching it off closes the port.
    harness.get_by_label("Serve").click();
    idle(&mut harness);
    assert!(harness.state().state.serve.url().is_none());
    assert!(std::net::TcpStream::connect(url.trim_start_matches("http://")).is_err(), "nothing listens any more");
}

fn composer_node<'a>(harness: &'a Harness<'_, ModelDeskApp>) -> egui_kittest::Node<'a> {
    let draft = harness.state().state.chat.draft.clone();
    let mut boxes: Vec<_> = harness.get_all_by_role(Role::MultilineTextInput).filter(|n| n.value().unwrap_or_default() == draft).collect();
    assert_eq!(boxes.len(), 1, "one message box holds the draft");
    boxes.remove(0)
}

#[test]
fn a_conversation_set_up_before_its_first_message_and_kept_by_the_keyboard() {
    let (_home, mut harness) = app_with(&support::tiny_phi3());
    harness.get_by_label("Load model").click();
    step_until(&mut harness, "the model to load", |h| h.query_by_label("Unload").is_some());
    harness.ctx.set_missing_glyph_policy(egui::epaint::text::MissingGlyphPolicy::Tofu);
    // Before any message there is a chat whose system prompt and settings can be set.
    let first = harness.state().state.current_conversation().expect("a fresh chat to type into").id.clone();
    harness.get_by_label("System prompt and generation settings").click();
    harness.run_steps(2);
    harness.state_mut().state.current_conversation_mut().unwrap().system_prompt = "Answer briefly.".into();
    harness.get_by_label("Use for new chats").click();
    harness.run_steps(2);
    assert_eq!(harness.state().state.persisted.default_system_prompt, "Answer briefly.");
    harness.get_by_label("System prompt and generation settings").click();
    harness.run_steps(2);

    // Keyboard only: Ctrl+N gives the (reused, still empty) new chat the focus, typing and
    // Enter send it.
    harness.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::N);
    harness.run_steps(3);
    assert_eq!(harness.state().state.current_conversation().unwrap().id, first, "an untouched new chat is reused");
    assert!(composer_node(&harness).is_focused(), "Ctrl+N puts the focus in the message box");
    harness.event(egui::Event::Text("Hello there".into()));
    harness.run_steps(2);
    harness.key_press(egui::Key::Enter);
    harness.run_steps(2);
    step_until(&mut harness, "the reply", |h| h.state().state.chat.streaming.is_none() && h.state().state.current_conversation().is_some_and(|c| c.messages.len() == 2));
    assert_eq!(harness.state().state.current_conversation().unwrap().system_prompt, "Answer briefly.");

    // Ctrl+L comes back to the message box from anywhere; F1 lists the shortcuts.
    harness.get_by_label("Model").click();
    harness.run_steps(2);
    harness.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::L);
    harness.run_steps(3);
    assert_eq!(harness.state().state.tab, Tab::Chat);
    assert!(composer_node(&harness).is_focused(), "Ctrl+L puts the focus in the message box");
    harness.key_press(egui::Key::F1);
    harness.run_steps(2);
    assert!(harness.query_by_label("Go to the message box").is_some(), "F1 shows the shortcuts");
    harness.state_mut().state.shortcuts_open = false;
    harness.run_steps(2);

    // Greedy settings: Regenerate says why the reply is the same; reset goes back to the model.
    // (Notices sit in the corner over the transcript, so buttons are pressed through accesskit.)
    harness.state_mut().state.current_conversation_mut().unwrap().settings.do_sample = Some(false);
    harness.get_by_label("Regenerate").click_accesskit();
    harness.run_steps(2);
    let notices: Vec<String> = harness.state().state.notices.iter().map(|n| n.text.clone()).collect();
    assert!(notices.iter().any(|n| n.starts_with("Greedy decoding always picks")), "{notices:?}");
    step_until(&mut harness, "the regenerated reply", |h| h.state().state.chat.streaming.is_none());
    harness.get_by_label("System prompt and generation settings").click();
    harness.run_steps(2);
    harness.get_by_label("Reset to the model's defaults").click();
    harness.run_steps(2);
    assert_eq!(harness.state().state.current_conversation().unwrap().settings, modeldesk::chat::Settings::default());

    // The conversation's menu button deletes, and Undo brings it back untouched.
    let id = harness.state().state.current_conversation().unwrap().id.clone();
    let before = harness.state().state.current_conversation().unwrap().clone();
    harness.get_by_label("…").click_accesskit();
    harness.run_steps(2);
    harness.get_by_label("Delete").click_accesskit();
    harness.run_steps(2);
    assert!(harness.state().state.chat.summaries.iter().all(|s| s.id != id), "gone from the list");
    harness.get_by_label("Undo").click_accesskit();
    harness.run_steps(2);
    assert_eq!(harness.state().state.current_conversation().unwrap(), &before, "back as it was");
}

#[test]
fn a_long_paste_leaves_the_message_box_and_send_in_a_small_window() {
    let (_home, mut harness) = app_with(&support::tiny_phi3());
    harness.set_size(egui::vec2(720.0, 480.0));
    harness.get_by_label("Load model").click();
    step_until(&mut harness, "the model to load", |h| h.query_by_label("Unload").is_some());
    composer_node(&harness).focus();
    harness.run_steps(2);
    let paste: String = (0..300).map(|i| format!("line {i} of a long paste\n")).collect();
    harness.event(egui::Event::Paste(paste.clone()));
    // Waits for the context meter's count of the draft too: its label widens the model bar.
    idle(&mut harness);
    assert_eq!(harness.state().state.chat.draft, paste);
    let screen = egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(720.0, 480.0));
    let send = harness.get_by_label("Send").rect();
    assert!(screen.contains_rect(send), "Send stays on screen: {send:?}");
    // The box (in a scroll area once it reaches its cap) sits between the settings header and
    // the bottom of the window, at most 30% of the window high.
    let header = harness.get_by_label("System prompt and generation settings").rect();
    assert!(header.top() >= 0.0 && header.bottom() < send.top(), "the settings header stays on screen, above the box: {header:?}");
    let composer_area = send.bottom() - header.bottom();
    assert!(composer_area > 40.0 && composer_area <= 480.0 * 0.3 + 40.0, "the box stops growing at its cap: {composer_area}");
}

#[test]
fn a_message_that_will_not_fit_is_held_back_with_the_ways_out() {
    let (_home, mut harness) = app_with(&support::tiny_phi3());
    harness.get_by_label("Load model").click();
    step_until(&mut harness, "the model to load", |h| h.query_by_label("Unload").is_some());
    harness.ctx.set_missing_glyph_policy(egui::epaint::text::MissingGlyphPolicy::Tofu);
    // A long history (set up directly: generating it would take minutes), counted in the
    // background as it grows, until the next message will not fit in 2048 tokens.
    let mut turns = 0;
    loop {
        let tokens = harness.state().state.next_prompt_tokens().unwrap_or(0);
        if tokens > 1900 {
            break;
        }
        assert!(turns < 200, "the history never reached the window ({tokens} tokens)");
        let conversation = harness.state_mut().state.current_conversation_mut().unwrap();
        conversation.push_user(&format!("Question {turns}: what does the weather look like where you are today?"));
        conversation.messages.push(modeldesk::chat::Message { role: modeldesk::chat::Role::Assistant, content: "It is sunny and warm, with a light breeze from the sea.".into(), stats: None, token_ids: None });
        turns += 1;
        idle(&mut harness);
    }
    let before = harness.state().state.next_prompt_tokens().unwrap();
    // The meter counts the message being typed, before it is sent.
    composer_node(&harness).focus();
    harness.run_steps(2);
    harness.event(egui::Event::Text("Tell me about the mountains and the rivers and the sea, in a long and careful answer. ".repeat(8)));
    idle(&mut harness);
    let with_draft = harness.state().state.next_prompt_tokens().unwrap();
    assert!(with_draft > before, "the draft counts: {before} → {with_draft}");
    assert!(harness.query_by_label_contains(&format!("{with_draft} / 2048 tokens")).is_some(), "the meter shows it");
    assert!(with_draft >= 2048, "the draft makes the prompt too long ({with_draft} tokens)");

    // Enter: held back, with the choices the app offers.
    let old = harness.state().state.current_conversation().unwrap().id.clone();
    harness.key_press(egui::Key::Enter);
    harness.run_steps(2);
    assert!(harness.query_by_label_contains("This message does not fit").is_some());
    assert!(harness.state().state.chat.streaming.is_none(), "nothing was sent");
    assert!(harness.query_by_label("Drop the oldest turns and send").is_some());
    harness.get_by_label("Start a new chat with this message").click_accesskit();
    harness.run_steps(2);
    step_until(&mut harness, "the reply in the new chat", |h| h.state().state.chat.streaming.is_none());
    let new = harness.state().state.current_conversation().unwrap().clone();
    assert_ne!(new.id, old);
    assert_eq!(new.messages.len(), 2, "the message and its reply");

    // Back in the long chat, dropping the oldest turns sends it there.
    harness.state_mut().state.apply(modeldesk::app::Intent::SelectConversation(old.clone()));
    harness.state_mut().state.chat.draft = "And the rivers? ".repeat(80);
    idle(&mut harness);
    harness.state_mut().state.apply(modeldesk::app::Intent::Send);
    harness.run_steps(2);
    assert!(harness.state().state.chat.context.blocked.is_some());
    harness.get_by_label("Drop the oldest turns and send").click_accesskit();
    harness.run_steps(2);
    step_until(&mut harness, "the reply with dropped turns", |h| h.state().state.chat.streaming.is_none());
    let last = harness.state().state.current_conversation().unwrap().messages.last().unwrap().clone();
    assert_eq!(last.role, modeldesk::chat::Role::Assistant);
    assert!(last.stats.unwrap().dropped_messages > 0, "old turns were left out");
}

#[cfg(unix)]
#[test]
fn a_typed_path_completes_and_opens_and_the_welcome_view_lists_recent_folders() {
    let home = tempfile::tempdir().unwrap();
    let place = tempfile::tempdir().unwrap();
    std::fs::create_dir(place.path().join("models")).unwrap();
    std::os::unix::fs::symlink(support::tiny_phi3(), place.path().join("models").join("tiny")).unwrap();
    let mut harness = app(home.path());
    idle(&mut harness);
    // The welcome view has a path field; what is typed completes from the file system.
    let field = harness.get_by_role(Role::TextInput);
    field.focus();
    harness.run_steps(2);
    let typed = format!("{}/mo", place.path().display());
    harness.get_by_role(Role::TextInput).type_text(&typed);
    idle(&mut harness);
    let models = format!("{}/models/", place.path().display());
    harness.get_by_label(&models).click();
    harness.run_steps(2);
    assert_eq!(harness.state().state.path_entry.text, models);
    idle(&mut harness);
    let tiny = format!("{models}tiny/");
    harness.get_by_label(&tiny).click();
    harness.run_steps(2);
    harness.get_by_label("Open").click();
    idle(&mut harness);
    assert_eq!(harness.state().state.persisted.library.len(), 1, "the typed folder opened");
    assert!(harness.query_by_label("Load model").is_some());
    // With nothing selected, the welcome view offers the recent folder.
    harness.state_mut().state.persisted.selected = None;
    harness.run_steps(2);
    assert!(harness.query_by_label("Recent folders").is_some());
    let entry = harness.state().state.persisted.library[0].path.clone();
    assert_eq!(entry, place.path().join("models").join("tiny"), "one folder, however it was typed");
    harness.get_by(|node| node.role() == Role::Link && node.label().as_deref() == Some(&entry.display().to_string())).click();
    idle(&mut harness);
    assert!(harness.query_by_label("Load model").is_some(), "the recent folder opened again");
    // File › Open path… opens the same field in a window (also used when no folder dialog exists).
    harness.get_by_label("File").click();
    harness.run_steps(2);
    harness.get_by_label("Open path…").click();
    harness.run_steps(3);
    assert!(harness.state().state.path_entry.open, "the menu item opens the path window");
    assert!(harness.query_by_label_contains("Open a folder by path").is_some(), "the window shows");
}

#[test]
fn prompt_lookup_from_the_chat_settings_keeps_the_greedy_reply_and_says_what_it_drafted() {
    // A model whose greedy replies repeat chains its context holds, so drafts are accepted.
    let (_home, mut harness) = app_with(&support::repo().join("tests/fixtures/tiny-phi3-copying"));
    harness.get_by_label("Load model").click();
    step_until(&mut harness, "the model to load", |h| h.query_by_label("Unload").is_some());
    harness.ctx.set_missing_glyph_policy(egui::epaint::text::MissingGlyphPolicy::Tofu);
    let settings = &mut harness.state_mut().state.current_conversation_mut().expect("a fresh chat").settings;
    settings.max_tokens = Some(48);
    settings.do_sample = Some(false);
    // This model's greedy reply follows one chain whatever the message; from the second turn on,
    // the first reply in the context is what drafts find.
    for (turn, message) in ["Hello there", "Tell me more"].into_iter().enumerate() {
        send(&mut harness, message);
        let messages = 2 * (turn + 1);
        step_until(&mut harness, "the plain reply", |h| h.state().state.chat.streaming.is_none() && h.state().state.current_conversation().is_some_and(|c| c.messages.len() == messages));
    }
    let reply = |h: &Harness<'_, ModelDeskApp>| h.state().state.current_conversation().unwrap().messages.last().unwrap().clone();
    let plain = reply(&harness);
    assert_eq!(plain.stats.unwrap().timings.prompt_lookup.drafted, 0, "off by default");

    harness.get_by_label("System prompt and generation settings").click();
    harness.run_steps(2);
    harness.get_by_label("Prompt lookup (faster when the reply repeats the conversation)").click_accesskit();
    harness.run_steps(2);
    assert!(harness.state().state.current_conversation().unwrap().settings.prompt_lookup, "the checkbox sets the conversation's setting");
    harness.get_by_label("Regenerate").click_accesskit();
    harness.run_steps(2);
    let notices: Vec<String> = harness.state().state.notices.iter().map(|n| n.text.clone()).collect();
    assert!(notices.iter().any(|n| n.starts_with("Greedy decoding always picks")), "Regenerate started a reply: {notices:?}");
    step_until(&mut harness, "the reply with prompt lookup", |h| h.state().state.chat.streaming.is_none() && h.state().state.current_conversation().is_some_and(|c| c.messages.len() == 4));
    harness.run_steps(2);
    let looked_up = reply(&harness);
    let lookup = looked_up.stats.unwrap().timings.prompt_lookup;
    assert!(lookup.accepted > 0, "drafts were accepted: {lookup:?}");
    assert_eq!(looked_up.content, plain.content, "the same greedy reply");
    assert!(harness.query_by_label_contains("drafted tokens kept").is_some(), "the reply's line says what prompt lookup did");
}
