//! The transport boundary: how the sweep engine hands trials to workers and hears back.
//!
//! The engine ([`crate::engine::Engine`]) owns every decision of a sweep: which trials are
//! pending, which results count (deduplicated by trial id and attempt), when a failed attempt is
//! retried, what is written to `results.jsonl`, progress and the leaderboard. A [`Transport`]
//! only moves work and events. Two implementations exist:
//!
//! - [`crate::engine::embedded::EmbeddedTransport`]: N worker threads inside this process (the
//!   default of `sweep launch`);
//! - the NATS JetStream transport (`crate::nats`): trials are published to a work queue and any
//!   number of `sweep worker` processes pull them.
//!
//! # Contract for implementers
//!
//! - [`Transport::submit`] queues each [`Dispatch`] exactly as given (the attempt number is chosen
//!   by the engine and must be passed through to the worker and back in
//!   [`shared::trial::TrialResult::attempt`]). It must not block until the trials have run.
//! - [`Transport::next_event`] blocks for at most `timeout` and returns `Ok(None)` when nothing
//!   arrived. Events may arrive in any order and more than once (redelivery): the engine drops a
//!   second [`TransportEvent::Finished`] for the same `(trial_id, attempt)`, so a transport does
//!   not need exactly-once delivery, only at-least-once.
//! - Every submitted dispatch must eventually produce a `Finished` result, or the transport must
//!   return an error from `next_event`. A worker that vanished mid-trial is reported as a
//!   `Finished` result with status [`shared::trial::TrialStatus::Error`] and a reason (the engine
//!   then retries it), or by redelivering the trial to another worker under the same attempt.
//! - [`Transport::shutdown`] stops the workers this transport started (if any) and releases its
//!   resources; it is called once, after the last result or when the engine gives up.
//! - Errors are [`TransportError`]s; the engine stops the sweep on the first one and exits 2.
//!
//! The trait is synchronous on purpose: training is CPU-bound blocking code, and the engine's loop
//! is a plain loop. An async transport runs its own runtime (or a task) and feeds a channel that
//! `next_event` reads with a timeout.

use std::time::Duration;

use shared::trial::{EpochReport, TrialId, TrialResult, TrialSpec};
use thiserror::Error;

/// One attempt of one trial, as handed to a transport.
#[derive(Debug, Clone, PartialEq)]
pub struct Dispatch {
    /// The trial to run.
    pub trial: TrialSpec,
    /// Attempt number, 1-based; a retry of a failed attempt gets the next number.
    pub attempt: u32,
}

/// What a transport reports back to the engine.
// A result is far larger than the other events, but events arrive a few times a second at most,
// so boxing it would buy nothing and cost every transport a `Box::new`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum TransportEvent {
    /// A worker began an attempt.
    Started {
        /// The trial.
        trial_id: TrialId,
        /// The attempt.
        attempt: u32,
        /// Worker name, as it will appear in the result.
        worker: String,
    },
    /// A worker finished an epoch of an attempt (progress only; nothing is stored).
    Epoch {
        /// The trial.
        trial_id: TrialId,
        /// The attempt.
        attempt: u32,
        /// Worker name.
        worker: String,
        /// The epoch's losses.
        report: EpochReport,
    },
    /// An attempt ended, in any status. The engine stores it and decides about retries.
    Finished(TrialResult),
}

/// Why a transport cannot go on.
#[derive(Debug, Error)]
pub enum TransportError {
    /// Every worker is gone and no result can arrive any more.
    #[error("all workers stopped: {reason}")]
    WorkersGone {
        /// What happened to them.
        reason: String,
    },
    /// The connection to the message broker failed.
    #[error("connection failed: {message}")]
    Connection {
        /// The underlying error.
        message: String,
    },
    /// Publishing a trial failed.
    #[error("could not submit trial {trial_id}: {message}")]
    Submit {
        /// The trial.
        trial_id: TrialId,
        /// The underlying error.
        message: String,
    },
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// Moves trials to workers and their events back. See the module docs for the contract.
pub trait Transport {
    /// Queues attempts for the workers. Returns once they are queued (not run).
    fn submit(&mut self, dispatches: Vec<Dispatch>) -> Result<(), TransportError>;

    /// Queues one more attempt of a trial whose previous attempt failed with status `error`.
    ///
    /// The default forwards to [`Transport::submit`]; a transport overrides it when a retry
    /// needs different handling (for example a delay or another subject).
    fn resubmit(&mut self, trial: TrialSpec, attempt: u32) -> Result<(), TransportError> {
        self.submit(vec![Dispatch { trial, attempt }])
    }

    /// Waits at most `timeout` for the next event; `Ok(None)` when none came in time.
    fn next_event(&mut self, timeout: Duration) -> Result<Option<TransportEvent>, TransportError>;

    /// The sweep is being interrupted: hand out no more queued attempts and ask the running
    /// ones to stop. Results may still arrive afterwards. The default does nothing (the engine
    /// then waits a grace period for the running attempts).
    fn interrupt(&mut self) -> Result<(), TransportError> {
        Ok(())
    }

    /// Stops what this transport started and releases it. Called once at the end of a sweep.
    fn shutdown(&mut self) -> Result<(), TransportError>;
}
