//! `modeldesk validate`: MLflow's checks plus the Phi ONNX folder's.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use super::Reported;
use crate::inspect::check_folder;

#[derive(Debug, Args)]
pub struct ValidateArgs {
    pub path: PathBuf,
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ValidateArgs) -> Result<()> {
    let report = check_folder(&args.path);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json!({"usable": report.is_usable(), "problems": report.problems}))?);
    } else {
        for problem in &report.problems {
            println!("{problem}");
        }
        let errors = report.errors().count();
        let warnings = report.problems.len() - errors;
        println!(
            "{}: {} ({errors} error{}, {warnings} warning{})",
            args.path.display(),
            if report.is_usable() { "usable" } else { "not usable" },
            if errors == 1 { "" } else { "s" },
            if warnings == 1 { "" } else { "s" }
        );
    }
    if report.is_usable() { Ok(()) } else { Err(Reported(1).into()) }
}
