//! `modeldesk show`: a summary of an MLflow model folder.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::join;

#[derive(Debug, Args)]
pub struct ShowArgs {
    pub path: PathBuf,
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ShowArgs) -> Result<()> {
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
