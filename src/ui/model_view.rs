//! The Model tab: what the folder is, and forms for model_config, the signature, the input
//! example and the description, with messages next to the fields they concern.

use egui::{RichText, Ui};

use crate::{
    app::{
        AppState, DialogKind, Intent,
        editor::{ConfigRow, ConfigValue, KNOWN_CONFIG_KEYS, ModelEditor, ParamDraft},
    },
    mlflow::schema::{ColSpec, ColType, DataType, Property, Schema, Signature, TENSOR_DTYPES, TensorSpec, type_label},
};

pub fn show(ui: &mut Ui, state: &mut AppState, out: &mut Vec<Intent>) {
    let saving = state.saving.is_some();
    let Some(editor) = state.editor.as_mut() else {
        ui.spinner();
        ui.label("Reading the folder…");
        return;
    };
    let mut changed = false;
    if editor.is_mlflow() {
        ui.horizontal(|ui| {
            let dirty = editor.dirty;
            let ok = editor.messages.is_empty();
            if ui.add_enabled(dirty && ok && !saving, egui::Button::new("Save")).on_hover_text("Ctrl+S").clicked() {
                out.push(Intent::SaveModel);
            }
            if ui.add_enabled(dirty, egui::Button::new("Revert")).clicked() {
                out.push(Intent::RevertModel);
            }
            if saving {
                ui.spinner();
                ui.label("Saving…");
            } else if dirty && !ok {
                ui.colored_label(ui.visuals().error_fg_color, format!("{} field(s) need attention", editor.messages.len()));
            }
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                if ui.button("Export package…").clicked() {
                    out.push(Intent::OpenDialog(DialogKind::Export));
                }
                if ui.button("Publish to MLflow…").clicked() {
                    out.push(Intent::Registry(crate::app::RegistryIntent::OpenPublish(editor.dir.clone())));
                }
                if ui.button("Run with MLflow").on_hover_text("Start `mlflow models serve` for this folder and chat with it").clicked() {
                    out.push(Intent::Remote(crate::app::RemoteIntent::RunWithMlflow));
                }
            });
        });
        ui.separator();
    }
    egui::ScrollArea::vertical().auto_shrink([false, false]).show(ui, |ui| {
        if let Some(error) = &editor.load_error {
            ui.colored_label(ui.visuals().error_fg_color, format!("MLmodel could not be read: {error}"));
        }
        if editor.is_mlflow() {
            summary(ui, state.entries.get(&editor.dir), editor);
            changed |= config_form(ui, editor);
            changed |= signature_form(ui, editor);
            changed |= example_form(ui, editor);
            ui.add_space(6.0);
            egui::CollapsingHeader::new(RichText::new("Description").strong()).default_open(true).show(ui, |ui| {
                changed |= ui.add(egui::TextEdit::multiline(&mut editor.description).desired_rows(2).desired_width(f32::INFINITY).hint_text("What this model is for (kept in metadata.description)")).changed();
            });
        }
        if let Some(onnx) = &editor.onnx {
            onnx_facts(ui, onnx);
            if !editor.is_mlflow() {
                ui.add_space(8.0);
                if ui.button("Create MLflow model…").clicked() {
                    out.push(Intent::OpenDialog(DialogKind::Create));
                }
            }
        }
    });
    if changed {
        editor.check();
    }
}

fn messages(ui: &mut Ui, editor: &ModelEditor, prefix: &str) {
    for message in editor.messages_for(prefix) {
        ui.colored_label(ui.visuals().error_fg_color, format!("! {message}"));
    }
}

fn summary(ui: &mut Ui, info: Option<&crate::app::EntryInfo>, editor: &ModelEditor) {
    let Some(model) = &editor.original else { return };
    egui::CollapsingHeader::new(RichText::new("Summary").strong()).default_open(true).show(ui, |ui| {
        egui::Grid::new("summary").num_columns(2).striped(true).show(ui, |ui| {
            let mut row = |label: &str, value: String| {
                ui.label(label);
                ui.label(value);
                ui.end_row();
            };
            row("Flavors", model.flavor_names().join(", "));
            if let Some(pyfunc) = model.python_function() {
                row("Loader", pyfunc.loader_module.unwrap_or_default());
                if let Some(code) = pyfunc.model_code_path {
                    row("Code file", code);
                }
            }
            if let Some(task) = model.metadata().and_then(|m| m.as_map()).and_then(|m| m.get("task")).and_then(|t| t.as_str()) {
                row("Task", task.to_owned());
            }
            for key in ["mlflow_version", "model_uuid", "utc_time_created"] {
                if let Some(value) = model.get_str(key) {
                    row(key, value);
                }
            }
            if let Some(info) = info {
                row("Size", crate::memory::human_bytes(info.bytes));
                row("Checks", if info.errors.is_empty() { format!("usable ({} warnings)", info.warnings) } else { format!("not usable ({} errors, {} warnings)", info.errors.len(), info.warnings) });
            }
            row("Folder", editor.dir.display().to_string());
        });
        if let Some(info) = info.filter(|i| !i.report.problems.is_empty()) {
            problems(ui, &info.report);
        }
        egui::CollapsingHeader::new(format!("Files ({})", editor.files.len())).id_salt("files").show(ui, |ui| {
            egui::Grid::new("files").num_columns(2).striped(true).show(ui, |ui| {
                for (path, bytes) in &editor.files {
                    ui.label(path.display().to_string());
                    ui.label(crate::memory::human_bytes(*bytes));
                    ui.end_row();
                }
            });
        });
    });
}

/// Every problem the checks found, with the file and field it concerns.
fn problems(ui: &mut Ui, report: &crate::mlflow::validate::Report) {
    use crate::mlflow::validate::Severity;
    egui::CollapsingHeader::new(RichText::new(format!("Problems ({})", report.problems.len())).strong()).id_salt("problems").default_open(true).show(ui, |ui| {
        egui::Grid::new("problems").num_columns(3).striped(true).show(ui, |ui| {
            for problem in &report.problems {
                let (label, color) = match problem.severity {
                    Severity::Error => ("error", ui.visuals().error_fg_color),
                    Severity::Warning => ("warning", ui.visuals().warn_fg_color),
                };
                ui.colored_label(color, label);
                let place = if problem.key.is_empty() { problem.file.clone() } else { format!("{} › {}", problem.file, problem.key) };
                ui.monospace(place);
                ui.label(&problem.message);
                ui.end_row();
            }
        });
    });
}

fn config_form(ui: &mut Ui, editor: &mut ModelEditor) -> bool {
    let mut changed = false;
    egui::CollapsingHeader::new(RichText::new("model_config").strong()).default_open(true).show(ui, |ui| {
        let mut remove = None;
        for (index, row) in editor.config.iter_mut().enumerate() {
            ui.horizontal(|ui| {
                let meaning = KNOWN_CONFIG_KEYS.iter().find(|(k, _, _)| *k == row.key).map(|(_, m, _)| *m);
                let key = ui.add_sized([170.0, 22.0], egui::TextEdit::singleline(&mut row.key));
                changed |= key.changed();
                let before = row.value.kind_label();
                egui::ComboBox::from_id_salt(("config_kind", index)).selected_text(before).width(80.0).show_ui(ui, |ui| {
                    for (label, make) in [
                        ("number", ConfigValue::Number(0.0)),
                        ("integer", ConfigValue::Integer(0)),
                        ("bool", ConfigValue::Bool(false)),
                        ("text", ConfigValue::Text(String::new())),
                        ("JSON", ConfigValue::Json("null".into())),
                    ] {
                        if ui.selectable_label(before == label, label).clicked() && before != label {
                            row.value = make;
                            changed = true;
                        }
                    }
                });
                changed |= match &mut row.value {
                    ConfigValue::Number(v) => ui.add_sized([110.0, 22.0], egui::DragValue::new(v).speed(0.01).max_decimals(6)).changed(),
                    ConfigValue::Integer(v) => ui.add_sized([110.0, 22.0], egui::DragValue::new(v)).changed(),
                    ConfigValue::Bool(v) => ui.checkbox(v, "").changed(),
                    ConfigValue::Text(v) | ConfigValue::Json(v) => ui.add_sized([220.0, 22.0], egui::TextEdit::singleline(v)).changed(),
                };
                if ui.small_button("x").on_hover_text("Remove this key").clicked() {
                    remove = Some(index);
                }
                if let Some(meaning) = meaning {
                    ui.weak(meaning);
                }
            });
        }
        if let Some(index) = remove {
            editor.config.remove(index);
            changed = true;
        }
        ui.horizontal(|ui| {
            ui.menu_button("Add key", |ui| {
                for (key, meaning, make) in KNOWN_CONFIG_KEYS {
                    let present = editor.config.iter().any(|r| r.key == *key);
                    if ui.add_enabled(!present, egui::Button::new(*key)).on_hover_text(*meaning).clicked() {
                        editor.config.push(ConfigRow { key: (*key).into(), value: make() });
                        changed = true;
                        ui.close();
                    }
                }
                ui.separator();
                if ui.button("Custom key").clicked() {
                    editor.config.push(ConfigRow { key: format!("key_{}", editor.config.len() + 1), value: ConfigValue::Text(String::new()) });
                    changed = true;
                    ui.close();
                }
            });
        });
        messages(ui, editor, "config.");
    });
    changed
}

const TYPE_NAMES: [&str; 12] = ["string", "long", "integer", "double", "float", "boolean", "binary", "datetime", "array", "object", "map", "any"];

fn type_name(ty: &ColType) -> &'static str {
    match ty {
        ColType::Base(b) => b.name(),
        ColType::Array(_) => "array",
        ColType::Object(_) => "object",
        ColType::Map(_) => "map",
        ColType::Any => "any",
        ColType::SparkVector => "sparkml_vector",
    }
}

fn new_type(name: &str) -> ColType {
    match name {
        "array" => ColType::Array(Box::new(ColType::Base(DataType::String))),
        "object" => ColType::Object(vec![Property { name: "field".into(), ty: ColType::Base(DataType::String), required: true }]),
        "map" => ColType::Map(Box::new(ColType::Base(DataType::String))),
        "any" => ColType::Any,
        other => ColType::Base(DataType::parse(other).unwrap_or(DataType::String)),
    }
}

/// A type dropdown, with the children of array / object / map under it.
fn type_editor(ui: &mut Ui, ty: &mut ColType, id: &str) -> bool {
    let mut changed = false;
    let current = type_name(ty);
    egui::ComboBox::from_id_salt(id).selected_text(current).width(90.0).show_ui(ui, |ui| {
        for name in TYPE_NAMES {
            if ui.selectable_label(current == name, name).clicked() && current != name {
                *ty = new_type(name);
                changed = true;
            }
        }
    });
    match ty {
        ColType::Array(items) => {
            ui.label("of");
            changed |= type_editor(ui, items, &format!("{id}.items"));
        }
        ColType::Map(values) => {
            ui.label("to");
            changed |= type_editor(ui, values, &format!("{id}.values"));
        }
        _ => {}
    }
    changed
}

/// The property tables of nested objects, indented under their column.
fn object_children(ui: &mut Ui, ty: &mut ColType, id: &str) -> bool {
    let mut changed = false;
    match ty {
        ColType::Object(props) => {
            ui.indent(id, |ui| {
                let mut remove = None;
                for (index, prop) in props.iter_mut().enumerate() {
                    let prop_id = format!("{id}.properties.{index}");
                    ui.horizontal(|ui| {
                        ui.label("-");
                        changed |= ui.add(egui::TextEdit::singleline(&mut prop.name).desired_width(120.0)).changed();
                        changed |= type_editor(ui, &mut prop.ty, &prop_id);
                        changed |= ui.checkbox(&mut prop.required, "required").changed();
                        if ui.small_button("x").clicked() {
                            remove = Some(index);
                        }
                    });
                    changed |= object_children(ui, &mut prop.ty, &prop_id);
                }
                if let Some(index) = remove {
                    props.remove(index);
                    changed = true;
                }
                if ui.small_button("+ property").clicked() {
                    props.push(Property { name: format!("field_{}", props.len() + 1), ty: ColType::Base(DataType::String), required: true });
                    changed = true;
                }
            });
        }
        ColType::Array(inner) | ColType::Map(inner) => changed |= object_children(ui, inner, &format!("{id}.inner")),
        _ => {}
    }
    changed
}

fn columns_table(ui: &mut Ui, cols: &mut Vec<ColSpec>, block: &str) -> bool {
    let mut changed = false;
    let mut action: Option<(usize, i32)> = None;
    for (index, col) in cols.iter_mut().enumerate() {
        let id = format!("{block}[{index}]");
        ui.horizontal(|ui| {
            let mut name = col.name.clone().unwrap_or_default();
            if ui.add(egui::TextEdit::singleline(&mut name).desired_width(140.0).hint_text("(unnamed)")).changed() {
                col.name = (!name.is_empty()).then_some(name);
                changed = true;
            }
            changed |= type_editor(ui, &mut col.ty, &id);
            let mut required = col.is_required();
            if ui.checkbox(&mut required, "required").changed() {
                col.required = Some(required);
                changed = true;
            }
            if ui.small_button("Up").on_hover_text("Move up").clicked() {
                action = Some((index, -1));
            }
            if ui.small_button("Down").on_hover_text("Move down").clicked() {
                action = Some((index, 1));
            }
            if ui.small_button("x").on_hover_text("Remove").clicked() {
                action = Some((index, 0));
            }
        });
        changed |= object_children(ui, &mut col.ty, &id);
    }
    if let Some((index, step)) = action {
        match step {
            0 => {
                cols.remove(index);
            }
            -1 if index > 0 => cols.swap(index, index - 1),
            1 if index + 1 < cols.len() => cols.swap(index, index + 1),
            _ => {}
        }
        changed = true;
    }
    if ui.small_button("+ column").clicked() {
        cols.push(ColSpec { name: Some(format!("column_{}", cols.len() + 1)), ty: ColType::Base(DataType::String), required: Some(true) });
        changed = true;
    }
    changed
}

fn tensors_table(ui: &mut Ui, tensors: &mut Vec<TensorSpec>, block: &str) -> bool {
    let mut changed = false;
    let mut remove = None;
    for (index, tensor) in tensors.iter_mut().enumerate() {
        ui.horizontal(|ui| {
            let mut name = tensor.name.clone().unwrap_or_default();
            if ui.add(egui::TextEdit::singleline(&mut name).desired_width(140.0).hint_text("(unnamed)")).changed() {
                tensor.name = (!name.is_empty()).then_some(name);
                changed = true;
            }
            egui::ComboBox::from_id_salt(format!("{block}[{index}].dtype")).selected_text(&tensor.dtype).show_ui(ui, |ui| {
                for dtype in TENSOR_DTYPES {
                    if ui.selectable_label(tensor.dtype == *dtype, *dtype).clicked() {
                        tensor.dtype = (*dtype).into();
                        changed = true;
                    }
                }
            });
            let mut shape = tensor.shape.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
            if ui.add(egui::TextEdit::singleline(&mut shape).desired_width(120.0)).on_hover_text("Dimensions; -1 for variable").changed() {
                if let Ok(dims) = shape.split(',').map(|d| d.trim().parse::<i64>()).collect::<Result<Vec<_>, _>>() {
                    tensor.shape = dims;
                    changed = true;
                }
            }
            if ui.small_button("x").clicked() {
                remove = Some(index);
            }
        });
    }
    if let Some(index) = remove {
        tensors.remove(index);
        changed = true;
    }
    changed
}

fn schema_block(ui: &mut Ui, schema: &mut Option<Schema>, block: &str) -> bool {
    let mut changed = false;
    let count = schema.as_ref().map(Schema::len).unwrap_or(0);
    ui.label(RichText::new(format!("{} ({count})", if block == "inputs" { "Inputs" } else { "Outputs" })).strong());
    match schema {
        Some(Schema::Columns(cols)) => changed |= columns_table(ui, cols, block),
        Some(Schema::Tensors(tensors)) => changed |= tensors_table(ui, tensors, block),
        None => {
            if ui.small_button("+ add a column schema").clicked() {
                *schema = Some(Schema::Columns(vec![ColSpec { name: Some("input".into()), ty: ColType::Base(DataType::String), required: Some(true) }]));
                changed = true;
            }
        }
    }
    changed
}

fn signature_form(ui: &mut Ui, editor: &mut ModelEditor) -> bool {
    let mut changed = false;
    egui::CollapsingHeader::new(RichText::new("Signature").strong()).default_open(true).show(ui, |ui| {
        if let Some(error) = &editor.signature_error {
            ui.colored_label(ui.visuals().error_fg_color, format!("The signature in MLmodel cannot be read by MLflow: {error}"));
            ui.weak("Fix it in MLmodel, or infer a new one from the input example below.");
            return;
        }
        let Some(signature) = editor.signature.as_mut() else {
            ui.weak("No schema. MLflow then accepts any input; add one so requests are checked.");
            if ui.button("Add a signature").clicked() {
                editor.signature = Some(Signature::default());
                changed = true;
            }
            return;
        };
        changed |= schema_block(ui, &mut signature.inputs, "inputs");
        messages(ui, editor, "inputs");
        ui.add_space(4.0);
        let Some(signature) = editor.signature.as_mut() else { return };
        changed |= schema_block(ui, &mut signature.outputs, "outputs");
        messages(ui, editor, "outputs");
        ui.add_space(4.0);
        ui.label(RichText::new(format!("Params ({})", editor.params.len())).strong());
        let mut remove = None;
        for (index, param) in editor.params.iter_mut().enumerate() {
            ui.horizontal(|ui| {
                changed |= ui.add(egui::TextEdit::singleline(&mut param.name).desired_width(130.0)).changed();
                egui::ComboBox::from_id_salt(("param_type", index)).selected_text(param.ty.name()).width(80.0).show_ui(ui, |ui| {
                    for ty in DataType::ALL.into_iter().filter(|t| *t != DataType::Binary) {
                        if ui.selectable_label(param.ty == ty, ty.name()).clicked() {
                            param.ty = ty;
                            changed = true;
                        }
                    }
                });
                ui.label("default");
                changed |= ui.add(egui::TextEdit::singleline(&mut param.default_json).desired_width(120.0)).on_hover_text("A JSON value, or null").changed();
                changed |= ui.checkbox(&mut param.list, "list").on_hover_text("shape [-1]: the parameter is a list").changed();
                if ui.small_button("x").clicked() {
                    remove = Some(index);
                }
            });
        }
        if let Some(index) = remove {
            editor.params.remove(index);
            changed = true;
        }
        if ui.small_button("+ param").clicked() {
            editor.params.push(ParamDraft { name: format!("param_{}", editor.params.len() + 1), ty: DataType::Long, default_json: "0".into(), list: false });
            changed = true;
        }
        messages(ui, editor, "params");
        if let Some(Schema::Columns(cols)) = editor.signature.as_ref().and_then(|s| s.inputs.as_ref()) {
            ui.add_space(4.0);
            ui.weak(format!(
                "Request body for /invocations: {{\"inputs\": {{{}}}}}",
                cols.iter().map(|c| format!("\"{}\": <{}>", c.name.as_deref().unwrap_or("?"), type_label(&c.ty))).collect::<Vec<_>>().join(", ")
            ));
        }
    });
    changed
}

fn example_form(ui: &mut Ui, editor: &mut ModelEditor) -> bool {
    let mut changed = false;
    egui::CollapsingHeader::new(RichText::new("Input example").strong()).default_open(true).show(ui, |ui| {
        changed |= ui
            .add(
                egui::TextEdit::multiline(&mut editor.example_text)
                    .code_editor()
                    .desired_rows(5)
                    .desired_width(f32::INFINITY)
                    .hint_text("{\"prompt\": \"Hello\"}"),
            )
            .changed();
        messages(ui, editor, "example");
        if editor.messages_for("example").next().is_none() && !editor.example_text.trim().is_empty() {
            ui.colored_label(egui::Color32::from_rgb(90, 170, 90), "Matches the signature");
        }
        if ui.button("Infer signature from example").clicked() {
            if let Err(message) = editor.infer_signature_from_example() {
                editor.messages.push(("example".into(), message));
            }
            changed = true;
        }
    });
    changed
}

fn onnx_facts(ui: &mut Ui, onnx: &crate::app::editor::OnnxFacts) {
    egui::CollapsingHeader::new(RichText::new("Phi-3 ONNX folder (genai_config.json)").strong()).default_open(true).show(ui, |ui| {
        match &onnx.config {
            Err(error) => {
                ui.colored_label(ui.visuals().error_fg_color, error);
            }
            Ok(config) => {
                let model = &config.model;
                let decoder = &model.decoder;
                egui::Grid::new("onnx").num_columns(2).striped(true).show(ui, |ui| {
                    let mut row = |label: &str, value: String| {
                        ui.label(label);
                        ui.label(value);
                        ui.end_row();
                    };
                    row("Type", model.model_type.clone());
                    row("Decoder", decoder.filename.clone());
                    row("Layers", decoder.num_hidden_layers.map(|v| v.to_string()).unwrap_or("?".into()));
                    row(
                        "Attention heads",
                        format!("{} (KV {})", decoder.num_attention_heads.map(|v| v.to_string()).unwrap_or("?".into()), decoder.num_key_value_heads.map(|v| v.to_string()).unwrap_or("?".into())),
                    );
                    row("Hidden size", decoder.hidden_size.map(|v| v.to_string()).unwrap_or("?".into()));
                    row("Context length", model.context_length.to_string());
                    row("Vocabulary", model.vocab_size.to_string());
                    row("EOS ids", format!("{:?}", config.eos_token_ids()));
                    let search = &config.search;
                    row(
                        "Search defaults",
                        format!(
                            "max_length {} · do_sample {} · temperature {} · top_k {} · top_p {} · repetition_penalty {}",
                            config.default_max_length(), search.do_sample, search.temperature, search.top_k, search.top_p, search.repetition_penalty
                        ),
                    );
                });
            }
        }
        for warning in &onnx.warnings {
            ui.colored_label(ui.visuals().warn_fg_color, warning);
        }
    });
}
