//! Chat turns recorded as MLflow traces. When the traces switch is on (Registry view) and a
//! tracking server is connected, every finished reply — the engine's or a remote model's — is
//! handed to a [`TraceSender`], which delivers it in the background: the chat never waits for
//! it. A turn that cannot be delivered is dropped; the first such failure shows one notice, and
//! later ones stay quiet until a trace gets through again.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::AppState;
use crate::{
    engine::GenerateOptions,
    tracking::traces::{ChatTurn, TraceEvent, TraceSender},
};

/// The experiment traces go to when none is named.
pub const DEFAULT_TRACE_EXPERIMENT: &str = "Default";

/// The sender (for one server and experiment) and what it reported.
#[derive(Default)]
pub struct TraceState {
    /// The server's base URL and the experiment the sender delivers to.
    sender: Option<(String, String, TraceSender)>,
    /// Turns handed over and not yet reported.
    pending: usize,
    /// Turns delivered in this session.
    pub sent: usize,
    /// Turns dropped in this session.
    pub dropped: usize,
    /// A failure was shown since the last delivered trace.
    failure_shown: bool,
}

impl TraceState {
    pub fn is_busy(&self) -> bool {
        self.pending > 0
    }

    /// Forgets the sender (a new connection): the next turn starts one for the new client. Its
    /// thread may be sending a turn, so it is let go off the GUI thread.
    pub(super) fn reset(&mut self) {
        if let Some((_, _, sender)) = self.sender.take() {
            let _ = std::thread::Builder::new().name("modeldesk-traces-stop".into()).spawn(move || drop(sender));
        }
        self.pending = 0;
    }
}

/// The search options a request ran with, as the trace's inputs name them (unset ones left out).
pub fn options_json(options: &GenerateOptions) -> Map<String, Value> {
    let mut map = Map::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            map.insert(key.to_owned(), value);
        }
    };
    put("max_tokens", options.max_tokens.map(|v| json!(v)));
    put("max_length", options.max_length.map(|v| json!(v)));
    put("temperature", options.temperature.map(|v| json!(v)));
    put("top_p", options.top_p.map(|v| json!(v)));
    put("top_k", options.top_k.map(|v| json!(v)));
    put("repetition_penalty", options.repetition_penalty.map(|v| json!(v)));
    put("do_sample", options.do_sample.map(|v| json!(v)));
    put("seed", options.seed.map(|v| json!(v)));
    put("stop", Some(json!(options.stop)).filter(|_| !options.stop.is_empty()));
    map
}

impl AppState {
    /// Hands a finished turn to the trace sender, when traces are on and a server is connected.
    pub(super) fn record_chat_turn(&mut self, turn: ChatTurn) {
        let settings = &self.registry.settings;
        if !settings.traces_enabled {
            return;
        }
        let Some(client) = self.registry.client() else { return };
        let experiment = settings.trace_experiment.clone().filter(|e| !e.trim().is_empty()).unwrap_or_else(|| DEFAULT_TRACE_EXPERIMENT.into());
        let server = client.base_url().to_owned();
        let current = self.registry.traces.sender.as_ref().is_some_and(|(s, e, _)| *s == server && *e == experiment);
        if !current {
            let client = client.clone();
            self.registry.traces.reset();
            match TraceSender::spawn(client, experiment.clone(), Arc::new(self.waker())) {
                Ok(sender) => self.registry.traces.sender = Some((server, experiment, sender)),
                Err(e) => return self.notify_error("Chat turns cannot be recorded as traces", Some(e.to_string())),
            }
        }
        if let Some((_, _, sender)) = &self.registry.traces.sender {
            if sender.record(turn) {
                self.registry.traces.pending += 1;
            }
        }
    }

    /// What the trace sender reported.
    pub(super) fn poll_traces(&mut self) {
        let events: Vec<TraceEvent> = match &self.registry.traces.sender {
            Some((_, _, sender)) => std::iter::from_fn(|| sender.try_recv()).collect(),
            None => return,
        };
        for event in events {
            let traces = &mut self.registry.traces;
            traces.pending = traces.pending.saturating_sub(1);
            match event {
                TraceEvent::Sent { .. } => {
                    traces.sent += 1;
                    traces.failure_shown = false;
                }
                TraceEvent::Dropped { message } => {
                    traces.dropped += 1;
                    if !std::mem::replace(&mut traces.failure_shown, true) {
                        self.notify_error("Chat turns are not being recorded in MLflow (the chat goes on)", Some(message));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_options_a_request_set_are_recorded() {
        let options = GenerateOptions { max_tokens: Some(8), temperature: Some(0.5), stop: vec!["<|end|>".into()], ..GenerateOptions::default() };
        assert_eq!(Value::Object(options_json(&options)), json!({"max_tokens": 8, "temperature": 0.5, "stop": ["<|end|>"]}));
        assert!(options_json(&GenerateOptions::default()).is_empty());
    }
}
