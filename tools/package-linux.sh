#!/usr/bin/env bash
# Builds the Linux packages into dist/: a .deb (cargo-packager; desktop entry, hicolor icons,
# ONNX Runtime in /usr/lib/modeldesk) and a portable .tar.gz (binary with the library beside it).
#
#   cargo install cargo-packager --locked     # once
#   tools/package-linux.sh
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
target_dir=${CARGO_TARGET_DIR:-$repo/target}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(uname -m)
cargo build --release
release="$target_dir/release"
library=$(ls "$release"/libonnxruntime.so.* | head -1)
rm -rf dist && mkdir -p dist/staging
cp "$library" dist/staging/
strip -o dist/staging/modeldesk "$release/modeldesk" 2>/dev/null || cp "$release/modeldesk" dist/staging/modeldesk

cargo packager --formats deb --out-dir dist

portable="modeldesk-$version-linux-$arch"
mkdir -p "dist/$portable/icons"
cp dist/staging/modeldesk "$library" "dist/$portable/"
sed 's/{{exec}}/modeldesk/; s/{{icon}}/modeldesk/' assets/linux/modeldesk.desktop > "dist/$portable/modeldesk.desktop"
cp assets/icons/256.png "dist/$portable/icons/modeldesk.png"
cp README.md "dist/$portable/"
tar -C dist -czf "dist/$portable.tar.gz" "$portable"
rm -rf "dist/$portable"
ls -la dist/*.deb dist/*.tar.gz
