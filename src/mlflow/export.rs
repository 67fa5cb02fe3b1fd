//! Copying model folders with progress and cancellation: exporting a package (a folder or a
//! `.zip`) and filling a new package's `artifacts/`. Output goes to a temporary name beside the
//! destination and is renamed at the end, so a cancelled or failed copy leaves nothing behind.
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
    mlmodel::MlModel,
    validate::{self, Report, list_files},
    yaml::Node,
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
    pub fn fraction(&self) -> f32 {
        if self.total_bytes == 0 { 1.0 } else { (self.done_bytes as f64 / self.total_bytes as f64) as f32 }
    }

    /// Seconds left at the speed so far.
    pub fn remaining_seconds(&self) -> Option<f64> {
        if self.done_bytes == 0 || self.elapsed_seconds <= 0.0 {
            return None;
        }
        let rate = self.done_bytes as f64 / self.elapsed_seconds;
        Some((self.total_bytes - self.done_bytes) as f64 / rate)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the model folder has errors, so it was not exported:\n{}", .0.errors().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Report),
    #[error("{0} already exists; choose another destination")]
    Exists(PathBuf),
    #[error("cancelled")]
    Cancelled,
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("writing the zip file failed: {0}")]
    Zip(String),
}

fn io_at(path: &Path) -> impl Fn(io::Error) -> ExportError + '_ {
    move |source| ExportError::Io { path: path.to_path_buf(), source }
}

/// Counts bytes and reports progress; stops when cancelled.
pub struct Copier<'a> {
    total: u64,
    done: u64,
    started: Instant,
    on_progress: &'a mut dyn FnMut(CopyProgress),
    cancel: &'a AtomicBool,
}

impl<'a> Copier<'a> {
    pub fn new(total: u64, on_progress: &'a mut dyn FnMut(CopyProgress), cancel: &'a AtomicBool) -> Self {
        Self { total, done: 0, started: Instant::now(), on_progress, cancel }
    }

    fn advance(&mut self, bytes: u64) -> Result<(), ExportError> {
        self.done += bytes;
        (self.on_progress)(CopyProgress {
            done_bytes: self.done,
            total_bytes: self.total,
            elapsed_seconds: self.started.elapsed().as_secs_f64(),
        });
        if self.cancel.load(Ordering::Relaxed) { Err(ExportError::Cancelled) } else { Ok(()) }
    }

    /// Copies one file in chunks.
    pub fn copy_file(&mut self, from: &Path, to: &Path) -> Result<(), ExportError> {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(io_at(parent))?;
        }
        let mut source = File::open(from).map_err(io_at(from))?;
        let mut target = File::create(to).map_err(io_at(to))?;
        loop {
            // `io::copy` between files uses copy_file_range on Linux (no user-space buffer).
            let copied = io::copy(&mut (&mut source).take(CHUNK), &mut target).map_err(io_at(to))?;
            if copied == 0 {
                break;
            }
            self.advance(copied)?;
        }
        if let Ok(meta) = std::fs::metadata(from) {
            let _ = target.set_permissions(meta.permissions());
        }
        Ok(())
    }

    /// Copies a folder tree (files and folders only; links are not followed).
    pub fn copy_tree(&mut self, from: &Path, to: &Path) -> Result<(), ExportError> {
        std::fs::create_dir_all(to).map_err(io_at(to))?;
        for (relative, _) in list_files(from) {
            self.copy_file(&from.join(&relative), &to.join(&relative))?;
        }
        Ok(())
    }
}

/// Total size of the files in a tree.
pub fn tree_size(dir: &Path) -> u64 {
    list_files(dir).iter().map(|(_, size)| size).sum()
}

/// Exports a validated model folder to `destination` (a folder, or a `.zip` when `zip`).
/// Artifacts referenced by absolute paths are copied in and the copy's MLmodel points at them.
pub fn export(
    source: &Path,
    destination: &Path,
    zip: bool,
    on_progress: &mut dyn FnMut(CopyProgress),
    cancel: &AtomicBool,
) -> Result<PathBuf, ExportError> {
    let report = validate::validate_folder(source);
    if !report.is_usable() {
        return Err(ExportError::Invalid(report));
    }
    if destination.exists() {
        return Err(ExportError::Exists(destination.to_path_buf()));
    }
    let parent = destination.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io_at(parent))?;
    let mut model = MlModel::load(source).map_err(|e| ExportError::Io { path: source.to_path_buf(), source: io::Error::other(e.to_string()) })?;
    let external = absolute_artifacts(&mut model);
    let files = list_files(source);
    let total: u64 = files.iter().map(|(_, size)| size).sum::<u64>() + external.iter().map(|(from, _)| tree_size_or_file(from)).sum::<u64>();
    let mut copier = Copier::new(total, on_progress, cancel);
    // Staged beside the destination (same file system, so the final rename is atomic); the
    // staging folder and anything in it go away on error or cancel.
    let staging = tempfile::Builder::new().prefix(".modeldesk-export-").tempdir_in(parent).map_err(io_at(parent))?;
    let staged = staging.path().join("model");
    if zip {
        write_zip(source, &files, &external, &model, &staged, &mut copier)?;
    } else {
        std::fs::create_dir_all(&staged).map_err(io_at(&staged))?;
        for (relative, _) in &files {
            copier.copy_file(&source.join(relative), &staged.join(relative))?;
        }
        for (from, relative) in &external {
            if from.is_dir() {
                copier.copy_tree(from, &staged.join(relative))?;
            } else {
                copier.copy_file(from, &staged.join(relative))?;
            }
        }
        if !external.is_empty() {
            let mut copy = model.clone();
            copy.path = staged.join(super::mlmodel::MLMODEL);
            copy.save().map_err(|e| ExportError::Io { path: copy.path.clone(), source: io::Error::other(e.to_string()) })?;
        }
    }
    std::fs::rename(&staged, destination).map_err(io_at(destination))?;
    Ok(destination.to_path_buf())
}

fn tree_size_or_file(path: &Path) -> u64 {
    if path.is_dir() { tree_size(path) } else { std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) }
}

/// Rewrites absolute artifact paths to `artifacts/<name>` and returns what to copy where.
fn absolute_artifacts(model: &mut MlModel) -> Vec<(PathBuf, PathBuf)> {
    let Some(pyfunc) = model.python_function() else { return Vec::new() };
    let mut moves = Vec::new();
    for (name, path) in pyfunc.artifacts {
        let Some(path) = path.filter(|p| Path::new(p).is_absolute()) else { continue };
        let source = PathBuf::from(&path);
        let base = source.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or(name.clone());
        let relative = format!("artifacts/{base}");
        moves.push((source, PathBuf::from(&relative)));
        let root = model.root_mut();
        if let Some(entry) = root
            .get_mut("flavors")
            .and_then(Node::as_map_mut)
            .and_then(|f| f.get_mut("python_function"))
            .and_then(Node::as_map_mut)
            .and_then(|p| p.get_mut("artifacts"))
            .and_then(Node::as_map_mut)
            .and_then(|a| a.get_mut(&name))
            .and_then(Node::as_map_mut)
        {
            entry.insert("path", Node::Str(relative));
        }
    }
    moves
}

fn write_zip(
    source: &Path,
    files: &[(PathBuf, u64)],
    external: &[(PathBuf, PathBuf)],
    model: &MlModel,
    target: &Path,
    copier: &mut Copier<'_>,
) -> Result<(), ExportError> {
    use zip::write::SimpleFileOptions;
    let file = File::create(target).map_err(io_at(target))?;
    let mut writer = zip::ZipWriter::new(io::BufWriter::with_capacity(1 << 20, file));
    let zip_error = |e: zip::result::ZipError| ExportError::Zip(e.to_string());
    let mut entries: Vec<(PathBuf, String)> =
        files.iter().map(|(relative, _)| (source.join(relative), zip_name(relative))).collect();
    for (from, relative) in external {
        if from.is_dir() {
            for (inner, _) in list_files(from) {
                entries.push((from.join(&inner), zip_name(&relative.join(&inner))));
            }
        } else {
            entries.push((from.clone(), zip_name(relative)));
        }
    }
    let mut buffer = vec![0u8; 1 << 20];
    for (path, name) in entries {
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        // Weights do not compress; store them so the zip is written at disk speed.
        let method = if size > (16 << 20) || name.ends_with(".data") || name.ends_with(".onnx") {
            zip::CompressionMethod::Stored
        } else {
            zip::CompressionMethod::Deflated
        };
        let options = SimpleFileOptions::default().compression_method(method).large_file(size >= (4 << 30) - (1 << 20));
        writer.start_file(name.clone(), options).map_err(zip_error)?;
        if name == super::mlmodel::MLMODEL && !external.is_empty() {
            let text = model.to_text();
            writer.write_all(text.as_bytes()).map_err(io_at(target))?;
            copier.advance(size)?;
            continue;
        }
        let mut input = File::open(&path).map_err(io_at(&path))?;
        let mut since_report = 0u64;
        loop {
            let read = input.read(&mut buffer).map_err(io_at(&path))?;
            if read == 0 {
                break;
            }
            writer.write_all(&buffer[..read]).map_err(io_at(target))?;
            since_report += read as u64;
            if since_report >= CHUNK {
                copier.advance(since_report)?;
                since_report = 0;
            }
        }
        copier.advance(since_report)?;
    }
    let mut inner = writer.finish().map_err(zip_error)?;
    inner.flush().map_err(io_at(target))?;
    inner.get_ref().sync_all().map_err(io_at(target))?;
    Ok(())
}

fn zip_name(relative: &Path) -> String {
    relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join("/")
}
