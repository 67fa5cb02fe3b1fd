//! Running the real `modeldesk` binary on hostile input and measuring it: wall time, peak
//! resident memory of that child (from `wait4`), output and exit code; folder snapshots to show
//! the input is byte-identical afterwards; generators for the hostile files.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    hash::{DefaultHasher, Hash as _, Hasher as _},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub seconds: f64,
    pub peak_rss_mb: f64,
}

impl Run {
    /// stdout and stderr together, for message checks.
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Asserts the run named `needle` in its output, took under `seconds` and stayed under
    /// `megabytes` of resident memory; prints the figures for the report's table.
    pub fn assert_bounded(&self, case: &str, needle: &str, seconds: f64, megabytes: f64) {
        println!("| {case} | {:.3} | {:.1} |", self.seconds, self.peak_rss_mb);
        assert!(self.output().contains(needle), "{case}: expected `{needle}` in:\n{}", self.output());
        assert!(!self.output().contains("panicked"), "{case}: panicked:\n{}", self.output());
        assert!(self.seconds < seconds, "{case}: took {:.2} s (bound {seconds} s)", self.seconds);
        assert!(self.peak_rss_mb < megabytes, "{case}: peak RSS {:.1} MB (bound {megabytes} MB)", self.peak_rss_mb);
    }
}

/// Limits for the child process, applied between fork and exec.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChildLimits {
    /// `RLIMIT_FSIZE` in bytes, with `SIGXFSZ` ignored: a write past it fails with EFBIG, the
    /// way a full disk fails with ENOSPC, without needing root or a small file system.
    pub max_file_bytes: Option<u64>,
}

/// Starts the child from a small Python process and waits for it with `wait4`. Linux carries
/// the parent's memory high-water mark into a forked child's `ru_maxrss`, so forking from this
/// test process (tens of MB once it has built large inputs) would overstate the child; the
/// launcher's own ~8 MB is the floor of every figure instead.
const LAUNCHER: &str = r#"
import json, os, resource, signal, sys, time
limit, out, err, args = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
if limit:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
actions = [
    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
    (os.POSIX_SPAWN_OPEN, 1, out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
    (os.POSIX_SPAWN_OPEN, 2, err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
]
start = time.monotonic()
pid = os.posix_spawn(args[0], args, os.environ, file_actions=actions)
_, status, usage = os.wait4(pid, 0)
seconds = time.monotonic() - start
sys.stdout.write(json.dumps({"code": os.waitstatus_to_exitcode(status), "seconds": seconds, "maxrss_kb": usage.ru_maxrss}))
"#;

/// Runs `modeldesk <args>` with `MODELDESK_HOME` set to `home`, waits for it, and measures it.
pub fn modeldesk(args: &[&std::ffi::OsStr], home: &Path, limits: ChildLimits) -> Run {
    let scratch = tempfile::tempdir().expect("scratch for the child's output");
    let out_path = scratch.path().join("stdout");
    let err_path = scratch.path().join("stderr");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let output = Command::new(python)
        .arg("-c")
        .arg(LAUNCHER)
        .arg(limits.max_file_bytes.unwrap_or(0).to_string())
        .arg(&out_path)
        .arg(&err_path)
        .arg(env!("CARGO_BIN_EXE_modeldesk"))
        .args(args)
        .env("MODELDESK_HOME", home)
        .output()
        .expect("start the Python launcher");
    assert!(output.status.success(), "launcher failed: {}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("launcher JSON");
    let code = report["code"].as_i64().and_then(|c| i32::try_from(c).ok()).filter(|c| *c >= 0);
    Run {
        code,
        stdout: String::from_utf8_lossy(&std::fs::read(&out_path).unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&std::fs::read(&err_path).unwrap_or_default()).into_owned(),
        seconds: report["seconds"].as_f64().expect("seconds"),
        peak_rss_mb: report["maxrss_kb"].as_f64().expect("maxrss") / 1024.0,
    }
}

/// Like [`modeldesk`] with string arguments and no limits.
pub fn run(args: &[&str], home: &Path) -> Run {
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    modeldesk(&args, home, ChildLimits::default())
}

/// Every entry under `dir` (links not followed): files by length and hash, links by target,
/// folders and other entries by kind.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut entries = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).expect("read the folder to snapshot") {
            let path = entry.expect("folder entry").path();
            let meta = path.symlink_metadata().expect("entry metadata");
            let relative = path.strip_prefix(dir).expect("inside").to_path_buf();
            let description = if meta.file_type().is_symlink() {
                format!("link to {}", std::fs::read_link(&path).expect("link target").display())
            } else if meta.is_dir() {
                stack.push(path.clone());
                "folder".to_owned()
            } else if meta.is_file() {
                let mut hasher = DefaultHasher::new();
                std::fs::read(&path).expect("file bytes").hash(&mut hasher);
                format!("{} bytes, hash {:x}", meta.len(), hasher.finish())
            } else {
                format!("special {:?}", meta.file_type())
            };
            entries.insert(relative, description);
        }
    }
    entries
}

/// Copies a folder tree (files and folders only).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("read the source") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy a file");
        }
    }
}

/// A deterministic pseudo-random byte stream (xorshift), for junk files.
pub fn junk(length: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.max(1);
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// An MLflow package made once per test binary from the tiny Phi-3 fixture with the real CLI.
pub fn package_template() -> &'static Path {
    static TEMPLATE: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
    let (_, path) = TEMPLATE.get_or_init(|| {
        let scratch = tempfile::tempdir().expect("template scratch");
        let out = scratch.path().join("package");
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-phi3");
        let made = run(
            &["create", "--task", "prompt", "--from-onnx", fixture.to_str().expect("utf-8 path"), "--out", out.to_str().expect("utf-8 path")],
            scratch.path(),
        );
        assert_eq!(made.code, Some(0), "create failed: {}", made.output());
        (scratch, out)
    });
    path
}

/// A fresh copy of the package in `dir/name`.
pub fn package_in(dir: &Path, name: &str) -> PathBuf {
    let target = dir.join(name);
    copy_dir(package_template(), &target);
    target
}

/// A fresh copy of the tiny Phi-3 folder in `dir/name`.
pub fn onnx_folder_in(dir: &Path, name: &str) -> PathBuf {
    let target = dir.join(name);
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-phi3"), &target);
    target
}

/// Edits `genai_config.json` of an ONNX folder as JSON.
pub fn edit_genai_config(dir: &Path, change: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("genai_config.json");
    let mut value: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).expect("read config")).expect("config JSON");
    change(&mut value);
    std::fs::write(path, serde_json::to_vec_pretty(&value).expect("JSON")).expect("write config");
}

/// Polls until `path` exists (or `timeout` passes).
pub fn wait_for(path: &Path, timeout: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}
