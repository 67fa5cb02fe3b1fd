//! `modeldesk mlflow list|pull|push`: the registry round trip from the command line, over the
//! tracking library (`crate::tracking`).

use std::{path::PathBuf, time::Instant};

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::{
    app_dirs::AppDirs,
    tracking::{
        TrackingClient,
        api::all_pages,
        config::{Connection, TrackingSettings},
        pull::{self, Destination, PullEvent},
        push::{self, PushEvent, PushRequest},
        types::{KeyValue, ModelVersion, RegisteredModel},
        uri::ModelUri,
    },
};

#[derive(Debug, Args)]
pub struct MlflowArgs {
    #[command(subcommand)]
    pub command: MlflowCommand,
    /// The tracking server (else MLFLOW_TRACKING_URI, else the app's setting).
    #[arg(long, global = true)]
    pub tracking_uri: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum MlflowCommand {
    /// Registered models with their versions and aliases.
    List {
        /// Only models whose name contains this text.
        #[arg(long)]
        filter: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Download a model (models:/NAME/VERSION, models:/NAME@ALIAS, models:/<model_id>,
    /// runs:/<run_id>/<path>) and print its local folder.
    Pull {
        uri: String,
        /// A new folder to pull into (else the app's cache, where a second pull is instant).
        #[arg(long)]
        dest: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Upload a model folder, register it as a new version and set aliases and tags.
    Push {
        folder: PathBuf,
        /// The registered model (created when missing).
        #[arg(long)]
        name: String,
        #[arg(long = "alias")]
        aliases: Vec<String>,
        /// KEY=VALUE, on the new version.
        #[arg(long = "tag", value_parser = parse_tag)]
        tags: Vec<KeyValue>,
        /// The experiment for the run and logged model (default: MLflow's "Default").
        #[arg(long)]
        experiment: Option<String>,
        /// The new version's description.
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

fn parse_tag(text: &str) -> std::result::Result<KeyValue, String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok(KeyValue::new(key, value)),
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

fn client(tracking_uri: Option<&str>) -> Result<TrackingClient> {
    let dirs = AppDirs::discover();
    let settings = match &dirs {
        Some(dirs) => TrackingSettings::load(&dirs.config)?,
        None => TrackingSettings::default(),
    };
    let stored = dirs.as_ref().and_then(|_| crate::tracking::credentials::stored_auth(&settings));
    Ok(TrackingClient::new(Connection::resolve(tracking_uri, &settings, stored)?)?)
}

pub fn run(args: MlflowArgs) -> Result<()> {
    let uri = args.tracking_uri.as_deref();
    match args.command {
        MlflowCommand::List { filter, json } => list(&client(uri)?, filter.as_deref(), json),
        MlflowCommand::Pull { uri: model, dest, json } => pull(&client(uri)?, &model, dest, json),
        MlflowCommand::Push { folder, name, aliases, tags, experiment, description, json } => {
            let request = PushRequest { folder, name, experiment, aliases, tags, description };
            push(&client(uri)?, &request, json)
        }
    }
}

fn version_json(version: &ModelVersion, model: &RegisteredModel) -> Value {
    let aliases: Vec<&str> = model.aliases.iter().filter(|a| a.version == version.version).map(|a| a.alias.as_str()).collect();
    json!({
        "version": version.version, "status": version.status, "source": version.source, "run_id": version.run_id,
        "model_id": version.model_id(), "description": version.description, "aliases": aliases,
        "tags": version.tags.iter().map(|t| (t.key.clone(), Value::String(t.value.clone()))).collect::<serde_json::Map<_, _>>(),
    })
}

fn list(client: &TrackingClient, filter: Option<&str>, as_json: bool) -> Result<()> {
    let models = all_pages(|token| client.search_registered_models(filter, token))?;
    let mut listed = Vec::new();
    for model in &models {
        let versions = all_pages(|token| client.search_model_versions(&model.name, token))?;
        listed.push(json!({
            "name": model.name, "description": model.description,
            "aliases": model.aliases.iter().map(|a| (a.alias.clone(), Value::String(a.version.clone()))).collect::<serde_json::Map<_, _>>(),
            "tags": model.tags.iter().map(|t| (t.key.clone(), Value::String(t.value.clone()))).collect::<serde_json::Map<_, _>>(),
            "versions": versions.iter().map(|v| version_json(v, model)).collect::<Vec<_>>(),
        }));
    }
    if as_json {
        println!("{}", Value::Array(listed));
        return Ok(());
    }
    if listed.is_empty() {
        println!("no registered models{}", filter.map(|f| format!(" matching `{f}`")).unwrap_or_default());
    }
    for model in &listed {
        println!("{}{}", model["name"].as_str().unwrap_or_default(), model["description"].as_str().filter(|d| !d.is_empty()).map(|d| format!(" — {d}")).unwrap_or_default());
        for version in model["versions"].as_array().into_iter().flatten() {
            let aliases = super::join(&version["aliases"]);
            println!(
                "  v{:<4} {:<8} {}{}",
                version["version"].as_str().unwrap_or_default(),
                version["status"].as_str().unwrap_or_default(),
                version["source"].as_str().unwrap_or_default(),
                if aliases.is_empty() { String::new() } else { format!("  @{}", aliases.replace(", ", " @")) }
            );
        }
    }
    Ok(())
}

/// A progress line on stderr for pulls and pushes.
/// A transfer's progress on one stderr line, redrawn at most five times a second and ended
/// when the last file is done.
struct ProgressLine {
    last: Option<Instant>,
}

impl ProgressLine {
    fn new() -> Self {
        Self { last: None }
    }

    fn show(&mut self, files_done: usize, files_total: usize, bytes_done: u64, bytes_total: u64) {
        let finished = files_done == files_total;
        if self.last.is_some_and(|last| last.elapsed().as_millis() < 200) && !finished {
            return;
        }
        self.last = Some(Instant::now());
        let (done, total) = (crate::memory::human_bytes(bytes_done), crate::memory::human_bytes(bytes_total));
        eprint!("\r{files_done}/{files_total} files, {done} / {total}   ");
        if finished {
            eprintln!();
        }
    }
}

fn pull(client: &TrackingClient, uri: &str, dest: Option<PathBuf>, as_json: bool) -> Result<()> {
    let uri = ModelUri::parse(uri)?;
    let destination = match dest {
        Some(folder) => Destination::Folder(folder),
        None => Destination::Cache(AppDirs::discover().context("no home directory for the app's cache; pass --dest")?.data.join("mlflow")),
    };
    let started = Instant::now();
    let mut line = ProgressLine::new();
    let pull::Pulled { folder, origin, cached, resumed_bytes } = pull::pull(client, &uri, &destination, &mut |event| match event {
        PullEvent::Resolved { files, bytes, .. } if !as_json => eprintln!("{uri}: {files} files, {}", crate::memory::human_bytes(bytes)),
        PullEvent::Progress(p) => line.show(p.files_done, p.files_total, p.bytes_done, p.bytes_total),
        _ => {}
    })?;
    if as_json {
        println!("{}", json!({
            "folder": folder, "uri": uri.to_string(), "name": origin.name, "version": origin.version, "model_id": origin.model_id,
            "run_id": origin.run_id, "artifact_uri": origin.artifact_uri, "cached": cached, "resumed_bytes": resumed_bytes, "seconds": started.elapsed().as_secs_f64(),
        }));
    } else {
        println!("{}", folder.display());
    }
    Ok(())
}

fn push(client: &TrackingClient, request: &PushRequest, as_json: bool) -> Result<()> {
    if !request.folder.is_dir() {
        bail!("{} is not a folder", request.folder.display());
    }
    let started = Instant::now();
    let mut line = ProgressLine::new();
    let pushed = push::push(client, request, &mut |event| match event {
        PushEvent::Step(step) if !as_json => eprintln!("{}…", step.label()),
        PushEvent::Progress(p) => line.show(p.files_done, p.files_total, p.bytes_done, p.bytes_total),
        _ => {}
    })?;
    if as_json {
        println!("{}", json!({
            "model_id": pushed.model_id, "name": pushed.name, "version": pushed.version, "source": pushed.source,
            "run_id": pushed.run_id, "seconds": started.elapsed().as_secs_f64(),
        }));
    } else {
        println!("{} version {} ({})", pushed.name, pushed.version, pushed.source);
    }
    Ok(())
}
