//! Typed calls for experiments, runs, logged models and the Model Registry (one method per REST
//! call; `../shared/docs/mlflow-tracking-registry.md` §2–§6), and paged listings for browsing.

use reqwest::Method;
use serde_json::{Value, json};

use super::{
    client::{API, Result, TrackingClient, TrackingError},
    types::{Experiment, KeyValue, LoggedModel, ModelVersion, Page, RegisteredModel, Run, reply},
};

/// Rows per page when listing unless a client asks for another size (MLflow's own default for
/// registry searches is 100).
pub const PAGE_SIZE: u32 = 100;

/// Most pages one listing follows (a server that keeps handing out tokens must not loop us).
const MAX_PAGES: usize = 10_000;

/// Every item of a paged listing: `page(token)` is called with each next-page token until the
/// server gives none. A token handed out twice, or more than [`MAX_PAGES`] pages, is an error.
pub fn all_pages<T>(mut page: impl FnMut(Option<&str>) -> Result<Page<T>>) -> Result<Vec<T>> {
    let mut items = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let next = page(token.as_deref())?;
        items.extend(next.items);
        match next.next_page_token.filter(|t| !t.is_empty()) {
            Some(t) if !seen.insert(t.clone()) => {
                return Err(TrackingError::Protocol { url: String::new(), reason: format!("the server handed out the page token {t} twice") });
            }
            Some(t) => token = Some(t),
            None => return Ok(items),
        }
    }
    Err(TrackingError::Protocol { url: String::new(), reason: format!("the listing has more than {MAX_PAGES} pages") })
}

fn tags_json(tags: &[KeyValue]) -> Value {
    Value::Array(tags.iter().map(|t| json!({"key": t.key, "value": t.value})).collect())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// `name = 'x'` with MLflow's quoting of `'` inside the value.
pub fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\'', "\\'"))
}

impl TrackingClient {
    // -- experiments -------------------------------------------------------------------------

    pub fn experiment_by_name(&self, name: &str) -> Result<Option<Experiment>> {
        match self.get::<reply::ExperimentReply>(&format!("experiment {name}"), &format!("{API}/experiments/get-by-name"), &[("experiment_name", name)]) {
            Ok(reply) => Ok(Some(reply.experiment)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The experiment's id, created if it does not exist yet (a concurrent creation is fine).
    pub fn get_or_create_experiment(&self, name: &str) -> Result<String> {
        if let Some(experiment) = self.experiment_by_name(name)? {
            return Ok(experiment.experiment_id);
        }
        match self.post::<reply::CreatedExperiment>(&format!("experiment {name}"), &format!("{API}/experiments/create"), &json!({"name": name})) {
            Ok(created) => Ok(created.experiment_id),
            Err(e) if e.error_code() == Some("RESOURCE_ALREADY_EXISTS") => self
                .experiment_by_name(name)?
                .map(|e| e.experiment_id)
                .ok_or_else(|| TrackingError::NotFound { what: format!("experiment {name}"), url: self.base_url().into(), message: "created and gone again".into() }),
            Err(e) => Err(e),
        }
    }

    pub fn search_experiments(&self, filter: Option<&str>, page_token: Option<&str>) -> Result<Page<Experiment>> {
        let mut body = json!({"max_results": self.page_size(), "order_by": ["last_update_time DESC"]});
        if let Some(filter) = filter.filter(|f| !f.is_empty()) {
            body["filter"] = json!(filter);
        }
        if let Some(token) = page_token {
            body["page_token"] = json!(token);
        }
        let reply: reply::Experiments = self.post("experiments", &format!("{API}/experiments/search"), &body)?;
        Ok(Page { items: reply.experiments, next_page_token: reply.next_page_token.filter(|t| !t.is_empty()) })
    }

    // -- runs --------------------------------------------------------------------------------

    pub fn create_run(&self, experiment_id: &str, run_name: &str, tags: &[KeyValue]) -> Result<Run> {
        let user = std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_default();
        let body = json!({"experiment_id": experiment_id, "run_name": run_name, "start_time": now_ms(), "user_id": user, "tags": tags_json(tags)});
        Ok(self.post::<reply::RunReply>("run", &format!("{API}/runs/create"), &body)?.run)
    }

    pub fn get_run(&self, run_id: &str) -> Result<Run> {
        Ok(self.get::<reply::RunReply>(&format!("run {run_id}"), &format!("{API}/runs/get"), &[("run_id", run_id)])?.run)
    }

    /// Ends a run: FINISHED or FAILED.
    pub fn finish_run(&self, run_id: &str, status: &str) -> Result<()> {
        let body = json!({"run_id": run_id, "status": status, "end_time": now_ms()});
        self.post::<Value>(&format!("run {run_id}"), &format!("{API}/runs/update"), &body).map(|_| ())
    }

    pub fn search_runs(&self, experiment_ids: &[String], filter: Option<&str>, page_token: Option<&str>) -> Result<Page<Run>> {
        let mut body = json!({"experiment_ids": experiment_ids, "max_results": self.page_size(), "order_by": ["attributes.start_time DESC"]});
        if let Some(filter) = filter.filter(|f| !f.is_empty()) {
            body["filter"] = json!(filter);
        }
        if let Some(token) = page_token {
            body["page_token"] = json!(token);
        }
        let reply: reply::Runs = self.post("runs", &format!("{API}/runs/search"), &body)?;
        Ok(Page { items: reply.runs, next_page_token: reply.next_page_token.filter(|t| !t.is_empty()) })
    }

    /// Records that `run_id` produced the LoggedModel `model_id`.
    pub fn link_model_to_run(&self, run_id: &str, model_id: &str) -> Result<()> {
        let body = json!({"run_id": run_id, "models": [{"model_id": model_id, "step": 0}]});
        self.post::<Value>(&format!("run {run_id}"), &format!("{API}/runs/outputs"), &body).map(|_| ())
    }

    // -- logged models (MLflow 3) ------------------------------------------------------------

    /// `POST logged-models`; an MLflow 2.x server answers 404 for the route: [`TrackingError::Unsupported`].
    pub fn create_logged_model(&self, experiment_id: &str, name: &str, source_run_id: &str, tags: &[KeyValue]) -> Result<LoggedModel> {
        let body = json!({"experiment_id": experiment_id, "name": name, "source_run_id": source_run_id, "tags": tags_json(tags)});
        match self.post::<reply::LoggedModelReply>("the LoggedModel API", &format!("{API}/logged-models"), &body) {
            Ok(reply) => Ok(reply.model),
            Err(TrackingError::NotFound { message, .. }) if message.contains("no such route") => Err(self.unsupported("LoggedModel API (MLflow 3)")),
            Err(e) => Err(e),
        }
    }

    fn unsupported(&self, feature: &str) -> TrackingError {
        let version = self.server_version().unwrap_or_else(|_| "unknown version".into());
        TrackingError::Unsupported { base_url: self.base_url().to_owned(), version, feature: feature.to_owned() }
    }

    pub fn get_logged_model(&self, model_id: &str) -> Result<LoggedModel> {
        Ok(self.get::<reply::LoggedModelReply>(&format!("logged model {model_id}"), &format!("{API}/logged-models/{model_id}"), &[])?.model)
    }

    /// Sets the LoggedModel's status (`LOGGED_MODEL_READY` or `LOGGED_MODEL_UPLOAD_FAILED`).
    pub fn set_logged_model_status(&self, model_id: &str, status: &str) -> Result<LoggedModel> {
        let body = json!({"model_id": model_id, "status": status});
        Ok(self.send_json::<reply::LoggedModelReply>(&format!("logged model {model_id}"), Method::PATCH, &format!("{API}/logged-models/{model_id}"), &body)?.model)
    }

    pub fn search_logged_models(&self, experiment_ids: &[String], page_token: Option<&str>) -> Result<Page<LoggedModel>> {
        let mut body = json!({"experiment_ids": experiment_ids, "max_results": self.page_size(),
            "order_by": [{"field_name": "creation_timestamp_ms", "ascending": false}]});
        if let Some(token) = page_token {
            body["page_token"] = json!(token);
        }
        match self.post::<reply::LoggedModels>("logged models", &format!("{API}/logged-models/search"), &body) {
            Ok(reply) => Ok(Page { items: reply.models, next_page_token: reply.next_page_token.filter(|t| !t.is_empty()) }),
            Err(TrackingError::NotFound { message, .. }) if message.contains("no such route") => Err(self.unsupported("LoggedModel API (MLflow 3)")),
            Err(e) => Err(e),
        }
    }

    /// Whether the server has MLflow 3's LoggedModel API (2.x servers answer 404 for its routes).
    pub fn has_logged_models(&self) -> Result<bool> {
        match self.search_logged_models(&["0".into()], None) {
            Ok(_) => Ok(true),
            Err(TrackingError::Unsupported { .. }) => Ok(false),
            // Experiment 0 may be gone; the route exists.
            Err(TrackingError::NotFound { .. } | TrackingError::Api { .. }) => Ok(true),
            Err(e) => Err(e),
        }
    }

    // -- the Model Registry ------------------------------------------------------------------

    /// Creates the registered model; an existing one is fine (its description is then updated
    /// when one is given).
    pub fn ensure_registered_model(&self, name: &str, description: Option<&str>) -> Result<()> {
        let mut body = json!({"name": name});
        if let Some(description) = description {
            body["description"] = json!(description);
        }
        match self.post::<Value>(&format!("registered model {name}"), &format!("{API}/registered-models/create"), &body) {
            Ok(_) => Ok(()),
            Err(e) if e.error_code() == Some("RESOURCE_ALREADY_EXISTS") => match description {
                Some(description) => self
                    .send_json::<Value>(&format!("registered model {name}"), Method::PATCH, &format!("{API}/registered-models/update"), &json!({"name": name, "description": description}))
                    .map(|_| ()),
                None => Ok(()),
            },
            Err(e) => Err(e),
        }
    }

    pub fn get_registered_model(&self, name: &str) -> Result<RegisteredModel> {
        Ok(self.get::<reply::RegisteredModelReply>(&format!("registered model {name}"), &format!("{API}/registered-models/get"), &[("name", name)])?.registered_model)
    }

    /// Registered models whose name contains `text` (case-insensitive), a page at a time.
    pub fn search_registered_models(&self, text: Option<&str>, page_token: Option<&str>) -> Result<Page<RegisteredModel>> {
        let filter = text.filter(|t| !t.is_empty()).map(|t| format!("name ILIKE {}", quoted(&format!("%{t}%"))));
        let size = self.page_size().to_string();
        let mut query: Vec<(&str, &str)> = vec![("max_results", &size), ("order_by", "name ASC")];
        if let Some(filter) = &filter {
            query.push(("filter", filter));
        }
        if let Some(token) = page_token {
            query.push(("page_token", token));
        }
        let reply: reply::RegisteredModels = self.get("registered models", &format!("{API}/registered-models/search"), &query)?;
        Ok(Page { items: reply.registered_models, next_page_token: reply.next_page_token.filter(|t| !t.is_empty()) })
    }

    /// A model's versions, newest first, a page at a time (aliases are not filled in by the
    /// server here; take them from the registered model).
    pub fn search_model_versions(&self, name: &str, page_token: Option<&str>) -> Result<Page<ModelVersion>> {
        let filter = format!("name = {}", quoted(name));
        let size = self.page_size().to_string();
        let mut query: Vec<(&str, &str)> = vec![("filter", &filter), ("max_results", &size), ("order_by", "version_number DESC")];
        if let Some(token) = page_token {
            query.push(("page_token", token));
        }
        let reply: reply::ModelVersions = self.get(&format!("versions of {name}"), &format!("{API}/model-versions/search"), &query)?;
        Ok(Page { items: reply.model_versions, next_page_token: reply.next_page_token.filter(|t| !t.is_empty()) })
    }

    pub fn create_model_version(&self, name: &str, source: &str, run_id: &str, model_id: Option<&str>, description: Option<&str>, tags: &[KeyValue]) -> Result<ModelVersion> {
        let mut body = json!({"name": name, "source": source, "run_id": run_id, "tags": tags_json(tags)});
        if let Some(model_id) = model_id {
            body["model_id"] = json!(model_id);
        }
        if let Some(description) = description {
            body["description"] = json!(description);
        }
        Ok(self.post::<reply::ModelVersionReply>(&format!("registered model {name}"), &format!("{API}/model-versions/create"), &body)?.model_version)
    }

    pub fn get_model_version(&self, name: &str, version: &str) -> Result<ModelVersion> {
        Ok(self
            .get::<reply::ModelVersionReply>(&format!("version {version} of {name}"), &format!("{API}/model-versions/get"), &[("name", name), ("version", version)])?
            .model_version)
    }

    /// The version an alias points at. MLflow answers an unknown alias with 400
    /// INVALID_PARAMETER_VALUE; that becomes not-found here.
    pub fn version_by_alias(&self, name: &str, alias: &str) -> Result<ModelVersion> {
        let what = format!("alias {alias} of {name}");
        match self.get::<reply::ModelVersionReply>(&what, &format!("{API}/registered-models/alias"), &[("name", name), ("alias", alias)]) {
            Ok(reply) => Ok(reply.model_version),
            Err(TrackingError::Api { url, error_code, message, .. }) if error_code == "INVALID_PARAMETER_VALUE" && message.contains("not found") => {
                Err(TrackingError::NotFound { what, url, message })
            }
            Err(e) => Err(e),
        }
    }

    pub fn download_uri(&self, name: &str, version: &str) -> Result<String> {
        Ok(self
            .get::<reply::DownloadUri>(&format!("version {version} of {name}"), &format!("{API}/model-versions/get-download-uri"), &[("name", name), ("version", version)])?
            .artifact_uri)
    }

    pub fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<()> {
        let body = json!({"name": name, "alias": alias, "version": version});
        self.post::<Value>(&format!("version {version} of {name}"), &format!("{API}/registered-models/alias"), &body).map(|_| ())
    }

    pub fn set_model_version_tag(&self, name: &str, version: &str, tag: &KeyValue) -> Result<()> {
        let body = json!({"name": name, "version": version, "key": tag.key, "value": tag.value});
        self.post::<Value>(&format!("version {version} of {name}"), &format!("{API}/model-versions/set-tag"), &body).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_pages_follows_tokens_and_refuses_a_repeated_one() {
        let pages = |tokens: Vec<Option<&'static str>>| {
            let mut calls = 0;
            all_pages(move |_| {
                calls += 1;
                Ok(Page { items: vec![calls], next_page_token: tokens.get(calls - 1).copied().flatten().map(str::to_owned) })
            })
        };
        assert_eq!(pages(vec![Some("a"), Some("b"), None]).unwrap(), [1, 2, 3]);
        assert_eq!(pages(vec![Some("")]).unwrap(), [1], "an empty token ends the listing");
        let looping = pages(vec![Some("a"), Some("a")]).unwrap_err().to_string();
        assert!(looping.contains("page token a twice"), "{looping}");
    }

    #[test]
    fn filter_values_are_quoted_for_mlflow() {
        assert_eq!(quoted("phi3"), "'phi3'");
        assert_eq!(quoted("it's"), r"'it\'s'");
    }
}
