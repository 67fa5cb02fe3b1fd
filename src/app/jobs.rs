//! Long file jobs with progress (create an MLflow package, export one) and their dialog, plus
//! small fire-and-forget background tasks whose outcome becomes a notice.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
};

use poll_promise::Promise;

use super::AppState;
use crate::mlflow::{
    create::{CreateOptions, Task, create_from_onnx_to},
    export::{CopyProgress, ExportError, IfExists, check_replaceable, export_to, next_free_name},
};

/// A notice for the user (or nothing to say), or an error with its details.
pub type TaskOutcome = Result<Option<String>, (String, String)>;

/// Create or export with progress.
pub struct Job {
    pub title: String,
    pub progress: Option<CopyProgress>,
    pub cancel: Arc<AtomicBool>,
    pub updates: mpsc::Receiver<CopyProgress>,
    pub result: Promise<Result<PathBuf, String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogKind {
    Create,
    Export,
}

/// The create / export dialog: its form, then its job, then its outcome.
pub struct Dialog {
    pub kind: DialogKind,
    pub source: PathBuf,
    pub destination: String,
    /// What is at the destination, checked off the GUI thread.
    pub destination_state: DestinationState,
    checked_destination: Option<(PathBuf, Promise<DestinationState>)>,
    /// The user chose to replace an existing destination (reset when the destination changes).
    pub replace: bool,
    pub task_chat: bool,
    pub name: String,
    pub zip: bool,
    pub job: Option<Job>,
    /// Progress reports the job sent, and the last one (kept after the job ends).
    pub progress_reports: usize,
    pub last_progress: Option<CopyProgress>,
    pub outcome: Option<Result<PathBuf, String>>,
}

/// What the file system says about a dialog's destination.
#[derive(Debug, Clone, PartialEq)]
pub enum DestinationState {
    /// Not checked yet (or being checked).
    Unknown,
    Free,
    /// Something is there: whether it may be replaced (or why not), and a free name beside it.
    Exists { replaceable: Result<(), String>, free_name: PathBuf },
}

impl DestinationState {
    fn of(source: &Path, destination: &Path) -> Self {
        if destination.as_os_str().is_empty() || destination.symlink_metadata().is_err() {
            return Self::Free;
        }
        let replaceable = check_replaceable(source, destination).map_err(|e| match e {
            ExportError::NotReplaceable { reason, .. } => reason.to_owned(),
            other => other.to_string(),
        });
        Self::Exists { replaceable, free_name: next_free_name(destination) }
    }
}

type Work = Box<dyn FnOnce(&mut dyn FnMut(CopyProgress), &AtomicBool) -> Result<PathBuf, String> + Send>;

impl AppState {
    pub fn open_dialog(&mut self, kind: DialogKind) {
        let Some(source) = self.persisted.selected.clone() else { return };
        let name = source.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let parent = source.parent().map(Path::to_path_buf).unwrap_or_default();
        let destination = match kind {
            DialogKind::Create => parent.join(format!("{name}-mlflow")),
            DialogKind::Export => parent.join(format!("{name}-export")),
        };
        self.dialog = Some(Dialog {
            kind,
            source,
            destination: destination.display().to_string(),
            destination_state: DestinationState::Unknown,
            checked_destination: None,
            replace: false,
            task_chat: true,
            name,
            zip: false,
            job: None,
            progress_reports: 0,
            last_progress: None,
            outcome: None,
        });
    }

    /// The folder picked with Browse…: the destination keeps its file name, in that folder.
    pub(super) fn choose_destination_folder(&mut self, folder: &Path) {
        if let Some(dialog) = self.dialog.as_mut() {
            let name = PathBuf::from(&dialog.destination).file_name().map(|n| n.to_owned()).unwrap_or_default();
            dialog.destination = folder.join(name).display().to_string();
        }
    }

    /// Starts the dialog's job on a background thread.
    pub fn run_dialog(&mut self) {
        let waker = self.waker();
        let Some(dialog) = &mut self.dialog else { return };
        if dialog.job.is_some() {
            return;
        }
        let (sender, updates) = mpsc::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&cancel);
        let source = dialog.source.clone();
        let destination = dialog.effective_destination();
        let if_exists = if dialog.replace && matches!(dialog.destination_state, DestinationState::Exists { replaceable: Ok(()), .. }) {
            IfExists::Replace
        } else {
            IfExists::Refuse
        };
        let (title, work): (String, Work) = match dialog.kind {
            DialogKind::Create => {
                let options = CreateOptions {
                    task: if dialog.task_chat { Task::Chat } else { Task::Prompt },
                    name: Some(dialog.name.clone()).filter(|n| !n.trim().is_empty()),
                    python_version: None,
                };
                (
                    "Creating MLflow model".into(),
                    Box::new(move |progress, cancel| create_from_onnx_to(&source, &destination, &options, if_exists, progress, cancel).map_err(|e| e.to_string())),
                )
            }
            DialogKind::Export => {
                let zip = dialog.zip;
                ("Exporting package".into(), Box::new(move |progress, cancel| export_to(&source, &destination, zip, if_exists, progress, cancel).map(|summary| summary.path).map_err(|e| e.to_string())))
            }
        };
        let result = Promise::spawn_thread("copy-job", move || {
            let mut report = |p: CopyProgress| {
                let _ = sender.send(p);
                waker();
            };
            let outcome = work(&mut report, &flag);
            waker();
            outcome
        });
        dialog.job = Some(Job { title, progress: None, cancel, updates, result });
    }

    pub fn cancel_dialog_job(&mut self) {
        if let Some(job) = self.dialog.as_ref().and_then(|d| d.job.as_ref()) {
            job.cancel.store(true, Ordering::Relaxed);
        }
    }

    /// Runs a small task off the GUI thread; its outcome becomes a notice.
    pub(super) fn in_background(&mut self, name: &'static str, work: impl FnOnce() -> TaskOutcome + Send + 'static) {
        let task = self.spawn(name, work);
        self.tasks.push(task);
    }

    /// Job progress and outcomes, the destination check, and finished background tasks.
    pub(super) fn poll_jobs(&mut self) {
        let mut finished = Vec::new();
        self.tasks.retain(|task| match task.ready() {
            Some(outcome) => {
                finished.push(outcome.clone());
                false
            }
            None => true,
        });
        for outcome in finished {
            match outcome {
                Ok(Some(text)) => self.notify(text),
                Ok(None) => {}
                Err((text, details)) => self.notify_error(text, Some(details)),
            }
        }
        self.check_destination();
        let Some(dialog) = self.dialog.as_mut() else { return };
        let Some(job) = dialog.job.as_mut() else { return };
        while let Ok(progress) = job.updates.try_recv() {
            job.progress = Some(progress);
            dialog.progress_reports += 1;
            dialog.last_progress = Some(progress);
        }
        if job.result.ready().is_none() {
            return;
        }
        let kind = dialog.kind;
        let Some(job) = dialog.job.take() else { return };
        let outcome = job.result.block_and_take();
        dialog.outcome = Some(outcome.clone());
        if let Ok(path) = &outcome {
            self.notify(format!("Wrote {}", path.display()));
            if kind == DialogKind::Create || !path.extension().is_some_and(|e| e == "zip") {
                self.add_to_library(path);
            }
        }
    }

    /// What is at the destination, asked of the file system off the GUI thread whenever the
    /// destination (or the zip choice, which adds `.zip`) changes.
    fn check_destination(&mut self) {
        let waker = self.waker();
        let Some(dialog) = self.dialog.as_mut().filter(|d| d.job.is_none() && d.outcome.is_none()) else { return };
        let destination = dialog.effective_destination();
        if let Some((checked, promise)) = &dialog.checked_destination {
            if *checked == destination {
                if let Some(state) = promise.ready() {
                    dialog.destination_state = state.clone();
                }
                return;
            }
        }
        dialog.destination_state = DestinationState::Unknown;
        dialog.replace = false;
        let (source, path) = (dialog.source.clone(), destination.clone());
        let check = Promise::spawn_thread("check-destination", move || {
            let state = DestinationState::of(&source, &path);
            waker();
            state
        });
        dialog.checked_destination = Some((destination, check));
    }
}

impl Dialog {
    /// The path the job will write: the typed destination, with `.zip` added for a zip export.
    pub fn effective_destination(&self) -> PathBuf {
        let mut destination = PathBuf::from(self.destination.trim());
        if self.kind == DialogKind::Export && self.zip && !destination.as_os_str().is_empty() && destination.extension().is_none_or(|e| e != "zip") {
            destination.set_extension("zip");
        }
        destination
    }
}
