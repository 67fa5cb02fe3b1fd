//! MLflow signatures: column specs with nested array / object / map / any types, tensor specs
//! and parameter specs, read from and written to the JSON strings in `MLmodel`, checked with
//! MLflow's rules (every problem carries a path such as `inputs[0].items.properties.role`),
//! inferred from a JSON input example as `infer_signature` does, and used to check examples.
//!
//! Submodules: `read` (JSON to specs, with MLflow's rules), `write` (specs to the JSON text
//! MLflow stores), `infer` (`infer_signature` for an example) and `check` (values against types).

mod check;
mod infer;
mod read;
mod write;

pub use check::{check_example, value_matches};
pub use infer::infer_inputs;
pub use read::{params_from_json, parse_params};
pub use write::{params_to_json, python_json};

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SchemaError {
    pub path: String,
    pub message: String,
}

pub(crate) fn err(path: &str, message: impl Into<String>) -> SchemaError {
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

impl Schema {
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

impl ParamSpec {
    pub fn type_name(&self) -> String {
        match &self.ty {
            ParamType::Base(b) => b.name().to_owned(),
            ParamType::Object(_) => "object".into(),
        }
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
