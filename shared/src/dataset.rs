//! The tensors a worker trains on, as flat row-major `f32` buffers.
//!
//! A [`Dataset`] is built from one [`Series`] by the data pipeline; it is plain data so that the
//! worker crate (burn) and the leakage check read the same buffers.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::params::TargetTransform;

/// Which series a dataset was built from: a category, or one brand of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesKey {
    /// Category, e.g. `DRY`.
    pub category: String,
    /// Brand within the category; `None` is the category total.
    pub brand: Option<String>,
}

impl std::fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.brand {
            Some(brand) => write!(f, "{}/{}", self.category, brand),
            None => write!(f, "{}", self.category),
        }
    }
}

/// One daily series, gap-free (missing days were zero-filled by the loader).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Category and brand.
    pub key: SeriesKey,
    /// Consecutive days.
    pub dates: Vec<NaiveDate>,
    /// Volume in CBM per day.
    pub values: Vec<f64>,
    /// For a brand series: the category total on the same days (for `brand_tier_expanding`).
    pub category_values: Option<Vec<f64>>,
}

/// Standardisation of the target, fitted on the training span only.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TargetScaler {
    /// Transform applied before standardising.
    pub transform: TargetTransform,
    /// Mean of the transformed training targets.
    pub mean: f64,
    /// Standard deviation of the transformed training targets (1 when it is 0).
    pub std: f64,
}

impl TargetScaler {
    /// CBM to model space.
    pub fn forward(&self, cbm: f64) -> f64 {
        let x = match self.transform {
            TargetTransform::None => cbm,
            TargetTransform::Log1p => cbm.max(0.0).ln_1p(),
        };
        (x - self.mean) / self.std
    }

    /// Model space back to CBM.
    pub fn inverse(&self, scaled: f64) -> f64 {
        let x = scaled * self.std + self.mean;
        match self.transform {
            TargetTransform::None => x,
            TargetTransform::Log1p => x.exp_m1(),
        }
    }
}

/// Per-feature standardisation, fitted on the training span only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureScaler {
    /// Feature names in column order.
    pub names: Vec<String>,
    /// Means over the training span.
    pub mean: Vec<f64>,
    /// Standard deviations over the training span (1 where 0).
    pub std: Vec<f64>,
    /// Last day of the span the scaler was fitted on.
    pub fitted_through: Option<NaiveDate>,
}

/// Samples of one split. Buffers are row-major:
/// `x_temporal` is `[n, input_len, temporal_dim]`, `x_static` is `[n, static_dim]`,
/// `y`, `y_cbm` and `peak` are `[n, horizon]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SampleSet {
    /// Input window length.
    pub input_len: usize,
    /// Forecast horizon.
    pub horizon: usize,
    /// Temporal features per day.
    pub temporal_dim: usize,
    /// Static features per sample.
    pub static_dim: usize,
    /// Scaled temporal inputs.
    pub x_temporal: Vec<f32>,
    /// Scaled static inputs (features of the origin day).
    pub x_static: Vec<f32>,
    /// Category index of each sample (the embedding row).
    pub category: Vec<u32>,
    /// Scaled targets.
    pub y: Vec<f32>,
    /// Targets in CBM.
    pub y_cbm: Vec<f32>,
    /// 1.0 where the target day lies in the category's peak season, else 0.0.
    pub peak: Vec<f32>,
    /// Index into the series of each sample's origin (its first target day).
    pub origin: Vec<usize>,
}

impl SampleSet {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.origin.len()
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.origin.is_empty()
    }
}

/// Everything one trial trains and evaluates on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    /// The raw series (CBM); baselines read their history from it.
    pub series: Series,
    /// Training samples.
    pub train: SampleSet,
    /// Validation samples.
    pub val: SampleSet,
    /// Test samples.
    pub test: SampleSet,
    /// Target scaler.
    pub target_scaler: TargetScaler,
    /// Scaler of the temporal features.
    pub temporal_scaler: FeatureScaler,
    /// Scaler of the static features.
    pub static_scaler: FeatureScaler,
}
