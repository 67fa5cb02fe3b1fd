//! Frame time of the real app state while a reply streams 5,000 tokens into a conversation of
//! 200 messages (a synthetic token stream, so the model's speed is not what is measured), and
//! whether the app stays idle afterwards. Run: `cargo bench --bench gui_frames`.

use std::time::{Duration, Instant};

use egui_kittest::Harness;
use modeldesk::{
    app::{StartupOptions, Streaming, Tab},
    gui::ModelDeskApp,
    app_dirs::AppDirs,
    chat::{Conversation, Message, ReplyStats, Role},
    engine::{FinishReason, Timings, Usage},
    runtime::Candidates,
};

fn main() {
    let home = tempfile::tempdir().expect("temp dir");
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-phi3");
    let startup = StartupOptions { open: Some(model.clone()), candidates: Candidates::discover(None), dirs: Some(AppDirs::under(home.path())) };
    let mut harness: Harness<'_, ModelDeskApp> =
        Harness::builder().with_size([1280.0, 860.0]).build_eframe(|cc| ModelDeskApp::new(cc, startup));
    harness.ctx.set_missing_glyph_policy(egui::epaint::text::MissingGlyphPolicy::Tofu);
    let deadline = Instant::now() + Duration::from_secs(60);
    while harness.state().state.is_busy() && Instant::now() < deadline {
        harness.step();
    }
    // 200 messages of Markdown-ish text with usage lines.
    let mut conversation = Conversation::new(&model);
    for index in 0..200 {
        let content = if index % 2 == 0 {
            format!("Question {index}: how do rivers carry boats to the sea?")
        } else {
            format!("Answer {index}: **Rivers** flow downhill.\n\n- boats float\n- sailors sing\n\n```rust\nfn main() {{ println!(\"{index}\"); }}\n```\n")
        };
        conversation.messages.push(Message {
            role: if index % 2 == 0 { Role::User } else { Role::Assistant },
            content,
            stats: (index % 2 == 1).then_some(ReplyStats {
                usage: Usage { prompt_tokens: 100, completion_tokens: 50, total_tokens: 150, ..Usage::default() },
                timings: Timings::default(),
                finish_reason: FinishReason::Stop,
                dropped_messages: 0,
            }),
            token_ids: None,
        });
    }
    let id = conversation.id.clone();
    {
        let state = &mut harness.state_mut().state;
        state.tab = Tab::Chat;
        state.chat.conversations.insert(0, conversation);
        state.chat.current = Some(id.clone());
        let mut streaming = Streaming::fed(id);
        streaming.prompt_tokens = Some(3000);
        state.chat.streaming = Some(streaming);
    }
    harness.run_steps(3);
    let words = ["The", " river", " carries", " the", " boat", ",", " and", " **sailors**", " sing", ".\n"];
    let mut frames = Vec::with_capacity(5000);
    for token in 0..5000 {
        if let Some(streaming) = harness.state_mut().state.chat.streaming.as_mut() {
            streaming.text.push_str(words[token % words.len()]);
            streaming.tokens += 1;
        }
        let started = Instant::now();
        harness.step();
        frames.push(started.elapsed());
    }
    frames.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = frames[frames.len() / 2];
    let p95 = frames[frames.len() * 95 / 100];
    let max = frames[frames.len() - 1];
    println!(
        "streaming 5000 tokens into 200 messages: frame median {:.2} ms, p95 {:.2} ms, max {:.2} ms (budget 16 ms)",
        ms(median),
        ms(p95),
        ms(max)
    );
    // Idle: once the stream ends, no repaint is requested again.
    harness.state_mut().state.chat.streaming = None;
    harness.state_mut().state.notices.clear();
    let idle = harness.run_ok().is_some();
    println!("idle after the stream: {}", if idle { "no further repaints (0% CPU)" } else { "STILL REPAINTING" });
    if p95 > Duration::from_millis(16) || !idle {
        std::process::exit(1);
    }
}
