//! `sweep status`, `sweep cancel` and `sweep retry-failed`.

use std::process::ExitCode;

use crate::cli::SweepRefArgs;

/// `sweep status`.
pub fn status(_args: SweepRefArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}

/// `sweep cancel`.
pub fn cancel(_args: SweepRefArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}

/// `sweep retry-failed`.
pub fn retry_failed(_args: SweepRefArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
