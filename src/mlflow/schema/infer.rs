//! `infer_signature(example)` for a JSON input example, as MLflow infers column types.

use serde_json::{Map, Value};

use super::{ColSpec, ColType, DataType, Property, Schema, SchemaError, err};

/// `infer_signature(example)` for a JSON example: a dict becomes named columns, a list of
/// dicts named columns over its records, a list of scalars or a scalar one unnamed column.
pub fn infer_inputs(example: &Value) -> Result<Schema, SchemaError> {
    let named = |object: &Map<String, Value>| -> Vec<ColSpec> {
        object
            .iter()
            .map(|(name, value)| ColSpec {
                name: Some(name.clone()),
                ty: infer_type(value),
                required: Some(!value.is_null()),
            })
            .collect()
    };
    match example {
        Value::Object(object) if object.is_empty() => Err(err("example", "an empty object has no columns to infer")),
        Value::Object(object) => Ok(Schema::Columns(named(object))),
        Value::Array(items) if items.iter().all(Value::is_object) && !items.is_empty() => {
            let mut merged = Map::new();
            for item in items.iter().filter_map(Value::as_object) {
                for (k, v) in item {
                    merged.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            let mut cols = named(&merged);
            for col in &mut cols {
                let everywhere = items.iter().all(|i| i.get(col.name.as_deref().unwrap_or_default()).is_some_and(|v| !v.is_null()));
                col.required = Some(everywhere);
            }
            Ok(Schema::Columns(cols))
        }
        Value::Array(items) if !items.is_empty() => {
            Ok(Schema::Columns(vec![ColSpec { name: None, ty: merge_types(items), required: Some(true) }]))
        }
        Value::Array(_) => Err(err("example", "an empty list has no type to infer")),
        Value::Null => Err(err("example", "null has no type to infer")),
        scalar => Ok(Schema::Columns(vec![ColSpec { name: None, ty: infer_type(scalar), required: Some(true) }])),
    }
}

fn infer_type(value: &Value) -> ColType {
    match value {
        Value::Null => ColType::Any,
        Value::Bool(_) => ColType::Base(DataType::Boolean),
        Value::Number(n) if n.is_i64() || n.is_u64() => ColType::Base(DataType::Long),
        Value::Number(_) => ColType::Base(DataType::Double),
        Value::String(_) => ColType::Base(DataType::String),
        Value::Array(items) if items.is_empty() => ColType::Array(Box::new(ColType::Any)),
        Value::Array(items) => ColType::Array(Box::new(merge_types(items))),
        Value::Object(object) if object.is_empty() => ColType::Map(Box::new(ColType::Any)),
        Value::Object(object) => ColType::Object({
            let mut props: Vec<Property> = object
                .iter()
                .map(|(name, v)| Property { name: name.clone(), ty: infer_type(v), required: !v.is_null() })
                .collect();
            props.sort_by(|a, b| a.name.cmp(&b.name));
            props
        }),
    }
}

/// The common type of list elements; objects merge their properties (a property missing from
/// some elements becomes optional).
fn merge_types(items: &[Value]) -> ColType {
    if items.iter().all(Value::is_object) {
        let mut props: Vec<Property> = Vec::new();
        for item in items.iter().filter_map(Value::as_object) {
            for (name, value) in item {
                if !props.iter().any(|p| &p.name == name) {
                    props.push(Property { name: name.clone(), ty: infer_type(value), required: true });
                }
            }
        }
        for prop in &mut props {
            prop.required = items.iter().all(|i| i.get(&prop.name).is_some_and(|v| !v.is_null()));
        }
        props.sort_by(|a, b| a.name.cmp(&b.name));
        return if props.is_empty() { ColType::Map(Box::new(ColType::Any)) } else { ColType::Object(props) };
    }
    let types: Vec<ColType> = items.iter().filter(|v| !v.is_null()).map(infer_type).collect();
    match types.first() {
        None => ColType::Any,
        Some(first) if types.iter().all(|t| t == first) => first.clone(),
        // Mixed ints and floats are doubles; anything else mixed is `any`.
        Some(_)
            if types.iter().all(|t| matches!(t, ColType::Base(DataType::Long | DataType::Double))) =>
        {
            ColType::Base(DataType::Double)
        }
        Some(_) => ColType::Any,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inference_matches_infer_signature() {
        let chat = json!({"messages": [{"role": "user", "content": "hi"}]});
        assert_eq!(
            infer_inputs(&chat).unwrap().to_json_string(),
            r#"[{"type": "array", "items": {"type": "object", "properties": {"content": {"type": "string", "required": true}, "role": {"type": "string", "required": true}}}, "name": "messages", "required": true}]"#
        );
        assert_eq!(
            infer_inputs(&json!({"a": null, "b": "x"})).unwrap().to_json_string(),
            r#"[{"type": "any", "name": "a", "required": false}, {"type": "string", "name": "b", "required": true}]"#
        );
        assert_eq!(infer_inputs(&json!(["a", "b"])).unwrap().to_json_string(), r#"[{"type": "string", "required": true}]"#);
    }
}
