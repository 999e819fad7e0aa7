//! Forecast accuracy metrics in CBM, for the model and for the naive baselines.

use serde::{Deserialize, Serialize};

/// Accuracy of one set of forecasts against actuals (every sample and horizon day).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ForecastMetrics {
    /// Mean absolute error, CBM/day.
    pub mae: f64,
    /// Root mean squared error, CBM/day.
    pub rmse: f64,
    /// Sum |error| / sum actual.
    pub wape: f64,
    /// 1 - WAPE.
    pub accuracy: f64,
    /// Mean absolute percentage error over days with actual > 0.
    pub mape: f64,
    /// Mean (forecast - actual), CBM/day.
    pub bias: f64,
    /// Share of forecasts below the actual.
    pub under_rate: f64,
    /// Asymmetric loss in CBM with the sweep's evaluation weights (the same for every trial of
    /// a series; see [`crate::trial::EvaluationWeights`]). Ranks `val_asymmetric_loss`.
    pub asymmetric_loss: f64,
    /// Asymmetric loss in CBM with the trial's own training weights (reported, not ranked).
    #[serde(default)]
    pub own_asymmetric_loss: f64,
    /// MAE per horizon step (index 0 = origin day).
    pub mae_per_step: Vec<f64>,
}

/// Model and baselines on one span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SpanMetrics {
    /// Samples evaluated.
    pub samples: usize,
    /// The model, after inverse scaling.
    pub model: ForecastMetrics,
    /// Same weekday of the last observed week.
    pub seasonal_naive: ForecastMetrics,
    /// Mean of the last 28 days.
    pub mean_28d: ForecastMetrics,
    /// Mean of the same weekday over the last 13 weeks.
    pub weekday_profile: ForecastMetrics,
    /// Loss in model (scaled) space, the quantity early stopping watches.
    pub loss: f64,
}

impl SpanMetrics {
    /// 1 - WAPE_model / WAPE_seasonal_naive.
    pub fn skill_vs_seasonal_naive(&self) -> f64 {
        skill(self.model.wape, self.seasonal_naive.wape)
    }

    /// 1 - WAPE_model / WAPE_weekday_profile.
    pub fn skill_vs_weekday_profile(&self) -> f64 {
        skill(self.model.wape, self.weekday_profile.wape)
    }
}

/// Skill score of a model WAPE against a baseline WAPE; NaN when the baseline is 0.
pub fn skill(model_wape: f64, baseline_wape: f64) -> f64 {
    if baseline_wape > 0.0 {
        1.0 - model_wape / baseline_wape
    } else {
        f64::NAN
    }
}

/// Metrics of a finished trial on validation and test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TrialMetrics {
    /// Validation span (used for ranking).
    pub val: SpanMetrics,
    /// Test span (reported, never used for ranking).
    pub test: SpanMetrics,
    /// Epoch whose weights were kept.
    pub best_epoch: usize,
    /// Trainable parameters.
    pub parameters: usize,
}
