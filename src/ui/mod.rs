//! egui views. They draw `AppState` and turn clicks into calls on it; no file or model work here.

mod chat_view;
mod dialogs;
mod library;
mod model_view;

use egui::{Key, KeyboardShortcut, Modifiers, RichText};

use crate::app::{AppState, RuntimeStatus, Tab};

pub const OPEN: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::O);
pub const SAVE: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::S);
pub const NEW_CHAT: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::N);
pub const STOP: KeyboardShortcut = KeyboardShortcut::new(Modifiers::NONE, Key::Escape);

/// Spacing and text sizes shared by every view.
pub fn style(ctx: &egui::Context) {
    ctx.all_styles_mut(|style| {
        style.spacing.item_spacing = egui::vec2(8.0, 6.0);
        style.spacing.button_padding = egui::vec2(8.0, 4.0);
        style.spacing.interact_size.y = 24.0;
    });
}

/// Draws the whole window.
pub fn show(ui: &mut egui::Ui, state: &mut AppState) {
    let ctx = ui.ctx().clone();
    shortcuts(&ctx, state);
    handle_close(&ctx, state);
    egui::Panel::top("menu_bar").show(ui, |ui| menu_bar(ui, state));
    egui::Panel::bottom("status_bar").show(ui, |ui| status_bar(ui, state));
    egui::Panel::left("library").resizable(true).default_size(270.0).min_size(200.0).show(ui, |ui| library::show(ui, state));
    egui::CentralPanel::default().show(ui, |ui| central(ui, state));
    drop_target(&ctx, state);
    dialogs::show(&ctx, state);
    notices(&ctx, state);
    about_and_help(&ctx, state);
    crash_report(&ctx, state);
    confirm_switch(&ctx, state);
}

fn confirm_switch(ctx: &egui::Context, state: &mut AppState) {
    let Some(next) = state.pending_select.clone() else { return };
    if state.saving.is_some() {
        return;
    }
    let mut choice = None;
    egui::Modal::new(egui::Id::unique("confirm_switch")).show(ctx, |ui| {
        ui.heading("Unsaved changes");
        ui.label("This model has edits that are not saved. Save them before opening another model?");
        ui.horizontal(|ui| {
            if ui.button("Save").clicked() {
                choice = Some(0);
            }
            if ui.button("Discard").clicked() {
                choice = Some(1);
            }
            if ui.button("Cancel").clicked() {
                choice = Some(2);
            }
        });
    });
    match choice {
        Some(0) => state.save_model(ctx),
        Some(1) => {
            state.pending_select = None;
            state.select(ctx, &next);
        }
        Some(_) => state.pending_select = None,
        None => {}
    }
}

fn crash_report(ctx: &egui::Context, state: &mut AppState) {
    let Some(log) = state.crash_report.clone() else { return };
    let mut close = false;
    egui::Modal::new(egui::Id::unique("crash_report")).show(ctx, |ui| {
        ui.heading("ModelDesk closed unexpectedly last time");
        ui.label("What happened was written to this file; it helps to include it when you report the problem:");
        ui.monospace(log.display().to_string());
        ui.horizontal(|ui| {
            if ui.button("Open log folder").clicked() {
                let _ = open::that_detached(log.parent().unwrap_or(&log));
            }
            if ui.button("OK").clicked() {
                close = true;
            }
        });
    });
    if close {
        if let Some(dirs) = &state.dirs {
            crate::crash::mark_reported(dirs, &log);
        }
        state.crash_report = None;
    }
}

fn shortcuts(ctx: &egui::Context, state: &mut AppState) {
    if ctx.input_mut(|i| i.consume_shortcut(&OPEN)) {
        state.pick_model_folder(ctx);
    }
    if ctx.input_mut(|i| i.consume_shortcut(&SAVE)) {
        state.save_model(ctx);
    }
    if ctx.input_mut(|i| i.consume_shortcut(&NEW_CHAT)) {
        state.tab = Tab::Chat;
        state.new_conversation();
    }
    if state.chat.streaming.is_some() && ctx.input_mut(|i| i.consume_shortcut(&STOP)) {
        state.stop_reply();
    }
}

fn handle_close(ctx: &egui::Context, state: &mut AppState) {
    if ctx.input(|i| i.viewport().close_requested()) && state.has_unsaved_edits() && !state.allow_close {
        ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
        state.confirm_close = true;
    }
    if state.confirm_close {
        egui::Modal::new(egui::Id::unique("confirm_close")).show(ctx, |ui| {
            ui.heading("Unsaved changes");
            ui.label("The model has edits that are not saved. Close anyway?");
            ui.horizontal(|ui| {
                if ui.button("Save and close").clicked() {
                    state.save_model(ctx);
                    state.confirm_close = false;
                }
                if ui.button("Discard and close").clicked() {
                    state.allow_close = true;
                    state.confirm_close = false;
                    ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                }
                if ui.button("Cancel").clicked() {
                    state.confirm_close = false;
                }
            });
        });
    }
}

fn menu_bar(ui: &mut egui::Ui, state: &mut AppState) {
    let ctx = ui.ctx().clone();
    egui::MenuBar::new().ui(ui, |ui| {
        ui.menu_button("File", |ui| {
            if ui.add(egui::Button::new("Open folder…").shortcut_text(ctx.format_shortcut(&OPEN))).clicked() {
                state.pick_model_folder(&ctx);
            }
            let can_save = state.has_unsaved_edits();
            if ui.add_enabled(can_save, egui::Button::new("Save").shortcut_text(ctx.format_shortcut(&SAVE))).clicked() {
                state.save_model(&ctx);
            }
            if ui.add(egui::Button::new("New chat").shortcut_text(ctx.format_shortcut(&NEW_CHAT))).clicked() {
                state.tab = Tab::Chat;
                state.new_conversation();
            }
            ui.separator();
            if ui.button("Quit").clicked() {
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            }
        });
        ui.menu_button("Actions", |ui| {
            let kind = state.selected_kind();
            if ui.add_enabled(kind.is_some_and(|k| k.can_chat()), egui::Button::new("Create MLflow model…")).clicked() {
                state.open_dialog(crate::app::DialogKind::Create);
            }
            if ui.add_enabled(kind.is_some_and(|k| k.is_mlflow()), egui::Button::new("Export package…")).clicked() {
                state.open_dialog(crate::app::DialogKind::Export);
            }
            if ui.add_enabled(state.persisted.selected.is_some(), egui::Button::new("Check again")).clicked() {
                if let Some(path) = state.persisted.selected.clone() {
                    state.rescan(&ctx, &path);
                    state.select(&ctx, &path);
                }
            }
        });
        ui.menu_button("Help", |ui| {
            if ui.button("Keyboard shortcuts").clicked() {
                state.shortcuts_open = true;
            }
            if ui.button("About ModelDesk").clicked() {
                state.about_open = true;
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
        match (&state.engine.facts, state.engine.loading) {
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

fn central(ui: &mut egui::Ui, state: &mut AppState) {
    if let RuntimeStatus::Missing { message } = &state.runtime {
        let message = message.clone();
        runtime_missing(ui, state, &message);
        return;
    }
    let Some(entry) = state.selected_entry().cloned() else {
        welcome(ui, state);
        return;
    };
    ui.horizontal(|ui| {
        ui.heading(entry.name());
        if state.has_unsaved_edits() {
            ui.label(RichText::new("(unsaved)").color(ui.visuals().warn_fg_color));
        }
    });
    ui.horizontal(|ui| {
        ui.selectable_value(&mut state.tab, Tab::Chat, "Chat");
        ui.selectable_value(&mut state.tab, Tab::Model, "Model");
    });
    ui.separator();
    match state.tab {
        Tab::Chat => chat_view::show(ui, state),
        Tab::Model => model_view::show(ui, state),
    }
}

fn welcome(ui: &mut egui::Ui, state: &mut AppState) {
    ui.vertical_centered(|ui| {
        ui.add_space(ui.available_height() * 0.18);
        ui.heading(RichText::new("Welcome to ModelDesk").size(26.0));
        ui.add_space(8.0);
        ui.label("Chat with Phi-3 ONNX models on your computer, and edit and export MLflow model folders.");
        ui.add_space(12.0);
        if ui.button(RichText::new("Open a model folder…").size(16.0)).clicked() {
            state.pick_model_folder(ui.ctx());
        }
        ui.add_space(8.0);
        ui.weak("…or drag a folder onto this window.");
        ui.add_space(16.0);
        ui.label("Where to get a model: Microsoft publishes Phi-3 for ONNX Runtime on Hugging Face as");
        ui.monospace("microsoft/Phi-3-mini-4k-instruct-onnx, folder cpu_and_mobile/cpu-int4-rtn-block-32-acc-level-4");
        ui.weak("Open that folder (it holds genai_config.json), or any MLflow model folder (it holds an MLmodel file).");
    });
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

fn drop_target(ctx: &egui::Context, state: &mut AppState) {
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
    for path in dropped {
        state.handle_drop(ctx, &path);
    }
}

fn notices(ctx: &egui::Context, state: &mut AppState) {
    if state.notices.is_empty() {
        return;
    }
    let mut dismiss = None;
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
                            dismiss = Some(index);
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
    if let Some(index) = dismiss {
        state.notices.remove(index);
    }
}

fn about_and_help(ctx: &egui::Context, state: &mut AppState) {
    egui::Window::new("About ModelDesk").open(&mut state.about_open).resizable(false).collapsible(false).show(ctx, |ui| {
        ui.heading(format!("ModelDesk {}", env!("CARGO_PKG_VERSION")));
        ui.label("Chat with local Phi-3 ONNX models; manage and export MLflow model folders.");
        match &state.runtime {
            RuntimeStatus::Loaded(runtime) => ui.label(format!("ONNX Runtime {} from {}", runtime.version, runtime.library_path.display())),
            _ => ui.label("ONNX Runtime: not loaded"),
        };
        ui.label(format!("Packages target MLflow {}", crate::mlflow::create::MLFLOW_VERSION));
    });
    egui::Window::new("Keyboard shortcuts").open(&mut state.shortcuts_open).resizable(false).collapsible(false).show(ctx, |ui| {
        egui::Grid::new("shortcuts").num_columns(2).show(ui, |ui| {
            for (shortcut, what) in [(OPEN, "Open a model folder"), (SAVE, "Save the model's edits"), (NEW_CHAT, "New chat")] {
                ui.monospace(ctx.format_shortcut(&shortcut));
                ui.label(what);
                ui.end_row();
            }
            ui.monospace("Esc");
            ui.label("Stop the reply");
            ui.end_row();
            ui.monospace("Enter / Shift+Enter");
            ui.label("Send / new line");
            ui.end_row();
        });
    });
}
