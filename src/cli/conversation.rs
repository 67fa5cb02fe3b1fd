//! `modeldesk generate --conversation FILE`: several turns answered in one process, each reply
//! appended before the next turn, so every turn after the first reuses the KV cache.

use std::{io::Read as _, path::Path, sync::atomic::AtomicBool};

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;
use serde_json::json;

use super::generate::metrics_json;
use crate::engine::{ChatMessage, ContextPolicy, Engine, GenerateOptions, Prompt};

/// Conversation files are small; anything bigger is a mistake, not a chat.
const MAX_CONVERSATION_BYTES: u64 = 16 * 1024 * 1024;

/// One entry of the file: a user turn as a plain string, or a message with a role (a system
/// prompt first, or a user turn).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Entry {
    User(String),
    Message(ChatMessage),
}

/// The system prompt (if any) and the user turns of a conversation file.
#[derive(Debug, PartialEq)]
pub struct Script {
    pub system: Option<String>,
    pub turns: Vec<String>,
}

/// Reads a conversation file: a JSON list of user turns, optionally preceded by a system prompt.
pub fn read_script(path: &Path) -> Result<Script> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let metadata = file.metadata().with_context(|| format!("cannot read {}", path.display()))?;
    if !metadata.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    let mut text = String::new();
    file.take(MAX_CONVERSATION_BYTES + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("{} is not UTF-8 text", path.display()))?;
    if text.len() as u64 > MAX_CONVERSATION_BYTES {
        bail!("{} is larger than {} MB", path.display(), MAX_CONVERSATION_BYTES / (1024 * 1024));
    }
    parse_script(&text).with_context(|| format!("in {}", path.display()))
}

fn parse_script(text: &str) -> Result<Script> {
    let entries: Vec<Entry> =
        serde_json::from_str(text).context("expected a JSON list of user turns (strings), optionally after {\"role\": \"system\", \"content\": …}")?;
    let mut script = Script { system: None, turns: Vec::new() };
    for (index, entry) in entries.into_iter().enumerate() {
        match entry {
            Entry::User(content) => script.turns.push(content),
            Entry::Message(message) if message.role == "user" => script.turns.push(message.content),
            Entry::Message(message) if message.role == "system" && index == 0 => script.system = Some(message.content),
            Entry::Message(message) => {
                bail!("entry {index} has role `{}`; only a first system prompt and user turns are allowed", message.role)
            }
        }
    }
    if script.turns.is_empty() {
        bail!("the conversation has no user turn");
    }
    Ok(script)
}

/// Answers every turn of the file in order; prints each reply (or one JSON object per line).
pub fn run(engine: &mut Engine, path: &Path, options: &GenerateOptions, as_json: bool) -> Result<()> {
    let script = read_script(path)?;
    let mut messages: Vec<ChatMessage> = script.system.iter().map(|s| ChatMessage::new("system", s)).collect();
    let cancel = AtomicBool::new(false);
    for (index, turn) in script.turns.iter().enumerate() {
        messages.push(ChatMessage::new("user", turn));
        let (_, completion) = engine
            .generate(&Prompt::Chat(messages.clone()), options, ContextPolicy::Refuse, &cancel, &mut |_| {})
            .with_context(|| format!("turn {}", index + 1))?;
        if as_json {
            let line = json!({
                "turn": index + 1,
                "text": completion.text,
                "finish_reason": completion.finish_reason.as_str(),
                "token_ids": {"prompt": completion.prompt_ids, "completion": completion.completion_ids},
                "reused_tokens": completion.usage.cached_tokens,
                "usage": completion.usage.openai_json(),
                "metrics": metrics_json(&completion),
            });
            println!("{line}");
        } else {
            println!("[{}] {}\n{}", index + 1, turn, completion.text);
            eprintln!(
                "[turn {}: {} prompt tokens ({} reused) + {} completion · finish: {} · first token {:.0} ms]",
                index + 1,
                completion.usage.prompt_tokens,
                completion.usage.cached_tokens,
                completion.usage.completion_tokens,
                completion.finish_reason.as_str(),
                completion.timings.time_to_first_token_ms
            );
        }
        messages.push(ChatMessage::reply(&completion.text, completion.completion_ids.clone()));
        // As the app's worker does between turns (outside the next turn's timing); best effort
        // there too: a failure to grow shows at the next turn's own growth.
        if index + 1 < script.turns.len() {
            let _ = engine.prepare_next_turn();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_is_user_turns_after_an_optional_system_prompt() {
        let script = parse_script(r#"[{"role": "system", "content": "Be brief."}, "Hi", {"role": "user", "content": "Why?"}]"#).unwrap();
        assert_eq!(script, Script { system: Some("Be brief.".into()), turns: vec!["Hi".into(), "Why?".into()] });
        assert_eq!(parse_script(r#"["Hi"]"#).unwrap().system, None);
    }

    #[test]
    fn misplaced_roles_and_empty_scripts_are_refused_with_a_reason() {
        let late_system = parse_script(r#"["Hi", {"role": "system", "content": "x"}]"#).unwrap_err();
        assert!(late_system.to_string().contains("entry 1 has role `system`"), "{late_system}");
        let assistant = parse_script(r#"[{"role": "assistant", "content": "x"}]"#).unwrap_err();
        assert!(assistant.to_string().contains("role `assistant`"), "{assistant}");
        assert!(parse_script("[]").unwrap_err().to_string().contains("no user turn"));
        assert!(parse_script(r#"{"turns": []}"#).is_err());
    }
}
