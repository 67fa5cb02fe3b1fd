//! The library and the selected model: folders the user opened, their background scans, the
//! model editor's load and save, and the file pickers.

use std::path::{Path, PathBuf};

use poll_promise::Promise;

use super::{AppState, FolderKind, ModelEditor, RuntimeStatus, Tab, editor};
use crate::{inspect::Opened, runtime};

/// Model folders found beneath a folder the user opened, for them to pick one.
#[derive(Debug, Clone)]
pub struct ModelChoices {
    pub root: PathBuf,
    pub folders: Vec<PathBuf>,
    /// False when the search stopped at its limits (there may be more).
    pub complete: bool,
}

/// A folder the user opened, remembered across restarts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LibraryEntry {
    pub path: PathBuf,
}

impl LibraryEntry {
    pub fn name(&self) -> String {
        self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| self.path.display().to_string())
    }
}

impl AppState {
    /// Adds a folder to the library (once) and selects it.
    pub fn open_folder(&mut self, path: &Path) {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        self.add_to_library(&path);
        self.select(&path);
    }

    /// Adds a folder to the library without selecting it.
    pub(super) fn add_to_library(&mut self, path: &Path) {
        if !self.persisted.library.iter().any(|entry| entry.path == path) {
            self.persisted.library.push(LibraryEntry { path: path.to_path_buf() });
            self.rescan(path);
        }
    }

    /// A path the user dropped, typed or picked: what it holds is worked out off the GUI thread
    /// (a model folder opens, several offer a choice, other formats are explained).
    pub fn open_path(&mut self, path: &Path) {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        self.opening = Some(self.spawn("resolve-path", move || crate::inspect::resolve(&path, crate::inspect::SearchLimits::default())));
    }

    fn opened(&mut self, opened: Opened) {
        match opened {
            Opened::Model(folder) => self.open_folder(&folder),
            Opened::Choices { root, folders, complete } => self.model_choices = Some(ModelChoices { root, folders, complete }),
            // Shown in the library with what it is and what to do instead.
            Opened::Foreign { path, .. } => self.open_folder(&path),
            Opened::Nothing { path } => self.notify_error(
                format!("{} is not a model folder", path.display()),
                Some("No model was found in it or in its subfolders. Open a folder that holds an MLmodel file (an MLflow model) or a genai_config.json (a Phi ONNX model), or a file inside one.".into()),
            ),
        }
    }

    /// The user picked one of the model folders found beneath an opened folder.
    pub fn choose_model(&mut self, folder: Option<PathBuf>) {
        self.model_choices = None;
        if let Some(folder) = folder {
            self.open_folder(&folder);
        }
    }

    pub fn remove_entry(&mut self, path: &Path) {
        self.persisted.library.retain(|e| e.path != path);
        self.entries.remove(path);
        if self.persisted.selected.as_deref() == Some(path) {
            self.persisted.selected = None;
            self.editor = None;
        }
    }

    pub fn rescan(&mut self, path: &Path) {
        let target = path.to_path_buf();
        let scan = self.spawn("scan-folder", move || crate::inspect::scan(&target));
        self.scans.push((path.to_path_buf(), scan));
    }

    pub fn selected_entry(&self) -> Option<&LibraryEntry> {
        let selected = self.persisted.selected.as_ref()?;
        self.persisted.library.iter().find(|entry| &entry.path == selected)
    }

    pub fn select(&mut self, path: &Path) {
        self.persisted.selected = Some(path.to_path_buf());
        self.editor = None;
        let dir = path.to_path_buf();
        self.editor_load = Some(self.spawn("load-editor", move || editor::load(&dir)));
        self.show_latest_conversation();
    }

    /// Selects `path`, asking first when the current model has unsaved edits.
    pub fn request_select(&mut self, path: &Path) {
        if self.persisted.selected.as_deref() == Some(path) {
            return;
        }
        if self.has_unsaved_edits() {
            self.pending_select = Some(path.to_path_buf());
        } else {
            self.select(path);
        }
    }

    /// Checks the selected folder again and reloads it.
    pub fn check_again(&mut self) {
        if let Some(path) = self.persisted.selected.clone() {
            self.rescan(&path);
            self.select(&path);
        }
    }

    pub fn selected_kind(&self) -> Option<FolderKind> {
        let path = self.persisted.selected.as_ref()?;
        self.entries.get(path).map(|info| info.kind)
    }

    /// Opens a folder or file with the system's file manager.
    pub fn reveal(&mut self, path: &Path) {
        if let Err(e) = open::that_detached(path) {
            self.notify_error("The file manager could not be opened", Some(e.to_string()));
        }
    }

    // -- pickers ---------------------------------------------------------------------------

    /// Tries the library file the user picked; on success ModelDesk remembers it.
    pub fn use_runtime_library(&mut self, path: PathBuf) {
        let dirs = self.dirs.clone();
        self.runtime = RuntimeStatus::Loading(self.spawn("load-onnxruntime", move || runtime::load_picked(&path, dirs.as_ref()).map_err(|e| e.to_string())));
    }

    fn pick(&self, title: &'static str, folder: bool) -> Promise<Option<PathBuf>> {
        self.spawn("file-dialog", move || {
            let dialog = rfd::AsyncFileDialog::new().set_title(title);
            if folder {
                pollster::block_on(dialog.pick_folder()).map(|f| f.path().to_path_buf())
            } else {
                pollster::block_on(dialog.pick_file()).map(|f| f.path().to_path_buf())
            }
        })
    }

    pub fn pick_runtime_library(&mut self) {
        self.runtime_pick = Some(self.pick("Choose the ONNX Runtime library", false));
    }

    pub fn pick_model_folder(&mut self) {
        self.folder_pick = Some(self.pick("Open a model folder", true));
        self.path_entry.dialog_asked = Some(std::time::Instant::now());
    }

    pub fn pick_destination(&mut self) {
        self.destination_pick = Some(self.pick("Choose where to write", true));
    }

    // -- model editor ----------------------------------------------------------------------

    pub fn save_model(&mut self) {
        let Some(editor) = &self.editor else { return };
        if !editor.dirty || self.saving.is_some() {
            return;
        }
        match editor.build() {
            Ok((model, example)) => self.saving = Some(self.spawn("save-model", move || editor::save(model, example))),
            Err(message) => self.notify_error("Not saved: fix the marked fields first", Some(message)),
        }
    }

    pub fn revert_model(&mut self) {
        if let Some(editor) = &mut self.editor {
            editor.revert();
        }
    }

    /// Picks, scans, the editor's load and the save, as they finish.
    pub(super) fn poll_library(&mut self) {
        if let Some(picked) = self.runtime_pick.as_ref().and_then(|p| p.ready().cloned()) {
            self.runtime_pick = None;
            if let Some(path) = picked {
                self.use_runtime_library(path);
            }
        }
        if let Some(picked) = self.folder_pick.as_ref().and_then(|p| p.ready().cloned()) {
            self.folder_pick = None;
            match picked {
                Some(path) => self.open_path(&path),
                None => self.folder_dialog_answered_nothing(),
            }
        }
        if let Some(opened) = self.opening.take_if(|p| p.ready().is_some()).and_then(|p| p.try_take().ok()) {
            self.opened(opened);
        }
        if let Some(picked) = self.destination_pick.as_ref().and_then(|p| p.ready().cloned()) {
            self.destination_pick = None;
            if let Some(path) = picked {
                self.choose_destination_folder(&path);
            }
        }
        let mut finished_scans = Vec::new();
        self.scans.retain(|(path, promise)| match promise.ready() {
            Some(info) => {
                finished_scans.push((path.clone(), info.clone()));
                false
            }
            None => true,
        });
        for (path, info) in finished_scans {
            self.entries.insert(path, info);
        }
        if let Some(loaded) = self.editor_load.take_if(|p| p.ready().is_some()).and_then(|p| p.try_take().ok()) {
            if Some(&loaded.dir) == self.persisted.selected.as_ref() {
                let editor = ModelEditor::new(loaded);
                if !editor.is_mlflow() && self.tab == Tab::Model && editor.onnx.is_none() {
                    self.tab = Tab::Chat;
                }
                self.editor = Some(editor);
            }
        }
        if let Some(result) = self.saving.take_if(|p| p.ready().is_some()).and_then(|p| p.try_take().ok()) {
            match result {
                Ok(report) => {
                    self.notify(if report.is_usable() { "Saved" } else { "Saved, but the folder still has errors" });
                    if let Some(path) = self.persisted.selected.clone() {
                        self.model_files_changed(&path);
                        self.rescan(&path);
                        let next = self.pending_select.take().unwrap_or(path);
                        self.select(&next);
                    }
                }
                Err(message) => self.notify_error("Saving failed; the files were left as they were", Some(message)),
            }
        }
    }
}
