//! The NATS JetStream protocol between a sweep's coordinator and its workers.
//!
//! Every subject, stream, consumer, bucket and message lives here so that both sides build them
//! the same way; `docs/PROTOCOL.md` describes the whole exchange. Messages are JSON and carry
//! [`PROTOCOL_VERSION`]; a peer rejects a message whose version it does not know instead of
//! guessing at its meaning.
//!
//! Names embed the sweep name as one subject token, so a sweep name must be a valid token (see
//! [`validate_sweep_name`]). Trial ids are hex digests and always valid.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::DataConfig;
use crate::spec::Objective;
use crate::trial::{EpochReport, TrialId, TrialResult, TrialSpec};

/// Version of every message below. Bumped on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;

/// Work-queue stream holding the queued trials of every sweep (subjects `sweep.trials.>`).
pub const TRIALS_STREAM: &str = "SWEEP_TRIALS";
/// Subject prefix of the trials stream.
pub const TRIALS_SUBJECT_PREFIX: &str = "sweep.trials";
/// Durable pull consumer every worker pulls trials from (explicit ack).
pub const TRIALS_CONSUMER: &str = "sweep-workers";
/// Stream of trial results (subjects `sweep.results.>`), kept until the sweep is deleted.
pub const RESULTS_STREAM: &str = "SWEEP_RESULTS";
/// Subject prefix of the results stream.
pub const RESULTS_SUBJECT_PREFIX: &str = "sweep.results";
/// Subject prefix of progress events (core NATS, not stored): `sweep.progress.<sweep>`.
pub const PROGRESS_SUBJECT_PREFIX: &str = "sweep.progress";
/// Key-value bucket with sweep manifests and per-trial records.
pub const STATE_BUCKET: &str = "sweep_state";
/// Object store with datasets, named by the SHA-256 of their bytes.
pub const DATASETS_BUCKET: &str = "sweep_datasets";
/// Object store with the best weights of each trial, named `<sweep>/<trial id>/<file>`.
pub const WEIGHTS_BUCKET: &str = "sweep_weights";

/// Stream keeping the server's max-deliveries advisories of the trials consumer, so that a
/// trial whose workers keep dying on it is turned into an `error` result even when no
/// coordinator was running at the moment JetStream gave up on it.
pub const ADVISORIES_STREAM: &str = "SWEEP_ADVISORIES";
/// Durable pull consumer on [`ADVISORIES_STREAM`] shared by every coordinator.
pub const ADVISORIES_CONSUMER: &str = "sweep-coordinators";

/// The advisory subject JetStream publishes on when a trial message reaches the consumer's
/// max deliver: `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.SWEEP_TRIALS.sweep-workers`.
pub fn max_deliveries_subject() -> String {
    format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{TRIALS_STREAM}.{TRIALS_CONSUMER}")
}

/// The server's max-deliveries advisory (the fields the coordinator reads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaxDeliveriesAdvisory {
    /// The stream, [`TRIALS_STREAM`].
    pub stream: String,
    /// The consumer, [`TRIALS_CONSUMER`].
    pub consumer: String,
    /// Sequence of the trial message in the stream.
    pub stream_seq: u64,
    /// How many times it was delivered.
    pub deliveries: u64,
}

/// The subject a sweep's trials are published on.
pub fn trials_subject(sweep: &str) -> String {
    format!("{TRIALS_SUBJECT_PREFIX}.{sweep}")
}

/// The subject a sweep's results are published on.
pub fn results_subject(sweep: &str) -> String {
    format!("{RESULTS_SUBJECT_PREFIX}.{sweep}")
}

/// The subject a sweep's progress events are published on.
pub fn progress_subject(sweep: &str) -> String {
    format!("{PROGRESS_SUBJECT_PREFIX}.{sweep}")
}

/// Durable consumer name of the coordinator following one sweep's results.
pub fn results_consumer(sweep: &str) -> String {
    format!("sweep-coordinator-{sweep}")
}

/// KV key of a sweep's manifest.
pub fn manifest_key(sweep: &str) -> String {
    format!("sweeps.{sweep}")
}

/// KV key of one trial's record (created once, when the trial is first published).
pub fn trial_key(sweep: &str, trial_id: &TrialId) -> String {
    format!("trials.{sweep}.{trial_id}")
}

/// KV key prefix of a sweep's trial records (for listing them).
pub fn trial_key_prefix(sweep: &str) -> String {
    format!("trials.{sweep}.")
}

/// `Nats-Msg-Id` of a trial publication: sweep, trial id, attempt and the sweep's generation, so
/// a repeated publication of the same attempt is dropped by the stream's duplicate window while
/// a relaunch after `sweep cancel` (a new generation) queues it again.
pub fn trial_msg_id(sweep: &str, trial_id: &TrialId, attempt: u32, generation: u32) -> String {
    format!("{sweep}.{trial_id}.a{attempt}.g{generation}")
}

/// `Nats-Msg-Id` of a result: sweep, trial id and attempt, the result's identity.
pub fn result_msg_id(sweep: &str, trial_id: &TrialId, attempt: u32) -> String {
    format!("{sweep}.{trial_id}.a{attempt}")
}

/// Object name of one weights file of a trial.
pub fn weights_object(sweep: &str, trial_id: &TrialId, file: &str) -> String {
    format!("{sweep}/{trial_id}/{file}")
}

/// A message or name that does not follow the protocol.
#[derive(Debug, Error)]
pub enum ProtocolError {
    /// The sweep name cannot be used as a subject token or KV key.
    #[error("sweep name `{name}` cannot be used on NATS: use letters, digits, `-` and `_` only")]
    SweepName {
        /// The name as given.
        name: String,
    },
    /// The payload is not a valid message of the expected kind.
    #[error("malformed {kind} message: {message}")]
    Malformed {
        /// Message kind, e.g. `trial`.
        kind: &'static str,
        /// The decoder's complaint.
        message: String,
    },
    /// The message comes from a peer speaking another protocol version.
    #[error("{kind} message has protocol version {found}, this build speaks {PROTOCOL_VERSION}; run the same sweep version on coordinator and workers")]
    Version {
        /// Message kind.
        kind: &'static str,
        /// Version found in the message.
        found: u32,
    },
}

/// Checks that a sweep name is a single subject token and a valid KV key part.
pub fn validate_sweep_name(name: &str) -> Result<(), ProtocolError> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(ProtocolError::SweepName {
            name: name.to_string(),
        })
    }
}

/// A protocol message: JSON with a `version` field.
pub trait Message: Serialize + for<'de> Deserialize<'de> {
    /// Name used in error messages.
    const KIND: &'static str;

    /// The message's version field.
    fn version(&self) -> u32;

    /// JSON bytes of the message.
    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("protocol messages serialise to JSON")
    }

    /// Parses a message, rejecting other protocol versions.
    fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        #[derive(Deserialize)]
        struct Versioned {
            version: u32,
        }
        let versioned: Versioned =
            serde_json::from_slice(bytes).map_err(|err| ProtocolError::Malformed {
                kind: Self::KIND,
                message: err.to_string(),
            })?;
        if versioned.version != PROTOCOL_VERSION {
            return Err(ProtocolError::Version {
                kind: Self::KIND,
                found: versioned.version,
            });
        }
        serde_json::from_slice(bytes).map_err(|err| ProtocolError::Malformed {
            kind: Self::KIND,
            message: err.to_string(),
        })
    }
}

/// One trial to run, as queued on [`TRIALS_STREAM`]. Data only: no paths, no commands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialMessage {
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// The trial (its dataset is named by digest).
    pub trial: TrialSpec,
    /// How to read the dataset's bytes; `path` is always `None`.
    pub data: DataConfig,
    /// Name of the dataset (for error messages and the file type: `.csv` or `.parquet`).
    pub dataset_name: String,
    /// Attempt number, chosen by the coordinator (1, then one more per retry of `error`). A
    /// redelivery after a lost worker keeps the number, so its result has the same identity.
    pub attempt: u32,
    /// Benchmark mode: the worker sleeps this many milliseconds instead of training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noop_ms: Option<u64>,
}

impl Message for TrialMessage {
    const KIND: &'static str = "trial";

    fn version(&self) -> u32 {
        self.version
    }
}

/// The outcome of one attempt, published on [`RESULTS_STREAM`] with `Nats-Msg-Id`
/// [`result_msg_id`]. The pair (trial id, attempt) identifies it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultMessage {
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// The worker's result.
    pub result: TrialResult,
    /// Names of the weights files in [`WEIGHTS_BUCKET`].
    pub weights: Vec<String>,
    /// When the worker started the attempt.
    pub started_at: DateTime<Utc>,
    /// When the worker finished it.
    pub finished_at: DateTime<Utc>,
    /// Seconds spent fetching and loading the dataset.
    pub data_s: f64,
}

impl Message for ResultMessage {
    const KIND: &'static str = "result";

    fn version(&self) -> u32 {
        self.version
    }
}

/// What a progress event reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ProgressEvent {
    /// A worker took the trial.
    Started,
    /// One epoch finished.
    Epoch(EpochReport),
}

/// Live progress of a running trial, on [`progress_subject`] (core NATS: lost when nobody
/// listens, never needed for correctness).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressMessage {
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// Sweep.
    pub sweep: String,
    /// Trial.
    pub trial_id: TrialId,
    /// Attempt.
    pub attempt: u32,
    /// Worker name.
    pub worker: String,
    /// Device.
    pub device: String,
    /// What happened.
    pub event: ProgressEvent,
}

impl Message for ProgressMessage {
    const KIND: &'static str = "progress";

    fn version(&self) -> u32 {
        self.version
    }
}

/// A sweep as recorded in [`STATE_BUCKET`] under [`manifest_key`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepManifest {
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// Sweep name.
    pub sweep: String,
    /// Trials of the plan.
    pub trials: usize,
    /// SHA-256 of the dataset in [`DATASETS_BUCKET`].
    pub dataset_digest: String,
    /// Dataset name.
    pub dataset_name: String,
    /// The spec's objective (ranks the leaderboard read from NATS).
    pub objective: Objective,
    /// When the sweep was first launched.
    pub created_at: DateTime<Utc>,
    /// Set by `sweep cancel`: queued trials are dropped and workers skip the sweep.
    pub cancelled: bool,
    /// Bumped when a cancelled sweep is launched again; trial records of older generations no
    /// longer stop a trial from being queued.
    pub generation: u32,
}

impl Message for SweepManifest {
    const KIND: &'static str = "manifest";

    fn version(&self) -> u32 {
        self.version
    }
}

/// A trial's record in [`STATE_BUCKET`] under [`trial_key`]: created once when the trial is
/// first published (create-only, so a relaunch never queues it twice), updated with a revision
/// check when a later attempt is published (a retry, or `retry-failed`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialRecord {
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// Trial.
    pub trial_id: TrialId,
    /// Highest attempt published so far.
    pub attempt: u32,
    /// The sweep generation it was published in.
    pub generation: u32,
    /// When that attempt was published.
    pub published_at: DateTime<Utc>,
    /// The message as published (so `retry-failed` can queue the trial again without the spec).
    pub message: TrialMessage,
}

impl Message for TrialRecord {
    const KIND: &'static str = "trial record";

    fn version(&self) -> u32 {
        self.version
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::PipelineConfig;
    use crate::dataset::SeriesKey;
    use crate::trial::TrialStatus;

    fn trial() -> TrialSpec {
        let mut params = BTreeMap::new();
        params.insert("hidden_size".to_string(), serde_json::json!(8));
        TrialSpec {
            trial_id: TrialId("0123abcd".into()),
            sweep: "demo".into(),
            series: SeriesKey {
                category: "DRY".into(),
                brand: Some("OREO".into()),
            },
            params,
            pipeline: PipelineConfig::default(),
            dataset_digest: "ff".repeat(32),
            evaluation: Default::default(),
        }
    }

    fn trial_message() -> TrialMessage {
        TrialMessage {
            version: PROTOCOL_VERSION,
            trial: trial(),
            data: DataConfig::default(),
            dataset_name: "synthetic.csv".into(),
            attempt: 1,
            noop_ms: None,
        }
    }

    #[test]
    fn trial_message_round_trips_through_json() {
        let message = trial_message();

        let decoded = TrialMessage::decode(&message.encode()).unwrap();

        assert_eq!(decoded, message);
    }

    #[test]
    fn result_message_round_trips_through_json() {
        let now = Utc::now();
        let message = ResultMessage {
            version: PROTOCOL_VERSION,
            result: TrialResult {
                trial_id: TrialId("0123abcd".into()),
                sweep: "demo".into(),
                attempt: 2,
                status: TrialStatus::Error,
                reason: Some("unknown brand".into()),
                series: trial().series,
                params: trial().params,
                metrics: None,
                epochs_run: 0,
                duration_s: 0.5,
                worker: "w1".into(),
                device: "cpu".into(),
            },
            weights: vec![],
            started_at: now,
            finished_at: now,
            data_s: 0.1,
        };

        let decoded = ResultMessage::decode(&message.encode()).unwrap();

        assert_eq!(decoded, message);
    }

    #[test]
    fn other_protocol_version_is_rejected_with_both_versions() {
        let mut message = trial_message();
        message.version = PROTOCOL_VERSION + 1;

        let err = TrialMessage::decode(&message.encode()).unwrap_err();

        assert!(
            matches!(err, ProtocolError::Version { found, .. } if found == PROTOCOL_VERSION + 1)
        );
        assert!(err.to_string().contains("protocol version"));
    }

    #[test]
    fn garbage_payload_is_malformed_not_a_panic() {
        let err = ResultMessage::decode(b"{not json").unwrap_err();

        assert!(matches!(
            err,
            ProtocolError::Malformed { kind: "result", .. }
        ));
    }

    #[test]
    fn sweep_names_with_subject_wildcards_or_dots_are_rejected() {
        for bad in ["", "a.b", "a*", "a>", "has space", "ünï"] {
            assert!(validate_sweep_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["mooncake", "tet-2025", "dry_v2"] {
            assert!(validate_sweep_name(good).is_ok(), "{good:?} rejected");
        }
    }

    // Regression: two sweeps with equal trial ids shared message ids, so the second sweep's
    // trials were dropped as duplicates.
    #[test]
    fn message_ids_differ_per_sweep() {
        let id = TrialId("00000000".into());

        assert_ne!(trial_msg_id("a", &id, 1, 1), trial_msg_id("b", &id, 1, 1));
        assert_ne!(result_msg_id("a", &id, 1), result_msg_id("b", &id, 1));
    }

    #[test]
    fn message_ids_differ_per_attempt() {
        let id = TrialId("abc".into());

        assert_ne!(result_msg_id("s", &id, 1), result_msg_id("s", &id, 2));
        assert_ne!(trial_msg_id("s", &id, 1, 1), trial_msg_id("s", &id, 2, 1));
        assert_ne!(trial_msg_id("s", &id, 1, 1), trial_msg_id("s", &id, 1, 2));
        assert_eq!(trials_subject("s"), "sweep.trials.s");
        assert_eq!(trial_key("s", &id), "trials.s.abc");
    }

    #[test]
    fn max_deliveries_advisory_of_the_server_is_read() {
        // As nats-server 2.x publishes it (fields the coordinator does not read are ignored).
        let text = r#"{"type":"io.nats.jetstream.advisory.v1.max_deliver","id":"x",
            "timestamp":"2026-12-03T19:00:00Z","stream":"SWEEP_TRIALS","consumer":"sweep-workers",
            "stream_seq":7,"deliveries":5,"domain":""}"#;

        let advisory: MaxDeliveriesAdvisory = serde_json::from_str(text).unwrap();

        assert_eq!(advisory.stream_seq, 7);
        assert_eq!(advisory.deliveries, 5);
        assert_eq!(
            max_deliveries_subject(),
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.SWEEP_TRIALS.sweep-workers"
        );
    }
}
