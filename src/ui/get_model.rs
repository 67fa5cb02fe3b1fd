//! The "Get a model" view: the Phi ONNX catalog (name, size, what it needs, the CPU int4 variant
//! preselected), what is already on this computer, and the download with its progress bar,
//! speed, time left, Cancel and Resume. Draws `AppState` and returns intents only.

use egui::RichText;

use crate::{
    app::{ActiveDownload, AppState, DownloadStatus, GetModelIntent, Intent},
    hub::catalog::{CATALOG, CatalogModel, approx_label},
    memory::human_bytes,
};

const TOKEN_PAGE: &str = "https://huggingface.co/settings/tokens";

pub fn show(ui: &mut egui::Ui, state: &AppState, out: &mut Vec<Intent>) {
    let view = &state.get_model;
    let mut intent = |intent: GetModelIntent| out.push(Intent::GetModel(intent));
    ui.horizontal(|ui| {
        ui.heading("Get a model");
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            if ui.button("Back").clicked() {
                intent(GetModelIntent::Hide);
            }
        });
    });
    ui.label("Microsoft's Phi models for ONNX Runtime, from Hugging Face. The CPU int4 version runs on any recent computer.");
    match view.scan.as_ref().map(|scan| &scan.settings) {
        Some(Ok(settings)) => {
            let free = view.scan.as_ref().and_then(|scan| scan.free_bytes).map(|bytes| format!(" {} free there.", human_bytes(bytes))).unwrap_or_default();
            ui.weak(format!("Downloads go to the Hugging Face cache at {} (shared with Python tools).{free}", settings.cache_dir.display()));
        }
        Some(Err(message)) => {
            ui.colored_label(ui.visuals().error_fg_color, format!("The Hugging Face settings are unusable: {message}"));
        }
        None => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.weak("Looking for models already on this computer…");
            });
        }
    }
    ui.separator();
    egui::ScrollArea::vertical().auto_shrink([false, false]).show(ui, |ui| {
        for (index, model) in CATALOG.iter().enumerate() {
            catalog_entry(ui, state, index, model, &mut intent);
        }
        let others = view.scan.as_ref().map(|scan| scan.others.as_slice()).unwrap_or_default();
        if !others.is_empty() {
            ui.add_space(10.0);
            ui.label(RichText::new("Also in your Hugging Face cache").strong().size(16.0));
            for model in others {
                ui.horizontal(|ui| {
                    let name = if model.subfolder.is_empty() { model.repo.clone() } else { format!("{} · {}", model.repo, model.subfolder) };
                    ui.label(name).on_hover_text(model.folder.display().to_string());
                    ui.weak(human_bytes(model.bytes));
                    let in_library = state.persisted.library.iter().any(|entry| entry.path == model.folder);
                    if in_library {
                        ui.weak("in the library");
                    } else if ui.button("Add to library").clicked() {
                        intent(GetModelIntent::AddToLibrary(model.folder.clone()));
                    }
                });
            }
        }
    });
}

fn catalog_entry(ui: &mut egui::Ui, state: &AppState, index: usize, model: &CatalogModel, intent: &mut impl FnMut(GetModelIntent)) {
    let view = &state.get_model;
    let selected = view.selected_variant(index).min(model.variants.len() - 1);
    let variant = &model.variants[selected];
    let download = view.download.as_ref().filter(|d| d.model == index);
    let busy_elsewhere = view.download.as_ref().is_some_and(|d| d.model != index && d.is_running());
    egui::Frame::group(ui.style()).inner_margin(10.0).show(ui, |ui| {
        ui.set_width(ui.available_width());
        ui.horizontal(|ui| {
            ui.label(RichText::new(model.title).strong().size(16.0));
            ui.weak(format!("{} context", model.context));
        });
        ui.weak(model.repo);
        ui.horizontal(|ui| {
            let running = download.is_some_and(ActiveDownload::is_running);
            ui.add_enabled_ui(!running, |ui| {
                egui::ComboBox::from_id_salt(("variant", index)).selected_text(variant.label).show_ui(ui, |ui| {
                    for (number, option) in model.variants.iter().enumerate() {
                        if ui.selectable_label(number == selected, option.label).clicked() {
                            intent(GetModelIntent::SelectVariant { model: index, variant: number });
                        }
                    }
                });
            });
            ui.label(variant.approx_bytes.map(approx_label).unwrap_or_else(|| "size shown when it starts".into()));
            ui.weak(format!("needs {}", variant.provider.label()));
        });
        let local = view.scan.as_ref().and_then(|scan| scan.local(index, selected));
        match (download, local) {
            (Some(download), _) if download.variant == selected || download.is_running() => progress(ui, download, &mut *intent),
            (_, Some(local)) => {
                ui.horizontal(|ui| {
                    ui.label(RichText::new("Already on this computer").color(ui.visuals().hyperlink_color));
                    ui.weak(human_bytes(local.bytes));
                    if ui.button("Open").clicked() {
                        intent(GetModelIntent::AddToLibrary(local.folder.clone()));
                    }
                });
            }
            _ => {
                let ready = view.scan.as_ref().is_some_and(|scan| scan.settings.is_ok());
                if ui.add_enabled(ready && !busy_elsewhere, egui::Button::new("Download")).clicked() {
                    intent(GetModelIntent::Download { model: index });
                }
            }
        }
    });
}

fn progress(ui: &mut egui::Ui, download: &ActiveDownload, intent: &mut impl FnMut(GetModelIntent)) {
    let fraction = download.progress.as_ref().map_or(0.0, |p| if p.total == 0 { 1.0 } else { p.done as f32 / p.total as f32 });
    let text = match (&download.progress, &download.rate) {
        (Some(p), rate) => {
            let speed = rate.map(|r| format!(" · {}/s", human_bytes(r.bytes_per_second as u64))).unwrap_or_default();
            let left = rate.and_then(|r| r.time_left_label()).map(|t| format!(" · {t} left")).unwrap_or_default();
            format!("{} of {} ({:.0}%){speed}{left}", human_bytes(p.done), human_bytes(p.total), fraction * 100.0)
        }
        (None, _) => "starting…".into(),
    };
    match &download.status {
        DownloadStatus::Starting | DownloadStatus::Running => {
            ui.add(egui::ProgressBar::new(fraction).text(text));
            ui.horizontal(|ui| {
                if let Some(p) = &download.progress {
                    let name = p.file_path.rsplit('/').next().unwrap_or(&p.file_path);
                    ui.weak(format!("file {} of {}: {name}", p.file_index + 1, p.file_count));
                }
                if ui.button("Cancel").clicked() {
                    intent(GetModelIntent::Cancel);
                }
            });
        }
        DownloadStatus::Cancelled => {
            ui.add(egui::ProgressBar::new(fraction).text(text));
            ui.horizontal(|ui| {
                ui.label("Cancelled. What was downloaded is kept.");
                if ui.button("Resume").clicked() {
                    intent(GetModelIntent::Download { model: download.model });
                }
            });
        }
        DownloadStatus::Failed { message, wants_token } => {
            ui.colored_label(ui.visuals().error_fg_color, message);
            if *wants_token {
                ui.hyperlink_to("Create a Hugging Face token (then set HF_TOKEN and restart ModelDesk)", TOKEN_PAGE);
            }
            if ui.button("Try again").clicked() {
                intent(GetModelIntent::Download { model: download.model });
            }
        }
    }
}
