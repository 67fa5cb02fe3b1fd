#!/usr/bin/env python3
"""Builds a tiny Phi-3-shaped ONNX model folder for ModelDesk's self-contained tests.

Rerun (from the repository root) to regenerate the committed fixture:

    python3 -m pip install -r tools/requirements-fixtures.txt
    python3 tools/make_tiny_phi3.py tests/fixtures/tiny-phi3

and the two variants beside it (the features of the fp16 builds, and of Phi-3.5/Phi-4-mini):

    python3 tools/make_tiny_phi3.py tests/fixtures/tiny-phi3-fp16 --precision fp16
    python3 tools/make_tiny_phi3.py tests/fixtures/tiny-phi4mini --longrope --original-context 4096 \
        --partial-rotary 0.75 --tie-embeddings --context-length 8192 --heads 2 --kv-heads 1

A larger model for benchmarks (not committed; same graph, wider):

    python3 tools/make_tiny_phi3.py /tmp/bench-phi3 --hidden 768 --heads 8 --kv-heads 4 \
        --intermediate 2048 --layers 4 --vocab-size 32064

and Phi-3-mini's own layer shape with 4 of its 32 layers (about 0.7 GB; keep it out of git, under
a cache folder):

    python3 tools/make_tiny_phi3.py ~/.cache/modeldesk/bench/phi3-mini-4layers --shape phi3-mini

Random weights never copy from their context, which is what prompt-lookup decoding speeds up. With
`--attention-scale 0.003` attention barely reaches the residual stream, so each token all but decides
the next: a greedy reply that meets a token the context holds follows the chain that came after it
there, as a real model copies code it is asked to repeat. The committed copying fixture:

    python3 tools/make_tiny_phi3.py tests/fixtures/tiny-phi3-copying --attention-scale 0.003 --context-length 8192

At Phi-3-mini's width 0.003 is still enough for the context to tip close calls (a reply follows its
earlier copy for only a few tokens), so the benchmark counterpart switches attention's output off
altogether (`--attention-scale 0`; every kernel still runs, so a step costs what it does with
attention): each token then decides the next exactly, and a reply whose start the context already
holds copies it to the end, the best case for prompt lookup:

    python3 tools/make_tiny_phi3.py ~/.cache/modeldesk/bench/phi3-mini-4layers-chain --shape phi3-mini \
        --attention-scale 0

What it writes is a model folder in the published Phi-3 ONNX format (`genai_config.json`,
`model.onnx` + `model.onnx.data`, `tokenizer.json`, `tokenizer_config.json` with a chat template),
with the operators and I/O of Microsoft's `cpu-int4-rtn-block-32-acc-level-4` release:

* `Gather` embedding, `SimplifiedLayerNormalization` / `com.microsoft.SkipSimplifiedLayerNormalization`
  (RMSNorm with residual), a packed QKV projection feeding `com.microsoft.GroupQueryAttention` with
  fused rotary (`do_rotary=1`, cos/sin caches), SiLU-gated MLP, and every projection (QKV, o, gate,
  up, down, lm_head) as `com.microsoft.MatMulNBits` (4 bits, block 32, accuracy level 4, symmetric),
  quantized by ONNX Runtime's own `MatMulNBitsQuantizer` (`--accuracy-level 1` keeps the activations
  in float32: then a run of several tokens computes each row as one-token steps do, to 1e-5);
* inputs `input_ids`, `attention_mask`, `past_key_values.N.key/value` (no `position_ids`);
  outputs `logits`, `present.N.key/value`; the mask is reduced to GQA's `seqlens_k` and
  `total_sequence_length` inside the graph.

The weights are random (seeded, so the output is deterministic): its text is gibberish by design;
token ids are what the tests compare. The tokenizer is a byte-fallback BPE trained here on text
written for this script, laid out like Phi-3's (<unk>, <s>, </s>, 256 byte tokens, merges, then the
Phi-3 role tokens), so `eos_token_id`, `pad_token_id` and `vocab_size` are this tokenizer's own.
"""
import argparse
import json
import logging
import os
import shutil
import string
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

ROLE_TOKENS = [
    "<|endoftext|>", "<|assistant|>", "<|placeholder1|>", "<|placeholder2|>", "<|placeholder3|>",
    "<|placeholder4|>", "<|system|>", "<|end|>", "<|placeholder5|>", "<|placeholder6|>", "<|user|>",
]
# The role tokens swallow the newline that follows them (the newer Phi-3 tokenizer revision does so).
RSTRIP_TOKENS = {t for t in ROLE_TOKENS if t != "<|endoftext|>"}

# How onnxruntime-extensions splits text for Llama-style tokenizers (see train_tokenizer).
GENAI_LLAMA_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] in ['system', 'user', 'assistant'] %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)

# Text written for this fixture: a little prose, dialogue, code and non-ASCII so that the merges
# cover common English pieces and the byte fallback is exercised by everything else.
CORPUS = """
ModelDesk opens a model folder, reads its configuration and lets you talk to the model.
The quick brown fox jumps over the lazy dog while the small model counts its tokens.
A user asks a question, the assistant answers, and the system prompt sets the tone.
What is the capital of Spain? The capital of Spain is Madrid. What is two plus two? It is four.
Hello there! How are you today? I am fine, thank you. Tell me a story about a river and a boat.
Once upon a time a boat sailed down a long river; the sailors sang and the wind was kind to them.
Write a function that adds two numbers. def add(a, b): return a + b
for i in range(10): print(i * i)   # squares
fn main() { println!("hello, world"); }
The weather is sunny in the morning and rainy in the evening. Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100.
Tokens per second, time to first token, prompt tokens, completion tokens and total tokens are shown.
Café, naïve, déjà vu, über, smörgåsbord. 東京 and 北京 are cities. Emoji: 😀 🚀 ✨.
Tabs\tand\tnewlines\nare part of text too, and so are "quotes", 'apostrophes' and (parentheses).
""".strip()


def train_tokenizer(out_dir, merges_budget, context_length):
    """Trains the BPE, then lays its vocabulary out like Phi-3's and writes the tokenizer files."""
    # onnxruntime-extensions cuts Llama-style text into segments before BPE (GENAI_LLAMA_SPLIT),
    # while `tokenizers` runs BPE over the whole text. Merges are therefore learned only inside
    # letter runs (with at most a leading "▁"), which both encoders keep whole: no merge can then
    # join pieces across a boundary genai respects, and the two produce the same ids. Digits,
    # punctuation and whitespace stay single-character tokens, as in Phi-3's vocabulary.
    splitter = pre_tokenizers.Split(Regex(GENAI_LLAMA_SPLIT), behavior="isolated")
    words = []
    for line in CORPUS.splitlines():
        for segment, _ in splitter.pre_tokenize_str(" " + line):
            letters = segment[1:] if segment.startswith(" ") else segment
            if letters.isalpha():
                words.append(segment.replace(" ", "▁"))
    trainer_tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    trainer_tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    alphabet = sorted(set(string.digits + string.punctuation + "▁"))
    trainer = trainers.BpeTrainer(vocab_size=merges_budget, min_frequency=2, show_progress=False,
                                  special_tokens=[], initial_alphabet=alphabet, limit_alphabet=300)
    trainer_tokenizer.train_from_iterator([" ".join(words)] * 3, trainer)
    trained = json.loads(trainer_tokenizer.to_str())["model"]

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for byte in range(256):
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    for piece, _ in sorted(trained["vocab"].items(), key=lambda item: item[1]):
        if piece not in vocab:
            vocab[piece] = len(vocab)
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in trained["merges"]]

    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tokenizer.pre_tokenizer = None
    tokenizer.decoder = decoders.Sequence([
        decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0),
    ])
    tokenizer.post_processor = processors.TemplateProcessing(single="$A", pair="$A $B", special_tokens=[])
    from tokenizers import AddedToken
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ["<unk>", "<s>"]])
    tokenizer.add_tokens([AddedToken("</s>", special=False, normalized=False)])
    tokenizer.add_special_tokens([
        AddedToken(t, special=True, normalized=False, rstrip=t in RSTRIP_TOKENS) for t in ROLE_TOKENS
    ])
    tokenizer.save(os.path.join(out_dir, "tokenizer.json"))

    ids = {t: tokenizer.token_to_id(t) for t in ROLE_TOKENS}
    added = {}
    for token in ["<unk>", "<s>", "</s>"] + ROLE_TOKENS:
        token_id = tokenizer.token_to_id(token)
        added[str(token_id)] = {
            "content": token, "lstrip": False, "normalized": False,
            "rstrip": token in RSTRIP_TOKENS, "single_word": False, "special": token != "</s>",
        }
    config = {
        "add_bos_token": False, "add_eos_token": False, "added_tokens_decoder": added,
        "bos_token": "<s>", "chat_template": CHAT_TEMPLATE, "clean_up_tokenization_spaces": False,
        "eos_token": "<|endoftext|>", "legacy": False, "model_max_length": context_length, "pad_token": "<|endoftext|>",
        "padding_side": "left", "sp_model_kwargs": {}, "tokenizer_class": "LlamaTokenizer", "unk_token": "<unk>",
        "use_default_system_prompt": False,
    }
    return tokenizer.get_vocab_size(with_added_tokens=True), ids, config


def rotary_table(rows, rotary_dim, theta, factors=None, scale=1.0):
    """cos and sin of position × frequency for the rotated half-dimensions (LongRoPE divides each
    frequency by its factor and scales the table)."""
    positions = np.arange(rows, dtype=np.float64)[:, None]
    inv_freq = 1.0 / (theta ** (np.arange(0, rotary_dim, 2, dtype=np.float64) / rotary_dim))
    if factors is not None:
        inv_freq = inv_freq / np.asarray(factors, dtype=np.float64)
    angles = positions * inv_freq[None, :]
    return (np.cos(angles) * scale).astype(np.float32), (np.sin(angles) * scale).astype(np.float32)


def rotary_caches(args, head_size, nodes, initializers):
    """The cos/sin caches GroupQueryAttention reads. Partial rotary (Phi-4-mini) makes them narrower
    than half a head, so only the first columns of each head rotate. LongRoPE (Phi-3-mini-128k,
    Phi-3.5-mini, Phi-4-mini) keeps two tables, short factors up to --original-context rows and long
    factors up to the context, both scaled by sqrt(1 + ln(context / original) / ln(original)), and an
    `If` on the attention mask's length picks one per run, as onnxruntime-genai's builder emits it."""
    rotary_dim = int(head_size * args.partial_rotary) // 2 * 2
    if not args.longrope:
        cos, sin = rotary_table(args.context_length, rotary_dim, args.rope_theta)
        initializers.append(numpy_helper.from_array(cos, "cos_cache"))
        initializers.append(numpy_helper.from_array(sin, "sin_cache"))
        return
    original = args.original_context
    scale = float(np.sqrt(1 + np.log(args.context_length / original) / np.log(original)))
    half = rotary_dim // 2
    short = rotary_table(original, rotary_dim, args.rope_theta, np.ones(half), scale)
    long = rotary_table(args.context_length, rotary_dim, args.rope_theta, np.linspace(1.0, 8.0, half), scale)

    def branch(name, tables):
        constants = [helper.make_node("Constant", [], [f"{kind}_cache_{name}"],
                                      value=numpy_helper.from_array(table, f"{kind}_cache_{name}"))
                     for kind, table in zip(("cos", "sin"), tables)]
        outputs = [helper.make_tensor_value_info(f"{kind}_cache_{name}", TensorProto.FLOAT, None) for kind in ("cos", "sin")]
        return helper.make_graph(constants, f"rope_{name}", [], outputs)

    nodes += [
        helper.make_node("Constant", [], ["original_context"], value=helper.make_tensor("original_context", TensorProto.INT64, [], [original])),
        helper.make_node("Greater", ["total_len_64", "original_context"], ["use_long_rope"]),
        helper.make_node("If", ["use_long_rope"], ["cos_cache", "sin_cache"],
                         then_branch=branch("large", long), else_branch=branch("small", short)),
    ]


def tie_embeddings(model):
    """Phi-4-mini reads its embeddings from the lm_head's 4-bit matrix: the Gather over the float
    embedding becomes a GatherBlockQuantized over the quantized lm_head (the float table goes)."""
    graph = model.graph
    q4 = next(i for i in graph.initializer if i.name.startswith("lm_head") and i.name.endswith("_Q4"))
    scales = next(i for i in graph.initializer if i.name.startswith("lm_head") and i.name.endswith("_scales"))
    rows = q4.dims[0]
    packed = q4.dims[1] * q4.dims[2]
    gather = next(n for n in graph.node if n.op_type == "Gather" and n.input[0] == "model.embed_tokens.weight")
    position = list(graph.node).index(gather)
    graph.node.remove(gather)
    graph.node.insert(position, helper.make_node(
        "GatherBlockQuantized", ["lm_head_packed", "input_ids", scales.name], list(gather.output),
        domain="com.microsoft", bits=4, block_size=32, gather_axis=0, quantize_axis=1))
    graph.node.insert(position, helper.make_node("Reshape", [q4.name, "lm_head_packed_shape"], ["lm_head_packed"]))
    graph.node.insert(position, helper.make_node(
        "Constant", [], ["lm_head_packed_shape"], value=helper.make_tensor("lm_head_packed_shape", TensorProto.INT64, [2], [rows, packed])))
    embed = next(i for i in graph.initializer if i.name == "model.embed_tokens.weight")
    graph.initializer.remove(embed)


def to_float16(model):
    """The fp16 (CUDA/DirectML) builds: float16 weights, activations, KV cache and logits, and no
    quantization."""
    def convert(tensor):
        if tensor.data_type == TensorProto.FLOAT:
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16), tensor.name))

    def walk(graph):
        for tensor in graph.initializer:
            convert(tensor)
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.TENSOR:
                    convert(attribute.t)
                elif attribute.type == onnx.AttributeProto.GRAPH:
                    walk(attribute.g)
        for value in list(graph.input) + list(graph.output):
            if value.type.tensor_type.elem_type == TensorProto.FLOAT:
                value.type.tensor_type.elem_type = TensorProto.FLOAT16

    walk(model.graph)


def build_graph(args, vocab_size, rng):
    hidden, heads, kv_heads, layers = args.hidden, args.heads, args.kv_heads, args.layers
    head_size = hidden // heads
    if head_size % 16 or hidden % 32 or args.intermediate % 32 or kv_heads > heads or heads % kv_heads:
        raise SystemExit("need head_size % 16 == 0, hidden and intermediate % 32 == 0, and 0 < kv_heads <= heads")
    initializers, nodes = [], []

    def weight(name, shape, scale):
        initializers.append(numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    def norm_weight(name):
        initializers.append(numpy_helper.from_array((1.0 + 0.1 * rng.standard_normal(hidden)).astype(np.float32), name))
        return name

    def matmul(prefix, x, k, n, out=None, scale=1.0):
        out = out or f"/model/{prefix}/MatMul/output_0"
        w = weight(f"{prefix.replace('/', '.')}.MatMul.weight", [k, n], scale * args.weight_scale / np.sqrt(k / 64))
        nodes.append(helper.make_node("MatMul", [x, w], [out], name=f"/model/{prefix}/MatMul"))
        return out

    # Attention-mask reformatting for GroupQueryAttention, as the published graphs do it.
    nodes += [
        helper.make_node("Constant", [], ["one_1d"], value=helper.make_tensor("one_1d", TensorProto.INT64, [1], [1])),
        helper.make_node("Constant", [], ["one"], value=helper.make_tensor("one", TensorProto.INT64, [], [1])),
        helper.make_node("ReduceSum", ["attention_mask", "one_1d"], ["mask_sum"], keepdims=0),
        helper.make_node("Sub", ["mask_sum", "one_1d"], ["seqlens_k_64"]),
        helper.make_node("Cast", ["seqlens_k_64"], ["seqlens_k"], to=TensorProto.INT32),
        helper.make_node("Shape", ["attention_mask"], ["mask_shape"]),
        helper.make_node("Gather", ["mask_shape", "one"], ["total_len_64"], axis=0),
        helper.make_node("Cast", ["total_len_64"], ["total_sequence_length"], to=TensorProto.INT32),
    ]
    rotary_caches(args, head_size, nodes, initializers)

    embed = weight("model.embed_tokens.weight", [vocab_size, hidden], args.weight_scale)
    nodes.append(helper.make_node("Gather", [embed, "input_ids"], ["embeddings"]))
    nodes.append(helper.make_node("SimplifiedLayerNormalization", ["embeddings", norm_weight("model.layers.0.input_layernorm.weight")],
                                  ["layer0_input_norm"], epsilon=1e-5, axis=-1, stash_type=1))
    normed, residual = "layer0_input_norm", "embeddings"
    for layer in range(layers):
        qkv = matmul(f"layers.{layer}/attn/qkv_proj", normed, hidden, (heads + 2 * kv_heads) * head_size)
        attention = f"layer{layer}_attention"
        nodes.append(helper.make_node(
            "GroupQueryAttention",
            [qkv, "", "", f"past_key_values.{layer}.key", f"past_key_values.{layer}.value",
             "seqlens_k", "total_sequence_length", "cos_cache", "sin_cache"],
            [attention, f"present.{layer}.key", f"present.{layer}.value"],
            domain="com.microsoft", num_heads=heads, kv_num_heads=kv_heads, scale=float(1 / np.sqrt(head_size)),
            local_window_size=-1, softcap=0.0, do_rotary=1, rotary_interleaved=0))
        projected = matmul(f"layers.{layer}/attn/o_proj", attention, hidden, hidden, scale=args.attention_scale)
        post_norm, post_sum = f"layer{layer}_post_attention_norm", f"layer{layer}_post_attention_sum"
        nodes.append(helper.make_node("SkipSimplifiedLayerNormalization",
                                      [residual, projected, norm_weight(f"model.layers.{layer}.post_attention_layernorm.weight")],
                                      [post_norm, "", "", post_sum], domain="com.microsoft", epsilon=1e-5))
        gate = matmul(f"layers.{layer}/mlp/gate_proj", post_norm, hidden, args.intermediate)
        up = matmul(f"layers.{layer}/mlp/up_proj", post_norm, hidden, args.intermediate)
        nodes += [
            helper.make_node("Sigmoid", [gate], [f"layer{layer}_gate_sigmoid"]),
            helper.make_node("Mul", [gate, f"layer{layer}_gate_sigmoid"], [f"layer{layer}_silu"]),
            helper.make_node("Mul", [f"layer{layer}_silu", up], [f"layer{layer}_mlp_hidden"]),
        ]
        down = matmul(f"layers.{layer}/mlp/down_proj", f"layer{layer}_mlp_hidden", args.intermediate, hidden)
        last = layer == layers - 1
        norm_name = "model.norm.weight" if last else f"model.layers.{layer + 1}.input_layernorm.weight"
        normed, residual = f"layer{layer + 1}_input_norm", f"layer{layer + 1}_residual"
        nodes.append(helper.make_node("SkipSimplifiedLayerNormalization", [post_sum, down, norm_weight(norm_name)],
                                      [normed, "", "", residual] if not last else [normed],
                                      domain="com.microsoft", epsilon=1e-5))
    matmul("lm_head", normed, hidden, vocab_size, out="logits")

    kv_shape = ["batch_size", kv_heads, "past_sequence_length", head_size]
    present_shape = ["batch_size", kv_heads, "total_sequence_length", head_size]
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch_size", "total_sequence_length"]),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch_size", "sequence_length", vocab_size])]
    for layer in range(layers):
        for kind in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(f"past_key_values.{layer}.{kind}", TensorProto.FLOAT, kv_shape))
            outputs.append(helper.make_tensor_value_info(f"present.{layer}.{kind}", TensorProto.FLOAT, present_shape))
    graph = helper.make_graph(nodes, "tiny-phi3", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 10
    return model, head_size


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--intermediate", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--context-length", type=int, default=2048)
    parser.add_argument("--vocab-size", type=int, default=0, help="logits width; 0 = the tokenizer's size rounded up to 64")
    parser.add_argument("--merges", type=int, default=700, help="size of the trained BPE vocabulary before byte tokens")
    parser.add_argument("--weight-scale", type=float, default=0.2)
    parser.add_argument("--rope-theta", type=float, default=10000.0)
    parser.add_argument("--seed", type=int, default=20261124)
    parser.add_argument("--shape", choices=["phi3-mini"], help="Phi-3-mini's layer shape (hidden 3072, 32 heads and KV heads, "
                        "intermediate 8192, vocab 32064, context 4096) with 4 of its 32 layers, for benchmarks")
    parser.add_argument("--precision", choices=["int4", "fp16"], default="int4",
                        help="int4 MatMulNBits weights with float32 I/O (CPU builds), or float16 everything (CUDA/DirectML builds)")
    parser.add_argument("--longrope", action="store_true", help="two rotary tables switched by length (Phi-3.5/Phi-4-mini)")
    parser.add_argument("--original-context", type=int, default=64, help="where --longrope switches tables")
    parser.add_argument("--partial-rotary", type=float, default=1.0, help="fraction of each head that rotates (Phi-4-mini: 0.75)")
    parser.add_argument("--tie-embeddings", action="store_true", help="embeddings read from the int4 lm_head (Phi-4-mini)")
    parser.add_argument("--attention-scale", type=float, default=1.0,
                        help="scales the attention output projection; a small value (0.003) makes each token all but decide the "
                        "next, so greedy replies follow chains the context already holds (a copying model for prompt lookup); "
                        "0 makes it exact")
    parser.add_argument("--accuracy-level", type=int, choices=[0, 1, 2, 3, 4], default=4,
                        help="MatMulNBits' accuracy_level: 4 (the releases) quantises activations to int8, with other kernels "
                        "for one row than for several; 1 computes in float32")
    args = parser.parse_args()
    if args.shape == "phi3-mini":
        args.hidden, args.heads, args.kv_heads, args.intermediate = 3072, 32, 32, 8192
        args.layers, args.vocab_size, args.context_length = 4, 32064, 4096
    if args.tie_embeddings and args.precision != "int4":
        raise SystemExit("--tie-embeddings reads the int4 lm_head; it needs --precision int4")
    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)

    work = tempfile.mkdtemp(prefix="tiny-phi3-")
    try:
        tokenizer_size, ids, tokenizer_config = train_tokenizer(work, args.merges, args.context_length)
        vocab_size = args.vocab_size or -(-tokenizer_size // 64) * 64
        if vocab_size < tokenizer_size:
            raise SystemExit(f"--vocab-size {vocab_size} is smaller than the tokenizer ({tokenizer_size})")
        model, head_size = build_graph(args, vocab_size, np.random.default_rng(args.seed))
        if args.precision == "fp16":
            to_float16(model)
            quantized = model
        else:
            quantizer = MatMulNBitsQuantizer(model, bits=4, block_size=32, is_symmetric=True, accuracy_level=args.accuracy_level)
            quantizer.process()
            quantized = quantizer.model.model
            if args.tie_embeddings:
                tie_embeddings(quantized)
        onnx.save_model(quantized, os.path.join(work, "model.onnx"), save_as_external_data=True,
                        all_tensors_to_one_file=True, location="model.onnx.data", size_threshold=0)
        with open(os.path.join(work, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(tokenizer_config, f, indent=2, ensure_ascii=False)
            f.write("\n")
        eos = [ids["<|endoftext|>"], ids["<|assistant|>"], ids["<|end|>"]]
        genai_config = {
            "model": {
                "bos_token_id": 1,
                "context_length": args.context_length,
                "decoder": {
                    "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                    "filename": "model.onnx",
                    "head_size": head_size,
                    "hidden_size": args.hidden,
                    "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask",
                               "past_key_names": "past_key_values.%d.key", "past_value_names": "past_key_values.%d.value"},
                    "outputs": {"logits": "logits", "present_key_names": "present.%d.key",
                                "present_value_names": "present.%d.value"},
                    "num_attention_heads": args.heads,
                    "num_hidden_layers": args.layers,
                    "num_key_value_heads": args.kv_heads,
                },
                "eos_token_id": eos,
                "pad_token_id": ids["<|endoftext|>"],
                "type": "phi3",
                "vocab_size": vocab_size,
            },
            "search": {
                "diversity_penalty": 0.0, "do_sample": False, "early_stopping": True, "length_penalty": 1.0,
                "max_length": args.context_length, "min_length": 0, "no_repeat_ngram_size": 0, "num_beams": 1,
                "num_return_sequences": 1, "past_present_share_buffer": True, "repetition_penalty": 1.0,
                "temperature": 1.0, "top_k": 50, "top_p": 1.0,
            },
        }
        with open(os.path.join(work, "genai_config.json"), "w", encoding="utf-8") as f:
            json.dump(genai_config, f, indent=4)
            f.write("\n")
        if os.path.exists(args.out_dir):
            shutil.rmtree(args.out_dir)
        shutil.copytree(work, args.out_dir)
        os.chmod(args.out_dir, 0o755)
        for name in os.listdir(args.out_dir):
            os.chmod(os.path.join(args.out_dir, name), 0o644)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total = sum(os.path.getsize(os.path.join(args.out_dir, f)) for f in os.listdir(args.out_dir))
    print(f"wrote {args.out_dir}: tokenizer {tokenizer_size} ids, logits {vocab_size}, {args.layers} layers, "
          f"{args.heads} heads / {args.kv_heads} KV heads, {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
