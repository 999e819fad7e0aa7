//! Forecast accuracy in CBM over every sample and horizon day (see
//! [`shared::metrics::ForecastMetrics`] for the definitions).

use shared::metrics::ForecastMetrics;

use crate::loss::LossSpec;

/// Scores `forecast` against `actual`, both row-major `[samples, horizon]` in CBM; `peak` marks
/// peak-season target days (1.0) for the asymmetric loss, which uses `loss`'s weights for both
/// `asymmetric_loss` and `own_asymmetric_loss`.
///
/// WAPE is NaN when the actuals sum to 0; MAPE is over days with actual > 0 (NaN if none).
pub fn forecast_metrics(
    forecast: &[f64],
    actual: &[f64],
    peak: &[f32],
    horizon: usize,
    loss: &LossSpec,
) -> ForecastMetrics {
    forecast_metrics_weighted(forecast, actual, peak, horizon, loss, loss)
}

/// [`forecast_metrics`] with two sets of weights: `evaluation` scores `asymmetric_loss` (the
/// ranking objective, the same for every trial of a series) and `own` scores
/// `own_asymmetric_loss` (the trial's training weights).
pub fn forecast_metrics_weighted(
    forecast: &[f64],
    actual: &[f64],
    peak: &[f32],
    horizon: usize,
    evaluation: &LossSpec,
    own: &LossSpec,
) -> ForecastMetrics {
    let n = forecast.len();
    if n == 0 || horizon == 0 {
        return ForecastMetrics::default();
    }
    let asymmetric = evaluation.asymmetric();
    let own = own.asymmetric();
    let mut own_sum = 0.0;
    let mut abs_sum = 0.0;
    let mut sq_sum = 0.0;
    let mut actual_sum = 0.0;
    let mut ape_sum = 0.0;
    let mut ape_count = 0usize;
    let mut bias_sum = 0.0;
    let mut under = 0usize;
    let mut loss_sum = 0.0;
    let mut per_step = vec![0.0; horizon];

    for (index, (&f, &a)) in forecast.iter().zip(actual).enumerate() {
        let error = f - a;
        abs_sum += error.abs();
        sq_sum += error * error;
        actual_sum += a;
        if a > 0.0 {
            ape_sum += error.abs() / a;
            ape_count += 1;
        }
        bias_sum += error;
        if f < a {
            under += 1;
        }
        let is_peak = peak.get(index).is_some_and(|p| *p > 0.5);
        loss_sum += asymmetric.element(f, a, is_peak);
        own_sum += own.element(f, a, is_peak);
        per_step[index % horizon] += error.abs();
    }

    let samples = (n / horizon).max(1) as f64;
    let wape = if actual_sum > 0.0 {
        abs_sum / actual_sum
    } else {
        f64::NAN
    };
    ForecastMetrics {
        mae: abs_sum / n as f64,
        rmse: (sq_sum / n as f64).sqrt(),
        wape,
        accuracy: 1.0 - wape,
        mape: if ape_count > 0 {
            ape_sum / ape_count as f64
        } else {
            f64::NAN
        },
        bias: bias_sum / n as f64,
        under_rate: under as f64 / n as f64,
        asymmetric_loss: loss_sum / n as f64,
        own_asymmetric_loss: own_sum / n as f64,
        mae_per_step: per_step.into_iter().map(|s| s / samples).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_match_hand_computation() {
        // Two samples, horizon 2. forecast [10, 0, 5, 5], actual [8, 2, 5, 0]:
        // errors f - a = [2, -2, 0, 5]; |e| sum 9; actual sum 15.
        let f = [10.0, 0.0, 5.0, 5.0];
        let a = [8.0, 2.0, 5.0, 0.0];
        let peak = [0.0, 1.0, 0.0, 0.0];
        let m = forecast_metrics(&f, &a, &peak, 2, &LossSpec::default());
        assert!((m.mae - 9.0 / 4.0).abs() < 1e-12);
        assert!((m.rmse - (33.0f64 / 4.0).sqrt()).abs() < 1e-12);
        assert!((m.wape - 9.0 / 15.0).abs() < 1e-12);
        assert!((m.accuracy - 6.0 / 15.0).abs() < 1e-12);
        // MAPE over actual > 0: 2/8, 2/2, 0/5 -> mean 1.25 / 3
        assert!((m.mape - 1.25 / 3.0).abs() < 1e-12);
        assert!((m.bias - 5.0 / 4.0).abs() < 1e-12);
        assert!((m.under_rate - 0.25).abs() < 1e-12);
        // asymmetric: over 1*4, under on a peak day 3*2*4 = 24, 0, over 25 -> 53 / 4
        assert!((m.asymmetric_loss - 53.0 / 4.0).abs() < 1e-12);
        // per step: step 0 errors 2, 0 -> 1; step 1 errors 2, 5 -> 3.5
        assert_eq!(m.mae_per_step, vec![1.0, 3.5]);
    }

    #[test]
    fn ranking_loss_uses_evaluation_weights_not_the_trials_own() {
        // Identical forecasts, two trials trained with different penalties: the ranking loss
        // is the same, only the own-weight loss differs.
        let f = [10.0, 0.0, 5.0, 5.0];
        let a = [8.0, 2.0, 5.0, 0.0];
        let peak = [0.0, 1.0, 0.0, 0.0];
        let evaluation = LossSpec::default();
        let soft = LossSpec {
            under_penalty: 1.0,
            ..LossSpec::default()
        };
        let hard = LossSpec {
            under_penalty: 6.0,
            ..LossSpec::default()
        };
        let m_soft = forecast_metrics_weighted(&f, &a, &peak, 2, &evaluation, &soft);
        let m_hard = forecast_metrics_weighted(&f, &a, &peak, 2, &evaluation, &hard);
        assert_eq!(m_soft.asymmetric_loss, m_hard.asymmetric_loss);
        assert!((m_soft.asymmetric_loss - 53.0 / 4.0).abs() < 1e-12);
        // own: over 4, under on peak 1*2*4 = 8, 0, over 25 -> 37 / 4; hard: 4 + 48 + 25 = 77
        assert!((m_soft.own_asymmetric_loss - 37.0 / 4.0).abs() < 1e-12);
        assert!((m_hard.own_asymmetric_loss - 77.0 / 4.0).abs() < 1e-12);
    }

    #[test]
    fn zero_actuals_give_nan_wape_not_a_panic() {
        let m = forecast_metrics(&[1.0], &[0.0], &[0.0], 1, &LossSpec::default());
        assert!(m.wape.is_nan());
        assert!(m.mape.is_nan());
    }
}
