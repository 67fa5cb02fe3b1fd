//! The eframe glue above `app` and `ui`: the window, its style and persistence, and each frame's
//! loop — `app` folds in background results, `ui` draws and returns intents, `app` applies them.

use std::{path::PathBuf, sync::Arc};

use eframe::glow;

use crate::app::{AppState, StartupOptions};

/// The eframe application.
pub struct ModelDeskApp {
    pub state: AppState,
}

const STORAGE_KEY: &str = "modeldesk";

impl ModelDeskApp {
    pub fn new(cc: &eframe::CreationContext<'_>, startup: StartupOptions) -> Self {
        let persisted = cc.storage.and_then(|storage| eframe::get_value(storage, STORAGE_KEY)).unwrap_or_default();
        cc.egui_ctx.options_mut(|o| o.theme_preference = egui::ThemePreference::System);
        style(&cc.egui_ctx);
        Self { state: AppState::new(&cc.egui_ctx, startup, persisted) }
    }
}

impl eframe::App for ModelDeskApp {
    fn logic(&mut self, _ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.state.poll();
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        for intent in crate::ui::show(ui, &mut self.state) {
            self.state.apply(intent);
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, STORAGE_KEY, &self.state.persisted);
    }

    fn on_exit(&mut self, _gl: Option<&glow::Context>) {
        self.state.flush_conversations();
    }
}

impl Drop for ModelDeskApp {
    /// Also reached when the window's loop ends by a panic that `run_window` catches (a window
    /// destroyed from outside): what was typed and answered is still written.
    fn drop(&mut self) {
        self.state.flush_conversations();
    }
}

/// Spacing and text sizes shared by every view.
pub fn style(ctx: &egui::Context) {
    ctx.all_styles_mut(|style| {
        style.spacing.item_spacing = egui::vec2(8.0, 6.0);
        style.spacing.button_padding = egui::vec2(8.0, 4.0);
        style.spacing.interact_size.y = 24.0;
    });
}

/// Opens the window; returns when it closes.
pub fn run_window(open: Option<PathBuf>) -> anyhow::Result<()> {
    let startup = StartupOptions::from_environment(open);
    let icon = eframe::icon_data::from_png_bytes(include_bytes!("../assets/icons/256.png")).unwrap_or_default();
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
    let run = std::panic::AssertUnwindSafe(|| eframe::run_native("ModelDesk", options, Box::new(move |cc| Ok(Box::new(ModelDeskApp::new(cc, startup))))));
    match std::panic::catch_unwind(run) {
        Ok(result) => result.map_err(|e| anyhow::anyhow!("the window could not be opened: {e}")),
        Err(payload) if crate::crash::is_window_lost(payload.as_ref()) => {
            // The app (and with it the conversation writer) was dropped while unwinding.
            eprintln!("The window was destroyed from outside; conversations were saved. Settings changed in the last 30 s may be lost.");
            Ok(())
        }
        Err(payload) => std::panic::resume_unwind(payload),
    }
}
