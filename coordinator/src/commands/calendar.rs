//! `sweep calendar`.

use std::process::ExitCode;

use crate::cli::CalendarArgs;

/// Runs the command.
pub fn run(_args: CalendarArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
