//! A real `mlflow server` for the registry tests: sqlite backend store, `--serve-artifacts` into
//! a scratch artifact root, a free port on 127.0.0.1. `tests/python/process_guard.py` runs it
//! and stops its whole process group when the handle is dropped or the test process ends (so a
//! shared, never-dropped server does not outlive its test binary), then removes the scratch
//! folder.

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
    /// Holds the guard's stdin open; dropping it stops the server.
    guard: Mutex<Option<(Child, ChildStdin)>>,
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
        let python = super::reference_python();
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(&python, flavour) {
                Ok(server) => return server,
                // Another process may have taken the free port between our probe and the bind.
                Err(log) if log.contains("already in use") => failures.push(log),
                Err(log) => panic!("mlflow server ({flavour:?}) did not start:\n{log}"),
            }
        }
        panic!("mlflow server ({flavour:?}) did not start after {START_ATTEMPTS} attempts:\n{}", failures.join("\n---\n"));
    }

    fn try_start(python: &Path, flavour: Flavour) -> Result<MlflowServer, String> {
        let scratch_parent = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("mlflow-servers");
        std::fs::create_dir_all(&scratch_parent).expect("create the mlflow-servers directory");
        // Kept: the guard removes it after stopping the server.
        let scratch = tempfile::Builder::new().prefix("server-").tempdir_in(&scratch_parent).expect("scratch dir").keep();
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let database = format!("sqlite:///{}", scratch.join("mlflow.db").display());
        let mut command = Command::new(python);
        command
            .arg(super::repo().join("tests/python/process_guard.py"))
            .arg(&scratch)
            .arg(python)
            .args(["-m", "mlflow", "server", "--backend-store-uri", &database, "--artifacts-destination"])
            .arg(scratch.join("artifacts"))
            .args(["--serve-artifacts", "--host", "127.0.0.1", "--port", &port.to_string(), "--workers", "1"])
            // The job runner starts seven helper processes the tests do not need.
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .current_dir(&scratch)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for variable in ["MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"] {
            command.env_remove(variable);
        }
        let admin_password = format!("admin-{}", uuid::Uuid::new_v4().simple());
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
        let mut child = command.spawn().expect("start tests/python/process_guard.py");
        let stdin = child.stdin.take().expect("piped stdin");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("poll the mlflow server guard") {
                let mut log = String::new();
                if let Some(mut out) = child.stdout.take() {
                    let _ = out.read_to_string(&mut log);
                }
                return Err(format!("exited with {status}; end of its log:\n{log}"));
            }
            if http_get(port, "/health").is_some_and(|(status, _)| status == 200) {
                break;
            }
            if Instant::now() > deadline {
                drop(stdin);
                let _ = child.wait();
                return Err(format!("/health did not answer within {START_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Ok(MlflowServer { url, port, flavour, admin_password, guard: Mutex::new(Some((child, stdin))) })
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
        let taken = self.guard.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((mut child, stdin)) = taken {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind a free port").port()
}

/// A minimal HTTP/1.1 GET without a client library, for readiness checks: status and body, or
/// `None` when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let response = String::from_utf8_lossy(&response);
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Some((status, body))
}
