//! Naive forecasts every model is compared with, computed from the raw series strictly
//! before each sample's forecast time, on exactly the model's samples.

/// The three baselines' forecasts, row-major `[samples, horizon]` in CBM.
#[derive(Debug, Clone, PartialEq)]
pub struct BaselineForecasts {
    /// The same weekday in the last observed week.
    pub seasonal_naive: Vec<f64>,
    /// The mean of the last 28 observed days.
    pub mean_28d: Vec<f64>,
    /// The mean of the same weekday over the last 13 observed weeks.
    pub weekday_profile: Vec<f64>,
}

/// Weeks averaged by the weekday profile.
pub const PROFILE_WEEKS: usize = 13;
/// Days averaged by the mean baseline.
pub const MEAN_DAYS: usize = 28;

/// Forecasts `horizon` days from each origin (index of the first target day in `values`);
/// the last observed day is `origin - gap - 1`. Days before the start of the series are
/// skipped (a short history averages what there is; with no history the forecast is 0).
pub fn forecast(
    values: &[f64],
    origins: &[usize],
    horizon: usize,
    gap: usize,
) -> BaselineForecasts {
    let mut out = BaselineForecasts {
        seasonal_naive: Vec::with_capacity(origins.len() * horizon),
        mean_28d: Vec::with_capacity(origins.len() * horizon),
        weekday_profile: Vec::with_capacity(origins.len() * horizon),
    };

    for &origin in origins {
        let Some(last) = origin.checked_sub(gap + 1) else {
            let zeros = std::iter::repeat_n(0.0, horizon);
            out.seasonal_naive.extend(zeros.clone());
            out.mean_28d.extend(zeros.clone());
            out.weekday_profile.extend(zeros);
            continue;
        };
        let first = last.saturating_sub(MEAN_DAYS - 1);
        let window = &values[first..=last.min(values.len().saturating_sub(1))];
        let mean = window.iter().sum::<f64>() / window.len().max(1) as f64;

        for step in 0..horizon {
            let day = origin + step;
            // The latest observed day on the same weekday as `day`.
            let weeks_back = (day - last).div_ceil(7);
            let same_weekday = (day as isize) - 7 * weeks_back as isize;
            let seasonal = if same_weekday >= 0 {
                values[same_weekday as usize]
            } else {
                mean
            };
            let profile: Vec<f64> = (0..PROFILE_WEEKS)
                .map(|w| same_weekday - 7 * w as isize)
                .take_while(|j| *j >= 0)
                .map(|j| values[j as usize])
                .collect();
            let profile = if profile.is_empty() {
                mean
            } else {
                profile.iter().sum::<f64>() / profile.len() as f64
            };
            out.seasonal_naive.push(seasonal);
            out.mean_28d.push(mean);
            out.weekday_profile.push(profile);
        }
    }

    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baselines_use_only_days_before_the_origin() {
        // Day i has value i; origin 100, horizon 8, no gap: last observed day 99.
        let values: Vec<f64> = (0..200).map(|i| i as f64).collect();
        let b = forecast(&values, &[100], 8, 0);
        // Seasonal naive: day 100 -> 93, ..., day 106 -> 99, day 107 -> 93 (two weeks back).
        assert_eq!(
            b.seasonal_naive,
            vec![93.0, 94.0, 95.0, 96.0, 97.0, 98.0, 99.0, 93.0]
        );
        // Mean of days 72..=99.
        assert!(b.mean_28d.iter().all(|m| (*m - 85.5).abs() < 1e-12));
        // Weekday profile of day 100: days 93, 86, ..., 9 (13 weeks) -> mean 51.
        assert!((b.weekday_profile[0] - 51.0).abs() < 1e-12);
        for forecast in b.seasonal_naive.iter().chain(&b.weekday_profile) {
            assert!(*forecast < 100.0);
        }
    }

    #[test]
    fn gap_moves_the_last_observed_day_back() {
        let values: Vec<f64> = (0..50).map(|i| i as f64).collect();
        let b = forecast(&values, &[40], 1, 3);
        // Last observed day 36; day 40 falls on the weekday of day 33.
        assert_eq!(b.seasonal_naive, vec![33.0]);
    }

    #[test]
    fn short_history_averages_what_exists() {
        let values = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        let b = forecast(&values, &[8], 2, 0);
        assert_eq!(b.weekday_profile, vec![2.0, 3.0]);
        assert!((b.mean_28d[0] - 4.5).abs() < 1e-12);
    }
}
