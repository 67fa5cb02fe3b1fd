//! Finding and loading the ONNX Runtime shared library, and the process's one `ort` environment.
//!
//! `ort` is built with `load-dynamic`: nothing is linked at build time, and the first successful
//! [`load`] fixes the library for the life of the process (`ort` keeps it in a global). Candidates
//! are tried in a fixed order (see [`Candidates::discover`]); each failure is recorded so the user
//! sees exactly what was tried. No `ort` call may happen before a load succeeded: `ort` would
//! otherwise try `ORT_DYLIB_PATH` on its own and panic when that fails.

use std::{
    ffi::{CStr, c_char, c_int},
    fmt,
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock},
};

use crate::app_dirs::AppDirs;

/// The ONNX Runtime version the build fetched and `ort` targets.
pub const EXPECTED_VERSION: &str = env!("MODELDESK_ORT_VERSION");
/// `ort` 2.0.0-rc.15 refuses libraries older than 1.31.
const MIN_MINOR_VERSION: u32 = 31;

/// Where a candidate library path came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The `ORT_DYLIB_PATH` environment variable.
    Environment,
    /// Next to the running executable (where the build and the packages put it).
    BesideExecutable,
    /// The app's data directory (a library the user picked earlier).
    DataDirectory,
    /// Chosen by the user just now.
    Picked,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Environment => "ORT_DYLIB_PATH",
            Source::BesideExecutable => "beside the executable",
            Source::DataDirectory => "app data directory",
            Source::Picked => "picked by you",
        })
    }
}

/// One library path to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub source: Source,
    pub path: PathBuf,
}

/// One try and why it failed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Attempt {
    pub source: Source,
    pub path: PathBuf,
    pub problem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{}", describe_not_found(attempts))]
    NotFound { attempts: Vec<Attempt> },
    #[error("the ONNX Runtime library at {path} could not be used: {problem}")]
    Unusable { path: PathBuf, problem: String },
    #[error("ONNX Runtime is already loaded from {loaded}; restart ModelDesk to use {requested}")]
    AlreadyLoaded { loaded: PathBuf, requested: PathBuf },
    #[error("ONNX Runtime loaded from {path} but its environment could not be created: {problem}")]
    Environment { path: PathBuf, problem: String },
}

fn describe_not_found(attempts: &[Attempt]) -> String {
    let mut text = format!(
        "ONNX Runtime {EXPECTED_VERSION} (or a newer 1.x) was not found. ModelDesk needs its shared library \
         ({}). Tried:",
        library_file_names().join(", ")
    );
    if attempts.is_empty() {
        text.push_str(" nothing (no candidate locations exist).");
    }
    for attempt in attempts {
        text.push_str(&format!("\n  - {} ({}): {}", attempt.path.display(), attempt.source, attempt.problem));
    }
    text.push_str(
        "\nSet ORT_DYLIB_PATH to the library file, or pick it in the app. It ships inside the official \
         `onnxruntime` wheel on PyPI (onnxruntime/capi/).",
    );
    text
}

/// File names the official builds use on this platform, most specific first.
pub fn library_file_names() -> &'static [&'static str] {
    if cfg!(target_os = "windows") {
        &["onnxruntime.dll"]
    } else if cfg!(target_os = "macos") {
        &["libonnxruntime.1.31.1.dylib", "libonnxruntime.dylib"]
    } else {
        &["libonnxruntime.so.1.31.1", "libonnxruntime.so.1", "libonnxruntime.so"]
    }
}

/// The ordered list of places to look.
#[derive(Debug, Clone, Default)]
pub struct Candidates(pub Vec<Candidate>);

impl Candidates {
    /// `ORT_DYLIB_PATH`, then beside the executable (including the library folders of the
    /// installed layouts: `../lib/modeldesk` on Linux, `../Resources` in a macOS bundle), then
    /// the app's data directory.
    pub fn discover(dirs: Option<&AppDirs>) -> Self {
        let env_path = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()).map(PathBuf::from);
        let exe_dir = std::env::current_exe().ok().and_then(|exe| exe.parent().map(Path::to_path_buf));
        let mut candidates =
            Self::from_locations(env_path, exe_dir.as_deref(), dirs.map(AppDirs::runtime_library_dir).as_deref());
        if let Some(exe_dir) = &exe_dir {
            let position = candidates.0.iter().rposition(|c| c.source == Source::BesideExecutable).map_or(0, |p| p + 1);
            let installed: Vec<Candidate> = [exe_dir.join("../lib/modeldesk"), exe_dir.join("../Resources")]
                .into_iter()
                .flat_map(|dir| library_file_names().iter().map(move |name| dir.join(name)))
                .map(|path| Candidate { source: Source::BesideExecutable, path })
                .collect();
            candidates.0.splice(position..position, installed);
        }
        candidates
    }

    /// The same order, from explicit locations (what [`Self::discover`] reads from the process).
    pub fn from_locations(env_path: Option<PathBuf>, exe_dir: Option<&Path>, data_dir: Option<&Path>) -> Self {
        let mut list = Vec::new();
        if let Some(path) = env_path {
            list.push(Candidate { source: Source::Environment, path });
        }
        for (source, dir) in [(Source::BesideExecutable, exe_dir), (Source::DataDirectory, data_dir)] {
            if let Some(dir) = dir {
                for name in library_file_names() {
                    list.push(Candidate { source, path: dir.join(name) });
                }
            }
        }
        Self(list)
    }
}

/// The loaded runtime: where it came from and the process's one environment.
pub struct Runtime {
    pub library_path: PathBuf,
    pub source: Source,
    pub version: String,
    environment: ort::environment::Environment,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("library_path", &self.library_path)
            .field("source", &self.source)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// The one environment; `Session::builder` takes it.
    pub fn environment(&self) -> &ort::environment::Environment {
        &self.environment
    }

    /// Execution providers this build of ONNX Runtime offers (`CPUExecutionProvider`, …).
    pub fn available_providers(&self) -> Vec<String> {
        available_providers()
    }
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static LOAD_LOCK: Mutex<()> = Mutex::new(());

/// The runtime if a load already succeeded.
pub fn loaded() -> Option<&'static Runtime> {
    RUNTIME.get()
}

/// Loads ONNX Runtime from the first candidate that works; on success later calls return the same
/// runtime whatever they pass.
pub fn load(candidates: &Candidates) -> Result<&'static Runtime, RuntimeError> {
    let _guard = LOAD_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    let mut attempts = Vec::new();
    for candidate in &candidates.0 {
        if !candidate.path.exists() {
            // Beside-executable and data-directory candidates are guesses; only report missing
            // files the user named.
            if candidate.source == Source::Environment || candidate.source == Source::Picked {
                attempts.push(Attempt {
                    source: candidate.source,
                    path: candidate.path.clone(),
                    problem: "no such file".into(),
                });
            }
            continue;
        }
        match load_one(candidate) {
            Ok(runtime) => return Ok(RUNTIME.get_or_init(|| runtime)),
            Err(problem) => attempts.push(Attempt { source: candidate.source, path: candidate.path.clone(), problem }),
        }
    }
    if attempts.is_empty() {
        // Nothing existed: list where we looked so the user knows where to put it.
        attempts = candidates
            .0
            .iter()
            .map(|c| Attempt { source: c.source, path: c.path.clone(), problem: "no such file".into() })
            .collect();
    }
    Err(RuntimeError::NotFound { attempts })
}

/// Loads the library the user picked. On success it is also copied into the data directory so
/// the next start finds it there without asking again.
pub fn load_picked(path: &Path, dirs: Option<&AppDirs>) -> Result<&'static Runtime, RuntimeError> {
    if let Some(runtime) = RUNTIME.get() {
        if runtime.library_path == path {
            return Ok(runtime);
        }
        return Err(RuntimeError::AlreadyLoaded { loaded: runtime.library_path.clone(), requested: path.to_path_buf() });
    }
    let candidate = Candidate { source: Source::Picked, path: path.to_path_buf() };
    let runtime = {
        let _guard = LOAD_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match RUNTIME.get() {
            Some(runtime) => runtime,
            None => {
                let runtime =
                    load_one(&candidate).map_err(|problem| RuntimeError::Unusable { path: path.to_path_buf(), problem })?;
                RUNTIME.get_or_init(|| runtime)
            }
        }
    };
    if let Some(dirs) = dirs {
        // Best effort: failing to remember the choice must not undo a working load.
        let _ = remember_library(path, &dirs.runtime_library_dir());
    }
    Ok(runtime)
}

fn remember_library(path: &Path, dir: &Path) -> std::io::Result<()> {
    let Some(name) = path.file_name() else { return Ok(()) };
    let known = library_file_names().iter().any(|known| name == *known);
    let target_name = if known { name.to_owned() } else { library_file_names()[0].into() };
    std::fs::create_dir_all(dir)?;
    let target = dir.join(target_name);
    if target == path {
        return Ok(());
    }
    let partial = dir.join(".partial-library");
    std::fs::copy(path, &partial)?;
    std::fs::rename(&partial, &target)
}

fn load_one(candidate: &Candidate) -> Result<Runtime, String> {
    let path = std::path::absolute(&candidate.path).unwrap_or_else(|_| candidate.path.clone());
    let version = probe_version(&path)?;
    let builder = ort::init_from(&path).map_err(|e| e.to_string())?;
    let environment = builder
        .with_name("modeldesk")
        .with_telemetry(false)
        .build()
        .map_err(|e| format!("environment: {e}"))?;
    Ok(Runtime { library_path: path, source: candidate.source, version, environment })
}

/// Opens the library on its own to read its version before handing it to `ort`, so a wrong file
/// gets a specific message ("not ONNX Runtime", "version 1.20 is too old") instead of a generic one.
fn probe_version(path: &Path) -> Result<String, String> {
    if path.is_dir() {
        return Err("is a directory, not a library file".into());
    }
    // SAFETY: loading a shared library runs its initialisers; that is inherent to using a native
    // library the user pointed us at, and the same thing `ort` does next.
    let library = unsafe { libloading::Library::new(path) }.map_err(|e| format!("cannot be loaded as a library: {e}"))?;
    // SAFETY: the symbol, if present, has this signature in every ONNX Runtime release.
    let get_api_base: libloading::Symbol<unsafe extern "C" fn() -> *const ort::sys::OrtApiBase> =
        unsafe { library.get(b"OrtGetApiBase\0") }
            .map_err(|_| "is a library but not ONNX Runtime (no OrtGetApiBase symbol)".to_string())?;
    // SAFETY: OrtGetApiBase takes no arguments and returns a pointer to a static table.
    let base = unsafe { get_api_base() };
    if base.is_null() {
        return Err("OrtGetApiBase returned nothing".into());
    }
    // SAFETY: base is non-null and points at the library's static OrtApiBase; GetVersionString
    // returns a static NUL-terminated string.
    let version = unsafe { CStr::from_ptr(((*base).GetVersionString)()) }.to_string_lossy().into_owned();
    let mut parts = version.split('.');
    let major = parts.next().and_then(|p| p.parse::<u32>().ok());
    let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
    match (major, minor) {
        (Some(1), Some(minor)) if minor >= MIN_MINOR_VERSION => Ok(version),
        _ => Err(format!("is ONNX Runtime {version}; ModelDesk needs 1.{MIN_MINOR_VERSION} or newer")),
    }
}

fn available_providers() -> Vec<String> {
    let api = ort::api();
    let mut list: *mut *mut c_char = std::ptr::null_mut();
    let mut count: c_int = 0;
    // SAFETY: the runtime is loaded (this is only reachable through a `Runtime`); the out-pointers
    // are valid, and the returned array is released below with its own length.
    let status = unsafe { (api.GetAvailableProviders)(&mut list, &mut count) };
    if !status.0.is_null() {
        // SAFETY: a non-null status from the API is owned by us and released once.
        unsafe { (api.ReleaseStatus)(status.0) };
        return Vec::new();
    }
    if list.is_null() {
        return Vec::new();
    }
    let names = (0..usize::try_from(count).unwrap_or(0))
        // SAFETY: `list` has `count` valid NUL-terminated strings.
        .map(|i| unsafe { CStr::from_ptr(*list.add(i)) }.to_string_lossy().into_owned())
        .collect();
    // SAFETY: releasing what GetAvailableProviders allocated, with the same length.
    let status = unsafe { (api.ReleaseAvailableProviders)(list, count) };
    if !status.0.is_null() {
        // SAFETY: as above.
        unsafe { (api.ReleaseStatus)(status.0) };
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_follow_the_documented_order() {
        let candidates = Candidates::from_locations(
            Some(PathBuf::from("/env/lib.so")),
            Some(Path::new("/exe")),
            Some(Path::new("/data/onnxruntime")),
        );
        let sources: Vec<Source> = candidates.0.iter().map(|c| c.source).collect();
        assert_eq!(sources[0], Source::Environment);
        let first_exe = sources.iter().position(|s| *s == Source::BesideExecutable).unwrap();
        let first_data = sources.iter().position(|s| *s == Source::DataDirectory).unwrap();
        assert!(0 < first_exe && first_exe < first_data);
        assert!(candidates.0.iter().all(|c| c.source != Source::BesideExecutable || c.path.starts_with("/exe")));
    }

    #[test]
    fn not_found_message_lists_every_attempt() {
        let error = RuntimeError::NotFound {
            attempts: vec![Attempt { source: Source::Environment, path: "/x/lib.so".into(), problem: "no such file".into() }],
        };
        let text = error.to_string();
        assert!(text.contains("/x/lib.so (ORT_DYLIB_PATH): no such file"), "{text}");
        assert!(text.contains("ORT_DYLIB_PATH"));
    }

    #[test]
    fn a_text_file_is_rejected_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("libonnxruntime.so");
        std::fs::write(&fake, "not a library").unwrap();
        let problem = probe_version(&fake).unwrap_err();
        assert!(problem.contains("cannot be loaded as a library"), "{problem}");
    }
}
