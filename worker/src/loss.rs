//! Training losses: asymmetric MSE with a peak-season boost, plain MSE and the pinball
//! (quantile) loss. Each comes twice: on tensors for training, and on plain slices for
//! evaluation, so that the validation loss and the metrics use the same definition.

use burn::tensor::{backend::Backend, Tensor};
use serde::{Deserialize, Serialize};
use shared::params::{HyperParams, LossKind};

/// A loss and its settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossSpec {
    /// Which loss.
    pub kind: LossKind,
    /// Weight of errors where actual > forecast (asymmetric loss). Default 3.
    pub under_penalty: f64,
    /// Weight of errors where actual <= forecast (asymmetric loss). Default 1.
    pub over_penalty: f64,
    /// Multiplier on target days in the peak season (asymmetric loss). Default 2.
    pub peak_season_boost: f64,
    /// Quantile of the pinball loss. Default 0.9.
    pub quantile: f64,
}

impl Default for LossSpec {
    fn default() -> Self {
        Self::from_params(&HyperParams::default())
    }
}

impl LossSpec {
    /// The loss a trial's parameters ask for.
    pub fn from_params(params: &HyperParams) -> Self {
        Self {
            kind: params.loss,
            under_penalty: params.under_penalty,
            over_penalty: params.over_penalty,
            peak_season_boost: params.peak_season_boost,
            quantile: params.quantile,
        }
    }

    /// The asymmetric loss with this spec's weights, whatever `kind` is; metrics report it
    /// for every trial so that trials trained on different losses compare on one scale.
    pub fn asymmetric(&self) -> Self {
        Self {
            kind: LossKind::Asymmetric,
            ..*self
        }
    }

    /// Mean loss over every element of `[batch, horizon]` tensors; `peak` is 1.0 on target
    /// days inside the peak season and 0.0 elsewhere (only the asymmetric loss reads it).
    pub fn tensor<B: Backend>(
        &self,
        forecast: Tensor<B, 2>,
        actual: Tensor<B, 2>,
        peak: Tensor<B, 2>,
    ) -> Tensor<B, 1> {
        let diff = actual - forecast;
        match self.kind {
            LossKind::Mse => diff.clone().mul(diff).mean(),
            LossKind::Asymmetric => {
                let under = diff.clone().greater_elem(0.0).float();
                let weight = under
                    .mul_scalar(self.under_penalty - self.over_penalty)
                    .add_scalar(self.over_penalty);
                let boost = peak
                    .mul_scalar(self.peak_season_boost - 1.0)
                    .add_scalar(1.0);
                (weight * boost * diff.clone() * diff).mean()
            }
            LossKind::Quantile => {
                let below = diff.clone().neg().clamp_min(0.0);
                (diff.mul_scalar(self.quantile) + below).mean()
            }
        }
    }

    /// Loss of one element.
    pub fn element(&self, forecast: f64, actual: f64, peak: bool) -> f64 {
        let diff = actual - forecast;
        match self.kind {
            LossKind::Mse => diff * diff,
            LossKind::Asymmetric => {
                let weight = if diff > 0.0 {
                    self.under_penalty
                } else {
                    self.over_penalty
                };
                let boost = if peak { self.peak_season_boost } else { 1.0 };
                weight * boost * diff * diff
            }
            LossKind::Quantile => (self.quantile * diff).max((self.quantile - 1.0) * diff),
        }
    }

    /// Mean loss over paired slices; `peak` holds 1.0 on peak-season days. 0 when empty.
    pub fn mean(&self, forecast: &[f32], actual: &[f32], peak: &[f32]) -> f64 {
        if forecast.is_empty() {
            return 0.0;
        }
        let total: f64 = forecast
            .iter()
            .zip(actual)
            .zip(peak)
            .map(|((f, a), p)| self.element(*f as f64, *a as f64, *p > 0.5))
            .sum();
        total / forecast.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;

    use super::*;
    use crate::device::CpuBackend;

    fn spec(kind: LossKind) -> LossSpec {
        LossSpec {
            kind,
            ..LossSpec::default()
        }
    }

    fn tensor_loss(spec: &LossSpec, f: [f32; 4], a: [f32; 4], p: [f32; 4]) -> f64 {
        let device = Default::default();
        let t = |v: [f32; 4]| {
            Tensor::<CpuBackend, 2>::from_data(TensorData::new(v.to_vec(), [2, 2]), &device)
        };
        spec.tensor(t(f), t(a), t(p)).into_scalar() as f64
    }

    // forecast [1, 4, 2, 0], actual [3, 1, 2, 1], peak [0, 0, 1, 1]
    const F: [f32; 4] = [1.0, 4.0, 2.0, 0.0];
    const A: [f32; 4] = [3.0, 1.0, 2.0, 1.0];
    const P: [f32; 4] = [0.0, 0.0, 1.0, 1.0];

    #[test]
    fn asymmetric_loss_weights_under_forecasts_and_peak_days() {
        // errors a - f = [2, -3, 0, 1]; weights under=3, over=1; peak boost 2 on the last two:
        // 3*4 + 1*9 + 0 + 3*2*1 = 27; mean 27 / 4 = 6.75
        let s = spec(LossKind::Asymmetric);
        assert!((tensor_loss(&s, F, A, P) - 6.75).abs() < 1e-6);
        assert!((s.mean(&F, &A, &P) - 6.75).abs() < 1e-12);
    }

    #[test]
    fn mse_ignores_weights_and_peak() {
        // (4 + 9 + 0 + 1) / 4 = 3.5
        let s = spec(LossKind::Mse);
        assert!((tensor_loss(&s, F, A, P) - 3.5).abs() < 1e-6);
        assert!((s.mean(&F, &A, &P) - 3.5).abs() < 1e-12);
    }

    #[test]
    fn pinball_loss_charges_quantile_under_and_rest_over() {
        // q = 0.9: under errors 2 and 1 cost 0.9 each per unit, the over error 3 costs 0.1:
        // 1.8 + 0.3 + 0 + 0.9 = 3.0; mean 0.75
        let s = spec(LossKind::Quantile);
        assert!((tensor_loss(&s, F, A, P) - 0.75).abs() < 1e-6);
        assert!((s.mean(&F, &A, &P) - 0.75).abs() < 1e-12);
    }
}
