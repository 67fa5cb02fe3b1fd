//! Conversations on disk: `<data>/conversations/<name>.json`, one file each, plus `index.json`
//! with a summary per file so start-up reads one small file instead of every conversation.
//!
//! A conversation's file name is its identity: a conversation is loaded, saved and deleted
//! through the file it came from, never through a path built from text inside a file. Only
//! regular files of bounded size are read; anything else in the folder is reported and left
//! alone (never overwritten or deleted).

use std::{
    collections::HashMap,
    io::Read as _,
    path::{Path, PathBuf},
    sync::mpsc::Receiver,
    time::SystemTime,
};

use serde::{Deserialize, Serialize};

use super::Conversation;
use crate::service::{Outbox, Service, Waker};

/// The largest conversation file ModelDesk reads (a long chat is a few hundred KB).
pub const MAX_CONVERSATION_BYTES: u64 = 32 << 20;
/// The index is a cache: a larger one is ignored and rebuilt.
const MAX_INDEX_BYTES: u64 = 64 << 20;
const INDEX: &str = "index.json";
/// Longest file name stem ModelDesk writes or accepts.
const MAX_NAME: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ChatStoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a conversation file: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("{path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("{path} is {bytes} bytes, more than the {limit}-byte limit for a conversation")]
    TooLarge { path: PathBuf, bytes: u64, limit: u64 },
    #[error("`{name}` cannot name a conversation file (letters, digits, - and _ only, at most {MAX_NAME})")]
    BadName { name: String },
}

/// `name` if it can be a file name stem as is: ASCII letters, digits, `-` and `_`, 1 to 64 of
/// them. Ids, titles and model names from files become paths only through this.
pub fn safe_name(name: &str) -> Option<&str> {
    let ok = !name.is_empty() && name.len() <= MAX_NAME && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then_some(name)
}

/// What the conversation list shows, without reading the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The file name stem: the conversation's identity in the app.
    pub id: String,
    pub title: String,
    pub model: PathBuf,
    pub updated: u64,
    pub messages: usize,
    /// The file's size and modification time when summarised (a change means read it again).
    pub file_bytes: u64,
    pub file_modified: Option<SystemTime>,
}

impl Summary {
    pub fn of(conversation: &Conversation) -> Self {
        Self {
            id: conversation.id.clone(),
            title: conversation.title.clone(),
            model: conversation.model.clone(),
            updated: conversation.updated,
            messages: conversation.messages.len(),
            file_bytes: 0,
            file_modified: None,
        }
    }
}

/// A file in the conversations folder that was left alone, and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub file: PathBuf,
    pub reason: String,
}

/// The stored conversations, newest first.
#[derive(Debug, Default)]
pub struct Listing {
    pub summaries: Vec<Summary>,
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Clone)]
pub struct ChatStore {
    dir: PathBuf,
}

/// Reads a regular file of at most `limit` bytes (never a FIFO, device or folder).
fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, ChatStoreError> {
    let io = |source| ChatStoreError::Io { path: path.to_path_buf(), source };
    let meta = path.symlink_metadata().map_err(io)?;
    if !meta.file_type().is_file() {
        return Err(ChatStoreError::NotAFile { path: path.to_path_buf() });
    }
    if meta.len() > limit {
        return Err(ChatStoreError::TooLarge { path: path.to_path_buf(), bytes: meta.len(), limit });
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path).map_err(io)?.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(ChatStoreError::TooLarge { path: path.to_path_buf(), bytes: bytes.len() as u64, limit });
    }
    Ok(bytes)
}

impl ChatStore {
    pub fn new(data_dir: &Path) -> Self {
        Self { dir: data_dir.join("conversations") }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, id: &str) -> Result<PathBuf, ChatStoreError> {
        let name = safe_name(id).ok_or_else(|| ChatStoreError::BadName { name: id.chars().take(80).collect() })?;
        Ok(self.dir.join(format!("{name}.json")))
    }

    /// Reads one conversation file; its identity is the file name, whatever id it holds.
    fn read(&self, path: &Path, id: &str) -> Result<Conversation, ChatStoreError> {
        let bytes = read_bounded(path, MAX_CONVERSATION_BYTES)?;
        let mut conversation: Conversation =
            serde_json::from_slice(&bytes).map_err(|source| ChatStoreError::Json { path: path.to_path_buf(), source })?;
        conversation.id = id.to_owned();
        Ok(conversation)
    }

    /// One conversation, by the name the listing gave it.
    pub fn load(&self, id: &str) -> Result<Conversation, ChatStoreError> {
        let path = self.path(id)?;
        self.read(&path, id)
    }

    pub fn save(&self, conversation: &Conversation) -> Result<(), ChatStoreError> {
        let path = self.path(&conversation.id)?;
        let io = |source| ChatStoreError::Io { path: self.dir.clone(), source };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let text = serde_json::to_vec_pretty(conversation).map_err(|source| ChatStoreError::Json { path: path.clone(), source })?;
        crate::mlflow::mlmodel::write_atomically(&path, &text).map_err(|source| ChatStoreError::Io { path, source })
    }

    /// Removes the conversation's own file, and nothing else.
    pub fn delete(&self, id: &str) -> Result<(), ChatStoreError> {
        let path = self.path(id)?;
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ChatStoreError::Io { path, source: e }),
            _ => Ok(()),
        }
    }

    /// Every stored conversation's summary, newest first: from the index where a file is
    /// unchanged, read again where it changed. Other files are reported in `skipped`. Refreshes
    /// the index when it was stale. Reads the folder: call it off the GUI thread.
    pub fn list(&self) -> Listing {
        let mut listing = Listing::default();
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return listing };
        let index_path = self.dir.join(INDEX);
        let indexed: HashMap<String, Summary> = read_bounded(&index_path, MAX_INDEX_BYTES)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Vec<Summary>>(&bytes).ok())
            .map(|list| list.into_iter().map(|s| (s.id.clone(), s)).collect())
            .unwrap_or_default();
        let mut stale = false;
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                listing.skipped.push(Skipped { file: path, reason: "its name is not valid UTF-8".into() });
                continue;
            };
            if name == INDEX || name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            let stem = &name[..name.len() - ".json".len()];
            let Some(id) = safe_name(stem) else {
                listing.skipped.push(Skipped { file: path, reason: "ModelDesk did not write it (unexpected file name)".into() });
                continue;
            };
            let Ok(meta) = path.symlink_metadata() else { continue };
            if !meta.file_type().is_file() {
                listing.skipped.push(Skipped { file: path, reason: "not a regular file".into() });
                continue;
            }
            let modified = meta.modified().ok();
            if let Some(summary) = indexed.get(id).filter(|s| s.file_bytes == meta.len() && s.file_modified == modified && modified.is_some()) {
                listing.summaries.push(summary.clone());
                continue;
            }
            stale = true;
            match self.read(&path, id) {
                Ok(conversation) => {
                    listing.summaries.push(Summary { file_bytes: meta.len(), file_modified: modified, ..Summary::of(&conversation) })
                }
                Err(error) => listing.skipped.push(Skipped { file: path, reason: error.to_string() }),
            }
        }
        stale |= listing.summaries.len() != indexed.len();
        listing.summaries.sort_by(|a, b| b.updated.cmp(&a.updated).then(a.id.cmp(&b.id)));
        if stale {
            // The index is only a cache: failing to write it costs time at the next start.
            if let Ok(bytes) = serde_json::to_vec(&listing.summaries) {
                let _ = crate::mlflow::mlmodel::write_atomically(&index_path, &bytes);
            }
        }
        listing
    }

    /// A background writer: saves and deletes run off the GUI thread, in order; saves of the same
    /// conversation queued meanwhile are written once (the last one). Dropping the handle writes
    /// what is queued, then ends the thread.
    pub fn writer(&self, waker: Waker) -> std::io::Result<Service<WriteCommand, WriteEvent>> {
        let store = self.clone();
        Service::spawn("conversation-writer", waker, move |commands, outbox| write_loop(&store, &commands, &outbox))
    }
}

pub enum WriteCommand {
    Save(Box<Conversation>),
    Delete(String),
}

#[derive(Debug)]
pub enum WriteEvent {
    Saved { id: String },
    /// Not written because a later save of the same conversation was queued.
    Superseded { id: String },
    Deleted { id: String },
    Failed { id: String, message: String },
}

fn write_loop(store: &ChatStore, commands: &Receiver<WriteCommand>, outbox: &Outbox<WriteEvent>) {
    while let Ok(first) = commands.recv() {
        // Everything queued now, with only the last save of each conversation kept.
        let mut batch = vec![first];
        batch.extend(commands.try_iter());
        let mut last_save: HashMap<String, usize> = HashMap::new();
        for (index, command) in batch.iter().enumerate() {
            if let WriteCommand::Save(conversation) = command {
                last_save.insert(conversation.id.clone(), index);
            }
        }
        for (index, command) in batch.into_iter().enumerate() {
            let event = match command {
                WriteCommand::Save(conversation) if last_save.get(&conversation.id) == Some(&index) => match store.save(&conversation) {
                    Ok(()) => WriteEvent::Saved { id: conversation.id },
                    Err(error) => WriteEvent::Failed { id: conversation.id, message: error.to_string() },
                },
                // A later save of the same conversation in this batch writes it.
                WriteCommand::Save(conversation) => WriteEvent::Superseded { id: conversation.id },
                WriteCommand::Delete(id) => match store.delete(&id) {
                    Ok(()) => WriteEvent::Deleted { id },
                    Err(error) => WriteEvent::Failed { id, message: error.to_string() },
                },
            };
            outbox.send(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{super::tests::sample, *};
    use crate::service::no_waker;

    #[test]
    fn conversations_persist_list_and_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChatStore::new(dir.path());
        let chat = sample();
        store.save(&chat).unwrap();
        std::fs::write(dir.path().join("conversations/broken.json"), "{").unwrap();
        let listing = store.list();
        assert_eq!(listing.summaries.len(), 1);
        assert_eq!(listing.summaries[0].title, chat.title);
        assert_eq!(listing.skipped.len(), 1, "the broken file is reported");
        assert_eq!(std::fs::read(dir.path().join("conversations/broken.json")).unwrap(), b"{", "and left alone");
        assert_eq!(store.load(&chat.id).unwrap(), chat);
        store.delete(&chat.id).unwrap();
        assert!(store.list().summaries.is_empty());
    }

    #[test]
    fn identity_is_the_file_name_never_the_id_inside() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChatStore::new(dir.path());
        let outside = dir.path().join("outside.json");
        std::fs::write(&outside, "precious").unwrap();
        let mut hostile = sample();
        hostile.id = "../outside".into();
        assert!(matches!(store.save(&hostile), Err(ChatStoreError::BadName { .. })), "an unsafe id is never a path");
        assert!(matches!(store.delete("../outside"), Err(ChatStoreError::BadName { .. })));
        assert!(store.delete(&outside.display().to_string()).is_err());
        // A file whose inside names another file (or a duplicate) is known by its own name.
        std::fs::create_dir_all(store.dir()).unwrap();
        let text = serde_json::to_string(&hostile).unwrap();
        std::fs::write(store.dir().join("first.json"), &text).unwrap();
        std::fs::write(store.dir().join("second.json"), &text).unwrap();
        let ids: Vec<String> = store.list().summaries.into_iter().map(|s| s.id).collect();
        assert_eq!(ids.len(), 2);
        assert!(ids.contains(&"first".to_owned()) && ids.contains(&"second".to_owned()), "{ids:?}");
        store.delete("first").unwrap();
        assert!(store.dir().join("second.json").is_file(), "deleting one duplicate leaves the other");
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "precious");
    }

    #[cfg(unix)]
    #[test]
    fn fifos_huge_files_and_foreign_names_are_skipped_quickly() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChatStore::new(dir.path());
        std::fs::create_dir_all(store.dir()).unwrap();
        let fifo = store.dir().join("pipe.json");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) }, 0);
        let huge = std::fs::File::create(store.dir().join("huge.json")).unwrap();
        huge.set_len(MAX_CONVERSATION_BYTES + 1).unwrap();
        std::fs::write(store.dir().join("weird name!.json"), "{}").unwrap();
        let started = std::time::Instant::now();
        let listing = store.list();
        assert!(started.elapsed() < Duration::from_secs(5), "a FIFO must not block the listing");
        assert!(listing.summaries.is_empty());
        let reasons: Vec<String> = listing.skipped.iter().map(|s| s.reason.clone()).collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(reasons.iter().any(|r| r.contains("not a regular file")), "{reasons:?}");
        assert!(reasons.iter().any(|r| r.contains("limit")), "{reasons:?}");
        assert!(reasons.iter().any(|r| r.contains("unexpected file name")), "{reasons:?}");
    }

    #[test]
    fn the_index_serves_unchanged_files_and_notices_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChatStore::new(dir.path());
        let mut chat = sample();
        store.save(&chat).unwrap();
        assert_eq!(store.list().summaries[0].messages, 2);
        assert!(store.dir().join(INDEX).is_file(), "the first listing writes the index");
        // An unchanged file is summarised from the index (a wrong index entry would show).
        let mut index: Vec<Summary> = serde_json::from_slice(&std::fs::read(store.dir().join(INDEX)).unwrap()).unwrap();
        index[0].title = "from the index".into();
        std::fs::write(store.dir().join(INDEX), serde_json::to_vec(&index).unwrap()).unwrap();
        assert_eq!(store.list().summaries[0].title, "from the index");
        // A changed file is read again.
        std::thread::sleep(Duration::from_millis(20));
        chat.title = "renamed".into();
        store.save(&chat).unwrap();
        assert_eq!(store.list().summaries[0].title, "renamed");
    }

    #[test]
    fn the_writer_keeps_the_last_save_and_finishes_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let store = ChatStore::new(dir.path());
        let writer = store.writer(no_waker()).unwrap();
        let mut chat = sample();
        for n in 0..50 {
            chat.title = format!("title {n}");
            writer.send(WriteCommand::Save(Box::new(chat.clone())));
        }
        drop(writer);
        assert_eq!(store.load(&chat.id).unwrap().title, "title 49");
    }
}
