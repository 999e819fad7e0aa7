//! Samples, chronological splits and scalers: from a feature frame to a [`Dataset`].
//!
//! A sample at origin `t` (its first target day) holds:
//! - the temporal features of the `input` days ending `gap` days before `t`
//!   (days `t-gap-input .. t-gap-1`),
//! - the static features of day `t`; the statistical ones (`*_expanding`) are taken from day
//!   `t-gap`, so they too use only days up to the last input day,
//! - the targets `y` of days `t .. t+horizon-1`.
//!
//! Samples are split by their target dates: training targets end on or before the last
//! training day, validation targets lie inside the validation span, test targets inside the
//! test span; a sample whose targets straddle two spans is dropped. Inputs may look back into an
//! earlier span. Feature and target scalers are fitted on the days of the training span only.

use chrono::NaiveDate;

use crate::calendar::Calendar;
use crate::config::{PipelineConfig, SplitConfig, WindowConfig};
use crate::dataset::{Dataset, FeatureScaler, SampleSet, Series, TargetScaler};
use crate::error::DataError;
use crate::features::{self, FeatureFrame};
use crate::params::TargetTransform;

/// Last day (index into the series, inclusive) of the training and validation spans; the test
/// span runs to the end of the series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spans {
    /// Last training day.
    pub train_end: usize,
    /// Last validation day.
    pub val_end: usize,
}

/// Builds the samples of a series: computes its features, splits, fits the scalers on the
/// training span and fills the three sample sets.
pub fn build(
    series: &Series,
    calendar: &Calendar,
    cfg: &PipelineConfig,
    transform: TargetTransform,
) -> Result<Dataset, DataError> {
    let spans = spans(series, cfg)?;
    let frame = features::compute(series, calendar)?;
    build_from_frame(series, &frame, calendar, cfg, transform, spans)
}

/// Builds the samples from an already computed feature frame (the leakage check passes its
/// own feature function's frame here).
pub fn build_from_frame(
    series: &Series,
    frame: &FeatureFrame,
    calendar: &Calendar,
    cfg: &PipelineConfig,
    transform: TargetTransform,
    spans: Spans,
) -> Result<Dataset, DataError> {
    let window = &cfg.window;
    let temporal = frame.temporal_columns()?;
    let statics = frame.static_columns()?;
    let temporal_scaler = fit_features(&frame.temporal_names, &temporal, series, spans.train_end);
    let static_scaler = fit_features(&frame.static_names, &statics, series, spans.train_end);
    let target_scaler = fit_target(&series.values[..=spans.train_end], transform);
    let peak = features::peak_flags(&series.dates, calendar, &series.key.category);
    let inputs = ScaledInputs::new(
        &temporal,
        &statics,
        &statistical_mask(&frame.static_names),
        (&temporal_scaler, &static_scaler),
        window.gap,
    );

    let n = series.values.len();
    let first_origin = window.input + window.gap;
    let ranges = [
        (first_origin, spans.train_end + 1),
        (spans.train_end + 1, spans.val_end + 1),
        (spans.val_end + 1, n),
    ];
    let mut sets = ranges.iter().map(|&(span_start, span_end)| {
        // Origins whose whole target range lies in [span_start, span_end).
        let origins = span_start.max(first_origin)..(span_end + 1).saturating_sub(window.horizon);
        let mut set = empty_set(window, temporal.len(), statics.len());
        let count = origins.len();
        set.x_temporal
            .reserve(count * window.input * temporal.len());
        set.x_static.reserve(count * statics.len());
        for buffer in [&mut set.y, &mut set.y_cbm, &mut set.peak] {
            buffer.reserve(count * window.horizon);
        }
        for origin in origins {
            inputs.push_inputs(&mut set, window, origin);
            let targets = origin..origin + window.horizon;
            for (&cbm, &is_peak) in series.values[targets.clone()].iter().zip(&peak[targets]) {
                set.y.push(target_scaler.forward(cbm) as f32);
                set.y_cbm.push(cbm as f32);
                set.peak.push(is_peak);
            }
            set.category.push(0);
            set.origin.push(origin);
        }
        set
    });
    let (train, val, test) = (
        sets.next().expect("three spans"),
        sets.next().expect("three spans"),
        sets.next().expect("three spans"),
    );
    tracing::debug!(
        series = %series.key,
        train = train.len(),
        val = val.len(),
        test = test.len(),
        "samples built"
    );
    Ok(Dataset {
        series: series.clone(),
        train,
        val,
        test,
        target_scaler,
        temporal_scaler,
        static_scaler,
    })
}

/// The date of series index `index`, which may lie past the last data day.
fn origin_date(series: &Series, index: usize) -> String {
    match series.dates.first() {
        Some(first) => (*first + chrono::Duration::days(index as i64)).to_string(),
        None => format!("day {index}"),
    }
}

/// The model inputs of one origin, scaled with the dataset's scalers, for forecasting:
/// `(x_temporal [input * temporal_dim], x_static [static_dim])`. `origin` is the first forecast
/// day as an index into the series and may be `series.len()` (the day after the last data day).
pub fn inference_input(
    series: &Series,
    calendar: &Calendar,
    dataset_scalers: (&FeatureScaler, &FeatureScaler),
    window: &WindowConfig,
    origin: usize,
) -> Result<(Vec<f32>, Vec<f32>), DataError> {
    let (temporal_scaler, static_scaler) = dataset_scalers;
    let n = series.values.len();
    let needed = window.input + window.gap;
    if origin > n || origin < needed {
        return Err(DataError::Config {
            key: "origin".into(),
            message: format!(
                "forecast origin {} of series {} is outside the usable range: it needs {needed} \
                 days of history before it (the earliest origin is {}) and may be at most the \
                 day after the last data day ({})",
                origin_date(series, origin),
                series.key,
                origin_date(series, needed),
                day_after(series)
            ),
        });
    }

    // Features of the origin day use only earlier days, so the series is cut after the origin
    // (and extended by a placeholder day when the origin is the day after the data).
    let mut cut = Series {
        key: series.key.clone(),
        dates: series.dates[..origin.min(n)].to_vec(),
        values: series.values[..origin.min(n)].to_vec(),
        category_values: series
            .category_values
            .as_ref()
            .map(|c| c[..origin.min(n)].to_vec()),
    };
    if origin == n {
        cut.dates.push(day_after(series));
        cut.values.push(0.0);
        if let Some(c) = cut.category_values.as_mut() {
            c.push(0.0);
        }
    } else {
        cut.dates.push(series.dates[origin]);
        cut.values.push(series.values[origin]);
        if let Some(c) = cut.category_values.as_mut() {
            c.push(series.category_values.as_ref().expect("cut from it")[origin]);
        }
    }
    let frame = features::compute(&cut, calendar)?;
    for (scaler, names) in [
        (temporal_scaler, &frame.temporal_names),
        (static_scaler, &frame.static_names),
    ] {
        if &scaler.names != names {
            return Err(DataError::Config {
                key: "scaler".into(),
                message: format!(
                    "the model's scaler has features [{}] but the pipeline computes [{}]; \
                     retrain the model with this version",
                    scaler.names.join(", "),
                    names.join(", ")
                ),
            });
        }
    }
    let temporal = frame.temporal_columns()?;
    let statics = frame.static_columns()?;
    let inputs = ScaledInputs::new(
        &temporal,
        &statics,
        &statistical_mask(&frame.static_names),
        (temporal_scaler, static_scaler),
        window.gap,
    );
    let mut set = empty_set(window, temporal.len(), statics.len());
    inputs.push_inputs(&mut set, window, origin);
    Ok((set.x_temporal, set.x_static))
}

/// The split spans of a series, or an error saying how many days are needed.
pub fn spans(series: &Series, cfg: &PipelineConfig) -> Result<Spans, DataError> {
    let n = series.values.len();
    let window = &cfg.window;
    let floor = window.input + window.gap + 3 * window.horizon;
    if window.input == 0 || window.horizon == 0 {
        return Err(DataError::Config {
            key: "window".into(),
            message: "window.input and window.horizon must be at least 1 day".into(),
        });
    }
    match &cfg.split {
        SplitConfig::Fractions { train, val, test } => {
            check_fractions(*train, *val, *test)?;
            let needed = min_days(window, &cfg.split);
            if n < needed {
                return Err(DataError::TooShort {
                    series: series.key.to_string(),
                    days: n,
                    needed,
                });
            }
            let (train_len, val_len) = fraction_lengths(n, *train, *val);
            Ok(Spans {
                train_end: train_len - 1,
                val_end: train_len + val_len - 1,
            })
        }
        SplitConfig::Dates { train_end, val_end } => {
            if n < floor {
                return Err(DataError::TooShort {
                    series: series.key.to_string(),
                    days: n,
                    needed: floor,
                });
            }
            let first = series.dates[0];
            let last = series.dates[n - 1];
            let index = |d: &NaiveDate| (*d - first).num_days();
            let (t, v) = (index(train_end), index(val_end));
            let span_error = |message: String| DataError::Config {
                key: "split".into(),
                message: format!("series {} ({first} .. {last}): {message}", series.key),
            };
            if !(0 <= t && t < v && v < n as i64 - 1) {
                return Err(span_error(format!(
                    "split dates train_end {train_end} and val_end {val_end} must satisfy \
                     {first} <= train_end < val_end < {last}"
                )));
            }
            let (t, v) = (t as usize, v as usize);
            if t + 1 < window.input + window.gap + window.horizon {
                return Err(span_error(format!(
                    "the training span ends {train_end}, {} days in; it needs at least {} days \
                     (input + gap + horizon); move train_end later",
                    t + 1,
                    window.input + window.gap + window.horizon
                )));
            }
            for (name, len) in [("validation", v - t), ("test", n - 1 - v)] {
                if len < window.horizon {
                    return Err(span_error(format!(
                        "the {name} span has {len} days, fewer than the horizon of {} days; \
                         move the split dates",
                        window.horizon
                    )));
                }
            }
            Ok(Spans {
                train_end: t,
                val_end: v,
            })
        }
    }
}

/// The fewest days a series needs for at least one sample in each of the three splits.
pub fn min_days(window: &WindowConfig, split: &SplitConfig) -> usize {
    let floor = window.input + window.gap + 3 * window.horizon;
    let SplitConfig::Fractions { train, val, .. } = split else {
        return floor;
    };
    (floor..floor * 1000)
        .find(|&n| {
            let (train_len, val_len) = fraction_lengths(n, *train, *val);
            let test_len = n.saturating_sub(train_len + val_len);
            train_len >= window.input + window.gap + window.horizon
                && val_len >= window.horizon
                && test_len >= window.horizon
        })
        .unwrap_or(usize::MAX)
}

/// Days in the training and validation spans of an `n`-day series.
fn fraction_lengths(n: usize, train: f64, val: f64) -> (usize, usize) {
    // The nudge keeps 0.7 + 0.1 (= 0.7999...) of 1095 days at 876, not 875.
    let days = |fraction: f64| (n as f64 * fraction + 1e-9).floor() as usize;
    let train_len = days(train);
    let val_end = days(train + val).max(train_len);
    (train_len, val_end - train_len)
}

fn check_fractions(train: f64, val: f64, test: f64) -> Result<(), DataError> {
    let all = [train, val, test];
    if all.iter().any(|f| !(f.is_finite() && *f > 0.0)) || ((train + val + test) - 1.0).abs() > 1e-6
    {
        return Err(DataError::Config {
            key: "split.fractions".into(),
            message: format!(
                "train {train}, val {val} and test {test} must be positive and add up to 1"
            ),
        });
    }
    Ok(())
}

/// Every day's model inputs, scaled once, so that a sample's inputs are contiguous slices: its
/// input window is `input` consecutive rows of `temporal`, its static inputs one row of
/// `statics`.
struct ScaledInputs {
    /// `[days, temporal_dim]`, row-major: the scaled temporal features of each day.
    temporal: Vec<f32>,
    temporal_dim: usize,
    /// `[days, static_dim]`, row-major: the static inputs of a sample whose origin is that day
    /// (statistical features taken from day `origin - gap`, calendar ones from the origin).
    statics: Vec<f32>,
    static_dim: usize,
}

impl ScaledInputs {
    fn new(
        temporal: &[&[f64]],
        statics: &[&[f64]],
        statistical: &[bool],
        scalers: (&FeatureScaler, &FeatureScaler),
        gap: usize,
    ) -> Self {
        let days = temporal.first().or(statics.first()).map_or(0, |c| c.len());
        let (temporal_scaler, static_scaler) = scalers;
        let mut scaled_temporal = Vec::with_capacity(days * temporal.len());
        let mut scaled_statics = Vec::with_capacity(days * statics.len());
        for day in 0..days {
            for (j, column) in temporal.iter().enumerate() {
                scaled_temporal.push(scale(temporal_scaler, j, column[day]));
            }
            for (j, column) in statics.iter().enumerate() {
                // Days before `gap` start no sample; they get the origin's own value.
                let from = if statistical[j] && day >= gap {
                    day - gap
                } else {
                    day
                };
                scaled_statics.push(scale(static_scaler, j, column[from]));
            }
        }
        Self {
            temporal: scaled_temporal,
            temporal_dim: temporal.len(),
            statics: scaled_statics,
            static_dim: statics.len(),
        }
    }

    /// The scaled input window of the sample at `origin`: `[input, temporal_dim]`.
    fn window(&self, window: &WindowConfig, origin: usize) -> &[f32] {
        let start = origin - window.gap - window.input;
        &self.temporal[start * self.temporal_dim..(start + window.input) * self.temporal_dim]
    }

    /// The scaled static inputs of the sample at `origin`: `[static_dim]`.
    fn statics(&self, origin: usize) -> &[f32] {
        &self.statics[origin * self.static_dim..(origin + 1) * self.static_dim]
    }

    fn push_inputs(&self, set: &mut SampleSet, window: &WindowConfig, origin: usize) {
        set.x_temporal
            .extend_from_slice(self.window(window, origin));
        set.x_static.extend_from_slice(self.statics(origin));
    }
}

fn scale(scaler: &FeatureScaler, j: usize, value: f64) -> f32 {
    ((value - scaler.mean[j]) / scaler.std[j]) as f32
}

/// Which static features are statistical (computed from past volumes): the contract names
/// them `*_expanding`.
pub fn statistical_mask(names: &[String]) -> Vec<bool> {
    names.iter().map(|n| n.ends_with("_expanding")).collect()
}

/// Mean and standard deviation of each column over days `0..=train_end`.
pub fn fit_features(
    names: &[String],
    columns: &[&[f64]],
    series: &Series,
    train_end: usize,
) -> FeatureScaler {
    let (mean, std) = columns.iter().map(|c| mean_std(&c[..=train_end])).unzip();
    FeatureScaler {
        names: names.to_vec(),
        mean,
        std,
        fitted_through: series.dates.get(train_end).copied(),
    }
}

/// The target scaler over the training span's volumes.
pub fn fit_target(train_values: &[f64], transform: TargetTransform) -> TargetScaler {
    let transformed: Vec<f64> = match transform {
        TargetTransform::None => train_values.to_vec(),
        TargetTransform::Log1p => train_values.iter().map(|v| v.max(0.0).ln_1p()).collect(),
    };
    let (mean, std) = mean_std(&transformed);
    TargetScaler {
        transform,
        mean,
        std,
    }
}

/// Population mean and standard deviation; a standard deviation of 0 becomes 1.
fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let std = var.sqrt();
    (mean, if std > 1e-12 { std } else { 1.0 })
}

fn empty_set(window: &WindowConfig, temporal_dim: usize, static_dim: usize) -> SampleSet {
    SampleSet {
        input_len: window.input,
        horizon: window.horizon,
        temporal_dim,
        static_dim,
        ..SampleSet::default()
    }
}

fn day_after(series: &Series) -> NaiveDate {
    series
        .dates
        .last()
        .map(|d| *d + chrono::Duration::days(1))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_data::real_dry_series as real;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn dated_split() -> PipelineConfig {
        PipelineConfig {
            split: SplitConfig::Dates {
                train_end: date(2024, 6, 30),
                val_end: date(2024, 12, 31),
            },
            ..PipelineConfig::default()
        }
    }

    #[test]
    fn samples_are_split_by_target_dates_and_straddlers_dropped() {
        let s = real(None);
        let cfg = dated_split();
        let ds = build(&s, &Calendar::vietnam(), &cfg, TargetTransform::None).unwrap();
        let last_target = |set: &SampleSet| s.dates[*set.origin.last().unwrap() + 29];
        let first_target = |set: &SampleSet| s.dates[set.origin[0]];
        assert_eq!(last_target(&ds.train), date(2024, 6, 30));
        assert_eq!(first_target(&ds.val), date(2024, 7, 1));
        assert_eq!(last_target(&ds.val), date(2024, 12, 31));
        assert_eq!(first_target(&ds.test), date(2025, 1, 1));
        assert_eq!(last_target(&ds.test), date(2025, 12, 30));
        // 184 validation days hold 184 - 30 + 1 windows.
        assert_eq!(ds.val.len(), 155);
        assert_eq!(ds.train.x_temporal.len(), ds.train.len() * 30 * 4);
        assert_eq!(ds.train.x_static.len(), ds.train.len() * 17);
        assert_eq!(ds.test.y.len(), ds.test.len() * 30);
        assert!(ds.train.category.iter().all(|c| *c == 0));
    }

    #[test]
    fn scalers_ignore_days_after_the_training_span() {
        let s = real(None);
        let cfg = dated_split();
        let calendar = Calendar::vietnam();
        let a = build(&s, &calendar, &cfg, TargetTransform::Log1p).unwrap();
        let mut later_changed = s.clone();
        let train_end = spans(&s, &cfg).unwrap().train_end;
        for v in &mut later_changed.values[train_end + 1..] {
            *v *= 10.0;
        }
        let b = build(&later_changed, &calendar, &cfg, TargetTransform::Log1p).unwrap();
        assert_eq!(a.temporal_scaler, b.temporal_scaler);
        assert_eq!(a.static_scaler, b.static_scaler);
        assert_eq!(a.target_scaler, b.target_scaler);
        assert_eq!(a.temporal_scaler.fitted_through, Some(date(2024, 6, 30)));
        let y = a.test.y_cbm[0] as f64;
        assert!((a.target_scaler.inverse(a.target_scaler.forward(y)) - y).abs() < 1e-6);
    }

    // Regression: 0.7 + 0.1 summed to 0.7999.. and cost the validation span its last day.
    #[test]
    fn fraction_split_uses_seventy_ten_twenty_percent_of_days() {
        let s = real(None);
        let spans = spans(&s, &PipelineConfig::default()).unwrap();
        assert_eq!(spans.train_end, 765); // floor(1095 * 0.7) = 766 days
        assert_eq!(spans.val_end, 875); // floor(1095 * 0.8) = 876 days
    }

    #[test]
    fn too_short_series_names_the_minimum_days() {
        let mut s = real(None);
        s.dates.truncate(200);
        s.values.truncate(200);
        let err = build(
            &s,
            &Calendar::vietnam(),
            &PipelineConfig::default(),
            TargetTransform::None,
        )
        .unwrap_err();
        let needed = min_days(&WindowConfig::default(), &SplitConfig::default());
        assert!(
            err.to_string().contains(&format!("at least {needed}")),
            "{err}"
        );
        assert!(needed > 200 && needed <= 400, "{needed}");
        let mut fits = real(None);
        fits.dates.truncate(needed);
        fits.values.truncate(needed);
        assert!(spans(&fits, &PipelineConfig::default()).is_ok());
    }

    #[test]
    fn inference_input_equals_the_sample_inputs_of_the_same_origin() {
        let s = real(Some("OREO"));
        let cfg = dated_split();
        let calendar = Calendar::vietnam();
        let ds = build(&s, &calendar, &cfg, TargetTransform::None).unwrap();
        let k = 7;
        let origin = ds.test.origin[k];
        let scalers = (&ds.temporal_scaler, &ds.static_scaler);
        let (xt, xs) = inference_input(&s, &calendar, scalers, &cfg.window, origin).unwrap();
        let per = 30 * 4;
        assert_eq!(xt, ds.test.x_temporal[k * per..(k + 1) * per]);
        assert_eq!(xs, ds.test.x_static[k * 17..(k + 1) * 17]);
        let after_last = inference_input(&s, &calendar, scalers, &cfg.window, s.values.len());
        assert_eq!(after_last.unwrap().0.len(), per);
        assert!(inference_input(&s, &calendar, scalers, &cfg.window, s.values.len() + 1).is_err());
    }

    // `sweep predict --from` outside the range used to report series indices, not dates.
    #[test]
    fn origin_out_of_range_is_reported_as_dates() {
        let s = real(None);
        let cfg = dated_split();
        let calendar = Calendar::vietnam();
        let ds = build(&s, &calendar, &cfg, TargetTransform::None).unwrap();
        let scalers = (&ds.temporal_scaler, &ds.static_scaler);
        let err = inference_input(&s, &calendar, scalers, &cfg.window, 4).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("origin 2023-01-05"), "{text}");
        assert!(text.contains("earliest origin is 2023-01-31"), "{text}");
        assert!(text.contains("(2025-12-31)"), "{text}");
    }
}
