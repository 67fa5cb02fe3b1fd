#!/usr/bin/env bash
# Builds the macOS .app and .dmg into dist/ (run on a Mac with the Rust toolchain and Python 3).
#
#   cargo install cargo-packager --locked     # once
#   tools/package-macos.sh
#
# build.rs fetches the official onnxruntime 1.31.1 macOS arm64 wheel from PyPI and puts
# libonnxruntime.1.31.1.dylib beside the release binary; it is copied into the bundle's
# Contents/Resources, where ModelDesk looks for it. The bundle's Info.plist declares folders
# (public.folder) as a document type, from `file-associations` in Cargo.toml.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
target_dir=${CARGO_TARGET_DIR:-$repo/target}
cargo build --release
rm -rf dist && mkdir -p dist/staging
cp "$target_dir/release/modeldesk" dist/staging/
cp "$target_dir"/release/libonnxruntime.*.dylib dist/staging/
cargo packager --formats app,dmg --out-dir dist
ls -la dist
