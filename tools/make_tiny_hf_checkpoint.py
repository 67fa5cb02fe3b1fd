#!/usr/bin/env python3
"""Writes a tiny random-weight Phi-3 checkpoint in Hugging Face format, for the checkpoint tests.

    python3 -m pip install -r tests/python/requirements-torch.txt   # torch, transformers
    python3 tools/make_tiny_hf_checkpoint.py tests/fixtures/tiny-phi3-hf

The folder has what a published checkpoint such as microsoft/Phi-3-mini-4k-instruct has, only
small (about 350 kB): `config.json` (`Phi3ForCausalLM`, bfloat16 like Phi-3-mini), the weights as
sharded `*.safetensors` with `model.safetensors.index.json`, `generation_config.json` with
Phi-3's three end tokens, the tokenizer files with the chat template in `tokenizer_config.json`
(the tokenizer of the committed `tests/fixtures/tiny-phi3`), a `LICENSE` and a `README.md` model
card with front matter. Its text is gibberish by design; token ids are what the tests compare.

Seeded, so the output is the same bit for bit for the pinned torch and transformers
(`tests/checkpoint_python.rs` checks the committed copy against a fresh run).
"""
import argparse
import json
import os
import shutil

import torch
from transformers import GenerationConfig, Phi3Config, Phi3ForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENIZER = os.path.join(HERE, "..", "tests", "fixtures", "tiny-phi3")

LICENSE = """Copyright (c) ModelDesk developers. Random weights made for tests; MIT License.
"""

MODEL_CARD = """---
license: mit
language:
- en
pipeline_tag: text-generation
tags:
- test
---
# tiny-phi3-hf

A Phi-3-shaped model with random weights for ModelDesk's tests. Its replies are gibberish.
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="folder to write (must not exist)")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--intermediate", type=int, default=128)
    parser.add_argument("--vocab-size", type=int, default=768, help="at least the tokenizer's 718 tokens")
    parser.add_argument("--context", type=int, default=2048)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--shard-size", default="100KB", help="max_shard_size of save_pretrained")
    parser.add_argument("--std", type=float, default=0.2, help="standard deviation of the 2-D weights")
    args = parser.parse_args()
    if os.path.exists(args.out):
        parser.error(f"{args.out} exists")

    tokenizer_config = json.load(open(os.path.join(TOKENIZER, "tokenizer_config.json")))
    by_name = {entry["content"]: int(number) for number, entry in tokenizer_config["added_tokens_decoder"].items()}
    # Phi-3's generation stops at <|endoftext|>, <|assistant|> and <|end|>; pad is <|endoftext|>.
    eos = [by_name["<|endoftext|>"], by_name["<|assistant|>"], by_name["<|end|>"]]
    assert args.vocab_size > max(by_name.values()), "the vocabulary must hold every tokenizer id"

    torch.manual_seed(args.seed)
    config = Phi3Config(
        vocab_size=args.vocab_size,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        max_position_embeddings=args.context,
        original_max_position_embeddings=args.context,
        sliding_window=None,
        bos_token_id=by_name["<s>"],
        eos_token_id=eos[0],
        pad_token_id=eos[0],
        tie_word_embeddings=False,
    )
    model = Phi3ForCausalLM(config)
    with torch.no_grad():
        for _, parameter in model.named_parameters():
            if parameter.dim() == 2:
                parameter.normal_(0, args.std)
    model = model.to(getattr(torch, args.dtype))
    model.save_pretrained(args.out, max_shard_size=args.shard_size)
    GenerationConfig(bos_token_id=by_name["<s>"], eos_token_id=eos, pad_token_id=eos[0]).save_pretrained(args.out)
    # The tokenizer files as a repository publishes them (not re-saved by this transformers).
    for name in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(os.path.join(TOKENIZER, name), os.path.join(args.out, name))
    with open(os.path.join(args.out, "LICENSE"), "w") as file:
        file.write(LICENSE)
    with open(os.path.join(args.out, "README.md"), "w") as file:
        file.write(MODEL_CARD)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
