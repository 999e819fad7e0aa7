//! What `sweep status`, `sweep leaderboard`, `sweep cancel` and `sweep retry-failed` do on NATS.
//!
//! The results stream is the record of a sweep: every attempt's result, keyed by trial id and
//! attempt. A trial's outcome is its highest attempt's result; a repeated (redelivered or late)
//! result of the same attempt is the same result and counts once.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use chrono::Utc;
use futures::StreamExt;
use shared::protocol::{self, Message, ResultMessage, SweepManifest, TrialMessage, TrialRecord};
use shared::trial::{TrialId, TrialResult, TrialStatus};

use super::session::Session;
use super::NatsError;

/// A sweep as the server knows it.
#[derive(Debug, Clone)]
pub struct SweepSnapshot {
    /// The manifest.
    pub manifest: SweepManifest,
    /// The outcome of each trial with a result: its highest attempt, by trial id.
    pub results: BTreeMap<TrialId, TrialResult>,
    /// Distinct (trial, attempt) results seen.
    pub attempts: usize,
    /// Trial messages of this sweep waiting in the queue (or being run).
    pub queued: u64,
}

impl SweepSnapshot {
    /// Trials per status of their latest attempt.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for result in self.results.values() {
            *counts.entry(result.status.as_str()).or_insert(0) += 1;
        }
        counts
    }

    /// Trials of the plan without any result yet.
    pub fn unfinished(&self) -> usize {
        self.manifest.trials.saturating_sub(self.results.len())
    }
}

/// Reads a sweep's manifest.
///
/// # Cancel safety
///
/// Cancel safe: read only.
pub async fn manifest(session: &Session, sweep: &str) -> Result<SweepManifest, NatsError> {
    protocol::validate_sweep_name(sweep)?;
    match session.state.get(protocol::manifest_key(sweep)).await {
        Ok(Some(bytes)) => Ok(SweepManifest::decode(&bytes)?),
        Ok(None) => Err(NatsError::UnknownSweep {
            sweep: sweep.to_string(),
        }),
        Err(err) => Err(NatsError::jetstream("reading the sweep manifest", err)),
    }
}

/// Reads every result of a sweep and the queue depth.
///
/// # Cancel safety
///
/// Cancel safe: read only (an ephemeral consumer is left to expire on the server).
pub async fn snapshot(session: &Session, sweep: &str) -> Result<SweepSnapshot, NatsError> {
    let manifest = manifest(session, sweep).await?;
    let subject = protocol::results_subject(sweep);

    let mut results: BTreeMap<TrialId, TrialResult> = BTreeMap::new();
    let mut attempts = std::collections::HashSet::new();
    let expected = subject_count(&session.results, &subject).await?;
    if expected > 0 {
        let consumer = session
            .results
            .create_consumer(pull::Config {
                filter_subject: subject.clone(),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::None,
                inactive_threshold: Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .map_err(|e| NatsError::jetstream("reading results", e))?;
        let mut seen = 0u64;
        while seen < expected {
            let mut batch = consumer
                .fetch()
                .max_messages(1000)
                .expires(Duration::from_secs(2))
                .messages()
                .await
                .map_err(|e| NatsError::jetstream("reading results", e))?;
            let mut got = 0;
            while let Some(message) = batch.next().await {
                let message = message.map_err(|e| NatsError::jetstream("reading results", e))?;
                got += 1;
                let Ok(decoded) = ResultMessage::decode(&message.payload) else {
                    continue;
                };
                let result = decoded.result;
                attempts.insert((result.trial_id.clone(), result.attempt));
                let newer = results
                    .get(&result.trial_id)
                    .is_none_or(|old| result.attempt > old.attempt);
                if newer {
                    results.insert(result.trial_id.clone(), result);
                }
            }
            if got == 0 {
                break;
            }
            seen += got;
        }
    }
    let queued = subject_count(&session.trials, &protocol::trials_subject(sweep)).await?;

    Ok(SweepSnapshot {
        manifest,
        results,
        attempts: attempts.len(),
        queued,
    })
}

async fn subject_count(
    stream: &async_nats::jetstream::stream::Stream,
    subject: &str,
) -> Result<u64, NatsError> {
    let mut info = stream
        .info_with_subjects(subject)
        .await
        .map_err(|e| NatsError::jetstream("reading stream info", e))?;
    let mut total = 0;
    while let Some(entry) = info.next().await {
        let (_, count) = entry.map_err(|e| NatsError::jetstream("reading stream info", e))?;
        total += count as u64;
    }
    Ok(total)
}

/// Marks the sweep cancelled and drops its queued trials; returns how many were dropped.
///
/// # Cancel safety
///
/// Cancel safe: both steps are idempotent.
pub async fn cancel(session: &Session, sweep: &str) -> Result<u64, NatsError> {
    let mut manifest = manifest(session, sweep).await?;
    manifest.cancelled = true;
    session
        .state
        .put(protocol::manifest_key(sweep), manifest.encode().into())
        .await
        .map_err(|e| NatsError::jetstream("writing the sweep manifest", e))?;
    let purged = session
        .trials
        .purge()
        .filter(protocol::trials_subject(sweep))
        .await
        .map_err(|e| NatsError::jetstream("dropping queued trials", e))?;
    Ok(purged.purged)
}

/// Queues the next attempt of every trial whose latest attempt ended `error` or `cancelled`;
/// returns the trial ids queued.
///
/// # Cancel safety
///
/// Not cancel safe: a dropped call may have queued some trials and not others; calling it again
/// queues the rest (the ones queued already are no longer failed once they run).
pub async fn retry_failed(session: &Session, sweep: &str) -> Result<Vec<TrialId>, NatsError> {
    let snapshot = snapshot(session, sweep).await?;
    if snapshot.manifest.cancelled {
        return Err(NatsError::JetStream {
            what: "retry-failed".into(),
            message: format!("sweep `{sweep}` is cancelled; launch it again instead"),
        });
    }
    let mut queued = Vec::new();
    for result in snapshot.results.values() {
        if !matches!(result.status, TrialStatus::Error | TrialStatus::Cancelled) {
            continue;
        }
        let key = protocol::trial_key(sweep, &result.trial_id);
        let entry = session
            .state
            .entry(key.clone())
            .await
            .map_err(|e| NatsError::jetstream("reading a trial record", e))?;
        let Some(entry) = entry else { continue };
        let record = TrialRecord::decode(&entry.value)?;
        if record.attempt > result.attempt {
            // A later attempt is already queued.
            continue;
        }
        let attempt = result.attempt + 1;
        let message = TrialMessage {
            attempt,
            ..record.message
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            "Nats-Msg-Id",
            protocol::trial_msg_id(sweep, &result.trial_id, attempt, record.generation).as_str(),
        );
        session
            .js
            .publish_with_headers(
                protocol::trials_subject(sweep),
                headers,
                message.encode().into(),
            )
            .await
            .map_err(|e| NatsError::jetstream("queuing a trial", e))?
            .await
            .map_err(|e| NatsError::jetstream("queuing a trial", e))?;
        let record = TrialRecord {
            attempt,
            published_at: Utc::now(),
            message,
            ..record
        };
        session
            .state
            .update(&key, record.encode().into(), entry.revision)
            .await
            .map_err(|e| NatsError::jetstream("writing a trial record", e))?;
        queued.push(result.trial_id.clone());
    }
    Ok(queued)
}
