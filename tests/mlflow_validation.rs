//! `validate` reproduces MLflow's verdict on every malformed folder of the evidence files
//! (`../shared/fixtures/mlflow-examples/_evidence/validation_results_mlflow-3.17.2.txt`): each
//! case is a copy of `handwritten-full` with one defect, rebuilt here from its description.

mod support;

use std::{collections::BTreeMap, path::Path};

use modeldesk::mlflow::{
    validate::{Severity, validate_folder},
    yaml::{self, Mapping, Node},
};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn edit(dir: &Path, change: impl FnOnce(&mut Mapping)) {
    let path = dir.join("MLmodel");
    let mut node = yaml::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
    change(node.as_map_mut().unwrap());
    std::fs::write(path, yaml::emit(&node)).unwrap();
}

fn pyfunc(map: &mut Mapping) -> &mut Mapping {
    map.get_mut("flavors").unwrap().as_map_mut().unwrap().get_mut("python_function").unwrap().as_map_mut().unwrap()
}

fn set_inputs(dir: &Path, json: &str) {
    edit(dir, |m| m.get_mut("signature").unwrap().as_map_mut().unwrap().insert("inputs", Node::Str(json.into())));
}

fn set_params(dir: &Path, json: &str) {
    edit(dir, |m| m.get_mut("signature").unwrap().as_map_mut().unwrap().insert("params", Node::Str(json.into())));
}

fn text(dir: &Path, change: impl FnOnce(String) -> String) {
    let path = dir.join("MLmodel");
    let original = std::fs::read_to_string(&path).unwrap();
    std::fs::write(path, change(original)).unwrap();
}

/// Builds case `name` in `dir` (a fresh copy of handwritten-full).
fn build_case(name: &str, dir: &Path) {
    let s = |v: &str| Node::Str(v.to_owned());
    match name {
        "00_good" => {}
        "01_no_mlmodel" => std::fs::remove_file(dir.join("MLmodel")).unwrap(),
        "02_empty_mlmodel" => std::fs::write(dir.join("MLmodel"), "").unwrap(),
        "03_mlmodel_is_list" => std::fs::write(dir.join("MLmodel"), "- flavors\n- signature\n").unwrap(),
        "04_invalid_yaml" => std::fs::write(dir.join("MLmodel"), "flavors: {python_function: [}\n").unwrap(),
        "05_no_flavors" => edit(dir, |m| drop(m.remove("flavors"))),
        "06_no_pyfunc_flavor" => edit(dir, |m| {
            let mut other = Mapping::new();
            other.insert("sklearn", Node::Map(Mapping::new()));
            m.insert("flavors", Node::Map(other));
        }),
        "07_no_loader_module" => edit(dir, |m| drop(pyfunc(m).remove("loader_module"))),
        "08_bad_loader_module" => edit(dir, |m| pyfunc(m).insert("loader_module", s("no"))),
        "09_code_file_missing" => std::fs::remove_file(dir.join("model.py")).unwrap(),
        "10_code_no_set_model" => {
            let code = std::fs::read_to_string(dir.join("model.py")).unwrap().replace("mlflow.models.set_model(Echo())", "");
            std::fs::write(dir.join("model.py"), code).unwrap();
        }
        "11_code_path_in_subdir" => {
            std::fs::create_dir_all(dir.join("src")).unwrap();
            std::fs::rename(dir.join("model.py"), dir.join("src/model.py")).unwrap();
            edit(dir, |m| pyfunc(m).insert("model_code_path", s("src/model.py")));
        }
        "12_code_syntax_error" => std::fs::write(dir.join("model.py"), "def broken(:\n    pass\n").unwrap(),
        "13_sig_inputs_not_json" => set_inputs(dir, "[{type: string, name: prompt}]"),
        "14_sig_unknown_type" => set_inputs(dir, r#"[{"type": "str", "name": "prompt", "required": true}]"#),
        "15_sig_mixed_named_unnamed" => set_inputs(dir, r#"[{"type": "string", "name": "a", "required": true}, {"type": "string", "required": true}]"#),
        "16_sig_mixed_col_tensor" => set_inputs(dir, r#"[{"type": "string", "name": "a", "required": true}, {"name": "t", "type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1]}}]"#),
        "17_sig_colspec_extra_key" => set_inputs(dir, r#"[{"type": "string", "name": "prompt", "required": true, "description": "x"}]"#),
        "18_sig_array_no_items" => set_inputs(dir, r#"[{"type": "array", "name": "prompt", "required": true}]"#),
        "19_sig_object_empty_props" => set_inputs(dir, r#"[{"type": "object", "properties": {}, "name": "prompt", "required": true}]"#),
        "20_sig_empty_inputs_list" => set_inputs(dir, "[]"),
        "21_sig_missing_required_key" => set_inputs(dir, r#"[{"type": "array", "items": {"type": "string"}, "name": "prompt"}]"#),
        "22_param_default_wrong_type" => set_params(dir, r#"[{"name": "max_tokens", "type": "long", "default": "abc", "shape": null}]"#),
        "23_param_binary" => set_params(dir, r#"[{"name": "b", "type": "binary", "default": null, "shape": null}]"#),
        "24_param_no_default" => set_params(dir, r#"[{"name": "max_tokens", "type": "long"}]"#),
        "25_param_dup_names" => set_params(dir, r#"[{"name": "a", "type": "long", "default": 1, "shape": null}, {"name": "a", "type": "long", "default": 2, "shape": null}]"#),
        "26_tensor_bad_dtype" => set_inputs(dir, r#"[{"type": "tensor", "tensor-spec": {"dtype": "float33", "shape": [-1]}}]"#),
        "27_tensor_no_shape" => set_inputs(dir, r#"[{"type": "tensor", "tensor-spec": {"dtype": "float32"}}]"#),
        "28_signature_not_mapping" => edit(dir, |m| m.insert("signature", s("inputs: x"))),
        "29_signature_as_yaml_list" => edit(dir, |m| {
            let mut col = Mapping::new();
            col.insert("type", s("string"));
            col.insert("name", s("prompt"));
            m.get_mut("signature").unwrap().as_map_mut().unwrap().insert("inputs", Node::Seq(vec![Node::Map(col)]));
        }),
        "30_example_type_unknown" => edit(dir, |m| m.get_mut("saved_input_example_info").unwrap().as_map_mut().unwrap().insert("type", s("weird"))),
        "31_example_file_missing" => std::fs::remove_file(dir.join("input_example.json")).unwrap(),
        "32_artifact_entry_no_path" => edit(dir, |m| {
            let artifacts = pyfunc(m).get_mut("artifacts").unwrap().as_map_mut().unwrap();
            artifacts.get_mut("assets").unwrap().as_map_mut().unwrap().remove("path");
        }),
        "33_artifact_dir_missing" => std::fs::remove_dir_all(dir.join("artifacts/assets")).unwrap(),
        "34_bad_requirements_txt" => std::fs::write(dir.join("requirements.txt"), "mlflow==3.17.2\n!!! not a requirement ???\n").unwrap(),
        "35_python_version_mismatch" => edit(dir, |m| pyfunc(m).insert("python_version", s("3.6.0"))),
        "36_env_vars_not_list" => edit(dir, |m| m.insert("env_vars", s("OPENAI_API_KEY"))),
        "37_metadata_not_dict" => edit(dir, |m| m.insert("metadata", Node::Seq(vec![s("a"), s("b")]))),
        "38_unknown_top_level_keys" => edit(dir, |m| {
            m.insert("my_key", Node::Int(1));
            m.insert("name", s("x"));
        }),
        "39_no_optional_top_keys" => {
            edit(dir, |m| {
                for key in ["signature", "saved_input_example_info", "metadata", "mlflow_version", "model_uuid", "utc_time_created", "artifact_path", "my_custom_unknown_key"] {
                    m.remove(key);
                }
            });
        }
        "40_streamable_without_method" => edit(dir, |m| pyfunc(m).insert("streamable", Node::Bool(true))),
        "41_model_config_not_dict" => edit(dir, |m| pyfunc(m).insert("config", s("not a mapping"))),
        "42_artifact_path_absolute" => {
            let absolute = dir.join("artifacts/assets").display().to_string();
            edit(dir, |m| {
                let artifacts = pyfunc(m).get_mut("artifacts").unwrap().as_map_mut().unwrap();
                artifacts.get_mut("assets").unwrap().as_map_mut().unwrap().insert("path", Node::Str(absolute));
            });
        }
        "43_duplicate_yaml_keys" => text(dir, |t| format!("{t}mlflow_version: 3.17.2\nmlflow_version: 3.17.2\n")),
        "44_code_key_points_to_dir" => edit(dir, |m| pyfunc(m).insert("code", s("artifacts"))),
        "45_model_uuid_int" => edit(dir, |m| m.insert("model_uuid", Node::Int(12345))),
        "46_example_params_flag_but_no_params" => {
            edit(dir, |m| m.get_mut("saved_input_example_info").unwrap().as_map_mut().unwrap().insert("params", s("true")))
        }
        "47_null_signature_fields" => edit(dir, |m| {
            let sig = m.get_mut("signature").unwrap().as_map_mut().unwrap();
            for key in ["inputs", "outputs", "params"] {
                sig.insert(key, Node::Null);
            }
        }),
        "48_object_prop_no_type" => set_inputs(dir, r#"[{"type": "object", "properties": {"a": {"required": true}}, "name": "prompt", "required": true}]"#),
        "49_map_values_string" => set_inputs(dir, r#"[{"type": "map", "values": "string", "name": "prompt", "required": true}]"#),
        "50_data_key_with_code_model" => edit(dir, |m| pyfunc(m).insert("data", s("data"))),
        "51_model_code_path_windows" => edit(dir, |m| pyfunc(m).insert("model_code_path", s("C:\\Users\\me\\model.py"))),
        "52_model_code_path_posix_abs" => edit(dir, |m| pyfunc(m).insert("model_code_path", s("/home/someone/project/model.py"))),
        "53_both_python_model_and_code" => edit(dir, |m| pyfunc(m).insert("python_model", s("python_model.pkl"))),
        "54_loader_pyfunc_model_no_pkl" => edit(dir, |m| {
            pyfunc(m).insert("loader_module", s("mlflow.pyfunc.model"));
            pyfunc(m).remove("model_code_path");
        }),
        "55_env_legacy_string" => edit(dir, |m| pyfunc(m).insert("env", s("conda.yaml"))),
        "56_predict_fn_custom" => edit(dir, |m| pyfunc(m).insert("predict_fn", s("nonexistent_method"))),
        "57_loader_pyfunc_model_with_code" => edit(dir, |m| pyfunc(m).insert("loader_module", s("mlflow.pyfunc.model"))),
        "60_crlf" => text(dir, |t| t.replace('\n', "\r\n")),
        "61_bom" => text(dir, |t| format!("\u{feff}{t}")),
        "62_json_mlmodel" => {
            let node = yaml::parse(&std::fs::read_to_string(dir.join("MLmodel")).unwrap()).unwrap();
            std::fs::write(dir.join("MLmodel"), serde_json::to_string_pretty(&node.to_json()).unwrap()).unwrap();
        }
        other => panic!("no recipe for case {other}"),
    }
}

/// MLflow's verdict per case: true when it failed to load the model or to predict with it.
fn mlflow_verdicts() -> BTreeMap<String, bool> {
    let path = support::shared().join("fixtures/mlflow-examples/_evidence/validation_results_mlflow-3.17.2.txt");
    let failed = |value: Option<&serde_json::Value>| {
        value.and_then(|v| v.as_str()).is_some_and(|v| {
            let head = v.split(':').next().unwrap_or_default();
            head.ends_with("Error") || head.ends_with("Exception")
        })
    };
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(name, json)| {
            let result: serde_json::Value = serde_json::from_str(json).unwrap();
            let fails = failed(result.get("Model.load")) || failed(result.get("load_model")) || failed(result.get("predict"));
            (name.to_owned(), fails)
        })
        .collect()
}

#[test]
fn every_malformed_case_gets_mlflows_verdict() {
    let verdicts = mlflow_verdicts();
    assert!(verdicts.len() >= 60, "{}", verdicts.len());
    let good = support::shared().join("fixtures/mlflow-examples/handwritten-full");
    let scratch = tempfile::tempdir().unwrap();
    let mut mismatches = Vec::new();
    for (name, mlflow_fails) in &verdicts {
        let dir = scratch.path().join(name);
        copy_dir(&good, &dir);
        build_case(name, &dir);
        let report = validate_folder(&dir);
        if report.is_usable() == *mlflow_fails {
            mismatches.push(format!("{name}: MLflow {} but validate says {:?}", if *mlflow_fails { "fails" } else { "loads" }, report.problems));
        }
        for problem in &report.problems {
            assert!(!problem.file.is_empty() && !problem.message.is_empty(), "{name}: {problem:?}");
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn warnings_for_cases_mlflow_tolerates() {
    let good = support::shared().join("fixtures/mlflow-examples/handwritten-full");
    let scratch = tempfile::tempdir().unwrap();
    for (name, needle) in [
        ("30_example_type_unknown", "saved_input_example_info"),
        ("31_example_file_missing", "saved_input_example_info"),
        ("34_bad_requirements_txt", "line 2"),
        ("40_streamable_without_method", "streamable"),
        ("42_artifact_path_absolute", "artifacts.assets"),
    ] {
        let dir = scratch.path().join(name);
        copy_dir(&good, &dir);
        build_case(name, &dir);
        let report = validate_folder(&dir);
        assert!(
            report.problems.iter().any(|p| p.severity == Severity::Warning && (p.key.contains(needle) || p.file.contains(needle))),
            "{name}: {:?}",
            report.problems
        );
    }
}

#[test]
fn every_shared_example_folder_validates_as_mlflow_left_it() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for entry in std::fs::read_dir(support::shared().join("fixtures/mlflow-examples")).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('_') || !dir.join("MLmodel").is_file() {
            continue;
        }
        let report = validate_folder(&dir);
        // Two folders hold only an MLmodel written to show keys (no flavors / no code file):
        // MLflow cannot load them either.
        let loadable = !matches!(name.as_str(), "v3-signatures" | "v3-top-level-keys");
        if report.is_usable() != loadable {
            failures.push(format!("{name}: {:?}", report.problems));
        }
        checked += 1;
    }
    assert!(checked >= 24, "only {checked} example folders");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
