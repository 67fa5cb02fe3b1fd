//! `POST /v1/chat/completions` request bodies: every field checked, each error naming its
//! field, and the options mapped onto the engine's.
//!
//! Mapping rules (README "Local server"):
//! * Options a request leaves out keep the server's base options (the model's defaults).
//! * `temperature: 0` means greedy. A positive `temperature`, or `top_p` / `top_k`, turn
//!   sampling on (OpenAI's models always sample; genai folders often default to greedy).
//! * `max_completion_tokens` wins over `max_tokens`; both count completion tokens only.
//! * `presence_penalty` / `frequency_penalty` are accepted when 0 (what many clients send) and
//!   refused otherwise: genai has only a multiplicative `repetition_penalty`, accepted as an
//!   extension, and a silent approximation would change replies without saying so.
//! * Extensions: `top_k`, `repetition_penalty`, `ignore_eos` (as in llama.cpp and vLLM).
//! * `tools`, `functions`, `response_format` other than text, `logprobs`, `n` > 1 are refused.

use serde_json::{Map, Value};

use super::errors::ApiError;
use crate::engine::{ChatMessage, GenerateOptions};

/// A checked chat completion request.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub model: Option<String>,
    pub messages: Vec<ChatMessage>,
    pub options: GenerateOptions,
    pub stream: bool,
    pub include_usage: bool,
}

/// Most stop strings, as OpenAI allows.
const MAX_STOPS: usize = 4;

/// Parses a request body (already size-checked) against `base` options.
pub fn parse_chat_request(body: &[u8], base: &GenerateOptions) -> Result<ChatRequest, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("The body is not valid JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(ApiError::invalid("The body must be a JSON object."));
    };
    let fields = Fields(&fields);
    refuse_unsupported(&fields)?;
    let model = fields.string("model")?;
    let messages = parse_messages(fields.0.get("messages"), "messages")?;
    let mut options = base.clone();
    overlay_options(&fields, &mut options)?;
    let stream = fields.bool("stream")?.unwrap_or(false);
    let include_usage = match fields.0.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(stream_options)) => Fields(stream_options).bool("include_usage").map_err(|e| ApiError {
            param: Some("stream_options.include_usage".into()),
            ..e
        })?.unwrap_or(false),
        Some(_) => return Err(ApiError::invalid_param("stream_options", "stream_options must be an object.")),
    };
    Ok(ChatRequest { model, messages, options, stream, include_usage })
}

/// Typed access to a JSON object's fields with errors naming the field.
pub(super) struct Fields<'a>(pub &'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    fn wrong(name: &str, expected: &str) -> ApiError {
        ApiError::invalid_param(name, format!("'{name}' must be {expected}."))
    }

    pub fn string(&self, name: &str) -> Result<Option<String>, ApiError> {
        self.get(name).map(|v| v.as_str().map(str::to_owned).ok_or_else(|| Self::wrong(name, "a string"))).transpose()
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        self.get(name).map(|v| v.as_bool().ok_or_else(|| Self::wrong(name, "true or false"))).transpose()
    }

    pub fn number(&self, name: &str) -> Result<Option<f64>, ApiError> {
        self.get(name).map(|v| v.as_f64().ok_or_else(|| Self::wrong(name, "a number"))).transpose()
    }

    pub fn count(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.get(name).map(|v| v.as_u64().ok_or_else(|| Self::wrong(name, "a non-negative integer"))).transpose()
    }

    pub fn integer(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name).map(|v| v.as_i64().ok_or_else(|| Self::wrong(name, "an integer"))).transpose()
    }
}

fn refuse_unsupported(fields: &Fields<'_>) -> Result<(), ApiError> {
    if let Some(n) = fields.count("n")? {
        if n != 1 {
            return Err(ApiError::invalid_param("n", format!("Only n=1 is supported (one reply per request); got n={n}.")));
        }
    }
    for name in ["tools", "functions"] {
        match fields.get(name) {
            Some(Value::Array(list)) if list.is_empty() => {}
            Some(_) => {
                return Err(ApiError::invalid_param(name, format!("'{name}' is not supported: this server has no tool calling.")));
            }
            None => {}
        }
    }
    if let Some(format) = fields.get("response_format") {
        if format.get("type").and_then(Value::as_str) != Some("text") {
            return Err(ApiError::invalid_param(
                "response_format",
                "Only response_format {\"type\": \"text\"} is supported: this server has no constrained decoding.",
            ));
        }
    }
    if fields.bool("logprobs")? == Some(true) || fields.get("top_logprobs").is_some() {
        return Err(ApiError::invalid_param("logprobs", "logprobs are not supported."));
    }
    for name in ["presence_penalty", "frequency_penalty"] {
        if fields.number(name)?.is_some_and(|v| v != 0.0) {
            return Err(ApiError::invalid_param(
                name,
                format!("'{name}' is not supported (only 0); use the 'repetition_penalty' extension (1.0 = off)."),
            ));
        }
    }
    Ok(())
}

/// Overlays the request's generation options on `options`.
pub(super) fn overlay_options(fields: &Fields<'_>, options: &mut GenerateOptions) -> Result<(), ApiError> {
    let max_tokens = match fields.count("max_completion_tokens")? {
        Some(tokens) => Some(("max_completion_tokens", tokens)),
        None => fields.count("max_tokens")?.map(|tokens| ("max_tokens", tokens)),
    };
    if let Some((name, tokens)) = max_tokens {
        if tokens == 0 {
            return Err(ApiError::invalid_param(name, format!("'{name}' must be at least 1.")));
        }
        options.max_tokens = Some(usize::try_from(tokens).unwrap_or(usize::MAX));
    }
    let temperature = fields.number("temperature")?;
    if let Some(t) = temperature {
        if !(0.0..=2.0).contains(&t) {
            return Err(ApiError::invalid_param("temperature", format!("'temperature' must be between 0 and 2; got {t}.")));
        }
    }
    let top_p = fields.number("top_p")?;
    if let Some(p) = top_p {
        if !(p > 0.0 && p <= 1.0) {
            return Err(ApiError::invalid_param("top_p", format!("'top_p' must be above 0 and at most 1; got {p}.")));
        }
    }
    let top_k = fields.count("top_k")?;
    if top_k == Some(0) {
        return Err(ApiError::invalid_param("top_k", "'top_k' must be at least 1."));
    }
    let greedy = temperature == Some(0.0);
    if greedy {
        options.do_sample = Some(false);
    } else if temperature.is_some() || top_p.is_some() || top_k.is_some() {
        options.do_sample = Some(true);
    }
    if let Some(t) = temperature.filter(|t| *t > 0.0) {
        options.temperature = Some(t as f32);
    }
    if let Some(p) = top_p {
        options.top_p = Some(p as f32);
    }
    if let Some(k) = top_k {
        options.top_k = Some(usize::try_from(k).unwrap_or(usize::MAX));
    }
    if let Some(penalty) = fields.number("repetition_penalty")? {
        if penalty <= 0.0 {
            return Err(ApiError::invalid_param("repetition_penalty", "'repetition_penalty' must be above 0 (1.0 = off)."));
        }
        options.repetition_penalty = Some(penalty as f32);
    }
    // llama.cpp's and vLLM's extension: generate exactly max_tokens (benchmarks, tests).
    if let Some(ignore_eos) = fields.bool("ignore_eos")? {
        options.suppress_eos = ignore_eos;
    }
    if let Some(seed) = fields.integer("seed")? {
        options.seed = Some(seed);
    }
    if let Some(stop) = parse_stop(fields.get("stop"))? {
        options.stop = stop;
    }
    Ok(())
}

fn parse_stop(value: Option<&Value>) -> Result<Option<Vec<String>>, ApiError> {
    let wrong = || ApiError::invalid_param("stop", format!("'stop' must be a string or a list of at most {MAX_STOPS} strings."));
    let stops = match value {
        None => return Ok(None),
        Some(Value::String(stop)) => vec![stop.clone()],
        Some(Value::Array(items)) => {
            if items.len() > MAX_STOPS {
                return Err(wrong());
            }
            items.iter().map(|item| item.as_str().map(str::to_owned).ok_or_else(wrong)).collect::<Result<_, _>>()?
        }
        Some(_) => return Err(wrong()),
    };
    Ok(Some(stops.into_iter().filter(|s| !s.is_empty()).collect()))
}

/// Parses `messages`: roles system, developer (as system), user and assistant; content a
/// string or a list of text parts (joined).
pub(super) fn parse_messages(value: Option<&Value>, param: &str) -> Result<Vec<ChatMessage>, ApiError> {
    let Some(Value::Array(items)) = value else {
        return Err(match value {
            None | Some(Value::Null) => ApiError::invalid_param(param, format!("'{param}' is required.")),
            Some(_) => ApiError::invalid_param(param, format!("'{param}' must be a list of messages.")),
        });
    };
    if items.is_empty() {
        return Err(ApiError::invalid_param(param, format!("'{param}' must contain at least one message.")));
    }
    items.iter().enumerate().map(|(index, item)| parse_message(item, &format!("{param}[{index}]"))).collect()
}

fn parse_message(item: &Value, at: &str) -> Result<ChatMessage, ApiError> {
    let Value::Object(fields) = item else {
        return Err(ApiError::invalid_param(at, format!("'{at}' must be an object with 'role' and 'content'.")));
    };
    let role = match fields.get("role") {
        Some(Value::String(role)) => role.as_str(),
        Some(_) => return Err(ApiError::invalid_param(&format!("{at}.role"), format!("'{at}.role' must be a string."))),
        None => return Err(ApiError::invalid_param(&format!("{at}.role"), format!("'{at}.role' is required."))),
    };
    let role = match role {
        "system" | "developer" => "system",
        "user" => "user",
        "assistant" => "assistant",
        "tool" | "function" => {
            return Err(ApiError::invalid_param(
                &format!("{at}.role"),
                format!("'{role}' messages are not supported: this server has no tool calling."),
            ));
        }
        other => {
            return Err(ApiError::invalid_param(
                &format!("{at}.role"),
                format!("Unknown role '{other}' in '{at}': use system, developer, user or assistant."),
            ));
        }
    };
    let content_at = format!("{at}.content");
    let content = match fields.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .enumerate()
            .map(|(index, part)| text_part(part, &format!("{content_at}[{index}]")))
            .collect::<Result<Vec<_>, _>>()?
            .concat(),
        Some(Value::Null) | None => {
            return Err(ApiError::invalid_param(&content_at, format!("'{content_at}' is required (a string or a list of text parts).")));
        }
        Some(_) => {
            return Err(ApiError::invalid_param(&content_at, format!("'{content_at}' must be a string or a list of text parts.")));
        }
    };
    Ok(ChatMessage::new(role, &content))
}

fn text_part(part: &Value, at: &str) -> Result<String, ApiError> {
    match (part.get("type").and_then(Value::as_str), part.get("text")) {
        (Some("text"), Some(Value::String(text))) => Ok(text.clone()),
        (Some("text"), _) => Err(ApiError::invalid_param(&format!("{at}.text"), format!("'{at}.text' must be a string."))),
        (Some(other), _) => Err(ApiError::invalid_param(at, format!("Content parts of type '{other}' are not supported; only text."))),
        (None, _) => Err(ApiError::invalid_param(at, format!("'{at}' must be an object with \"type\": \"text\"."))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(body: Value) -> Result<ChatRequest, ApiError> {
        parse_chat_request(body.to_string().as_bytes(), &GenerateOptions::default())
    }

    fn user(text: &str) -> Value {
        json!([{"role": "user", "content": text}])
    }

    #[test]
    fn text_parts_are_joined_and_developer_is_system() {
        let request = parse(json!({"model": "m", "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}]},
        ]}))
        .unwrap();
        assert_eq!(request.messages, vec![ChatMessage::new("system", "Be brief."), ChatMessage::new("user", "Hello")]);
        assert!(!request.stream);
    }

    #[test]
    fn temperature_zero_is_greedy_and_sampling_fields_turn_sampling_on() {
        let greedy = parse(json!({"messages": user("hi"), "temperature": 0, "top_p": 0.5})).unwrap();
        assert_eq!(greedy.options.do_sample, Some(false));
        let sampled = parse(json!({"messages": user("hi"), "temperature": 0.7, "seed": 5})).unwrap();
        assert_eq!((sampled.options.do_sample, sampled.options.temperature, sampled.options.seed), (Some(true), Some(0.7), Some(5)));
        let untouched = parse(json!({"messages": user("hi")})).unwrap();
        assert_eq!(untouched.options.do_sample, None);
    }

    #[test]
    fn max_completion_tokens_wins_over_max_tokens() {
        let request = parse(json!({"messages": user("hi"), "max_tokens": 9, "max_completion_tokens": 4})).unwrap();
        assert_eq!(request.options.max_tokens, Some(4));
    }

    #[test]
    fn base_options_stay_where_the_request_says_nothing() {
        let base = GenerateOptions { max_tokens: Some(7), temperature: Some(0.3), ..GenerateOptions::default() };
        let request = parse_chat_request(json!({"messages": user("hi"), "seed": 1}).to_string().as_bytes(), &base).unwrap();
        assert_eq!((request.options.max_tokens, request.options.temperature), (Some(7), Some(0.3)));
    }

    #[test]
    fn stop_takes_a_string_or_a_short_list() {
        assert_eq!(parse(json!({"messages": user("hi"), "stop": "x"})).unwrap().options.stop, vec!["x"]);
        assert_eq!(parse(json!({"messages": user("hi"), "stop": ["a", "b"]})).unwrap().options.stop, vec!["a", "b"]);
        let error = parse(json!({"messages": user("hi"), "stop": ["a", "b", "c", "d", "e"]})).unwrap_err();
        assert_eq!(error.param.as_deref(), Some("stop"));
    }

    #[test]
    fn unsupported_and_malformed_fields_are_named() {
        let cases = [
            (json!({"messages": user("hi"), "n": 2}), "n"),
            (json!({"messages": user("hi"), "tools": [{"type": "function"}]}), "tools"),
            (json!({"messages": user("hi"), "response_format": {"type": "json_object"}}), "response_format"),
            (json!({"messages": user("hi"), "presence_penalty": 0.5}), "presence_penalty"),
            (json!({"messages": user("hi"), "temperature": "hot"}), "temperature"),
            (json!({"messages": user("hi"), "max_tokens": 0}), "max_tokens"),
            (json!({"messages": []}), "messages"),
            (json!({"messages": "hi"}), "messages"),
            (json!({}), "messages"),
            (json!({"messages": [{"role": "user"}]}), "messages[0].content"),
            (json!({"messages": [{"role": "tool", "content": "x"}]}), "messages[0].role"),
            (json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}), "messages[0].content[0]"),
            (json!({"messages": user("hi"), "stream_options": {"include_usage": 1}}), "stream_options.include_usage"),
        ];
        for (body, param) in &cases {
            let error = parse(body.clone()).unwrap_err();
            assert_eq!(error.status, 400, "{body}");
            assert_eq!(error.param.as_deref(), Some(*param), "{body}: {}", error.message);
        }
        assert_eq!(cases.len(), 13);
        assert_eq!(parse(json!({"messages": user("hi"), "tools": [], "presence_penalty": 0, "response_format": {"type": "text"}})).map(|_| ()), Ok(()));
    }

    #[test]
    fn malformed_json_and_non_objects_are_400() {
        for body in ["{", "[1]", "\"x\"", ""] {
            let error = parse_chat_request(body.as_bytes(), &GenerateOptions::default()).unwrap_err();
            assert_eq!(error.status, 400, "{body}");
        }
    }
}
