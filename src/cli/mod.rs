//! Headless subcommands over the same libraries the GUI uses: one file per subcommand, each
//! with its arguments (`…Args`) and its `run`.

mod bench;
mod create;
mod doctor;
mod edit;
mod export;
mod generate;
mod mlflow;
mod show;
mod validate;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

pub use bench::{BenchArgs, bench_prompt};
pub use create::{CreateArgs, TaskArg};
pub use doctor::DoctorArgs;
pub use edit::EditArgs;
pub use export::ExportArgs;
pub use generate::{GenerateArgs, chat_completion_json};
pub use mlflow::{MlflowArgs, MlflowCommand};
pub use show::ShowArgs;
pub use validate::ValidateArgs;

use crate::{
    app_dirs::AppDirs,
    engine::KvMode,
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
    /// Create an MLflow model (models-from-code pyfunc) from a Phi-3 ONNX folder.
    Create(CreateArgs),
    /// Change model_config, the signature, the input example or the description of a model.
    Edit(EditArgs),
    /// Export a validated model as a self-contained folder or .zip.
    Export(ExportArgs),
    /// MLflow tracking server and Model Registry: list, pull and push models.
    Mlflow(MlflowArgs),
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

/// Loads ONNX Runtime for a subcommand, or explains why it cannot.
pub fn load_runtime() -> Result<&'static Runtime> {
    let dirs = AppDirs::discover();
    Ok(runtime::load(&Candidates::discover(dirs.as_ref()))?)
}

pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Doctor(args) => doctor::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Show(args) => show::run(args),
        Command::Create(args) => create::run(args),
        Command::Edit(args) => edit::run(args),
        Command::Export(args) => export::run(args),
        Command::Mlflow(args) => mlflow::run(args),
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
