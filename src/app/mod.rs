//! Application state: what the window shows, and the routing of user intents to background
//! work (promises, the engine worker, jobs) and of their results back into state. `ui` draws
//! this state and returns [`Intent`]s; `app` applies them and owns every file and thread. It
//! never imports `ui` (the eframe glue in `gui` sits above both), and nothing here blocks the
//! GUI thread.

mod chat;
mod chat_traces;
mod context;
mod conversations;
mod convert;
pub mod editor;
mod get_model;
mod intent;
mod jobs;
mod library;
mod path_entry;
mod publish;
mod registry;
mod registry_browse;
mod remote_chat;
mod serve;

use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use poll_promise::Promise;

pub use chat::{EngineState, Streaming};
pub use conversations::{ChatState, ConversationExport, DeletedConversation, UNDO_DELETE};
pub use context::{BlockedChoice, BlockedSend, ContextState, PromptCount};
pub use convert::{CheckpointSummary, ConvertDialog, ConvertIntent, ConvertSettings, ConvertState, PackageDialog, PackageKind};
pub use editor::ModelEditor;
pub use get_model::{ActiveDownload, CacheScan, DownloadStatus, GetModel, GetModelIntent};
pub use intent::{CloseChoice, Intent, SwitchChoice};
pub use jobs::{DestinationState, Dialog, DialogKind, Job};
pub use library::{LibraryEntry, ModelChoices};
pub use path_entry::PathEntry;
pub use chat_traces::{DEFAULT_TRACE_EXPERIMENT, TraceState};
pub use publish::PublishDialog;
pub use registry::{ConnectionStatus, RegistryIntent, RegistryState};
pub use registry_browse::{Browse, BrowseIntent, BrowseState, PagedList, artifact_name};
pub use remote_chat::{EndpointForm, EndpointKind, RemoteBackend, RemoteIntent, RemoteState, RemoteStatus};
pub use serve::{ServeSettings, ServeState};

pub use crate::inspect::{EntryInfo, FolderKind};
use crate::{
    app_dirs::AppDirs,
    chat::ChatStore,
    runtime::{self, Candidates, Runtime},
};

/// What the app knows about ONNX Runtime.
pub enum RuntimeStatus {
    Loading(Promise<Result<&'static Runtime, String>>),
    Loaded(&'static Runtime),
    Missing { message: String },
}

/// State kept between sessions.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Persisted {
    pub library: Vec<LibraryEntry>,
    pub selected: Option<PathBuf>,
    pub serve: ServeSettings,
    /// The system prompt a new chat starts with.
    pub default_system_prompt: String,
    /// "Convert to ONNX": the Python, precision and provider last used.
    pub convert: ConvertSettings,
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

pub struct AppState {
    /// Wakes the window when background work reports (cloned into every promise and service).
    ctx: egui::Context,
    pub persisted: Persisted,
    pub runtime: RuntimeStatus,
    pub dirs: Option<AppDirs>,
    pub runtime_pick: Option<Promise<Option<PathBuf>>>,
    pub folder_pick: Option<Promise<Option<PathBuf>>>,
    /// The path field (welcome view and "Open path" window).
    pub path_entry: PathEntry,
    /// A path being classified (opened, dropped or typed).
    opening: Option<Promise<crate::inspect::Opened>>,
    /// Model folders found beneath an opened folder, waiting for the user's pick.
    pub model_choices: Option<ModelChoices>,
    pub destination_pick: Option<Promise<Option<PathBuf>>>,
    pub entries: HashMap<PathBuf, EntryInfo>,
    scans: Vec<(PathBuf, Promise<EntryInfo>)>,
    pub tab: Tab,
    pub editor: Option<ModelEditor>,
    editor_load: Option<Promise<editor::Loaded>>,
    pub saving: Option<Promise<Result<std::sync::Arc<crate::mlflow::validate::Report>, String>>>,
    pub engine: EngineState,
    pub chat: ChatState,
    /// The local server (the "Serve" switch).
    pub serve: ServeState,
    pub chat_store: Option<ChatStore>,
    pub dialog: Option<Dialog>,
    tasks: Vec<Promise<jobs::TaskOutcome>>,
    pub notices: Vec<Notice>,
    pub about_open: bool,
    pub shortcuts_open: bool,
    pub confirm_close: bool,
    pub allow_close: bool,
    pub memory_bytes: Option<u64>,
    /// A crash log from an earlier run the user has not seen yet.
    pub crash_report: Option<PathBuf>,
    /// The "Get a model" view: catalog, cache scan, download.
    pub get_model: GetModel,
    crash_check: Option<Promise<Option<PathBuf>>>,
    /// A library entry the user clicked while the model had unsaved edits (asks first).
    pub pending_select: Option<PathBuf>,
    title: String,
    /// The MLflow Registry view and the Publish dialog (`registry`).
    pub registry: RegistryState,
    /// The chat's remote backend: "Run with MLflow" or an endpoint URL (`remote_chat`).
    pub remote: RemoteState,
    /// Hugging Face checkpoints: summary, packaging and conversion (`convert`).
    pub convert: ConvertState,
}

impl AppState {
    pub fn new(ctx: &egui::Context, startup: StartupOptions, persisted: Persisted) -> Self {
        let chat_store = startup.dirs.as_ref().map(|dirs| ChatStore::new(&dirs.data));
        let mut state = Self {
            ctx: ctx.clone(),
            persisted,
            runtime: load_runtime_in_background(ctx, startup.candidates),
            dirs: startup.dirs,
            runtime_pick: None,
            folder_pick: None,
            path_entry: PathEntry::default(),
            opening: None,
            model_choices: None,
            destination_pick: None,
            entries: HashMap::new(),
            scans: Vec::new(),
            tab: Tab::Chat,
            editor: None,
            editor_load: None,
            saving: None,
            engine: EngineState::default(),
            chat: ChatState::default(),
            serve: ServeState::default(),
            chat_store,
            dialog: None,
            tasks: Vec::new(),
            notices: Vec::new(),
            about_open: false,
            shortcuts_open: false,
            confirm_close: false,
            allow_close: false,
            memory_bytes: None,
            crash_report: None,
            get_model: GetModel::default(),
            crash_check: None,
            pending_select: None,
            title: String::new(),
            registry: RegistryState::default(),
            remote: RemoteState::default(),
            convert: ConvertState::default(),
        };
        if let Some(dirs) = state.dirs.clone() {
            state.crash_check = Some(state.spawn("crash-report", move || crate::crash::unreported(&dirs)));
        }
        state.load_conversations();
        let paths: Vec<PathBuf> = state.persisted.library.iter().map(|e| e.path.clone()).collect();
        for path in paths {
            state.rescan(&path);
        }
        if let Some(path) = startup.open {
            state.open_path(&path);
        } else if let Some(selected) = state.persisted.selected.clone() {
            state.select(&selected);
        }
        state
    }

    pub fn notify(&mut self, text: impl Into<String>) {
        self.notices.push(Notice { text: text.into(), details: None, error: false, shown: Instant::now() });
    }

    pub fn notify_error(&mut self, text: impl Into<String>, details: Option<String>) {
        self.notices.push(Notice { text: text.into(), details, error: true, shown: Instant::now() });
    }

    /// A closure that wakes the window, for background threads.
    fn waker(&self) -> impl Fn() + Send + Sync + 'static {
        let ctx = self.ctx.clone();
        move || ctx.request_repaint()
    }

    /// Runs `work` on a named thread and wakes the window when it is done.
    fn spawn<T: Send + 'static>(&self, name: &'static str, work: impl FnOnce() -> T + Send + 'static) -> Promise<T> {
        let wake = self.waker();
        Promise::spawn_thread(name, move || {
            let result = work();
            wake();
            result
        })
    }

    /// Folds finished background work into state. Called every frame; never blocks.
    pub fn poll(&mut self) {
        if let RuntimeStatus::Loading(promise) = &self.runtime {
            if let Some(result) = promise.ready() {
                self.runtime = match result {
                    Ok(runtime) => RuntimeStatus::Loaded(runtime),
                    Err(message) => RuntimeStatus::Missing { message: message.clone() },
                };
            }
        }
        if let Some(report) = self.crash_check.take_if(|p| p.ready().is_some()).and_then(|p| p.try_take().ok()) {
            self.crash_report = report;
        }
        self.poll_library();
        self.poll_path_entry();
        self.poll_engine();
        self.poll_remote();
        self.poll_conversations();
        self.poll_serve();
        self.poll_jobs();
        self.poll_registry();
        self.poll_get_model();
        self.poll_convert();
        // Notices fade after a few seconds; errors stay until dismissed.
        let lifetime = Duration::from_secs(6);
        self.notices.retain(|n| n.error || n.shown.elapsed() < lifetime);
        if let Some(next) = self.notices.iter().filter(|n| !n.error).map(|n| lifetime.saturating_sub(n.shown.elapsed())).min() {
            self.ctx.request_repaint_after(next);
        }
        self.update_title();
    }

    pub fn has_unsaved_edits(&self) -> bool {
        self.editor.as_ref().is_some_and(|e| e.dirty)
    }

    fn update_title(&mut self) {
        let title = match self.selected_entry() {
            Some(entry) => format!("{}{} — ModelDesk", entry.name(), if self.has_unsaved_edits() { " •" } else { "" }),
            None => "ModelDesk".into(),
        };
        if title != self.title {
            self.ctx.send_viewport_cmd(egui::ViewportCommand::Title(title.clone()));
            self.title = title;
        }
    }

    /// Whether anything is still running in the background (tests and benchmarks wait on it).
    pub fn is_busy(&self) -> bool {
        matches!(self.runtime, RuntimeStatus::Loading(_))
            || self.crash_check.is_some()
            || !self.scans.is_empty()
            || self.opening.is_some()
            || self.editor_load.is_some()
            || self.saving.is_some()
            || self.engine.is_loading()
            || self.chat.streaming.is_some()
            || self.chat.is_busy()
            || self.chat.context.is_busy()
            || self.path_entry.is_busy()
            || self.serve.is_busy()
            || self.dialog.as_ref().is_some_and(|d| d.job.is_some())
            || !self.tasks.is_empty()
            || self.registry.is_busy()
            || self.remote.is_busy()
            || self.get_model.is_busy()
            || self.convert.is_busy()
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
