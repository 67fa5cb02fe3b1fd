//! Encoding a conversation whose replies this model generated: each reply that kept its ids
//! (`ChatMessage::token_ids`) goes into the prompt as those ids, and only the text around the
//! replies is encoded.
//!
//! Why: a reply's text does not always encode back to the ids that produced it (a model may emit a
//! non-canonical split, and random-weight models emit arbitrary strings). Encoded again, the next
//! turn's prompt would differ from the cached ids at the start of the reply, and the whole reply
//! would be read again. onnxruntime-genai's chat mode never re-encodes: it appends each new turn's
//! ids to the generator that produced the reply. This gives the same prompt layout from a
//! conversation, so the cache is reused to the end of the previous reply, and a conversation with
//! its ids gives the same prompt whatever is in the cache (Regenerate after a restart included).

use super::tokenizer::{ChatMessage, PromptTokenizer, TokenizerError};

/// Stands in for a reply while the template is rendered, to find where each reply lands.
/// A private-use character no tokenizer gives meaning to; a conversation that contains it is
/// simply encoded as text.
const MARK: char = '\u{F8FF}';

impl PromptTokenizer {
    /// Renders `messages` with the chat template and encodes the result, taking the kept ids of
    /// every reply whose ids still decode to its text. Without such replies (or when the template
    /// changes a reply's text, so its ids no longer stand for what was rendered) this is
    /// `encode(apply_chat_template(..))`. Returns the rendered text and the ids.
    pub fn encode_conversation(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<(String, Vec<i64>), TokenizerError> {
        let text = self.apply_chat_template(messages, add_generation_prompt)?;
        let ids = match self.splice_replies(messages, add_generation_prompt, &text)? {
            Some(ids) => ids,
            None => self.encode(&text)?,
        };
        Ok((text, ids))
    }

    /// The ids of `text` (the rendered `messages`) with each reply's kept ids in place of its
    /// text, or None when no reply can be spliced in that way.
    fn splice_replies(&self, messages: &[ChatMessage], add_generation_prompt: bool, text: &str) -> Result<Option<Vec<i64>>, TokenizerError> {
        let replies: Vec<(usize, &[i64])> = messages
            .iter()
            .enumerate()
            .filter_map(|(index, message)| {
                let ids = message.token_ids.as_deref().filter(|ids| !ids.is_empty())?;
                (self.decode(ids) == message.content).then_some((index, ids))
            })
            .collect();
        if replies.is_empty() || text.contains(MARK) {
            return Ok(None);
        }
        let mut marked = messages.to_vec();
        for (n, &(index, _)) in replies.iter().enumerate() {
            marked[index].content = format!("{MARK}{n}{MARK}");
        }
        let marked_text = self.apply_chat_template(&marked, add_generation_prompt)?;
        let Some(pieces) = pieces_around_replies(&marked_text, text, messages, &replies) else {
            return Ok(None);
        };
        // `pieces` has one more entry than `replies`: the text after the last reply.
        let mut ids = Vec::new();
        for (piece, &(_, reply_ids)) in pieces.iter().zip(&replies) {
            ids.extend(self.encode_piece(piece)?);
            ids.extend_from_slice(reply_ids);
        }
        if let Some(last) = pieces.last() {
            ids.extend(self.encode_piece(last)?);
        }
        Ok(Some(ids))
    }

    fn encode_piece(&self, piece: &str) -> Result<Vec<i64>, TokenizerError> {
        if piece.is_empty() { Ok(Vec::new()) } else { self.encode(piece) }
    }
}

/// The text before, between and after the replies in `marked` (the template rendered with a mark
/// for each reply), or None unless putting the replies back gives exactly `text`: a template that
/// trims, escapes or drops a reply's content must not have its ids spliced in.
fn pieces_around_replies<'a>(marked: &'a str, text: &str, messages: &[ChatMessage], replies: &[(usize, &[i64])]) -> Option<Vec<&'a str>> {
    let parts: Vec<&str> = marked.split(MARK).collect();
    if parts.len() != 2 * replies.len() + 1 {
        return None;
    }
    let mut pieces = Vec::with_capacity(replies.len() + 1);
    let mut rebuilt = String::with_capacity(text.len());
    for (n, part) in parts.iter().enumerate() {
        if n % 2 == 0 {
            pieces.push(*part);
            rebuilt.push_str(part);
        } else {
            let reply = n / 2;
            if *part != reply.to_string() {
                return None;
            }
            rebuilt.push_str(&messages[replies[reply].0].content);
        }
    }
    (rebuilt == text).then_some(pieces)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn tokenizer() -> PromptTokenizer {
        PromptTokenizer::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-phi3")).unwrap()
    }

    /// Ids that decode to `text` but are not what encoding `text` gives: the text's bytes one
    /// byte token each (spaces as the word-start piece).
    fn non_canonical_ids(tokenizer: &PromptTokenizer, text: &str) -> Vec<i64> {
        let space = tokenizer.piece_id("\u{2581}").unwrap();
        let ids: Vec<i64> = text.bytes().map(|b| if b == b' ' { space } else { tokenizer.piece_id(&format!("<0x{b:02X}>")).unwrap() }).collect();
        assert_eq!(tokenizer.decode(&ids), text);
        assert_ne!(ids, tokenizer.encode(text).unwrap());
        ids
    }

    fn conversation(reply: ChatMessage) -> Vec<ChatMessage> {
        vec![ChatMessage::new("system", "Be brief."), ChatMessage::new("user", "Say the thing"), reply, ChatMessage::new("user", "Again")]
    }

    #[test]
    fn a_reply_with_its_ids_is_encoded_as_those_ids_and_the_rest_as_text() {
        let tokenizer = tokenizer();
        let reply_text = "the the the";
        let reply_ids = non_canonical_ids(&tokenizer, reply_text);
        let messages = conversation(ChatMessage::reply(reply_text, reply_ids.clone()));
        let (text, ids) = tokenizer.encode_conversation(&messages, true).unwrap();
        assert_eq!(text, tokenizer.apply_chat_template(&messages, true).unwrap());
        let before = tokenizer.encode("<|system|>\nBe brief.<|end|>\n<|user|>\nSay the thing<|end|>\n<|assistant|>\n").unwrap();
        let after = tokenizer.encode("<|end|>\n<|user|>\nAgain<|end|>\n<|assistant|>\n").unwrap();
        assert_eq!(ids, [before, reply_ids, after].concat());
        // Without ids the same conversation is its text encoded.
        let plain = conversation(ChatMessage::new("assistant", reply_text));
        assert_eq!(tokenizer.encode_conversation(&plain, true).unwrap().1, tokenizer.encode(&text).unwrap());
    }

    #[test]
    fn ids_that_no_longer_spell_the_reply_are_ignored() {
        let tokenizer = tokenizer();
        let stale = non_canonical_ids(&tokenizer, "the old reply");
        // The reply was edited (or the folder's tokenizer changed) after the ids were kept.
        let messages = conversation(ChatMessage::reply("the new reply", stale));
        let (text, ids) = tokenizer.encode_conversation(&messages, true).unwrap();
        assert_eq!(ids, tokenizer.encode(&text).unwrap());
    }

    #[test]
    fn a_template_that_changes_the_reply_text_gets_the_text_encoded() {
        let mut tokenizer = tokenizer();
        tokenizer.template = "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] | trim }}<|end|>\n{% endfor %}<|assistant|>\n".into();
        let padded = "the the ";
        let messages = conversation(ChatMessage::reply(padded, non_canonical_ids(&tokenizer, padded)));
        let (text, ids) = tokenizer.encode_conversation(&messages, true).unwrap();
        assert!(text.contains("<|assistant|>\nthe the<|end|>"), "{text}");
        assert!(!text.contains(padded), "{text}");
        assert_eq!(ids, tokenizer.encode(&text).unwrap());
    }

    #[test]
    fn a_conversation_holding_the_mark_is_encoded_as_text() {
        let tokenizer = tokenizer();
        let reply = "the the";
        let mut messages = conversation(ChatMessage::reply(reply, non_canonical_ids(&tokenizer, reply)));
        messages[1].content = format!("odd {MARK}0{MARK} text");
        let (text, ids) = tokenizer.encode_conversation(&messages, true).unwrap();
        assert_eq!(ids, tokenizer.encode(&text).unwrap());
    }

    #[test]
    fn ids_are_never_read_from_json() {
        let message: ChatMessage = serde_json::from_str(r#"{"role": "assistant", "content": "x", "token_ids": [1, 2]}"#).unwrap();
        assert_eq!(message.token_ids, None);
        assert!(!serde_json::to_string(&ChatMessage::reply("x", vec![5])).unwrap().contains("token_ids"));
    }
}
