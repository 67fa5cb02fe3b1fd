//! The Registry view's state: the tracking server settings (remembered in the config directory;
//! passwords and tokens in the system keyring), the connection, registered models searched as
//! the user types, a model's versions, and a pull with progress that opens the pulled folder (the
//! Publish dialog is `publish`'s, browsing experiments `registry_browse`'s). Every network,
//! keyring and file call runs on a promise or one of `tracking`'s services; the GUI thread only
//! folds their results into state.

use std::{path::PathBuf, sync::Arc};

use poll_promise::Promise;

use super::{
    AppState,
    publish::PublishDialog,
    registry_browse::{BrowseIntent, BrowseState},
};
use crate::tracking::{
    TrackingClient,
    config::{Auth, Connection, TrackingSettings},
    credentials,
    pull::{Destination, PullEvent, PullProgress, PullService},
    push::PushService,
    types::{ModelVersion, Page, RegisteredModel},
    uri::ModelUri,
};

/// What the user asked of the Registry view and the Publish dialog.
#[derive(Debug, Clone, PartialEq)]
pub enum RegistryIntent {
    /// Show the Registry view instead of the selected model (or go back).
    Show(bool),
    /// Connect with what the server form holds (saving the URI, and a typed password or token
    /// to the keyring).
    Connect,
    /// Forget the stored password or token of this server.
    ForgetCredentials,
    /// The search text changed: list again (as the user types).
    SearchChanged,
    /// The next page of registered models.
    MoreModels,
    SelectModel(String),
    MoreVersions,
    /// Pull a model URI (`models:/NAME/VERSION`, …) and open it.
    Pull(String),
    CancelPull,
    /// "Publish to MLflow…" for a model folder.
    OpenPublish(PathBuf),
    Publish,
    CancelPublish,
    ClosePublish,
    /// The traces switch or its experiment changed: remember it.
    SettingsEdited,
    /// Experiments, runs and logged models (`registry_browse`).
    Browse(BrowseIntent),
}

/// What the server form holds. Secrets typed here are cleared once they are in the keyring.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerForm {
    pub uri: String,
    pub username: String,
    pub password: String,
    pub token: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ConnectionStatus {
    NotConnected,
    Connecting,
    Connected { base_url: String, version: String },
    Failed(String),
}

/// A pull in flight.
#[derive(Debug, Clone, PartialEq)]
pub struct PullJob {
    pub uri: String,
    pub progress: PullProgress,
}

/// The client, the server's version, the settings to remember, and warnings (a keyring or
/// settings file that could not be written).
type Connected = Result<(TrackingClient, String, TrackingSettings, Vec<String>), String>;
type Listing<T> = Promise<Result<Page<T>, String>>;

pub struct RegistryState {
    pub visible: bool,
    pub settings: TrackingSettings,
    settings_load: Option<Promise<TrackingSettings>>,
    settings_loaded: bool,
    pub form: ServerForm,
    pub status: ConnectionStatus,
    connecting: Option<Promise<Connected>>,
    client: Option<TrackingClient>,
    pub search: String,
    pub models: Vec<RegisteredModel>,
    pub models_next: Option<String>,
    /// The listing in flight: for which search text, whether it adds a page.
    models_load: Option<(String, bool, Listing<RegisteredModel>)>,
    /// The search text the shown models answer.
    listed: Option<String>,
    pub selected: Option<String>,
    pub versions: Vec<ModelVersion>,
    pub versions_next: Option<String>,
    versions_load: Option<(String, bool, Listing<ModelVersion>)>,
    pub list_error: Option<String>,
    pull: Option<PullService>,
    pub pulling: Option<PullJob>,
    pub(super) push: Option<PushService>,
    pub publish: Option<PublishDialog>,
    /// Chat turns recorded as traces (`chat_traces`).
    pub traces: super::chat_traces::TraceState,
    /// Experiments → runs → logged models, and the typed URI to pull.
    pub browse: BrowseState,
    /// Rows per page of every listing (the server's pages; `None`: the client's default).
    pub page_size: Option<u32>,
}

impl Default for RegistryState {
    fn default() -> Self {
        Self {
            visible: false,
            settings: TrackingSettings::default(),
            settings_load: None,
            settings_loaded: false,
            form: ServerForm::default(),
            status: ConnectionStatus::NotConnected,
            connecting: None,
            client: None,
            search: String::new(),
            models: Vec::new(),
            models_next: None,
            models_load: None,
            listed: None,
            selected: None,
            versions: Vec::new(),
            versions_next: None,
            versions_load: None,
            list_error: None,
            pull: None,
            pulling: None,
            push: None,
            publish: None,
            traces: super::chat_traces::TraceState::default(),
            browse: BrowseState::default(),
            page_size: None,
        }
    }
}

impl RegistryState {
    pub fn is_busy(&self) -> bool {
        self.settings_load.is_some()
            || self.connecting.is_some()
            || self.models_load.is_some()
            || self.versions_load.is_some()
            || self.pulling.is_some()
            || self.publish.as_ref().is_some_and(|p| p.running)
            || self.traces.is_busy()
            || self.browse.is_busy()
    }

    pub fn is_connected(&self) -> bool {
        self.client.is_some()
    }

    /// The connected server's client.
    pub(super) fn client(&self) -> Option<&TrackingClient> {
        self.client.as_ref()
    }

    /// Whether models are being listed (the view shows a spinner).
    pub fn is_listing(&self) -> bool {
        self.models_load.is_some() || self.versions_load.is_some()
    }

    /// The selected model, as listed.
    pub fn selected_model(&self) -> Option<&RegisteredModel> {
        let name = self.selected.as_deref()?;
        self.models.iter().find(|m| m.name == name)
    }

    /// The aliases pointing at `version` of the selected model (versions listed by search carry
    /// none; the registered model has them).
    pub fn aliases_of(&self, version: &ModelVersion) -> Vec<String> {
        let mut aliases = version.aliases.clone();
        if let Some(model) = self.selected_model().filter(|m| m.name == version.name) {
            for alias in model.aliases.iter().filter(|a| a.version == version.version) {
                if !aliases.contains(&alias.alias) {
                    aliases.push(alias.alias.clone());
                }
            }
        }
        aliases
    }
}

impl AppState {
    pub(super) fn apply_registry(&mut self, intent: RegistryIntent) {
        match intent {
            RegistryIntent::Show(visible) => self.registry.visible = visible,
            RegistryIntent::Connect => self.registry_connect(),
            RegistryIntent::ForgetCredentials => self.forget_credentials(),
            RegistryIntent::SearchChanged => self.list_models(false),
            RegistryIntent::MoreModels => self.list_models(true),
            RegistryIntent::SelectModel(name) => {
                self.registry.selected = Some(name);
                self.registry.versions.clear();
                self.registry.versions_next = None;
                self.list_versions(false);
            }
            RegistryIntent::MoreVersions => self.list_versions(true),
            RegistryIntent::Pull(uri) => self.start_pull(&uri),
            RegistryIntent::CancelPull => {
                if let Some(service) = &self.registry.pull {
                    service.cancel();
                }
            }
            RegistryIntent::OpenPublish(folder) => self.open_publish(folder),
            RegistryIntent::Publish => self.start_publish(),
            RegistryIntent::CancelPublish => {
                if let Some(service) = &self.registry.push {
                    service.cancel();
                }
            }
            RegistryIntent::ClosePublish => {
                if !self.registry.publish.as_ref().is_some_and(|p| p.running) {
                    self.registry.publish = None;
                }
            }
            RegistryIntent::SettingsEdited => self.save_tracking_settings(),
            RegistryIntent::Browse(intent) => self.apply_browse(intent),
        }
    }

    fn config_dir(&self) -> Option<PathBuf> {
        self.dirs.as_ref().map(|d| d.config.clone())
    }

    pub(super) fn save_tracking_settings(&mut self) {
        let Some(dir) = self.config_dir() else { return };
        let settings = self.registry.settings.clone();
        self.in_background("save-tracking-settings", move || {
            settings.save(&dir).map(|()| None).map_err(|e| ("Could not save the MLflow settings".into(), e.to_string()))
        });
    }

    fn registry_connect(&mut self) {
        let form = self.registry.form.clone();
        let mut settings = self.registry.settings.clone();
        let Some(dir) = self.config_dir() else {
            self.registry.status = ConnectionStatus::Failed("no settings directory".into());
            return;
        };
        self.registry.status = ConnectionStatus::Connecting;
        self.registry.form.password.clear();
        self.registry.form.token.clear();
        self.registry.connecting = Some(self.spawn("mlflow-connect", move || connect(&form, &mut settings, &dir)));
    }

    fn forget_credentials(&mut self) {
        let settings = self.registry.settings.clone();
        self.registry.settings.username = None;
        self.registry.settings.token_in_keyring = false;
        self.save_tracking_settings();
        let Some(server) = settings.tracking_uri.clone() else { return };
        self.in_background("forget-credentials", move || {
            if let Some(user) = &settings.username {
                credentials::delete_password(&server, user).map_err(|e| ("Could not remove the password".into(), e.to_string()))?;
            }
            if settings.token_in_keyring {
                credentials::delete_password(&server, credentials::TOKEN_ACCOUNT).map_err(|e| ("Could not remove the token".into(), e.to_string()))?;
            }
            Ok(Some("Credentials removed from the keyring".into()))
        });
    }

    /// Lists registered models for the search text; `more` adds the next page.
    pub(super) fn list_models(&mut self, more: bool) {
        let Some(client) = self.registry.client.clone() else { return };
        let query = self.registry.search.trim().to_owned();
        if self.registry.models_load.as_ref().is_some_and(|(q, m, _)| *q == query && *m == more) {
            return;
        }
        let token = if more {
            match self.registry.models_next.clone() {
                Some(token) => Some(token),
                None => return,
            }
        } else {
            None
        };
        let search = query.clone();
        let promise = self.spawn("mlflow-list-models", move || client.search_registered_models(Some(&search), token.as_deref()).map_err(|e| e.to_string()));
        self.registry.models_load = Some((query, more, promise));
    }

    fn list_versions(&mut self, more: bool) {
        let (Some(client), Some(name)) = (self.registry.client.clone(), self.registry.selected.clone()) else { return };
        let token = if more {
            match self.registry.versions_next.clone() {
                Some(token) => Some(token),
                None => return,
            }
        } else {
            None
        };
        let model = name.clone();
        let promise = self.spawn("mlflow-list-versions", move || client.search_model_versions(&model, token.as_deref()).map_err(|e| e.to_string()));
        self.registry.versions_load = Some((name, more, promise));
    }

    fn start_pull(&mut self, text: &str) {
        let uri = match ModelUri::parse(text) {
            Ok(uri) => uri,
            Err(e) => return self.notify_error(format!("Cannot pull {text}"), Some(e.to_string())),
        };
        let (Some(service), Some(dirs)) = (&self.registry.pull, &self.dirs) else {
            return self.notify_error("Connect to an MLflow server first", None);
        };
        if self.registry.pulling.is_some() {
            return self.notify_error("A pull is already running", None);
        }
        if service.pull(uri, Destination::Cache(dirs.data.join("mlflow"))) {
            self.registry.pulling = Some(PullJob { uri: text.to_owned(), progress: PullProgress::default() });
        }
    }

    /// Folds the registry's promises and service events into state. Called every frame.
    pub(super) fn poll_registry(&mut self) {
        if !self.registry.settings_loaded {
            self.registry.settings_loaded = true;
            if let Some(dir) = self.config_dir() {
                self.registry.settings_load = Some(self.spawn("load-tracking-settings", move || TrackingSettings::load(&dir).unwrap_or_default()));
            }
        }
        if let Some(settings) = take_ready(&mut self.registry.settings_load) {
            self.registry.form.uri = settings.tracking_uri.clone().unwrap_or_default();
            self.registry.form.username = settings.username.clone().unwrap_or_default();
            // Traces were left on: connect again so the chat's turns keep being recorded.
            let reconnect = settings.traces_enabled && settings.tracking_uri.is_some() && self.registry.client.is_none();
            self.registry.settings = settings;
            if reconnect && self.registry.connecting.is_none() {
                self.registry_connect();
            }
        }
        if let Some(result) = take_ready(&mut self.registry.connecting) {
            self.connected(result);
        }
        self.poll_listings();
        self.poll_pull();
        self.poll_push();
        self.poll_traces();
        self.poll_browse();
    }

    fn connected(&mut self, result: Connected) {
        match result {
            Ok((client, version, settings, warnings)) => {
                let client = match self.registry.page_size {
                    Some(rows) => client.with_page_size(rows),
                    None => client,
                };
                for warning in warnings {
                    self.notify_error("Connected, but the credentials or settings were not saved", Some(warning));
                }
                self.registry.status = ConnectionStatus::Connected { base_url: client.base_url().to_owned(), version };
                self.registry.settings = settings;
                self.registry.traces.reset();
                let waker: crate::service::Waker = Arc::new(self.waker());
                self.registry.pull = PullService::spawn(client.clone(), Arc::clone(&waker)).ok();
                self.registry.push = PushService::spawn(client.clone(), waker).ok();
                self.registry.client = Some(client);
                self.registry.models.clear();
                self.registry.selected = None;
                self.registry.versions.clear();
                self.registry.listed = None;
                self.registry.browse.reset();
                self.list_models(false);
                if self.registry.browse.mode == super::Browse::Experiments {
                    self.apply_browse(BrowseIntent::SearchExperiments);
                }
            }
            Err(message) => {
                self.registry.client = None;
                self.registry.traces.reset();
                self.registry.pull = None;
                self.registry.push = None;
                self.registry.status = ConnectionStatus::Failed(message);
            }
        }
    }

    fn poll_listings(&mut self) {
        if self.registry.models_load.as_ref().is_some_and(|(_, _, p)| p.ready().is_some()) {
            if let Some((query, more, promise)) = self.registry.models_load.take() {
                match promise.block_and_take() {
                    Ok(page) => {
                        if !more {
                            self.registry.models.clear();
                        }
                        self.registry.models.extend(page.items);
                        self.registry.models_next = page.next_page_token;
                        self.registry.listed = Some(query);
                        self.registry.list_error = None;
                    }
                    Err(message) => self.registry.list_error = Some(message),
                }
            }
            // The user typed on while the listing ran: list what the box says now.
            if self.registry.listed.as_deref() != Some(self.registry.search.trim()) && self.registry.list_error.is_none() {
                self.list_models(false);
            }
        }
        if self.registry.versions_load.as_ref().is_some_and(|(_, _, p)| p.ready().is_some()) {
            if let Some((name, more, promise)) = self.registry.versions_load.take() {
                match promise.block_and_take() {
                    Ok(page) if self.registry.selected.as_deref() == Some(name.as_str()) => {
                        if !more {
                            self.registry.versions.clear();
                        }
                        self.registry.versions.extend(page.items);
                        self.registry.versions_next = page.next_page_token;
                    }
                    Ok(_) => {}
                    Err(message) => self.registry.list_error = Some(message),
                }
            }
        }
    }

    fn poll_pull(&mut self) {
        let events: Vec<PullEvent> = match &self.registry.pull {
            Some(service) => std::iter::from_fn(|| service.try_recv()).collect(),
            None => return,
        };
        for event in events {
            match event {
                PullEvent::Resolved { files, bytes, .. } => {
                    if let Some(job) = &mut self.registry.pulling {
                        job.progress = PullProgress { files_total: files, bytes_total: bytes, ..Default::default() };
                    }
                }
                PullEvent::Progress(progress) => {
                    if let Some(job) = &mut self.registry.pulling {
                        job.progress = progress;
                    }
                }
                PullEvent::Finished { folder, cached, .. } => {
                    let uri = self.registry.pulling.take().map(|j| j.uri).unwrap_or_default();
                    self.notify(if cached { format!("{uri} was already pulled") } else { format!("Pulled {uri}") });
                    self.registry.visible = false;
                    self.open_path(&folder);
                }
                PullEvent::Failed { message } => {
                    let uri = self.registry.pulling.take().map(|j| j.uri).unwrap_or_default();
                    self.notify_error(format!("Could not pull {uri}"), Some(message));
                }
                PullEvent::Cancelled => {
                    self.registry.pulling = None;
                    self.notify("Pull cancelled; pulling again resumes it");
                }
            }
        }
    }

}

/// Takes a promise's value once it is ready.
fn take_ready<T: Send + 'static>(slot: &mut Option<Promise<T>>) -> Option<T> {
    slot.take_if(|p| p.ready().is_some()).map(Promise::block_and_take)
}

/// Connects with the form (off the GUI thread): typed credentials go to the keyring first, else
/// the keyring's are used, else the environment's (`MLFLOW_TRACKING_*`); the server must answer
/// `/version` and a registry search (so wrong credentials show here, not later). Returns the
/// settings to remember.
fn connect(form: &ServerForm, settings: &mut TrackingSettings, config_dir: &std::path::Path) -> Connected {
    let uri = form.uri.trim();
    let probe = Connection::new(uri, Auth::Anonymous).map_err(|e| e.to_string())?;
    let server = probe.base_url.clone();
    let same_server = settings.tracking_uri.as_deref() == Some(server.as_str());
    let username = form.username.trim();
    let mut warnings = Vec::new();
    let auth = if !username.is_empty() && !form.password.is_empty() {
        if let Err(e) = credentials::save_password(&server, username, &form.password) {
            warnings.push(e.to_string());
        }
        settings.username = Some(username.to_owned());
        settings.token_in_keyring = false;
        Auth::Basic { username: username.to_owned(), password: form.password.clone() }
    } else if !form.token.trim().is_empty() {
        if let Err(e) = credentials::save_password(&server, credentials::TOKEN_ACCOUNT, form.token.trim()) {
            warnings.push(e.to_string());
        }
        settings.username = None;
        settings.token_in_keyring = true;
        Auth::Bearer(form.token.trim().to_owned())
    } else {
        if !same_server || username.is_empty() {
            settings.username = Some(username.to_owned()).filter(|u| !u.is_empty());
        }
        let mut lookup = settings.clone();
        lookup.tracking_uri = Some(server.clone());
        match credentials::stored_auth(&lookup) {
            Some(auth) => auth,
            None => crate::tracking::config::auth_from_env().map_err(|e| e.to_string())?.unwrap_or_default(),
        }
    };
    settings.tracking_uri = Some(server);
    let connection = Connection { auth, insecure_tls: settings.insecure_tls, ..probe };
    let client = TrackingClient::new(connection).map_err(|e| e.to_string())?;
    let quick = client.with_retry(crate::transfer::RetryPolicy { max_attempts: 2, ..Default::default() });
    let version = quick.server_version().map_err(|e| e.to_string())?;
    quick.search_registered_models(None, None).map_err(|e| e.to_string())?;
    if let Err(e) = settings.save(config_dir) {
        warnings.push(e.to_string());
    }
    Ok((client, version, settings.clone(), warnings))
}
