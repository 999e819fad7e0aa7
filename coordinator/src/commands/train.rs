//! `sweep train`.

use std::process::ExitCode;

use crate::cli::TrainArgs;

/// Runs the command.
pub fn run(_args: TrainArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
