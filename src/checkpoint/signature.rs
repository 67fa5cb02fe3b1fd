//! The signature MLflow forces on a transformers model saved with `task="llm/v1/chat"` (the same
//! in MLflow 2.22 and 3.17): OpenAI-style messages and options in, a `chat.completion` out.
//! Built from the schema types so it is written in MLflow's exact JSON form.

use crate::mlflow::schema::{ColSpec, ColType, DataType, Property, Schema, Signature};

fn base(t: DataType) -> ColType {
    ColType::Base(t)
}

/// Properties in MLflow's order (sorted by name).
fn object(mut properties: Vec<(&str, ColType, bool)>) -> ColType {
    properties.sort_by(|a, b| a.0.cmp(b.0));
    ColType::Object(properties.into_iter().map(|(name, ty, required)| Property { name: name.into(), ty, required }).collect())
}

fn array(items: ColType) -> ColType {
    ColType::Array(Box::new(items))
}

fn col(name: &str, ty: ColType, required: bool) -> ColSpec {
    ColSpec { name: Some(name.into()), ty, required: Some(required) }
}

/// A chat message: `role` and the optional content, name, refusal and tool-call fields.
fn message() -> ColType {
    use DataType::String;
    let tool_call = object(vec![
        ("function", object(vec![("arguments", base(String), true), ("name", base(String), true)]), true),
        ("id", base(String), true),
        ("type", base(String), true),
    ]);
    object(vec![
        ("content", base(String), false),
        ("name", base(String), false),
        ("refusal", base(String), false),
        ("role", base(String), true),
        ("tool_call_id", base(String), false),
        ("tool_calls", array(tool_call), false),
    ])
}

/// A tool the model may call (OpenAI's function-tool shape).
fn tool() -> ColType {
    use DataType::{Boolean, String};
    let parameter = object(vec![
        ("description", base(String), false),
        ("enum", array(base(String)), false),
        ("items", object(vec![("type", base(String), true)]), false),
        ("type", base(String), true),
    ]);
    let parameters = object(vec![
        ("additionalProperties", base(Boolean), false),
        ("properties", ColType::Map(Box::new(parameter)), true),
        ("required", array(base(String)), false),
        ("type", base(String), false),
    ]);
    let function = object(vec![
        ("description", base(String), false),
        ("name", base(String), true),
        ("parameters", parameters, true),
        ("strict", base(Boolean), false),
    ]);
    object(vec![("function", function, false), ("type", base(String), true)])
}

/// MLflow's `llm/v1/chat` signature; `params` is null (options are optional input columns).
pub fn llm_v1_chat() -> Signature {
    use DataType::*;
    let inputs = vec![
        col("messages", array(message()), true),
        col("temperature", base(Double), false),
        col("max_tokens", base(Long), false),
        col("stop", array(base(String)), false),
        col("n", base(Long), false),
        col("stream", base(Boolean), false),
        col("top_p", base(Double), false),
        col("top_k", base(Long), false),
        col("frequency_penalty", base(Double), false),
        col("presence_penalty", base(Double), false),
        col("tools", array(tool()), false),
        col("custom_inputs", ColType::Map(Box::new(ColType::Any)), false),
    ];
    let choice = object(vec![("finish_reason", base(String), true), ("index", base(Long), true), ("message", message(), true)]);
    let usage = object(vec![("completion_tokens", base(Long), true), ("prompt_tokens", base(Long), true), ("total_tokens", base(Long), true)]);
    let outputs = vec![
        col("id", base(String), true),
        col("object", base(String), true),
        col("created", base(Long), true),
        col("model", base(String), true),
        col("choices", array(choice), true),
        col("usage", usage, false),
        col("custom_outputs", ColType::Map(Box::new(ColType::Any)), false),
    ];
    Signature { inputs: Some(Schema::Columns(inputs)), outputs: Some(Schema::Columns(outputs)), params: None }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::mlflow::mlmodel::MlModel;

    #[test]
    fn the_chat_signature_is_mlflows_own_text() {
        let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/mlflow-examples");
        assert!(shared.is_dir(), "{} is missing: the tests need ../shared beside the clone", shared.display());
        let mut ours = MlModel::new(Path::new("/nowhere"));
        ours.set_signature(&llm_v1_chat());
        let mut compared = 0;
        for fixture in ["v3-transformers-llm-v1-chat", "v2-transformers-llm-v1-chat"] {
            let theirs = MlModel::load(&shared.join(fixture)).unwrap();
            let signature = |model: &MlModel| model.root().get("signature").cloned();
            assert_eq!(signature(&ours), signature(&theirs), "{fixture}");
            compared += 1;
        }
        assert_eq!(compared, 2);
    }
}
