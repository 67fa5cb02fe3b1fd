//! Token-for-token conformance with onnxruntime-genai 0.18 (contract §11 cases 1–8), on the
//! repository's tiny fixture and on the shared micro Phi-3 (real Phi-3 tokenizer).

mod support;

use std::{
    path::{Path, PathBuf},
    sync::atomic::AtomicBool,
};

use modeldesk::engine::{ChatMessage, DecoderSettings, Engine, GenerateOptions, KvMode, Prompt};
use serde_json::{Value, json};

#[derive(Clone)]
struct Case {
    name: String,
    model: PathBuf,
    prompt: CasePrompt,
    max_length: usize,
    options: Value,
}

#[derive(Clone)]
enum CasePrompt {
    Raw(String),
    Chat(Vec<ChatMessage>),
    Ids(Vec<i64>),
}

fn reference(cases: &[Case]) -> Vec<Value> {
    let input: Vec<Value> = cases
        .iter()
        .map(|case| {
            let mut value = json!({"model": case.model, "max_length": case.max_length, "options": case.options});
            match &case.prompt {
                CasePrompt::Raw(text) => value["prompt"] = json!(text),
                CasePrompt::Chat(messages) => value["messages"] = json!(messages),
                CasePrompt::Ids(ids) => value["ids"] = json!(ids),
            }
            value
        })
        .collect();
    let results = support::python_script("genai_cases.py", &Value::Array(input));
    serde_json::from_value(results).unwrap()
}

fn options_from(case: &Case) -> GenerateOptions {
    let o = &case.options;
    GenerateOptions {
        max_length: Some(case.max_length),
        do_sample: o["do_sample"].as_bool(),
        top_k: o["top_k"].as_u64().map(|v| v as usize),
        top_p: o["top_p"].as_f64().map(|v| v as f32),
        temperature: o["temperature"].as_f64().map(|v| v as f32),
        repetition_penalty: o["repetition_penalty"].as_f64().map(|v| v as f32),
        min_length: o["min_length"].as_u64().map(|v| v as usize),
        no_repeat_ngram_size: o["no_repeat_ngram_size"].as_u64().map(|v| v as usize),
        seed: o["random_seed"].as_i64(),
        ..GenerateOptions::default()
    }
}

/// Our run of a case: (prompt ids, completion ids, finish reason, eos) or an error message.
fn ours(engine: &mut Engine, case: &Case, kv_mode: KvMode) -> Result<(Vec<i64>, Vec<i64>, String, Option<i64>), String> {
    let mut options = options_from(case);
    options.kv_mode = kv_mode;
    // Each case is a fresh onnxruntime-genai generator: no reuse of the previous case's cache.
    options.ignore_cached_prefix = true;
    let cancel = AtomicBool::new(false);
    let ids = match &case.prompt {
        CasePrompt::Ids(ids) => ids.clone(),
        CasePrompt::Raw(text) => engine.prepare(&Prompt::Raw(text.clone()), usize::MAX, Default::default()).map_err(|e| e.to_string())?.ids,
        CasePrompt::Chat(messages) => {
            engine.prepare(&Prompt::Chat(messages.clone()), usize::MAX, Default::default()).map_err(|e| e.to_string())?.ids
        }
    };
    let completion = engine.generate_ids(&ids, &options, &cancel, &mut |_| {}).map_err(|e| e.to_string())?;
    Ok((completion.prompt_ids, completion.completion_ids, completion.finish_reason.as_str().to_owned(), completion.eos_token))
}

fn long_text(engine: &Engine, min_tokens: usize) -> String {
    let paragraph = "The small model reads a long story about rivers, boats and sailors who sing at night, \
                     and counts every token it sees while the weather changes from sunny to rainy. ";
    let mut text = String::new();
    while engine.tokenizer.encode(&text).unwrap().len() < min_tokens {
        text.push_str(paragraph);
    }
    text
}

fn cases_for(engine: &Engine, model: &Path) -> Vec<Case> {
    let case = |name: &str, prompt: CasePrompt, max_length: usize, options: Value| Case {
        name: format!("{} / {name}", model.file_name().unwrap().to_string_lossy()),
        model: model.to_path_buf(),
        prompt,
        max_length,
        options,
    };
    let user = ChatMessage::new("user", "What is the capital of Spain?");
    let system = ChatMessage::new("system", "You are a helpful assistant.");
    let long = long_text(engine, 420);
    let pad = engine.facts.pad_token_id.unwrap();
    let mut padded = engine.tokenizer.encode("Hello there").unwrap();
    padded.push(pad);
    let plain = CasePrompt::Raw("The quick brown fox".into());
    vec![
        case("chat without system", CasePrompt::Chat(vec![user.clone()]), 64, json!({})),
        case("chat with system", CasePrompt::Chat(vec![system, user.clone()]), 72, json!({})),
        case("plain prompt", plain.clone(), 48, json!({})),
        case("400+ token prompt", CasePrompt::Raw(long), 480, json!({})),
        case("prompt ending in the pad token", CasePrompt::Ids(padded), 40, json!({})),
        case("repetition penalty 1.3", plain.clone(), 48, json!({"repetition_penalty": 1.3})),
        case("repetition penalty 0.7", plain.clone(), 48, json!({"repetition_penalty": 0.7})),
        case("min_length and no_repeat_ngram", plain.clone(), 48, json!({"min_length": 30, "no_repeat_ngram_size": 2})),
        case("max_length just above the prompt", plain.clone(), 6, json!({})),
        case("seeded top-k", CasePrompt::Chat(vec![user.clone()]), 64,
            json!({"do_sample": true, "top_k": 5, "temperature": 0.8, "random_seed": 42})),
        case("seeded top-p", CasePrompt::Chat(vec![user.clone()]), 64,
            json!({"do_sample": true, "top_k": 0, "top_p": 0.9, "temperature": 0.7, "random_seed": 42})),
        case("seeded top-k + top-p", CasePrompt::Chat(vec![user]), 64,
            json!({"do_sample": true, "top_k": 40, "top_p": 0.8, "temperature": 1.2, "random_seed": 7})),
    ]
}


#[test]
fn token_ids_equal_onnxruntime_genai_on_both_fixtures() {
    let runtime = support::runtime();
    let scratch = tempfile::tempdir().unwrap();
    let models = [support::tiny_phi3(), support::shared().join("fixtures/phi3-micro-int4")];
    let mut engines = Vec::new();
    let mut cases = Vec::new();
    for model in &models {
        let engine = Engine::load(runtime, model, &DecoderSettings::default()).unwrap();
        cases.extend(cases_for(&engine, model));
        engines.push(engine);
    }
    // EOS reached mid-way: make the token greedy decoding emits at step 5 an EOS.
    let mut eos_cases = Vec::new();
    for (index, model) in models.iter().enumerate() {
        let base = cases.iter().find(|c| c.model == *model && c.name.ends_with("/ plain prompt")).unwrap().clone();
        let (_, ids, _, _) = ours(&mut engines[index], &base, KvMode::Shared).unwrap();
        let stop_token = ids[5];
        let first_seen = ids.iter().position(|&id| id == stop_token).unwrap();
        let copy = support::with_extra_eos(model, stop_token, &scratch.path().join(index.to_string()));
        eos_cases.push((first_seen, Case { name: format!("{} / EOS mid-way", base.name), model: copy, ..base }));
    }
    let mut eos_engines: Vec<Engine> =
        eos_cases.iter().map(|(_, c)| Engine::load(runtime, &c.model, &DecoderSettings::default()).unwrap()).collect();
    let all: Vec<Case> = cases.iter().cloned().chain(eos_cases.iter().map(|(_, c)| c.clone())).collect();
    let expected = reference(&all);

    let mut checked = 0;
    for (case, want) in all.iter().zip(&expected) {
        assert!(want["error"].is_null(), "{}: genai failed: {}", case.name, want["error"]);
        let engine = match engines.iter_mut().find(|e| e.folder.dir == case.model) {
            Some(engine) => engine,
            None => eos_engines.iter_mut().find(|e| e.folder.dir == case.model).unwrap(),
        };
        for mode in [KvMode::Shared, KvMode::Growing] {
            let (prompt, completion, finish, eos) = ours(engine, case, mode).unwrap_or_else(|e| panic!("{}: {e}", case.name));
            let prompt_want: Vec<i64> = serde_json::from_value(want["prompt_ids"].clone()).unwrap();
            let completion_want: Vec<i64> = serde_json::from_value(want["generated_ids"].clone()).unwrap();
            assert_eq!(prompt, prompt_want, "{} ({mode:?}): prompt ids", case.name);
            assert_eq!(completion, completion_want, "{} ({mode:?}): generated ids", case.name);
            assert_eq!(finish, want["finish_reason"].as_str().unwrap(), "{} ({mode:?}): finish reason", case.name);
            assert_eq!(eos, want["eos"].as_i64(), "{} ({mode:?}): EOS", case.name);
        }
        checked += 1;
    }
    for (first_seen, case) in &eos_cases {
        let want = &expected[cases.len() + eos_cases.iter().position(|(_, c)| c.name == case.name).unwrap()];
        assert_eq!(want["generated_ids"].as_array().unwrap().len(), *first_seen, "{}: stops where the EOS first appears", case.name);
        assert_eq!(want["finish_reason"], "stop");
    }
    assert_eq!(checked, all.len());
    assert!(checked >= 26);
}

#[test]
fn max_length_limits_match_genai() {
    let runtime = support::runtime();
    let model = support::tiny_phi3();
    let mut engine = Engine::load(runtime, &model, &DecoderSettings::default()).unwrap();
    let prompt = engine.tokenizer.encode("The quick brown fox").unwrap();
    let p = prompt.len();
    let context = engine.facts.context_length;
    let case = |max_length| Case {
        name: format!("max_length {max_length}"),
        model: model.clone(),
        prompt: CasePrompt::Ids(prompt.clone()),
        max_length,
        options: json!({}),
    };
    let cases = [case(p), case(p - 1), case(context + 1), case(p + 3)];
    let expected = reference(&cases);
    // Equal to the prompt: genai raises on the first step; ModelDesk returns an empty reply.
    assert!(expected[0]["error"].as_str().unwrap_or_default().contains("max_length"), "{}", expected[0]);
    let (_, ids, finish, _) = ours(&mut engine, &cases[0], KvMode::Shared).unwrap();
    assert!(ids.is_empty());
    assert_eq!(finish, "length");
    // Below the prompt and above the context: both refuse, ModelDesk naming the sizes.
    assert!(!expected[1]["error"].is_null());
    let below = ours(&mut engine, &cases[1], KvMode::Shared).unwrap_err();
    assert!(below.contains(&format!("prompt is {p} tokens")) && below.contains(&format!("max_length is {}", p - 1)), "{below}");
    assert!(!expected[2]["error"].is_null());
    let above = ours(&mut engine, &cases[2], KvMode::Shared).unwrap_err();
    assert!(above.contains(&context.to_string()), "{above}");
    // Above the prompt: exactly max_length - prompt tokens when no EOS comes.
    let (_, ids, finish, _) = ours(&mut engine, &cases[3], KvMode::Shared).unwrap();
    assert_eq!(ids.len(), 3);
    assert_eq!(finish, "length");
    assert_eq!(serde_json::to_value(&ids).unwrap(), expected[3]["generated_ids"]);
}

#[test]
fn shared_and_growing_kv_give_identical_logits_and_prefill_is_one_run() {
    let runtime = support::runtime();
    let mut engine = Engine::load(runtime, &support::tiny_phi3(), &DecoderSettings::default()).unwrap();
    let prompt = engine.tokenizer.encode(&long_text(&engine, 300)).unwrap();
    let mut shared = engine.decoder.new_cache(KvMode::Shared);
    let mut growing = engine.decoder.new_cache(KvMode::Growing);
    let a = engine.decoder.step(&mut shared, &prompt, 2048).unwrap();
    let b = engine.decoder.step(&mut growing, &prompt, 2048).unwrap();
    assert_eq!(a.data, b.data, "prefill logits");
    let mut token = modeldesk::engine::sampling::argmax_first(a.row(a.rows - 1)) as i64;
    // Cross a 256-row chunk boundary so the shared buffers grow at least once.
    for step in 0..300 {
        let a = engine.decoder.step(&mut shared, &[token], 2048).unwrap();
        let b = engine.decoder.step(&mut growing, &[token], 2048).unwrap();
        assert_eq!(a.data, b.data, "decode step {step}");
        token = modeldesk::engine::sampling::argmax_first(a.row(0)) as i64;
    }
    assert_eq!(shared.len(), prompt.len() + 300);
    // Grown in 256-row chunks, at least doubling: never short, never twice what it holds.
    let (capacity, held) = (shared.capacity(), shared.len());
    assert!(capacity >= held && capacity % 256 == 0 && capacity < 2 * held, "{capacity} rows for {held} tokens");
}

/// Seeded sampling cases long enough for float16 logits' ties to matter (top-k used to differ
/// from genai after about 20 tokens, top-p at the first).
fn sampling_cases(model: &Path, tag: &str) -> Vec<Case> {
    let case = |name: String, prompt: CasePrompt, max_length: usize, options: Value| Case {
        name: format!("{tag} / {name}"),
        model: model.to_path_buf(),
        prompt,
        max_length,
        options,
    };
    let story = CasePrompt::Chat(vec![ChatMessage::new("user", "Write a story")]);
    let mut cases = vec![case("greedy".into(), story.clone(), 160, json!({}))];
    for seed in [7, 42, 1234] {
        cases.push(case(format!("top-k seed {seed}"), story.clone(), 160,
            json!({"do_sample": true, "top_k": 5, "temperature": 0.8, "random_seed": seed})));
        cases.push(case(format!("top-p seed {seed}"), story.clone(), 160,
            json!({"do_sample": true, "top_k": 0, "top_p": 0.9, "temperature": 0.7, "random_seed": seed})));
        cases.push(case(format!("top-k + top-p seed {seed}"), story.clone(), 160,
            json!({"do_sample": true, "top_k": 40, "top_p": 0.8, "temperature": 1.2, "random_seed": seed})));
    }
    cases
}

/// Runs `cases` on `engine` in the given KV modes and checks every one against genai's result;
/// returns how many generated tokens were compared.
fn check_against_genai(engine: &mut Engine, cases: &[Case], expected: &[Value], modes: &[KvMode]) -> usize {
    assert_eq!(cases.len(), expected.len());
    let mut tokens = 0;
    for (case, want) in cases.iter().zip(expected) {
        assert!(want["error"].is_null(), "{}: genai failed: {}", case.name, want["error"]);
        for &mode in modes {
            let (prompt, completion, finish, eos) = ours(engine, case, mode).unwrap_or_else(|e| panic!("{}: {e}", case.name));
            assert_eq!(serde_json::to_value(&prompt).unwrap(), want["prompt_ids"], "{} ({mode:?}): prompt", case.name);
            assert_eq!(serde_json::to_value(&completion).unwrap(), want["generated_ids"], "{} ({mode:?})", case.name);
            assert_eq!(finish, want["finish_reason"].as_str().unwrap(), "{} ({mode:?})", case.name);
            assert_eq!(eos, want["eos"].as_i64(), "{} ({mode:?})", case.name);
            tokens += completion.len();
        }
    }
    tokens
}

#[test]
fn float16_logits_sample_exactly_like_genai() {
    let runtime = support::runtime();
    let models = [(support::shared().join("fixtures/phi3-micro-fp16"), "phi3-micro-fp16"), (support::repo().join("tests/fixtures/tiny-phi3-fp16"), "tiny-phi3-fp16")];
    let mut tokens = 0;
    for (model, tag) in &models {
        let mut engine = Engine::load(runtime, model, &DecoderSettings::default()).unwrap();
        assert_eq!(engine.decoder.io.logits_type, modeldesk::engine::decoder::ElementType::F16, "{tag} has float16 logits");
        let cases = sampling_cases(model, tag);
        assert_eq!(cases.len(), 10);
        tokens += check_against_genai(&mut engine, &cases, &reference(&cases), &[KvMode::Shared]);
    }
    assert!(tokens > 1000, "long enough to meet ties: {tokens} tokens");
}

/// LongRoPE (two rotary tables switched by length inside the graph), partial rotary and tied
/// embeddings: prompts below, at and across the switch, generation crossing it, greedy and
/// seeded, both KV modes.
#[test]
fn the_phi_family_features_match_genai() {
    let runtime = support::runtime();
    let models = [
        (support::shared().join("fixtures/phi35-micro-int4"), "phi35-micro-int4", 64),
        (support::shared().join("fixtures/phi4mini-micro-int4"), "phi4mini-micro-int4", 64),
        (support::repo().join("tests/fixtures/tiny-phi4mini"), "tiny-phi4mini", 4096),
    ];
    let mut compared = 0;
    for (model, tag, switch) in &models {
        let mut engine = Engine::load(runtime, model, &DecoderSettings::default()).unwrap();
        let long = engine.tokenizer.encode(&long_text(&engine, 3 * switch)).unwrap();
        let prompt = |len: usize| CasePrompt::Ids(long[..len].to_vec());
        let case = |name: &str, prompt: CasePrompt, max_length: usize, options: Value| Case {
            name: format!("{tag} / {name}"),
            model: model.clone(),
            prompt,
            max_length,
            options,
        };
        let top_k = json!({"do_sample": true, "top_k": 5, "temperature": 0.8, "random_seed": 42});
        let top_p = json!({"do_sample": true, "top_k": 0, "top_p": 0.9, "temperature": 0.7, "random_seed": 7});
        let cases = vec![
            case("below the switch", prompt(switch / 2), switch - 4, json!({})),
            case("exactly at the switch, then crossing it", prompt(*switch), switch + 24, json!({})),
            case("across the switch", prompt(switch + 30), switch + 60, json!({})),
            case("generation crossing the switch", prompt(switch - 20), switch + 40, json!({})),
            case("seeded top-k crossing the switch", prompt(switch - 20), switch + 40, top_k.clone()),
            case("seeded top-p crossing the switch", prompt(switch - 20), switch + 40, top_p.clone()),
            case("seeded top-k across the switch", prompt(switch + 30), switch + 60, top_k),
            case("chat template", CasePrompt::Chat(vec![ChatMessage::new("user", "What is the capital of Spain?")]), switch + 40, top_p),
        ];
        let expected = reference(&cases);
        check_against_genai(&mut engine, &cases, &expected, &[KvMode::Shared, KvMode::Growing]);
        compared += cases.len();
    }
    assert_eq!(compared, 3 * 8);
}

/// A long-context LongRoPE model past 4096 tokens: genai reads the whole sequence again when a
/// step starts at 4097 tokens (its "Phi-3 RoPE rewind"), and so must we.
#[test]
fn generation_past_4096_tokens_rereads_the_sequence_like_genai() {
    let runtime = support::runtime();
    let model = support::repo().join("tests/fixtures/tiny-phi4mini");
    let mut engine = Engine::load(runtime, &model, &DecoderSettings::default()).unwrap();
    assert!(engine.facts.context_length > 4097, "the fixture's context reaches past the threshold");
    let long = engine.tokenizer.encode(&long_text(&engine, 4100)).unwrap();
    let case = |name: &str, prompt_len: usize, max_length: usize, options: Value| Case {
        name: format!("tiny-phi4mini / {name}"),
        model: model.clone(),
        prompt: CasePrompt::Ids(long[..prompt_len].to_vec()),
        max_length,
        options,
    };
    let cases = vec![
        case("greedy from 4090 to 4112", 4090, 4112, json!({})),
        case("seeded from 4094 to 4104", 4094, 4104, json!({"do_sample": true, "top_k": 5, "temperature": 0.8, "random_seed": 3})),
        case("a 4097-token prompt", 4097, 4104, json!({})),
    ];
    let expected = reference(&cases);
    let tokens = check_against_genai(&mut engine, &cases, &expected, &[KvMode::Shared]);
    assert!(tokens >= 22 + 10 + 7 - 3, "the replies cross the threshold: {tokens} tokens");
}
