//! The library panel: the models the user opened.

use egui::RichText;

use crate::app::{AppState, Intent};

pub fn show(ui: &mut egui::Ui, state: &AppState, out: &mut Vec<Intent>) {
    // The heading on its own row: beside two buttons it was cut off in a narrow panel.
    ui.heading("Library");
    ui.horizontal_wrapped(|ui| {
        if ui.button("Open folder…").clicked() {
            out.push(Intent::PickModelFolder);
        }
        if ui.button("Get a model…").clicked() {
            out.push(Intent::GetModel(crate::app::GetModelIntent::Show));
        }
    });
    ui.separator();
    if state.persisted.library.is_empty() {
        ui.weak("No models yet. Open a Phi-3 ONNX folder or an MLflow model folder, or drop one here.");
        return;
    }
    egui::ScrollArea::vertical().auto_shrink([false, false]).show(ui, |ui| {
        for entry in &state.persisted.library {
            let selected = state.persisted.selected.as_ref() == Some(&entry.path);
            let info = state.entries.get(&entry.path);
            let frame = egui::Frame::group(ui.style()).fill(if selected { ui.visuals().selection.bg_fill.gamma_multiply(0.35) } else { egui::Color32::TRANSPARENT });
            let response = frame
                .show(ui, |ui| {
                    ui.set_width(ui.available_width());
                    ui.horizontal(|ui| {
                        ui.label(RichText::new(entry.name()).strong());
                        // Two entries with one name are told apart by the folder they are in.
                        if state.persisted.library.iter().filter(|other| other.name() == entry.name()).count() > 1 {
                            if let Some(parent) = entry.path.parent().and_then(|p| p.file_name()) {
                                ui.weak(format!("in {}", parent.to_string_lossy()));
                            }
                        }
                        if let Some(info) = info {
                            if !info.errors.is_empty() {
                                ui.colored_label(ui.visuals().error_fg_color, format!("{} problem{}", info.errors.len(), if info.errors.len() == 1 { "" } else { "s" }))
                                    .on_hover_text(info.errors.join("\n"));
                            } else if info.warnings > 0 {
                                ui.colored_label(ui.visuals().warn_fg_color, format!("{} warnings", info.warnings));
                            }
                        }
                    });
                    match info {
                        Some(info) => ui.weak(format!("{} · {}", info.kind.label(), crate::memory::human_bytes(info.bytes))),
                        None => ui.weak("checking…"),
                    };
                })
                .response
                .interact(egui::Sense::click())
                .on_hover_text(entry.path.display().to_string());
            if response.clicked() {
                out.push(Intent::Select(entry.path.clone()));
            }
            response.context_menu(|ui| {
                if ui.button("Reveal in file manager").clicked() {
                    out.push(Intent::Reveal(entry.path.clone()));
                    ui.close();
                }
                if ui.button("Remove from list").clicked() {
                    out.push(Intent::RemoveEntry(entry.path.clone()));
                    ui.close();
                }
            });
        }
    });
}
