//! `modeldesk create`: an MLflow package from a Phi ONNX folder (models-from-code pyfunc over
//! onnxruntime-genai) or from a Hugging Face checkpoint (transformers flavor, `llm/v1/chat`).

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use super::progress_printer;
use crate::inspect::check_folder;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["from_onnx", "from_hf"])))]
pub struct CreateArgs {
    /// The Phi-3 ONNX folder (genai_config.json, decoder, tokenizer).
    #[arg(long)]
    pub from_onnx: Option<PathBuf>,
    /// A Hugging Face checkpoint folder (config.json, safetensors weights, tokenizer with a chat
    /// template), also a snapshot in the Hugging Face cache.
    #[arg(long)]
    pub from_hf: Option<PathBuf>,
    /// The new model folder (must not exist, unless --replace).
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an existing destination once the new package is complete (only an MLflow model
    /// folder or an empty folder; never the source or a folder holding it).
    #[arg(long)]
    pub replace: bool,
    /// The kind of MLflow model: `onnx` (pyfunc over onnxruntime-genai; from --from-onnx) or
    /// `transformers` (MLflow's transformers flavor; from --from-hf).
    #[arg(long, value_enum)]
    pub flavor: Option<FlavorArg>,
    /// ONNX packages: what the model answers.
    #[arg(long, value_enum, default_value_t = TaskArg::Chat)]
    pub task: TaskArg,
    /// ONNX packages: the model name in model_config. Transformers packages: `source_model_name`,
    /// the `model` of every response (default: the repository id, or the folder's path).
    #[arg(long)]
    pub name: Option<String>,
    /// Transformers packages: the MLflow version to pin; 2.x picks transformers 4.51.3, 3.x
    /// transformers 5.23.0 (default 3.17.2).
    #[arg(long)]
    pub mlflow_version: Option<String>,
    /// Transformers packages: override the transformers version of the MLflow preset.
    #[arg(long)]
    pub transformers_version: Option<String>,
    /// Transformers packages: override the torch version (default 2.15.0).
    #[arg(long)]
    pub torch_version: Option<String>,
    /// Transformers packages: `max_new_tokens` in model_config (transformers otherwise stops at
    /// 20 tokens including the prompt).
    #[arg(long, default_value_t = 256, value_parser = super::value::tokens)]
    pub max_new_tokens: usize,
    /// Transformers packages: hard-link the weights instead of copying them when the checkpoint
    /// is on the same disk (instant, no extra space; the package then shares those files with
    /// the checkpoint, so never edit them in place).
    #[arg(long)]
    pub link: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FlavorArg {
    Onnx,
    Transformers,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TaskArg {
    Prompt,
    Chat,
}

pub fn run(args: CreateArgs) -> Result<()> {
    let out = match (&args.from_onnx, &args.from_hf, args.flavor) {
        (Some(source), None, None | Some(FlavorArg::Onnx)) => create_onnx(source, &args)?,
        (None, Some(source), None | Some(FlavorArg::Transformers)) => create_transformers(source, &args)?,
        (None, Some(_), Some(FlavorArg::Onnx)) => bail!(
            "an ONNX package needs the ONNX form of the model: convert the checkpoint first (modeldesk convert DIR --out ONNX_DIR), then run modeldesk create --from-onnx ONNX_DIR"
        ),
        (Some(_), None, Some(FlavorArg::Transformers)) => {
            bail!("a transformers package is made from a Hugging Face checkpoint: use --from-hf DIR")
        }
        _ => bail!("give either --from-onnx or --from-hf"),
    };
    let report = check_folder(&out);
    for problem in &report.problems {
        eprintln!("{problem}");
    }
    println!("created {}", out.display());
    Ok(())
}

fn create_onnx(source: &std::path::Path, args: &CreateArgs) -> Result<PathBuf> {
    use crate::mlflow::create::{CreateOptions, Task, create_from_onnx_to};
    let task = match args.task {
        TaskArg::Prompt => Task::Prompt,
        TaskArg::Chat => Task::Chat,
    };
    let options = CreateOptions { task, name: args.name.clone(), python_version: None };
    super::cancellable(|cancel| Ok(create_from_onnx_to(source, &args.out, &options, if_exists(args), &mut progress_printer(), cancel)?))
}

fn if_exists(args: &CreateArgs) -> crate::mlflow::export::IfExists {
    if args.replace { crate::mlflow::export::IfExists::Replace } else { crate::mlflow::export::IfExists::Refuse }
}

fn create_transformers(source: &std::path::Path, args: &CreateArgs) -> Result<PathBuf> {
    use crate::{
        checkpoint::{
            Checkpoint,
            package::{PackageOptions, Versions, create_transformers_package},
        },
        mlflow::yaml::Node,
    };
    let mut versions = match args.mlflow_version.as_deref() {
        Some(version) if version.starts_with("2.") => Versions { mlflow: version.to_owned(), ..Versions::mlflow2() },
        Some(version) => Versions { mlflow: version.to_owned(), ..Versions::mlflow3() },
        None => Versions::mlflow3(),
    };
    if let Some(version) = &args.transformers_version {
        versions.transformers.clone_from(version);
    }
    if let Some(version) = &args.torch_version {
        versions.torch.clone_from(version);
    }
    let mut options =
        PackageOptions { name: args.name.clone(), versions, link_weights: args.link, if_exists: if_exists(args), ..PackageOptions::default() };
    options.model_config.insert("max_new_tokens", Node::Int(i128::try_from(args.max_new_tokens).unwrap_or(i128::MAX)));
    let checkpoint = Checkpoint::open(source)?;
    eprintln!(
        "{} ({}, {} weights{}), packaging for MLflow {} with transformers {}",
        checkpoint.dir.display(),
        checkpoint.architecture,
        crate::memory::human_bytes(checkpoint.weight_bytes()),
        checkpoint.dtype.as_deref().map(|d| format!(" in {d}")).unwrap_or_default(),
        options.versions.mlflow,
        options.versions.transformers
    );
    let summary = super::cancellable(|cancel| {
        Ok(create_transformers_package(&checkpoint, &args.out, &options, &mut progress_printer(), cancel)?)
    })?;
    if summary.linked_files > 0 {
        eprintln!("{} weight files hard-linked (shared with the checkpoint)", summary.linked_files);
    } else if args.link {
        eprintln!("the weights were copied: the checkpoint is on another disk or the file system has no hard links");
    }
    Ok(summary.path)
}
