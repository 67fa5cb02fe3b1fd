//! The Chat tab: conversations of the selected model, the transcript with the reply streaming
//! in, usage under every reply, a context meter, generation settings and the message box.

use egui::{Key, KeyboardShortcut, Modifiers, RichText, Ui};

use crate::{
    app::{AppState, Intent, Streaming},
    chat::{Conversation, Message, ReplyStats, Role},
    engine::ContextPolicy,
};

pub fn show(ui: &mut Ui, state: &mut AppState, out: &mut Vec<Intent>) {
    let Some(selected) = state.persisted.selected.clone() else { return };
    if state.selected_kind().is_some_and(|k| !k.can_chat()) {
        cannot_chat(ui, state);
        return;
    }
    model_bar(ui, state, out);
    ui.separator();
    egui::Panel::left("conversations").resizable(true).default_size(190.0).show(ui, |ui| conversations(ui, state, &selected, out));
    egui::Panel::bottom("composer").show(ui, |ui| composer(ui, state, out));
    egui::CentralPanel::default().show(ui, |ui| transcript(ui, state, out));
}

/// Why this folder has no chat, and what to do instead.
fn cannot_chat(ui: &mut Ui, state: &AppState) {
    let flavors = state.editor.as_ref().and_then(|e| e.original.as_ref()).map(|m| m.flavor_names()).unwrap_or_default();
    let (title, what) = if flavors.iter().any(|f| f == "transformers") {
        (
            "A transformers pipeline, run by Python",
            "This MLflow model is a Hugging Face transformers pipeline. ModelDesk runs Phi models in ONNX form on ONNX Runtime, so it cannot run this one itself.",
        )
    } else if flavors.is_empty() {
        ("No model to chat with", "This folder holds no Phi ONNX model.")
    } else {
        ("An MLflow model ModelDesk cannot run itself", "This MLflow model holds no Phi ONNX folder that ModelDesk could run on ONNX Runtime.")
    };
    super::explanation(
        ui,
        title,
        what,
        "Its MLmodel, signature, input example and model_config can still be edited, validated and exported on the Model tab. To chat with a Phi model here, get its ONNX release (Get a model…) or create an MLflow model from a Phi ONNX folder.",
    );
}

fn model_bar(ui: &mut Ui, state: &AppState, out: &mut Vec<Intent>) {
    ui.horizontal(|ui| {
        let session = state.selected_session();
        if session.is_some_and(|s| s.is_loading()) {
            ui.spinner();
            ui.label("Loading the model…");
        } else if state.model_ready() {
            if ui.button("Unload").on_hover_text("Free the model's memory").clicked() {
                out.push(Intent::UnloadModel);
            }
        } else if ui.button("Load model").clicked() {
            out.push(Intent::LoadModel);
        }
        if let Some(error) = session.and_then(|s| s.error()) {
            ui.colored_label(ui.visuals().error_fg_color, "Load failed (hover for details)").on_hover_text(error);
        }
        ui.separator();
        context_meter(ui, state);
    });
}

/// Tokens of the current conversation against the context length, with a warning before the
/// next message will not fit.
fn context_meter(ui: &mut Ui, state: &AppState) {
    let Some(max_length) = state.selected_session().and_then(|s| s.max_length()).filter(|_| state.model_ready()) else {
        ui.weak("Context: load the model to see its size");
        return;
    };
    let context = max_length.max(1);
    let used = match &state.chat.streaming {
        Some(s) => s.prompt_tokens.unwrap_or(0) + s.tokens,
        None => state.current_conversation().and_then(Conversation::last_total_tokens).unwrap_or(0),
    };
    let reserve = state.current_conversation().and_then(|c| c.settings.max_tokens).unwrap_or(256);
    let fraction = used as f32 / context as f32;
    let bar = egui::ProgressBar::new(fraction.min(1.0)).desired_width(160.0).text(format!("{used} / {context} tokens"));
    let bar = if used + reserve > context { bar.fill(ui.visuals().warn_fg_color) } else { bar };
    ui.add(bar).on_hover_text("Tokens the conversation uses (prompt + reply) of the model's maximum length");
    if used + reserve > context {
        ui.colored_label(ui.visuals().warn_fg_color, "The next message may not fit")
            .on_hover_text("Start a new chat, or let ModelDesk drop the oldest turns (setting below)");
    }
}

fn conversations(ui: &mut Ui, state: &mut AppState, model: &std::path::Path, out: &mut Vec<Intent>) {
    if ui.button("+ New chat").on_hover_text("Ctrl+N").clicked() {
        out.push(Intent::NewConversation);
    }
    ui.separator();
    let list: Vec<(String, String)> = state.conversations_for(model).iter().map(|c| (c.id.clone(), c.title.clone())).collect();
    egui::ScrollArea::vertical().id_salt("conversation_list").show(ui, |ui| {
        for (id, title) in &list {
            if let Some((renaming, text)) = state.chat.renaming.as_mut().filter(|(r, _)| r == id) {
                let response = ui.text_edit_singleline(text);
                if response.lost_focus() {
                    out.push(Intent::Rename { id: renaming.clone(), title: text.clone() });
                }
                response.request_focus();
                continue;
            }
            let selected = state.chat.current.as_ref() == Some(id);
            let response = ui.selectable_label(selected, title);
            if response.clicked() {
                out.push(Intent::SelectConversation(id.clone()));
            }
            response.context_menu(|ui| {
                if ui.button("Rename").clicked() {
                    out.push(Intent::StartRename { id: id.clone(), title: title.clone() });
                    ui.close();
                }
                if ui.button("Export as Markdown…").clicked() {
                    out.push(Intent::ExportConversation { id: id.clone(), json: false });
                    ui.close();
                }
                if ui.button("Export as llm/v1/chat JSON…").clicked() {
                    out.push(Intent::ExportConversation { id: id.clone(), json: true });
                    ui.close();
                }
                if ui.button("Delete").clicked() {
                    out.push(Intent::DeleteConversation(id.clone()));
                    ui.close();
                }
            });
        }
    });
}

fn usage_line(ui: &mut Ui, stats: &ReplyStats) {
    ui.label(RichText::new(stats.summary()).small().weak());
    if stats.dropped_messages > 0 {
        ui.label(RichText::new(format!("{} earlier messages were left out to fit the context", stats.dropped_messages)).small().color(ui.visuals().warn_fg_color));
    }
}

/// What one row of the transcript does when clicked.
enum RowAction {
    Copy(String),
    Edit(usize, String),
    Regenerate,
}

fn message_row(ui: &mut Ui, state_markdown: &mut egui_commonmark::CommonMarkCache, message: &Message, index: usize, last: bool, editing: Option<&mut String>) -> (Option<RowAction>, bool) {
    let mut action = None;
    let mut resend = false;
    let user = message.role == Role::User;
    let frame = egui::Frame::group(ui.style()).fill(if user { ui.visuals().faint_bg_color } else { ui.visuals().extreme_bg_color });
    frame.show(ui, |ui| {
        ui.set_width(ui.available_width());
        ui.horizontal(|ui| {
            ui.label(RichText::new(if user { "You" } else { "Assistant" }).strong());
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                if ui.small_button("Copy").clicked() {
                    action = Some(RowAction::Copy(message.content.clone()));
                }
                if user && editing.is_none() && ui.small_button("Edit").clicked() {
                    action = Some(RowAction::Edit(index, message.content.clone()));
                }
                if !user && last && ui.small_button("Regenerate").clicked() {
                    action = Some(RowAction::Regenerate);
                }
            });
        });
        match editing {
            Some(text) => {
                ui.add(egui::TextEdit::multiline(text).desired_rows(2).desired_width(f32::INFINITY));
                if ui.button("Resend from here").clicked() {
                    resend = true;
                }
            }
            None if user => {
                ui.label(&message.content);
            }
            None => {
                egui_commonmark::CommonMarkViewer::new().show(ui, state_markdown, &message.content);
            }
        }
        if let Some(stats) = &message.stats {
            usage_line(ui, stats);
        }
    });
    (action, resend)
}

fn streaming_row(ui: &mut Ui, markdown: &mut egui_commonmark::CommonMarkCache, streaming: &Streaming) {
    egui::Frame::group(ui.style()).fill(ui.visuals().extreme_bg_color).show(ui, |ui| {
        ui.set_width(ui.available_width());
        ui.horizontal(|ui| {
            ui.label(RichText::new("Assistant").strong());
            ui.spinner();
            let seconds = streaming.started.elapsed().as_secs_f32().max(0.001);
            let status = if streaming.stopping {
                "stopping…".to_owned()
            } else if streaming.tokens == 0 {
                "reading the prompt…".to_owned()
            } else {
                format!("{} tokens · {:.1} tokens/s", streaming.tokens, streaming.tokens as f32 / seconds)
            };
            ui.weak(status);
        });
        egui_commonmark::CommonMarkViewer::new().show(ui, markdown, &streaming.text);
    });
}

fn transcript(ui: &mut Ui, state: &mut AppState, out: &mut Vec<Intent>) {
    let Some(conversation_id) = state.chat.current.clone() else {
        ui.vertical_centered(|ui| {
            ui.add_space(40.0);
            ui.weak("No conversation yet. Type a message below to start one.");
        });
        return;
    };
    let Some(conversation) = state.chat.conversations.iter().find(|c| c.id == conversation_id) else {
        if state.reading_current() {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.weak("Reading the conversation…");
            });
        }
        return;
    };
    let messages = &conversation.messages;
    let count = messages.len();
    let streaming = state.chat.streaming.as_ref().filter(|s| s.conversation == conversation_id);
    let mut action = None;
    let mut resend = None;
    let spacing = ui.spacing().item_spacing.y;
    let heights = &mut state.chat.heights;
    let markdown = &mut state.chat.markdown;
    let editing = &mut state.chat.editing;
    // Only messages in view are laid out; the others take their last measured height, so long
    // conversations stay fast while a reply streams in.
    egui::ScrollArea::vertical().stick_to_bottom(true).auto_shrink([false, false]).show_viewport(ui, |ui, viewport| {
        const GUESS: f32 = 60.0;
        let mut y = 0.0;
        for (index, message) in messages.iter().enumerate() {
            let key = (conversation_id.clone(), index);
            let height = heights.get(&key).copied().unwrap_or(GUESS);
            let visible = y + height >= viewport.min.y && y <= viewport.max.y;
            let is_editing = editing.as_ref().is_some_and(|(i, _)| *i == index);
            if visible || is_editing {
                let top = ui.cursor().min.y;
                let edit_text = editing.as_mut().filter(|(i, _)| *i == index).map(|(_, t)| t);
                let (row_action, row_resend) = message_row(ui, markdown, message, index, index + 1 == count && streaming.is_none(), edit_text);
                if row_action.is_some() {
                    action = row_action;
                }
                if row_resend {
                    resend = Some(index);
                }
                let measured = ui.cursor().min.y - top;
                heights.insert(key, measured);
                y += measured;
            } else {
                ui.add_space(height - spacing);
                y += height;
            }
        }
        if let Some(streaming) = streaming {
            streaming_row(ui, markdown, streaming);
        }
    });
    match action {
        Some(RowAction::Copy(text)) => out.push(Intent::CopyText(text)),
        Some(RowAction::Edit(index, text)) => out.push(Intent::EditMessage { index, text }),
        Some(RowAction::Regenerate) => out.push(Intent::Regenerate),
        None => {}
    }
    if let (Some(index), Some((_, text))) = (resend, state.chat.editing.clone()) {
        out.push(Intent::ResendEdited { index, text });
    }
}

fn composer(ui: &mut Ui, state: &mut AppState, out: &mut Vec<Intent>) {
    ui.add_space(4.0);
    settings(ui, state, out);
    let ready = state.model_ready() && !state.reading_current();
    let streaming = state.chat.streaming.is_some();
    ui.horizontal(|ui| {
        let input = egui::TextEdit::multiline(&mut state.chat.draft)
            .desired_rows(2)
            .desired_width(ui.available_width() - 90.0)
            .hint_text(if ready { "Message (Enter to send, Shift+Enter for a new line)" } else { "Load the model to chat" })
            .return_key(Some(KeyboardShortcut::new(Modifiers::SHIFT, Key::Enter)));
        let response = ui.add_enabled(ready, input);
        let enter = response.has_focus() && ui.input(|i| i.key_pressed(Key::Enter) && !i.modifiers.shift);
        if streaming {
            if ui.button("Stop").on_hover_text("Esc").clicked() {
                out.push(Intent::StopReply);
            }
        } else if ui.add_enabled(ready && !state.chat.draft.trim().is_empty(), egui::Button::new("Send")).clicked() || (enter && ready) {
            out.push(Intent::Send);
            response.request_focus();
        }
    });
    ui.add_space(4.0);
}

fn settings(ui: &mut Ui, state: &mut AppState, out: &mut Vec<Intent>) {
    let defaults = state.selected_session().and_then(|s| s.effective_search());
    let mut policy_drop = state.chat.policy == ContextPolicy::DropOldestTurns;
    let id = state.chat.current.clone();
    let mut changed = false;
    egui::CollapsingHeader::new("System prompt and generation settings").id_salt("chat_settings").show(ui, |ui| {
        let Some(conversation) = id.as_ref().and_then(|id| state.chat.conversations.iter_mut().find(|c| &c.id == id)) else {
            ui.weak("Start a conversation to set its system prompt and settings.");
            return;
        };
        ui.label("System prompt");
        changed |= ui.add(egui::TextEdit::multiline(&mut conversation.system_prompt).desired_rows(2).desired_width(f32::INFINITY).hint_text("You are a helpful assistant.")).changed();
        let s = &mut conversation.settings;
        egui::Grid::new("generation").num_columns(4).show(ui, |ui| {
            let default_f = |v: Option<f32>| v.map(|v| format!("{v}")).unwrap_or_default();
            changed |= optional_f32(ui, "Temperature", &mut s.temperature, defaults.as_ref().map(|d| d.temperature), 0.0..=2.0);
            changed |= optional_f32(ui, "Top-p", &mut s.top_p, defaults.as_ref().map(|d| d.top_p), 0.0..=1.0);
            ui.end_row();
            changed |= optional_usize(ui, "Top-k", &mut s.top_k, defaults.as_ref().map(|d| d.top_k));
            changed |= optional_usize(ui, "Max tokens", &mut s.max_tokens, None);
            ui.end_row();
            changed |= optional_f32(ui, "Repetition penalty", &mut s.repetition_penalty, defaults.as_ref().map(|d| d.repetition_penalty), 0.5..=2.0);
            let mut seed = s.seed.unwrap_or(-1);
            ui.label("Seed");
            if ui.add(egui::DragValue::new(&mut seed).range(-1..=i64::MAX)).on_hover_text("-1: a new random seed each time").changed() {
                s.seed = (seed >= 0).then_some(seed);
                changed = true;
            }
            ui.end_row();
            let mut sample = s.do_sample.unwrap_or(defaults.as_ref().is_some_and(|d| d.do_sample));
            if ui.checkbox(&mut sample, "Sample (otherwise always the most likely token)").changed() {
                s.do_sample = Some(sample);
                changed = true;
            }
            let _ = default_f;
            ui.end_row();
        });
        ui.horizontal(|ui| {
            ui.label("Stop strings");
            let mut text = s.stop.join("\n");
            let response = ui
                .add(egui::TextEdit::multiline(&mut text).desired_rows(1).desired_width(260.0).hint_text("one per line"))
                .on_hover_text("The reply ends where one of these appears; it is not shown");
            if response.changed() {
                s.stop = text.lines().map(str::to_owned).collect();
                changed = true;
            }
        });
        ui.checkbox(&mut policy_drop, "When the conversation is too long, drop the oldest turns (keeps the system prompt); otherwise refuse");
    });
    state.chat.policy = if policy_drop { ContextPolicy::DropOldestTurns } else { ContextPolicy::Refuse };
    if changed {
        if let Some(id) = id {
            out.push(Intent::ConversationEdited(id));
        }
    }
}

fn optional_f32(ui: &mut Ui, label: &str, value: &mut Option<f32>, default: Option<f32>, range: std::ops::RangeInclusive<f32>) -> bool {
    ui.label(label);
    let mut current = value.or(default).unwrap_or(*range.start());
    let response = ui.add(egui::DragValue::new(&mut current).range(range).speed(0.01).max_decimals(3));
    let hint = match default {
        Some(d) => format!("the model's default is {d}"),
        None => "no default".into(),
    };
    let response = response.on_hover_text(hint);
    if response.changed() {
        *value = Some(current);
        return true;
    }
    false
}

fn optional_usize(ui: &mut Ui, label: &str, value: &mut Option<usize>, default: Option<usize>) -> bool {
    ui.label(label);
    let mut current = value.or(default).unwrap_or(0);
    let response = ui.add(egui::DragValue::new(&mut current).range(0..=1_000_000)).on_hover_text("0: no limit beyond the model's maximum length");
    if response.changed() {
        *value = (current > 0).then_some(current);
        return true;
    }
    false
}
