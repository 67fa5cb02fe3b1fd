//! Progress read from the model builder's own output (stdout and stderr, tqdm's `\r` updates
//! split into lines): Python starting and transformers loading the weights, the builder reading
//! each layer, quantizing each MatMul (int4), writing each tensor, then the config and tokenizer.
//! The fraction only grows; stages without a counter move by their marker lines.

/// What the builder is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Python importing torch and transformers, transformers reading the checkpoint.
    Loading,
    /// Building the graph layer by layer.
    Reading,
    /// int4: quantizing each MatMul.
    Quantizing,
    /// Writing the tensors of `model.onnx.data`.
    Writing,
    /// `genai_config.json` and the tokenizer files.
    Finishing,
}

impl Stage {
    pub fn label(self) -> &'static str {
        match self {
            Stage::Loading => "Loading the checkpoint",
            Stage::Reading => "Building the ONNX graph",
            Stage::Quantizing => "Quantizing to int4",
            Stage::Writing => "Writing the weights",
            Stage::Finishing => "Writing the config and tokenizer",
        }
    }

    /// Where the stage starts and ends on the 0..1 scale (from the builder's time split on
    /// Phi-3-mini-shaped models: reading and quantizing dominate).
    fn span(self, quantized: bool) -> (f32, f32) {
        match (self, quantized) {
            (Stage::Loading, _) => (0.0, 0.1),
            (Stage::Reading, true) => (0.1, 0.45),
            (Stage::Reading, false) => (0.1, 0.7),
            (Stage::Quantizing, _) => (0.45, 0.8),
            (Stage::Writing, true) => (0.8, 0.97),
            (Stage::Writing, false) => (0.7, 0.97),
            (Stage::Finishing, _) => (0.97, 1.0),
        }
    }
}

/// Turns output lines into a stage and a fraction.
#[derive(Debug, Clone)]
pub struct ProgressParser {
    layers: Option<u64>,
    quantized: bool,
    stage: Stage,
    fraction: f32,
    /// MatMuls quantized so far.
    done_matmuls: u64,
}

impl ProgressParser {
    /// `layers`: `num_hidden_layers` of the checkpoint; `quantized`: int4.
    pub fn new(layers: Option<u64>, quantized: bool) -> Self {
        Self { layers, quantized, stage: Stage::Loading, fraction: 0.0, done_matmuls: 0 }
    }

    pub fn stage(&self) -> Stage {
        self.stage
    }

    pub fn fraction(&self) -> f32 {
        self.fraction
    }

    /// Moves to `stage` (never back) at `within` of it; returns whether anything changed.
    fn reach(&mut self, stage: Stage, within: f32) -> bool {
        if stage < self.stage {
            return false;
        }
        let (start, end) = stage.span(self.quantized);
        let fraction = (start + (end - start) * within.clamp(0.0, 1.0)).max(self.fraction);
        let changed = stage != self.stage || fraction > self.fraction;
        self.stage = stage;
        self.fraction = fraction;
        changed
    }

    /// Reads one line of output; returns whether the progress moved.
    pub fn line(&mut self, line: &str) -> bool {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Loading weights") {
            return counter(rest).is_some_and(|(done, total)| self.reach(Stage::Loading, ratio(done, total)));
        }
        if line.starts_with("Reading embedding layer") {
            return self.reach(Stage::Reading, 0.0);
        }
        if let Some(number) = line.strip_prefix("Reading layer ").and_then(|n| n.trim().parse::<u64>().ok()) {
            let within = self.layers.map_or(0.5, |layers| ratio(number + 1, layers.max(1) + 1));
            return self.reach(Stage::Reading, within);
        }
        if line.starts_with("Reading final norm") || line.starts_with("Reading LM head") {
            return self.reach(Stage::Reading, 1.0);
        }
        if line.starts_with("Saving ONNX model in") {
            return self.reach(if self.quantized { Stage::Quantizing } else { Stage::Writing }, 0.0);
        }
        if line.contains("complete quantization of") {
            self.done_matmuls += 1;
            // q/k/v (one packed MatMul), o, gate, up and down per layer, then the LM head.
            let expected = self.layers.map_or(0, |layers| layers * 5 + 1).max(self.done_matmuls + 1);
            return self.reach(Stage::Quantizing, ratio(self.done_matmuls, expected));
        }
        if line.starts_with("Saving GenAI config") {
            return self.reach(Stage::Finishing, 0.0);
        }
        if line.starts_with("Saving processing files") {
            return self.reach(Stage::Finishing, 0.5);
        }
        if line.starts_with("Saving ") {
            if let Some((done, total)) = counter(line) {
                return self.reach(Stage::Writing, ratio(done, total));
            }
        }
        false
    }
}

fn ratio(done: u64, total: u64) -> f32 {
    if total == 0 { 0.0 } else { (done as f64 / total as f64) as f32 }
}

/// tqdm's `| 12/30 [` counter in a progress line.
fn counter(line: &str) -> Option<(u64, u64)> {
    let bar_end = line.rfind('|')?;
    let after = line[bar_end + 1..].trim_start();
    let field = after.split_whitespace().next()?;
    let (done, total) = field.split_once('/')?;
    Some((done.parse().ok()?, total.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What onnxruntime-genai 0.18.0's builder printed converting a 2-layer model to int4 (cut).
    const INT4_RUN: &str = "Valid precision + execution provider combinations are: FP32 CPU, FP32 CUDA
Loading weights:   0%|          | 0/15 [00:00<?, ?it/s]
Loading weights: 100%|██████████| 15/15 [00:00<00:00, 5518.82it/s]
GroupQueryAttention (GQA) is used in this model.
Reading embedding layer
Reading layer 0
Reading layer 1
Reading final norm
Reading LM head
Saving ONNX model in /tmp/out
2026-11-30 10:24:08,533 onnxruntime.quantization.matmul_nbits_quantizer [INFO] - start to quantize /model/layers.0/attn/qkv_proj/MatMul ...
2026-11-30 10:24:08,538 onnxruntime.quantization.matmul_nbits_quantizer [INFO] - complete quantization of /model/layers.0/attn/qkv_proj/MatMul with 4 bits ...
2026-11-30 10:24:08,538 onnxruntime.quantization.matmul_nbits_quantizer [INFO] - complete quantization of /model/layers.0/attn/o_proj/MatMul with 4 bits ...
Saving model.embed_tokens.weight (f32, [768,64]):   3%|▎         | 1/30 [00:00<00:00, 67.84it/s]
Saving sin_cache (f32, [2048,8]):  13%|█▎        | 4/30 [00:00<00:00, 110.01it/s]
Saving model.layers.0.attn.qkv_proj.MatMul.weight_Q4 (u8, [128,2,16]):  30%|███       | 9/30 [00:00<00:00, 241.31it/s]
Saving GenAI config in /tmp/out
Saving processing files in /tmp/out for GenAI";

    #[test]
    fn a_real_run_moves_through_every_stage_and_only_forward() {
        let mut parser = ProgressParser::new(Some(2), true);
        let mut seen = vec![(parser.stage(), parser.fraction())];
        for line in INT4_RUN.lines() {
            if parser.line(line) {
                seen.push((parser.stage(), parser.fraction()));
            }
        }
        assert!(seen.windows(2).all(|w| w[1].1 >= w[0].1 && w[1].0 >= w[0].0), "{seen:?}");
        let stages: Vec<Stage> = seen.iter().map(|(s, _)| *s).collect();
        for stage in [Stage::Loading, Stage::Reading, Stage::Quantizing, Stage::Writing, Stage::Finishing] {
            assert!(stages.contains(&stage), "{stage:?} in {seen:?}");
        }
        assert_eq!(seen.len(), 14, "{seen:?}");
        let after_layer_1 = seen.iter().find(|(s, f)| *s == Stage::Reading && *f > 0.3).unwrap().1;
        assert!((after_layer_1 - (0.1 + 0.35 * 2.0 / 3.0)).abs() < 1e-6, "{after_layer_1}");
        assert!((parser.fraction() - 0.985).abs() < 1e-6);
        // A late tqdm line of an earlier stage does not move the bar back.
        assert!(!parser.line("Loading weights: 100%|██| 15/15 [00:00<00:00]"));
    }

    #[test]
    fn unquantized_runs_skip_the_quantizing_stage() {
        let mut parser = ProgressParser::new(None, false);
        assert!(parser.line("Reading layer 3"));
        assert_eq!(parser.stage(), Stage::Reading);
        assert!(parser.line("Saving ONNX model in /x"));
        assert_eq!((parser.stage(), parser.fraction()), (Stage::Writing, 0.7));
        assert!(!parser.line("some warning from torch"));
        assert_eq!(counter("Saving x: 50%|█| 3/6 [00:01<00:01]"), Some((3, 6)));
        assert_eq!(counter("no counter here"), None);
    }
}
