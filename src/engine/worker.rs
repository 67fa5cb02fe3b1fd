//! A long-lived thread that owns the model session. Callers send [`Command`]s and receive
//! [`Event`]s over channels; a waker (the GUI's `request_repaint`) is called after every event.
//! Stopping a reply sets its flag and terminates the ONNX Runtime run in flight, so it ends
//! within one decode step.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc::{self, Receiver, Sender},
    },
    thread::JoinHandle,
};

use super::{
    Completion, ContextPolicy, DecoderSettings, Engine, EngineError, GenerateOptions, ModelFacts, Progress, Prompt,
    decoder::Canceller,
};
use crate::runtime::Runtime;

/// Called after each event so a GUI can repaint.
pub type Waker = Box<dyn Fn() + Send + 'static>;

/// What the worker loads a model folder with ([`Engine::load`] unless a caller says otherwise).
pub type Loader = fn(&Runtime, &Path, &DecoderSettings) -> Result<Engine, EngineError>;

pub enum Command {
    Load { path: PathBuf, settings: DecoderSettings },
    Generate { id: u64, prompt: Prompt, options: GenerateOptions, policy: ContextPolicy, cancel: Arc<AtomicBool> },
    Unload,
    Shutdown,
}

#[derive(Debug, Clone)]
pub enum Event {
    Loading { path: PathBuf },
    Loaded(Box<ModelFacts>),
    LoadFailed { path: PathBuf, message: String },
    /// The prompt was encoded; `cached_tokens` of its `prompt_tokens` are taken from the KV cache
    /// the previous request left (only the rest is run through the model).
    Started { id: u64, prompt_tokens: usize, cached_tokens: usize, dropped_messages: usize },
    Chunk { id: u64, token: i64, text: String },
    Finished { id: u64, completion: Box<Completion> },
    Failed { id: u64, message: String },
    Unloaded,
}

/// A request in flight; dropping it does not cancel it.
#[derive(Clone)]
pub struct RequestHandle {
    pub id: u64,
    cancel: Arc<AtomicBool>,
    canceller: Arc<Mutex<Option<Canceller>>>,
}

impl RequestHandle {
    /// A handle not tied to any worker (for synthetic streams in benchmarks and tests).
    pub fn detached(id: u64) -> Self {
        Self { id, cancel: Arc::new(AtomicBool::new(false)), canceller: Arc::new(Mutex::new(None)) }
    }

    /// Stops this reply within one step; what was generated so far is kept.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
        if let Ok(slot) = self.canceller.lock() {
            if let Some(canceller) = slot.as_ref() {
                canceller.cancel();
            }
        }
    }
}

/// Stops whatever reply is running (Esc in the GUI); cloneable and usable from any thread.
#[derive(Clone)]
pub struct Stopper {
    current: Arc<Mutex<Option<Arc<AtomicBool>>>>,
    canceller: Arc<Mutex<Option<Canceller>>>,
}

impl Stopper {
    pub fn stop(&self) {
        if let Ok(current) = self.current.lock() {
            if let Some(flag) = current.as_ref() {
                flag.store(true, Ordering::SeqCst);
            }
        }
        if let Ok(slot) = self.canceller.lock() {
            if let Some(canceller) = slot.as_ref() {
                canceller.cancel();
            }
        }
    }
}

pub struct Worker {
    commands: Sender<Command>,
    events: Receiver<Event>,
    canceller: Arc<Mutex<Option<Canceller>>>,
    current: Arc<Mutex<Option<Arc<AtomicBool>>>>,
    next_id: u64,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    pub fn spawn(runtime: &'static Runtime, waker: Waker) -> Self {
        Self::spawn_with_loader(runtime, waker, Engine::load)
    }

    /// Like [`Self::spawn`], loading folders with `loader`.
    pub fn spawn_with_loader(runtime: &'static Runtime, waker: Waker, loader: Loader) -> Self {
        let (commands, command_rx) = mpsc::channel();
        let (event_tx, events) = mpsc::channel();
        let canceller = Arc::new(Mutex::new(None));
        let current = Arc::new(Mutex::new(None));
        let shared = Arc::clone(&canceller);
        let running = Arc::clone(&current);
        let thread = std::thread::Builder::new()
            .name("modeldesk-engine".into())
            .spawn(move || worker_loop(runtime, loader, command_rx, event_tx, waker, shared, running))
            .ok();
        Self { commands, events, canceller, current, next_id: 1, thread }
    }

    /// A handle that stops the reply running at the time it is used.
    pub fn stopper(&self) -> Stopper {
        Stopper { current: Arc::clone(&self.current), canceller: Arc::clone(&self.canceller) }
    }

    pub fn load(&self, path: PathBuf, settings: DecoderSettings) {
        let _ = self.commands.send(Command::Load { path, settings });
    }

    pub fn unload(&self) {
        let _ = self.commands.send(Command::Unload);
    }

    pub fn generate(&mut self, prompt: Prompt, options: GenerateOptions, policy: ContextPolicy) -> RequestHandle {
        let id = self.next_id;
        self.next_id += 1;
        let cancel = Arc::new(AtomicBool::new(false));
        let _ = self.commands.send(Command::Generate { id, prompt, options, policy, cancel: Arc::clone(&cancel) });
        RequestHandle { id, cancel, canceller: Arc::clone(&self.canceller) }
    }

    pub fn try_recv(&self) -> Option<Event> {
        self.events.try_recv().ok()
    }

    /// Blocks for the next event (headless callers and tests).
    pub fn recv_timeout(&self, timeout: std::time::Duration) -> Option<Event> {
        self.events.recv_timeout(timeout).ok()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(slot) = self.canceller.lock() {
            if let Some(canceller) = slot.as_ref() {
                canceller.cancel();
            }
        }
        let _ = self.commands.send(Command::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn worker_loop(
    runtime: &'static Runtime,
    loader: Loader,
    commands: Receiver<Command>,
    events: Sender<Event>,
    waker: Waker,
    canceller: Arc<Mutex<Option<Canceller>>>,
    current: Arc<Mutex<Option<Arc<AtomicBool>>>>,
) {
    let send = |event: Event| {
        let _ = events.send(event);
        waker();
    };
    let mut engine: Option<Engine> = None;
    let set_canceller = |engine: &Option<Engine>| {
        if let Ok(mut slot) = canceller.lock() {
            *slot = engine.as_ref().map(|e| e.decoder.canceller());
        }
    };
    // A command taken off the channel early (see the end of a reply) and not yet handled.
    let mut waiting: Option<Command> = None;
    loop {
        let command = match waiting.take() {
            Some(command) => command,
            None => match commands.recv() {
                Ok(command) => command,
                Err(_) => break,
            },
        };
        match command {
            Command::Load { path, settings } => {
                engine = None;
                set_canceller(&engine);
                send(Event::Loading { path: path.clone() });
                // A bug met while loading (in a parser, in ONNX Runtime's bindings) must not leave
                // the caller waiting for a load that never ends: it becomes a LoadFailed.
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| loader(runtime, &path, &settings)));
                match outcome {
                    Ok(Ok(loaded)) => {
                        let facts = loaded.facts.clone();
                        engine = Some(loaded);
                        set_canceller(&engine);
                        send(Event::Loaded(Box::new(facts)));
                    }
                    Ok(Err(error)) => send(Event::LoadFailed { path, message: format!("could not load: {error}") }),
                    Err(panic) => send(Event::LoadFailed {
                        path,
                        message: format!(
                            "could not load: an internal error stopped loading ({}; details are in the crash log)",
                            panic_text(panic.as_ref())
                        ),
                    }),
                }
            }
            Command::Generate { id, prompt, options, policy, cancel } => {
                let Some(engine) = engine.as_mut() else {
                    send(Event::Failed { id, message: "no model is loaded".into() });
                    continue;
                };
                if let Ok(mut slot) = current.lock() {
                    *slot = Some(Arc::clone(&cancel));
                }
                // A bug in one reply must not take the worker (and the loaded model) down: it
                // is reported as this reply's failure, and written to the crash log by the hook.
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let resolved = engine.resolve(&options)?;
                    let prepared = engine.prepare(&prompt, resolved.max_length, policy)?;
                    send(Event::Started {
                        id,
                        prompt_tokens: prepared.ids.len(),
                        cached_tokens: engine.reusable_prefix(&prepared.ids, &options),
                        dropped_messages: prepared.dropped_messages,
                    });
                    engine.generate_ids(&prepared.ids, &options, &cancel, &mut |progress| {
                        if let Progress::Token { id: token, text } = progress {
                            send(Event::Chunk { id, token, text: text.to_owned() });
                        }
                    })
                }));
                let result = match outcome {
                    Ok(result) => result,
                    Err(_) => {
                        send(Event::Failed { id, message: "an internal error stopped this reply (details are in the crash log)".into() });
                        if let Ok(mut slot) = current.lock() {
                            *slot = None;
                        }
                        continue;
                    }
                };
                if let Ok(mut slot) = current.lock() {
                    *slot = None;
                }
                match result {
                    Ok(completion) => {
                        send(Event::Finished { id, completion: Box::new(completion) });
                        // While the user reads the reply, make room for the next turn, unless a
                        // command already waits (a server's queue): that one comes first. Best
                        // effort: if growing fails, the next request's own growth reports why.
                        match commands.try_recv() {
                            Ok(next) => waiting = Some(next),
                            Err(_) => {
                                // Guarded like every other engine call: a bug here must not
                                // end the worker.
                                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.prepare_next_turn()));
                            }
                        }
                    }
                    Err(error) => send(Event::Failed { id, message: error.to_string() }),
                }
            }
            Command::Unload => {
                engine = None;
                set_canceller(&engine);
                send(Event::Unloaded);
            }
            Command::Shutdown => break,
        }
    }
}

/// The message of a panic payload (`panic!` carries a `&str` or a `String`).
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}
