//! Where ModelDesk keeps its files: one place to ask, so every module agrees.
//!
//! `MODELDESK_HOME` replaces all of them with subfolders of one directory; tests and portable
//! installs use it so nothing touches the user's real profile.

use std::path::{Path, PathBuf};

/// The per-user directories ModelDesk reads and writes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AppDirs {
    /// Conversations, the library list, a picked ONNX Runtime library.
    pub data: PathBuf,
    /// Settings.
    pub config: PathBuf,
    /// Crash and diagnostic logs.
    pub logs: PathBuf,
}

impl AppDirs {
    /// The directories for this user, or `None` when the platform reports no home directory.
    pub fn discover() -> Option<Self> {
        if let Some(home) = std::env::var_os("MODELDESK_HOME").filter(|v| !v.is_empty()) {
            return Some(Self::under(Path::new(&home)));
        }
        let dirs = directories::ProjectDirs::from("org", "ModelDesk", "ModelDesk")?;
        Some(Self {
            data: dirs.data_dir().to_path_buf(),
            config: dirs.config_dir().to_path_buf(),
            logs: dirs.data_local_dir().join("logs"),
        })
    }

    /// All directories as subfolders of `root` (portable layout).
    pub fn under(root: &Path) -> Self {
        Self { data: root.join("data"), config: root.join("config"), logs: root.join("logs") }
    }

    /// Where a user-picked ONNX Runtime library is kept, so the next start finds it.
    pub fn runtime_library_dir(&self) -> PathBuf {
        self.data.join("onnxruntime")
    }
}
