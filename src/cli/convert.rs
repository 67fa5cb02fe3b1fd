//! `modeldesk convert`: a Hugging Face checkpoint to a Phi ONNX folder with onnxruntime-genai's
//! model builder (the user's Python), progress on stderr, the folder on stdout.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use crate::convert::{ConvertRequest, Precision, Provider, convert};

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The Hugging Face checkpoint folder (config.json, safetensors weights, tokenizer).
    pub dir: PathBuf,
    /// The new Phi ONNX folder (must not exist).
    #[arg(long)]
    pub out: PathBuf,
    /// int4 for CPU (and CUDA, DirectML), fp16 for CUDA and DirectML, fp32 for CPU and CUDA.
    #[arg(long, value_enum, default_value_t = PrecisionArg::Int4)]
    pub precision: PrecisionArg,
    #[arg(long, value_enum, default_value_t = ProviderArg::Cpu)]
    pub provider: ProviderArg,
    /// The Python with onnxruntime-genai, torch and transformers (default: $PYTHON, python3, python).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Print one JSON object (folder, seconds, Python) when done.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PrecisionArg {
    Int4,
    Fp16,
    Fp32,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ProviderArg {
    Cpu,
    Cuda,
    Dml,
}

pub fn run(args: ConvertArgs) -> Result<()> {
    let request = ConvertRequest {
        checkpoint: args.dir,
        out: args.out,
        precision: match args.precision {
            PrecisionArg::Int4 => Precision::Int4,
            PrecisionArg::Fp16 => Precision::Fp16,
            PrecisionArg::Fp32 => Precision::Fp32,
        },
        provider: match args.provider {
            ProviderArg::Cpu => Provider::Cpu,
            ProviderArg::Cuda => Provider::Cuda,
            ProviderArg::Dml => Provider::Dml,
        },
        python: args.python,
    };
    let mut last_stage = None;
    let converted = super::cancellable(|cancel| {
        Ok(convert(
            &request,
            &mut |progress| {
                if last_stage != Some(progress.stage) {
                    if last_stage.is_some() {
                        eprintln!();
                    }
                    last_stage = Some(progress.stage);
                }
                eprint!("\r{} ({:.0}%, {:.0} s)   ", progress.stage.label(), progress.fraction * 100.0, progress.elapsed_seconds);
            },
            cancel,
        )?)
    });
    if last_stage.is_some() {
        eprintln!();
    }
    let converted = converted?;
    if args.json {
        println!(
            "{}",
            json!({"folder": converted.folder, "seconds": converted.seconds, "python": converted.python.path, "python_version": converted.python.version})
        );
    } else {
        eprintln!("converted in {:.0} s with {} (Python {})", converted.seconds, converted.python.path.display(), converted.python.version);
        println!("{}", converted.folder.display());
    }
    Ok(())
}
