//! The context window as the chat sees it: the next prompt (system prompt, history and the
//! message being typed) counted in tokens off the GUI thread, and a send that would not fit
//! stopped before it starts, with the ways out the app really offers.

use std::{
    hash::{Hash, Hasher},
    sync::Arc,
};

use poll_promise::Promise;

use super::AppState;
use crate::{
    engine::{ChatMessage, ContextPolicy, Prompt},
    engine_queue::LoadedModel,
};

/// The token count of the prompt the next message would make, and what it was counted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptCount {
    key: u64,
    pub tokens: usize,
}

/// A message held back because the conversation would not fit the model's maximum length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockedSend {
    /// Tokens of the prompt with the message.
    pub needed: usize,
    /// The maximum length (prompt plus reply) the conversation runs with.
    pub max_length: usize,
    /// The model's context window: how far the maximum length can be raised.
    pub context_length: usize,
}

impl BlockedSend {
    pub fn can_raise(&self) -> bool {
        self.context_length > self.max_length && self.needed < self.context_length
    }
}

/// The ways out of a blocked send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockedChoice {
    /// Send the message as the first of a new chat.
    NewChat,
    /// Leave the oldest turns out of this and later prompts (the system prompt stays).
    DropOldestTurns,
    /// Raise this conversation's maximum length to the model's context window.
    RaiseMaxLength,
    Cancel,
}

/// Counting in flight, and the last count.
#[derive(Default)]
pub struct ContextState {
    pub count: Option<PromptCount>,
    counting: Option<(u64, Promise<Option<usize>>)>,
    pub blocked: Option<BlockedSend>,
}

impl ContextState {
    pub fn is_busy(&self) -> bool {
        self.counting.is_some()
    }
}

impl AppState {
    /// A fingerprint of what the next prompt holds (conversation, system prompt, draft).
    fn next_prompt_key(&self) -> Option<u64> {
        let conversation = self.current_conversation()?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        conversation.id.hash(&mut hasher);
        conversation.system_prompt.hash(&mut hasher);
        for message in &conversation.messages {
            message.content.hash(&mut hasher);
        }
        self.chat.draft.trim().hash(&mut hasher);
        Some(hasher.finish())
    }

    /// The maximum length the current conversation runs with.
    pub fn conversation_max_length(&self) -> Option<usize> {
        let own = self.current_conversation().and_then(|c| c.settings.max_length);
        own.or_else(|| self.selected_session()?.max_length())
    }

    /// Tokens of the prompt the next message makes, when the count is current.
    pub fn next_prompt_tokens(&self) -> Option<usize> {
        let count = self.chat.context.count?;
        (Some(count.key) == self.next_prompt_key()).then_some(count.tokens)
    }

    /// The loaded model, when it is the selected folder's.
    fn selected_model(&self) -> Option<Arc<LoadedModel>> {
        let model = self.engine.queue.as_ref()?.model()?;
        (Some(&model.facts.folder) == self.selected_session().map(|s| &s.folder)).then_some(model)
    }

    /// Counts the next prompt in the background whenever it changed (one count at a time).
    pub(super) fn poll_prompt_count(&mut self) {
        if let Some((key, tokens)) =
            self.chat.context.counting.take_if(|(_, p)| p.ready().is_some()).and_then(|(key, p)| p.try_take().ok().map(|t| (key, t)))
        {
            self.chat.context.count = tokens.map(|tokens| PromptCount { key, tokens });
        }
        if self.chat.context.counting.is_some() {
            return;
        }
        let Some(key) = self.next_prompt_key() else { return };
        if self.chat.context.count.is_some_and(|c| c.key == key) {
            return;
        }
        let (Some(model), Some(conversation)) = (self.selected_model(), self.current_conversation()) else { return };
        let mut messages = conversation.prompt_messages();
        let draft = self.chat.draft.trim();
        if !draft.is_empty() {
            messages.push(ChatMessage::new("user", draft));
        }
        let counting = self.spawn("count-prompt", move || model.prompt_ids(&Prompt::Chat(messages)).ok().map(|ids| ids.len()));
        self.chat.context.counting = Some((key, counting));
    }

    /// Whether the draft may be sent: with the "refuse" policy, a prompt that leaves no room for
    /// a reply is held back (and the choices shown) instead of failing in the engine.
    pub(super) fn draft_fits(&mut self) -> bool {
        if self.chat.policy != ContextPolicy::Refuse {
            return true;
        }
        let (Some(needed), Some(max_length)) = (self.next_prompt_tokens(), self.conversation_max_length()) else { return true };
        if needed < max_length {
            return true;
        }
        let context_length = self.selected_session().and_then(|s| s.facts()).map_or(max_length, |f| f.context_length);
        self.chat.context.blocked = Some(BlockedSend { needed, max_length, context_length });
        false
    }

    pub fn resolve_blocked(&mut self, choice: BlockedChoice) {
        let Some(blocked) = self.chat.context.blocked.take() else { return };
        match choice {
            BlockedChoice::NewChat => {
                self.new_conversation();
                self.send();
            }
            BlockedChoice::DropOldestTurns => {
                self.chat.policy = ContextPolicy::DropOldestTurns;
                self.send();
            }
            BlockedChoice::RaiseMaxLength => {
                if let Some(conversation) = self.current_conversation_mut() {
                    conversation.settings.max_length = Some(blocked.context_length);
                    let id = conversation.id.clone();
                    self.persist_conversation(&id);
                }
                self.send();
            }
            BlockedChoice::Cancel => {}
        }
    }
}
