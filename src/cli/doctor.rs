//! `modeldesk doctor`: where ONNX Runtime came from, and (with --model) one forward pass.

use std::{path::PathBuf, time::Instant};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use serde_json::json;

use super::{join, load_runtime};
use crate::{
    app_dirs::AppDirs,
    engine::{DecoderSettings, Engine, KvMode},
};

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// A model folder to load and run once.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: DoctorArgs) -> Result<()> {
    let dirs = AppDirs::discover();
    let runtime = load_runtime()?;
    let providers = runtime.available_providers();
    let mut report = json!({
        "onnxruntime": {
            "library": runtime.library_path,
            "found_via": runtime.source,
            "version": runtime.version,
            "execution_providers": providers,
        },
        "directories": dirs,
        "modeldesk_version": env!("CARGO_PKG_VERSION"),
    });
    if let Some(model) = &args.model {
        let started = Instant::now();
        let mut engine = Engine::load(runtime, model, &DecoderSettings::default())
            .with_context(|| format!("loading {}", model.display()))?;
        let load_ms = started.elapsed().as_secs_f64() * 1000.0;
        let probe = engine.tokenizer.encode("Hello")?;
        let probe = if probe.is_empty() { vec![0] } else { probe };
        let mut cache = engine.decoder.new_cache(KvMode::Shared);
        let started = Instant::now();
        let logits = engine.decoder.step(&mut cache, &probe, engine.facts.context_length)?;
        let forward_ms = started.elapsed().as_secs_f64() * 1000.0;
        let finite = logits.data.iter().all(|v| v.is_finite());
        if !finite {
            bail!("the forward pass produced non-finite logits");
        }
        report["model"] = json!({
            "folder": engine.facts.folder,
            "facts": engine.facts,
            "load_ms": load_ms,
            "forward_pass": {
                "input_tokens": probe.len(),
                "logits_shape": [1, logits.rows, logits.vocab],
                "ms": forward_ms,
            },
        });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("ModelDesk {}", env!("CARGO_PKG_VERSION"));
    println!("ONNX Runtime {} from {} ({})", runtime.version, runtime.library_path.display(), runtime.source);
    println!("Execution providers: {}", report["onnxruntime"]["execution_providers"]);
    if let Some(dirs) = &dirs {
        println!("Data directory:   {}", dirs.data.display());
        println!("Config directory: {}", dirs.config.display());
        println!("Log directory:    {}", dirs.logs.display());
    }
    if let Some(model) = report.get("model") {
        let facts = &model["facts"];
        println!("Model: {}", facts["folder"].as_str().unwrap_or_default());
        println!(
            "  {} layers, {} KV heads × {} head size, vocabulary {}, context {}",
            facts["layers"], facts["kv_heads"], facts["head_size"], facts["vocab_size"], facts["context_length"]
        );
        println!("  inputs:  {}", join(&facts["inputs"]));
        println!("  outputs: {}", join(&facts["outputs"]));
        println!("  loaded in {:.0} ms; one forward pass of {} tokens in {:.1} ms (logits {})",
            model["load_ms"].as_f64().unwrap_or_default(),
            model["forward_pass"]["input_tokens"],
            model["forward_pass"]["ms"].as_f64().unwrap_or_default(),
            model["forward_pass"]["logits_shape"]);
        for warning in facts["warnings"].as_array().into_iter().flatten() {
            println!("  warning: {}", warning.as_str().unwrap_or_default());
        }
    }
    Ok(())
}
