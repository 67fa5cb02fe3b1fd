//! Conversations: their messages with usage and timings, export as Markdown or `llm/v1/chat`
//! JSON, and (`store`) their persistence as one JSON file each under the data directory.
//! Knows nothing of the GUI.

mod store;

pub use store::{ChatStore, ChatStoreError, Listing, MAX_CONVERSATION_BYTES, Skipped, Summary, WriteCommand, WriteEvent, safe_name};

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::engine::{ChatMessage, FinishReason, Timings, Usage};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// Figures shown under a reply.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReplyStats {
    pub usage: Usage,
    pub timings: Timings,
    pub finish_reason: FinishReason,
    /// Turns left out to fit the context window, if any.
    #[serde(default)]
    pub dropped_messages: usize,
}

impl ReplyStats {
    /// `10 prompt + 5 completion = 15 tokens · first token 12 ms · 80.0 tokens/s · stop`, with
    /// `10 prompt (8 cached)` when part of the prompt came from the KV cache, and
    /// `· prompt lookup: 6 of 8 drafted tokens kept` when drafts were verified.
    pub fn summary(&self) -> String {
        let cached = match self.usage.cached_tokens {
            0 => String::new(),
            cached => format!(" ({cached} cached)"),
        };
        let mut text = format!(
            "{} prompt{cached} + {} completion = {} tokens · first token {:.0} ms · {:.1} tokens/s · {}",
            self.usage.prompt_tokens,
            self.usage.completion_tokens,
            self.usage.total_tokens,
            self.timings.time_to_first_token_ms,
            self.timings.decode_tokens_per_second,
            self.finish_reason.as_str()
        );
        let lookup = &self.timings.prompt_lookup;
        if lookup.drafted > 0 {
            text.push_str(&format!(" · prompt lookup: {} of {} drafted tokens kept", lookup.accepted, lookup.drafted));
        }
        text
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<ReplyStats>,
    /// The ids the conversation's model generated as this reply, so the next turn's prompt holds
    /// them rather than the reply's text encoded again (which may differ and would be read again;
    /// see `engine::conversation`). Stale ids (the text no longer matches) are ignored there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_ids: Option<Vec<i64>>,
}

/// Generation settings a conversation remembers (None: the model's default).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub max_tokens: Option<usize>,
    /// Prompt plus reply, in tokens (the model's default when unset).
    pub max_length: Option<usize>,
    pub repetition_penalty: Option<f32>,
    pub seed: Option<i64>,
    pub do_sample: Option<bool>,
    /// Text that ends a reply (not shown); one entry per stop string.
    pub stop: Vec<String>,
    /// Prompt-lookup decoding for greedy replies (off by default; the settings checkbox shows
    /// `engine::prompt_lookup::TOOLTIP`). Pass it on as `GenerateOptions::prompt_lookup`.
    pub prompt_lookup: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: String,
    pub title: String,
    /// The model folder it belongs to.
    pub model: PathBuf,
    #[serde(default)]
    pub system_prompt: String,
    #[serde(default)]
    pub settings: Settings,
    #[serde(default)]
    pub messages: Vec<Message>,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub updated: u64,
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

impl Conversation {
    pub fn new(model: &Path) -> Self {
        let time = now();
        Self {
            id: uuid::Uuid::new_v4().simple().to_string(),
            title: "New chat".into(),
            model: model.to_path_buf(),
            system_prompt: String::new(),
            settings: Settings::default(),
            messages: Vec::new(),
            created: time,
            updated: time,
        }
    }

    /// The turns to send, with the system prompt first when set.
    pub fn prompt_messages(&self) -> Vec<ChatMessage> {
        let mut out = Vec::new();
        if !self.system_prompt.trim().is_empty() {
            out.push(ChatMessage::new("system", &self.system_prompt));
        }
        for message in &self.messages {
            let role = match message.role {
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            out.push(ChatMessage { token_ids: message.token_ids.clone(), ..ChatMessage::new(role, &message.content) });
        }
        out
    }

    /// Adds a user message (the first one also names the conversation).
    pub fn push_user(&mut self, text: &str) {
        if self.messages.is_empty() && self.title == "New chat" {
            let title: String = text.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(48).collect();
            if !title.is_empty() {
                self.title = title;
            }
        }
        self.messages.push(Message { role: Role::User, content: text.to_owned(), stats: None, token_ids: None });
        self.updated = now();
    }

    /// Keeps messages before `index` (for resending an edited message or regenerating).
    pub fn truncate(&mut self, index: usize) {
        self.messages.truncate(index);
        self.updated = now();
    }

    /// Tokens the last exchange used (prompt + completion), for the context meter.
    pub fn last_total_tokens(&self) -> Option<usize> {
        self.messages.iter().rev().find_map(|m| m.stats.map(|s| s.usage.total_tokens))
    }

    pub fn to_markdown(&self) -> String {
        let mut out = format!("# {}\n\n", self.title);
        if !self.system_prompt.trim().is_empty() {
            out.push_str(&format!("**System:** {}\n\n", self.system_prompt.trim()));
        }
        for message in &self.messages {
            let who = match message.role {
                Role::User => "User",
                Role::Assistant => "Assistant",
            };
            out.push_str(&format!("## {who}\n\n{}\n\n", message.content.trim_end()));
            if let Some(stats) = &message.stats {
                out.push_str(&format!("*{}*\n\n", stats.summary()));
            }
        }
        out
    }

    /// The conversation as an `llm/v1/chat` exchange: the request's messages and the last
    /// reply as a `chat.completion` with usage.
    pub fn to_chat_json(&self) -> serde_json::Value {
        let last_reply = self.messages.iter().rposition(|m| m.role == Role::Assistant);
        let request: Vec<ChatMessage> = match last_reply {
            Some(index) => {
                let mut turns = self.prompt_messages();
                let system = usize::from(!self.system_prompt.trim().is_empty());
                turns.truncate(system + index);
                turns
            }
            None => self.prompt_messages(),
        };
        let response = last_reply.map(|index| {
            let reply = &self.messages[index];
            let stats = reply.stats;
            json!({
                "id": format!("chatcmpl-{}", self.id),
                "object": "chat.completion",
                "created": self.updated,
                "model": self.model.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.content},
                    "finish_reason": stats.map(|s| s.finish_reason.as_str()).unwrap_or("stop"),
                }],
                "usage": stats.map(|s| serde_json::to_value(s.usage).unwrap_or_default()),
            })
        });
        json!({"request": {"messages": request}, "response": response})
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(super) fn sample() -> Conversation {
        let mut chat = Conversation::new(Path::new("/models/tiny"));
        chat.system_prompt = "Be brief.".into();
        chat.push_user("What is 2+2?");
        chat.messages.push(Message {
            role: Role::Assistant,
            content: "4".into(),
            stats: Some(ReplyStats {
                usage: Usage { prompt_tokens: 10, completion_tokens: 1, total_tokens: 11, ..Usage::default() },
                timings: Timings::default(),
                finish_reason: FinishReason::Stop,
                dropped_messages: 0,
            }),
            token_ids: Some(vec![7]),
        });
        chat
    }

    #[test]
    fn exports_carry_usage() {
        let chat = sample();
        assert_eq!(chat.title, "What is 2+2?");
        let markdown = chat.to_markdown();
        assert!(markdown.contains("## Assistant\n\n4") && markdown.contains("10 prompt + 1 completion = 11 tokens"), "{markdown}");
        let json = chat.to_chat_json();
        assert_eq!(json["request"]["messages"][0]["role"], "system");
        assert_eq!(json["request"]["messages"].as_array().unwrap().len(), 2);
        assert_eq!(json["response"]["object"], "chat.completion");
        assert_eq!(json["response"]["usage"]["total_tokens"], 11);
    }
}
