//! The Chat tab: conversations of the selected model, the transcript with the reply streaming
//! in, usage under every reply, a context meter, generation settings and the message box. With
//! a remote backend (`remote_chat`) the same view talks to a remote model instead of the engine.

use egui::{Key, KeyboardShortcut, Modifiers, RichText, Ui};

use crate::{
    app::{AppState, BlockedChoice, BlockedSend, Intent, Streaming},
    chat::{Conversation, Message, ReplyStats, Role},
    engine::ContextPolicy,
};

pub fn show(ui: &mut Ui, state: &mut AppState, out: &mut Vec<Intent>) {
    let Some(selected) = state.persisted.selected.clone() else { return };
    let remote = state.remote_for_selected().is_some();
    if !remote && state.selected_kind().is_some_and(|k| !k.can_chat()) {
        cannot_chat(ui, state, out);
        return;
    }
    if remote {
        super::remote_chat::bar(ui, state, out);
    } else {
        model_bar(ui, state, out);
        ui.horizontal(|ui| super::serve::bar(ui, state, out));
        super::serve::log(ui, state);
    }
    ui.separator();
    egui::Panel::left("conversations").resizable(true).default_size(190.0).show(ui, |ui| conversations(ui, state, &selected, out));
    egui::Panel::bottom("composer").show(ui, |ui| composer(ui, state, out));
    egui::CentralPanel::default().show(ui, |ui| transcript(ui, state, out));
    export_form(&ui.ctx().clone(), state, out);
}

/// Why ModelDesk cannot run this folder itself, and what to do instead: run it with MLflow,
/// chat with an endpoint, or get a Phi ONNX model.
fn cannot_chat(ui: &mut Ui, state: &mut AppState, out: &mut Vec<Intent>) {
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
    let mlflow = state.selected_kind().is_some_and(|k| k.is_mlflow());
    let next = if mlflow {
        "Run it with MLflow: ModelDesk starts `mlflow models serve` with your Python (where the model's packages are installed) and chats with it here. Or chat with a server that already runs it. Its MLmodel, signature, input example and model_config can still be edited, validated and exported on the Model tab."
    } else {
        "Chat with a server that runs it, or get a Phi model's ONNX release (Get a model…) to run it here."
    };
    super::explanation(ui, title, what, next);
    ui.add_space(8.0);
    super::remote_chat::offers(ui, state, mlflow, out);
}

fn model_bar(ui: &mut Ui, state: &mut AppState, out: &mut Vec<Intent>) {
    // Wraps in a narrow window: a row wider than the panel would widen the whole chat column
    // and push the Send button off screen.
    ui.horizontal_wrapped(|ui| {
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
        let mlflow = state.selected_kind().is_some_and(|k| k.is_mlflow());
        ui.menu_button("Chat elsewhere", |ui| super::remote_chat::offers(ui, state, mlflow, out))
            .response
            .on_hover_text("Chat through `mlflow models serve` or another server instead of ModelDesk's engine");
    });
}

/// Tokens the next prompt takes (system prompt, conversation and the message being typed)
/// against the conversation's maximum length, with a warning before a message will not fit.
fn context_meter(ui: &mut Ui, state: &AppState) {
    let Some(max_length) = state.conversation_max_length().filter(|_| state.model_ready()) else {
        ui.weak("Context: load the model to see its size");
        return;
    };
    let context = max_length.max(1);
    let used = match &state.chat.streaming {
        Some(s) => s.prompt_tokens.unwrap_or(0) + s.tokens,
        None => state
            .next_prompt_tokens()
            .or_else(|| state.current_conversation().and_then(Conversation::last_total_tokens))
            .unwrap_or(0),
    };
    let reserve = state.current_conversation().and_then(|c| c.settings.max_tokens).unwrap_or(256);
    let fraction = used as f32 / context as f32;
    let bar = egui::ProgressBar::new(fraction.min(1.0)).desired_width(160.0).text(format!("{used} / {context} tokens"));
    let bar = if used + reserve > context { bar.fill(ui.visuals().warn_fg_color) } else { bar };
    ui.add(bar).on_hover_text("Tokens of the system prompt, the conversation and the message being typed, of the maximum length (prompt + reply)");
    if used + reserve > context {
        ui.colored_label(ui.visuals().warn_fg_color, "The next message may not fit")
            .on_hover_text("Start a new chat, let ModelDesk drop the oldest turns, or raise the maximum length (generation settings)");
    }
}

/// A message held back because it would not fit, and the ways out.
fn blocked_send(ui: &mut Ui, blocked: BlockedSend, out: &mut Vec<Intent>) {
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.colored_label(
            ui.visuals().warn_fg_color,
            format!(
                "This message does not fit: with the conversation it takes {} tokens, and this chat allows {} (prompt and reply).",
                blocked.needed, blocked.max_length
            ),
        );
        ui.horizontal_wrapped(|ui| {
            if ui.button("Start a new chat with this message").clicked() {
                out.push(Intent::ResolveBlocked(BlockedChoice::NewChat));
            }
            if ui.button("Drop the oldest turns and send").on_hover_text("The system prompt is kept").clicked() {
                out.push(Intent::ResolveBlocked(BlockedChoice::DropOldestTurns));
            }
            if blocked.can_raise() && ui.button(format!("Raise the maximum length to {} and send", blocked.context_length)).clicked() {
                out.push(Intent::ResolveBlocked(BlockedChoice::RaiseMaxLength));
            }
            if ui.button("Keep editing").clicked() {
                out.push(Intent::ResolveBlocked(BlockedChoice::Cancel));
            }
        });
    });
}

fn conversations(ui: &mut Ui, state: &mut AppState, model: &std::path::Path, out: &mut Vec<Intent>) {
    if ui.button("+ New chat").on_hover_text("Ctrl+N").clicked() {
        out.push(Intent::NewConversation);
    }
    if let Some(deleted) = &state.chat.deleted {
        ui.horizontal_wrapped(|ui| {
            ui.weak(format!("Deleted \u{201c}{}\u{201d}.", deleted.summary.title));
            if ui.small_button("Undo").clicked() {
                out.push(Intent::UndoDelete);
            }
        });
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
            ui.horizontal(|ui| {
                // The menu button first, so a long title cannot push it out of the panel.
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    ui.menu_button("…", |ui| conversation_actions(ui, id, title, out)).response.on_hover_text("Rename, export or delete");
                    let response = ui.add(egui::Button::selectable(selected, title.as_str()).truncate());
                    if response.clicked() {
                        out.push(Intent::SelectConversation(id.clone()));
                    }
                    response.context_menu(|ui| conversation_actions(ui, id, title, out));
                });
            });
        }
    });
}

/// What the conversation menu offers (its "…" button and its right-click menu alike).
fn conversation_actions(ui: &mut Ui, id: &str, title: &str, out: &mut Vec<Intent>) {
    if ui.button("Rename").clicked() {
        out.push(Intent::StartRename { id: id.to_owned(), title: title.to_owned() });
        ui.close();
    }
    if ui.button("Export as Markdown…").clicked() {
        out.push(Intent::ExportConversation { id: id.to_owned(), json: false });
        ui.close();
    }
    if ui.button("Export as llm/v1/chat JSON…").clicked() {
        out.push(Intent::ExportConversation { id: id.to_owned(), json: true });
        ui.close();
    }
    if ui.button("Delete").on_hover_text("It can be brought back for a few seconds").clicked() {
        out.push(Intent::DeleteConversation(id.to_owned()));
        ui.close();
    }
}

/// The export form: format and file, with the system's save dialog behind "Browse…".
fn export_form(ctx: &egui::Context, state: &mut AppState, out: &mut Vec<Intent>) {
    let Some(export) = &mut state.chat.export else { return };
    let mut open = true;
    egui::Window::new("Export conversation").open(&mut open).collapsible(false).resizable(false).show(ctx, |ui| {
        ui.horizontal(|ui| {
            ui.label("Format");
            let before = export.json;
            ui.radio_value(&mut export.json, false, "Markdown");
            ui.radio_value(&mut export.json, true, "llm/v1/chat JSON");
            if before != export.json {
                let path = std::path::PathBuf::from(&export.path).with_extension(if export.json { "json" } else { "md" });
                export.path = path.display().to_string();
            }
        });
        ui.horizontal(|ui| {
            ui.label("File");
            ui.add(egui::TextEdit::singleline(&mut export.path).desired_width(360.0));
            if ui.add_enabled(!export.is_picking(), egui::Button::new("Browse…")).clicked() {
                out.push(Intent::PickConversationExport);
            }
        });
        ui.horizontal(|ui| {
            if ui.add_enabled(!export.path.trim().is_empty(), egui::Button::new("Export")).clicked() {
                out.push(Intent::RunConversationExport);
            }
            if ui.button("Cancel").clicked() {
                out.push(Intent::CloseConversationExport);
            }
        });
    });
    if !open {
        out.push(Intent::CloseConversationExport);
    }
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
            let status = if streaming.is_remote() {
                format!("waiting for the remote model… {:.0} s", seconds.floor())
            } else if streaming.stopping {
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
    // Each conversation keeps its own scroll position.
    egui::ScrollArea::vertical().id_salt(("transcript", &conversation_id)).stick_to_bottom(true).auto_shrink([false, false]).show_viewport(ui, |ui, viewport| {
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

/// The message box's id salt (its focus is kept by id across frames).
const COMPOSER_ID: &str = "composer_input";

fn composer(ui: &mut Ui, state: &mut AppState, out: &mut Vec<Intent>) {
    ui.add_space(4.0);
    settings(ui, state, out);
    let ready = state.chat_ready() && !state.reading_current();
    let streaming = state.chat.streaming.is_some();
    let waiting_hint = if state.remote_for_selected().is_some() { "Waiting for the remote model" } else { "Load the model to chat" };
    // The box grows with its text up to a share of the window, then scrolls: a long paste
    // never pushes it (or the Send button) out of sight.
    if let Some(blocked) = state.chat.context.blocked {
        blocked_send(ui, blocked, out);
    }
    let cap = (ui.ctx().content_rect().height() * 0.3).clamp(60.0, 240.0);
    let focus = std::mem::take(&mut state.chat.focus_composer);
    ui.horizontal(|ui| {
        let width = ui.available_width() - 90.0;
        let input = egui::TextEdit::multiline(&mut state.chat.draft)
            .id_salt(COMPOSER_ID)
            .desired_rows(2)
            .desired_width(width)
            .hint_text(if ready { "Message (Enter to send, Shift+Enter for a new line)" } else { waiting_hint })
            .return_key(Some(KeyboardShortcut::new(Modifiers::SHIFT, Key::Enter)));
        let response = egui::ScrollArea::vertical().id_salt("composer_scroll").max_height(cap).min_scrolled_height(cap.min(60.0)).show(ui, |ui| ui.add_enabled(ready, input)).inner;
        if focus {
            response.request_focus();
        }
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
    let max_length_default = state.selected_session().and_then(|s| s.max_length());
    let mut policy_drop = state.chat.policy == ContextPolicy::DropOldestTurns;
    let id = state.chat.current.clone();
    let remote = state.remote_for_selected().is_some();
    let mut changed = false;
    egui::CollapsingHeader::new("System prompt and generation settings").id_salt("chat_settings").show(ui, |ui| {
        if remote {
            ui.weak("The remote model is sent the system prompt, temperature, top-p, max tokens and stop strings; the other settings are ModelDesk's engine's.");
        }
        let Some(conversation) = id.as_ref().and_then(|id| state.chat.conversations.iter_mut().find(|c| &c.id == id)) else {
            ui.weak("Start a conversation to set its system prompt and settings.");
            return;
        };
        ui.horizontal(|ui| {
            ui.label("System prompt");
            if ui.small_button("Use for new chats").on_hover_text("New chats start with this system prompt").clicked() {
                out.push(Intent::SetDefaultSystemPrompt(conversation.system_prompt.clone()));
            }
            if ui.small_button("Reset to the model's defaults").on_hover_text("Temperature, top-p, top-k, max tokens, penalty, seed, sampling and stop strings as the model sets them").clicked() {
                out.push(Intent::ResetSettings(conversation.id.clone()));
            }
        });
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
            changed |= optional_usize(ui, "Max length", &mut s.max_length, max_length_default);
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
            ui.end_row();
            let lookup = ui.checkbox(&mut s.prompt_lookup, "Prompt lookup (faster when the reply repeats the conversation)");
            changed |= lookup.on_hover_text(crate::engine::prompt_lookup::TOOLTIP).changed();
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
