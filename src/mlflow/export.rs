//! Copying model folders with progress and cancellation: exporting a package (a folder or a
//! `.zip`) and filling a new package's `artifacts/`. Output goes to a staging folder beside the
//! destination (see `crate::staging`) and is renamed at the end, after every file and folder was
//! flushed to disk, so a cancelled, failed, interrupted or killed copy leaves nothing behind.
//! Large files stream through in chunks (in-kernel copies where the OS offers them), so memory
//! stays flat whatever the size.

use std::{
    fs::File,
    io::{self, Read as _, Write as _},
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
    time::Instant,
};

use super::{
    mlmodel::{MLMODEL, MlModel, write_atomically},
    validate::{self, Report},
    yaml::Node,
};
use crate::{
    fsio::{
        self,
        names::{NameError, relative_inside, zip_entry_name},
        walk::{TreeFile, WalkError, walk},
    },
    staging::{Staging, sync_dir},
};

/// Bytes copied per step between progress reports and cancellation checks.
const CHUNK: u64 = 32 << 20;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CopyProgress {
    pub done_bytes: u64,
    pub total_bytes: u64,
    pub elapsed_seconds: f64,
}

impl CopyProgress {
    /// Between 0 and 1.
    pub fn fraction(&self) -> f32 {
        if self.total_bytes == 0 { 1.0 } else { (self.done_bytes as f64 / self.total_bytes as f64).clamp(0.0, 1.0) as f32 }
    }

    /// Seconds left at the speed so far.
    pub fn remaining_seconds(&self) -> Option<f64> {
        if self.done_bytes == 0 || self.elapsed_seconds <= 0.0 {
            return None;
        }
        let rate = self.done_bytes as f64 / self.elapsed_seconds;
        Some(self.total_bytes.saturating_sub(self.done_bytes) as f64 / rate)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the model folder has errors, so it was not exported:\n{}", .0.errors().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Report),
    #[error("{0} already exists; choose another destination")]
    Exists(PathBuf),
    #[error("{path} cannot be replaced: {reason}")]
    NotReplaceable { path: PathBuf, reason: &'static str },
    #[error("cancelled")]
    Cancelled,
    #[error(transparent)]
    Walk(#[from] WalkError),
    #[error(transparent)]
    Read(#[from] fsio::ReadError),
    #[error("{path} cannot be stored in a zip file that unpacks safely everywhere: {error}")]
    BadName { path: PathBuf, error: NameError },
    #[error("{path} changed while it was being copied (it is now {now}, it was {before} bytes); export again when nothing writes to the folder")]
    Changed { path: PathBuf, before: u64, now: String },
    #[error("{path}: no space left for the copy ({error}); nothing was kept, the source is untouched")]
    NoSpace { path: PathBuf, error: io::Error },
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error("writing the zip file failed: {0}")]
    Zip(String),
}

/// An I/O error at `path`, told apart when the disk (or the file system's size limit) is the cause.
fn io_at(path: &Path) -> impl Fn(io::Error) -> ExportError + '_ {
    move |error| {
        if matches!(error.kind(), io::ErrorKind::StorageFull | io::ErrorKind::FileTooLarge | io::ErrorKind::QuotaExceeded) {
            ExportError::NoSpace { path: path.to_path_buf(), error }
        } else {
            ExportError::Io { path: path.to_path_buf(), error }
        }
    }
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSummary {
    /// The folder or zip file written.
    pub path: PathBuf,
    pub files: usize,
    pub bytes: u64,
    /// Files reached through links whose bytes live outside the model folder (a Hugging Face
    /// cache snapshot): the path inside the package and where the bytes came from.
    pub outside: Vec<(PathBuf, PathBuf)>,
}

/// Counts bytes and reports progress; stops when cancelled. Progress never passes 100 %.
pub struct Copier<'a> {
    total: u64,
    done: u64,
    started: Instant,
    on_progress: &'a mut dyn FnMut(CopyProgress),
    cancel: &'a AtomicBool,
    /// Folders created, to flush their entries before the final rename.
    created_dirs: Vec<PathBuf>,
}

impl<'a> Copier<'a> {
    pub fn new(total: u64, on_progress: &'a mut dyn FnMut(CopyProgress), cancel: &'a AtomicBool) -> Self {
        Self { total, done: 0, started: Instant::now(), on_progress, cancel, created_dirs: Vec::new() }
    }

    fn advance(&mut self, bytes: u64) -> Result<(), ExportError> {
        self.done = self.done.saturating_add(bytes).min(self.total);
        (self.on_progress)(CopyProgress {
            done_bytes: self.done,
            total_bytes: self.total,
            elapsed_seconds: self.started.elapsed().as_secs_f64(),
        });
        self.check_cancel()
    }

    fn check_cancel(&self) -> Result<(), ExportError> {
        if self.cancel.load(Ordering::Relaxed) { Err(ExportError::Cancelled) } else { Ok(()) }
    }

    fn create_dirs(&mut self, dir: &Path) -> Result<(), ExportError> {
        if !dir.is_dir() {
            std::fs::create_dir_all(dir).map_err(io_at(dir))?;
            self.created_dirs.push(dir.to_path_buf());
        }
        Ok(())
    }

    /// Copies one regular file of `expected` bytes in chunks and flushes it to disk. A file that
    /// grows or shrinks meanwhile is an error, never a silently different copy.
    pub fn copy_file(&mut self, from: &Path, to: &Path, expected: u64) -> Result<(), ExportError> {
        if let Some(parent) = to.parent() {
            self.create_dirs(parent)?;
        }
        let mut source = fsio::open_regular(from)?;
        let mut target = File::create(to).map_err(io_at(to))?;
        let mut copied = 0u64;
        while copied < expected {
            // `io::copy` between files uses copy_file_range on Linux (no user-space buffer).
            let step = CHUNK.min(expected - copied);
            let n = io::copy(&mut (&mut source).take(step), &mut target).map_err(io_at(to))?;
            if n == 0 {
                break;
            }
            copied += n;
            self.advance(n)?;
        }
        let mut probe = [0u8; 1];
        let grew = source.read(&mut probe).map_err(io_at(from))? > 0;
        if copied != expected || grew {
            let now = if grew { "larger".to_owned() } else { format!("{copied} bytes") };
            return Err(ExportError::Changed { path: from.to_path_buf(), before: expected, now });
        }
        if let Ok(meta) = source.metadata() {
            let _ = target.set_permissions(meta.permissions());
        }
        target.sync_all().map_err(io_at(to))?;
        Ok(())
    }

    /// Copies walked files from `from` into `to`.
    pub fn copy_files(&mut self, from: &Path, files: &[TreeFile], to: &Path) -> Result<(), ExportError> {
        self.create_dirs(to)?;
        for file in files {
            self.copy_file(&from.join(&file.relative), &to.join(&file.relative), file.size)?;
        }
        Ok(())
    }

    /// Copies a folder tree (following links; loops, dangling links and special files are errors).
    pub fn copy_tree(&mut self, from: &Path, to: &Path) -> Result<(), ExportError> {
        let files = walk(from)?.into_files()?;
        self.copy_files(from, &files, to)
    }

    /// Flushes every folder this copier created (deepest first), so the entries survive a crash.
    pub fn sync_created_dirs(&self) {
        for dir in self.created_dirs.iter().rev() {
            sync_dir(dir);
        }
    }
}

/// Total size of the files in a tree (following links); 0 when it cannot be walked.
pub use crate::fsio::walk::tree_size;

/// Exports a validated model folder to `destination` (a folder, or a `.zip` when `zip`).
pub fn export(
    source: &Path,
    destination: &Path,
    zip: bool,
    on_progress: &mut dyn FnMut(CopyProgress),
    cancel: &AtomicBool,
) -> Result<PathBuf, ExportError> {
    export_with_summary(source, destination, zip, on_progress, cancel).map(|summary| summary.path)
}

/// Like [`export`], returning what was written and which files came from outside the folder.
/// Only the folder's own files are copied (links are followed, ModelDesk's temporary files are
/// skipped); paths written in `MLmodel` that point outside are refused by validation first.
pub fn export_with_summary(
    source: &Path,
    destination: &Path,
    zip: bool,
    on_progress: &mut dyn FnMut(CopyProgress),
    cancel: &AtomicBool,
) -> Result<ExportSummary, ExportError> {
    export_to(source, destination, zip, IfExists::Refuse, on_progress, cancel)
}

/// What to do when the destination of an export or a creation already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IfExists {
    #[default]
    Refuse,
    /// Replace it once the new package is complete, if [`check_replaceable`] allows it.
    Replace,
}

/// Whether an existing `destination` may be replaced by a package made from `source`: only an
/// MLflow model folder, an empty folder or a `.zip` file, and never the source itself, a folder
/// holding it or anything inside it. A destination that does not exist is fine.
pub fn check_replaceable(source: &Path, destination: &Path) -> Result<(), ExportError> {
    let refuse = |reason| Err(ExportError::NotReplaceable { path: destination.to_path_buf(), reason });
    let Ok(meta) = destination.symlink_metadata() else { return Ok(()) };
    if meta.file_type().is_symlink() {
        return refuse("it is a link; choose another name");
    }
    let (Ok(real_source), Ok(real_destination)) = (source.canonicalize(), destination.canonicalize()) else {
        return refuse("its location cannot be resolved");
    };
    if real_source.starts_with(&real_destination) {
        return refuse("it holds the model being written from");
    }
    if real_destination.starts_with(&real_source) {
        return refuse("it is inside the model being written from");
    }
    if meta.is_file() {
        let is_zip = destination.extension().is_some_and(|e| e.eq_ignore_ascii_case("zip"));
        return if is_zip { Ok(()) } else { refuse("it is a file that is not a .zip package") };
    }
    let mut entries = std::fs::read_dir(destination).map_err(io_at(destination))?;
    let empty = entries.next().is_none();
    if empty || destination.join(MLMODEL).is_file() {
        Ok(())
    } else {
        refuse("it is a folder that is not an MLflow model; choose another name")
    }
}

/// The first of `NAME-2`, `NAME-3`, … (before any extension) beside `destination` that does not
/// exist yet.
pub fn next_free_name(destination: &Path) -> PathBuf {
    let stem = destination.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let extension = destination.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    let (base, first) = match stem.rsplit_once('-').and_then(|(base, n)| Some((base, n.parse::<u32>().ok()?))) {
        Some((base, number)) => (base.to_owned(), number.saturating_add(1)),
        None => (stem, 2),
    };
    let mut number = first;
    loop {
        let candidate = destination.with_file_name(format!("{base}-{number}{extension}"));
        if candidate.symlink_metadata().is_err() || number == u32::MAX {
            return candidate;
        }
        number += 1;
    }
}

/// [`export_with_summary`] with a choice for an existing destination.
pub fn export_to(
    source: &Path,
    destination: &Path,
    zip: bool,
    if_exists: IfExists,
    on_progress: &mut dyn FnMut(CopyProgress),
    cancel: &AtomicBool,
) -> Result<ExportSummary, ExportError> {
    let report = validate::validate_folder(source);
    if !report.is_usable() {
        return Err(ExportError::Invalid(report));
    }
    match if_exists {
        IfExists::Refuse if destination.symlink_metadata().is_ok() => return Err(ExportError::Exists(destination.to_path_buf())),
        IfExists::Refuse => {}
        IfExists::Replace => check_replaceable(source, destination)?,
    }
    let tree = walk(source)?;
    let bytes = tree.total_bytes();
    let outside: Vec<(PathBuf, PathBuf)> =
        tree.outside().filter_map(|f| f.outside.clone().map(|real| (f.relative.clone(), real))).collect();
    let files = tree.into_files()?;
    let entry_names = if zip {
        files
            .iter()
            .map(|f| zip_entry_name(&f.relative).map_err(|error| ExportError::BadName { path: f.relative.clone(), error }))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        Vec::new()
    };
    let mlmodel_text = mlmodel_with_relative_artifacts(source)?;
    let parent = destination.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io_at(parent))?;
    let mut copier = Copier::new(bytes, on_progress, cancel);
    // Staged beside the destination (same file system, so the final rename is atomic); the
    // staging folder and anything in it go away on error, cancel or signal, and a killed
    // process's is removed at the next start.
    let staging = Staging::new_in(parent, "export").map_err(io_at(parent))?;
    let staged = staging.path().join("model");
    if zip {
        write_zip(source, &files, &entry_names, mlmodel_text.as_deref(), &staged, &mut copier)?;
    } else {
        copier.copy_files(source, &files, &staged)?;
        if let Some(text) = &mlmodel_text {
            let path = staged.join(MLMODEL);
            write_atomically(&path, text.as_bytes()).map_err(io_at(&path))?;
        }
        copier.sync_created_dirs();
    }
    copier.check_cancel()?;
    match if_exists {
        IfExists::Refuse => staging.finish(&staged, destination),
        IfExists::Replace => staging.finish_replacing(&staged, destination),
    }
    .map_err(io_at(destination))?;
    Ok(ExportSummary { path: destination.to_path_buf(), files: files.len(), bytes, outside })
}

/// The MLmodel text for the copy when an artifact path is absolute but inside the folder (MLflow
/// accepts that, but the package would only work on this machine): the same file with those
/// paths made relative. `None` when nothing needs rewriting.
fn mlmodel_with_relative_artifacts(source: &Path) -> Result<Option<String>, ExportError> {
    let mut model = MlModel::load(source).map_err(|e| ExportError::Io { path: source.join(MLMODEL), error: io::Error::other(e.to_string()) })?;
    let Some(pyfunc) = model.python_function() else { return Ok(None) };
    let mut changed = false;
    for (name, path) in pyfunc.artifacts {
        let Some(path) = path.filter(|p| Path::new(p).is_absolute()) else { continue };
        let Some(relative) = relative_inside(source, Path::new(&path)) else { continue };
        let entry = model
            .root_mut()
            .get_mut("flavors")
            .and_then(Node::as_map_mut)
            .and_then(|f| f.get_mut("python_function"))
            .and_then(Node::as_map_mut)
            .and_then(|p| p.get_mut("artifacts"))
            .and_then(Node::as_map_mut)
            .and_then(|a| a.get_mut(&name))
            .and_then(Node::as_map_mut);
        if let Some(entry) = entry {
            let text = relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join("/");
            entry.insert("path", Node::Str(text));
            changed = true;
        }
    }
    Ok(changed.then(|| model.to_text()))
}

fn write_zip(
    source: &Path,
    files: &[TreeFile],
    names: &[String],
    mlmodel_text: Option<&str>,
    target: &Path,
    copier: &mut Copier<'_>,
) -> Result<(), ExportError> {
    use zip::write::SimpleFileOptions;
    let file = File::create(target).map_err(io_at(target))?;
    let mut writer = zip::ZipWriter::new(io::BufWriter::with_capacity(1 << 20, file));
    let zip_error = |e: zip::result::ZipError| match e {
        zip::result::ZipError::Io(source) => io_at(target)(source),
        other => ExportError::Zip(other.to_string()),
    };
    let mut buffer = vec![0u8; 1 << 20];
    for (entry, name) in files.iter().zip(names) {
        let path = source.join(&entry.relative);
        let size = entry.size;
        // Weights do not compress; store them so the zip is written at disk speed.
        let method = if size > (16 << 20) || name.ends_with(".data") || name.ends_with(".onnx") {
            zip::CompressionMethod::Stored
        } else {
            zip::CompressionMethod::Deflated
        };
        let options = SimpleFileOptions::default().compression_method(method).large_file(size >= (4 << 30) - (1 << 20));
        writer.start_file(name.as_str(), options).map_err(zip_error)?;
        if let (Some(text), true) = (mlmodel_text, name == MLMODEL) {
            writer.write_all(text.as_bytes()).map_err(io_at(target))?;
            copier.advance(size)?;
            continue;
        }
        let mut input = fsio::open_regular(&path)?.take(size);
        let (mut copied, mut since_report) = (0u64, 0u64);
        loop {
            let read = input.read(&mut buffer).map_err(io_at(&path))?;
            if read == 0 {
                break;
            }
            writer.write_all(&buffer[..read]).map_err(io_at(target))?;
            copied += read as u64;
            since_report += read as u64;
            if since_report >= CHUNK {
                copier.advance(since_report)?;
                since_report = 0;
            }
        }
        let grew = input.into_inner().read(&mut buffer[..1]).map_err(io_at(&path))? > 0;
        if copied != size || grew {
            let now = if grew { "larger".to_owned() } else { format!("{copied} bytes") };
            return Err(ExportError::Changed { path, before: size, now });
        }
        copier.advance(since_report)?;
    }
    let mut inner = writer.finish().map_err(zip_error)?;
    inner.flush().map_err(io_at(target))?;
    inner.get_ref().sync_all().map_err(io_at(target))?;
    Ok(())
}
