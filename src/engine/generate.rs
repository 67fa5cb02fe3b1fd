//! The generation loop (contract §6): prefill in one run, then one token per step, with
//! onnxruntime-genai's rules for the first logits row, EOS, `max_length` and sampling.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use super::{
    decoder::{Decoder, DecoderError, KvCache, KvMode},
    prompt_lookup::{self, DraftLength, LookupStats, Verification},
    sampling::{self, Method, SamplingError, SamplingSettings},
    stop::StopMatcher,
    tokenizer::PromptTokenizer,
};

/// Why a reply ended (`llm/v1/chat` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-sequence token or a stop string.
    Stop,
    /// `max_length` or `max_tokens` reached.
    Length,
    /// The user stopped it.
    Cancelled,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Cancelled => "cancelled",
        }
    }
}

/// Token counts with MLflow `llm/v1/chat` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// The whole prompt, including the part that came from the cache.
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
    /// Prompt tokens whose keys and values were reused from the previous request instead of
    /// being run through the model again.
    #[serde(default)]
    pub cached_tokens: usize,
}

impl Usage {
    /// The OpenAI `usage` object: the three counts, plus `prompt_tokens_details.cached_tokens`
    /// when part of the prompt came from the cache. Without reuse it is exactly MLflow's
    /// `llm/v1/chat` usage, so a single reply prints what an MLflow package predicts.
    pub fn openai_json(&self) -> serde_json::Value {
        let mut usage = serde_json::json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        });
        if self.cached_tokens > 0 {
            usage["prompt_tokens_details"] = serde_json::json!({"cached_tokens": self.cached_tokens});
        }
        usage
    }
}

/// Speed figures of one reply.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Timings {
    /// From the start of the request to the first completion token (prefill + first choice).
    pub time_to_first_token_ms: f64,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    pub prefill_tokens_per_second: f64,
    pub decode_tokens_per_second: f64,
    /// Where the decode steps' time went.
    #[serde(default)]
    pub decode_profile: DecodeProfile,
    /// How prompt-lookup drafts fared (all zero when it was off).
    #[serde(default)]
    pub prompt_lookup: LookupStats,
}

/// The decode steps' time, split by what it was spent on (milliseconds, summed over the steps).
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct DecodeProfile {
    pub steps: usize,
    /// Inside ONNX Runtime's run.
    pub run_ms: f64,
    /// Around the run: binding inputs, growing the KV buffers, copying the logits row out.
    pub io_ms: f64,
    /// Logits processors and choosing the token.
    pub sampling_ms: f64,
    /// Streaming text and stop strings.
    pub text_ms: f64,
    /// The caller's progress callback (events to the GUI or server).
    pub events_ms: f64,
}

/// Options for one reply. `None` fields take the model folder's `search` defaults.
#[derive(Debug, Clone, Default)]
pub struct GenerateOptions {
    /// Prompt + completion, as onnxruntime-genai counts it.
    pub max_length: Option<usize>,
    /// Completion tokens only (OpenAI style); the tighter of the two limits applies.
    pub max_tokens: Option<usize>,
    pub do_sample: Option<bool>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub temperature: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub min_length: Option<usize>,
    pub no_repeat_ngram_size: Option<usize>,
    pub seed: Option<i64>,
    /// Text that ends the reply when it appears (not included in the reply).
    pub stop: Vec<String>,
    /// Never pick an EOS token (benchmarks generate an exact count).
    pub suppress_eos: bool,
    pub kv_mode: KvMode,
    /// Run the whole prompt through the model even when the cache holds a prefix of it (for
    /// benchmarks and for comparisons with a fresh onnxruntime-genai generator).
    pub ignore_cached_prefix: bool,
    /// Prompt-lookup decoding for greedy replies (see [`prompt_lookup`]; off unless `Some(true)`,
    /// ignored when sampling).
    pub prompt_lookup: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error(
        "the prompt is {prompt_tokens} tokens but max_length is {max_length}: shorten the conversation or raise max_length (the model's context is {context_length} tokens)"
    )]
    PromptTooLong { prompt_tokens: usize, max_length: usize, context_length: usize },
    #[error("max_length {max_length} is larger than the model's context length {context_length}")]
    MaxLengthTooLarge { max_length: usize, context_length: usize },
    #[error(transparent)]
    Sampling(#[from] SamplingError),
    #[error(transparent)]
    Decoder(#[from] DecoderError),
}

/// One finished reply.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Completion {
    pub prompt_ids: Vec<i64>,
    /// Generated ids, without a final EOS.
    pub completion_ids: Vec<i64>,
    /// The EOS token that ended the reply, if one did.
    pub eos_token: Option<i64>,
    pub text: String,
    pub finish_reason: FinishReason,
    pub usage: Usage,
    pub timings: Timings,
    /// The max_length that applied.
    pub max_length: usize,
    /// Why the reply ended, when `finish_reason` alone does not say it (the graph refused to go
    /// further than its own length limit).
    pub note: Option<String>,
}

/// What the loop reports as it goes.
pub enum Progress<'a> {
    /// The prompt has been processed; `cached_tokens` of it came from the cache.
    Prefilled { prompt_tokens: usize, cached_tokens: usize, elapsed: Duration },
    /// A token was accepted; `text` is the newly complete text (may be empty).
    Token { id: i64, text: &'a str },
}

/// The resolved search settings for one reply.
pub struct ResolvedOptions {
    pub max_length: usize,
    pub sampling: SamplingSettings,
    pub seed: i64,
    /// The sequence length at which the whole sequence is run through the model again.
    pub rope_rewind_at: Option<usize>,
    /// Prompt-lookup drafts may be verified on this model (see [`prompt_lookup::draft_room`]):
    /// false for a LongRoPE graph whose switching length is unknown.
    pub drafts_allowed: bool,
    /// The attention-mask length past which a LongRoPE graph uses its long rotary table.
    pub long_rope_switch: Option<usize>,
}

/// onnxruntime-genai's "Phi-3 RoPE rewind": for `phi3`/`phimoe` models (and `phi3small`), when a
/// decode step starts with the sequence at 4097 (8193) tokens, it drops the cache and runs the
/// whole sequence again, so that LongRoPE models (Phi-3-mini-128k, Phi-3.5-mini), whose graph
/// switches to the long rotary factors past 4096 tokens, recompute the earlier keys with them.
/// Shorter-context models never reach the threshold.
pub fn rope_rewind_threshold(model_type: &str) -> Option<usize> {
    match model_type {
        "phi3" | "phimoe" => Some(4097),
        "phi3small" => Some(8193),
        _ => None,
    }
}

/// Applies `options` over the folder's search defaults and checks them.
pub fn resolve(
    options: &GenerateOptions,
    defaults: &super::config::SearchOptions,
    default_max_length: usize,
    context_length: usize,
) -> Result<ResolvedOptions, GenerateError> {
    let max_length = options.max_length.unwrap_or(default_max_length);
    if max_length > context_length {
        return Err(GenerateError::MaxLengthTooLarge { max_length, context_length });
    }
    let sampling = SamplingSettings {
        do_sample: options.do_sample.unwrap_or(defaults.do_sample),
        top_k: options.top_k.unwrap_or(defaults.top_k),
        top_p: options.top_p.unwrap_or(defaults.top_p),
        temperature: options.temperature.unwrap_or(defaults.temperature),
        repetition_penalty: options.repetition_penalty.unwrap_or(defaults.repetition_penalty),
        min_length: options.min_length.unwrap_or(defaults.min_length),
        no_repeat_ngram_size: options.no_repeat_ngram_size.unwrap_or(defaults.no_repeat_ngram_size),
    };
    Ok(ResolvedOptions { max_length, sampling, seed: options.seed.unwrap_or(defaults.random_seed), rope_rewind_at: None,
        drafts_allowed: false,
        long_rope_switch: None,
    })
}

/// The row whose logits choose the first token: the last prompt position that is not the pad
/// token (floored at 0), as onnxruntime-genai picks it.
fn first_logits_row(prompt_ids: &[i64], pad: Option<i64>) -> usize {
    prompt_ids.iter().rposition(|&id| Some(id) != pad).unwrap_or(0)
}

/// How many leading prompt tokens a request can take from `cache` instead of running them
/// through the model: their common prefix, but never the row the first token is read from (at
/// least that one token is always run, so there are logits to choose from).
pub fn reusable_prefix(cache: Option<&KvCache>, prompt_ids: &[i64], pad: Option<i64>, options: &GenerateOptions) -> usize {
    match cache {
        Some(cache) if cache.mode() == options.kv_mode && !options.ignore_cached_prefix => {
            cache.reusable_prefix(prompt_ids).min(first_logits_row(prompt_ids, pad))
        }
        _ => 0,
    }
}

/// Runs one reply. `cache` is the sequence kept from the previous request (or `None`): the
/// common prefix of its ids and `prompt_ids` is reused, the rest is run through the model, and
/// afterwards it holds the prompt plus every generated token that was fed through the model.
/// `cancel` is polled between steps; a step in flight is stopped through the decoder's
/// canceller by whoever sets the flag.
#[allow(clippy::too_many_arguments)]
pub fn run(
    decoder: &mut Decoder,
    cache: &mut Option<KvCache>,
    tokenizer: &PromptTokenizer,
    prompt_ids: &[i64],
    options: &GenerateOptions,
    resolved: &ResolvedOptions,
    eos: &[i64],
    pad: Option<i64>,
    context_length: usize,
    cancel: &AtomicBool,
    on_progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Completion, GenerateError> {
    let started = Instant::now();
    let prompt_len = prompt_ids.len();
    if prompt_len == 0 {
        return Err(GenerateError::EmptyPrompt);
    }
    let max_length = resolved.max_length;
    if prompt_len > max_length {
        return Err(GenerateError::PromptTooLong { prompt_tokens: prompt_len, max_length, context_length });
    }
    let vocab = decoder.io.vocab_size;
    let method = resolved.sampling.method(vocab)?;
    let limit = match options.max_tokens {
        Some(tokens) => max_length.min(prompt_len.saturating_add(tokens)),
        None => max_length,
    };
    let mut rng = sampling::rng_for_seed(resolved.seed);
    let mut stream = tokenizer.stream();
    let mut stops = StopMatcher::new(&options.stop);
    let mut sequence = prompt_ids.to_vec();
    let mut completion_ids = Vec::new();
    let mut text = String::new();
    let mut eos_token = None;
    let mut first_token_at = None;
    let mut decode_time = Duration::ZERO;
    let mut prefill_time = Duration::ZERO;
    let mut cached_tokens = 0usize;
    let mut note = None;
    let mut profile = DecodeProfile::default();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;

    // Prompt lookup drafts only for greedy choices, which a verification run can check.
    let mut drafting =
        (options.prompt_lookup == Some(true) && method == Method::Greedy && resolved.drafts_allowed).then(DraftLength::default);
    let mut verification = Verification::default();
    let mut lookup_stats = LookupStats::default();
    let mut decode_rows = 0usize;

    let finish = 'generate: {
        if prompt_len >= limit {
            // genai raises on the first step here; a reply of no tokens is the useful answer.
            break 'generate FinishReason::Length;
        }
        if cancel.load(Ordering::Relaxed) {
            break 'generate FinishReason::Cancelled;
        }
        decoder.reset_cancel()?;
        cached_tokens = reusable_prefix(cache.as_ref(), prompt_ids, pad, options);
        if cache.as_ref().is_some_and(|c| c.mode() != options.kv_mode) {
            *cache = None;
        }
        let cache = cache.get_or_insert_with(|| decoder.new_cache(options.kv_mode));
        cache.rewind(cached_tokens)?;
        let row_index = first_logits_row(prompt_ids, pad);
        let logits = match decoder.step_row(cache, &prompt_ids[cached_tokens..], max_length, row_index - cached_tokens) {
            Ok(logits) => logits,
            Err(DecoderError::Cancelled) => break 'generate FinishReason::Cancelled,
            Err(error) => return Err(error.into()),
        };
        prefill_time = logits.elapsed;
        on_progress(Progress::Prefilled { prompt_tokens: prompt_len, cached_tokens, elapsed: prefill_time });
        let mut row = logits.into_row(row_index - cached_tokens);
        // Every exit below leaves the cache as plain decoding would: holding the sequence's
        // tokens that were fed through the model (all of them after an EOS, all but the last
        // otherwise), never a drafted token that was not accepted.
        loop {
            let sampling_started = Instant::now();
            sampling::apply_processors(&mut row, &sequence, &resolved.sampling, eos);
            if options.suppress_eos {
                for &id in eos {
                    if let Some(logit) = usize::try_from(id).ok().and_then(|i| row.get_mut(i)) {
                        *logit = f32::MIN;
                    }
                }
            }
            let token = sampling::choose(&row, &resolved.sampling, method, &mut rng) as i64;
            first_token_at.get_or_insert_with(|| started.elapsed());
            profile.sampling_ms += ms(sampling_started.elapsed());
            if eos.contains(&token) {
                eos_token = Some(token);
                let tail = stops.finish(&mut stream);
                text.push_str(&tail);
                on_progress(Progress::Token { id: token, text: &tail });
                drop_rejected_drafts(cache, &mut verification, &mut drafting, &mut lookup_stats, sequence.len())?;
                break 'generate FinishReason::Stop;
            }
            sequence.push(token);
            completion_ids.push(token);
            let text_started = Instant::now();
            let piece = stream.push(token);
            let (visible, stopped) = stops.feed(&piece);
            text.push_str(&visible);
            let events_started = Instant::now();
            profile.text_ms += ms(events_started - text_started);
            on_progress(Progress::Token { id: token, text: &visible });
            profile.events_ms += ms(events_started.elapsed());
            let ended = if stopped {
                Some(FinishReason::Stop)
            } else if sequence.len() >= limit {
                flush_at_length(&mut stops, &mut stream, &mut text, token, on_progress);
                Some(FinishReason::Length)
            } else if cancel.load(Ordering::Relaxed) {
                Some(FinishReason::Cancelled)
            } else {
                None
            };
            if let Some(reason) = ended {
                drop_rejected_drafts(cache, &mut verification, &mut drafting, &mut lookup_stats, sequence.len() - 1)?;
                break 'generate reason;
            }
            // A drafted token that greedy decoding chose too was already fed: its row is next.
            if verification.is_pending() {
                match verification.advance(token) {
                    Ok(next) => {
                        row = next;
                        decode_rows += 1;
                        continue;
                    }
                    Err(finished) => {
                        record_verification(&mut drafting, &mut lookup_stats, finished);
                        cache.rewind(sequence.len() - 1)?;
                    }
                }
            } else {
                record_verification(&mut drafting, &mut lookup_stats, verification.finish());
            }
            // At genai's LongRoPE threshold the whole sequence is read again (see
            // `rope_rewind_threshold`); every other step feeds the new token, with a draft when
            // prompt lookup finds one (never reaching the threshold or the length limit).
            let reread = resolved.rope_rewind_at == Some(sequence.len());
            let draft: &[i64] = match drafting.as_mut() {
                Some(length) if !reread => {
                    let room = prompt_lookup::draft_room(sequence.len(), limit, resolved.rope_rewind_at, resolved.long_rope_switch);
                    prompt_lookup::find_draft(&sequence, length.wanted().min(room))
                }
                _ => &[],
            };
            let logits_row = if reread { first_logits_row(&sequence, pad) } else { 0 };
            let result = if reread {
                cache.rewind(0).and_then(|()| decoder.step_row(cache, &sequence, max_length, logits_row))
            } else if draft.is_empty() {
                decoder.step_row(cache, &[token], max_length, 0)
            } else {
                let fed: Vec<i64> = std::iter::once(token).chain(draft.iter().copied()).collect();
                match decoder.step(cache, &fed, max_length) {
                    // A graph that cannot run as far as the draft reaches may still take the
                    // one token: plain steps from here on.
                    Err(DecoderError::Run(_)) => {
                        drafting = None;
                        decoder.step_row(cache, &[token], max_length, 0)
                    }
                    other => other,
                }
            };
            let step = match result {
                Ok(logits) => logits,
                Err(DecoderError::Cancelled) => break 'generate FinishReason::Cancelled,
                // A graph can stop short of the configured context (its rotary tables end, for
                // instance): the reply so far is kept and ends as a length stop.
                Err(DecoderError::Run(message)) => {
                    note = Some(format!("the model cannot run more than {} tokens: {message}", cache.len()));
                    flush_at_length(&mut stops, &mut stream, &mut text, token, on_progress);
                    break 'generate FinishReason::Length;
                }
                Err(error) => return Err(error.into()),
            };
            decode_time += step.elapsed;
            decode_rows += 1;
            profile.steps += 1;
            profile.run_ms += ms(step.run_elapsed);
            profile.io_ms += ms(step.elapsed.saturating_sub(step.run_elapsed));
            row = if !draft.is_empty() && step.rows == draft.len() + 1 {
                lookup_stats.verification_ms += ms(step.elapsed);
                verification.start(draft, step)
            } else {
                step.into_row(logits_row)
            };
        }
    };
    if finish == FinishReason::Cancelled {
        let tail = stops.finish(&mut stream);
        text.push_str(&tail);
    }
    let per_second = |count: usize, d: Duration| if d.is_zero() { 0.0 } else { count as f64 / d.as_secs_f64() };
    let completion_tokens = completion_ids.len();
    Ok(Completion {
        prompt_ids: prompt_ids.to_vec(),
        completion_ids,
        eos_token,
        text,
        finish_reason: finish,
        usage: Usage {
            prompt_tokens: prompt_len,
            completion_tokens,
            total_tokens: prompt_len + completion_tokens,
            cached_tokens,
        },
        timings: Timings {
            time_to_first_token_ms: first_token_at.map(ms).unwrap_or(0.0),
            prefill_ms: ms(prefill_time),
            decode_ms: ms(decode_time),
            prefill_tokens_per_second: per_second(prompt_len - cached_tokens, prefill_time),
            decode_tokens_per_second: per_second(decode_rows, decode_time),
            decode_profile: profile,
            prompt_lookup: lookup_stats,
        },
        max_length,
        note,
    })
}

/// Folds a finished verification into the reply's totals and the draft length.
fn record_verification(drafting: &mut Option<DraftLength>, stats: &mut LookupStats, finished: Option<(usize, usize)>) {
    if let Some((drafted, accepted)) = finished {
        stats.verifications += 1;
        stats.drafted += drafted;
        stats.accepted += accepted;
        if let Some(length) = drafting {
            length.record(drafted, accepted);
        }
    }
}

/// When the reply ends while a verification's drafted tokens are undecided: drops them from the
/// cache, which then holds the first `keep` tokens of the sequence, as after plain decoding.
fn drop_rejected_drafts(
    cache: &mut KvCache,
    verification: &mut Verification,
    drafting: &mut Option<DraftLength>,
    stats: &mut LookupStats,
    keep: usize,
) -> Result<(), DecoderError> {
    let pending = verification.is_pending();
    record_verification(drafting, stats, verification.finish());
    if pending { cache.rewind(keep) } else { Ok(()) }
}

/// At a length stop: whatever the stream and the stop matcher still hold becomes text.
fn flush_at_length(
    stops: &mut StopMatcher<'_>,
    stream: &mut super::tokenizer::TextStream<'_>,
    text: &mut String,
    token: i64,
    on_progress: &mut dyn FnMut(Progress<'_>),
) {
    let tail = stops.finish(stream);
    text.push_str(&tail);
    if !tail.is_empty() {
        on_progress(Progress::Token { id: token, text: &tail });
    }
}
