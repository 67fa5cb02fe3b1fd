//! Puts the official ONNX Runtime library beside the binaries cargo builds, so that `cargo run` and
//! `cargo test` work on a fresh machine with nothing but Rust and Python 3.
//!
//! Why a wheel from PyPI: Microsoft publishes ONNX Runtime for every desktop platform inside the
//! `onnxruntime` wheels, PyPI is reachable wherever `pip` works, and `pip download` handles proxies
//! and mirrors the way the user already configured them. `ort`'s own `download-binaries` feature
//! fetches from a third-party CDN instead, which is often unreachable.
//!
//! Steps (each skipped when its result exists): download the wheel for the target platform with
//! `python3 -m pip download`, check its SHA-256 against the pin below, extract the one library file
//! into a per-user cache (`MODELDESK_ORT_CACHE` or the platform cache dir), then copy it next to the
//! binaries in the target directory. Later builds are offline. Nothing here fails the build: without
//! the library the app starts and explains how to pick one, and `ORT_DYLIB_PATH` always wins.

use std::{
    env, fs,
    io::{self, Read as _},
    path::{Path, PathBuf},
    process::Command,
};

use sha2::{Digest as _, Sha256};

const ORT_VERSION: &str = "1.31.1";

struct WheelPin {
    platform_tag: &'static str,
    sha256: &'static str,
    member: &'static str,
}

/// The official wheels (cp312 builds; the native library inside is the same for every Python).
fn wheel_for_target(target: &str) -> Option<WheelPin> {
    let pin = |platform_tag, sha256, member| Some(WheelPin { platform_tag, sha256, member });
    match target {
        "x86_64-unknown-linux-gnu" => pin(
            "manylinux_2_28_x86_64",
            "1f3dea47f2f0e5117c2404cea7d21fd253ae7836a3bf167a501cdfbb2600d536",
            "onnxruntime/capi/libonnxruntime.so.1.31.1",
        ),
        "aarch64-unknown-linux-gnu" => pin(
            "manylinux_2_28_aarch64",
            "0b9a492176886992e0e875f06bc0367e333f5fff11711a2d642e18b02f3009cc",
            "onnxruntime/capi/libonnxruntime.so.1.31.1",
        ),
        "aarch64-apple-darwin" => pin(
            "macosx_14_0_arm64",
            "96dd2564b10ea7153ad9c207e7cd8e5917cb3ba521e0e0a62ac03486fdc8d56c",
            "onnxruntime/capi/libonnxruntime.1.31.1.dylib",
        ),
        "x86_64-pc-windows-msvc" => pin(
            "win_amd64",
            "ae8a9a351efda685cc59a66226cdefaa37a126c1d66872ca23a2de9425326130",
            "onnxruntime/capi/onnxruntime.dll",
        ),
        "aarch64-pc-windows-msvc" => pin(
            "win_arm64",
            "fe8b9ac1ae8e894e12c47ee82e4f6dfc1835768133687257866469fda80d0bf1",
            "onnxruntime/capi/onnxruntime.dll",
        ),
        _ => None,
    }
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for var in ["ORT_DYLIB_PATH", "MODELDESK_ORT_CACHE", "MODELDESK_SKIP_ORT_DOWNLOAD", "PYTHON"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rustc-env=MODELDESK_ORT_VERSION={ORT_VERSION}");
    if let Err(message) = provide_library() {
        println!("cargo:warning=ONNX Runtime was not placed beside the binaries: {message}");
        println!(
            "cargo:warning=ModelDesk still builds; at run time set ORT_DYLIB_PATH or pick the library in the app."
        );
    }
}

fn provide_library() -> Result<(), String> {
    if env::var_os("MODELDESK_SKIP_ORT_DOWNLOAD").is_some() {
        return Ok(());
    }
    let target = env::var("TARGET").map_err(|e| e.to_string())?;
    let pin = wheel_for_target(&target)
        .ok_or_else(|| format!("no official ONNX Runtime {ORT_VERSION} wheel is pinned for {target}"))?;
    let file_name = Path::new(pin.member)
        .file_name()
        .ok_or("pinned wheel member has no file name")?
        .to_owned();
    let cache_dir = cache_dir()?.join(format!("onnxruntime-{ORT_VERSION}")).join(&target);
    let cached = cache_dir.join(&file_name);
    if !cached.is_file() {
        fs::create_dir_all(&cache_dir).map_err(|e| format!("creating {}: {e}", cache_dir.display()))?;
        let wheel = download_wheel(&pin, &cache_dir)?;
        extract_member(&wheel, pin.member, &cached)?;
        let _ = fs::remove_file(&wheel);
    }
    // OUT_DIR is <target-dir>/<profile>/build/<pkg>-<hash>/out: the binaries live three levels up,
    // test and bench executables one further down in deps/.
    let out_dir = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let profile_dir = out_dir.ancestors().nth(3).ok_or("unexpected OUT_DIR layout")?;
    for dir in [profile_dir.to_path_buf(), profile_dir.join("deps")] {
        fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        copy_if_changed(&cached, &dir.join(&file_name))?;
    }
    Ok(())
}

fn cache_dir() -> Result<PathBuf, String> {
    if let Some(dir) = env::var_os("MODELDESK_ORT_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    directories::BaseDirs::new()
        .map(|dirs| dirs.cache_dir().join("modeldesk"))
        .ok_or_else(|| "no home directory to keep a cache in (set MODELDESK_ORT_CACHE)".to_owned())
}

fn download_wheel(pin: &WheelPin, cache_dir: &Path) -> Result<PathBuf, String> {
    let download_dir = cache_dir.join("download");
    let _ = fs::remove_dir_all(&download_dir);
    let python = env::var("PYTHON").unwrap_or_else(|_| {
        if cfg!(windows) { "python".to_owned() } else { "python3".to_owned() }
    });
    let output = Command::new(&python)
        .args(["-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"])
        .args(["--platform", pin.platform_tag, "--python-version", "3.12", "--implementation", "cp"])
        .arg(format!("onnxruntime=={ORT_VERSION}"))
        .arg("-d")
        .arg(&download_dir)
        .output()
        .map_err(|e| format!("running `{python} -m pip download`: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`{python} -m pip download onnxruntime=={ORT_VERSION}` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let wheel = fs::read_dir(&download_dir)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|ext| ext == "whl"))
        .ok_or("pip reported success but left no wheel")?;
    let digest = sha256_file(&wheel).map_err(|e| format!("hashing {}: {e}", wheel.display()))?;
    if digest != pin.sha256 {
        return Err(format!(
            "{} has SHA-256 {digest}, expected {} (the official wheel); refusing to use it",
            wheel.display(),
            pin.sha256
        ));
    }
    Ok(wheel)
}

fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher)?;
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn extract_member(wheel: &Path, member: &str, destination: &Path) -> Result<(), String> {
    let file = fs::File::open(wheel).map_err(|e| e.to_string())?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| format!("reading {}: {e}", wheel.display()))?;
    let mut entry = archive
        .by_name(member)
        .map_err(|e| format!("{member} not found in {}: {e}", wheel.display()))?;
    let mut bytes = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
    entry.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    let partial = destination.with_extension("partial");
    fs::write(&partial, &bytes).map_err(|e| format!("writing {}: {e}", partial.display()))?;
    fs::rename(&partial, destination).map_err(|e| format!("renaming into {}: {e}", destination.display()))
}

fn copy_if_changed(source: &Path, destination: &Path) -> Result<(), String> {
    let same = match (fs::metadata(source), fs::metadata(destination)) {
        (Ok(a), Ok(b)) => a.len() == b.len(),
        _ => false,
    };
    if !same {
        let partial = destination.with_extension("partial");
        fs::copy(source, &partial).map_err(|e| format!("copying to {}: {e}", partial.display()))?;
        fs::rename(&partial, destination).map_err(|e| format!("renaming into {}: {e}", destination.display()))?;
    }
    Ok(())
}
