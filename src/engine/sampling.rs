//! Choosing the next token the way onnxruntime-genai does (contract §6.7–§7), so the same seed
//! gives the same tokens.
//!
//! * Logits processors, in genai's order: min_length, repetition penalty, no-repeat n-gram.
//! * Greedy: the *first* index of the maximum (genai's strict `>` scan from index 0).
//! * Sampling: top-k (optionally followed by top-p inside the k), or top-p over the whole
//!   vocabulary with genai's tail-bound nucleus search, all in f32 as genai computes them; then a
//!   draw that reproduces libstdc++'s `std::discrete_distribution<int>` on a `std::mt19937`
//!   (probabilities widened to f64 and normalised, prefix sums with the last forced to 1.0, a
//!   53-bit uniform from two 32-bit outputs, `lower_bound`). A distribution of one entry draws no
//!   random number, as in libstdc++.

use rand_mt::Mt;

use super::cpp_sort::partial_sort;

/// What decides the next token.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingSettings {
    pub do_sample: bool,
    pub top_k: usize,
    pub top_p: f32,
    pub temperature: f32,
    pub repetition_penalty: f32,
    pub min_length: usize,
    pub no_repeat_ngram_size: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Greedy,
    TopK,
    TopP,
    TopKTopP,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SamplingError {
    #[error("top_p must be between 0.0 and 1.0 (got {0})")]
    TopP(f32),
    #[error("top_k ({top_k}) must be at most the vocabulary size ({vocab})")]
    TopK { top_k: usize, vocab: usize },
    #[error("temperature must be zero or positive (got {0})")]
    Temperature(f32),
}

impl SamplingSettings {
    /// genai's `InitializeSamplingMethod`.
    pub fn method(&self, vocab: usize) -> Result<Method, SamplingError> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(SamplingError::Temperature(self.temperature));
        }
        if !self.do_sample || self.top_k == 1 || self.temperature == 0.0 {
            return Ok(Method::Greedy);
        }
        if !(0.0..=1.0).contains(&self.top_p) {
            return Err(SamplingError::TopP(self.top_p));
        }
        if self.top_k > vocab {
            return Err(SamplingError::TopK { top_k: self.top_k, vocab });
        }
        Ok(if self.top_p > 0.0 && self.top_p < 1.0 && self.top_k > 1 {
            Method::TopKTopP
        } else if self.top_k > 1 {
            Method::TopK
        } else {
            Method::TopP
        })
    }
}

/// `std::mt19937` seeded as genai seeds it: the seed itself when ≥ 0, else fresh entropy.
pub fn rng_for_seed(seed: i64) -> Mt {
    if seed >= 0 {
        Mt::new(seed as u32)
    } else {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let key = [nanos as u32, (nanos >> 32) as u32, std::process::id(), (nanos >> 64) as u32];
        Mt::new_with_key(key)
    }
}

/// Applies the logits processors in place. `sequence` is prompt plus generated tokens.
pub fn apply_processors(logits: &mut [f32], sequence: &[i64], settings: &SamplingSettings, eos: &[i64]) {
    let vocab = logits.len();
    if sequence.len() < settings.min_length {
        for &id in eos {
            if let Some(logit) = usize::try_from(id).ok().and_then(|i| logits.get_mut(i)) {
                *logit = f32::MIN;
            }
        }
    }
    if settings.repetition_penalty != 1.0 {
        let penalty = settings.repetition_penalty;
        let mut seen = vec![false; vocab];
        for &id in sequence {
            let Ok(index) = usize::try_from(id) else { continue };
            if index < vocab && !seen[index] {
                seen[index] = true;
                let score = logits[index];
                logits[index] = if score < 0.0 { score * penalty } else { score / penalty };
            }
        }
    }
    let n = settings.no_repeat_ngram_size;
    if n > 0 && sequence.len() >= n {
        let tail = &sequence[sequence.len() - (n - 1)..];
        for start in 0..=sequence.len() - n {
            if &sequence[start..start + n - 1] == tail {
                if let Some(logit) = usize::try_from(sequence[start + n - 1]).ok().and_then(|i| logits.get_mut(i)) {
                    *logit = f32::MIN;
                }
            }
        }
    }
}

/// The first index of the largest value.
pub fn argmax_first(values: &[f32]) -> usize {
    let mut best = 0;
    for (index, &value) in values.iter().enumerate().skip(1) {
        if value > values[best] {
            best = index;
        }
    }
    best
}

/// Picks the next token from processed logits.
pub fn choose(logits: &[f32], settings: &SamplingSettings, method: Method, rng: &mut Mt) -> usize {
    match method {
        Method::Greedy => argmax_first(logits),
        Method::TopK => {
            let (indices, probs) = top_k_distribution(logits, settings.top_k, None, settings.temperature);
            indices[draw_discrete(&probs, rng)]
        }
        Method::TopKTopP => {
            let (indices, probs) =
                top_k_distribution(logits, settings.top_k, Some(settings.top_p), settings.temperature);
            indices[draw_discrete(&probs, rng)]
        }
        Method::TopP => {
            let (indices, probs) = nucleus_distribution(logits, settings.top_p, settings.temperature);
            indices[draw_discrete(&probs, rng)]
        }
    }
}

/// Token indices ordered as genai orders them: `std::partial_sort` of `0..V` by descending
/// score, whose order of equal scores matters (see [`super::cpp_sort`]).
fn sorted_prefix(scores: &[f32], count: usize) -> Vec<usize> {
    let mut indices: Vec<usize> = (0..scores.len()).collect();
    partial_sort(&mut indices, count.min(scores.len()), &|a: &usize, b: &usize| scores[*a] > scores[*b]);
    indices.truncate(count);
    indices
}

fn top_k_distribution(scores: &[f32], top_k: usize, top_p: Option<f32>, temperature: f32) -> (Vec<usize>, Vec<f32>) {
    let inverse_temperature = 1.0f32 / temperature;
    let kept = top_k.min(scores.len());
    let indices = sorted_prefix(scores, kept);
    let max_score = scores[indices[0]];
    let mut probs: Vec<f32> = indices.iter().map(|&i| ((scores[i] - max_score) * inverse_temperature).exp()).collect();
    let sum: f32 = probs.iter().fold(0.0f32, |acc, p| acc + p);
    if sum > 0.0 {
        for p in &mut probs {
            *p /= sum;
        }
    }
    let mut keep = kept;
    if let Some(p) = top_p {
        let mut cumulative = 0.0f32;
        for (j, prob) in probs.iter().enumerate() {
            cumulative += prob;
            if cumulative >= p {
                keep = j + 1;
                break;
            }
        }
    }
    let keep_sum: f32 = probs[..keep].iter().fold(0.0f32, |acc, p| acc + p);
    let inverse = if keep_sum > 0.0 { 1.0 / keep_sum } else { 0.0 };
    let kept_probs = probs[..keep].iter().map(|p| p * inverse).collect();
    (indices[..keep].to_vec(), kept_probs)
}

fn nucleus_distribution(scores: &[f32], p: f32, temperature: f32) -> (Vec<usize>, Vec<f32>) {
    let inverse_temperature = 1.0f32 / temperature;
    let vocab = scores.len();
    let max_score = scores.iter().copied().fold(f32::NEG_INFINITY, |best, s| if s > best { s } else { best });
    let weight = |score: f32| ((score - max_score) * inverse_temperature).exp();
    let descending = |a: &usize, b: &usize| scores[*a] > scores[*b];
    // genai walks the sorted scores, stopping where the prefix provably holds `p` of the mass:
    // every unseen score is at most the current one, which bounds the tail. It sorts in stages
    // of 16, 64, 256, … candidates, each stage a partial sort of what is still unsorted (which
    // fixes the order of ties), and a cutoff that falls on the last candidate of a stage (other
    // than the final one) does not end the search: the walk goes on into the next stage.
    const FIRST_STAGE: usize = 16;
    const STAGE_GROWTH: usize = 4;
    let mut indices: Vec<usize> = (0..vocab).collect();
    let mut sorted = 0;
    let mut stage_end = FIRST_STAGE.min(vocab);
    let mut prefix = 0.0f32;
    let mut cutoff;
    loop {
        partial_sort(&mut indices[sorted..], stage_end - sorted, &descending);
        cutoff = stage_end;
        for i in sorted..stage_end {
            let exp_i = weight(scores[indices[i]]);
            prefix += exp_i;
            let tail_bound = (vocab - i - 1) as f32 * exp_i;
            if prefix >= p * (prefix + tail_bound) {
                cutoff = i + 1;
                break;
            }
        }
        sorted = stage_end;
        if cutoff < stage_end || stage_end == vocab {
            break;
        }
        stage_end = (stage_end * STAGE_GROWTH).min(vocab);
    }
    // For small vocabularies genai uses the exact partition function instead.
    if vocab <= FIRST_STAGE * STAGE_GROWTH {
        if sorted < vocab {
            partial_sort(&mut indices[sorted..], vocab - sorted, &descending);
        }
        let total = indices.iter().fold(0.0f32, |acc, &i| acc + weight(scores[i]));
        let mut cumulative = 0.0f32;
        for (i, &index) in indices.iter().enumerate() {
            cumulative += weight(scores[index]);
            if cumulative >= p * total {
                cutoff = i + 1;
                break;
            }
        }
    }
    let weights: Vec<f32> = indices[..cutoff].iter().map(|&i| weight(scores[i])).collect();
    let sum = weights.iter().fold(0.0f32, |acc, w| acc + w);
    let inverse = if sum > 0.0 { 1.0 / sum } else { 0.0 };
    indices.truncate(cutoff);
    (indices, weights.iter().map(|w| w * inverse).collect())
}

/// libstdc++'s `std::discrete_distribution<int>(probs)(rng)`.
pub fn draw_discrete(probs: &[f32], rng: &mut Mt) -> usize {
    if probs.len() < 2 {
        return 0;
    }
    let sum: f64 = probs.iter().map(|&p| f64::from(p)).sum();
    let mut cumulative = Vec::with_capacity(probs.len());
    let mut running = 0.0f64;
    for &p in probs {
        running += f64::from(p) / sum;
        cumulative.push(running);
    }
    if let Some(last) = cumulative.last_mut() {
        *last = 1.0;
    }
    let low = f64::from(rng.next_u32());
    let high = f64::from(rng.next_u32());
    let mut u = (low + high * 4_294_967_296.0) / 18_446_744_073_709_551_616.0;
    if u >= 1.0 {
        u = 1.0f64.next_down();
    }
    cumulative.partition_point(|&c| c < u)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SamplingSettings {
        SamplingSettings {
            do_sample: true,
            top_k: 50,
            top_p: 0.0,
            temperature: 1.0,
            repetition_penalty: 1.0,
            min_length: 0,
            no_repeat_ngram_size: 0,
        }
    }

    #[test]
    fn argmax_takes_the_first_maximum_and_nan_never_replaces_the_best() {
        assert_eq!(argmax_first(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax_first(&[0.5, f32::NAN, 1.0]), 2);
        // As in genai's strict `>` scan, a NaN in the first slot is never beaten.
        assert_eq!(argmax_first(&[f32::NAN, 1.0, 0.5]), 0);
    }

    #[test]
    fn method_selection_follows_genai() {
        let mut s = settings();
        assert_eq!(s.method(100), Ok(Method::TopK));
        s.top_p = 0.9;
        assert_eq!(s.method(100), Ok(Method::TopKTopP));
        s.top_k = 0;
        assert_eq!(s.method(100), Ok(Method::TopP));
        s.top_k = 1;
        assert_eq!(s.method(100), Ok(Method::Greedy));
        s.top_k = 5;
        s.temperature = 0.0;
        assert_eq!(s.method(100), Ok(Method::Greedy));
        s.temperature = 1.0;
        s.top_k = 101;
        assert!(matches!(s.method(100), Err(SamplingError::TopK { .. })));
        s.do_sample = false;
        assert_eq!(s.method(100), Ok(Method::Greedy));
    }

    #[test]
    fn repetition_penalty_divides_positive_and_multiplies_negative_once_per_id() {
        let mut logits = vec![2.0, -2.0, 1.0];
        let s = SamplingSettings { repetition_penalty: 2.0, ..settings() };
        apply_processors(&mut logits, &[0, 1, 0, 0], &s, &[]);
        assert_eq!(logits, vec![1.0, -4.0, 1.0]);
    }

    #[test]
    fn min_length_masks_eos_and_ngram_bans_repeats() {
        let mut logits = vec![0.0; 6];
        let s = SamplingSettings { min_length: 5, no_repeat_ngram_size: 2, ..settings() };
        apply_processors(&mut logits, &[1, 2, 1], &s, &[5]);
        assert_eq!(logits[5], f32::MIN);
        assert_eq!(logits[2], f32::MIN, "the bigram (1, 2) must not repeat");
        assert_eq!(logits[1], 0.0);
    }

    #[test]
    fn mt19937_matches_the_cpp_reference_stream() {
        // The 10000th output of a default-seeded std::mt19937 is 4123659995 (C++11 §26.5.5).
        let mut rng = Mt::new(5489);
        let mut last = 0;
        for _ in 0..10000 {
            last = rng.next_u32();
        }
        assert_eq!(last, 4_123_659_995);
    }

    #[test]
    fn single_entry_distribution_draws_nothing() {
        let mut a = Mt::new(42);
        let mut b = Mt::new(42);
        assert_eq!(draw_discrete(&[1.0], &mut a), 0);
        assert_eq!(a.next_u32(), b.next_u32());
    }

    #[test]
    fn discrete_draw_is_a_lower_bound_on_the_cumulative() {
        let mut rng = Mt::new(7);
        let mut counts = [0usize; 3];
        for _ in 0..3000 {
            counts[draw_discrete(&[0.1, 0.6, 0.3], &mut rng)] += 1;
        }
        assert!(counts[1] > counts[2] && counts[2] > counts[0], "{counts:?}");
    }

    #[test]
    fn a_nucleus_ending_on_a_stage_boundary_grows_like_genais() {
        // Sixteen equal scores, then a long flat tail: with p just below the mass of the first
        // sixteen, the cutoff falls on the 16th candidate, which genai does not accept.
        let mut scores = vec![10.0f32; 16];
        scores.extend(std::iter::repeat_n(0.0f32, 200));
        let mass: f32 = 16.0 / (16.0 + 200.0 * (-10.0f32).exp());
        let (indices, _) = nucleus_distribution(&scores, mass * 0.999, 1.0);
        assert_eq!(indices.len(), 17);
    }

    #[test]
    fn top_p_zero_keeps_only_the_best_token() {
        let (indices, probs) = nucleus_distribution(&[0.1, 5.0, 0.3], 0.0, 1.0);
        assert_eq!(indices, vec![1]);
        assert_eq!(probs, vec![1.0]);
    }
}
