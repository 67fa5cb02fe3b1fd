//! The Python that runs onnxruntime-genai's model builder: the one the user chose, else the
//! first of `$PYTHON`, `python3` and `python` on PATH that starts. A quick probe (no torch
//! import, a second or two) tells which of the builder's packages it lacks, so a missing one is
//! a message with the `pip install` line before anything starts.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde::Deserialize;

/// The builder's packages: the import name checked and the pip requirement to install.
/// onnxruntime-genai is pinned to the release ModelDesk matches token for token.
pub const BUILDER_PACKAGES: &[(&str, &str)] = &[
    ("onnxruntime_genai", "onnxruntime-genai==0.18.0"),
    ("torch", "torch"),
    ("transformers", "transformers"),
    ("onnx", "onnx"),
    ("onnx_ir", "onnx-ir"),
    ("onnxruntime", "onnxruntime"),
];

/// How long the probe may take (a cold interpreter on a slow disk).
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// Prints the version and which of the modules can be found, as JSON (`find_spec` does not
/// import them, except the builder's own package, whose module must be found too).
const PROBE: &str = r#"
import importlib.util, json, platform, sys
found = {}
for name in sys.argv[1:]:
    try:
        found[name] = importlib.util.find_spec(name) is not None
    except Exception:
        found[name] = False
if found.get("onnxruntime_genai"):
    try:
        found["onnxruntime_genai"] = importlib.util.find_spec("onnxruntime_genai.models.builder") is not None
    except Exception:
        found["onnxruntime_genai"] = False
print(json.dumps({"version": platform.python_version(), "found": found}))
"#;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PythonError {
    #[error("no Python 3 found (tried {tried}); install Python 3 or choose the interpreter that has onnxruntime-genai")]
    NotFound { tried: String },
    #[error("{python} did not start: {reason}")]
    Broken { python: String, reason: String },
    #[error(
        "{python} (Python {version}) lacks {missing} for onnxruntime-genai's model builder. Install with:\n  \"{python}\" -m pip install {install}\nor choose another Python."
    )]
    BuilderMissing { python: String, version: String, missing: String, install: String },
}

/// A Python that has the builder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuilderPython {
    pub path: PathBuf,
    pub version: String,
}

#[derive(Deserialize)]
struct ProbeAnswer {
    version: String,
    found: std::collections::BTreeMap<String, bool>,
}

/// Interpreters to try when none was chosen.
pub fn candidates() -> Vec<PathBuf> {
    let mut list: Vec<PathBuf> = std::env::var_os("PYTHON").map(PathBuf::from).into_iter().collect();
    list.extend(["python3", "python"].map(PathBuf::from));
    list
}

/// Runs the probe with `python`; `Ok(None)` when the program does not exist.
fn probe(python: &Path) -> Result<Option<ProbeAnswer>, PythonError> {
    let broken = |reason: String| PythonError::Broken { python: python.display().to_string(), reason };
    let spawned = Command::new(python)
        .arg("-c")
        .arg(PROBE)
        .args(BUILDER_PACKAGES.iter().map(|(module, _)| *module))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(broken(error.to_string())),
    };
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() > PROBE_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(broken(format!("it did not answer within {} s", PROBE_TIMEOUT.as_secs())));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(error) => return Err(broken(error.to_string())),
        }
    }
    let output = child.wait_with_output().map_err(|e| broken(e.to_string()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(broken(format!("{} ({})", output.status, stderr.lines().last().unwrap_or_default())));
    }
    let answer: ProbeAnswer = serde_json::from_slice(&output.stdout)
        .map_err(|_| broken("it is not a Python 3 interpreter (the probe printed no JSON)".into()))?;
    Ok(Some(answer))
}

/// Checks that `python` has every package the builder needs.
pub fn check(python: &Path) -> Result<BuilderPython, PythonError> {
    let Some(answer) = probe(python)? else {
        return Err(PythonError::NotFound { tried: python.display().to_string() });
    };
    let missing: Vec<(&str, &str)> =
        BUILDER_PACKAGES.iter().filter(|(module, _)| !answer.found.get(*module).copied().unwrap_or(false)).copied().collect();
    if missing.is_empty() {
        return Ok(BuilderPython { path: python.to_path_buf(), version: answer.version });
    }
    Err(PythonError::BuilderMissing {
        python: python.display().to_string(),
        version: answer.version,
        missing: missing.iter().map(|(module, _)| *module).collect::<Vec<_>>().join(", "),
        install: missing.iter().map(|(_, requirement)| *requirement).collect::<Vec<_>>().join(" "),
    })
}

/// The chosen interpreter, checked; or the first candidate that has the builder. When none has
/// it, the error is about the first one that runs (the message names what to install there).
pub fn find(chosen: Option<&Path>) -> Result<BuilderPython, PythonError> {
    if let Some(python) = chosen {
        return check(python);
    }
    let candidates = candidates();
    let mut first_error = None;
    for python in &candidates {
        match check(python) {
            Ok(found) => return Ok(found),
            Err(PythonError::NotFound { .. }) => {}
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    Err(first_error.unwrap_or_else(|| PythonError::NotFound {
        tried: candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_and_a_non_python_are_told_apart() {
        let missing = check(Path::new("/nonexistent/python3")).unwrap_err();
        assert!(matches!(missing, PythonError::NotFound { .. }), "{missing}");
        #[cfg(unix)]
        {
            let error = check(Path::new("true")).unwrap_err();
            assert!(error.to_string().contains("not a Python 3 interpreter"), "{error}");
            let error = check(Path::new("false")).unwrap_err();
            assert!(matches!(error, PythonError::Broken { .. }), "{error}");
        }
    }
}
