//! How a shipments file becomes a dataset: columns, window, split, calendar.
//!
//! These settings appear in a sweep spec (`data`, `window`, `split`, `calendar`) and as flags of
//! the standalone commands; a trial carries them verbatim so that a worker rebuilds exactly the
//! samples the coordinator validated.

use std::path::PathBuf;

use chrono::NaiveDate;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Column names of the input file. Defaults match the company's shipment exports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Columns {
    /// Ship date column. Default `ACTUALSHIPDATE`.
    pub date: String,
    /// Category column. Default `CATEGORY`.
    pub category: String,
    /// Brand column. Default `BRAND`.
    pub brand: String,
    /// Volume column in CBM. Default `Total CBM`.
    pub volume: String,
}

impl Default for Columns {
    fn default() -> Self {
        Self {
            date: "ACTUALSHIPDATE".into(),
            category: "CATEGORY".into(),
            brand: "BRAND".into(),
            volume: "Total CBM".into(),
        }
    }
}

/// What to do with negative volumes (returns booked as negative shipments).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NegativeVolume {
    /// Reject the file, naming the rows. Default.
    #[default]
    Error,
    /// Replace negative volumes by zero.
    Clip,
    /// Keep them as they are.
    Keep,
}

/// Date formats accepted in the date column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DateFormat {
    /// `YYYY-MM-DD` or `M/D/YYYY`, detected per value. Default.
    #[default]
    Auto,
    /// Only `YYYY-MM-DD`.
    Iso,
    /// Only `M/D/YYYY`.
    Mdy,
}

/// Where the shipments come from and how to read them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// CSV or Parquet file; `None` means the built-in synthetic generator.
    pub path: Option<PathBuf>,
    /// Seed of the synthetic generator. Default 7.
    pub synthetic_seed: Option<u64>,
    /// Column names.
    pub columns: Columns,
    /// Date parsing.
    pub date_format: DateFormat,
    /// Negative volume policy.
    pub negative_volume: NegativeVolume,
}

/// Input and target window lengths in days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowConfig {
    /// Days of temporal input before the origin. Default 30.
    pub input: usize,
    /// Days forecast from the origin. Default 30.
    pub horizon: usize,
    /// Days skipped between the last input day and the first target day. Default 0.
    pub gap: usize,
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            input: 30,
            horizon: 30,
            gap: 0,
        }
    }
}

/// Chronological split of samples by their target dates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SplitConfig {
    /// Fractions of the series' days (train, validation, test); default 0.7 / 0.1 / 0.2.
    Fractions {
        /// Training fraction.
        train: f64,
        /// Validation fraction.
        val: f64,
        /// Test fraction.
        test: f64,
    },
    /// Explicit last days (inclusive) of the training and validation spans; the rest is test.
    Dates {
        /// Last training day.
        train_end: NaiveDate,
        /// Last validation day.
        val_end: NaiveDate,
    },
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig::Fractions {
            train: 0.7,
            val: 0.1,
            test: 0.2,
        }
    }
}

/// Which holidays the calendar features use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CalendarSource {
    /// Built-in Vietnamese public holidays. Default.
    Vietnam,
    /// No holidays (data from elsewhere); lunar features still computed.
    None,
    /// Built-in holidays plus (or replaced by) the rows of a CSV or YAML file.
    File {
        /// File of `date,name,kind` rows.
        path: PathBuf,
        /// Replace the built-in holidays instead of extending them.
        #[serde(default)]
        replace: bool,
    },
}

/// Calendar settings: holiday source and peak seasons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CalendarConfig {
    /// Holiday source.
    pub holidays: CalendarSource,
    /// Tet holiday span relative to Tet day: (first, last). Default (-2, 4).
    pub tet_holiday_span: (i64, i64),
    /// Days before Tet day that start the Tet peak season. Default 45.
    pub tet_season_days: i64,
}

impl Default for CalendarConfig {
    fn default() -> Self {
        Self {
            holidays: CalendarSource::Vietnam,
            tet_holiday_span: (-2, 4),
            tet_season_days: 45,
        }
    }
}

/// Everything needed to rebuild one series' samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Input window, horizon and gap.
    pub window: WindowConfig,
    /// Chronological split.
    pub split: SplitConfig,
    /// Calendar.
    pub calendar: CalendarConfig,
}

/// Reads `split` as a one-key map (`{dates: {..}}`), the form sweep specs and pipeline configs
/// share. The YAML deserializer alone would accept only tags (`!dates`), so the value goes
/// through JSON's enum representation; a wrong shape gets both valid forms in the message.
pub fn split_from_map<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SplitConfig, D::Error> {
    let value = Value::deserialize(deserializer)?;
    serde_json::from_value(value).map_err(|err| {
        de::Error::custom(format!(
            "{err}; write `split: {{fractions: {{train: 0.7, val: 0.1, test: 0.2}}}}` or \
             `split: {{dates: {{train_end: 2024-06-30, val_end: 2024-12-31}}}}`"
        ))
    })
}

/// Reads a section through JSON's data model, where an enum variant is a one-key map.
pub fn via_json<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(
    deserializer: D,
) -> Result<T, D::Error> {
    let value = Value::deserialize(deserializer)?;
    serde_json::from_value(value).map_err(de::Error::custom)
}
