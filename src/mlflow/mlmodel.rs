//! The `MLmodel` file: typed access to the keys MLflow defines, every other key kept, and
//! saving that rewrites the file only when something changed (atomically).

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use super::{
    schema::{Schema, SchemaError, Signature, params_to_json, python_json},
    yaml::{self, Mapping, Node, YamlError},
};

pub const MLMODEL: &str = "MLmodel";

#[derive(Debug, thiserror::Error)]
pub enum MlModelError {
    #[error("{0} has no MLmodel file, so it is not an MLflow model folder")]
    Missing(PathBuf),
    #[error(transparent)]
    Read(#[from] crate::fsio::ReadError),
    #[error("{path} is not valid YAML ({error})")]
    Yaml { path: PathBuf, error: YamlError },
    #[error("{path} is empty; MLflow cannot load it")]
    Empty { path: PathBuf },
    #[error("{path} must hold a mapping of keys (flavors, signature, …), not {kind}")]
    NotAMapping { path: PathBuf, kind: &'static str },
    #[error("cannot write {path}: {error}")]
    Write { path: PathBuf, error: std::io::Error },
}

/// A loaded MLmodel file.
#[derive(Debug, Clone)]
pub struct MlModel {
    pub path: PathBuf,
    root: Mapping,
    /// The text as read, written back unchanged when nothing was edited.
    original: Option<String>,
    changed: bool,
}

/// The `python_function` flavor's keys.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PyFuncFlavor {
    pub loader_module: Option<String>,
    pub python_version: Option<String>,
    pub model_code_path: Option<String>,
    pub python_model: Option<String>,
    pub code: Option<String>,
    pub data: Option<String>,
    pub predict_fn: Option<String>,
    pub streamable: Option<bool>,
    /// `env`: `{conda: conda.yaml, virtualenv: python_env.yaml}` or a legacy bare string.
    pub env: Option<Node>,
    pub config: Option<Node>,
    pub artifacts: Vec<(String, Option<String>)>,
}

/// The `transformers` flavor's keys ModelDesk shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TransformersFlavor {
    pub task: Option<String>,
    pub inference_task: Option<String>,
    pub pipeline_model_type: Option<String>,
    pub model_binary: Option<String>,
    pub components: Vec<String>,
    pub source_model_name: Option<String>,
    pub transformers_version: Option<String>,
}

fn string_at(map: &Mapping, key: &str) -> Option<String> {
    match map.get(key)? {
        Node::Str(s) | Node::Timestamp(s) => Some(s.clone()),
        Node::Int(i) => Some(i.to_string()),
        Node::Float(f) => Some(yaml::python_float(*f)),
        Node::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl MlModel {
    /// Reads `<dir>/MLmodel` (or the file itself when given one): a regular file of at most
    /// [`crate::fsio::MLMODEL_LIMIT`] bytes of UTF-8 YAML.
    pub fn load(path: &Path) -> Result<Self, MlModelError> {
        let file = if path.is_dir() { path.join(MLMODEL) } else { path.to_path_buf() };
        let text = crate::fsio::read_text(&file, crate::fsio::MLMODEL_LIMIT).map_err(|error| {
            if error.is_missing() { MlModelError::Missing(path.to_path_buf()) } else { MlModelError::Read(error) }
        })?;
        Self::parse(&text, &file)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, MlModelError> {
        let node = yaml::parse(text).map_err(|error| MlModelError::Yaml { path: path.to_path_buf(), error })?;
        let root = match node {
            Node::Map(map) => map,
            Node::Null => return Err(MlModelError::Empty { path: path.to_path_buf() }),
            other => return Err(MlModelError::NotAMapping { path: path.to_path_buf(), kind: other.kind() }),
        };
        Ok(Self { path: path.to_path_buf(), root, original: Some(text.to_owned()), changed: false })
    }

    /// A new, empty model file for `dir`.
    pub fn new(dir: &Path) -> Self {
        Self { path: dir.join(MLMODEL), root: Mapping::new(), original: None, changed: true }
    }

    /// The folder holding the file.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    pub fn root(&self) -> &Mapping {
        &self.root
    }

    /// Mutable access to the whole document (marks it changed).
    pub fn root_mut(&mut self) -> &mut Mapping {
        self.changed = true;
        &mut self.root
    }

    pub fn is_changed(&self) -> bool {
        self.changed
    }

    pub fn get_str(&self, key: &str) -> Option<String> {
        string_at(&self.root, key)
    }

    /// Flavor names in file order.
    pub fn flavor_names(&self) -> Vec<String> {
        match self.root.get("flavors") {
            Some(Node::Map(flavors)) => flavors.keys().map(str::to_owned).collect(),
            _ => Vec::new(),
        }
    }

    pub fn flavor(&self, name: &str) -> Option<&Mapping> {
        self.root.get("flavors")?.as_map()?.get(name)?.as_map()
    }

    fn flavor_mut(&mut self, name: &str) -> &mut Mapping {
        self.changed = true;
        if !matches!(self.root.get("flavors"), Some(Node::Map(_))) {
            self.root.insert("flavors", Node::Map(Mapping::new()));
        }
        let Some(Node::Map(flavors)) = self.root.get_mut("flavors") else { unreachable!("flavors set above") };
        if !matches!(flavors.get(name), Some(Node::Map(_))) {
            flavors.insert(name, Node::Map(Mapping::new()));
        }
        let Some(Node::Map(flavor)) = flavors.get_mut(name) else { unreachable!("flavor set above") };
        flavor
    }

    pub fn python_function(&self) -> Option<PyFuncFlavor> {
        let map = self.flavor("python_function")?;
        let artifacts = match map.get("artifacts") {
            Some(Node::Map(artifacts)) => artifacts
                .iter()
                .map(|(k, v)| (k.as_str().unwrap_or_default().to_owned(), v.as_map().and_then(|m| string_at(m, "path"))))
                .collect(),
            _ => Vec::new(),
        };
        Some(PyFuncFlavor {
            loader_module: string_at(map, "loader_module"),
            python_version: string_at(map, "python_version"),
            model_code_path: string_at(map, "model_code_path"),
            python_model: string_at(map, "python_model"),
            code: string_at(map, "code"),
            data: string_at(map, "data"),
            predict_fn: string_at(map, "predict_fn"),
            streamable: map.get("streamable").and_then(Node::as_bool),
            env: map.get("env").cloned(),
            config: map.get("config").cloned(),
            artifacts,
        })
    }

    pub fn transformers(&self) -> Option<TransformersFlavor> {
        let map = self.flavor("transformers")?;
        let components = match map.get("components") {
            Some(Node::Seq(items)) => items.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect(),
            _ => Vec::new(),
        };
        Some(TransformersFlavor {
            task: string_at(map, "task"),
            inference_task: string_at(map, "inference_task"),
            pipeline_model_type: string_at(map, "pipeline_model_type"),
            model_binary: string_at(map, "model_binary"),
            components,
            source_model_name: string_at(map, "source_model_name"),
            transformers_version: string_at(map, "transformers_version"),
        })
    }

    /// The signature, if the file has one: `None` when absent, an error when MLflow could not
    /// read it.
    pub fn signature(&self) -> Option<Result<Signature, SchemaError>> {
        self.root.get("signature").map(Signature::from_node)
    }

    /// Writes a signature in MLflow's form (JSON strings, absent parts null).
    pub fn set_signature(&mut self, signature: &Signature) {
        let text = |schema: &Option<Schema>| schema.as_ref().map(|s| Node::Str(s.to_json_string())).unwrap_or(Node::Null);
        let mut block = Mapping::new();
        block.insert("inputs", text(&signature.inputs));
        block.insert("outputs", text(&signature.outputs));
        block.insert(
            "params",
            signature.params.as_ref().map(|p| Node::Str(python_json(&params_to_json(p)))).unwrap_or(Node::Null),
        );
        self.changed = true;
        self.root.insert("signature", Node::Map(block));
        // MLflow 2.2x/3.x write these next to every signature.
        if !self.root.contains_key("is_signature_from_type_hint") {
            self.root.insert("is_signature_from_type_hint", Node::Bool(false));
        }
        if !self.root.contains_key("type_hint_from_example") {
            self.root.insert("type_hint_from_example", Node::Bool(false));
        }
    }

    /// `flavors.python_function.config`: the model_config.
    pub fn model_config(&self) -> Option<&Node> {
        self.flavor("python_function")?.get("config")
    }

    /// Sets one model_config key (creating the block when needed).
    pub fn set_config_value(&mut self, key: &str, value: Node) {
        let flavor = self.flavor_mut("python_function");
        if !matches!(flavor.get("config"), Some(Node::Map(_))) {
            flavor.insert("config", Node::Map(Mapping::new()));
        }
        if let Some(Node::Map(config)) = flavor.get_mut("config") {
            config.insert(key, value);
        }
    }

    /// Removes one model_config key; returns whether it was there.
    pub fn unset_config_value(&mut self, key: &str) -> bool {
        let present = matches!(self.model_config(), Some(Node::Map(m)) if m.contains_key(key));
        if present {
            let flavor = self.flavor_mut("python_function");
            if let Some(Node::Map(config)) = flavor.get_mut("config") {
                config.remove(key);
            }
        }
        present
    }

    /// Replaces the whole model_config.
    pub fn set_model_config(&mut self, config: Mapping) {
        self.flavor_mut("python_function").insert("config", Node::Map(config));
    }

    /// `metadata` (MLflow requires a mapping).
    pub fn metadata(&self) -> Option<&Node> {
        self.root.get("metadata")
    }

    /// The description ModelDesk keeps in `metadata.description`.
    pub fn description(&self) -> Option<String> {
        string_at(self.metadata()?.as_map()?, "description")
    }

    pub fn set_description(&mut self, text: &str) {
        self.changed = true;
        if !matches!(self.root.get("metadata"), Some(Node::Map(_))) {
            self.root.insert("metadata", Node::Map(Mapping::new()));
        }
        if let Some(Node::Map(metadata)) = self.root.get_mut("metadata") {
            metadata.insert("description", Node::Str(text.to_owned()));
        }
    }

    /// The text to write: the original bytes when nothing changed, else the whole document in
    /// MLflow's style.
    pub fn to_text(&self) -> String {
        match (&self.original, self.changed) {
            (Some(original), false) => original.clone(),
            _ => yaml::emit(&Node::Map(self.root.clone())),
        }
    }

    /// Writes the file if it changed (temporary file, fsync, rename). Returns whether it wrote.
    pub fn save(&mut self) -> Result<bool, MlModelError> {
        if !self.changed && self.original.is_some() {
            return Ok(false);
        }
        let text = self.to_text();
        // Temporary files of saves killed before their rename go first.
        crate::staging::remove_dead_temp_files(self.dir());
        write_atomically(&self.path, text.as_bytes()).map_err(|error| MlModelError::Write { path: self.path.clone(), error })?;
        self.original = Some(text);
        self.changed = false;
        Ok(true)
    }
}

/// Replaces `path` with `bytes` so that a crash or error leaves either the old file or the new
/// one, never a mix: write a temporary file beside it, flush it to disk, rename it over, flush
/// the folder. A new file gets the user's ordinary permissions (umask), a replaced one keeps its
/// own. On a full disk the error says so and the old file is untouched.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let prefix = crate::staging::own_prefix("save");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        // 0666 before the umask, as any program creating a file gets (tempfile's default is 0600).
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut temp = builder.tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = temp.as_file().set_permissions(meta.permissions());
    }
    temp.persist(path).map_err(|e| e.error)?;
    crate::staging::sync_dir(dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_files_are_not_rewritten_and_edits_keep_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let text = "my_key: {b: 1, a: [x]}\r\nflavors:\r\n  python_function:\r\n    loader_module: m\r\n    config: {k: 1}\r\n";
        std::fs::write(dir.path().join(MLMODEL), text).unwrap();
        let mut model = MlModel::load(dir.path()).unwrap();
        assert!(!model.save().unwrap());
        assert_eq!(std::fs::read_to_string(dir.path().join(MLMODEL)).unwrap(), text);
        model.set_config_value("temperature", Node::Float(0.5));
        assert!(model.save().unwrap());
        let saved = std::fs::read_to_string(dir.path().join(MLMODEL)).unwrap();
        assert_eq!(
            saved,
            "flavors:\n  python_function:\n    config:\n      k: 1\n      temperature: 0.5\n    loader_module: m\nmy_key:\n  a:\n  - x\n  b: 1\n"
        );
    }

    #[test]
    fn bad_files_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(MlModel::load(dir.path()), Err(MlModelError::Missing(_))));
        std::fs::write(dir.path().join(MLMODEL), "").unwrap();
        assert!(matches!(MlModel::load(dir.path()), Err(MlModelError::Empty { .. })));
        std::fs::write(dir.path().join(MLMODEL), "- a\n- b\n").unwrap();
        assert!(matches!(MlModel::load(dir.path()), Err(MlModelError::NotAMapping { .. })));
        std::fs::write(dir.path().join(MLMODEL), "flavors: {a: [}\n").unwrap();
        let error = MlModel::load(dir.path()).unwrap_err().to_string();
        assert!(error.contains("line"), "{error}");
    }
}
