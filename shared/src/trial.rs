//! Trials: the unit of work a worker runs, and the result it reports.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::PipelineConfig;
use crate::dataset::SeriesKey;
use crate::metrics::TrialMetrics;

/// Stable identifier of a trial: a hash of (sweep name, series, canonical parameters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TrialId(pub String);

impl std::fmt::Display for TrialId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One point of a sweep: data to train on and the parameters to train with.
///
/// It is data only (no paths to run, no commands): the dataset is named by its content digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialSpec {
    /// Trial id.
    pub trial_id: TrialId,
    /// Sweep the trial belongs to.
    pub sweep: String,
    /// Series the trial trains on.
    pub series: SeriesKey,
    /// Hyperparameters that differ from the defaults (see [`crate::params::HyperParams`]).
    pub params: BTreeMap<String, Value>,
    /// Window, split and calendar.
    pub pipeline: PipelineConfig,
    /// SHA-256 of the dataset file's bytes (hex).
    pub dataset_digest: String,
    /// Weights of the asymmetric loss that scores the trial for ranking. The same for every
    /// trial of a series, whatever its own training penalties, so that trials compare fairly.
    /// Absent in messages from older coordinators: the defaults apply.
    #[serde(default)]
    pub evaluation: EvaluationWeights,
}

/// Weights of the asymmetric loss in CBM that ranks trials (`val_asymmetric_loss`).
///
/// A trial trains with its own `under_penalty`, `over_penalty` and `peak_season_boost`; scoring
/// each trial with its own weights would rank the smallest penalties first. The spec's
/// `objective` fixes one set of weights per series instead.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvaluationWeights {
    /// Weight of errors where actual > forecast. Default 3.
    pub under_penalty: f64,
    /// Weight of errors where actual <= forecast. Default 1.
    pub over_penalty: f64,
    /// Multiplier on target days in the peak season. Default 2.
    pub peak_season_boost: f64,
}

impl Default for EvaluationWeights {
    fn default() -> Self {
        let params = crate::params::HyperParams::default();
        Self {
            under_penalty: params.under_penalty,
            over_penalty: params.over_penalty,
            peak_season_boost: params.peak_season_boost,
        }
    }
}

/// How a trial ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrialStatus {
    /// Trained and evaluated.
    Completed,
    /// The loss became NaN or infinite. Final.
    Diverged,
    /// The leakage check failed; the worker refused to train. Final.
    LeakageRejected,
    /// Anything else went wrong; retried up to the sweep's limit.
    Error,
    /// The sweep was cancelled before the trial ran.
    Cancelled,
}

impl TrialStatus {
    /// True for outcomes that a retry cannot change.
    pub fn is_final(self) -> bool {
        !matches!(self, TrialStatus::Error)
    }

    /// Lower-case name as shown in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            TrialStatus::Completed => "completed",
            TrialStatus::Diverged => "diverged",
            TrialStatus::LeakageRejected => "leakage_rejected",
            TrialStatus::Error => "error",
            TrialStatus::Cancelled => "cancelled",
        }
    }
}

/// One epoch of training, as reported to progress callbacks and history.csv.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f64,
    /// Validation loss.
    pub val_loss: f64,
    /// Learning rate used in the epoch.
    pub learning_rate: f64,
    /// Seconds since training started.
    pub elapsed_s: f64,
}

/// What a worker reports for one attempt of a trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialResult {
    /// Trial id.
    pub trial_id: TrialId,
    /// Sweep.
    pub sweep: String,
    /// Attempt number, 1-based.
    pub attempt: u32,
    /// Outcome.
    pub status: TrialStatus,
    /// Why it did not complete, when it did not.
    pub reason: Option<String>,
    /// Series.
    pub series: SeriesKey,
    /// Parameters as given in the trial.
    pub params: BTreeMap<String, Value>,
    /// Metrics, when the trial completed.
    pub metrics: Option<TrialMetrics>,
    /// Epochs run.
    pub epochs_run: usize,
    /// Wall time of the attempt in seconds.
    pub duration_s: f64,
    /// Worker name.
    pub worker: String,
    /// Device, e.g. `cpu` or `cuda:0`.
    pub device: String,
}
