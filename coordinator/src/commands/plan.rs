//! `sweep plan`.

use std::process::ExitCode;

use crate::cli::PlanArgs;

/// Runs the command.
pub fn run(_args: PlanArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
