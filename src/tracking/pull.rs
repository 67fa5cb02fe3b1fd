//! Pulling a model: resolve a model URI to its artifact root (`../shared/docs/
//! mlflow-tracking-registry.md` §6), list it recursively, download every file with progress
//! (bytes and files), resume partial files, verify the listed sizes, and land the folder
//! atomically. Pulls into the cache (`<data>/mlflow/<server>/…`, keyed by the resolved version)
//! are recorded in `pull.json` beside the folder, so a second pull of the same version is
//! instant. The folder records its origin in `registered_model_meta`, as MLflow does.

use std::{
    path::{Path, PathBuf},
    sync::mpsc::Receiver,
};

use serde::{Deserialize, Serialize};

use super::{
    client::{Result, TrackingClient, TrackingError},
    config::safe_file_name,
    types::{FileInfo, VERSION_READY},
    uri::{ModelUri, check_relative_path, proxied_artifact_path},
};
use crate::{
    mlflow::mlmodel::write_atomically,
    service::{Outbox, Service, Waker},
};

/// MLflow's record of where a downloaded registered model came from.
pub const REGISTERED_MODEL_META: &str = "registered_model_meta";
/// The cache's record of a finished pull, beside the model folder.
pub const PULL_RECORD: &str = "pull.json";
/// Bounds on what a server's listing may make us walk.
const MAX_FILES: usize = 100_000;
const MAX_DEPTH: usize = 32;

/// What a model URI resolved to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    pub tracking_uri: String,
    /// What was asked for (`models:/phi3@champion`).
    pub requested: String,
    /// Registered model name and version, for `models:/NAME/…` URIs.
    pub name: Option<String>,
    pub version: Option<String>,
    pub model_id: Option<String>,
    pub run_id: Option<String>,
    /// The artifact root (`mlflow-artifacts:/…`).
    pub artifact_uri: String,
}

/// One file to fetch: its path relative to the model root and the size the listing gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteFile {
    pub path: String,
    pub size: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullRecord {
    pub origin: Origin,
    pub files: Vec<RemoteFile>,
    pub pulled_at_ms: i64,
}

/// Where a pull lands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// The cache under the app's data directory (`<data>/mlflow`).
    Cache(PathBuf),
    /// A folder of the user's choice (must not exist yet, or hold an earlier pull's partial).
    Folder(PathBuf),
}

#[derive(Debug, Clone, PartialEq)]
pub enum PullEvent {
    Resolved { origin: Box<Origin>, files: usize, bytes: u64 },
    Progress(PullProgress),
    /// The folder is ready; `cached` when nothing had to be downloaded; `resumed_bytes` were
    /// kept from an earlier, interrupted pull.
    Finished { folder: PathBuf, origin: Box<Origin>, cached: bool, resumed_bytes: u64 },
    Failed { message: String },
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PullProgress {
    pub files_done: usize,
    pub files_total: usize,
    pub bytes_done: u64,
    pub bytes_total: u64,
}

/// A finished pull.
#[derive(Debug, Clone, PartialEq)]
pub struct Pulled {
    pub folder: PathBuf,
    pub origin: Origin,
    /// Nothing was downloaded: the cache had this version.
    pub cached: bool,
    /// Bytes kept from partial files of an interrupted pull.
    pub resumed_bytes: u64,
}

/// Resolves `uri` on the server (no download).
pub fn resolve(client: &TrackingClient, uri: &ModelUri) -> Result<Origin> {
    let origin = |name: Option<String>, version: Option<String>, model_id: Option<String>, run_id: Option<String>, artifact_uri: String| Origin {
        tracking_uri: client.base_url().to_owned(),
        requested: uri.to_string(),
        name,
        version,
        model_id,
        run_id,
        artifact_uri,
    };
    let registered = |name: &str, version: &str| -> Result<Origin> {
        let found = client.get_model_version(name, version)?;
        if found.status != VERSION_READY {
            return Err(TrackingError::Api {
                url: client.base_url().to_owned(),
                status: 409,
                error_code: found.status.clone(),
                message: format!("version {version} of {name} is {} {}", found.status, found.status_message),
            });
        }
        let mut artifact_uri = client.download_uri(name, version)?;
        // For a runs:/ source the server hands the runs:/ URI back; resolve it through the run.
        if let Ok(ModelUri::Run { run_id, path }) = ModelUri::parse(&artifact_uri) {
            artifact_uri = run_artifact_uri(client, &run_id, &path)?;
        }
        let run_id = Some(found.run_id.clone()).filter(|r| !r.is_empty());
        Ok(origin(Some(name.into()), Some(version.into()), found.model_id().map(str::to_owned), run_id, artifact_uri))
    };
    match uri {
        ModelUri::Version { name, version } => registered(name, &version.to_string()),
        ModelUri::Alias { name, alias } => registered(name, &client.version_by_alias(name, alias)?.version),
        ModelUri::Latest { name } => {
            let page = client.search_model_versions(name, None)?;
            let newest = page.items.iter().filter_map(|v| v.version.parse::<u64>().ok()).max().ok_or_else(|| TrackingError::NotFound {
                what: format!("a version of {name}"),
                url: client.base_url().into(),
                message: "the model has no versions".into(),
            })?;
            registered(name, &newest.to_string())
        }
        ModelUri::LoggedModel { model_id } => {
            let model = client.get_logged_model(model_id)?.info;
            let run_id = Some(model.source_run_id).filter(|r| !r.is_empty());
            Ok(origin(None, None, Some(model_id.clone()), run_id, model.artifact_uri))
        }
        ModelUri::Run { run_id, path } => Ok(origin(None, None, None, Some(run_id.clone()), run_artifact_uri(client, run_id, path)?)),
    }
}

fn run_artifact_uri(client: &TrackingClient, run_id: &str, path: &str) -> Result<String> {
    let root = client.get_run(run_id)?.info.artifact_uri;
    Ok(if path.is_empty() { root } else { format!("{}/{path}", root.trim_end_matches('/')) })
}

fn proxy_root(client: &TrackingClient, origin: &Origin) -> Result<String> {
    proxied_artifact_path(&origin.artifact_uri).ok_or_else(|| TrackingError::Protocol {
        url: client.base_url().to_owned(),
        reason: format!(
            "the artifacts are at {}, which this server does not proxy; ModelDesk pulls from servers started with --serve-artifacts",
            origin.artifact_uri
        ),
    })
}

/// Every file under the artifact root, with its listed size (bounded depth and count).
pub fn list_files(client: &TrackingClient, root: &str) -> Result<Vec<RemoteFile>> {
    let mut files = Vec::new();
    let mut pending = vec![(String::new(), 0usize)];
    while let Some((dir, depth)) = pending.pop() {
        let listed: Vec<FileInfo> = client.list_artifacts(&if dir.is_empty() { root.to_owned() } else { format!("{root}/{dir}") })?;
        for entry in listed {
            // Names are relative to the listed directory; a hostile server may send anything.
            let name = entry.path.rsplit('/').next().unwrap_or_default().to_owned();
            let path = if dir.is_empty() { name } else { format!("{dir}/{name}") };
            check_relative_path(&path).map_err(|reason| TrackingError::Protocol { url: client.base_url().into(), reason: format!("the listing names {reason}") })?;
            if entry.is_dir {
                if depth + 1 > MAX_DEPTH {
                    return Err(TrackingError::Protocol { url: client.base_url().into(), reason: format!("{path} is nested more than {MAX_DEPTH} levels deep") });
                }
                pending.push((path, depth + 1));
            } else {
                files.push(RemoteFile { path, size: entry.file_size });
            }
            if files.len() + pending.len() > MAX_FILES {
                return Err(TrackingError::Protocol { url: client.base_url().into(), reason: format!("the model has more than {MAX_FILES} files") });
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// The cache folder for a resolved origin: `<cache>/<server>/registered/<name>/<version>`,
/// `…/logged/<model_id>` or `…/runs/<run_id>/<path>`.
pub fn cache_slot(cache: &Path, client: &TrackingClient, origin: &Origin) -> PathBuf {
    let server = cache.join(client.connection().cache_key());
    match (&origin.name, &origin.version, &origin.model_id, &origin.run_id) {
        (Some(name), Some(version), _, _) => server.join("registered").join(safe_file_name(name)).join(safe_file_name(version)),
        (_, _, Some(model_id), _) => server.join("logged").join(safe_file_name(model_id)),
        (_, _, _, Some(run_id)) => {
            let path = origin.requested.split_once(run_id.as_str()).map(|(_, rest)| rest.trim_matches('/')).unwrap_or_default();
            server.join("runs").join(safe_file_name(run_id)).join(safe_file_name(if path.is_empty() { "_root" } else { path }))
        }
        _ => server.join("other").join(safe_file_name(&origin.artifact_uri)),
    }
}

/// Whether `folder` holds every recorded file with its recorded size.
fn is_complete(folder: &Path, files: &[RemoteFile]) -> bool {
    files.iter().all(|f| std::fs::metadata(folder.join(&f.path)).is_ok_and(|m| m.is_file() && f.size.is_none_or(|size| m.len() == size)))
}

/// Pulls `uri` into `destination`, reporting progress; returns the model folder and whether it
/// was already there. Blocking; runs on the caller's thread (the service wraps it).
pub fn pull(client: &TrackingClient, uri: &ModelUri, destination: &Destination, report: &mut dyn FnMut(PullEvent)) -> Result<Pulled> {
    let origin = resolve(client, uri)?;
    let (folder, staging, record_path) = match destination {
        Destination::Cache(cache) => {
            let slot = cache_slot(cache, client, &origin);
            (slot.join("model"), slot.join("partial"), Some(slot.join(PULL_RECORD)))
        }
        Destination::Folder(folder) => {
            let name = folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
            (folder.clone(), folder.with_file_name(format!(".{name}.modeldesk-partial")), None)
        }
    };
    if let Some(record_path) = &record_path {
        if let Some(record) = crate::fsio::read_bytes(record_path, crate::fsio::CONFIG_LIMIT).ok().and_then(|b| serde_json::from_slice::<PullRecord>(&b).ok()) {
            if record.origin.artifact_uri == origin.artifact_uri && is_complete(&folder, &record.files) {
                return Ok(Pulled { folder, origin, cached: true, resumed_bytes: 0 });
            }
        }
    }
    if matches!(destination, Destination::Folder(_)) && folder.exists() {
        return Err(TrackingError::Io { path: folder, source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "the destination already exists") });
    }
    let root = proxy_root(client, &origin)?;
    let files = list_files(client, &root)?;
    if files.is_empty() {
        return Err(TrackingError::NotFound { what: format!("artifacts of {uri}"), url: client.base_url().into(), message: format!("{} lists no files", origin.artifact_uri) });
    }
    let bytes_total: u64 = files.iter().filter_map(|f| f.size).sum();
    report(PullEvent::Resolved { origin: Box::new(origin.clone()), files: files.len(), bytes: bytes_total });
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TrackingError::Io { path: path.clone(), source }
    };
    let mut progress = PullProgress { files_total: files.len(), bytes_total, ..Default::default() };
    let mut resumed_bytes = 0;
    for file in &files {
        if client.is_cancelled() {
            return Err(TrackingError::Cancelled);
        }
        let dest = staging.join(&file.path);
        let done_before = progress.bytes_done;
        let already = std::fs::metadata(&dest).ok().filter(|m| file.size.is_none_or(|size| m.len() == size));
        if let Some(kept) = already {
            resumed_bytes += kept.len();
        } else {
            let parent = dest.parent().unwrap_or(&staging);
            std::fs::create_dir_all(parent).map_err(io(parent))?;
            let mut partial = dest.as_os_str().to_owned();
            partial.push(".part");
            let downloaded = client.download_artifact(&format!("{root}/{}", file.path), &dest, PathBuf::from(partial), file.size, &mut |done, _| {
                progress.bytes_done = done_before + done;
                report(PullEvent::Progress(progress));
            })?;
            resumed_bytes += downloaded.resumed_from;
        }
        progress.bytes_done = done_before + file.size.unwrap_or(0);
        progress.files_done += 1;
        report(PullEvent::Progress(progress));
    }
    if origin.name.is_some() || origin.model_id.is_some() {
        write_registered_model_meta(&staging, &origin).map_err(io(&staging))?;
    }
    if folder.exists() {
        std::fs::remove_dir_all(&folder).map_err(io(&folder))?;
    }
    if let Some(parent) = folder.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    std::fs::rename(&staging, &folder).map_err(io(&folder))?;
    if let Some(record_path) = &record_path {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        let record = PullRecord { origin: origin.clone(), files, pulled_at_ms: now };
        write_atomically(record_path, &serde_json::to_vec_pretty(&record).unwrap_or_default()).map_err(io(record_path))?;
    }
    Ok(Pulled { folder, origin, cached: false, resumed_bytes })
}

/// `registered_model_meta` as MLflow writes it on download: PyYAML's dump of
/// `{model_name, model_version}` (both null for a logged model).
fn write_registered_model_meta(folder: &Path, origin: &Origin) -> std::io::Result<()> {
    let scalar = |value: &Option<String>| match value {
        Some(text) => crate::mlflow::yaml::Node::Str(text.clone()),
        None => crate::mlflow::yaml::Node::Null,
    };
    let mut map = crate::mlflow::yaml::Mapping::new();
    map.insert("model_name", scalar(&origin.name));
    map.insert("model_version", scalar(&origin.version));
    let text = crate::mlflow::yaml::emit(&crate::mlflow::yaml::Node::Map(map));
    write_atomically(&folder.join(REGISTERED_MODEL_META), text.as_bytes())
}

/// A pull request for the service.
#[derive(Debug, Clone)]
pub struct PullCommand {
    pub uri: ModelUri,
    pub destination: Destination,
}

/// The pull service: one pull at a time on its own thread; `cancel()` stops the one in flight
/// (its partial files stay for a resumed pull); dropping the handle shuts it down.
pub struct PullService {
    service: Service<PullCommand, PullEvent>,
}

impl PullService {
    pub fn spawn(client: TrackingClient, waker: Waker) -> std::io::Result<PullService> {
        let service = Service::spawn("modeldesk-pull", waker, move |commands: Receiver<PullCommand>, outbox: Outbox<PullEvent>| {
            for command in commands {
                let result = super::mirror_cancel(outbox.cancel_flag(), |flag| {
                    pull(&client.with_cancel(flag), &command.uri, &command.destination, &mut |event| {
                        outbox.send(event);
                    })
                });
                outbox.send(match result {
                    Ok(pulled) => PullEvent::Finished { folder: pulled.folder, origin: Box::new(pulled.origin), cached: pulled.cached, resumed_bytes: pulled.resumed_bytes },
                    Err(TrackingError::Cancelled) => PullEvent::Cancelled,
                    Err(e) => PullEvent::Failed { message: e.to_string() },
                });
                outbox.reset_cancel();
            }
        })?;
        Ok(PullService { service })
    }

    pub fn pull(&self, uri: ModelUri, destination: Destination) -> bool {
        self.service.send(PullCommand { uri, destination })
    }

    pub fn cancel(&self) {
        self.service.cancel();
    }

    pub fn try_recv(&self) -> Option<PullEvent> {
        self.service.try_recv()
    }

    pub fn recv_timeout(&self, timeout: std::time::Duration) -> Option<PullEvent> {
        self.service.recv_timeout(timeout)
    }
}
