//! The engine as the chat sees it (the engine queue and the model session) and the chat's
//! replies: sending, streaming, stopping, regenerating and editing (the conversations
//! themselves are `conversations`').
//!
//! The window's chat submits its replies to the same [`EngineQueue`] the local server uses, so
//! both share one loaded model, one KV cache and one queue. A folder with a remote backend
//! attached (`remote_chat`: "Run with MLflow" or an endpoint URL) sends its replies there
//! instead; [`ReplySource`] is where a reply in flight comes from.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::Receiver,
    },
    time::{Instant, SystemTime},
};

use poll_promise::Promise;

use super::{AppState, RuntimeStatus};
use crate::{
    chat::{Message, ReplyStats, Role},
    engine::{DecoderSettings, GenerateOptions, Prompt},
    engine_queue::{EngineQueue, QueueConfig, QueueCounts, QueueEvent, Request, RequestEvent, Ticket, channel_sink},
    remote::chat::ChatReply,
    session::{self, ModelSession, SessionError, SessionStatus},
    tracking::traces::{ChatTurn, TokenCounts},
};

/// The engine queue (the worker behind it) and the model it holds.
#[derive(Default)]
pub struct EngineState {
    /// Started with the first load; shared with the local server.
    pub queue: Option<EngineQueue>,
    /// Requests generating and waiting, the window's and the server's together.
    pub counts: QueueCounts,
    /// What is loaded (or loading), from where, with which defaults; `None` when unloaded.
    pub session: Option<ModelSession>,
    /// The package's `model_config`, read off the GUI thread when a model is loaded or saved.
    defaults_load: Option<(PathBuf, Promise<Result<GenerateOptions, SessionError>>)>,
    /// Set once the worker reports it started loading the session's folder: events about an
    /// earlier load that was superseded are ignored.
    load_started: bool,
}

impl EngineState {
    pub fn is_loading(&self) -> bool {
        self.session.as_ref().is_some_and(ModelSession::is_loading)
    }
}

/// Where the reply in flight comes from.
pub(super) enum ReplySource {
    /// The engine queue streams it; the ticket stops it.
    Engine { ticket: Ticket, events: Receiver<RequestEvent> },
    /// A remote model answers one request on a thread of its own (MLflow's scoring server does
    /// not stream); the flag stops its retries.
    Remote { reply: Promise<Result<ChatReply, String>>, cancel: Arc<AtomicBool> },
    /// Nothing behind it: whoever made it appends the text (`Streaming::fed`).
    Fed,
}

/// What a reply was asked with, kept for its trace.
pub(super) struct TurnRequest {
    pub model: String,
    pub messages: Vec<(String, String)>,
    pub options: serde_json::Map<String, serde_json::Value>,
    pub started: SystemTime,
}

/// The reply being generated.
pub struct Streaming {
    pub(super) source: ReplySource,
    pub(super) request: TurnRequest,
    pub conversation: String,
    pub text: String,
    pub tokens: usize,
    pub started: Instant,
    pub prompt_tokens: Option<usize>,
    pub dropped_messages: usize,
    pub stopping: bool,
}

impl Streaming {
    /// A new reply from `source` for conversation `conversation`.
    pub(super) fn new(source: ReplySource, request: TurnRequest, conversation: String) -> Self {
        Self { source, request, conversation, text: String::new(), tokens: 0, started: Instant::now(), prompt_tokens: None, dropped_messages: 0, stopping: false }
    }

    /// A reply whose text the caller appends to `text` itself, with no engine behind it: the
    /// frame-time benchmark streams synthetic tokens through the real window this way.
    pub fn fed(conversation: String) -> Self {
        let request = TurnRequest { model: String::new(), messages: Vec::new(), options: serde_json::Map::new(), started: SystemTime::now() };
        Self::new(ReplySource::Fed, request, conversation)
    }

    /// Whether a remote model is answering (no tokens stream in).
    pub fn is_remote(&self) -> bool {
        matches!(self.source, ReplySource::Remote { .. })
    }
}

impl AppState {
    // -- the model session -----------------------------------------------------------------

    fn ensure_queue(&mut self) -> bool {
        if self.engine.queue.is_some() {
            return true;
        }
        let RuntimeStatus::Loaded(runtime) = self.runtime else {
            self.notify_error("ONNX Runtime is not loaded", None);
            return false;
        };
        self.engine.queue = Some(EngineQueue::spawn(runtime, QueueConfig::default(), Box::new(self.waker())));
        true
    }

    /// Loads the selected folder's model (on the worker) and its defaults (on a thread).
    pub fn load_model(&mut self) {
        let Some(path) = self.persisted.selected.clone() else { return };
        if !self.ensure_queue() {
            return;
        }
        // The server was started for the model being replaced (its defaults and scoring rules).
        self.stop_serving();
        if let Some(queue) = &self.engine.queue {
            queue.load(path.clone(), DecoderSettings::default());
        }
        self.engine.session = Some(ModelSession::loading(path.clone()));
        self.engine.load_started = false;
        self.load_defaults(path);
    }

    fn load_defaults(&mut self, path: PathBuf) {
        let folder = path.clone();
        let promise = self.spawn("model-defaults", move || session::load_model_defaults(&folder));
        self.engine.defaults_load = Some((path, promise));
    }

    /// A model folder's files were rewritten (a save): the loaded session re-reads its defaults.
    pub(super) fn model_files_changed(&mut self, path: &Path) {
        if self.engine.session.as_ref().is_some_and(|s| s.folder == path) {
            self.load_defaults(path.to_path_buf());
        }
    }

    pub fn unload_model(&mut self) {
        if self.chat.streaming.as_ref().is_some_and(|s| !s.is_remote()) {
            self.stop_reply();
        }
        self.stop_serving();
        if let Some(queue) = &self.engine.queue {
            queue.unload();
        }
        self.engine.session = None;
        self.engine.defaults_load = None;
    }

    /// Whether the selected folder's chat can send: its remote backend is ready, or (without
    /// one) its model is loaded.
    pub fn chat_ready(&self) -> bool {
        match self.remote_for_selected() {
            Some(backend) => backend.is_ready(),
            None => self.model_ready(),
        }
    }

    /// Whether the loaded model is the selected one and ready to chat.
    pub fn model_ready(&self) -> bool {
        self.engine.session.as_ref().is_some_and(|s| s.is_ready() && Some(&s.folder) == self.persisted.selected.as_ref())
    }

    /// The session, when it belongs to the selected folder.
    pub fn selected_session(&self) -> Option<&ModelSession> {
        self.engine.session.as_ref().filter(|s| Some(&s.folder) == self.persisted.selected.as_ref())
    }

    // -- replies ---------------------------------------------------------------------------

    /// Sends the draft as a user message.
    pub fn send(&mut self) {
        let text = self.chat.draft.trim().to_owned();
        if text.is_empty() || self.chat.streaming.is_some() || !self.chat_ready() || self.reading_current() {
            return;
        }
        if self.current_conversation().is_none() {
            self.new_conversation();
        }
        // A remote model counts its own context; ours is counted with the engine's tokenizer.
        if self.remote_for_selected().is_none() && !self.draft_fits() {
            return;
        }
        if let Some(conversation) = self.current_conversation_mut() {
            conversation.push_user(&text);
        }
        self.chat.draft.clear();
        self.start_reply();
    }

    /// Generates the assistant reply to the conversation as it stands (on the selected folder's
    /// remote backend when it has one, else on the engine).
    pub fn start_reply(&mut self) {
        if self.remote_for_selected().is_some() {
            return self.start_remote_reply();
        }
        let Some(conversation) = self.current_conversation() else { return };
        let id = conversation.id.clone();
        let messages = conversation.prompt_messages();
        let settings = conversation.settings.clone();
        let overrides = GenerateOptions {
            max_tokens: settings.max_tokens,
            max_length: settings.max_length,
            temperature: settings.temperature,
            top_p: settings.top_p,
            top_k: settings.top_k,
            repetition_penalty: settings.repetition_penalty,
            seed: settings.seed,
            do_sample: settings.do_sample,
            stop: settings.stop.iter().filter(|s| !s.is_empty()).cloned().collect(),
            prompt_lookup: Some(settings.prompt_lookup),
            ..GenerateOptions::default()
        };
        let Some(session) = self.selected_session() else { return };
        let options = session.request_options(&overrides);
        let model = session.facts().map(|f| f.name.clone()).unwrap_or_else(|| folder_name(&session.folder));
        let request = TurnRequest {
            model,
            messages: messages.iter().map(|m| (m.role.clone(), m.content.clone())).collect(),
            options: super::chat_traces::options_json(&options),
            started: SystemTime::now(),
        };
        let policy = self.chat.policy;
        let Some(queue) = self.engine.queue.as_ref() else { return };
        let (sink, events) = channel_sink(Box::new(self.waker()));
        let ticket = match queue.submit(Request { prompt: Prompt::Chat(messages), options, policy }, sink) {
            Ok(ticket) => ticket,
            Err(error) => {
                self.notify_error("The reply could not start", Some(error.to_string()));
                return;
            }
        };
        self.chat.streaming = Some(Streaming::new(ReplySource::Engine { ticket, events }, request, id));
    }

    /// Stops the reply being generated (Esc); the text so far is kept. A remote model's reply is
    /// abandoned at once (its request cannot be recalled; what it answers is dropped).
    pub fn stop_reply(&mut self) {
        let Some(streaming) = &mut self.chat.streaming else { return };
        match &streaming.source {
            ReplySource::Engine { ticket, .. } => {
                ticket.cancel();
                streaming.stopping = true;
            }
            ReplySource::Fed => streaming.stopping = true,
            ReplySource::Remote { cancel, .. } => {
                cancel.store(true, Ordering::SeqCst);
                if let Some(streaming) = self.chat.streaming.take() {
                    self.persist_conversation(&streaming.conversation);
                }
            }
        }
    }

    /// A finished reply joins its conversation (and is recorded as a trace when traces are on).
    /// `token_ids` are the ids the engine generated (None for a remote model's reply), kept so
    /// the next turn's prompt carries them instead of the text encoded again.
    pub(super) fn finish_reply(
        &mut self,
        streaming: Streaming,
        content: String,
        token_ids: Option<Vec<i64>>,
        stats: Option<ReplyStats>,
        finish_reason: &str,
    ) {
        let tokens = stats.map(|s| TokenCounts { prompt: s.usage.prompt_tokens, completion: s.usage.completion_tokens });
        if let Some(conversation) = self.chat.conversations.iter_mut().find(|c| c.id == streaming.conversation) {
            conversation.messages.push(Message { role: Role::Assistant, content: content.clone(), stats, token_ids });
        }
        self.persist_conversation(&streaming.conversation);
        let request = streaming.request;
        self.record_chat_turn(ChatTurn {
            model: request.model,
            messages: request.messages,
            reply: content,
            finish_reason: finish_reason.to_owned(),
            options: request.options,
            tokens,
            started: request.started,
            ended: SystemTime::now(),
        });
    }

    /// Drops the last reply and generates it again.
    pub fn regenerate(&mut self) {
        if self.chat.streaming.is_some() || !self.chat_ready() {
            return;
        }
        if let Some(conversation) = self.current_conversation_mut() {
            if conversation.messages.last().is_some_and(|m| m.role == Role::Assistant) {
                let keep = conversation.messages.len() - 1;
                conversation.truncate(keep);
            }
        }
        let sampling = self.current_conversation().and_then(|c| c.settings.do_sample);
        let model_samples = self.selected_session().and_then(|s| s.effective_search()).is_some_and(|s| s.do_sample);
        // A remote model's sampling is its own business.
        if self.remote_for_selected().is_none() && !sampling.unwrap_or(model_samples) {
            self.notify("Greedy decoding always picks the most likely token, so the reply comes out the same. Turn on \"Sample\" in the generation settings for a different one.");
        }
        self.start_reply();
    }

    /// Replaces user message `index` and resends the conversation from there.
    pub fn resend_edited(&mut self, index: usize, text: String) {
        if self.chat.streaming.is_some() || !self.chat_ready() {
            return;
        }
        if let Some(conversation) = self.current_conversation_mut() {
            if conversation.messages.get(index).is_some_and(|m| m.role == Role::User) {
                conversation.truncate(index);
                conversation.push_user(&text);
            }
        }
        self.chat.editing = None;
        self.start_reply();
    }

    // -- events ----------------------------------------------------------------------------

    /// The worker's events and the session's defaults, as they arrive.
    pub(super) fn poll_engine(&mut self) {
        if let Some((path, result)) = self.engine.defaults_load.take_if(|(_, p)| p.ready().is_some()).and_then(|(path, p)| p.try_take().ok().map(|r| (path, r))) {
            match (self.engine.session.as_mut().filter(|s| s.folder == path), result) {
                (Some(session), Ok(defaults)) => session.defaults = Some(defaults),
                (Some(session), Err(error)) => {
                    let message = error.to_string();
                    session.status = SessionStatus::Failed(message.clone());
                    self.notify_error(format!("{} could not be loaded", path.display()), Some(message));
                }
                (None, _) => {}
            }
        }
        self.poll_prompt_count();
        let events: Vec<QueueEvent> = match &self.engine.queue {
            Some(queue) => std::iter::from_fn(|| queue.try_recv()).collect(),
            None => Vec::new(),
        };
        let replies: Vec<RequestEvent> = match self.chat.streaming.as_ref().map(|s| &s.source) {
            Some(ReplySource::Engine { events, .. }) => events.try_iter().collect(),
            _ => Vec::new(),
        };
        if !events.is_empty() || !replies.is_empty() {
            self.memory_bytes = crate::memory::current_rss();
        }
        for event in events {
            self.handle_queue_event(event);
        }
        for event in replies {
            self.handle_reply_event(event);
        }
    }

    fn handle_queue_event(&mut self, event: QueueEvent) {
        match event {
            QueueEvent::Loading { path } => {
                self.engine.load_started = self.engine.session.as_ref().is_some_and(|s| s.folder == path);
            }
            QueueEvent::Loaded(facts) => {
                let Some(session) = self.engine.session.as_mut().filter(|_| self.engine.load_started) else { return };
                let name = facts.name.clone();
                let warnings = facts.warnings.clone();
                session.status = SessionStatus::Ready(facts);
                for warning in warnings {
                    self.notify(format!("{name}: {warning}"));
                }
                self.notify(format!("{name} is loaded"));
            }
            QueueEvent::LoadFailed { path, message } => {
                let Some(session) = self.engine.session.as_mut().filter(|_| self.engine.load_started) else { return };
                session.status = SessionStatus::Failed(message.clone());
                self.notify_error(format!("{} could not be loaded", path.display()), Some(message));
            }
            QueueEvent::Unloaded => {}
            QueueEvent::Counts(counts) => self.engine.counts = counts,
        }
    }

    /// One event of the window's own reply.
    fn handle_reply_event(&mut self, event: RequestEvent) {
        match event {
            RequestEvent::Started { prompt_tokens, dropped_messages, .. } => {
                if let Some(s) = self.chat.streaming.as_mut() {
                    s.prompt_tokens = Some(prompt_tokens);
                    s.dropped_messages = dropped_messages;
                }
            }
            RequestEvent::Chunk { text, .. } => {
                if let Some(s) = self.chat.streaming.as_mut() {
                    s.text.push_str(&text);
                    s.tokens += 1;
                }
            }
            RequestEvent::Finished(completion) => {
                let Some(streaming) = self.chat.streaming.take() else { return };
                let dropped_messages = streaming.dropped_messages;
                let stats = ReplyStats { usage: completion.usage, timings: completion.timings, finish_reason: completion.finish_reason, dropped_messages };
                let reason = completion.finish_reason.as_str();
                self.finish_reply(streaming, completion.text, Some(completion.completion_ids), Some(stats), reason);
                if dropped_messages > 0 {
                    self.notify(format!("{dropped_messages} earlier messages were left out to fit the context window"));
                }
            }
            // Stopped while it was still waiting behind the server's requests: no reply at all.
            RequestEvent::Cancelled => {
                if let Some(streaming) = self.chat.streaming.take() {
                    self.persist_conversation(&streaming.conversation);
                }
            }
            RequestEvent::Failed(message) => {
                if let Some(streaming) = self.chat.streaming.take() {
                    self.persist_conversation(&streaming.conversation);
                }
                self.notify_error("The reply failed", Some(message));
            }
        }
    }
}

/// A folder's last component, as a model name.
pub(super) fn folder_name(folder: &Path) -> String {
    folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| folder.display().to_string())
}

