//! A native MLflow Tracking + Model Registry client over MLflow's REST API (no Python at run
//! time; `../shared/docs/mlflow-tracking-registry.md`): connection and credentials (`config`),
//! the REST objects (`types`), model URIs (`uri`). Knows nothing of the GUI.

pub mod config;
pub mod types;
pub mod uri;
