//! The local HTTP server: the loaded model behind OpenAI's chat completions API (with SSE
//! streaming) and MLflow's scoring protocol, on axum + tokio in a runtime thread of its own.
//!
//! It submits every generation to the [`EngineQueue`](crate::engine_queue), so it shares the
//! engine with whoever else uses the queue. Like the other background services it is started
//! with a config, reports [`ServerEvent`]s (one log entry per request) and calls a waker after
//! each, and shuts down cleanly: streams in flight end with an error event, nothing hangs.
//! Knows nothing of egui.

mod chat;
mod errors;
mod http;
mod openai;
mod scoring;
mod sse;

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
        mpsc::{self, Receiver, Sender},
    },
    thread::JoinHandle,
    time::{Duration, SystemTime},
};

use crate::{
    engine::GenerateOptions,
    engine_queue::{QueueClient, QueueCounts},
};

pub use errors::ApiError;
pub use openai::ChatRequest;
pub use scoring::{ScoringConfig, ScoringTask};

/// Largest request body accepted (413 above it).
pub const DEFAULT_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// Called after each [`ServerEvent`] so a GUI can repaint.
pub type Waker = Box<dyn Fn() + Send + Sync + 'static>;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub host: IpAddr,
    /// 0 picks a free port.
    pub port: u16,
    /// Requests must carry `Authorization: Bearer <key>` (or `x-api-key`) when set.
    pub api_key: Option<String>,
    /// Origins allowed by CORS; empty means no CORS headers at all.
    pub cors_origins: Vec<String>,
    pub body_limit: usize,
    /// Options a request leaves out (the model's defaults as the window's chat resolves them).
    pub base: GenerateOptions,
    /// How `/invocations` reads rows and which options it uses (an MLflow package's).
    pub scoring: ScoringConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: IpAddr::from([127, 0, 0, 1]),
            port: 8080,
            api_key: None,
            cors_origins: Vec::new(),
            body_limit: DEFAULT_BODY_LIMIT,
            base: GenerateOptions::default(),
            scoring: ScoringConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot start the server's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("invalid CORS origin {origin:?}: {message}")]
    CorsOrigin { origin: String, message: String },
}

/// One answered request, for the request log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RequestLogEntry {
    pub time: SystemTime,
    pub method: String,
    pub endpoint: String,
    pub status: u16,
    pub prompt_tokens: Option<usize>,
    pub completion_tokens: Option<usize>,
    /// From the request's arrival to its last byte (the end of the stream for streams).
    pub duration: Duration,
    /// Time spent waiting in the queue, for generation requests.
    pub queue_wait: Option<Duration>,
    /// Time from arrival to the first generated token, for generation requests.
    pub time_to_first_token: Option<Duration>,
    /// The error message sent, if the request failed.
    pub error: Option<String>,
}

impl RequestLogEntry {
    /// `HH:MM:SS` of its arrival, in UTC (enough to tell requests apart in a log).
    pub fn clock_utc(&self) -> String {
        let seconds = self.time.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default() % 86_400;
        format!("{:02}:{:02}:{:02}", seconds / 3600, seconds / 60 % 60, seconds % 60)
    }
}

#[derive(Debug, Clone)]
pub enum ServerEvent {
    Request(RequestLogEntry),
}

/// A snapshot for display.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ServerStats {
    pub queue: QueueCounts,
    /// Requests answered so far (all endpoints).
    pub requests: u64,
}

/// What handlers share.
struct AppState {
    config: ServerConfig,
    queue: QueueClient,
    log: Logger,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

/// Sends request log entries to the owner.
#[derive(Clone)]
struct Logger {
    events: Arc<Mutex<Sender<ServerEvent>>>,
    waker: Arc<Waker>,
    answered: Arc<AtomicU64>,
}

impl Logger {
    fn record(&self, entry: RequestLogEntry) {
        self.answered.fetch_add(1, Ordering::Relaxed);
        let _ = self.events.lock().unwrap_or_else(PoisonError::into_inner).send(ServerEvent::Request(entry));
        (self.waker)();
    }
}

/// A running server; dropping it shuts it down.
pub struct Server {
    addr: SocketAddr,
    url: String,
    warnings: Vec<String>,
    queue: QueueClient,
    answered: Arc<AtomicU64>,
    events: Receiver<ServerEvent>,
    shutdown: tokio::sync::watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds (so a busy port is an error here, not later) and starts serving.
    pub fn start(config: ServerConfig, queue: QueueClient, waker: Waker) -> Result<Server, ServerError> {
        let wanted = SocketAddr::new(config.host, config.port);
        let listener = std::net::TcpListener::bind(wanted).map_err(|source| ServerError::Bind { addr: wanted, source })?;
        listener.set_nonblocking(true).map_err(|source| ServerError::Bind { addr: wanted, source })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind { addr: wanted, source })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("modeldesk-server")
            .enable_all()
            .build()
            .map_err(ServerError::Runtime)?;
        let warnings = startup_warnings(&config, addr);
        let (events_tx, events) = mpsc::channel();
        let answered = Arc::new(AtomicU64::new(0));
        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
        let state = Arc::new(AppState {
            queue: queue.clone(),
            log: Logger { events: Arc::new(Mutex::new(events_tx)), waker: Arc::new(waker), answered: Arc::clone(&answered) },
            shutdown: shutdown_rx.clone(),
            config,
        });
        let router = http::router(Arc::clone(&state))?;
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(|source| ServerError::Bind { addr, source })?
        };
        let thread = std::thread::Builder::new()
            .name("modeldesk-http".into())
            .spawn(move || serve(runtime, listener, router, shutdown_rx))
            .map_err(ServerError::Runtime)?;
        let url = format!("http://{}", display_addr(addr));
        Ok(Server { addr, url, warnings, queue, answered, events, shutdown, thread: Some(thread) })
    }

    /// `http://127.0.0.1:8080` (the OpenAI base URL is this plus `/v1`).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Things the user must hear about (an open address without a key).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    pub fn stats(&self) -> ServerStats {
        ServerStats { queue: self.queue.counts(), requests: self.answered.load(Ordering::Relaxed) }
    }

    pub fn try_recv(&self) -> Option<ServerEvent> {
        self.events.try_recv().ok()
    }

    pub fn recv_timeout(&self, timeout: Duration) -> Option<ServerEvent> {
        self.events.recv_timeout(timeout).ok()
    }

    /// Stops accepting, ends streams in flight with an error event, and waits (a few seconds
    /// at most) for connections to close. The log entries of those requests can still be read
    /// afterwards.
    pub fn shutdown(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// How long shutdown waits for open connections before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

fn serve(
    runtime: tokio::runtime::Runtime,
    listener: tokio::net::TcpListener,
    router: axum::Router,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    runtime.block_on(async move {
        let mut stopped = shutdown.clone();
        let server = axum::serve(listener, router).with_graceful_shutdown(async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        });
        let graceful = async {
            let _ = shutdown.wait_for(|stop| *stop).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            _ = server => {}
            _ = graceful => {}
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
}

fn display_addr(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V6(ip) => format!("[{ip}]:{}", addr.port()),
        IpAddr::V4(ip) => format!("{ip}:{}", addr.port()),
    }
}

fn startup_warnings(config: &ServerConfig, addr: SocketAddr) -> Vec<String> {
    let mut warnings = Vec::new();
    if !addr.ip().is_loopback() && config.api_key.is_none() {
        warnings.push(format!(
            "listening on {} without an API key: anyone who can reach this address can use the model. Set --api-key (or MODELDESK_API_KEY), or listen on 127.0.0.1.",
            display_addr(addr)
        ));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_address_without_a_key_is_warned_about() {
        let open: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let config = ServerConfig::default();
        assert_eq!(startup_warnings(&config, open).len(), 1);
        assert!(startup_warnings(&config, local).is_empty());
        let keyed = ServerConfig { api_key: Some("k".into()), ..ServerConfig::default() };
        assert!(startup_warnings(&keyed, open).is_empty());
    }

    #[test]
    fn ipv6_addresses_are_bracketed_in_urls() {
        assert_eq!(display_addr("[::1]:80".parse().unwrap()), "[::1]:80");
        assert_eq!(display_addr("127.0.0.1:80".parse().unwrap()), "127.0.0.1:80");
    }
}
