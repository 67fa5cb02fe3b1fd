#!/usr/bin/env bash
# Export speed against `cp -r` on the same disk, with a 2 GB artifact of random bytes.
#
#   tools/bench_export.sh [SIZE_MB] [WORK_DIR]
#
# Prints both times, the ratio (export speed / cp speed; the target is >= 0.8) and the export's
# peak resident memory (flat: it streams). Needs the release binary (cargo build --release).
set -euo pipefail
size_mb=${1:-2048}
work=${2:-$(mktemp -d "${TMPDIR:-/tmp}/modeldesk-export-bench.XXXXXX")}
bin=${MODELDESK:-${CARGO_TARGET_DIR:-$(dirname "$0")/../target}/release/modeldesk}
repo=$(cd "$(dirname "$0")/.." && pwd)
trap 'rm -rf "$work"' EXIT
"$bin" create --task prompt --from-onnx "$repo/tests/fixtures/tiny-phi3" --out "$work/model" >/dev/null 2>&1
head -c $((size_mb * 1024 * 1024)) /dev/urandom > "$work/model/artifacts/phi3/big.bin"
sync
# Alternate the two tools twice and keep each one's best time, so page-cache warmth favours neither.
best() { printf '%s\n' "$@" | sort -g | head -1; }
time_it() { local start; start=$(date +%s.%N); "$@" >/dev/null 2>&1; sync; echo "$(date +%s.%N) - $start" | bc; }
cp_runs=(); export_runs=(); zip_runs=()
for _ in 1 2; do
  cp_runs+=("$(time_it cp -r "$work/model" "$work/by-cp")"); rm -rf "$work/by-cp"; sync
  export_runs+=("$(time_it "$bin" export "$work/model" --out "$work/by-export")"); rm -rf "$work/by-export"; sync
  zip_runs+=("$(time_it "$bin" export "$work/model" --out "$work/by-export.zip" --zip)"); rm -f "$work/by-export.zip"; sync
done
cp_s=$(best "${cp_runs[@]}"); export_s=$(best "${export_runs[@]}"); zip_s=$(best "${zip_runs[@]}")
out=$("$bin" export "$work/model" --out "$work/by-export" --json 2>/dev/null)
rss=$(echo "$out" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["peak_rss_mb"]))')
printf 'artifact %d MB · cp -r %.2f s · export %.2f s (ratio %.2f) · export --zip %.2f s (ratio %.2f) · export peak RSS %s MB\n' \
  "$size_mb" "$cp_s" "$export_s" "$(echo "$cp_s / $export_s" | bc -l)" "$zip_s" "$(echo "$cp_s / $zip_s" | bc -l)" "$rss"
