#!/usr/bin/env bash
# How converting a Phi-3-mini checkpoint scales with its depth: makes random checkpoints with
# Phi-3-mini-4k's layer shape (hidden 3072, 32 heads, intermediate 8192, vocabulary 32064,
# bfloat16) and 2, 4, 8 … layers, converts each with `modeldesk convert` (int4, CPU), and prints
# wall time, CPU time and peak memory of the conversion (GNU time). The full model has 32 layers.
#
#   tools/bench_convert.sh PYTHON WORKDIR [LAYERS...]
#
# PYTHON needs tests/python/requirements-torch.txt; WORKDIR gets the checkpoints (0.85 GB for 2
# layers, +0.45 GB per 2 more) and outputs; run from the repository root after cargo build --release
# (MODELDESK=path/to/modeldesk when the target directory is elsewhere).
set -euo pipefail
python=$1; work=$2; shift 2
layers=("${@:-2 4 8}")
mkdir -p "$work"
for n in ${layers[@]}; do
  checkpoint="$work/phi3-mini-${n}layers"
  [ -d "$checkpoint" ] || "$python" tools/make_tiny_hf_checkpoint.py "$checkpoint" --hidden 3072 --heads 32 --kv-heads 32 \
      --intermediate 8192 --layers "$n" --vocab-size 32064 --context 4096 --shard-size 2GB --std 0.02 > /dev/null
  rm -rf "$work/onnx-${n}layers"
  /usr/bin/time -f "layers=$n wall_s=%e cpu_s=%U+%S peak_rss_kb=%M" -o "$work/time-${n}.txt" \
      "${MODELDESK:-target/release/modeldesk}" convert "$checkpoint" --out "$work/onnx-${n}layers" --python "$python" 2> "$work/log-${n}.txt" > /dev/null
  echo "$(cat "$work/time-${n}.txt") checkpoint_bytes=$(du -sb "$checkpoint" | cut -f1) onnx_bytes=$(du -sb "$work/onnx-${n}layers" | cut -f1)"
done
