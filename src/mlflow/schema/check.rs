//! Checking values against signature types: input examples against the inputs schema and
//! parameter defaults against their type and shape.

use serde_json::{Map, Value};

use super::{ColType, DataType, ParamSpec, ParamType, Schema};

fn value_matches_base(value: &Value, base: DataType) -> bool {
    match base {
        DataType::Boolean => value.is_boolean(),
        DataType::Integer | DataType::Long => value.is_i64() || value.is_u64(),
        DataType::Float | DataType::Double => value.is_number(),
        DataType::String | DataType::Binary | DataType::Datetime => value.is_string(),
    }
}

/// Checks one value against a type; the error names the path inside the value.
pub fn value_matches(value: &Value, ty: &ColType) -> Result<(), String> {
    match (ty, value) {
        (ColType::Any, _) => Ok(()),
        (ColType::Base(base), v) if value_matches_base(v, *base) => Ok(()),
        (ColType::Base(base), v) => Err(format!("{v} is not a {}", base.name())),
        (ColType::Array(items), Value::Array(values)) => values
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| value_matches(v, items).map_err(|e| format!("[{i}]: {e}"))),
        (ColType::Array(_), v) => Err(format!("{v} is not a list")),
        (ColType::Map(values), Value::Object(map)) => {
            map.iter().try_for_each(|(k, v)| value_matches(v, values).map_err(|e| format!(".{k}: {e}")))
        }
        (ColType::Map(_), v) => Err(format!("{v} is not a mapping")),
        (ColType::Object(props), Value::Object(map)) => {
            for prop in props {
                match map.get(&prop.name) {
                    Some(v) if !v.is_null() => value_matches(v, &prop.ty).map_err(|e| format!(".{}: {e}", prop.name))?,
                    _ if prop.required => return Err(format!("required property `{}` is missing", prop.name)),
                    _ => {}
                }
            }
            Ok(())
        }
        (ColType::Object(_), v) => Err(format!("{v} is not an object")),
        (ColType::SparkVector, _) => Ok(()),
    }
}

/// Checks the data part of an input example against the inputs schema.
pub fn check_example(data: &Value, schema: &Schema) -> Vec<String> {
    let mut problems = Vec::new();
    let Schema::Columns(cols) = schema else { return problems };
    let named = cols.iter().all(|c| c.name.is_some());
    let records: Vec<&Map<String, Value>> = match data {
        Value::Object(map) if named => vec![map],
        Value::Array(items) if named && items.iter().all(Value::is_object) => items.iter().filter_map(Value::as_object).collect(),
        other if !named => {
            let values: Vec<&Value> = match other {
                Value::Array(items) => items.iter().collect(),
                v => vec![v],
            };
            for (i, v) in values.iter().enumerate() {
                if let Err(e) = value_matches(v, &cols[0].ty) {
                    problems.push(format!("example[{i}]: {e}"));
                }
            }
            return problems;
        }
        other => {
            problems.push(format!("the example is {} but the signature has named columns", describe(other)));
            return problems;
        }
    };
    for (row, record) in records.iter().enumerate() {
        for col in cols {
            let name = col.name.as_deref().unwrap_or_default();
            match record.get(name) {
                Some(v) if !v.is_null() => {
                    if let Err(e) = value_matches(v, &col.ty) {
                        problems.push(format!("example{}.{name}: {e}", if records.len() > 1 { format!("[{row}]") } else { String::new() }));
                    }
                }
                _ if col.is_required() => problems.push(format!("example: required column `{name}` is missing")),
                _ => {}
            }
        }
    }
    problems
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

impl ParamSpec {
    /// MLflow validates the default against the type and shape when it loads the model.
    pub fn check_default(&self) -> Result<(), String> {
        if self.default.is_null() {
            return Ok(());
        }
        let check_one = |value: &Value| match &self.ty {
            ParamType::Base(base) => value_matches_base(value, *base),
            ParamType::Object(props) => value_matches(value, &ColType::Object(props.clone())).is_ok(),
        };
        let ok = match (&self.shape, &self.default) {
            (Some(_), Value::Array(items)) => items.iter().all(check_one),
            (Some(_), _) => false,
            (None, value) => check_one(value),
        };
        if ok {
            Ok(())
        } else {
            Err(format!("{} does not fit type {}{}", self.default, self.type_name(), if self.shape.is_some() { " (list)" } else { "" }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn examples_are_checked_against_the_schema() {
        let schema = Schema::parse(r#"[{"type": "string", "name": "prompt", "required": true}]"#, "inputs").unwrap();
        assert!(check_example(&json!({"prompt": "hi"}), &schema).is_empty());
        assert!(!check_example(&json!({"prompt": 3}), &schema).is_empty());
        assert!(!check_example(&json!({"other": "x"}), &schema).is_empty());
    }
}
