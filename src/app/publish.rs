//! The Publish dialog: its form (registered model name, experiment, aliases, tags,
//! description), the push on `tracking::push`'s service with every step and the upload's
//! progress, and its outcome (the registered version, or the step that failed).

use std::path::PathBuf;

use super::AppState;
use crate::tracking::{
    push::{PushEvent, PushProgress, PushRequest, PushStep, Pushed},
    types::KeyValue,
};

/// The Publish dialog: its form, then the push's steps and progress, then its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishDialog {
    pub folder: PathBuf,
    pub name: String,
    pub experiment: String,
    /// Comma- or space-separated.
    pub aliases: String,
    /// `key=value`, comma- or line-separated.
    pub tags: String,
    pub description: String,
    pub running: bool,
    pub steps: Vec<PushStep>,
    pub progress: Option<PushProgress>,
    pub outcome: Option<Result<Pushed, String>>,
}

/// `a, b c` → `["a", "b", "c"]`.
pub fn split_aliases(text: &str) -> Vec<String> {
    text.split([',', ' ', '\n']).map(str::trim).filter(|a| !a.is_empty()).map(str::to_owned).collect()
}

/// `k=v, k2=v2` (or one per line) → tags; a part without `=` is an error naming it.
pub fn parse_tags(text: &str) -> Result<Vec<KeyValue>, String> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| match part.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => Ok(KeyValue::new(key.trim(), value.trim())),
            _ => Err(format!("the tag `{part}` is not key=value")),
        })
        .collect()
}

impl AppState {
    pub(super) fn open_publish(&mut self, folder: PathBuf) {
        let name = folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        self.registry.publish = Some(PublishDialog {
            folder,
            name,
            experiment: "Default".into(),
            aliases: String::new(),
            tags: String::new(),
            description: String::new(),
            running: false,
            steps: Vec::new(),
            progress: None,
            outcome: None,
        });
    }

    pub(super) fn start_publish(&mut self) {
        let Some(service) = &self.registry.push else {
            return self.notify_error("Connect to an MLflow server first (Registry view)", None);
        };
        let Some(dialog) = self.registry.publish.as_mut().filter(|d| !d.running) else { return };
        let tags = match parse_tags(&dialog.tags) {
            Ok(tags) => tags,
            Err(message) => {
                dialog.outcome = Some(Err(message));
                return;
            }
        };
        let request = PushRequest {
            folder: dialog.folder.clone(),
            name: dialog.name.trim().to_owned(),
            experiment: Some(dialog.experiment.trim().to_owned()).filter(|e| !e.is_empty()),
            aliases: split_aliases(&dialog.aliases),
            tags,
            description: Some(dialog.description.trim().to_owned()).filter(|d| !d.is_empty()),
        };
        if request.name.is_empty() {
            dialog.outcome = Some(Err("the registered model needs a name".into()));
            return;
        }
        dialog.steps.clear();
        dialog.progress = None;
        dialog.outcome = None;
        dialog.running = service.push(request);
    }

    pub(super) fn poll_push(&mut self) {
        let events: Vec<PushEvent> = match &self.registry.push {
            Some(service) => std::iter::from_fn(|| service.try_recv()).collect(),
            None => return,
        };
        let Some(dialog) = self.registry.publish.as_mut() else { return };
        let mut finished = None;
        for event in events {
            match event {
                PushEvent::Step(step) => dialog.steps.push(step),
                PushEvent::Progress(progress) => dialog.progress = Some(progress),
                PushEvent::Finished(pushed) => {
                    dialog.running = false;
                    finished = Some(format!("Published {} as version {}", pushed.name, pushed.version));
                    dialog.outcome = Some(Ok(*pushed));
                }
                PushEvent::Failed { message, .. } => {
                    dialog.running = false;
                    dialog.outcome = Some(Err(message));
                }
                PushEvent::Cancelled { step } => {
                    dialog.running = false;
                    dialog.outcome = Some(Err(format!("cancelled while {}", step.label())));
                }
            }
        }
        if let Some(text) = finished {
            self.notify(text);
            // The new version shows in the Registry view.
            self.list_models(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_and_tags_are_read_from_the_form() {
        assert_eq!(split_aliases(" champion, staging  beta\n"), ["champion", "staging", "beta"]);
        assert_eq!(parse_tags("team=desk, stage = qa\nempty=").unwrap(), [KeyValue::new("team", "desk"), KeyValue::new("stage", "qa"), KeyValue::new("empty", "")]);
        assert!(parse_tags("team").unwrap_err().contains("`team`"));
        assert!(parse_tags("=x").is_err());
    }
}
