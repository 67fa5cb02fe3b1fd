"""Runs chat completion requests through the official `openai` client and prints what it parsed.

stdin: {"base_url", "api_key", "requests": [{"kwargs": {...}, "stream": bool}]}
stdout: one result per request: {"text", "finish_reason", "usage", "chunks"} (streams also list
every parsed chunk), or {"error": {"status", "class", "message"}}.
"""
import json
import sys

import openai

spec = json.load(sys.stdin)
client = openai.OpenAI(base_url=spec["base_url"], api_key=spec["api_key"], max_retries=0, timeout=120)
results = []
for request in spec["requests"]:
    kwargs = request["kwargs"]
    try:
        if request.get("stream"):
            chunks = [chunk.model_dump() for chunk in client.chat.completions.create(stream=True, **kwargs)]
            text = "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c["choices"])
            finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
            usage = [c["usage"] for c in chunks if c.get("usage")]
            results.append({"text": text, "finish_reason": finish[-1] if finish else None,
                            "usage": usage[-1] if usage else None, "chunks": chunks})
        else:
            reply = client.chat.completions.create(**kwargs).model_dump()
            results.append({"text": reply["choices"][0]["message"]["content"],
                            "finish_reason": reply["choices"][0]["finish_reason"],
                            "usage": reply["usage"], "model": reply["model"], "object": reply["object"]})
    except openai.APIStatusError as error:
        results.append({"error": {"status": error.status_code, "class": type(error).__name__, "message": str(error)}})
    except openai.APIError as error:
        results.append({"error": {"status": None, "class": type(error).__name__, "message": str(error)}})
print(json.dumps(results))
