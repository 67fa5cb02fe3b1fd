//! Headless subcommands over the same libraries the GUI uses: one file per subcommand, each
//! with its arguments (`…Args`) and its `run`.

mod bench;
mod bench_lookup;
mod bench_turns;
mod conversation;
mod convert;
mod create;
mod doctor;
mod download;
mod edit;
mod export;
mod generate;
mod mlflow;
mod serve;
mod show;
mod validate;

use std::{
    path::PathBuf,
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::Result;
use clap::{Parser, Subcommand};

pub use bench::{BenchArgs, bench_prompt};
pub use convert::ConvertArgs;
pub use create::{CreateArgs, FlavorArg, TaskArg};
pub use doctor::DoctorArgs;
pub use download::DownloadArgs;
pub use edit::EditArgs;
pub use export::ExportArgs;
pub use generate::{GenerateArgs, chat_completion_json};
pub use mlflow::{MlflowArgs, MlflowCommand};
pub use serve::ServeArgs;
pub use show::ShowArgs;
pub use validate::ValidateArgs;

use crate::{
    app_dirs::AppDirs,
    engine::{DecoderSettings, KvMode},
    runtime::{self, Candidates, Runtime},
};

#[derive(Debug, Parser)]
#[command(name = "modeldesk", version, about = "Chat with local Phi-3 ONNX models; manage and export MLflow model folders.")]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// A model folder to open in the window (a Phi-3 ONNX folder or an MLflow model).
    pub path: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Where ONNX Runtime was loaded from, what it offers, and (with --model) one forward pass.
    Doctor(DoctorArgs),
    /// Generate a reply from a model folder.
    Generate(GenerateArgs),
    /// Measure load time, time to first token, prefill and decode speed, and peak memory.
    Bench(BenchArgs),
    /// Check an MLflow model folder (and the Phi-3 ONNX folder it wraps) the way MLflow loads it.
    Validate(ValidateArgs),
    /// Summarise an MLflow model folder: flavors, loader, signature, model_config, example, files.
    Show(ShowArgs),
    /// Create an MLflow model: a pyfunc over a Phi-3 ONNX folder, or the transformers flavor from a Hugging Face checkpoint.
    Create(CreateArgs),
    /// Convert a Hugging Face checkpoint to a Phi ONNX folder with onnxruntime-genai's model builder.
    Convert(ConvertArgs),
    /// Change model_config, the signature, the input example or the description of a model.
    Edit(EditArgs),
    /// Export a validated model as a self-contained folder or .zip.
    Export(ExportArgs),
    /// MLflow tracking server and Model Registry: list, pull and push models.
    Mlflow(MlflowArgs),
    /// Download a model (or one folder of it) from the Hugging Face Hub into the shared cache.
    Download(DownloadArgs),
    /// Serve the model over HTTP: OpenAI-compatible chat completions and MLflow scoring.
    Serve(ServeArgs),
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KvModeArg {
    Shared,
    Growing,
}

impl From<KvModeArg> for KvMode {
    fn from(value: KvModeArg) -> Self {
        match value {
            KvModeArg::Shared => KvMode::Shared,
            KvModeArg::Growing => KvMode::Growing,
        }
    }
}

/// How the engine runs the model: the flags `generate` and `bench` share.
#[derive(Debug, Clone, clap::Args)]
pub struct DecoderArgs {
    /// Intra-op threads (default: all physical cores).
    #[arg(long, value_parser = value::threads)]
    pub threads: Option<usize>,
    /// Keep the KV cache in shared buffers (default) or grow the past each step.
    #[arg(long, value_enum, default_value_t = KvModeArg::Shared)]
    pub kv_mode: KvModeArg,
    /// Let idle ONNX Runtime threads spin while waiting for work (ONNX Runtime's and
    /// onnxruntime-genai's default; ModelDesk lets them sleep unless the folder's config says so).
    #[arg(long)]
    pub spinning: bool,
    /// Write ONNX Runtime's profile of every model run to PREFIX_<date>.json (its path is printed
    /// on stderr at the end), as onnxruntime-genai's `enable_profiling` session option does.
    #[arg(long, value_name = "PREFIX")]
    pub ort_profile: Option<PathBuf>,
}

impl DecoderArgs {
    pub fn settings(&self) -> DecoderSettings {
        DecoderSettings {
            intra_threads: self.threads,
            kv_mode: self.kv_mode.into(),
            thread_spinning: self.spinning.then_some(true),
            ort_profile: self.ort_profile.clone(),
        }
    }

    /// Ends the profile `--ort-profile` started, naming its file on stderr.
    pub fn finish_profile(&self, engine: &mut crate::engine::Engine) -> Result<()> {
        if self.ort_profile.is_some() {
            let file = engine.decoder.end_profiling()?;
            eprintln!("ONNX Runtime profile: {file}");
        }
        Ok(())
    }
}

/// Loads ONNX Runtime for a subcommand, or explains why it cannot.
pub fn load_runtime() -> Result<&'static Runtime> {
    let dirs = AppDirs::discover();
    Ok(runtime::load(&Candidates::discover(dirs.as_ref()))?)
}

pub fn run(command: Command) -> Result<()> {
    // `serve` handles Ctrl-C itself: it ends the streams in flight and exits cleanly.
    if !matches!(command, Command::Serve(_)) {
        install_signal_handlers();
    }
    // Staging folders of a run that was killed (kill -9, a crash) go now.
    if let Some(dirs) = AppDirs::discover() {
        crate::staging::recover_at_start(&dirs.data);
    }
    match command {
        Command::Doctor(args) => doctor::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Show(args) => show::run(args),
        Command::Create(args) => create::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Edit(args) => edit::run(args),
        Command::Export(args) => export::run(args),
        Command::Mlflow(args) => mlflow::run(args),
        Command::Download(args) => download::run(args),
        Command::Serve(args) => serve::run(args),
    }
}

/// A failure that has already been reported and only sets the exit code.
#[derive(Debug)]
pub struct Reported(pub u8);

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}

impl std::error::Error for Reported {}

/// Set by Ctrl-C, SIGTERM or SIGHUP.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// Whether a running operation polls [`INTERRUPTED`] and cleans up after itself; when none does,
/// a signal ends the process at once (nothing is being written then).
static CANCELLABLE: AtomicBool = AtomicBool::new(false);

fn install_signal_handlers() {
    // A second signal, or one outside a cancellable operation, exits at once.
    let _ = ctrlc::set_handler(|| {
        let again = INTERRUPTED.swap(true, Ordering::SeqCst);
        if again || !CANCELLABLE.load(Ordering::SeqCst) {
            std::process::exit(130);
        }
    });
}

/// Runs `work` with signals turned into cancellation: `work` gets the flag to poll, stops, and
/// its staging folders are removed; the command then ends with exit code 130.
pub(crate) fn cancellable<T>(work: impl FnOnce(&AtomicBool) -> Result<T>) -> Result<T> {
    CANCELLABLE.store(true, Ordering::SeqCst);
    let result = work(&INTERRUPTED);
    CANCELLABLE.store(false, Ordering::SeqCst);
    match result {
        Err(error) if INTERRUPTED.load(Ordering::SeqCst) => {
            eprintln!("interrupted: {error:#}; nothing was left behind");
            Err(Reported(130).into())
        }
        other => other,
    }
}

/// Value parsers for numbers on the command line: out-of-range values are refused by clap with
/// the allowed range, before anything starts (`--threads 100000` once spawned threads until the
/// machine ran out of memory).
pub(crate) mod value {
    use crate::engine::config::{MAX_CONTEXT_LENGTH, MAX_THREADS, MAX_VOCAB_SIZE};

    fn ranged(text: &str, min: usize, max: usize) -> Result<usize, String> {
        let value: usize = text.trim().parse().map_err(|_| format!("`{text}` is not a whole number"))?;
        if value < min || value > max {
            return Err(format!("{value} is out of range: use {min} to {max}"));
        }
        Ok(value)
    }

    fn real(text: &str, valid: impl Fn(f32) -> bool, range: &str) -> Result<f32, String> {
        let value: f32 = text.trim().parse().map_err(|_| format!("`{text}` is not a number"))?;
        if value.is_finite() && valid(value) { Ok(value) } else { Err(format!("{text} is out of range: use {range}")) }
    }

    /// Threads for ONNX Runtime: 1 to 1024.
    pub fn threads(text: &str) -> Result<usize, String> {
        ranged(text, 1, MAX_THREADS)
    }

    /// A token count: 1 to the largest context ModelDesk accepts.
    pub fn tokens(text: &str) -> Result<usize, String> {
        ranged(text, 1, MAX_CONTEXT_LENGTH)
    }

    /// Repetitions of a measurement: 1 to 10,000.
    pub fn runs(text: &str) -> Result<usize, String> {
        ranged(text, 1, 10_000)
    }

    /// `top_k`: 0 (off) to the largest vocabulary.
    pub fn top_k(text: &str) -> Result<usize, String> {
        ranged(text, 0, MAX_VOCAB_SIZE)
    }

    /// `top_p`: 0 to 1.
    pub fn probability(text: &str) -> Result<f32, String> {
        real(text, |v| (0.0..=1.0).contains(&v), "0 to 1")
    }

    /// `temperature`: a number ≥ 0.
    pub fn temperature(text: &str) -> Result<f32, String> {
        real(text, |v| v >= 0.0, "a number ≥ 0")
    }

    /// `repetition_penalty`: a number > 0 (1 is none).
    pub fn penalty(text: &str) -> Result<f32, String> {
        real(text, |v| v > 0.0, "a number > 0")
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn numbers_are_range_checked_with_the_range_named() {
            assert_eq!(super::threads("4"), Ok(4));
            assert!(super::threads("100000").unwrap_err().contains("1 to 1024"));
            assert!(super::threads("0").is_err());
            assert!(super::tokens("1000000000000").is_err());
            assert!(super::penalty("0").is_err());
            assert!(super::penalty("NaN").is_err());
            assert!(super::probability("1.5").is_err());
            assert!(super::temperature("inf").is_err());
            assert_eq!(super::temperature("0.7"), Ok(0.7));
        }
    }
}

/// A progress line on stderr: bytes, percentage, time left.
pub(crate) fn progress_printer() -> impl FnMut(crate::mlflow::export::CopyProgress) {
    let mut last = std::time::Instant::now() - std::time::Duration::from_secs(1);
    move |p| {
        if last.elapsed().as_millis() < 200 && p.done_bytes < p.total_bytes {
            return;
        }
        last = std::time::Instant::now();
        let remaining = p.remaining_seconds().map(|s| format!(", {s:.0} s left")).unwrap_or_default();
        eprint!(
            "\r{} / {} ({:.0}%{remaining})   ",
            crate::memory::human_bytes(p.done_bytes),
            crate::memory::human_bytes(p.total_bytes),
            p.fraction() * 100.0
        );
        if p.done_bytes >= p.total_bytes {
            eprintln!();
        }
    }
}

pub(crate) fn join(list: &serde_json::Value) -> String {
    list.as_array()
        .map(|items| items.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}
