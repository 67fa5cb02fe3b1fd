//! "Run with MLflow": `python -m mlflow models serve -m FOLDER --env-manager local -p PORT
//! -h 127.0.0.1` as a child process of ours (the user's Python, found or configured), on a free
//! loopback port, ready once `GET /ping` answers 200. Its stderr is kept (the last lines) to
//! explain a failed start. Stopping ends the whole process group (the scoring server starts
//! uvicorn workers); dropping the handle stops it, so closing the model or quitting the app does.

use std::{
    collections::VecDeque,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, atomic::AtomicBool},
    time::{Duration, Instant},
};

use crate::transfer::{self, HttpOptions, RetryPolicy};

/// Lines of the server's stderr kept for error messages.
const STDERR_LINES: usize = 40;

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub model: PathBuf,
    /// The Python with `mlflow` installed; else one is found (see [`find_python`]).
    pub python: Option<PathBuf>,
    /// A fixed port; else a free one.
    pub port: Option<u16>,
    pub start_timeout: Duration,
}

impl ServeOptions {
    pub fn new(model: &Path) -> Self {
        Self { model: model.to_path_buf(), python: None, port: None, start_timeout: Duration::from_secs(180) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{model} is not an MLflow model folder (no MLmodel file)")]
    NotAModel { model: PathBuf },
    #[error("cannot start {python}: {reason} (choose the Python that has mlflow installed in the settings)")]
    Spawn { python: String, reason: String },
    #[error("no free port on 127.0.0.1: {0}")]
    Port(std::io::Error),
    #[error("`mlflow models serve` exited with {status} before it was ready:\n{stderr}")]
    Exited { status: String, stderr: String },
    #[error("`mlflow models serve` did not answer /ping within {seconds} s:\n{stderr}")]
    Timeout { seconds: u64, stderr: String },
    #[error("cancelled")]
    Cancelled,
}

/// A running scoring server; stopped when dropped.
pub struct ModelServer {
    child: Option<Child>,
    pub port: u16,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

/// What a start reports while it waits for `/ping` (about once a second).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartProgress {
    pub port: u16,
    pub waited: Duration,
    /// The server's latest line on stderr (what it is doing: loading, installing, …).
    pub last_line: Option<String>,
}

/// The Python to run `mlflow` with when none is chosen: the active virtual environment's or
/// conda environment's interpreter (as a terminal in that environment would run it), else
/// `python3` (`python` on Windows) from PATH.
pub fn find_python() -> PathBuf {
    let (bin, exe) = if cfg!(windows) { ("Scripts", "python.exe") } else { ("bin", "python") };
    for variable in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        let Some(root) = std::env::var_os(variable).filter(|v| !v.is_empty()) else { continue };
        // Conda puts the interpreter at the prefix's root on Windows.
        for candidate in [PathBuf::from(&root).join(bin).join(exe), PathBuf::from(&root).join(exe)] {
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from(if cfg!(windows) { "python" } else { "python3" })
}

fn free_port() -> Result<u16, ServeError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(ServeError::Port)?;
    Ok(listener.local_addr().map_err(ServeError::Port)?.port())
}

impl ModelServer {
    /// Starts the server and waits until it answers `/ping` (or fails, or `cancel` is set).
    pub fn start(options: &ServeOptions, cancel: &AtomicBool) -> Result<ModelServer, ServeError> {
        Self::start_with_progress(options, cancel, &mut |_| {})
    }

    /// [`ModelServer::start`], reporting the wait about once a second.
    pub fn start_with_progress(options: &ServeOptions, cancel: &AtomicBool, progress: &mut dyn FnMut(StartProgress)) -> Result<ModelServer, ServeError> {
        if !options.model.join("MLmodel").is_file() {
            return Err(ServeError::NotAModel { model: options.model.clone() });
        }
        let python = options.python.clone().unwrap_or_else(find_python);
        let port = match options.port {
            Some(port) => port,
            None => free_port()?,
        };
        let mut command = Command::new(&python);
        command
            .args(["-m", "mlflow", "models", "serve", "--env-manager", "local", "-h", "127.0.0.1", "-p", &port.to_string(), "-m"])
            .arg(&options.model)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // The scoring server runs `uvicorn` from PATH: put the interpreter's own scripts first.
        if let Some(bin) = python.parent().filter(|p| !p.as_os_str().is_empty()) {
            let path = std::env::var_os("PATH").unwrap_or_default();
            if let Ok(joined) = std::env::join_paths(std::iter::once(bin.to_path_buf()).chain(std::env::split_paths(&path))) {
                command.env("PATH", joined);
            }
        }
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt as _;
            command.process_group(0);
        }
        let mut child = command.spawn().map_err(|e| ServeError::Spawn { python: python.display().to_string(), reason: e.to_string() })?;
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(pipe) = child.stderr.take() {
            let lines = Arc::clone(&stderr);
            let _ = std::thread::Builder::new().name("modeldesk-serve-stderr".into()).spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    // A progress bar redraws itself with `\r`: keep what it shows last.
                    let line = line.rsplit('\r').find(|part| !part.trim().is_empty()).unwrap_or_default().to_owned();
                    if let Ok(mut lines) = lines.lock() {
                        if lines.len() == STDERR_LINES {
                            lines.pop_front();
                        }
                        lines.push_back(line);
                    }
                }
            });
        }
        let mut server = ModelServer { child: Some(child), port, url: format!("http://127.0.0.1:{port}"), stderr };
        server.wait_ready(options.start_timeout, cancel, progress)?;
        Ok(server)
    }

    fn wait_ready(&mut self, timeout: Duration, cancel: &AtomicBool, progress: &mut dyn FnMut(StartProgress)) -> Result<(), ServeError> {
        let http = transfer::client(&HttpOptions { connect_timeout: Duration::from_secs(2), read_timeout: Duration::from_secs(5), insecure_tls: false })
            .map_err(|e| ServeError::Spawn { python: "the HTTP client".into(), reason: e.to_string() })?;
        let once = RetryPolicy { max_attempts: 1, base_delay: Duration::ZERO, max_delay: Duration::ZERO };
        let ping = format!("{}/ping", self.url);
        let started = Instant::now();
        let deadline = started + timeout;
        let mut reported = Duration::ZERO;
        loop {
            if started.elapsed() >= reported + Duration::from_secs(1) || reported.is_zero() {
                reported = started.elapsed().max(Duration::from_millis(1));
                let last_line = self.stderr.lock().ok().and_then(|lines| lines.iter().rev().find(|l| !l.trim().is_empty()).cloned());
                progress(StartProgress { port: self.port, waited: started.elapsed(), last_line });
            }
            if cancel.load(std::sync::atomic::Ordering::SeqCst) {
                self.stop();
                return Err(ServeError::Cancelled);
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    // Give the reader thread a moment to collect the last lines.
                    std::thread::sleep(Duration::from_millis(200));
                    return Err(ServeError::Exited { status: status.to_string(), stderr: self.stderr_tail() });
                }
            }
            if transfer::send(&once, cancel, &|| http.get(&ping)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(ServeError::Timeout { seconds: timeout.as_secs(), stderr: self.stderr_tail() });
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The last lines the server wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        self.stderr.lock().map(|lines| lines.iter().cloned().collect::<Vec<_>>().join("\n")).unwrap_or_default()
    }

    /// The scoring URL for chat requests.
    pub fn invocations_url(&self) -> String {
        format!("{}/invocations", self.url)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Stops the server and every process it started; waits for it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        #[cfg(unix)]
        {
            let group = child.id() as libc::pid_t;
            // SAFETY: signalling the process group we created for this child (process_group(0)).
            unsafe {
                libc::kill(-group, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            // SAFETY: as above; stragglers (workers) of the same group.
            unsafe {
                libc::kill(-group, libc::SIGKILL);
            }
        }
        #[cfg(windows)]
        {
            let _ = Command::new("taskkill").args(["/F", "/T", "/PID", &child.id().to_string()]).output();
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        self.stop();
    }
}
