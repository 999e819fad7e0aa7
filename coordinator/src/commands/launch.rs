//! `sweep launch`.

use std::process::ExitCode;

use crate::cli::LaunchArgs;

/// Runs the command.
pub fn run(_args: LaunchArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
