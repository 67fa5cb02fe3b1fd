//! Opening a folder by typing its path: the welcome view's field and the "Open path" window
//! (which also opens when the system has no folder dialog), with completion read off the GUI
//! thread.

use std::{path::PathBuf, time::Instant};

use poll_promise::Promise;

use super::AppState;
use crate::inspect::find::complete_path;

/// A folder dialog that answers "nothing picked" faster than this never reached the user (no
/// portal, no zenity or kdialog): the path window opens instead of nothing happening.
const DIALOG_FAILED_WITHIN: std::time::Duration = std::time::Duration::from_millis(400);

#[derive(Default)]
pub struct PathEntry {
    /// Whether the "Open path" window is shown.
    pub open: bool,
    pub text: String,
    /// Paths that complete `text`, folders first.
    pub completions: Vec<String>,
    completed_for: String,
    completing: Option<(String, Promise<Vec<String>>)>,
    /// When the system folder dialog was asked for.
    pub(super) dialog_asked: Option<Instant>,
}

impl PathEntry {
    pub fn is_busy(&self) -> bool {
        self.completing.is_some()
    }
}

fn home() -> Option<PathBuf> {
    directories::UserDirs::new().map(|dirs| dirs.home_dir().to_path_buf())
}

impl AppState {
    pub fn show_path_entry(&mut self) {
        self.path_entry.open = true;
    }

    /// Opens what the path field holds (`~` is the home folder).
    pub fn open_typed_path(&mut self) {
        let typed = self.path_entry.text.trim().to_owned();
        if typed.is_empty() {
            return;
        }
        let path = match (typed.strip_prefix('~'), home()) {
            (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with(['/', '\\']) => home.join(rest.trim_start_matches(['/', '\\'])),
            _ => PathBuf::from(&typed),
        };
        // `models/phi3/` and `models/phi3` are one folder (and one library entry).
        let path: PathBuf = path.components().collect();
        self.path_entry.open = false;
        self.open_path(&path);
    }

    /// The folder dialog gave no folder: if it could not have been shown at all, offer the path
    /// window instead.
    pub(super) fn folder_dialog_answered_nothing(&mut self) {
        if self.path_entry.dialog_asked.take().is_some_and(|asked| asked.elapsed() < DIALOG_FAILED_WITHIN) {
            self.path_entry.open = true;
            self.notify("No folder dialog is available on this system: type or paste the folder's path");
        }
    }

    /// Completes the typed path in the background whenever it changed (one listing at a time).
    pub(super) fn poll_path_entry(&mut self) {
        let entry = &mut self.path_entry;
        if let Some((typed, completions)) = entry.completing.take_if(|(_, p)| p.ready().is_some()).and_then(|(t, p)| p.try_take().ok().map(|c| (t, c))) {
            entry.completions = completions;
            entry.completed_for = typed;
        }
        if entry.completing.is_some() || entry.text == entry.completed_for {
            return;
        }
        let typed = entry.text.clone();
        let for_thread = typed.clone();
        let listing = self.spawn("complete-path", move || complete_path(&for_thread, home().as_deref()));
        self.path_entry.completing = Some((typed, listing));
    }
}
