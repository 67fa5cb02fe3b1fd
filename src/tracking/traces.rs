//! Chat turns as MLflow traces (`../shared/docs/mlflow-tracking-registry.md` §7): one
//! CHAT_MODEL span per turn with the messages and search options as inputs, the reply as
//! outputs, and token usage under `mlflow.chat.tokenUsage` (what MLflow's UI shows), sent as
//! OTLP/HTTP JSON to `/v1/traces`. The sender is a background service: recording a turn never
//! blocks the chat, and a turn that cannot be delivered is dropped with an event saying why.

use std::{
    sync::{Arc, atomic::AtomicBool, mpsc::Receiver},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use reqwest::Method;
use serde_json::{Value, json};

use super::client::{Result, TrackingClient};
use crate::{
    service::{Outbox, Service, Waker},
    transfer::RetryPolicy,
};

/// One chat turn to record.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatTurn {
    /// The model's name (span name and `model` of the outputs).
    pub model: String,
    /// The conversation sent to the model, `(role, content)`.
    pub messages: Vec<(String, String)>,
    pub reply: String,
    pub finish_reason: String,
    /// The search options used (`max_tokens`, `temperature`, …) as the request carried them.
    pub options: serde_json::Map<String, Value>,
    /// Token counts, when the model reported them (a remote endpoint may not).
    pub tokens: Option<TokenCounts>,
    pub started: SystemTime,
    pub ended: SystemTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCounts {
    pub prompt: usize,
    pub completion: usize,
}

fn nanos(time: SystemTime) -> String {
    time.duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0).to_string()
}

fn string_attribute(key: &str, value: String) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

/// The OTLP JSON body for one turn (hex ids: 32 digits for the trace, 16 for the span).
pub fn otlp_body(turn: &ChatTurn, trace_id: &str, span_id: &str) -> Value {
    let messages: Vec<Value> = turn.messages.iter().map(|(role, content)| json!({"role": role, "content": content})).collect();
    let mut inputs = turn.options.clone();
    inputs.insert("messages".into(), Value::Array(messages));
    let mut outputs = json!({
        "object": "chat.completion", "model": turn.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": turn.reply}, "finish_reason": turn.finish_reason}],
    });
    let mut attributes = vec![
        string_attribute("mlflow.spanType", "CHAT_MODEL".into()),
        string_attribute("mlflow.spanInputs", Value::Object(inputs).to_string()),
    ];
    // Unknown counts are left out rather than reported as zero.
    if let Some(tokens) = turn.tokens {
        let total = tokens.prompt + tokens.completion;
        outputs["usage"] = json!({"prompt_tokens": tokens.prompt, "completion_tokens": tokens.completion, "total_tokens": total});
        let usage = json!({"input_tokens": tokens.prompt, "output_tokens": tokens.completion, "total_tokens": total});
        attributes.push(string_attribute("mlflow.chat.tokenUsage", usage.to_string()));
    }
    attributes.push(string_attribute("mlflow.spanOutputs", outputs.to_string()));
    json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": trace_id, "spanId": span_id, "name": turn.model,
        "startTimeUnixNano": nanos(turn.started), "endTimeUnixNano": nanos(turn.ended),
        "status": {"code": 1},
        "attributes": attributes,
    }]}]}]})
}

/// Sends one turn to `experiment_id`; returns MLflow's trace id (`tr-<hex>`).
pub fn send_turn(client: &TrackingClient, experiment_id: &str, turn: &ChatTurn) -> Result<String> {
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let span_id = trace_id[..16].to_owned();
    let body = otlp_body(turn, &trace_id, &span_id).to_string();
    let url = client.url("/v1/traces");
    let experiment = experiment_id.to_owned();
    let _: Value = client.call_raw("traces", Method::POST, &url, &[("x-mlflow-experiment-id", experiment.as_str()), ("content-type", "application/json")], body)?;
    Ok(format!("tr-{trace_id}"))
}

#[derive(Debug, Clone, PartialEq)]
pub enum TraceEvent {
    Sent { trace_id: String },
    /// The turn was not recorded (server unreachable, experiment refused, …).
    Dropped { message: String },
}

/// Records chat turns in the background. Dropping it waits for the turn being sent, if any;
/// turns still queued are not sent.
pub struct TraceSender {
    service: Service<ChatTurn, TraceEvent>,
}

impl TraceSender {
    /// Traces go to `experiment` (created if missing) on `client`'s server. Delivery is tried
    /// twice at most, so an unreachable server costs seconds, not minutes, and never the chat.
    pub fn spawn(client: TrackingClient, experiment: String, waker: Waker) -> std::io::Result<TraceSender> {
        let client = client
            .with_retry(RetryPolicy { max_attempts: 2, base_delay: Duration::from_millis(200), max_delay: Duration::from_secs(2) })
            .with_cancel(Arc::new(AtomicBool::new(false)));
        let service = Service::spawn("modeldesk-traces", waker, move |turns: Receiver<ChatTurn>, outbox: Outbox<TraceEvent>| {
            let mut experiment_id: Option<String> = None;
            for turn in turns {
                // Dropped: turns still queued are not worth keeping the owner waiting.
                if outbox.cancelled() {
                    break;
                }
                let result = match &experiment_id {
                    Some(id) => send_turn(&client, id, &turn),
                    None => client.get_or_create_experiment(&experiment).and_then(|id| {
                        let sent = send_turn(&client, &id, &turn);
                        experiment_id = Some(id);
                        sent
                    }),
                };
                outbox.send(match result {
                    Ok(trace_id) => TraceEvent::Sent { trace_id },
                    Err(e) => TraceEvent::Dropped { message: format!("the chat turn was not recorded as a trace: {e}") },
                });
            }
        })?;
        Ok(TraceSender { service })
    }

    /// Queues a turn; returns at once.
    pub fn record(&self, turn: ChatTurn) -> bool {
        self.service.send(turn)
    }

    pub fn try_recv(&self) -> Option<TraceEvent> {
        self.service.try_recv()
    }

    pub fn recv_timeout(&self, timeout: Duration) -> Option<TraceEvent> {
        self.service.recv_timeout(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turn_becomes_a_chat_model_span_with_usage() {
        let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let turn = ChatTurn {
            model: "phi3".into(),
            messages: vec![("user".into(), "Hello?".into())],
            reply: "Hi there".into(),
            finish_reason: "stop".into(),
            options: serde_json::from_value(json!({"max_tokens": 16})).unwrap(),
            tokens: Some(TokenCounts { prompt: 12, completion: 5 }),
            started: start,
            ended: start + Duration::from_millis(800),
        };
        let without_usage = otlp_body(&ChatTurn { tokens: None, ..turn.clone() }, &"a".repeat(32), &"b".repeat(16));
        let attributes = without_usage["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"].to_string();
        assert!(!attributes.contains("tokenUsage") && !attributes.contains("prompt_tokens"), "{attributes}");
        let body = otlp_body(&turn, &"a".repeat(32), &"b".repeat(16));
        let span = &body["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["startTimeUnixNano"], "1700000000000000000");
        assert_eq!(span["endTimeUnixNano"], "1700000000800000000");
        let attribute = |key: &str| {
            span["attributes"].as_array().unwrap().iter().find(|a| a["key"] == key).map(|a| a["value"]["stringValue"].as_str().unwrap().to_owned())
        };
        assert_eq!(attribute("mlflow.spanType").as_deref(), Some("CHAT_MODEL"));
        let usage: Value = serde_json::from_str(&attribute("mlflow.chat.tokenUsage").unwrap()).unwrap();
        assert_eq!(usage, json!({"input_tokens": 12, "output_tokens": 5, "total_tokens": 17}));
        let inputs: Value = serde_json::from_str(&attribute("mlflow.spanInputs").unwrap()).unwrap();
        assert_eq!(inputs, json!({"max_tokens": 16, "messages": [{"role": "user", "content": "Hello?"}]}));
    }
}
