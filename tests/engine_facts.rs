//! What a loaded model says about itself (family, quantisation, provider, context), and that a
//! 128k context costs nothing up front.

mod support;

use std::{path::Path, sync::atomic::AtomicBool};

use modeldesk::engine::{DecoderSettings, Engine, GenerateOptions, kv_cache::KV_CHUNK_TOKENS};

fn facts_of(model: &Path) -> modeldesk::engine::ModelFacts {
    Engine::load(support::runtime(), model, &DecoderSettings::default()).unwrap().facts
}

#[test]
fn family_quantisation_and_provider_come_from_the_config_and_the_graph() {
    let shared = support::shared().join("fixtures");
    let fixtures = support::repo().join("tests/fixtures");
    let expected = [
        (shared.join("phi3-micro-int4"), "Phi-3 architecture", "int4 (block 32)"),
        (shared.join("phi3-micro-fp16"), "Phi-3 architecture", "float16"),
        (shared.join("phi35-micro-int4"), "Phi-3 architecture (LongRoPE)", "int4 (block 32)"),
        (shared.join("phi4mini-micro-int4"), "Phi-4-mini (LongRoPE, partial rotary 48 of 64, tied embeddings)", "int4 (block 32)"),
        (fixtures.join("tiny-phi4mini"), "Phi-4-mini (LongRoPE, partial rotary 48 of 64, tied embeddings)", "int4 (block 32)"),
        (fixtures.join("tiny-phi3-fp16"), "Phi-3 architecture", "float16"),
    ];
    for (model, family, quantization) in &expected {
        let facts = facts_of(model);
        assert_eq!(facts.family, *family, "{}", model.display());
        assert_eq!(facts.quantization, *quantization, "{}", model.display());
        assert_eq!(facts.provider, "CPUExecutionProvider", "{}", model.display());
        assert!(facts.graph.as_ref().is_some_and(|g| g.operators.get("GroupQueryAttention") == Some(&facts.layers)));
    }
    assert_eq!(expected.len(), 6);
}

/// Idle ONNX Runtime threads sleep unless the caller or the folder's `config_entries` (applied
/// as onnxruntime-genai applies them) says they spin; the LongRoPE switch is read from the graph.
#[test]
fn thread_spinning_follows_the_caller_then_the_folder() {
    let tiny = support::tiny_phi3();
    assert!(!facts_of(&tiny).thread_spinning, "ModelDesk's default: threads sleep");
    let spinning = DecoderSettings { thread_spinning: Some(true), ..DecoderSettings::default() };
    assert!(Engine::load(support::runtime(), &tiny, &spinning).unwrap().facts.thread_spinning);

    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&tiny).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
    }
    let path = copy.path().join("genai_config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config["model"]["decoder"]["session_options"]["config_entries"] =
        serde_json::json!({"session.intra_op.allow_spinning": "1", "session.dynamic_block_base": "4"});
    std::fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
    let facts = facts_of(copy.path());
    assert!(facts.thread_spinning, "the folder asks for spinning");
    assert!(facts.warnings.is_empty(), "config_entries is a known key: {:?}", facts.warnings);
    let sleeping = DecoderSettings { thread_spinning: Some(false), ..DecoderSettings::default() };
    assert!(!Engine::load(support::runtime(), copy.path(), &sleeping).unwrap().facts.thread_spinning, "the caller wins");

    let longrope = |name: &str| facts_of(&support::shared().join("fixtures").join(name)).graph.unwrap().long_rope_switch;
    assert_eq!((longrope("phi35-micro-int4"), longrope("phi4mini-micro-int4"), longrope("phi3-micro-int4")), (Some(64), Some(64), None));
}

/// The folder's session options that onnxruntime-genai applies: the optimisation level, memory
/// pattern and inter-op threads are applied (every level genai names loads and generates); a
/// native operator library, a profile and switching off the CPU arena are not, and each says so.
#[test]
fn the_folders_session_options_are_applied_or_named() {
    let tiny = support::tiny_phi3();
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&tiny).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
    }
    let path = copy.path().join("genai_config.json");
    let original: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let write = |options: serde_json::Value| {
        let mut config = original.clone();
        for (key, value) in options.as_object().unwrap() {
            config["model"]["decoder"]["session_options"][key] = value.clone();
        }
        std::fs::write(&path, config.to_string()).unwrap();
    };
    let options = GenerateOptions { max_tokens: Some(5), do_sample: Some(false), ..GenerateOptions::default() };
    let levels = ["ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_LAYOUT", "ORT_ENABLE_ALL"];
    for level in levels {
        write(serde_json::json!({"graph_optimization_level": level, "enable_mem_pattern": false, "inter_op_num_threads": 1}));
        let mut engine = Engine::load(support::runtime(), copy.path(), &DecoderSettings::default()).unwrap_or_else(|e| panic!("{level}: {e}"));
        assert!(engine.facts.warnings.is_empty(), "{level}: {:?}", engine.facts.warnings);
        let completion = engine.generate_ids(&[1, 2, 3], &options, &AtomicBool::new(false), &mut |_| {}).unwrap();
        assert_eq!(completion.completion_ids.len(), 5, "{level}");
    }
    assert_eq!(levels.len(), 5);

    write(serde_json::json!({"graph_optimization_level": "ORT_ENABLE_EVERYTHING"}));
    let refused = Engine::load(support::runtime(), copy.path(), &DecoderSettings::default()).err().expect("an unknown level is refused");
    assert!(refused.to_string().contains("graph_optimization_level"), "{refused}");

    write(serde_json::json!({"custom_ops_library": "libcustom.so", "enable_profiling": "folder_profile", "enable_cpu_mem_arena": false}));
    let mut engine = Engine::load(support::runtime(), copy.path(), &DecoderSettings::default()).unwrap();
    engine.generate_ids(&[1, 2, 3], &options, &AtomicBool::new(false), &mut |_| {}).unwrap();
    let warnings = engine.facts.warnings.clone();
    drop(engine);
    for named in ["libcustom.so", "profiling", "memory arena"] {
        assert!(warnings.iter().any(|w| w.contains(named)), "a warning names {named}: {warnings:?}");
    }
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    let written = |dir: &Path| std::fs::read_dir(dir).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("folder_profile")).count();
    assert_eq!(written(copy.path()) + written(Path::new(".")), 0, "no profile was written");
}

#[test]
fn a_128k_context_allocates_nothing_up_front() {
    // tiny-phi4mini with Phi-3.5-mini's configured context of 131,072 tokens.
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(support::repo().join("tests/fixtures/tiny-phi4mini")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
    }
    let config_path = copy.path().join("genai_config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["model"]["context_length"] = 131_072.into();
    config["search"]["max_length"] = 131_072.into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    let before = modeldesk::memory::current_rss().expect("RSS is readable");
    let mut engine = Engine::load(support::runtime(), copy.path(), &DecoderSettings::default()).unwrap();
    assert_eq!(engine.facts.context_length, 131_072);
    assert_eq!(engine.facts.default_max_length, 131_072);
    let prompt = engine.tokenizer.encode("The quick brown fox jumps over the lazy dog").unwrap();
    let completion = engine
        .generate_ids(&prompt, &GenerateOptions { max_tokens: Some(20), suppress_eos: true, ..Default::default() }, &AtomicBool::new(false), &mut |_| {})
        .unwrap();
    assert_eq!(completion.max_length, 131_072, "the whole context is allowed");
    assert_eq!(engine.cache_capacity(), KV_CHUNK_TOKENS, "one chunk for a short reply, not 131,072 rows");
    let grown = modeldesk::memory::current_rss().unwrap().saturating_sub(before);
    // Up front, 131,072 rows × 2 layers × K and V × 64 floats would be 128 MiB.
    assert!(grown < 64 << 20, "loading and one short reply grew RSS by {grown} bytes");
}
