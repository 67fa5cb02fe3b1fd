//! `modeldesk download`: a repository (or one folder of it) from the Hugging Face Hub into the
//! shared cache; prints the local folder on stdout, progress on stderr.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use clap::Args;
use serde_json::json;

use crate::{
    hub::{DownloadEvent, DownloadRequest, DownloadService, HubSettings, Outcome, service::Rate},
    memory::human_bytes,
};

#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// The repository, `owner/name` (for example microsoft/Phi-3-mini-4k-instruct-onnx).
    pub repo: String,
    /// A branch, tag or commit id.
    #[arg(long, default_value = "main")]
    pub revision: String,
    /// Only this folder of the repository (for example cpu_and_mobile/cpu-int4-rtn-block-32-acc-level-4).
    #[arg(long)]
    pub include: Option<String>,
    /// Print one JSON object with the folder, commit and byte counts when done.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: DownloadArgs) -> Result<()> {
    let request = DownloadRequest::new(&args.repo, Some(&args.revision), args.include.as_deref())?;
    let settings = HubSettings::from_env()?;
    let started = Instant::now();
    let mut service = DownloadService::spawn(settings, crate::service::no_waker());
    let id = service.start(request.clone());
    let mut printer = ProgressLine::default();
    let outcome = loop {
        let Some(event) = service.recv_timeout(Duration::from_secs(3600)) else {
            return Err(anyhow!("the download stopped reporting"));
        };
        match event {
            DownloadEvent::Planned { plan, .. } => eprintln!(
                "{} at {}: {} files, {} ({} to download)",
                request.repo,
                &plan.commit[..12],
                plan.files.len(),
                human_bytes(plan.total_bytes()),
                human_bytes(plan.to_fetch_bytes())
            ),
            DownloadEvent::Progress { progress, rate, .. } => printer.show(&progress, rate),
            DownloadEvent::Finished { id: done, outcome } if done == id => break outcome,
            DownloadEvent::Failed { error, .. } => {
                printer.end();
                return Err(anyhow!("{error}"));
            }
            DownloadEvent::Cancelled { .. } => return Err(anyhow!("cancelled")),
            DownloadEvent::Finished { .. } => {}
        }
    };
    printer.end();
    report(&args, &request, &outcome, started.elapsed().as_secs_f64())
}

fn report(args: &DownloadArgs, request: &DownloadRequest, outcome: &Outcome, seconds: f64) -> Result<()> {
    if args.json {
        println!(
            "{}",
            json!({
                "repo": outcome.repo.as_str(),
                "revision": request.revision,
                "commit": outcome.commit,
                "folder": outcome.folder,
                "files": outcome.files,
                "bytes": outcome.bytes,
                "fetched_bytes": outcome.fetched_bytes,
                "already_cached": outcome.already_cached,
                "seconds": seconds,
            })
        );
        return Ok(());
    }
    if outcome.already_cached {
        eprintln!("already on this computer ({}, {} files)", human_bytes(outcome.bytes), outcome.files);
    } else {
        let speed = if seconds > 0.0 { format!(", {}/s", human_bytes((outcome.fetched_bytes as f64 / seconds) as u64)) } else { String::new() };
        eprintln!("downloaded {} in {seconds:.1} s{speed}", human_bytes(outcome.fetched_bytes));
    }
    println!("{}", outcome.folder.display());
    Ok(())
}

/// One line on stderr, rewritten in place.
#[derive(Default)]
struct ProgressLine {
    shown: bool,
}

impl ProgressLine {
    fn show(&mut self, progress: &crate::hub::Progress, rate: Rate) {
        let percent = if progress.total == 0 { 100.0 } else { progress.done as f64 * 100.0 / progress.total as f64 };
        let left = rate.time_left_label().map(|s| format!(", {s} left")).unwrap_or_default();
        let name = progress.file_path.rsplit('/').next().unwrap_or(&progress.file_path);
        eprint!(
            "\r[{}/{}] {name}: {} / {} ({percent:.0}%), {}/s{left}\x1b[K",
            progress.file_index + 1,
            progress.file_count,
            human_bytes(progress.done),
            human_bytes(progress.total),
            human_bytes(rate.bytes_per_second as u64)
        );
        self.shown = true;
    }

    fn end(&mut self) {
        if std::mem::take(&mut self.shown) {
            eprintln!();
        }
    }
}
