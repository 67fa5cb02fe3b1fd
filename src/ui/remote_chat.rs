//! The chat's remote backend as the chat view shows it: "Run with MLflow" and "Chat with an
//! endpoint…" offers, the bar above a conversation with a remote model (starting with progress
//! and Cancel, ready with Stop, failed with the reason), the Python setting, and the endpoint
//! form. Draws state, returns intents.

use egui::{RichText, Ui};

use crate::app::{AppState, EndpointKind, Intent, RemoteIntent, RemoteStatus};

fn remote(intent: RemoteIntent) -> Intent {
    Intent::Remote(intent)
}

/// The two ways to chat with a model ModelDesk does not run itself. `mlflow`: the folder is an
/// MLflow model (it can be served).
pub fn offers(ui: &mut Ui, state: &mut AppState, mlflow: bool, out: &mut Vec<Intent>) {
    ui.horizontal(|ui| {
        if mlflow
            && ui
                .button("Run with MLflow")
                .on_hover_text("Start `mlflow models serve` for this folder with your Python and chat with it here")
                .clicked()
        {
            out.push(remote(RemoteIntent::RunWithMlflow));
        }
        if ui.button("Chat with an endpoint…").on_hover_text("An MLflow scoring URL or an OpenAI-compatible server").clicked() {
            out.push(remote(RemoteIntent::OpenEndpointForm));
        }
    });
    if mlflow {
        python_field(ui, state, out);
    }
}

/// The Python that runs `mlflow models serve` (remembered with the MLflow settings).
pub fn python_field(ui: &mut Ui, state: &mut AppState, out: &mut Vec<Intent>) {
    ui.horizontal(|ui| {
        let label = ui.label("Python with mlflow");
        let mut text = state.registry.settings.python.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        let response = ui
            .add(egui::TextEdit::singleline(&mut text).hint_text("found: the active environment's, else python3 on PATH").desired_width(360.0))
            .labelled_by(label.id)
            .on_hover_text("The interpreter `mlflow models serve` runs with; the model's own packages must be installed in it");
        if response.changed() {
            state.registry.settings.python = Some(std::path::PathBuf::from(text.trim())).filter(|p| !p.as_os_str().is_empty());
        }
        if response.lost_focus() {
            out.push(remote(RemoteIntent::PythonEdited));
        }
    });
}

/// The bar above a chat with a remote model.
pub fn bar(ui: &mut Ui, state: &mut AppState, out: &mut Vec<Intent>) {
    let Some(backend) = state.remote_for_selected() else { return };
    let label = backend.label.clone();
    let status = backend.status.clone();
    let runs_mlflow = backend.runs_mlflow;
    ui.horizontal(|ui| match &status {
        RemoteStatus::Starting { since, progress } => {
            ui.spinner();
            let waited = progress.as_ref().map_or(since.elapsed(), |p| p.waited.max(since.elapsed()));
            let port = progress.as_ref().map(|p| format!(" on port {}", p.port)).unwrap_or_default();
            ui.label(format!("Starting mlflow models serve{port}… {} s", waited.as_secs()));
            if ui.button("Cancel").on_hover_text("Stop waiting and stop the server").clicked() {
                out.push(remote(RemoteIntent::CancelStart));
            }
        }
        RemoteStatus::Ready => {
            ui.label(RichText::new("Remote").strong()).on_hover_text("Replies come from this server, not from ModelDesk's engine");
            ui.label(RichText::new(&label).monospace());
            let stop = if runs_mlflow { "Stop the server" } else { "Disconnect" };
            if ui.button(stop).on_hover_text("The chat goes back to ModelDesk's own engine").clicked() {
                out.push(remote(RemoteIntent::Stop));
            }
        }
        RemoteStatus::Failed(_) => {
            ui.colored_label(ui.visuals().error_fg_color, "mlflow models serve did not start");
            if ui.button("Try again").clicked() {
                out.push(remote(RemoteIntent::RunWithMlflow));
            }
            if ui.button("Close").clicked() {
                out.push(remote(RemoteIntent::Stop));
            }
        }
    });
    match &status {
        RemoteStatus::Starting { progress: Some(progress), .. } => {
            if let Some(line) = &progress.last_line {
                ui.weak(RichText::new(line).monospace().small());
            }
        }
        RemoteStatus::Failed(message) => {
            egui::ScrollArea::vertical().id_salt("remote_failure").max_height(160.0).show(ui, |ui| {
                ui.label(RichText::new(message).monospace().small());
            });
            python_field(ui, state, out);
        }
        _ => {}
    }
}

/// The "Chat with an endpoint" window.
pub fn endpoint_form(ctx: &egui::Context, state: &mut AppState, out: &mut Vec<Intent>) {
    let Some(form) = &mut state.remote.form else { return };
    let mut open = true;
    egui::Window::new("Chat with an endpoint").open(&mut open).collapsible(false).resizable(false).show(ctx, |ui| {
        ui.horizontal(|ui| {
            ui.radio_value(&mut form.kind, EndpointKind::MlflowScoring, "MLflow scoring (llm/v1/chat)");
            ui.radio_value(&mut form.kind, EndpointKind::OpenAi, "OpenAI-compatible");
        });
        egui::Grid::new("endpoint_form").num_columns(2).show(ui, |ui| {
            let label = ui.label("URL");
            let hint = match form.kind {
                EndpointKind::MlflowScoring => "http://127.0.0.1:5001 or …/invocations",
                EndpointKind::OpenAi => "http://127.0.0.1:8080/v1",
            };
            ui.add(egui::TextEdit::singleline(&mut form.url).hint_text(hint).desired_width(340.0)).labelled_by(label.id);
            ui.end_row();
            let label = ui.label("Token");
            ui.add(egui::TextEdit::singleline(&mut form.token).password(true).hint_text("none (sent as Bearer; not saved)").desired_width(240.0)).labelled_by(label.id);
            ui.end_row();
            if form.kind == EndpointKind::OpenAi {
                let label = ui.label("Model");
                ui.add(egui::TextEdit::singleline(&mut form.model).hint_text("the server's default").desired_width(240.0)).labelled_by(label.id);
                ui.end_row();
            }
        });
        if let Some(error) = &form.error {
            ui.colored_label(ui.visuals().error_fg_color, error);
        }
        ui.horizontal(|ui| {
            if ui.add_enabled(!form.url.trim().is_empty(), egui::Button::new("Use this endpoint")).clicked() {
                out.push(remote(RemoteIntent::UseEndpoint));
            }
            if ui.button("Cancel").clicked() {
                out.push(remote(RemoteIntent::CloseEndpointForm));
            }
        });
    });
    if !open {
        out.push(remote(RemoteIntent::CloseEndpointForm));
    }
}
