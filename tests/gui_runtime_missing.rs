//! Starting where no candidate library loads shows what was tried and a picker; choosing the
//! right file then loads ONNX Runtime. (Its own test binary: the runtime is loaded once per
//! process, so this must start with none.)

mod support;

use std::time::{Duration, Instant};

use egui_kittest::{Harness, kittest::Queryable as _};
use modeldesk::{
    app::StartupOptions,
    gui::ModelDeskApp,
    app_dirs::AppDirs,
    runtime::Candidates,
};

fn step_until(harness: &mut Harness<'_, ModelDeskApp>, what: &str, done: impl Fn(&Harness<'_, ModelDeskApp>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(harness) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
        harness.step();
    }
}

#[test]
fn missing_runtime_shows_the_attempts_and_picking_the_library_works() {
    let scratch = tempfile::tempdir().unwrap();
    let fake = scratch.path().join("libonnxruntime.so");
    std::fs::write(&fake, "not a library").unwrap();
    let empty_exe_dir = scratch.path().join("bin");
    std::fs::create_dir_all(&empty_exe_dir).unwrap();
    let dirs = AppDirs::under(&scratch.path().join("home"));
    let candidates =
        Candidates::from_locations(Some(fake.clone()), Some(&empty_exe_dir), Some(&dirs.runtime_library_dir()));
    let startup = StartupOptions { open: None, candidates, dirs: Some(dirs.clone()) };
    let mut harness = Harness::new_eframe(|cc| ModelDeskApp::new(cc, startup));

    step_until(&mut harness, "the missing-runtime message", |h| h.query_by_label("ONNX Runtime is missing").is_some());
    assert!(harness.query_by_label_contains(&fake.display().to_string()).is_some(), "the tried path is shown");
    assert!(harness.query_by_label("Choose ONNX Runtime library…").is_some(), "the picker button is shown");
    assert!(harness.query_by_label("ONNX Runtime not loaded").is_some());

    // What the picker does with the chosen file.
    let library = support::runtime_library();
    harness.state_mut().state.use_runtime_library(library);
    step_until(&mut harness, "the runtime to load", |h| h.query_by_label_contains(" ready").is_some());
    assert!(harness.query_by_label("ONNX Runtime is missing").is_none());
    // The choice is remembered in the data directory for the next start.
    assert!(dirs.runtime_library_dir().read_dir().unwrap().next().is_some());
}
