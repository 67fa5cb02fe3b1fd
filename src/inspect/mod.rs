//! What a folder on disk is: its kind (MLflow model, Phi ONNX folder, both), the model folder a
//! dropped path belongs to, and the checks `modeldesk validate` and the library share. Knows
//! nothing of the GUI.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock},
    time::SystemTime,
};

pub mod find;

pub use find::{Foreign, Opened, SearchLimits, foreign_kind, models_beneath, resolve};

use crate::{
    engine::folder,
    mlflow::{mlmodel::MLMODEL, validate::Report},
};

/// What a folder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FolderKind {
    MlflowModel,
    Phi3Onnx,
    /// An MLflow model wrapping a Phi-3 ONNX folder.
    Both,
    /// A model format ModelDesk recognises but does not run.
    Foreign(Foreign),
    Unknown,
}

impl FolderKind {
    pub fn label(self) -> &'static str {
        match self {
            FolderKind::MlflowModel => "MLflow model",
            FolderKind::Phi3Onnx => "Phi-3 ONNX folder",
            FolderKind::Both => "MLflow model + Phi-3 ONNX",
            FolderKind::Foreign(foreign) => foreign.label(),
            FolderKind::Unknown => "not a model folder",
        }
    }

    pub fn is_mlflow(self) -> bool {
        matches!(self, FolderKind::MlflowModel | FolderKind::Both)
    }

    pub fn can_chat(self) -> bool {
        matches!(self, FolderKind::Phi3Onnx | FolderKind::Both)
    }
}

/// Cheap checks (a few `stat`s): still done off the GUI thread with the rest of the scan.
pub fn kind_of(path: &Path) -> FolderKind {
    let mlflow = path.join(MLMODEL).is_file();
    let onnx = folder::ModelFolder::locate(path).is_ok();
    match (mlflow, onnx) {
        (true, true) => FolderKind::Both,
        (true, false) => FolderKind::MlflowModel,
        (false, true) => FolderKind::Phi3Onnx,
        (false, false) => foreign_kind(path).map_or(FolderKind::Unknown, FolderKind::Foreign),
    }
}

/// MLflow checks plus, for a folder that is or wraps a Phi-3 ONNX folder, that folder's checks.
pub fn check_folder(path: &Path) -> Report {
    use crate::mlflow::validate;
    let is_mlflow = path.join(MLMODEL).is_file();
    let mut report = if is_mlflow || !path.join(folder::GENAI_CONFIG).is_file() {
        validate::validate_folder(path)
    } else {
        // A plain Phi ONNX folder: every entry must still be a file or folder (links followed).
        let mut report = Report::default();
        validate::check_tree(path, &mut report);
        report
    };
    if let Ok(onnx_dir) = folder::ModelFolder::locate(path) {
        let relative = onnx_dir.strip_prefix(path).map(|p| p.display().to_string()).unwrap_or_default();
        let file = |name: &str| if relative.is_empty() { name.to_owned() } else { format!("{relative}/{name}") };
        match folder::ModelFolder::open(&onnx_dir) {
            Ok(found) => {
                for warning in &found.warnings {
                    report.warning(&file(folder::GENAI_CONFIG), "", warning.clone());
                }
                for (path, problem) in found.check_contents() {
                    let name = path.strip_prefix(&onnx_dir).map(|p| p.display().to_string()).unwrap_or_else(|_| path.display().to_string());
                    report.error(&file(&name), "", problem);
                }
                if !onnx_dir.join(folder::TOKENIZER_CONFIG).is_file() {
                    report.warning(&file(folder::TOKENIZER_CONFIG), "", "is missing: no chat template, ModelDesk falls back to the Phi-3 format");
                }
            }
            Err(error) => report.error(&file(folder::GENAI_CONFIG), "", error.to_string()),
        }
    }
    report
}

/// A folder's state as far as its checks are concerned: every file with its size and time of
/// last modification.
type FolderState = Vec<(PathBuf, u64, Option<SystemTime>)>;

fn folder_state(path: &Path) -> FolderState {
    crate::mlflow::validate::list_files(path)
        .into_iter()
        .map(|(relative, bytes)| {
            let modified = path.join(&relative).symlink_metadata().and_then(|m| m.modified()).ok();
            (relative, bytes, modified)
        })
        .collect()
}

/// The last verdict per folder, with the state it was reached on and how many times the checks
/// ran for that folder.
struct Verdict {
    state: FolderState,
    report: Arc<Report>,
    runs: usize,
}

fn verdicts() -> &'static Mutex<HashMap<PathBuf, Verdict>> {
    static VERDICTS: OnceLock<Mutex<HashMap<PathBuf, Verdict>>> = OnceLock::new();
    VERDICTS.get_or_init(Mutex::default)
}

/// [`check_folder`], run at most once per folder state: the library's scan, a save and "check
/// again" on an unchanged folder reuse the verdict. Reads the folder: call it off the GUI thread.
pub fn checked(path: &Path) -> Arc<Report> {
    let state = folder_state(path);
    if let Ok(verdicts) = verdicts().lock() {
        if let Some(verdict) = verdicts.get(path).filter(|v| v.state == state) {
            return Arc::clone(&verdict.report);
        }
    }
    let report = Arc::new(check_folder(path));
    if let Ok(mut verdicts) = verdicts().lock() {
        let runs = verdicts.get(path).map_or(0, |v| v.runs) + 1;
        verdicts.insert(path.to_path_buf(), Verdict { state, report: Arc::clone(&report), runs });
    }
    report
}

/// How many times the checks ran for `path` in this process (the cache's tests count them).
pub fn check_runs(path: &Path) -> usize {
    verdicts().lock().ok().and_then(|v| v.get(path).map(|v| v.runs)).unwrap_or(0)
}

/// The result of scanning one library entry.
#[derive(Debug, Clone)]
pub struct EntryInfo {
    pub kind: FolderKind,
    pub bytes: u64,
    pub errors: Vec<String>,
    pub warnings: usize,
    /// Every problem the checks found, with the file and key it concerns.
    pub report: Arc<Report>,
}

pub fn scan(path: &Path) -> EntryInfo {
    if !path.exists() {
        let errors = vec!["the folder no longer exists".into()];
        return EntryInfo { kind: FolderKind::Unknown, bytes: 0, errors, warnings: 0, report: Arc::default() };
    }
    let kind = kind_of(path);
    let bytes = if path.is_file() { path.metadata().map_or(0, |m| m.len()) } else { crate::mlflow::export::tree_size(path) };
    // A format ModelDesk does not run is explained, not checked against MLflow's rules.
    let report = if matches!(kind, FolderKind::Foreign(_)) { Arc::default() } else { checked(path) };
    let errors: Vec<String> = report.errors().map(ToString::to_string).collect();
    let warnings = report.problems.len() - errors.len();
    EntryInfo { kind, bytes, errors, warnings, report }
}

/// The model folder a dropped path belongs to: the path itself, or the nearest parent (up to
/// three levels) that holds an `MLmodel` or a `genai_config.json`.
pub fn model_folder_for(dropped: &Path) -> Option<PathBuf> {
    let start = if dropped.is_dir() { dropped } else { dropped.parent()? };
    let mut candidates = start.ancestors().take(4);
    candidates
        .find(|dir| dir.join(MLMODEL).is_file() || dir.join(folder::GENAI_CONFIG).is_file())
        .map(|dir| {
            // A Phi-3 folder inside an MLflow model's artifacts opens the MLflow model.
            let wrapping = dir.parent().and_then(Path::parent).filter(|p| dir.parent().is_some_and(|a| a.ends_with("artifacts")) && p.join(MLMODEL).is_file());
            wrapping.unwrap_or(dir).to_path_buf()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_files_open_their_model_folder() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-phi3");
        assert_eq!(model_folder_for(&fixture), Some(fixture.clone()));
        assert_eq!(model_folder_for(&fixture.join("model.onnx")), Some(fixture.clone()));
        let elsewhere = tempfile::tempdir().unwrap();
        assert_eq!(model_folder_for(elsewhere.path()), None);
        assert_eq!(kind_of(&fixture), FolderKind::Phi3Onnx);
    }
}
