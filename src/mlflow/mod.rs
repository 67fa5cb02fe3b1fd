//! MLflow model folders: the MLmodel file, signatures, input examples, environment files,
//! validation, creating a package from a Phi-3 ONNX folder, and exporting. Knows nothing of
//! ONNX Runtime or the GUI.

pub mod create;
pub mod export;
pub mod files;
pub mod mlmodel;
pub mod schema;
pub mod validate;
pub mod yaml;
