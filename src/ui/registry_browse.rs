//! The Registry view's Experiments half: experiments searched by name as the user types, the
//! selected experiment's runs (a run's artifact folders, each with Pull) and its logged models
//! (Pull), each list with "More" while the server has further pages. Draws state, returns
//! intents.

use egui::{RichText, Ui};

use crate::{
    app::{BrowseIntent, Intent, PagedList, RegistryIntent, RegistryState, artifact_name},
    tracking::types::{Experiment, LOGGED_MODEL_READY, LoggedModel, Run},
};

fn browse(intent: BrowseIntent) -> Intent {
    Intent::Registry(RegistryIntent::Browse(intent))
}

fn pull(uri: String) -> Intent {
    Intent::Registry(RegistryIntent::Pull(uri))
}

pub fn show(ui: &mut Ui, registry_state: &mut RegistryState, out: &mut Vec<Intent>) {
    ui.horizontal(|ui| {
        let label = ui.label("Experiment");
        let search = ui
            .add(egui::TextEdit::singleline(&mut registry_state.browse.search).hint_text("part of an experiment's name").desired_width(260.0))
            .labelled_by(label.id);
        if search.changed() {
            out.push(browse(BrowseIntent::SearchExperiments));
        }
        if registry_state.browse.is_busy() {
            ui.spinner();
        }
    });
    let pulling = registry_state.pulling.is_some();
    let state = &registry_state.browse;
    ui.columns(3, |columns| {
        experiments(&mut columns[0], &state.experiments, state.experiment.as_deref(), out);
        match state.selected_experiment() {
            Some(experiment) => {
                runs(&mut columns[1], state, &experiment.name, pulling, out);
                logged_models(&mut columns[2], &state.logged_models, pulling, out);
            }
            None => {
                columns[1].weak("Select an experiment to see its runs and logged models.");
            }
        }
    });
}

/// A list's title with its count (`+` while more pages exist) and its error, if any.
fn heading<T: Send + 'static>(ui: &mut Ui, title: &str, list: &PagedList<T>) {
    ui.label(RichText::new(format!("{title} ({}{})", list.items.len(), if list.next.is_some() { "+" } else { "" })).strong());
    if let Some(error) = &list.error {
        ui.colored_label(ui.visuals().error_fg_color, error);
    }
}

/// "More …" while the server has a next page.
fn more<T: Send + 'static>(ui: &mut Ui, list: &PagedList<T>, label: &str, intent: BrowseIntent, out: &mut Vec<Intent>) {
    if list.next.is_some() && ui.add_enabled(!list.is_loading(), egui::Button::new(label)).clicked() {
        out.push(browse(intent));
    }
}

fn experiments(ui: &mut Ui, list: &PagedList<Experiment>, selected: Option<&str>, out: &mut Vec<Intent>) {
    heading(ui, "Experiments", list);
    egui::ScrollArea::vertical().id_salt("registry_experiments").auto_shrink([false, false]).show(ui, |ui| {
        if list.items.is_empty() && !list.is_loading() && list.error.is_none() {
            ui.weak("No experiment matches.");
        }
        for experiment in &list.items {
            let chosen = selected == Some(experiment.experiment_id.as_str());
            let text = format!("{} · id {}", experiment.name, experiment.experiment_id);
            if ui.selectable_label(chosen, text).clicked() {
                out.push(browse(BrowseIntent::SelectExperiment(experiment.experiment_id.clone())));
            }
        }
        more(ui, list, "More experiments", BrowseIntent::MoreExperiments, out);
    });
}

fn runs(ui: &mut Ui, state: &crate::app::BrowseState, experiment: &str, pulling: bool, out: &mut Vec<Intent>) {
    heading(ui, &format!("Runs of {experiment}"), &state.runs);
    egui::ScrollArea::vertical().id_salt("registry_runs").auto_shrink([false, false]).show(ui, |ui| {
        if state.runs.items.is_empty() && !state.runs.is_loading() && state.runs.error.is_none() {
            ui.weak("No runs.");
        }
        for run in &state.runs.items {
            let selected = state.run.as_deref() == Some(run.info.run_id.as_str());
            if ui.selectable_label(selected, run_line(run)).on_hover_text(format!("run {}", run.info.run_id)).clicked() {
                out.push(browse(BrowseIntent::SelectRun(run.info.run_id.clone())));
            }
            if selected {
                run_folders(ui, state, &run.info.run_id, pulling, out);
            }
        }
        more(ui, &state.runs, "More runs", BrowseIntent::MoreRuns, out);
    });
}

fn run_line(run: &Run) -> String {
    let name = if run.info.run_name.is_empty() { &run.info.run_id } else { &run.info.run_name };
    format!("{name} · {} · {}", run.info.status, when(run.info.start_time))
}

/// The selected run's artifacts: folders can be pulled (`runs:/<run>/<folder>`).
fn run_folders(ui: &mut Ui, state: &crate::app::BrowseState, run_id: &str, pulling: bool, out: &mut Vec<Intent>) {
    let folders = &state.run_folders;
    ui.indent(("run_folders", run_id), |ui| {
        if folders.is_loading() {
            ui.spinner();
        }
        if let Some(error) = &folders.error {
            ui.colored_label(ui.visuals().error_fg_color, error);
        }
        if folders.items.is_empty() && !folders.is_loading() && folders.error.is_none() {
            ui.weak("No artifacts in the run (MLflow 3 keeps a model's files with its logged model).");
        }
        for entry in &folders.items {
            let name = artifact_name(entry);
            ui.horizontal(|ui| {
                if entry.is_dir {
                    let uri = format!("runs:/{run_id}/{name}");
                    if ui.add_enabled(!pulling, egui::Button::new(format!("Pull {name}/"))).on_hover_text(format!("Download {uri} and open it")).clicked() {
                        out.push(pull(uri));
                    }
                } else {
                    ui.weak(format!("{name} · {}", entry.file_size.map(crate::memory::human_bytes).unwrap_or_default()));
                }
            });
        }
    });
}

fn logged_models(ui: &mut Ui, list: &PagedList<LoggedModel>, pulling: bool, out: &mut Vec<Intent>) {
    heading(ui, "Logged models", list);
    egui::ScrollArea::vertical().id_salt("registry_logged_models").auto_shrink([false, false]).show(ui, |ui| {
        if list.items.is_empty() && !list.is_loading() && list.error.is_none() {
            ui.weak("No logged models.");
        }
        for model in &list.items {
            let info = &model.info;
            egui::Frame::group(ui.style()).show(ui, |ui| {
                ui.set_width(ui.available_width());
                ui.horizontal(|ui| {
                    ui.label(RichText::new(if info.name.is_empty() { &info.model_id } else { &info.name }).strong());
                    let status = info.status.strip_prefix("LOGGED_MODEL_").unwrap_or(&info.status);
                    ui.label(RichText::new(status).small());
                    ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                        let uri = format!("models:/{}", info.model_id);
                        let ready = info.status == LOGGED_MODEL_READY;
                        if ui.add_enabled(ready && !pulling, egui::Button::new("Pull")).on_hover_text(format!("Download {uri} and open it")).clicked() {
                            out.push(pull(uri));
                        }
                    });
                });
                ui.weak(format!("{} · {}", info.model_id, when(info.creation_timestamp_ms)));
                if !info.source_run_id.is_empty() {
                    ui.weak(format!("from run {}", info.source_run_id));
                }
            });
        }
        more(ui, list, "More logged models", BrowseIntent::MoreLoggedModels, out);
    });
}

/// A server timestamp (ms since the epoch) as `YYYY-MM-DD HH:MM UTC`.
fn when(ms: Option<i64>) -> String {
    let Some(time) = ms.and_then(|ms| time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()) else { return "no date".into() };
    format!("{:04}-{:02}-{:02} {:02}:{:02} UTC", time.year(), u8::from(time.month()), time.day(), time.hour(), time.minute())
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_times_read_as_utc_dates() {
        assert_eq!(super::when(Some(1_700_000_000_123)), "2023-11-14 22:13 UTC");
        assert_eq!(super::when(None), "no date");
    }
}
