//! The create and export dialogs: a small form, then a progress bar with bytes, percentage and
//! time left, Cancel, and at the end the result with "Open folder".

use egui::RichText;

use crate::app::{AppState, DialogKind};

pub fn show(ctx: &egui::Context, state: &mut AppState) {
    let Some(dialog) = state.dialog.as_mut() else { return };
    let mut close = false;
    let mut run = false;
    let mut cancel = false;
    let mut browse = false;
    let mut open_result = None;
    let title = match dialog.kind {
        DialogKind::Create => "Create MLflow model",
        DialogKind::Export => "Export package",
    };
    egui::Modal::new(egui::Id::unique("job_dialog")).show(ctx, |ui| {
        ui.set_width(480.0);
        ui.heading(title);
        ui.label(format!("From {}", dialog.source.display()));
        ui.add_space(6.0);
        if let Some(job) = &dialog.job {
            ui.label(&job.title);
            let progress = job.progress;
            let fraction = progress.map(|p| p.fraction()).unwrap_or(0.0);
            let text = match progress {
                Some(p) => format!(
                    "{} / {} ({:.0}%){}",
                    crate::memory::human_bytes(p.done_bytes),
                    crate::memory::human_bytes(p.total_bytes),
                    fraction * 100.0,
                    p.remaining_seconds().map(|s| format!(" · {s:.0} s left")).unwrap_or_default()
                ),
                None => "starting…".into(),
            };
            ui.add(egui::ProgressBar::new(fraction).text(text));
            if ui.button("Cancel").clicked() {
                cancel = true;
            }
        } else if let Some(outcome) = &dialog.outcome {
            match outcome {
                Ok(path) => {
                    ui.add(egui::ProgressBar::new(1.0).text("Done (100%)"));
                    ui.label(RichText::new(format!("Written to {}", path.display())).strong());
                    ui.horizontal(|ui| {
                        if ui.button("Open folder").clicked() {
                            open_result = Some(if path.is_dir() { path.clone() } else { path.parent().map(|p| p.to_path_buf()).unwrap_or_default() });
                        }
                        if ui.button("Close").clicked() {
                            close = true;
                        }
                    });
                }
                Err(message) => {
                    ui.colored_label(ui.visuals().error_fg_color, if message == "cancelled" { "Cancelled; nothing was written." } else { message.as_str() });
                    if ui.button("Close").clicked() {
                        close = true;
                    }
                }
            }
        } else {
            egui::Grid::new("dialog_form").num_columns(2).show(ui, |ui| {
                if dialog.kind == DialogKind::Create {
                    ui.label("Task");
                    ui.horizontal(|ui| {
                        ui.radio_value(&mut dialog.task_chat, true, "chat (llm/v1/chat)");
                        ui.radio_value(&mut dialog.task_chat, false, "prompt (string to string)");
                    });
                    ui.end_row();
                    ui.label("Name");
                    ui.text_edit_singleline(&mut dialog.name);
                    ui.end_row();
                } else {
                    ui.label("Format");
                    ui.checkbox(&mut dialog.zip, "one .zip file");
                    ui.end_row();
                }
                ui.label("Destination");
                ui.horizontal(|ui| {
                    ui.add(egui::TextEdit::singleline(&mut dialog.destination).desired_width(300.0));
                    if ui.button("Browse…").clicked() {
                        browse = true;
                    }
                });
                ui.end_row();
            });
            let exists = std::path::Path::new(dialog.destination.trim()).exists();
            if exists {
                ui.colored_label(ui.visuals().warn_fg_color, "That destination exists; choose a new name.");
            }
            ui.horizontal(|ui| {
                let label = if dialog.kind == DialogKind::Create { "Create" } else { "Export" };
                if ui.add_enabled(!exists && !dialog.destination.trim().is_empty(), egui::Button::new(label)).clicked() {
                    run = true;
                }
                if ui.button("Cancel").clicked() {
                    close = true;
                }
            });
        }
    });
    if run {
        state.run_dialog(ctx);
    }
    if cancel {
        state.cancel_dialog_job();
    }
    if browse {
        state.pick_destination(ctx);
    }
    if let Some(path) = open_result {
        if let Err(e) = open::that_detached(&path) {
            state.notify_error("The folder could not be opened", Some(e.to_string()));
        }
    }
    if close {
        state.dialog = None;
    }
}
