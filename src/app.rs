//! Application state: what the window shows, and the routing of user actions to workers and of
//! worker results back into state. Drawing lives in `ui`.

use std::path::{Path, PathBuf};

use poll_promise::Promise;

use crate::{
    app_dirs::AppDirs,
    runtime::{self, Candidates, Runtime},
};

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

pub struct AppState {
    pub persisted: Persisted,
    pub runtime: RuntimeStatus,
    pub dirs: Option<AppDirs>,
    /// A file dialog in progress for the runtime library.
    pub runtime_pick: Option<Promise<Option<PathBuf>>>,
    /// A file dialog in progress for a model folder.
    pub folder_pick: Option<Promise<Option<PathBuf>>>,
    pub notice: Option<String>,
}

impl AppState {
    pub fn new(ctx: &egui::Context, startup: StartupOptions, persisted: Persisted) -> Self {
        let mut state = Self {
            persisted,
            runtime: RuntimeStatus::Missing { message: String::new() },
            dirs: startup.dirs,
            runtime_pick: None,
            folder_pick: None,
            notice: None,
        };
        state.runtime = load_runtime_in_background(ctx, startup.candidates);
        if let Some(path) = startup.open {
            state.open_folder(&path);
        }
        state
    }

    /// Adds a folder to the library (once) and selects it.
    pub fn open_folder(&mut self, path: &Path) {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        if !self.persisted.library.iter().any(|entry| entry.path == path) {
            self.persisted.library.push(LibraryEntry { path: path.clone() });
        }
        self.persisted.selected = Some(path);
    }

    pub fn selected_entry(&self) -> Option<&LibraryEntry> {
        let selected = self.persisted.selected.as_ref()?;
        self.persisted.library.iter().find(|entry| &entry.path == selected)
    }

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

    /// Opens the system file picker for the runtime library (off the GUI thread).
    pub fn pick_runtime_library(&mut self, ctx: &egui::Context) {
        let ctx = ctx.clone();
        self.runtime_pick = Some(Promise::spawn_thread("pick-onnxruntime", move || {
            let picked = pollster::block_on(
                rfd::AsyncFileDialog::new().set_title("Choose the ONNX Runtime library").pick_file(),
            )
            .map(|file| file.path().to_path_buf());
            ctx.request_repaint();
            picked
        }));
    }

    /// Opens the system folder picker for a model folder.
    pub fn pick_model_folder(&mut self, ctx: &egui::Context) {
        let ctx = ctx.clone();
        self.folder_pick = Some(Promise::spawn_thread("pick-folder", move || {
            let picked = pollster::block_on(rfd::AsyncFileDialog::new().set_title("Open a model folder").pick_folder())
                .map(|folder| folder.path().to_path_buf());
            ctx.request_repaint();
            picked
        }));
    }

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
                self.open_folder(&path);
            }
        }
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
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
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
