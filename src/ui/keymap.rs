//! Keyboard shortcuts: one table that both handles the keys and lists them in the Help window.

use egui::{Key, KeyboardShortcut, Modifiers};

use crate::app::{AppState, Intent};

pub const OPEN: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::O);
pub const SAVE: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::S);
pub const NEW_CHAT: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::N);
pub const STOP: KeyboardShortcut = KeyboardShortcut::new(Modifiers::NONE, Key::Escape);
pub const FOCUS_MESSAGE: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::L);
pub const HELP: KeyboardShortcut = KeyboardShortcut::new(Modifiers::NONE, Key::F1);

/// A shortcut, what it does, and the intent it stands for (when it applies in this state).
pub struct Binding {
    pub shortcut: KeyboardShortcut,
    pub what: &'static str,
    pub intent: fn(&AppState) -> Option<Intent>,
}

pub const BINDINGS: &[Binding] = &[
    Binding { shortcut: OPEN, what: "Open a model folder", intent: |_| Some(Intent::PickModelFolder) },
    Binding { shortcut: SAVE, what: "Save the model's edits", intent: |_| Some(Intent::SaveModel) },
    Binding { shortcut: NEW_CHAT, what: "New chat (the message box takes the focus)", intent: |_| Some(Intent::NewConversation) },
    Binding { shortcut: FOCUS_MESSAGE, what: "Go to the message box", intent: |_| Some(Intent::FocusComposer) },
    Binding { shortcut: HELP, what: "Keyboard shortcuts", intent: |_| Some(Intent::ShowShortcuts) },
    Binding { shortcut: STOP, what: "Stop the reply", intent: |state| state.chat.streaming.is_some().then_some(Intent::StopReply) },
];

/// Keys that are not shortcuts but worth listing.
pub const OTHER_KEYS: &[(&str, &str)] = &[("Enter / Shift+Enter", "Send / new line"), ("Tab / Shift+Tab", "Next / previous control")];

/// The intents of the shortcuts pressed this frame (each consumed, so widgets do not see it).
pub fn pressed(ctx: &egui::Context, state: &AppState, out: &mut Vec<Intent>) {
    for binding in BINDINGS {
        let Some(intent) = (binding.intent)(state) else { continue };
        if ctx.input_mut(|i| i.consume_shortcut(&binding.shortcut)) {
            out.push(intent);
        }
    }
}
