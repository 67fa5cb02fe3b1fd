//! The one folder walk every module uses (open, validate, size, create, export): links are
//! followed (a Hugging Face snapshot is a folder of links into `../../blobs/`), a link loop, a
//! dangling link or a link to something that is neither a file nor a folder is reported with its
//! path, and files whose real location is outside the folder are marked so an export can say
//! what came from elsewhere. ModelDesk's own temporary files and staging folders (names starting
//! with `.modeldesk-`) are never part of a model and are skipped.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

/// The prefix of every temporary file and staging folder ModelDesk creates.
pub const OWN_TEMP_PREFIX: &str = ".modeldesk-";
/// Most entries (files and folders) one walk visits: a link to `/` must not walk the disk.
pub const MAX_ENTRIES: usize = 100_000;

/// One regular file of a walked folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeFile {
    /// The path relative to the walked folder, as reached (possibly through links).
    pub relative: PathBuf,
    pub size: u64,
    /// The file's real location, when links lead outside the walked folder.
    pub outside: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("{path}: the symbolic link loops back to {ancestor}")]
    Loop { path: PathBuf, ancestor: PathBuf },
    #[error("{path}: the symbolic link points to `{target}`, which does not exist")]
    Dangling { path: PathBuf, target: PathBuf },
    #[error("{path} is {kind}; a model folder holds only files and folders")]
    Special { path: PathBuf, kind: &'static str },
    #[error("{root} holds more than {limit} files and folders (counting what links lead to); this is not a model folder")]
    TooMany { root: PathBuf, limit: usize },
    #[error("cannot read {path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
}

impl WalkError {
    pub fn path(&self) -> &Path {
        match self {
            WalkError::Loop { path, .. }
            | WalkError::Dangling { path, .. }
            | WalkError::Special { path, .. }
            | WalkError::Io { path, .. } => path,
            WalkError::TooMany { root, .. } => root,
        }
    }
}

/// What a walk found: the files, and the entries it could not take (each names its path).
#[derive(Debug, Default)]
pub struct Tree {
    /// Sorted by relative path.
    pub files: Vec<TreeFile>,
    pub problems: Vec<WalkError>,
}

impl Tree {
    /// The files, or the first problem.
    pub fn into_files(self) -> Result<Vec<TreeFile>, WalkError> {
        match self.problems.into_iter().next() {
            Some(problem) => Err(problem),
            None => Ok(self.files),
        }
    }

    /// Total bytes (saturating).
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().fold(0u64, |sum, file| sum.saturating_add(file.size))
    }

    /// The files whose bytes live outside the walked folder.
    pub fn outside(&self) -> impl Iterator<Item = &TreeFile> {
        self.files.iter().filter(|f| f.outside.is_some())
    }
}

/// Walks `root`. A root that cannot be read at all, or a tree over [`MAX_ENTRIES`], is an error;
/// bad entries inside are collected in [`Tree::problems`] and the walk goes on.
pub fn walk(root: &Path) -> Result<Tree, WalkError> {
    let real_root = std::fs::canonicalize(root).map_err(|error| WalkError::Io { path: root.to_path_buf(), error })?;
    let mut tree = Tree::default();
    // Folders reached through a link: what is below them may be outside the root.
    let mut linked_dirs: HashSet<PathBuf> = HashSet::new();
    let walker = walkdir::WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|entry| entry.depth() == 0 || !entry.file_name().as_encoded_bytes().starts_with(OWN_TEMP_PREFIX.as_bytes()));
    for (count, item) in walker.enumerate() {
        if count >= MAX_ENTRIES {
            return Err(WalkError::TooMany { root: root.to_path_buf(), limit: MAX_ENTRIES });
        }
        let entry = match item {
            Ok(entry) => entry,
            Err(error) => {
                if error.depth() == 0 {
                    return Err(entry_error(error, root));
                }
                tree.problems.push(entry_error(error, root));
                continue;
            }
        };
        let through_link = entry.path_is_symlink() || entry.path().parent().is_some_and(|p| linked_dirs.contains(p));
        let file_type = entry.file_type();
        if file_type.is_dir() {
            if through_link {
                linked_dirs.insert(entry.path().to_path_buf());
            }
            continue;
        }
        if !file_type.is_file() {
            tree.problems.push(WalkError::Special { path: entry.path().to_path_buf(), kind: super::kind_name(&file_type) });
            continue;
        }
        let size = match entry.metadata() {
            Ok(meta) => meta.len(),
            Err(error) => {
                tree.problems.push(entry_error(error, root));
                continue;
            }
        };
        let outside = if through_link {
            match std::fs::canonicalize(entry.path()) {
                Ok(real) if !real.starts_with(&real_root) => Some(real),
                Ok(_) => None,
                Err(error) => {
                    tree.problems.push(WalkError::Io { path: entry.path().to_path_buf(), error });
                    continue;
                }
            }
        } else {
            None
        };
        let relative = entry.path().strip_prefix(root).unwrap_or(entry.path()).to_path_buf();
        tree.files.push(TreeFile { relative, size, outside });
    }
    tree.files.sort_by(|a, b| a.relative.cmp(&b.relative));
    Ok(tree)
}

fn entry_error(error: walkdir::Error, root: &Path) -> WalkError {
    let path = error.path().unwrap_or(root).to_path_buf();
    if let Some(ancestor) = error.loop_ancestor() {
        return WalkError::Loop { ancestor: ancestor.to_path_buf(), path };
    }
    let is_link = path.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink());
    match error.into_io_error() {
        Some(source) if source.kind() == std::io::ErrorKind::NotFound && is_link => {
            let target = std::fs::read_link(&path).unwrap_or_default();
            WalkError::Dangling { path, target }
        }
        // A link that resolves to itself, or a chain too long to resolve, is a loop too.
        Some(source) if is_link_loop(&source) => WalkError::Loop { ancestor: path.clone(), path },
        Some(error) => WalkError::Io { path, error },
        None => WalkError::Io { path, error: std::io::Error::other("unreadable entry") },
    }
}

fn is_link_loop(error: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        error.raw_os_error() == Some(libc::ELOOP)
    }
    #[cfg(not(unix))]
    {
        let _ = error;
        false
    }
}

/// Total size of the files in a tree, counting what links lead to; 0 for a folder that cannot
/// be walked. For display (library sizes); copying code uses [`walk`] and its errors.
pub fn tree_size(dir: &Path) -> u64 {
    walk(dir).map(|tree| tree.total_bytes()).unwrap_or(0)
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn links_are_followed_and_outside_files_marked() {
        let scratch = tempfile::tempdir().unwrap();
        let blobs = scratch.path().join("blobs");
        std::fs::create_dir(&blobs).unwrap();
        std::fs::write(blobs.join("weights"), vec![7u8; 1000]).unwrap();
        let root = scratch.path().join("snapshot");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/inside.txt"), "abc").unwrap();
        symlink("../blobs/weights", root.join("model.onnx.data")).unwrap();
        symlink("sub", root.join("again")).unwrap();
        std::fs::write(root.join(".modeldesk-1234.tmp"), "leftover").unwrap();
        std::fs::create_dir(root.join(".modeldesk-export-1-x")).unwrap();
        std::fs::write(root.join(".modeldesk-export-1-x/big"), "staged").unwrap();
        let tree = walk(&root).unwrap();
        assert!(tree.problems.is_empty(), "{:?}", tree.problems);
        let names: Vec<_> = tree.files.iter().map(|f| f.relative.to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["again/inside.txt", "model.onnx.data", "sub/inside.txt"]);
        assert_eq!(tree.total_bytes(), 1006);
        let outside: Vec<_> = tree.outside().map(|f| f.relative.clone()).collect();
        assert_eq!(outside, [PathBuf::from("model.onnx.data")]);
    }

    #[test]
    fn loops_dangling_links_and_pipes_are_named() {
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path();
        std::fs::create_dir(root.join("a")).unwrap();
        symlink("..", root.join("a/up")).unwrap();
        symlink("nowhere", root.join("dangling")).unwrap();
        symlink("/dev/null", root.join("device")).unwrap();
        symlink("self", root.join("self")).unwrap();
        let tree = walk(root).unwrap();
        let messages: Vec<String> = tree.problems.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), 4, "{messages:?}");
        assert!(messages.iter().any(|m| m.contains("a/up") && m.contains("loops")), "{messages:?}");
        assert!(messages.iter().any(|m| m.contains("dangling") && m.contains("nowhere")), "{messages:?}");
        assert!(messages.iter().any(|m| m.contains("device") && m.contains("character device")), "{messages:?}");
        assert!(messages.iter().any(|m| m.contains("self") && m.contains("loops")), "{messages:?}");
    }
}
