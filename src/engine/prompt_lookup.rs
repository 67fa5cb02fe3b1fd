//! Prompt-lookup decoding: when a reply copies from its context (editing code, quoting,
//! summarising), the tokens that followed the last few tokens the last time they appeared are a
//! good guess for what comes next. The generation loop feeds such a draft together with the
//! token it just chose in one model run, and keeps the drafted tokens greedy decoding would have
//! chosen anyway; the rest are dropped from the KV cache.
//!
//! This module finds drafts ([`find_draft`]), decides how long they should be
//! ([`DraftLength`]) and holds a verification run's logits rows ([`Verification`]); the loop in
//! `generate` does the rest.

use std::collections::VecDeque;

use super::decoder::Logits;

/// The longest n-gram (in tokens) whose earlier occurrence is looked for; longer matches are
/// tried first because they predict better.
pub const MAX_NGRAM: usize = 3;
/// The shortest n-gram that may propose a draft. Single tokens recur all the time in free text
/// without what follows them recurring, so a one-token match would mostly draft in vain.
pub const MIN_NGRAM: usize = 2;
/// The most tokens drafted at once. A verification run of k+1 tokens costs more than one step
/// (on a 2-core CPU about 1.6× for 5 tokens and 2.5× for 9 on a Phi-3-mini layer), so long
/// drafts only pay when they are accepted; [`DraftLength`] grows them only after success.
pub const MAX_DRAFT: usize = 8;
/// After a draft that was rejected at its first token, drafting pauses for this many steps at
/// most (doubling from 1 with each further miss), so free text pays almost nothing.
pub const MAX_PAUSE: usize = 16;

/// What the setting does, for the chat settings' tooltip and the CLI help.
pub const TOOLTIP: &str = "Prompt lookup: when the reply repeats text that is already in the conversation (code being \
edited, a quoted document), guess the next tokens from it and check several at once, which makes such replies \
faster. Greedy decoding only (ignored when sampling). The result can differ from plain decoding: ONNX Runtime \
computes a run of several tokens with other kernels than a one-token step (on int4 models built at accuracy level 4, \
as the CPU releases are, their 8-bit arithmetic differs by a few percent), which can turn a close choice.";

/// The tokens that followed the most recent earlier occurrence of the longest suffix n-gram of
/// `sequence` (from [`MAX_NGRAM`] down to [`MIN_NGRAM`] tokens), at most `max_tokens` of them. A more recent
/// occurrence is preferred unless its continuation is shorter than `max_tokens` and an older one
/// has more (a repeating loop's latest period is cut short by the end of the sequence).
pub fn find_draft(sequence: &[i64], max_tokens: usize) -> &[i64] {
    if max_tokens == 0 {
        return &[];
    }
    for n in (MIN_NGRAM..=MAX_NGRAM).rev() {
        if sequence.len() <= n {
            continue;
        }
        let suffix = &sequence[sequence.len() - n..];
        let mut best: &[i64] = &[];
        // Every earlier start, most recent first; `start + n < len` always leaves a continuation.
        for start in (0..sequence.len() - n).rev() {
            if &sequence[start..start + n] != suffix {
                continue;
            }
            let from = start + n;
            let continuation = &sequence[from..sequence.len().min(from + max_tokens)];
            if continuation.len() > best.len() {
                best = continuation;
            }
            if best.len() == max_tokens {
                break;
            }
        }
        if !best.is_empty() {
            return best;
        }
    }
    &[]
}

/// The most tokens a draft may hold when the sequence (ending with the chosen token, not yet
/// fed) is `sequence_len` long:
/// * no more than the reply may still add after the chosen token (`limit` is the sequence's
///   length limit);
/// * never so many that a step plain decoding takes at `reread_at` tokens (onnxruntime-genai's
///   re-read of the whole sequence) would be skipped;
/// * never across `long_rope_switch`: a LongRoPE graph picks its rotary table by the length of
///   the run's attention mask, so in a run of k + 1 tokens every row uses the table its last
///   one picks, while plain decoding picks per token.
pub fn draft_room(sequence_len: usize, limit: usize, reread_at: Option<usize>, long_rope_switch: Option<usize>) -> usize {
    let mut room = limit.saturating_sub(sequence_len + 1);
    // Accepting j drafted tokens skips the plain steps at sequence_len + 1 ..= sequence_len + j.
    if let Some(at) = reread_at.filter(|&at| sequence_len < at) {
        room = room.min(at - sequence_len - 1);
    }
    // The run's mask is sequence_len + k long; plain steps' masks are sequence_len ..= that.
    if let Some(switch) = long_rope_switch.filter(|&switch| sequence_len <= switch) {
        room = room.min(switch - sequence_len);
    }
    room
}

/// How many tokens to draft next: grows while drafts are accepted, falls back after a partial
/// acceptance, and pauses drafting (with a doubling pause) after a draft rejected at once.
#[derive(Debug, Clone)]
pub struct DraftLength {
    next: usize,
    pause: usize,
    paused_for: usize,
}

impl Default for DraftLength {
    fn default() -> Self {
        Self { next: 2, pause: 0, paused_for: 0 }
    }
}

impl DraftLength {
    /// The draft length for this step (0: take a plain step).
    pub fn wanted(&mut self) -> usize {
        if self.pause > 0 {
            self.pause -= 1;
            return 0;
        }
        self.next
    }

    /// Records how a draft of `drafted` tokens fared.
    pub fn record(&mut self, drafted: usize, accepted: usize) {
        if drafted == 0 {
            return;
        }
        if accepted == 0 {
            self.next = 1;
            self.paused_for = (self.paused_for * 2).clamp(1, MAX_PAUSE);
            self.pause = self.paused_for;
            return;
        }
        self.paused_for = 0;
        self.next = if accepted == drafted { (2 * drafted).min(MAX_DRAFT) } else { (accepted + 1).min(MAX_DRAFT) };
    }
}

/// Drafting totals of one reply.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct LookupStats {
    /// Verification runs (each fed a chosen token and its draft).
    pub verifications: usize,
    /// Drafted tokens fed.
    pub drafted: usize,
    /// Drafted tokens that greedy decoding chose too.
    pub accepted: usize,
    /// Time spent in verification runs (milliseconds; part of the decode time).
    pub verification_ms: f64,
}

/// The logits rows of a verification run that are still to be used, each paired with the
/// drafted token it follows from.
#[derive(Default)]
pub struct Verification {
    drafts: VecDeque<i64>,
    logits: Option<Logits>,
    /// Index of the next unused row in `logits`.
    next_row: usize,
    drafted: usize,
    accepted: usize,
}

impl Verification {
    /// Holds the rows of a run that fed a chosen token followed by `draft`: row 0 (after the
    /// chosen token) is returned at once; row j + 1 becomes available once the token chosen
    /// from row j turns out to be `draft[j]`.
    pub fn start(&mut self, draft: &[i64], logits: Logits) -> Vec<f32> {
        let first = logits.row(0).to_vec();
        self.drafts = draft.iter().copied().collect();
        self.drafted = draft.len();
        self.accepted = 0;
        self.next_row = 1;
        self.logits = Some(logits);
        first
    }

    /// Whether drafted tokens whose keys and values sit in the cache are still undecided.
    pub fn is_pending(&self) -> bool {
        !self.drafts.is_empty()
    }

    /// The next row, if `chosen` is the token the draft guessed; otherwise the verification
    /// ends (its remaining drafted tokens must be dropped from the cache). Returns the finished
    /// verification's `(drafted, accepted)` when it ends.
    pub fn advance(&mut self, chosen: i64) -> Result<Vec<f32>, Option<(usize, usize)>> {
        if self.drafts.pop_front() == Some(chosen) {
            if let Some(logits) = &self.logits {
                let row = logits.row(self.next_row).to_vec();
                self.next_row += 1;
                self.accepted += 1;
                return Ok(row);
            }
        }
        Err(self.finish())
    }

    /// Ends the verification; `(drafted, accepted)` if one was running.
    pub fn finish(&mut self) -> Option<(usize, usize)> {
        self.drafts.clear();
        self.logits.take().map(|_| (self.drafted, self.accepted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_suffix_match_proposes_what_followed_it() {
        // "1 2 3" appeared before, followed by 4 5 6; the shorter "3" also appeared before 9.
        let sequence = [1, 2, 3, 4, 5, 6, 3, 9, 1, 2, 3];
        assert_eq!(find_draft(&sequence, 3), &[4, 5, 6]);
        assert_eq!(find_draft(&sequence, 10), &[4, 5, 6, 3, 9, 1, 2, 3]);
    }

    #[test]
    fn shorter_ngrams_are_tried_when_longer_ones_never_appeared() {
        let sequence = [7, 8, 9, 5, 1, 8, 9];
        // "1 8 9" never appeared before; "8 9" did, followed by 5 1 8.
        assert_eq!(find_draft(&sequence, 3), &[5, 1, 8]);
        // A single recurring token is not enough.
        assert!(find_draft(&[7, 8, 9, 5, 1, 2, 9], 3).is_empty());
    }

    #[test]
    fn the_most_recent_full_continuation_wins() {
        // "0 4" then "5" after the first occurrence, "0 4" then "6" after the second.
        let sequence = [0, 4, 5, 0, 4, 6, 0, 4];
        assert_eq!(find_draft(&sequence, 1), &[6]);
        assert_eq!(find_draft(&sequence, 3), &[6, 0, 4]);
        // A repeating loop: the latest period is cut short, an older occurrence continues longer.
        let looping = [1, 2, 1, 2, 1, 2, 1, 2];
        assert_eq!(find_draft(&looping, 4), &[1, 2, 1, 2]);
    }

    #[test]
    fn nothing_is_proposed_without_a_match_or_a_budget() {
        assert!(find_draft(&[1, 2, 3, 4], 5).is_empty());
        assert!(find_draft(&[1], 5).is_empty());
        assert!(find_draft(&[], 5).is_empty());
        assert!(find_draft(&[1, 2, 1, 2], 0).is_empty());
    }

    #[test]
    fn drafts_stop_short_of_the_limit_and_the_reread() {
        // 10 tokens, limit 20: the chosen token plus at most 9 more.
        assert_eq!(draft_room(10, 20, None, None), 9);
        assert_eq!(draft_room(19, 20, None, None), 0);
        assert_eq!(draft_room(25, 20, None, None), 0);
        // The re-read at 4097: from 4090 the plain steps at 4091..=4096 may be skipped, not 4097.
        assert_eq!(draft_room(4090, 8000, Some(4097), None), 6);
        assert_eq!(draft_room(4096, 8000, Some(4097), None), 0);
        // At 4097 the loop re-reads instead of drafting; past it drafts are free again.
        assert_eq!(draft_room(4098, 8000, Some(4097), None), 8000 - 4099);
        assert_eq!(draft_room(4090, 4093, Some(4097), None), 2);
        // LongRoPE switching past 64: a run from 60 may reach a mask of 64 (all short-table
        // rows), never 65; from 65 on every row uses the long table anyway.
        assert_eq!(draft_room(60, 1000, None, Some(64)), 4);
        assert_eq!(draft_room(64, 1000, None, Some(64)), 0);
        assert_eq!(draft_room(65, 1000, None, Some(64)), 1000 - 66);
    }

    #[test]
    fn draft_length_grows_on_success_and_pauses_after_misses() {
        let mut length = DraftLength::default();
        assert_eq!(length.wanted(), 2);
        length.record(2, 2);
        assert_eq!(length.wanted(), 4);
        length.record(4, 4);
        length.record(8, 8);
        assert_eq!(length.wanted(), MAX_DRAFT);
        length.record(8, 3);
        assert_eq!(length.wanted(), 4);
        // Rejected at once: one plain step, then a draft of 1; a second miss pauses for 2.
        length.record(4, 0);
        assert_eq!(length.wanted(), 0);
        assert_eq!(length.wanted(), 1);
        length.record(1, 0);
        assert_eq!((length.wanted(), length.wanted(), length.wanted()), (0, 0, 1));
        for _ in 0..10 {
            length.record(1, 0);
            while length.wanted() == 0 {}
        }
        length.record(1, 0);
        let paused = std::iter::from_fn(|| Some(length.wanted())).take_while(|&k| k == 0).count();
        assert_eq!(paused, MAX_PAUSE);
        // Any acceptance ends the pauses.
        length.record(1, 1);
        assert_eq!(length.wanted(), 2);
    }
}
