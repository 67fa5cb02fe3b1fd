//! `modeldesk export`: a validated, self-contained copy (folder or zip).

use std::{path::PathBuf, sync::atomic::AtomicBool, time::Instant};

use anyhow::Result;
use clap::Args;
use serde_json::json;

use super::progress_printer;

#[derive(Debug, Args)]
pub struct ExportArgs {
    pub dir: PathBuf,
    /// The destination folder, or .zip file with --zip (must not exist).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long)]
    pub zip: bool,
    /// Print one JSON object with bytes, seconds and peak memory when done.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ExportArgs) -> Result<()> {
    let cancel = AtomicBool::new(false);
    let started = Instant::now();
    let out = crate::mlflow::export::export(&args.dir, &args.out, args.zip, &mut progress_printer(), &cancel)?;
    let seconds = started.elapsed().as_secs_f64();
    let bytes = crate::mlflow::export::tree_size(&args.dir);
    if args.json {
        println!("{}", json!({
            "path": out, "bytes": bytes, "seconds": seconds,
            "peak_rss_mb": crate::memory::peak_rss().map(|b| b as f64 / 1_048_576.0),
        }));
    } else {
        println!("exported {} ({} in {seconds:.1} s)", out.display(), crate::memory::human_bytes(bytes));
    }
    Ok(())
}
