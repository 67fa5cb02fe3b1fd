//! `modeldesk serve`: the model behind the local OpenAI-compatible and MLflow scoring server,
//! until Ctrl-C.

use std::{
    net::IpAddr,
    path::PathBuf,
    sync::mpsc,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use clap::Args;

use super::load_runtime;
use crate::{
    engine::DecoderSettings,
    engine_queue::{EngineQueue, QueueConfig, QueueEvent},
    session,
    server::{RequestLogEntry, ScoringConfig, Server, ServerConfig, ServerEvent},
};

/// The environment variable read when `--api-key` is not given.
pub const API_KEY_ENV: &str = "MODELDESK_API_KEY";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The model folder (Phi ONNX, or an MLflow package wrapping one).
    #[arg(long)]
    pub model: PathBuf,
    /// Address to listen on; anything but loopback is reachable from other machines.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port to listen on; 0 picks a free one (printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Require this key as `Authorization: Bearer KEY` (default: $MODELDESK_API_KEY).
    #[arg(long)]
    pub api_key: Option<String>,
    /// Allow browser pages from this origin (repeatable); no CORS without it.
    #[arg(long = "cors", value_name = "ORIGIN")]
    pub cors: Vec<String>,
    /// Most requests waiting behind the running one; more get 429.
    #[arg(long, default_value_t = QueueConfig::default().max_queue)]
    pub max_queue: usize,
    /// Intra-op threads (default: all physical cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

pub fn run(args: ServeArgs) -> Result<()> {
    let runtime = load_runtime()?;
    let queue = EngineQueue::spawn(runtime, QueueConfig { max_queue: args.max_queue }, Box::new(|| {}));
    queue.load(args.model.clone(), DecoderSettings { intra_threads: args.threads, ..DecoderSettings::default() });
    wait_loaded(&queue).with_context(|| format!("loading {}", args.model.display()))?;
    let Some(model) = queue.model() else { bail!("the model did not stay loaded") };
    for warning in &model.facts.warnings {
        eprintln!("warning: {warning}");
    }
    let api_key = args.api_key.clone().or_else(|| std::env::var(API_KEY_ENV).ok()).filter(|k| !k.is_empty());
    let config = ServerConfig {
        host: args.host,
        port: args.port,
        api_key,
        cors_origins: args.cors.clone(),
        // Options a request leaves out are the ones the window's chat starts from.
        base: session::load_model_defaults(&args.model)?,
        scoring: ScoringConfig::from_package(&args.model).unwrap_or_default(),
        ..ServerConfig::default()
    };
    let server = Server::start(config, queue.client(), Box::new(|| {}))?;
    for warning in server.warnings() {
        eprintln!("\n!!! WARNING: {warning}\n");
    }
    let url = server.url().to_owned();
    println!("model {} ({}), context {} tokens", model.facts.name, model.facts.folder.display(), model.facts.context_length);
    println!("listening on {url}");
    println!("  OpenAI base URL: {url}/v1   MLflow scoring: {url}/invocations");
    println!("ready (Ctrl-C stops)");
    drop(model);

    let stop = stop_signal()?;
    loop {
        if stop.try_recv().is_ok() {
            break;
        }
        if let Some(ServerEvent::Request(entry)) = server.recv_timeout(Duration::from_millis(100)) {
            println!("{}", log_line(&entry));
        }
    }
    println!("stopping");
    let mut server = server;
    server.shutdown();
    while let Some(ServerEvent::Request(entry)) = server.try_recv() {
        println!("{}", log_line(&entry));
    }
    queue.shutdown();
    println!("stopped");
    Ok(())
}

fn wait_loaded(queue: &EngineQueue) -> Result<()> {
    loop {
        match queue.recv_timeout(Duration::from_secs(3600)) {
            Some(QueueEvent::Loaded(_)) => return Ok(()),
            Some(QueueEvent::LoadFailed { message, .. }) => bail!("{message}"),
            Some(_) => {}
            None => bail!("the engine did not answer"),
        }
    }
}

/// A channel that receives once on Ctrl-C (or SIGTERM on Unix).
fn stop_signal() -> Result<mpsc::Receiver<()>> {
    let (tx, rx) = mpsc::channel();
    let signals = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the signal handler")?;
    std::thread::Builder::new().name("modeldesk-signals".into()).spawn(move || {
        signals.block_on(async {
            #[cfg(unix)]
            {
                use tokio::signal::unix::{SignalKind, signal};
                match signal(SignalKind::terminate()) {
                    Ok(mut terminate) => {
                        tokio::select! {
                            _ = tokio::signal::ctrl_c() => {}
                            _ = terminate.recv() => {}
                        }
                    }
                    Err(_) => {
                        let _ = tokio::signal::ctrl_c().await;
                    }
                }
            }
            #[cfg(not(unix))]
            {
                let _ = tokio::signal::ctrl_c().await;
            }
        });
        let _ = tx.send(());
    })?;
    Ok(rx)
}

/// `12:01:33 POST /v1/chat/completions 200 12+8 tokens 41.0 ms queued 3.2 ms first token 9.1 ms`
fn log_line(entry: &RequestLogEntry) -> String {
    let clock = entry.clock_utc();
    let tokens = match (entry.prompt_tokens, entry.completion_tokens) {
        (Some(p), Some(c)) => format!(" {p}+{c} tokens"),
        (Some(p), None) => format!(" {p} prompt tokens"),
        _ => String::new(),
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let queued = entry.queue_wait.map(|wait| format!(" queued {:.1} ms", ms(wait))).unwrap_or_default();
    let first = entry.time_to_first_token.map(|t| format!(" first token {:.1} ms", ms(t))).unwrap_or_default();
    let error = entry.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default();
    format!("{clock} {} {} {}{tokens} {:.1} ms{queued}{first}{error}", entry.method, entry.endpoint, entry.status, ms(entry.duration))
}
