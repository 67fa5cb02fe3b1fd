//! The layering ARCHITECTURE.md describes, checked on the sources: views draw and return
//! intents (no file access in `ui`), `app` never reaches into `ui`, `gui` or `cli`, and the
//! libraries know nothing of egui.

use std::path::{Path, PathBuf};

fn sources(dir: &str) -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir);
    let mut found = Vec::new();
    let mut stack = vec![root.clone()];
    if root.is_file() {
        return vec![(root.clone(), std::fs::read_to_string(&root).unwrap())];
    }
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                found.push((path, text));
            }
        }
    }
    found
}

fn offending(files: &[(PathBuf, String)], needles: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for (path, text) in files {
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for needle in needles {
                if code.contains(needle) {
                    out.push(format!("{}:{}: {}", path.display(), number + 1, line.trim()));
                }
            }
        }
    }
    out
}

#[test]
fn views_touch_no_files() {
    let views = sources("ui");
    assert!(views.len() >= 5, "the ui module's files were found ({})", views.len());
    let found = offending(&views, &["std::fs", "File::", "read_dir", ".exists()", ".is_dir()", ".is_file()", "symlink_metadata", "open::", "std::process"]);
    assert!(found.is_empty(), "file or process access in ui (return an Intent instead):\n{}", found.join("\n"));
}

#[test]
fn app_does_not_import_the_views_or_the_command_line() {
    let app = sources("app");
    assert!(app.len() >= 5, "the app module's files were found ({})", app.len());
    let found = offending(&app, &["crate::ui", "crate::gui", "crate::cli", "super::ui", "eframe::"]);
    assert!(found.is_empty(), "app must not depend on ui, gui, cli or eframe:\n{}", found.join("\n"));
}

#[test]
fn libraries_know_nothing_of_egui() {
    let mut libraries = Vec::new();
    for module in ["engine", "mlflow", "chat", "runtime.rs", "session.rs", "service.rs", "inspect.rs", "cli"] {
        libraries.extend(sources(module));
    }
    assert!(libraries.len() >= 20, "the library modules' files were found ({})", libraries.len());
    let found = offending(&libraries, &["egui", "eframe", "crate::app::", "crate::{app", "crate::ui", "crate::gui"]);
    assert!(found.is_empty(), "libraries must not depend on the GUI:\n{}", found.join("\n"));
}
