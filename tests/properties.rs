//! Property tests with fixed seeds (the same cases on every run): YAML written and read back is
//! the same value and no input makes the parser panic; signatures survive MLflow's JSON text;
//! the streaming text decoder's chunks add up to the whole text; names from files become safe
//! file names and zip entries.

use std::path::{Component, Path, PathBuf};

use modeldesk::{
    engine::tokenizer::PromptTokenizer,
    fsio::names::{MAX_FILE_NAME, inside_path, sanitize_file_name, zip_entry_name},
    mlflow::{
        schema::{ColSpec, ColType, DataType, ParamSpec, ParamType, Property, Schema, TENSOR_DTYPES, TensorSpec, parse_params, params_to_json, python_json},
        yaml::{self, Mapping, Node},
    },
};
use proptest::{prelude::*, test_runner::RngSeed};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, rng_seed: RngSeed::Fixed(0x6d6f_6465_6c64_6573), failure_persistence: None, ..ProptestConfig::default() }
}

// ----------------------------------------------------------------------------------------------
// YAML

/// Strings that stress quoting and folding: YAML indicators, spaces, breaks, control and
/// non-ASCII characters, words that read as other types.
fn yaml_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-z]{1,8}",
        Just(" ".to_owned()),
        Just("  ".to_owned()),
        Just("\n".to_owned()),
        Just("\t".to_owned()),
        Just("\r".to_owned()),
        "[-:#,\\[\\]{}&*!|>'\"%@`?~.]",
        Just("yes".to_owned()),
        Just("null".to_owned()),
        Just("1.5".to_owned()),
        Just("0x1F".to_owned()),
        Just("2025-01-01".to_owned()),
        "[\u{0}-\u{1f}\u{7f}-\u{a0}]",
        "[é中😀\u{2028}\u{feff}\u{85}]",
        Just("x".repeat(90)),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
}

fn yaml_scalar() -> impl Strategy<Value = Node> {
    prop_oneof![
        Just(Node::Null),
        any::<bool>().prop_map(Node::Bool),
        any::<i64>().prop_map(|i| Node::Int(i128::from(i))),
        any::<i128>().prop_map(Node::Int),
        any::<f64>().prop_filter("NaN is not equal to itself", |f| !f.is_nan()).prop_map(Node::Float),
        yaml_text().prop_map(Node::Str),
    ]
}

fn yaml_node() -> impl Strategy<Value = Node> {
    yaml_scalar().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Node::Seq),
            prop::collection::btree_map(yaml_text().prop_filter("short keys", |k| k.chars().count() < 100), inner, 0..6)
                .prop_map(|entries| Node::Map(Mapping(entries.into_iter().map(|(k, v)| (Node::Str(k), v)).collect()))),
        ]
    })
}

/// `node` with every mapping's keys in the order `emit` writes them (by code point).
fn sorted(node: &Node) -> Node {
    match node {
        Node::Seq(items) => Node::Seq(items.iter().map(sorted).collect()),
        Node::Map(map) => {
            let mut entries: Vec<(Node, Node)> = map.0.iter().map(|(k, v)| (k.clone(), sorted(v))).collect();
            entries.sort_by(|a, b| a.0.as_str().cmp(&b.0.as_str()));
            Node::Map(Mapping(entries))
        }
        other => other.clone(),
    }
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn yaml_reads_back_what_it_writes(node in yaml_node()) {
        let written = yaml::emit_with(&node, false);
        let read = yaml::parse(&written);
        prop_assert_eq!(read.as_ref(), Ok(&node), "written as:\n{}", written);
        let sorted_text = yaml::emit(&node);
        prop_assert_eq!(yaml::parse(&sorted_text), Ok(sorted(&node)), "written as:\n{}", sorted_text);
    }

    #[test]
    fn yaml_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = yaml::parse(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn yaml_never_panics_on_yaml_like_text(text in "[-:\\[\\]{},&*!|>'\"%@`#? \n\tab01.~<=]{0,300}") {
        let _ = yaml::parse(&text);
    }
}

// ----------------------------------------------------------------------------------------------
// Signatures

fn name() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z_]{1,10}", "[a-zA-Z0-9 \"\\\\/\u{0}-\u{1f}é中😀]{1,8}"]
}

fn base_type() -> impl Strategy<Value = DataType> {
    prop::sample::select(DataType::ALL.to_vec())
}

fn col_type() -> impl Strategy<Value = ColType> {
    let leaf = prop_oneof![base_type().prop_map(ColType::Base), Just(ColType::Any), Just(ColType::SparkVector)];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|t| ColType::Array(Box::new(t))),
            inner.clone().prop_map(|t| ColType::Map(Box::new(t))),
            prop::collection::btree_map(name(), (inner, any::<bool>()), 1..4).prop_map(|props| {
                ColType::Object(props.into_iter().map(|(name, (ty, required))| Property { name, ty, required }).collect())
            }),
        ]
    })
}

fn schema() -> impl Strategy<Value = Schema> {
    let columns = (any::<bool>(), prop::collection::vec((name(), col_type(), any::<bool>()), 1..5)).prop_map(|(named, cols)| {
        Schema::Columns(
            cols.into_iter()
                .map(|(name, ty, required)| ColSpec {
                    name: named.then_some(name),
                    ty,
                    // MLflow refuses optional unnamed columns.
                    required: Some(required || !named),
                })
                .collect(),
        )
    });
    let tensors = prop::collection::vec(
        (name(), prop::sample::select(TENSOR_DTYPES.to_vec()), prop::collection::vec(-1i64..5000, 0..4)),
        1..4,
    )
    .prop_map(|tensors| {
        Schema::Tensors(tensors.into_iter().map(|(name, dtype, shape)| TensorSpec { name: Some(name), dtype: dtype.to_owned(), shape }).collect())
    });
    prop_oneof![3 => columns, 1 => tensors]
}

fn param() -> impl Strategy<Value = ParamSpec> {
    let typed = prop_oneof![
        any::<i64>().prop_map(|v| (DataType::Long, serde_json::json!(v))),
        (-1e6f64..1e6).prop_map(|v| (DataType::Double, serde_json::json!(v))),
        "[a-z \n]{0,8}".prop_map(|v| (DataType::String, serde_json::json!(v))),
        any::<bool>().prop_map(|v| (DataType::Boolean, serde_json::json!(v))),
    ];
    (typed, any::<bool>(), any::<bool>()).prop_map(|((ty, value), list, null)| ParamSpec {
        name: String::new(),
        ty: ParamType::Base(ty),
        default: if null { serde_json::Value::Null } else if list { serde_json::json!([value]) } else { value },
        shape: list.then(|| vec![-1]),
    })
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn signatures_survive_mlflows_json_text(schema in schema()) {
        let text = schema.to_json_string();
        prop_assert_eq!(Schema::parse(&text, "inputs"), Ok(schema), "{}", text);
    }

    #[test]
    fn params_survive_mlflows_json_text(params in prop::collection::btree_map("[a-z_]{1,10}", param(), 1..5)) {
        // Names are unique (MLflow refuses duplicates): take them from the map's keys.
        let params: Vec<ParamSpec> = params.into_iter().map(|(name, spec)| ParamSpec { name, ..spec }).collect();
        let text = python_json(&params_to_json(&params));
        prop_assert_eq!(parse_params(&text), Ok(params), "{}", text);
    }

    #[test]
    fn signature_parsing_never_panics(text in "[\\[\\]{}\":, a-z0-9-]{0,200}") {
        let _ = Schema::parse(&text, "inputs");
        let _ = parse_params(&text);
    }
}

// ----------------------------------------------------------------------------------------------
// Streaming text

fn fixture_tokenizer() -> &'static PromptTokenizer {
    static TOKENIZER: std::sync::OnceLock<PromptTokenizer> = std::sync::OnceLock::new();
    TOKENIZER.get_or_init(|| {
        PromptTokenizer::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-phi3")).expect("the fixture's tokenizer")
    })
}

/// The fixture's tokenizer without one byte token: not SentencePiece-style, so the stream
/// decodes incrementally; and the `tokenizers` library's own decoder for it.
fn incremental_tokenizers() -> &'static (tempfile::TempDir, PromptTokenizer, tokenizers::Tokenizer) {
    static TOKENIZERS: std::sync::OnceLock<(tempfile::TempDir, PromptTokenizer, tokenizers::Tokenizer)> = std::sync::OnceLock::new();
    TOKENIZERS.get_or_init(|| {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-phi3");
        let dir = tempfile::tempdir().expect("scratch");
        let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture.join("tokenizer.json")).expect("read")).expect("JSON");
        json["model"]["vocab"].as_object_mut().expect("vocab").remove("<0x00>");
        std::fs::write(dir.path().join("tokenizer.json"), json.to_string()).expect("write");
        std::fs::copy(fixture.join("tokenizer_config.json"), dir.path().join("tokenizer_config.json")).expect("copy");
        let ours = PromptTokenizer::load(dir.path()).expect("load");
        let theirs = tokenizers::Tokenizer::from_file(dir.path().join("tokenizer.json")).expect("load");
        (dir, ours, theirs)
    })
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn streamed_chunks_add_up_to_the_text(text in "[a-zA-Z0-9 .,!?'\n\té中😀ß\u{301}]{0,60}") {
        let tokenizer = fixture_tokenizer();
        let ids = tokenizer.encode(&text).unwrap();
        let mut stream = tokenizer.stream();
        let mut chunks: Vec<String> = ids.iter().map(|&id| stream.push(id)).collect();
        chunks.push(stream.finish());
        // SentencePiece's leading `▁` is the one space the stream keeps in front.
        let expected = if text.is_empty() { String::new() } else { format!(" {text}") };
        prop_assert_eq!(chunks.concat(), expected);
    }

    #[test]
    fn incremental_chunks_equal_the_whole_decode(ids in prop::collection::vec(0u32..768, 0..40)) {
        let (_, ours, theirs) = incremental_tokenizers();
        let mut stream = ours.stream();
        let mut chunks: Vec<String> = ids.iter().map(|&id| stream.push(i64::from(id))).collect();
        chunks.push(stream.finish());
        let whole = theirs.decode(&ids, true).unwrap();
        prop_assert_eq!(chunks.concat(), whole);
    }
}

// ----------------------------------------------------------------------------------------------
// Names

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn sanitized_names_are_one_plain_component(text in "(\\PC|[/\\\\.:\u{0}-\u{1f} ]){0,120}") {
        let name = sanitize_file_name(&text);
        prop_assert!(!name.is_empty() && name.len() <= MAX_FILE_NAME, "{:?}", name);
        prop_assert!(!name.contains(['/', '\\']) && !name.chars().any(char::is_control), "{:?}", name);
        let components: Vec<Component> = Path::new(&name).components().collect();
        prop_assert_eq!(components, vec![Component::Normal(name.as_ref())]);
        prop_assert_eq!(sanitize_file_name(&name), name.clone(), "not idempotent");
    }

    #[test]
    fn zip_entries_and_inside_paths_never_leave_the_folder(parts in prop::collection::vec("(\\.\\.|\\.|[a-z]{1,4}|[a-z]*[\\\\:][a-z]*|/)", 0..6)) {
        let joined = parts.join("/");
        let base = Path::new("/base/folder");
        if let Ok(inside) = inside_path(&joined) {
            let full = base.join(&inside);
            prop_assert!(full.starts_with(base) && inside.components().all(|c| matches!(c, Component::Normal(_))), "{:?}", joined);
        }
        if let Ok(entry) = zip_entry_name(&PathBuf::from(&joined)) {
            prop_assert!(!entry.starts_with('/') && !entry.contains('\\') && !entry.contains(':'), "{:?}", entry);
            prop_assert!(entry.split('/').all(|part| !part.is_empty() && part != "." && part != ".."), "{:?}", entry);
        }
    }
}
