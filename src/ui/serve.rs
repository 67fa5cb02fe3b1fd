//! The "Serve" switch in the chat header: the loaded model behind the local OpenAI-compatible
//! server, its URL (with a copy button), requests in flight and queued, and the request log.

use egui::{RichText, Ui};

use crate::{
    app::{AppState, Intent},
    server::RequestLogEntry,
};

/// The switch and, while serving, the URL and the queue; settings sit behind a menu button.
pub fn bar(ui: &mut Ui, state: &mut AppState, out: &mut Vec<Intent>) {
    let serving = state.serve.server.is_some();
    let mut on = serving;
    let switch = ui
        .add_enabled(state.model_ready() || serving, egui::Checkbox::new(&mut on, "Serve"))
        .on_hover_text("Serve the loaded model to other programs: OpenAI-compatible chat completions and MLflow scoring");
    if switch.changed() {
        out.push(if on { Intent::StartServing } else { Intent::StopServing });
    }
    if state.serve.is_starting() {
        ui.spinner();
    }
    match state.serve.url().map(str::to_owned) {
        Some(url) => {
            let base = format!("{url}/v1");
            ui.label(RichText::new(&base).monospace()).on_hover_text(format!("OpenAI base URL; MLflow scoring: {url}/invocations"));
            if ui.small_button("Copy").on_hover_text("Copy the OpenAI base URL").clicked() {
                out.push(Intent::CopyText(base));
            }
            let counts = state.engine.counts;
            ui.label(format!("{} in flight · {} queued", counts.in_flight, counts.queued));
        }
        None => {
            ui.menu_button("Server settings", |ui| settings(ui, state)).response.on_hover_text("Port, network access and API key");
        }
    }
}

fn settings(ui: &mut Ui, state: &mut AppState) {
    let settings = &mut state.persisted.serve;
    ui.horizontal(|ui| {
        ui.label("Port");
        ui.add(egui::DragValue::new(&mut settings.port).range(0..=65535)).on_hover_text("0 picks a free port");
    });
    ui.checkbox(&mut settings.reachable_from_network, "Reachable from other computers")
        .on_hover_text("Listen on every network interface instead of this computer only");
    ui.horizontal(|ui| {
        ui.label("API key");
        ui.add(egui::TextEdit::singleline(&mut settings.api_key).password(true).hint_text("none").desired_width(140.0))
            .on_hover_text("Clients must send it as `Authorization: Bearer <key>`. Kept for this session only.");
    });
    if settings.reachable_from_network && settings.api_key.trim().is_empty() {
        ui.colored_label(ui.visuals().warn_fg_color, "Anyone on the network could use the model: set an API key");
    }
}

/// The request log, newest first, while serving or after (until the app closes).
pub fn log(ui: &mut Ui, state: &AppState) {
    if state.serve.log.is_empty() {
        if state.serve.server.is_some() {
            ui.weak("No requests yet");
        }
        return;
    }
    egui::CollapsingHeader::new(format!("Server requests ({})", state.serve.log.len())).id_salt("server_log").default_open(true).show(ui, |ui| {
        egui::ScrollArea::vertical().id_salt("server_log_rows").max_height(140.0).show(ui, |ui| {
            egui::Grid::new("server_log_grid").striped(true).num_columns(5).show(ui, |ui| {
                for heading in ["Time (UTC)", "Request", "Tokens", "Duration", "Status"] {
                    ui.label(RichText::new(heading).strong());
                }
                ui.end_row();
                for entry in state.serve.log.iter().rev() {
                    row(ui, entry);
                    ui.end_row();
                }
            });
        });
    });
}

fn row(ui: &mut Ui, entry: &RequestLogEntry) {
    ui.label(entry.clock_utc());
    ui.label(format!("{} {}", entry.method, entry.endpoint));
    ui.label(match (entry.prompt_tokens, entry.completion_tokens) {
        (Some(prompt), Some(completion)) => format!("{prompt} → {completion}"),
        _ => "—".into(),
    });
    ui.label(format!("{:.2} s", entry.duration.as_secs_f32()));
    let status = ui.label(entry.status.to_string());
    if let Some(error) = &entry.error {
        status.on_hover_text(error);
    }
}
