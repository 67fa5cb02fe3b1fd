//! The chat's remote backend, for models ModelDesk cannot run itself and for models that live
//! elsewhere: "Run with MLflow" starts `mlflow models serve` for the selected folder
//! (`remote::serve`, the user's Python from the settings or found) off the GUI thread, reports
//! the wait for `/ping` and can be cancelled; an endpoint typed by the user (an MLflow scoring
//! URL or an OpenAI-compatible base URL) is used as it is. Replies then go through
//! `remote::chat` on a thread each, into the same conversations as the engine's.
//!
//! One backend at a time, attached to one folder. Its server stops when the user stops it, when
//! the folder leaves the library, when another backend starts, and when the app quits (the
//! state is dropped; `ModelServer` stops its process group on drop).

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::{self, Receiver},
    },
    time::{Duration, Instant},
};

use poll_promise::Promise;

use super::{
    AppState, Tab,
    chat::{ReplySource, Streaming, TurnRequest, folder_name},
    chat_traces::options_json,
};
use crate::{
    chat::ReplyStats,
    engine::{FinishReason, GenerateOptions, Timings, Usage},
    remote::{
        chat::{ChatReply, ChatRequest, Endpoint, chat},
        serve::{ModelServer, ServeOptions, StartProgress},
    },
    transfer::HttpOptions,
};

/// How long "Run with MLflow" waits for `/ping`: a transformers model may take minutes to load,
/// and the user sees the wait and can cancel it.
const START_TIMEOUT: Duration = Duration::from_secs(600);
/// How long one remote reply may take (a model on a CPU answers slowly, and does not stream).
const REPLY_TIMEOUT: Duration = Duration::from_secs(600);

/// What the user asked of the remote backend.
#[derive(Debug, Clone, PartialEq)]
pub enum RemoteIntent {
    /// Start `mlflow models serve` for the selected folder and chat with it.
    RunWithMlflow,
    /// Stop waiting for the server (and stop it).
    CancelStart,
    /// Stop the selected folder's backend: its server stops, the chat goes back to the engine.
    Stop,
    /// The "Chat with an endpoint" form.
    OpenEndpointForm,
    CloseEndpointForm,
    /// Use the form's endpoint for the selected folder's chat.
    UseEndpoint,
    /// The Python for "Run with MLflow" changed: remember it.
    PythonEdited,
}

/// What an endpoint URL speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EndpointKind {
    /// `/invocations` with the `llm/v1/chat` body.
    #[default]
    MlflowScoring,
    /// `/v1/chat/completions`.
    OpenAi,
}

/// The "Chat with an endpoint" form. The token stays in memory only.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndpointForm {
    pub url: String,
    pub kind: EndpointKind,
    pub token: String,
    /// The model name an OpenAI-compatible server is asked for.
    pub model: String,
    pub error: Option<String>,
}

impl EndpointForm {
    /// The endpoint the form describes, or what is wrong with it.
    pub fn endpoint(&self) -> Result<Endpoint, String> {
        let url = self.url.trim().trim_end_matches('/');
        let lower = url.to_ascii_lowercase();
        let rest = lower.strip_prefix("http://").or_else(|| lower.strip_prefix("https://")).ok_or("the URL must start with http:// or https://")?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err("the URL has no host".into());
        }
        let token = Some(self.token.trim().to_owned()).filter(|t| !t.is_empty());
        Ok(match self.kind {
            // A bare server address means its scoring route.
            EndpointKind::MlflowScoring if !rest.contains('/') => Endpoint::MlflowInvocations { url: format!("{url}/invocations"), token },
            EndpointKind::MlflowScoring => Endpoint::MlflowInvocations { url: url.to_owned(), token },
            EndpointKind::OpenAi => Endpoint::OpenAi { url: url.to_owned(), api_key: token, model: Some(self.model.trim().to_owned()).filter(|m| !m.is_empty()) },
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RemoteStatus {
    /// `mlflow models serve` is starting; the latest progress, if any yet.
    Starting { since: Instant, progress: Option<StartProgress> },
    Ready,
    Failed(String),
}

/// A remote backend attached to one folder.
pub struct RemoteBackend {
    pub folder: PathBuf,
    /// What the chat header shows: `mlflow models serve · http://127.0.0.1:PORT` or the URL.
    pub label: String,
    pub status: RemoteStatus,
    /// "Run with MLflow" (a scoring server of ours) rather than an endpoint typed by the user.
    pub runs_mlflow: bool,
    endpoint: Option<Endpoint>,
    /// The scoring server we started ("Run with MLflow"), while it runs.
    server: Option<ModelServer>,
    starting: Option<Promise<Result<ModelServer, String>>>,
    progress: Option<Receiver<StartProgress>>,
    cancel: Arc<AtomicBool>,
}

impl RemoteBackend {
    pub fn is_ready(&self) -> bool {
        self.status == RemoteStatus::Ready && self.endpoint.is_some()
    }
}

/// The backend, the endpoint form, and servers being stopped.
#[derive(Default)]
pub struct RemoteState {
    pub backend: Option<RemoteBackend>,
    pub form: Option<EndpointForm>,
    /// Starts abandoned (cancelled or replaced) that may still hand back a running server.
    abandoned: Vec<Promise<Result<ModelServer, String>>>,
    /// Servers being stopped off the GUI thread.
    stopping: Vec<Promise<()>>,
}

impl RemoteState {
    pub fn is_busy(&self) -> bool {
        self.backend.as_ref().is_some_and(|b| b.starting.is_some()) || !self.abandoned.is_empty() || !self.stopping.is_empty()
    }
}

impl AppState {
    /// The remote backend of the selected folder, if it has one.
    pub fn remote_for_selected(&self) -> Option<&RemoteBackend> {
        self.remote.backend.as_ref().filter(|b| Some(&b.folder) == self.persisted.selected.as_ref())
    }

    pub(super) fn apply_remote(&mut self, intent: RemoteIntent) {
        match intent {
            RemoteIntent::RunWithMlflow => self.run_with_mlflow(),
            RemoteIntent::CancelStart => {
                if self.remote.backend.as_ref().is_some_and(|b| b.starting.is_some()) {
                    self.stop_remote();
                    self.notify("Stopped starting the model server");
                }
            }
            RemoteIntent::Stop => {
                if self.remote_for_selected().is_some() {
                    self.stop_remote();
                }
            }
            RemoteIntent::OpenEndpointForm => {
                if self.remote.form.is_none() {
                    self.remote.form = Some(EndpointForm::default());
                }
            }
            RemoteIntent::CloseEndpointForm => self.remote.form = None,
            RemoteIntent::UseEndpoint => self.use_endpoint(),
            RemoteIntent::PythonEdited => self.save_tracking_settings(),
        }
    }

    /// Stops the backend: a reply in flight from it is abandoned, its server stops off the GUI
    /// thread (a start in progress is cancelled).
    fn stop_remote(&mut self) {
        let Some(mut backend) = self.remote.backend.take() else { return };
        if self.chat.streaming.as_ref().is_some_and(Streaming::is_remote) {
            self.stop_reply();
        }
        backend.cancel.store(true, Ordering::SeqCst);
        if let Some(start) = backend.starting.take() {
            self.remote.abandoned.push(start);
        }
        if let Some(server) = backend.server.take() {
            self.stop_server_in_background(server);
        }
    }

    fn stop_server_in_background(&mut self, server: ModelServer) {
        let stop = self.spawn("stop-mlflow-serve", move || drop(server));
        self.remote.stopping.push(stop);
    }

    fn run_with_mlflow(&mut self) {
        let Some(folder) = self.persisted.selected.clone() else { return };
        self.stop_remote();
        self.tab = Tab::Chat;
        let options = ServeOptions { python: self.registry.settings.python.clone(), start_timeout: START_TIMEOUT, ..ServeOptions::new(&folder) };
        let cancel = Arc::new(AtomicBool::new(false));
        let (report, progress) = mpsc::channel();
        let wake = self.waker();
        let flag = Arc::clone(&cancel);
        let starting = self.spawn("run-with-mlflow", move || {
            ModelServer::start_with_progress(&options, &flag, &mut |p| {
                let _ = report.send(p);
                wake();
            })
            .map_err(|e| e.to_string())
        });
        self.remote.backend = Some(RemoteBackend {
            label: format!("mlflow models serve · {}", folder_name(&folder)),
            folder,
            status: RemoteStatus::Starting { since: Instant::now(), progress: None },
            runs_mlflow: true,
            endpoint: None,
            server: None,
            starting: Some(starting),
            progress: Some(progress),
            cancel,
        });
    }

    fn use_endpoint(&mut self) {
        let (Some(folder), Some(form)) = (self.persisted.selected.clone(), self.remote.form.as_mut()) else { return };
        let endpoint = match form.endpoint() {
            Ok(endpoint) => endpoint,
            Err(message) => {
                form.error = Some(message);
                return;
            }
        };
        let label = match &endpoint {
            Endpoint::MlflowInvocations { url, .. } | Endpoint::OpenAi { url, .. } => url.clone(),
        };
        self.remote.form = None;
        self.stop_remote();
        self.tab = Tab::Chat;
        self.remote.backend = Some(RemoteBackend {
            folder,
            label,
            status: RemoteStatus::Ready,
            runs_mlflow: false,
            endpoint: Some(endpoint),
            server: None,
            starting: None,
            progress: None,
            cancel: Arc::new(AtomicBool::new(false)),
        });
    }

    /// Sends the current conversation to the selected folder's remote backend.
    pub(super) fn start_remote_reply(&mut self) {
        let Some(endpoint) = self.remote_for_selected().and_then(|b| b.endpoint.clone()) else { return };
        let Some(conversation) = self.current_conversation() else { return };
        let settings = &conversation.settings;
        let messages: Vec<(String, String)> = conversation.prompt_messages().into_iter().map(|m| (m.role, m.content)).collect();
        let request = ChatRequest {
            messages: messages.clone(),
            max_tokens: settings.max_tokens.and_then(|v| u32::try_from(v).ok()),
            temperature: settings.temperature,
            top_p: settings.top_p,
            stop: settings.stop.iter().filter(|s| !s.is_empty()).cloned().collect(),
        };
        // What the request carried, named as the engine's options are in traces.
        let sent = GenerateOptions {
            max_tokens: settings.max_tokens,
            temperature: request.temperature,
            top_p: request.top_p,
            stop: request.stop.clone(),
            ..GenerateOptions::default()
        };
        let turn = TurnRequest { model: folder_name(&conversation.model), messages, options: options_json(&sent), started: std::time::SystemTime::now() };
        let id = conversation.id.clone();
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&cancel);
        let reply = self.spawn("remote-reply", move || {
            let http = crate::transfer::client(&HttpOptions { connect_timeout: Duration::from_secs(10), read_timeout: REPLY_TIMEOUT, insecure_tls: false })
                .map_err(|e| e.to_string())?;
            chat(&http, &endpoint, &request, &flag).map_err(|e| e.to_string())
        });
        self.chat.streaming = Some(Streaming::new(ReplySource::Remote { reply, cancel }, turn, id));
    }

    /// The backend's start, the selected reply's answer, and servers being stopped.
    pub(super) fn poll_remote(&mut self) {
        self.poll_remote_start();
        self.poll_remote_reply();
        // The folder left the library: its server has no reason to run.
        if self.remote.backend.as_ref().is_some_and(|b| !self.persisted.library.iter().any(|e| e.path == b.folder)) {
            self.stop_remote();
        }
        let abandoned: Vec<_> = self.remote.abandoned.extract_if(.., |p| p.ready().is_some()).collect();
        for start in abandoned {
            if let Ok(Ok(server)) = start.try_take() {
                self.stop_server_in_background(server);
            }
        }
        self.remote.stopping.retain(|p| p.ready().is_none());
    }

    fn poll_remote_start(&mut self) {
        let Some(backend) = self.remote.backend.as_mut() else { return };
        if let (Some(progress), RemoteStatus::Starting { progress: latest, .. }) = (&backend.progress, &mut backend.status) {
            if let Some(last) = progress.try_iter().last() {
                *latest = Some(last);
            }
        }
        let Some(result) = backend.starting.take_if(|p| p.ready().is_some()).map(Promise::block_and_take) else { return };
        backend.progress = None;
        match result {
            Ok(server) => {
                backend.label = format!("mlflow models serve · {}", server.url);
                backend.endpoint = Some(Endpoint::MlflowInvocations { url: server.invocations_url(), token: None });
                backend.status = RemoteStatus::Ready;
                let text = format!("{} is running with MLflow at {}", folder_name(&backend.folder), server.url);
                backend.server = Some(server);
                self.notify(text);
            }
            Err(message) => backend.status = RemoteStatus::Failed(message),
        }
    }

    fn poll_remote_reply(&mut self) {
        let ready = matches!(self.chat.streaming.as_ref().map(|s| &s.source), Some(ReplySource::Remote { reply, .. }) if reply.ready().is_some());
        if !ready {
            return;
        }
        let Some(streaming) = self.chat.streaming.take() else { return };
        let ReplySource::Remote { reply, .. } = &streaming.source else { return };
        let Some(result) = reply.ready().cloned() else { return };
        match result {
            Ok(reply) => {
                let stats = reply_stats(&reply, streaming.started.elapsed());
                let reason = reply.finish_reason.clone().unwrap_or_else(|| "stop".into());
                self.finish_reply(streaming, reply.text, None, stats, &reason);
            }
            Err(message) => {
                self.persist_conversation(&streaming.conversation);
                self.notify_error("The remote model did not answer", Some(message));
            }
        }
    }
}

/// Usage and timings of a remote reply, when the server reported its usage. It arrives whole,
/// so its first token came when all of it did.
fn reply_stats(reply: &ChatReply, took: Duration) -> Option<ReplyStats> {
    let usage = reply.usage?;
    let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    let seconds = took.as_secs_f64().max(1e-3);
    let timings = Timings {
        time_to_first_token_ms: seconds * 1000.0,
        decode_tokens_per_second: usage.completion_tokens as f64 / seconds,
        ..Timings::default()
    };
    let finish_reason = match reply.finish_reason.as_deref() {
        Some("length") => FinishReason::Length,
        _ => FinishReason::Stop,
    };
    Some(ReplyStats {
        usage: Usage { prompt_tokens: count(usage.prompt_tokens), completion_tokens: count(usage.completion_tokens), total_tokens: count(usage.total_tokens), cached_tokens: 0 },
        timings,
        finish_reason,
        dropped_messages: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls_are_checked_and_completed() {
        let form = |url: &str, kind| EndpointForm { url: url.into(), kind, ..Default::default() };
        assert_eq!(
            form("http://127.0.0.1:5001/", EndpointKind::MlflowScoring).endpoint(),
            Ok(Endpoint::MlflowInvocations { url: "http://127.0.0.1:5001/invocations".into(), token: None })
        );
        assert_eq!(
            form("https://host/serving-endpoints/phi/invocations", EndpointKind::MlflowScoring).endpoint(),
            Ok(Endpoint::MlflowInvocations { url: "https://host/serving-endpoints/phi/invocations".into(), token: None })
        );
        let openai = EndpointForm { token: " key ".into(), model: "phi3".into(), ..form("http://localhost:8080/v1", EndpointKind::OpenAi) };
        assert_eq!(openai.endpoint(), Ok(Endpoint::OpenAi { url: "http://localhost:8080/v1".into(), api_key: Some("key".into()), model: Some("phi3".into()) }));
        for bad in ["", "localhost:8080", "ftp://host", "http://", "http:///x"] {
            assert!(form(bad, EndpointKind::OpenAi).endpoint().is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn a_remote_reply_shows_usage_only_when_the_server_reports_it() {
        let reply = ChatReply { text: "hi".into(), finish_reason: Some("length".into()), usage: None };
        assert_eq!(reply_stats(&reply, Duration::from_secs(2)), None);
        let usage = crate::remote::chat::Usage { prompt_tokens: 7, completion_tokens: 4, total_tokens: 11 };
        let stats = reply_stats(&ChatReply { usage: Some(usage), ..reply }, Duration::from_secs(2)).unwrap();
        assert_eq!((stats.usage.prompt_tokens, stats.usage.completion_tokens, stats.usage.total_tokens), (7, 4, 11));
        assert_eq!(stats.finish_reason, FinishReason::Length);
        assert_eq!(stats.timings.decode_tokens_per_second, 2.0);
        assert_eq!(stats.timings.time_to_first_token_ms, 2000.0);
    }
}
