//! The create and export dialogs: a small form, then a progress bar with bytes, percentage and
//! time left, Cancel, and at the end the result with "Open folder".

use egui::RichText;

use crate::app::{AppState, DestinationState, Dialog, DialogKind, Intent};

pub fn show(ctx: &egui::Context, state: &mut AppState, out: &mut Vec<Intent>) {
    let Some(dialog) = state.dialog.as_mut() else { return };
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
                out.push(Intent::CancelJob);
            }
        } else if let Some(outcome) = &dialog.outcome {
            match outcome {
                Ok(path) => {
                    ui.add(egui::ProgressBar::new(1.0).text("Done (100%)"));
                    ui.label(RichText::new(format!("Written to {}", path.display())).strong());
                    ui.horizontal(|ui| {
                        if ui.button("Open folder").clicked() {
                            // A zip opens the folder it was written into.
                            let zip = path.extension().is_some_and(|e| e == "zip");
                            out.push(Intent::Reveal(if zip { path.parent().map(|p| p.to_path_buf()).unwrap_or_default() } else { path.clone() }));
                        }
                        if ui.button("Close").clicked() {
                            out.push(Intent::CloseDialog);
                        }
                    });
                }
                Err(message) => {
                    ui.colored_label(ui.visuals().error_fg_color, if message == "cancelled" { "Cancelled; nothing was written." } else { message.as_str() });
                    if ui.button("Close").clicked() {
                        out.push(Intent::CloseDialog);
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
                        out.push(Intent::PickDestination);
                    }
                });
                ui.end_row();
            });
            let ready = destination_choice(ui, dialog);
            ui.horizontal(|ui| {
                let label = match (dialog.kind, dialog.replace) {
                    (_, true) => "Replace",
                    (DialogKind::Create, false) => "Create",
                    (DialogKind::Export, false) => "Export",
                };
                if ui.add_enabled(ready && !dialog.destination.trim().is_empty(), egui::Button::new(label)).clicked() {
                    out.push(Intent::RunDialog);
                }
                if ui.button("Cancel").clicked() {
                    out.push(Intent::CloseDialog);
                }
            });
        }
    });
}

/// When the destination exists: replace it (if it is a package) or take a free name beside it.
/// Returns whether the job may start.
fn destination_choice(ui: &mut egui::Ui, dialog: &mut Dialog) -> bool {
    let DestinationState::Exists { replaceable, free_name } = dialog.destination_state.clone() else {
        // Not checked yet: the job itself refuses an existing destination.
        return true;
    };
    let shown = free_name.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    ui.colored_label(ui.visuals().warn_fg_color, "That destination already exists.");
    match &replaceable {
        Ok(()) => {
            ui.checkbox(&mut dialog.replace, "Replace it (the new package takes its place once it is complete)");
        }
        Err(reason) => {
            ui.label(format!("It cannot be replaced: {reason}."));
        }
    }
    if ui.button(format!("Use a new name: {shown}")).clicked() {
        // With a zip export the name carries `.zip`; the typed text may have left it out.
        dialog.destination = free_name.display().to_string();
        dialog.replace = false;
    }
    dialog.replace && replaceable.is_ok()
}
