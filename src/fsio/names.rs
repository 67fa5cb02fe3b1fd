//! Names read from files are not paths until checked. A relative path from a model file must stay
//! inside its folder; a name that becomes a single file name (an artifact key, a conversation
//! id) must not hold a separator; a zip entry must not climb out of whatever folder it is later
//! unzipped into, on any platform.

use std::path::{Component, Path, PathBuf};

/// The longest file name [`sanitize_file_name`] produces, in bytes (file systems allow 255).
pub const MAX_FILE_NAME: usize = 80;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("`{0}` is an absolute path; only paths inside the folder are allowed")]
    Absolute(String),
    #[error("`{0}` climbs out of the folder with `..`")]
    ParentDir(String),
    #[error("the name is empty")]
    Empty,
    #[error("`{0}` holds a path separator where a single name is expected")]
    Separator(String),
    #[error("`{0}` holds a character that is not allowed in a file name on every platform (`\\`, `:`, or a control character)")]
    Unportable(String),
    #[error("`{0}` is not valid Unicode")]
    NotUnicode(String),
}

/// `relative` (a path written in a model file) as a path that stays inside its folder: no root,
/// no drive, no `..`; `.` parts are dropped. An empty path or `.` is the folder itself.
pub fn inside_path(relative: &str) -> Result<PathBuf, NameError> {
    let path = Path::new(relative);
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(NameError::ParentDir(relative.to_owned())),
            Component::RootDir | Component::Prefix(_) => return Err(NameError::Absolute(relative.to_owned())),
        }
    }
    Ok(clean)
}

/// `base/relative` when `relative` stays inside `base`.
pub fn safe_join(base: &Path, relative: &str) -> Option<PathBuf> {
    inside_path(relative).ok().map(|inside| base.join(inside))
}

/// An absolute `path` as a path relative to `base` when its real location (links resolved) is
/// inside `base`; `None` when it is elsewhere or does not exist.
pub fn relative_inside(base: &Path, path: &Path) -> Option<PathBuf> {
    let base = std::fs::canonicalize(base).ok()?;
    let real = std::fs::canonicalize(path).ok()?;
    real.strip_prefix(&base).ok().map(Path::to_path_buf)
}

/// A name that must be one path component: not empty, not `.` or `..`, no `/` or `\`.
pub fn single_name(name: &str) -> Result<&str, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.contains(['/', '\\']) {
        return Err(NameError::Separator(name.to_owned()));
    }
    if name == "." || name == ".." {
        return Err(NameError::ParentDir(name.to_owned()));
    }
    Ok(name)
}

/// The zip entry name for a path relative to the exported folder: its parts joined with `/`,
/// each one portable (no `\`, no `:`, no control character, not `.` or `..`), so that no unzip
/// tool on any platform writes outside the folder it extracts into.
pub fn zip_entry_name(relative: &Path) -> Result<String, NameError> {
    let shown = relative.to_string_lossy().into_owned();
    let mut parts = Vec::new();
    for component in relative.components() {
        let part = match component {
            Component::Normal(part) => part.to_str().ok_or_else(|| NameError::NotUnicode(shown.clone()))?,
            Component::CurDir => continue,
            Component::ParentDir => return Err(NameError::ParentDir(shown)),
            Component::RootDir | Component::Prefix(_) => return Err(NameError::Absolute(shown)),
        };
        if part.chars().any(|c| c == '\\' || c == ':' || c.is_control()) {
            return Err(NameError::Unportable(shown));
        }
        parts.push(part);
    }
    if parts.is_empty() {
        return Err(NameError::Empty);
    }
    Ok(parts.join("/"))
}

/// A file name made from any text (a conversation id or title, a model or registry name):
/// separators, control characters and characters Windows forbids become `_`, leading dots and
/// trailing dots or spaces go, Windows device names (`CON`, `NUL`, …) get a `_` in front, and the
/// result is at most [`MAX_FILE_NAME`] bytes (cut at a character boundary). Never empty, never
/// `.` or `..`; the same input always gives the same name.
pub fn sanitize_file_name(text: &str) -> String {
    let replaced: String =
        text.chars().map(|c| if c.is_control() || "/\\:*?\"<>|".contains(c) { '_' } else { c }).collect();
    let mut name = replaced.trim_start_matches(['.', ' ']).trim_end_matches(['.', ' ']).to_owned();
    let stem = name.split('.').next().unwrap_or_default().to_ascii_uppercase();
    let reserved = matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || (stem.len() == 4
            && (stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.as_bytes()[3].is_ascii_digit());
    if reserved {
        name.insert(0, '_');
    }
    if name.len() > MAX_FILE_NAME {
        let mut cut = MAX_FILE_NAME;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
        name = name.trim_end_matches(['.', ' ']).to_owned();
    }
    if name.is_empty() { "_".to_owned() } else { name }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_from_files_stay_inside() {
        assert_eq!(inside_path("artifacts/./phi3").unwrap(), PathBuf::from("artifacts/phi3"));
        assert_eq!(inside_path("").unwrap(), PathBuf::new());
        assert!(matches!(inside_path("../x"), Err(NameError::ParentDir(_))));
        assert!(matches!(inside_path("a/../../x"), Err(NameError::ParentDir(_))));
        assert!(matches!(inside_path("/etc/hostname"), Err(NameError::Absolute(_))));
        assert!(safe_join(Path::new("/m"), "..").is_none());
    }

    #[test]
    fn single_names_and_zip_entries_are_checked() {
        assert_eq!(single_name("phi3"), Ok("phi3"));
        assert!(single_name("../../../somewhere").is_err());
        assert!(single_name("..").is_err());
        assert!(single_name("").is_err());
        assert_eq!(zip_entry_name(Path::new("artifacts/phi3/model.onnx")).unwrap(), "artifacts/phi3/model.onnx");
        assert!(matches!(zip_entry_name(Path::new("..\\..\\evil.txt")), Err(NameError::Unportable(_))));
        assert!(matches!(zip_entry_name(Path::new("../evil.txt")), Err(NameError::ParentDir(_))));
        assert!(matches!(zip_entry_name(Path::new("/evil.txt")), Err(NameError::Absolute(_))));
        assert!(matches!(zip_entry_name(Path::new("C:evil")), Err(NameError::Unportable(_))));
    }

    #[test]
    fn sanitized_names_are_plain_file_names() {
        assert_eq!(sanitize_file_name("../../../elsewhere/x"), "_.._.._elsewhere_x");
        assert_eq!(sanitize_file_name(".."), "_");
        assert_eq!(sanitize_file_name("con.txt"), "_con.txt");
        assert_eq!(sanitize_file_name("Chat about Rust"), "Chat about Rust");
        let long = "é".repeat(100);
        let cut = sanitize_file_name(&long);
        assert!(cut.len() <= MAX_FILE_NAME && cut.chars().all(|c| c == 'é'), "{cut}");
    }
}
