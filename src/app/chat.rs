//! The engine as the chat sees it (the engine queue and the model session) and the chat itself:
//! conversations, sending, streaming replies, stopping, regenerating and editing.
//!
//! The window's chat submits its replies to the same [`EngineQueue`] the local server uses, so
//! both share one loaded model, one KV cache and one queue. A folder with a remote backend
//! attached (`remote_chat`: "Run with MLflow" or an endpoint URL) sends its replies there
//! instead; [`ReplySource`] is where a reply in flight comes from.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::Receiver,
    },
    time::{Duration, Instant, SystemTime},
};

use poll_promise::Promise;

use super::{AppState, RuntimeStatus};
use crate::{
    chat::{Conversation, Listing, Message, ReplyStats, Role, Summary, WriteCommand, WriteEvent},
    engine::{ContextPolicy, DecoderSettings, GenerateOptions, Prompt},
    engine_queue::{EngineQueue, QueueConfig, QueueCounts, QueueEvent, Request, RequestEvent, Ticket, channel_sink},
    remote::chat::ChatReply,
    service::Service,
    session::{self, ModelSession, SessionError, SessionStatus},
    tracking::traces::{ChatTurn, TokenCounts},
};

/// How long a conversation must stay unchanged before it is written (typing in the system
/// prompt or a setting does not write at every keystroke).
const SAVE_DELAY: Duration = Duration::from_millis(500);

/// How long a deleted conversation can be brought back before its file is removed.
pub const UNDO_DELETE: Duration = Duration::from_secs(10);

/// A conversation deleted a moment ago: its file stays until the undo window closes.
pub struct DeletedConversation {
    pub summary: Summary,
    /// Its messages, when they had been read.
    conversation: Option<Conversation>,
    was_current: bool,
    pub at: Instant,
}

/// The "Export conversation" form: format and destination file.
pub struct ConversationExport {
    pub id: String,
    pub json: bool,
    pub path: String,
    pick: Option<Promise<Option<PathBuf>>>,
}

impl ConversationExport {
    pub fn is_picking(&self) -> bool {
        self.pick.is_some()
    }
}

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

    /// Whether a remote model is answering (no tokens stream in).
    pub fn is_remote(&self) -> bool {
        matches!(self.source, ReplySource::Remote { .. })
    }
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
    /// The last deleted conversation, while it can still be brought back.
    pub deleted: Option<DeletedConversation>,
    pub export: Option<ConversationExport>,
    /// Set by Ctrl+L, Ctrl+N and a new chat: the message box takes the keyboard focus.
    pub focus_composer: bool,
    /// The next prompt's size, and a send held back because it would not fit.
    pub context: super::ContextState,
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
        match latest {
            Some(id) => self.show_conversation(Some(id)),
            // A fresh chat to type into, so its system prompt and settings can be set before
            // the first message (it is written only once something is in it).
            None => {
                self.chat.current = None;
                self.new_conversation();
            }
        }
    }

    pub fn new_conversation(&mut self) {
        let Some(model) = self.persisted.selected.clone() else { return };
        self.chat.focus_composer = true;
        // An untouched new chat is reused rather than piling up empty ones.
        if self.current_conversation().is_some_and(|c| c.messages.is_empty() && c.model == model) {
            return;
        }
        let mut conversation = Conversation::new(&model);
        conversation.system_prompt = self.persisted.default_system_prompt.clone();
        self.chat.current = Some(conversation.id.clone());
        self.chat.summaries.insert(0, Summary::of(&conversation));
        // The message being typed stays: a new chat never throws away text.
        self.chat.conversations.insert(0, conversation);
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

    /// Removes a conversation from the list at once; its file goes when the undo window closes.
    pub fn delete_conversation(&mut self, id: &str) {
        if self.chat.streaming.as_ref().is_some_and(|s| s.conversation == id) {
            self.stop_reply();
        }
        self.finish_delete();
        let Some(summary) = self.chat.summaries.iter().find(|c| c.id == id).cloned() else { return };
        let conversation = self.chat.conversations.iter().find(|c| c.id == id).cloned();
        let was_current = self.chat.current.as_deref() == Some(id);
        self.chat.conversations.retain(|c| c.id != id);
        self.chat.summaries.retain(|c| c.id != id);
        // A change not yet written is kept with the conversation, and written if it comes back.
        let unsaved = self.chat.unsaved.remove(id).is_some();
        self.chat.reading.remove(id);
        // Never written: nothing on disk to delete, nothing worth bringing back.
        let stored = summary.file_modified.is_some() || unsaved || conversation.as_ref().is_some_and(|c| !c.messages.is_empty());
        if stored {
            self.chat.deleted = Some(DeletedConversation { summary, conversation, was_current, at: Instant::now() });
            self.ctx.request_repaint_after(UNDO_DELETE);
        }
        if was_current {
            self.show_latest_conversation();
        }
    }

    /// Brings back the conversation deleted last (its file was never touched).
    pub fn undo_delete(&mut self) {
        let Some(deleted) = self.chat.deleted.take() else { return };
        let id = deleted.summary.id.clone();
        // The empty chat that took its place goes away again.
        if let Some(current) = self.current_conversation().filter(|c| c.messages.is_empty() && c.id != id).map(|c| c.id.clone()) {
            self.chat.conversations.retain(|c| c.id != current);
            self.chat.summaries.retain(|c| c.id != current);
        }
        self.chat.summaries.push(deleted.summary);
        self.chat.summaries.sort_by(|a, b| b.updated.cmp(&a.updated).then(a.id.cmp(&b.id)));
        if let Some(conversation) = deleted.conversation {
            self.chat.conversations.push(conversation);
            self.persist_conversation(&id);
        }
        if deleted.was_current {
            self.show_conversation(Some(id));
        }
    }

    /// Removes the file of the conversation deleted last, once it can no longer come back.
    fn finish_delete(&mut self) {
        let Some(deleted) = self.chat.deleted.take() else { return };
        if self.chat.writer.as_ref().is_some_and(|writer| writer.send(WriteCommand::Delete(deleted.summary.id.clone()))) {
            self.chat.writes_in_flight += 1;
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
        self.finish_delete();
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
        if self.chat.deleted.as_ref().is_some_and(|d| d.at.elapsed() >= UNDO_DELETE) {
            self.finish_delete();
        }
        self.poll_conversation_export();
        self.write_conversations(false);
        let events = self.chat.writer.as_ref().map(Service::drain).unwrap_or_default();
        for event in events {
            self.chat.writes_in_flight = self.chat.writes_in_flight.saturating_sub(1);
            if let WriteEvent::Failed { message, .. } = event {
                self.notify_error("A conversation could not be saved", Some(message));
            }
        }
    }

    /// Opens the export form, with a file under the data directory's `exports` proposed.
    pub fn export_conversation(&mut self, id: &str, json: bool) {
        let Some(summary) = self.chat.summaries.iter().find(|c| c.id == id) else { return };
        let dir = self.dirs.as_ref().map(|d| d.data.join("exports")).unwrap_or_else(std::env::temp_dir);
        let safe: String = summary.title.chars().map(|c| if c.is_alphanumeric() || c == '-' { c } else { '_' }).collect();
        let short_id: String = summary.id.chars().take(8).collect();
        let path = dir.join(format!("{}-{short_id}.{}", safe.trim_matches('_'), if json { "json" } else { "md" }));
        self.chat.export = Some(ConversationExport { id: id.to_owned(), json, path: path.display().to_string(), pick: None });
    }

    /// The system's save dialog for the export form's file.
    pub fn pick_conversation_export(&mut self) {
        let Some(export) = &self.chat.export else { return };
        let current = PathBuf::from(&export.path);
        let pick = self.spawn("save-dialog", move || {
            let mut dialog = rfd::AsyncFileDialog::new().set_title("Export conversation");
            if let Some(dir) = current.parent().filter(|d| d.is_dir()) {
                dialog = dialog.set_directory(dir);
            }
            if let Some(name) = current.file_name() {
                dialog = dialog.set_file_name(name.to_string_lossy());
            }
            pollster::block_on(dialog.save_file()).map(|f| f.path().to_path_buf())
        });
        if let Some(export) = &mut self.chat.export {
            export.pick = Some(pick);
        }
    }

    fn poll_conversation_export(&mut self) {
        let Some(export) = &mut self.chat.export else { return };
        if let Some(picked) = export.pick.take_if(|p| p.ready().is_some()).and_then(|p| p.try_take().ok()) {
            if let Some(path) = picked {
                export.path = path.display().to_string();
            }
        }
    }

    /// Writes the conversation (Markdown or `llm/v1/chat` JSON) to the form's file, atomically.
    pub fn run_conversation_export(&mut self) {
        let Some(export) = self.chat.export.take() else { return };
        let Some(conversation) = self.chat.conversations.iter().find(|c| c.id == export.id) else {
            self.notify_error("Open the conversation once before exporting it", None);
            return;
        };
        let text = if export.json { serde_json::to_string_pretty(&conversation.to_chat_json()).unwrap_or_default() } else { conversation.to_markdown() };
        let path = PathBuf::from(export.path.trim());
        self.in_background("export-conversation", move || {
            path.parent()
                .filter(|dir| !dir.as_os_str().is_empty())
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| crate::mlflow::mlmodel::write_atomically(&path, text.as_bytes()))
                .map(|()| Some(format!("Exported to {}", path.display())))
                .map_err(|e| (format!("The conversation could not be exported to {}", path.display()), e.to_string()))
        });
    }

    /// Clears the conversation's generation settings: the model's defaults apply again.
    pub fn reset_settings(&mut self, id: &str) {
        if let Some(conversation) = self.chat.conversations.iter_mut().find(|c| c.id == id) {
            conversation.settings = crate::chat::Settings::default();
            self.persist_conversation(id);
        }
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
            ReplySource::Remote { cancel, .. } => {
                cancel.store(true, Ordering::SeqCst);
                if let Some(streaming) = self.chat.streaming.take() {
                    self.persist_conversation(&streaming.conversation);
                }
            }
        }
    }

    /// A finished reply joins its conversation (and is recorded as a trace when traces are on).
    pub(super) fn finish_reply(&mut self, streaming: Streaming, content: String, stats: Option<ReplyStats>, finish_reason: &str) {
        let tokens = stats.map(|s| TokenCounts { prompt: s.usage.prompt_tokens, completion: s.usage.completion_tokens });
        if let Some(conversation) = self.chat.conversations.iter_mut().find(|c| c.id == streaming.conversation) {
            conversation.messages.push(Message { role: Role::Assistant, content: content.clone(), stats });
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
                self.finish_reply(streaming, completion.text, Some(stats), completion.finish_reason.as_str());
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

