//! MLflow signatures: column specs with nested array / object / map / any types, tensor specs
//! and parameter specs, read from and written to the JSON strings in `MLmodel`, checked with
//! MLflow's rules (every problem carries a path such as `inputs[0].items.properties.role`),
//! inferred from a JSON input example as `infer_signature` does, and used to check examples.

use serde_json::{Map, Value, json};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SchemaError {
    pub path: String,
    pub message: String,
}

fn err(path: &str, message: impl Into<String>) -> SchemaError {
    SchemaError { path: path.to_owned(), message: message.into() }
}

/// MLflow's base column types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    Boolean,
    Integer,
    Long,
    Float,
    Double,
    String,
    Binary,
    Datetime,
}

impl DataType {
    pub const ALL: [DataType; 8] = [
        DataType::Boolean,
        DataType::Integer,
        DataType::Long,
        DataType::Float,
        DataType::Double,
        DataType::String,
        DataType::Binary,
        DataType::Datetime,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DataType::Boolean => "boolean",
            DataType::Integer => "integer",
            DataType::Long => "long",
            DataType::Float => "float",
            DataType::Double => "double",
            DataType::String => "string",
            DataType::Binary => "binary",
            DataType::Datetime => "datetime",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// The type of a column, an array element, an object property or a map value.
#[derive(Debug, Clone, PartialEq)]
pub enum ColType {
    Base(DataType),
    Array(Box<ColType>),
    /// Properties sorted by name, as MLflow keeps them.
    Object(Vec<Property>),
    Map(Box<ColType>),
    Any,
    SparkVector,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    pub name: String,
    pub ty: ColType,
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColSpec {
    pub name: Option<String>,
    pub ty: ColType,
    /// `None` only when read from a file that omitted it on a complex type (MLflow then treats
    /// the column as optional); always written explicitly.
    pub required: Option<bool>,
}

impl ColSpec {
    pub fn is_required(&self) -> bool {
        self.required.unwrap_or(matches!(self.ty, ColType::Base(_)))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub name: Option<String>,
    pub dtype: String,
    pub shape: Vec<i64>,
}

/// An inputs or outputs schema: all columns or all tensors.
#[derive(Debug, Clone, PartialEq)]
pub enum Schema {
    Columns(Vec<ColSpec>),
    Tensors(Vec<TensorSpec>),
}

/// A parameter's type: a base type (not binary) or an object.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamType {
    Base(DataType),
    Object(Vec<Property>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub ty: ParamType,
    pub default: Value,
    /// `None` for a scalar, `Some([-1])` for a list.
    pub shape: Option<Vec<i64>>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Signature {
    pub inputs: Option<Schema>,
    pub outputs: Option<Schema>,
    pub params: Option<Vec<ParamSpec>>,
}

/// numpy dtype names MLflow accepts in tensor specs.
pub const TENSOR_DTYPES: &[&str] = &[
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32", "float64",
    "complex64", "complex128", "str", "bytes", "object", "datetime64[ns]", "timedelta64[ns]",
];

// ---------------------------------------------------------------------------------------------
// Reading

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

    pub fn len(&self) -> usize {
        match self {
            Schema::Columns(c) => c.len(),
            Schema::Tensors(t) => t.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether any type is `any` (unreadable before MLflow 2.19).
    pub fn uses_any(&self) -> bool {
        fn any(ty: &ColType) -> bool {
            match ty {
                ColType::Any => true,
                ColType::Array(inner) | ColType::Map(inner) => any(inner),
                ColType::Object(props) => props.iter().any(|p| any(&p.ty)),
                _ => false,
            }
        }
        matches!(self, Schema::Columns(cols) if cols.iter().any(|c| any(&c.ty)))
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

    pub fn type_name(&self) -> String {
        match &self.ty {
            ParamType::Base(b) => b.name().to_owned(),
            ParamType::Object(_) => "object".into(),
        }
    }
}

impl Signature {
    /// Reads `signature` from an MLmodel node (a mapping of JSON strings or nulls).
    pub fn from_node(node: &super::yaml::Node) -> Result<Signature, SchemaError> {
        use super::yaml::Node;
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

// ---------------------------------------------------------------------------------------------
// Writing (MLflow's key order: type, type keys, name, required)

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
            Some(f) if !n.is_i64() && !n.is_u64() => out.push_str(&super::yaml::python_float(f).replace(".0e", "e")),
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

// ---------------------------------------------------------------------------------------------
// Inference and checking

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

/// A short human label: `string`, `array<object{role, content}>`, `map<double>`.
pub fn type_label(ty: &ColType) -> String {
    match ty {
        ColType::Base(b) => b.name().into(),
        ColType::Array(items) => format!("array<{}>", type_label(items)),
        ColType::Map(values) => format!("map<{}>", type_label(values)),
        ColType::Object(props) => format!(
            "object{{{}}}",
            props.iter().map(|p| format!("{}{}: {}", p.name, if p.required { "" } else { "?" }, type_label(&p.ty))).collect::<Vec<_>>().join(", ")
        ),
        ColType::Any => "any".into(),
        ColType::SparkVector => "sparkml_vector".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mlflow_written_strings_round_trip_exactly() {
        let text = r#"[{"type": "array", "items": {"type": "object", "properties": {"content": {"type": "string", "required": true}, "role": {"type": "string", "required": true}}}, "name": "messages", "required": true}]"#;
        assert_eq!(Schema::parse(text, "inputs").unwrap().to_json_string(), text);
        let tensors = r#"[{"name": "x", "type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 3]}}]"#;
        assert_eq!(Schema::parse(tensors, "inputs").unwrap().to_json_string(), tensors);
        let params = r#"[{"name": "temperature", "default": 0.7, "shape": null, "type": "double"}, {"name": "stop", "default": ["\n"], "shape": [-1], "type": "string"}]"#;
        assert_eq!(python_json(&params_to_json(&parse_params(params).unwrap())), params);
    }

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

    #[test]
    fn examples_are_checked_against_the_schema() {
        let schema = Schema::parse(r#"[{"type": "string", "name": "prompt", "required": true}]"#, "inputs").unwrap();
        assert!(check_example(&json!({"prompt": "hi"}), &schema).is_empty());
        assert!(!check_example(&json!({"prompt": 3}), &schema).is_empty());
        assert!(!check_example(&json!({"other": "x"}), &schema).is_empty());
    }
}
