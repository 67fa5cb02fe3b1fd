//! Crash safety: a panic anywhere is written, with context, to a log file in the log directory
//! (the newest ten are kept), and the next start shows where it is.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use crate::app_dirs::AppDirs;

const KEEP: usize = 10;
const SEEN_MARKER: &str = ".last-reported";

/// Installs the panic hook. The default hook still prints to stderr.
pub fn install(dirs: Option<&AppDirs>) {
    let Some(dir) = dirs.map(|d| d.logs.clone()) else { return };
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let from_winit = info.location().is_some_and(|l| l.file().contains("winit"));
        if from_winit && is_window_lost(info.payload()) {
            // Not a crash of ours: `gui::run_window` catches it, saves and exits.
            return;
        }
        // Never let writing the report panic inside the panic hook.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write_report(&dir, info)));
        default_hook(info);
    }));
}

/// Whether a panic is winit's (0.30) reaction to its X11 window having been destroyed from
/// outside — by the window manager or a tool such as `xkill` — without the usual close request:
/// the next X11 request about the window fails with `BadWindow` and winit unwraps that error.
/// Nothing of ours is broken, so the window's loop is left, conversations are saved, and the
/// process ends normally instead of reporting a crash.
pub fn is_window_lost(payload: &(dyn std::any::Any + Send)) -> bool {
    let message = payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied()).unwrap_or("");
    message.contains("X11Error") && message.contains("error_kind: Window")
}

fn write_report(dir: &Path, info: &std::panic::PanicHookInfo<'_>) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let path = dir.join(format!("crash-{}-{:03}.log", now.as_secs(), now.subsec_millis()));
    let message = info
        .payload()
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| info.payload().downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into());
    let location = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column())).unwrap_or_default();
    let thread = std::thread::current().name().unwrap_or("unnamed").to_owned();
    let mut file = std::fs::File::create(&path)?;
    writeln!(file, "ModelDesk {} crashed", env!("CARGO_PKG_VERSION"))?;
    writeln!(file, "time (unix): {}", now.as_secs())?;
    writeln!(file, "os: {} {}", std::env::consts::OS, std::env::consts::ARCH)?;
    writeln!(file, "thread: {thread}")?;
    writeln!(file, "at: {location}")?;
    writeln!(file, "message: {message}")?;
    writeln!(file, "\nbacktrace:\n{}", std::backtrace::Backtrace::force_capture())?;
    file.sync_all()?;
    rotate(dir);
    Ok(path)
}

fn crash_logs(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("crash-")))
                .collect()
        })
        .unwrap_or_default();
    logs.sort();
    logs
}

fn rotate(dir: &Path) {
    let logs = crash_logs(dir);
    if logs.len() > KEEP {
        for old in &logs[..logs.len() - KEEP] {
            let _ = std::fs::remove_file(old);
        }
    }
}

/// The newest crash log the user has not been told about yet.
pub fn unreported(dirs: &AppDirs) -> Option<PathBuf> {
    let newest = crash_logs(&dirs.logs).pop()?;
    let seen = std::fs::read_to_string(dirs.logs.join(SEEN_MARKER)).unwrap_or_default();
    let name = newest.file_name()?.to_string_lossy().into_owned();
    (seen.trim() != name).then_some(newest)
}

/// Records that the user was shown `log`.
pub fn mark_reported(dirs: &AppDirs, log: &Path) {
    if let Some(name) = log.file_name() {
        let _ = std::fs::write(dirs.logs.join(SEEN_MARKER), name.to_string_lossy().as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_destroyed_x11_window_is_told_apart_from_other_panics() {
        // The message winit 0.30.13 panics with after `xdotool windowclose` (XDestroyWindow).
        let lost = String::from("called `Result::unwrap()` on an `Err` value: X11(X11Error { error_kind: Window, error_code: 3, sequence: 451, bad_value: 4194307, minor_opcode: 0, major_opcode: 40, extension_name: None, request_name: Some(\"TranslateCoordinates\") })");
        assert!(is_window_lost(&lost));
        let other_x11 = String::from("called `Result::unwrap()` on an `Err` value: X11(X11Error { error_kind: IDChoice, error_code: 14 })");
        assert!(!is_window_lost(&other_x11));
        assert!(!is_window_lost(&"index out of bounds"));
        assert!(!is_window_lost(&42_u32));
    }

    #[test]
    fn reports_are_written_rotated_and_shown_once() {
        let root = tempfile::tempdir().unwrap();
        let dirs = AppDirs::under(root.path());
        std::fs::create_dir_all(&dirs.logs).unwrap();
        for i in 0..12 {
            std::fs::write(dirs.logs.join(format!("crash-1000000{i:02}-000.log")), "x").unwrap();
        }
        rotate(&dirs.logs);
        assert_eq!(crash_logs(&dirs.logs).len(), KEEP);
        let newest = unreported(&dirs).unwrap();
        assert!(newest.ends_with("crash-100000011-000.log"));
        mark_reported(&dirs, &newest);
        assert!(unreported(&dirs).is_none());
    }
}
