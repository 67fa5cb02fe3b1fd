# Builds the Windows NSIS installer into dist\ (run in PowerShell on Windows with the Rust
# toolchain and Python 3):
#
#   cargo install cargo-packager --locked     # once
#   powershell -ExecutionPolicy Bypass -File tools\package-windows.ps1
#
# build.rs fetches the official onnxruntime 1.31.1 win_amd64 wheel from PyPI and puts
# onnxruntime.dll beside the release binary; the installer puts it beside modeldesk.exe, adds a
# Start-menu shortcut, and the icon is embedded by cargo-packager from assets\icons\modeldesk.ico.
$ErrorActionPreference = "Stop"
Set-Location (Join-Path $PSScriptRoot "..")
$target = if ($env:CARGO_TARGET_DIR) { $env:CARGO_TARGET_DIR } else { "target" }
cargo build --release
Remove-Item -Recurse -Force dist -ErrorAction SilentlyContinue
New-Item -ItemType Directory -Force dist\staging | Out-Null
Copy-Item "$target\release\modeldesk.exe" dist\staging\
Copy-Item "$target\release\onnxruntime.dll" dist\staging\
cargo packager --formats nsis --out-dir dist
Get-ChildItem dist
