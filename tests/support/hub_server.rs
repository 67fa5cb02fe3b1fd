//! A Hugging Face Hub of the tests' own on 127.0.0.1, speaking the protocol of
//! `../shared/docs/model-download.md` §1 (revision info, paged recursive `/tree`, `resolve` with
//! the Hub's headers, LFS files redirected to a CDN on a second listener, error codes) and serving
//! the micro Phi-3 model under a Hub-like layout. Switches break it on purpose; counters tell what
//! a client asked for.

use std::{
    collections::HashMap,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{Path as UrlPath, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use futures_util::stream::{self, StreamExt as _};
use serde_json::json;
use sha1::Digest as _;

/// The repository with the micro model; gated and missing variants are derived from it.
pub const REPO: &str = "test-org/phi3-micro-onnx";
/// The same files, behind a gate: needs `Authorization: Bearer <GOOD_TOKEN>`.
pub const GATED_REPO: &str = "test-org/gated-phi3";
/// A repository whose listing claims a file larger than any disk.
pub const HUGE_REPO: &str = "test-org/huge";
pub const VARIANT: &str = "cpu_and_mobile/cpu-int4-rtn-block-32-acc-level-4";
/// The first catalog entry's repository (its CPU int4 folder is [`VARIANT`]), with the micro
/// model's files, for the GUI's catalog.
pub const CATALOG_REPO: &str = "microsoft/Phi-3-mini-4k-instruct-onnx";
/// The second catalog entry's repository, gated (the GUI explains HF_TOKEN).
pub const GATED_CATALOG_REPO: &str = "microsoft/Phi-3-mini-128k-instruct-onnx";
pub const GOOD_TOKEN: &str = "hf_test_good_token";
/// A valid token without access to the gated repository (the Hub answers 403).
pub const NO_ACCESS_TOKEN: &str = "hf_test_no_access";

pub struct FakeFile {
    pub path: String,
    pub content: Arc<Vec<u8>>,
    /// The size the listing claims (differs from the content only for the huge repository).
    pub listed_size: u64,
    pub git_sha1: String,
    pub sha256: String,
    pub lfs: bool,
}

pub struct FakeRepo {
    pub commit: String,
    pub files: Vec<FakeFile>,
    pub gated: bool,
}

/// What the server does; tests flip these.
#[derive(Default)]
pub struct Switches {
    /// Drop the connection after this many bytes of the next CDN body.
    pub cut_after: Option<usize>,
    /// Send this many bytes of each CDN body, then nothing more.
    pub stall_after: Option<usize>,
    pub ignore_range: bool,
    /// Flip one byte of every CDN body.
    pub corrupt: bool,
}

#[derive(Default)]
pub struct Traffic {
    /// Requests per route: "revision", "tree", "resolve", "cdn".
    pub requests: HashMap<&'static str, usize>,
    /// `Range` headers that reached the CDN.
    pub cdn_ranges: Vec<String>,
}

pub struct HubState {
    pub repos: HashMap<String, FakeRepo>,
    pub switches: Mutex<Switches>,
    pub traffic: Mutex<Traffic>,
    /// Body bytes the CDN sent.
    pub cdn_bytes: AtomicU64,
    /// Requests that reached the CDN carrying `Authorization` (must stay 0).
    pub tokens_at_cdn: AtomicUsize,
    hub_url: Mutex<String>,
    cdn_url: Mutex<String>,
}

pub struct HubServer {
    pub url: String,
    pub state: Arc<HubState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl HubServer {
    pub fn start() -> Self {
        let fixture = super::shared().join("fixtures/phi3-micro-int4");
        let mut repos = HashMap::new();
        repos.insert(REPO.to_owned(), fake_repo(REPO, &fixture, false));
        repos.insert(GATED_REPO.to_owned(), fake_repo(GATED_REPO, &fixture, true));
        repos.insert(CATALOG_REPO.to_owned(), fake_repo(CATALOG_REPO, &fixture, false));
        repos.insert(GATED_CATALOG_REPO.to_owned(), fake_repo(GATED_CATALOG_REPO, &fixture, true));
        let mut huge = fake_repo(HUGE_REPO, &fixture, false);
        huge.files.iter_mut().filter(|f| f.lfs).for_each(|f| f.listed_size = 1 << 60);
        repos.insert(HUGE_REPO.to_owned(), huge);
        let state = Arc::new(HubState {
            repos,
            switches: Mutex::default(),
            traffic: Mutex::default(),
            cdn_bytes: AtomicU64::new(0),
            tokens_at_cdn: AtomicUsize::new(0),
            hub_url: Mutex::default(),
            cdn_url: Mutex::default(),
        });
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
        let bind = || async { tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1") };
        let (hub, cdn_listener) = runtime.block_on(async { (bind().await, bind().await) });
        let url = format!("http://{}", hub.local_addr().unwrap());
        *state.hub_url.lock().unwrap() = url.clone();
        *state.cdn_url.lock().unwrap() = format!("http://{}", cdn_listener.local_addr().unwrap());
        let hub_routes = Router::new()
            .route("/api/models/{org}/{name}/revision/{rev}", get(revision))
            .route("/api/models/{org}/{name}/tree/{rev}", get(tree))
            .route("/{org}/{name}/resolve/{rev}/{*path}", get(resolve))
            .with_state(Arc::clone(&state));
        let cdn_routes = Router::new().route("/cdn/{sha256}", get(cdn)).with_state(Arc::clone(&state));
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            runtime.block_on(async move {
                tokio::select! {
                    _ = axum::serve(hub, hub_routes) => {}
                    _ = axum::serve(cdn_listener, cdn_routes) => {}
                    _ = stop => {}
                }
            })
        });
        Self { url, state, shutdown: Some(shutdown) }
    }

    pub fn repo(&self, id: &str) -> &FakeRepo {
        &self.state.repos[id]
    }

    pub fn switches(&self) -> std::sync::MutexGuard<'_, Switches> {
        self.state.switches.lock().unwrap()
    }

    /// Requests so far on `route` ("revision", "tree", "resolve", "cdn").
    pub fn requests(&self, route: &str) -> usize {
        self.state.traffic.lock().unwrap().requests.get(route).copied().unwrap_or(0)
    }

    pub fn total_requests(&self) -> usize {
        self.state.traffic.lock().unwrap().requests.values().sum()
    }

    pub fn cdn_ranges(&self) -> Vec<String> {
        self.state.traffic.lock().unwrap().cdn_ranges.clone()
    }

    pub fn cdn_bytes(&self) -> u64 {
        self.state.cdn_bytes.load(Ordering::SeqCst)
    }

    pub fn tokens_at_cdn(&self) -> usize {
        self.state.tokens_at_cdn.load(Ordering::SeqCst)
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

fn git_blob_sha1(content: &[u8]) -> String {
    let mut hasher = sha1::Sha1::new();
    hasher.update(format!("blob {}\0", content.len()).as_bytes());
    hasher.update(content);
    format!("{:x}", hasher.finalize())
}

fn fake_file(path: &str, content: Vec<u8>, lfs: bool) -> FakeFile {
    use sha2::Digest as _;
    let sha256 = format!("{:x}", sha2::Sha256::digest(&content));
    let git_sha1 = if lfs {
        git_blob_sha1(format!("version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {}\n", content.len()).as_bytes())
    } else {
        git_blob_sha1(&content)
    };
    FakeFile { path: path.to_owned(), listed_size: content.len() as u64, content: Arc::new(content), git_sha1, sha256, lfs }
}

/// The fixture's files under [`VARIANT`], a second variant folder the tests must not download,
/// and two files at the root. Large files and graphs are LFS files, as on the Hub.
fn fake_repo(id: &str, fixture: &Path, gated: bool) -> FakeRepo {
    let mut files = vec![
        fake_file("README.md", format!("# {id}\nA test repository.\n").into_bytes(), false),
        fake_file("config.json", b"{\"model_type\": \"phi3\"}\n".to_vec(), false),
        fake_file("cuda/cuda-int4-rtn-block-32/genai_config.json", b"{\"model\": {}}\n".to_vec(), false),
    ];
    let mut names: Vec<String> = std::fs::read_dir(fixture)
        .unwrap_or_else(|e| panic!("{}: {e}", fixture.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 5, "the micro fixture has five files: {names:?}");
    for name in names {
        let content = std::fs::read(fixture.join(&name)).unwrap();
        let lfs = name.ends_with(".onnx") || name.ends_with(".onnx.data") || content.len() > 1_000_000;
        files.push(fake_file(&format!("{VARIANT}/{name}"), content, lfs));
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    FakeRepo { commit: git_blob_sha1(id.as_bytes()), files, gated }
}

fn count(state: &HubState, route: &'static str) {
    *state.traffic.lock().unwrap().requests.entry(route).or_default() += 1;
}

fn hub_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, [("x-error-code", code), ("x-error-message", message)], Json(json!({"error": message}))).into_response()
}

/// The repository and whether the request may see it, with the Hub's answers when not.
fn visible_repo<'a>(state: &'a HubState, id: &str, headers: &HeaderMap) -> Result<&'a FakeRepo, Response> {
    let Some(repo) = state.repos.get(id) else {
        return Err(hub_error(StatusCode::UNAUTHORIZED, "RepoNotFound", "Repository not found"));
    };
    if repo.gated {
        let token = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        match token {
            None => {
                let message = format!("Access to model {id} is restricted. You must have access to it and be authenticated to access it. Please log in.");
                return Err(hub_error(StatusCode::UNAUTHORIZED, "GatedRepo", &message));
            }
            Some(NO_ACCESS_TOKEN) => {
                let message = format!("Access to model {id} is restricted and you are not in the authorized list. Visit https://huggingface.co/{id} to ask for access.");
                return Err(hub_error(StatusCode::FORBIDDEN, "GatedRepo", &message));
            }
            Some(GOOD_TOKEN) => {}
            Some(_) => return Err(hub_error(StatusCode::UNAUTHORIZED, "", "Invalid credentials in Authorization header")),
        }
    }
    Ok(repo)
}

/// The repository `org/name` at `rev` as the caller may see it, or the Hub's error answer.
fn repo_at<'a>(state: &'a HubState, org: &str, name: &str, rev: &str, headers: &HeaderMap) -> Result<(String, &'a FakeRepo), Response> {
    let id = format!("{org}/{name}");
    let repo = visible_repo(state, &id, headers)?;
    if rev == "main" || rev == repo.commit {
        Ok((id, repo))
    } else {
        Err(hub_error(StatusCode::NOT_FOUND, "RevisionNotFound", &format!("Invalid rev id: {rev}")))
    }
}

async fn revision(State(state): State<Arc<HubState>>, UrlPath((org, name, rev)): UrlPath<(String, String, String)>, headers: HeaderMap) -> Response {
    count(&state, "revision");
    let (id, repo) = match repo_at(&state, &org, &name, &rev, &headers) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let siblings: Vec<_> = repo.files.iter().map(|f| json!({"rfilename": f.path})).collect();
    Json(json!({"id": id, "modelId": id, "sha": repo.commit, "private": false, "gated": repo.gated, "siblings": siblings})).into_response()
}

#[derive(serde::Deserialize)]
struct TreeQuery {
    cursor: Option<usize>,
}

/// The recursive listing, directories included, two entries a page.
async fn tree(
    State(state): State<Arc<HubState>>,
    UrlPath((org, name, rev)): UrlPath<(String, String, String)>,
    Query(query): Query<TreeQuery>,
    headers: HeaderMap,
) -> Response {
    const PAGE: usize = 2;
    count(&state, "tree");
    let (id, repo) = match repo_at(&state, &org, &name, &rev, &headers) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let mut entries = Vec::new();
    let mut directories: Vec<String> = Vec::new();
    for file in &repo.files {
        let parts: Vec<&str> = file.path.split('/').collect();
        for depth in 1..parts.len() {
            let directory = parts[..depth].join("/");
            if !directories.contains(&directory) {
                entries.push(json!({"type": "directory", "oid": "0".repeat(40), "size": 0, "path": directory}));
                directories.push(directory);
            }
        }
        let mut entry = json!({"type": "file", "oid": file.git_sha1, "size": file.listed_size, "path": file.path});
        if file.lfs {
            entry["lfs"] = json!({"oid": file.sha256, "size": file.listed_size, "pointerSize": 134});
        }
        entries.push(entry);
    }
    let start = query.cursor.unwrap_or(0).min(entries.len());
    let end = (start + PAGE).min(entries.len());
    let mut response = Json(entries[start..end].to_vec()).into_response();
    if end < entries.len() {
        let hub = state.hub_url.lock().unwrap().clone();
        let link = format!("<{hub}/api/models/{id}/tree/{rev}?recursive=true&cursor={end}>; rel=\"next\"");
        response.headers_mut().insert(header::LINK, link.parse().unwrap());
    }
    response
}

/// Small files come from here with `ETag` (git sha1); LFS files redirect to the CDN with the
/// linked etag (sha256) and size.
async fn resolve(
    State(state): State<Arc<HubState>>,
    UrlPath((org, name, rev, path)): UrlPath<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    count(&state, "resolve");
    let (_, repo) = match repo_at(&state, &org, &name, &rev, &headers) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let Some(file) = repo.files.iter().find(|f| f.path == path) else {
        return hub_error(StatusCode::NOT_FOUND, "EntryNotFound", &format!("{path} does not exist on \"{rev}\""));
    };
    if file.lfs {
        let cdn = state.cdn_url.lock().unwrap().clone();
        let headers = [
            (header::LOCATION.as_str(), format!("{cdn}/cdn/{}", file.sha256)),
            ("x-linked-etag", format!("\"{}\"", file.sha256)),
            ("x-linked-size", file.listed_size.to_string()),
            ("x-repo-commit", repo.commit.clone()),
            (header::ETAG.as_str(), format!("\"{}\"", file.git_sha1)),
        ];
        let mut response = StatusCode::FOUND.into_response();
        for (name, value) in headers {
            response.headers_mut().insert(name, value.parse().unwrap());
        }
        return response;
    }
    let body = file.content.as_ref().clone();
    (
        StatusCode::OK,
        [
            (header::ETAG.as_str(), format!("\"{}\"", file.git_sha1)),
            ("x-repo-commit", repo.commit.clone()),
            (header::CONTENT_LENGTH.as_str(), body.len().to_string()),
        ],
        body,
    )
        .into_response()
}

async fn cdn(State(state): State<Arc<HubState>>, UrlPath(sha256): UrlPath<String>, headers: HeaderMap) -> Response {
    count(&state, "cdn");
    if headers.contains_key(header::AUTHORIZATION) {
        state.tokens_at_cdn.fetch_add(1, Ordering::SeqCst);
    }
    let Some(file) = state.repos.values().flat_map(|r| &r.files).find(|f| f.sha256 == sha256) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (stall, ignore_range, corrupt) = {
        let switches = state.switches.lock().unwrap();
        (switches.stall_after, switches.ignore_range, switches.corrupt)
    };
    if let Some(range) = &range {
        state.traffic.lock().unwrap().cdn_ranges.push(range.clone());
    }
    let mut content = file.content.as_ref().clone();
    if corrupt {
        let middle = content.len() / 2;
        content[middle] ^= 0x01;
    }
    let total = content.len();
    let start = match range.as_deref().and_then(|r| r.strip_prefix("bytes=")).and_then(|r| r.strip_suffix('-')) {
        Some(start) if !ignore_range => start.parse::<usize>().unwrap_or(0),
        _ => 0,
    };
    if start >= total && start > 0 {
        return (StatusCode::RANGE_NOT_SATISFIABLE, [(header::CONTENT_RANGE, format!("bytes */{total}"))]).into_response();
    }
    let body = content[start..].to_vec();
    // A cut applies to the first body longer than the cut.
    let cut = {
        let mut switches = state.switches.lock().unwrap();
        if switches.cut_after.is_some_and(|n| n < body.len()) { switches.cut_after.take() } else { None }
    };
    let sent = cut.or(stall).unwrap_or(body.len()).min(body.len());
    state.cdn_bytes.fetch_add(sent as u64, Ordering::SeqCst);
    let chunks: Vec<Result<Bytes, std::io::Error>> = body[..sent].chunks(64 * 1024).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    let body = match (cut, stall) {
        (Some(_), _) => {
            // The pause lets the server flush what it sent before the connection is dropped.
            let cut = stream::once(async {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                Err(std::io::Error::other("cut on purpose"))
            });
            Body::from_stream(stream::iter(chunks).chain(cut))
        }
        (None, Some(_)) => Body::from_stream(stream::iter(chunks).chain(stream::pending())),
        (None, None) => Body::from_stream(stream::iter(chunks)),
    };
    let mut response = Response::builder()
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, (total - start).to_string())
        .header(header::ETAG, format!("\"{sha256}\""));
    response = if start > 0 {
        response.status(StatusCode::PARTIAL_CONTENT).header(header::CONTENT_RANGE, format!("bytes {start}-{}/{total}", total - 1))
    } else {
        response.status(StatusCode::OK)
    };
    response.body(body).unwrap()
}
