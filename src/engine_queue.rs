//! The one place generation requests meet: the window's chat and every HTTP client submit here.
//!
//! An [`EngineQueue`] owns the engine [`Worker`] and runs one generation at a time; the others
//! wait in a bounded FIFO. Each request reports to its own [`EventSink`]; the queue reports model
//! changes and counts (in flight, queued) as [`QueueEvent`]s and calls a waker after each one.
//! A [`Ticket`] cancels its request: a queued one never starts, a running one stops within one
//! decode step. Clients on other threads use a cloneable [`QueueClient`].
//!
//! Only one request is ever handed to the worker at a time, and a finished request is marked
//! done before the next is handed over, so a late cancel can never stop someone else's reply.

use std::{
    collections::VecDeque,
    path::PathBuf,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        mpsc::{self, Receiver, Sender},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::{
    engine::{
        Completion, ContextPolicy, DecoderSettings, GenerateOptions, ModelFacts, Prompt, PromptTokenizer,
        worker::{self, RequestHandle, Worker},
    },
    runtime::Runtime,
};

/// Called after each [`QueueEvent`] so a GUI can repaint.
pub type Waker = Box<dyn Fn() + Send + 'static>;

/// Receives one request's events, on the queue's thread (or the cancelling thread for
/// [`RequestEvent::Cancelled`]); it must not block.
pub type EventSink = Box<dyn FnMut(RequestEvent) + Send + 'static>;

/// What one request reports, in this order: `Started`, `Chunk`s, then exactly one of
/// `Finished` or `Failed`; or only `Cancelled` when it was cancelled before it started.
#[derive(Debug, Clone)]
pub enum RequestEvent {
    /// The worker took the request and encoded its prompt.
    Started { prompt_tokens: usize, dropped_messages: usize, queue_wait: Duration },
    /// A token was accepted; `text` is the newly complete text (may be empty).
    Chunk { token: i64, text: String },
    /// The reply ended (its `finish_reason` is `Cancelled` if it was stopped).
    Finished(Box<Completion>),
    Failed(String),
    /// Cancelled (or dropped by a model change or shutdown) before it started.
    Cancelled,
}

/// One generation request.
#[derive(Debug, Clone)]
pub struct Request {
    pub prompt: Prompt,
    pub options: GenerateOptions,
    pub policy: ContextPolicy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct QueueCounts {
    /// Requests generating now (0 or 1).
    pub in_flight: usize,
    /// Requests waiting.
    pub queued: usize,
}

/// A loaded model as clients see it: its facts, and a tokenizer of its own for counting and
/// checking prompts before they are queued.
#[derive(Debug)]
pub struct LoadedModel {
    pub facts: ModelFacts,
    pub tokenizer: PromptTokenizer,
}

impl LoadedModel {
    /// The token ids `prompt` encodes to, exactly as the engine will encode it (for counting and
    /// checking a prompt before it is queued).
    pub fn prompt_ids(&self, prompt: &Prompt) -> Result<Vec<i64>, crate::engine::TokenizerError> {
        match prompt {
            Prompt::Raw(text) => self.tokenizer.encode(text),
            Prompt::Chat(messages) => self.tokenizer.encode_conversation(messages, true).map(|(_, ids)| ids),
        }
    }
}

#[derive(Debug, Clone)]
pub enum ModelState {
    Empty,
    Loading(PathBuf),
    Loaded(Arc<LoadedModel>),
    Failed { path: PathBuf, message: String },
}

/// What the queue reports to its owner.
#[derive(Debug, Clone)]
pub enum QueueEvent {
    Loading { path: PathBuf },
    Loaded(Box<ModelFacts>),
    LoadFailed { path: PathBuf, message: String },
    Unloaded,
    Counts(QueueCounts),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("the queue is full: {queued} requests are waiting (at most {max_queue})")]
    Full { queued: usize, max_queue: usize },
    #[error("no model is loaded")]
    NoModel,
    #[error("the engine queue has shut down")]
    Closed,
}

#[derive(Debug, Clone, Copy)]
pub struct QueueConfig {
    /// Most requests waiting behind the running one; more are refused with [`SubmitError::Full`].
    pub max_queue: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self { max_queue: 64 }
    }
}

enum Control {
    /// Something changed (a submission, a cancel, a worker event); look again.
    Poke,
    Load { path: PathBuf, settings: DecoderSettings },
    Unload,
    Shutdown,
}

enum Slot {
    Queued,
    Running(RequestHandle),
    Cancelled,
    Done,
}

struct Pending {
    id: u64,
    /// Taken when the request is handed to the worker.
    request: Option<Request>,
    sink: EventSink,
    slot: Arc<Mutex<Slot>>,
    enqueued: Instant,
}

struct Waiting {
    requests: VecDeque<Pending>,
    next_id: u64,
    closed: bool,
}

struct Shared {
    max_queue: usize,
    waiting: Mutex<Waiting>,
    model: Mutex<ModelState>,
    counts: Mutex<QueueCounts>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data behind these locks stays consistent at every unlock, so a panic elsewhere while
    // one was held does not make it unusable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Delivers an event; a panicking sink loses its event but does not stop the queue.
fn deliver(sink: &mut EventSink, event: RequestEvent) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sink(event)));
}

/// Submits and inspects from any thread.
#[derive(Clone)]
pub struct QueueClient {
    shared: Arc<Shared>,
    control: Sender<Control>,
}

/// A submitted request. Dropping it does not cancel it.
pub struct Ticket {
    pub id: u64,
    slot: Arc<Mutex<Slot>>,
    client: QueueClient,
}

impl Ticket {
    /// A queued request is removed and reports `Cancelled`; a running one stops within one
    /// decode step and reports `Finished` with what it had; a finished one is left alone.
    pub fn cancel(&self) {
        let was_queued = {
            let mut slot = lock(&self.slot);
            match &*slot {
                Slot::Queued => {
                    *slot = Slot::Cancelled;
                    true
                }
                Slot::Running(handle) => {
                    handle.cancel();
                    false
                }
                Slot::Cancelled | Slot::Done => false,
            }
        };
        if was_queued {
            let removed = {
                let mut waiting = lock(&self.client.shared.waiting);
                let index = waiting.requests.iter().position(|p| p.id == self.id);
                index.and_then(|i| waiting.requests.remove(i))
            };
            // If the dispatcher took it first, the dispatcher reports the cancel instead.
            if let Some(mut pending) = removed {
                deliver(&mut pending.sink, RequestEvent::Cancelled);
            }
            let _ = self.client.control.send(Control::Poke);
        }
    }
}

impl QueueClient {
    /// Queues a request; refused at once when the queue is full or no model is loaded.
    pub fn submit(&self, request: Request, sink: EventSink) -> Result<Ticket, SubmitError> {
        if !matches!(*lock(&self.shared.model), ModelState::Loaded(_)) {
            return Err(SubmitError::NoModel);
        }
        let slot = Arc::new(Mutex::new(Slot::Queued));
        let id = {
            let mut waiting = lock(&self.shared.waiting);
            if waiting.closed {
                return Err(SubmitError::Closed);
            }
            let queued = waiting.requests.len();
            if queued >= self.shared.max_queue {
                return Err(SubmitError::Full { queued, max_queue: self.shared.max_queue });
            }
            let id = waiting.next_id;
            waiting.next_id += 1;
            waiting.requests.push_back(Pending { id, request: Some(request), sink, slot: Arc::clone(&slot), enqueued: Instant::now() });
            id
        };
        if self.control.send(Control::Poke).is_err() {
            return Err(SubmitError::Closed);
        }
        Ok(Ticket { id, slot, client: self.clone() })
    }

    pub fn counts(&self) -> QueueCounts {
        let in_flight = lock(&self.shared.counts).in_flight;
        QueueCounts { in_flight, queued: lock(&self.shared.waiting).requests.len() }
    }

    pub fn model_state(&self) -> ModelState {
        lock(&self.shared.model).clone()
    }

    /// The loaded model, if one is ready.
    pub fn model(&self) -> Option<Arc<LoadedModel>> {
        match &*lock(&self.shared.model) {
            ModelState::Loaded(model) => Some(Arc::clone(model)),
            _ => None,
        }
    }

    pub fn max_queue(&self) -> usize {
        self.shared.max_queue
    }
}

/// Owns the engine and the queue's thread; dropping it shuts both down.
pub struct EngineQueue {
    client: QueueClient,
    events: Receiver<QueueEvent>,
    thread: Option<JoinHandle<()>>,
}

impl EngineQueue {
    pub fn spawn(runtime: &'static Runtime, config: QueueConfig, waker: Waker) -> Self {
        let shared = Arc::new(Shared {
            max_queue: config.max_queue,
            waiting: Mutex::new(Waiting { requests: VecDeque::new(), next_id: 1, closed: false }),
            model: Mutex::new(ModelState::Empty),
            counts: Mutex::new(QueueCounts::default()),
        });
        let (control, control_rx) = mpsc::channel();
        let (event_tx, events) = mpsc::channel();
        let dispatcher = Dispatcher {
            shared: Arc::clone(&shared),
            events: event_tx,
            waker,
            running: None,
            reported: QueueCounts::default(),
        };
        let poke = control.clone();
        let thread = std::thread::Builder::new()
            .name("modeldesk-queue".into())
            .spawn(move || dispatcher.run(runtime, control_rx, poke))
            .ok();
        Self { client: QueueClient { shared, control }, events, thread }
    }

    pub fn client(&self) -> QueueClient {
        self.client.clone()
    }

    pub fn submit(&self, request: Request, sink: EventSink) -> Result<Ticket, SubmitError> {
        self.client.submit(request, sink)
    }

    /// Loads a model; the running request is stopped and queued ones are dropped first.
    pub fn load(&self, path: PathBuf, settings: DecoderSettings) {
        let _ = self.client.control.send(Control::Load { path, settings });
    }

    /// Unloads the model; the running request is stopped and queued ones are dropped first.
    pub fn unload(&self) {
        let _ = self.client.control.send(Control::Unload);
    }

    pub fn counts(&self) -> QueueCounts {
        self.client.counts()
    }

    pub fn model(&self) -> Option<Arc<LoadedModel>> {
        self.client.model()
    }

    pub fn try_recv(&self) -> Option<QueueEvent> {
        self.events.try_recv().ok()
    }

    /// Blocks for the next event (headless callers and tests).
    pub fn recv_timeout(&self, timeout: Duration) -> Option<QueueEvent> {
        self.events.recv_timeout(timeout).ok()
    }

    /// Stops the running request, drops queued ones, and waits for the engine thread to end.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.client.control.send(Control::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for EngineQueue {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A sink that forwards into a channel and calls `waker` after each event (the GUI's shape).
pub fn channel_sink(waker: Waker) -> (EventSink, Receiver<RequestEvent>) {
    let (tx, rx) = mpsc::channel();
    let sink: EventSink = Box::new(move |event| {
        let _ = tx.send(event);
        waker();
    });
    (sink, rx)
}

struct Running {
    pending: Pending,
    worker_id: u64,
    dispatched: Instant,
}

struct Dispatcher {
    shared: Arc<Shared>,
    events: Sender<QueueEvent>,
    waker: Waker,
    running: Option<Running>,
    reported: QueueCounts,
}

impl Dispatcher {
    fn run(mut self, runtime: &'static Runtime, control: Receiver<Control>, poke: Sender<Control>) {
        let mut worker = Worker::spawn(runtime, Box::new(move || {
            let _ = poke.send(Control::Poke);
        }));
        while let Ok(command) = control.recv() {
            match command {
                Control::Poke => {}
                Control::Load { path, settings } => {
                    self.abandon_all();
                    self.set_model(ModelState::Loading(path.clone()));
                    worker.load(path, settings);
                }
                Control::Unload => {
                    self.abandon_all();
                    self.set_model(ModelState::Empty);
                    worker.unload();
                }
                Control::Shutdown => break,
            }
            while let Some(event) = worker.try_recv() {
                self.on_worker_event(event);
            }
            self.start_next(&mut worker);
            self.report_counts();
        }
        lock(&self.shared.waiting).closed = true;
        self.abandon_all();
        self.report_counts();
        // Dropping the worker cancels the run in flight and joins the engine thread.
        drop(worker);
        if let Some(mut running) = self.running.take() {
            deliver(&mut running.pending.sink, RequestEvent::Failed("the engine was shut down".into()));
        }
    }

    fn emit(&self, event: QueueEvent) {
        let _ = self.events.send(event);
        (self.waker)();
    }

    fn set_model(&self, state: ModelState) {
        *lock(&self.shared.model) = state;
    }

    /// Stops the running request and reports every queued one as cancelled.
    fn abandon_all(&mut self) {
        if let Some(running) = &self.running {
            if let Slot::Running(handle) = &*lock(&running.pending.slot) {
                handle.cancel();
            }
        }
        let dropped: Vec<Pending> = lock(&self.shared.waiting).requests.drain(..).collect();
        for mut pending in dropped {
            *lock(&pending.slot) = Slot::Cancelled;
            deliver(&mut pending.sink, RequestEvent::Cancelled);
        }
    }

    fn on_worker_event(&mut self, event: worker::Event) {
        use worker::Event as E;
        match event {
            E::Loading { path } => self.emit(QueueEvent::Loading { path }),
            E::Loaded(facts) => match PromptTokenizer::load(&facts.folder) {
                Ok(tokenizer) => {
                    self.set_model(ModelState::Loaded(Arc::new(LoadedModel { facts: (*facts).clone(), tokenizer })));
                    self.emit(QueueEvent::Loaded(facts));
                }
                Err(error) => {
                    let (path, message) = (facts.folder.clone(), error.to_string());
                    self.set_model(ModelState::Failed { path: path.clone(), message: message.clone() });
                    self.emit(QueueEvent::LoadFailed { path, message });
                }
            },
            E::LoadFailed { path, message } => {
                self.set_model(ModelState::Failed { path: path.clone(), message: message.clone() });
                self.emit(QueueEvent::LoadFailed { path, message });
            }
            E::Unloaded => self.emit(QueueEvent::Unloaded),
            E::Started { id, prompt_tokens, dropped_messages, .. } => {
                if let Some(running) = self.running.as_mut().filter(|r| r.worker_id == id) {
                    let queue_wait = running.dispatched.duration_since(running.pending.enqueued);
                    deliver(&mut running.pending.sink, RequestEvent::Started { prompt_tokens, dropped_messages, queue_wait });
                }
            }
            E::Chunk { id, token, text } => {
                if let Some(running) = self.running.as_mut().filter(|r| r.worker_id == id) {
                    deliver(&mut running.pending.sink, RequestEvent::Chunk { token, text });
                }
            }
            E::Finished { id, completion } => self.finish(id, RequestEvent::Finished(completion)),
            E::Failed { id, message } => self.finish(id, RequestEvent::Failed(message)),
        }
    }

    fn finish(&mut self, worker_id: u64, event: RequestEvent) {
        if self.running.as_ref().is_none_or(|r| r.worker_id != worker_id) {
            return;
        }
        if let Some(mut running) = self.running.take() {
            // Done before the next request reaches the worker (see the module comment), and
            // not counted as in flight once its client can see the end.
            *lock(&running.pending.slot) = Slot::Done;
            lock(&self.shared.counts).in_flight = 0;
            deliver(&mut running.pending.sink, event);
        }
    }

    fn start_next(&mut self, worker: &mut Worker) {
        if self.running.is_some() || !matches!(*lock(&self.shared.model), ModelState::Loaded(_)) {
            return;
        }
        loop {
            let Some(mut pending) = lock(&self.shared.waiting).requests.pop_front() else { return };
            let slot = Arc::clone(&pending.slot);
            let mut slot = lock(&slot);
            let request = pending.request.take();
            let (Slot::Queued, Some(request)) = (&*slot, request) else {
                drop(slot);
                deliver(&mut pending.sink, RequestEvent::Cancelled);
                continue;
            };
            let handle = worker.generate(request.prompt, request.options, request.policy);
            let worker_id = handle.id;
            *slot = Slot::Running(handle);
            drop(slot);
            self.running = Some(Running { pending, worker_id, dispatched: Instant::now() });
            lock(&self.shared.counts).in_flight = 1;
            return;
        }
    }

    fn report_counts(&mut self) {
        let counts = QueueCounts {
            in_flight: usize::from(self.running.is_some()),
            queued: lock(&self.shared.waiting).requests.len(),
        };
        *lock(&self.shared.counts) = counts;
        if counts != self.reported {
            self.reported = counts;
            self.emit(QueueEvent::Counts(counts));
        }
    }
}
