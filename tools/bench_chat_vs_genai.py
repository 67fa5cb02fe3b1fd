#!/usr/bin/env python3
"""Time to first token per turn of a conversation: ModelDesk with and without KV-cache reuse, and
onnxruntime-genai in its chat mode (one generator, each turn appended) and with the whole
conversation prefilled again every turn. Prints the table and the ratios.

    python3 tools/bench_chat_vs_genai.py MODEL_DIR [--turns 5] [--user-tokens 120] [--reply-tokens 60]
        [--threads 2] [--runs 1] [--rounds 2] [--tokenizer DIR] [--modeldesk target/release/modeldesk] [--spinning]
        [--ort-profile] [--chat-only] [--json]

Needs `pip install -r tests/python/requirements.txt`. ModelDesk runs `modeldesk bench --turns …`;
its JSON names the system prompt and user messages, which the genai side then uses, so both tools
see the same conversation. Replies are exactly --reply-tokens tokens (EOS suppressed in ModelDesk,
masked through min_length in genai). Each tool and mode runs in its own process, the four
alternating for --rounds rounds whose samples are pooled (medians are shown).

--tokenizer DIR runs both tools on a linked copy of the model whose tokenizer.json and
tokenizer_config.json come from DIR (for example ../shared/fixtures/phi3-tokenizers/phi-3-mini,
whose 32,064 ids fit the Phi-3-mini-shaped model's logits), with genai_config.json's EOS, pad and
BOS ids taken from that tokenizer. Replies then print as real tokens, so ModelDesk, which sends each
reply back as text, reuses the previous reply when its text encodes back to the same ids.

--ort-profile has ONNX Runtime profile every process (ModelDesk's `--ort-profile`, genai's
`enable_profiling` session option) and adds, per turn, the median time of the model run that read
the turn's new tokens, in each tool, and for the last turn the time per operator type: what the
two tools ask ONNX Runtime to do, apart from everything around the run.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def with_tokenizer(model, tokenizer_dir, into):
    """A linked copy of `model` using the tokenizer files in `tokenizer_dir` (see the docstring)."""
    copy = os.path.join(into, os.path.basename(os.path.normpath(model)) + "-tokenizer")
    os.makedirs(copy)
    for name in os.listdir(model):
        if name not in ("genai_config.json", "tokenizer.json", "tokenizer_config.json"):
            os.symlink(os.path.abspath(os.path.join(model, name)), os.path.join(copy, name))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(tokenizer_dir, name), os.path.join(copy, name))
    added = {t["content"]: t["id"] for t in json.load(open(os.path.join(tokenizer_dir, "tokenizer.json")))["added_tokens"]}
    config = json.load(open(os.path.join(model, "genai_config.json")))
    try:
        config["model"]["eos_token_id"] = [added["<|endoftext|>"], added["<|assistant|>"], added["<|end|>"]]
        config["model"]["pad_token_id"] = added["<|endoftext|>"]
        config["model"]["bos_token_id"] = added["<s>"]
    except KeyError as missing:
        raise SystemExit(f"{tokenizer_dir}: the tokenizer has no {missing} token (a Phi-3 tokenizer is expected)")
    if max(added.values()) >= config["model"]["vocab_size"]:
        raise SystemExit(f"{tokenizer_dir}: the tokenizer's ids do not fit the model's {config['model']['vocab_size']} logits")
    json.dump(config, open(os.path.join(copy, "genai_config.json"), "w"), indent=4)
    return copy


def genai_config_copy(model, threads, profile):
    """genai reads intra-op threads and profiling from genai_config.json: a linked copy with them changed."""
    if not threads and not profile:
        return model
    copy = tempfile.mkdtemp(prefix="genai-chat-bench-")
    for name in os.listdir(model):
        if name != "genai_config.json":
            os.symlink(os.path.abspath(os.path.join(model, name)), os.path.join(copy, name))
    config = json.load(open(os.path.join(model, "genai_config.json")))
    if threads:
        config["model"]["decoder"]["session_options"]["intra_op_num_threads"] = threads
    if profile:
        config["model"]["decoder"]["session_options"]["enable_profiling"] = profile
    json.dump(config, open(os.path.join(copy, "genai_config.json"), "w"))
    return copy


def genai_child(args):
    """Runs in a child process: one genai mode over the conversation, prints JSON per turn."""
    import onnxruntime_genai as og

    spec = json.load(sys.stdin)
    model = og.Model(genai_config_copy(args.model, args.threads, args.profile_prefix))
    tokenizer = og.Tokenizer(model)
    system, users, reply_tokens = spec["system_prompt"], spec["user_messages"], spec["reply_tokens"]

    def template(messages):
        return tokenizer.apply_chat_template(json.dumps(messages), add_generation_prompt=True)

    def params(max_length):
        p = og.GeneratorParams(model)
        p.set_search_options(max_length=max_length, min_length=max_length, do_sample=False)
        return p

    results = [[] for _ in users]
    for _ in range(args.runs):
        messages = [{"role": "system", "content": system}]
        if args.genai_child == "chat":
            budget = len(tokenizer.encode(template(messages + [{"role": "user", "content": u} for u in users])))
            generator = og.Generator(model, params(budget + len(users) * (reply_tokens + 16)))
        for turn, user in enumerate(users):
            if args.genai_child == "chat":
                text = template(messages + [{"role": "user", "content": user}]) if turn == 0 else "<|end|>\n" + template([{"role": "user", "content": user}])
                tokens = [int(t) for t in tokenizer.encode(text)]
            else:
                messages.append({"role": "user", "content": user})
                tokens = [int(t) for t in tokenizer.encode(template(messages))]
                generator = og.Generator(model, params(len(tokens) + reply_tokens))
            started = time.perf_counter()
            generator.append_tokens(tokens)
            generator.generate_next_token()
            first = time.perf_counter()
            ids = [int(generator.get_next_tokens()[0])]
            while len(ids) < reply_tokens:
                generator.generate_next_token()
                ids.append(int(generator.get_next_tokens()[0]))
            results[turn].append({"appended_tokens": len(tokens), "time_to_first_token_ms": (first - started) * 1000})
            if args.genai_child == "reprefill":
                messages.append({"role": "assistant", "content": tokenizer.decode(ids)})
                del generator
    print(json.dumps(results))
    # genai writes its profile when the session closes.
    generator = tokenizer = model = None


def profile_runs(path):
    """The model runs in an ONNX Runtime profile that fed more than one token, in order: for each,
    (new tokens, run ms, {operator type: ms})."""
    events = json.load(open(path))
    runs = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    nodes = sorted((e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")), key=lambda e: e["ts"])
    found, at = [], 0
    for run in runs:
        end = run["ts"] + run["dur"]
        while at < len(nodes) and nodes[at]["ts"] < run["ts"]:
            at += 1
        inside = []
        while at < len(nodes) and nodes[at]["ts"] <= end:
            inside.append(nodes[at])
            at += 1
        attention = next((n for n in inside if n["args"].get("op_name") == "GroupQueryAttention"), None)
        if attention is None:
            raise SystemExit(f"{path}: a model run without GroupQueryAttention (not a Phi-3 graph?)")
        new_tokens = attention["args"]["input_type_shape"][0]["float"][1]
        if new_tokens > 1:
            ops = {}
            for node in inside:
                ops[node["args"]["op_name"]] = ops.get(node["args"]["op_name"], 0.0) + node["dur"] / 1000
            found.append((new_tokens, run["dur"] / 1000, ops))
    return found


def profiled_turns(prefix, turns, runs, warm_up):
    """Per turn, the (new tokens, run ms, ops) of the run that read its new tokens, from the one
    profile `prefix` names (ModelDesk's first prefill is its warm-up)."""
    files = [f for f in os.listdir(os.path.dirname(prefix)) if f.startswith(os.path.basename(prefix) + "_")]
    if len(files) != 1:
        raise SystemExit(f"expected one ONNX Runtime profile for {prefix}, found {files}")
    found = profile_runs(os.path.join(os.path.dirname(prefix), files[0]))[warm_up:]
    if len(found) != turns * runs:
        raise SystemExit(f"{files[0]}: {len(found)} prefill runs, expected {turns} turns x {runs} runs")
    return [found[turn::turns] for turn in range(turns)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--user-tokens", type=int, default=120)
    parser.add_argument("--reply-tokens", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=1, help="conversations per process")
    parser.add_argument("--rounds", type=int, default=2, help="alternate the four measurements this many times")
    parser.add_argument("--tokenizer", default=None, help="a folder with tokenizer.json and tokenizer_config.json to use instead")
    parser.add_argument("--modeldesk", default=None)
    parser.add_argument("--spinning", action="store_true",
                        help="let ModelDesk's idle ONNX Runtime threads spin, as genai's do (ModelDesk's default lets them sleep)")
    parser.add_argument("--ort-profile", action="store_true",
                        help="profile both tools' ONNX Runtime sessions: model-run times per turn, operator times of the last turn")
    parser.add_argument("--chat-only", action="store_true", help="skip --no-reuse and genai's re-prefill")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--genai-child", choices=["chat", "reprefill"], help=argparse.SUPPRESS)
    parser.add_argument("--profile-prefix", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.genai_child:
        return genai_child(args)
    if args.tokenizer:
        with tempfile.TemporaryDirectory(prefix="chat-bench-") as scratch:
            shown = os.path.basename(os.path.normpath(args.model))
            args.model = with_tokenizer(args.model, args.tokenizer, scratch)
            return measure(args, shown)
    return measure(args, os.path.basename(os.path.normpath(args.model)))


def shown_value(value, width, decimals):
    """A table cell: the number, or a dash for a mode that was not measured."""
    return f"{value:>{width}.{decimals}f}" if value is not None else f"{'-':>{width}}"


def measure(args, shown):
    load_before = os.getloadavg()
    binary = args.modeldesk or shutil.which("modeldesk")
    if binary is None:
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(os.path.dirname(__file__), "..", "target"))
        binary = os.path.join(target, "release", "modeldesk")
    bench = [binary, "bench", "--model", args.model, "--turns", str(args.turns), "--user-tokens", str(args.user_tokens),
             "--reply-tokens", str(args.reply_tokens), "--runs", str(args.runs), "--json"]
    if args.threads:
        bench += ["--threads", str(args.threads)]
    if args.spinning:
        bench += ["--spinning"]
    samples = {"reuse": [[] for _ in range(args.turns)], "no_reuse": [[] for _ in range(args.turns)],
               "genai_chat": [[] for _ in range(args.turns)], "genai_reprefill": [[] for _ in range(args.turns)]}
    shapes = None
    profiles = tempfile.mkdtemp(prefix="chat-bench-profiles-") if args.ort_profile else None
    profiled = {mode: [[] for _ in range(args.turns)] for mode in samples}
    round_ratios = [[] for _ in range(args.turns)]
    for round_index in range(args.rounds):
        round_start = {mode: [len(values) for values in samples[mode]] for mode in ("reuse", "genai_chat")}
        for mode, extra in (("reuse", []), ("no_reuse", ["--no-reuse"]))[:1 if args.chat_only else 2]:
            if profiles:
                prefix = os.path.join(profiles, f"{mode}-{round_index}")
                extra = extra + ["--ort-profile", prefix]
            report = json.loads(subprocess.run(bench + extra, check=True, capture_output=True, text=True).stdout)
            if profiles:
                for turn, rows in enumerate(profiled_turns(prefix, args.turns, args.runs, warm_up=1)):
                    profiled[mode][turn].extend(rows)
            if mode == "reuse":
                shapes = report
            for turn, row in enumerate(report["per_turn"]):
                samples[mode][turn].extend(row["samples"])
        spec = json.dumps({"system_prompt": shapes["system_prompt"], "user_messages": shapes["user_messages"],
                           "reply_tokens": args.reply_tokens})
        for mode in ("chat", "reprefill")[:1 if args.chat_only else 2]:
            child = [sys.executable, __file__, args.model, "--genai-child", mode, "--runs", str(args.runs), "--threads", str(args.threads)]
            if profiles:
                prefix = os.path.join(profiles, f"genai-{mode}-{round_index}")
                child += ["--profile-prefix", prefix]
            turns = json.loads(subprocess.run(child, input=spec, check=True, capture_output=True, text=True).stdout)
            for turn, rows in enumerate(turns):
                samples[f"genai_{mode}"][turn].extend(r["time_to_first_token_ms"] for r in rows)
            if profiles:
                for turn, rows in enumerate(profiled_turns(prefix, args.turns, args.runs, warm_up=0)):
                    profiled[f"genai_{mode}"][turn].extend(rows)
        for turn in range(args.turns):
            ours, theirs = (statistics.median(samples[mode][turn][round_start[mode][turn]:]) for mode in ("reuse", "genai_chat"))
            round_ratios[turn].append(ours / theirs)
    load = {"start": load_before, "end": os.getloadavg()}
    table = []
    for turn in range(args.turns):
        row = {"turn": turn + 1, "prompt_tokens": shapes["per_turn"][turn]["prompt_tokens"],
               "reused_tokens": shapes["per_turn"][turn]["reused_tokens"]}
        for mode, values in samples.items():
            row[f"{mode}_ms"] = statistics.median(values[turn]) if values[turn] else None
        row["reuse_vs_genai_chat"] = row["reuse_ms"] / row["genai_chat_ms"]
        row["reuse_vs_no_reuse"] = row["reuse_ms"] / row["no_reuse_ms"] if row["no_reuse_ms"] else None
        row["reuse_vs_genai_chat_per_round"] = round_ratios[turn]
        if profiles:
            for mode, rows in profiled.items():
                row[f"{mode}_run_ms"] = statistics.median(r[1] for r in rows[turn]) if rows[turn] else None
                row[f"{mode}_new_tokens"] = rows[turn][0][0] if rows[turn] else None
            row["reuse_run_vs_genai_chat_run"] = row["reuse_run_ms"] / row["genai_chat_run_ms"]
        table.append(row)
    operators = None
    if profiles:
        # Operator times of the last turn's run, medians over its samples, in both chat modes.
        operators = {}
        for mode in ("reuse", "genai_chat"):
            rows = profiled[mode][args.turns - 1]
            names = sorted({name for r in rows for name in r[2]})
            operators[mode] = {name: statistics.median(r[2].get(name, 0.0) for r in rows) for name in names}
        shutil.rmtree(profiles)
    if args.json:
        print(json.dumps({"model": args.model, "tokenizer": args.tokenizer, "threads": args.threads, "turns": table, "load_average": load,
                          "samples_per_cell": args.rounds * args.runs, "last_turn_operators_ms": operators}, indent=2))
        return
    tokenizer = f" with the tokenizer of {args.tokenizer}" if args.tokenizer else ""
    print(f"{shown}{tokenizer}: {args.turns} turns of {args.user_tokens} user + {args.reply_tokens} "
          f"reply tokens, {args.threads} threads, time to first token in ms (medians of {args.rounds * args.runs})")
    print(f"{'turn':>4} {'prompt':>7} {'reused':>7} {'ModelDesk':>10} {'--no-reuse':>11} {'genai chat':>11} {'genai full':>11}"
          f" {'vs chat':>8} {'vs no-reuse':>12}  vs chat per round")
    for r in table:
        print(f"{r['turn']:>4} {r['prompt_tokens']:>7} {r['reused_tokens']:>7} {shown_value(r['reuse_ms'], 10, 1)} {shown_value(r['no_reuse_ms'], 11, 1)}"
              f" {shown_value(r['genai_chat_ms'], 11, 1)} {shown_value(r['genai_reprefill_ms'], 11, 1)} {shown_value(r['reuse_vs_genai_chat'], 8, 2)}"
              f" {shown_value(r['reuse_vs_no_reuse'], 12, 2)}  " + " ".join(f"{x:.2f}" for x in r["reuse_vs_genai_chat_per_round"]))
    if profiles:
        print(f"ONNX Runtime's model run that reads each turn's new tokens, ms (medians of {args.rounds * args.runs})")
        print(f"{'turn':>4} {'new':>5} {'ModelDesk':>10} {'--no-reuse':>11} {'genai chat':>11} {'genai full':>11} {'vs chat':>8}")
        for r in table:
            print(f"{r['turn']:>4} {r['reuse_new_tokens']:>5} {shown_value(r['reuse_run_ms'], 10, 1)} {shown_value(r['no_reuse_run_ms'], 11, 1)}"
                  f" {shown_value(r['genai_chat_run_ms'], 11, 1)} {shown_value(r['genai_reprefill_run_ms'], 11, 1)}"
                  f" {shown_value(r['reuse_run_vs_genai_chat_run'], 8, 2)}")
        print(f"turn {args.turns}, operator time in that run, ms: " + "; ".join(
            f"{name} {operators['reuse'].get(name, 0.0):.1f} vs {operators['genai_chat'].get(name, 0.0):.1f}"
            for name in sorted(operators["genai_chat"], key=lambda n: -operators["genai_chat"][n])[:4]) + " (ModelDesk vs genai chat)")
    print("load average (1, 5, 15 min): start " + ", ".join(f"{x:.2f}" for x in load["start"])
          + "; end " + ", ".join(f"{x:.2f}" for x in load["end"]))


if __name__ == "__main__":
    main()
