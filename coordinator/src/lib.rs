//! The `sweep` command line: plans and launches hyperparameter sweeps (embedded or over NATS
//! JetStream), runs workers, trains and predicts standalone, and reports leaderboards.

pub mod cli;
pub mod commands;
pub mod engine;
pub mod leaderboard;
pub mod logging;
pub mod nats;
pub mod progress;
pub mod store;

use std::process::ExitCode;

/// Exit code for a run that finished but with failures (failed trials or checks).
pub const EXIT_FAILURES: u8 = 1;
/// Exit code for usage, configuration, data or connection errors.
pub const EXIT_ERROR: u8 = 2;

/// Runs one parsed command line and returns the process exit code. Errors are printed to
/// stderr with every context layer, so a message names the file, row or key involved.
pub fn run(cli: cli::Cli) -> ExitCode {
    match commands::dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("sweep: error: {err:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
