//! The `sweep` command. Parses arguments, sets up logging, runs the command and maps its outcome
//! to an exit code: 0 done, 1 finished with failures (failed trials, failed checks), 2 usage,
//! configuration, data or connection error.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = coordinator::cli::Cli::parse();
    coordinator::logging::init(cli.verbose);
    coordinator::run(cli)
}
