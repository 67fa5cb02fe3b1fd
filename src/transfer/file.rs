//! One file over HTTP: resumed from a partial with `Range` (checking the 206), streamed to disk
//! through a small queue read on a helper thread (so cancel is noticed while the network is
//! silent), checked for size and sha256, fsynced and renamed into place.

use std::{
    fs::{File, OpenOptions},
    io::{self, Read as _, Seek as _, Write as _},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
};

use reqwest::{
    StatusCode,
    blocking::{Client, Response},
    header::{self, HeaderMap, HeaderValue},
};
use sha2::{Digest as _, Sha256};

use super::{CANCEL_POLL, CHUNK, RetryPolicy, TransferError, send, sleep_unless_cancelled, spawn_helper};

/// One file to download.
pub struct FileRequest<'a> {
    pub url: String,
    /// Sent with every request (for example `Authorization`, dropped by reqwest off-host).
    pub headers: HeaderMap,
    pub dest: &'a Path,
    /// Where the bytes collect until they are complete; `<dest>.part` when `None`. An existing
    /// file there is resumed.
    pub partial: Option<PathBuf>,
    pub expected_size: Option<u64>,
    /// Lowercase hex.
    pub expected_sha256: Option<String>,
}

impl FileRequest<'_> {
    pub fn partial_path(&self) -> PathBuf {
        self.partial.clone().unwrap_or_else(|| {
            let mut name = self.dest.as_os_str().to_owned();
            name.push(".part");
            PathBuf::from(name)
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    pub bytes: u64,
    /// Bytes that were already in the partial file and kept.
    pub resumed_from: u64,
    /// Bytes received over the network by this call.
    pub fetched: u64,
    pub sha256: String,
}

/// Downloads one file into `file.dest`: resumes a partial with `Range` (a 206 must start where
/// the partial ends; a 200 restarts from zero), retries interruptions, checks size and sha256,
/// then fsyncs and renames atomically. On cancel or a lost connection the partial stays for the
/// next attempt; on a corrupt result it is deleted. `on_progress(done, total)` follows every chunk.
pub fn download_file(
    client: &Client,
    policy: &RetryPolicy,
    file: &FileRequest,
    cancel: &AtomicBool,
    on_progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<Downloaded, TransferError> {
    let partial_path = file.partial_path();
    let mut partial = Partial::open(&partial_path)?;
    if file.expected_size.is_some_and(|size| partial.len > size) {
        partial.restart()?;
    }
    let resumed_from = partial.len;
    // Attempts in a row that got no further into the file than any attempt before; one that
    // did resets it, so a flaky connection still finishes a large file, while a server that
    // keeps restarting or ending early is given up on.
    let mut stalled = 0;
    let mut furthest = partial.len;
    loop {
        match fetch_into(client, policy, file, &mut partial, cancel, on_progress)? {
            Fetch::Complete => break,
            Fetch::Interrupted(reason) => {
                if partial.len > furthest {
                    furthest = partial.len;
                    stalled = 0;
                    continue;
                }
                stalled += 1;
                if stalled >= policy.max_attempts {
                    return Err(TransferError::Unreachable {
                        url: file.url.clone(),
                        reason: format!("{reason} (at byte {} of the file)", partial.len),
                    });
                }
                sleep_unless_cancelled(policy.backoff(stalled), cancel)?;
            }
        }
    }
    let sha256 = partial.hash_hex();
    if let Some(expected) = file.expected_size.filter(|&size| size != partial.len) {
        let actual = partial.len;
        partial.discard(&partial_path);
        return Err(TransferError::SizeMismatch { url: file.url.clone(), expected, actual });
    }
    if let Some(expected) = file.expected_sha256.as_deref().filter(|sha| !sha.eq_ignore_ascii_case(&sha256)) {
        partial.discard(&partial_path);
        return Err(TransferError::Sha256Mismatch { url: file.url.clone(), expected: expected.to_owned(), actual: sha256 });
    }
    let downloaded = Downloaded { bytes: partial.len, resumed_from, fetched: partial.received, sha256 };
    partial.commit(&partial_path, file.dest)?;
    Ok(downloaded)
}

enum Fetch {
    Complete,
    /// The transfer broke off or has to start over; the partial holds what is usable.
    Interrupted(String),
}

/// One request: continue the partial from where it ends.
fn fetch_into(
    client: &Client,
    policy: &RetryPolicy,
    file: &FileRequest,
    partial: &mut Partial,
    cancel: &AtomicBool,
    on_progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<Fetch, TransferError> {
    if partial.len > 0 && file.expected_size == Some(partial.len) {
        // Complete from an earlier run that stopped before the rename.
        return Ok(Fetch::Complete);
    }
    let offset = partial.len;
    let request = || {
        let mut builder = client
            .get(&file.url)
            .headers(file.headers.clone())
            .header(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        if offset > 0 {
            builder = builder.header(header::RANGE, format!("bytes={offset}-"));
        }
        builder
    };
    let response = match send(policy, cancel, &request) {
        Ok(response) => response,
        Err(TransferError::Status(failure)) if failure.code == 416 && offset > 0 => {
            partial.restart()?;
            return Ok(Fetch::Interrupted(format!("the server refused to resume from byte {offset}")));
        }
        Err(error) => return Err(error),
    };
    let url = response.url().to_string();
    let total = if response.status() == StatusCode::PARTIAL_CONTENT {
        let range = response.headers().get(header::CONTENT_RANGE).and_then(|v| v.to_str().ok()).and_then(parse_content_range);
        match range {
            Some(range) if range.start == offset => range.total,
            _ => {
                partial.restart()?;
                return Ok(Fetch::Interrupted(format!("the server answered a resume from byte {offset} with another range")));
            }
        }
    } else {
        if offset > 0 {
            // The server ignored `Range` and sends the whole file: start over.
            partial.restart()?;
        }
        response.content_length()
    };
    if let (Some(expected), Some(total)) = (file.expected_size, total) {
        if expected != total {
            return Err(TransferError::SizeMismatch { url, expected, actual: total });
        }
    }
    let total = file.expected_size.or(total);
    on_progress(partial.len, total);
    let chunks = body_chunks(response)?;
    loop {
        if cancel.load(Ordering::SeqCst) {
            partial.flush()?;
            return Err(TransferError::Cancelled);
        }
        let chunk = match chunks.recv_timeout(CANCEL_POLL) {
            Ok(Ok(chunk)) => chunk,
            Ok(Err(error)) => {
                partial.flush()?;
                return Ok(Fetch::Interrupted(format!("the transfer from {url} broke off: {error}")));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        partial.append(&chunk)?;
        on_progress(partial.len, total);
        if let Some(total) = total.filter(|&total| partial.len > total) {
            return Err(TransferError::SizeMismatch { url, expected: total, actual: partial.len });
        }
    }
    partial.flush()?;
    match total {
        Some(total) if partial.len < total => Ok(Fetch::Interrupted(format!("{url} ended early at byte {}", partial.len))),
        _ => Ok(Fetch::Complete),
    }
}

/// The partial file, its length and the running sha256 of its bytes.
struct Partial {
    file: File,
    path: PathBuf,
    len: u64,
    /// Bytes appended by this run.
    received: u64,
    hasher: Sha256,
}

impl Partial {
    /// Opens (or creates) the partial file and hashes what it already holds.
    fn open(path: &Path) -> Result<Self, TransferError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| TransferError::io(parent, e))?;
        }
        let io = |e| TransferError::io(path, e);
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(io)?;
        let mut hasher = Sha256::new();
        let len = io::copy(&mut (&mut file).take(u64::MAX), &mut HashWriter(&mut hasher)).map_err(io)?;
        file.seek(io::SeekFrom::End(0)).map_err(io)?;
        Ok(Self { file, path: path.to_path_buf(), len, received: 0, hasher })
    }

    fn restart(&mut self) -> Result<(), TransferError> {
        let io = |e| TransferError::io(&self.path, e);
        self.file.set_len(0).map_err(io)?;
        self.file.seek(io::SeekFrom::Start(0)).map_err(io)?;
        self.len = 0;
        self.hasher = Sha256::new();
        Ok(())
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), TransferError> {
        self.file.write_all(bytes).map_err(|e| TransferError::io(&self.path, e))?;
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        self.received += bytes.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), TransferError> {
        self.file.flush().map_err(|e| TransferError::io(&self.path, e))
    }

    fn hash_hex(&self) -> String {
        format!("{:x}", self.hasher.clone().finalize())
    }

    fn discard(self, path: &Path) {
        drop(self.file);
        let _ = std::fs::remove_file(path);
    }

    /// fsync, rename onto `dest`, fsync the folder: `dest` is either absent or complete.
    fn commit(self, path: &Path, dest: &Path) -> Result<(), TransferError> {
        self.file.sync_all().map_err(|e| TransferError::io(path, e))?;
        drop(self.file);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| TransferError::io(parent, e))?;
        }
        std::fs::rename(path, dest).map_err(|e| TransferError::io(dest, e))?;
        if let Some(parent) = dest.parent() {
            crate::staging::sync_dir(parent);
        }
        Ok(())
    }
}

struct HashWriter<'a>(&'a mut Sha256);

impl io::Write for HashWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads a response body on a helper thread into a small queue of chunks, so the caller can
/// check for cancellation while the network is silent. The helper ends at the end of the body,
/// on an error, or when the receiver is dropped.
fn body_chunks(mut response: Response) -> Result<mpsc::Receiver<io::Result<Vec<u8>>>, TransferError> {
    let (sender, chunks) = mpsc::sync_channel(4);
    spawn_helper("modeldesk-http-body", move || {
        loop {
            let mut buffer = vec![0u8; CHUNK];
            match response.read(&mut buffer) {
                Ok(0) => return,
                Ok(read) => {
                    buffer.truncate(read);
                    if sender.send(Ok(buffer)).is_err() {
                        return;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    let _ = sender.send(Err(error));
                    return;
                }
            }
        }
    })?;
    Ok(chunks)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ContentRange {
    start: u64,
    total: Option<u64>,
}

/// `bytes <start>-<end>/<total|*>`.
fn parse_content_range(value: &str) -> Option<ContentRange> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    let total = match total.trim() {
        "*" => None,
        total => Some(total.parse::<u64>().ok()?),
    };
    (end >= start && total.is_none_or(|t| end < t)).then_some(ContentRange { start, total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_is_parsed_and_checked() {
        assert_eq!(parse_content_range("bytes 100-199/200"), Some(ContentRange { start: 100, total: Some(200) }));
        assert_eq!(parse_content_range("bytes 0-0/*"), Some(ContentRange { start: 0, total: None }));
        assert_eq!(parse_content_range("bytes 5-4/10"), None);
        assert_eq!(parse_content_range("bytes 0-10/10"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
        assert_eq!(parse_content_range("bytes */200"), None);
    }
}
