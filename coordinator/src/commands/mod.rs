//! One module per subcommand; each exposes `run(args) -> anyhow::Result<ExitCode>`.

use std::process::ExitCode;

use crate::cli::{Cli, Command};

pub mod calendar;
pub mod check_leakage;
pub mod features;
pub mod launch;
pub mod leaderboard;
pub mod plan;
pub mod predict;
pub mod remote;
pub mod train;
pub mod worker;

/// Sends a parsed command line to its subcommand.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Launch(args) => launch::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Train(args) => train::run(args),
        Command::Predict(args) => predict::run(args),
        Command::Worker(args) => worker::run(args),
        Command::Status(args) => remote::status(args),
        Command::Leaderboard(args) => leaderboard::run(args),
        Command::Cancel(args) => remote::cancel(args),
        Command::RetryFailed(args) => remote::retry_failed(args),
        Command::CheckLeakage(args) => check_leakage::run(args),
        Command::Features(args) => features::run(args),
        Command::Calendar(args) => calendar::run(args),
    }
}
