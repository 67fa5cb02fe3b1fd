// Release builds on Windows start without a console window; subcommands attach to the console
// of the terminal they were started from (see `attach_parent_console`).
#![cfg_attr(all(windows, not(debug_assertions)), windows_subsystem = "windows")]

use std::process::ExitCode;

use clap::Parser as _;
use modeldesk::cli::{self, Cli};

fn main() -> ExitCode {
    // Let `modeldesk show … | head` end quietly, like other command-line tools, instead of
    // failing on the closed pipe.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    #[cfg(windows)]
    attach_parent_console();
    modeldesk::crash::install(modeldesk::app_dirs::AppDirs::discover().as_ref());
    let args = Cli::parse();
    let result = match args.command {
        Some(command) => cli::run(command),
        None => modeldesk::gui::run_window(args.path),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if let Some(reported) = error.downcast_ref::<cli::Reported>() {
                return ExitCode::from(reported.0);
            }
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// A GUI-subsystem program has no console; when started from a terminal, use that terminal's so
/// `modeldesk doctor` and friends print where the user typed them.
#[cfg(windows)]
fn attach_parent_console() {
    use windows_sys::Win32::System::Console::{ATTACH_PARENT_PROCESS, AttachConsole};
    // SAFETY: AttachConsole has no preconditions; failure (no parent console) is harmless.
    unsafe {
        AttachConsole(ATTACH_PARENT_PROCESS);
    }
}
