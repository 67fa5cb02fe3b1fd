//! What a path the user opened or dropped holds: a model folder to open, several to choose from,
//! something ModelDesk recognises but cannot run (with what to do instead), or nothing.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::model_folder_for;
use crate::{engine::folder::GENAI_CONFIG, mlflow::mlmodel::MLMODEL};

/// How far the search for model folders beneath an opened folder goes.
#[derive(Debug, Clone, Copy)]
pub struct SearchLimits {
    pub max_depth: usize,
    pub max_entries: usize,
    pub max_time: Duration,
    pub max_found: usize,
}

impl Default for SearchLimits {
    fn default() -> Self {
        // Deep enough for a Hugging Face cache entry (models--org--name/snapshots/<rev>/<variant
        // folders>/<model>), bounded so a home folder does not stall the search.
        Self { max_depth: 6, max_entries: 50_000, max_time: Duration::from_secs(3), max_found: 100 }
    }
}

/// A model format ModelDesk recognises but does not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Foreign {
    /// A llama.cpp GGUF file (or a folder of them).
    Gguf,
    /// A Hugging Face transformers checkpoint (config.json with safetensors or PyTorch weights).
    Checkpoint,
}

impl Foreign {
    pub fn label(self) -> &'static str {
        match self {
            Foreign::Gguf => "GGUF model (llama.cpp)",
            Foreign::Checkpoint => "Hugging Face checkpoint (PyTorch / safetensors)",
        }
    }

    /// What the user can do instead, in one or two sentences.
    pub fn next_step(self) -> &'static str {
        match self {
            Foreign::Gguf => "ModelDesk runs ONNX models with ONNX Runtime, not GGUF files. Get the ONNX release of the same model (Get a model… lists the Phi ONNX releases), or open it in a GGUF runner such as llama.cpp, Ollama or LM Studio.",
            Foreign::Checkpoint => "ModelDesk runs the ONNX form of Phi models. Get the ONNX release (Get a model…), or convert this checkpoint with onnxruntime-genai's model builder (python -m onnxruntime_genai.models.builder -i <this folder> -o <output> -p int4 -e cpu) and open the output.",
        }
    }
}

/// What an opened path turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// A model folder (or a file inside one): open it.
    Model(PathBuf),
    /// Model folders beneath an ordinary folder: the user picks one. `complete` is false when the
    /// search stopped at its limits.
    Choices { root: PathBuf, folders: Vec<PathBuf>, complete: bool },
    /// A format ModelDesk knows but does not run.
    Foreign { path: PathBuf, kind: Foreign },
    /// Nothing ModelDesk recognises.
    Nothing { path: PathBuf },
}

/// Classifies a path the user opened or dropped. Reads the file system (bounded): call it off
/// the GUI thread.
pub fn resolve(path: &Path, limits: SearchLimits) -> Opened {
    if let Some(folder) = model_folder_for(path) {
        return Opened::Model(folder);
    }
    if let Some(kind) = foreign_kind(path) {
        return Opened::Foreign { path: path.to_path_buf(), kind };
    }
    if path.is_dir() {
        let (mut folders, complete) = models_beneath(path, limits);
        if folders.len() == 1 && complete {
            return Opened::Model(folders.remove(0));
        }
        if !folders.is_empty() {
            return Opened::Choices { root: path.to_path_buf(), folders, complete };
        }
    }
    Opened::Nothing { path: path.to_path_buf() }
}

/// A GGUF file or a folder holding one; a transformers checkpoint folder.
pub fn foreign_kind(path: &Path) -> Option<Foreign> {
    let is_gguf = |p: &Path| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    if path.is_file() {
        return is_gguf(path).then_some(Foreign::Gguf);
    }
    let names: Vec<PathBuf> = std::fs::read_dir(path).ok()?.flatten().take(10_000).map(|e| e.path()).collect();
    if names.iter().any(|p| is_gguf(p)) {
        return Some(Foreign::Gguf);
    }
    let weights = names.iter().any(|p| {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        name.ends_with(".safetensors") || (name.starts_with("pytorch_model") && name.ends_with(".bin"))
    });
    (weights && path.join("config.json").is_file()).then_some(Foreign::Checkpoint)
}

/// Model folders (an `MLmodel` or a `genai_config.json`) beneath `root`, breadth first, within
/// the limits; a model folder's own subfolders are not searched (an MLflow package's wrapped
/// Phi folder belongs to it). The flag says whether the search finished.
pub fn models_beneath(root: &Path, limits: SearchLimits) -> (Vec<PathBuf>, bool) {
    let started = Instant::now();
    let mut found = Vec::new();
    let mut level = vec![root.to_path_buf()];
    let mut entries = 0usize;
    for _depth in 0..limits.max_depth {
        let mut next = Vec::new();
        for dir in level {
            let Ok(read) = std::fs::read_dir(&dir) else { continue };
            let mut children: Vec<PathBuf> = Vec::new();
            for entry in read.flatten() {
                entries += 1;
                if entries > limits.max_entries || started.elapsed() > limits.max_time {
                    found.sort();
                    return (found, false);
                }
                // Follow links to folders (a Hugging Face cache snapshot is made of links), but
                // only one level: `is_dir` follows, the walk does not recurse into link loops
                // because depth is bounded.
                let path = entry.path();
                if path.is_dir() && !entry.file_name().to_string_lossy().starts_with('.') {
                    children.push(path);
                }
            }
            children.sort();
            for child in children {
                if child.join(MLMODEL).is_file() || child.join(GENAI_CONFIG).is_file() {
                    found.push(child);
                    if found.len() >= limits.max_found {
                        return (found, false);
                    }
                } else {
                    next.push(child);
                }
            }
        }
        if next.is_empty() {
            break;
        }
        level = next;
    }
    found.sort();
    (found, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "{}").unwrap();
    }

    #[test]
    fn the_top_of_a_hub_download_offers_its_model_folders() {
        let root = tempfile::tempdir().unwrap();
        touch(&root.path().join("cpu_and_mobile/cpu-int4-rtn-block-32/genai_config.json"));
        touch(&root.path().join("cpu_and_mobile/cpu-int4-rtn-block-32-acc-level-4/genai_config.json"));
        touch(&root.path().join("cuda/cuda-fp16/genai_config.json"));
        touch(&root.path().join("README.md"));
        match resolve(root.path(), SearchLimits::default()) {
            Opened::Choices { folders, complete, .. } => {
                assert!(complete);
                assert_eq!(folders.len(), 3, "{folders:?}");
            }
            other => panic!("expected choices, got {other:?}"),
        }
    }

    #[test]
    fn a_single_match_opens_directly_and_packages_are_not_searched_inside() {
        let root = tempfile::tempdir().unwrap();
        touch(&root.path().join("unzipped/package/MLmodel"));
        touch(&root.path().join("unzipped/package/artifacts/phi3/genai_config.json"));
        assert_eq!(resolve(root.path(), SearchLimits::default()), Opened::Model(root.path().join("unzipped/package")));
    }

    #[test]
    fn foreign_formats_and_nothing_are_told_apart() {
        let root = tempfile::tempdir().unwrap();
        let gguf = root.path().join("phi-3-mini-q4.gguf");
        touch(&gguf);
        assert_eq!(resolve(&gguf, SearchLimits::default()), Opened::Foreign { path: gguf.clone(), kind: Foreign::Gguf });
        let checkpoint = root.path().join("checkpoint");
        touch(&checkpoint.join("config.json"));
        touch(&checkpoint.join("model-00001-of-00002.safetensors"));
        assert_eq!(resolve(&checkpoint, SearchLimits::default()), Opened::Foreign { path: checkpoint.clone(), kind: Foreign::Checkpoint });
        let empty = root.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        assert_eq!(resolve(&empty, SearchLimits::default()), Opened::Nothing { path: empty });
    }

    #[test]
    fn the_search_stops_at_its_limits() {
        let root = tempfile::tempdir().unwrap();
        for n in 0..30 {
            std::fs::create_dir_all(root.path().join(format!("d{n}/e"))).unwrap();
        }
        touch(&root.path().join("d29/e/genai_config.json"));
        let (found, complete) = models_beneath(root.path(), SearchLimits { max_entries: 10, ..SearchLimits::default() });
        assert!(!complete && found.is_empty());
        let (found, complete) = models_beneath(root.path(), SearchLimits::default());
        assert!(complete && found.len() == 1);
    }
}

/// Most completions offered for a typed path.
pub const MAX_COMPLETIONS: usize = 12;
/// Most directory entries read while completing (a huge folder must not stall the field).
const MAX_COMPLETION_ENTRIES: usize = 5_000;

/// Folders and files whose path starts with `typed` (a path being typed: `~/Do` offers
/// `~/Downloads/`, `/models/` lists what `/models` holds), folders first, names sorted, hidden
/// names only when the typed name starts with a dot. Reads one directory, bounded.
pub fn complete_path(typed: &str, home: Option<&Path>) -> Vec<String> {
    let expanded = match (typed.strip_prefix('~'), home) {
        (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with(['/', '\\']) => format!("{}{rest}", home.display()),
        _ => typed.to_owned(),
    };
    if expanded.is_empty() {
        return Vec::new();
    }
    let ends_with_separator = expanded.ends_with(['/', std::path::MAIN_SEPARATOR]);
    let path = Path::new(&expanded);
    let (dir, prefix) = if ends_with_separator {
        (path.to_path_buf(), String::new())
    } else {
        match (path.parent(), path.file_name()) {
            (Some(parent), Some(name)) => (if parent.as_os_str().is_empty() { PathBuf::from(".") } else { parent.to_path_buf() }, name.to_string_lossy().into_owned()),
            _ => return Vec::new(),
        }
    };
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut found: Vec<(bool, String)> = Vec::new();
    for entry in entries.take(MAX_COMPLETION_ENTRIES).flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(&prefix) || (name.starts_with('.') && !prefix.starts_with('.')) {
            continue;
        }
        // Follows links, so a Hugging Face snapshot's linked folders complete like folders.
        let is_dir = entry.path().is_dir();
        found.push((is_dir, name));
    }
    found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let typed_dir = &typed[..typed.len() - prefix.len()];
    found
        .into_iter()
        .take(MAX_COMPLETIONS)
        .map(|(is_dir, name)| format!("{typed_dir}{name}{}", if is_dir { std::path::MAIN_SEPARATOR_STR } else { "" }))
        .collect()
}

#[cfg(test)]
mod completion_tests {
    use super::*;

    #[test]
    fn completes_folders_first_keeps_the_typed_form_and_hides_dot_names() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("models")).unwrap();
        std::fs::create_dir(root.path().join("more")).unwrap();
        std::fs::write(root.path().join("mlmodel.txt"), b"x").unwrap();
        std::fs::create_dir(root.path().join(".matter")).unwrap();
        let typed = format!("{}/m", root.path().display());
        let sep = std::path::MAIN_SEPARATOR_STR;
        assert_eq!(
            complete_path(&typed, None),
            vec![format!("{typed}odels{sep}"), format!("{typed}ore{sep}"), format!("{typed}lmodel.txt")]
        );
        assert_eq!(complete_path(&format!("{}/.m", root.path().display()), None), vec![format!("{}/.matter{sep}", root.path().display())]);
        assert_eq!(complete_path(&format!("{}/models/", root.path().display()), None), Vec::<String>::new());
        assert_eq!(complete_path("~/mo", Some(root.path())), vec![format!("~/models{sep}"), format!("~/more{sep}")]);
        assert!(complete_path("/definitely/not/here/x", None).is_empty());
    }
}
