//! Putting a new file or folder in place of an existing one so that a crash or a kill at any
//! moment leaves either the old one or the new one at the destination.
//!
//! Linux (`renameat2` with `RENAME_EXCHANGE`) and macOS (`renamex_np` with `RENAME_SWAP`) swap
//! two names in one step. Elsewhere, or on a file system that cannot swap, the old entry is first
//! renamed to a visible sibling (`<name>.replaced-<pid>`), the new one renamed into place, and
//! the sibling removed: a kill between those steps leaves the old content under that sibling's
//! name, never lost.

use std::{io, path::Path};

/// Swaps the entries at `a` and `b` (both must exist, on one file system). `Ok(false)` when the
/// platform or the file system cannot swap in one step.
pub fn exchange(a: &Path, b: &Path) -> io::Result<bool> {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "macos"))]
    {
        use std::{ffi::CString, os::unix::ffi::OsStrExt as _};
        let a = CString::new(a.as_os_str().as_bytes()).map_err(io::Error::other)?;
        let b = CString::new(b.as_os_str().as_bytes()).map_err(io::Error::other)?;
        #[cfg(any(target_os = "linux", target_os = "android"))]
        // SAFETY: both are valid NUL-terminated paths that live across the call.
        let result = unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_EXCHANGE as _) };
        #[cfg(target_os = "macos")]
        // SAFETY: both are valid NUL-terminated paths that live across the call.
        let result = unsafe { libc::renamex_np(a.as_ptr(), b.as_ptr(), libc::RENAME_SWAP) };
        if result == 0 {
            return Ok(true);
        }
        let error = io::Error::last_os_error();
        // Not supported by this kernel or file system: the caller falls back.
        if matches!(error.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS | libc::ENOTSUP)) {
            return Ok(false);
        }
        Err(error)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "macos")))]
    {
        let _ = (a, b);
        Ok(false)
    }
}

/// Replaces the existing `destination` with `new` (a file or folder on the same file system).
/// Returns where the old entry now is (`new`'s path after a swap, to be removed by the caller),
/// or `None` when it was already removed.
pub fn replace(new: &Path, destination: &Path) -> io::Result<Option<std::path::PathBuf>> {
    if exchange(new, destination)? {
        return Ok(Some(new.to_path_buf()));
    }
    let name = destination.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let parent = destination.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut aside = parent.join(format!("{name}.replaced-{}", std::process::id()));
    let mut attempt = 1;
    while aside.symlink_metadata().is_ok() {
        attempt += 1;
        aside = parent.join(format!("{name}.replaced-{}-{attempt}", std::process::id()));
    }
    std::fs::rename(destination, &aside)?;
    if let Err(error) = std::fs::rename(new, destination) {
        // Put the old one back so the destination is never left missing.
        let _ = std::fs::rename(&aside, destination);
        return Err(error);
    }
    remove_entry(&aside)?;
    Ok(None)
}

/// Removes a file, a link or a whole folder.
pub fn remove_entry(path: &Path) -> io::Result<()> {
    match path.symlink_metadata() {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_replaces_a_folder_and_the_old_one_is_handed_back() {
        let dir = tempfile::tempdir().unwrap();
        let (new, destination) = (dir.path().join("new"), dir.path().join("dest"));
        std::fs::create_dir_all(&new).unwrap();
        std::fs::write(new.join("MLmodel"), "new").unwrap();
        std::fs::create_dir_all(destination.join("sub")).unwrap();
        std::fs::write(destination.join("MLmodel"), "old").unwrap();
        let old = replace(&new, &destination).unwrap();
        assert_eq!(std::fs::read_to_string(destination.join("MLmodel")).unwrap(), "new");
        assert!(!destination.join("sub").exists());
        if let Some(old) = old {
            assert_eq!(std::fs::read_to_string(old.join("MLmodel")).unwrap(), "old");
            remove_entry(&old).unwrap();
        }
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("dest")]);
    }

    #[test]
    fn a_file_replaces_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let (new, destination) = (dir.path().join("new.zip"), dir.path().join("dest.zip"));
        std::fs::write(&new, "new").unwrap();
        std::fs::write(&destination, "old").unwrap();
        if let Some(old) = replace(&new, &destination).unwrap() {
            remove_entry(&old).unwrap();
        }
        assert_eq!(std::fs::read_to_string(&destination).unwrap(), "new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_missing_new_entry_leaves_the_destination_alone() {
        let dir = tempfile::tempdir().unwrap();
        let destination = dir.path().join("dest");
        std::fs::write(&destination, "old").unwrap();
        assert!(replace(&dir.path().join("absent"), &destination).is_err());
        assert_eq!(std::fs::read_to_string(&destination).unwrap(), "old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
