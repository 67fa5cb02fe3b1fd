//! The shared HTTP layer (src/transfer.rs) against a small server of this test's own on
//! 127.0.0.1: retries, Retry-After, resume, a server that ignores Range, size and sha256
//! checks, status codes, cancel, redirects that must not carry the token, an unreachable port.

use std::{
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use futures_util::stream::{self, StreamExt as _};
use modeldesk::transfer::{self, FileRequest, HttpOptions, RetryPolicy, TransferError};
use reqwest::header::{AUTHORIZATION, HeaderValue};

/// What the server does; tests flip these before (or between) requests.
#[derive(Default)]
struct Behaviour {
    body: Vec<u8>,
    /// Answer this many requests with 503 first.
    busy_first: AtomicU32,
    retry_after: Mutex<Option<String>>,
    /// Always answer with this status (401, 403, 404, 500).
    status: Mutex<Option<u16>>,
    ignore_range: AtomicBool,
    /// Drop the connection after this many body bytes, once.
    cut_after: Mutex<Option<usize>>,
    /// Send this many body bytes, then nothing more (the client cancels).
    stall_after: Mutex<Option<usize>>,
    /// Change one byte of what is sent.
    corrupt: AtomicBool,
    /// Serve the file this many bytes short, without `Content-Length`.
    short_by: AtomicUsize,
    /// Each request's path, Range and Authorization headers.
    log: Mutex<Vec<(String, Option<String>, Option<String>)>>,
    body_bytes_sent: AtomicUsize,
    other_port: Mutex<u16>,
}

struct TestServer {
    url: String,
    behaviour: Arc<Behaviour>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    /// Two listeners sharing one behaviour; `/redirect` on the first points at `/file` on the
    /// second, which counts as another host.
    fn start(body: Vec<u8>) -> Self {
        let behaviour = Arc::new(Behaviour { body, ..Default::default() });
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (first, second) = runtime.block_on(async {
            (tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(), tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
        });
        let url = format!("http://{}", first.local_addr().unwrap());
        *behaviour.other_port.lock().unwrap() = second.local_addr().unwrap().port();
        let app = Router::new().route("/file", get(serve_file)).route("/redirect", get(redirect)).with_state(Arc::clone(&behaviour));
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let stopped = async {
                    let _ = stop.await;
                };
                let one = axum::serve(first, app.clone()).with_graceful_shutdown(stopped);
                let two = axum::serve(second, app);
                tokio::select! { _ = one => {}, _ = two => {} }
            })
        });
        Self { url, behaviour, shutdown: Some(shutdown), thread: Some(thread) }
    }

    fn requests(&self) -> Vec<(String, Option<String>, Option<String>)> {
        self.behaviour.log.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        // A stalled response keeps its connection open; the server thread is left to the process.
        drop(self.thread.take());
    }
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

async fn redirect(State(behaviour): State<Arc<Behaviour>>, headers: HeaderMap) -> Response {
    behaviour.log.lock().unwrap().push(("/redirect".into(), None, header_text(&headers, header::AUTHORIZATION)));
    let port = *behaviour.other_port.lock().unwrap();
    (StatusCode::FOUND, [(header::LOCATION, format!("http://127.0.0.1:{port}/file"))]).into_response()
}

async fn serve_file(State(behaviour): State<Arc<Behaviour>>, headers: HeaderMap) -> Response {
    let range = header_text(&headers, header::RANGE);
    behaviour.log.lock().unwrap().push(("/file".into(), range.clone(), header_text(&headers, header::AUTHORIZATION)));
    if let Some(code) = *behaviour.status.lock().unwrap() {
        let status = StatusCode::from_u16(code).unwrap();
        return (status, [("x-error-code", "TestCode")], format!("{{\"error\":\"status {code} on purpose\"}}")).into_response();
    }
    if behaviour.busy_first.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
        let mut response = (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response();
        if let Some(after) = behaviour.retry_after.lock().unwrap().clone() {
            response.headers_mut().insert(header::RETRY_AFTER, after.parse().unwrap());
        }
        return response;
    }
    let mut data = behaviour.body.clone();
    let short_by = behaviour.short_by.load(Ordering::SeqCst);
    data.truncate(data.len() - short_by);
    if behaviour.corrupt.load(Ordering::SeqCst) {
        let middle = data.len() / 2;
        data[middle] ^= 0x01;
    }
    let start = match range.as_deref().and_then(|r| r.strip_prefix("bytes=")).and_then(|r| r.strip_suffix('-')) {
        Some(start) if !behaviour.ignore_range.load(Ordering::SeqCst) => start.parse::<usize>().unwrap(),
        _ => 0,
    };
    let total = data.len();
    if start >= total && start > 0 {
        return (StatusCode::RANGE_NOT_SATISFIABLE, [(header::CONTENT_RANGE, format!("bytes */{total}"))]).into_response();
    }
    let slice = data[start..].to_vec();
    let mut response_headers = vec![];
    if short_by == 0 {
        response_headers.push((header::CONTENT_LENGTH, slice.len().to_string()));
    }
    let status = if start > 0 {
        response_headers.push((header::CONTENT_RANGE, format!("bytes {start}-{}/{total}", total - 1)));
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let cut = behaviour.cut_after.lock().unwrap().take();
    let stall = *behaviour.stall_after.lock().unwrap();
    let send_len = cut.or(stall).unwrap_or(slice.len()).min(slice.len());
    behaviour.body_bytes_sent.fetch_add(send_len, Ordering::SeqCst);
    let chunks: Vec<Result<Bytes, std::io::Error>> = slice[..send_len].chunks(16 * 1024).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    let body = if cut.is_some() {
        // The pause lets the server flush what it sent before the connection is dropped.
        let cut = stream::once(async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Err(std::io::Error::other("connection cut on purpose"))
        });
        let broken = stream::iter(chunks).chain(cut);
        Body::from_stream(broken)
    } else if stall.is_some() {
        Body::from_stream(stream::iter(chunks).chain(stream::pending()))
    } else {
        Body::from_stream(stream::iter(chunks))
    };
    let mut response = Response::builder().status(status);
    for (name, value) in response_headers {
        response = response.header(name, value);
    }
    response.body(body).unwrap()
}

/// 300 kB of varied bytes.
fn payload() -> Vec<u8> {
    (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

fn quick_policy() -> RetryPolicy {
    RetryPolicy { max_attempts: 4, base_delay: Duration::from_millis(20), max_delay: Duration::from_secs(5) }
}

fn client() -> reqwest::blocking::Client {
    transfer::client(&HttpOptions { read_timeout: Duration::from_secs(10), ..HttpOptions::default() }).unwrap()
}

fn request<'a>(url: String, dest: &'a Path, size: Option<u64>, sha: Option<String>) -> FileRequest<'a> {
    FileRequest { url, headers: Default::default(), dest, partial: None, expected_size: size, expected_sha256: sha }
}

fn download(file: &FileRequest) -> Result<transfer::Downloaded, TransferError> {
    transfer::download_file(&client(), &quick_policy(), file, &AtomicBool::new(false), &mut |_, _| {})
}

#[test]
fn busy_server_is_retried_until_it_answers() {
    let data = payload();
    let server = TestServer::start(data.clone());
    server.behaviour.busy_first.store(2, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("file.bin");
    let done = download(&request(format!("{}/file", server.url), &dest, Some(data.len() as u64), Some(sha256_hex(&data)))).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert_eq!((done.bytes, done.resumed_from, done.fetched), (data.len() as u64, 0, data.len() as u64));
    assert_eq!(server.requests().len(), 3, "two 503s, then the file");
    assert!(!dir.path().join("file.bin.part").exists());
}

#[test]
fn retry_after_is_waited_for_and_a_too_long_one_is_reported() {
    let server = TestServer::start(payload());
    server.behaviour.busy_first.store(1, Ordering::SeqCst);
    *server.behaviour.retry_after.lock().unwrap() = Some("1".into());
    let policy = RetryPolicy { max_attempts: 3, base_delay: Duration::from_millis(1), max_delay: Duration::from_secs(5) };
    let url = format!("{}/file", server.url);
    let http = client();
    let started = Instant::now();
    let response = transfer::send(&policy, &AtomicBool::new(false), &|| http.get(&url)).unwrap();
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(950), "waited only {:?} for Retry-After: 1", started.elapsed());

    server.behaviour.busy_first.store(1, Ordering::SeqCst);
    *server.behaviour.retry_after.lock().unwrap() = Some("3600".into());
    let error = transfer::send(&policy, &AtomicBool::new(false), &|| http.get(&url)).unwrap_err();
    assert!(matches!(&error, TransferError::Status(f) if f.code == 503), "{error:?}");
    assert_eq!(server.requests().len(), 3, "2 for the first call, 1 for the second");
}

#[test]
fn partial_file_is_resumed_with_a_range_request() {
    let data = payload();
    let server = TestServer::start(data.clone());
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("file.bin");
    std::fs::write(dir.path().join("file.bin.part"), &data[..100_000]).unwrap();
    let mut reports = Vec::new();
    let done = transfer::download_file(
        &client(),
        &quick_policy(),
        &request(format!("{}/file", server.url), &dest, Some(data.len() as u64), Some(sha256_hex(&data))),
        &AtomicBool::new(false),
        &mut |done, total| reports.push((done, total)),
    )
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert_eq!((done.resumed_from, done.fetched), (100_000, 200_000));
    assert_eq!(server.requests()[0].1.as_deref(), Some("bytes=100000-"));
    assert_eq!(server.behaviour.body_bytes_sent.load(Ordering::SeqCst), 200_000);
    assert_eq!(reports.first(), Some(&(100_000, Some(300_000))));
    assert_eq!(reports.last(), Some(&(300_000, Some(300_000))));
}

#[test]
fn server_ignoring_range_restarts_from_zero() {
    let data = payload();
    let server = TestServer::start(data.clone());
    server.behaviour.ignore_range.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("file.bin");
    // A partial that is not even a prefix: appending the 200's body to it would corrupt the file.
    std::fs::write(dir.path().join("file.bin.part"), vec![0xEE; 50_000]).unwrap();
    let done = download(&request(format!("{}/file", server.url), &dest, None, None)).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert_eq!(done.sha256, sha256_hex(&data));
    assert_eq!(server.requests()[0].1.as_deref(), Some("bytes=50000-"));
}

#[test]
fn dropped_connection_is_resumed_in_the_same_call() {
    let data = payload();
    let server = TestServer::start(data.clone());
    *server.behaviour.cut_after.lock().unwrap() = Some(120_000);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("file.bin");
    let done = download(&request(format!("{}/file", server.url), &dest, Some(data.len() as u64), Some(sha256_hex(&data)))).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].1.as_deref(), Some("bytes=120000-"));
    assert_eq!(done.fetched, data.len() as u64);
}

#[test]
fn wrong_size_is_an_error_and_writes_nothing() {
    let data = payload();
    let server = TestServer::start(data.clone());
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("file.bin");
    let error = download(&request(format!("{}/file", server.url), &dest, Some(data.len() as u64 + 1), None)).unwrap_err();
    assert!(matches!(error, TransferError::SizeMismatch { expected: 300_001, actual: 300_000, .. }), "{error:?}");
    assert!(!dest.exists());
}

#[test]
fn file_ending_early_is_given_up_on_after_a_few_attempts() {
    let data = payload();
    let server = TestServer::start(data.clone());
    server.behaviour.short_by.store(1_000, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("file.bin");
    let error = download(&request(format!("{}/file", server.url), &dest, Some(data.len() as u64), None)).unwrap_err();
    assert!(matches!(error, TransferError::Unreachable { .. }), "{error:?}");
    assert!(error.to_string().contains("ended early"), "{error}");
    let requests = server.requests().len();
    assert!(requests <= 2 * quick_policy().max_attempts as usize, "{requests} requests");
    assert!(!dest.exists());
}

#[test]
fn corrupt_bytes_are_detected_and_discarded() {
    let data = payload();
    let server = TestServer::start(data.clone());
    server.behaviour.corrupt.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("file.bin");
    let error = download(&request(format!("{}/file", server.url), &dest, Some(data.len() as u64), Some(sha256_hex(&data)))).unwrap_err();
    assert!(matches!(&error, TransferError::Sha256Mismatch { expected, .. } if *expected == sha256_hex(&data)), "{error:?}");
    assert!(error.to_string().contains("corrupt"), "{error}");
    assert!(!dest.exists());
    assert!(!dir.path().join("file.bin.part").exists(), "a corrupt partial must not be resumed later");
}

#[test]
fn status_codes_map_to_their_errors() {
    let server = TestServer::start(payload());
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("file.bin");
    let url = format!("{}/file", server.url);
    for code in [401u16, 403, 404, 500] {
        *server.behaviour.status.lock().unwrap() = Some(code);
        let error = download(&request(url.clone(), &dest, None, None)).unwrap_err();
        let failure = error.failure().unwrap_or_else(|| panic!("{code}: {error:?}"));
        assert_eq!((failure.code, failure.error_code.as_deref()), (code, Some("TestCode")));
        assert!(failure.body.contains(&format!("status {code} on purpose")), "{failure:?}");
        assert!(error.to_string().contains(&url), "{error}");
        match code {
            401 => assert!(matches!(error, TransferError::Unauthorized(_))),
            403 => assert!(matches!(error, TransferError::Forbidden(_))),
            404 => assert!(matches!(error, TransferError::NotFound(_))),
            _ => assert!(matches!(error, TransferError::Status(_))),
        }
    }
    // 401, 403 and 404 are final; 500 is retried up to max_attempts.
    assert_eq!(server.requests().len(), 3 + quick_policy().max_attempts as usize);
    assert!(!dest.exists());
}

#[test]
fn cancel_mid_file_keeps_the_partial_for_the_next_run() {
    let data = payload();
    let server = TestServer::start(data.clone());
    *server.behaviour.stall_after.lock().unwrap() = Some(150_000);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("file.bin");
    let file = request(format!("{}/file", server.url), &dest, Some(data.len() as u64), Some(sha256_hex(&data)));
    let cancel = AtomicBool::new(false);
    let error = transfer::download_file(&client(), &quick_policy(), &file, &cancel, &mut |done, _| {
        if done >= 100_000 {
            cancel.store(true, Ordering::SeqCst);
        }
    })
    .unwrap_err();
    assert!(matches!(error, TransferError::Cancelled), "{error:?}");
    assert!(!dest.exists());
    let kept = std::fs::read(dir.path().join("file.bin.part")).unwrap();
    assert!(kept.len() >= 100_000 && kept.len() <= 150_000, "kept {} bytes", kept.len());
    assert_eq!(kept[..], data[..kept.len()]);

    *server.behaviour.stall_after.lock().unwrap() = None;
    let done = download(&file).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert_eq!(done.resumed_from, kept.len() as u64);
    assert_eq!(server.requests()[1].1, Some(format!("bytes={}-", kept.len())));
}

#[test]
fn redirect_to_another_host_drops_the_token() {
    let data = payload();
    let server = TestServer::start(data.clone());
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("file.bin");
    let mut file = request(format!("{}/redirect", server.url), &dest, Some(data.len() as u64), None);
    file.headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer hf_secret"));
    download(&file).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!((requests[0].0.as_str(), requests[0].2.as_deref()), ("/redirect", Some("Bearer hf_secret")));
    assert_eq!((requests[1].0.as_str(), requests[1].2.as_deref()), ("/file", None), "the token went to the other host");
}

#[test]
fn unreachable_port_is_reported_with_the_url() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("file.bin");
    let url = format!("http://127.0.0.1:{port}/file");
    let policy = RetryPolicy { max_attempts: 2, base_delay: Duration::from_millis(10), max_delay: Duration::from_millis(50) };
    let started = Instant::now();
    let error = transfer::download_file(&client(), &policy, &request(url.clone(), &dest, None, None), &AtomicBool::new(false), &mut |_, _| {}).unwrap_err();
    assert!(matches!(&error, TransferError::Unreachable { url: u, .. } if *u == url), "{error:?}");
    assert!(error.to_string().contains(&url), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!dest.exists());
}
