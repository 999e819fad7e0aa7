//! `sweep worker`.

use std::process::ExitCode;

use crate::cli::WorkerArgs;

/// Runs the command.
pub fn run(_args: WorkerArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
