//! A Hugging Face checkpoint: its view (what it is, what converting it costs, the two ways to an
//! MLflow model), the "Create MLflow model" dialog with the kind, and the "Convert to ONNX"
//! dialog with precision, provider and Python, progress, cancel and the result.

use egui::RichText;

use crate::{
    app::{AppState, ConvertIntent, Intent, PackageKind},
    convert::{Precision, Provider, is_supported},
    memory::human_bytes,
};

fn minutes(seconds: f64) -> String {
    if seconds < 90.0 { format!("{seconds:.0} s") } else { format!("{:.0} min", seconds / 60.0) }
}

/// The selected checkpoint (the central panel).
pub fn checkpoint_view(ui: &mut egui::Ui, state: &AppState, out: &mut Vec<Intent>) {
    let Some(entry) = state.selected_entry() else { return };
    ui.heading(entry.name());
    ui.label(RichText::new("Hugging Face checkpoint (PyTorch / safetensors)").strong());
    ui.weak(entry.path.display().to_string());
    ui.add_space(8.0);
    match state.convert.summary.as_ref().and_then(|(_, summary)| summary.as_ref()) {
        None => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Reading the checkpoint…");
            });
        }
        Some(Err(message)) => {
            ui.colored_label(ui.visuals().error_fg_color, message);
        }
        Some(Ok(summary)) => {
            egui::Grid::new("checkpoint_summary").num_columns(2).show(ui, |ui| {
                ui.label("Architecture");
                ui.label(&summary.architecture);
                ui.end_row();
                if let Some(repository) = &summary.repository {
                    ui.label("Repository");
                    ui.label(repository);
                    ui.end_row();
                }
                ui.label("Weights");
                ui.label(format!(
                    "{} in {} file(s), {} parameters{}",
                    human_bytes(summary.weight_bytes),
                    summary.weight_files,
                    human_count(summary.estimate.parameters),
                    summary.dtype.as_deref().map(|d| format!(", {d}")).unwrap_or_default()
                ));
                ui.end_row();
                if let Some(layers) = summary.layers {
                    ui.label("Layers");
                    ui.label(layers.to_string());
                    ui.end_row();
                }
                ui.label("Converting needs");
                ui.label(format!(
                    "about {} of memory and {} of processor time",
                    human_bytes(summary.estimate.peak_bytes),
                    minutes(summary.estimate.cpu_seconds)
                ));
                ui.end_row();
            });
        }
    }
    ui.add_space(10.0);
    ui.label("ModelDesk chats with the ONNX form of a model. Convert this checkpoint with onnxruntime-genai's model builder, or package it for MLflow as it is.");
    ui.horizontal(|ui| {
        if ui.button("Convert to ONNX…").clicked() {
            out.push(Intent::Convert(ConvertIntent::OpenConvert { then_package: false }));
        }
        if ui.button("Create MLflow model…").clicked() {
            out.push(Intent::Convert(ConvertIntent::OpenPackage));
        }
    });
}

fn human_count(count: u64) -> String {
    match count {
        c if c >= 1_000_000_000 => format!("{:.1} billion", c as f64 / 1e9),
        c if c >= 1_000_000 => format!("{:.1} million", c as f64 / 1e6),
        c => format!("{c}"),
    }
}

/// The two dialogs, when open.
pub fn dialogs(ctx: &egui::Context, state: &mut AppState, out: &mut Vec<Intent>) {
    package_dialog(ctx, state, out);
    convert_dialog(ctx, state, out);
}

fn package_dialog(ctx: &egui::Context, state: &mut AppState, out: &mut Vec<Intent>) {
    let Some(dialog) = state.convert.package.as_mut() else { return };
    egui::Modal::new(egui::Id::unique("checkpoint_package")).show(ctx, |ui| {
        ui.set_width(520.0);
        ui.heading("Create MLflow model");
        ui.label(format!("From {}", dialog.source.display()));
        ui.add_space(6.0);
        if dialog.is_running() {
            ui.label("Writing the transformers package");
            let fraction = dialog.progress.map_or(0.0, |p| p.fraction());
            let text = match dialog.progress {
                Some(p) => format!("{} / {} ({:.0}%)", human_bytes(p.done_bytes), human_bytes(p.total_bytes), fraction * 100.0),
                None => "starting…".into(),
            };
            ui.add(egui::ProgressBar::new(fraction).text(text));
            if ui.button("Cancel").clicked() {
                out.push(Intent::Convert(ConvertIntent::CancelPackage));
            }
            return;
        }
        if let Some(outcome) = &dialog.outcome {
            match outcome {
                Ok(path) => {
                    ui.label(RichText::new(format!("Written to {}", path.display())).strong());
                    ui.horizontal(|ui| {
                        if ui.button("Open").clicked() {
                            out.push(Intent::Select(path.clone()));
                            out.push(Intent::Convert(ConvertIntent::ClosePackage));
                        }
                        if ui.button("Close").clicked() {
                            out.push(Intent::Convert(ConvertIntent::ClosePackage));
                        }
                    });
                }
                Err(message) => {
                    let text = if message == "cancelled" { "Cancelled; nothing was written." } else { message.as_str() };
                    ui.colored_label(ui.visuals().error_fg_color, text);
                    if ui.button("Close").clicked() {
                        out.push(Intent::Convert(ConvertIntent::ClosePackage));
                    }
                }
            }
            return;
        }
        ui.label("Kind");
        ui.radio_value(&mut dialog.kind, PackageKind::Transformers, "transformers (MLflow's transformers flavor, runs with PyTorch)");
        ui.radio_value(&mut dialog.kind, PackageKind::OnnxPyfunc, "ONNX pyfunc (runs with onnxruntime-genai, as ModelDesk does)");
        ui.add_space(6.0);
        if dialog.kind == PackageKind::OnnxPyfunc {
            ui.label("An ONNX package needs the ONNX form of the model: convert the checkpoint first; the package is then made from the converted folder.");
            ui.horizontal(|ui| {
                if ui.button("Convert to ONNX…").clicked() {
                    out.push(Intent::Convert(ConvertIntent::OpenConvert { then_package: true }));
                }
                if ui.button("Cancel").clicked() {
                    out.push(Intent::Convert(ConvertIntent::ClosePackage));
                }
            });
            return;
        }
        egui::Grid::new("package_form").num_columns(2).show(ui, |ui| {
            ui.label("Model name");
            ui.add(egui::TextEdit::singleline(&mut dialog.name).hint_text("the repository id or the folder's path"));
            ui.end_row();
            ui.label("Versions");
            ui.vertical(|ui| {
                ui.radio_value(&mut dialog.mlflow2, false, "MLflow 3.17.2, transformers 5.23.0, torch 2.15.0");
                ui.radio_value(&mut dialog.mlflow2, true, "MLflow 2.22.5, transformers 4.51.3, torch 2.15.0");
            });
            ui.end_row();
            ui.label("Weights");
            ui.checkbox(&mut dialog.link_weights, "hard-link instead of copying (same disk only; never edit them in place)");
            ui.end_row();
            ui.label("Destination");
            ui.add(egui::TextEdit::singleline(&mut dialog.destination).desired_width(320.0));
            ui.end_row();
        });
        ui.horizontal(|ui| {
            if ui.add_enabled(!dialog.destination.trim().is_empty(), egui::Button::new("Create")).clicked() {
                out.push(Intent::Convert(ConvertIntent::RunPackage));
            }
            if ui.button("Cancel").clicked() {
                out.push(Intent::Convert(ConvertIntent::ClosePackage));
            }
        });
    });
}

fn convert_dialog(ctx: &egui::Context, state: &mut AppState, out: &mut Vec<Intent>) {
    let estimate = state.convert.summary.as_ref().and_then(|(_, s)| s.as_ref()).and_then(|s| s.as_ref().ok()).map(|s| s.estimate);
    let Some(dialog) = state.convert.convert.as_mut() else { return };
    egui::Modal::new(egui::Id::unique("checkpoint_convert")).show(ctx, |ui| {
        ui.set_width(560.0);
        ui.heading("Convert to ONNX");
        ui.label(format!("From {}", dialog.source.display()));
        ui.add_space(6.0);
        if dialog.is_running() {
            let (label, fraction, elapsed, line) = match &dialog.progress {
                Some(p) => (p.stage.label(), p.fraction, p.elapsed_seconds, p.line.as_str()),
                None => ("Starting Python and the model builder", 0.0, 0.0, ""),
            };
            ui.label(label);
            ui.add(egui::ProgressBar::new(fraction).text(format!("{:.0}% · {} so far", fraction * 100.0, minutes(elapsed))));
            ui.add(egui::Label::new(RichText::new(line).weak().monospace()).truncate());
            if ui.button("Cancel").clicked() {
                out.push(Intent::Convert(ConvertIntent::CancelConvert));
            }
            return;
        }
        if let Some(outcome) = &dialog.outcome {
            match outcome {
                Ok(path) => {
                    ui.label(RichText::new(format!("Converted to {}; it is open in the library.", path.display())).strong());
                }
                Err(message) => {
                    let text = if message == "cancelled" { "Cancelled; nothing was written." } else { message.as_str() };
                    ui.colored_label(ui.visuals().error_fg_color, text);
                }
            }
            if ui.button("Close").clicked() {
                out.push(Intent::Convert(ConvertIntent::CloseConvert));
            }
            return;
        }
        let settings = &mut dialog.settings;
        egui::Grid::new("convert_form").num_columns(2).show(ui, |ui| {
            ui.label("Precision");
            ui.horizontal(|ui| {
                for precision in Precision::ALL {
                    ui.radio_value(&mut settings.precision, precision, precision.arg());
                }
            });
            ui.end_row();
            ui.label("Runs on");
            ui.horizontal(|ui| {
                for provider in Provider::ALL {
                    ui.radio_value(&mut settings.provider, provider, provider.label());
                }
            });
            ui.end_row();
            ui.label("Python");
            ui.add(egui::TextEdit::singleline(&mut settings.python).hint_text("automatic (python3 on PATH)").desired_width(320.0));
            ui.end_row();
            ui.label("Destination");
            ui.add(egui::TextEdit::singleline(&mut dialog.destination).desired_width(320.0));
            ui.end_row();
        });
        let supported = is_supported(settings.precision, settings.provider);
        if !supported {
            ui.colored_label(ui.visuals().warn_fg_color, "The builder makes int4 for every device, fp16 for CUDA and DirectML, fp32 for CPU and CUDA.");
        }
        ui.weak("The Python needs onnxruntime-genai, torch and transformers; ModelDesk says what to install if they are missing.");
        if let Some(estimate) = estimate {
            ui.weak(format!(
                "Expect about {} of memory and {} of processor time.",
                human_bytes(estimate.peak_bytes),
                minutes(estimate.cpu_seconds)
            ));
        }
        ui.horizontal(|ui| {
            if ui.add_enabled(supported && !dialog.destination.trim().is_empty(), egui::Button::new("Convert")).clicked() {
                out.push(Intent::Convert(ConvertIntent::RunConvert));
            }
            if ui.button("Cancel").clicked() {
                out.push(Intent::Convert(ConvertIntent::CloseConvert));
            }
        });
    });
}
