#!/usr/bin/env bash
# Installs the .deb into a scratch root and unpacks the .tar.gz, then checks what a user gets:
# the desktop entry validates, the installed binary starts under Xvfb with an empty environment
# (no ORT_DYLIB_PATH, no Python on PATH) and shows the welcome view, opens the tiny fixture from
# a path argument, and generates a reply from the command line. Screenshots go to dist/.
#
#   tools/package-linux.sh && tools/test-linux-package.sh
#
# Needs: apt-get install xvfb openbox xdotool imagemagick desktop-file-utils libgl1-mesa-dri
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
scratch=$(mktemp -d "${TMPDIR:-/tmp}/modeldesk-pkgtest.XXXXXX")
display=:${SCREEN_NUMBER:-95}
cleanup() { pkill -f "$scratch" 2>/dev/null || true; kill "${xvfb:-}" "${wm:-}" 2>/dev/null || true; rm -rf "$scratch"; }
trap cleanup EXIT

deb=$(ls dist/*.deb | head -1)
tarball=$(ls dist/*.tar.gz | head -1)
dpkg-deb -x "$deb" "$scratch/root"
installed="$scratch/root/usr/bin/modeldesk"
desktop-file-validate "$scratch/root/usr/share/applications/modeldesk.desktop"
echo "ok: desktop entry validates"
test -f "$scratch/root/usr/share/icons/hicolor/256x256/apps/modeldesk.png" && echo "ok: icon in the hicolor theme"

clean_env=(env -i "HOME=$scratch/home" "DISPLAY=$display")
Xvfb "$display" -screen 0 1280x800x24 >/dev/null 2>&1 & xvfb=$!
sleep 1
DISPLAY=$display openbox >/dev/null 2>&1 & wm=$!
sleep 1

window_shot() {  # start the installed app with "$@", screenshot it, close it
  local name=$1; shift
  "${clean_env[@]}" "$installed" "$@" >"$scratch/app-$name.log" 2>&1 &
  local pid=$! window=""
  for _ in $(seq 60); do window=$(DISPLAY=$display xdotool search --name ModelDesk 2>/dev/null | head -1) && [ -n "$window" ] && break; sleep 0.25; done
  [ -n "$window" ] || { echo "FAIL: no window ($name)"; cat "$scratch/app-$name.log"; exit 1; }
  DISPLAY=$display xdotool windowmove "$window" 0 0 windowsize "$window" 1280 780
  sleep 2
  DISPLAY=$display import -window root "dist/package-$name.png"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "ok: window shown ($name), screenshot dist/package-$name.png"
}
window_shot welcome
window_shot fixture "$repo/tests/fixtures/tiny-phi3"

reply=$("${clean_env[@]}" "$installed" generate --model "$repo/tests/fixtures/tiny-phi3" --user "Hello" --max-tokens 8 --json)
echo "$reply" | python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["object"]=="chat.completion" and r["usage"]["completion_tokens"]>0, r; print("ok: installed CLI replied,", r["usage"])'

mkdir -p "$scratch/portable"
tar -C "$scratch/portable" -xzf "$tarball"
portable=$(ls -d "$scratch"/portable/*/ | head -1)
"${clean_env[@]}" "$portable/modeldesk" doctor --json --model "$repo/tests/fixtures/tiny-phi3" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("ok: portable build loads ONNX Runtime", r["onnxruntime"]["version"], "from", r["onnxruntime"]["library"])'
echo "all package checks passed"
