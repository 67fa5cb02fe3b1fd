//! Tokenizer, chat template and streaming text for a model folder.
//!
//! * Encoding uses the folder's `tokenizer.json` through the `tokenizers` crate with
//!   `add_special_tokens = false`, exactly as onnxruntime-genai encodes (it never adds BOS).
//! * The chat template comes from `chat_template.jinja` if present, else `chat_template` in
//!   `tokenizer_config.json`, rendered with minijinja (Python string methods enabled). A folder
//!   with no template falls back to the documented Phi-3 format (see [`PHI3_FALLBACK_TEMPLATE`]).
//! * Text is produced by [`TextStream`], which follows onnxruntime-genai's `TokenizerStream`
//!   for SentencePiece-style tokenizers (contract §8.4): special tokens decode to nothing, the
//!   text right after a special token loses one leading space, byte tokens are buffered until a
//!   whole UTF-8 character is there, and invalid bytes are dropped. The reply's text is defined
//!   as the concatenation of the stream's chunks, so streamed and final text are always equal.
//!   Tokenizers without byte-fallback pieces use incremental Hugging Face decoding instead
//!   (decode the whole tail, emit what is new, hold back a trailing U+FFFD).

use std::{collections::HashMap, path::Path};

use serde_json::Value;

use super::folder::{CHAT_TEMPLATE_JINJA, TOKENIZER_CONFIG, TOKENIZER_JSON};

/// Most instructions (and bytes of values, see minijinja's fuel) one render of a chat template
/// may use; the Phi-3 template needs about 40 per message.
pub const TEMPLATE_FUEL: u64 = 3_000_000;
/// Most nested calls, loops and includes in one render.
pub const TEMPLATE_RECURSION: usize = 100;
/// Most bytes a rendered prompt may have (a 128 K-token context is under 1 MB of text).
pub const TEMPLATE_OUTPUT_LIMIT: usize = 4 << 20;

/// Used only when a model folder carries no chat template: Phi-3's published format.
pub const PHI3_FALLBACK_TEMPLATE: &str = "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% else %}{{ eos_token }}{% endif %}";

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("cannot load the tokenizer {path}: {message}")]
    Load { path: String, message: String },
    #[error("{path}: {message}")]
    Config { path: String, message: String },
    #[error("the chat template could not be rendered: {0}")]
    Template(String),
    #[error(
        "the prompt is {bytes} bytes, which is at least {min_tokens} tokens: far beyond the model's context of {limit} tokens, so it was not tokenised"
    )]
    PromptTooLong { bytes: usize, min_tokens: usize, limit: usize },
    #[error("encoding failed: {0}")]
    Encode(String),
}

/// One chat turn.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
    /// The ids this model generated as this reply, when the caller kept them: the conversation
    /// is then encoded with these ids in place of the reply's text (see
    /// [`PromptTokenizer::encode_conversation`]). Never read from or written to JSON, so a
    /// request from outside cannot set them and the template never sees them.
    #[serde(skip)]
    pub token_ids: Option<Vec<i64>>,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> Self {
        Self { role: role.to_owned(), content: content.to_owned(), token_ids: None }
    }

    /// A reply of this model with the ids it was generated as.
    pub fn reply(content: &str, token_ids: Vec<i64>) -> Self {
        Self { token_ids: Some(token_ids), ..Self::new("assistant", content) }
    }
}

/// Where the chat template came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateSource {
    ChatTemplateJinja,
    TokenizerConfig,
    Phi3Fallback,
}

pub struct PromptTokenizer {
    tokenizer: tokenizers::Tokenizer,
    pub(crate) template: String,
    pub template_source: TemplateSource,
    bos_token: String,
    eos_token: String,
    /// id → (piece bytes as genai streams them, is special)
    pieces: Vec<Option<(Vec<u8>, bool)>>,
    spm_style: bool,
    /// The most input bytes one token can stand for (so `bytes / longest` tokens at least).
    longest_token_bytes: usize,
    /// Texts that cannot fit this many tokens are refused before encoding.
    token_limit: Option<usize>,
}

impl std::fmt::Debug for PromptTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromptTokenizer").field("template_source", &self.template_source).finish_non_exhaustive()
    }
}

fn token_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(text) => Some(text.clone()),
        Value::Object(map) => map.get("content").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

impl PromptTokenizer {
    pub fn load(dir: &Path) -> Result<Self, TokenizerError> {
        use crate::fsio;
        let tokenizer_path = dir.join(TOKENIZER_JSON);
        let load_error = |message: String| TokenizerError::Load { path: tokenizer_path.display().to_string(), message };
        let bytes = fsio::read_bytes(&tokenizer_path, fsio::TOKENIZER_LIMIT).map_err(|e| load_error(e.to_string()))?;
        let tokenizer = tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| load_error(e.to_string()))?;
        drop(bytes);
        let config_error = |path: &Path, message: String| TokenizerError::Config { path: path.display().to_string(), message };
        let config_path = dir.join(TOKENIZER_CONFIG);
        let config: Value = match fsio::read_text_if_present(&config_path, fsio::CONFIG_LIMIT) {
            Ok(Some(text)) => serde_json::from_str(text.trim_start_matches('\u{feff}'))
                .map_err(|e| config_error(&config_path, format!("not valid JSON: {e}")))?,
            Ok(None) => Value::Null,
            Err(e) => return Err(config_error(&config_path, e.to_string())),
        };
        let jinja_path = dir.join(CHAT_TEMPLATE_JINJA);
        let jinja = fsio::read_text_if_present(&jinja_path, fsio::TEMPLATE_LIMIT).map_err(|e| config_error(&jinja_path, e.to_string()))?;
        let (template, template_source) = if let Some(text) = jinja {
            (text, TemplateSource::ChatTemplateJinja)
        } else {
            match config.get("chat_template") {
                Some(Value::String(text)) => (text.clone(), TemplateSource::TokenizerConfig),
                // Hugging Face also allows a list of named templates; "default" is the chat one.
                Some(Value::Array(named)) => named
                    .iter()
                    .find(|entry| entry.get("name").and_then(Value::as_str) == Some("default"))
                    .or_else(|| named.first())
                    .and_then(|entry| entry.get("template").and_then(Value::as_str))
                    .map(|text| (text.to_owned(), TemplateSource::TokenizerConfig))
                    .unwrap_or((PHI3_FALLBACK_TEMPLATE.to_owned(), TemplateSource::Phi3Fallback)),
                _ => (PHI3_FALLBACK_TEMPLATE.to_owned(), TemplateSource::Phi3Fallback),
            }
        };
        let bos_token = token_text(config.get("bos_token")).unwrap_or_else(|| "<s>".into());
        let eos_token = token_text(config.get("eos_token")).unwrap_or_else(|| "<|endoftext|>".into());
        let (pieces, spm_style) = stream_pieces(&tokenizer);
        let longest_token_bytes = longest_token_bytes(&tokenizer);
        Ok(Self { tokenizer, template, template_source, bos_token, eos_token, pieces, spm_style, longest_token_bytes, token_limit: None })
    }

    /// Refuse, before encoding, any text that cannot fit in `tokens` (the model's context):
    /// tokenising megabytes only to find they do not fit would stall the caller.
    pub fn limit_prompt_tokens(&mut self, tokens: usize) {
        self.token_limit = Some(tokens);
    }

    /// The id of a vocabulary piece (`▁the`, `<0x41>`), for tests that spell text by hand.
    #[cfg(test)]
    pub(crate) fn piece_id(&self, piece: &str) -> Option<i64> {
        self.tokenizer.token_to_id(piece).map(i64::from)
    }

    /// The fewest tokens `text` can encode to.
    pub fn min_tokens(&self, text: &str) -> usize {
        text.len().div_ceil(self.longest_token_bytes.max(1))
    }

    /// Renders a conversation with the model's chat template, within [`TEMPLATE_FUEL`],
    /// [`TEMPLATE_RECURSION`] and [`TEMPLATE_OUTPUT_LIMIT`]: a template that loops forever or
    /// renders a flood fails fast with "chat template … exceeded …".
    pub fn apply_chat_template(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String, TokenizerError> {
        let mut env = minijinja::Environment::new();
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_recursion_limit(TEMPLATE_RECURSION);
        // Hugging Face renders chat templates with trim_blocks and lstrip_blocks on.
        let syntax = env
            .syntax()
            .to_builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| TokenizerError::Template(e.to_string()))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |message: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, message))
        });
        env.add_template("chat", &self.template).map_err(|e| TokenizerError::Template(e.to_string()))?;
        let template = env.get_template("chat").map_err(|e| TokenizerError::Template(e.to_string()))?;
        let mut output = BoundedOutput { bytes: Vec::new(), limit: TEMPLATE_OUTPUT_LIMIT, overflowed: false };
        let context = minijinja::context! {
            messages => minijinja::Value::from(minijinja::value::Serde(messages)),
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        };
        let rendered = template.render_captured_to(context, &mut output);
        let overflowed = output.overflowed;
        rendered.map_err(|e| {
            let what = if overflowed {
                format!("chat template exceeded the {TEMPLATE_OUTPUT_LIMIT}-byte limit on a rendered prompt")
            } else if e.kind() == minijinja::ErrorKind::OutOfFuel {
                format!("chat template exceeded its budget of {TEMPLATE_FUEL} steps (does it loop forever?)")
            } else if e.to_string().contains("recursion") {
                format!("chat template exceeded the nesting limit of {TEMPLATE_RECURSION}: {e}")
            } else {
                e.to_string()
            };
            TokenizerError::Template(what)
        })?;
        String::from_utf8(output.bytes).map_err(|e| TokenizerError::Template(format!("the template rendered invalid UTF-8: {e}")))
    }

    /// Token ids of `text`, with no special tokens added. A text that cannot fit the limit set
    /// by [`Self::limit_prompt_tokens`] is refused without encoding it.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>, TokenizerError> {
        if let Some(limit) = self.token_limit {
            let min_tokens = self.min_tokens(text);
            if min_tokens > limit {
                return Err(TokenizerError::PromptTooLong { bytes: text.len(), min_tokens, limit });
            }
        }
        let encoding = self.tokenizer.encode(text, false).map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(encoding.get_ids().iter().map(|&id| i64::from(id)).collect())
    }

    /// The text of `ids` as one stream would produce it.
    pub fn decode(&self, ids: &[i64]) -> String {
        let mut stream = self.stream();
        let mut text: String = ids.iter().map(|&id| stream.push(id)).collect();
        text.push_str(&stream.finish());
        text
    }

    /// A fresh streaming decoder for one reply.
    pub fn stream(&self) -> TextStream<'_> {
        TextStream { tokenizer: self, special_last: false, pending: Vec::new(), ids: Vec::new(), emitted: 0 }
    }

    /// Number of ids the tokenizer itself knows (the logits may be wider).
    pub fn known_ids(&self) -> usize {
        self.pieces.len()
    }
}

/// Per-id bytes as onnxruntime-genai's SentencePiece stream sees them, and whether the
/// vocabulary is SentencePiece-style at all (`▁` pieces and `<0xHH>` byte tokens).
fn stream_pieces(tokenizer: &tokenizers::Tokenizer) -> (Vec<Option<(Vec<u8>, bool)>>, bool) {
    let size = tokenizer.get_vocab_size(true);
    let added: HashMap<u32, tokenizers::AddedToken> = tokenizer.get_added_tokens_decoder().into_iter().collect();
    let mut pieces = vec![None; size];
    let mut byte_tokens = 0usize;
    for (id, slot) in pieces.iter_mut().enumerate() {
        let id = id as u32;
        if let Some(token) = added.get(&id) {
            *slot = Some(if token.special { (Vec::new(), true) } else { (token.content.as_bytes().to_vec(), false) });
            continue;
        }
        let Some(piece) = tokenizer.id_to_token(id) else { continue };
        let bytes = match parse_byte_token(&piece) {
            Some(byte) => {
                byte_tokens += 1;
                vec![byte]
            }
            None => piece.replace('\u{2581}', " ").into_bytes(),
        };
        *slot = Some((bytes, false));
    }
    (pieces, byte_tokens == 256)
}

/// The most input bytes one token can cover: the longest vocabulary piece (SentencePiece's `▁`
/// counts as the one space it stands for) or added token.
fn longest_token_bytes(tokenizer: &tokenizers::Tokenizer) -> usize {
    let pieces = tokenizer.get_vocab(true).into_keys().map(|piece| piece.replace('\u{2581}', " ").len());
    let added = tokenizer.get_added_tokens_decoder().into_values().map(|token| token.content.len());
    pieces.chain(added).max().unwrap_or(1).max(1)
}

/// A writer that refuses to grow past `limit` bytes (a template rendering a flood).
struct BoundedOutput {
    bytes: Vec<u8>,
    limit: usize,
    overflowed: bool,
}

impl std::io::Write for BoundedOutput {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len().saturating_add(data.len()) > self.limit {
            self.overflowed = true;
            return Err(std::io::Error::other("the rendered prompt is too large"));
        }
        self.bytes.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn parse_byte_token(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() == 2 { u8::from_str_radix(hex, 16).ok() } else { None }
}

/// Incremental text for one reply; see the module docs for the rules.
pub struct TextStream<'t> {
    tokenizer: &'t PromptTokenizer,
    special_last: bool,
    pending: Vec<u8>,
    ids: Vec<u32>,
    emitted: usize,
}

impl TextStream<'_> {
    /// Adds one token; returns the text that became complete (possibly empty).
    pub fn push(&mut self, id: i64) -> String {
        if self.tokenizer.spm_style { self.push_spm(id) } else { self.push_incremental(id) }
    }

    /// Whatever is still held back at the end of a reply (incremental mode only; the SentencePiece
    /// stream drops an incomplete trailing character, as onnxruntime-genai does).
    pub fn finish(&mut self) -> String {
        if self.tokenizer.spm_style {
            self.pending.clear();
            return String::new();
        }
        let text = self.decode_all();
        let rest = text.get(self.emitted..).unwrap_or_default().to_owned();
        self.emitted = text.len();
        rest
    }

    fn push_spm(&mut self, id: i64) -> String {
        let entry = usize::try_from(id).ok().and_then(|i| self.tokenizer.pieces.get(i)).and_then(Option::as_ref);
        let (bytes, special): (&[u8], bool) = match entry {
            Some((bytes, special)) => (bytes, *special),
            None => (b"<unk>", false),
        };
        let bytes = if self.special_last && bytes.first() == Some(&b' ') { &bytes[1..] } else { bytes };
        self.special_last = special;
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut at = 0;
        while at < self.pending.len() {
            let lead = self.pending[at];
            let width = match lead >> 4 {
                0xC | 0xD => 2,
                0xE => 3,
                0xF => 4,
                _ => 1,
            };
            if at + width > self.pending.len() {
                break;
            }
            if let Ok(text) = std::str::from_utf8(&self.pending[at..at + width]) {
                if let Some(c) = text.chars().next() {
                    if c != '\0' && c != '\u{FFFE}' && c != '\u{FFFF}' {
                        out.push(c);
                    }
                }
            }
            at += width;
        }
        self.pending.drain(..at);
        out
    }

    fn push_incremental(&mut self, id: i64) -> String {
        let Ok(id) = u32::try_from(id) else { return String::new() };
        self.ids.push(id);
        // A run of byte-fallback tokens decodes as one UTF-8 sequence (tokens that decode to
        // nothing, such as special ones, do not interrupt it): a later byte can turn characters
        // already complete into U+FFFD, so text waits for a token that ends the run.
        if !self.ends_byte_run(id) {
            return String::new();
        }
        let text = self.decode_all();
        if text.ends_with('\u{FFFD}') {
            return String::new();
        }
        let fresh = text.get(self.emitted..).unwrap_or_default().to_owned();
        self.emitted = text.len().max(self.emitted);
        fresh
    }

    /// Whether `id` is ordinary text: known, not special, not a `<0xHH>` byte token.
    fn ends_byte_run(&self, id: u32) -> bool {
        let special = usize::try_from(id).ok().and_then(|i| self.tokenizer.pieces.get(i)).and_then(Option::as_ref).is_none_or(|(_, special)| *special);
        !special && self.tokenizer.tokenizer.id_to_token(id).is_some_and(|piece| parse_byte_token(&piece).is_none())
    }

    fn decode_all(&self) -> String {
        self.tokenizer.tokenizer.decode(&self.ids, true).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> PromptTokenizer {
        PromptTokenizer::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-phi3")).unwrap()
    }

    #[test]
    fn chat_template_renders_phi3_turns() {
        let tokenizer = fixture();
        let text = tokenizer
            .apply_chat_template(&[ChatMessage::new("system", "Be brief."), ChatMessage::new("user", "Hi")], true)
            .unwrap();
        assert_eq!(text, "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n");
        assert_eq!(tokenizer.template_source, TemplateSource::TokenizerConfig);
    }

    #[test]
    fn encoding_never_adds_bos() {
        let tokenizer = fixture();
        let ids = tokenizer.encode("Hello there").unwrap();
        assert!(!ids.is_empty() && ids[0] != 1);
    }

    #[test]
    fn stream_joins_words_and_waits_for_whole_characters() {
        let tokenizer = fixture();
        let ids = tokenizer.encode("The quick brown fox 😀 jumps").unwrap();
        let mut stream = tokenizer.stream();
        let chunks: Vec<String> = ids.iter().map(|&id| stream.push(id)).collect();
        assert_eq!(chunks.concat(), " The quick brown fox 😀 jumps");
        // Byte tokens of a 4-byte character give nothing until the last one.
        let smile: Vec<i64> = "😀".bytes().map(|b| i64::from(b) + 3).collect();
        let mut stream = tokenizer.stream();
        let parts: Vec<String> = smile.iter().map(|&id| stream.push(id)).collect();
        assert_eq!(parts, vec!["", "", "", "😀"]);
    }

    #[test]
    fn special_tokens_vanish_and_eat_one_following_space() {
        let tokenizer = fixture();
        let end = tokenizer.encode("<|end|>").unwrap();
        let word = tokenizer.encode("hello").unwrap();
        let mut ids = word.clone();
        ids.extend(&end);
        ids.extend(&word);
        assert_eq!(tokenizer.decode(&ids), " hellohello");
    }

    #[test]
    fn incremental_mode_keeps_spaces_and_whole_characters() {
        // Without a full set of <0xHH> byte tokens the tokenizer is not SentencePiece-style, and
        // text comes from decoding the reply so far and emitting what is new.
        let dir = tempfile::tempdir().unwrap();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-phi3");
        let mut json: Value = serde_json::from_str(&std::fs::read_to_string(fixture.join(TOKENIZER_JSON)).unwrap()).unwrap();
        json["model"]["vocab"].as_object_mut().unwrap().remove("<0x00>");
        std::fs::write(dir.path().join(TOKENIZER_JSON), json.to_string()).unwrap();
        std::fs::copy(fixture.join(TOKENIZER_CONFIG), dir.path().join(TOKENIZER_CONFIG)).unwrap();
        let tokenizer = PromptTokenizer::load(dir.path()).unwrap();
        assert!(!tokenizer.spm_style);
        let text = "The quick brown fox 😀 jumps";
        let ids = tokenizer.encode(text).unwrap();
        let mut stream = tokenizer.stream();
        let mut chunks: Vec<String> = ids.iter().map(|&id| stream.push(id)).collect();
        chunks.push(stream.finish());
        assert_eq!(chunks.concat(), text, "no glued words, nothing lost");
        assert!(chunks.iter().all(|c| !c.contains('\u{FFFD}')), "no partial characters: {chunks:?}");
        let smile: Vec<i64> = "😀".bytes().map(|b| i64::from(b) + 3).collect();
        // Byte tokens wait for the run to end (a later byte could still invalidate it), here
        // at the next word, so the chunks always add up to the whole decode.
        let word = tokenizer.encode("hi").unwrap();
        let mut stream = tokenizer.stream();
        let parts: Vec<String> = smile.iter().chain(&word).map(|&id| stream.push(id)).collect();
        assert_eq!(parts[..4], ["", "", "", ""]);
        assert_eq!(parts.concat(), "😀 hi");
        let mut stream = tokenizer.stream();
        let mut parts: Vec<String> = smile.iter().map(|&id| stream.push(id)).collect();
        parts.push(stream.finish());
        assert_eq!(parts, vec!["", "", "", "", "😀"]);
    }

    #[test]
    fn long_conversations_render_and_runaway_templates_stop() {
        let tokenizer = fixture();
        // A conversation of about 1 MB (beyond any Phi context) still renders within the fuel.
        let long: Vec<ChatMessage> = (0..200).map(|i| ChatMessage::new(if i % 2 == 0 { "user" } else { "assistant" }, &"word ".repeat(1000))).collect();
        assert!(tokenizer.apply_chat_template(&long, true).unwrap().len() > 1_000_000);
        let mut looping = fixture();
        looping.template = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}".into();
        let error = looping.apply_chat_template(&long[..1], true).unwrap_err().to_string();
        assert!(error.contains("chat template exceeded its budget"), "{error}");
        let mut flood = fixture();
        flood.template = "{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}".into();
        let error = flood.apply_chat_template(&long[..1], true).unwrap_err().to_string();
        assert!(error.contains("chat template exceeded the 4194304-byte limit"), "{error}");
        let mut deep = fixture();
        deep.template = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}".into();
        let error = deep.apply_chat_template(&long[..1], true).unwrap_err().to_string();
        assert!(error.contains("chat template exceeded the nesting limit"), "{error}");
    }

    #[test]
    fn prompts_that_cannot_fit_are_refused_before_encoding() {
        let mut tokenizer = fixture();
        let text = "word ".repeat(20_000);
        assert!(tokenizer.encode(&text).unwrap().len() > 512);
        tokenizer.limit_prompt_tokens(512);
        let error = tokenizer.encode(&text).unwrap_err();
        assert!(matches!(error, TokenizerError::PromptTooLong { limit: 512, .. }), "{error}");
        // The bound is a true lower bound: what fits is never refused.
        let fits = "word ".repeat(50);
        assert_eq!(tokenizer.encode(&fits).unwrap().len(), fixture().encode(&fits).unwrap().len());
        assert!(tokenizer.min_tokens(&fits) <= fixture().encode(&fits).unwrap().len());
    }

    #[test]
    fn ids_beyond_the_tokenizer_stream_as_unk() {
        let tokenizer = fixture();
        let beyond = tokenizer.known_ids() as i64 + 3;
        assert_eq!(tokenizer.decode(&[beyond]), "<unk>");
    }
}
