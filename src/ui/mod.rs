//! egui views. They draw `AppState` and turn clicks into calls on it; no file or model work here.

use crate::app::{AppState, RuntimeStatus};

/// Draws the whole window.
pub fn show(ui: &mut egui::Ui, state: &mut AppState) {
    egui::Panel::bottom("status_bar").show(ui, |ui| status_bar(ui, state));
    egui::Panel::left("library").resizable(true).default_size(260.0).show(ui, |ui| library_panel(ui, state));
    egui::CentralPanel::default().show(ui, |ui| central(ui, state));
}

fn status_bar(ui: &mut egui::Ui, state: &AppState) {
    ui.horizontal(|ui| match &state.runtime {
        RuntimeStatus::Loaded(runtime) => {
            ui.label(format!("ONNX Runtime {} ready", runtime.version))
                .on_hover_text(format!("{} ({})", runtime.library_path.display(), runtime.source));
        }
        RuntimeStatus::Loading(_) => {
            ui.spinner();
            ui.label("Loading ONNX Runtime…");
        }
        RuntimeStatus::Missing { .. } => {
            ui.colored_label(ui.visuals().error_fg_color, "ONNX Runtime not loaded");
        }
    });
}

fn library_panel(ui: &mut egui::Ui, state: &mut AppState) {
    ui.heading("Library");
    if ui.button("Open folder…").clicked() {
        state.pick_model_folder(ui.ctx());
    }
    ui.separator();
    if state.persisted.library.is_empty() {
        ui.weak("No models yet. Open a Phi-3 ONNX folder or an MLflow model folder.");
    }
    let mut select = None;
    for entry in &state.persisted.library {
        let selected = state.persisted.selected.as_ref() == Some(&entry.path);
        let response = ui.selectable_label(selected, entry.name()).on_hover_text(entry.path.display().to_string());
        if response.clicked() {
            select = Some(entry.path.clone());
        }
    }
    if let Some(path) = select {
        state.persisted.selected = Some(path);
    }
}

fn central(ui: &mut egui::Ui, state: &mut AppState) {
    if let RuntimeStatus::Missing { message } = &state.runtime {
        let message = message.clone();
        runtime_missing(ui, state, &message);
        return;
    }
    ui.heading("Chat");
    match state.selected_entry() {
        Some(entry) => {
            ui.label(format!("Model: {}", entry.name()));
            ui.weak(entry.path.display().to_string());
        }
        None => {
            ui.weak("Select a model in the library to chat with it.");
        }
    }
}

fn runtime_missing(ui: &mut egui::Ui, state: &mut AppState, message: &str) {
    ui.heading("ONNX Runtime is missing");
    ui.label("ModelDesk runs models with ONNX Runtime, and could not load its library.");
    ui.add_space(6.0);
    egui::ScrollArea::vertical().max_height(220.0).show(ui, |ui| {
        ui.monospace(message);
    });
    ui.add_space(6.0);
    let picking = state.runtime_pick.is_some();
    if ui.add_enabled(!picking, egui::Button::new("Choose ONNX Runtime library…")).clicked() {
        state.pick_runtime_library(ui.ctx());
    }
}
