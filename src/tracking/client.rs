//! The REST calls, over the shared HTTP layer (`crate::transfer`): JSON requests with the
//! connection's credentials, MLflow's error bodies turned into errors that say what went wrong
//! and where, and the artifact proxy (list, download, upload).

use std::{
    io::Read,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use reqwest::{
    Method,
    blocking::{Client, RequestBuilder},
    header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue},
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{
    config::{Auth, Connection},
    types::{FileInfo, reply},
};
use crate::transfer::{self, FileRequest, HttpOptions, RetryPolicy, TransferError};

pub const API: &str = "/api/2.0/mlflow";
pub const API_3: &str = "/api/3.0/mlflow";
pub const ARTIFACTS: &str = "/api/2.0/mlflow-artifacts/artifacts";
/// Reply bodies larger than this are refused (listings and objects are a few KB).
const REPLY_CAP: u64 = 32 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum TrackingError {
    #[error("cannot reach the MLflow server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the secure connection to {url} failed: {reason} (set MLFLOW_TRACKING_INSECURE_TLS=true only for a server you trust)")]
    Tls { url: String, reason: String },
    #[error("{url}: the server wants valid credentials (HTTP 401); set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN")]
    Unauthorized { url: String },
    #[error("{url}: permission denied (HTTP 403) for this user: {message}")]
    Forbidden { url: String, message: String },
    /// MLflow's `RESOURCE_DOES_NOT_EXIST`, or a missing route.
    #[error("{what} not found ({url}): {message}")]
    NotFound { what: String, url: String, message: String },
    #[error("the MLflow server at {base_url} ({version}) has no {feature}")]
    Unsupported { base_url: String, version: String, feature: String },
    /// Any other MLflow error reply.
    #[error("{url} answered HTTP {status} {error_code}: {message}")]
    Api { url: String, status: u16, error_code: String, message: String },
    #[error("{url}: {reason}")]
    Protocol { url: String, reason: String },
    #[error("cancelled")]
    Cancelled,
    #[error(transparent)]
    Transfer(TransferError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl TrackingError {
    /// MLflow's `error_code`, when the server sent one.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            TrackingError::Api { error_code, .. } => Some(error_code),
            TrackingError::NotFound { .. } => Some("RESOURCE_DOES_NOT_EXIST"),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, TrackingError::NotFound { .. })
    }

    fn from_transfer(error: TransferError, what: &str) -> TrackingError {
        let api = |f: &transfer::HttpFailure| serde_json::from_str::<reply::ApiError>(&f.body).ok();
        match error {
            TransferError::Unreachable { url, reason } => TrackingError::Unreachable { url, reason },
            TransferError::Tls { url, reason } => TrackingError::Tls { url, reason },
            TransferError::Cancelled => TrackingError::Cancelled,
            TransferError::Unauthorized(f) => TrackingError::Unauthorized { url: f.url },
            TransferError::Forbidden(f) => {
                let message = api(&f).map(|e| e.message).unwrap_or_else(|| f.message.clone());
                TrackingError::Forbidden { url: f.url, message }
            }
            TransferError::NotFound(f) => {
                let message = api(&f).map(|e| e.message).unwrap_or_else(|| "the server has no such route".into());
                TrackingError::NotFound { what: what.to_owned(), url: f.url, message }
            }
            // However the layer classed them, 401 and 403 mean the same to the user.
            TransferError::Status(f) if f.code == 401 => TrackingError::Unauthorized { url: f.url },
            TransferError::Status(f) if f.code == 403 => {
                let message = api(&f).map(|e| e.message).unwrap_or_else(|| f.message.clone());
                TrackingError::Forbidden { url: f.url, message }
            }
            TransferError::Status(f) => match api(&f) {
                Some(e) if e.error_code == "RESOURCE_DOES_NOT_EXIST" => {
                    TrackingError::NotFound { what: what.to_owned(), url: f.url, message: e.message }
                }
                Some(e) => TrackingError::Api { url: f.url, status: f.code, error_code: e.error_code, message: e.message },
                None => TrackingError::Api { url: f.url.clone(), status: f.code, error_code: String::new(), message: f.message },
            },
            other => TrackingError::Transfer(other),
        }
    }
}

pub type Result<T> = std::result::Result<T, TrackingError>;

/// A blocking client for one tracking server. Cheap to clone; every call may run on any thread.
#[derive(Clone)]
pub struct TrackingClient {
    connection: Connection,
    http: Client,
    retry: RetryPolicy,
    cancel: Arc<AtomicBool>,
    /// Rows asked for per page when listing.
    page_size: u32,
}

impl std::fmt::Debug for TrackingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackingClient").field("connection", &self.connection).finish()
    }
}

impl TrackingClient {
    pub fn new(connection: Connection) -> Result<TrackingClient> {
        let options = HttpOptions {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(120),
            insecure_tls: connection.insecure_tls,
        };
        let http = transfer::client(&options).map_err(|e| TrackingError::from_transfer(e, "client"))?;
        Ok(TrackingClient { connection, http, retry: RetryPolicy::default(), cancel: Arc::new(AtomicBool::new(false)), page_size: super::api::PAGE_SIZE })
    }

    /// This client, stopping its calls when `cancel` is set (a service's flag).
    pub fn with_cancel(&self, cancel: Arc<AtomicBool>) -> TrackingClient {
        TrackingClient { cancel, ..self.clone() }
    }

    /// Fewer retries (probes, tests of unreachable servers).
    pub fn with_retry(&self, retry: RetryPolicy) -> TrackingClient {
        TrackingClient { retry, ..self.clone() }
    }

    /// Listings ask for `rows` per page (at least 1; the server may cap it).
    pub fn with_page_size(&self, rows: u32) -> TrackingClient {
        TrackingClient { page_size: rows.max(1), ..self.clone() }
    }

    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    pub fn base_url(&self) -> &str {
        &self.connection.base_url
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.connection.base_url)
    }

    fn auth_headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = match &self.connection.auth {
            Auth::Anonymous => None,
            Auth::Bearer(token) => Some(format!("Bearer {token}")),
            Auth::Basic { username, password } => {
                use base64::Engine as _;
                Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))))
            }
        };
        if let Some(mut value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        headers
    }

    fn request(&self, method: Method, url: &str) -> RequestBuilder {
        self.http.request(method, url).headers(self.auth_headers())
    }

    /// Sends and reads a JSON reply (`what` names the object for a not-found error).
    fn call<T: DeserializeOwned>(&self, what: &str, build: &dyn Fn() -> RequestBuilder) -> Result<T> {
        let response = transfer::send(&self.retry, &self.cancel, build).map_err(|e| TrackingError::from_transfer(e, what))?;
        let url = response.url().to_string();
        let mut bytes = Vec::new();
        response.take(REPLY_CAP + 1).read_to_end(&mut bytes).map_err(|e| TrackingError::Protocol { url: url.clone(), reason: e.to_string() })?;
        if bytes.len() as u64 > REPLY_CAP {
            return Err(TrackingError::Protocol { url, reason: format!("the reply is larger than {REPLY_CAP} bytes") });
        }
        let bytes = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}".to_vec() } else { bytes };
        serde_json::from_slice(&bytes).map_err(|e| TrackingError::Protocol { url, reason: format!("unexpected reply ({e})") })
    }

    /// `GET <base><path>?query` → JSON.
    pub fn get<T: DeserializeOwned>(&self, what: &str, path: &str, query: &[(&str, &str)]) -> Result<T> {
        let mut url = self.url(path);
        for (index, (key, value)) in query.iter().enumerate() {
            url.push(if index == 0 { '?' } else { '&' });
            url.push_str(&format!("{}={}", percent_encode(key), percent_encode(value)));
        }
        self.call(what, &|| self.request(Method::GET, &url))
    }

    /// `POST`/`PATCH`/`DELETE <base><path>` with a JSON body → JSON.
    pub fn send_json<T: DeserializeOwned>(&self, what: &str, method: Method, path: &str, body: &Value) -> Result<T> {
        let url = self.url(path);
        let text = body.to_string();
        self.call(what, &|| self.request(method.clone(), &url).header(CONTENT_TYPE, "application/json").body(text.clone()))
    }

    /// A request to a full URL with extra headers and a text body (OTLP traces).
    pub(crate) fn call_raw<T: DeserializeOwned>(&self, what: &str, method: Method, url: &str, headers: &[(&str, &str)], body: String) -> Result<T> {
        self.call(what, &|| {
            let mut request = self.request(method.clone(), url);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            request.body(body.clone())
        })
    }

    pub fn post<T: DeserializeOwned>(&self, what: &str, path: &str, body: &Value) -> Result<T> {
        self.send_json(what, Method::POST, path, body)
    }

    /// The server's MLflow version (`GET /version`).
    pub fn server_version(&self) -> Result<String> {
        let url = self.url("/version");
        let response = transfer::send(&self.retry, &self.cancel, &|| self.request(Method::GET, &url))
            .map_err(|e| TrackingError::from_transfer(e, "/version"))?;
        let mut text = String::new();
        response.take(256).read_to_string(&mut text).map_err(|e| TrackingError::Protocol { url, reason: e.to_string() })?;
        Ok(text.trim().to_owned())
    }

    // -- artifacts ---------------------------------------------------------------------------

    /// One level of the artifact directory at `path` (under the proxy). A missing directory lists
    /// as empty, as MLflow answers.
    pub fn list_artifacts(&self, path: &str) -> Result<Vec<FileInfo>> {
        let files: reply::Files = self.get("artifact directory", ARTIFACTS, &[("path", path)])?;
        Ok(files.files)
    }

    fn artifact_url(&self, path: &str) -> String {
        let encoded: Vec<String> = path.split('/').map(|segment| percent_encode(segment)).collect();
        format!("{}{ARTIFACTS}/{}", self.connection.base_url, encoded.join("/"))
    }

    /// Downloads the artifact at `path` into `dest` (resuming `<partial>`), checking its size.
    pub fn download_artifact(
        &self,
        path: &str,
        dest: &Path,
        partial: PathBuf,
        expected_size: Option<u64>,
        on_progress: &mut dyn FnMut(u64, Option<u64>),
    ) -> Result<transfer::Downloaded> {
        let file = FileRequest {
            url: self.artifact_url(path),
            headers: self.auth_headers(),
            dest,
            partial: Some(partial),
            expected_size,
            expected_sha256: None,
        };
        transfer::download_file(&self.http, &self.retry, &file, &self.cancel, on_progress).map_err(|e| TrackingError::from_transfer(e, path))
    }

    /// Uploads `source` to the artifact `path` with one PUT, streamed from disk. `on_sent(bytes)`
    /// follows the bytes handed to the connection (from zero again if a retry starts over).
    pub fn upload_artifact(&self, path: &str, source: &Path, on_sent: Arc<dyn Fn(u64) + Send + Sync>) -> Result<()> {
        let size = std::fs::metadata(source).map_err(|e| TrackingError::Io { path: source.to_path_buf(), source: e })?.len();
        let url = self.artifact_url(path);
        let build = || {
            let body = CountingReader::open(source, Arc::clone(&self.cancel), Arc::clone(&on_sent));
            self.request(Method::PUT, &url)
                .header(CONTENT_TYPE, "application/octet-stream")
                .body(reqwest::blocking::Body::sized(body, size))
        };
        let response = transfer::send(&self.retry, &self.cancel, &build).map_err(|e| TrackingError::from_transfer(e, path))?;
        drop(response);
        if self.is_cancelled() {
            return Err(TrackingError::Cancelled);
        }
        Ok(())
    }
}

/// Reads a file for an upload body, counting bytes and stopping when cancelled. Opening is
/// deferred to the first read so each retry starts from the beginning of the file.
struct CountingReader {
    path: PathBuf,
    file: Option<std::fs::File>,
    sent: u64,
    cancel: Arc<AtomicBool>,
    on_sent: Arc<dyn Fn(u64) + Send + Sync>,
}

impl CountingReader {
    fn open(path: &Path, cancel: Arc<AtomicBool>, on_sent: Arc<dyn Fn(u64) + Send + Sync>) -> Self {
        Self { path: path.to_path_buf(), file: None, sent: 0, cancel, on_sent }
    }
}

impl Read for CountingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.cancel.load(Ordering::SeqCst) {
            return Err(std::io::Error::new(std::io::ErrorKind::Interrupted, "cancelled"));
        }
        if self.file.is_none() {
            self.file = Some(std::fs::File::open(&self.path)?);
        }
        let Some(file) = self.file.as_mut() else { return Ok(0) };
        let read = file.read(buf)?;
        self.sent += read as u64;
        (self.on_sent)(self.sent);
        Ok(read)
    }
}

/// Percent-encodes one path segment (RFC 3986 unreserved characters stay).
pub fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(percent_encode("a b/c%"), "a%20b%2Fc%25");
        assert_eq!(percent_encode("model.onnx.data"), "model.onnx.data");
    }

    #[test]
    fn mlflow_error_bodies_become_named_errors() {
        let failure = |code: u16, body: &str| transfer::HttpFailure {
            url: "http://h/api".into(),
            code,
            error_code: None,
            message: String::new(),
            body: body.into(),
        };
        let not_found = TrackingError::from_transfer(
            TransferError::NotFound(failure(404, r#"{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Registered Model with name=x not found"}"#)),
            "registered model x",
        );
        assert!(not_found.is_not_found());
        assert!(not_found.to_string().contains("name=x not found"), "{not_found}");
        let exists = TrackingError::from_transfer(
            TransferError::Status(failure(400, r#"{"error_code": "RESOURCE_ALREADY_EXISTS", "message": "exists"}"#)),
            "registered model x",
        );
        assert_eq!(exists.error_code(), Some("RESOURCE_ALREADY_EXISTS"));
        let html = TrackingError::from_transfer(TransferError::Status(failure(502, "<html>bad gateway</html>")), "x");
        assert!(matches!(html, TrackingError::Api { status: 502, .. }), "{html}");
        let denied = TrackingError::from_transfer(TransferError::Unauthorized(failure(401, "You are not authenticated.")), "x");
        assert!(denied.to_string().contains("MLFLOW_TRACKING_USERNAME"), "{denied}");
    }
}
