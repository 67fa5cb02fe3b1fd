"""onnxruntime-genai replaying a conversation on ONE generator, reusing its KV cache between requests.

Reads a JSON list of scenarios on stdin, prints a JSON list (one list of results per scenario):
  scenario: {"model": DIR, "max_length": N, "options": {search options},
             "requests": [{"ids": [int], "max_tokens": N | null}]}
  result:   {"reused": int, "generated_ids": [...], "finish_reason": "stop"|"length", "eos": int | null}

Each request is the whole prompt (the conversation so far, as ModelDesk sends it). The generator
keeps the ids whose keys/values it has computed (the prompt, and every generated token that was
fed back; a token cut by max_tokens never was). For the next request it keeps their longest common
prefix with the new prompt, at most up to the last non-pad prompt token (that row's logits choose
the first token), calls rewind_to(kept) and append_tokens(the rest), then generates as usual.
"""
import json
import sys

import onnxruntime_genai as og

from genai_step import step

models = {}


def load(path):
    if path not in models:
        model = og.Model(path)
        config = json.load(open(f"{path}/genai_config.json"))["model"]
        eos = config.get("eos_token_id", config.get("pad_token_id"))
        eos = set(eos if isinstance(eos, list) else [eos])
        pad = config.get("pad_token_id", min(eos) if eos else None)
        models[path] = (model, eos, pad)
    return models[path]


def common_prefix(a, b):
    count = 0
    for x, y in zip(a, b):
        if x != y:
            break
        count += 1
    return count


def replay(scenario):
    model, eos, pad = load(scenario["model"])
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=scenario["max_length"], **scenario.get("options", {}))
    generator = og.Generator(model, params)
    fed = []
    results = []
    for index, request in enumerate(scenario["requests"]):
        ids = request["ids"]
        row = max([i for i, token in enumerate(ids) if token != pad], default=0)
        reused = 0 if index == 0 else min(common_prefix(fed, ids), row)
        if index > 0:
            generator.rewind_to(reused)
        generator.append_tokens(ids[reused:])
        fed = list(ids)
        limit = scenario["max_length"]
        if request.get("max_tokens") is not None:
            limit = min(limit, len(ids) + request["max_tokens"])
        result = {"reused": reused, "generated_ids": [], "finish_reason": "length", "eos": None}
        while len(ids) + len(result["generated_ids"]) < limit:
            if result["generated_ids"]:
                fed.append(result["generated_ids"][-1])  # this step feeds the previous token
            if not step(generator, eos, result):
                break
        results.append(result)
    return results


print(json.dumps([replay(scenario) for scenario in json.load(sys.stdin)]))
