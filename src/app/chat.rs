//! The engine as the chat sees it (the worker and the model session) and the chat itself:
//! conversations, sending, streaming replies, stopping, regenerating and editing.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use poll_promise::Promise;

use super::{AppState, RuntimeStatus};
use crate::{
    chat::{Conversation, Listing, Message, ReplyStats, Role, Summary, WriteCommand, WriteEvent},
    engine::{
        ContextPolicy, DecoderSettings, GenerateOptions, Prompt,
        worker::{Event, RequestHandle, Stopper, Worker},
    },
    service::Service,
    session::{self, ModelSession, SessionError, SessionStatus},
};

/// How long a conversation must stay unchanged before it is written (typing in the system
/// prompt or a setting does not write at every keystroke).
const SAVE_DELAY: Duration = Duration::from_millis(500);

/// The engine worker and the model it holds.
#[derive(Default)]
pub struct EngineState {
    pub worker: Option<Worker>,
    pub stopper: Option<Stopper>,
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

/// The reply being generated.
pub struct Streaming {
    pub request: RequestHandle,
    pub conversation: String,
    pub text: String,
    pub tokens: usize,
    pub started: Instant,
    pub prompt_tokens: Option<usize>,
    pub dropped_messages: usize,
    pub stopping: bool,
}

/// Chat state: every stored conversation's summary, the conversations read so far, and the
/// background reads and writes.
#[derive(Default)]
pub struct ChatState {
    /// Every conversation (stored or new), newest first: what the list shows.
    pub summaries: Vec<Summary>,
    /// Conversations whose messages have been read (or that were started in this session).
    pub conversations: Vec<Conversation>,
    pub current: Option<String>,
    pub draft: String,
    /// Index of a user message being edited, and its new text.
    pub editing: Option<(usize, String)>,
    pub renaming: Option<(String, String)>,
    pub streaming: Option<Streaming>,
    pub policy: ContextPolicy,
    /// Markdown render cache, shared across messages.
    pub markdown: egui_commonmark::CommonMarkCache,
    /// Measured height of each message, for drawing only what is visible.
    pub heights: HashMap<(String, usize), f32>,
    /// The stored conversations' summaries, read at start.
    listing: Option<Promise<Listing>>,
    /// Conversations being read.
    reading: HashMap<String, Promise<Result<Conversation, String>>>,
    /// Conversations changed and not yet written, with the time of the last change.
    unsaved: HashMap<String, Instant>,
    writer: Option<Service<WriteCommand, WriteEvent>>,
    /// Saves and deletes handed to the writer and not yet reported done.
    writes_in_flight: usize,
}

impl ChatState {
    /// Whether stored conversations are still being listed, read or written.
    pub fn is_busy(&self) -> bool {
        self.listing.is_some() || !self.reading.is_empty() || !self.unsaved.is_empty() || self.writes_in_flight > 0
    }
}

impl AppState {
    // -- the model session -----------------------------------------------------------------

    fn ensure_worker(&mut self) -> bool {
        if self.engine.worker.is_some() {
            return true;
        }
        let RuntimeStatus::Loaded(runtime) = self.runtime else {
            self.notify_error("ONNX Runtime is not loaded", None);
            return false;
        };
        let worker = Worker::spawn(runtime, Box::new(self.waker()));
        self.engine.stopper = Some(worker.stopper());
        self.engine.worker = Some(worker);
        true
    }

    /// Loads the selected folder's model (on the worker) and its defaults (on a thread).
    pub fn load_model(&mut self) {
        let Some(path) = self.persisted.selected.clone() else { return };
        if !self.ensure_worker() {
            return;
        }
        if let Some(worker) = &self.engine.worker {
            worker.load(path.clone(), DecoderSettings::default());
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
        self.stop_reply();
        if let Some(worker) = &self.engine.worker {
            worker.unload();
        }
        self.engine.session = None;
        self.engine.defaults_load = None;
    }

    /// Whether the loaded model is the selected one and ready to chat.
    pub fn model_ready(&self) -> bool {
        self.engine.session.as_ref().is_some_and(|s| s.is_ready() && Some(&s.folder) == self.persisted.selected.as_ref())
    }

    /// The session, when it belongs to the selected folder.
    pub fn selected_session(&self) -> Option<&ModelSession> {
        self.engine.session.as_ref().filter(|s| Some(&s.folder) == self.persisted.selected.as_ref())
    }

    // -- conversations ---------------------------------------------------------------------

    pub fn conversations_for(&self, model: &Path) -> Vec<&Summary> {
        self.chat.summaries.iter().filter(|c| c.model == model).collect()
    }

    /// Lists the stored conversations (off the GUI thread) and starts the writer.
    pub(super) fn load_conversations(&mut self) {
        let Some(store) = self.chat_store.clone() else { return };
        match store.writer(std::sync::Arc::new(self.waker())) {
            Ok(writer) => self.chat.writer = Some(writer),
            Err(e) => self.notify_error("Conversations cannot be saved in this session", Some(e.to_string())),
        }
        self.chat.listing = Some(self.spawn("list-conversations", move || store.list()));
    }

    pub fn current_conversation(&self) -> Option<&Conversation> {
        let id = self.chat.current.as_ref()?;
        self.chat.conversations.iter().find(|c| &c.id == id)
    }

    pub fn current_conversation_mut(&mut self) -> Option<&mut Conversation> {
        let id = self.chat.current.clone()?;
        self.chat.conversations.iter_mut().find(|c| c.id == id)
    }

    /// Makes `id` the current conversation, reading it in the background if needed.
    fn show_conversation(&mut self, id: Option<String>) {
        self.chat.current = id.clone();
        let Some(id) = id else { return };
        let known = self.chat.conversations.iter().any(|c| c.id == id) || self.chat.reading.contains_key(&id);
        if let (false, Some(store)) = (known, self.chat_store.clone()) {
            let name = id.clone();
            let read = self.spawn("read-conversation", move || store.load(&name).map_err(|e| e.to_string()));
            self.chat.reading.insert(id, read);
        }
    }

    /// Whether the current conversation is still being read from disk.
    pub fn reading_current(&self) -> bool {
        self.chat.current.as_ref().is_some_and(|id| self.chat.reading.contains_key(id))
    }

    /// The newest conversation of the selected model becomes current.
    pub(super) fn show_latest_conversation(&mut self) {
        let latest = self.persisted.selected.clone().and_then(|m| self.conversations_for(&m).first().map(|c| c.id.clone()));
        self.show_conversation(latest);
    }

    pub fn new_conversation(&mut self) {
        let Some(model) = self.persisted.selected.clone() else { return };
        let conversation = Conversation::new(&model);
        self.chat.current = Some(conversation.id.clone());
        self.chat.summaries.insert(0, Summary::of(&conversation));
        self.chat.conversations.insert(0, conversation);
        self.chat.draft.clear();
    }

    pub fn select_conversation(&mut self, id: &str) {
        self.show_conversation(Some(id.to_owned()));
        self.chat.editing = None;
    }

    pub fn rename_conversation(&mut self, id: &str, title: &str) {
        self.chat.renaming = None;
        if let Some(conversation) = self.chat.conversations.iter_mut().find(|c| c.id == id) {
            if !title.trim().is_empty() {
                conversation.title = title.trim().to_owned();
            }
        }
        self.persist_conversation(id);
    }

    pub fn delete_conversation(&mut self, id: &str) {
        if self.chat.streaming.as_ref().is_some_and(|s| s.conversation == id) {
            self.stop_reply();
        }
        self.chat.conversations.retain(|c| c.id != id);
        self.chat.summaries.retain(|c| c.id != id);
        self.chat.unsaved.remove(id);
        self.chat.reading.remove(id);
        if self.chat.writer.as_ref().is_some_and(|writer| writer.send(WriteCommand::Delete(id.to_owned()))) {
            self.chat.writes_in_flight += 1;
        }
        if self.chat.current.as_deref() == Some(id) {
            self.show_latest_conversation();
        }
    }

    /// Notes that a conversation changed: its summary follows at once, the file a moment later.
    pub fn persist_conversation(&mut self, id: &str) {
        let Some(conversation) = self.chat.conversations.iter().find(|c| c.id == id) else { return };
        let summary = Summary::of(conversation);
        match self.chat.summaries.iter_mut().find(|s| s.id == id) {
            Some(entry) => *entry = summary,
            None => self.chat.summaries.insert(0, summary),
        }
        self.chat.unsaved.insert(id.to_owned(), Instant::now());
    }

    /// Hands conversations unchanged for `SAVE_DELAY` (all of them with `everything`) to the
    /// writer.
    fn write_conversations(&mut self, everything: bool) {
        let due: Vec<String> =
            self.chat.unsaved.iter().filter(|(_, changed)| everything || changed.elapsed() >= SAVE_DELAY).map(|(id, _)| id.clone()).collect();
        for id in due {
            self.chat.unsaved.remove(&id);
            let (Some(writer), Some(conversation)) = (&self.chat.writer, self.chat.conversations.iter().find(|c| c.id == id)) else { continue };
            if writer.send(WriteCommand::Save(Box::new(conversation.clone()))) {
                self.chat.writes_in_flight += 1;
            }
        }
        if let Some(wait) = self.chat.unsaved.values().map(|changed| SAVE_DELAY.saturating_sub(changed.elapsed())).min() {
            self.ctx.request_repaint_after(wait);
        }
    }

    /// Writes every unsaved conversation and waits for the writer (the window is closing).
    pub fn flush_conversations(&mut self) {
        self.write_conversations(true);
        self.chat.writer = None;
    }

    /// The listing, conversations read, and the writer's reports.
    pub(super) fn poll_conversations(&mut self) {
        if let Some(listing) = self.chat.listing.take_if(|p| p.ready().is_some()).and_then(|p| p.try_take().ok()) {
            let known: Vec<String> = self.chat.summaries.iter().map(|s| s.id.clone()).collect();
            self.chat.summaries.extend(listing.summaries.into_iter().filter(|s| !known.contains(&s.id)));
            self.chat.summaries.sort_by(|a, b| b.updated.cmp(&a.updated).then(a.id.cmp(&b.id)));
            if !listing.skipped.is_empty() {
                let details = listing.skipped.iter().map(|s| format!("{}: {}", s.file.display(), s.reason)).collect::<Vec<_>>().join("\n");
                self.notify_error(format!("{} file(s) in the conversations folder were skipped (left as they are)", listing.skipped.len()), Some(details));
            }
            if self.chat.current.is_none() {
                self.show_latest_conversation();
            }
        }
        let read: Vec<String> = self.chat.reading.iter().filter(|(_, p)| p.ready().is_some()).map(|(id, _)| id.clone()).collect();
        for id in read {
            let Some(result) = self.chat.reading.remove(&id).and_then(|p| p.try_take().ok()) else { continue };
            match result {
                Ok(conversation) => {
                    if !self.chat.conversations.iter().any(|c| c.id == id) {
                        self.chat.conversations.push(conversation);
                    }
                }
                Err(message) => self.notify_error("A saved conversation could not be read", Some(message)),
            }
        }
        self.write_conversations(false);
        let events = self.chat.writer.as_ref().map(Service::drain).unwrap_or_default();
        for event in events {
            self.chat.writes_in_flight = self.chat.writes_in_flight.saturating_sub(1);
            if let WriteEvent::Failed { message, .. } = event {
                self.notify_error("A conversation could not be saved", Some(message));
            }
        }
    }

    /// Writes a conversation under the data directory's `exports` (the notice says where).
    pub fn export_conversation(&mut self, id: &str, json: bool) {
        let Some(conversation) = self.chat.conversations.iter().find(|c| c.id == id) else { return };
        let (text, extension) = if json {
            (serde_json::to_string_pretty(&conversation.to_chat_json()).unwrap_or_default(), "json")
        } else {
            (conversation.to_markdown(), "md")
        };
        let dir = self.dirs.as_ref().map(|d| d.data.join("exports")).unwrap_or_else(std::env::temp_dir);
        let safe: String = conversation.title.chars().map(|c| if c.is_alphanumeric() || c == '-' { c } else { '_' }).collect();
        let short_id: String = conversation.id.chars().take(8).collect();
        let path = dir.join(format!("{}-{short_id}.{extension}", safe.trim_matches('_')));
        self.in_background("export-conversation", move || {
            std::fs::create_dir_all(&dir)
                .and_then(|_| crate::mlflow::mlmodel::write_atomically(&path, text.as_bytes()))
                .map(|()| Some(format!("Exported to {}", path.display())))
                .map_err(|e| ("The conversation could not be exported".to_owned(), e.to_string()))
        });
    }

    // -- replies ---------------------------------------------------------------------------

    /// Sends the draft as a user message.
    pub fn send(&mut self) {
        let text = self.chat.draft.trim().to_owned();
        if text.is_empty() || self.chat.streaming.is_some() || !self.model_ready() || self.reading_current() {
            return;
        }
        if self.current_conversation().is_none() {
            self.new_conversation();
        }
        if let Some(conversation) = self.current_conversation_mut() {
            conversation.push_user(&text);
        }
        self.chat.draft.clear();
        self.start_reply();
    }

    /// Generates the assistant reply to the conversation as it stands.
    pub fn start_reply(&mut self) {
        let Some(conversation) = self.current_conversation() else { return };
        let id = conversation.id.clone();
        let messages = conversation.prompt_messages();
        let settings = conversation.settings.clone();
        let overrides = GenerateOptions {
            max_tokens: settings.max_tokens,
            temperature: settings.temperature,
            top_p: settings.top_p,
            top_k: settings.top_k,
            repetition_penalty: settings.repetition_penalty,
            seed: settings.seed,
            do_sample: settings.do_sample,
            stop: settings.stop.iter().filter(|s| !s.is_empty()).cloned().collect(),
            ..GenerateOptions::default()
        };
        let Some(session) = self.selected_session() else { return };
        let options = session.request_options(&overrides);
        let policy = self.chat.policy;
        let Some(worker) = self.engine.worker.as_mut() else { return };
        let request = worker.generate(Prompt::Chat(messages), options, policy);
        self.chat.streaming = Some(Streaming {
            request,
            conversation: id,
            text: String::new(),
            tokens: 0,
            started: Instant::now(),
            prompt_tokens: None,
            dropped_messages: 0,
            stopping: false,
        });
    }

    /// Stops the reply being generated (Esc); the text so far is kept.
    pub fn stop_reply(&mut self) {
        if let Some(streaming) = &mut self.chat.streaming {
            streaming.request.cancel();
            streaming.stopping = true;
        }
    }

    /// Drops the last reply and generates it again.
    pub fn regenerate(&mut self) {
        if self.chat.streaming.is_some() || !self.model_ready() {
            return;
        }
        if let Some(conversation) = self.current_conversation_mut() {
            if conversation.messages.last().is_some_and(|m| m.role == Role::Assistant) {
                let keep = conversation.messages.len() - 1;
                conversation.truncate(keep);
            }
        }
        self.start_reply();
    }

    /// Replaces user message `index` and resends the conversation from there.
    pub fn resend_edited(&mut self, index: usize, text: String) {
        if self.chat.streaming.is_some() || !self.model_ready() {
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
        let events: Vec<Event> = match &self.engine.worker {
            Some(worker) => std::iter::from_fn(|| worker.try_recv()).collect(),
            None => Vec::new(),
        };
        if !events.is_empty() {
            self.memory_bytes = crate::memory::current_rss();
        }
        for event in events {
            self.handle_event(event);
        }
    }

    fn handle_event(&mut self, event: Event) {
        match event {
            Event::Loading { path } => {
                self.engine.load_started = self.engine.session.as_ref().is_some_and(|s| s.folder == path);
            }
            Event::Loaded(facts) => {
                let Some(session) = self.engine.session.as_mut().filter(|_| self.engine.load_started) else { return };
                let name = facts.name.clone();
                let warnings = facts.warnings.clone();
                session.status = SessionStatus::Ready(facts);
                for warning in warnings {
                    self.notify(format!("{name}: {warning}"));
                }
                self.notify(format!("{name} is loaded"));
            }
            Event::LoadFailed { path, message } => {
                let Some(session) = self.engine.session.as_mut().filter(|_| self.engine.load_started) else { return };
                session.status = SessionStatus::Failed(message.clone());
                self.notify_error(format!("{} could not be loaded", path.display()), Some(message));
            }
            Event::Unloaded => {}
            Event::Started { id, prompt_tokens, dropped_messages, .. } => {
                if let Some(s) = self.chat.streaming.as_mut().filter(|s| s.request.id == id) {
                    s.prompt_tokens = Some(prompt_tokens);
                    s.dropped_messages = dropped_messages;
                }
            }
            Event::Chunk { id, text, .. } => {
                if let Some(s) = self.chat.streaming.as_mut().filter(|s| s.request.id == id) {
                    s.text.push_str(&text);
                    s.tokens += 1;
                }
            }
            Event::Finished { id, completion } => {
                let Some(streaming) = self.chat.streaming.take_if(|s| s.request.id == id) else { return };
                let stats = ReplyStats {
                    usage: completion.usage,
                    timings: completion.timings,
                    finish_reason: completion.finish_reason,
                    dropped_messages: streaming.dropped_messages,
                };
                if let Some(conversation) = self.chat.conversations.iter_mut().find(|c| c.id == streaming.conversation) {
                    conversation.messages.push(Message { role: Role::Assistant, content: completion.text.clone(), stats: Some(stats) });
                }
                self.persist_conversation(&streaming.conversation);
                if streaming.dropped_messages > 0 {
                    self.notify(format!("{} earlier messages were left out to fit the context window", streaming.dropped_messages));
                }
            }
            Event::Failed { id, message } => {
                if let Some(streaming) = self.chat.streaming.take_if(|s| s.request.id == id) {
                    self.persist_conversation(&streaming.conversation);
                }
                self.notify_error("The reply failed", Some(message));
            }
        }
    }
}
