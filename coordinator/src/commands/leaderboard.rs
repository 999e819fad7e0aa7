//! `sweep leaderboard`: the ranked trials of a sweep, from its run folder.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::{LeaderboardArgs, LeaderboardFormat};
use crate::leaderboard::{Format, Leaderboard};
use crate::store::{read_manifest, read_results, RunDir, StoreError, RESULTS_FILE};

/// Runs the command: reads `DIR/<sweep>/results.jsonl` (and the objective from `sweep.json`)
/// and prints the leaderboard on stdout in the `--format` asked for (`--json` meaning JSON),
/// optionally only one `--category` and the `--top` N trials of each series.
pub fn run(args: LeaderboardArgs) -> anyhow::Result<ExitCode> {
    let sweep = &args.sweep;
    let (results, objective) = if sweep.nats.url.is_some() {
        crate::nats::launch::results(&sweep.nats, &sweep.sweep)?
    } else {
        let root = RunDir::path_of(&sweep.out, &sweep.sweep);
        let path = root.join(RESULTS_FILE);
        if !path.exists() {
            return Err(StoreError::NoSweep { path: root }.into());
        }
        let objective = read_manifest(&root)?
            .map(|m| m.objective)
            .unwrap_or_default();
        (read_results(&path)?, objective)
    };

    let mut board = Leaderboard::build(&sweep.sweep, &results, objective);
    board.filter(args.top, args.category.as_deref());
    let format = match args.format {
        _ if sweep.json => Format::Json,
        LeaderboardFormat::Table => Format::Table,
        LeaderboardFormat::Csv => Format::Csv,
        LeaderboardFormat::Json => Format::Json,
        LeaderboardFormat::Markdown => Format::Markdown,
    };
    let text = board.render(format);
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("writing to stdout")?;
    Ok(ExitCode::SUCCESS)
}
