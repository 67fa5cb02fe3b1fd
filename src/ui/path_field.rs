//! The path field: type or paste a folder's path, with completions to click; Enter opens it.
//! Shown on the welcome view and in the "Open path" window.

use egui::Ui;

use crate::app::{AppState, Intent, PathEntry};

/// The field, an Open button and the completions of what is typed.
pub fn field(ui: &mut Ui, entry: &mut PathEntry, out: &mut Vec<Intent>) {
    ui.horizontal(|ui| {
        let response = ui.add(
            egui::TextEdit::singleline(&mut entry.text)
                .id_salt("path_field")
                .hint_text("Type or paste a folder's path, e.g. ~/Downloads/phi3")
                .desired_width(420.0),
        );
        let enter = response.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        if ui.add_enabled(!entry.text.trim().is_empty(), egui::Button::new("Open")).clicked() || enter {
            out.push(Intent::OpenTypedPath);
        }
    });
    let typed = entry.text.clone();
    let offered: Vec<&String> = entry.completions.iter().filter(|c| **c != typed).collect();
    if !offered.is_empty() && !typed.is_empty() {
        let mut chosen = None;
        ui.horizontal_wrapped(|ui| {
            ui.weak("Complete:");
            for completion in offered {
                if ui.small_button(completion.as_str()).clicked() {
                    chosen = Some(completion.clone());
                }
            }
        });
        if let Some(chosen) = chosen {
            entry.text = chosen;
        }
    }
}

/// The "Open path" window.
pub fn window(ctx: &egui::Context, state: &mut AppState, out: &mut Vec<Intent>) {
    if !state.path_entry.open {
        return;
    }
    let mut open = true;
    egui::Window::new("Open a folder by path").open(&mut open).collapsible(false).resizable(false).show(ctx, |ui| {
        field(ui, &mut state.path_entry, out);
    });
    if !open {
        out.push(Intent::ClosePathEntry);
    }
}
