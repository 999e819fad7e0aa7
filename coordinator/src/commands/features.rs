//! `sweep features`.

use std::process::ExitCode;

use crate::cli::FeaturesArgs;

/// Runs the command.
pub fn run(_args: FeaturesArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
