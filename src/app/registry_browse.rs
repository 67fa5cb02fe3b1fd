//! The Registry view's tracking side: experiments (searched by name as the user types) → the
//! selected experiment's runs and logged models, every list paged through the server's page
//! tokens; a run's top-level artifact folders, each pullable as `runs:/<run>/<folder>`; and
//! the model URI typed by the user to pull (`models:/NAME@ALIAS`, `models:/<model_id>`,
//! `runs:/<run_id>/<path>`, …). Every call runs on a promise.

use poll_promise::Promise;

use super::AppState;
use crate::tracking::{
    TrackingClient,
    api::quoted,
    types::{Experiment, FileInfo, LoggedModel, Page, Run},
    uri::proxied_artifact_path,
};

/// Which half of the Registry view shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Browse {
    #[default]
    RegisteredModels,
    Experiments,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BrowseIntent {
    Show(Browse),
    /// The experiment search text changed.
    SearchExperiments,
    MoreExperiments,
    /// An experiment (by id): list its runs and logged models.
    SelectExperiment(String),
    MoreRuns,
    MoreLoggedModels,
    /// A run (by id): list its artifact folders.
    SelectRun(String),
}

type PagePromise<T> = Promise<Result<Page<T>, String>>;

/// A list the server hands out page by page, for one owner (a search text, an experiment).
pub struct PagedList<T: Send + 'static> {
    pub items: Vec<T>,
    /// The token of the next page; `None` after the last one.
    pub next: Option<String>,
    pub error: Option<String>,
    /// What the shown items belong to.
    owner: Option<String>,
    /// The page in flight: its owner, whether it adds to the shown items.
    load: Option<(String, bool, PagePromise<T>)>,
}

impl<T: Send + 'static> Default for PagedList<T> {
    fn default() -> Self {
        Self { items: Vec::new(), next: None, error: None, owner: None, load: None }
    }
}

impl<T: Send + 'static> PagedList<T> {
    pub fn is_loading(&self) -> bool {
        self.load.is_some()
    }

    /// Whether the shown items are `owner`'s.
    pub fn is_for(&self, owner: &str) -> bool {
        self.owner.as_deref() == Some(owner)
    }

    /// The page token to ask for `owner`'s first page (or, with `more`, its next page): `None`
    /// when that page is already on its way or there is no next page.
    fn token_for(&self, owner: &str, more: bool) -> Option<Option<String>> {
        if self.load.as_ref().is_some_and(|(o, m, _)| o == owner && *m == more) {
            return None;
        }
        match (more, &self.next) {
            (false, _) => Some(None),
            (true, Some(token)) if self.is_for(owner) => Some(Some(token.clone())),
            (true, _) => None,
        }
    }

    /// The page asked for with [`PagedList::token_for`] is on its way.
    fn loading(&mut self, owner: &str, more: bool, page: PagePromise<T>) {
        self.load = Some((owner.to_owned(), more, page));
    }

    /// Folds in a page that arrived; `true` when one did.
    fn poll(&mut self) -> bool {
        let Some((owner, more, promise)) = self.load.take_if(|(_, _, p)| p.ready().is_some()) else { return false };
        match promise.block_and_take() {
            Ok(page) => {
                if !more || !self.is_for(&owner) {
                    self.items.clear();
                }
                self.items.extend(page.items);
                self.next = page.next_page_token;
                self.owner = Some(owner);
                self.error = None;
            }
            Err(message) => self.error = Some(message),
        }
        true
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

/// Experiments, runs, logged models and a run's artifact folders.
#[derive(Default)]
pub struct BrowseState {
    pub mode: Browse,
    /// Part of an experiment's name.
    pub search: String,
    pub experiments: PagedList<Experiment>,
    /// The selected experiment's id.
    pub experiment: Option<String>,
    pub runs: PagedList<Run>,
    pub logged_models: PagedList<LoggedModel>,
    /// The selected run's id.
    pub run: Option<String>,
    pub run_folders: PagedList<FileInfo>,
    /// The model URI typed to pull.
    pub uri: String,
}

impl BrowseState {
    pub fn is_busy(&self) -> bool {
        self.experiments.is_loading() || self.runs.is_loading() || self.logged_models.is_loading() || self.run_folders.is_loading()
    }

    /// The selected experiment, as listed.
    pub fn selected_experiment(&self) -> Option<&Experiment> {
        let id = self.experiment.as_deref()?;
        self.experiments.items.iter().find(|e| e.experiment_id == id)
    }

    /// A new connection: nothing listed belongs to it.
    pub(super) fn reset(&mut self) {
        let (mode, search, uri) = (self.mode, std::mem::take(&mut self.search), std::mem::take(&mut self.uri));
        *self = Self { mode, search, uri, ..Self::default() };
    }
}

/// An MLflow search filter for experiment names containing `text` (any case).
fn experiment_filter(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| format!("name ILIKE {}", quoted(&format!("%{text}%"))))
}

impl AppState {
    pub(super) fn apply_browse(&mut self, intent: BrowseIntent) {
        match intent {
            BrowseIntent::Show(mode) => {
                self.registry.browse.mode = mode;
                if mode == Browse::Experiments && !self.registry.browse.experiments.is_for(self.registry.browse.search.trim()) {
                    self.list_experiments(false);
                }
            }
            BrowseIntent::SearchExperiments => self.list_experiments(false),
            BrowseIntent::MoreExperiments => self.list_experiments(true),
            BrowseIntent::SelectExperiment(id) => {
                let browse = &mut self.registry.browse;
                browse.experiment = Some(id);
                browse.run = None;
                browse.runs.clear();
                browse.logged_models.clear();
                browse.run_folders.clear();
                self.list_runs(false);
                self.list_logged_models(false);
            }
            BrowseIntent::MoreRuns => self.list_runs(true),
            BrowseIntent::MoreLoggedModels => self.list_logged_models(true),
            BrowseIntent::SelectRun(id) => self.list_run_folders(id),
        }
    }

    fn browse_client(&self) -> Option<TrackingClient> {
        self.registry.client().cloned()
    }

    fn list_experiments(&mut self, more: bool) {
        let Some(client) = self.browse_client() else { return };
        let search = self.registry.browse.search.trim().to_owned();
        let Some(token) = self.registry.browse.experiments.token_for(&search, more) else { return };
        let filter = experiment_filter(&search);
        let page = self.spawn("mlflow-list-experiments", move || client.search_experiments(filter.as_deref(), token.as_deref()).map_err(|e| e.to_string()));
        self.registry.browse.experiments.loading(&search, more, page);
    }

    fn list_runs(&mut self, more: bool) {
        let (Some(client), Some(experiment)) = (self.browse_client(), self.registry.browse.experiment.clone()) else { return };
        let Some(token) = self.registry.browse.runs.token_for(&experiment, more) else { return };
        let ids = vec![experiment.clone()];
        let page = self.spawn("mlflow-list-runs", move || client.search_runs(&ids, None, token.as_deref()).map_err(|e| e.to_string()));
        self.registry.browse.runs.loading(&experiment, more, page);
    }

    fn list_logged_models(&mut self, more: bool) {
        let (Some(client), Some(experiment)) = (self.browse_client(), self.registry.browse.experiment.clone()) else { return };
        let Some(token) = self.registry.browse.logged_models.token_for(&experiment, more) else { return };
        let ids = vec![experiment.clone()];
        let page = self.spawn("mlflow-list-logged-models", move || client.search_logged_models(&ids, token.as_deref()).map_err(|e| e.to_string()));
        self.registry.browse.logged_models.loading(&experiment, more, page);
    }

    /// The run's top-level artifacts (one listing; a run's artifact root has few entries).
    fn list_run_folders(&mut self, run_id: String) {
        let Some(client) = self.browse_client() else { return };
        let Some(root) = self.registry.browse.runs.items.iter().find(|r| r.info.run_id == run_id).map(|r| r.info.artifact_uri.clone()) else { return };
        self.registry.browse.run = Some(run_id.clone());
        self.registry.browse.run_folders.clear();
        let page = self.spawn("mlflow-list-run-artifacts", move || {
            let path = proxied_artifact_path(&root).ok_or_else(|| format!("the run's artifacts are at {root}, which this server does not proxy"))?;
            let mut items = client.list_artifacts(&path).map_err(|e| e.to_string())?;
            items.sort_by(|a, b| b.is_dir.cmp(&a.is_dir).then_with(|| a.path.cmp(&b.path)));
            Ok(Page { items, next_page_token: None })
        });
        self.registry.browse.run_folders.loading(&run_id, false, page);
    }

    /// Folds in the pages that arrived. Called every frame.
    pub(super) fn poll_browse(&mut self) {
        let browse = &mut self.registry.browse;
        // The user typed on while a search ran: search what the box says now.
        if browse.experiments.poll() && !browse.experiments.is_for(browse.search.trim()) && browse.experiments.error.is_none() {
            self.list_experiments(false);
        }
        let browse = &mut self.registry.browse;
        browse.runs.poll();
        browse.logged_models.poll();
        browse.run_folders.poll();
    }
}

/// The file name of a listed artifact (listings name entries relative to their directory, but
/// some servers send the whole path).
pub fn artifact_name(info: &FileInfo) -> &str {
    info.path.rsplit('/').next().unwrap_or(&info.path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn experiment_names_are_searched_in_any_case_with_quotes_escaped() {
        assert_eq!(experiment_filter("  "), None);
        assert_eq!(experiment_filter(" chat ").as_deref(), Some("name ILIKE '%chat%'"));
        assert_eq!(experiment_filter("it's").as_deref(), Some("name ILIKE '%it\\'s%'"));
    }

    #[test]
    fn pages_add_up_for_one_owner_and_start_over_for_another() {
        let page = |items: Vec<u32>, next: Option<&str>| Promise::from_ready(Ok(Page { items, next_page_token: next.map(str::to_owned) }));
        let mut list = PagedList::<u32>::default();
        assert_eq!(list.token_for("a", false), Some(None));
        list.loading("a", false, page(vec![1, 2], Some("t2")));
        assert_eq!(list.token_for("a", false), None, "that page is on its way");
        assert!(list.poll());
        assert_eq!(list.token_for("a", true), Some(Some("t2".into())));
        list.loading("a", true, page(vec![3], None));
        assert!(list.poll());
        assert_eq!((list.items.clone(), list.next.clone()), (vec![1, 2, 3], None));
        // No next page, or the next page of another owner's list: nothing to ask for.
        assert_eq!(list.token_for("a", true), None);
        assert_eq!(list.token_for("b", true), None);
        // Another owner replaces the items; an error keeps them.
        list.loading("b", false, page(vec![9], None));
        assert!(list.poll());
        assert_eq!(list.items, vec![9]);
        assert!(list.is_for("b"));
        list.loading("b", false, Promise::from_ready(Err("down".into())));
        assert!(list.poll());
        assert_eq!((list.items.clone(), list.error.as_deref()), (vec![9], Some("down")));
    }
}
