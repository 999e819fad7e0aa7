//! The daily feature frame of one series (the feature contract of the data pipeline).
//!
//! `y_t` is the volume of day `t`; "past" means the days before `t`. Statistical features use
//! only past days, so the value on day `t` is the same whether or not the series goes on after
//! `t` (the leakage check's `no_lookahead` verifies exactly that):
//!
//! | feature | definition |
//! |---|---|
//! | `volume` | `y_t` (a temporal input: the model only sees it for days before the origin) |
//! | `rolling_mean_7d_expanding`, `rolling_mean_30d_expanding` | mean of the up to 7 (30) most recent past days; 0 without past |
//! | `momentum_3d_vs_14d_expanding` | past 3-day mean / past 14-day mean; 1.0 when the denominator is 0 |
//! | `weekday_avg_expanding` | mean of past days with the weekday of `t`; 0 when none |
//! | `category_avg_expanding` | mean of all past days of the category total; 0 when none |
//! | `brand_tier_expanding` (brand series only) | brand's past sum / category's past sum; 0 when none |
//! | `month_sin/cos`, `dayofmonth_sin/cos`, `day_of_week_sin/cos` | `2*pi*(month-1)/12`, `2*pi*(day-1)/31`, `2*pi*dow/7`, Monday = 0 |
//! | `holiday_indicator` | 1 on a public holiday |
//! | `days_until_next_holiday`, `days_since_holiday` | to the next holiday on or after `t` / since the latest on or before `t`, capped at 365 |
//! | `is_weekend` | 1 on Sunday (Saturday is a working day in these warehouses) |
//! | `Is_Monday`, `is_high_volume_weekday` | Monday; Wednesday or Friday |
//! | `weekday_volume_tier` | Wednesday 3, Friday 2, Tuesday and Thursday 1, other days 0 |
//! | `is_EOM`, `days_until_month_end` | last 3 days of the month; days left in the month |
//! | `lunar_month`, `lunar_day`, `days_until_tet`, `days_until_mid_autumn` | Vietnamese lunar calendar; days to the next Tet day / Mid-Autumn day on or after `t` |
//!
//! The statistical columns are one polars lazy query per series, in two stages: shifted
//! rolling means with `min_periods` 1, shifted cumulative sums and per-weekday cumulative sums
//! (`over` the weekday), then the ratios that read them; the past-day counts follow from the
//! days being consecutive. Calendar columns
//! depend on the date alone (known in advance, so not leakage). Lunar dates and holiday
//! distances are lookups polars cannot express, so a [`Calendar`] computes them once for whole
//! years and every series takes its days as a slice of that table.
//!
//! The model sees two groups:
//! - temporal inputs ([`TEMPORAL_FEATURES`], 4 per day of the input window): `volume`,
//!   `rolling_mean_7d_expanding`, `rolling_mean_30d_expanding`, `momentum_3d_vs_14d_expanding`;
//! - static inputs ([`STATIC_FEATURES`], 17 for the origin day): the six cyclical encodings,
//!   `holiday_indicator`, `days_until_next_holiday`, `days_since_holiday`, `is_weekend`,
//!   `Is_Monday`, `is_high_volume_weekday`, `is_EOM`, `days_until_tet`,
//!   `days_until_mid_autumn`, `weekday_avg_expanding`, `category_avg_expanding`.
//!
//! Left out of the model but exported by `sweep features`: `weekday_volume_tier` (a function of
//! the weekday flags and encodings already given), `days_until_month_end` (`is_EOM` carries
//! the month-end effect), `lunar_month` and `lunar_day` (`days_until_tet` and
//! `days_until_mid_autumn` carry the lunar seasons), and `brand_tier_expanding` (brand series
//! only, while the model's static width is the same for every series).

mod calendar_table;

use std::io::Write;
use std::path::Path;

use chrono::{Datelike, NaiveDate};
use polars::prelude::{
    col, lit, when, Column, DataFrame, DataType, IntoLazy, PolarsError, RollingOptionsFixedWindow,
};

pub use calendar_table::CALENDAR_FEATURES;
pub(crate) use calendar_table::{peak_flags, CalendarColumnCache};

use crate::calendar::Calendar;
use crate::dataset::{Series, SeriesKey};
use crate::error::DataError;

/// Temporal input features, in the order of the model's temporal channels.
pub const TEMPORAL_FEATURES: [&str; 4] = [
    "volume",
    "rolling_mean_7d_expanding",
    "rolling_mean_30d_expanding",
    "momentum_3d_vs_14d_expanding",
];

/// Static input features, in the order of the model's static inputs (17 = its default
/// `static_input_dim`).
pub const STATIC_FEATURES: [&str; 17] = [
    "month_sin",
    "month_cos",
    "dayofmonth_sin",
    "dayofmonth_cos",
    "day_of_week_sin",
    "day_of_week_cos",
    "holiday_indicator",
    "days_until_next_holiday",
    "days_since_holiday",
    "is_weekend",
    "Is_Monday",
    "is_high_volume_weekday",
    "is_EOM",
    "days_until_tet",
    "days_until_mid_autumn",
    "weekday_avg_expanding",
    "category_avg_expanding",
];

/// Static features computed from past volumes (the rest of [`STATIC_FEATURES`] are calendar
/// features). With a gap, a sample takes these from the day after its last input day.
pub const STATISTICAL_STATIC_FEATURES: [&str; 2] =
    ["weekday_avg_expanding", "category_avg_expanding"];

/// Cap of the holiday distance features, in days.
pub const HOLIDAY_DISTANCE_CAP: f64 = 365.0;

/// Denominators at or below this count as zero (rolling sums of zeros leave rounding dust).
const ZERO: f64 = 1e-9;

/// One named feature column.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureColumn {
    /// Feature name.
    pub name: String,
    /// One value per day.
    pub values: Vec<f64>,
}

/// The unscaled daily features of one series: a date column plus every feature of the contract.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureFrame {
    /// The series.
    pub key: SeriesKey,
    /// The series' days.
    pub dates: Vec<NaiveDate>,
    /// Names of the temporal model inputs ([`TEMPORAL_FEATURES`]).
    pub temporal_names: Vec<String>,
    /// Names of the static model inputs ([`STATIC_FEATURES`]).
    pub static_names: Vec<String>,
    /// Every feature, in export order.
    columns: Vec<FeatureColumn>,
}

/// Computes the feature frame of a series.
pub fn compute(series: &Series, calendar: &Calendar) -> Result<FeatureFrame, DataError> {
    let statistical = statistical_columns(series)?;
    Ok(assemble(series, statistical, calendar))
}

/// The same contract computed the straightforward way: every statistical feature of every day
/// by a loop over that day's past. Quadratic in the series length; the tests and the
/// benchmark compare [`compute`] against it.
pub fn compute_reference(series: &Series, calendar: &Calendar) -> Result<FeatureFrame, DataError> {
    let y = &series.values;
    let cat = series.category_values.as_deref().unwrap_or(y);
    let n = y.len();
    let past_mean = |t: usize, k: usize| {
        let from = t.saturating_sub(k);
        if from == t {
            0.0
        } else {
            y[from..t].iter().sum::<f64>() / (t - from) as f64
        }
    };
    let mut columns: Vec<FeatureColumn> = ["volume"]
        .iter()
        .chain(&STATISTICAL_NAMES[1..])
        .map(|name| FeatureColumn {
            name: name.to_string(),
            values: Vec::with_capacity(n),
        })
        .collect();
    for t in 0..n {
        let m3 = past_mean(t, 3);
        let m14 = past_mean(t, 14);
        let same_weekday: Vec<f64> = (0..t).filter(|s| (t - s) % 7 == 0).map(|s| y[s]).collect();
        let weekday_avg = if same_weekday.is_empty() {
            0.0
        } else {
            same_weekday.iter().sum::<f64>() / same_weekday.len() as f64
        };
        let category_past: f64 = cat[..t].iter().sum();
        let brand_past: f64 = y[..t].iter().sum();
        let row = [
            y[t],
            past_mean(t, 7),
            past_mean(t, 30),
            if m14.abs() <= ZERO { 1.0 } else { m3 / m14 },
            weekday_avg,
            if t == 0 {
                0.0
            } else {
                category_past / t as f64
            },
            if category_past.abs() <= ZERO {
                0.0
            } else {
                brand_past / category_past
            },
        ];
        for (column, value) in columns.iter_mut().zip(row) {
            column.values.push(value);
        }
    }
    if series.category_values.is_none() {
        columns.pop();
    }
    Ok(assemble(series, columns, calendar))
}

/// Statistical column names in the order [`statistical_columns`] returns them.
const STATISTICAL_NAMES: [&str; 7] = [
    "volume",
    "rolling_mean_7d_expanding",
    "rolling_mean_30d_expanding",
    "momentum_3d_vs_14d_expanding",
    "weekday_avg_expanding",
    "category_avg_expanding",
    "brand_tier_expanding",
];

/// The statistical features as one polars query.
fn statistical_columns(series: &Series) -> Result<Vec<FeatureColumn>, DataError> {
    let n = series.values.len();
    let first_dow = series
        .dates
        .first()
        .map(|d| d.weekday().num_days_from_monday())
        .unwrap_or(0);
    let dow: Vec<u32> = (0..n as u32).map(|i| (first_dow + i) % 7).collect();
    // The days are consecutive, so day t has t past days and t / 7 past days of its weekday;
    // these counts are structure, not data, and are passed in rather than grouped for.
    let past_days: Vec<f64> = (0..n).map(|t| t as f64).collect();
    let past_weekdays: Vec<f64> = (0..n).map(|t| (t / 7) as f64).collect();
    let category = series.category_values.as_deref().unwrap_or(&series.values);
    let frame = DataFrame::new(
        n,
        vec![
            Column::new("volume".into(), &series.values),
            Column::new("category".into(), category),
            Column::new("dow".into(), dow),
            Column::new("past_days".into(), past_days),
            Column::new("past_weekdays".into(), past_weekdays),
        ],
    )
    .map_err(polars_error)?;

    let window = |k: usize| RollingOptionsFixedWindow {
        window_size: k,
        min_periods: 1,
        ..Default::default()
    };
    // Mean of the up to k days before t: the rolling mean ending at t-1.
    let past_mean = |k: usize| {
        col("volume")
            .rolling_mean(window(k))
            .shift(lit(1))
            .fill_null(lit(0.0))
    };
    // Sum of the days before t (within the weekday group when `over` is applied).
    let past_sum = |name: &str| col(name).cum_sum(false).shift(lit(1)).fill_null(lit(0.0));
    // `num / den`, or `fallback` where `den` is zero; both are columns of the first stage.
    let ratio_or = |num: &str, den: &str, fallback: f64| {
        when(col(den).gt(lit(ZERO)).or(col(den).lt(lit(-ZERO))))
            .then(col(num) / col(den))
            .otherwise(lit(fallback))
    };

    // Two stages: the windowed sums and means each once, then the ratios that read them.
    let mut sums = vec![
        past_mean(3).alias("mean_3"),
        past_mean(14).alias("mean_14"),
        past_sum("volume")
            .over([col("dow")])
            .map_err(polars_error)?
            .alias("weekday_sum"),
        past_sum("category").alias("category_sum"),
    ];
    let mut exprs = vec![
        col("volume"),
        past_mean(7).alias(STATISTICAL_NAMES[1]),
        past_mean(30).alias(STATISTICAL_NAMES[2]),
        ratio_or("mean_3", "mean_14", 1.0).alias(STATISTICAL_NAMES[3]),
        ratio_or("weekday_sum", "past_weekdays", 0.0).alias(STATISTICAL_NAMES[4]),
        ratio_or("category_sum", "past_days", 0.0).alias(STATISTICAL_NAMES[5]),
    ];
    if series.category_values.is_some() {
        sums.push(past_sum("volume").alias("volume_sum"));
        exprs.push(ratio_or("volume_sum", "category_sum", 0.0).alias(STATISTICAL_NAMES[6]));
    }
    // The plan is a fixed shape on an in-memory frame of a few thousand rows: the optimiser
    // has nothing to push down, and planning would cost as much as running it.
    let out = frame
        .lazy()
        .without_optimizations()
        .with_columns(sums)
        .select(exprs)
        .collect()
        .map_err(polars_error)?;

    out.columns()
        .iter()
        .map(|column| {
            let values = column
                .cast(&DataType::Float64)
                .and_then(|c| {
                    c.f64().map(|f| match f.cont_slice() {
                        // One chunk without nulls (the usual case): a plain copy.
                        Ok(values) => values.to_vec(),
                        Err(_) => f.iter().map(|v| v.unwrap_or(f64::NAN)).collect(),
                    })
                })
                .map_err(polars_error)?;
            Ok(FeatureColumn {
                name: column.name().to_string(),
                values,
            })
        })
        .collect()
}

/// Appends the calendar columns to the statistical ones and names the model inputs.
fn assemble(series: &Series, mut columns: Vec<FeatureColumn>, calendar: &Calendar) -> FeatureFrame {
    columns.extend(calendar_table::calendar_columns(&series.dates, calendar));
    FeatureFrame {
        key: series.key.clone(),
        dates: series.dates.clone(),
        temporal_names: TEMPORAL_FEATURES.iter().map(|s| s.to_string()).collect(),
        static_names: STATIC_FEATURES.iter().map(|s| s.to_string()).collect(),
        columns,
    }
}

impl FeatureFrame {
    /// Number of days.
    pub fn len(&self) -> usize {
        self.dates.len()
    }

    /// True for a frame without days.
    pub fn is_empty(&self) -> bool {
        self.dates.is_empty()
    }

    /// Every feature column, in export order.
    pub fn columns(&self) -> &[FeatureColumn] {
        &self.columns
    }

    /// The values of a feature, if the frame has it.
    pub fn column(&self, name: &str) -> Option<&[f64]> {
        self.columns
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.values.as_slice())
    }

    /// Replaces a feature's values, or appends a new feature. The length must match the days.
    pub fn set_column(&mut self, name: &str, values: Vec<f64>) -> Result<(), DataError> {
        if values.len() != self.len() {
            return Err(DataError::Frame(format!(
                "feature `{name}` has {} values for {} days",
                values.len(),
                self.len()
            )));
        }
        match self.columns.iter_mut().find(|c| c.name == name) {
            Some(column) => column.values = values,
            None => self.columns.push(FeatureColumn {
                name: name.to_string(),
                values,
            }),
        }
        Ok(())
    }

    /// The temporal model inputs, in [`FeatureFrame::temporal_names`] order.
    pub fn temporal_columns(&self) -> Result<Vec<&[f64]>, DataError> {
        self.named_columns(&self.temporal_names)
    }

    /// The static model inputs, in [`FeatureFrame::static_names`] order.
    pub fn static_columns(&self) -> Result<Vec<&[f64]>, DataError> {
        self.named_columns(&self.static_names)
    }

    fn named_columns(&self, names: &[String]) -> Result<Vec<&[f64]>, DataError> {
        names
            .iter()
            .map(|name| {
                self.column(name).ok_or_else(|| {
                    DataError::Frame(format!("feature frame of {} lacks `{name}`", self.key))
                })
            })
            .collect()
    }

    /// Writes `date` plus every feature as CSV (dates `YYYY-MM-DD`).
    pub fn write_csv(&self, path: &Path) -> Result<(), DataError> {
        let write_error = |err: std::io::Error| DataError::Read {
            path: path.to_path_buf(),
            message: format!("cannot write the feature CSV: {err}"),
        };
        let file = std::fs::File::create(path).map_err(write_error)?;
        let mut out = std::io::BufWriter::new(file);
        let header: Vec<&str> = std::iter::once("date")
            .chain(self.columns.iter().map(|c| c.name.as_str()))
            .collect();
        writeln!(out, "{}", header.join(",")).map_err(write_error)?;
        let mut line = String::new();
        for (i, date) in self.dates.iter().enumerate() {
            line.clear();
            line.push_str(&date.format("%Y-%m-%d").to_string());
            for column in &self.columns {
                line.push(',');
                line.push_str(&column.values[i].to_string());
            }
            writeln!(out, "{line}").map_err(write_error)?;
        }
        out.flush().map_err(write_error)
    }
}

fn polars_error(err: PolarsError) -> DataError {
    DataError::Frame(err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_data::real_dry_series as real;

    fn series(values: &[f64]) -> Series {
        let first = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
        Series {
            key: SeriesKey {
                category: "DRY".into(),
                brand: None,
            },
            dates: first.iter_days().take(values.len()).collect(),
            values: values.to_vec(),
            category_values: None,
        }
    }

    fn assert_frames_match(a: &FeatureFrame, b: &FeatureFrame) {
        assert_eq!(a.columns().len(), b.columns().len());
        for (x, y) in a.columns().iter().zip(b.columns()) {
            assert_eq!(x.name, y.name);
            for (i, (u, v)) in x.values.iter().zip(&y.values).enumerate() {
                assert!(
                    (u - v).abs() <= 1e-8 * u.abs().max(1.0),
                    "{} on {}: {u} vs {v}",
                    x.name,
                    a.dates[i]
                );
            }
        }
    }

    #[test]
    fn statistical_features_use_only_past_days() {
        // 2024-01-01 is a Monday.
        let frame = compute(
            &series(&[2.0, 4.0, 6.0, 0.0, 0.0, 0.0, 0.0, 8.0]),
            &Calendar::vietnam(),
        )
        .unwrap();
        let col = |name| frame.column(name).unwrap().to_vec();
        assert_eq!(col("rolling_mean_7d_expanding")[..3], [0.0, 2.0, 3.0]);
        assert_eq!(col("rolling_mean_7d_expanding")[7], 12.0 / 7.0);
        assert_eq!(col("momentum_3d_vs_14d_expanding")[0], 1.0);
        assert_eq!(col("momentum_3d_vs_14d_expanding")[2], 3.0 / 3.0);
        assert_eq!(
            col("weekday_avg_expanding"),
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0]
        );
        assert_eq!(col("category_avg_expanding")[3], 4.0);
        assert!(frame.column("brand_tier_expanding").is_none());
    }

    #[test]
    fn calendar_flags_follow_the_weekday_and_month_end() {
        let frame = compute(&series(&[1.0; 31]), &Calendar::vietnam()).unwrap();
        let col = |name| frame.column(name).unwrap().to_vec();
        // Monday 2024-01-01 .. Sunday 2024-01-07.
        assert_eq!(col("Is_Monday")[..7], [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(col("is_weekend")[..7], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
        assert_eq!(
            col("weekday_volume_tier")[..7],
            [0.0, 1.0, 3.0, 1.0, 2.0, 0.0, 0.0]
        );
        assert_eq!(col("is_EOM")[27..], [0.0, 1.0, 1.0, 1.0]);
        assert_eq!(col("days_until_month_end")[30], 0.0);
        assert_eq!(col("day_of_week_sin")[0], 0.0);
        assert_eq!(col("month_cos")[0], 1.0);
    }

    #[test]
    fn polars_features_match_the_per_row_reference_on_real_data() {
        let calendar = Calendar::vietnam();
        for brand in [None, Some("LU"), Some("OREO")] {
            let s = real(brand);
            let fast = compute(&s, &calendar).unwrap();
            let slow = compute_reference(&s, &calendar).unwrap();
            assert_frames_match(&fast, &slow);
            assert_eq!(
                fast.column("brand_tier_expanding").is_some(),
                brand.is_some()
            );
        }
    }

    #[test]
    fn real_frame_has_the_model_inputs_and_finite_values() {
        let frame = compute(&real(None), &Calendar::vietnam()).unwrap();
        assert_eq!(frame.temporal_columns().unwrap().len(), 4);
        assert_eq!(frame.static_columns().unwrap().len(), 17);
        assert_eq!(frame.columns().len(), 6 + CALENDAR_FEATURES.len());
        assert!(frame
            .columns()
            .iter()
            .all(|c| c.values.iter().all(|v| v.is_finite())));
        // New Year's Day is a public holiday.
        let new_year = frame
            .dates
            .iter()
            .position(|d| *d == NaiveDate::from_ymd_opt(2025, 1, 1).unwrap())
            .unwrap();
        assert_eq!(frame.column("holiday_indicator").unwrap()[new_year], 1.0);
        assert_eq!(frame.column("days_since_holiday").unwrap()[new_year], 0.0);
        assert_eq!(frame.column("days_until_tet").unwrap()[new_year], 28.0);
    }

    #[test]
    fn csv_export_has_a_date_and_every_feature() {
        let frame = compute(&real(Some("LU")), &Calendar::vietnam()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("features.csv");
        frame.write_csv(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!(header[0], "date");
        assert!(header.contains(&"brand_tier_expanding"));
        assert_eq!(header.len(), 1 + frame.columns().len());
        assert_eq!(lines.count(), frame.len());
    }
}
