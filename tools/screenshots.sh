#!/usr/bin/env bash
# Screenshots of the real ModelDesk window for the README, taken under Xvfb.
#
#   tools/screenshots.sh            # writes screenshots/*.png
#   tools/screenshots.sh registry   # only the Registry view's (registry*.png)
#
# Needs: apt-get install xvfb openbox xdotool imagemagick libgl1-mesa-dri curl; a release build
# (cargo build --release); the demo model of tools/make_demo_model.py (the chat's replies are
# what that model really answers); for the Registry view a Python with mlflow (MLFLOW_PYTHON,
# default python3) to run an `mlflow server` on a scratch store. Clicks at fixed positions of a
# 1280x780 window at the top left.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${MODELDESK:-${CARGO_TARGET_DIR:-$repo/target}/release/modeldesk}
demo=${MODELDESK_DEMO_DIR:-$HOME/.cache/modeldesk/demo-model}
[ "${1:-}" = registry ] || [ -f "$demo/genai_config.json" ] || { echo "no demo model at $demo: run tools/make_demo_model.py first" >&2; exit 1; }
out=$repo/screenshots
work=$(mktemp -d "${TMPDIR:-/tmp}/modeldesk-shots.XXXXXX")
display=:${SCREEN_NUMBER:-97}
# Everything started here is stopped by its own id (the MLflow server by its process group).
cleanup() {
  kill "${app:-}" "${xvfb:-}" "${wm:-}" "${hub:-}" 2>/dev/null || true
  if [ -n "${mlflow_server:-}" ]; then kill -- "-$mlflow_server" 2>/dev/null || true; fi
  sleep 1; rm -rf "$work"
}
trap cleanup EXIT
Xvfb "$display" -screen 0 1280x800x24 >/dev/null 2>&1 & xvfb=$!
sleep 1
DISPLAY=$display openbox >/dev/null 2>&1 & wm=$!
sleep 1
export DISPLAY=$display
mkdir -p "$out"

start() {  # start the app with a fresh home (on a folder, if given) and place its window
  if [ -n "${app:-}" ]; then
    kill "$app" 2>/dev/null || true; wait "$app" 2>/dev/null || true
    while xdotool search --name ModelDesk >/dev/null 2>&1; do sleep 0.2; done
  fi
  rm -rf "$work/home"; export MODELDESK_HOME=$work/home
  "$bin" "$@" >"$work/app.log" 2>&1 & app=$!
  for _ in $(seq 50); do window=$(xdotool search --name ModelDesk 2>/dev/null | head -1) && [ -n "$window" ] && break; sleep 0.2; done
  xdotool windowmove "$window" 0 0; xdotool windowsize "$window" 1280 780; sleep 1.5
}
shot() { import -window root "$out/$1"; }
click() { xdotool mousemove "$1" "$2" click 1; sleep "${3:-0.5}"; }
say() { click 820 720 0.3; xdotool type --delay 20 "$1"; xdotool key Return; sleep "${2:-5}"; }

registry() {
  # An MLflow server with a few registered models, versions, aliases and experiments.
  local port=5077 url
  url=http://127.0.0.1:$port
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid "${MLFLOW_PYTHON:-python3}" -m mlflow server \
    --backend-store-uri "sqlite:///$work/mlflow.db" --artifacts-destination "$work/artifacts" --serve-artifacts \
    --host 127.0.0.1 --port $port --workers 1 >"$work/mlflow.log" 2>&1 & mlflow_server=$!
  for _ in $(seq 120); do curl -sf "$url/health" >/dev/null && break; sleep 1; done
  local push=("$bin" mlflow push --tracking-uri "$url")
  "$bin" create --from-onnx "$repo/tests/fixtures/tiny-phi3" --out "$work/phi3-chat" --task chat >/dev/null 2>&1
  "$bin" create --from-onnx "$repo/tests/fixtures/tiny-phi3" --out "$work/phi3-prompt" --task prompt >/dev/null 2>&1
  "${push[@]}" "$work/phi3-chat" --name phi3-chat --alias champion --tag team=desk >/dev/null 2>&1
  "${push[@]}" "$work/phi3-chat" --name phi3-chat --alias staging --tag team=desk --tag quant=int4 \
    --description "Phi-3 mini chat, int4 CPU build, system prompt tuned for support answers" >/dev/null 2>&1
  "${push[@]}" "$work/phi3-prompt" --name phi3-prompt --alias champion --experiment prompts \
    --description "Plain prompt completion" >/dev/null 2>&1
  "${push[@]}" "$work/phi3-chat" --name support-assistant --alias champion --experiment support --tag owner=desk-team >/dev/null 2>&1

  start
  click 121 34 1                                    # Registry
  click 537 129 0.3; xdotool type --delay 10 "$url" # Tracking URI
  click 328 249 4                                   # Connect
  click 310 99 0.8                                  # fold the Server section
  click 320 287 1                                   # phi3-chat: its versions
  shot registry.png
  click 455 192 2                                   # Experiments
  click 322 345 2                                   # Default
  click 700 286 2                                   # its newest run
  shot registry-experiments.png
  kill "$app"; wait "$app" 2>/dev/null || true; app=
  kill -- "-$mlflow_server"; wait "$mlflow_server" 2>/dev/null || true; mlflow_server=
  echo "wrote $out/registry.png $out/registry-experiments.png"
}

if [ "${1:-}" = registry ]; then registry; exit 0; fi

# Folders a newcomer has: a Hub download holding two variants, a transformers-flavor package.
download=$work/folders/Phi-3-mini-4k-instruct-onnx
for variant in cpu_and_mobile/cpu-int4-rtn-block-32-acc-level-4 cuda/cuda-int4-rtn-block-32; do
  mkdir -p "$download/$variant"; ln -s "$demo"/* "$download/$variant/"
done
cp -r "$repo/../shared/fixtures/mlflow-examples/v3-transformers-llm-v1-chat" "$work/folders/phi3-transformers"

# 1. First start: the welcome view.
start
shot welcome.png

# 2. Get a model, mid-download, from a slow local Hub-protocol server.
python3 "$repo/tools/screenshot_hub.py" "$demo" --port 8765 --rate 1500000 & hub=$!
sleep 1
export HF_ENDPOINT=http://127.0.0.1:8765 HF_HUB_CACHE=$work/hf-cache
start
click 165 90 1.5                                   # Get a model…
click 327 245 8                                    # Download (Phi-3 mini 4k, CPU int4)
shot get-model.png
unset HF_ENDPOINT HF_HUB_CACHE

# 3. The top of a Hub download: the models found inside.
start "$download"
shot picker.png

# 4. A model ModelDesk cannot run itself: what it is and what to do.
start "$work/folders/phi3-transformers"
shot explain.png

# 5. Chat with the demo model.
start "$demo"
click 320 141 4                                    # Load model
say "What does ModelDesk do?"
say "Does ModelDesk work offline?"
shot chat.png

# 6. The model editor of a package, scrolled to the signature table; an export in progress.
"$bin" create --from-onnx "$repo/tests/fixtures/tiny-phi3" --out "$work/tiny-phi3-mlflow" --task chat >/dev/null 2>&1
start "$work/tiny-phi3-mlflow"
click 356 99 1                                     # Model tab
xdotool mousemove 800 500; for _ in $(seq 12); do xdotool click 5; sleep 0.05; done; sleep 0.5
shot model-editor.png
head -c $((1200 * 1024 * 1024)) /dev/urandom > "$work/tiny-phi3-mlflow/artifacts/phi3/extra-weights.bin"
start "$work/tiny-phi3-mlflow"
click 356 99 1                                     # Model tab
click 1212 141 1                                   # Export package…
click 482 407 0.3                                  # one .zip file
click 428 467 2                                    # Export (the shot catches it mid-way)
shot export.png
sleep 5
registry
echo "wrote $(ls "$out"/*.png | tr '\n' ' ')"
