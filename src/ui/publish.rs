//! The "Publish to MLflow" dialog: registered model name, experiment, aliases, tags and
//! description; then every step of the push as it happens, the upload's progress, Cancel, and
//! the registered version (or the step that failed). Draws state, returns intents.

use egui::RichText;

use crate::{
    app::{AppState, ConnectionStatus, Intent, RegistryIntent},
    tracking::push::PushStep,
};

fn registry(intent: RegistryIntent) -> Intent {
    Intent::Registry(intent)
}

pub fn show(ctx: &egui::Context, state: &mut AppState, out: &mut Vec<Intent>) {
    let connected = match &state.registry.status {
        ConnectionStatus::Connected { base_url, .. } => Some(base_url.clone()),
        _ => None,
    };
    let Some(dialog) = state.registry.publish.as_mut() else { return };
    egui::Modal::new(egui::Id::unique("publish_dialog")).show(ctx, |ui| {
        ui.set_width(520.0);
        ui.heading("Publish to MLflow");
        ui.label(format!("From {}", dialog.folder.display()));
        match &connected {
            Some(url) => ui.label(format!("To {url}")),
            None => ui.colored_label(ui.visuals().warn_fg_color, "Not connected: connect in the Registry view first."),
        };
        ui.add_space(6.0);
        let editable = !dialog.running && !dialog.outcome.as_ref().is_some_and(Result::is_ok);
        ui.add_enabled_ui(editable, |ui| {
            egui::Grid::new("publish_form").num_columns(2).show(ui, |ui| {
                let label = ui.label("Registered model");
                ui.add(egui::TextEdit::singleline(&mut dialog.name).desired_width(300.0)).labelled_by(label.id);
                ui.end_row();
                let label = ui.label("Experiment");
                ui.add(egui::TextEdit::singleline(&mut dialog.experiment).desired_width(300.0)).labelled_by(label.id);
                ui.end_row();
                let label = ui.label("Aliases");
                ui.add(egui::TextEdit::singleline(&mut dialog.aliases).hint_text("champion, staging").desired_width(300.0)).labelled_by(label.id);
                ui.end_row();
                let label = ui.label("Tags");
                ui.add(egui::TextEdit::singleline(&mut dialog.tags).hint_text("team=desk, stage=qa").desired_width(300.0)).labelled_by(label.id);
                ui.end_row();
                let label = ui.label("Description");
                ui.add(egui::TextEdit::multiline(&mut dialog.description).desired_rows(2).desired_width(300.0)).labelled_by(label.id);
                ui.end_row();
            });
        });
        if !dialog.steps.is_empty() {
            ui.add_space(6.0);
            let current = dialog.steps.last().copied();
            for step in &dialog.steps {
                let done = Some(*step) != current || dialog.outcome.as_ref().is_some_and(Result::is_ok);
                ui.label(format!("{} · {}", if done { "done" } else { "now" }, capitalized(step.label())));
                if *step == PushStep::Upload {
                    if let Some(p) = dialog.progress {
                        let fraction = if p.bytes_total > 0 { p.bytes_done as f32 / p.bytes_total as f32 } else { 1.0 };
                        ui.add(egui::ProgressBar::new(fraction).text(format!(
                            "{} / {} · {} of {} files",
                            crate::memory::human_bytes(p.bytes_done),
                            crate::memory::human_bytes(p.bytes_total),
                            p.files_done,
                            p.files_total
                        )));
                    }
                }
            }
        }
        match &dialog.outcome {
            Some(Ok(pushed)) => {
                ui.label(RichText::new(format!("Registered {} version {}", pushed.name, pushed.version)).strong());
                ui.weak(format!("source {}", pushed.source));
            }
            Some(Err(message)) => {
                ui.colored_label(ui.visuals().error_fg_color, message);
            }
            None => {}
        }
        ui.horizontal(|ui| {
            if dialog.running {
                ui.spinner();
                if ui.button("Cancel").clicked() {
                    out.push(registry(RegistryIntent::CancelPublish));
                }
            } else {
                if editable && ui.add_enabled(connected.is_some() && !dialog.name.trim().is_empty(), egui::Button::new("Publish")).clicked() {
                    out.push(registry(RegistryIntent::Publish));
                }
                if ui.button("Close").clicked() {
                    out.push(registry(RegistryIntent::ClosePublish));
                }
            }
        });
    });
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}
