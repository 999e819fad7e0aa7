//! `sweep status`, `sweep cancel` and `sweep retry-failed` against NATS JetStream.
//!
//! Without `--nats`, `status` reads the run folder (`--out DIR`, default `runs`); `cancel` and
//! `retry-failed` need NATS and say so (exit 2).
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
    let runtime = crate::nats::runtime().context("starting the async runtime")?;
    let session = runtime.block_on(async {
        let client = crate::nats::connect(&args.nats, "sweep-cli").await?;
        Session::open(client).await
    })?;
    Ok((runtime, session))
}

/// `cancel` and `retry-failed` act on a sweep's queue, which only NATS has: without `--nats`
/// they print why and what to do instead, and exit 2.
fn needs_nats(command: &str, args: &SweepRefArgs) -> Option<ExitCode> {
    if args.nats.url.is_some() {
        return None;
    }
    let extra = if command == "retry-failed" {
        format!(
            "; for a sweep in the run folder {}, launch its spec again (`sweep launch SPEC --out \
             {}`): trials whose last attempt ended `error` or `cancelled` run again, the rest \
             are kept",
            args.out.join(&args.sweep).display(),
            args.out.display()
        )
    } else {
        "; an embedded `sweep launch` is cancelled with Ctrl-C".to_string()
    };
    eprintln!(
        "sweep: `sweep {command}` needs --nats URL (or SWEEP_NATS_URL): it acts on a sweep \
         launched on NATS{extra}"
    );
    Some(ExitCode::from(crate::EXIT_ERROR))
}

/// `sweep status` on a run folder (no `--nats`): counts per status from `results.jsonl`.
fn local_status(args: &SweepRefArgs) -> anyhow::Result<ExitCode> {
    let status = crate::store::local_status(&args.out, &args.sweep)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        let mut table = Table::new();
        table.set_header(vec!["sweep", &status.sweep]);
        let state = if status.pending == 0 && status.errored == 0 {
            "finished"
        } else {
            "unfinished (launch the spec again to resume)"
        };
        table.add_row(vec!["state".to_string(), state.to_string()]);
        for (label, value) in [
            ("planned", status.planned),
            ("completed", status.completed),
            ("diverged or leakage_rejected", status.failed),
            ("error or cancelled", status.errored),
            ("pending", status.pending),
            ("attempts", status.attempts),
        ] {
            table.add_row(vec![label.to_string(), value.to_string()]);
        }
        println!("{table}");
    }
    Ok(if status.failed + status.errored > 0 {
        ExitCode::from(crate::EXIT_FAILURES)
    } else {
        ExitCode::SUCCESS
    })
}

/// `sweep status`: counts per status, queue depth and unfinished trials.
pub fn status(args: SweepRefArgs) -> anyhow::Result<ExitCode> {
    if args.nats.url.is_none() {
        return local_status(&args);
    }
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
    if let Some(code) = needs_nats("cancel", &args) {
        return Ok(code);
    }
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
    if let Some(code) = needs_nats("retry-failed", &args) {
        return Ok(code);
    }
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
