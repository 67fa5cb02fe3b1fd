//! Pushing a model folder and registering it (`../shared/docs/mlflow-tracking-registry.md` §4,
//! §5, §8, §9): experiment, run, LoggedModel (or, on an MLflow 2.x server, the run's artifacts),
//! one streamed PUT per file with progress, the LoggedModel marked ready, a model version that
//! is awaited until READY, then aliases. Every step is reported; a failure names its step and
//! any version that was created. The folder is sent as it is (MLmodel untouched).

use std::{
    path::{Path, PathBuf},
    sync::{Arc, mpsc::Receiver},
    time::{Duration, Instant},
};

use serde::Serialize;

use super::{
    client::{Result, TrackingClient, TrackingError},
    types::{KeyValue, LOGGED_MODEL_READY, VERSION_PENDING, VERSION_READY},
    uri::proxied_artifact_path,
};
use crate::service::{Outbox, Service, Waker};

/// How long a version may stay PENDING_REGISTRATION (MLflow's client waits as long).
const READY_TIMEOUT: Duration = Duration::from_secs(300);
/// The run artifact folder used on MLflow 2.x servers (what 2.x's `log_model(artifact_path=...)` names).
const RUN_MODEL_DIR: &str = "model";

#[derive(Debug, Clone, PartialEq)]
pub struct PushRequest {
    pub folder: PathBuf,
    /// The registered model (created when missing).
    pub name: String,
    /// Defaults to MLflow's "Default" experiment.
    pub experiment: Option<String>,
    pub aliases: Vec<String>,
    pub tags: Vec<KeyValue>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PushStep {
    CheckFolder,
    Connect,
    Experiment,
    Run,
    LoggedModel,
    Upload,
    MarkReady,
    RegisteredModel,
    ModelVersion,
    WaitReady,
    Aliases,
    FinishRun,
}

impl PushStep {
    pub fn label(self) -> &'static str {
        match self {
            PushStep::CheckFolder => "checking the folder",
            PushStep::Connect => "connecting",
            PushStep::Experiment => "finding the experiment",
            PushStep::Run => "creating the run",
            PushStep::LoggedModel => "creating the logged model",
            PushStep::Upload => "uploading the files",
            PushStep::MarkReady => "marking the logged model ready",
            PushStep::RegisteredModel => "creating the registered model",
            PushStep::ModelVersion => "creating the model version",
            PushStep::WaitReady => "waiting for the version to be READY",
            PushStep::Aliases => "setting the aliases",
            PushStep::FinishRun => "finishing the run",
        }
    }
}

/// What a finished push made.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pushed {
    /// The LoggedModel (`None` on an MLflow 2.x server).
    pub model_id: Option<String>,
    pub name: String,
    pub version: String,
    /// The version's source: `models:/<model_id>`, or `runs:/<run>/model` on 2.x.
    pub source: String,
    pub run_id: String,
    pub experiment_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PushEvent {
    Step(PushStep),
    Progress(PushProgress),
    Finished(Box<Pushed>),
    /// `version` is set when a version was created before the failure (the user can see it).
    Failed { step: PushStep, message: String, version: Option<String> },
    Cancelled { step: PushStep },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PushProgress {
    pub files_done: usize,
    pub files_total: usize,
    pub bytes_done: u64,
    pub bytes_total: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("{} failed: {error}{}", step.label(), version.as_ref().map(|v| format!(" (version {v} was created and is left as it is)")).unwrap_or_default())]
pub struct PushError {
    pub step: PushStep,
    pub error: TrackingError,
    pub version: Option<String>,
}

/// Every regular file under `folder` (relative `/` paths, sorted) and its size, through the
/// project's one folder walk (links followed, loops and dangling links refused, ModelDesk's own
/// temporary files skipped).
pub fn local_files(folder: &Path) -> std::result::Result<Vec<(String, u64)>, crate::fsio::walk::WalkError> {
    let files = crate::fsio::walk::walk(folder)?.into_files()?;
    Ok(files
        .into_iter()
        .map(|file| {
            let parts: Vec<String> = file.relative.components().map(|part| part.as_os_str().to_string_lossy().into_owned()).collect();
            (parts.join("/"), file.size)
        })
        .collect())
}

/// Pushes and registers `request.folder`. Blocking; the service wraps it.
pub fn push(client: &TrackingClient, request: &PushRequest, report: &mut dyn FnMut(PushEvent)) -> std::result::Result<Pushed, PushError> {
    let mut step = PushStep::CheckFolder;
    let mut version: Option<String> = None;
    let mut run: Option<String> = None;
    let mut logged: Option<String> = None;
    let result = run_steps(client, request, report, &mut step, &mut version, &mut run, &mut logged);
    if result.is_err() {
        // Leave nothing that looks finished: the run ends FAILED and the LoggedModel says so.
        if let Some(model_id) = &logged {
            if step <= PushStep::MarkReady {
                let _ = client.with_cancel(Default::default()).set_logged_model_status(model_id, "LOGGED_MODEL_UPLOAD_FAILED");
            }
        }
        if let Some(run_id) = &run {
            let _ = client.with_cancel(Default::default()).finish_run(run_id, "FAILED");
        }
    }
    result.map_err(|error| PushError { step, error, version })
}

impl PartialOrd for PushStep {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        (*self as u8).partial_cmp(&(*other as u8))
    }
}

#[allow(clippy::too_many_arguments)]
fn run_steps(
    client: &TrackingClient,
    request: &PushRequest,
    report: &mut dyn FnMut(PushEvent),
    step: &mut PushStep,
    version: &mut Option<String>,
    run: &mut Option<String>,
    logged: &mut Option<String>,
) -> Result<Pushed> {
    let mut enter = |next: PushStep, report: &mut dyn FnMut(PushEvent)| -> Result<()> {
        if client.is_cancelled() {
            return Err(TrackingError::Cancelled);
        }
        *step = next;
        report(PushEvent::Step(next));
        Ok(())
    };
    enter(PushStep::CheckFolder, report)?;
    let folder_error = |message: String| TrackingError::Io { path: request.folder.clone(), source: std::io::Error::other(message) };
    let validation = crate::mlflow::validate::validate_folder(&request.folder);
    if !validation.is_usable() {
        let problems: Vec<String> = validation.errors().map(ToString::to_string).collect();
        return Err(folder_error(format!("not a usable MLflow model: {}", problems.join("; "))));
    }
    let files = local_files(&request.folder).map_err(|e| folder_error(e.to_string()))?;

    enter(PushStep::Connect, report)?;
    let modern = client.has_logged_models()?;

    enter(PushStep::Experiment, report)?;
    let experiment_id = client.get_or_create_experiment(request.experiment.as_deref().unwrap_or("Default"))?;

    enter(PushStep::Run, report)?;
    let source_tags = [KeyValue::new("mlflow.source.name", "modeldesk"), KeyValue::new("mlflow.source.type", "LOCAL")];
    let run_info = client.create_run(&experiment_id, &format!("modeldesk-push-{}", request.name), &source_tags)?.info;
    *run = Some(run_info.run_id.clone());

    let (artifact_uri, source, model_id) = if modern {
        enter(PushStep::LoggedModel, report)?;
        let model = client.create_logged_model(&experiment_id, &request.name, &run_info.run_id, &source_tags)?.info;
        *logged = Some(model.model_id.clone());
        client.link_model_to_run(&run_info.run_id, &model.model_id)?;
        (model.artifact_uri, format!("models:/{}", model.model_id), Some(model.model_id))
    } else {
        (format!("{}/{RUN_MODEL_DIR}", run_info.artifact_uri.trim_end_matches('/')), format!("runs:/{}/{RUN_MODEL_DIR}", run_info.run_id), None)
    };
    let root = proxied_artifact_path(&artifact_uri).ok_or_else(|| TrackingError::Protocol {
        url: client.base_url().into(),
        reason: format!("artifacts go to {artifact_uri}, which this server does not proxy (start it with --serve-artifacts)"),
    })?;

    enter(PushStep::Upload, report)?;
    let total = PushProgress { files_total: files.len(), bytes_total: files.iter().map(|(_, size)| size).sum(), ..Default::default() };
    let mut done = total;
    for (relative, size) in &files {
        let before = done.bytes_done;
        let (sender, sent) = std::sync::mpsc::channel::<u64>();
        let on_sent: Arc<dyn Fn(u64) + Send + Sync> = Arc::new(move |bytes| {
            let _ = sender.send(bytes);
        });
        let path = format!("{root}/{relative}");
        let local = request.folder.join(relative);
        // The upload blocks; its body reports bytes from reqwest's thread, forwarded from here.
        std::thread::scope(|scope| {
            let upload = scope.spawn(|| client.upload_artifact(&path, &local, on_sent));
            let mut last = Instant::now();
            while !upload.is_finished() {
                if let Ok(bytes) = sent.recv_timeout(Duration::from_millis(100)) {
                    let newest = sent.try_iter().last().unwrap_or(bytes);
                    if last.elapsed() >= Duration::from_millis(100) {
                        last = Instant::now();
                        report(PushEvent::Progress(PushProgress { bytes_done: before + newest.min(*size), ..done }));
                    }
                }
            }
            upload.join().unwrap_or_else(|_| Err(TrackingError::Protocol { url: path.clone(), reason: "the upload thread panicked".into() }))
        })?;
        done.bytes_done = before + size;
        done.files_done += 1;
        report(PushEvent::Progress(done));
    }

    if let Some(model_id) = &model_id {
        enter(PushStep::MarkReady, report)?;
        let model = client.set_logged_model_status(model_id, LOGGED_MODEL_READY)?.info;
        if model.status != LOGGED_MODEL_READY {
            return Err(TrackingError::Protocol { url: client.base_url().into(), reason: format!("the logged model stayed {}", model.status) });
        }
    }

    enter(PushStep::RegisteredModel, report)?;
    client.ensure_registered_model(&request.name, None)?;

    enter(PushStep::ModelVersion, report)?;
    let created = client.create_model_version(&request.name, &source, &run_info.run_id, model_id.as_deref(), request.description.as_deref(), &request.tags)?;
    *version = Some(created.version.clone());

    enter(PushStep::WaitReady, report)?;
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut status = created.status.clone();
    while status == VERSION_PENDING {
        if Instant::now() > deadline {
            return Err(TrackingError::Protocol { url: client.base_url().into(), reason: format!("version {} stayed {VERSION_PENDING} for {READY_TIMEOUT:?}", created.version) });
        }
        std::thread::sleep(Duration::from_millis(500));
        if client.is_cancelled() {
            return Err(TrackingError::Cancelled);
        }
        status = client.get_model_version(&request.name, &created.version)?.status;
    }
    if status != VERSION_READY {
        let found = client.get_model_version(&request.name, &created.version)?;
        return Err(TrackingError::Api {
            url: client.base_url().into(),
            status: 409,
            error_code: found.status.clone(),
            message: format!("the registry reports {} {}", found.status, found.status_message),
        });
    }

    if !request.aliases.is_empty() {
        enter(PushStep::Aliases, report)?;
        for alias in &request.aliases {
            client.set_alias(&request.name, alias, &created.version)?;
        }
    }

    enter(PushStep::FinishRun, report)?;
    client.finish_run(&run_info.run_id, "FINISHED")?;
    Ok(Pushed { model_id, name: request.name.clone(), version: created.version, source, run_id: run_info.run_id, experiment_id })
}

/// The push service: one push at a time on its own thread; `cancel()` stops the one in flight
/// at the next file chunk or step; dropping the handle shuts it down.
pub struct PushService {
    service: Service<PushRequest, PushEvent>,
}

impl PushService {
    pub fn spawn(client: TrackingClient, waker: Waker) -> std::io::Result<PushService> {
        let service = Service::spawn("modeldesk-push", waker, move |requests: Receiver<PushRequest>, outbox: Outbox<PushEvent>| {
            for request in requests {
                let result = super::mirror_cancel(outbox.cancel_flag(), |flag| {
                    push(&client.with_cancel(flag), &request, &mut |event| {
                        outbox.send(event);
                    })
                });
                outbox.send(match result {
                    Ok(pushed) => PushEvent::Finished(Box::new(pushed)),
                    Err(PushError { step, error: TrackingError::Cancelled, .. }) => PushEvent::Cancelled { step },
                    Err(e) => PushEvent::Failed { step: e.step, message: e.to_string(), version: e.version },
                });
                outbox.reset_cancel();
            }
        })?;
        Ok(PushService { service })
    }

    pub fn push(&self, request: PushRequest) -> bool {
        self.service.send(request)
    }

    pub fn cancel(&self) {
        self.service.cancel();
    }

    pub fn try_recv(&self) -> Option<PushEvent> {
        self.service.try_recv()
    }

    pub fn recv_timeout(&self, timeout: Duration) -> Option<PushEvent> {
        self.service.recv_timeout(timeout)
    }
}
