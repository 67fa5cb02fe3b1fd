#!/usr/bin/env python3
"""Trains the small Phi-3 model behind the README's screenshots and converts it to an int4 ONNX folder.

Rebuild (from the repository root; the venv is about 4 GB because PyPI's torch brings CUDA wheels):

    python3 -m venv ~/.cache/modeldesk/demo-venv && ~/.cache/modeldesk/demo-venv/bin/pip install -r tools/requirements-demo.txt
    ~/.cache/modeldesk/demo-venv/bin/python tools/make_demo_model.py

It prints the output folder, `${MODELDESK_DEMO_DIR:-~/.cache/modeldesk/demo-model}` (outside git), and
keeps its corpus and Hugging Face checkpoint beside it in `<output>-build/`. What it does:

1. writes its own corpus: short questions about ModelDesk, Phi-3 and MLflow (with rephrasings, greetings,
   two-turn chats and system prompts), one fixed answer per topic, and a polite "I don't know" answer for
   questions outside that domain;
2. trains a Phi-3 (`Phi3ForCausalLM`: hidden 256, 4 layers, 8 heads, 4 KV heads) with torch on the CPU,
   on conversations rendered with the real Phi-3-mini tokenizer and chat template, the loss on the
   assistant turns only, until its greedy answers match the corpus;
3. saves it in Hugging Face format with the full 32064-token vocabulary, converts it with
   onnxruntime-genai's model builder (int4, CPU) and puts the original tokenizer files in;
4. checks that onnxruntime-genai encodes the prompts as in training and answers sample questions as trained.

Why training uses a reduced vocabulary: a softmax over all 32064 tokens would cost most of the CPU time,
yet only the ~1,500 tokens that occur in the corpus are ever targets. The model is trained on those plus one
extra "unknown" slot, whose embedding stands in for user-typed words the corpus lacks (learned by dropping
question tokens) and whose output row is never a target. When saving, every other id of the real vocabulary
gets the unknown slot's rows, so the saved model has the real tokenizer's shape and never emits them.

Seeds are fixed: the same versions and `--threads` give the same model.
"""
import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.environ.get("MODELDESK_DEMO_DIR") or os.path.expanduser("~/.cache/modeldesk/demo-model")
DEFAULT_TOK = os.path.join(REPO, "..", "shared", "fixtures", "phi3-tokenizers", "phi-3-mini")
USER, ASSISTANT, END, SYSTEM, ENDOFTEXT = 32010, 32001, 32007, 32006, 32000
EOS_IDS = [32000, 32001, 32007]  # as in Microsoft's Phi-3-mini ONNX releases
VOCAB = 32064

# (answer, questions): each question is rephrased further by `question_variants`.
TOPICS = [
    ("Hello! I am a small demo model running inside ModelDesk. Ask me about chatting with models or about MLflow packages.",
     ["Hello!", "Hi", "Hi there!", "Hey", "Good morning!", "Hello, who is there?", "Greetings!"]),
    ("I am fine, thank you! I run entirely on your computer, so everything you type stays here.",
     ["How are you?", "How are you doing today?", "How is it going?", "Are you doing well?"]),
    ("You are welcome! Ask me again any time.",
     ["Thanks!", "Thank you.", "Thanks a lot!", "Great, thank you!", "Thank you very much.", "Thanks for the help."]),
    ("Goodbye! Your conversations are saved, so you can come back to them later.",
     ["Bye!", "Goodbye.", "See you later!", "I have to go now.", "Bye for now."]),
    ("I am a tiny Phi-3 model trained in a few minutes on questions about ModelDesk. I know little else, so please ask me about the app.",
     ["Who are you?", "What are you?", "What model is this?", "Are you Phi-3?", "Tell me about yourself.", "What is your name?"]),
    ("ModelDesk is a desktop app for chatting with Phi-3 ONNX models on your own computer. It also opens, edits and exports MLflow model folders.",
     ["What does ModelDesk do?", "What is ModelDesk?", "What can I do with ModelDesk?", "What is this app?",
      "Explain ModelDesk in one sentence.", "Why would I use ModelDesk?", "What is this app for?"]),
    ("Yes. Models run locally with ONNX Runtime, so your messages never leave your computer and no internet connection is needed.",
     ["Does ModelDesk work offline?", "Is my data private?", "Do my messages leave my computer?",
      "Do I need an internet connection?", "Does the model run locally?"]),
    ("Click Open folder in the library or press Ctrl+O, then pick the folder that holds genai_config.json. You can also drop the folder on the window.",
     ["How do I open a model folder?", "How do I open a model?", "How can I load a model folder?",
      "Where do I open a folder?", "How do I add a model to the library?", "How do I load my own model?"]),
    ("ModelDesk runs Phi-3, Phi-3.5 and Phi-4-mini models in the ONNX format of onnxruntime-genai, such as the CPU int4 releases.",
     ["Which models can I use?", "What models does ModelDesk support?", "Can I run Phi-4-mini?",
      "Which model formats are supported?", "Does it support Phi-3.5?"]),
    ("Download a Phi ONNX release from the Hugging Face Hub, for example the CPU int4 folder of Phi-3-mini-4k-instruct-onnx, then open that folder.",
     ["How do I get a model?", "Where can I download a model?", "How do I download Phi-3?",
      "Where do models come from?", "I have no model yet, what should I do?"]),
    ("genai_config.json describes the ONNX model: its file name, layers, heads, context length and the default search options for generation.",
     ["What is genai_config.json?", "What is in genai_config.json?", "What does genai_config.json contain?",
      "Why does a model folder need genai_config.json?"]),
    ("MLmodel is the YAML file at the top of an MLflow model folder. It lists the flavors, the signature, the input example and how to load the model.",
     ["What is an MLmodel file?", "What is MLmodel?", "What does the MLmodel file contain?",
      "Explain the MLmodel file.", "What is inside MLmodel?"]),
    ("MLflow is an open source platform for the machine learning lifecycle. It tracks experiments and packages models in a standard folder format.",
     ["What is MLflow?", "What does MLflow do?", "Explain MLflow.", "Why do people use MLflow?"]),
    ("A flavor tells MLflow how to load a model, for example python_function or transformers. One model folder can have several flavors.",
     ["What is a flavor?", "What is an MLflow flavor?", "What does flavor mean in MLflow?", "What is the python_function flavor?"]),
    ("A signature describes the inputs and outputs a model expects: names, types and shapes. ModelDesk edits it as a table in the Model tab.",
     ["What is a signature?", "What is a model signature?", "How do I edit the signature?", "What does the signature describe?"]),
    ("An input example is a sample request saved with the model. ModelDesk checks it against the signature while you edit it.",
     ["What is an input example?", "Why save an input example?", "How do I edit the input example?"]),
    ("Open the Model tab and click Export package. Choose a folder or a zip file, and ModelDesk validates the package and shows the progress.",
     ["How do I export a model?", "How can I export a package?", "How do I make a zip of my model?",
      "How do I share my model folder?", "How do I export?"]),
    ("Open the ONNX folder, go to the Model tab and click Create MLflow model. ModelDesk writes a package that MLflow can load and serve.",
     ["How do I create an MLflow model?", "How do I turn an ONNX folder into an MLflow package?",
      "Can I make an MLflow package from a Phi-3 folder?", "How do I package a model for MLflow?"]),
    ("Run modeldesk validate with the folder path. It checks the MLmodel file and the ONNX folder the way MLflow loads them and lists every problem.",
     ["How do I validate a model?", "How do I check my MLflow package?", "What does modeldesk validate do?",
      "How can I find problems in a model folder?"]),
    ("Create an MLflow package first, then run mlflow models serve on its folder. It answers scoring requests over HTTP.",
     ["How do I serve a model with MLflow?", "Can MLflow serve this model?", "How do I run mlflow models serve?"]),
    ("Tokens per second is how fast the reply is written. A token is a piece of a word, so a higher number means a faster model.",
     ["What does tokens/s mean?", "What is tokens per second?", "What does tok/s mean?", "Why does it show tokens per second?",
      "Is a higher tokens/s better?"]),
    ("A token is a small piece of text, often part of a word. The model reads and writes text one token at a time.",
     ["What is a token?", "What are tokens?", "Is a token the same as a word?"]),
    ("Time to first token is how long the model takes to read your prompt before the first word of the reply appears.",
     ["What is time to first token?", "What does TTFT mean?", "Why is there a delay before the reply starts?"]),
    ("Under every reply you see prompt, completion and total tokens. Prompt tokens are what the model read, completion tokens are what it wrote.",
     ["What are prompt tokens?", "What are completion tokens?", "What does the line under the reply mean?", "What is the usage line?"]),
    ("The context meter shows how much of the model's context the conversation uses. When it is nearly full, start a new chat or drop old turns.",
     ["What is the context meter?", "What is the context length?", "What happens when the context is full?",
      "Why does my message not fit?"]),
    ("Press Stop or the Escape key. The model stops at once and keeps the part of the reply it has already written.",
     ["How do I stop a reply?", "How can I stop the model?", "The reply is too long, how do I stop it?", "What does Stop do?"]),
    ("Click Regenerate under the reply. With greedy settings you get the same answer again, so turn on sampling for a different one.",
     ["How do I regenerate a reply?", "Why does Regenerate give the same answer?", "Can I get a different answer?"]),
    ("Temperature controls randomness when sampling is on. Low values give focused answers, high values give more varied ones.",
     ["What is temperature?", "What does temperature do?", "Should I raise the temperature?"]),
    ("Greedy decoding always picks the most likely token, so the same prompt gives the same reply. Sampling picks at random among likely tokens.",
     ["What is greedy decoding?", "What is the difference between greedy and sampling?", "What does do_sample mean?",
      "What is sampling?"]),
    ("A system prompt gives the model instructions for the whole conversation. Set it in the chat settings before you send the first message.",
     ["What is a system prompt?", "How do I set a system prompt?", "Where do I give the model instructions?"]),
    ("Press Ctrl+N or click New chat. Each model keeps its own list of conversations.",
     ["How do I start a new chat?", "How do I open a new conversation?", "How do I clear the chat?"]),
    ("Open the menu of the conversation and choose Export. You can save it as Markdown or as llm/v1/chat JSON.",
     ["How do I export a conversation?", "How can I save this chat?", "Can I export the chat as Markdown?"]),
    ("Conversations are saved on disk in the app's data folder, one list per model, so they are still there after a restart.",
     ["Where are my conversations stored?", "Are my chats saved?", "Will I lose my chat when I close the app?"]),
    ("int4 means the weights are stored with four bits each. The model becomes about four times smaller and runs faster on a CPU.",
     ["What does int4 mean?", "What is int4 quantization?", "Why is the model int4?", "What is quantization?"]),
    ("ONNX Runtime is Microsoft's engine for running ONNX models. ModelDesk uses its official build and gives the same tokens as onnxruntime-genai.",
     ["What is ONNX Runtime?", "Which engine runs the model?", "What is onnxruntime-genai?", "What is ONNX?"]),
    ("This build runs models on the CPU. The CPU int4 releases of Phi-3 already run well on an ordinary laptop.",
     ["Do I need a GPU?", "Does ModelDesk use my GPU?", "Can it run without a graphics card?"]),
    ("Yes. Run modeldesk generate with a model folder and a message to get a reply in the terminal, or modeldesk bench to measure speed.",
     ["Is there a command line?", "Can I use ModelDesk from the terminal?", "How do I generate text from the CLI?",
      "How do I measure the speed?"]),
    ("Phi-3-mini in int4 needs about 3 GB of memory. Tiny models like me need only a few megabytes.",
     ["How much memory do I need?", "How much RAM does Phi-3 need?", "How big is the model?"]),
    ("Use a CPU int4 model, close other heavy programs and keep the conversation short. More CPU cores also help.",
     ["Why is it slow?", "How can I make the model faster?", "How do I speed up generation?"]),
    ("Enter sends, Shift+Enter starts a new line, Ctrl+N opens a new chat, Ctrl+O opens a folder and Escape stops a reply.",
     ["What are the keyboard shortcuts?", "Which shortcuts are there?", "How do I send a message?", "How do I add a new line?"]),
    ("The Model tab shows the summary and forms for model_config, the signature and the input example. Press Ctrl+S to save.",
     ["What is the Model tab?", "How do I edit the model settings?", "How do I change model_config?", "How do I save my edits?"]),
    ("Phi-3 is a family of small language models from Microsoft. Phi-3-mini has 3.8 billion parameters and runs well on a laptop.",
     ["What is Phi-3?", "Who made Phi-3?", "How big is Phi-3-mini?", "What is Phi?"]),
    ("A chat template turns the conversation into the text the model reads, with tags around every message that mark who wrote it.",
     ["What is a chat template?", "How does the model know who is speaking?", "What are the special tokens?"]),
    ("I can answer questions about ModelDesk: opening models, chatting, settings, tokens and MLflow packages. What would you like to know?",
     ["What can you do?", "Help!", "Can you help me?", "What can I ask you?", "What do you know?"]),
    ("Once upon a time, a small model lived on a laptop. It answered questions about ModelDesk all day and never needed the internet.",
     ["Tell me a story.", "Tell me a story about a river and a boat.", "Write a short story.", "Tell me a bedtime story."]),
    ("A token walks into a model. The model says: sorry, my context is full!",
     ["Tell me a joke.", "Say something funny.", "Do you know a joke?"]),
    ("I am only a tiny demo model, so I cannot answer that. Ask me about ModelDesk, Phi-3 models or MLflow instead.",
     ["What is the capital of France?", "What is the capital of Spain?", "Who won the World Cup?", "What is the weather like today?",
      "Can you write Python code for me?", "What is 17 times 23?", "Translate good night into German.", "Who is the president?",
      "What is the meaning of life?", "Recommend a good movie.", "How do I bake bread?", "What time is it?",
      "Explain quantum physics.", "Write an email to my boss.", "What is the tallest mountain?"]),
]
SYSTEM_PROMPTS = ["You are a helpful assistant.", "Answer briefly.", "You are ModelDesk's assistant. Be friendly."]
PREFIXES = ["Hi! ", "Hello, ", "Quick question: ", "Please tell me: ", "Hey, "]
AFTER_TURN = " (after a turn)"
CHECK_QUESTIONS = ["What does ModelDesk do?", "How do I open a model folder?", "What does tokens/s mean?"]


def answer_to(question):
    return next(answer for answer, questions in TOPICS if question in questions)


def check_chats():
    """What the script checks with onnxruntime-genai: the three questions alone, then all three in one chat."""
    turns = [m for q in CHECK_QUESTIONS for m in ({"role": "user", "content": q}, {"role": "assistant", "content": answer_to(q)})]
    return [turns[i:i + 2] for i in range(0, len(turns), 2)] + [turns]


def question_variants(question, rng):
    """The question as written plus one rephrasing (lowercase start, no final mark, or a greeting before it)."""
    if len(question.split()) < 3:
        return [question]
    kind = rng.randrange(3)
    if kind == 0:
        other = question[0].lower() + question[1:]
    elif kind == 1:
        other = question.rstrip("?.!")
    else:
        other = rng.choice(PREFIXES) + question[0].lower() + question[1:]
    return [question, other]


def write_corpus(path, rng):
    """Conversations (lists of chat messages): every question once or twice, then chats of two and three turns
    (a chat in the app sends its history, and the reply must follow the last question) and system prompts."""
    pairs = [(q, answer) for answer, questions in TOPICS for base in questions for q in question_variants(base, rng)]
    chats = [[{"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in pairs]
    for turns, count in ((2, len(pairs) // 2), (3, len(pairs) // 8)):
        for _ in range(count):
            chats.append([m for q, a in rng.sample(pairs, turns)
                          for m in ({"role": "user", "content": q}, {"role": "assistant", "content": a})])
    for _ in range(len(pairs) // 12):
        q, a = rng.choice(pairs)
        chats.append([{"role": "system", "content": rng.choice(SYSTEM_PROMPTS)},
                      {"role": "user", "content": q}, {"role": "assistant", "content": a}])
    with open(path, "w", encoding="utf-8") as f:
        for chat in chats:
            f.write(json.dumps({"messages": chat}) + "\n")
    return chats


class ChatTokenizer:
    """Phi-3-mini's chat template (rendered by transformers) and its tokenizer.json pipeline as published.

    Encoding uses `tokenizers` directly, as onnxruntime-genai and ModelDesk do: transformers 5 rebuilds a
    LlamaTokenizer's pre-tokenizer (no "▁" after a special token: "What" 5618 instead of "▁What" 1724)."""

    def __init__(self, tok_dir):
        from tokenizers import Tokenizer
        from transformers import AutoTokenizer
        self.template = AutoTokenizer.from_pretrained(tok_dir)
        self.pipeline = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))

    def encode(self, messages, add_generation_prompt=False):
        text = self.template.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        return self.pipeline.encode(text, add_special_tokens=False).ids

    def reply_ids(self, answer):
        """The tokens of an assistant reply as training sees them, without the closing <|end|>."""
        ids, is_reply, _ = encode_chat(self, [{"role": "user", "content": "x"}, {"role": "assistant", "content": answer}])
        return [t for t, reply in zip(ids, is_reply) if reply][:-1]


def encode_chat(tokenizer, messages):
    """Token ids of a conversation and the positions of its assistant replies (each ending with <|end|>).

    Asserts that each reply's prompt, rendered with add_generation_prompt as at inference, is a prefix."""
    ids = tokenizer.encode(messages)
    if ids and ids[-1] == ENDOFTEXT:  # the template ends a finished chat with eos_token; inference stops at <|end|>
        ids = ids[:-1]
    for turn, message in enumerate(messages):
        if message["role"] == "assistant":
            prompt_ids = tokenizer.encode(messages[:turn], add_generation_prompt=True)
            if ids[:len(prompt_ids)] != prompt_ids:
                raise SystemExit(f"prompt tokens are not a prefix of the conversation's: {messages[:turn + 1]}")
    is_reply, is_user_text, role = [], [], None
    for token in ids:
        if token in (USER, ASSISTANT, SYSTEM):
            role = token
            is_reply.append(False); is_user_text.append(False)
            continue
        is_reply.append(role == ASSISTANT)
        is_user_text.append(role in (USER, SYSTEM) and token != END)
        if token == END:
            role = None
    return ids, is_reply, is_user_text


def make_config(vocab_size, pad_token_id, eos_token_id):
    from transformers import Phi3Config
    return Phi3Config(vocab_size=vocab_size, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                      num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=4096,
                      original_max_position_embeddings=4096, sliding_window=None, bos_token_id=1,
                      eos_token_id=eos_token_id, pad_token_id=pad_token_id, tie_word_embeddings=False)


def batches(examples, batch_size, generator):
    """Shuffled batches of examples of similar length (less padding)."""
    import torch
    order = torch.randperm(len(examples), generator=generator).tolist()
    groups = [order[i:i + batch_size * 8] for i in range(0, len(order), batch_size * 8)]
    out = []
    for group in groups:
        group.sort(key=lambda i: len(examples[i][0]))
        out += [group[i:i + batch_size] for i in range(0, len(group), batch_size)]
    return [out[i] for i in torch.randperm(len(out), generator=generator).tolist()]


def collate(examples, indices, pad_id, unk_id, drop_rate, generator):
    import torch
    width = max(len(examples[i][0]) for i in indices)
    ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
    labels = torch.full((len(indices), width), -100, dtype=torch.long)
    mask = torch.zeros((len(indices), width), dtype=torch.long)
    for row, i in enumerate(indices):
        seq, is_reply, is_user_text = examples[i]
        n = len(seq)
        ids[row, :n] = torch.tensor(seq)
        labels[row, :n] = torch.where(torch.tensor(is_reply), torch.tensor(seq), torch.tensor(-100))
        mask[row, :n] = 1
        drop = torch.tensor(is_user_text) & (torch.rand(n, generator=generator) < drop_rate)
        ids[row, :n][drop] = unk_id  # teaches the unknown slot to stand for words the corpus lacks
    return ids, labels, mask


def greedy_reply(model, prompt_ids, end_id, limit=80):
    import torch
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt_ids]), attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
                             max_new_tokens=limit, do_sample=False, eos_token_id=end_id, pad_token_id=end_id)
    reply = out[0, len(prompt_ids):].tolist()
    return reply[:-1] if reply and reply[-1] == end_id else reply + [-1]  # -1: did not stop


def accuracy(model, probes, end_id, pad_id):
    """Share of probes whose greedy reply is exactly the trained answer, and the questions missed.

    Greedy decoding writes the answer exactly when, fed the answer, the most likely next token is right at
    every position up to <|end|>: one batched forward pass per probe instead of a token-by-token generation."""
    import torch
    model.eval()
    missed = []
    with torch.no_grad():
        for start in range(0, len(probes), 32):
            chunk = probes[start:start + 32]
            seqs = [prompt + answer + [end_id] for _, prompt, answer in chunk]
            ids = torch.full((len(seqs), max(map(len, seqs))), pad_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, seq in enumerate(seqs):
                ids[row, :len(seq)] = torch.tensor(seq)
                mask[row, :len(seq)] = 1
            best = model(input_ids=ids, attention_mask=mask).logits.argmax(-1)
            for row, (question, prompt, answer) in enumerate(chunk):
                n = len(prompt)
                if best[row, n - 1:len(seqs[row]) - 1].tolist() != seqs[row][n:]:
                    missed.append(question)
    model.train()
    return 1 - len(missed) / len(probes), missed


def train(examples, probes, vocab_size, pad_id, unk_id, end_id, args):
    import torch
    from transformers import Phi3ForCausalLM
    torch.manual_seed(args.seed)
    model = Phi3ForCausalLM(make_config(vocab_size, pad_id, end_id))
    model.train()
    steps_per_epoch = len(batches(examples, args.batch_size, torch.Generator().manual_seed(0)))
    total = steps_per_epoch * args.epochs
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = min(40, total // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup else 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warmup) / max(1, total - warmup)))))
    generator = torch.Generator().manual_seed(args.seed)
    start, step, score = time.time(), 0, 0.0
    for epoch in range(1, args.epochs + args.extra_epochs + 1):
        losses = []
        for indices in batches(examples, args.batch_size, generator):
            ids, labels, mask = collate(examples, indices, pad_id, unk_id, args.token_drop, generator)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step(); opt.zero_grad(set_to_none=True)
            if step < total:
                schedule.step()
            step += 1
            losses.append(loss.item())
        score, missed = accuracy(model, probes, end_id, pad_id)
        after_turn = sum(q.endswith(AFTER_TURN) for q, _, _ in probes)
        missed_after = sum(q.endswith(AFTER_TURN) for q in missed)
        print(f"epoch {epoch}: loss {sum(losses) / len(losses):.4f}, {time.time() - start:.0f} s; greedy replies as trained: "
              f"{score:.1%} (alone {len(probes) - after_turn - len(missed) + missed_after}/{len(probes) - after_turn}, "
              f"after a turn {after_turn - missed_after}/{after_turn}); missed: {missed[:6]}", flush=True)
        if epoch >= args.epochs and score >= args.target:
            break
    if score < args.target:
        raise SystemExit(f"training stopped at {score:.0%} exact replies, below the target {args.target:.0%}")
    return model, time.time() - start


def expand_vocabulary(model, used_ids, unk_id):
    """The trained model with the tokenizer's full vocabulary: ids outside the corpus get the unknown slot's rows."""
    import torch
    from transformers import Phi3ForCausalLM
    full = Phi3ForCausalLM(make_config(VOCAB, ENDOFTEXT, EOS_IDS[0]))
    state = model.state_dict()
    index = torch.full((VOCAB,), unk_id, dtype=torch.long)
    index[torch.tensor(used_ids)] = torch.arange(len(used_ids))
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        state[name] = state[name][index].clone()
    full.load_state_dict(state)
    return full.eval()


def build_onnx(hf_dir, out_dir, tok_dir, cache_dir):
    """onnxruntime-genai's model builder (int4, CPU), written to a temporary folder then moved into place."""
    staging = out_dir + ".partial"
    shutil.rmtree(staging, ignore_errors=True)
    log = os.path.join(os.path.dirname(hf_dir), "builder.log")
    with open(log, "w") as f:
        done = subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", hf_dir, "-o", staging,
                               "-p", "int4", "-e", "cpu", "-c", cache_dir, "--extra_options", "hf_token=false"],
                              stdout=f, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"the model builder failed (exit {done.returncode}); its output is in {log}")
    for name in ("tokenizer.json", "tokenizer_config.json"):  # the published tokenizer files, not the builder's re-save
        shutil.copyfile(os.path.join(tok_dir, name), os.path.join(staging, name))
    for name in ("chat_template.jinja", "special_tokens_map.json"):  # the template stays in tokenizer_config.json
        if os.path.exists(os.path.join(staging, name)):
            os.remove(os.path.join(staging, name))
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(staging, out_dir)


def check_with_genai(out_dir, tokenizer, chats):
    """onnxruntime-genai must encode each chat's prompt as training did and give the trained last reply."""
    import onnxruntime_genai as og
    model = og.Model(out_dir)
    og_tokenizer = og.Tokenizer(model)
    for chat in chats:
        messages, answer = chat[:-1], chat[-1]["content"]
        prompt = og_tokenizer.apply_chat_template(json.dumps(messages), add_generation_prompt=True)
        ids = [int(x) for x in og_tokenizer.encode(prompt)]
        trained = tokenizer.encode(messages, add_generation_prompt=True)
        if ids != trained:
            raise SystemExit(f"onnxruntime-genai encodes {messages} as {ids}, training used {trained}")
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(ids) + 100, do_sample=False)
        generator = og.Generator(model, params)
        generator.append_tokens(ids)
        stream, text, reply = og_tokenizer.create_stream(), [], []  # the streamed text, as a chat shows it
        while not generator.is_done():
            generator.generate_next_token()
            token = int(generator.get_next_tokens()[0])
            if token in EOS_IDS:
                break
            reply.append(token)
            text.append(stream.decode(token))
        before = f" (after {len(messages) // 2} turn(s))" if len(messages) > 1 else ""
        print(f"  {messages[-1]['content']}{before}\n    ->{''.join(text)}", flush=True)
        if reply != tokenizer.reply_ids(answer):
            raise SystemExit(f"onnxruntime-genai's reply to {messages} is not the trained answer {answer!r}")


def folder_size(path):
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="output model folder (default: %(default)s)")
    ap.add_argument("--tok", default=DEFAULT_TOK, help="folder with Phi-3-mini's tokenizer.json and tokenizer_config.json")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (results depend on it; 1 is fastest on a busy machine)")
    ap.add_argument("--epochs", type=int, default=6, help="epochs of the learning-rate schedule")
    ap.add_argument("--extra-epochs", type=int, default=4, help="more epochs at the final rate while below --target")
    ap.add_argument("--target", type=float, default=0.9, help="share of corpus questions answered exactly as trained")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--token-drop", type=float, default=0.08, help="share of user tokens replaced by the unknown slot")
    args = ap.parse_args()
    try:
        import torch
        import tokenizers, transformers  # noqa: F401
    except ImportError as e:
        raise SystemExit(f"{e}: run this with the venv made by the commands in this script's header")

    out = os.path.abspath(os.path.expanduser(args.out))
    build = out + "-build"
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if not os.path.isfile(os.path.join(args.tok, name)):
            raise SystemExit(f"{name} not found in --tok {args.tok}")
    os.makedirs(build, exist_ok=True)
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    tokenizer = ChatTokenizer(args.tok)

    chats = write_corpus(os.path.join(build, "corpus.jsonl"), random.Random(args.seed))
    encoded = [encode_chat(tokenizer, chat) for chat in chats]
    used_ids = sorted({t for ids, _, _ in encoded for t in ids} | {ENDOFTEXT})
    compact = {t: i for i, t in enumerate(used_ids)}
    unk_id = len(used_ids)
    examples = [([compact[t] for t in ids], reply, user) for ids, reply, user in encoded]
    n_tokens = sum(len(e[0]) for e in examples)
    print(f"corpus: {len(chats)} conversations, {sum(len(t[1]) for t in TOPICS)} questions on {len(TOPICS)} topics, "
          f"{n_tokens} tokens, {len(used_ids)} distinct token ids -> {build}/corpus.jsonl", flush=True)

    to_compact = lambda ids: [compact.get(t, unk_id) if t >= 0 else t for t in ids]

    def prompt_of(question):
        return tokenizer.encode([{"role": "user", "content": question}], add_generation_prompt=True)

    # Probes: every corpus question alone, and each topic's first question after another turn.
    probe_chats = [[{"role": "user", "content": q}, {"role": "assistant", "content": a}] for a, qs in TOPICS for q in qs]
    probe_rng = random.Random(args.seed + 1)
    for answer, questions in TOPICS:
        other_answer, other_questions = probe_rng.choice([t for t in TOPICS if t[0] != answer])
        probe_chats.append([{"role": "user", "content": probe_rng.choice(other_questions)},
                            {"role": "assistant", "content": other_answer},
                            {"role": "user", "content": questions[0]}, {"role": "assistant", "content": answer}])
    probes = [(chat[-2]["content"] + (AFTER_TURN if len(chat) > 2 else ""),
               to_compact(tokenizer.encode(chat[:-1], add_generation_prompt=True)),
               to_compact(tokenizer.reply_ids(chat[-1]["content"]))) for chat in probe_chats]
    model, train_seconds = train(examples, probes, unk_id + 1, compact[ENDOFTEXT], unk_id, compact[END], args)

    full = expand_vocabulary(model, used_ids, unk_id)
    for question in CHECK_QUESTIONS:  # the expansion must not change a reply
        reply = to_compact(greedy_reply(full, prompt_of(question), END))
        if reply != greedy_reply(model.eval(), to_compact(prompt_of(question)), compact[END]):
            raise SystemExit(f"the full-vocabulary model answers {question!r} differently from the trained one")
    hf_dir = os.path.join(build, "hf")
    shutil.rmtree(hf_dir, ignore_errors=True)
    full.save_pretrained(hf_dir)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(args.tok, name), os.path.join(hf_dir, name))
    with open(os.path.join(hf_dir, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 1, "eos_token_id": EOS_IDS, "pad_token_id": ENDOFTEXT}, f)

    build_onnx(hf_dir, out, args.tok, os.path.join(build, "cache"))
    print("onnxruntime-genai, greedy:")
    check_with_genai(out, tokenizer, check_chats())
    params = sum(p.numel() for p in full.parameters())
    print(f"trained {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters in {train_seconds:.0f} s "
          f"({args.threads} thread(s)); saved with the full vocabulary: {params / 1e6:.1f}M parameters; "
          f"int4 ONNX folder {folder_size(out) / 1e6:.1f} MB")
    print(out)


if __name__ == "__main__":
    main()
