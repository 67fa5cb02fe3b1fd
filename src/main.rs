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
    let args = Cli::parse();
    let result = match args.command {
        Some(command) => cli::run(command),
        None => modeldesk::app::run_window(args.path),
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
