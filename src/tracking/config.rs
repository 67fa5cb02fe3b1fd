//! Where the tracking server is and how to sign in, decided the way MLflow's own client does:
//! an explicit URI (`--tracking-uri`, the GUI's setting) or `MLFLOW_TRACKING_URI`;
//! `MLFLOW_TRACKING_USERNAME` + `MLFLOW_TRACKING_PASSWORD` (Basic, wins) or
//! `MLFLOW_TRACKING_TOKEN` (Bearer); `MLFLOW_TRACKING_INSECURE_TLS=true` accepts any certificate.
//! The GUI's remembered settings (no secrets: passwords go to the keyring, see `credentials`)
//! are a JSON file in the config directory.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const ENV_URI: &str = "MLFLOW_TRACKING_URI";
pub const ENV_TOKEN: &str = "MLFLOW_TRACKING_TOKEN";
pub const ENV_USERNAME: &str = "MLFLOW_TRACKING_USERNAME";
pub const ENV_PASSWORD: &str = "MLFLOW_TRACKING_PASSWORD";
pub const ENV_INSECURE_TLS: &str = "MLFLOW_TRACKING_INSECURE_TLS";

/// How requests prove who sends them.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Auth {
    #[default]
    Anonymous,
    Bearer(String),
    Basic { username: String, password: String },
}

// Secrets never reach logs or error messages.
impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Anonymous => f.write_str("Anonymous"),
            Auth::Bearer(_) => f.write_str("Bearer(…)"),
            Auth::Basic { username, .. } => write!(f, "Basic({username}, …)"),
        }
    }
}

/// Where models come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An MLflow tracking server: its base URL (path prefix included, no trailing slash).
    Server(String),
    /// A `file:` URI or a plain path: a local folder (MLflow's file store, or model folders).
    Local(PathBuf),
}

/// A tracking server and the credentials to use with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// `http(s)://host[:port][/prefix]`, no trailing slash.
    pub base_url: String,
    pub auth: Auth,
    pub insecure_tls: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("no tracking server is set: pass --tracking-uri, set MLFLOW_TRACKING_URI, or choose one in the settings")]
    NoTrackingUri,
    #[error("`{uri}` is not a tracking URI: {reason}")]
    BadUri { uri: String, reason: String },
    #[error("{uri} is a local folder ({path}); this needs an MLflow tracking server (http:// or https://)")]
    LocalStore { uri: String, path: PathBuf },
    #[error("MLFLOW_TRACKING_USERNAME is set without MLFLOW_TRACKING_PASSWORD")]
    MissingPassword,
}

/// Reads a tracking URI: `http(s)://…` is a server, `file:` or a path is local.
pub fn parse_target(uri: &str) -> Result<Target, ConfigError> {
    let trimmed = uri.trim();
    let bad = |reason: &str| ConfigError::BadUri { uri: uri.to_owned(), reason: reason.to_owned() };
    if trimmed.is_empty() {
        return Err(bad("it is empty"));
    }
    let lower = trimmed.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        let host = trimmed.split_once("://").map(|(_, rest)| rest).unwrap_or_default();
        if host.is_empty() || host.starts_with('/') {
            return Err(bad("the host is missing"));
        }
        if trimmed.contains(['?', '#']) {
            return Err(bad("a tracking URI has no query or fragment"));
        }
        return Ok(Target::Server(trimmed.trim_end_matches('/').to_owned()));
    }
    if let Some(rest) = trimmed.strip_prefix("file:") {
        // file:///abs/path, file:/abs/path, file:relative
        let path = rest.strip_prefix("//").unwrap_or(rest);
        return Ok(Target::Local(PathBuf::from(path)));
    }
    if let Some((scheme, _)) = trimmed.split_once("://") {
        return Err(bad(&format!("the `{scheme}` scheme is not supported here (use http://, https:// or file:)")));
    }
    Ok(Target::Local(PathBuf::from(trimmed)))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// MLflow's reading of a boolean environment variable.
fn env_true(name: &str) -> bool {
    env(name).is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1"))
}

/// Credentials from the environment, as MLflow's client reads them (Basic wins over Bearer).
pub fn auth_from_env() -> Result<Option<Auth>, ConfigError> {
    match (env(ENV_USERNAME), env(ENV_PASSWORD)) {
        (Some(username), Some(password)) => return Ok(Some(Auth::Basic { username, password })),
        (Some(_), None) => return Err(ConfigError::MissingPassword),
        _ => {}
    }
    Ok(env(ENV_TOKEN).map(Auth::Bearer))
}

impl Connection {
    /// The server to use: `explicit` (a command-line flag or the GUI's choice), else
    /// `MLFLOW_TRACKING_URI`, else the remembered setting. Credentials: the environment's, else
    /// `stored` (the GUI's, from the keyring), else anonymous.
    pub fn resolve(explicit: Option<&str>, settings: &TrackingSettings, stored: Option<Auth>) -> Result<Connection, ConfigError> {
        let uri = explicit
            .map(str::to_owned)
            .or_else(|| env(ENV_URI))
            .or_else(|| settings.tracking_uri.clone().filter(|u| !u.is_empty()))
            .ok_or(ConfigError::NoTrackingUri)?;
        match parse_target(&uri)? {
            Target::Server(base_url) => {
                let auth = auth_from_env()?.or(stored).unwrap_or_default();
                Ok(Connection { base_url, auth, insecure_tls: env_true(ENV_INSECURE_TLS) || settings.insecure_tls })
            }
            Target::Local(path) => Err(ConfigError::LocalStore { uri, path }),
        }
    }

    /// A connection to `base_url` with the given credentials (tests, the GUI's "Connect").
    pub fn new(base_url: &str, auth: Auth) -> Result<Connection, ConfigError> {
        match parse_target(base_url)? {
            Target::Server(base_url) => Ok(Connection { base_url, auth, insecure_tls: false }),
            Target::Local(path) => Err(ConfigError::LocalStore { uri: base_url.to_owned(), path }),
        }
    }

    /// `host_port[_prefix]` with only file-name-safe characters: this server's folder in caches.
    pub fn cache_key(&self) -> String {
        let without_scheme = self.base_url.split_once("://").map(|(_, rest)| rest).unwrap_or(&self.base_url);
        safe_file_name(without_scheme)
    }
}

/// `text` as one file-name component: ASCII letters, digits, `.`, `-` and `_` are kept, every
/// other byte becomes `_XX` (hex), so different inputs give different names.
pub fn safe_file_name(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' => out.push(byte as char),
            _ => out.push_str(&format!("_{byte:02X}")),
        }
    }
    if out.is_empty() || out.chars().all(|c| c == '.') {
        out = format!("_{out}");
    }
    out
}

/// What the GUI remembers about tracking (no secrets).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TrackingSettings {
    pub tracking_uri: Option<String>,
    /// The user name whose password is in the keyring for `tracking_uri`.
    pub username: Option<String>,
    /// A token for `tracking_uri` is in the keyring (used when no user name is set).
    pub token_in_keyring: bool,
    pub insecure_tls: bool,
    /// Record each chat turn as an MLflow trace (off by default).
    pub traces_enabled: bool,
    /// The experiment traces go to.
    pub trace_experiment: Option<String>,
    /// The Python that runs `mlflow models serve` for "Run with MLflow" (else found on PATH).
    pub python: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not valid settings JSON: {source}")]
    Parse { path: PathBuf, source: serde_json::Error },
}

impl TrackingSettings {
    pub const FILE_NAME: &str = "tracking.json";

    /// The settings in `config_dir`, or the defaults when there are none yet.
    pub fn load(config_dir: &Path) -> Result<TrackingSettings, SettingsError> {
        let path = config_dir.join(Self::FILE_NAME);
        match crate::fsio::read_text_if_present(&path, crate::fsio::CONFIG_LIMIT) {
            Ok(Some(text)) => serde_json::from_str(&text).map_err(|source| SettingsError::Parse { path, source }),
            Ok(None) => Ok(TrackingSettings::default()),
            Err(error) => Err(SettingsError::Io { path, source: std::io::Error::other(error.to_string()) }),
        }
    }

    /// Saves atomically (temporary file, fsync, rename).
    pub fn save(&self, config_dir: &Path) -> Result<(), SettingsError> {
        let path = config_dir.join(Self::FILE_NAME);
        let io = |source| SettingsError::Io { path: path.clone(), source };
        std::fs::create_dir_all(config_dir).map_err(io)?;
        let text = serde_json::to_vec_pretty(self).map_err(|e| io(std::io::Error::other(e)))?;
        crate::mlflow::mlmodel::write_atomically(&path, &text).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracking_uris_are_servers_or_local_folders() {
        assert_eq!(parse_target("http://127.0.0.1:5000/").unwrap(), Target::Server("http://127.0.0.1:5000".into()));
        assert_eq!(parse_target("https://mlflow.example/prefix").unwrap(), Target::Server("https://mlflow.example/prefix".into()));
        assert_eq!(parse_target("file:///tmp/mlruns").unwrap(), Target::Local("/tmp/mlruns".into()));
        assert_eq!(parse_target("./mlruns").unwrap(), Target::Local("./mlruns".into()));
        for (bad, reason) in [("", "empty"), ("http://", "host is missing"), ("databricks://x", "`databricks` scheme"), ("http://h/?a=1", "no query")] {
            let message = parse_target(bad).unwrap_err().to_string();
            assert!(message.contains(reason), "{bad}: {message}");
        }
    }

    #[test]
    fn cache_keys_are_file_names_and_tell_servers_apart() {
        let key = |url: &str| Connection::new(url, Auth::Anonymous).unwrap().cache_key();
        assert_eq!(key("http://127.0.0.1:5000"), "127.0.0.1_3A5000");
        assert_ne!(key("http://h/a_b"), key("http://h/a/b"));
        assert!(!key("https://h:1/x/../y").contains('/'));
        assert_eq!(safe_file_name(".."), "_..");
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let auth = Auth::Basic { username: "ann".into(), password: "hunter2-secret".into() };
        let text = format!("{auth:?} {:?}", Auth::Bearer("token-secret".into()));
        assert!(text.contains("ann") && !text.contains("secret"), "{text}");
    }

    #[test]
    fn settings_round_trip_and_default_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(TrackingSettings::load(dir.path()).unwrap(), TrackingSettings::default());
        let settings = TrackingSettings {
            tracking_uri: Some("http://127.0.0.1:5000".into()),
            username: Some("ann".into()),
            traces_enabled: true,
            trace_experiment: Some("chats".into()),
            ..Default::default()
        };
        settings.save(dir.path()).unwrap();
        assert_eq!(TrackingSettings::load(dir.path()).unwrap(), settings);
        std::fs::write(dir.path().join(TrackingSettings::FILE_NAME), "{not json").unwrap();
        let error = TrackingSettings::load(dir.path()).unwrap_err().to_string();
        assert!(error.contains("tracking.json"), "{error}");
    }
}
