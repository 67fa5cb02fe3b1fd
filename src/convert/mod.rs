//! Converting a Hugging Face checkpoint to a Phi ONNX folder with onnxruntime-genai's official
//! model builder (`python -m onnxruntime_genai.models.builder -i CHECKPOINT -o OUT -p int4 -e
//! cpu`), run as a child process of the user's Python (`python`). Progress comes from the
//! builder's output (`progress`); the output is built in a staging folder beside the destination
//! and renamed once it opens as a Phi ONNX folder, so a cancelled (the child's process group is
//! killed) or failed run leaves nothing. `service` runs conversions in the background.
//! Knows nothing of egui.

pub mod progress;
pub mod python;
pub mod service;

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

pub use progress::{ProgressParser, Stage};
pub use python::{BuilderPython, PythonError};

use crate::{
    checkpoint::{Checkpoint, CheckpointError},
    engine::folder::ModelFolder,
    staging::Staging,
};

/// Lines of the builder's output kept to explain a failure.
const TAIL_LINES: usize = 30;

/// The builder's `-p`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Int4,
    Fp16,
    Fp32,
}

/// The builder's `-e`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    #[default]
    Cpu,
    Cuda,
    Dml,
}

impl Precision {
    pub const ALL: [Precision; 3] = [Precision::Int4, Precision::Fp16, Precision::Fp32];

    pub fn arg(self) -> &'static str {
        match self {
            Precision::Int4 => "int4",
            Precision::Fp16 => "fp16",
            Precision::Fp32 => "fp32",
        }
    }
}

impl Provider {
    pub const ALL: [Provider; 3] = [Provider::Cpu, Provider::Cuda, Provider::Dml];

    pub fn arg(self) -> &'static str {
        match self {
            Provider::Cpu => "cpu",
            Provider::Cuda => "cuda",
            Provider::Dml => "dml",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Provider::Cpu => "CPU",
            Provider::Cuda => "CUDA (NVIDIA)",
            Provider::Dml => "DirectML (Windows GPUs)",
        }
    }
}

/// The pairs the builder accepts (its own list: FP32 CPU/CUDA, FP16 CUDA/DML, INT4 CPU/CUDA/DML).
pub fn is_supported(precision: Precision, provider: Provider) -> bool {
    !matches!((precision, provider), (Precision::Fp16, Provider::Cpu) | (Precision::Fp32, Provider::Dml))
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConvertRequest {
    pub checkpoint: PathBuf,
    /// The new Phi ONNX folder (must not exist).
    pub out: PathBuf,
    pub precision: Precision,
    pub provider: Provider,
    /// The interpreter with the builder; `None` = found (see `python::find`).
    pub python: Option<PathBuf>,
}

/// Progress of a conversion.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvertProgress {
    pub stage: Stage,
    pub fraction: f32,
    /// The builder's last line.
    pub line: String,
    pub elapsed_seconds: f64,
}

/// A finished conversion.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    pub folder: PathBuf,
    pub python: BuilderPython,
    pub seconds: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("the model builder cannot make {precision} models for {provider}; it makes int4 for CPU, CUDA and DirectML, fp16 for CUDA and DirectML, fp32 for CPU and CUDA", precision = .0.arg(), provider = .1.label())]
    Unsupported(Precision, Provider),
    #[error("{0} already exists; choose another destination")]
    Exists(PathBuf),
    #[error(transparent)]
    Python(#[from] PythonError),
    #[error("cannot start {python}: {reason}")]
    Spawn { python: String, reason: String },
    #[error("the model builder stopped ({status}); its last lines:\n{tail}")]
    Failed { status: String, tail: String },
    #[error("the builder's output does not open as a Phi ONNX folder: {0}")]
    NotOpenable(String),
    #[error("cancelled")]
    Cancelled,
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
}

/// What a conversion will cost, from the builder's measured behaviour on Phi-3-mini-shaped
/// checkpoints of 2, 4 and 8 layers (`tools/bench_convert.sh`, int4 CPU): memory and time grow
/// linearly with the parameter count, because the builder holds the float32 model and its ONNX
/// initializers at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub parameters: u64,
    /// Peak resident memory of the builder.
    pub peak_bytes: u64,
    /// Processor time (about the wall time on an otherwise idle computer).
    pub cpu_seconds: f64,
}

/// Peak memory: a fixed part (Python, torch) plus bytes per parameter.
const PEAK_FIXED_BYTES: f64 = 1.30e9;
const PEAK_BYTES_PER_PARAMETER: f64 = 7.13;
/// Processor time: a fixed part (imports) plus seconds per parameter.
const CPU_FIXED_SECONDS: f64 = 14.2;
const CPU_SECONDS_PER_PARAMETER: f64 = 58.6e-9;

/// The estimate for a checkpoint of `weight_bytes` bytes stored as `dtype` (torch's name).
pub fn estimate(weight_bytes: u64, dtype: Option<&str>) -> Estimate {
    let bytes_per_parameter = match dtype {
        Some("float32") => 4,
        Some("float64") => 8,
        _ => 2,
    };
    let parameters = weight_bytes / bytes_per_parameter;
    let count = parameters as f64;
    Estimate {
        parameters,
        peak_bytes: (PEAK_FIXED_BYTES + PEAK_BYTES_PER_PARAMETER * count) as u64,
        cpu_seconds: CPU_FIXED_SECONDS + CPU_SECONDS_PER_PARAMETER * count,
    }
}

/// Reads a pipe and sends its lines (tqdm's `\r` counts as a line end).
fn forward_lines(mut pipe: impl std::io::Read + Send + 'static, lines: mpsc::Sender<String>) {
    let _ = std::thread::Builder::new().name("modeldesk-convert-output".into()).spawn(move || {
        let mut pending = Vec::new();
        let mut buffer = [0u8; 8192];
        loop {
            let n = match pipe.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            for byte in &buffer[..n] {
                if matches!(byte, b'\n' | b'\r') {
                    if !pending.is_empty() && lines.send(String::from_utf8_lossy(&pending).into_owned()).is_err() {
                        return;
                    }
                    pending.clear();
                } else if pending.len() < 64 << 10 {
                    pending.push(*byte);
                }
            }
        }
        if !pending.is_empty() {
            let _ = lines.send(String::from_utf8_lossy(&pending).into_owned());
        }
    });
}

/// Ends the child and everything it started.
fn kill_tree(child: &mut Child) {
    #[cfg(unix)]
    {
        // SAFETY: signalling the process group created for this child (process_group(0)).
        unsafe {
            libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
        }
    }
    #[cfg(windows)]
    {
        let _ = Command::new("taskkill").args(["/F", "/T", "/PID", &child.id().to_string()]).output();
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The builder's command line for `request`, writing to `output` with its cache in `cache`.
pub fn builder_command(python: &Path, request: &ConvertRequest, output: &Path, cache: &Path) -> Command {
    let mut command = Command::new(python);
    command
        .args(["-m", "onnxruntime_genai.models.builder", "-i"])
        .arg(&request.checkpoint)
        .arg("-o")
        .arg(output)
        .args(["-p", request.precision.arg(), "-e", request.provider.arg(), "-c"])
        .arg(cache)
        // A local checkpoint needs no network: no token lookup, no Hub requests.
        .args(["--extra_options", "hf_token=false"])
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_OFFLINE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONIOENCODING", "utf-8")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        command.process_group(0);
    }
    command
}

/// Converts `request.checkpoint` into `request.out`. Checks first (checkpoint, precision and
/// provider, destination, Python and the builder's packages), then runs the builder, reporting
/// progress, until it ends or `cancel` is set.
pub fn convert(request: &ConvertRequest, on_progress: &mut dyn FnMut(&ConvertProgress), cancel: &AtomicBool) -> Result<Converted, ConvertError> {
    let checkpoint = Checkpoint::open(&request.checkpoint)?;
    if !is_supported(request.precision, request.provider) {
        return Err(ConvertError::Unsupported(request.precision, request.provider));
    }
    if request.out.symlink_metadata().is_ok() {
        return Err(ConvertError::Exists(request.out.clone()));
    }
    let python = python::find(request.python.as_deref())?;
    let parent = request.out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| ConvertError::Io { path, error }
    };
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let staging = Staging::new_in(parent, "convert").map_err(io(parent))?;
    let output = staging.path().join("onnx");
    let cache = staging.path().join("cache");

    let started = Instant::now();
    let mut child = builder_command(&python.path, request, &output, &cache)
        .spawn()
        .map_err(|e| ConvertError::Spawn { python: python.path.display().to_string(), reason: e.to_string() })?;
    let (sender, lines) = mpsc::channel();
    if let Some(pipe) = child.stdout.take() {
        forward_lines(pipe, sender.clone());
    }
    if let Some(pipe) = child.stderr.take() {
        forward_lines(pipe, sender);
    }
    let mut parser = ProgressParser::new(checkpoint.num_layers, request.precision == Precision::Int4);
    let mut tail: VecDeque<String> = VecDeque::new();
    let status = loop {
        if cancel.load(Ordering::SeqCst) {
            kill_tree(&mut child);
            return Err(ConvertError::Cancelled);
        }
        match lines.recv_timeout(Duration::from_millis(50)) {
            Ok(line) => {
                if parser.line(&line) {
                    on_progress(&ConvertProgress {
                        stage: parser.stage(),
                        fraction: parser.fraction(),
                        line: line.clone(),
                        elapsed_seconds: started.elapsed().as_secs_f64(),
                    });
                }
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
            // Both pipes closed: the child has ended (or closed them); wait for it.
            Err(mpsc::RecvTimeoutError::Disconnected) => match child.wait() {
                Ok(status) => break status,
                Err(error) => return Err(ConvertError::Spawn { python: python.path.display().to_string(), reason: error.to_string() }),
            },
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    };
    if !status.success() {
        return Err(ConvertError::Failed { status: status.to_string(), tail: tail.into_iter().collect::<Vec<_>>().join("\n") });
    }
    ModelFolder::open(&output).map_err(|e| ConvertError::NotOpenable(e.to_string()))?;
    if cancel.load(Ordering::SeqCst) {
        return Err(ConvertError::Cancelled);
    }
    staging.finish(&output, &request.out).map_err(io(&request.out))?;
    Ok(Converted { folder: request.out.clone(), python, seconds: started.elapsed().as_secs_f64() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_pairs_and_taken_destinations_are_refused_before_python_is_looked_for() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-phi3-hf");
        let out = tempfile::tempdir().unwrap();
        let request = |precision, provider, out: PathBuf| ConvertRequest {
            checkpoint: fixture.clone(),
            out,
            precision,
            provider,
            python: Some(PathBuf::from("/nonexistent/python")),
        };
        let never = AtomicBool::new(false);
        let error = convert(&request(Precision::Fp16, Provider::Cpu, out.path().join("a")), &mut |_| {}, &never).unwrap_err();
        assert!(matches!(error, ConvertError::Unsupported(Precision::Fp16, Provider::Cpu)), "{error}");
        assert!(error.to_string().contains("fp16 for CUDA and DirectML"), "{error}");
        let error = convert(&request(Precision::Int4, Provider::Cpu, out.path().to_path_buf()), &mut |_| {}, &never).unwrap_err();
        assert!(matches!(error, ConvertError::Exists(_)), "{error}");
        let error = convert(&request(Precision::Int4, Provider::Cpu, out.path().join("b")), &mut |_| {}, &never).unwrap_err();
        assert!(matches!(error, ConvertError::Python(PythonError::NotFound { .. })), "{error}");
        assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0, "nothing was written");
        // Phi-3-mini: 3.8 billion parameters in bfloat16 (7.6 GB of safetensors).
        let phi3_mini = estimate(7_642_181_880, Some("bfloat16"));
        assert_eq!(phi3_mini.parameters, 3_821_090_940);
        assert!((25e9..32e9).contains(&(phi3_mini.peak_bytes as f64)), "{phi3_mini:?}");
        assert_eq!(estimate(8, Some("float32")).parameters, 2);
        let supported = Precision::ALL.iter().flat_map(|p| Provider::ALL.map(|e| (*p, e))).filter(|(p, e)| is_supported(*p, *e)).count();
        assert_eq!(supported, 7, "the builder's seven pairs");
    }
}
