//! `sweep leaderboard`.

use std::process::ExitCode;

use crate::cli::LeaderboardArgs;

/// Runs the command.
pub fn run(_args: LeaderboardArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
