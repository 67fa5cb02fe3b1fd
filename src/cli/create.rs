//! `modeldesk create`: an MLflow package from a Phi ONNX folder.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::progress_printer;
use crate::inspect::check_folder;

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The Phi-3 ONNX folder (genai_config.json, decoder, tokenizer).
    #[arg(long)]
    pub from_onnx: PathBuf,
    /// The new model folder (must not exist).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = TaskArg::Chat)]
    pub task: TaskArg,
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TaskArg {
    Prompt,
    Chat,
}

pub fn run(args: CreateArgs) -> Result<()> {
    use crate::mlflow::create::{CreateOptions, Task, create_from_onnx};
    let task = match args.task {
        TaskArg::Prompt => Task::Prompt,
        TaskArg::Chat => Task::Chat,
    };
    let options = CreateOptions { task, name: args.name, python_version: None };
    let out = super::cancellable(|cancel| Ok(create_from_onnx(&args.from_onnx, &args.out, &options, &mut progress_printer(), cancel)?))?;
    let report = check_folder(&out);
    for problem in &report.problems {
        eprintln!("{problem}");
    }
    println!("created {}", out.display());
    Ok(())
}
