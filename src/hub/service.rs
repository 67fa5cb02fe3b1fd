//! Downloads on a background thread, in the shape of every ModelDesk service
//! ([`crate::service::Service`]): commands in ([`DownloadService::start`],
//! [`DownloadService::cancel`]), events out ([`DownloadEvent`]) with a waker called after each,
//! and a clean shutdown when the service is dropped. Downloads run one after another in the order
//! they were started.

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc::Receiver,
    },
    time::{Duration, Instant},
};

use super::{DownloadRequest, Downloader, HubError, HubSettings, Outcome, Plan, Prepared, Progress};
use crate::{
    service::{Outbox, Service, Waker},
    transfer::{RetryPolicy, TransferError},
};

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

    /// Whether this is the last event of its download.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Finished { .. } | Self::Failed { .. } | Self::Cancelled { .. })
    }
}

/// Recent speed and the time left at that speed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub bytes_per_second: f64,
    pub seconds_left: Option<f64>,
}

impl Rate {
    /// "12 s", "4 min", "1.5 h": the time left for people, when the speed is known.
    pub fn time_left_label(&self) -> Option<String> {
        self.seconds_left.filter(|s| s.is_finite()).map(|seconds| match seconds {
            s if s < 90.0 => format!("{s:.0} s"),
            s if s < 5400.0 => format!("{:.0} min", s / 60.0),
            s => format!("{:.1} h", s / 3600.0),
        })
    }
}

struct Start {
    id: u64,
    request: DownloadRequest,
}

/// Which download runs now and which queued ones were cancelled before they started. One lock
/// covers both sides, so a cancel meant for a download that just ended never reaches the next.
#[derive(Default)]
struct Queue {
    running: Option<u64>,
    withdrawn: HashSet<u64>,
}

pub struct DownloadService {
    service: Option<Service<Start, DownloadEvent>>,
    queue: Arc<Mutex<Queue>>,
    /// Why the thread could not start; every download then fails with it.
    spawn_error: Option<Arc<HubError>>,
    failed_starts: Vec<DownloadEvent>,
    next_id: u64,
}

impl DownloadService {
    /// Starts the thread. `settings` usually come from [`HubSettings::from_env`].
    pub fn spawn(settings: HubSettings, waker: Waker) -> Self {
        Self::spawn_with_policy(settings, RetryPolicy::default(), waker)
    }

    pub fn spawn_with_policy(settings: HubSettings, policy: RetryPolicy, waker: Waker) -> Self {
        let queue: Arc<Mutex<Queue>> = Arc::default();
        let shared = Arc::clone(&queue);
        let spawned = Service::spawn("modeldesk-download", waker, move |commands, outbox| {
            let downloader = Downloader::new(settings).map(|d| d.with_policy(policy)).map_err(Arc::new);
            service_loop(downloader, commands, outbox, shared)
        });
        let (service, spawn_error) = match spawned {
            Ok(service) => (Some(service), None),
            Err(error) => (None, Some(Arc::new(HubError::Thread(error.to_string())))),
        };
        Self { service, queue, spawn_error, failed_starts: Vec::new(), next_id: 1 }
    }

    /// Queues a download; its events carry the returned id.
    pub fn start(&mut self, request: DownloadRequest) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let sent = self.service.as_ref().is_some_and(|service| service.send(Start { id, request }));
        if !sent {
            let error = self.spawn_error.clone().unwrap_or_else(|| Arc::new(HubError::Thread("it stopped".into())));
            self.failed_starts.push(DownloadEvent::Failed { id, error });
        }
        id
    }

    /// Stops a download (running or queued); it ends with [`DownloadEvent::Cancelled`] and its
    /// partial file stays for the next attempt.
    pub fn cancel(&self, id: u64) {
        let Ok(mut queue) = self.queue.lock() else { return };
        if queue.running == Some(id) {
            if let Some(service) = &self.service {
                service.cancel();
            }
        } else {
            queue.withdrawn.insert(id);
        }
    }

    pub fn try_recv(&mut self) -> Option<DownloadEvent> {
        if !self.failed_starts.is_empty() {
            return Some(self.failed_starts.remove(0));
        }
        self.service.as_ref()?.try_recv()
    }

    /// Blocks for the next event (headless callers and tests).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Option<DownloadEvent> {
        if !self.failed_starts.is_empty() {
            return Some(self.failed_starts.remove(0));
        }
        self.service.as_ref()?.recv_timeout(timeout)
    }
}

fn service_loop(downloader: Result<Downloader, Arc<HubError>>, commands: Receiver<Start>, outbox: Outbox<DownloadEvent>, queue: Arc<Mutex<Queue>>) {
    for Start { id, request } in commands {
        let withdrawn = match queue.lock() {
            Ok(mut queue) => {
                outbox.reset_cancel();
                queue.running = Some(id);
                queue.withdrawn.remove(&id)
            }
            Err(_) => false,
        };
        let event = match &downloader {
            _ if withdrawn => DownloadEvent::Cancelled { id },
            Err(error) => DownloadEvent::Failed { id, error: Arc::clone(error) },
            Ok(downloader) => match run_one(downloader, id, &request, &outbox) {
                Ok(outcome) => DownloadEvent::Finished { id, outcome },
                Err(HubError::Cancelled | HubError::Transfer(TransferError::Cancelled)) => DownloadEvent::Cancelled { id },
                Err(_) if outbox.cancelled() => DownloadEvent::Cancelled { id },
                Err(error) => DownloadEvent::Failed { id, error: Arc::new(error) },
            },
        };
        if let Ok(mut queue) = queue.lock() {
            queue.running = None;
        }
        if !outbox.send(event) {
            return;
        }
    }
}

fn run_one(downloader: &Downloader, id: u64, request: &DownloadRequest, outbox: &Outbox<DownloadEvent>) -> Result<Outcome, HubError> {
    let cancel: &AtomicBool = outbox.cancel_flag();
    if cancel.load(Ordering::SeqCst) {
        return Err(HubError::Cancelled);
    }
    let plan = match downloader.prepare(request, cancel)? {
        Prepared::Cached(local) => return Ok(Outcome::cached(&request.repo, local)),
        Prepared::Fetch(plan) => plan,
    };
    outbox.send(DownloadEvent::Planned { id, plan: plan.clone() });
    let mut meter = SpeedMeter::new(plan.missing_bytes() - plan.to_fetch_bytes());
    let mut last_sent: Option<(Instant, usize)> = None;
    downloader.fetch(&plan, cancel, &mut |progress| {
        let now = Instant::now();
        let rate = meter.record(now, progress.done, progress.total);
        let file_finished = progress.file_done == progress.file_size;
        let due = last_sent.is_none_or(|(at, file)| now - at >= PROGRESS_INTERVAL || file != progress.file_index);
        if due || file_finished {
            last_sent = Some((now, progress.file_index));
            outbox.send(DownloadEvent::Progress { id, progress: progress.clone(), rate });
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
        assert_eq!(rate.time_left_label().as_deref(), Some("1 s"));
        let at = |seconds_left| Rate { bytes_per_second: 1.0, seconds_left: Some(seconds_left) }.time_left_label();
        assert_eq!((at(600.0).as_deref(), at(7200.0).as_deref()), (Some("10 min"), Some("2.0 h")));
        assert_eq!(Rate { bytes_per_second: 0.0, seconds_left: None }.time_left_label(), None);
    }
}
