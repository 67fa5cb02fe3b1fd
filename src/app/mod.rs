//! Application state: what the window shows, and the routing of user actions to background
//! work (promises and the engine worker) and of their results back into state. Drawing lives in
//! `ui`; nothing here blocks the GUI thread.

pub mod editor;


use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use poll_promise::Promise;

use crate::{
    app_dirs::AppDirs,
    chat::{ChatStore, Conversation, Message, ReplyStats, Role},
    engine::{
        ContextPolicy, DecoderSettings, GenerateOptions, ModelFacts, Prompt,
        worker::{Event, RequestHandle, Stopper, Worker},
    },
    mlflow::export::CopyProgress,
    runtime::{self, Candidates, Runtime},
};

pub use editor::ModelEditor;
pub use crate::inspect::{EntryInfo, FolderKind};

/// What the app knows about ONNX Runtime.
pub enum RuntimeStatus {
    Loading(Promise<Result<&'static Runtime, String>>),
    Loaded(&'static Runtime),
    Missing { message: String },
}

/// A folder the user opened, remembered across restarts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LibraryEntry {
    pub path: PathBuf,
}

impl LibraryEntry {
    pub fn name(&self) -> String {
        self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| self.path.display().to_string())
    }
}

/// State kept between sessions.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Persisted {
    pub library: Vec<LibraryEntry>,
    pub selected: Option<PathBuf>,
}

/// How the app was started.
pub struct StartupOptions {
    /// A folder given on the command line.
    pub open: Option<PathBuf>,
    /// Where to look for ONNX Runtime.
    pub candidates: Candidates,
    pub dirs: Option<AppDirs>,
}

impl StartupOptions {
    /// The normal start: look where the runtime module documents.
    pub fn from_environment(open: Option<PathBuf>) -> Self {
        let dirs = AppDirs::discover();
        Self { candidates: Candidates::discover(dirs.as_ref()), open, dirs }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Model,
    Chat,
}

/// A short message in the corner; errors stay until dismissed.
#[derive(Debug, Clone)]
pub struct Notice {
    pub text: String,
    pub details: Option<String>,
    pub error: bool,
    pub shown: Instant,
}

/// The engine as the chat sees it.
#[derive(Default)]
pub struct EngineState {
    pub worker: Option<Worker>,
    pub stopper: Option<Stopper>,
    /// The folder being loaded, or loaded.
    pub folder: Option<PathBuf>,
    pub loading: bool,
    pub facts: Option<Box<ModelFacts>>,
    pub error: Option<String>,
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

/// Chat state for the selected model.
#[derive(Default)]
pub struct ChatState {
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
}

/// Create or export with progress.
pub struct Job {
    pub title: String,
    pub progress: Option<CopyProgress>,
    pub cancel: Arc<AtomicBool>,
    pub updates: mpsc::Receiver<CopyProgress>,
    pub result: Promise<Result<PathBuf, String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogKind {
    Create,
    Export,
}

/// The create / export dialog: its form, then its job, then its outcome.
pub struct Dialog {
    pub kind: DialogKind,
    pub source: PathBuf,
    pub destination: String,
    pub task_chat: bool,
    pub name: String,
    pub zip: bool,
    pub job: Option<Job>,
    pub outcome: Option<Result<PathBuf, String>>,
}

pub struct AppState {
    pub persisted: Persisted,
    pub runtime: RuntimeStatus,
    pub dirs: Option<AppDirs>,
    pub runtime_pick: Option<Promise<Option<PathBuf>>>,
    pub folder_pick: Option<Promise<Option<PathBuf>>>,
    pub destination_pick: Option<Promise<Option<PathBuf>>>,
    pub entries: HashMap<PathBuf, EntryInfo>,
    scans: Vec<(PathBuf, Promise<EntryInfo>)>,
    pub tab: Tab,
    pub editor: Option<ModelEditor>,
    editor_load: Option<Promise<editor::Loaded>>,
    pub saving: Option<Promise<Result<crate::mlflow::validate::Report, String>>>,
    pub engine: EngineState,
    pub chat: ChatState,
    pub chat_store: Option<ChatStore>,
    pub dialog: Option<Dialog>,
    pub notices: Vec<Notice>,
    pub about_open: bool,
    pub shortcuts_open: bool,
    pub confirm_close: bool,
    pub allow_close: bool,
    pub memory_bytes: Option<u64>,
    /// A crash log from an earlier run the user has not seen yet.
    pub crash_report: Option<PathBuf>,
    /// A library entry the user clicked while the model had unsaved edits (asks first).
    pub pending_select: Option<PathBuf>,
    title: String,
}

impl AppState {
    pub fn new(ctx: &egui::Context, startup: StartupOptions, persisted: Persisted) -> Self {
        let chat_store = startup.dirs.as_ref().map(|dirs| ChatStore::new(&dirs.data));
        let mut state = Self {
            persisted,
            runtime: load_runtime_in_background(ctx, startup.candidates),
            dirs: startup.dirs,
            runtime_pick: None,
            folder_pick: None,
            destination_pick: None,
            entries: HashMap::new(),
            scans: Vec::new(),
            tab: Tab::Chat,
            editor: None,
            editor_load: None,
            saving: None,
            engine: EngineState::default(),
            chat: ChatState::default(),
            chat_store,
            dialog: None,
            notices: Vec::new(),
            about_open: false,
            shortcuts_open: false,
            confirm_close: false,
            allow_close: false,
            memory_bytes: None,
            crash_report: None,
            pending_select: None,
            title: String::new(),
        };
        state.crash_report = state.dirs.as_ref().and_then(crate::crash::unreported);
        state.load_conversations();
        let paths: Vec<PathBuf> = state.persisted.library.iter().map(|e| e.path.clone()).collect();
        for path in paths {
            state.rescan(ctx, &path);
        }
        if let Some(path) = startup.open {
            state.open_folder(ctx, &path);
        } else if let Some(selected) = state.persisted.selected.clone() {
            state.select(ctx, &selected);
        }
        state
    }

    pub fn notify(&mut self, text: impl Into<String>) {
        self.notices.push(Notice { text: text.into(), details: None, error: false, shown: Instant::now() });
    }

    pub fn notify_error(&mut self, text: impl Into<String>, details: Option<String>) {
        self.notices.push(Notice { text: text.into(), details, error: true, shown: Instant::now() });
    }

    // -- library ---------------------------------------------------------------------------

    /// Adds a folder to the library (once) and selects it.
    pub fn open_folder(&mut self, ctx: &egui::Context, path: &Path) {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        if !self.persisted.library.iter().any(|entry| entry.path == path) {
            self.persisted.library.push(LibraryEntry { path: path.clone() });
            self.rescan(ctx, &path);
        }
        self.select(ctx, &path);
    }

    /// A path dropped on the window: its model folder opens, anything else is explained.
    pub fn handle_drop(&mut self, ctx: &egui::Context, path: &Path) {
        match crate::inspect::model_folder_for(path) {
            Some(folder) => self.open_folder(ctx, &folder),
            None => self.notify_error(
                format!("{} is not a model folder", path.display()),
                Some("Drop a folder that holds an MLmodel file (an MLflow model) or a genai_config.json (a Phi-3 ONNX model), or a file inside one.".into()),
            ),
        }
    }

    pub fn remove_entry(&mut self, path: &Path) {
        self.persisted.library.retain(|e| e.path != path);
        self.entries.remove(path);
        if self.persisted.selected.as_deref() == Some(path) {
            self.persisted.selected = None;
            self.editor = None;
        }
    }

    pub fn rescan(&mut self, ctx: &egui::Context, path: &Path) {
        let ctx = ctx.clone();
        let target = path.to_path_buf();
        self.scans.push((
            path.to_path_buf(),
            Promise::spawn_thread("scan-folder", move || {
                let info = crate::inspect::scan(&target);
                ctx.request_repaint();
                info
            }),
        ));
    }

    pub fn selected_entry(&self) -> Option<&LibraryEntry> {
        let selected = self.persisted.selected.as_ref()?;
        self.persisted.library.iter().find(|entry| &entry.path == selected)
    }

    pub fn select(&mut self, ctx: &egui::Context, path: &Path) {
        self.persisted.selected = Some(path.to_path_buf());
        self.editor = None;
        let ctx = ctx.clone();
        let dir = path.to_path_buf();
        self.editor_load = Some(Promise::spawn_thread("load-editor", move || {
            let loaded = editor::load(&dir);
            ctx.request_repaint();
            loaded
        }));
        self.chat.current = self.conversations_for(path).first().map(|c| c.id.clone());
    }

    /// Selects `path`, asking first when the current model has unsaved edits.
    pub fn request_select(&mut self, ctx: &egui::Context, path: &Path) {
        if self.has_unsaved_edits() && self.persisted.selected.as_deref() != Some(path) {
            self.pending_select = Some(path.to_path_buf());
        } else {
            self.select(ctx, path);
        }
    }

    pub fn selected_kind(&self) -> Option<FolderKind> {
        let path = self.persisted.selected.as_ref()?;
        self.entries.get(path).map(|info| info.kind)
    }

    // -- pickers ---------------------------------------------------------------------------

    /// Tries the library file the user picked; on success ModelDesk remembers it.
    pub fn use_runtime_library(&mut self, ctx: &egui::Context, path: PathBuf) {
        let dirs = self.dirs.clone();
        let ctx = ctx.clone();
        self.runtime = RuntimeStatus::Loading(Promise::spawn_thread("load-onnxruntime", move || {
            let result = runtime::load_picked(&path, dirs.as_ref()).map_err(|e| e.to_string());
            ctx.request_repaint();
            result
        }));
    }

    fn pick(ctx: &egui::Context, title: &'static str, folder: bool) -> Promise<Option<PathBuf>> {
        let ctx = ctx.clone();
        Promise::spawn_thread("file-dialog", move || {
            let dialog = rfd::AsyncFileDialog::new().set_title(title);
            let picked = if folder {
                pollster::block_on(dialog.pick_folder()).map(|f| f.path().to_path_buf())
            } else {
                pollster::block_on(dialog.pick_file()).map(|f| f.path().to_path_buf())
            };
            ctx.request_repaint();
            picked
        })
    }

    pub fn pick_runtime_library(&mut self, ctx: &egui::Context) {
        self.runtime_pick = Some(Self::pick(ctx, "Choose the ONNX Runtime library", false));
    }

    pub fn pick_model_folder(&mut self, ctx: &egui::Context) {
        self.folder_pick = Some(Self::pick(ctx, "Open a model folder", true));
    }

    pub fn pick_destination(&mut self, ctx: &egui::Context) {
        self.destination_pick = Some(Self::pick(ctx, "Choose where to write", true));
    }

    // -- model editor ----------------------------------------------------------------------

    pub fn save_model(&mut self, ctx: &egui::Context) {
        let Some(editor) = &self.editor else { return };
        if !editor.dirty || self.saving.is_some() {
            return;
        }
        match editor.build() {
            Ok((model, example)) => {
                let ctx = ctx.clone();
                self.saving = Some(Promise::spawn_thread("save-model", move || {
                    let result = editor::save(model, example);
                    ctx.request_repaint();
                    result
                }));
            }
            Err(message) => self.notify_error("Not saved: fix the marked fields first", Some(message)),
        }
    }

    // -- engine and chat -------------------------------------------------------------------

    fn ensure_worker(&mut self, ctx: &egui::Context) -> bool {
        if self.engine.worker.is_some() {
            return true;
        }
        let RuntimeStatus::Loaded(runtime) = self.runtime else {
            self.notify_error("ONNX Runtime is not loaded", None);
            return false;
        };
        let ctx = ctx.clone();
        let worker = Worker::spawn(runtime, Box::new(move || ctx.request_repaint()));
        self.engine.stopper = Some(worker.stopper());
        self.engine.worker = Some(worker);
        true
    }

    pub fn load_model(&mut self, ctx: &egui::Context) {
        let Some(path) = self.persisted.selected.clone() else { return };
        if !self.ensure_worker(ctx) {
            return;
        }
        if let Some(worker) = &self.engine.worker {
            worker.load(path.clone(), DecoderSettings::default());
        }
        self.engine.folder = Some(path);
        self.engine.loading = true;
        self.engine.error = None;
        self.engine.facts = None;
    }

    pub fn unload_model(&mut self) {
        self.stop_reply();
        if let Some(worker) = &self.engine.worker {
            worker.unload();
        }
        self.engine.facts = None;
        self.engine.folder = None;
    }

    /// Whether the loaded model is the selected one.
    pub fn model_ready(&self) -> bool {
        self.engine.facts.is_some() && self.engine.folder == self.persisted.selected && !self.engine.loading
    }

    pub fn conversations_for(&self, model: &Path) -> Vec<&Conversation> {
        self.chat.conversations.iter().filter(|c| c.model == model).collect()
    }

    fn load_conversations(&mut self) {
        let Some(store) = &self.chat_store else { return };
        let (conversations, errors) = store.load_all();
        self.chat.conversations = conversations;
        for error in errors {
            self.notify_error("A saved conversation could not be read", Some(error.to_string()));
        }
    }

    pub fn current_conversation(&self) -> Option<&Conversation> {
        let id = self.chat.current.as_ref()?;
        self.chat.conversations.iter().find(|c| &c.id == id)
    }

    pub fn current_conversation_mut(&mut self) -> Option<&mut Conversation> {
        let id = self.chat.current.clone()?;
        self.chat.conversations.iter_mut().find(|c| c.id == id)
    }

    pub fn new_conversation(&mut self) {
        let Some(model) = self.persisted.selected.clone() else { return };
        let conversation = Conversation::new(&model);
        self.chat.current = Some(conversation.id.clone());
        self.chat.conversations.insert(0, conversation);
        self.chat.draft.clear();
    }

    pub fn delete_conversation(&mut self, id: &str) {
        if self.chat.streaming.as_ref().is_some_and(|s| s.conversation == id) {
            self.stop_reply();
        }
        self.chat.conversations.retain(|c| c.id != id);
        if let Some(store) = &self.chat_store {
            if let Err(e) = store.delete(id) {
                self.notify_error("The conversation file could not be deleted", Some(e.to_string()));
            }
        }
        if self.chat.current.as_deref() == Some(id) {
            let model = self.persisted.selected.clone();
            self.chat.current = model.and_then(|m| self.conversations_for(&m).first().map(|c| c.id.clone()));
        }
    }

    pub fn persist_conversation(&mut self, id: &str) {
        let (Some(store), Some(conversation)) = (&self.chat_store, self.chat.conversations.iter().find(|c| c.id == id)) else {
            return;
        };
        // A conversation file is a few KB; its atomic write is the one small file operation the
        // GUI thread does, at the end of a reply or an edit.
        if let Err(e) = store.save(conversation) {
            let message = e.to_string();
            self.notify_error("The conversation could not be saved", Some(message));
        }
    }

    /// Sends the draft as a user message.
    pub fn send(&mut self, ctx: &egui::Context) {
        let text = self.chat.draft.trim().to_owned();
        if text.is_empty() || self.chat.streaming.is_some() || !self.model_ready() {
            return;
        }
        if self.current_conversation().is_none() {
            self.new_conversation();
        }
        if let Some(conversation) = self.current_conversation_mut() {
            conversation.push_user(&text);
        }
        self.chat.draft.clear();
        self.start_reply(ctx);
    }

    /// Generates the assistant reply to the conversation as it stands.
    pub fn start_reply(&mut self, _ctx: &egui::Context) {
        let Some(conversation) = self.current_conversation() else { return };
        let id = conversation.id.clone();
        let messages = conversation.prompt_messages();
        let settings = conversation.settings.clone();
        let options = GenerateOptions {
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
    pub fn regenerate(&mut self, ctx: &egui::Context) {
        if self.chat.streaming.is_some() || !self.model_ready() {
            return;
        }
        if let Some(conversation) = self.current_conversation_mut() {
            if conversation.messages.last().is_some_and(|m| m.role == Role::Assistant) {
                let keep = conversation.messages.len() - 1;
                conversation.truncate(keep);
            }
        }
        self.start_reply(ctx);
    }

    /// Replaces user message `index` and resends the conversation from there.
    pub fn resend_edited(&mut self, ctx: &egui::Context, index: usize, text: String) {
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
        self.start_reply(ctx);
    }

    fn handle_event(&mut self, event: Event) {
        match event {
            Event::Loading { .. } => self.engine.loading = true,
            Event::Loaded(facts) => {
                self.engine.loading = false;
                let name = facts.name.clone();
                for warning in &facts.warnings {
                    self.notify(format!("{name}: {warning}"));
                }
                self.engine.facts = Some(facts);
                self.notify(format!("{name} is loaded"));
            }
            Event::LoadFailed { path, message } => {
                self.engine.loading = false;
                self.engine.folder = None;
                self.engine.error = Some(message.clone());
                self.notify_error(format!("{} could not be loaded", path.display()), Some(message));
            }
            Event::Unloaded => {
                self.engine.loading = false;
            }
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

    // -- create / export -------------------------------------------------------------------

    pub fn open_dialog(&mut self, kind: DialogKind) {
        let Some(source) = self.persisted.selected.clone() else { return };
        let name = source.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let parent = source.parent().map(Path::to_path_buf).unwrap_or_default();
        let destination = match kind {
            DialogKind::Create => parent.join(format!("{name}-mlflow")),
            DialogKind::Export => parent.join(format!("{name}-export")),
        };
        self.dialog = Some(Dialog {
            kind,
            source,
            destination: destination.display().to_string(),
            task_chat: true,
            name,
            zip: false,
            job: None,
            outcome: None,
        });
    }

    /// Starts the dialog's job on a background thread.
    pub fn run_dialog(&mut self, ctx: &egui::Context) {
        let Some(dialog) = &mut self.dialog else { return };
        if dialog.job.is_some() {
            return;
        }
        let (sender, updates) = mpsc::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&cancel);
        let source = dialog.source.clone();
        let mut destination = PathBuf::from(dialog.destination.trim());
        let repaint = ctx.clone();
        let (title, work): (String, Box<dyn FnOnce(&mut dyn FnMut(CopyProgress), &AtomicBool) -> Result<PathBuf, String> + Send>) =
            match dialog.kind {
                DialogKind::Create => {
                    let options = crate::mlflow::create::CreateOptions {
                        task: if dialog.task_chat { crate::mlflow::create::Task::Chat } else { crate::mlflow::create::Task::Prompt },
                        name: Some(dialog.name.clone()).filter(|n| !n.trim().is_empty()),
                        python_version: None,
                    };
                    (
                        "Creating MLflow model".into(),
                        Box::new(move |progress, cancel| {
                            crate::mlflow::create::create_from_onnx(&source, &destination, &options, progress, cancel).map_err(|e| e.to_string())
                        }),
                    )
                }
                DialogKind::Export => {
                    let zip = dialog.zip;
                    if zip && destination.extension().is_none_or(|e| e != "zip") {
                        destination.set_extension("zip");
                    }
                    (
                        "Exporting package".into(),
                        Box::new(move |progress, cancel| {
                            crate::mlflow::export::export(&source, &destination, zip, progress, cancel).map_err(|e| e.to_string())
                        }),
                    )
                }
            };
        let result = Promise::spawn_thread("copy-job", move || {
            let mut report = |p: CopyProgress| {
                let _ = sender.send(p);
                repaint.request_repaint();
            };
            let outcome = work(&mut report, &flag);
            repaint.request_repaint();
            outcome
        });
        dialog.job = Some(Job { title, progress: None, cancel, updates, result });
    }

    pub fn cancel_dialog_job(&mut self) {
        if let Some(job) = self.dialog.as_ref().and_then(|d| d.job.as_ref()) {
            job.cancel.store(true, Ordering::Relaxed);
        }
    }

    // -- every frame -----------------------------------------------------------------------

    /// Folds finished background work into state. Called every frame; never blocks.
    pub fn poll(&mut self, ctx: &egui::Context) {
        if let RuntimeStatus::Loading(promise) = &self.runtime {
            if let Some(result) = promise.ready() {
                self.runtime = match result {
                    Ok(runtime) => RuntimeStatus::Loaded(runtime),
                    Err(message) => RuntimeStatus::Missing { message: message.clone() },
                };
            }
        }
        if let Some(picked) = self.runtime_pick.as_ref().and_then(|p| p.ready().cloned()) {
            self.runtime_pick = None;
            if let Some(path) = picked {
                self.use_runtime_library(ctx, path);
            }
        }
        if let Some(picked) = self.folder_pick.as_ref().and_then(|p| p.ready().cloned()) {
            self.folder_pick = None;
            if let Some(path) = picked {
                self.open_folder(ctx, &path);
            }
        }
        if let Some(picked) = self.destination_pick.as_ref().and_then(|p| p.ready().cloned()) {
            self.destination_pick = None;
            if let (Some(path), Some(dialog)) = (picked, self.dialog.as_mut()) {
                let name = PathBuf::from(&dialog.destination).file_name().map(|n| n.to_owned()).unwrap_or_default();
                dialog.destination = path.join(name).display().to_string();
            }
        }
        let mut finished_scans = Vec::new();
        self.scans.retain(|(path, promise)| match promise.ready() {
            Some(info) => {
                finished_scans.push((path.clone(), info.clone()));
                false
            }
            None => true,
        });
        for (path, info) in finished_scans {
            self.entries.insert(path, info);
        }
        if let Some(loaded) = self.editor_load.take_if(|p| p.ready().is_some()) {
            if let Ok(loaded) = loaded.try_take() {
                if Some(&loaded.dir) == self.persisted.selected.as_ref() {
                    let editor = ModelEditor::new(loaded);
                    if !editor.is_mlflow() && self.tab == Tab::Model && editor.onnx.is_none() {
                        self.tab = Tab::Chat;
                    }
                    self.editor = Some(editor);
                }
            }
        }
        if let Some(saving) = self.saving.take_if(|p| p.ready().is_some()) {
            if let Ok(result) = saving.try_take() {
                match result {
                    Ok(report) => {
                        self.notify(if report.is_usable() { "Saved" } else { "Saved, but the folder still has errors" });
                        if let Some(path) = self.persisted.selected.clone() {
                            self.rescan(ctx, &path);
                            let next = self.pending_select.take().unwrap_or(path);
                            self.select(ctx, &next);
                        }
                    }
                    Err(message) => self.notify_error("Saving failed; the files were left as they were", Some(message)),
                }
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
        let mut job_done = None;
        if let Some(job) = self.dialog.as_mut().and_then(|d| d.job.as_mut()) {
            while let Ok(progress) = job.updates.try_recv() {
                job.progress = Some(progress);
            }
            if job.result.ready().is_some() {
                job_done = Some(());
            }
        }
        if job_done.is_some() {
            let finished = self.dialog.as_mut().and_then(|dialog| dialog.job.take().map(|job| (dialog.kind, job)));
            if let Some((kind, job)) = finished {
                let outcome = job.result.block_and_take();
                if let Ok(path) = &outcome {
                    self.notify(format!("Wrote {}", path.display()));
                    if kind == DialogKind::Create || !path.extension().is_some_and(|e| e == "zip") {
                        self.open_folder_quietly(ctx, path);
                    }
                }
                if let Some(dialog) = self.dialog.as_mut() {
                    dialog.outcome = Some(outcome);
                }
            }
        }
        // Notices fade after a few seconds; errors stay until dismissed.
        let lifetime = Duration::from_secs(6);
        self.notices.retain(|n| n.error || n.shown.elapsed() < lifetime);
        if let Some(next) = self.notices.iter().filter(|n| !n.error).map(|n| lifetime.saturating_sub(n.shown.elapsed())).min() {
            ctx.request_repaint_after(next);
        }
        self.update_title(ctx);
    }

    /// Adds a new folder to the library without selecting it.
    fn open_folder_quietly(&mut self, ctx: &egui::Context, path: &Path) {
        if !self.persisted.library.iter().any(|entry| entry.path == path) {
            self.persisted.library.push(LibraryEntry { path: path.to_path_buf() });
            self.rescan(ctx, path);
        }
    }

    pub fn has_unsaved_edits(&self) -> bool {
        self.editor.as_ref().is_some_and(|e| e.dirty)
    }

    fn update_title(&mut self, ctx: &egui::Context) {
        let title = match self.selected_entry() {
            Some(entry) => format!("{}{} — ModelDesk", entry.name(), if self.has_unsaved_edits() { " •" } else { "" }),
            None => "ModelDesk".into(),
        };
        if title != self.title {
            ctx.send_viewport_cmd(egui::ViewportCommand::Title(title.clone()));
            self.title = title;
        }
    }

    /// Whether anything is still running in the background (tests and benchmarks wait on it).
    pub fn is_busy(&self) -> bool {
        matches!(self.runtime, RuntimeStatus::Loading(_))
            || !self.scans.is_empty()
            || self.editor_load.is_some()
            || self.saving.is_some()
            || self.engine.loading
            || self.chat.streaming.is_some()
            || self.dialog.as_ref().is_some_and(|d| d.job.is_some())
    }
}

fn load_runtime_in_background(ctx: &egui::Context, candidates: Candidates) -> RuntimeStatus {
    let ctx = ctx.clone();
    RuntimeStatus::Loading(Promise::spawn_thread("load-onnxruntime", move || {
        let result = runtime::load(&candidates).map_err(|e| e.to_string());
        ctx.request_repaint();
        result
    }))
}

/// The eframe application.
pub struct ModelDeskApp {
    pub state: AppState,
}

const STORAGE_KEY: &str = "modeldesk";

impl ModelDeskApp {
    pub fn new(cc: &eframe::CreationContext<'_>, startup: StartupOptions) -> Self {
        let persisted = cc.storage.and_then(|storage| eframe::get_value(storage, STORAGE_KEY)).unwrap_or_default();
        cc.egui_ctx.options_mut(|o| o.theme_preference = egui::ThemePreference::System);
        crate::ui::style(&cc.egui_ctx);
        Self { state: AppState::new(&cc.egui_ctx, startup, persisted) }
    }
}

impl eframe::App for ModelDeskApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.state.poll(ctx);
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        crate::ui::show(ui, &mut self.state);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, STORAGE_KEY, &self.state.persisted);
    }
}

/// Opens the window; returns when it closes.
pub fn run_window(open: Option<PathBuf>) -> anyhow::Result<()> {
    let startup = StartupOptions::from_environment(open);
    let icon = eframe::icon_data::from_png_bytes(include_bytes!("../../assets/icons/256.png")).unwrap_or_default();
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_icon(Arc::new(icon))
            .with_title("ModelDesk")
            .with_app_id("org.modeldesk.ModelDesk")
            .with_inner_size([1180.0, 760.0])
            .with_min_inner_size([720.0, 480.0])
            .with_drag_and_drop(true),
        persistence_path: startup.dirs.as_ref().map(|dirs| dirs.data.join("app.ron")),
        ..Default::default()
    };
    eframe::run_native("ModelDesk", options, Box::new(move |cc| Ok(Box::new(ModelDeskApp::new(cc, startup)))))
        .map_err(|e| anyhow::anyhow!("the window could not be opened: {e}"))
}
