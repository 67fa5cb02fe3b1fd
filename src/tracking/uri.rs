//! Model URIs (`models:/NAME/VERSION`, `models:/NAME@ALIAS`, `models:/NAME/latest`,
//! `models:/<model_id>`, `runs:/<run_id>/<path>`) and `mlflow-artifacts:` artifact URIs.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelUri {
    /// `models:/NAME/VERSION`.
    Version { name: String, version: u64 },
    /// `models:/NAME/latest`: the highest version number.
    Latest { name: String },
    /// `models:/NAME@ALIAS`.
    Alias { name: String, alias: String },
    /// `models:/m-<hex>`: an MLflow 3 LoggedModel.
    LoggedModel { model_id: String },
    /// `runs:/<run_id>/<path>` (the path may be empty: the run's whole artifact root).
    Run { run_id: String, path: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{uri}` is not a model URI: {reason} (expected models:/NAME/VERSION, models:/NAME@ALIAS, models:/<model_id> or runs:/<run_id>/<path>)")]
pub struct UriError {
    pub uri: String,
    pub reason: String,
}

fn error(uri: &str, reason: impl Into<String>) -> UriError {
    UriError { uri: uri.to_owned(), reason: reason.into() }
}

/// An artifact path inside a model or run: relative, `/`-separated, no `.` or `..` segments.
pub fn check_relative_path(path: &str) -> Result<(), String> {
    if path.starts_with('/') || path.contains('\\') {
        return Err(format!("`{path}` must be a relative path with `/` separators"));
    }
    if path.split('/').any(|segment| segment.is_empty() || segment == "." || segment == "..") {
        return Err(format!("`{path}` has an empty, `.` or `..` segment"));
    }
    Ok(())
}

impl ModelUri {
    pub fn parse(text: &str) -> Result<ModelUri, UriError> {
        let text = text.trim();
        if let Some(rest) = text.strip_prefix("models:/") {
            let rest = rest.trim_end_matches('/');
            if rest.is_empty() {
                return Err(error(text, "the model name is missing"));
            }
            if let Some((name, alias)) = rest.rsplit_once('@') {
                if name.is_empty() || alias.is_empty() || alias.contains('/') {
                    return Err(error(text, "an alias URI is models:/NAME@ALIAS"));
                }
                return Ok(ModelUri::Alias { name: name.to_owned(), alias: alias.to_owned() });
            }
            let Some((name, version)) = rest.rsplit_once('/') else {
                if rest.starts_with("m-") {
                    return Ok(ModelUri::LoggedModel { model_id: rest.to_owned() });
                }
                return Err(error(text, "a registered model needs a version or an alias"));
            };
            if name.is_empty() {
                return Err(error(text, "the model name is missing"));
            }
            if version.eq_ignore_ascii_case("latest") {
                return Ok(ModelUri::Latest { name: name.to_owned() });
            }
            return match version.parse::<u64>() {
                Ok(number) if number > 0 => Ok(ModelUri::Version { name: name.to_owned(), version: number }),
                _ => Err(error(text, format!("`{version}` is not a version number (stages are deprecated in MLflow; use an alias)"))),
            };
        }
        if let Some(rest) = text.strip_prefix("runs:/") {
            let (run_id, path) = rest.split_once('/').unwrap_or((rest, ""));
            let path = path.trim_end_matches('/');
            if run_id.is_empty() {
                return Err(error(text, "the run id is missing"));
            }
            if !path.is_empty() {
                check_relative_path(path).map_err(|reason| error(text, reason))?;
            }
            return Ok(ModelUri::Run { run_id: run_id.to_owned(), path: path.to_owned() });
        }
        Err(error(text, "it starts with neither models:/ nor runs:/"))
    }
}

impl fmt::Display for ModelUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelUri::Version { name, version } => write!(f, "models:/{name}/{version}"),
            ModelUri::Latest { name } => write!(f, "models:/{name}/latest"),
            ModelUri::Alias { name, alias } => write!(f, "models:/{name}@{alias}"),
            ModelUri::LoggedModel { model_id } => write!(f, "models:/{model_id}"),
            ModelUri::Run { run_id, path } if path.is_empty() => write!(f, "runs:/{run_id}"),
            ModelUri::Run { run_id, path } => write!(f, "runs:/{run_id}/{path}"),
        }
    }
}

impl std::str::FromStr for ModelUri {
    type Err = UriError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ModelUri::parse(text)
    }
}

/// The path under the server's artifact proxy (`/api/2.0/mlflow-artifacts/artifacts/<path>`)
/// of an `mlflow-artifacts:/<path>` URI. Other schemes (`s3://`, `file:`, another host) are
/// storage the client would have to reach itself.
pub fn proxied_artifact_path(artifact_uri: &str) -> Option<String> {
    let rest = artifact_uri.strip_prefix("mlflow-artifacts:")?;
    // `mlflow-artifacts://host:port/...` names another server.
    if rest.starts_with("//") {
        return None;
    }
    let path = rest.trim_start_matches('/').trim_end_matches('/');
    check_relative_path(path).ok().map(|()| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_uri_form_parses_and_prints_back() {
        let cases = [
            ("models:/phi3-chat/3", ModelUri::Version { name: "phi3-chat".into(), version: 3 }),
            ("models:/phi3-chat@champion", ModelUri::Alias { name: "phi3-chat".into(), alias: "champion".into() }),
            ("models:/phi3-chat/latest", ModelUri::Latest { name: "phi3-chat".into() }),
            ("models:/m-0123abcd", ModelUri::LoggedModel { model_id: "m-0123abcd".into() }),
            ("runs:/abc123/model", ModelUri::Run { run_id: "abc123".into(), path: "model".into() }),
            ("runs:/abc123/a/b", ModelUri::Run { run_id: "abc123".into(), path: "a/b".into() }),
            ("runs:/abc123", ModelUri::Run { run_id: "abc123".into(), path: String::new() }),
        ];
        for (text, want) in &cases {
            let parsed = ModelUri::parse(text).unwrap();
            assert_eq!(&parsed, want, "{text}");
            assert_eq!(parsed.to_string(), *text);
        }
        assert_eq!(cases.len(), 7);
    }

    #[test]
    fn malformed_uris_say_what_is_wrong() {
        for (text, reason) in [
            ("models:/", "name is missing"),
            ("models:/phi3", "needs a version or an alias"),
            ("models:/phi3/Production", "stages are deprecated"),
            ("models:/phi3/0", "not a version number"),
            ("models:/phi3@", "models:/NAME@ALIAS"),
            ("runs:/", "run id is missing"),
            ("runs:/r/../etc", "`..` segment"),
            ("s3://bucket/model", "neither models:/ nor runs:/"),
        ] {
            let message = ModelUri::parse(text).unwrap_err().to_string();
            assert!(message.contains(reason) && message.contains(text), "{text}: {message}");
        }
    }

    #[test]
    fn only_proxied_artifact_uris_map_to_a_proxy_path() {
        assert_eq!(proxied_artifact_path("mlflow-artifacts:/1/models/m-1/artifacts").as_deref(), Some("1/models/m-1/artifacts"));
        assert_eq!(proxied_artifact_path("mlflow-artifacts:/1/r/artifacts/").as_deref(), Some("1/r/artifacts"));
        assert_eq!(proxied_artifact_path("mlflow-artifacts://other:5000/1/r"), None);
        assert_eq!(proxied_artifact_path("s3://bucket/1/r"), None);
        assert_eq!(proxied_artifact_path("mlflow-artifacts:/1/../../etc"), None);
    }
}
