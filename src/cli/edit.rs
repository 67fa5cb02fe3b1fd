//! `modeldesk edit`: changes only what it is asked to, checks first, writes atomically.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::Args;

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

pub fn run(args: EditArgs) -> Result<()> {
    // Signals wait for the (atomic) save, then end the command.
    super::cancellable(|_| edit(args))
}

/// A JSON file given on the command line, bounded like the files it becomes.
fn read_json(path: &std::path::Path, limit: u64) -> Result<serde_json::Value> {
    let text = crate::fsio::read_text(path, limit)?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// model_config keys the wrapper passes to generation, checked with the engine's rules.
fn check_config_value(key: &str, value: &serde_json::Value) -> Result<()> {
    let mut search = crate::engine::config::SearchOptions::default();
    let number = || value.as_f64().map(|v| v as f32);
    let count = || value.as_u64().and_then(|v| usize::try_from(v).ok());
    let fits = match key {
        "temperature" => number().map(|v| search.temperature = v),
        "top_p" => number().map(|v| search.top_p = v),
        "repetition_penalty" => number().map(|v| search.repetition_penalty = v),
        "top_k" => count().map(|v| search.top_k = v),
        "max_length" | "max_tokens" => count().filter(|v| *v > 0).map(|v| search.max_length = v),
        _ => return Ok(()),
    };
    if fits.is_none() {
        bail!("--set-config {key}: {value} is not a valid {key}");
    }
    if let Err((_, problem)) = search.check("model_config", crate::engine::config::MAX_CONTEXT_LENGTH) {
        bail!("--set-config {key}: {problem}");
    }
    Ok(())
}

fn edit(args: EditArgs) -> Result<()> {
    use crate::mlflow::{files, mlmodel::MlModel, schema, yaml::Node};
    let mut model = MlModel::load(&args.dir)?;
    for assignment in &args.set_config {
        let (key, value) = assignment.split_once('=').with_context(|| format!("--set-config {assignment}: expected KEY=JSON"))?;
        let value: serde_json::Value = serde_json::from_str(value)
            .with_context(|| format!("--set-config {key}: `{value}` is not JSON (strings need quotes: '\"text\"')"))?;
        check_config_value(key, &value)?;
        model.set_config_value(key, Node::from_json(&value));
    }
    for key in &args.unset_config {
        if !model.unset_config_value(key) {
            bail!("--unset-config {key}: model_config has no such key");
        }
    }
    if let Some(path) = &args.signature {
        let value = read_json(path, crate::fsio::CONFIG_LIMIT)?;
        let serde_json::Value::Object(parts) = &value else {
            bail!("{}: a signature file is a JSON object with inputs, outputs and params", path.display());
        };
        if let Some(unknown) = parts.keys().find(|k| !matches!(k.as_str(), "inputs" | "outputs" | "params")) {
            bail!("{}: unknown part `{unknown}`; a signature has inputs, outputs and params", path.display());
        }
        // A part is a JSON list, or a string holding one (as MLmodel stores it); anything that
        // does not parse is refused, never quietly dropped.
        let part = |key: &str| -> Result<Option<serde_json::Value>> {
            match parts.get(key) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(text)) => serde_json::from_str(text)
                    .map(Some)
                    .with_context(|| format!("{}: `{key}` is a string that is not JSON text", path.display())),
                Some(other) => Ok(Some(other.clone())),
            }
        };
        let signature = schema::Signature {
            inputs: part("inputs")?.map(|v| schema::Schema::from_json(&v, "inputs")).transpose()?,
            outputs: part("outputs")?.map(|v| schema::Schema::from_json(&v, "outputs")).transpose()?,
            params: part("params")?.map(|v| schema::params_from_json(&v)).transpose()?,
        };
        if signature == schema::Signature::default() {
            bail!("{}: the signature has no inputs, outputs or params", path.display());
        }
        model.set_signature(&signature);
    }
    let example = match &args.input_example {
        Some(path) => {
            let value = read_json(path, crate::fsio::EXAMPLE_LIMIT)?;
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
