//! Downloads on a background thread, in the shape of every ModelDesk service: commands in
//! ([`DownloadService::start`], [`DownloadService::cancel`]), events out ([`DownloadEvent`]) with a
//! waker called after each, and a clean shutdown when the service is dropped. Downloads run one
//! after another in the order they were started.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc::{self, Receiver, Sender},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::{DownloadRequest, Downloader, HubError, HubSettings, Outcome, Plan, Prepared, Progress};
use crate::transfer::RetryPolicy;

/// Called after each event so a GUI can repaint.
pub type Waker = Box<dyn Fn() + Send + 'static>;

/// Progress events are sent at most this often (the last one of a file always).
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
/// Speed is measured over this much recent time.
const SPEED_WINDOW: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub enum DownloadEvent {
    /// The listing is known: what will be fetched.
    Planned { id: u64, plan: Plan },
    Progress { id: u64, progress: Progress, rate: Rate },
    /// Done: open `outcome.folder`. `outcome.already_cached` when nothing had to be fetched.
    Finished { id: u64, outcome: Outcome },
    Failed { id: u64, error: Arc<HubError> },
    Cancelled { id: u64 },
}

impl DownloadEvent {
    pub fn id(&self) -> u64 {
        match self {
            Self::Planned { id, .. } | Self::Progress { id, .. } | Self::Finished { id, .. } | Self::Failed { id, .. } | Self::Cancelled { id } => *id,
        }
    }
}

/// Recent speed and the time left at that speed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub bytes_per_second: f64,
    pub seconds_left: Option<f64>,
}

enum Command {
    Start { id: u64, request: DownloadRequest, cancel: Arc<AtomicBool> },
    Shutdown,
}

type Flags = Arc<Mutex<HashMap<u64, Arc<AtomicBool>>>>;

pub struct DownloadService {
    commands: Sender<Command>,
    events: Receiver<DownloadEvent>,
    flags: Flags,
    next_id: u64,
    thread: Option<JoinHandle<()>>,
}

impl DownloadService {
    /// Starts the thread. `settings` usually come from [`HubSettings::from_env`].
    pub fn spawn(settings: HubSettings, waker: Waker) -> Self {
        Self::spawn_with_policy(settings, RetryPolicy::default(), waker)
    }

    pub fn spawn_with_policy(settings: HubSettings, policy: RetryPolicy, waker: Waker) -> Self {
        let (commands, command_rx) = mpsc::channel();
        let (event_tx, events) = mpsc::channel();
        let flags: Flags = Arc::default();
        let running = Arc::clone(&flags);
        let thread = std::thread::Builder::new()
            .name("modeldesk-download".into())
            .spawn(move || {
                let downloader = Downloader::new(settings).map(|d| d.with_policy(policy)).map_err(Arc::new);
                service_loop(downloader, command_rx, event_tx, waker, running)
            })
            .ok();
        Self { commands, events, flags, next_id: 1, thread }
    }

    /// Queues a download; its events carry the returned id.
    pub fn start(&mut self, request: DownloadRequest) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let cancel = Arc::new(AtomicBool::new(false));
        if let Ok(mut flags) = self.flags.lock() {
            flags.insert(id, Arc::clone(&cancel));
        }
        let _ = self.commands.send(Command::Start { id, request, cancel });
        id
    }

    /// Stops a download (running or queued); it ends with [`DownloadEvent::Cancelled`] and its
    /// partial file stays for the next attempt.
    pub fn cancel(&self, id: u64) {
        if let Some(flag) = self.flags.lock().ok().and_then(|flags| flags.get(&id).cloned()) {
            flag.store(true, Ordering::SeqCst);
        }
    }

    pub fn try_recv(&self) -> Option<DownloadEvent> {
        self.events.try_recv().ok()
    }

    /// Blocks for the next event (headless callers and tests).
    pub fn recv_timeout(&self, timeout: Duration) -> Option<DownloadEvent> {
        self.events.recv_timeout(timeout).ok()
    }
}

impl Drop for DownloadService {
    fn drop(&mut self) {
        if let Ok(flags) = self.flags.lock() {
            flags.values().for_each(|flag| flag.store(true, Ordering::SeqCst));
        }
        let _ = self.commands.send(Command::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn service_loop(
    downloader: Result<Downloader, Arc<HubError>>,
    commands: Receiver<Command>,
    events: Sender<DownloadEvent>,
    waker: Waker,
    flags: Flags,
) {
    let send = |event: DownloadEvent| {
        let _ = events.send(event);
        waker();
    };
    while let Ok(Command::Start { id, request, cancel }) = commands.recv() {
        let event = match &downloader {
            Err(error) => DownloadEvent::Failed { id, error: Arc::clone(error) },
            Ok(downloader) => match run_one(downloader, id, &request, &cancel, &send) {
                Ok(outcome) => DownloadEvent::Finished { id, outcome },
                Err(HubError::Cancelled) | Err(HubError::Transfer(crate::transfer::TransferError::Cancelled)) => DownloadEvent::Cancelled { id },
                Err(_) if cancel.load(Ordering::SeqCst) => DownloadEvent::Cancelled { id },
                Err(error) => DownloadEvent::Failed { id, error: Arc::new(error) },
            },
        };
        if let Ok(mut flags) = flags.lock() {
            flags.remove(&id);
        }
        send(event);
    }
}

fn run_one(
    downloader: &Downloader,
    id: u64,
    request: &DownloadRequest,
    cancel: &AtomicBool,
    send: &dyn Fn(DownloadEvent),
) -> Result<Outcome, HubError> {
    if cancel.load(Ordering::SeqCst) {
        return Err(HubError::Cancelled);
    }
    let plan = match downloader.prepare(request, cancel)? {
        Prepared::Cached(local) => return Ok(Outcome::cached(&request.repo, local)),
        Prepared::Fetch(plan) => plan,
    };
    send(DownloadEvent::Planned { id, plan: plan.clone() });
    let mut meter = SpeedMeter::new(plan.missing_bytes() - plan.to_fetch_bytes());
    let mut last_sent: Option<(Instant, usize)> = None;
    downloader.fetch(&plan, cancel, &mut |progress| {
        let now = Instant::now();
        let rate = meter.record(now, progress.done, progress.total);
        let file_finished = progress.file_done == progress.file_size;
        let due = last_sent.is_none_or(|(at, file)| now - at >= PROGRESS_INTERVAL || file != progress.file_index);
        if due || file_finished {
            last_sent = Some((now, progress.file_index));
            send(DownloadEvent::Progress { id, progress: progress.clone(), rate });
        }
    })
}

/// Bytes per second over the last few seconds, from (time, bytes done) samples.
struct SpeedMeter {
    samples: std::collections::VecDeque<(Instant, u64)>,
    /// Bytes that were on disk before this run (resumed parts), not part of the speed.
    resumed: u64,
}

impl SpeedMeter {
    fn new(resumed: u64) -> Self {
        Self { samples: Default::default(), resumed }
    }

    fn record(&mut self, now: Instant, done: u64, total: u64) -> Rate {
        let done_here = done.saturating_sub(self.resumed);
        self.samples.push_back((now, done_here));
        while self.samples.len() > 2 && self.samples.front().is_some_and(|(at, _)| now - *at > SPEED_WINDOW) {
            self.samples.pop_front();
        }
        let (first_at, first_done) = self.samples.front().copied().unwrap_or((now, done_here));
        let seconds = (now - first_at).as_secs_f64();
        let bytes_per_second = if seconds > 0.0 { done_here.saturating_sub(first_done) as f64 / seconds } else { 0.0 };
        let seconds_left = (bytes_per_second > 0.0).then(|| total.saturating_sub(done) as f64 / bytes_per_second);
        Rate { bytes_per_second, seconds_left }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_covers_the_recent_window_and_ignores_resumed_bytes() {
        let start = Instant::now();
        let mut meter = SpeedMeter::new(1_000);
        assert_eq!(meter.record(start, 1_000, 11_000).seconds_left, None);
        let rate = meter.record(start + Duration::from_secs(2), 3_000, 11_000);
        assert_eq!(rate.bytes_per_second, 1_000.0);
        assert_eq!(rate.seconds_left, Some(8.0));
        // Ten seconds later at a new pace, the early samples have left the window.
        meter.record(start + Duration::from_secs(10), 5_000, 11_000);
        let rate = meter.record(start + Duration::from_secs(12), 9_000, 11_000);
        assert_eq!(rate.bytes_per_second, 2_000.0);
        assert_eq!(rate.seconds_left, Some(1.0));
    }
}
