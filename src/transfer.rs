//! The one HTTP layer every ModelDesk client builds on (MLflow tracking server, Hugging Face Hub,
//! remote chat endpoints): a blocking `reqwest` client over rustls, requests retried with
//! backoff, and file downloads that resume, verify and land atomically. Services call it from
//! their own threads; nothing here knows about the GUI.
//!
//! Memory stays bounded: bodies of downloads stream to disk in small chunks and error bodies are
//! read up to [`ERROR_BODY_CAP`].

use std::{
    io::{self, Read as _},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant, SystemTime},
};

use reqwest::{
    StatusCode,
    blocking::{Client, RequestBuilder, Response},
    header::{self, HeaderMap},
};

mod file;

pub use file::{Downloaded, FileRequest, download_file};

/// At most this much of an error response's body is read (and kept for the message).
pub const ERROR_BODY_CAP: usize = 16 * 1024;
/// Bytes read from the network per step between progress reports and cancellation checks.
const CHUNK: usize = 64 * 1024;
/// Granularity of cancellable waits.
const CANCEL_POLL: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Time allowed to open a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Time allowed for the response headers and for each read of the body.
    pub read_timeout: Duration,
    /// Accept any TLS certificate (self-signed servers on a LAN); never the default.
    pub insecure_tls: bool,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self { connect_timeout: Duration::from_secs(10), read_timeout: Duration::from_secs(30), insecure_tls: false }
    }
}

/// A blocking client. Redirects are followed (up to 10); `Authorization` is dropped when a
/// redirect leaves the host (reqwest's policy), so tokens never reach a CDN.
pub fn client(options: &HttpOptions) -> Result<Client, TransferError> {
    // reqwest is built without a default crypto provider; ring is ours. Installing fails only
    // when a provider is already installed, which is just as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
        .connect_timeout(options.connect_timeout)
        .timeout(options.read_timeout)
        .danger_accept_invalid_certs(options.insecure_tls)
        .user_agent(concat!("modeldesk/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| TransferError::Client(e.to_string()))
}

/// Retries on connection errors, 429 and 500/502/503/504, with exponential backoff and jitter,
/// honouring `Retry-After` up to `max_delay` (a server asking for a longer wait gets its error
/// reported instead).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 5, base_delay: Duration::from_millis(500), max_delay: Duration::from_secs(30) }
    }
}

impl RetryPolicy {
    /// The wait before attempt `failed + 1`: `base · 2^(failed-1)`, capped, then drawn uniformly
    /// from its upper half so clients that failed together do not retry together.
    pub fn backoff(&self, failed: u32) -> Duration {
        let exponent = failed.saturating_sub(1).min(20);
        let full = self.base_delay.saturating_mul(1 << exponent).min(self.max_delay);
        full / 2 + full.mul_f64(random_fraction() / 2.0)
    }
}

/// The response of a non-2xx answer, for the error variants that carry one.
#[derive(Debug, Clone)]
pub struct HttpFailure {
    pub url: String,
    pub code: u16,
    /// A machine-readable error code the server put in `X-Error-Code` (the Hugging Face Hub does).
    pub error_code: Option<String>,
    /// `X-Error-Message` when present, else the start of the body.
    pub message: String,
    /// The body, read up to [`ERROR_BODY_CAP`] (JSON error objects are parsed from it).
    pub body: String,
}

impl std::fmt::Display for HttpFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} answered HTTP {}", self.url, self.code)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("could not set up the HTTP client: {0}")]
    Client(String),
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the connection to {url} broke off: {reason}")]
    Interrupted { url: String, reason: String },
    #[error("the secure connection to {url} failed: {reason}")]
    Tls { url: String, reason: String },
    #[error("{0} (the server wants credentials)")]
    Unauthorized(HttpFailure),
    #[error("{0} (access denied)")]
    Forbidden(HttpFailure),
    #[error("{0} (not found)")]
    NotFound(HttpFailure),
    #[error("{0}")]
    Status(HttpFailure),
    #[error("{url}: {reason}")]
    Protocol { url: String, reason: String },
    #[error("{url} has {actual} bytes, expected {expected}")]
    SizeMismatch { url: String, expected: u64, actual: u64 },
    #[error("{url} arrived with sha256 {actual}, expected {expected}: the download is corrupt and was discarded")]
    Sha256Mismatch { url: String, expected: String, actual: String },
    #[error("cancelled")]
    Cancelled,
    #[error("no space left on the device holding {path}")]
    NoSpace { path: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl TransferError {
    /// The HTTP answer for status errors.
    pub fn failure(&self) -> Option<&HttpFailure> {
        match self {
            Self::Unauthorized(f) | Self::Forbidden(f) | Self::NotFound(f) | Self::Status(f) => Some(f),
            _ => None,
        }
    }

    fn io(path: &Path, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::StorageFull {
            Self::NoSpace { path: path.to_path_buf() }
        } else {
            Self::Io { path: path.to_path_buf(), source }
        }
    }

    fn from_reqwest(error: reqwest::Error, url: &str) -> Self {
        let reason = error_chain(&error);
        if is_tls(&error) {
            Self::Tls { url: url.to_owned(), reason }
        } else if error.is_connect() || error.is_timeout() {
            Self::Unreachable { url: url.to_owned(), reason }
        } else if error.is_request() || error.is_body() {
            // Typically a kept-alive connection the server closed as the request went out.
            Self::Interrupted { url: url.to_owned(), reason }
        } else {
            Self::Protocol { url: url.to_owned(), reason }
        }
    }

    /// Worth another attempt: the connection failed or the server is busy or briefly broken.
    fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Interrupted { .. } => true,
            Self::Status(f) => matches!(f.code, 429 | 500 | 502 | 503 | 504),
            _ => false,
        }
    }
}

/// Sends a request built by `request` (called again for each attempt), retrying as `policy`
/// says. A 2xx response is returned for the caller to read; anything else becomes an error.
pub fn send(
    policy: &RetryPolicy,
    cancel: &AtomicBool,
    request: &dyn Fn() -> RequestBuilder,
) -> Result<Response, TransferError> {
    let mut failed = 0;
    loop {
        if cancel.load(Ordering::SeqCst) {
            return Err(TransferError::Cancelled);
        }
        let (client, built) = request().build_split();
        let built = built.map_err(|e| TransferError::Client(error_chain(&e)))?;
        let url = built.url().to_string();
        let (error, retry_after) = match execute_unless_cancelled(client, built, cancel)? {
            Ok(response) if response.status().is_success() => return Ok(response),
            Ok(response) => {
                let retry_after = retry_after(response.headers(), SystemTime::now());
                (status_error(response), retry_after)
            }
            Err(error) => (TransferError::from_reqwest(error, &url), None),
        };
        failed += 1;
        if !error.is_transient() || failed >= policy.max_attempts {
            return Err(error);
        }
        let wait = match retry_after {
            Some(wait) if wait > policy.max_delay => return Err(error),
            Some(wait) => wait,
            None => policy.backoff(failed),
        };
        sleep_unless_cancelled(wait, cancel)?;
    }
}

/// Runs the request on a helper thread so that `cancel` is noticed at once, not after the
/// server's answer or a timeout (the helper finishes on its own and its answer is dropped).
fn execute_unless_cancelled(
    client: Client,
    request: reqwest::blocking::Request,
    cancel: &AtomicBool,
) -> Result<reqwest::Result<Response>, TransferError> {
    let (sender, answer) = mpsc::sync_channel(1);
    spawn_helper("modeldesk-http", move || {
        let _ = sender.send(client.execute(request));
    })?;
    loop {
        if cancel.load(Ordering::SeqCst) {
            return Err(TransferError::Cancelled);
        }
        match answer.recv_timeout(CANCEL_POLL) {
            Ok(result) => return Ok(result),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err(TransferError::Client("the HTTP helper thread stopped".into())),
        }
    }
}

fn spawn_helper(name: &str, work: impl FnOnce() + Send + 'static) -> Result<(), TransferError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(work)
        .map(drop)
        .map_err(|e| TransferError::Client(format!("could not start a thread: {e}")))
}

/// Reads a non-2xx response into the matching error (the body up to [`ERROR_BODY_CAP`]).
pub fn status_error(response: Response) -> TransferError {
    let url = response.url().to_string();
    let code = response.status();
    let header_text = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let error_code = header_text("x-error-code");
    let header_message = header_text("x-error-message");
    let mut bytes = Vec::new();
    let _ = response.take(ERROR_BODY_CAP as u64).read_to_end(&mut bytes);
    let body = String::from_utf8_lossy(&bytes).into_owned();
    let message = header_message.unwrap_or_else(|| excerpt(&body));
    let failure = HttpFailure { url, code: code.as_u16(), error_code, message, body };
    match code {
        StatusCode::UNAUTHORIZED => TransferError::Unauthorized(failure),
        StatusCode::FORBIDDEN => TransferError::Forbidden(failure),
        StatusCode::NOT_FOUND => TransferError::NotFound(failure),
        _ => TransferError::Status(failure),
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

fn sleep_unless_cancelled(wait: Duration, cancel: &AtomicBool) -> Result<(), TransferError> {
    let until = Instant::now() + wait;
    loop {
        if cancel.load(Ordering::SeqCst) {
            return Err(TransferError::Cancelled);
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(CANCEL_POLL));
    }
}

/// A number in [0, 1) that differs between calls and processes, for jitter (no need for a
/// cryptographic source: std's hasher keys are random per instance).
fn random_fraction() -> f64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

fn is_tls(error: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if current.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(io) = current.downcast_ref::<io::Error>() {
            if io.get_ref().is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()) {
                return true;
            }
        }
        source = current.source();
    }
    false
}

/// An error with its causes, "outer: inner: innermost", without repeating the URL.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(current) = source {
        let text = current.to_string();
        if parts.last().is_none_or(|last| !last.contains(&text)) {
            parts.push(text);
        }
        source = current.source();
    }
    parts.join(": ")
}

/// The start of a body on one line, for messages.
fn excerpt(body: &str) -> String {
    let line = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut headers = HeaderMap::new();
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        headers.insert(header::RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(90)));
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers, now), None);
    }

    #[test]
    fn backoff_doubles_within_its_jitter_and_stops_at_the_cap() {
        let policy = RetryPolicy { max_attempts: 10, base_delay: Duration::from_millis(100), max_delay: Duration::from_millis(700) };
        for (failed, full) in [(1, 100), (2, 200), (3, 400), (4, 700), (30, 700)] {
            let wait = policy.backoff(failed);
            let full = Duration::from_millis(full);
            assert!(wait >= full / 2 && wait <= full, "attempt {failed}: {wait:?} outside [{:?}, {full:?}]", full / 2);
        }
    }

    #[test]
    fn error_excerpts_are_one_short_line() {
        assert_eq!(excerpt("  {\"error\":\n  \"nope\"}  "), "{\"error\": \"nope\"}");
        let long = "é".repeat(500);
        assert_eq!(excerpt(&long).chars().count(), 201);
    }
}
