//! One chat request to a remote model: an MLflow scoring server (`/invocations` with the
//! `llm/v1/chat` body; MLflow answers a list of `chat.completion` objects, or
//! `{"predictions": …}` for wrapped requests) or an OpenAI-compatible endpoint
//! (`/v1/chat/completions`). Returns the reply's text and, when the server reports it, usage.

use std::sync::atomic::AtomicBool;

use reqwest::{
    blocking::Client,
    header::{AUTHORIZATION, CONTENT_TYPE},
};
use serde_json::{Value, json};

use crate::transfer::{self, RetryPolicy, TransferError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// An MLflow scoring server's invocations URL (`http://127.0.0.1:PORT/invocations`, or a
    /// remote serving endpoint), with an optional bearer token.
    MlflowInvocations { url: String, token: Option<String> },
    /// An OpenAI-compatible server: its base URL (`…/v1`) or the full chat completions URL.
    OpenAi { url: String, api_key: Option<String>, model: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatRequest {
    /// `(role, content)` pairs.
    pub messages: Vec<(String, String)>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    /// Text that ends the reply.
    pub stop: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatReply {
    pub text: String,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error(transparent)]
    Transfer(#[from] TransferError),
    #[error("{url} answered something that is not a chat completion: {reason}")]
    NotAChatReply { url: String, reason: String },
}

fn body(request: &ChatRequest) -> Value {
    let messages: Vec<Value> = request.messages.iter().map(|(role, content)| json!({"role": role, "content": content})).collect();
    let mut body = json!({"messages": messages});
    if let Some(v) = request.max_tokens {
        body["max_tokens"] = json!(v);
    }
    if let Some(v) = request.temperature {
        body["temperature"] = json!(v);
    }
    if let Some(v) = request.top_p {
        body["top_p"] = json!(v);
    }
    if !request.stop.is_empty() {
        body["stop"] = json!(request.stop);
    }
    body
}

/// The chat completion inside whatever shape the server wrapped it in.
pub fn parse_reply(value: &Value) -> Result<ChatReply, String> {
    let completion = match value {
        Value::Array(items) => items.first().ok_or("an empty list")?,
        Value::Object(map) if map.contains_key("predictions") => match &map["predictions"] {
            Value::Array(items) => items.first().ok_or("empty predictions")?,
            other => other,
        },
        other => other,
    };
    let choice = completion.get("choices").and_then(|c| c.get(0)).ok_or("no choices")?;
    let text = choice
        .pointer("/message/content")
        .or_else(|| choice.get("text"))
        .and_then(Value::as_str)
        .ok_or("the first choice has no message content")?
        .to_owned();
    let finish_reason = choice.get("finish_reason").and_then(Value::as_str).map(str::to_owned);
    let usage = completion.get("usage").and_then(|u| {
        Some(Usage {
            prompt_tokens: u.get("prompt_tokens")?.as_u64()?,
            completion_tokens: u.get("completion_tokens")?.as_u64()?,
            total_tokens: u.get("total_tokens")?.as_u64()?,
        })
    });
    Ok(ChatReply { text, finish_reason, usage })
}

/// The model an OpenAI-compatible server serves first (`GET …/models`), for a request that
/// names none; servers that serve one model (ours, llama.cpp, LM Studio with one loaded)
/// refuse any other name.
fn first_served_model(client: &Client, base: &str, api_key: Option<&str>, cancel: &AtomicBool) -> Option<String> {
    let once = RetryPolicy { max_attempts: 1, base_delay: std::time::Duration::ZERO, max_delay: std::time::Duration::ZERO };
    let url = format!("{base}/models");
    let response = transfer::send(&once, cancel, &|| {
        let builder = client.get(&url);
        match api_key {
            Some(key) => builder.header(AUTHORIZATION, format!("Bearer {key}")),
            None => builder,
        }
    })
    .ok()?;
    let listing: Value = response.json().ok()?;
    listing.pointer("/data/0/id")?.as_str().map(str::to_owned)
}

/// Sends one request and waits for the whole reply (MLflow's scoring server does not stream).
pub fn chat(client: &Client, endpoint: &Endpoint, request: &ChatRequest, cancel: &AtomicBool) -> Result<ChatReply, ChatError> {
    let (url, token, mut body) = match endpoint {
        Endpoint::MlflowInvocations { url, token } => (url.clone(), token.clone(), body(request)),
        Endpoint::OpenAi { url, api_key, model } => {
            let trimmed = url.trim_end_matches('/');
            let (base, url) = match trimmed.strip_suffix("/chat/completions") {
                Some(base) => (base.to_owned(), trimmed.to_owned()),
                None => (trimmed.to_owned(), format!("{trimmed}/chat/completions")),
            };
            let mut body = body(request);
            let model = model.clone().or_else(|| first_served_model(client, &base, api_key.as_deref(), cancel)).unwrap_or_else(|| "default".into());
            body["model"] = json!(model);
            (url, api_key.clone(), body)
        }
    };
    if let Value::Object(map) = &mut body {
        map.retain(|_, v| !v.is_null());
    }
    let text = body.to_string();
    // One attempt plus one retry: a chat request is not worth minutes of backoff.
    let policy = RetryPolicy { max_attempts: 2, base_delay: std::time::Duration::from_millis(300), max_delay: std::time::Duration::from_secs(2) };
    let response = transfer::send(&policy, cancel, &|| {
        let mut builder = client.post(&url).header(CONTENT_TYPE, "application/json").body(text.clone());
        if let Some(token) = &token {
            builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        builder
    })?;
    let value: Value = response.json().map_err(|e| ChatError::NotAChatReply { url: url.clone(), reason: e.to_string() })?;
    parse_reply(&value).map_err(|reason| ChatError::NotAChatReply { url, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_found_in_every_wrapping() {
        let completion = json!({"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}});
        for wrapped in [json!([completion.clone()]), json!({"predictions": [completion.clone()]}), completion.clone()] {
            let reply = parse_reply(&wrapped).unwrap();
            assert_eq!(reply.text, "hi");
            assert_eq!(reply.usage, Some(Usage { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 }));
        }
        let no_usage = parse_reply(&json!({"choices": [{"message": {"content": "x"}}]})).unwrap();
        assert_eq!(no_usage.usage, None);
        assert!(parse_reply(&json!({"predictions": ["plain text"]})).unwrap_err().contains("no choices"));
    }
}
