//! Reading signature JSON (`signature.inputs` / `outputs` / `params` of an MLmodel) with
//! MLflow's rules; every error names the element's path, such as `inputs[0].items.type`.

use serde_json::{Map, Value};

use super::{
    ColSpec, ColType, DataType, ParamSpec, ParamType, Property, Schema, SchemaError, Signature, TENSOR_DTYPES, TensorSpec, err,
    type_label,
};

impl Schema {
    /// Parses the JSON text of `signature.inputs` / `signature.outputs`; `block` names it.
    pub fn parse(text: &str, block: &str) -> Result<Schema, SchemaError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| err(block, format!("is not valid JSON ({e})")))?;
        Self::from_json(&value, block)
    }

    pub fn from_json(value: &Value, block: &str) -> Result<Schema, SchemaError> {
        let Value::Array(entries) = value else { return Err(err(block, "must be a JSON list of column or tensor specs")) };
        if entries.is_empty() {
            return Err(err(block, "is an empty list (MLflow refuses empty schemas; leave it null instead)"));
        }
        let tensors = entries.iter().filter(|e| e.get("type").and_then(Value::as_str) == Some("tensor")).count();
        if tensors != 0 && tensors != entries.len() {
            return Err(err(block, "mixes column specs and tensor specs; use one kind"));
        }
        let named = entries.iter().filter(|e| e.get("name").is_some_and(|n| !n.is_null())).count();
        if named != 0 && named != entries.len() {
            return Err(err(block, "mixes named and unnamed entries; name all of them or none"));
        }
        if tensors > 0 {
            if entries.len() > 1 && named == 0 {
                return Err(err(block, "has several tensors, which must all be named"));
            }
            let specs = entries
                .iter()
                .enumerate()
                .map(|(i, e)| parse_tensor(e, &format!("{block}[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Schema::Tensors(specs));
        }
        let specs = entries
            .iter()
            .enumerate()
            .map(|(i, e)| parse_colspec(e, &format!("{block}[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, spec) in specs.iter().enumerate() {
            if spec.name.is_none() && spec.required == Some(false) {
                return Err(err(&format!("{block}[{i}]"), "an unnamed column cannot be optional"));
            }
        }
        Ok(Schema::Columns(specs))
    }

}

fn object_of<'v>(value: &'v Value, path: &str) -> Result<&'v Map<String, Value>, SchemaError> {
    value.as_object().ok_or_else(|| err(path, "must be a JSON object"))
}

fn parse_tensor(value: &Value, path: &str) -> Result<TensorSpec, SchemaError> {
    let entry = object_of(value, path)?;
    let name = entry.get("name").and_then(Value::as_str).map(str::to_owned);
    let spec = entry
        .get("tensor-spec")
        .and_then(Value::as_object)
        .ok_or_else(|| err(path, "a tensor needs a `tensor-spec` object with `dtype` and `shape`"))?;
    let dtype = spec
        .get("dtype")
        .and_then(Value::as_str)
        .ok_or_else(|| err(&format!("{path}.tensor-spec"), "missing `dtype`"))?;
    if !TENSOR_DTYPES.contains(&dtype) {
        return Err(err(&format!("{path}.tensor-spec.dtype"), format!("`{dtype}` is not a numpy dtype MLflow accepts")));
    }
    let shape = spec
        .get("shape")
        .and_then(Value::as_array)
        .ok_or_else(|| err(&format!("{path}.tensor-spec"), "missing `shape` (a list of ints, -1 for variable)"))?
        .iter()
        .map(|d| d.as_i64().filter(|d| *d >= -1).ok_or_else(|| err(&format!("{path}.tensor-spec.shape"), "must hold ints ≥ -1")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TensorSpec { name, dtype: dtype.to_owned(), shape })
}

fn parse_colspec(value: &Value, path: &str) -> Result<ColSpec, SchemaError> {
    let entry = object_of(value, path)?;
    let ty = parse_type(value, path)?;
    if let ColType::Base(_) = ty {
        // MLflow builds primitive ColSpecs with ColSpec(**dict): other keys are a TypeError.
        if let Some(extra) = entry.keys().find(|k| !matches!(k.as_str(), "type" | "name" | "required")) {
            return Err(err(path, format!("unexpected key `{extra}` in a {} column (MLflow fails to load it)", type_label(&ty))));
        }
    }
    let name = match entry.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name.clone()),
        Some(_) => return Err(err(&format!("{path}.name"), "must be a string")),
    };
    let required = match entry.get("required") {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(err(&format!("{path}.required"), "must be true or false")),
    };
    let required = match (&ty, required) {
        (ColType::Base(_), None) => Some(true),
        (_, r) => r,
    };
    Ok(ColSpec { name, ty, required })
}

fn parse_type(value: &Value, path: &str) -> Result<ColType, SchemaError> {
    let entry = object_of(value, path)?;
    let name = entry.get("type").and_then(Value::as_str).ok_or_else(|| err(path, "missing `type`"))?;
    match name {
        "array" => {
            let items = entry.get("items").ok_or_else(|| err(path, "an array needs `items`"))?;
            if !items.is_object() {
                return Err(err(&format!("{path}.items"), "must be an object such as {\"type\": \"string\"}"));
            }
            Ok(ColType::Array(Box::new(parse_type(items, &format!("{path}.items"))?)))
        }
        "map" => {
            let values = entry.get("values").ok_or_else(|| err(path, "a map needs `values`"))?;
            if !values.is_object() {
                return Err(err(&format!("{path}.values"), "must be an object such as {\"type\": \"string\"}"));
            }
            Ok(ColType::Map(Box::new(parse_type(values, &format!("{path}.values"))?)))
        }
        "object" => Ok(ColType::Object(parse_properties(entry.get("properties"), path)?)),
        "any" => Ok(ColType::Any),
        "sparkml_vector" => Ok(ColType::SparkVector),
        other => DataType::parse(other).map(ColType::Base).ok_or_else(|| {
            err(
                &format!("{path}.type"),
                format!(
                    "unsupported type `{other}`; expected one of {}, array, object, map, any",
                    DataType::ALL.map(DataType::name).join(", ")
                ),
            )
        }),
    }
}

fn parse_properties(value: Option<&Value>, path: &str) -> Result<Vec<Property>, SchemaError> {
    let props = value
        .and_then(Value::as_object)
        .ok_or_else(|| err(path, "an object needs a `properties` mapping"))?;
    if props.is_empty() {
        return Err(err(&format!("{path}.properties"), "an object needs at least one property"));
    }
    let mut list = Vec::new();
    for (name, prop) in props {
        let prop_path = format!("{path}.properties.{name}");
        let entry = object_of(prop, &prop_path)?;
        if !entry.contains_key("type") {
            return Err(err(&prop_path, "missing `type`"));
        }
        let ty = parse_type(prop, &prop_path)?;
        let required = match entry.get("required") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(err(&format!("{prop_path}.required"), "must be true or false")),
        };
        list.push(Property { name: name.clone(), ty, required });
    }
    list.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(list)
}

/// Parses `signature.params`.
pub fn parse_params(text: &str) -> Result<Vec<ParamSpec>, SchemaError> {
    let value: Value = serde_json::from_str(text).map_err(|e| err("params", format!("is not valid JSON ({e})")))?;
    params_from_json(&value)
}

pub fn params_from_json(value: &Value) -> Result<Vec<ParamSpec>, SchemaError> {
    let Value::Array(entries) = value else { return Err(err("params", "must be a JSON list of parameter specs")) };
    let mut specs: Vec<ParamSpec> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let path = format!("params[{i}]");
        let object = object_of(entry, &path)?;
        let name = object.get("name").and_then(Value::as_str);
        let type_name = object.get("type").or_else(|| object.get("dtype")).and_then(Value::as_str);
        let (Some(name), Some(type_name), Some(default)) = (name, type_name, object.get("default")) else {
            return Err(err(&path, "a parameter needs `name`, `type` and `default` (default may be null)"));
        };
        let path = format!("params[{i}] ({name})");
        let ty = match type_name {
            "object" => ParamType::Object(parse_properties(object.get("properties"), &path)?),
            "binary" => return Err(err(&format!("{path}.type"), "binary is not allowed for parameters")),
            other => ParamType::Base(DataType::parse(other).ok_or_else(|| err(&format!("{path}.type"), format!("unsupported type `{other}`")))?),
        };
        let shape = match object.get("shape") {
            None | Some(Value::Null) => None,
            Some(Value::Array(dims)) if dims.len() == 1 && dims[0].as_i64() == Some(-1) => Some(vec![-1]),
            Some(_) => return Err(err(&format!("{path}.shape"), "must be null (a scalar) or [-1] (a list)")),
        };
        let spec = ParamSpec { name: name.to_owned(), ty, default: default.clone(), shape };
        spec.check_default().map_err(|message| err(&format!("{path}.default"), message))?;
        if specs.iter().any(|s| s.name == spec.name) {
            return Err(err(&path, format!("duplicated parameter name `{name}`")));
        }
        specs.push(spec);
    }
    Ok(specs)
}

impl Signature {
    /// Reads `signature` from an MLmodel node (a mapping of JSON strings or nulls).
    pub fn from_node(node: &crate::mlflow::yaml::Node) -> Result<Signature, SchemaError> {
        use crate::mlflow::yaml::Node;
        let Node::Map(map) = node else {
            return Err(err("signature", format!("must be a mapping of inputs / outputs / params, not {}", node.kind())));
        };
        let text_of = |key: &str| -> Result<Option<String>, SchemaError> {
            match map.get(key) {
                None | Some(Node::Null) => Ok(None),
                Some(Node::Str(s)) if s.is_empty() => Ok(None),
                Some(Node::Str(s)) => Ok(Some(s.clone())),
                Some(other) => Err(err(
                    key,
                    format!("must be a JSON string (MLflow writes JSON text here), not {}", other.kind()),
                )),
            }
        };
        let inputs = text_of("inputs")?.map(|t| Schema::parse(&t, "inputs")).transpose()?;
        let outputs = text_of("outputs")?.map(|t| Schema::parse(&t, "outputs")).transpose()?;
        let params = text_of("params")?.map(|t| parse_params(&t)).transpose()?;
        if inputs.is_none() && outputs.is_none() && params.is_none() {
            return Err(err("signature", "inputs, outputs and params are all empty; remove `signature` instead"));
        }
        Ok(Signature { inputs, outputs, params })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_faulty_element() {
        let bad = r#"[{"type": "array", "items": {"type": "object", "properties": {"role": {"required": true}}}, "name": "m"}]"#;
        assert_eq!(Schema::parse(bad, "inputs").unwrap_err().path, "inputs[0].items.properties.role");
        let extra = r#"[{"type": "string", "name": "p", "description": "x"}]"#;
        assert!(Schema::parse(extra, "inputs").unwrap_err().message.contains("description"));
        let unknown = r#"[{"type": "str", "name": "p"}]"#;
        assert_eq!(Schema::parse(unknown, "inputs").unwrap_err().path, "inputs[0].type");
        assert!(parse_params(r#"[{"name": "a", "type": "long", "default": "abc", "shape": null}]"#).is_err());
        assert!(parse_params(r#"[{"name": "a", "type": "binary", "default": null}]"#).is_err());
        assert!(parse_params(r#"[{"name": "a", "type": "long"}]"#).is_err());
    }
}
