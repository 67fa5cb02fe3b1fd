//! Crash safety with the real binary: `kill -9` at 20 moments of an export and of an edit leaves
//! the source byte-identical (or, for an edit, completely updated), never half-written, and the
//! next start removes every staging folder and temporary file the killed run left. Ctrl-C,
//! SIGTERM and SIGHUP stop an export at once and leave nothing.

mod hostile_support;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use hostile_support::{junk, package_in, run, snapshot};

const TRIALS: u32 = 20;

fn spawn(args: &[&std::ffi::OsStr], home: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_modeldesk"))
        .args(args)
        .env("MODELDESK_HOME", home)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start modeldesk")
}

fn signal(child: &mut Child, signal: i32) -> Option<i32> {
    // SAFETY: sending a signal to our own child, which has not been waited for yet.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
    child.wait().expect("wait for the child").code()
}

/// Entries of `dir` whose names mark ModelDesk's staging folders or temporary files.
fn debris(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with(".modeldesk-")).collect()
        })
        .unwrap_or_default()
}

/// Waits until a staging entry shows in `dir` (or the child has ended, or 60 s have passed).
fn wait_for_debris(dir: &Path, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while debris(dir).is_empty() && Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn journal_markers(home: &Path) -> usize {
    std::fs::read_dir(home.join("data/staging")).map(|entries| entries.count()).unwrap_or(0)
}

/// The `trial`-th of [`TRIALS`] moments spread from the start to a little past the end of a run
/// that takes `duration`, so kills land before, during and after the final rename.
fn kill_delay(duration: Duration, trial: u32) -> Duration {
    duration.mul_f64(1.25 * f64::from(trial) / f64::from(TRIALS))
}

/// A package with a 96 MB incompressible artifact, so an export takes a while.
fn big_package(scratch: &Path) -> PathBuf {
    let package = package_in(scratch, "package");
    std::fs::write(package.join("artifacts/phi3/big.bin"), junk(96 << 20, 11)).unwrap();
    package
}

#[test]
fn export_killed_at_20_moments_leaves_nothing_after_the_next_start() {
    let scratch = tempfile::tempdir().unwrap();
    let package = big_package(scratch.path());
    let before = snapshot(&package);
    let home = tempfile::tempdir().unwrap();
    // How long a whole export takes here, to spread the kills over it.
    let timing = scratch.path().join("timing");
    let started = Instant::now();
    let full = run(&["export", package.to_str().unwrap(), "--out", timing.to_str().unwrap()], home.path());
    let duration = started.elapsed();
    assert_eq!(full.code, Some(0), "{}", full.output());
    std::fs::remove_dir_all(&timing).unwrap();
    let (mut debris_seen, mut complete, mut absent) = (0, 0, 0);
    for trial in 0..TRIALS {
        let out = scratch.path().join(format!("out{trial}"));
        std::fs::create_dir_all(&out).unwrap();
        let destination = out.join("model");
        let mut child = spawn(&["export".as_ref(), package.as_os_str(), "--out".as_ref(), destination.as_os_str()], home.path());
        if trial % 4 == 1 {
            // Every fourth kill waits for the staging folder, so some land mid-export however
            // slow or fast this machine is at the moment.
            wait_for_debris(&out, &mut child);
        } else {
            std::thread::sleep(kill_delay(duration, trial));
        }
        signal(&mut child, libc::SIGKILL);
        assert_eq!(snapshot(&package), before, "trial {trial}: the source changed");
        if destination.exists() {
            assert_eq!(snapshot(&destination), before, "trial {trial}: the destination is not a complete copy");
            complete += 1;
        } else {
            absent += 1;
        }
        debris_seen += usize::from(!debris(&out).is_empty());
        // The next start (any subcommand) removes what the killed run left.
        let next = run(&["validate", package.to_str().unwrap()], home.path());
        assert_eq!(next.code, Some(0), "{}", next.output());
        assert!(debris(&out).is_empty(), "trial {trial}: left {:?}", debris(&out));
        assert_eq!(journal_markers(home.path()), 0, "trial {trial}: journal not emptied");
        std::fs::remove_dir_all(&out).unwrap();
    }
    println!("export: {TRIALS} kills over {:.2} s: {absent} before the rename, {complete} after; {debris_seen} left a staging folder that the next start removed", duration.as_secs_f64());
    assert!(debris_seen >= 3, "too few kills landed mid-export to show the cleanup ({debris_seen})");
}

#[test]
fn edit_killed_at_20_moments_is_all_or_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let package = package_in(scratch.path(), "package");
    let example = scratch.path().join("example.json");
    std::fs::write(&example, format!(r#"{{"prompt": "{}"}}"#, "z".repeat(12 << 20))).unwrap();
    let old_model = std::fs::read(package.join("MLmodel")).unwrap();
    let old_example = std::fs::read(package.join("input_example.json")).unwrap();
    let home = tempfile::tempdir().unwrap();
    let args = ["edit".as_ref(), package.as_os_str(), "--input-example".as_ref(), example.as_os_str(), "--description".as_ref(), "edited".as_ref()];
    // One full run on a copy, for the new contents and the duration.
    let reference = package_in(scratch.path(), "reference");
    let started = Instant::now();
    let mut whole = spawn(&[&args[..1], &[reference.as_os_str()], &args[2..]].concat(), home.path());
    assert_eq!(whole.wait().unwrap().code(), Some(0));
    let duration = started.elapsed();
    let new_model = std::fs::read(reference.join("MLmodel")).unwrap();
    let new_example = std::fs::read(reference.join("input_example.json")).unwrap();
    let (mut old, mut new, mut debris_seen) = (0, 0, 0);
    for trial in 0..TRIALS {
        let mut child = spawn(&args, home.path());
        std::thread::sleep(kill_delay(duration, trial));
        signal(&mut child, libc::SIGKILL);
        let model = std::fs::read(package.join("MLmodel")).unwrap();
        let example_now = std::fs::read(package.join("input_example.json")).unwrap();
        assert!(model == old_model || model == new_model, "trial {trial}: MLmodel is half-written");
        assert!(example_now == old_example || example_now == new_example, "trial {trial}: the example is half-written");
        if model == old_model { old += 1 } else { new += 1 }
        debris_seen += usize::from(!debris(&package).is_empty());
        // The next save in the folder removes temporary files of dead runs; restore the old state.
        std::fs::write(package.join("MLmodel"), &old_model).unwrap();
        std::fs::write(package.join("input_example.json"), &old_example).unwrap();
        let next = run(&["edit", package.to_str().unwrap(), "--description", "next start"], home.path());
        assert_eq!(next.code, Some(0), "{}", next.output());
        assert!(debris(&package).is_empty(), "trial {trial}: left {:?}", debris(&package));
        std::fs::write(package.join("MLmodel"), &old_model).unwrap();
    }
    println!("edit: {TRIALS} kills over {:.3} s: {old} left the old MLmodel, {new} the new one; {debris_seen} left a temporary file that the next save removed", duration.as_secs_f64());
    assert!(old >= 1, "no kill landed before the save finished");
}

#[test]
fn ctrl_c_sigterm_and_sighup_stop_an_export_and_leave_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let package = big_package(scratch.path());
    let home = tempfile::tempdir().unwrap();
    for (name, number) in [("SIGINT", libc::SIGINT), ("SIGTERM", libc::SIGTERM), ("SIGHUP", libc::SIGHUP)] {
        let out = scratch.path().join(name);
        std::fs::create_dir_all(&out).unwrap();
        let destination = out.join("model");
        let mut child = spawn(&["export".as_ref(), package.as_os_str(), "--out".as_ref(), destination.as_os_str()], home.path());
        // Wait until the copy is under way (its staging folder exists), then interrupt it.
        let started = Instant::now();
        while debris(&out).is_empty() && started.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(!debris(&out).is_empty(), "{name}: the export never started copying");
        assert_eq!(signal(&mut child, number), Some(130), "{name}: exit code");
        assert!(std::fs::read_dir(&out).unwrap().next().is_none(), "{name}: left {:?}", debris(&out));
        assert_eq!(journal_markers(home.path()), 0, "{name}: journal marker left");
    }
}
