//! MLflow's REST objects as the tracking server sends them (checked against MLflow 3.17.2 and
//! the 2.22 protos; `../shared/docs/mlflow-tracking-registry.md`). Empty collections are left
//! out by the server and unknown fields are ignored, so every collection defaults to empty and
//! every optional field to `None`.

use serde::{Deserialize, Serialize};

/// A `{key, value}` pair (tags and params).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

impl KeyValue {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self { key: key.into(), value: value.into() }
    }
}

/// The value of `key` in a tag list.
pub fn tag<'a>(tags: &'a [KeyValue], key: &str) -> Option<&'a str> {
    tags.iter().find(|t| t.key == key).map(|t| t.value.as_str())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    pub experiment_id: String,
    pub name: String,
    #[serde(default)]
    pub artifact_location: String,
    #[serde(default)]
    pub lifecycle_stage: String,
    #[serde(default)]
    pub creation_time: Option<i64>,
    #[serde(default)]
    pub last_update_time: Option<i64>,
    #[serde(default)]
    pub tags: Vec<KeyValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub info: RunInfo,
    #[serde(default)]
    pub data: RunData,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub run_id: String,
    pub experiment_id: String,
    #[serde(default)]
    pub run_name: String,
    #[serde(default)]
    pub user_id: String,
    /// RUNNING, SCHEDULED, FINISHED, FAILED or KILLED.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub start_time: Option<i64>,
    #[serde(default)]
    pub end_time: Option<i64>,
    /// `mlflow-artifacts:/<exp>/<run>/artifacts` on a server that proxies artifacts.
    #[serde(default)]
    pub artifact_uri: String,
    #[serde(default)]
    pub lifecycle_stage: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RunData {
    #[serde(default)]
    pub metrics: Vec<Metric>,
    #[serde(default)]
    pub params: Vec<KeyValue>,
    #[serde(default)]
    pub tags: Vec<KeyValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub key: String,
    pub value: f64,
    #[serde(default)]
    pub timestamp: i64,
    #[serde(default)]
    pub step: i64,
}

/// MLflow 3's LoggedModel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedModel {
    pub info: LoggedModelInfo,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedModelInfo {
    /// `m-<32 hex>`.
    pub model_id: String,
    pub experiment_id: String,
    #[serde(default)]
    pub name: String,
    /// `mlflow-artifacts:/<exp>/models/<id>/artifacts`.
    #[serde(default)]
    pub artifact_uri: String,
    /// LOGGED_MODEL_PENDING, LOGGED_MODEL_READY or LOGGED_MODEL_UPLOAD_FAILED.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub model_type: String,
    #[serde(default)]
    pub source_run_id: String,
    #[serde(default)]
    pub creation_timestamp_ms: Option<i64>,
    #[serde(default)]
    pub last_updated_timestamp_ms: Option<i64>,
    #[serde(default)]
    pub tags: Vec<KeyValue>,
}

pub const LOGGED_MODEL_READY: &str = "LOGGED_MODEL_READY";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisteredModel {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub creation_timestamp: Option<i64>,
    #[serde(default)]
    pub last_updated_timestamp: Option<i64>,
    /// The newest version per stage (a deprecated notion; browse versions instead).
    #[serde(default)]
    pub latest_versions: Vec<ModelVersion>,
    #[serde(default)]
    pub tags: Vec<KeyValue>,
    #[serde(default)]
    pub aliases: Vec<Alias>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alias {
    pub alias: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: String,
    /// `models:/<model_id>`, `runs:/<run>/<path>` or an artifact URI.
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub run_id: String,
    /// PENDING_REGISTRATION, READY or FAILED_REGISTRATION.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub status_message: String,
    #[serde(default)]
    pub creation_timestamp: Option<i64>,
    #[serde(default)]
    pub last_updated_timestamp: Option<i64>,
    #[serde(default)]
    pub user_id: String,
    #[serde(default)]
    pub tags: Vec<KeyValue>,
    /// Only `model-versions/get` and `registered-models/alias` fill this in.
    #[serde(default)]
    pub aliases: Vec<String>,
}

pub const VERSION_READY: &str = "READY";
pub const VERSION_PENDING: &str = "PENDING_REGISTRATION";

impl ModelVersion {
    /// The LoggedModel behind a `models:/<model_id>` source (responses never carry `model_id`).
    pub fn model_id(&self) -> Option<&str> {
        self.source.strip_prefix("models:/").filter(|rest| rest.starts_with("m-") && !rest.contains('/'))
    }
}

/// One entry of an artifact listing (one level; names relative to the listed directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    pub path: String,
    #[serde(default)]
    pub is_dir: bool,
    #[serde(default)]
    pub file_size: Option<u64>,
}

/// Response bodies.
pub mod reply {
    use super::*;

    #[derive(Debug, Deserialize)]
    pub struct ExperimentReply {
        pub experiment: Experiment,
    }

    #[derive(Debug, Deserialize)]
    pub struct CreatedExperiment {
        pub experiment_id: String,
    }

    #[derive(Debug, Deserialize)]
    pub struct Experiments {
        #[serde(default)]
        pub experiments: Vec<Experiment>,
        #[serde(default)]
        pub next_page_token: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    pub struct RunReply {
        pub run: Run,
    }

    #[derive(Debug, Deserialize)]
    pub struct Runs {
        #[serde(default)]
        pub runs: Vec<Run>,
        #[serde(default)]
        pub next_page_token: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    pub struct LoggedModelReply {
        pub model: LoggedModel,
    }

    #[derive(Debug, Deserialize)]
    pub struct LoggedModels {
        #[serde(default)]
        pub models: Vec<LoggedModel>,
        #[serde(default)]
        pub next_page_token: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    pub struct RegisteredModelReply {
        pub registered_model: RegisteredModel,
    }

    #[derive(Debug, Deserialize)]
    pub struct RegisteredModels {
        #[serde(default)]
        pub registered_models: Vec<RegisteredModel>,
        #[serde(default)]
        pub next_page_token: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    pub struct ModelVersionReply {
        pub model_version: ModelVersion,
    }

    #[derive(Debug, Deserialize)]
    pub struct ModelVersions {
        #[serde(default)]
        pub model_versions: Vec<ModelVersion>,
        #[serde(default)]
        pub next_page_token: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    pub struct DownloadUri {
        pub artifact_uri: String,
    }

    #[derive(Debug, Deserialize)]
    pub struct Files {
        #[serde(default)]
        pub files: Vec<FileInfo>,
    }

    /// MLflow's JSON error body (`error_code`, `message`; 3.x adds more).
    #[derive(Debug, Deserialize)]
    pub struct ApiError {
        pub error_code: String,
        #[serde(default)]
        pub message: String,
    }
}

/// One page of a listing and the token for the next, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registered_model_as_mlflow_3_sends_it() {
        let text = r#"{"registered_model": {"name": "rm1", "creation_timestamp": 1796013929204, "description": "d",
            "latest_versions": [{"name": "rm1", "version": "1", "current_stage": "None", "source": "models:/m-c05c", "run_id": "ab39",
            "status": "READY", "run_link": ""}], "tags": [{"key": "t", "value": "1"}], "aliases": [{"alias": "champion", "version": "1"}]}}"#;
        let model: reply::RegisteredModelReply = serde_json::from_str(text).unwrap();
        let model = model.registered_model;
        assert_eq!(model.aliases, vec![Alias { alias: "champion".into(), version: "1".into() }]);
        assert_eq!(tag(&model.tags, "t"), Some("1"));
        assert_eq!(model.latest_versions[0].model_id(), Some("m-c05c"));
        assert!(model.latest_versions[0].aliases.is_empty());
    }

    #[test]
    fn empty_collections_are_left_out_by_the_server() {
        let files: reply::Files = serde_json::from_str("{}").unwrap();
        assert!(files.files.is_empty());
        let run: reply::RunReply = serde_json::from_str(r#"{"run": {"info": {"run_id": "r", "experiment_id": "1"}, "inputs": {}}}"#).unwrap();
        assert!(run.run.data.tags.is_empty());
        let listing: reply::Files =
            serde_json::from_str(r#"{"files": [{"path": "MLmodel", "is_dir": false, "file_size": 6}, {"path": "sub", "is_dir": true}]}"#).unwrap();
        assert_eq!(listing.files[1], FileInfo { path: "sub".into(), is_dir: true, file_size: None });
    }

    #[test]
    fn only_logged_model_sources_name_a_model_id() {
        let version = |source: &str| ModelVersion {
            name: "n".into(),
            version: "1".into(),
            description: String::new(),
            source: source.into(),
            run_id: String::new(),
            status: VERSION_READY.into(),
            status_message: String::new(),
            creation_timestamp: None,
            last_updated_timestamp: None,
            user_id: String::new(),
            tags: vec![],
            aliases: vec![],
        };
        assert_eq!(version("models:/m-abc").model_id(), Some("m-abc"));
        assert_eq!(version("runs:/r/model").model_id(), None);
        assert_eq!(version("models:/name/1").model_id(), None);
    }
}
