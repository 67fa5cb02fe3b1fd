//! The chat's conversations: every stored conversation's summary, reading them in the
//! background, creating, renaming, deleting with Undo, persisting a moment after the last change
//! (one writer service), and exporting as Markdown or `llm/v1/chat` JSON. Replies are `chat`'s.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use poll_promise::Promise;

use super::{AppState, Streaming};
use crate::{
    chat::{Conversation, Listing, Summary, WriteCommand, WriteEvent},
    engine::ContextPolicy,
    service::Service,
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
}
