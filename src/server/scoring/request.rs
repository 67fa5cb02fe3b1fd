//! Reading a scoring request as the package's wrapper reads it: the body's rows (every form
//! `mlflow models serve` accepts), the params checked as MLflow checks them, each row's prompt,
//! and its generation options converted as the wrapper's Python converts them.

use serde_json::{Map, Value, json};

use super::ScoringTask;
use crate::{
    engine::{ChatMessage, GenerateOptions, Prompt},
    mlflow::{create::GENERATION_PARAMS, schema::DataType},
    server::errors::{ApiError, Dialect},
};

pub(super) const INPUT_KEYS: [&str; 4] = ["dataframe_split", "dataframe_records", "instances", "inputs"];

pub(super) fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::invalid(message).in_dialect(Dialect::Mlflow)
}

/// What MLflow's own checks refuse before the wrapper runs (params against their schema, the
/// shape of `params`); a failure inside the wrapper is [`bad_request`].
fn invalid_value(message: impl Into<String>) -> ApiError {
    ApiError { code: Some("INVALID_PARAMETER_VALUE"), ..bad_request(message) }
}

/// A request read: its rows, the params that apply to all of them (type-checked), and whether
/// the answer is unwrapped (the unified LLM form).
#[derive(Debug)]
pub(super) struct ScoringRequest {
    pub rows: Vec<Map<String, Value>>,
    pub params: Map<String, Value>,
    pub unwrapped: bool,
}

pub(super) fn rows_of(fields: &Map<String, Value>, task: ScoringTask) -> Result<ScoringRequest, ApiError> {
    if ["messages", "prompt", "input"].iter().any(|key| fields.contains_key(*key)) {
        // Keys the params schema declares are params; a `params` key is a column the wrapper
        // ignores, like every other key it does not know.
        let (params, row): (Map<String, Value>, Map<String, Value>) =
            fields.iter().filter(|(key, _)| *key != "params").map(|(k, v)| (k.clone(), v.clone())).partition(|(key, _)| param_type(key).is_some());
        check_params(&params)?;
        return Ok(ScoringRequest { rows: expand(row, task)?, params, unwrapped: true });
    }
    let present: Vec<&str> = INPUT_KEYS.iter().copied().filter(|key| fields.contains_key(*key)).collect();
    let [key] = present[..] else {
        return Err(bad_request(format!(
            "The input must be a JSON dictionary with exactly one of the input fields {INPUT_KEYS:?}. Received dictionary with input fields: {present:?}."
        )));
    };
    let params = match fields.get("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(params)) => params.clone(),
        Some(_) => return Err(invalid_value("'params' must be a dictionary of parameter names and values.")),
    };
    check_params(&params)?;
    let value = &fields[key];
    let records = match (key, value) {
        ("dataframe_records", _) => records(value, key)?,
        ("dataframe_split", _) => split(value)?,
        ("instances" | "inputs", Value::Array(items)) => return Ok(ScoringRequest { rows: list_rows(items, task)?, params, unwrapped: false }),
        ("inputs", Value::Object(columns)) => vec![columns.clone()],
        ("inputs", Value::String(text)) => vec![text_row(text, task)],
        ("instances", _) => return Err(bad_request("'instances' must be a list.")),
        _ => return Err(bad_request("'inputs' must be a string, a dictionary of columns or a list of rows.")),
    };
    let rows = records.into_iter().map(|record| expand(record, task)).collect::<Result<Vec<_>, _>>()?.concat();
    Ok(ScoringRequest { rows, params, unwrapped: false })
}

/// A bare string: a user message for a chat model, a prompt otherwise.
fn text_row(text: &str, task: ScoringTask) -> Map<String, Value> {
    match task {
        ScoringTask::Chat => Map::from_iter([("messages".to_owned(), json!([{"role": "user", "content": text}]))]),
        _ => Map::from_iter([("prompt".to_owned(), Value::String(text.to_owned()))]),
    }
}

/// The type MLflow checks a param against, for the params the package declares.
fn param_type(name: &str) -> Option<DataType> {
    GENERATION_PARAMS.iter().find(|(known, _)| *known == name).map(|(_, ty)| *ty)
}

/// MLflow's check of params against the schema: a long is a JSON integer, a double any number,
/// a boolean `true` or `false`; null means unset; undeclared params are ignored.
fn check_params(params: &Map<String, Value>) -> Result<(), ApiError> {
    for (name, value) in params {
        let fits = match (param_type(name), value) {
            (None, _) | (_, Value::Null) => true,
            (Some(DataType::Long), Value::Number(number)) => number.is_i64() || number.is_u64(),
            (Some(DataType::Double), Value::Number(_)) => true,
            (Some(DataType::Boolean), Value::Bool(_)) => true,
            _ => false,
        };
        if !fits {
            let ty = param_type(name).map(|ty| ty.name()).unwrap_or_default();
            return Err(invalid_value(format!("Invalid parameters found: '{name}' must be a {ty}, got {value}.")));
        }
    }
    Ok(())
}

fn records(value: &Value, key: &str) -> Result<Vec<Map<String, Value>>, ApiError> {
    let Value::Array(items) = value else { return Err(bad_request(format!("'{key}' must be a list of records."))) };
    items
        .iter()
        .map(|item| item.as_object().cloned().ok_or_else(|| bad_request(format!("Every item of '{key}' must be a record (a JSON object)."))))
        .collect()
}

/// A list as the wrapper reads it: a bare conversation (messages with roles) is one chat row;
/// otherwise records, or strings taken as prompts.
fn list_rows(items: &[Value], task: ScoringTask) -> Result<Vec<Map<String, Value>>, ApiError> {
    let is_message = |item: &Value| item.as_object().is_some_and(|m| m.contains_key("role"));
    if task != ScoringTask::Prompt && !items.is_empty() && items.iter().all(is_message) {
        return Ok(vec![Map::from_iter([("messages".to_owned(), Value::Array(items.to_vec()))])]);
    }
    let mut rows = Vec::new();
    for item in items {
        match item {
            Value::Object(record) => rows.extend(expand(record.clone(), task)?),
            Value::String(text) if task != ScoringTask::Chat => rows.push(text_row(text, ScoringTask::Prompt)),
            other => return Err(bad_request(format!("Cannot read a request from {}.", short(other)))),
        }
    }
    Ok(rows)
}

fn split(value: &Value) -> Result<Vec<Map<String, Value>>, ApiError> {
    let columns: Vec<String> = value
        .get("columns")
        .and_then(Value::as_array)
        .and_then(|c| c.iter().map(|n| n.as_str().map(str::to_owned)).collect())
        .ok_or_else(|| bad_request("'dataframe_split' needs 'columns', a list of names."))?;
    let data = value.get("data").and_then(Value::as_array).ok_or_else(|| bad_request("'dataframe_split' needs 'data', a list of rows."))?;
    data.iter()
        .map(|row| match row.as_array() {
            Some(cells) if cells.len() == columns.len() => Ok(columns.iter().cloned().zip(cells.iter().cloned()).collect()),
            _ => Err(bad_request(format!("Every row of 'dataframe_split.data' must have {} values.", columns.len()))),
        })
        .collect()
}

/// Whether a row is a chat request.
fn is_chat(row: &Map<String, Value>, task: ScoringTask) -> bool {
    match task {
        ScoringTask::Chat => true,
        ScoringTask::Prompt => false,
        ScoringTask::Auto => row.contains_key("messages"),
    }
}

/// One record as the rows it stands for: a prompt (or conversation) is one row; a list of
/// prompts (or of conversations) is one row each, where an option given as a list of the same
/// length is per row and anything else applies to all.
fn expand(record: Map<String, Value>, task: ScoringTask) -> Result<Vec<Map<String, Value>>, ApiError> {
    let chat = is_chat(&record, task);
    let key = if chat { "messages" } else { "prompt" };
    let Some(value) = record.get(key) else {
        let keys: Vec<&String> = record.keys().collect();
        return Err(bad_request(format!("A request needs `{key}`; got the keys {keys:?}.")));
    };
    let count = match value {
        Value::Array(items) if !chat => items.len(),
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_array) => items.len(),
        _ => return Ok(vec![record]),
    };
    Ok((0..count)
        .map(|index| {
            record
                .iter()
                .map(|(name, item)| match item {
                    Value::Array(cells) if name == key || cells.len() == count => (name.clone(), cells[index].clone()),
                    other => (name.clone(), other.clone()),
                })
                .collect()
        })
        .collect())
}

/// A value for an error message, cut short.
fn short(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// A row's prompt; `true` when it is a chat row.
pub(super) fn read_prompt(row: &Map<String, Value>, task: ScoringTask) -> Result<(Prompt, bool), ApiError> {
    if !is_chat(row, task) {
        return match row.get("prompt") {
            Some(Value::String(text)) => Ok((Prompt::Raw(text.clone()), false)),
            Some(other) => Err(bad_request(format!("A prompt must be text, got {}.", short(other)))),
            None => Err(bad_request("A request needs `prompt`.")),
        };
    }
    let Some(Value::Array(items)) = row.get("messages") else {
        return Err(bad_request("`messages` must be a list of {role, content} objects."));
    };
    let messages = items
        .iter()
        .map(|item| {
            let role = item.get("role").and_then(Value::as_str).ok_or_else(|| bad_request("`messages` must be a list of {role, content} objects."))?;
            let content = match item.get("content") {
                None | Some(Value::Null) => "",
                Some(Value::String(text)) => text.as_str(),
                Some(other) => return Err(bad_request(format!("A message's `content` must be text, got {}.", short(other)))),
            };
            Ok(ChatMessage::new(role, content))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok((Prompt::Chat(messages), true))
}

/// A row's generation options as the wrapper's `_options` reads them: the params, then the
/// row's own values (null means unset), converted with Python's `int`, `float` and `bool`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct RowOptions {
    max_tokens: Option<i64>,
    max_length: Option<i64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<i64>,
    do_sample: Option<bool>,
    repetition_penalty: Option<f64>,
    seed: Option<i64>,
}

impl RowOptions {
    pub(super) fn read(params: &Map<String, Value>, row: &Map<String, Value>) -> Result<RowOptions, ApiError> {
        let value = |name: &str| {
            let from_row = row.get(name).filter(|v| !v.is_null());
            from_row.or_else(|| params.get(name).filter(|v| !v.is_null()))
        };
        let int = |name: &str| value(name).map(|v| python_int(v).ok_or_else(|| not_convertible(name, "an integer", v))).transpose();
        let float = |name: &str| value(name).map(|v| python_float(v).ok_or_else(|| not_convertible(name, "a number", v))).transpose();
        Ok(RowOptions {
            max_tokens: int("max_tokens")?,
            max_length: int("max_length")?,
            temperature: float("temperature")?,
            top_p: float("top_p")?,
            top_k: int("top_k")?,
            do_sample: value("do_sample").map(python_bool),
            repetition_penalty: float("repetition_penalty")?,
            seed: int("seed")?,
        })
    }

    /// Everything but the length limit laid over `base`.
    pub(super) fn apply(&self, base: &GenerateOptions) -> Result<GenerateOptions, ApiError> {
        let top_k = self.top_k.map(|k| usize::try_from(k).map_err(|_| bad_request(format!("`top_k` must be zero or more, got {k}.")))).transpose()?;
        let row = GenerateOptions {
            temperature: self.temperature.map(|t| t as f32),
            top_p: self.top_p.map(|p| p as f32),
            top_k,
            do_sample: self.do_sample,
            repetition_penalty: self.repetition_penalty.map(|r| r as f32),
            seed: self.seed,
            kv_mode: base.kv_mode,
            ..GenerateOptions::default()
        };
        Ok(crate::session::layer(base, &row))
    }

    /// The wrapper's length limit (prompt + completion): `max_length` (0 or none: the
    /// context length), tightened by `max_tokens` after the prompt. May be at or below the
    /// prompt's length, which answers an empty reply.
    pub(super) fn limit(&self, base: &GenerateOptions, prompt_tokens: usize, context_length: usize) -> i64 {
        let configured = self.max_length.or(base.max_length.map(|v| v as i64)).filter(|v| *v != 0);
        let limit = configured.unwrap_or(context_length as i64);
        match self.max_tokens.or(base.max_tokens.map(|v| v as i64)) {
            Some(tokens) => limit.min((prompt_tokens as i64).saturating_add(tokens)),
            None => limit,
        }
    }
}

fn not_convertible(name: &str, kind: &str, value: &Value) -> ApiError {
    bad_request(format!("`{name}` must be {kind}, got {}.", short(value)))
}

/// Python's `int(value)`: integers, floats truncated toward zero, booleans, and text holding an
/// integer (surrounding spaces and `_` between digits allowed).
fn python_int(value: &Value) -> Option<i64> {
    match value {
        Value::Bool(flag) => Some(i64::from(*flag)),
        Value::Number(number) => number.as_i64().or_else(|| number.as_f64().filter(|f| f.is_finite() && f.abs() < 9.2e18).map(|f| f.trunc() as i64)),
        Value::String(text) => {
            let text = text.trim();
            let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
            let well_placed = !digits.starts_with('_') && !digits.ends_with('_') && !digits.contains("__");
            if !well_placed {
                return None;
            }
            text.replace('_', "").parse().ok()
        }
        _ => None,
    }
}

/// Python's `float(value)`: numbers, booleans, and text holding a number.
fn python_float(value: &Value) -> Option<f64> {
    match value {
        Value::Bool(flag) => Some(f64::from(u8::from(*flag))),
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

/// Python's `bool(value)`: false for `false`, zero, empty text, an empty list or dictionary.
fn python_bool(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(flag) => *flag,
        Value::Number(number) => number.as_f64().is_some_and(|f| f != 0.0),
        Value::String(text) => !text.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(fields) => !fields.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn every_wrapper_gives_the_same_rows() {
        let row = json!({"prompt": "a"});
        let bodies = [
            json!({"dataframe_records": [{"prompt": "a"}, {"prompt": "b"}]}),
            json!({"dataframe_split": {"columns": ["prompt"], "data": [["a"], ["b"]]}}),
            json!({"instances": ["a", "b"]}),
            json!({"instances": [{"prompt": "a"}, {"prompt": "b"}]}),
            json!({"inputs": {"prompt": ["a", "b"]}}),
            json!({"inputs": ["a", "b"], "params": {"max_tokens": 3}}),
            json!({"prompt": ["a", "b"]}),
        ];
        for body in &bodies {
            let request = rows_of(&object(body.clone()), ScoringTask::Prompt).unwrap();
            assert_eq!(request.unwrapped, body.get("prompt").is_some(), "{body}");
            assert_eq!(request.rows.len(), 2, "{body}");
            assert_eq!(Value::Object(request.rows[0].clone()), row, "{body}");
        }
        assert_eq!(bodies.len(), 7);
    }

    #[test]
    fn unified_keys_of_the_params_schema_are_params_and_a_params_key_is_ignored() {
        let body = json!({"messages": [], "max_tokens": 3, "seed": 2, "stream": true, "params": {"max_tokens": 9}});
        let request = rows_of(&object(body), ScoringTask::Chat).unwrap();
        assert!(request.unwrapped);
        assert_eq!(Value::Object(request.params), json!({"max_tokens": 3, "seed": 2}));
        assert_eq!(Value::Object(request.rows[0].clone()), json!({"messages": [], "stream": true}));
        let conversation = json!([{"role": "user", "content": "x"}]);
        let request = rows_of(&object(json!({"inputs": {"messages": conversation}})), ScoringTask::Chat).unwrap();
        assert_eq!(request.rows.len(), 1);
        let request = rows_of(&object(json!({"inputs": conversation})), ScoringTask::Chat).unwrap();
        assert_eq!(Value::Object(request.rows[0].clone()), json!({"messages": conversation}));
    }

    #[test]
    fn params_are_checked_against_their_types_as_mlflow_checks_them() {
        let accepted = [json!({"max_tokens": 3}), json!({"temperature": 1}), json!({"do_sample": false}), json!({"seed": null}), json!({"unknown": "x"})];
        for params in &accepted {
            assert!(check_params(params.as_object().unwrap()).is_ok(), "{params}");
        }
        let refused = [json!({"max_tokens": 2.5}), json!({"max_tokens": 5.0}), json!({"max_tokens": "5"}), json!({"max_tokens": true}), json!({"do_sample": 1}), json!({"temperature": "hot"})];
        for params in &refused {
            let error = check_params(params.as_object().unwrap()).unwrap_err();
            assert_eq!(error.code, Some("INVALID_PARAMETER_VALUE"), "{params}");
        }
        assert_eq!((accepted.len(), refused.len()), (5, 6));
    }

    #[test]
    fn several_prompts_expand_with_per_row_options() {
        let record = object(json!({"prompt": ["a", "b"], "max_tokens": [2, 3], "temperature": [0.5], "top_k": 4}));
        let rows = expand(record, ScoringTask::Prompt).unwrap();
        assert_eq!(Value::Array(rows.into_iter().map(Value::Object).collect()), json!([
            {"prompt": "a", "max_tokens": 2, "temperature": [0.5], "top_k": 4},
            {"prompt": "b", "max_tokens": 3, "temperature": [0.5], "top_k": 4},
        ]));
        assert!(expand(object(json!({"prompt": []})), ScoringTask::Prompt).unwrap().is_empty());
        let missing = expand(object(json!({"text": "a"})), ScoringTask::Prompt).unwrap_err();
        assert_eq!((missing.status, missing.code), (axum::http::StatusCode::BAD_REQUEST, None), "a wrapper failure is MLflow's BAD_REQUEST");
    }

    #[test]
    fn row_values_win_over_params_converted_as_python_converts_them() {
        let params = object(json!({"max_tokens": 9, "temperature": 0.5, "seed": 4}));
        let row = object(json!({"messages": [], "max_tokens": "3", "do_sample": "false", "top_k": 2.9, "temperature": null}));
        let options = RowOptions::read(&params, &row).unwrap();
        let expected =
            RowOptions { max_tokens: Some(3), temperature: Some(0.5), top_k: Some(2), do_sample: Some(true), seed: Some(4), ..RowOptions::default() };
        assert_eq!(options, expected);
        for bad in [json!({"max_tokens": "x"}), json!({"max_tokens": "2.5"}), json!({"temperature": "hot"}), json!({"seed": [1]})] {
            let error = RowOptions::read(&Map::new(), &object(bad.clone())).unwrap_err();
            assert_eq!((error.status, error.code), (axum::http::StatusCode::BAD_REQUEST, None), "{bad}: a wrapper failure is MLflow's BAD_REQUEST");
        }
        assert_eq!(python_int(&json!(" -1_000 ")), Some(-1000));
        assert_eq!(python_int(&json!("1__0")), None);
        assert_eq!(python_int(&json!(-2.7)), Some(-2));
        assert!(!python_bool(&json!(0)) && python_bool(&json!("false")) && !python_bool(&json!([])));
    }

    #[test]
    fn the_limit_leaves_no_room_as_the_wrapper_computes_it() {
        let base = GenerateOptions::default();
        let limit = |options: RowOptions| options.limit(&base, 4, 128);
        assert_eq!(limit(RowOptions::default()), 128);
        assert_eq!(limit(RowOptions { max_length: Some(0), ..RowOptions::default() }), 128);
        assert_eq!(limit(RowOptions { max_tokens: Some(5), ..RowOptions::default() }), 9);
        assert_eq!(limit(RowOptions { max_tokens: Some(-1), ..RowOptions::default() }), 3);
        assert_eq!(limit(RowOptions { max_length: Some(2), max_tokens: Some(5), ..RowOptions::default() }), 2);
    }
}
