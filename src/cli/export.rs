//! `modeldesk export`: a validated, self-contained copy (folder or zip).

use std::{path::PathBuf, time::Instant};

use anyhow::Result;
use clap::Args;
use serde_json::json;

use super::progress_printer;

#[derive(Debug, Args)]
pub struct ExportArgs {
    pub dir: PathBuf,
    /// The destination folder, or .zip file with --zip (must not exist, unless --replace).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long)]
    pub zip: bool,
    /// Replace an existing destination once the new package is complete (only an MLflow model
    /// folder, an empty folder or a .zip file; never the source or a folder holding it).
    #[arg(long)]
    pub replace: bool,
    /// Print one JSON object with bytes, seconds and peak memory when done.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ExportArgs) -> Result<()> {
    let started = Instant::now();
    let summary = super::cancellable(|cancel| {
        use crate::mlflow::export::{IfExists, export_to};
        let if_exists = if args.replace { IfExists::Replace } else { IfExists::Refuse };
        Ok(export_to(&args.dir, &args.out, args.zip, if_exists, &mut progress_printer(), cancel)?)
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let outside: Vec<_> = summary.outside.iter().map(|(inside, real)| json!({"path": inside, "from": real})).collect();
    if args.json {
        println!("{}", json!({
            "path": summary.path, "bytes": summary.bytes, "files": summary.files, "seconds": seconds,
            "outside": outside,
            "peak_rss_mb": crate::memory::peak_rss().map(|b| b as f64 / 1_048_576.0),
        }));
    } else {
        println!("exported {} ({} in {seconds:.1} s)", summary.path.display(), crate::memory::human_bytes(summary.bytes));
        if !summary.outside.is_empty() {
            println!("{} file(s) came through links from outside the folder:", summary.outside.len());
            for (inside, real) in &summary.outside {
                println!("  {} <- {}", inside.display(), real.display());
            }
        }
    }
    Ok(())
}
