//! `sweep check-leakage`.

use std::process::ExitCode;

use crate::cli::SeriesArgs;

/// Runs the command.
pub fn run(_args: SeriesArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
