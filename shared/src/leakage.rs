//! The leakage check: named checks proving that no future information reaches a sample.
//!
//! The coordinator runs it before publishing a sweep and every worker before training. Each
//! check reports PASS or FAIL and, on failure, the first offending feature (or sample) and date:
//!
//! - `no_lookahead`: the features are recomputed on the series cut at several days (the first
//!   sample origin, the last training day and the last validation day); on every day up to the
//!   cut they must equal the full computation. A feature that reads
//!   a later day changes when the series is cut, and is named with the first date it differs.
//! - `finite_features`: no NaN or infinity in the feature frame or the sample buffers.
//! - `no_window_overlap`: each sample's input days end before its first target day, its targets
//!   lie inside one split span, and its CBM targets are the series values of those days.
//! - `correct_gap`: exactly `gap` days separate the last input day from the first target day,
//!   and the scaled inputs are the features of those input days (statistical static features
//!   of day `origin - gap`, calendar static features of the origin).
//! - `temporal_order`: training, validation and test targets are non-empty, disjoint and in
//!   that order in time.
//! - `scaler_train_only`: refitting every scaler on the series cut at the last training day
//!   gives the same scalers, so no later day influenced them.
//!
//! [`check_with`] takes the feature function as a parameter, so a test can plug in a
//! deliberately leaky feature and watch `no_lookahead` fail.

use chrono::NaiveDate;

use crate::calendar::Calendar;
use crate::config::PipelineConfig;
use crate::dataset::{Dataset, FeatureScaler, SampleSet, Series};
use crate::error::DataError;
use crate::features::{self, FeatureFrame};
use crate::params::TargetTransform;
use crate::samples::{self, Spans};

/// Names of the checks, in the order they are reported.
pub const CHECKS: [&str; 6] = [
    "no_lookahead",
    "finite_features",
    "no_window_overlap",
    "correct_gap",
    "temporal_order",
    "scaler_train_only",
];

/// Relative tolerance when comparing recomputed values (rolling sums may round differently in
/// the last bits; a leak changes values far more).
const TOLERANCE: f64 = 1e-9;

/// The outcome of one named check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// Check name, one of [`CHECKS`].
    pub name: &'static str,
    /// Whether it passed.
    pub passed: bool,
    /// What was verified, or the first offending feature and date.
    pub detail: String,
}

/// The outcome of every check on one series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeakageReport {
    /// One result per check, in [`CHECKS`] order.
    pub checks: Vec<CheckResult>,
}

impl LeakageReport {
    /// True when every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// The first failed check, if any.
    pub fn first_failure(&self) -> Option<&CheckResult> {
        self.checks.iter().find(|c| !c.passed)
    }

    /// A plain-text table: check, PASS/FAIL, detail.
    pub fn table(&self) -> String {
        let width = self
            .checks
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let mut out = format!("{:width$}  result  detail\n", "check");
        for c in &self.checks {
            let result = if c.passed { "PASS" } else { "FAIL" };
            out.push_str(&format!("{:width$}  {result:6}  {}\n", c.name, c.detail));
        }
        out
    }
}

/// Runs every check with the pipeline's own features ([`features::compute`]).
pub fn check(
    series: &Series,
    calendar: &Calendar,
    cfg: &PipelineConfig,
    transform: TargetTransform,
) -> Result<LeakageReport, DataError> {
    check_with(series, calendar, cfg, transform, &features::compute)
}

/// A feature function: the daily feature frame of a series.
pub type FeatureFn<'a> = &'a dyn Fn(&Series, &Calendar) -> Result<FeatureFrame, DataError>;

/// Runs every check with the given feature function. Errors are bad input (a series too short
/// for the split, a feature function that fails); a leak is a failed check, not an error.
pub fn check_with(
    series: &Series,
    calendar: &Calendar,
    cfg: &PipelineConfig,
    transform: TargetTransform,
    features: FeatureFn<'_>,
) -> Result<LeakageReport, DataError> {
    let spans = samples::spans(series, cfg)?;
    let frame = features(series, calendar)?;
    let dataset = samples::build_from_frame(series, &frame, calendar, cfg, transform, spans)?;

    let first_origin = cfg.window.input + cfg.window.gap;
    let mut cuts = vec![first_origin, spans.train_end, spans.val_end];
    cuts.sort_unstable();
    cuts.dedup();
    let mut train_frame = None;
    let mut lookahead = Lookahead::default();
    for &cut in &cuts {
        let truncated = truncate(series, cut);
        let cut_frame = features(&truncated, calendar)?;
        lookahead.compare(&frame, &cut_frame, cut);
        if cut == spans.train_end {
            train_frame = Some((truncated, cut_frame));
        }
    }
    let (train_series, train_frame) = train_frame.expect("the training end is one of the cuts");

    let checks = vec![
        lookahead.result(&frame, &cuts),
        finite_features(&frame, &dataset),
        no_window_overlap(series, &dataset, cfg, spans),
        correct_gap(series, &frame, &dataset, cfg),
        temporal_order(series, &dataset, spans),
        scaler_train_only(&train_series, &train_frame, &dataset, spans, transform),
    ];
    let report = LeakageReport { checks };
    tracing::debug!(series = %series.key, passed = report.passed(), "leakage check done");
    Ok(report)
}

/// The first `cut + 1` days of a series.
fn truncate(series: &Series, cut: usize) -> Series {
    let end = (cut + 1).min(series.values.len());
    Series {
        key: series.key.clone(),
        dates: series.dates[..end].to_vec(),
        values: series.values[..end].to_vec(),
        category_values: series.category_values.as_ref().map(|c| c[..end].to_vec()),
    }
}

fn same(a: f64, b: f64) -> bool {
    a == b
        || (a.is_nan() && b.is_nan())
        || (a - b).abs() <= TOLERANCE * a.abs().max(b.abs()).max(1.0)
}

/// The earliest difference between full and truncated features over all cuts.
#[derive(Default)]
struct Lookahead {
    /// (row, feature, full value, truncated value, cut row)
    first: Option<(usize, String, f64, f64, usize)>,
    missing: Option<String>,
}

impl Lookahead {
    fn compare(&mut self, full: &FeatureFrame, cut_frame: &FeatureFrame, cut: usize) {
        for column in full.columns() {
            let Some(truncated) = cut_frame.column(&column.name) else {
                self.missing.get_or_insert_with(|| {
                    format!("feature `{}` is missing when cut", column.name)
                });
                continue;
            };
            if truncated.len() != cut + 1 {
                self.missing.get_or_insert_with(|| {
                    format!(
                        "feature `{}` has {} rows for {} days",
                        column.name,
                        truncated.len(),
                        cut + 1
                    )
                });
                continue;
            }
            let hit = (0..=cut).find(|&i| !same(column.values[i], truncated[i]));
            if let Some(i) = hit {
                if self.first.as_ref().is_none_or(|f| i < f.0) {
                    self.first =
                        Some((i, column.name.clone(), column.values[i], truncated[i], cut));
                }
            }
        }
    }

    fn result(&self, full: &FeatureFrame, cuts: &[usize]) -> CheckResult {
        let date = |i: usize| full.dates[i];
        let failure = if let Some(message) = &self.missing {
            Some(message.clone())
        } else {
            self.first
                .as_ref()
                .map(|(i, name, full_value, cut_value, cut)| {
                    format!(
                    "feature `{name}` on {} is {full_value} on the full series but {cut_value} \
                     when the series ends {}: it reads days after {}",
                    date(*i),
                    date(*cut),
                    date(*i)
                )
                })
        };
        let cut_dates: Vec<String> = cuts.iter().map(|&c| date(c).to_string()).collect();
        match failure {
            Some(detail) => fail("no_lookahead", detail),
            None => pass(
                "no_lookahead",
                format!(
                    "{} features identical up to each cut ({})",
                    full.columns().len(),
                    cut_dates.join(", ")
                ),
            ),
        }
    }
}

/// Index of the first NaN or infinite value. Scans blocks without an early exit inside a block,
/// so that the scan vectorises; this check reads every value the model will see.
fn first_non_finite<T: Copy + Into<f64>>(values: &[T]) -> Option<usize> {
    const BLOCK: usize = 256;
    let block = values.chunks(BLOCK).position(|block| {
        !block
            .iter()
            .fold(true, |finite, &v| finite & v.into().is_finite())
    })?;
    let start = block * BLOCK;
    values[start..]
        .iter()
        .position(|&v| !v.into().is_finite())
        .map(|i| start + i)
}

fn finite_features(frame: &FeatureFrame, dataset: &Dataset) -> CheckResult {
    let name = "finite_features";
    let mut first: Option<(usize, &str, f64)> = None;
    for column in frame.columns() {
        if let Some(i) = first_non_finite(&column.values) {
            if first.is_none_or(|f| i < f.0) {
                first = Some((i, &column.name, column.values[i]));
            }
        }
    }
    if let Some((i, feature, value)) = first {
        return fail(
            name,
            format!("feature `{feature}` is {value} on {}", frame.dates[i]),
        );
    }
    for (split, set) in splits(dataset) {
        let buffers: [(&str, &[f32], usize); 3] = [
            (
                "x_temporal",
                &set.x_temporal,
                set.input_len * set.temporal_dim,
            ),
            ("x_static", &set.x_static, set.static_dim),
            ("y", &set.y, set.horizon),
        ];
        for (buffer, values, per_sample) in buffers {
            if let Some(i) = first_non_finite(values) {
                let origin = set.origin[i / per_sample.max(1)];
                return fail(
                    name,
                    format!(
                        "{split} sample with origin {} has a non-finite value in {buffer}",
                        dataset.series.dates[origin]
                    ),
                );
            }
        }
    }
    pass(
        name,
        format!(
            "{} values of {} features and every sample buffer are finite",
            frame.len() * frame.columns().len(),
            frame.columns().len()
        ),
    )
}

fn no_window_overlap(
    series: &Series,
    dataset: &Dataset,
    cfg: &PipelineConfig,
    spans: Spans,
) -> CheckResult {
    let name = "no_window_overlap";
    let window = &cfg.window;
    let n = series.values.len();
    let bounds = [
        (0, spans.train_end),
        (spans.train_end + 1, spans.val_end),
        (spans.val_end + 1, n - 1),
    ];
    let mut samples = 0;
    for ((split, set), (lo, hi)) in splits(dataset).into_iter().zip(bounds) {
        for (k, &origin) in set.origin.iter().enumerate() {
            let date = series.dates.get(origin).copied().unwrap_or_default();
            let last_input = origin.checked_sub(window.gap + 1);
            let last_target = origin + set.horizon - 1;
            if last_input.is_none_or(|d| d >= origin) || origin < window.input + window.gap {
                return fail(
                    name,
                    format!("{split} sample {date}: inputs reach its targets"),
                );
            }
            if origin < lo || last_target > hi {
                return fail(
                    name,
                    format!(
                        "{split} sample {date}: targets through {} leave the {split} span",
                        series
                            .dates
                            .get(last_target)
                            .map(|d| d.to_string())
                            .unwrap_or_default()
                    ),
                );
            }
            let targets = &set.y_cbm[k * set.horizon..(k + 1) * set.horizon];
            let actual = &series.values[origin..=last_target];
            if let Some(j) = (0..set.horizon).find(|&j| targets[j] != actual[j] as f32) {
                return fail(
                    name,
                    format!(
                        "{split} sample {date}: target {} is {} but the series has {}",
                        series.dates[origin + j],
                        targets[j],
                        actual[j]
                    ),
                );
            }
            samples += 1;
        }
    }
    pass(
        name,
        format!("{samples} samples: inputs end before targets, targets inside one span"),
    )
}

fn correct_gap(
    series: &Series,
    frame: &FeatureFrame,
    dataset: &Dataset,
    cfg: &PipelineConfig,
) -> CheckResult {
    let name = "correct_gap";
    let window = &cfg.window;
    let (Ok(temporal), Ok(statics)) = (frame.temporal_columns(), frame.static_columns()) else {
        return fail(name, "the feature frame lacks a model input feature".into());
    };
    let statistical = samples::statistical_mask(&frame.static_names);
    // Every day's scaled feature values, computed here from the frame and the scalers, apart
    // from the sample builder, so that a sample taking the wrong day is caught.
    let scaled = |scaler: &FeatureScaler, columns: &[&[f64]]| -> Vec<Vec<f32>> {
        columns
            .iter()
            .enumerate()
            .map(|(j, column)| {
                let (mean, std) = (scaler.mean[j], scaler.std[j]);
                column.iter().map(|v| ((v - mean) / std) as f32).collect()
            })
            .collect()
    };
    let statics = scaled(&dataset.static_scaler, &statics);
    // Temporal values day-major, `[days, temporal_dim]`: a sample's expected input window is
    // then one contiguous slice, compared in one pass.
    let td = temporal.len();
    let days = temporal.first().map_or(0, |c| c.len());
    let mut expected = vec![0.0f32; days * td];
    for (j, column) in scaled(&dataset.temporal_scaler, &temporal)
        .iter()
        .enumerate()
    {
        for (day, &value) in column.iter().enumerate() {
            expected[day * td + j] = value;
        }
    }
    let close = |a: f32, b: f32| (a - b).abs() <= 1e-5 * a.abs().max(b.abs()).max(1.0);
    let all_close = |a: &[f32], b: &[f32]| {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .fold(true, |same, (&x, &y)| same & close(x, y))
    };
    for (split, set) in splits(dataset) {
        if set.temporal_dim != td {
            return fail(
                name,
                format!(
                    "{split} samples have {} temporal features, the frame {td}",
                    set.temporal_dim
                ),
            );
        }
        for (k, &origin) in set.origin.iter().enumerate() {
            let date = series.dates[origin];
            let start = origin - window.gap - window.input;
            let last_input = series.dates[origin - window.gap - 1];
            if (date - last_input).num_days() != window.gap as i64 + 1 {
                return fail(
                    name,
                    format!(
                        "{split} sample {date}: last input day {last_input} is not {} days before",
                        window.gap + 1
                    ),
                );
            }
            let x = &set.x_temporal[k * window.input * td..(k + 1) * window.input * td];
            let want = &expected[start * td..(start + window.input) * td];
            if !all_close(x, want) {
                let i = (0..x.len()).find(|&i| !close(x[i], want[i])).unwrap_or(0);
                let (step, j) = (i / td, i % td);
                return fail(
                    name,
                    format!(
                        "{split} sample {date}: temporal input `{}` at step {step} is not the \
                         feature of {}",
                        frame.temporal_names[j],
                        series.dates[start + step]
                    ),
                );
            }
            let s = &set.x_static[k * set.static_dim..(k + 1) * set.static_dim];
            for (j, column) in statics.iter().enumerate() {
                let day = if statistical[j] {
                    origin - window.gap
                } else {
                    origin
                };
                if !close(s[j], column[day]) {
                    return fail(
                        name,
                        format!(
                            "{split} sample {date}: static input `{}` is not the feature of {}",
                            frame.static_names[j], series.dates[day]
                        ),
                    );
                }
            }
        }
    }
    pass(
        name,
        format!(
            "gap of {} days between the last input day and the first target day in every sample",
            window.gap
        ),
    )
}

fn temporal_order(series: &Series, dataset: &Dataset, spans: Spans) -> CheckResult {
    let name = "temporal_order";
    let range = |set: &SampleSet| -> Option<(NaiveDate, NaiveDate)> {
        let first = *set.origin.iter().min()?;
        let last = *set.origin.iter().max()? + set.horizon - 1;
        Some((series.dates[first], series.dates[last]))
    };
    let mut ranges = Vec::new();
    for (split, set) in splits(dataset) {
        match range(set) {
            Some(r) => ranges.push((split, r)),
            None => return fail(name, format!("the {split} split has no samples")),
        }
    }
    for pair in ranges.windows(2) {
        let ((a, (_, a_last)), (b, (b_first, _))) = (pair[0], pair[1]);
        if a_last >= b_first {
            return fail(
                name,
                format!("{a} targets run to {a_last}, on or after the first {b} target {b_first}"),
            );
        }
    }
    let train_end = series.dates[spans.train_end];
    let val_end = series.dates[spans.val_end];
    if ranges[0].1 .1 > train_end || ranges[1].1 .1 > val_end {
        return fail(name, "targets cross a split boundary".into());
    }
    let text: Vec<String> = ranges
        .iter()
        .map(|(split, (a, b))| format!("{split} {a}..{b}"))
        .collect();
    pass(name, text.join(", "))
}

fn scaler_train_only(
    train_series: &Series,
    train_frame: &FeatureFrame,
    dataset: &Dataset,
    spans: Spans,
    transform: TargetTransform,
) -> CheckResult {
    let name = "scaler_train_only";
    let train_end = train_series.dates[spans.train_end];
    let (Ok(temporal), Ok(statics)) =
        (train_frame.temporal_columns(), train_frame.static_columns())
    else {
        return fail(name, "the feature frame lacks a model input feature".into());
    };
    let refits = [
        (
            &dataset.temporal_scaler,
            samples::fit_features(
                &train_frame.temporal_names,
                &temporal,
                train_series,
                spans.train_end,
            ),
        ),
        (
            &dataset.static_scaler,
            samples::fit_features(
                &train_frame.static_names,
                &statics,
                train_series,
                spans.train_end,
            ),
        ),
    ];
    for (fitted, refit) in &refits {
        if fitted.fitted_through != Some(train_end) {
            return fail(
                name,
                format!(
                    "scaler fitted through {:?}, not the last training day {train_end}",
                    fitted.fitted_through
                ),
            );
        }
        for j in 0..refit.names.len() {
            if !same(fitted.mean[j], refit.mean[j]) || !same(fitted.std[j], refit.std[j]) {
                return fail(
                    name,
                    format!(
                        "scaler of `{}` changes when the series ends {train_end}: it saw later days",
                        refit.names[j]
                    ),
                );
            }
        }
    }
    let target = samples::fit_target(&train_series.values, transform);
    if !same(target.mean, dataset.target_scaler.mean)
        || !same(target.std, dataset.target_scaler.std)
    {
        return fail(
            name,
            format!("target scaler changes when the series ends {train_end}: it saw later days"),
        );
    }
    pass(
        name,
        format!(
            "feature and target scalers fitted on {} .. {train_end}",
            train_series.dates[0]
        ),
    )
}

fn splits(dataset: &Dataset) -> [(&'static str, &SampleSet); 3] {
    [
        ("train", &dataset.train),
        ("validation", &dataset.val),
        ("test", &dataset.test),
    ]
}

fn pass(name: &'static str, detail: String) -> CheckResult {
    CheckResult {
        name,
        passed: true,
        detail,
    }
}

fn fail(name: &'static str, detail: String) -> CheckResult {
    CheckResult {
        name,
        passed: false,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use chrono::Datelike;

    use super::*;
    use crate::config::SplitConfig;
    use crate::data::test_data::real_dry_series as real;

    fn dated_split() -> PipelineConfig {
        PipelineConfig {
            split: SplitConfig::Dates {
                train_end: NaiveDate::from_ymd_opt(2024, 6, 30).unwrap(),
                val_end: NaiveDate::from_ymd_opt(2024, 12, 31).unwrap(),
            },
            ..PipelineConfig::default()
        }
    }

    /// The pipeline's features with `weekday_avg_expanding` replaced by the weekday mean over
    /// the whole series, future included.
    fn leaky_features(series: &Series, calendar: &Calendar) -> Result<FeatureFrame, DataError> {
        let mut frame = features::compute(series, calendar)?;
        let mut sums = [0.0; 7];
        let mut counts = [0.0; 7];
        for (d, v) in series.dates.iter().zip(&series.values) {
            let w = d.weekday().num_days_from_monday() as usize;
            sums[w] += v;
            counts[w] += 1.0;
        }
        let leaky = series
            .dates
            .iter()
            .map(|d| {
                let w = d.weekday().num_days_from_monday() as usize;
                sums[w] / counts[w]
            })
            .collect();
        frame.set_column("weekday_avg_expanding", leaky)?;
        Ok(frame)
    }

    #[test]
    fn real_dry_passes_every_check_with_the_dated_split() {
        let report = check(
            &real(None),
            &Calendar::vietnam(),
            &dated_split(),
            TargetTransform::None,
        )
        .unwrap();
        assert!(report.passed(), "{}", report.table());
        let names: Vec<&str> = report.checks.iter().map(|c| c.name).collect();
        assert_eq!(names, CHECKS);
    }

    #[test]
    fn brand_series_with_fraction_split_and_gap_passes() {
        let mut cfg = PipelineConfig::default();
        cfg.window.gap = 3;
        let report = check(
            &real(Some("LU")),
            &Calendar::vietnam(),
            &cfg,
            TargetTransform::Log1p,
        )
        .unwrap();
        assert!(report.passed(), "{}", report.table());
    }

    #[test]
    fn whole_series_weekday_mean_fails_no_lookahead_naming_feature_and_date() {
        let report = check_with(
            &real(None),
            &Calendar::vietnam(),
            &dated_split(),
            TargetTransform::None,
            &leaky_features,
        )
        .unwrap();
        assert!(!report.passed());
        let failure = report.first_failure().unwrap();
        assert_eq!(failure.name, "no_lookahead");
        assert!(
            failure.detail.contains("`weekday_avg_expanding`"),
            "{}",
            failure.detail
        );
        assert!(failure.detail.contains("2023-01-01"), "{}", failure.detail);
        assert!(report.table().contains("FAIL"));
    }

    #[test]
    fn sample_window_shifted_by_a_day_fails_correct_gap_naming_feature_step_and_date() {
        let (series, calendar, cfg) = (real(None), Calendar::vietnam(), dated_split());
        let spans = samples::spans(&series, &cfg).unwrap();
        let frame = features::compute(&series, &calendar).unwrap();
        let mut dataset = samples::build_from_frame(
            &series,
            &frame,
            &calendar,
            &cfg,
            TargetTransform::None,
            spans,
        )
        .unwrap();
        assert!(correct_gap(&series, &frame, &dataset, &cfg).passed);

        // Validation sample 4 gets the input window of sample 5: one day later, so its last
        // input day is its own first target day.
        let width = cfg.window.input * dataset.val.temporal_dim;
        let later = dataset.val.x_temporal[5 * width..6 * width].to_vec();
        dataset.val.x_temporal[4 * width..5 * width].copy_from_slice(&later);
        let result = correct_gap(&series, &frame, &dataset, &cfg);
        assert!(!result.passed);
        let origin = series.dates[dataset.val.origin[4]];
        assert!(
            result.detail.starts_with(&format!(
                "validation sample {origin}: temporal input `volume` at step 0"
            )),
            "{}",
            result.detail
        );
    }

    #[test]
    fn first_non_finite_finds_the_first_nan_or_infinity_in_any_block() {
        let mut values = vec![1.0f32; 1000];
        assert_eq!(first_non_finite(&values), None);
        values[700] = f32::INFINITY;
        values[900] = f32::NAN;
        assert_eq!(first_non_finite(&values), Some(700));
        values[3] = f32::NEG_INFINITY;
        assert_eq!(first_non_finite(&values), Some(3));
        assert_eq!(first_non_finite(&[0.0f64, f64::NAN]), Some(1));
        assert_eq!(first_non_finite::<f64>(&[]), None);
    }

    #[test]
    fn non_finite_feature_fails_finite_features() {
        let nan_on_day_5 = |series: &Series, calendar: &Calendar| {
            let mut frame = features::compute(series, calendar)?;
            let mut values = frame.column("lunar_day").unwrap().to_vec();
            values[5] = f64::NAN;
            frame.set_column("lunar_day", values)?;
            Ok(frame)
        };
        let report = check_with(
            &real(None),
            &Calendar::vietnam(),
            &dated_split(),
            TargetTransform::None,
            &nan_on_day_5,
        )
        .unwrap();
        let finite = &report.checks[1];
        assert!(!finite.passed);
        assert!(finite.detail.contains("`lunar_day`") && finite.detail.contains("2023-01-06"));
    }
}
