//! What a folder on disk is: its kind (MLflow model, Phi ONNX folder, both), the model folder a
//! dropped path belongs to, and the checks `modeldesk validate` and the library share. Knows
//! nothing of the GUI.

use std::path::{Path, PathBuf};

use crate::{engine::folder, mlflow::mlmodel::MLMODEL};


/// What a folder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FolderKind {
    MlflowModel,
    Phi3Onnx,
    /// An MLflow model wrapping a Phi-3 ONNX folder.
    Both,
    Unknown,
}

impl FolderKind {
    pub fn label(self) -> &'static str {
        match self {
            FolderKind::MlflowModel => "MLflow model",
            FolderKind::Phi3Onnx => "Phi-3 ONNX folder",
            FolderKind::Both => "MLflow model + Phi-3 ONNX",
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
        (false, false) => FolderKind::Unknown,
    }
}

/// MLflow checks plus, for a folder that is or wraps a Phi-3 ONNX folder, that folder's checks.
pub fn check_folder(path: &std::path::Path) -> crate::mlflow::validate::Report {
    use crate::{engine::folder, mlflow::validate::{self, Report}};
    let is_mlflow = path.join(crate::mlflow::mlmodel::MLMODEL).is_file();
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

/// The result of scanning one library entry.
#[derive(Debug, Clone)]
pub struct EntryInfo {
    pub kind: FolderKind,
    pub bytes: u64,
    pub errors: Vec<String>,
    pub warnings: usize,
}

pub fn scan(path: &Path) -> EntryInfo {
    if !path.is_dir() {
        return EntryInfo { kind: FolderKind::Unknown, bytes: 0, errors: vec!["the folder no longer exists".into()], warnings: 0 };
    }
    let kind = kind_of(path);
    let bytes = crate::mlflow::export::tree_size(path);
    let report = check_folder(path);
    let errors: Vec<String> = report.errors().map(ToString::to_string).collect();
    let warnings = report.problems.len() - errors.len();
    EntryInfo { kind, bytes, errors, warnings }
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
