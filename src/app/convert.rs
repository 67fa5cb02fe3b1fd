//! A Hugging Face checkpoint in the library: its summary (read off the GUI thread), the
//! "Create MLflow model" dialog that offers the kind (transformers flavor, written here with
//! progress; or ONNX pyfunc, which converts first), and the "Convert to ONNX" dialog that runs
//! onnxruntime-genai's builder on [`ConvertService`] with progress and cancel and opens the
//! result. The Python and the last precision and provider are remembered.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
};

use poll_promise::Promise;

use super::{AppState, DialogKind, FolderKind};
use crate::{
    checkpoint::{
        Checkpoint,
        package::{PackageOptions, Versions, create_transformers_package},
    },
    convert::{
        ConvertProgress, ConvertRequest, Estimate, Precision, Provider, estimate,
        service::{ConvertEvent, ConvertService},
    },
    inspect::Foreign,
    mlflow::{export::CopyProgress, yaml::Node},
};

/// Remembered between sessions ("Convert to ONNX" settings).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ConvertSettings {
    /// The Python with onnxruntime-genai, torch and transformers; empty = found on PATH.
    pub python: String,
    pub precision: Precision,
    pub provider: Provider,
}

/// What the checkpoint view shows.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointSummary {
    pub architecture: String,
    pub dtype: Option<String>,
    pub layers: Option<u64>,
    pub weight_bytes: u64,
    pub weight_files: usize,
    /// The repository, for a Hugging Face cache snapshot.
    pub repository: Option<String>,
    pub estimate: Estimate,
}

impl CheckpointSummary {
    fn read(path: &Path) -> Result<Self, String> {
        let checkpoint = Checkpoint::open(path).map_err(|e| e.to_string())?;
        Ok(Self {
            architecture: checkpoint.architecture.clone(),
            dtype: checkpoint.dtype.clone(),
            layers: checkpoint.num_layers,
            weight_bytes: checkpoint.weight_bytes(),
            weight_files: checkpoint.weights.len(),
            repository: checkpoint.hub.as_ref().map(|h| h.repo.clone()),
            estimate: estimate(checkpoint.weight_bytes(), checkpoint.dtype.as_deref()),
        })
    }
}

/// The kind of MLflow model made from a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageKind {
    Transformers,
    OnnxPyfunc,
}

/// "Create MLflow model" for a checkpoint.
pub struct PackageDialog {
    pub source: PathBuf,
    pub kind: PackageKind,
    /// `source_model_name`; empty = the repository id or the folder's path.
    pub name: String,
    /// MLflow 2.22 with transformers 4.51 instead of MLflow 3.17 with transformers 5.23.
    pub mlflow2: bool,
    pub link_weights: bool,
    pub destination: String,
    job: Option<PackageJob>,
    pub progress: Option<CopyProgress>,
    pub outcome: Option<Result<PathBuf, String>>,
}

struct PackageJob {
    cancel: Arc<AtomicBool>,
    updates: mpsc::Receiver<CopyProgress>,
    result: Promise<Result<PathBuf, String>>,
}

impl PackageDialog {
    pub fn is_running(&self) -> bool {
        self.job.is_some()
    }
}

/// "Convert to ONNX" for a checkpoint: the form, then the running conversion, then its end.
pub struct ConvertDialog {
    pub source: PathBuf,
    pub destination: String,
    pub settings: ConvertSettings,
    /// Open "Create MLflow model" for the converted folder when done.
    pub then_package: bool,
    running: Option<u64>,
    pub progress: Option<ConvertProgress>,
    pub outcome: Option<Result<PathBuf, String>>,
}

impl ConvertDialog {
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }
}

#[derive(Default)]
pub struct ConvertState {
    /// The summary of the selected checkpoint: its path and the result (or the read running).
    pub summary: Option<(PathBuf, Option<Result<CheckpointSummary, String>>)>,
    reading: Option<Promise<Result<CheckpointSummary, String>>>,
    pub package: Option<PackageDialog>,
    pub convert: Option<ConvertDialog>,
    service: Option<ConvertService>,
}

impl ConvertState {
    pub fn is_busy(&self) -> bool {
        self.reading.is_some() || self.package.as_ref().is_some_and(PackageDialog::is_running) || self.convert.as_ref().is_some_and(ConvertDialog::is_running)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ConvertIntent {
    OpenPackage,
    RunPackage,
    CancelPackage,
    ClosePackage,
    /// `then_package`: open "Create MLflow model" on the converted folder.
    OpenConvert { then_package: bool },
    RunConvert,
    CancelConvert,
    CloseConvert,
}

/// `<parent>/<name><suffix>` beside `source`.
fn beside(source: &Path, suffix: &str) -> String {
    let name = source.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    source.parent().unwrap_or(Path::new(".")).join(format!("{name}{suffix}")).display().to_string()
}

fn convert_destination(source: &Path, settings: &ConvertSettings) -> String {
    beside(source, &format!("-onnx-{}-{}", settings.precision.arg(), settings.provider.arg()))
}

impl AppState {
    /// Whether the selected library entry is a Hugging Face checkpoint.
    pub fn selected_is_checkpoint(&self) -> bool {
        self.selected_kind() == Some(FolderKind::Foreign(Foreign::Checkpoint))
    }

    pub(super) fn apply_convert(&mut self, intent: ConvertIntent) {
        match intent {
            ConvertIntent::OpenPackage => {
                let Some(source) = self.persisted.selected.clone().filter(|_| self.selected_is_checkpoint()) else { return };
                self.convert.package = Some(PackageDialog {
                    destination: beside(&source, "-mlflow"),
                    source,
                    kind: PackageKind::Transformers,
                    name: String::new(),
                    mlflow2: false,
                    link_weights: false,
                    job: None,
                    progress: None,
                    outcome: None,
                });
            }
            ConvertIntent::RunPackage => self.run_package(),
            ConvertIntent::CancelPackage => {
                if let Some(job) = self.convert.package.as_ref().and_then(|d| d.job.as_ref()) {
                    job.cancel.store(true, Ordering::SeqCst);
                }
            }
            ConvertIntent::ClosePackage => {
                if !self.convert.package.as_ref().is_some_and(PackageDialog::is_running) {
                    self.convert.package = None;
                }
            }
            ConvertIntent::OpenConvert { then_package } => {
                let source = match &self.convert.package {
                    Some(dialog) => dialog.source.clone(),
                    None => match self.persisted.selected.clone().filter(|_| self.selected_is_checkpoint()) {
                        Some(source) => source,
                        None => return,
                    },
                };
                self.convert.package = None;
                let settings = self.persisted.convert.clone();
                self.convert.convert = Some(ConvertDialog {
                    destination: convert_destination(&source, &settings),
                    source,
                    settings,
                    then_package,
                    running: None,
                    progress: None,
                    outcome: None,
                });
            }
            ConvertIntent::RunConvert => self.run_convert(),
            ConvertIntent::CancelConvert => {
                if let Some(service) = &self.convert.service {
                    service.cancel();
                }
            }
            ConvertIntent::CloseConvert => {
                if !self.convert.convert.as_ref().is_some_and(ConvertDialog::is_running) {
                    self.convert.convert = None;
                }
            }
        }
    }

    fn run_package(&mut self) {
        let waker = self.waker();
        let Some(dialog) = self.convert.package.as_mut().filter(|d| d.job.is_none()) else { return };
        let mut options = PackageOptions {
            name: Some(dialog.name.trim().to_owned()).filter(|n| !n.is_empty()),
            versions: if dialog.mlflow2 { Versions::mlflow2() } else { Versions::mlflow3() },
            link_weights: dialog.link_weights,
            ..PackageOptions::default()
        };
        options.model_config.insert("max_new_tokens", Node::Int(256));
        let (source, destination) = (dialog.source.clone(), PathBuf::from(dialog.destination.trim()));
        let (sender, updates) = mpsc::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&cancel);
        let result = Promise::spawn_thread("package-checkpoint", move || {
            let mut report = |progress: CopyProgress| {
                let _ = sender.send(progress);
                waker();
            };
            let outcome = Checkpoint::open(&source)
                .map_err(|e| e.to_string())
                .and_then(|checkpoint| create_transformers_package(&checkpoint, &destination, &options, &mut report, &flag).map_err(|e| e.to_string()))
                .map(|summary| summary.path);
            waker();
            outcome
        });
        dialog.outcome = None;
        dialog.job = Some(PackageJob { cancel, updates, result });
    }

    fn run_convert(&mut self) {
        let waker = self.waker();
        let Some(dialog) = self.convert.convert.as_mut().filter(|d| d.running.is_none()) else { return };
        self.persisted.convert = dialog.settings.clone();
        let python = dialog.settings.python.trim();
        let request = ConvertRequest {
            checkpoint: dialog.source.clone(),
            out: PathBuf::from(dialog.destination.trim()),
            precision: dialog.settings.precision,
            provider: dialog.settings.provider,
            python: (!python.is_empty()).then(|| {
                let home = directories::BaseDirs::new().map(|dirs| dirs.home_dir().to_path_buf());
                PathBuf::from(crate::inspect::find::expand_home(python, home.as_deref()))
            }),
        };
        if self.convert.service.is_none() {
            match ConvertService::start(Arc::new(waker)) {
                Ok(service) => self.convert.service = Some(service),
                Err(error) => return self.notify_error("The conversion could not start", Some(error.to_string())),
            }
        }
        let Some(service) = self.convert.service.as_mut() else { return };
        dialog.running = Some(service.convert(request));
        dialog.progress = None;
        dialog.outcome = None;
    }

    /// The checkpoint summary, the package job and the conversion's events.
    pub(super) fn poll_convert(&mut self) {
        let selected = self.persisted.selected.clone().filter(|_| self.selected_is_checkpoint());
        if selected.as_ref() != self.convert.summary.as_ref().map(|(path, _)| path) {
            self.convert.summary = None;
            self.convert.reading = None;
            if let Some(path) = selected {
                let read = path.clone();
                self.convert.reading = Some(self.spawn("read-checkpoint", move || CheckpointSummary::read(&read)));
                self.convert.summary = Some((path, None));
            }
        }
        if let Some(summary) = self.convert.reading.take_if(|p| p.ready().is_some()).and_then(|p| p.try_take().ok()) {
            if let Some((_, slot)) = self.convert.summary.as_mut() {
                *slot = Some(summary);
            }
        }
        self.poll_package_job();
        self.poll_conversion();
    }

    fn poll_package_job(&mut self) {
        let Some(dialog) = self.convert.package.as_mut() else { return };
        let Some(job) = dialog.job.as_ref() else { return };
        while let Ok(progress) = job.updates.try_recv() {
            dialog.progress = Some(progress);
        }
        if job.result.ready().is_none() {
            return;
        }
        let Some(job) = dialog.job.take() else { return };
        let outcome = job.result.block_and_take();
        dialog.outcome = Some(outcome.clone());
        if let Ok(path) = outcome {
            self.notify(format!("Wrote {}", path.display()));
            self.add_to_library(&path);
        }
    }

    fn poll_conversion(&mut self) {
        let events: Vec<ConvertEvent> = match self.convert.service.as_ref() {
            Some(service) => std::iter::from_fn(|| service.try_recv()).collect(),
            None => return,
        };
        for event in events {
            let Some(dialog) = self.convert.convert.as_mut().filter(|d| d.running == Some(event.id())) else { continue };
            let finished = match event {
                ConvertEvent::Started { .. } => None,
                ConvertEvent::Progress { progress, .. } => {
                    dialog.progress = Some(progress);
                    None
                }
                ConvertEvent::Finished { converted, .. } => {
                    dialog.running = None;
                    dialog.outcome = Some(Ok(converted.folder.clone()));
                    Some((converted, dialog.then_package))
                }
                ConvertEvent::Failed { message, .. } => {
                    dialog.running = None;
                    dialog.outcome = Some(Err(message));
                    None
                }
                ConvertEvent::Cancelled { .. } => {
                    dialog.running = None;
                    dialog.outcome = Some(Err("cancelled".into()));
                    None
                }
            };
            if let Some((converted, then_package)) = finished {
                self.notify(format!("Converted to {} in {:.0} s", converted.folder.display(), converted.seconds));
                // The result opens like any Phi ONNX folder; packaging it continues there.
                self.open_folder(&converted.folder);
                if then_package {
                    self.convert.convert = None;
                    self.open_dialog(DialogKind::Create);
                }
            }
        }
    }
}
