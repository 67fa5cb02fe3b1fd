//! Generation over HTTP: checking a prompt against the window before it is queued, submitting
//! to the engine queue with a guard that cancels on drop (so a client that goes away, queued or
//! mid-stream, stops its generation), and the `POST /v1/chat/completions` handler.

use std::{
    convert::Infallible,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Json,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::{
    AppState, RequestLogEntry,
    errors::ApiError,
    http::{GenerationInfo, StreamLogged, read_body},
    openai::parse_chat_request,
    sse::{ChunkWriter, ReplyIdentity, completion_object, error_event, finish_reason},
};
use crate::{
    engine::{Completion, ContextPolicy, FinishReason, GenerateOptions, Prompt, generate},
    engine_queue::{LoadedModel, Request, RequestEvent, SubmitError, Ticket},
};

/// Cancels its request when dropped: the handler or stream that owned it has gone away.
pub(super) struct TicketGuard(Ticket);

impl Drop for TicketGuard {
    fn drop(&mut self) {
        // A finished request ignores this.
        self.0.cancel();
    }
}

/// A request in the queue and its events.
pub(super) struct Submitted {
    _guard: TicketGuard,
    pub events: UnboundedReceiver<RequestEvent>,
    pub prompt_tokens: usize,
}

impl Submitted {
    /// Stops the request (queued: never starts; running: within a step).
    pub fn cancel(&self) {
        self._guard.0.cancel();
    }

    /// After a cancel: waits (briefly) for the engine's last word, to log what was generated.
    async fn stopped_tokens(&mut self) -> Option<usize> {
        let wait = async {
            while let Some(event) = self.events.recv().await {
                match event {
                    RequestEvent::Finished(completion) => return Some(completion.usage.completion_tokens),
                    RequestEvent::Failed(_) | RequestEvent::Cancelled => return None,
                    RequestEvent::Started { .. } | RequestEvent::Chunk { .. } => {}
                }
            }
            None
        };
        tokio::time::timeout(Duration::from_secs(10), wait).await.ok().flatten()
    }
}

/// The model ready to serve, or 503.
pub(super) fn loaded_model(state: &AppState) -> Result<Arc<LoadedModel>, ApiError> {
    state.queue.model().ok_or_else(|| ApiError::unavailable("No model is loaded."))
}

/// The prompt's token count as the engine encodes it.
pub(super) async fn count_prompt_tokens(model: Arc<LoadedModel>, prompt: Prompt) -> Result<usize, ApiError> {
    let work = tokio::task::spawn_blocking(move || model.prompt_ids(&prompt).map(|ids| ids.len()).map_err(|e| ApiError::invalid(e.to_string())));
    work.await.map_err(|e| ApiError::internal(format!("counting the prompt's tokens failed: {e}")))?
}

/// Encodes the prompt as the engine will and refuses it when it leaves no room for a reply.
/// Returns the prompt's token count.
pub(super) async fn check_prompt(model: Arc<LoadedModel>, prompt: Prompt, options: GenerateOptions) -> Result<usize, ApiError> {
    let work = tokio::task::spawn_blocking(move || {
        let facts = &model.facts;
        let resolved = generate::resolve(&options, &facts.search, facts.default_max_length, facts.context_length)
            .map_err(|e| ApiError::invalid(e.to_string()))?;
        let ids = model.prompt_ids(&prompt).map_err(|e| ApiError::invalid(e.to_string()))?;
        if ids.is_empty() {
            return Err(ApiError::invalid("The prompt is empty."));
        }
        if ids.len() >= resolved.max_length {
            return Err(ApiError::context_length_exceeded(ids.len(), resolved.max_length));
        }
        Ok(ids.len())
    });
    work.await.map_err(|e| ApiError::internal(format!("checking the prompt failed: {e}")))?
}

/// Checks and queues a prompt.
pub(super) async fn submit(state: &AppState, prompt: Prompt, options: GenerateOptions) -> Result<Submitted, ApiError> {
    let model = loaded_model(state)?;
    let prompt_tokens = check_prompt(model, prompt.clone(), options.clone()).await?;
    enqueue(state, prompt, options, prompt_tokens)
}

/// Queues a prompt the caller has already encoded (`prompt_tokens` long, not empty) and found to
/// leave room for a reply within the options' length limit.
pub(super) fn enqueue(state: &AppState, prompt: Prompt, options: GenerateOptions, prompt_tokens: usize) -> Result<Submitted, ApiError> {
    let (tx, events) = unbounded_channel();
    let request = Request { prompt, options, policy: ContextPolicy::Refuse };
    let ticket = state
        .queue
        .submit(request, Box::new(move |event| {
            let _ = tx.send(event);
        }))
        .map_err(|error| match error {
            SubmitError::Full { queued, .. } => ApiError::queue_full(queued),
            SubmitError::NoModel => ApiError::unavailable("No model is loaded."),
            SubmitError::Closed => ApiError::unavailable("The server is shutting down."),
        })?;
    Ok(Submitted { _guard: TicketGuard(ticket), events, prompt_tokens })
}

/// The request's next event, or 503 when the server shuts down first.
async fn next_event(state: &AppState, submitted: &mut Submitted) -> Result<Option<RequestEvent>, ApiError> {
    let mut shutdown = state.shutdown.clone();
    tokio::select! {
        event = submitted.events.recv() => Ok(event),
        _ = shutdown.wait_for(|stop| *stop) => Err(ApiError::unavailable("The server is shutting down.")),
    }
}

/// Waits for a queued request to start (or fail), giving up on shutdown.
pub(super) async fn wait_started(state: &AppState, submitted: &mut Submitted) -> Result<Duration, ApiError> {
    loop {
        let event = next_event(state, submitted).await?;
        match event {
            Some(RequestEvent::Started { queue_wait, .. }) => return Ok(queue_wait),
            Some(RequestEvent::Failed(message)) => return Err(ApiError::internal(message)),
            Some(RequestEvent::Cancelled) | None => {
                return Err(ApiError::unavailable("The request was dropped: the model was changed or the server is shutting down."));
            }
            Some(RequestEvent::Chunk { .. } | RequestEvent::Finished(_)) => {
                return Err(ApiError::internal("the engine answered out of order"));
            }
        }
    }
}

/// A finished generation with its timings.
pub(super) struct Generated {
    pub completion: Completion,
    pub info: GenerationInfo,
}

/// Runs a queued request to its end (non-streaming callers).
pub(super) async fn run_to_end(state: &AppState, mut submitted: Submitted, arrived: Instant) -> Result<Generated, ApiError> {
    let queue_wait = wait_started(state, &mut submitted).await?;
    let mut first_token = None;
    loop {
        let event = next_event(state, &mut submitted).await?;
        match event {
            Some(RequestEvent::Chunk { .. }) => {
                first_token.get_or_insert_with(|| arrived.elapsed());
            }
            Some(RequestEvent::Finished(completion)) => {
                if completion.finish_reason == FinishReason::Cancelled {
                    return Err(ApiError::unavailable("The reply was stopped: the model was changed or the server is shutting down."));
                }
                let info = GenerationInfo::new(&completion, queue_wait, first_token);
                return Ok(Generated { completion: *completion, info });
            }
            Some(RequestEvent::Failed(message)) => return Err(ApiError::internal(message)),
            Some(RequestEvent::Cancelled) | None => return Err(ApiError::unavailable("The request was dropped.")),
            Some(RequestEvent::Started { .. }) => {}
        }
    }
}

/// `POST /v1/chat/completions`.
pub(super) async fn chat_completions(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    let bytes = read_body(&headers, body, state.config.body_limit).await?;
    let request = parse_chat_request(&bytes, &state.config.base)?;
    let model = loaded_model(&state)?;
    let model_id = model.facts.name.clone();
    if let Some(requested) = request.model.as_deref() {
        if requested != model_id {
            return Err(ApiError::model_not_found(requested, &model_id));
        }
    }
    drop(model);
    let mut submitted = submit(&state, Prompt::Chat(request.messages), request.options).await?;
    let identity = ReplyIdentity::new(&model_id);
    if !request.stream {
        let generated = run_to_end(&state, submitted, arrived).await?;
        let mut response = Json(completion_object(&identity, &generated.completion)).into_response();
        response.extensions_mut().insert(generated.info);
        return Ok(response);
    }
    // Everything that can fail with a status fails before the headers go out.
    let queue_wait = wait_started(&state, &mut submitted).await?;
    let writer = ChunkWriter::new(identity, request.include_usage);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(32);
    let log = StreamLog { arrived, time: std::time::SystemTime::now(), queue_wait, prompt_tokens: submitted.prompt_tokens };
    tokio::spawn(stream_reply(Arc::clone(&state), submitted, writer, tx, log));
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|bytes| (Ok::<_, Infallible>(bytes), rx))
    }));
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")],
        body,
    )
        .into_response();
    response.extensions_mut().insert(StreamLogged);
    Ok(response)
}

const SHUTTING_DOWN: &str = "The server is shutting down.";
const CLIENT_GONE: &str = "the client went away";

struct StreamLog {
    arrived: Instant,
    time: std::time::SystemTime,
    queue_wait: Duration,
    prompt_tokens: usize,
}

/// Feeds one stream; ends when the reply does, the client goes away, or the server stops.
async fn stream_reply(
    state: Arc<AppState>,
    mut submitted: Submitted,
    writer: ChunkWriter,
    tx: tokio::sync::mpsc::Sender<Bytes>,
    log: StreamLog,
) {
    let mut shutdown = state.shutdown.clone();
    let mut first_token = None;
    let mut completion_tokens = None;
    let mut error = None;
    let mut outgoing = vec![writer.role()];
    'stream: loop {
        for bytes in outgoing.drain(..) {
            // A client that stops reading must not keep shutdown waiting.
            let sent = tokio::select! {
                sent = tx.send(bytes) => sent.is_ok(),
                _ = shutdown.wait_for(|stop| *stop) => {
                    error = Some(SHUTTING_DOWN.to_owned());
                    break 'stream;
                }
            };
            if !sent {
                error = Some(CLIENT_GONE.to_owned());
                break 'stream;
            }
        }
        if error.is_some() || completion_tokens.is_some() {
            break;
        }
        let event = tokio::select! {
            event = submitted.events.recv() => event,
            _ = tx.closed() => {
                error = Some(CLIENT_GONE.to_owned());
                break;
            }
            _ = shutdown.wait_for(|stop| *stop) => {
                error = Some(SHUTTING_DOWN.to_owned());
                break;
            }
        };
        match event {
            Some(RequestEvent::Chunk { text, .. }) => {
                first_token.get_or_insert_with(|| log.arrived.elapsed());
                if !text.is_empty() {
                    outgoing.push(writer.content(&text));
                }
            }
            Some(RequestEvent::Finished(completion)) => match finish_reason(completion.finish_reason) {
                Some(reason) => {
                    completion_tokens = Some(completion.usage.completion_tokens);
                    outgoing.extend(writer.finish(reason, &completion.usage));
                }
                None => {
                    let message = "The reply was stopped: the model was changed or the server is shutting down.";
                    error = Some(message.to_owned());
                    outgoing.push(error_event(message));
                }
            },
            Some(RequestEvent::Failed(message)) => {
                outgoing.push(error_event(&message));
                error = Some(message);
            }
            Some(RequestEvent::Cancelled) | None => {
                let message = "The request was dropped.";
                error = Some(message.to_owned());
                outgoing.push(error_event(message));
            }
            Some(RequestEvent::Started { .. }) => {}
        }
    }
    if error.as_deref() == Some(SHUTTING_DOWN) {
        submitted.cancel();
        // The error event goes out as soon as the client reads; a client that does not read
        // within a moment loses it rather than holding shutdown up.
        let _ = tokio::time::timeout(Duration::from_secs(2), tx.send(error_event(SHUTTING_DOWN))).await;
    }
    if completion_tokens.is_none() {
        // Stopped early (client gone, shutdown, failure): log how far the engine got.
        submitted.cancel();
        completion_tokens = submitted.stopped_tokens().await;
    }
    drop(submitted);
    state.log.record(RequestLogEntry {
        time: log.time,
        method: "POST".into(),
        endpoint: "/v1/chat/completions".into(),
        status: 200,
        prompt_tokens: Some(log.prompt_tokens),
        completion_tokens,
        duration: log.arrived.elapsed(),
        queue_wait: Some(log.queue_wait),
        time_to_first_token: first_token,
        error,
    });
}
