//! Loading, generating and unloading many times does not grow memory. (Its own test binary,
//! so no other test allocates while it measures.)

mod support;

use std::time::Duration;

use modeldesk::engine::{
    ContextPolicy, DecoderSettings, GenerateOptions, Prompt,
    worker::{Event, Worker},
};

#[test]
fn load_generate_unload_twenty_times_without_growth() {
    let mut worker = Worker::spawn(support::runtime(), Box::new(|| {}));
    let mut samples = Vec::new();
    for _ in 0..20 {
        worker.load(support::tiny_phi3(), DecoderSettings::default());
        worker.generate(Prompt::Raw("Hello there".into()), GenerateOptions { max_tokens: Some(32), ..Default::default() }, ContextPolicy::Refuse);
        worker.unload();
        loop {
            match worker.recv_timeout(Duration::from_secs(60)).expect("worker answers") {
                Event::Unloaded => break,
                Event::Failed { message, .. } | Event::LoadFailed { message, .. } => panic!("{message}"),
                _ => {}
            }
        }
        samples.push(modeldesk::memory::current_rss().expect("RSS is readable on Linux"));
    }
    let baseline = samples[4];
    let last = *samples.last().unwrap();
    let growth = last.saturating_sub(baseline);
    assert!(growth < 8 << 20, "RSS grew by {} bytes over 15 cycles: {samples:?}", growth);
}
