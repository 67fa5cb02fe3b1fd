//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod gui;
pub mod hub_server;
pub mod mlflow_server;
pub mod server;

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

/// The repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The committed tiny Phi-3 fixture.
pub fn tiny_phi3() -> PathBuf {
    repo().join("tests/fixtures/tiny-phi3")
}

/// `modeldesk create --from-onnx` of the tiny fixture as a `task` ("chat" or "prompt") package.
pub fn create_with_cli(task: &str, out: &Path) {
    let output = Command::new(env!("CARGO_BIN_EXE_modeldesk"))
        .args(["create", "--from-onnx"])
        .arg(tiny_phi3())
        .arg("--out")
        .arg(out)
        .args(["--task", task])
        .output()
        .expect("run modeldesk create");
    assert!(output.status.success(), "create {task}: {}", String::from_utf8_lossy(&output.stderr));
}

/// `../shared`, the reference material CI always has beside the clone.
pub fn shared() -> PathBuf {
    let shared = repo().join("../shared");
    assert!(shared.is_dir(), "../shared is missing: the tests need the reference material beside the clone");
    shared
}

/// ONNX Runtime for this test process, found the way the app finds it.
pub fn runtime() -> &'static modeldesk::runtime::Runtime {
    modeldesk::runtime::load(&modeldesk::runtime::Candidates::discover(None))
        .unwrap_or_else(|e| panic!("ONNX Runtime must load for the tests: {e}"))
}

/// The ONNX Runtime library the build placed beside the test executables.
pub fn runtime_library() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().expect("test executable directory");
    modeldesk::runtime::library_file_names()
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("no ONNX Runtime library beside {}", exe.display()))
}

/// A Python interpreter with the reference packages (onnxruntime, onnxruntime-genai, …) from
/// `tests/python/requirements.txt`, in a private virtual environment under the target directory.
/// Created on first use (needs `python3` and access to PyPI); concurrent tests wait for it.
pub fn reference_python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("reference-python");
            private_venv(&repo().join("tests/python/requirements.txt"), &root, &[])
        })
        .clone()
}

/// A Python interpreter with PyTorch, transformers, MLflow and onnxruntime-genai's model builder
/// (`tests/python/requirements-torch.txt`) for the checkpoint and conversion tests. torch from
/// PyPI brings its CUDA runtime wheels (about 3 GB installed), so this environment lives once per
/// machine in the user's cache directory (`MODELDESK_TEST_CACHE` overrides), shared by every
/// clone and target directory, and the light suites never wait for it. `--no-cache-dir` keeps
/// pip from holding a second copy of the wheels.
pub fn torch_python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let cache = std::env::var_os("MODELDESK_TEST_CACHE").map(PathBuf::from).unwrap_or_else(|| {
                directories::BaseDirs::new().expect("a home directory for the test cache").cache_dir().join("modeldesk-tests")
            });
            private_venv(&repo().join("tests/python/requirements-torch.txt"), &cache.join("torch-python"), &["--no-cache-dir"])
        })
        .clone()
}

/// The interpreter of a virtual environment in `root/venv` holding exactly `requirements`:
/// (re)built when the requirements file differs from the one it was built from, under a file
/// lock so concurrent tests (and test processes) build it once. Prints how long an install took.
fn private_venv(requirements: &Path, root: &Path, pip_options: &[&str]) -> PathBuf {
    let wanted = std::fs::read_to_string(requirements).unwrap_or_else(|e| panic!("read {}: {e}", requirements.display()));
    std::fs::create_dir_all(root).unwrap_or_else(|e| panic!("create {}: {e}", root.display()));
    let lock = std::fs::File::create(root.join(".lock")).expect("create the venv lock file");
    lock.lock().expect("lock the venv");
    let venv = root.join("venv");
    let python = if cfg!(windows) { venv.join("Scripts/python.exe") } else { venv.join("bin/python") };
    let stamp = root.join("installed-requirements.txt");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) || !python.is_file() {
        let started = std::time::Instant::now();
        let host = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let _ = std::fs::remove_dir_all(&venv);
        let _ = std::fs::remove_file(&stamp);
        run(Command::new(&host).args(["-m", "venv"]).arg(&venv), "create a test venv");
        run(
            Command::new(&python)
                .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
                .args(pip_options)
                .arg("-r")
                .arg(requirements),
            &format!("install {}", requirements.display()),
        );
        std::fs::write(&stamp, &wanted).expect("write the venv stamp");
        eprintln!("installed {} into {} in {:.0} s", requirements.display(), venv.display(), started.elapsed().as_secs_f64());
    }
    let _ = lock.unlock();
    python
}

fn run(command: &mut Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("could not {what}: {e}"));
    assert!(
        output.status.success(),
        "could not {what}:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs a Python snippet with the reference interpreter; returns stdout.
pub fn python(script: &str, args: &[&str]) -> String {
    let output = Command::new(reference_python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run the reference python");
    assert!(output.status.success(), "python failed:\n{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("python printed UTF-8")
}

/// Runs one of the scripts in `tests/python/` with `input` as JSON on stdin; returns its JSON.
pub fn python_script(name: &str, input: &serde_json::Value) -> serde_json::Value {
    python_script_with(&reference_python(), name, input)
}

/// [`python_script`] with another interpreter (for example [`torch_python`]).
pub fn python_script_with(python: &Path, name: &str, input: &serde_json::Value) -> serde_json::Value {
    use std::{io::Write as _, process::Stdio};
    let mut child = Command::new(python)
        .arg(repo().join("tests/python").join(name))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {name}: {e}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(input.to_string().as_bytes()).expect("write the script's input");
    drop(stdin);
    let output = child.wait_with_output().expect("wait for the script");
    assert!(output.status.success(), "{name} failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{name} printed no JSON: {e}"))
}

/// onnxruntime-genai's reference run (`../shared/tools/genai_ref.py`), parsed.
pub fn genai_reference(model: &Path, prompt: &str, max_length: usize, extra: &[&str]) -> serde_json::Value {
    let script = shared().join("tools/genai_ref.py");
    let output = Command::new(reference_python())
        .arg(&script)
        .arg(model)
        .arg(prompt)
        .arg(max_length.to_string())
        .args(extra)
        .output()
        .expect("run genai_ref.py");
    assert!(output.status.success(), "genai_ref.py failed:\n{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("genai_ref.py prints JSON")
}

/// A copy of a model folder whose EOS set also holds `extra_eos`.
pub fn with_extra_eos(model: &Path, extra_eos: i64, into: &Path) -> PathBuf {
    let copy = into.join(model.file_name().unwrap());
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(model).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    let path = copy.join("genai_config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut eos: Vec<serde_json::Value> = match &config["model"]["eos_token_id"] {
        serde_json::Value::Array(ids) => ids.clone(),
        other => vec![other.clone()],
    };
    eos.push(serde_json::json!(extra_eos));
    config["model"]["eos_token_id"] = serde_json::Value::Array(eos);
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    copy
}
