//! What the user asked for. Views return intents; [`AppState::apply`] carries them out, so every
//! file, thread and model operation starts here and nowhere in `ui`.

use std::path::PathBuf;

use super::{AppState, ConvertIntent, DialogKind, GetModelIntent, RegistryIntent, RemoteIntent, Tab};

/// The answer to "save the edits before opening another model?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchChoice {
    Save,
    Discard,
    Cancel,
}

/// The answer to "close with unsaved edits?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseChoice {
    SaveAndClose,
    DiscardAndClose,
    Cancel,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Intent {
    // library and files
    PickModelFolder,
    /// The "Open path" window (a typed path, with completion).
    ShowPathEntry,
    ClosePathEntry,
    /// Opens the path typed in the path field.
    OpenTypedPath,
    /// A path dropped, typed or picked: its model folder opens, several offer a choice, anything
    /// else is explained.
    OpenPath(PathBuf),
    /// One of the model folders found beneath an opened folder (`None`: none of them).
    ChooseModel(Option<PathBuf>),
    /// A library entry clicked (asks first when there are unsaved edits).
    Select(PathBuf),
    RemoveEntry(PathBuf),
    Reveal(PathBuf),
    CheckAgain,
    PickRuntimeLibrary,
    ConfirmSwitch(SwitchChoice),
    // model editor
    SaveModel,
    RevertModel,
    // create / export
    OpenDialog(DialogKind),
    PickDestination,
    RunDialog,
    CancelJob,
    CloseDialog,
    // engine and chat
    LoadModel,
    UnloadModel,
    /// The "Serve" switch: the loaded model behind the local OpenAI-compatible server.
    StartServing,
    StopServing,
    NewConversation,
    SelectConversation(String),
    StartRename { id: String, title: String },
    Rename { id: String, title: String },
    DeleteConversation(String),
    /// Opens the export form for a conversation.
    ExportConversation { id: String, json: bool },
    PickConversationExport,
    RunConversationExport,
    CloseConversationExport,
    UndoDelete,
    /// The conversation's generation settings go back to the model's defaults.
    ResetSettings(String),
    /// New chats start with this system prompt.
    SetDefaultSystemPrompt(String),
    /// Ctrl+L: the message box takes the keyboard focus.
    FocusComposer,
    /// What to do with a message that would not fit the context.
    ResolveBlocked(super::BlockedChoice),
    /// A conversation's system prompt or settings changed.
    ConversationEdited(String),
    Send,
    StopReply,
    Regenerate,
    EditMessage { index: usize, text: String },
    ResendEdited { index: usize, text: String },
    CopyText(String),
    // downloads
    GetModel(GetModelIntent),
    // window
    SetTab(Tab),
    ShowAbout,
    ShowShortcuts,
    DismissNotice(usize),
    CrashReportSeen,
    CloseRequested,
    ConfirmClose(CloseChoice),
    Quit,
    /// The MLflow Registry view and the Publish dialog.
    Registry(RegistryIntent),
    /// The chat's remote backend ("Run with MLflow", an endpoint URL).
    Remote(RemoteIntent),
    /// A Hugging Face checkpoint: create an MLflow model from it, convert it to ONNX.
    Convert(ConvertIntent),
}

impl AppState {
    /// Carries out what the user asked for.
    pub fn apply(&mut self, intent: Intent) {
        match intent {
            Intent::PickModelFolder => self.pick_model_folder(),
            Intent::ShowPathEntry => self.show_path_entry(),
            Intent::ClosePathEntry => self.path_entry.open = false,
            Intent::OpenTypedPath => self.open_typed_path(),
            Intent::OpenPath(path) => self.open_path(&path),
            Intent::ChooseModel(folder) => self.choose_model(folder),
            Intent::Select(path) => self.request_select(&path),
            Intent::RemoveEntry(path) => self.remove_entry(&path),
            Intent::Reveal(path) => self.reveal(&path),
            Intent::CheckAgain => self.check_again(),
            Intent::PickRuntimeLibrary => self.pick_runtime_library(),
            Intent::ConfirmSwitch(choice) => self.confirm_switch(choice),
            Intent::SaveModel => self.save_model(),
            Intent::RevertModel => self.revert_model(),
            Intent::OpenDialog(kind) => self.open_dialog(kind),
            Intent::PickDestination => self.pick_destination(),
            Intent::RunDialog => self.run_dialog(),
            Intent::CancelJob => self.cancel_dialog_job(),
            Intent::CloseDialog => self.dialog = None,
            Intent::LoadModel => self.load_model(),
            Intent::UnloadModel => self.unload_model(),
            Intent::StartServing => self.start_serving(),
            Intent::StopServing => self.stop_serving(),
            Intent::NewConversation => {
                self.tab = Tab::Chat;
                self.new_conversation();
            }
            Intent::SelectConversation(id) => self.select_conversation(&id),
            Intent::StartRename { id, title } => self.chat.renaming = Some((id, title)),
            Intent::Rename { id, title } => self.rename_conversation(&id, &title),
            Intent::DeleteConversation(id) => self.delete_conversation(&id),
            Intent::ExportConversation { id, json } => self.export_conversation(&id, json),
            Intent::PickConversationExport => self.pick_conversation_export(),
            Intent::RunConversationExport => self.run_conversation_export(),
            Intent::CloseConversationExport => self.chat.export = None,
            Intent::UndoDelete => self.undo_delete(),
            Intent::ResetSettings(id) => self.reset_settings(&id),
            Intent::SetDefaultSystemPrompt(text) => {
                self.persisted.default_system_prompt = text;
                self.notify("New chats will start with this system prompt");
            }
            Intent::ResolveBlocked(choice) => self.resolve_blocked(choice),
            Intent::FocusComposer => {
                self.tab = Tab::Chat;
                self.chat.focus_composer = true;
            }
            Intent::ConversationEdited(id) => self.persist_conversation(&id),
            Intent::Send => self.send(),
            Intent::StopReply => self.stop_reply(),
            Intent::Regenerate => self.regenerate(),
            Intent::EditMessage { index, text } => self.chat.editing = Some((index, text)),
            Intent::ResendEdited { index, text } => self.resend_edited(index, text),
            Intent::CopyText(text) => {
                self.ctx.copy_text(text);
                self.notify("Copied");
            }
            Intent::GetModel(intent) => self.apply_get_model(intent),
            Intent::SetTab(tab) => self.tab = tab,
            Intent::ShowAbout => self.about_open = true,
            Intent::ShowShortcuts => self.shortcuts_open = true,
            Intent::DismissNotice(index) => {
                if index < self.notices.len() {
                    self.notices.remove(index);
                }
            }
            Intent::CrashReportSeen => {
                if let (Some(dirs), Some(log)) = (self.dirs.clone(), self.crash_report.take()) {
                    self.in_background("mark-crash-reported", move || {
                        crate::crash::mark_reported(&dirs, &log);
                        Ok(None)
                    });
                }
            }
            Intent::CloseRequested => self.close_requested(),
            Intent::ConfirmClose(choice) => self.confirm_close(choice),
            Intent::Quit => self.ctx.send_viewport_cmd(egui::ViewportCommand::Close),
            Intent::Registry(intent) => self.apply_registry(intent),
            Intent::Remote(intent) => self.apply_remote(intent),
            Intent::Convert(intent) => self.apply_convert(intent),
        }
    }

    fn confirm_switch(&mut self, choice: SwitchChoice) {
        let Some(next) = self.pending_select.clone() else { return };
        match choice {
            // The save's completion selects the pending folder.
            SwitchChoice::Save => self.save_model(),
            SwitchChoice::Discard => {
                self.pending_select = None;
                self.select(&next);
            }
            SwitchChoice::Cancel => self.pending_select = None,
        }
    }

    /// The window's close button: with unsaved edits, ask first.
    fn close_requested(&mut self) {
        if self.has_unsaved_edits() && !self.allow_close {
            self.ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
            self.confirm_close = true;
        }
    }

    fn confirm_close(&mut self, choice: CloseChoice) {
        self.confirm_close = false;
        match choice {
            CloseChoice::SaveAndClose => self.save_model(),
            CloseChoice::DiscardAndClose => {
                self.allow_close = true;
                self.ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            }
            CloseChoice::Cancel => {}
        }
    }
}
