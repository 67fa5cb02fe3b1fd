#!/usr/bin/env bash
# Screenshots of the real ModelDesk window for the README, taken under Xvfb.
#
#   tools/screenshots.sh            # writes screenshots/*.png
#
# Needs: apt-get install xvfb openbox xdotool imagemagick libgl1-mesa-dri; a release build
# (cargo build --release); the demo model of tools/make_demo_model.py (the chat's replies are
# what that model really answers). Clicks at fixed positions of a 1280x780 window at the top left.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${MODELDESK:-${CARGO_TARGET_DIR:-$repo/target}/release/modeldesk}
demo=${MODELDESK_DEMO_DIR:-$HOME/.cache/modeldesk/demo-model}
[ -f "$demo/genai_config.json" ] || { echo "no demo model at $demo: run tools/make_demo_model.py first" >&2; exit 1; }
out=$repo/screenshots
work=$(mktemp -d "${TMPDIR:-/tmp}/modeldesk-shots.XXXXXX")
display=:${SCREEN_NUMBER:-97}
cleanup() { pkill -f "$work" 2>/dev/null || true; kill "${app:-}" "${xvfb:-}" "${wm:-}" "${hub:-}" 2>/dev/null || true; rm -rf "$work"; }
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
echo "wrote $(ls "$out"/*.png | tr '\n' ' ')"
