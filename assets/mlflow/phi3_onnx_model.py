"""ModelDesk's MLflow wrapper for a Phi-3 ONNX folder: generates with onnxruntime-genai.

Packaged by ModelDesk as an MLflow "models from code" pyfunc model. `load_context` builds the
model, tokenizer and search options from `model_config`; `predict` generates one reply per request
row. Text is built with onnxruntime-genai's TokenizerStream, token by token, exactly as ModelDesk
streams it, so both give the same text for the same token ids.

model_config keys: task ("prompt" or "chat"), model_name, and the search options max_length,
temperature, top_p, top_k, do_sample, repetition_penalty (taken from genai_config.json).

Requests come in every shape MLflow's pyfunc and scoring server hand over: a string (prompt
packages), a dict of scalars (one request), a dict of lists (one request per item), a pandas
DataFrame or a list of dicts (one request per row). Generation options (max_tokens, max_length,
temperature, top_p, top_k, do_sample, repetition_penalty, seed) come as predict params or as keys of a
request row; a row's own value wins. `max_tokens` limits the completion alone.
"""
import json
import math
import os
import time
import uuid

import mlflow
from mlflow.pyfunc import PythonModel

SEARCH_KEYS = ("max_length", "temperature", "top_p", "top_k", "do_sample", "repetition_penalty")
INTEGER_OPTIONS = ("max_tokens", "max_length", "top_k", "seed")
FLOAT_OPTIONS = ("temperature", "top_p", "repetition_penalty")


def _plain(value):
    """numpy and pandas values as plain Python values; a missing cell (NaN, None) as None."""
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _holds_many(task, value):
    """Whether a row's prompt or messages value is a column of several requests."""
    if task == "chat":
        # One conversation is a list of message dicts; a column is a list of conversations.
        return isinstance(value, list) and bool(value) and all(isinstance(v, list) for v in value)
    return isinstance(value, list)


def _expand(task, record):
    """One dict as the request rows it stands for: scalars are one row, lists one row per item
    (an option given as a list of the same length is per row, anything else applies to all)."""
    key = "messages" if task == "chat" else "prompt"
    if key not in record:
        raise ValueError(f"a request needs `{key}`; got the keys {sorted(record)}")
    value = record[key]
    if not _holds_many(task, value):
        return [record]
    count = len(value)
    rows = []
    for index in range(count):
        row = {}
        for name, item in record.items():
            per_row = name == key or (isinstance(item, list) and len(item) == count)
            row[name] = item[index] if per_row else item
        rows.append(row)
    return rows


def _rows(task, model_input):
    """The request rows as dicts, whatever shape MLflow hands over."""
    if hasattr(model_input, "to_dict"):  # pandas DataFrame: one request per row
        model_input = model_input.to_dict(orient="records")
    model_input = _plain(model_input)
    if isinstance(model_input, str):
        if task == "chat":
            return [{"messages": [{"role": "user", "content": model_input}]}]
        return [{"prompt": model_input}]
    if isinstance(model_input, dict):
        return _expand(task, model_input)
    if isinstance(model_input, list):
        if task == "chat" and model_input and all(isinstance(m, dict) and "role" in m for m in model_input):
            return [{"messages": model_input}]  # a bare conversation
        rows = []
        for item in model_input:
            if isinstance(item, dict):
                rows.extend(_expand(task, item))
            elif task == "prompt" and isinstance(item, str):
                rows.append({"prompt": item})
            else:
                raise ValueError(f"cannot read a request from {type(item).__name__} {item!r:.80}")
        return rows
    raise ValueError(f"cannot read requests from {type(model_input).__name__}")


def _options(params, row):
    """Generation options: predict params, then the row's own values; None means unset."""
    options = {k: v for k, v in (params or {}).items() if v is not None}
    options.update({k: v for k, v in row.items() if k not in ("prompt", "messages") and v is not None})
    for name in INTEGER_OPTIONS:
        if name in options:
            options[name] = int(options[name])
    for name in FLOAT_OPTIONS:
        if name in options:
            options[name] = float(options[name])
    if "do_sample" in options:
        options["do_sample"] = bool(options["do_sample"])
    return options


class Phi3OnnxModel(PythonModel):
    def load_context(self, context):
        import onnxruntime_genai as og

        config = dict(context.model_config or {})
        self.og = og
        self.task = config.get("task", "prompt")
        self.model_name = config.get("model_name", "phi3")
        self.search = {k: config[k] for k in SEARCH_KEYS if config.get(k) is not None}
        model_dir = context.artifacts["phi3"]
        self.model = og.Model(model_dir)
        self.tokenizer = og.Tokenizer(self.model)
        with open(os.path.join(model_dir, "genai_config.json"), encoding="utf-8") as f:
            genai = json.load(f)["model"]
        eos = genai.get("eos_token_id", genai.get("pad_token_id"))
        self.eos = set(eos if isinstance(eos, list) else [eos])
        self.context_length = genai["context_length"]

    def _generate(self, prompt, options):
        if not isinstance(prompt, str):
            raise ValueError(f"a prompt must be text, got {type(prompt).__name__}")
        ids = [int(i) for i in self.tokenizer.encode(prompt)]
        search = dict(self.search)
        search.update({k: v for k, v in options.items() if k in SEARCH_KEYS})
        if options.get("seed") is not None:
            search["random_seed"] = options["seed"]  # sampling with a seed is repeatable
        limit = int(search.get("max_length") or self.context_length)
        if options.get("max_tokens") is not None:
            limit = min(limit, len(ids) + options["max_tokens"])
        search["max_length"] = limit
        text, count, finish = [], 0, "length"
        if len(ids) < limit:
            params = self.og.GeneratorParams(self.model)
            params.set_search_options(**search)
            generator = self.og.Generator(self.model, params)
            generator.append_tokens(ids)
            stream = self.tokenizer.create_stream()
            while not generator.is_done():
                generator.generate_next_token()
                token = int(generator.get_next_tokens()[0])
                if token in self.eos:
                    finish = "stop"
                    break
                count += 1
                text.append(stream.decode(token))
        return "".join(text), len(ids), count, finish

    def _chat(self, row, options):
        messages = row["messages"]
        if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m for m in messages):
            raise ValueError("`messages` must be a list of {role, content} objects")
        messages = [{"role": m["role"], "content": m.get("content") or ""} for m in messages]
        prompt = self.tokenizer.apply_chat_template(json.dumps(messages), add_generation_prompt=True)
        text, prompt_tokens, completion_tokens, finish = self._generate(prompt, options)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def predict(self, context, model_input, params=None):
        params = _plain(params or {})
        replies = []
        for row in _rows(self.task, model_input):
            options = _options(params, row)
            if self.task == "chat":
                replies.append(self._chat(row, options))
            else:
                replies.append(self._generate(row["prompt"], options)[0])
        return replies


mlflow.models.set_model(Phi3OnnxModel())
