//! egui views. They draw `AppState` and return [`Intent`]s for what the user asked; `app`
//! carries them out. No file, thread or model work happens here.

mod chat_view;
mod convert;
mod dialogs;
mod get_model;
pub mod keymap;
mod library;
mod model_view;
mod path_field;
mod publish;
mod registry;
mod registry_browse;
mod remote_chat;
mod serve;

use egui::RichText;

use crate::app::{AppState, CloseChoice, DialogKind, Intent, RuntimeStatus, SwitchChoice, Tab};

/// Draws the whole window; returns what the user asked for this frame.
pub fn show(ui: &mut egui::Ui, state: &mut AppState) -> Vec<Intent> {
    let ctx = ui.ctx().clone();
    let mut out = Vec::new();
    keymap::pressed(&ctx, state, &mut out);
    if ctx.input(|i| i.viewport().close_requested()) {
        out.push(Intent::CloseRequested);
    }
    egui::Panel::top("menu_bar").show(ui, |ui| menu_bar(ui, state, &mut out));
    egui::Panel::bottom("status_bar").show(ui, |ui| status_bar(ui, state));
    egui::Panel::left("library").resizable(true).default_size(270.0).min_size(200.0).show(ui, |ui| library::show(ui, state, &mut out));
    egui::CentralPanel::default().show(ui, |ui| central(ui, state, &mut out));
    drop_target(&ctx, &mut out);
    dialogs::show(&ctx, state, &mut out);
    convert::dialogs(&ctx, state, &mut out);
    publish::show(&ctx, state, &mut out);
    remote_chat::endpoint_form(&ctx, state, &mut out);
    path_field::window(&ctx, state, &mut out);
    notices(&ctx, state, &mut out);
    about_and_help(&ctx, state);
    crash_report(&ctx, state, &mut out);
    confirm_switch(&ctx, state, &mut out);
    model_choices(&ctx, state, &mut out);
    confirm_close(&ctx, state, &mut out);
    out
}

fn confirm_switch(ctx: &egui::Context, state: &AppState, out: &mut Vec<Intent>) {
    if state.pending_select.is_none() || state.saving.is_some() {
        return;
    }
    egui::Modal::new(egui::Id::unique("confirm_switch")).show(ctx, |ui| {
        ui.heading("Unsaved changes");
        ui.label("This model has edits that are not saved. Save them before opening another model?");
        ui.horizontal(|ui| {
            for (label, choice) in [("Save", SwitchChoice::Save), ("Discard", SwitchChoice::Discard), ("Cancel", SwitchChoice::Cancel)] {
                if ui.button(label).clicked() {
                    out.push(Intent::ConfirmSwitch(choice));
                }
            }
        });
    });
}

fn crash_report(ctx: &egui::Context, state: &AppState, out: &mut Vec<Intent>) {
    let Some(log) = &state.crash_report else { return };
    egui::Modal::new(egui::Id::unique("crash_report")).show(ctx, |ui| {
        ui.heading("ModelDesk closed unexpectedly last time");
        ui.label("What happened was written to this file; it helps to include it when you report the problem:");
        ui.monospace(log.display().to_string());
        ui.horizontal(|ui| {
            if ui.button("Open log folder").clicked() {
                out.push(Intent::Reveal(log.parent().unwrap_or(log).to_path_buf()));
            }
            if ui.button("OK").clicked() {
                out.push(Intent::CrashReportSeen);
            }
        });
    });
}


fn confirm_close(ctx: &egui::Context, state: &AppState, out: &mut Vec<Intent>) {
    if !state.confirm_close {
        return;
    }
    egui::Modal::new(egui::Id::unique("confirm_close")).show(ctx, |ui| {
        ui.heading("Unsaved changes");
        ui.label("The model has edits that are not saved. Close anyway?");
        ui.horizontal(|ui| {
            for (label, choice) in [
                ("Save and close", CloseChoice::SaveAndClose),
                ("Discard and close", CloseChoice::DiscardAndClose),
                ("Cancel", CloseChoice::Cancel),
            ] {
                if ui.button(label).clicked() {
                    out.push(Intent::ConfirmClose(choice));
                }
            }
        });
    });
}

fn menu_bar(ui: &mut egui::Ui, state: &AppState, out: &mut Vec<Intent>) {
    let ctx = ui.ctx().clone();
    egui::MenuBar::new().ui(ui, |ui| {
        ui.menu_button("File", |ui| {
            if ui.add(egui::Button::new("Open folder…").shortcut_text(ctx.format_shortcut(&keymap::OPEN))).clicked() {
                out.push(Intent::PickModelFolder);
            }
            if ui.button("Open path…").on_hover_text("Type or paste a folder's path").clicked() {
                out.push(Intent::ShowPathEntry);
            }
            let can_save = state.has_unsaved_edits();
            if ui.add_enabled(can_save, egui::Button::new("Save").shortcut_text(ctx.format_shortcut(&keymap::SAVE))).clicked() {
                out.push(Intent::SaveModel);
            }
            if ui.add(egui::Button::new("New chat").shortcut_text(ctx.format_shortcut(&keymap::NEW_CHAT))).clicked() {
                out.push(Intent::NewConversation);
            }
            ui.separator();
            if ui.button("Quit").clicked() {
                out.push(Intent::Quit);
            }
        });
        ui.menu_button("Actions", |ui| {
            let kind = state.selected_kind();
            let checkpoint = state.selected_is_checkpoint();
            if ui.add_enabled(checkpoint || kind.is_some_and(|k| k.can_chat()), egui::Button::new("Create MLflow model…")).clicked() {
                out.push(if checkpoint { Intent::Convert(crate::app::ConvertIntent::OpenPackage) } else { Intent::OpenDialog(DialogKind::Create) });
            }
            if ui.add_enabled(checkpoint, egui::Button::new("Convert to ONNX…")).clicked() {
                out.push(Intent::Convert(crate::app::ConvertIntent::OpenConvert { then_package: false }));
            }
            if ui.add_enabled(kind.is_some_and(|k| k.is_mlflow()), egui::Button::new("Export package…")).clicked() {
                out.push(Intent::OpenDialog(DialogKind::Export));
            }
            if ui.add_enabled(state.persisted.selected.is_some(), egui::Button::new("Check again")).clicked() {
                out.push(Intent::CheckAgain);
            }
        });
        if ui.selectable_label(state.registry.visible, "Registry").on_hover_text("Models on an MLflow tracking server").clicked() {
            out.push(Intent::Registry(crate::app::RegistryIntent::Show(!state.registry.visible)));
        }
        ui.menu_button("Help", |ui| {
            if ui.button("Keyboard shortcuts").clicked() {
                out.push(Intent::ShowShortcuts);
            }
            if ui.button("About ModelDesk").clicked() {
                out.push(Intent::ShowAbout);
            }
        });
    });
}

fn status_bar(ui: &mut egui::Ui, state: &AppState) {
    ui.horizontal(|ui| {
        match &state.runtime {
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
        }
        ui.separator();
        let session = state.engine.session.as_ref();
        match (session.and_then(|s| s.facts()), state.engine.is_loading()) {
            (_, true) => {
                ui.spinner();
                ui.label("Loading model…");
            }
            (Some(facts), false) => {
                let provider = facts.execution_providers.first().map(|p| p.trim_end_matches("ExecutionProvider")).unwrap_or("CPU");
                ui.label(format!("{} loaded · {provider} · {} threads", facts.name, facts.intra_threads));
            }
            (None, false) => {
                ui.weak("No model loaded");
            }
        }
        if let Some(bytes) = state.memory_bytes {
            ui.separator();
            ui.label(format!("Memory {}", crate::memory::human_bytes(bytes)));
        }
    });
}

fn central(ui: &mut egui::Ui, state: &mut AppState, out: &mut Vec<Intent>) {
    if state.registry.visible {
        return registry::show(ui, state, out);
    }
    if state.get_model.visible {
        return get_model::show(ui, state, out);
    }
    if let RuntimeStatus::Missing { message } = &state.runtime {
        runtime_missing(ui, message, state.runtime_pick.is_some(), out);
        return;
    }
    let Some(entry) = state.selected_entry().cloned() else {
        welcome(ui, state, out);
        return;
    };
    if state.selected_is_checkpoint() {
        return convert::checkpoint_view(ui, state, out);
    }
    if let Some(crate::app::FolderKind::Foreign(foreign)) = state.selected_kind() {
        ui.heading(entry.name());
        explanation(ui, foreign.label(), &format!("{} is a {}.", entry.path.display(), foreign.label()), foreign.next_step());
        return;
    }
    ui.horizontal(|ui| {
        ui.heading(entry.name());
        if state.has_unsaved_edits() {
            ui.label(RichText::new("(unsaved)").color(ui.visuals().warn_fg_color));
        }
    });
    ui.horizontal(|ui| {
        for (tab, label) in [(Tab::Chat, "Chat"), (Tab::Model, "Model")] {
            if ui.selectable_label(state.tab == tab, label).clicked() {
                out.push(Intent::SetTab(tab));
            }
        }
    });
    ui.separator();
    match state.tab {
        Tab::Chat => chat_view::show(ui, state, out),
        Tab::Model => model_view::show(ui, state, out),
    }
}

fn welcome(ui: &mut egui::Ui, state: &mut AppState, out: &mut Vec<Intent>) {
    ui.vertical_centered(|ui| {
        ui.add_space(ui.available_height() * 0.18);
        ui.heading(RichText::new("Welcome to ModelDesk").size(26.0));
        ui.add_space(8.0);
        ui.label("Chat with Phi-3 ONNX models on your computer, and edit and export MLflow model folders.");
        ui.add_space(12.0);
        if ui.button(RichText::new("Open a model folder…").size(16.0)).clicked() {
            out.push(Intent::PickModelFolder);
        }
        if ui.button(RichText::new("Get a model…").size(16.0)).on_hover_text("Download a Phi model from Hugging Face").clicked() {
            out.push(Intent::GetModel(crate::app::GetModelIntent::Show));
        }
        ui.add_space(8.0);
        ui.weak("…or drag a folder onto this window, or type its path:");
        ui.add_space(4.0);
        ui.scope(|ui| {
            ui.set_max_width(560.0);
            path_field::field(ui, &mut state.path_entry, out);
        });
        let recent: Vec<_> = state.persisted.library.iter().rev().take(5).map(|e| e.path.clone()).collect();
        if !recent.is_empty() {
            ui.add_space(12.0);
            ui.label(RichText::new("Recent folders").strong());
            for path in recent {
                if ui.link(path.display().to_string()).clicked() {
                    out.push(Intent::Select(path));
                }
            }
        }
        ui.add_space(16.0);
        ui.label("Where to get a model: Microsoft publishes Phi-3 for ONNX Runtime on Hugging Face as");
        ui.monospace("microsoft/Phi-3-mini-4k-instruct-onnx, folder cpu_and_mobile/cpu-int4-rtn-block-32-acc-level-4");
        ui.weak("Open that folder (it holds genai_config.json), or any MLflow model folder (it holds an MLmodel file).");
    });
}

fn runtime_missing(ui: &mut egui::Ui, message: &str, picking: bool, out: &mut Vec<Intent>) {
    ui.heading("ONNX Runtime is missing");
    ui.label("ModelDesk runs models with ONNX Runtime, and could not load its library.");
    ui.add_space(6.0);
    egui::ScrollArea::vertical().max_height(220.0).show(ui, |ui| {
        ui.monospace(message);
    });
    ui.add_space(6.0);
    if ui.add_enabled(!picking, egui::Button::new("Choose ONNX Runtime library…")).clicked() {
        out.push(Intent::PickRuntimeLibrary);
    }
}

fn drop_target(ctx: &egui::Context, out: &mut Vec<Intent>) {
    let hovering = ctx.input(|i| !i.raw.hovered_files.is_empty());
    if hovering {
        let screen = ctx.content_rect();
        let painter = ctx.layer_painter(egui::LayerId::new(egui::Order::Foreground, egui::Id::unique("drop_overlay")));
        painter.rect_filled(screen, 0.0, egui::Color32::from_black_alpha(170));
        painter.text(
            screen.center(),
            egui::Align2::CENTER_CENTER,
            "Drop a model folder to open it",
            egui::FontId::proportional(24.0),
            egui::Color32::WHITE,
        );
    }
    let dropped: Vec<std::path::PathBuf> = ctx.input(|i| i.raw.dropped_files.iter().map(|f| f.path().to_path_buf()).collect());
    out.extend(dropped.into_iter().map(Intent::OpenPath));
}

fn notices(ctx: &egui::Context, state: &AppState, out: &mut Vec<Intent>) {
    if state.notices.is_empty() {
        return;
    }
    egui::Area::new(egui::Id::unique("notices"))
        .anchor(egui::Align2::RIGHT_TOP, egui::vec2(-12.0, 40.0))
        .order(egui::Order::Foreground)
        .show(ctx, |ui| {
            ui.set_max_width(380.0);
            for (index, notice) in state.notices.iter().enumerate() {
                egui::Frame::popup(ui.style()).show(ui, |ui| {
                    ui.horizontal(|ui| {
                        if notice.error {
                            ui.colored_label(ui.visuals().error_fg_color, "!");
                        }
                        ui.label(&notice.text);
                        if ui.small_button("x").on_hover_text("Dismiss").clicked() {
                            out.push(Intent::DismissNotice(index));
                        }
                    });
                    if let Some(details) = &notice.details {
                        ui.collapsing("Details", |ui| {
                            ui.label(RichText::new(details).monospace().small());
                        });
                    }
                });
            }
        });
}

fn about_and_help(ctx: &egui::Context, state: &mut AppState) {
    let runtime = match &state.runtime {
        RuntimeStatus::Loaded(runtime) => format!("ONNX Runtime {} from {}", runtime.version, runtime.library_path.display()),
        _ => "ONNX Runtime: not loaded".into(),
    };
    egui::Window::new("About ModelDesk").open(&mut state.about_open).resizable(false).collapsible(false).show(ctx, |ui| {
        ui.heading(format!("ModelDesk {}", env!("CARGO_PKG_VERSION")));
        ui.label("Chat with local Phi-3 ONNX models; manage and export MLflow model folders.");
        ui.label(runtime);
        ui.label(format!("Packages target MLflow {}", crate::mlflow::create::MLFLOW_VERSION));
    });
    egui::Window::new("Keyboard shortcuts").open(&mut state.shortcuts_open).resizable(false).collapsible(false).show(ctx, |ui| {
        egui::Grid::new("shortcuts").num_columns(2).show(ui, |ui| {
            for binding in keymap::BINDINGS {
                ui.monospace(ctx.format_shortcut(&binding.shortcut));
                ui.label(binding.what);
                ui.end_row();
            }
            for (keys, what) in keymap::OTHER_KEYS {
                ui.monospace(*keys);
                ui.label(*what);
                ui.end_row();
            }
        });
    });
}
/// A panel in the main view saying what something is and what to do next.
pub(crate) fn explanation(ui: &mut egui::Ui, title: &str, what: &str, next: &str) {
    ui.add_space(12.0);
    egui::Frame::group(ui.style()).inner_margin(12.0).show(ui, |ui| {
        ui.set_max_width(640.0);
        ui.label(RichText::new(title).strong().size(17.0));
        ui.add_space(4.0);
        ui.label(what);
        ui.add_space(6.0);
        ui.label(RichText::new("What you can do").strong());
        ui.label(next);
    });
}

fn model_choices(ctx: &egui::Context, state: &AppState, out: &mut Vec<Intent>) {
    let Some(choices) = &state.model_choices else { return };
    egui::Modal::new(egui::Id::unique("model_choices")).show(ctx, |ui| {
        ui.set_max_width(560.0);
        ui.heading("Which model?");
        ui.label(format!("{} holds {} model folders:", choices.root.display(), choices.folders.len()));
        egui::ScrollArea::vertical().max_height(320.0).show(ui, |ui| {
            for folder in &choices.folders {
                let relative = folder.strip_prefix(&choices.root).unwrap_or(folder);
                if ui.button(relative.display().to_string()).clicked() {
                    out.push(Intent::ChooseModel(Some(folder.clone())));
                }
            }
        });
        if !choices.complete {
            ui.weak("The search stopped at its limits; there may be more further down.");
        }
        if ui.button("Cancel").clicked() {
            out.push(Intent::ChooseModel(None));
        }
    });
}
