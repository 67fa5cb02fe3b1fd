//! The Registry view: the tracking server (URI, sign-in, traces switch), a model URI to pull,
//! then either registered models searched as the user types with the selected model's versions
//! (aliases, tags, description, source run, status) or experiments → runs → logged models
//! (`registry_browse`); Pull with a progress bar. Draws state, returns intents.

use egui::{RichText, Ui};

use crate::{
    app::{AppState, Browse, BrowseIntent, ConnectionStatus, DEFAULT_TRACE_EXPERIMENT, Intent, RegistryIntent, RegistryState},
    tracking::types::{ModelVersion, RegisteredModel},
};

fn registry(intent: RegistryIntent) -> Intent {
    Intent::Registry(intent)
}

pub fn show(ui: &mut Ui, state: &mut AppState, out: &mut Vec<Intent>) {
    let registry_state = &mut state.registry;
    ui.horizontal(|ui| {
        ui.heading("MLflow Registry");
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            if ui.button("Back to the model").clicked() {
                out.push(registry(RegistryIntent::Show(false)));
            }
        });
    });
    server_form(ui, registry_state, out);
    ui.separator();
    if !registry_state.is_connected() {
        ui.weak("Connect to a tracking server to browse its registered models.");
        return;
    }
    pull_progress(ui, registry_state, out);
    pull_uri(ui, registry_state, out);
    ui.horizontal(|ui| {
        for (mode, label) in [(Browse::RegisteredModels, "Registered models"), (Browse::Experiments, "Experiments")] {
            if ui.selectable_label(registry_state.browse.mode == mode, label).clicked() {
                out.push(registry(RegistryIntent::Browse(BrowseIntent::Show(mode))));
            }
        }
    });
    ui.separator();
    if registry_state.browse.mode == Browse::Experiments {
        return super::registry_browse::show(ui, registry_state, out);
    }
    ui.horizontal(|ui| {
        let label = ui.label("Search");
        let search = ui.add(egui::TextEdit::singleline(&mut registry_state.search).hint_text("part of a model name").desired_width(260.0)).labelled_by(label.id);
        if search.changed() {
            out.push(registry(RegistryIntent::SearchChanged));
        }
        if registry_state.is_listing() {
            ui.spinner();
        }
    });
    if let Some(error) = &registry_state.list_error {
        ui.colored_label(ui.visuals().error_fg_color, error);
    }
    ui.columns(2, |columns| {
        model_list(&mut columns[0], registry_state, out);
        versions(&mut columns[1], registry_state, out);
    });
}

fn server_form(ui: &mut Ui, registry_state: &mut RegistryState, out: &mut Vec<Intent>) {
    let connected = matches!(registry_state.status, ConnectionStatus::Connected { .. });
    egui::CollapsingHeader::new(RichText::new("Server").strong()).default_open(!connected).show(ui, |ui| {
        let form = &mut registry_state.form;
        egui::Grid::new("registry_server").num_columns(2).show(ui, |ui| {
            let label = ui.label("Tracking URI");
            ui.add(egui::TextEdit::singleline(&mut form.uri).hint_text("http://127.0.0.1:5000").desired_width(320.0)).labelled_by(label.id);
            ui.end_row();
            let label = ui.label("User name");
            ui.add(egui::TextEdit::singleline(&mut form.username).desired_width(200.0)).labelled_by(label.id);
            ui.end_row();
            ui.label("Password");
            ui.add(egui::TextEdit::singleline(&mut form.password).password(true).hint_text("kept in the system keyring").desired_width(200.0));
            ui.end_row();
            ui.label("or token");
            ui.add(egui::TextEdit::singleline(&mut form.token).password(true).hint_text("kept in the system keyring").desired_width(200.0));
            ui.end_row();
        });
        ui.horizontal(|ui| {
            let connecting = registry_state.status == ConnectionStatus::Connecting;
            if ui.add_enabled(!connecting && !registry_state.form.uri.trim().is_empty(), egui::Button::new("Connect")).clicked() {
                out.push(registry(RegistryIntent::Connect));
            }
            let stored = registry_state.settings.username.is_some() || registry_state.settings.token_in_keyring;
            if ui.add_enabled(stored, egui::Button::new("Forget password/token")).clicked() {
                out.push(registry(RegistryIntent::ForgetCredentials));
            }
        });
        let settings = &mut registry_state.settings;
        ui.horizontal(|ui| {
            if ui
                .checkbox(&mut settings.traces_enabled, "Record chat turns as MLflow traces")
                .on_hover_text("Each reply in the chat becomes a trace with its messages, settings and token usage, sent in the background")
                .changed()
            {
                out.push(registry(RegistryIntent::SettingsEdited));
            }
            let label = ui.label("in experiment");
            let mut experiment = settings.trace_experiment.clone().unwrap_or_default();
            let response = ui.add(egui::TextEdit::singleline(&mut experiment).hint_text(DEFAULT_TRACE_EXPERIMENT).desired_width(160.0)).labelled_by(label.id);
            if response.changed() {
                settings.trace_experiment = Some(experiment).filter(|e| !e.trim().is_empty());
            }
            if response.lost_focus() {
                out.push(registry(RegistryIntent::SettingsEdited));
            }
        });
    });
    match &registry_state.status {
        ConnectionStatus::NotConnected => {}
        ConnectionStatus::Connecting => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Connecting…");
            });
        }
        ConnectionStatus::Connected { base_url, version } => {
            ui.label(format!("Connected to {base_url} (MLflow {version})"));
        }
        ConnectionStatus::Failed(message) => {
            ui.colored_label(ui.visuals().error_fg_color, format!("Not connected: {message}"));
        }
    }
}

/// Any model URI, typed: `models:/NAME@ALIAS`, `models:/NAME/VERSION`, `models:/<model_id>`,
/// `runs:/<run_id>/<path>`.
fn pull_uri(ui: &mut Ui, registry_state: &mut RegistryState, out: &mut Vec<Intent>) {
    ui.horizontal(|ui| {
        let label = ui.label("Model URI");
        let field = ui
            .add(egui::TextEdit::singleline(&mut registry_state.browse.uri).hint_text("models:/NAME@ALIAS, models:/<model_id>, runs:/<run_id>/<path>").desired_width(420.0))
            .labelled_by(label.id);
        let uri = registry_state.browse.uri.trim().to_owned();
        let enter = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        let clicked = ui.add_enabled(!uri.is_empty() && registry_state.pulling.is_none(), egui::Button::new("Pull URI")).on_hover_text("Download it and open it").clicked();
        if (clicked || enter) && !uri.is_empty() && registry_state.pulling.is_none() {
            out.push(registry(RegistryIntent::Pull(uri)));
        }
    });
}

fn pull_progress(ui: &mut Ui, registry_state: &RegistryState, out: &mut Vec<Intent>) {
    let Some(job) = &registry_state.pulling else { return };
    let p = job.progress;
    let fraction = if p.bytes_total > 0 { p.bytes_done as f32 / p.bytes_total as f32 } else { 0.0 };
    ui.horizontal(|ui| {
        ui.label(format!("Pulling {}", job.uri));
        ui.add(egui::ProgressBar::new(fraction).desired_width(320.0).text(format!(
            "{} / {} · {} of {} files",
            crate::memory::human_bytes(p.bytes_done),
            crate::memory::human_bytes(p.bytes_total),
            p.files_done,
            p.files_total
        )));
        if ui.button("Cancel pull").clicked() {
            out.push(registry(RegistryIntent::CancelPull));
        }
    });
}

fn model_list(ui: &mut Ui, registry_state: &RegistryState, out: &mut Vec<Intent>) {
    ui.label(RichText::new(format!("Registered models ({}{})", registry_state.models.len(), if registry_state.models_next.is_some() { "+" } else { "" })).strong());
    egui::ScrollArea::vertical().id_salt("registry_models").auto_shrink([false, false]).max_height((ui.available_height() - 8.0).max(80.0)).show(ui, |ui| {
        if registry_state.models.is_empty() && !registry_state.is_listing() {
            ui.weak("No registered model matches.");
        }
        for model in &registry_state.models {
            let selected = registry_state.selected.as_deref() == Some(model.name.as_str());
            if ui.selectable_label(selected, model_line(model)).clicked() {
                out.push(registry(RegistryIntent::SelectModel(model.name.clone())));
            }
        }
        if registry_state.models_next.is_some() && ui.button("More models").clicked() {
            out.push(registry(RegistryIntent::MoreModels));
        }
    });
}

fn model_line(model: &RegisteredModel) -> String {
    let latest = model.latest_versions.iter().filter_map(|v| v.version.parse::<u64>().ok()).max();
    match latest {
        Some(version) => format!("{} · v{version}", model.name),
        None => model.name.clone(),
    }
}

fn versions(ui: &mut Ui, registry_state: &RegistryState, out: &mut Vec<Intent>) {
    let Some(model) = registry_state.selected_model() else {
        ui.weak("Select a model to see its versions.");
        return;
    };
    ui.label(RichText::new(&model.name).strong().size(16.0));
    if !model.description.is_empty() {
        ui.label(&model.description);
    }
    if !model.tags.is_empty() {
        ui.weak(model.tags.iter().map(|t| format!("{}={}", t.key, t.value)).collect::<Vec<_>>().join(", "));
    }
    let pulling = registry_state.pulling.is_some();
    egui::ScrollArea::vertical().id_salt("registry_versions").auto_shrink([false, false]).show(ui, |ui| {
        for version in &registry_state.versions {
            version_card(ui, version, &registry_state.aliases_of(version), pulling, out);
        }
        if registry_state.versions_next.is_some() && ui.button("More versions").clicked() {
            out.push(registry(RegistryIntent::MoreVersions));
        }
    });
}

fn version_card(ui: &mut Ui, version: &ModelVersion, aliases: &[String], pulling: bool, out: &mut Vec<Intent>) {
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.set_width(ui.available_width());
        ui.horizontal(|ui| {
            ui.label(RichText::new(format!("Version {}", version.version)).strong());
            for alias in aliases {
                ui.label(RichText::new(format!("@{alias}")).monospace());
            }
            let ready = version.status == crate::tracking::types::VERSION_READY;
            ui.label(RichText::new(&version.status).small());
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                let uri = format!("models:/{}/{}", version.name, version.version);
                if ui.add_enabled(ready && !pulling, egui::Button::new("Pull")).on_hover_text(format!("Download {uri} and open it")).clicked() {
                    out.push(registry(RegistryIntent::Pull(uri)));
                }
            });
        });
        if !version.description.is_empty() {
            ui.label(&version.description);
        }
        if !version.tags.is_empty() {
            ui.weak(version.tags.iter().map(|t| format!("{}={}", t.key, t.value)).collect::<Vec<_>>().join(", "));
        }
        if !version.run_id.is_empty() {
            ui.weak(format!("run {}", version.run_id));
        }
        ui.weak(format!("source {}", version.source));
    });
}
