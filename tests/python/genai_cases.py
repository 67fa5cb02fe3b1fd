"""Runs many onnxruntime-genai reference cases in one process (models are loaded once each).

Reads a JSON list of cases on stdin, prints a JSON list of results:
  case:   {"model": DIR, "prompt": TEXT | null, "messages": [{role, content}] | null,
           "ids": [int] | null, "max_length": N, "options": {search options}}
  result: {"prompt_ids": [...], "generated_ids": [...], "finish_reason": "stop"|"length",
           "eos": int | null, "error": null | "message"}
The loop is genai's: append_tokens once, then generate_next_token until is_done, stopping at EOS.
"""
import json
import sys

import onnxruntime_genai as og

from genai_step import step

models = {}


def load(path):
    if path not in models:
        model = og.Model(path)
        config = json.load(open(f"{path}/genai_config.json"))
        eos = config["model"].get("eos_token_id", config["model"].get("pad_token_id"))
        models[path] = (model, og.Tokenizer(model), set(eos if isinstance(eos, list) else [eos]))
    return models[path]


def run(case):
    model, tokenizer, eos = load(case["model"])
    if case.get("ids") is not None:
        ids = case["ids"]
    elif case.get("messages") is not None:
        text = tokenizer.apply_chat_template(json.dumps(case["messages"]), add_generation_prompt=True)
        ids = [int(x) for x in tokenizer.encode(text)]
    else:
        ids = [int(x) for x in tokenizer.encode(case["prompt"])]
    result = {"prompt_ids": ids, "generated_ids": [], "finish_reason": "length", "eos": None, "error": None}
    try:
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=case["max_length"], **case.get("options", {}))
        generator = og.Generator(model, params)
        generator.append_tokens(ids)
        while not generator.is_done() and step(generator, eos, result):
            pass
    except Exception as error:  # genai raises for limits; the caller compares
        result["error"] = str(error)
    return result


print(json.dumps([run(case) for case in json.load(sys.stdin)]))
