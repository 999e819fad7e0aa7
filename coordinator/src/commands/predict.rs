//! `sweep predict`.

use std::process::ExitCode;

use crate::cli::PredictArgs;

/// Runs the command.
pub fn run(_args: PredictArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
