#!/usr/bin/env python3
"""Benchmarks ModelDesk against onnxruntime-genai on the same model, prompt and thread count, and
prints the ratios (ModelDesk / genai; above 1.0 is better for speeds, below 1.0 for time and memory).

    python3 tools/bench_vs_genai.py MODEL_DIR [--prompt-tokens 128] [--gen-tokens 128] [--runs 5]
        [--rounds 3] [--threads N] [--max-length N] [--spinning] [--modeldesk target/release/modeldesk] [--json]

Needs `pip install -r tests/python/requirements.txt`. Each tool runs in its own process, the
two alternating for --rounds rounds (which goes first alternates too) whose runs are pooled; the
ratio of the pooled medians is printed with the spread of the per-round ratios, so a difference
smaller than that spread is noise. Each process does one warm-up run,
then --runs measured runs of exactly --gen-tokens tokens after a --prompt-tokens
prompt (ModelDesk suppresses EOS; genai masks it with min_length, which has the same effect).
Without --threads, each tool uses its own default thread count. With --spinning, ModelDesk's idle
ONNX Runtime threads spin as genai's do (ONNX Runtime's default; ModelDesk's own is to let them sleep).
"""
import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

BENCH_TEXT = "The quick brown fox jumps over the lazy dog while the small model counts its tokens. "


def genai_run(args):
    """Runs in a child process (see main): measures onnxruntime-genai and prints JSON."""
    import onnxruntime_genai as og

    model_dir = args.model
    if args.threads:
        # genai reads intra-op threads from the config; use a copy with the setting changed.
        copy = tempfile.mkdtemp(prefix="genai-bench-")
        for name in os.listdir(args.model):
            source = os.path.join(args.model, name)
            if name != "genai_config.json":
                os.symlink(os.path.abspath(source), os.path.join(copy, name))
        config = json.load(open(os.path.join(args.model, "genai_config.json")))
        config["model"]["decoder"]["session_options"]["intra_op_num_threads"] = args.threads
        json.dump(config, open(os.path.join(copy, "genai_config.json"), "w"))
        model_dir = copy
    started = time.perf_counter()
    model = og.Model(model_dir)
    tokenizer = og.Tokenizer(model)
    load_ms = (time.perf_counter() - started) * 1000
    unit = [int(i) for i in tokenizer.encode(BENCH_TEXT)]
    prompt = (unit * (args.prompt_tokens // len(unit) + 1))[: args.prompt_tokens]
    total = args.prompt_tokens + args.gen_tokens
    samples = []
    for run in range(args.runs + 1):
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=args.max_length or total, min_length=total, do_sample=False)
        generator = og.Generator(model, params)
        t0 = time.perf_counter()
        generator.append_tokens(prompt)
        t1 = time.perf_counter()
        generator.generate_next_token()
        t2 = time.perf_counter()
        generated = 1
        while not generator.is_done() and generated < args.gen_tokens:
            generator.generate_next_token()
            generated += 1
        t3 = time.perf_counter()
        if generated != args.gen_tokens:
            raise SystemExit(f"genai generated {generated} tokens, expected {args.gen_tokens}")
        if run > 0:
            samples.append({
                "time_to_first_token_ms": (t2 - t0) * 1000,
                "prefill_tokens_per_second": args.prompt_tokens / (t1 - t0),
                "decode_tokens_per_second": (generated - 1) / (t3 - t2),
            })
        del generator
    report = {"load_ms": load_ms, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "samples": {}}
    for key in samples[0]:
        values = sorted(s[key] for s in samples)
        report[key] = {"median": values[len(values) // 2], "min": values[0], "max": values[-1]}
        report["samples"][key] = [s[key] for s in samples]
    print(json.dumps(report))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--gen-tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--max-length", type=int, default=0,
                        help="sequence limit for both tools (default: prompt + generated); genai reserves KV for all of it")
    parser.add_argument("--modeldesk", default=None, help="the modeldesk binary (default: target dir or PATH)")
    parser.add_argument("--spinning", action="store_true", help="ModelDesk's idle threads spin, as genai's do")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternate the two tools this many times and pool their runs (evens out machine drift)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--genai-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.genai_child:
        return genai_run(args)

    binary = args.modeldesk or shutil.which("modeldesk")
    if binary is None:
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(os.path.dirname(__file__), "..", "target"))
        binary = os.path.join(target, "release", "modeldesk")
    common = ["--prompt-tokens", str(args.prompt_tokens), "--gen-tokens", str(args.gen_tokens), "--runs", str(args.runs)]
    threads = ["--threads", str(args.threads)] if args.threads else []
    if args.max_length:
        threads += ["--max-length", str(args.max_length)]
    def pooled(reports):
        merged = {"peak_rss_mb": max(r["peak_rss_mb"] for r in reports), "load_ms": statistics.median(r["load_ms"] for r in reports)}
        for key in ("time_to_first_token_ms", "prefill_tokens_per_second", "decode_tokens_per_second"):
            values = sorted(v for r in reports for v in r["samples"][key])
            merged[key] = {"median": statistics.median(values), "min": values[0], "max": values[-1], "samples": len(values)}
        return merged

    def run_ours():
        spinning = ["--spinning"] if args.spinning else []
        return json.loads(subprocess.run([binary, "bench", "--model", args.model, "--json", *common, *threads, *spinning],
                                         check=True, capture_output=True, text=True).stdout)

    def run_theirs():
        return json.loads(subprocess.run([sys.executable, __file__, args.model, "--genai-child", *common, *threads],
                                         check=True, capture_output=True, text=True).stdout)

    load_before = os.getloadavg()
    ours_runs, theirs_runs = [], []
    for round_index in range(args.rounds):
        if round_index % 2 == 0:
            ours_runs.append(run_ours())
            theirs_runs.append(run_theirs())
        else:
            theirs_runs.append(run_theirs())
            ours_runs.append(run_ours())
    ours, theirs = pooled(ours_runs), pooled(theirs_runs)
    round_ratios = {}
    for key in ("time_to_first_token_ms", "prefill_tokens_per_second", "decode_tokens_per_second"):
        round_ratios[key] = sorted(statistics.median(o["samples"][key]) / statistics.median(t["samples"][key])
                                   for o, t in zip(ours_runs, theirs_runs))
    rows = [
        ("decode tokens/s", "decode_tokens_per_second", True),
        ("prefill tokens/s", "prefill_tokens_per_second", True),
        ("time to first token (ms)", "time_to_first_token_ms", False),
    ]
    result = {"model": args.model, "threads": args.threads or "defaults", "modeldesk_spinning": args.spinning, "prompt_tokens": args.prompt_tokens,
              "gen_tokens": args.gen_tokens, "runs": args.runs * args.rounds, "modeldesk": ours, "onnxruntime_genai": theirs,
              "ratios": {}, "round_ratios": round_ratios, "load_average": {"start": load_before, "end": os.getloadavg()},
              "modeldesk_decode_step_ms": [r.get("decode_step_ms") for r in ours_runs]}
    for _, key, _ in rows:
        result["ratios"][key] = ours[key]["median"] / theirs[key]["median"]
    result["ratios"]["peak_rss_mb"] = ours["peak_rss_mb"] / theirs["peak_rss_mb"]
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{os.path.basename(os.path.normpath(args.model))}: prompt {args.prompt_tokens}, generate {args.gen_tokens}, "
          f"{args.rounds} alternating rounds of {args.runs} runs, threads {args.threads or 'each default'}"
          f"{', ModelDesk spinning too' if args.spinning else ''} (medians)")
    print(f"{'':28}{'ModelDesk':>12}{'genai':>12}{'ratio':>8}  per-round ratios")
    for label, key, _ in rows:
        spread = round_ratios[key]
        print(f"{label:28}{ours[key]['median']:12.1f}{theirs[key]['median']:12.1f}{result['ratios'][key]:8.2f}"
              f"  {spread[0]:.2f}–{spread[-1]:.2f} (median {statistics.median(spread):.2f})")
    print(f"{'peak RSS (MB)':28}{ours['peak_rss_mb']:12.0f}{theirs['peak_rss_mb']:12.0f}{result['ratios']['peak_rss_mb']:8.2f}")
    steps = [r["decode_step_ms"] for r in ours_runs if r.get("decode_step_ms")]
    if steps:
        mean = lambda key: statistics.mean(s[key] for s in steps)
        print(f"ModelDesk per decode step (ms): ONNX Runtime run {mean('run'):.3f} · binding, KV and logits {mean('io'):.3f}"
              f" · sampling {mean('sampling'):.3f} · text {mean('text'):.3f} · events {mean('events'):.3f}")
    load = result["load_average"]
    print("load average (1, 5, 15 min): start " + ", ".join(f"{x:.2f}" for x in load["start"])
          + "; end " + ", ".join(f"{x:.2f}" for x in load["end"]))


if __name__ == "__main__":
    main()
