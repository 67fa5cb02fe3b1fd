//! The window's chat keeps its conversation in the engine's KV cache: each turn runs only what is
//! new (the previous reply's ids are kept with it, so the reuse reaches the end of that reply),
//! and a Regenerate late in a conversation runs only the last token of its prompt.

mod support;

use egui_kittest::{Harness, kittest::Queryable as _};
use modeldesk::{
    chat::{Message, Role},
    engine::FinishReason,
    gui::ModelDeskApp,
};
use support::gui::{app_sized, drop_folder, idle, step_until};

fn last_reply(harness: &Harness<'_, ModelDeskApp>) -> Message {
    let conversation = harness.state().state.current_conversation().expect("a conversation");
    let reply = conversation.messages.last().expect("a reply");
    assert_eq!(reply.role, Role::Assistant);
    reply.clone()
}

/// Prompt tokens of the reply's request whose keys and values the next request can reuse: all
/// of them plus every generated token that was fed back (a token cut by max_tokens never was).
fn computed_tokens(reply: &Message) -> usize {
    let stats = reply.stats.expect("reply stats");
    let unfed = usize::from(stats.finish_reason == FinishReason::Length);
    stats.usage.prompt_tokens + stats.usage.completion_tokens - unfed
}

fn send(harness: &mut Harness<'_, ModelDeskApp>, text: &str, messages_after: usize) {
    harness.state_mut().state.chat.draft = text.to_owned();
    harness.run_steps(2);
    harness.get_by_label("Send").click();
    step_until(harness, "the reply", |h| {
        h.state().state.chat.streaming.is_none() && h.state().state.current_conversation().is_some_and(|c| c.messages.len() == messages_after)
    });
}

#[test]
fn each_turn_and_a_regenerate_at_turn_ten_run_only_what_is_new() {
    let home = tempfile::tempdir().unwrap();
    let mut harness = app_sized(home.path(), [1024.0, 768.0]);
    harness.ctx.set_missing_glyph_policy(egui::epaint::text::MissingGlyphPolicy::Tofu);
    idle(&mut harness);
    drop_folder(&mut harness, &support::tiny_phi3());
    idle(&mut harness);
    harness.get_by_label("Load model").click();
    step_until(&mut harness, "the model to load", |h| h.query_by_label("Unload").is_some());
    {
        let conversation = harness.state_mut().state.current_conversation_mut().expect("a fresh chat");
        conversation.settings.max_tokens = Some(6);
        conversation.settings.do_sample = Some(false);
    }

    let mut previous: Option<Message> = None;
    for turn in 1..=10 {
        send(&mut harness, &format!("Turn {turn}: tell me about the river and the old mill"), 2 * turn);
        let reply = last_reply(&harness);
        let stats = reply.stats.expect("reply stats");
        assert_eq!(reply.token_ids.as_ref().map(Vec::len), Some(stats.usage.completion_tokens), "turn {turn} keeps its ids");
        let expected = previous.as_ref().map(computed_tokens).unwrap_or(0);
        assert_eq!(stats.usage.cached_tokens, expected, "turn {turn} reuses the whole previous exchange");
        previous = Some(reply);
    }
    let turn_ten = previous.expect("ten turns");
    let line = turn_ten.stats.expect("stats").summary();
    assert!(line.contains(&format!("({} cached)", turn_ten.stats.unwrap().usage.cached_tokens)), "{line}");

    // Regenerate at turn 10: the prompt is what turn 10 read, all in the cache but the token
    // whose logits choose the first reply token.
    // (What the transcript's Regenerate button asks for; the button itself is pressed in gui.rs.)
    harness.state_mut().state.regenerate();
    harness.run_steps(2);
    step_until(&mut harness, "the regenerated reply", |h| {
        h.state().state.chat.streaming.is_none() && h.state().state.current_conversation().is_some_and(|c| c.messages.len() == 20)
    });
    let again = last_reply(&harness).stats.expect("stats");
    assert_eq!(again.usage.prompt_tokens, turn_ten.stats.unwrap().usage.prompt_tokens);
    assert_eq!(again.usage.cached_tokens, again.usage.prompt_tokens - 1, "Regenerate runs one prompt token");
    assert_eq!(last_reply(&harness).content, turn_ten.content, "greedy: the same reply");
}
