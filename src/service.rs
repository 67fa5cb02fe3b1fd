//! The one shape every background service has (the engine worker, the local server, registry
//! transfers, downloads): a thread that takes commands and reports events, a waker called after
//! every event (the GUI's `request_repaint`), a cancel flag for the work in flight, and a clean
//! shutdown when the handle is dropped (the command channel closes, the thread finishes and is
//! joined). Knows nothing of egui.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::{self, Receiver, RecvTimeoutError, Sender},
    },
    thread::JoinHandle,
    time::Duration,
};

/// Called after each event so a GUI can repaint; a no-op for headless callers.
pub type Waker = Arc<dyn Fn() + Send + Sync + 'static>;

/// A waker that does nothing (command line, tests).
pub fn no_waker() -> Waker {
    Arc::new(|| {})
}

/// What a service's thread holds: where events go, and whether to stop the work in flight.
pub struct Outbox<E> {
    events: Sender<E>,
    waker: Waker,
    cancel: Arc<AtomicBool>,
}

impl<E> Outbox<E> {
    /// Reports an event and wakes the owner; `false` once the owner has gone.
    pub fn send(&self, event: E) -> bool {
        let delivered = self.events.send(event).is_ok();
        (self.waker)();
        delivered
    }

    /// Whether the owner asked to stop the work in flight.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// The flag itself, for library calls that poll an `&AtomicBool`.
    pub fn cancel_flag(&self) -> &AtomicBool {
        &self.cancel
    }

    /// Clears a cancel request once the cancelled work has ended, before the next command.
    pub fn reset_cancel(&self) {
        self.cancel.store(false, Ordering::SeqCst);
    }
}

/// The owner's handle on a running service.
pub struct Service<C, E> {
    commands: Option<Sender<C>>,
    events: Receiver<E>,
    cancel: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl<C: Send + 'static, E: Send + 'static> Service<C, E> {
    /// Starts `body` on a thread named `name`. The body reads commands until the channel closes
    /// (the handle was dropped) and reports through the outbox.
    pub fn spawn(name: &str, waker: Waker, body: impl FnOnce(Receiver<C>, Outbox<E>) + Send + 'static) -> std::io::Result<Self> {
        let (commands, command_rx) = mpsc::channel();
        let (event_tx, events) = mpsc::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let outbox = Outbox { events: event_tx, waker, cancel: Arc::clone(&cancel) };
        let thread = std::thread::Builder::new().name(name.to_owned()).spawn(move || body(command_rx, outbox))?;
        Ok(Self { commands: Some(commands), events, cancel, thread: Some(thread) })
    }

    /// Queues a command; `false` when the service has stopped.
    pub fn send(&self, command: C) -> bool {
        self.commands.as_ref().is_some_and(|commands| commands.send(command).is_ok())
    }

    /// Asks the work in flight to stop; the service keeps running for the next command.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    /// The next event, if one is waiting (the GUI polls every frame).
    pub fn try_recv(&self) -> Option<E> {
        self.events.try_recv().ok()
    }

    /// Waits for the next event (headless callers and tests); `None` on timeout or when the
    /// service has stopped.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<E> {
        match self.events.recv_timeout(timeout) {
            Ok(event) => Some(event),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Every event waiting now.
    pub fn drain(&self) -> Vec<E> {
        std::iter::from_fn(|| self.try_recv()).collect()
    }

    /// Whether the service thread is still running.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|thread| !thread.is_finished())
    }
}

impl<C, E> Drop for Service<C, E> {
    /// Cancels the work in flight, closes the command channel so the thread's loop ends, and
    /// waits for it: nothing outlives its owner.
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::SeqCst);
        self.commands = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[test]
    fn commands_in_events_out_with_a_wake_per_event() {
        let wakes = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&wakes);
        let service: Service<u32, u32> = Service::spawn(
            "double",
            Arc::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            }),
            |commands, outbox| {
                for n in commands {
                    outbox.send(n * 2);
                }
            },
        )
        .unwrap();
        assert!(service.send(2));
        assert!(service.send(5));
        assert_eq!(service.recv_timeout(Duration::from_secs(5)), Some(4));
        assert_eq!(service.recv_timeout(Duration::from_secs(5)), Some(10));
        // The wake follows its event; once the thread has ended, both have happened.
        drop(service);
        assert_eq!(wakes.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn cancel_reaches_the_work_in_flight_and_drop_joins() {
        let finished = Arc::new(AtomicBool::new(false));
        let done = Arc::clone(&finished);
        let service: Service<(), &'static str> = Service::spawn("spin", no_waker(), move |commands, outbox| {
            for () in commands {
                while !outbox.cancelled() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                outbox.reset_cancel();
                outbox.send("stopped");
            }
            done.store(true, Ordering::SeqCst);
        })
        .unwrap();
        service.send(());
        service.cancel();
        assert_eq!(service.recv_timeout(Duration::from_secs(5)), Some("stopped"));
        drop(service);
        assert!(finished.load(Ordering::SeqCst), "dropping the handle ends the thread before returning");
    }
}
