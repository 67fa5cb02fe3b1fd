//! The "Get a model" view's state: the Phi ONNX catalog with the variant picked for each entry,
//! what the Hugging Face cache already holds (scanned on a background thread), and the download
//! running on [`DownloadService`]. Finished downloads join the library and open.

use std::{path::PathBuf, sync::Arc};

use poll_promise::Promise;

use super::AppState;
use crate::hub::{
    CachedModel, DownloadEvent, DownloadRequest, DownloadService, HubCache, HubSettings, LocalSnapshot, Progress, Rate,
    catalog::CATALOG,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetModelIntent {
    Show,
    Hide,
    /// Pick variant `variant` of catalog entry `model`.
    SelectVariant { model: usize, variant: usize },
    /// Download (or resume) the picked variant of catalog entry `model`.
    Download { model: usize },
    Cancel,
    /// A model folder already on this computer: add it to the library and open it.
    AddToLibrary(PathBuf),
}

/// What the background scan of the cache found.
pub struct CacheScan {
    /// The Hub settings from the environment (`HF_ENDPOINT`, `HF_HUB_CACHE`, `HF_TOKEN`…), or
    /// why they are unusable.
    pub settings: Result<HubSettings, String>,
    /// For each catalog entry and each of its variants, a complete copy in the cache.
    pub catalog: Vec<Vec<Option<LocalSnapshot>>>,
    /// Other model folders in the cache (not the catalog's copies above).
    pub others: Vec<CachedModel>,
    /// Free space on the disk that holds the cache (or would, once created).
    pub free_bytes: Option<u64>,
}

impl CacheScan {
    fn run(settings: Result<HubSettings, String>) -> Self {
        let Ok(found) = &settings else { return Self { settings, catalog: Vec::new(), others: Vec::new(), free_bytes: None } };
        // The cache folder may not exist yet: ask the nearest folder that does.
        let free_bytes = found.cache_dir.ancestors().find(|dir| dir.is_dir()).and_then(|dir| fs4::available_space(dir).ok());
        let cache = HubCache::new(found.cache_dir.clone());
        let catalog: Vec<Vec<Option<LocalSnapshot>>> = CATALOG
            .iter()
            .map(|model| {
                let repo = crate::hub::RepoId::parse(model.repo).ok();
                let local = |folder: &str| repo.as_ref().and_then(|repo| cache.find_local(repo, "main", Some(folder)));
                model.variants.iter().map(|variant| local(variant.folder)).collect()
            })
            .collect();
        let known: Vec<&PathBuf> = catalog.iter().flatten().flatten().map(|local| &local.folder).collect();
        let others = cache.scan_models().into_iter().filter(|model| !known.contains(&&model.folder)).collect();
        Self { settings, catalog, others, free_bytes }
    }

    /// The complete local copy of a catalog entry's variant, if any.
    pub fn local(&self, model: usize, variant: usize) -> Option<&LocalSnapshot> {
        self.catalog.get(model)?.get(variant)?.as_ref()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum DownloadStatus {
    /// Asking the Hub what to fetch.
    Starting,
    Running,
    /// Stopped by the user; the partial files stay, so downloading again resumes.
    Cancelled,
    Failed {
        message: String,
        /// A token would help (401/403): the view shows where to get one.
        wants_token: bool,
    },
}

/// The download the view shows.
#[derive(Debug, Clone)]
pub struct ActiveDownload {
    pub id: u64,
    pub model: usize,
    pub variant: usize,
    pub status: DownloadStatus,
    pub progress: Option<Progress>,
    pub rate: Option<Rate>,
    /// Bytes of this download already on disk when it started (a resumed download).
    pub resumed_bytes: u64,
}

impl ActiveDownload {
    pub fn is_running(&self) -> bool {
        matches!(self.status, DownloadStatus::Starting | DownloadStatus::Running)
    }
}

#[derive(Default)]
pub struct GetModel {
    pub visible: bool,
    /// The variant picked for each catalog entry (0, the CPU int4 one, unless changed).
    pub selected: Vec<usize>,
    /// The last finished scan of the cache.
    pub scan: Option<CacheScan>,
    scanning: Option<Promise<CacheScan>>,
    /// Settings to use instead of the environment's (tests).
    settings_override: Option<HubSettings>,
    service: Option<DownloadService>,
    pub download: Option<ActiveDownload>,
}

impl GetModel {
    /// Uses `settings` instead of reading the `HF_*` environment (tests point it at their own
    /// Hub and cache).
    pub fn use_settings(&mut self, settings: HubSettings) {
        self.settings_override = Some(settings);
        self.scan = None;
        self.service = None;
    }

    pub fn selected_variant(&self, model: usize) -> usize {
        self.selected.get(model).copied().unwrap_or(0)
    }

    pub fn is_scanning(&self) -> bool {
        self.scanning.is_some()
    }

    pub fn is_busy(&self) -> bool {
        self.scanning.is_some() || self.download.as_ref().is_some_and(ActiveDownload::is_running)
    }
}

impl AppState {
    pub(super) fn apply_get_model(&mut self, intent: GetModelIntent) {
        match intent {
            GetModelIntent::Show => {
                self.get_model.visible = true;
                self.scan_hub_cache();
            }
            GetModelIntent::Hide => self.get_model.visible = false,
            GetModelIntent::SelectVariant { model, variant } => {
                let selected = &mut self.get_model.selected;
                if model < CATALOG.len() && variant < CATALOG[model].variants.len() {
                    selected.resize(CATALOG.len(), 0);
                    selected[model] = variant;
                }
            }
            GetModelIntent::Download { model } => self.start_download(model),
            GetModelIntent::Cancel => {
                if let (Some(service), Some(download)) = (&self.get_model.service, &self.get_model.download) {
                    service.cancel(download.id);
                }
            }
            GetModelIntent::AddToLibrary(folder) => {
                self.get_model.visible = false;
                self.open_folder(&folder);
            }
        }
    }

    /// Looks at the cache (and reads the settings, which may read the token file) off the GUI
    /// thread.
    fn scan_hub_cache(&mut self) {
        if self.get_model.scanning.is_some() {
            return;
        }
        let settings = self.get_model.settings_override.clone();
        let scan = self.spawn("scan-hf-cache", move || {
            let settings = settings.map(Ok).unwrap_or_else(|| HubSettings::from_env().map_err(|e| e.to_string()));
            CacheScan::run(settings)
        });
        self.get_model.scanning = Some(scan);
    }

    fn start_download(&mut self, model: usize) {
        let Some(entry) = CATALOG.get(model) else { return };
        if self.get_model.download.as_ref().is_some_and(ActiveDownload::is_running) {
            return;
        }
        let Some(Ok(settings)) = self.get_model.scan.as_ref().map(|scan| scan.settings.clone()) else { return };
        let variant = self.get_model.selected_variant(model);
        let request = match DownloadRequest::new(entry.repo, None, Some(entry.variants[variant].folder)) {
            Ok(request) => request,
            Err(error) => return self.notify_error("This catalog entry cannot be downloaded", Some(error.to_string())),
        };
        if self.get_model.service.is_none() {
            self.get_model.service = Some(DownloadService::spawn(settings, Arc::new(self.waker())));
        }
        let Some(service) = self.get_model.service.as_mut() else { return };
        let id = service.start(request);
        self.get_model.download =
            Some(ActiveDownload { id, model, variant, status: DownloadStatus::Starting, progress: None, rate: None, resumed_bytes: 0 });
    }

    /// Folds the cache scan and download events into state; a finished download joins the
    /// library and opens.
    pub(super) fn poll_get_model(&mut self) {
        if let Some(scan) = self.get_model.scanning.take_if(|p| p.ready().is_some()).and_then(|p| p.try_take().ok()) {
            self.get_model.scan = Some(scan);
        }
        let events: Vec<DownloadEvent> = match self.get_model.service.as_mut() {
            Some(service) => std::iter::from_fn(|| service.try_recv()).collect(),
            None => return,
        };
        for event in events {
            let Some(download) = self.get_model.download.as_mut().filter(|d| d.id == event.id()) else { continue };
            match event {
                DownloadEvent::Planned { plan, .. } => {
                    download.status = DownloadStatus::Running;
                    download.resumed_bytes = plan.missing_bytes() - plan.to_fetch_bytes();
                }
                DownloadEvent::Progress { progress, rate, .. } => {
                    download.status = DownloadStatus::Running;
                    download.progress = Some(progress);
                    download.rate = Some(rate);
                }
                DownloadEvent::Finished { outcome, .. } => {
                    let name = CATALOG.get(download.model).map_or("The model", |m| m.title);
                    self.get_model.download = None;
                    self.get_model.visible = false;
                    if outcome.already_cached {
                        self.notify(format!("{name} was already on this computer"));
                    } else {
                        self.notify(format!("{name} downloaded ({})", crate::memory::human_bytes(outcome.fetched_bytes)));
                    }
                    self.open_folder(&outcome.folder);
                    self.scan_hub_cache();
                }
                DownloadEvent::Failed { error, .. } => {
                    download.status = DownloadStatus::Failed { message: error.to_string(), wants_token: error.wants_token() };
                }
                DownloadEvent::Cancelled { .. } => download.status = DownloadStatus::Cancelled,
            }
        }
    }
}
