"""onnxruntime-genai's tokenizer as the reference: encodings, chat templates and streamed text.

Reads {"model": DIR, "texts": [...], "chats": [[{role, content}]...], "streams": [[ids]...]} on
stdin; prints {"encodings": [[ids]...], "chat_texts": [...], "chat_ids": [[ids]...],
"stream_chunks": [[text per id]...], "decodes": [text...]}.
"""
import json
import sys

import onnxruntime_genai as og

request = json.load(sys.stdin)
model = og.Model(request["model"])
tokenizer = og.Tokenizer(model)
chat_texts = [tokenizer.apply_chat_template(json.dumps(chat), add_generation_prompt=True) for chat in request["chats"]]
streams = []
for ids in request["streams"]:
    stream = tokenizer.create_stream()
    streams.append([stream.decode(i) for i in ids])
print(json.dumps({
    "encodings": [[int(i) for i in tokenizer.encode(text)] for text in request["texts"]],
    "chat_texts": chat_texts,
    "chat_ids": [[int(i) for i in tokenizer.encode(text)] for text in chat_texts],
    "stream_chunks": streams,
    "decodes": [tokenizer.decode(ids) for ids in request["streams"]],
}))
