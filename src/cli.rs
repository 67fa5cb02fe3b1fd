//! Headless subcommands over the same libraries the GUI uses.

use std::{
    io::Write as _,
    path::PathBuf,
    sync::atomic::AtomicBool,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::{
    app_dirs::AppDirs,
    engine::{
        ChatMessage, ContextPolicy, DecoderSettings, Engine, FinishReason, GenerateOptions, KvMode, Progress, Prompt,
    },
    runtime::{self, Candidates, Runtime},
};

#[derive(Debug, Parser)]
#[command(name = "modeldesk", version, about = "Chat with local Phi-3 ONNX models; manage and export MLflow model folders.")]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// A model folder to open in the window (a Phi-3 ONNX folder or an MLflow model).
    pub path: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Where ONNX Runtime was loaded from, what it offers, and (with --model) one forward pass.
    Doctor(DoctorArgs),
    /// Generate a reply from a model folder.
    Generate(GenerateArgs),
    /// Measure load time, time to first token, prefill and decode speed, and peak memory.
    Bench(BenchArgs),
    /// Check an MLflow model folder (and the Phi-3 ONNX folder it wraps) the way MLflow loads it.
    Validate(ValidateArgs),
    /// Summarise an MLflow model folder: flavors, loader, signature, model_config, example, files.
    Show(ShowArgs),
    /// Create an MLflow model (models-from-code pyfunc) from a Phi-3 ONNX folder.
    Create(CreateArgs),
    /// Change model_config, the signature, the input example or the description of a model.
    Edit(EditArgs),
    /// Export a validated model as a self-contained folder or .zip.
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    pub path: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    pub path: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The Phi-3 ONNX folder (genai_config.json, decoder, tokenizer).
    #[arg(long)]
    pub from_onnx: PathBuf,
    /// The new model folder (must not exist).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = TaskArg::Chat)]
    pub task: TaskArg,
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TaskArg {
    Prompt,
    Chat,
}

#[derive(Debug, Args)]
pub struct EditArgs {
    pub dir: PathBuf,
    /// Set a model_config key to a JSON value (repeatable): --set-config temperature=0.7
    #[arg(long = "set-config", value_name = "KEY=JSON")]
    pub set_config: Vec<String>,
    /// Remove a model_config key (repeatable).
    #[arg(long = "unset-config", value_name = "KEY")]
    pub unset_config: Vec<String>,
    /// A JSON file with the signature: {"inputs": [...], "outputs": [...], "params": [...]}.
    #[arg(long)]
    pub signature: Option<PathBuf>,
    /// A JSON file with the input example (or {"inputs": ..., "params": ...}).
    #[arg(long)]
    pub input_example: Option<PathBuf>,
    /// The model's description (kept in metadata.description).
    #[arg(long)]
    pub description: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    pub dir: PathBuf,
    /// The destination folder, or .zip file with --zip (must not exist).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long)]
    pub zip: bool,
    /// Print one JSON object with bytes, seconds and peak memory when done.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// A model folder to load and run once.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The model folder (Phi-3 ONNX, or an MLflow model wrapping one).
    #[arg(long)]
    pub model: PathBuf,
    /// Text encoded as is, without a chat template.
    #[arg(long, conflicts_with_all = ["user", "system"], required_unless_present = "user")]
    pub prompt: Option<String>,
    /// A user message, rendered with the model's chat template.
    #[arg(long)]
    pub user: Option<String>,
    /// A system message (with --user).
    #[arg(long, requires = "user")]
    pub system: Option<String>,
    /// Most completion tokens.
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Most prompt + completion tokens (onnxruntime-genai's max_length).
    #[arg(long)]
    pub max_length: Option<usize>,
    #[arg(long)]
    pub temperature: Option<f32>,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long)]
    pub top_p: Option<f32>,
    #[arg(long)]
    pub repetition_penalty: Option<f32>,
    /// Sample instead of taking the most likely token.
    #[arg(long)]
    pub do_sample: bool,
    #[arg(long)]
    pub seed: Option<i64>,
    /// Stop when this text appears (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Print text as it is generated.
    #[arg(long)]
    pub stream: bool,
    /// Print one llm/v1/chat JSON object with metrics and token ids.
    #[arg(long)]
    pub json: bool,
    /// Intra-op threads (default: all physical cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Keep the KV cache in shared buffers (default) or grow the past each step.
    #[arg(long, value_enum, default_value_t = KvModeArg::Shared)]
    pub kv_mode: KvModeArg,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KvModeArg {
    Shared,
    Growing,
}

impl From<KvModeArg> for KvMode {
    fn from(value: KvModeArg) -> Self {
        match value {
            KvModeArg::Shared => KvMode::Shared,
            KvModeArg::Growing => KvMode::Growing,
        }
    }
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[arg(long)]
    pub model: PathBuf,
    /// Prompt length in tokens.
    #[arg(long, default_value_t = 128)]
    pub prompt_tokens: usize,
    /// Tokens generated per run (end-of-sequence is suppressed so every run generates exactly this).
    #[arg(long, default_value_t = 128)]
    pub gen_tokens: usize,
    /// Measured runs, after one warm-up run.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Intra-op threads (default: all physical cores).
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long, value_enum, default_value_t = KvModeArg::Shared)]
    pub kv_mode: KvModeArg,
    /// The sequence limit (default: prompt + generated tokens). ModelDesk reserves KV memory as
    /// the sequence grows, whatever this is.
    #[arg(long)]
    pub max_length: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

/// Loads ONNX Runtime for a subcommand, or explains why it cannot.
pub fn load_runtime() -> Result<&'static Runtime> {
    let dirs = AppDirs::discover();
    Ok(runtime::load(&Candidates::discover(dirs.as_ref()))?)
}

pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Doctor(args) => doctor(args),
        Command::Generate(args) => generate(args),
        Command::Bench(args) => bench(args),
        Command::Validate(args) => validate(args),
        Command::Show(args) => show(args),
        Command::Create(args) => create(args),
        Command::Edit(args) => edit(args),
        Command::Export(args) => export(args),
    }
}

/// A failure that has already been reported and only sets the exit code.
#[derive(Debug)]
pub struct Reported(pub u8);

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}

impl std::error::Error for Reported {}

/// MLflow checks plus, for a folder that is or wraps a Phi-3 ONNX folder, that folder's checks.
pub fn check_folder(path: &std::path::Path) -> crate::mlflow::validate::Report {
    use crate::{engine::folder, mlflow::validate::{self, Report}};
    let is_mlflow = path.join(crate::mlflow::mlmodel::MLMODEL).is_file();
    let mut report = if is_mlflow || !path.join(folder::GENAI_CONFIG).is_file() {
        validate::validate_folder(path)
    } else {
        Report::default()
    };
    if let Ok(onnx_dir) = folder::ModelFolder::locate(path) {
        let relative = onnx_dir.strip_prefix(path).map(|p| p.display().to_string()).unwrap_or_default();
        let file = |name: &str| if relative.is_empty() { name.to_owned() } else { format!("{relative}/{name}") };
        match folder::ModelFolder::open(&onnx_dir) {
            Ok(found) => {
                for warning in &found.warnings {
                    report.warning(&file(folder::GENAI_CONFIG), "", warning.clone());
                }
                if !onnx_dir.join(folder::TOKENIZER_CONFIG).is_file() {
                    report.warning(&file(folder::TOKENIZER_CONFIG), "", "is missing: no chat template, ModelDesk falls back to the Phi-3 format");
                }
            }
            Err(error) => report.error(&file(folder::GENAI_CONFIG), "", error.to_string()),
        }
    }
    report
}

fn validate(args: ValidateArgs) -> Result<()> {
    let report = check_folder(&args.path);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json!({"usable": report.is_usable(), "problems": report.problems}))?);
    } else {
        for problem in &report.problems {
            println!("{problem}");
        }
        let errors = report.errors().count();
        let warnings = report.problems.len() - errors;
        println!(
            "{}: {} ({errors} error{}, {warnings} warning{})",
            args.path.display(),
            if report.is_usable() { "usable" } else { "not usable" },
            if errors == 1 { "" } else { "s" },
            if warnings == 1 { "" } else { "s" }
        );
    }
    if report.is_usable() { Ok(()) } else { Err(Reported(1).into()) }
}

fn show(args: ShowArgs) -> Result<()> {
    use crate::mlflow::{mlmodel::MlModel, validate::summary};
    let model = MlModel::load(&args.path)?;
    let summary = summary(&model);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(());
    }
    println!("{}", args.path.display());
    println!("  flavors: {}", join(&summary["flavors"]));
    for key in ["loader_module", "model_code_path", "task", "mlflow_version", "model_uuid", "utc_time_created"] {
        if let Some(value) = summary[key].as_str() {
            println!("  {key}: {value}");
        }
    }
    if let Some(Ok(signature)) = model.signature() {
        for (label, schema) in [("inputs", &signature.inputs), ("outputs", &signature.outputs)] {
            let Some(schema) = schema else { continue };
            println!("  {label}:");
            match schema {
                crate::mlflow::schema::Schema::Columns(cols) => {
                    for col in cols {
                        println!(
                            "    {:<20} {} ({})",
                            col.name.as_deref().unwrap_or("-"),
                            crate::mlflow::schema::type_label(&col.ty),
                            if col.is_required() { "required" } else { "optional" }
                        );
                    }
                }
                crate::mlflow::schema::Schema::Tensors(tensors) => {
                    for t in tensors {
                        println!("    {:<20} tensor {} {:?}", t.name.as_deref().unwrap_or("-"), t.dtype, t.shape);
                    }
                }
            }
        }
        for param in signature.params.iter().flatten() {
            println!("  param {}: {} = {}", param.name, param.type_name(), param.default);
        }
    }
    if !summary["model_config"].is_null() {
        println!("  model_config: {}", summary["model_config"]);
    }
    if !summary["input_example"].is_null() {
        println!("  input example: {}", summary["input_example"]);
    }
    if let Some(env) = summary["environment"].as_object() {
        println!("  python {} · {}", env["python"].as_str().unwrap_or("?"), join(&env["requirements"]));
    }
    let files = summary["files"].as_array().cloned().unwrap_or_default();
    let total: u64 = files.iter().filter_map(|f| f["bytes"].as_u64()).sum();
    println!("  {} files, {}", files.len(), crate::memory::human_bytes(total));
    for file in files.iter().take(40) {
        println!("    {:<50} {}", file["path"].as_str().unwrap_or_default(), crate::memory::human_bytes(file["bytes"].as_u64().unwrap_or(0)));
    }
    Ok(())
}

/// A progress line on stderr: bytes, percentage, time left.
fn progress_printer() -> impl FnMut(crate::mlflow::export::CopyProgress) {
    let mut last = std::time::Instant::now() - std::time::Duration::from_secs(1);
    move |p| {
        if last.elapsed().as_millis() < 200 && p.done_bytes < p.total_bytes {
            return;
        }
        last = std::time::Instant::now();
        let remaining = p.remaining_seconds().map(|s| format!(", {s:.0} s left")).unwrap_or_default();
        eprint!(
            "\r{} / {} ({:.0}%{remaining})   ",
            crate::memory::human_bytes(p.done_bytes),
            crate::memory::human_bytes(p.total_bytes),
            p.fraction() * 100.0
        );
        if p.done_bytes >= p.total_bytes {
            eprintln!();
        }
    }
}

fn create(args: CreateArgs) -> Result<()> {
    use crate::mlflow::create::{CreateOptions, Task, create_from_onnx};
    let task = match args.task {
        TaskArg::Prompt => Task::Prompt,
        TaskArg::Chat => Task::Chat,
    };
    let options = CreateOptions { task, name: args.name, python_version: None };
    let cancel = AtomicBool::new(false);
    let out = create_from_onnx(&args.from_onnx, &args.out, &options, &mut progress_printer(), &cancel)?;
    let report = check_folder(&out);
    for problem in &report.problems {
        eprintln!("{problem}");
    }
    println!("created {}", out.display());
    Ok(())
}

fn edit(args: EditArgs) -> Result<()> {
    use crate::mlflow::{files, mlmodel::MlModel, schema, yaml::Node};
    let mut model = MlModel::load(&args.dir)?;
    for assignment in &args.set_config {
        let (key, value) = assignment.split_once('=').with_context(|| format!("--set-config {assignment}: expected KEY=JSON"))?;
        let value: serde_json::Value = serde_json::from_str(value)
            .with_context(|| format!("--set-config {key}: `{value}` is not JSON (strings need quotes: '\"text\"')"))?;
        model.set_config_value(key, Node::from_json(&value));
    }
    for key in &args.unset_config {
        if !model.unset_config_value(key) {
            bail!("--unset-config {key}: model_config has no such key");
        }
    }
    if let Some(path) = &args.signature {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let value: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
        let part = |key: &str| -> Option<serde_json::Value> {
            match value.get(key)? {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => serde_json::from_str(s).ok(),
                other => Some(other.clone()),
            }
        };
        let signature = schema::Signature {
            inputs: part("inputs").map(|v| schema::Schema::from_json(&v, "inputs")).transpose()?,
            outputs: part("outputs").map(|v| schema::Schema::from_json(&v, "outputs")).transpose()?,
            params: part("params").map(|v| schema::params_from_json(&v)).transpose()?,
        };
        if signature == schema::Signature::default() {
            bail!("{}: the signature has no inputs, outputs or params", path.display());
        }
        model.set_signature(&signature);
    }
    let example = match &args.input_example {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let value: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
            let (data, params) = match value {
                serde_json::Value::Object(mut map) if map.len() == 2 && map.contains_key("inputs") && map.contains_key("params") => {
                    (map.remove("inputs").unwrap_or_default(), map.remove("params"))
                }
                other => (other, None),
            };
            Some(files::InputExample::from_json(data, params))
        }
        None => None,
    };
    if let Some(text) = &args.description {
        model.set_description(text);
    }
    // Check before writing anything: the signature must parse, and the example fit it.
    if let Some(Err(error)) = model.signature() {
        bail!("the signature is not valid: {error}");
    }
    if let (Some(example), Some(Ok(signature))) = (&example, model.signature()) {
        if let Some(inputs) = &signature.inputs {
            let problems = schema::check_example(&example.model_input(), inputs);
            if !problems.is_empty() {
                bail!("the input example does not match the signature:\n  {}", problems.join("\n  "));
            }
        }
    }
    if let Some(example) = &example {
        files::write_input_example(&mut model, example)?;
    }
    let wrote = model.save()?;
    println!("{} {}", if wrote { "saved" } else { "unchanged" }, model.path.display());
    Ok(())
}

fn export(args: ExportArgs) -> Result<()> {
    let cancel = AtomicBool::new(false);
    let started = Instant::now();
    let out = crate::mlflow::export::export(&args.dir, &args.out, args.zip, &mut progress_printer(), &cancel)?;
    let seconds = started.elapsed().as_secs_f64();
    let bytes = crate::mlflow::export::tree_size(&args.dir);
    if args.json {
        println!("{}", json!({
            "path": out, "bytes": bytes, "seconds": seconds,
            "peak_rss_mb": crate::memory::peak_rss().map(|b| b as f64 / 1_048_576.0),
        }));
    } else {
        println!("exported {} ({} in {seconds:.1} s)", out.display(), crate::memory::human_bytes(bytes));
    }
    Ok(())
}

fn doctor(args: DoctorArgs) -> Result<()> {
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

fn join(list: &serde_json::Value) -> String {
    list.as_array()
        .map(|items| items.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

fn generate(args: GenerateArgs) -> Result<()> {
    let runtime = load_runtime()?;
    let settings = DecoderSettings { intra_threads: args.threads, kv_mode: args.kv_mode.into() };
    let mut engine =
        Engine::load(runtime, &args.model, &settings).with_context(|| format!("loading {}", args.model.display()))?;
    for warning in &engine.facts.warnings {
        eprintln!("warning: {warning}");
    }
    let prompt = match (&args.prompt, &args.user) {
        (Some(text), _) => Prompt::Raw(unescape(text)),
        (None, Some(user)) => {
            let mut messages = Vec::new();
            if let Some(system) = &args.system {
                messages.push(ChatMessage::new("system", system));
            }
            messages.push(ChatMessage::new("user", user));
            Prompt::Chat(messages)
        }
        (None, None) => bail!("give --prompt or --user"),
    };
    let options = GenerateOptions {
        max_length: args.max_length,
        max_tokens: args.max_tokens,
        do_sample: args.do_sample.then_some(true),
        top_k: args.top_k,
        top_p: args.top_p,
        temperature: args.temperature,
        repetition_penalty: args.repetition_penalty,
        seed: args.seed,
        stop: args.stop.clone(),
        kv_mode: args.kv_mode.into(),
        ..GenerateOptions::default()
    };
    let cancel = AtomicBool::new(false);
    let stream = args.stream && !args.json;
    let mut stdout = std::io::stdout();
    let (_, completion) = engine.generate(&prompt, &options, ContextPolicy::Refuse, &cancel, &mut |progress| {
        if let (true, Progress::Token { text, .. }) = (stream, progress) {
            let _ = stdout.write_all(text.as_bytes());
            let _ = stdout.flush();
        }
    })?;
    if args.json {
        let response = chat_completion_json(&engine.facts.name, &completion);
        println!("{}", serde_json::to_string_pretty(&response)?);
    } else {
        if !stream {
            print!("{}", completion.text);
        }
        println!();
        let t = &completion.timings;
        eprintln!(
            "[{} prompt + {} completion = {} tokens · finish: {} · first token {:.0} ms · prefill {:.1} tok/s · decode {:.1} tok/s]",
            completion.usage.prompt_tokens,
            completion.usage.completion_tokens,
            completion.usage.total_tokens,
            completion.finish_reason.as_str(),
            t.time_to_first_token_ms,
            t.prefill_tokens_per_second,
            t.decode_tokens_per_second
        );
    }
    Ok(())
}

/// The `llm/v1/chat` response body for a completion, with ModelDesk's metrics and token ids.
pub fn chat_completion_json(model: &str, completion: &crate::engine::Completion) -> serde_json::Value {
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    let finish = match completion.finish_reason {
        FinishReason::Cancelled => "cancelled",
        other => other.as_str(),
    };
    json!({
        "id": format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": completion.text},
            "finish_reason": finish,
        }],
        "usage": completion.usage,
        "metrics": {
            "time_to_first_token_ms": completion.timings.time_to_first_token_ms,
            "prefill_tokens_per_second": completion.timings.prefill_tokens_per_second,
            "decode_tokens_per_second": completion.timings.decode_tokens_per_second,
        },
        "token_ids": {"prompt": completion.prompt_ids, "completion": completion.completion_ids},
    })
}

/// `\n`, `\t`, `\\` in command-line prompts, as the reference script accepts them.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

fn bench(args: BenchArgs) -> Result<()> {
    if args.runs == 0 || args.gen_tokens == 0 || args.prompt_tokens == 0 {
        bail!("--runs, --gen-tokens and --prompt-tokens must be at least 1");
    }
    let runtime = load_runtime()?;
    let settings = DecoderSettings { intra_threads: args.threads, kv_mode: args.kv_mode.into() };
    let started = Instant::now();
    let mut engine = Engine::load(runtime, &args.model, &settings)?;
    let load_ms = started.elapsed().as_secs_f64() * 1000.0;
    let prompt_ids = bench_prompt(&engine, args.prompt_tokens)?;
    let options = GenerateOptions {
        max_length: Some(args.max_length.unwrap_or(args.prompt_tokens + args.gen_tokens)),
        max_tokens: Some(args.gen_tokens),
        do_sample: Some(false),
        suppress_eos: true,
        kv_mode: args.kv_mode.into(),
        ..GenerateOptions::default()
    };
    let cancel = AtomicBool::new(false);
    let mut samples = Vec::new();
    for run in 0..=args.runs {
        let completion = engine.generate_ids(&prompt_ids, &options, &cancel, &mut |_| {})?;
        if completion.usage.completion_tokens != args.gen_tokens {
            bail!("run generated {} tokens, expected {}", completion.usage.completion_tokens, args.gen_tokens);
        }
        if run > 0 {
            samples.push(completion.timings);
        }
    }
    let stat = |pick: fn(&crate::engine::Timings) -> f64| {
        let mut values: Vec<f64> = samples.iter().map(pick).collect();
        values.sort_by(f64::total_cmp);
        json!({"median": values[values.len() / 2], "min": values[0], "max": values[values.len() - 1]})
    };
    let report = json!({
        "model": engine.facts.folder,
        "threads": engine.facts.intra_threads,
        "prompt_tokens": args.prompt_tokens,
        "gen_tokens": args.gen_tokens,
        "runs": args.runs,
        "load_ms": load_ms,
        "time_to_first_token_ms": stat(|t| t.time_to_first_token_ms),
        "prefill_tokens_per_second": stat(|t| t.prefill_tokens_per_second),
        "decode_tokens_per_second": stat(|t| t.decode_tokens_per_second),
        "peak_rss_mb": crate::memory::peak_rss().map(|b| b as f64 / 1_048_576.0),
        "samples": {
            "time_to_first_token_ms": samples.iter().map(|t| t.time_to_first_token_ms).collect::<Vec<_>>(),
            "prefill_tokens_per_second": samples.iter().map(|t| t.prefill_tokens_per_second).collect::<Vec<_>>(),
            "decode_tokens_per_second": samples.iter().map(|t| t.decode_tokens_per_second).collect::<Vec<_>>(),
        },
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "load {:.0} ms · first token {:.1} ms · prefill {:.1} tok/s · decode {:.1} tok/s (medians of {} runs, {} threads) · peak RSS {:.0} MB",
            load_ms,
            report["time_to_first_token_ms"]["median"].as_f64().unwrap_or_default(),
            report["prefill_tokens_per_second"]["median"].as_f64().unwrap_or_default(),
            report["decode_tokens_per_second"]["median"].as_f64().unwrap_or_default(),
            args.runs,
            engine.facts.intra_threads,
            report["peak_rss_mb"].as_f64().unwrap_or_default(),
        );
    }
    Ok(())
}

/// A prompt of exactly `count` ordinary tokens: English text repeated, never a special token.
pub fn bench_prompt(engine: &Engine, count: usize) -> Result<Vec<i64>> {
    let text = "The quick brown fox jumps over the lazy dog while the small model counts its tokens. ";
    let unit = engine.tokenizer.encode(text)?;
    if unit.is_empty() {
        bail!("the tokenizer produced no tokens for the benchmark text");
    }
    Ok(unit.iter().copied().cycle().take(count).collect())
}
