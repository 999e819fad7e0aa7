//! `sweep status`, `sweep cancel` and `sweep retry-failed` against NATS JetStream.
//!
//! `status` and `cancel` read and mark the sweep's manifest and results on the server;
//! `retry-failed` queues the next attempt of every trial whose latest attempt ended `error` or
//! `cancelled`. A running `sweep launch` (or the next one) picks their results up.

use std::process::ExitCode;

use anyhow::Context;
use comfy_table::Table;

use crate::cli::SweepRefArgs;
use crate::nats::query::{self, SweepSnapshot};
use crate::nats::session::Session;

/// Connects and opens the protocol's objects for a one-shot command.
fn open(args: &SweepRefArgs) -> anyhow::Result<(tokio::runtime::Runtime, Session)> {
    if args.nats.url.is_none() {
        anyhow::bail!(
            "`sweep {}` on a run folder is not available; pass --nats URL (or set \
             SWEEP_NATS_URL) for a sweep launched on NATS",
            "status|cancel|retry-failed"
        );
    }
    let runtime = crate::nats::runtime().context("starting the async runtime")?;
    let session = runtime.block_on(async {
        let client = crate::nats::connect(&args.nats, "sweep-cli").await?;
        Session::open(client).await
    })?;
    Ok((runtime, session))
}

/// `sweep status`: counts per status, queue depth and unfinished trials.
pub fn status(args: SweepRefArgs) -> anyhow::Result<ExitCode> {
    let (runtime, session) = open(&args)?;
    let snapshot = runtime.block_on(query::snapshot(&session, &args.sweep))?;

    if args.json {
        println!("{}", serde_json::to_string_pretty(&status_json(&snapshot))?);
    } else {
        println!("{}", status_table(&snapshot));
    }
    let failed = snapshot
        .results
        .values()
        .any(|r| r.status != shared::trial::TrialStatus::Completed);
    Ok(if failed {
        ExitCode::from(crate::EXIT_FAILURES)
    } else {
        ExitCode::SUCCESS
    })
}

fn status_json(snapshot: &SweepSnapshot) -> serde_json::Value {
    serde_json::json!({
        "sweep": snapshot.manifest.sweep,
        "trials": snapshot.manifest.trials,
        "cancelled": snapshot.manifest.cancelled,
        "objective": snapshot.manifest.objective,
        "dataset_digest": snapshot.manifest.dataset_digest,
        "created_at": snapshot.manifest.created_at,
        "statuses": snapshot.counts(),
        "attempts": snapshot.attempts,
        "queued": snapshot.queued,
        "unfinished": snapshot.unfinished(),
    })
}

fn status_table(snapshot: &SweepSnapshot) -> Table {
    let manifest = &snapshot.manifest;
    let mut table = Table::new();
    table.set_header(vec!["sweep", &manifest.sweep]);
    let state = if manifest.cancelled {
        "cancelled"
    } else if snapshot.unfinished() == 0 && snapshot.queued == 0 {
        "finished"
    } else {
        "running"
    };
    table.add_row(vec!["state".to_string(), state.to_string()]);
    table.add_row(vec!["trials".to_string(), manifest.trials.to_string()]);
    for (status, count) in snapshot.counts() {
        table.add_row(vec![status.to_string(), count.to_string()]);
    }
    table.add_row(vec![
        "unfinished".to_string(),
        snapshot.unfinished().to_string(),
    ]);
    table.add_row(vec![
        "queued messages".to_string(),
        snapshot.queued.to_string(),
    ]);
    table.add_row(vec!["attempts".to_string(), snapshot.attempts.to_string()]);
    table.add_row(vec![
        "objective".to_string(),
        format!(
            "{} ({:?})",
            manifest.objective.metric.as_str(),
            manifest.objective.direction()
        )
        .to_lowercase(),
    ]);
    table.add_row(vec!["dataset".to_string(), manifest.dataset_digest.clone()]);
    table
}

/// `sweep cancel`: marks the sweep cancelled and drops its queued trials.
pub fn cancel(args: SweepRefArgs) -> anyhow::Result<ExitCode> {
    let (runtime, session) = open(&args)?;
    let dropped = runtime.block_on(query::cancel(&session, &args.sweep))?;

    if args.json {
        println!(
            "{}",
            serde_json::json!({ "sweep": args.sweep, "dropped": dropped })
        );
    } else {
        println!(
            "sweep {}: cancelled; {dropped} queued trials dropped (running ones report \
             `cancelled` or finish)",
            args.sweep
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `sweep retry-failed`: queues the next attempt of each failed trial.
pub fn retry_failed(args: SweepRefArgs) -> anyhow::Result<ExitCode> {
    let (runtime, session) = open(&args)?;
    let queued = runtime.block_on(query::retry_failed(&session, &args.sweep))?;

    if args.json {
        println!(
            "{}",
            serde_json::json!({ "sweep": args.sweep, "queued": queued })
        );
    } else {
        println!(
            "sweep {}: {} failed trials queued again",
            args.sweep,
            queued.len()
        );
        for trial_id in &queued {
            println!("  {trial_id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
