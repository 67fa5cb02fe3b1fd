//! Every folder real MLflow wrote (and the hand-written ones) survives ModelDesk: saved without
//! an edit it stays byte-identical; after a model_config edit real MLflow reads back exactly
//! what was there plus the edit. Signatures re-serialise to the same JSON strings.

mod support;

use std::path::Path;

use modeldesk::mlflow::{mlmodel::MlModel, schema::{Schema, params_to_json, python_json}, yaml::Node};

fn example_folders() -> Vec<std::path::PathBuf> {
    let mut folders: Vec<_> = std::fs::read_dir(support::shared().join("fixtures/mlflow-examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("MLmodel").is_file())
        .collect();
    folders.sort();
    folders
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn saving_without_an_edit_keeps_every_byte() {
    let scratch = tempfile::tempdir().unwrap();
    let folders = example_folders();
    assert!(folders.len() >= 24, "only {} example folders", folders.len());
    for folder in folders {
        let copy = scratch.path().join(folder.file_name().unwrap());
        copy_dir(&folder, &copy);
        let before = std::fs::read(copy.join("MLmodel")).unwrap();
        let mut model = MlModel::load(&copy).unwrap();
        assert!(!model.save().unwrap());
        assert_eq!(std::fs::read(copy.join("MLmodel")).unwrap(), before, "{}", folder.display());
    }
}

#[test]
fn signatures_reserialise_to_the_same_strings() {
    // Only folders MLflow wrote: hand-written ones order their keys freely.
    let mut checked = 0;
    for folder in example_folders().into_iter().filter(|f| {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        name.starts_with("v2-") || name.starts_with("v3-")
    }) {
        let model = MlModel::load(&folder).unwrap();
        let Some(Node::Map(signature)) = model.root().get("signature") else { continue };
        for key in ["inputs", "outputs"] {
            if let Some(Node::Str(text)) = signature.get(key) {
                let schema = Schema::parse(text, key).unwrap_or_else(|e| panic!("{}: {e}", folder.display()));
                assert_eq!(&schema.to_json_string(), text, "{} {key}", folder.display());
                checked += 1;
            }
        }
        if let Some(Node::Str(text)) = signature.get("params") {
            let params = modeldesk::mlflow::schema::parse_params(text).unwrap();
            assert_eq!(&python_json(&params_to_json(&params)), text, "{} params", folder.display());
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} signature strings checked");
}

#[test]
fn after_a_config_edit_mlflow_reads_the_same_model_plus_the_edit() {
    let scratch = tempfile::tempdir().unwrap();
    let mut pairs = Vec::new();
    for folder in example_folders() {
        let name = folder.file_name().unwrap().to_string_lossy().into_owned();
        let edited = scratch.path().join(&name);
        copy_dir(&folder, &edited);
        let mut model = MlModel::load(&edited).unwrap();
        if model.flavor("python_function").is_none() {
            continue;
        }
        model.set_config_value("modeldesk_edit", Node::Float(0.25));
        assert!(model.save().unwrap());
        pairs.push((folder, edited));
    }
    assert!(pairs.len() >= 20, "{}", pairs.len());
    // MLflow's own reader on both sides: the whole dict, the signature, the example info, the
    // flavors and model_config must be equal except for the added key.
    let script = r#"
import json, sys, yaml
from mlflow.models import Model
failures = []
for original, edited in json.loads(sys.argv[1]):
    a = Model.load(original).to_dict()
    b = Model.load(edited).to_dict()
    config = b["flavors"]["python_function"].setdefault("config", {}) or {}
    if config.pop("modeldesk_edit", None) != 0.25:
        failures.append(f"{edited}: the edit is missing")
    if not config:
        b["flavors"]["python_function"].pop("config", None)
        if "config" in a["flavors"]["python_function"] and not a["flavors"]["python_function"]["config"]:
            a["flavors"]["python_function"].pop("config", None)
    raw_a = yaml.safe_load(open(original + "/MLmodel"))
    raw_b = yaml.safe_load(open(edited + "/MLmodel"))
    raw_b["flavors"]["python_function"].get("config", {}).pop("modeldesk_edit", None)
    if raw_b["flavors"]["python_function"].get("config") == {} and "config" not in raw_a["flavors"]["python_function"]:
        raw_b["flavors"]["python_function"].pop("config")
    if "utc_time_created" not in raw_a:
        # Model.load fills a missing creation time with "now", which differs between loads.
        a.pop("utc_time_created", None)
        b.pop("utc_time_created", None)
    if a != b:
        failures.append(f"{edited}: Model.load differs")
    if raw_a != raw_b:
        failures.append(f"{edited}: yaml.safe_load differs")
print(json.dumps(failures))
"#;
    let list: Vec<(String, String)> =
        pairs.iter().map(|(a, b)| (a.display().to_string(), b.display().to_string())).collect();
    let out = support::python(script, &[&serde_json::to_string(&list).unwrap()]);
    let failures: Vec<String> = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert!(failures.is_empty(), "{failures:#?}");
}
