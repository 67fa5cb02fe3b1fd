//! Staging folders and temporary files that a crash, a signal or `kill -9` cannot leave behind
//! for good. Exports and creations build under `.modeldesk-<kind>-<pid>-<random>` beside their
//! destination and rename at the end; saves write `.modeldesk-save-<pid>-<random>.tmp` beside
//! the file. The process id in the name tells whether the owner is still running.
//!
//! A staging folder is also recorded in a journal (one small marker file per folder in
//! `<data dir>/staging/`), because after a kill nobody knows where the destination was. At the
//! next start [`recover_at_start`] removes every recorded folder whose process is gone. Temporary
//! files of saves are swept from a folder by [`remove_dead_temp_files`] when that folder is saved
//! again. Folders are created with the user's ordinary permissions (umask), not 0700.

use std::{
    io,
    path::{Path, PathBuf},
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use crate::fsio::walk::OWN_TEMP_PREFIX;

/// Where markers go; set once by [`recover_at_start`]. Without it nothing is journaled.
static JOURNAL: Mutex<Option<PathBuf>> = Mutex::new(None);
static NEXT_MARKER: AtomicU64 = AtomicU64::new(0);

const MARKER_SUFFIX: &str = ".staging";

/// The name prefix of a staging folder or temporary file of `kind` owned by this process.
pub fn own_prefix(kind: &str) -> String {
    format!("{OWN_TEMP_PREFIX}{kind}-{}-", std::process::id())
}

/// The owning process of a name made by [`own_prefix`], if it is one.
pub fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(OWN_TEMP_PREFIX)?;
    let mut parts = rest.splitn(3, '-');
    let _kind = parts.next()?;
    let pid = parts.next()?.parse().ok()?;
    parts.next()?;
    Some(pid)
}

/// Whether a process with this id is running (a reused id counts as running: the folder then
/// waits for a later start, it is never removed under a live process).
pub fn process_is_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else { return true };
        // SAFETY: signal 0 only checks whether the process exists and may be signalled.
        let result = unsafe { libc::kill(pid, 0) };
        result == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
    }
    #[cfg(not(unix))]
    {
        // Without a cheap check, never remove what might belong to a running process.
        true
    }
}

/// A staging folder: removed when dropped unless [`Staging::finish`] moved its result into place.
pub struct Staging {
    dir: Option<tempfile::TempDir>,
    marker: Option<PathBuf>,
}

impl Staging {
    /// Creates `.modeldesk-<kind>-<pid>-<random>` in `parent` and records it in the journal.
    pub fn new_in(parent: &Path, kind: &str) -> io::Result<Self> {
        let prefix = own_prefix(kind);
        // Recorded before the folder exists, so a kill in between leaves nothing unrecorded.
        let marker = record(parent, &prefix);
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            // 0777 before the umask, as `mkdir` does: the package is meant to be shared.
            builder.permissions(std::fs::Permissions::from_mode(0o777));
        }
        let dir = match builder.tempdir_in(parent) {
            Ok(dir) => dir,
            Err(error) => {
                if let Some(marker) = marker {
                    let _ = std::fs::remove_file(marker);
                }
                return Err(error);
            }
        };
        Ok(Self { dir: Some(dir), marker })
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().map(tempfile::TempDir::path).unwrap_or(Path::new(""))
    }

    /// Renames `staged` (inside the staging folder, or the folder itself) to `destination`, after
    /// flushing `staged`'s folder entries to disk; then flushes the destination's parent and
    /// removes the staging folder and its marker.
    pub fn finish(mut self, staged: &Path, destination: &Path) -> io::Result<()> {
        if staged.is_dir() {
            sync_dir(staged);
        }
        sync_dir(staged.parent().unwrap_or(staged));
        std::fs::rename(staged, destination)?;
        sync_dir(destination.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")));
        if staged == self.path() {
            // The folder itself moved: nothing left to remove.
            if let Some(dir) = self.dir.take() {
                let _ = dir.keep();
            }
        }
        Ok(())
    }
}

impl Staging {
    /// Like [`Staging::finish`], but puts `staged` in place of an existing `destination` (see
    /// [`crate::fsio::swap`]): at every moment the destination holds the old or the new entry.
    /// The old entry ends in the staging folder and goes with it.
    pub fn finish_replacing(self, staged: &Path, destination: &Path) -> io::Result<()> {
        if destination.symlink_metadata().is_err() {
            return self.finish(staged, destination);
        }
        if staged.is_dir() {
            sync_dir(staged);
        }
        sync_dir(staged.parent().unwrap_or(staged));
        let old = crate::fsio::swap::replace(staged, destination)?;
        sync_dir(destination.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")));
        if let Some(old) = old {
            crate::fsio::swap::remove_entry(&old)?;
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_path_buf();
            if dir.close().is_err() {
                let _ = std::fs::remove_dir_all(&path);
            }
        }
        if let Some(marker) = self.marker.take() {
            let _ = std::fs::remove_file(marker);
        }
    }
}

/// Flushes a folder's entries (created or renamed files) to disk; best effort, Unix only.
pub fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Writes a journal marker: the name prefix on the first line, the folder it is used in after.
fn record(parent: &Path, prefix: &str) -> Option<PathBuf> {
    let journal = JOURNAL.lock().ok()?.clone()?;
    let absolute = std::path::absolute(parent).ok()?;
    let number = NEXT_MARKER.fetch_add(1, Ordering::Relaxed);
    let marker = journal.join(format!("{}-{number}{MARKER_SUFFIX}", std::process::id()));
    let mut content = format!("{prefix}\n").into_bytes();
    content.extend_from_slice(absolute.as_os_str().as_encoded_bytes());
    std::fs::write(&marker, content).ok()?;
    Some(marker)
}

/// Removes the entries of `parent` named with `prefix` (a dead process's staging folders).
fn remove_with_prefix(parent: &Path, prefix: &str, pid: u32, removed: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(prefix) || owner_pid(&name) != Some(pid) {
            continue;
        }
        let path = entry.path();
        let gone = match entry.file_type() {
            Ok(kind) if kind.is_dir() => std::fs::remove_dir_all(&path).is_ok(),
            Ok(_) => std::fs::remove_file(&path).is_ok(),
            Err(_) => false,
        };
        if gone {
            removed.push(path);
        }
    }
}

/// Call once at start (the CLI does, the GUI should): journals this process's staging folders
/// in `<data_dir>/staging/`, and removes the staging folders recorded there by processes that
/// are no longer running (killed, or stopped by a signal before they could clean up). Returns
/// what it removed.
pub fn recover_at_start(data_dir: &Path) -> Vec<PathBuf> {
    let journal = data_dir.join("staging");
    if std::fs::create_dir_all(&journal).is_err() {
        return Vec::new();
    }
    if let Ok(mut slot) = JOURNAL.lock() {
        *slot = Some(journal.clone());
    }
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(&journal) else { return removed };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_suffix(MARKER_SUFFIX).and_then(|n| n.split('-').next()).and_then(|p| p.parse().ok())
        else {
            continue;
        };
        if process_is_alive(pid) {
            continue;
        }
        if let Ok(bytes) = crate::fsio::read_bytes(&entry.path(), 64 << 10) {
            if let Some(split) = bytes.iter().position(|b| *b == b'\n') {
                let prefix = String::from_utf8_lossy(&bytes[..split]).into_owned();
                // SAFETY: the bytes were written from an OsStr by this program on this platform.
                let parent = PathBuf::from(unsafe { std::ffi::OsString::from_encoded_bytes_unchecked(bytes[split + 1..].to_vec()) });
                // Only ever remove what carries our name and that process's id.
                if owner_pid(&format!("{prefix}x")) == Some(pid) {
                    remove_with_prefix(&parent, &prefix, pid, &mut removed);
                }
            }
        }
        let _ = std::fs::remove_file(entry.path());
    }
    removed
}

/// Removes `.modeldesk-save-<pid>-*.tmp` files in `dir` whose process is gone (a save killed
/// between writing its temporary file and renaming it). Returns what it removed.
pub fn remove_dead_temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return removed };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(&format!("{OWN_TEMP_PREFIX}save-")) || !name.ends_with(".tmp") {
            continue;
        }
        let Some(pid) = owner_pid(&name) else { continue };
        if !process_is_alive(pid) && entry.file_type().is_ok_and(|t| t.is_file()) && std::fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process id that is certainly not running: a child that has exited and been reaped.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        child.id()
    }

    #[test]
    fn names_carry_the_owner() {
        let prefix = own_prefix("export");
        assert_eq!(owner_pid(&format!("{prefix}abc123")), Some(std::process::id()));
        assert_eq!(owner_pid(".modeldesk-save-17-x.tmp"), Some(17));
        assert_eq!(owner_pid(".modeldesk-abc.tmp"), None);
        assert_eq!(owner_pid("model"), None);
        assert!(process_is_alive(std::process::id()));
    }

    #[cfg(unix)]
    #[test]
    fn stale_staging_of_dead_processes_is_removed_and_live_ones_kept() {
        let home = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let journal = home.path().join("staging");
        std::fs::create_dir_all(&journal).unwrap();
        let dead = dead_pid();
        let prefix = format!(".modeldesk-export-{dead}-");
        let stale = work.path().join(format!("{prefix}abc"));
        std::fs::create_dir_all(stale.join("model")).unwrap();
        let marker = |prefix: &str| [format!("{prefix}\n").as_bytes(), work.path().as_os_str().as_encoded_bytes()].concat();
        std::fs::write(journal.join(format!("{dead}-0.staging")), marker(&prefix)).unwrap();
        // A marker whose prefix is not ours (or another process's) removes nothing.
        let foreign = work.path().join("precious");
        std::fs::create_dir(&foreign).unwrap();
        std::fs::write(journal.join(format!("{dead}-1.staging")), marker("precious")).unwrap();
        let live = work.path().join(format!("{}keep", own_prefix("export")));
        std::fs::create_dir(&live).unwrap();
        std::fs::write(journal.join(format!("{dead}-2.staging")), marker(&own_prefix("export"))).unwrap();
        let removed = recover_at_start(home.path());
        assert_eq!(removed, vec![stale.clone()]);
        assert!(!stale.exists() && foreign.is_dir() && live.is_dir());
        std::fs::remove_dir(&live).unwrap();
        assert!((0..3).all(|n| !journal.join(format!("{dead}-{n}.staging")).exists()));

        // This process's own staging is journaled while it lives and forgotten after (other
        // tests may journal their own folders meanwhile, so look for this one's marker).
        let staging = Staging::new_in(work.path(), "export").unwrap();
        let path = staging.path().to_path_buf();
        let markers_naming = |parent: &Path| {
            std::fs::read_dir(&journal)
                .unwrap()
                .filter(|e| std::fs::read(e.as_ref().unwrap().path()).unwrap().ends_with(parent.as_os_str().as_encoded_bytes()))
                .count()
        };
        assert_eq!(markers_naming(work.path()), 1);
        assert!(recover_at_start(home.path()).is_empty() && path.is_dir(), "a live process's folder stays");
        drop(staging);
        assert!(!path.exists());
        assert_eq!(markers_naming(work.path()), 0);

        let temp = work.path().join(format!(".modeldesk-save-{dead}-x.tmp"));
        std::fs::write(&temp, "half").unwrap();
        let mine = work.path().join(format!("{}y.tmp", own_prefix("save")));
        std::fs::write(&mine, "in use").unwrap();
        assert_eq!(remove_dead_temp_files(work.path()), vec![temp]);
        assert!(mine.is_file());
    }
}
