//! `modeldesk serve` as a child process on 127.0.0.1 with a free port, and a small HTTP/1.1
//! client for requests the Python clients cannot make (raw bodies, wrong methods, dropped
//! connections).

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

/// A running `modeldesk serve`; killed when dropped.
pub struct Serve {
    child: Child,
    pub url: String,
    pub port: u16,
    /// Every line it printed so far.
    pub output: Arc<Mutex<Vec<String>>>,
}

impl Serve {
    /// Starts `modeldesk serve --model <model> --port 0 <extra>` and waits for its ready line.
    pub fn start(model: &Path, extra: &[&str]) -> Serve {
        Self::start_with_env(model, extra, &[])
    }

    pub fn start_with_env(model: &Path, extra: &[&str], env: &[(&str, &str)]) -> Serve {
        let mut command = Command::new(env!("CARGO_BIN_EXE_modeldesk"));
        command.args(["serve", "--model"]).arg(model).args(["--port", "0"]).args(extra);
        command.env_remove("MODELDESK_API_KEY");
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start modeldesk serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let output = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let lines = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut url = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("listening on ") {
                    url = Some(rest.trim().to_owned());
                }
                if line.starts_with("ready") {
                    let _ = ready_tx.send(url.clone());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let errors = Arc::clone(&output);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                errors.lock().unwrap().push(format!("stderr: {line}"));
            }
        });
        let url = match ready_rx.recv_timeout(Duration::from_secs(120)) {
            Ok(Some(url)) => url,
            other => {
                let _ = child.kill();
                panic!("modeldesk serve did not get ready ({other:?}): {:?}", output.lock().unwrap());
            }
        };
        let port = url.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("no port in {url}"));
        Serve { child, url, port, output }
    }

    /// Sends SIGINT (Ctrl-C) and waits for the process to exit; returns whether it exited 0.
    #[cfg(unix)]
    pub fn interrupt(&mut self) -> bool {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(pid, libc::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for serve") {
                return status.success();
            }
            assert!(Instant::now() < deadline, "modeldesk serve did not stop after Ctrl-C");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn lines(&self) -> Vec<String> {
        self.output.lock().unwrap().clone()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP response: status, lower-cased headers, body (de-chunked).
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// Sends one request with `Connection: close` and reads the whole answer.
pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the server");
    stream.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    // A server may answer (413) before reading everything; a failed write is then expected.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse_response(&raw)
}

/// A JSON POST.
pub fn post_json(port: u16, path: &str, body: &serde_json::Value, headers: &[(&str, &str)]) -> Response {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    request(port, "POST", path, &all, body.to_string().as_bytes())
}

fn parse_response(raw: &[u8]) -> Response {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked")) {
        body = dechunk(&body);
    }
    Response { status, headers, body }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = end + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

/// The `data:` payloads of an SSE body, in order.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n").filter_map(|event| event.strip_prefix("data: ")).map(str::to_owned).collect()
}

/// `mlflow models serve --env-manager local` on a package, on a free port; killed when dropped.
pub struct MlflowServe {
    child: Child,
    pub port: u16,
}

impl MlflowServe {
    pub fn start(package: &Path) -> MlflowServe {
        let python = super::reference_python();
        let bin = python.parent().expect("the venv's bin directory").to_path_buf();
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        // uvicorn must be on PATH for `mlflow models serve`.
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let child = Command::new(bin.join("mlflow"))
            .args(["models", "serve", "--env-manager", "local", "--host", "127.0.0.1", "-p", &port.to_string(), "-m"])
            .arg(package)
            .env("PATH", path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mlflow models serve");
        let server = MlflowServe { child, port };
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() && request(port, "GET", "/ping", &[], b"").status == 200 {
                return server;
            }
            assert!(Instant::now() < deadline, "mlflow models serve did not come up");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for MlflowServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
