#!/usr/bin/env bash
# Screenshots of the real ModelDesk window for the README, taken under Xvfb.
#
#   tools/screenshots.sh            # writes screenshots/*.png
#   tools/screenshots.sh registry   # only the Registry view's (registry*.png)
#
# Needs: apt-get install xvfb openbox xdotool imagemagick libgl1-mesa-dri curl; a release build
# (cargo build --release); for the Registry view a Python with mlflow (MLFLOW_PYTHON, default
# python3) to run an `mlflow server` on a scratch store. Clicks at fixed positions of a 1280x780
# window at the top left.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${MODELDESK:-${CARGO_TARGET_DIR:-$repo/target}/release/modeldesk}
out=$repo/screenshots
work=$(mktemp -d "${TMPDIR:-/tmp}/modeldesk-shots.XXXXXX")
display=:${SCREEN_NUMBER:-97}
# Everything started here is stopped by its own id (the MLflow server by its process group).
cleanup() {
  kill "${app:-}" "${xvfb:-}" "${wm:-}" 2>/dev/null || true
  [ -n "${mlflow_server:-}" ] && kill -- "-$mlflow_server" 2>/dev/null || true
  sleep 1; rm -rf "$work"
}
trap cleanup EXIT
Xvfb "$display" -screen 0 1280x800x24 >/dev/null 2>&1 & xvfb=$!
sleep 1
DISPLAY=$display openbox >/dev/null 2>&1 & wm=$!
sleep 1
export DISPLAY=$display MODELDESK_HOME=$work/home
mkdir -p "$out"

start() {  # start the app (on a folder, if given) and place its window
  "$bin" "$@" >"$work/app.log" 2>&1 & app=$!
  for _ in $(seq 50); do window=$(xdotool search --name ModelDesk 2>/dev/null | head -1) && [ -n "$window" ] && break; sleep 0.2; done
  xdotool windowmove "$window" 0 0; xdotool windowsize "$window" 1280 780; sleep 1.5
}
shot() { import -window root "$out/$1"; }
click() { xdotool mousemove "$1" "$2" click 1; sleep "${3:-0.5}"; }
quit() { kill "$app" 2>/dev/null || true; wait "$app" 2>/dev/null || true; }

registry() {
  # An MLflow server with a few registered models, versions, aliases and experiments.
  local port=5077 url
  url=http://127.0.0.1:$port
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid "${MLFLOW_PYTHON:-python3}" -m mlflow server \
    --backend-store-uri "sqlite:///$work/mlflow.db" --artifacts-destination "$work/artifacts" --serve-artifacts \
    --host 127.0.0.1 --port $port --workers 1 >"$work/mlflow.log" 2>&1 & mlflow_server=$!
  for _ in $(seq 120); do curl -sf "$url/health" >/dev/null && break; sleep 1; done
  export MLFLOW_TRACKING_URI=$url
  "$bin" create --from-onnx "$repo/tests/fixtures/tiny-phi3" --out "$work/phi3-chat" --task chat >/dev/null 2>&1
  "$bin" create --from-onnx "$repo/tests/fixtures/tiny-phi3" --out "$work/phi3-prompt" --task prompt >/dev/null 2>&1
  "$bin" mlflow push "$work/phi3-chat" --name phi3-chat --alias champion --tag team=desk >/dev/null 2>&1
  "$bin" mlflow push "$work/phi3-chat" --name phi3-chat --alias staging --tag team=desk --tag quant=int4 \
    --description "Phi-3 mini chat, int4 CPU build, system prompt tuned for support answers" >/dev/null 2>&1
  "$bin" mlflow push "$work/phi3-prompt" --name phi3-prompt --alias champion --experiment prompts \
    --description "Plain prompt completion" >/dev/null 2>&1
  "$bin" mlflow push "$work/phi3-chat" --name support-assistant --alias champion --experiment support --tag owner=desk-team >/dev/null 2>&1
  unset MLFLOW_TRACKING_URI
  mkdir -p "$work/home/config"
  printf '{"tracking_uri": "%s"}\n' "$url" > "$work/home/config/tracking.json"

  start
  click 121 34 1                                    # Registry
  click 328 249 4                                   # Connect
  click 310 99 0.8                                  # fold the Server section
  click 320 287 1                                   # phi3-chat: its versions
  shot registry.png
  click 455 192 2                                   # Experiments
  click 322 345 2                                   # Default
  click 700 286 2                                   # its newest run
  shot registry-experiments.png
  quit
  kill -- "-$mlflow_server"; wait "$mlflow_server" 2>/dev/null || true; mlflow_server=
  echo "wrote $out/registry.png $out/registry-experiments.png"
}

if [ "${1:-}" = registry ]; then registry; exit 0; fi

"$bin" create --from-onnx "$repo/tests/fixtures/tiny-phi3" --out "$work/tiny-phi3-mlflow" --task chat >/dev/null 2>&1

# 1. Library + chat with replies and their usage lines.
start "$work/tiny-phi3-mlflow"
click 320 141 2                                   # Load model
click 820 730; xdotool type --delay 10 "What is the capital of Spain?"; xdotool key Return; sleep 2
click 820 730; xdotool type --delay 10 "Tell me a story about a river and a boat."; xdotool key Return; sleep 2
shot chat.png

# 2. The model editor, scrolled to the signature table.
click 356 99 1                                    # Model tab
xdotool mousemove 800 500; for _ in $(seq 12); do xdotool click 5; sleep 0.05; done; sleep 0.5
shot model-editor.png

# 3. An export in progress (a large artifact makes it last long enough to see).
head -c $((1200 * 1024 * 1024)) /dev/urandom > "$work/tiny-phi3-mlflow/artifacts/phi3/extra-weights.bin"
quit
start "$work/tiny-phi3-mlflow"
click 356 99 1                                    # Model tab
click 1212 141 1                                  # Export package…
click 482 407 0.3                                 # one .zip file
click 428 467 0.35                                # Export
shot export.png
sleep 5
quit
echo "wrote $out/chat.png $out/model-editor.png $out/export.png"
registry
