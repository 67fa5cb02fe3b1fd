//! Writing signatures as the JSON text MLflow stores (its key order: type, type keys, name,
//! required; `json.dumps` separators and escapes).

use serde_json::{Map, Value, json};

use super::{ColType, ParamSpec, ParamType, Property, Schema};

fn type_json(ty: &ColType) -> Map<String, Value> {
    let mut out = Map::new();
    match ty {
        ColType::Base(b) => {
            out.insert("type".into(), json!(b.name()));
        }
        ColType::Array(items) => {
            out.insert("type".into(), json!("array"));
            out.insert("items".into(), Value::Object(type_json(items)));
        }
        ColType::Object(props) => {
            out.insert("type".into(), json!("object"));
            out.insert("properties".into(), properties_json(props));
        }
        ColType::Map(values) => {
            out.insert("type".into(), json!("map"));
            out.insert("values".into(), Value::Object(type_json(values)));
        }
        ColType::Any => {
            out.insert("type".into(), json!("any"));
        }
        ColType::SparkVector => {
            out.insert("type".into(), json!("sparkml_vector"));
        }
    }
    out
}

fn properties_json(props: &[Property]) -> Value {
    let mut sorted: Vec<&Property> = props.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    Value::Object(
        sorted
            .into_iter()
            .map(|p| {
                let mut entry = type_json(&p.ty);
                entry.insert("required".into(), json!(p.required));
                (p.name.clone(), Value::Object(entry))
            })
            .collect(),
    )
}

impl Schema {
    pub fn to_json(&self) -> Value {
        match self {
            Schema::Columns(cols) => Value::Array(
                cols.iter()
                    .map(|c| {
                        let mut entry = type_json(&c.ty);
                        if let Some(name) = &c.name {
                            entry.insert("name".into(), json!(name));
                        }
                        entry.insert("required".into(), json!(c.is_required()));
                        Value::Object(entry)
                    })
                    .collect(),
            ),
            Schema::Tensors(tensors) => Value::Array(
                tensors
                    .iter()
                    .map(|t| {
                        let mut entry = Map::new();
                        if let Some(name) = &t.name {
                            entry.insert("name".into(), json!(name));
                        }
                        entry.insert("type".into(), json!("tensor"));
                        entry.insert("tensor-spec".into(), json!({"dtype": t.dtype, "shape": t.shape}));
                        Value::Object(entry)
                    })
                    .collect(),
            ),
        }
    }

    /// The string MLflow stores: `json.dumps` with its default separators.
    pub fn to_json_string(&self) -> String {
        python_json(&self.to_json())
    }
}

pub fn params_to_json(params: &[ParamSpec]) -> Value {
    Value::Array(
        params
            .iter()
            .map(|p| {
                let mut entry = Map::new();
                entry.insert("name".into(), json!(p.name));
                entry.insert("default".into(), p.default.clone());
                entry.insert("shape".into(), p.shape.as_ref().map(|s| json!(s)).unwrap_or(Value::Null));
                entry.insert("type".into(), json!(p.type_name()));
                if let ParamType::Object(props) = &p.ty {
                    entry.insert("properties".into(), properties_json(props));
                }
                Value::Object(entry)
            })
            .collect(),
    )
}

/// `json.dumps(value)` with Python's defaults: `", "` and `": "` separators, non-ASCII escaped.
pub fn python_json(value: &Value) -> String {
    let mut out = String::new();
    write_python_json(value, &mut out);
    out
}

fn write_python_json(value: &Value, out: &mut String) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python_string(k, out);
                out.push_str(": ");
                write_python_json(v, out);
            }
            out.push('}');
        }
        Value::String(s) => write_python_string(s, out),
        Value::Number(n) => match n.as_f64() {
            Some(f) if !n.is_i64() && !n.is_u64() => out.push_str(&crate::mlflow::yaml::python_float(f).replace(".0e", "e")),
            _ => out.push_str(&n.to_string()),
        },
        other => out.push_str(&other.to_string()),
    }
}

fn write_python_string(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mlflow::schema::parse_params;

    #[test]
    fn mlflow_written_strings_round_trip_exactly() {
        let text = r#"[{"type": "array", "items": {"type": "object", "properties": {"content": {"type": "string", "required": true}, "role": {"type": "string", "required": true}}}, "name": "messages", "required": true}]"#;
        assert_eq!(Schema::parse(text, "inputs").unwrap().to_json_string(), text);
        let tensors = r#"[{"name": "x", "type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 3]}}]"#;
        assert_eq!(Schema::parse(tensors, "inputs").unwrap().to_json_string(), tensors);
        let params = r#"[{"name": "temperature", "default": 0.7, "shape": null, "type": "double"}, {"name": "stop", "default": ["\n"], "shape": [-1], "type": "string"}]"#;
        assert_eq!(python_json(&params_to_json(&parse_params(params).unwrap())), params);
    }
}
