"""ModelDesk's MLflow wrapper for a Phi-3 ONNX folder: generates with onnxruntime-genai.

Packaged by ModelDesk as an MLflow "models from code" pyfunc model. `load_context` builds the
model, tokenizer and search options from `model_config`; `predict` generates one reply per input
row. Text is built with onnxruntime-genai's TokenizerStream, token by token, exactly as
ModelDesk streams it, so both give the same text for the same token ids.

model_config keys: task ("prompt" or "chat"), model_name, and the search options max_length,
temperature, top_p, top_k, do_sample, repetition_penalty (taken from genai_config.json).
A request may override them (chat: the optional input columns; prompt: predict params), and
`max_tokens` limits the completion alone.
"""
import json
import os
import time
import uuid

import mlflow
from mlflow.pyfunc import PythonModel

SEARCH_KEYS = ("max_length", "temperature", "top_p", "top_k", "do_sample", "repetition_penalty")


def _plain(value):
    """numpy and pandas values as plain Python values."""
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _rows(model_input):
    """The request rows as dicts, whatever shape MLflow hands over."""
    if hasattr(model_input, "to_dict"):  # pandas DataFrame
        return [_plain(row) for row in model_input.to_dict(orient="records")]
    model_input = _plain(model_input)
    if isinstance(model_input, dict):
        if isinstance(model_input.get("prompt"), list):
            return [{"prompt": p} for p in model_input["prompt"]]
        return [model_input]
    if isinstance(model_input, str):
        return [{"prompt": model_input}]
    return [row if isinstance(row, dict) else {"prompt": row} for row in model_input]


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

    def _generate(self, prompt, overrides):
        ids = [int(i) for i in self.tokenizer.encode(prompt)]
        search = dict(self.search)
        search.update({k: v for k, v in overrides.items() if k in SEARCH_KEYS and v is not None})
        limit = int(search.get("max_length") or self.context_length)
        if overrides.get("max_tokens") is not None:
            limit = min(limit, len(ids) + int(overrides["max_tokens"]))
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

    def predict(self, context, model_input, params=None):
        params = _plain(params or {})
        replies = []
        for row in _rows(model_input):
            overrides = dict(params)
            overrides.update({k: v for k, v in row.items() if k not in ("prompt", "messages") and v is not None})
            if self.task == "chat":
                messages = [{"role": m["role"], "content": m.get("content") or ""} for m in row["messages"]]
                prompt = self.tokenizer.apply_chat_template(json.dumps(messages), add_generation_prompt=True)
                text, prompt_tokens, completion_tokens, finish = self._generate(prompt, overrides)
                replies.append({
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
                })
            else:
                replies.append(self._generate(row["prompt"], overrides)[0])
        return replies


mlflow.models.set_model(Phi3OnnxModel())
