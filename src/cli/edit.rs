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
