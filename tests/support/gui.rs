//! The kittest harness idioms every GUI test uses: the real app with its own home, stepping
//! until background work has reported, and a package made the way `create` makes it.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use egui::accesskit::Role;
use egui_kittest::{Harness, kittest::Queryable as _};
use modeldesk::{
    app::StartupOptions,
    app_dirs::AppDirs,
    gui::ModelDeskApp,
    mlflow::create::{CreateOptions, Task, create_from_onnx},
    runtime::Candidates,
};

/// The real app with `home` as its data folder, in a window of `size` points.
pub fn app_sized(home: &Path, size: [f32; 2]) -> Harness<'static, ModelDeskApp> {
    let startup = StartupOptions { open: None, candidates: Candidates::discover(None), dirs: Some(AppDirs::under(home)) };
    Harness::builder().with_size(size).build_eframe(|cc| ModelDeskApp::new(cc, startup))
}

/// Steps until `done` holds. Background work (a thread, a server, the network) reports through
/// repaints, and may be slow on a busy machine: the bound only catches a hang.
pub fn step_until(harness: &mut Harness<'_, ModelDeskApp>, what: &str, done: impl Fn(&Harness<'_, ModelDeskApp>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done(harness) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
        harness.step();
    }
}

/// Lets queued input arrive (one event per frame), then waits until no background work runs.
pub fn idle(harness: &mut Harness<'_, ModelDeskApp>) {
    harness.run_steps(5);
    step_until(harness, "background work to finish", |h| !h.state().state.is_busy());
    harness.run_steps(3);
}

/// An MLflow package of the tiny fixture, as `modeldesk create` writes it.
pub fn create_package(out: &Path, task: Task) {
    let options = CreateOptions { task, name: None, python_version: Some("3.11.7".into()) };
    create_from_onnx(&super::tiny_phi3(), out, &options, &mut |_| {}, &std::sync::atomic::AtomicBool::new(false))
        .unwrap_or_else(|e| panic!("creating {}: {e}", out.display()));
}

/// A folder dropped on the window, as the desktop hands it over (a path, no bytes).
#[derive(Debug)]
struct DroppedFolder(PathBuf);

impl egui::DroppedFile for DroppedFolder {
    fn path(&self) -> &Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        Err("a folder has no bytes".into())
    }
}

/// Drops `path` on the window and lets one frame take it.
pub fn drop_folder(harness: &mut Harness<'_, ModelDeskApp>, path: &Path) {
    harness.input_mut().dropped_files.push(Arc::new(DroppedFolder(path.to_path_buf())));
    harness.step();
}

/// Types `text` into the text field labelled `label`.
pub fn type_into(harness: &mut Harness<'_, ModelDeskApp>, label: &str, text: &str) {
    harness.get_by_role_and_label(Role::TextInput, label).focus();
    harness.step();
    harness.get_by_role_and_label(Role::TextInput, label).type_text(text);
    harness.run_steps(3);
}
