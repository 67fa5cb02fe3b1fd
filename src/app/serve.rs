//! The local server as the window runs it: the "Serve" switch starts [`Server`] over the same
//! engine queue the window's chat uses, so a request from another program and a message typed
//! here wait in one line for the one loaded model.
//!
//! Starting reads the package's scoring settings (a file) and binds the port on a thread of its
//! own; stopping waits for open streams to end, also off the GUI thread.

use std::{collections::VecDeque, net::IpAddr};

use poll_promise::Promise;

use super::AppState;
use crate::server::{RequestLogEntry, ScoringConfig, Server, ServerConfig, ServerEvent};

/// Requests kept in the window's log (the newest).
const LOG_LENGTH: usize = 200;

/// The server's settings, remembered between sessions (the API key is not: it stays in memory).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ServeSettings {
    /// 0 picks a free port.
    pub port: u16,
    /// Listen on every interface instead of 127.0.0.1 only.
    pub reachable_from_network: bool,
    /// Requests must send `Authorization: Bearer <key>` when this is not empty.
    #[serde(skip)]
    pub api_key: String,
}

impl Default for ServeSettings {
    fn default() -> Self {
        Self { port: 8080, reachable_from_network: false, api_key: String::new() }
    }
}

impl ServeSettings {
    fn host(&self) -> IpAddr {
        if self.reachable_from_network { IpAddr::from([0, 0, 0, 0]) } else { IpAddr::from([127, 0, 0, 1]) }
    }
}

/// The server, while it runs, and its request log.
#[derive(Default)]
pub struct ServeState {
    pub server: Option<Server>,
    starting: Option<Promise<Result<Server, String>>>,
    stopping: Option<Promise<()>>,
    /// Answered requests, oldest first.
    pub log: VecDeque<RequestLogEntry>,
}

impl ServeState {
    pub fn is_starting(&self) -> bool {
        self.starting.is_some()
    }

    pub fn is_busy(&self) -> bool {
        self.starting.is_some() || self.stopping.is_some()
    }

    /// The base URL clients use, while serving.
    pub fn url(&self) -> Option<&str> {
        self.server.as_ref().map(Server::url)
    }
}

impl AppState {
    /// Serves the loaded model with the persisted settings.
    pub fn start_serving(&mut self) {
        if self.serve.server.is_some() || self.serve.is_busy() {
            return;
        }
        let (Some(session), Some(queue)) = (self.engine.session.as_ref().filter(|s| s.is_ready()), self.engine.queue.as_ref()) else {
            self.notify_error("Load a model before serving it", None);
            return;
        };
        let folder = session.folder.clone();
        // Options a request leaves out are the ones the window's chat starts from.
        let base = session.defaults.clone().unwrap_or_default();
        let client = queue.client();
        let settings = self.persisted.serve.clone();
        let waker = Box::new(self.waker());
        self.serve.starting = Some(self.spawn("start-server", move || {
            let config = ServerConfig {
                host: settings.host(),
                port: settings.port,
                api_key: Some(settings.api_key.trim().to_owned()).filter(|k| !k.is_empty()),
                base,
                scoring: ScoringConfig::from_package(&folder).unwrap_or_default(),
                ..ServerConfig::default()
            };
            Server::start(config, client, waker).map_err(|e| e.to_string())
        }));
    }

    /// Stops the server (streams in flight end with an error event); the log stays.
    pub fn stop_serving(&mut self) {
        self.serve.starting = None;
        if let Some(server) = self.serve.server.take() {
            self.serve.stopping = Some(self.spawn("stop-server", move || drop(server)));
            self.notify("The server stopped");
        }
    }

    pub(super) fn poll_serve(&mut self) {
        if let Some(started) = self.serve.starting.take_if(|p| p.ready().is_some()).and_then(|p| p.try_take().ok()) {
            match started {
                Ok(server) => {
                    for warning in server.warnings().to_vec() {
                        self.notify_error("The server is open to other computers", Some(warning));
                    }
                    self.notify(format!("Serving at {}", server.url()));
                    self.serve.server = Some(server);
                }
                Err(message) => self.notify_error("The server could not start", Some(message)),
            }
        }
        if self.serve.stopping.as_ref().is_some_and(|p| p.ready().is_some()) {
            self.serve.stopping = None;
        }
        let entries: Vec<RequestLogEntry> = match &self.serve.server {
            Some(server) => std::iter::from_fn(|| server.try_recv()).map(|ServerEvent::Request(entry)| entry).collect(),
            None => Vec::new(),
        };
        for entry in entries {
            if self.serve.log.len() == LOG_LENGTH {
                self.serve.log.pop_front();
            }
            self.serve.log.push_back(entry);
        }
    }
}
