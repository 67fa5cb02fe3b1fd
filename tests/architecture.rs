//! The layering ARCHITECTURE.md describes, checked on the sources: views draw and return
//! intents (no file access in `ui`), `app` never reaches into `ui`, `gui` or `cli`, and the
//! libraries know nothing of egui.

use std::path::{Path, PathBuf};

/// The sources of a module: `src/<module>/**.rs`, or `src/<module>.rs` for a one-file module.
fn sources(module: &str) -> Vec<(PathBuf, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let root = src.join(module);
    if !root.is_dir() {
        let file = src.join(format!("{module}.rs"));
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("module {module}: {}: {e}", file.display()));
        return vec![(file, text)];
    }
    let mut found = Vec::new();
    let mut stack = vec![root.clone()];
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

/// Every module `src/lib.rs` declares, except the GUI's own (`app`, `ui`, `gui`): a module
/// added later is checked without anyone remembering to list it here.
fn library_modules() -> Vec<String> {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    lib.lines()
        .filter_map(|line| line.trim().strip_prefix("pub mod ")?.strip_suffix(';').map(str::to_owned))
        .filter(|name| !["app", "ui", "gui"].contains(&name.as_str()))
        .collect()
}

#[test]
fn libraries_know_nothing_of_egui() {
    let modules = library_modules();
    for expected in ["engine", "mlflow", "chat", "runtime", "session", "service", "inspect", "cli", "server", "engine_queue"] {
        assert!(modules.iter().any(|m| m == expected), "src/lib.rs declares `{expected}` ({modules:?})");
    }
    let mut libraries = Vec::new();
    for module in &modules {
        libraries.extend(sources(module));
    }
    assert!(libraries.len() >= 30, "the library modules' files were found ({})", libraries.len());
    let found = offending(&libraries, &["egui", "eframe", "crate::app::", "crate::{app", "crate::ui", "crate::gui"]);
    assert!(found.is_empty(), "libraries must not depend on the GUI:\n{}", found.join("\n"));
}
