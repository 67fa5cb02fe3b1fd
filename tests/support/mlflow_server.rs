//! Real MLflow processes for the tests, each on a free port on 127.0.0.1: `mlflow server`
//! (sqlite backend store, `--serve-artifacts` into a scratch artifact root; open or basic-auth) and
//! `mlflow models serve`. `tests/python/process_guard.py` runs each and stops its whole process
//! group when the handle is dropped or the test process ends (so a shared, never-dropped server
//! does not outlive its test binary), then removes its scratch folder.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

/// How long a server may take to answer `/health` (about 20 s on an idle 2-core machine, several
/// times that while other builds run).
const START_TIMEOUT: Duration = Duration::from_secs(300);
const START_ATTEMPTS: usize = 3;
/// The admin account of a basic-auth server.
pub const ADMIN_USER: &str = "admin";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// No authentication.
    Open,
    /// `--app-name basic-auth`: every route but `/health` needs a user.
    BasicAuth,
}

pub struct MlflowServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    pub port: u16,
    pub flavour: Flavour,
    /// The admin password of a basic-auth server (random per server).
    pub admin_password: String,
    process: GuardedProcess,
}

impl MlflowServer {
    /// One open server shared by all tests of a test binary (started on first use).
    pub fn shared() -> &'static MlflowServer {
        static SERVER: OnceLock<MlflowServer> = OnceLock::new();
        SERVER.get_or_init(|| MlflowServer::start(Flavour::Open))
    }

    /// One basic-auth server shared by all tests of a test binary.
    pub fn shared_basic_auth() -> &'static MlflowServer {
        static SERVER: OnceLock<MlflowServer> = OnceLock::new();
        SERVER.get_or_init(|| MlflowServer::start(Flavour::BasicAuth))
    }

    /// Starts a server and waits until `/health` answers; panics with the server's log if it
    /// cannot start.
    pub fn start(flavour: Flavour) -> MlflowServer {
        let admin_password = format!("admin-{}", uuid::Uuid::new_v4().simple());
        let process = GuardedProcess::start(&format!("mlflow server ({flavour:?})"), |python, scratch, port| {
            let database = format!("sqlite:///{}", scratch.join("mlflow.db").display());
            let mut command = Command::new(python);
            command
                .args(["-m", "mlflow", "server", "--backend-store-uri", &database, "--artifacts-destination"])
                .arg(scratch.join("artifacts"))
                .args(["--serve-artifacts", "--host", "127.0.0.1", "--port", &port.to_string(), "--workers", "1"])
                // The job runner starts seven helper processes the tests do not need.
                .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false");
            if flavour == Flavour::BasicAuth {
                let ini = scratch.join("basic_auth.ini");
                let auth_database = format!("sqlite:///{}", scratch.join("basic_auth.db").display());
                std::fs::write(
                    &ini,
                    format!(
                        "[mlflow]\ndefault_permission = READ\ndatabase_uri = {auth_database}\nadmin_username = {ADMIN_USER}\n\
                         admin_password = {admin_password}\nauthorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                    ),
                )
                .expect("write basic_auth.ini");
                command
                    .args(["--app-name", "basic-auth"])
                    .env("MLFLOW_AUTH_CONFIG_PATH", &ini)
                    .env("MLFLOW_FLASK_SERVER_SECRET_KEY", uuid::Uuid::new_v4().simple().to_string());
            }
            command
        }, "/health");
        MlflowServer { url: format!("http://127.0.0.1:{}", process.port), port: process.port, flavour, admin_password, process }
    }

    /// Environment for a Python (or `modeldesk`) child process that talks to this server as the
    /// admin (basic-auth) or anonymously (open).
    pub fn client_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![("MLFLOW_TRACKING_URI", self.url.clone())];
        if self.flavour == Flavour::BasicAuth {
            env.push(("MLFLOW_TRACKING_USERNAME", ADMIN_USER.to_owned()));
            env.push(("MLFLOW_TRACKING_PASSWORD", self.admin_password.clone()));
        }
        env
    }

    /// Runs a Python snippet with the reference interpreter, talking to this server; returns
    /// stdout (panics with stderr on failure).
    pub fn python(&self, script: &str, args: &[&str]) -> String {
        let mut command = Command::new(super::reference_python());
        command.arg("-c").arg(script).args(args);
        for variable in ["MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"] {
            command.env_remove(variable);
        }
        command.envs(self.client_env());
        let output = command.output().expect("run the reference python");
        assert!(output.status.success(), "python failed:\n{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).expect("python printed UTF-8")
    }

    /// Stops the server now (also done on drop, and when the test process ends).
    pub fn stop(&self) {
        self.process.stop();
    }
}

/// A pyfunc `ChatModel` (no torch) that answers `echo: <last message> (<max_tokens>)` with
/// usage: prompt tokens = the number of messages, 2 completion tokens.
const ECHO_CHAT_MODEL: &str = r#"
import mlflow
from mlflow.pyfunc import ChatModel
from mlflow.types.llm import ChatChoice, ChatCompletionResponse, ChatMessage, TokenUsageStats


class Echo(ChatModel):
    def predict(self, context, messages, params):
        text = "echo: " + messages[-1].content + f" ({params.max_tokens})"
        return ChatCompletionResponse(
            choices=[ChatChoice(index=0, message=ChatMessage(role="assistant", content=text), finish_reason="stop")],
            usage=TokenUsageStats(prompt_tokens=len(messages), completion_tokens=2, total_tokens=len(messages) + 2),
            model="echo",
        )


mlflow.models.set_model(Echo())
"#;

/// Saves the echo `ChatModel` as an MLflow package with MLflow itself, as `<dir>/echo`.
pub fn echo_chat_package(dir: &Path) -> PathBuf {
    let code = dir.join("echo_chat.py");
    std::fs::write(&code, ECHO_CHAT_MODEL).expect("write echo_chat.py");
    let package = dir.join("echo");
    super::python("import sys, mlflow\nmlflow.pyfunc.save_model(sys.argv[2], python_model=sys.argv[1])", &[
        code.to_str().expect("a UTF-8 path"),
        package.to_str().expect("a UTF-8 path"),
    ]);
    package
}

/// `mlflow models serve -m MODEL --env-manager local` on a free port, stopped like the server.
pub struct ScoringServer {
    pub port: u16,
    process: GuardedProcess,
}

impl ScoringServer {
    pub fn start(model: &Path) -> ScoringServer {
        let process = GuardedProcess::start(&format!("mlflow models serve -m {}", model.display()), |python, _, port| {
            let mut command = Command::new(python);
            command
                .args(["-m", "mlflow", "models", "serve", "--env-manager", "local", "--host", "127.0.0.1", "-p", &port.to_string(), "-m"])
                .arg(model);
            // uvicorn must be on PATH (spec §8).
            let bin = python.parent().expect("the venv's bin directory");
            let path = std::env::join_paths(std::iter::once(bin.to_path_buf()).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())))
                .expect("PATH");
            command.env("PATH", path);
            command
        }, "/ping");
        ScoringServer { port: process.port, process }
    }

    /// `POST /invocations` with a JSON body: status and parsed JSON reply.
    pub fn invoke(&self, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let (status, text) = http_request(self.port, "POST", "/invocations", &[("Content-Type", "application/json")], body.to_string().as_bytes())
            .unwrap_or_else(|| panic!("no answer from the scoring server on port {}", self.port));
        let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("the scoring server answered {status} with no JSON ({e}): {text}"));
        (status, value)
    }

    pub fn stop(&self) {
        self.process.stop();
    }
}

/// `tests/python/mlflow2_proxy.py` in front of a server: it answers like an MLflow 2.22 server
/// (no LoggedModel API, no traces, `/version` 2.22.5) and forwards everything else.
pub struct Mlflow2Proxy {
    pub url: String,
    process: GuardedProcess,
}

impl Mlflow2Proxy {
    pub fn start(upstream: &MlflowServer) -> Mlflow2Proxy {
        let script = super::repo().join("tests/python/mlflow2_proxy.py");
        let process = GuardedProcess::start("the MLflow 2.x proxy", |python, _, port| {
            let mut command = Command::new(python);
            command.arg(&script).arg(port.to_string()).arg(&upstream.url);
            command
        }, "/health");
        Mlflow2Proxy { url: format!("http://127.0.0.1:{}", process.port), process }
    }

    pub fn stop(&self) {
        self.process.stop();
    }
}

/// A test server run by `tests/python/process_guard.py`: its own scratch folder and process
/// group, a free loopback port, ready once a GET of its readiness path answers 200.
struct GuardedProcess {
    port: u16,
    /// Holds the guard's stdin open; closing it stops the process group.
    guard: Mutex<Option<(Child, ChildStdin)>>,
}

impl GuardedProcess {
    /// Starts `build(python, scratch, port)` and waits until it is ready; panics with the end of
    /// its log if it cannot start (retrying another port if the chosen one was taken meanwhile).
    fn start(what: &str, build: impl Fn(&Path, &Path, u16) -> Command, ready_path: &str) -> GuardedProcess {
        let python = super::reference_python();
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(&python, &build, ready_path) {
                Ok(process) => return process,
                Err(log) if log.contains("already in use") => failures.push(log),
                Err(log) => panic!("{what} did not start:\n{log}"),
            }
        }
        panic!("{what} did not start after {START_ATTEMPTS} attempts:\n{}", failures.join("\n---\n"));
    }

    fn try_start(python: &Path, build: &impl Fn(&Path, &Path, u16) -> Command, ready_path: &str) -> Result<GuardedProcess, String> {
        let scratch_parent = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("test-servers");
        std::fs::create_dir_all(&scratch_parent).expect("create the test-servers directory");
        // Kept: the guard removes it after stopping the process.
        let scratch = tempfile::Builder::new().prefix("server-").tempdir_in(&scratch_parent).expect("scratch dir").keep();
        let port = free_port();
        let inner = build(python, &scratch, port);
        let mut command = Command::new(python);
        command.arg(super::repo().join("tests/python/process_guard.py")).arg(&scratch).arg(inner.get_program()).args(inner.get_args());
        for (key, value) in inner.get_envs() {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        for variable in ["MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"] {
            command.env_remove(variable);
        }
        command.current_dir(&scratch).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = command.spawn().expect("start tests/python/process_guard.py");
        let stdin = child.stdin.take().expect("piped stdin");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("poll the process guard") {
                let mut log = String::new();
                if let Some(mut out) = child.stdout.take() {
                    let _ = out.read_to_string(&mut log);
                }
                return Err(format!("exited with {status}; end of its log:\n{log}"));
            }
            if http_get(port, ready_path).is_some_and(|(status, _)| status == 200) {
                return Ok(GuardedProcess { port, guard: Mutex::new(Some((child, stdin))) });
            }
            if Instant::now() > deadline {
                drop(stdin);
                let _ = child.wait();
                return Err(format!("{ready_path} did not answer within {START_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn stop(&self) {
        let taken = self.guard.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((mut child, stdin)) = taken {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

impl Drop for GuardedProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind a free port").port()
}

/// A GET for readiness checks: status and body, or `None` when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_request(port, "GET", path, &[], b"")
}

/// A minimal HTTP/1.1 request to 127.0.0.1 without a client library (test support must not
/// depend on the code under test): status and body (chunked bodies decoded), or `None` when
/// nothing answers.
pub fn http_request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(300))).ok()?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let mut payload = response[split + 4..].to_vec();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        payload = dechunk(&payload)?;
    }
    Some((status, String::from_utf8_lossy(&payload).into_owned()))
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}
