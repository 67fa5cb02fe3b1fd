//! `chat.completion` objects and the `chat.completion.chunk` events of a stream, in the exact
//! shape the official `openai` client parses (see `../shared/docs/local-server.md` §2–3).

use axum::body::Bytes;
use serde_json::{Value, json};

use crate::engine::{Completion, FinishReason, Usage};

/// What every chunk of one reply repeats.
#[derive(Debug, Clone)]
pub struct ReplyIdentity {
    pub id: String,
    pub created: u64,
    pub model: String,
}

impl ReplyIdentity {
    pub fn new(model: &str) -> Self {
        let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        Self { id: format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()), created, model: model.to_owned() }
    }
}

/// OpenAI's name for why a reply ended; a stopped reply has none (it is reported as an error).
pub fn finish_reason(reason: FinishReason) -> Option<&'static str> {
    match reason {
        FinishReason::Stop => Some("stop"),
        FinishReason::Length => Some("length"),
        FinishReason::Cancelled => None,
    }
}

/// `usage` as OpenAI writes it, with `prompt_tokens_details.cached_tokens` when the engine
/// reused part of the prompt from its KV cache.
pub fn usage_json(usage: &Usage) -> Value {
    usage.openai_json()
}

/// A non-streamed `chat.completion`.
pub fn completion_object(identity: &ReplyIdentity, completion: &Completion) -> Value {
    json!({
        "id": identity.id,
        "object": "chat.completion",
        "created": identity.created,
        "model": identity.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": completion.text},
            "finish_reason": finish_reason(completion.finish_reason).unwrap_or("stop"),
            "logprobs": null,
        }],
        "usage": usage_json(&completion.usage),
    })
}

/// Builds the events of one stream.
pub struct ChunkWriter {
    identity: ReplyIdentity,
    include_usage: bool,
}

impl ChunkWriter {
    pub fn new(identity: ReplyIdentity, include_usage: bool) -> Self {
        Self { identity, include_usage }
    }

    fn chunk(&self, choices: Value, usage: Option<Value>) -> Bytes {
        let mut chunk = json!({
            "id": self.identity.id,
            "object": "chat.completion.chunk",
            "created": self.identity.created,
            "model": self.identity.model,
            "choices": choices,
        });
        // With include_usage every chunk carries `usage` (null but in the last one).
        if self.include_usage {
            chunk["usage"] = usage.unwrap_or(Value::Null);
        }
        event(&chunk)
    }

    /// The first event: the role, with empty content.
    pub fn role(&self) -> Bytes {
        self.chunk(json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]), None)
    }

    pub fn content(&self, text: &str) -> Bytes {
        self.chunk(json!([{"index": 0, "delta": {"content": text}, "logprobs": null, "finish_reason": null}]), None)
    }

    /// The end: the finish chunk, the usage chunk when asked for, then `[DONE]`.
    pub fn finish(&self, reason: &str, usage: &Usage) -> Vec<Bytes> {
        let mut events = vec![self.chunk(json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": reason}]), None)];
        if self.include_usage {
            events.push(self.chunk(json!([]), Some(usage_json(usage))));
        }
        events.push(Bytes::from_static(b"data: [DONE]\n\n"));
        events
    }
}

/// The only way to fail after the 200: a chunk with an `error` object, which the client raises.
pub fn error_event(message: &str) -> Bytes {
    event(&json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}}))
}

fn event(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(event: &Bytes) -> Value {
        let text = std::str::from_utf8(event).unwrap();
        let data = text.strip_prefix("data: ").and_then(|t| t.strip_suffix("\n\n")).unwrap();
        serde_json::from_str(data).unwrap()
    }

    fn identity() -> ReplyIdentity {
        ReplyIdentity { id: "chatcmpl-1".into(), created: 5, model: "m".into() }
    }

    #[test]
    fn a_stream_with_usage_ends_with_a_usage_chunk_and_done() {
        let writer = ChunkWriter::new(identity(), true);
        let role = parse(&writer.role());
        assert_eq!(role["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
        assert_eq!(role["usage"], Value::Null);
        assert_eq!(role["object"], "chat.completion.chunk");
        let usage = Usage { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5, cached_tokens: 0 };
        let end = writer.finish("stop", &usage);
        assert_eq!(end.len(), 3);
        assert_eq!(parse(&end[0])["choices"][0]["finish_reason"], "stop");
        assert_eq!(parse(&end[1])["choices"], json!([]));
        assert_eq!(parse(&end[1])["usage"]["total_tokens"], 5);
        assert_eq!(&end[2][..], b"data: [DONE]\n\n");
    }

    #[test]
    fn without_include_usage_no_chunk_has_usage() {
        let writer = ChunkWriter::new(identity(), false);
        assert!(parse(&writer.content("hi")).get("usage").is_none());
        let end = writer.finish("length", &Usage::default());
        assert_eq!(end.len(), 2);
        assert!(parse(&end[0]).get("usage").is_none());
    }

    #[test]
    fn content_with_newlines_stays_one_data_line() {
        let writer = ChunkWriter::new(identity(), false);
        let event = writer.content("a\nb\r\n");
        assert_eq!(std::str::from_utf8(&event).unwrap().matches('\n').count(), 2);
        assert_eq!(parse(&event)["choices"][0]["delta"]["content"], "a\nb\r\n");
    }
}
