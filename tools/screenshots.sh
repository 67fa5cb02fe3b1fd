#!/usr/bin/env bash
# Screenshots of the real ModelDesk window for the README, taken under Xvfb.
#
#   tools/screenshots.sh            # writes screenshots/*.png
#
# Needs: apt-get install xvfb openbox xdotool imagemagick libgl1-mesa-dri; a release build
# (cargo build --release). Clicks at fixed positions of a 1280x780 window at the top left.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${MODELDESK:-${CARGO_TARGET_DIR:-$repo/target}/release/modeldesk}
out=$repo/screenshots
work=$(mktemp -d "${TMPDIR:-/tmp}/modeldesk-shots.XXXXXX")
display=:${SCREEN_NUMBER:-97}
cleanup() { pkill -f "$work" 2>/dev/null || true; kill "${xvfb:-}" "${wm:-}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
Xvfb "$display" -screen 0 1280x800x24 >/dev/null 2>&1 & xvfb=$!
sleep 1
DISPLAY=$display openbox >/dev/null 2>&1 & wm=$!
sleep 1
export DISPLAY=$display MODELDESK_HOME=$work/home
mkdir -p "$out"

start() {  # start the app on a folder and place its window
  "$bin" "$1" >"$work/app.log" 2>&1 &
  for _ in $(seq 50); do window=$(xdotool search --name ModelDesk 2>/dev/null | head -1) && [ -n "$window" ] && break; sleep 0.2; done
  xdotool windowmove "$window" 0 0; xdotool windowsize "$window" 1280 780; sleep 1.5
}
shot() { import -window root "$out/$1"; }
click() { xdotool mousemove "$1" "$2" click 1; sleep "${3:-0.5}"; }

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
pkill -f "$work/tiny-phi3-mlflow" || true; sleep 1
start "$work/tiny-phi3-mlflow"
click 356 99 1                                    # Model tab
click 1212 141 1                                  # Export package…
click 482 407 0.3                                 # one .zip file
click 428 467 0.35                                # Export
shot export.png
sleep 5
echo "wrote $out/chat.png $out/model-editor.png $out/export.png"
