//! The sweep engine: one implementation of a sweep's life, whatever carries the trials.
//!
//! spec -> validated plan (trials) -> skip trials already settled in the store -> hand the
//! pending ones to a [`transport::Transport`] -> consume its events (deduplicated by trial id and
//! attempt; `error` attempts retried up to the spec's `retries`) -> append every attempt to
//! `DIR/<sweep>/results.jsonl` -> progress -> leaderboard.
//!
//! The embedded launch and the NATS launch both call [`run`]; they differ only in the
//! transport they pass.

pub mod embedded;
pub mod prepare;
pub mod transport;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shared::spec::Objective;
use shared::trial::{TrialId, TrialResult, TrialSpec, TrialStatus};
use thiserror::Error;

use crate::progress::Progress;
use crate::store::{is_settled, latest_by_trial, RunDir, StoreError};
use transport::{Dispatch, Transport, TransportError, TransportEvent};

/// How long the loop waits for an event before it redraws the progress bar.
const POLL: Duration = Duration::from_millis(250);

/// How long an interrupted sweep waits for the running trials to stop and report.
const GRACE: Duration = Duration::from_secs(30);

/// Why a sweep stopped before every trial had an outcome.
#[derive(Debug, Error)]
pub enum EngineError {
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The results file could not be written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Settings of one engine run.
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// Retries of an attempt that ended in status `error`.
    pub retries: u32,
    /// Objective shown as "best" in the progress bar.
    pub objective: Objective,
}

/// What a run of the engine did.
#[derive(Debug, Clone, Default)]
pub struct SweepSummary {
    /// The outcome of every planned trial that has one (earlier launches included), in plan
    /// order.
    pub outcomes: Vec<TrialResult>,
    /// Trials skipped because an earlier launch settled them.
    pub skipped: usize,
    /// Trials run by this launch.
    pub ran: usize,
    /// Attempts retried by this launch.
    pub retried: usize,
    /// The sweep was stopped (Ctrl-C or SIGTERM) before every trial had an outcome.
    pub interrupted: bool,
}

impl SweepSummary {
    /// Trials whose outcome is not `completed`.
    pub fn failed(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|r| r.status != TrialStatus::Completed)
            .count()
    }
}

/// Trials of a plan that still have to run, with the attempt number each starts at: the next
/// one after any earlier attempts recorded in `previous`.
pub fn pending(trials: &[TrialSpec], previous: &[TrialResult]) -> Vec<Dispatch> {
    let latest = latest_by_trial(previous);
    let mut attempts: BTreeMap<&TrialId, u32> = BTreeMap::new();
    for r in previous {
        let a = attempts.entry(&r.trial_id).or_default();
        *a = (*a).max(r.attempt);
    }
    trials
        .iter()
        .filter(|t| {
            latest
                .get(&t.trial_id)
                .is_none_or(|r| !is_settled(r.status))
        })
        .map(|t| Dispatch {
            trial: t.clone(),
            attempt: attempts.get(&t.trial_id).copied().unwrap_or(0) + 1,
        })
        .collect()
}

/// Runs every trial of `trials` not yet settled in `previous` through `transport`, recording
/// each attempt in `run_dir` as it ends. Calls [`Transport::shutdown`] before returning.
///
/// When `stop` becomes true (a signal handler sets it), no further trial or retry is handed
/// out, the running trials are cancelled ([`Transport::interrupt`]), results that still arrive
/// within a grace period are stored (cancelled attempts are not: a relaunch runs them), and the
/// summary comes back with `interrupted` set.
pub fn run(
    trials: &[TrialSpec],
    previous: &[TrialResult],
    transport: &mut dyn Transport,
    run_dir: &mut RunDir,
    progress: &mut Progress,
    cfg: EngineConfig,
    stop: &AtomicBool,
) -> Result<SweepSummary, EngineError> {
    let outcome = drive(trials, previous, transport, run_dir, progress, cfg, stop);
    let closed = transport.shutdown();
    progress.finish();
    let summary = outcome?;
    closed?;
    Ok(summary)
}

fn drive(
    trials: &[TrialSpec],
    previous: &[TrialResult],
    transport: &mut dyn Transport,
    run_dir: &mut RunDir,
    progress: &mut Progress,
    cfg: EngineConfig,
    stop: &AtomicBool,
) -> Result<SweepSummary, EngineError> {
    let by_id: BTreeMap<&TrialId, &TrialSpec> = trials.iter().map(|t| (&t.trial_id, t)).collect();
    let todo = pending(trials, previous);
    let mut summary = SweepSummary {
        skipped: trials.len() - todo.len(),
        ran: todo.len(),
        ..SweepSummary::default()
    };
    tracing::info!(
        sweep = trials.first().map(|t| t.sweep.as_str()).unwrap_or(""),
        trials = trials.len(),
        pending = todo.len(),
        skipped = summary.skipped,
        "sweep started"
    );

    // (trial, attempt) pairs already recorded: a redelivered result is dropped, not stored twice.
    let mut seen: BTreeSet<(TrialId, u32)> = previous
        .iter()
        .map(|r| (r.trial_id.clone(), r.attempt))
        .collect();
    let mut last_attempt: BTreeMap<TrialId, u32> = BTreeMap::new();
    let mut open: BTreeSet<TrialId> = BTreeSet::new();
    for d in &todo {
        last_attempt.insert(d.trial.trial_id.clone(), d.attempt + cfg.retries);
        open.insert(d.trial.trial_id.clone());
    }
    let mut fresh: BTreeMap<TrialId, TrialResult> = BTreeMap::new();

    if !todo.is_empty() {
        transport.submit(todo)?;
    }
    let mut running: BTreeSet<TrialId> = BTreeSet::new();
    let mut grace: Option<Instant> = None;
    while !open.is_empty() {
        if grace.is_none() && stop.load(Ordering::SeqCst) {
            tracing::warn!(
                running = running.len(),
                "interrupted: handing out no more trials and cancelling the running ones"
            );
            transport.interrupt()?;
            summary.interrupted = true;
            grace = Some(Instant::now() + GRACE);
        }
        if let Some(deadline) = grace {
            if running.is_empty() || Instant::now() > deadline {
                break;
            }
        }
        let event = match transport.next_event(POLL) {
            // Interrupted workers exit once their trial stopped; nothing more can arrive.
            Err(_) if grace.is_some() => break,
            other => other?,
        };
        let Some(event) = event else {
            continue;
        };
        match event {
            TransportEvent::Started {
                trial_id,
                attempt,
                worker,
            } => {
                if open.contains(&trial_id) && grace.is_none() {
                    running.insert(trial_id.clone());
                    tracing::info!(trial_id = %trial_id, attempt, worker_id = %worker, "trial started");
                    progress.started();
                }
            }
            TransportEvent::Epoch {
                trial_id, report, ..
            } => {
                tracing::debug!(trial_id = %trial_id, epoch = report.epoch, train_loss = report.train_loss, val_loss = report.val_loss, "epoch");
            }
            TransportEvent::Finished(result) => {
                let key = (result.trial_id.clone(), result.attempt);
                if !open.contains(&result.trial_id) || !seen.insert(key) {
                    tracing::debug!(trial_id = %result.trial_id, attempt = result.attempt, "duplicate or unknown result dropped");
                    continue;
                }
                running.remove(&result.trial_id);
                if grace.is_some() && result.status == TrialStatus::Cancelled {
                    // Not an outcome: the relaunch runs the trial again.
                    tracing::info!(trial_id = %result.trial_id, "running trial cancelled");
                    continue;
                }
                run_dir.append(&result)?;

                let limit = last_attempt[&result.trial_id];
                if result.status == TrialStatus::Error && result.attempt < limit && grace.is_none()
                {
                    tracing::warn!(trial_id = %result.trial_id, attempt = result.attempt, reason = result.reason.as_deref().unwrap_or(""), "trial failed; retrying");
                    progress.retrying();
                    summary.retried += 1;
                    let trial = (*by_id[&result.trial_id]).clone();
                    transport.resubmit(trial, result.attempt + 1)?;
                    continue;
                }

                let objective = result
                    .metrics
                    .as_ref()
                    .map(|m| cfg.objective.metric.value(m));
                match result.status {
                    TrialStatus::Completed => tracing::info!(
                        trial_id = %result.trial_id,
                        series = %result.series,
                        objective = objective.unwrap_or(f64::NAN),
                        epochs = result.epochs_run,
                        duration_s = result.duration_s,
                        "trial completed"
                    ),
                    status => tracing::error!(
                        trial_id = %result.trial_id,
                        status = status.as_str(),
                        reason = result.reason.as_deref().unwrap_or(""),
                        "trial failed"
                    ),
                }
                progress.finished(result.status, objective);
                open.remove(&result.trial_id);
                fresh.insert(result.trial_id.clone(), result);
            }
        }
    }

    let earlier = latest_by_trial(previous);
    summary.outcomes = trials
        .iter()
        .filter_map(|t| {
            fresh
                .get(&t.trial_id)
                .or_else(|| earlier.get(&t.trial_id))
                .cloned()
        })
        .collect();
    Ok(summary)
}
