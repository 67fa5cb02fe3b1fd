"""onnxruntime-genai's decode step as the reference scripts take it (shared by genai_cases.py and
genai_conversation.py)."""


def step(generator, eos, result):
    """Generates one token into result["generated_ids"], or ends the reply at an EOS token (which
    is recorded, not kept). Returns whether the reply goes on."""
    generator.generate_next_token()
    token = int(generator.get_next_tokens()[0])
    if token in eos:
        result["finish_reason"] = "stop"
        result["eos"] = token
        return False
    result["generated_ids"].append(token)
    return True
