//! Loading a shipments file into daily series.
//!
//! A file (CSV or Parquet, read with polars) holds one row per day x category x brand, or one row
//! per day x category when it has no brand column. [`load_file`] validates every row (dates in
//! `YYYY-MM-DD` or `M/D/YYYY`, numeric and non-negative volumes), sums same-day duplicates and
//! keeps one gap-free daily vector per (category, brand). [`Shipments::series`] then hands out a
//! category total or one brand as a [`Series`], with missing days zero-filled.
//!
//! Errors name the file, the row (1-based data row, with its line number in a CSV) or the
//! column, and say what to do.

use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate};
use polars::prelude::{
    Column, CsvReadOptions, DataFrame, DataType, ParquetReader, PolarsError, SerReader,
};
use serde::{Deserialize, Serialize};

use crate::config::{
    CalendarConfig, DataConfig, DateFormat, NegativeVolume, PipelineConfig, SplitConfig,
    WindowConfig,
};
use crate::dataset::{Series, SeriesKey};
use crate::error::DataError;
use crate::params::TargetTransform;

/// How many offending rows an error message lists before it says "and N more".
const ROWS_LISTED: usize = 5;

/// What the loader did to the file, for logs and `sweep features` output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// Data rows read (header excluded).
    pub rows: usize,
    /// Rows that repeated an earlier (category, brand, date) and were added to it.
    pub duplicate_rows_summed: usize,
    /// Days missing between a brand's first and last date, filled with 0 (summed over brands;
    /// for a file without brand column, over categories).
    pub days_zero_filled: usize,
    /// Rows whose negative volume was replaced by 0 (`negative_volume: clip`).
    pub negative_rows_clipped: usize,
    /// Rows whose negative volume was kept (`negative_volume: keep`).
    pub negative_rows_kept: usize,
    /// Whether the file has a brand column.
    pub has_brands: bool,
    /// First date in the file.
    pub first_date: Option<NaiveDate>,
    /// Last date in the file.
    pub last_date: Option<NaiveDate>,
}

/// Daily volumes of one (category, brand): consecutive days from `first`, zero-filled.
#[derive(Debug, Clone, PartialEq)]
struct Daily {
    first: NaiveDate,
    values: Vec<f64>,
}

impl Daily {
    fn last(&self) -> NaiveDate {
        self.first + chrono::Duration::days(self.values.len() as i64 - 1)
    }
}

/// A parsed shipments file, aggregated per (category, brand, date).
#[derive(Debug, Clone, PartialEq)]
pub struct Shipments {
    /// The file name used in messages.
    source: PathBuf,
    /// Category -> brand -> daily volumes. A file without brand column has one brand `""`.
    groups: BTreeMap<String, BTreeMap<String, Daily>>,
    report: LoadReport,
}

/// The YAML file of `sweep check-leakage --config` and `sweep features --config`: a
/// [`PipelineConfig`] (`window`, `split`, `calendar`) plus an optional `data:` section
/// ([`DataConfig`]: column names, date format, negative-volume policy) and the
/// `target_transform` the target scaler uses. Every section is optional; unknown keys are
/// rejected; `split` and `calendar` are written as in a sweep spec (a one-key map such as
/// `split: {dates: {..}}`). Example:
///
/// ```yaml
/// window: {input: 30, horizon: 30, gap: 0}
/// split: {dates: {train_end: 2024-06-30, val_end: 2024-12-31}}
/// data: {columns: {volume: "Total CBM"}, negative_volume: clip}
/// target_transform: log1p
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SeriesConfig {
    /// Input window, horizon and gap.
    pub window: WindowConfig,
    /// Chronological split (default fractions 0.7 / 0.1 / 0.2), written as in a sweep spec.
    #[serde(deserialize_with = "crate::config::split_from_map")]
    pub split: SplitConfig,
    /// Calendar, written as in a sweep spec.
    #[serde(deserialize_with = "crate::config::via_json")]
    pub calendar: CalendarConfig,
    /// How to read the shipments file.
    pub data: DataConfig,
    /// Transform of the target before scaling. Default none.
    pub target_transform: TargetTransform,
}

impl SeriesConfig {
    /// Reads the YAML file; errors name the file and the offending key.
    pub fn from_file(path: &Path) -> Result<SeriesConfig, DataError> {
        let text = std::fs::read_to_string(path).map_err(|err| DataError::Read {
            path: path.to_path_buf(),
            message: format!("cannot read the config file: {err}"),
        })?;
        Self::from_yaml(&text, path)
    }

    /// Parses YAML text; `path` names it in messages.
    pub fn from_yaml(text: &str, path: &Path) -> Result<SeriesConfig, DataError> {
        if text.trim().is_empty() {
            return Ok(SeriesConfig::default());
        }
        let de = serde_norway::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|err| {
            invalid(
                path,
                format!(
                    "key `{}`: {}; see `sweep check-leakage --help`",
                    err.path(),
                    err.inner()
                ),
            )
        })
    }

    /// The pipeline part.
    pub fn pipeline(&self) -> PipelineConfig {
        PipelineConfig {
            window: self.window,
            split: self.split.clone(),
            calendar: self.calendar.clone(),
        }
    }
}

/// Reads a CSV or Parquet file (chosen by extension: `.parquet`/`.pq` is Parquet, anything else
/// CSV) with the column names, date format and negative-volume policy of `cfg`.
pub fn load_file(path: &Path, cfg: &DataConfig) -> Result<Shipments, DataError> {
    let bytes = std::fs::read(path).map_err(|err| DataError::Read {
        path: path.to_path_buf(),
        message: format!("cannot read the file: {err}"),
    })?;
    load_bytes(&bytes, &path.to_string_lossy(), cfg)
}

/// Parses file contents; `name` is the file name used in messages and, by its extension, picks
/// CSV or Parquet as [`load_file`] does.
pub fn load_bytes(bytes: &[u8], name: &str, cfg: &DataConfig) -> Result<Shipments, DataError> {
    let path = PathBuf::from(name);
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(invalid(
            &path,
            format!(
                "the file is empty; expected a header with columns {} and one row per day",
                expected_columns(cfg)
            ),
        ));
    }
    let frame = if is_parquet(&path) {
        ParquetReader::new(Cursor::new(bytes))
            .finish()
            .map_err(|err| read_error(&path, "Parquet", err))?
    } else {
        // Every column as text: the loader parses dates and numbers itself so that a bad value
        // is reported with its row instead of turning the whole column into strings or nulls.
        CsvReadOptions::default()
            .with_has_header(true)
            .with_infer_schema_length(Some(0))
            .into_reader_with_file_handle(Cursor::new(bytes))
            .finish()
            .map_err(|err| read_error(&path, "CSV", err))?
    };
    let rows = parse_rows(&frame, &path, cfg)?;
    let shipments = aggregate(rows, path, frame.height());
    tracing::debug!(
        file = %shipments.source.display(),
        rows = shipments.report.rows,
        duplicates = shipments.report.duplicate_rows_summed,
        zero_filled = shipments.report.days_zero_filled,
        "shipments loaded"
    );
    Ok(shipments)
}

impl Shipments {
    /// Categories in the file, sorted.
    pub fn categories(&self) -> Vec<String> {
        self.groups.keys().cloned().collect()
    }

    /// Brands of `category`, sorted; empty for an unknown category or a file without brands.
    pub fn brands(&self, category: &str) -> Vec<String> {
        self.groups
            .get(category)
            .map(|brands| brands.keys().filter(|b| !b.is_empty()).cloned().collect())
            .unwrap_or_default()
    }

    /// The load report.
    pub fn report(&self) -> &LoadReport {
        &self.report
    }

    /// The file name used in messages.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// One series, gap-free: a category total (sum over its brands from the first to the last
    /// date any brand has) or one brand (from its own first to last date, with the category
    /// total on the same days in `category_values`). Missing days are 0.
    ///
    /// An unknown category or brand is an error listing those present.
    pub fn series(&self, key: &SeriesKey) -> Result<Series, DataError> {
        let brands = self.groups.get(&key.category).ok_or_else(|| {
            invalid(
                &self.source,
                format!(
                    "unknown category `{}`; categories in the file: {}",
                    key.category,
                    self.categories().join(", ")
                ),
            )
        })?;
        let total = category_total(brands);
        let Some(brand) = &key.brand else {
            return Ok(Series {
                key: key.clone(),
                dates: dates_from(total.first, total.values.len()),
                values: total.values,
                category_values: None,
            });
        };
        let daily = brands
            .get(brand)
            .filter(|_| !brand.is_empty())
            .ok_or_else(|| {
                let known = self.brands(&key.category);
                let message = if known.is_empty() {
                    format!(
                        "unknown brand `{brand}`: the file has no brand column, so only the \
                     category total of `{}` exists; drop --brand or set data.columns.brand",
                        key.category
                    )
                } else {
                    format!(
                        "unknown brand `{brand}` in category `{}`; brands present: {}",
                        key.category,
                        known.join(", ")
                    )
                };
                invalid(&self.source, message)
            })?;
        let offset = (daily.first - total.first).num_days() as usize;
        let category_values = total.values[offset..offset + daily.values.len()].to_vec();
        Ok(Series {
            key: key.clone(),
            dates: dates_from(daily.first, daily.values.len()),
            values: daily.values.clone(),
            category_values: Some(category_values),
        })
    }
}

/// `n` consecutive days from `first`.
pub fn dates_from(first: NaiveDate, n: usize) -> Vec<NaiveDate> {
    first.iter_days().take(n).collect()
}

/// Parses a date as `YYYY-MM-DD` (a time part after a space or `T` is ignored) or `M/D/YYYY`.
pub fn parse_date(text: &str, format: DateFormat) -> Option<NaiveDate> {
    let text = text.trim();
    let iso = |t: &str| {
        let day = t.split([' ', 'T']).next()?;
        let mut parts = day.split('-');
        let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || y.len() != 4 {
            return None;
        }
        NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
    };
    let mdy = |t: &str| {
        let mut parts = t.split('/');
        let (m, d, y) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || y.len() != 4 || m.len() > 2 || d.len() > 2 {
            return None;
        }
        NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
    };
    match format {
        DateFormat::Iso => iso(text),
        DateFormat::Mdy => mdy(text),
        DateFormat::Auto if text.contains('/') => mdy(text),
        DateFormat::Auto => iso(text),
    }
}

/// One validated row.
struct Row {
    category: u32,
    brand: u32,
    day: i32,
    volume: f64,
}

/// Interned names and the validated rows.
struct ParsedRows {
    categories: Vec<String>,
    brands: Vec<String>,
    rows: Vec<Row>,
    clipped: usize,
    kept: usize,
}

fn parse_rows(frame: &DataFrame, path: &Path, cfg: &DataConfig) -> Result<ParsedRows, DataError> {
    let cols = &cfg.columns;
    if frame.height() == 0 {
        return Err(invalid(
            path,
            "the file has a header but no data rows; expected one row per day".into(),
        ));
    }
    let found: Vec<String> = frame
        .get_column_names()
        .iter()
        .map(|c| c.to_string())
        .collect();
    let column = |name: &str| -> Result<&Column, DataError> {
        frame.column(name).map_err(|_| DataError::MissingColumn {
            path: path.to_path_buf(),
            column: name.to_string(),
            found: found.join(", "),
        })
    };
    let dates = as_text(column(&cols.date)?, path)?;
    let categories = as_text(column(&cols.category)?, path)?;
    let volumes = column(&cols.volume)?;
    // The brand column is optional: a file that is already daily per category has none.
    let brands = match frame.column(&cols.brand) {
        Ok(c) => Some(as_text(c, path)?),
        Err(_) => None,
    };
    let volumes = parse_volumes(volumes, path, &cols.volume)?;

    let mut date_cache: HashMap<&str, i32> = HashMap::new();
    let mut bad_dates = Vec::new();
    let mut category_names = Interner::default();
    let mut brand_names = Interner::default();
    let mut out = ParsedRows {
        categories: Vec::new(),
        brands: Vec::new(),
        rows: Vec::with_capacity(frame.height()),
        clipped: 0,
        kept: 0,
    };
    let mut negative = Vec::new();
    let mut missing_category = Vec::new();
    let date_cells = dates.str().expect("converted to text");
    let category_cells = categories.str().expect("converted to text");
    let brand_cells = brands.as_ref().map(|b| b.str().expect("converted to text"));
    for (i, (date, category)) in date_cells.iter().zip(category_cells.iter()).enumerate() {
        let day = match date {
            Some(text) => match date_cache.get(text) {
                Some(&d) => Some(d),
                None => {
                    let parsed = parse_date(text, cfg.date_format).map(|d| d.num_days_from_ce());
                    if let Some(d) = parsed {
                        date_cache.insert(text, d);
                    }
                    parsed
                }
            },
            None => None,
        };
        let Some(day) = day else {
            bad_dates.push((i, date.unwrap_or("").to_string()));
            continue;
        };
        let Some(category) = category.filter(|c| !c.trim().is_empty()) else {
            missing_category.push(i);
            continue;
        };
        let brand = brand_cells
            .as_ref()
            .map(|b| b.get(i).unwrap_or("").trim())
            .unwrap_or("");
        let mut volume = volumes[i];
        if volume < 0.0 {
            match cfg.negative_volume {
                NegativeVolume::Error => {
                    negative.push(i);
                    continue;
                }
                NegativeVolume::Clip => {
                    out.clipped += 1;
                    volume = 0.0;
                }
                NegativeVolume::Keep => out.kept += 1,
            }
        }
        let category = category_names.id(category.trim());
        let brand = brand_names.id(brand);
        out.rows.push(Row {
            category,
            brand,
            day,
            volume,
        });
    }

    if !bad_dates.is_empty() {
        let listed = list_rows(
            bad_dates
                .iter()
                .map(|(i, v)| format!("{} (`{v}`)", row_label(*i))),
        );
        let expected = match cfg.date_format {
            DateFormat::Auto => "YYYY-MM-DD or M/D/YYYY",
            DateFormat::Iso => "YYYY-MM-DD (data.date_format: iso)",
            DateFormat::Mdy => "M/D/YYYY (data.date_format: mdy)",
        };
        return Err(invalid(
            path,
            format!(
                "column `{}`: cannot parse the date of {} of {} rows: {listed}; expected \
                 {expected}; fix or remove those rows",
                cols.date,
                bad_dates.len(),
                frame.height()
            ),
        ));
    }
    if !missing_category.is_empty() {
        let listed = list_rows(missing_category.iter().map(|i| row_label(*i)));
        return Err(invalid(
            path,
            format!(
                "column `{}`: empty category in {listed}; fill it in or remove those rows",
                cols.category
            ),
        ));
    }
    if !negative.is_empty() {
        let listed = list_rows(
            negative
                .iter()
                .map(|&i| format!("{} ({})", row_label(i), volumes[i])),
        );
        return Err(invalid(
            path,
            format!(
                "column `{}`: negative volume in {} rows: {listed}; correct them, or set \
                 data.negative_volume to `clip` (replace by 0) or `keep`",
                cols.volume,
                negative.len()
            ),
        ));
    }
    out.categories = category_names.names;
    out.brands = brand_names.names;
    Ok(out)
}

/// The volume column as numbers; an empty or non-numeric cell is an error naming its rows.
fn parse_volumes(column: &Column, path: &Path, name: &str) -> Result<Vec<f64>, DataError> {
    let mut empty = Vec::new();
    let mut bad = Vec::new();
    let values: Vec<f64> = if column.dtype().is_primitive_numeric() {
        let floats = column
            .cast(&DataType::Float64)
            .map_err(|err| frame_error(path, err))?;
        let floats = floats.f64().map_err(|err| frame_error(path, err))?;
        floats
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.filter(|v| !v.is_nan()).unwrap_or_else(|| {
                    empty.push(i);
                    0.0
                })
            })
            .collect()
    } else {
        let text = as_text(column, path)?;
        let text = text.str().expect("converted to text");
        text.iter()
            .enumerate()
            .map(|(i, cell)| match cell.map(str::trim) {
                None | Some("") => {
                    empty.push(i);
                    0.0
                }
                Some(t) => match t.parse::<f64>() {
                    Ok(v) if v.is_finite() => v,
                    _ => {
                        bad.push((i, t.to_string()));
                        0.0
                    }
                },
            })
            .collect()
    };
    if !empty.is_empty() {
        let listed = list_rows(empty.iter().map(|i| row_label(*i)));
        return Err(invalid(
            path,
            format!(
                "column `{name}`: empty volume in {} rows: {listed}; write 0 for a day without \
                 shipments or remove the row",
                empty.len()
            ),
        ));
    }
    if !bad.is_empty() {
        let listed = list_rows(
            bad.iter()
                .map(|(i, v)| format!("{} (`{v}`)", row_label(*i))),
        );
        return Err(invalid(
            path,
            format!(
                "column `{name}`: volume is not a number in {} rows: {listed}; write plain \
                 numbers in CBM such as 12.5",
                bad.len()
            ),
        ));
    }
    Ok(values)
}

/// Sums duplicates and builds zero-filled daily vectors.
fn aggregate(parsed: ParsedRows, source: PathBuf, rows: usize) -> Shipments {
    let ParsedRows {
        categories,
        brands,
        rows: mut rows_in,
        clipped,
        kept,
    } = parsed;
    rows_in.sort_unstable_by_key(|r| (r.category, r.brand, r.day));

    let mut report = LoadReport {
        rows,
        negative_rows_clipped: clipped,
        negative_rows_kept: kept,
        has_brands: brands.iter().any(|b| !b.is_empty()),
        ..LoadReport::default()
    };
    let mut groups: BTreeMap<String, BTreeMap<String, Daily>> = BTreeMap::new();
    let mut start = 0;
    while start < rows_in.len() {
        let (c, b) = (rows_in[start].category, rows_in[start].brand);
        let mut end = start;
        while end < rows_in.len() && rows_in[end].category == c && rows_in[end].brand == b {
            end += 1;
        }
        let group = &rows_in[start..end];
        let first_day = group[0].day;
        let last_day = group[end - start - 1].day;
        let mut values = vec![0.0; (last_day - first_day + 1) as usize];
        let mut present = 0;
        let mut previous = None;
        for row in group {
            if previous == Some(row.day) {
                report.duplicate_rows_summed += 1;
            } else {
                present += 1;
            }
            previous = Some(row.day);
            values[(row.day - first_day) as usize] += row.volume;
        }
        report.days_zero_filled += values.len() - present;
        let first =
            NaiveDate::from_num_days_from_ce_opt(first_day).expect("parsed dates are valid");
        let daily = Daily { first, values };
        report.first_date = report.first_date.min(Some(first)).or(Some(first));
        report.last_date = report.last_date.max(Some(daily.last()));
        groups
            .entry(categories[c as usize].clone())
            .or_default()
            .insert(brands[b as usize].clone(), daily);
        start = end;
    }
    Shipments {
        source,
        groups,
        report,
    }
}

/// Maps names to dense ids in order of first appearance.
#[derive(Default)]
struct Interner<'a> {
    ids: HashMap<&'a str, u32>,
    names: Vec<String>,
}

impl<'a> Interner<'a> {
    fn id(&mut self, name: &'a str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_string());
        self.ids.insert(name, id);
        id
    }
}

/// The category total over all its brands, zero-filled over the union of their date ranges.
fn category_total(brands: &BTreeMap<String, Daily>) -> Daily {
    let first = brands
        .values()
        .map(|d| d.first)
        .min()
        .expect("a category has a brand");
    let last = brands
        .values()
        .map(Daily::last)
        .max()
        .expect("a category has a brand");
    let mut values = vec![0.0; (last - first).num_days() as usize + 1];
    for daily in brands.values() {
        let offset = (daily.first - first).num_days() as usize;
        for (slot, v) in values[offset..].iter_mut().zip(&daily.values) {
            *slot += v;
        }
    }
    Daily { first, values }
}

fn as_text(column: &Column, path: &Path) -> Result<Column, DataError> {
    column
        .cast(&DataType::String)
        .map_err(|err| frame_error(path, err))
}

fn is_parquet(path: &Path) -> bool {
    matches!(
        path.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("parquet" | "pq")
    )
}

/// "row 3 (line 4)": data rows count from 1; in a CSV the header is line 1.
fn row_label(index: usize) -> String {
    format!("row {} (line {})", index + 1, index + 2)
}

fn list_rows(labels: impl ExactSizeIterator<Item = String>) -> String {
    let total = labels.len();
    let mut shown: Vec<String> = labels.take(ROWS_LISTED).collect();
    if total > ROWS_LISTED {
        shown.push(format!("and {} more", total - ROWS_LISTED));
    }
    shown.join(", ")
}

fn expected_columns(cfg: &DataConfig) -> String {
    let c = &cfg.columns;
    format!(
        "`{}`, `{}`, `{}`, `{}`",
        c.date, c.category, c.brand, c.volume
    )
}

fn invalid(path: &Path, message: String) -> DataError {
    DataError::Invalid {
        path: path.to_path_buf(),
        message,
    }
}

fn read_error(path: &Path, format: &str, err: PolarsError) -> DataError {
    DataError::Read {
        path: path.to_path_buf(),
        message: format!(
            "cannot parse as {format}: {err}; check the file is a valid {format} file"
        ),
    }
}

fn frame_error(path: &Path, err: PolarsError) -> DataError {
    DataError::Read {
        path: path.to_path_buf(),
        message: err.to_string(),
    }
}

/// The real DRY shipments handed to the project, for the unit tests of every module.
#[cfg(test)]
pub(crate) mod test_data {
    use std::path::PathBuf;

    use super::{load_file, Shipments};
    use crate::config::DataConfig;
    use crate::dataset::{Series, SeriesKey};

    /// `../shared/data/mdlz_dry_shipments.csv` beside the repository, loaded with defaults.
    /// The crate's directory is read at run time (cargo sets it for the tests it runs): the
    /// compile-time value goes stale when a build directory is shared between clones at
    /// different paths, since cargo does not rebuild a crate for that.
    pub(crate) fn real_dry() -> Shipments {
        let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR")
            .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
        let path = crate_dir.join("../../shared/data/mdlz_dry_shipments.csv");
        load_file(&path, &DataConfig::default()).unwrap()
    }

    /// The DRY category total, or one brand of it.
    pub(crate) fn real_dry_series(brand: Option<&str>) -> Series {
        real_dry()
            .series(&SeriesKey {
                category: "DRY".into(),
                brand: brand.map(Into::into),
            })
            .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Shipments, DataError> {
        load_bytes(text.as_bytes(), "ship.csv", &DataConfig::default())
    }

    fn error(text: &str) -> String {
        load(text).unwrap_err().to_string()
    }

    fn key(category: &str, brand: Option<&str>) -> SeriesKey {
        SeriesKey {
            category: category.into(),
            brand: brand.map(Into::into),
        }
    }

    const HEADER: &str = "ACTUALSHIPDATE,CATEGORY,BRAND,Total CBM\n";

    use super::test_data::real_dry;

    #[test]
    fn iso_and_slash_dates_name_the_same_day() {
        let day = NaiveDate::from_ymd_opt(2024, 2, 3).unwrap();
        assert_eq!(parse_date("2024-02-03", DateFormat::Auto), Some(day));
        assert_eq!(parse_date("2/3/2024", DateFormat::Auto), Some(day));
        assert_eq!(parse_date("02/03/2024", DateFormat::Mdy), Some(day));
        assert_eq!(
            parse_date("2024-02-03 00:00:00", DateFormat::Iso),
            Some(day)
        );
        assert_eq!(parse_date("2/3/2024", DateFormat::Iso), None);
        assert_eq!(parse_date("2024-02-30", DateFormat::Auto), None);
    }

    #[test]
    fn same_day_duplicates_are_summed_and_counted() {
        let text = format!(
            "{HEADER}2024-01-01,DRY,OREO,1.5\n1/1/2024,DRY,OREO,2\n2024-01-02,DRY,OREO,1\n"
        );
        let shipments = load(&text).unwrap();
        let series = shipments.series(&key("DRY", Some("OREO"))).unwrap();
        assert_eq!(series.values, vec![3.5, 1.0]);
        assert_eq!(shipments.report().duplicate_rows_summed, 1);
        assert_eq!(shipments.report().rows, 3);
    }

    #[test]
    fn missing_days_are_zero_filled_and_counted() {
        let text =
            format!("{HEADER}2024-01-01,DRY,OREO,1\n2024-01-04,DRY,OREO,2\n2024-01-02,DRY,LU,5\n");
        let shipments = load(&text).unwrap();
        let oreo = shipments.series(&key("DRY", Some("OREO"))).unwrap();
        assert_eq!(oreo.values, vec![1.0, 0.0, 0.0, 2.0]);
        assert_eq!(oreo.category_values, Some(vec![1.0, 5.0, 0.0, 2.0]));
        let total = shipments.series(&key("DRY", None)).unwrap();
        assert_eq!(total.values, vec![1.0, 5.0, 0.0, 2.0]);
        assert_eq!(total.dates[3], NaiveDate::from_ymd_opt(2024, 1, 4).unwrap());
        assert_eq!(shipments.report().days_zero_filled, 2);
    }

    #[test]
    fn missing_column_lists_the_columns_found() {
        let message = error("DATE,CATEGORY,BRAND,Total CBM\n2024-01-01,DRY,OREO,1\n");
        assert!(message.contains("ship.csv"), "{message}");
        assert!(message.contains("`ACTUALSHIPDATE`"), "{message}");
        assert!(
            message.contains("DATE, CATEGORY, BRAND, Total CBM"),
            "{message}"
        );
    }

    #[test]
    fn unparsable_date_names_row_and_value() {
        let message = error(&format!(
            "{HEADER}2024-01-01,DRY,OREO,1\n2024-13-01,DRY,OREO,1\n"
        ));
        assert!(message.contains("row 2 (line 3)"), "{message}");
        assert!(message.contains("`2024-13-01`"), "{message}");
        assert!(message.contains("YYYY-MM-DD or M/D/YYYY"), "{message}");
    }

    #[test]
    fn empty_and_non_numeric_volumes_name_their_rows() {
        let empty = error(&format!("{HEADER}2024-01-01,DRY,OREO,\n"));
        assert!(
            empty.contains("empty volume") && empty.contains("row 1 (line 2)"),
            "{empty}"
        );
        let text = error(&format!(
            "{HEADER}2024-01-01,DRY,OREO,1\n2024-01-02,DRY,OREO,abc\n"
        ));
        assert!(
            text.contains("not a number") && text.contains("row 2 (line 3) (`abc`)"),
            "{text}"
        );
    }

    #[test]
    fn negative_volume_follows_the_configured_policy() {
        let text = format!("{HEADER}2024-01-01,DRY,OREO,-2\n2024-01-02,DRY,OREO,3\n");
        let message = error(&text);
        assert!(
            message.contains("negative volume") && message.contains("row 1 (line 2)"),
            "{message}"
        );
        assert!(message.contains("negative_volume"), "{message}");

        let mut cfg = DataConfig {
            negative_volume: NegativeVolume::Clip,
            ..DataConfig::default()
        };
        let clipped = load_bytes(text.as_bytes(), "ship.csv", &cfg).unwrap();
        assert_eq!(
            clipped.series(&key("DRY", None)).unwrap().values,
            vec![0.0, 3.0]
        );
        assert_eq!(clipped.report().negative_rows_clipped, 1);
        cfg.negative_volume = NegativeVolume::Keep;
        let kept = load_bytes(text.as_bytes(), "ship.csv", &cfg).unwrap();
        assert_eq!(
            kept.series(&key("DRY", None)).unwrap().values,
            vec![-2.0, 3.0]
        );
    }

    #[test]
    fn unknown_category_and_brand_list_those_present() {
        let shipments = load(&format!(
            "{HEADER}2024-01-01,DRY,OREO,1\n2024-01-01,DRY,LU,1\n"
        ))
        .unwrap();
        let category = shipments.series(&key("WET", None)).unwrap_err().to_string();
        assert!(
            category.contains("`WET`") && category.contains("DRY"),
            "{category}"
        );
        let brand = shipments
            .series(&key("DRY", Some("RITZ")))
            .unwrap_err()
            .to_string();
        assert!(
            brand.contains("`RITZ`") && brand.contains("LU, OREO"),
            "{brand}"
        );
    }

    #[test]
    fn empty_file_and_header_only_file_are_errors() {
        assert!(error("").contains("the file is empty"));
        assert!(error(HEADER).contains("no data rows"));
    }

    #[test]
    fn file_without_brand_column_is_category_level() {
        let shipments =
            load("ACTUALSHIPDATE,CATEGORY,Total CBM\n2024-01-01,DRY,1\n2024-01-02,DRY,2\n")
                .unwrap();
        assert!(shipments.brands("DRY").is_empty());
        assert_eq!(
            shipments.series(&key("DRY", None)).unwrap().values,
            vec![1.0, 2.0]
        );
        let brand = shipments
            .series(&key("DRY", Some("OREO")))
            .unwrap_err()
            .to_string();
        assert!(brand.contains("no brand column"), "{brand}");
    }

    #[test]
    fn parquet_file_loads_like_the_csv() {
        use polars::prelude::{df, ParquetWriter};

        let mut frame = df!(
            "ACTUALSHIPDATE" => ["2024-01-01", "2024-01-03"],
            "CATEGORY" => ["DRY", "DRY"],
            "BRAND" => ["OREO", "OREO"],
            "Total CBM" => [1.5f64, 2.0],
        )
        .unwrap();
        let mut bytes = Vec::new();
        ParquetWriter::new(&mut bytes).finish(&mut frame).unwrap();
        let shipments = load_bytes(&bytes, "ship.parquet", &DataConfig::default()).unwrap();
        let series = shipments.series(&key("DRY", Some("OREO"))).unwrap();
        assert_eq!(series.values, vec![1.5, 0.0, 2.0]);
    }

    #[test]
    fn series_config_reads_the_documented_example() {
        let yaml = "window: {input: 30, horizon: 30, gap: 0}\n\
                    split: {dates: {train_end: 2024-06-30, val_end: 2024-12-31}}\n\
                    calendar: {holidays: none}\n\
                    data: {columns: {volume: \"Total CBM\"}, negative_volume: clip}\n\
                    target_transform: log1p\n";
        let cfg = SeriesConfig::from_yaml(yaml, Path::new("p.yaml")).unwrap();
        assert_eq!(cfg.data.negative_volume, NegativeVolume::Clip);
        assert_eq!(cfg.target_transform, TargetTransform::Log1p);
        assert!(matches!(cfg.pipeline().split, SplitConfig::Dates { .. }));
        assert_eq!(cfg.calendar.holidays, crate::config::CalendarSource::None);
        let err = SeriesConfig::from_yaml("window: {inptu: 3}\n", Path::new("p.yaml")).unwrap_err();
        assert!(
            err.to_string().contains("window") && err.to_string().contains("inptu"),
            "{err}"
        );
    }

    #[test]
    fn real_dry_category_spans_three_years_of_days() {
        let shipments = real_dry();
        assert_eq!(shipments.categories(), vec!["DRY"]);
        assert_eq!(shipments.brands("DRY").len(), 8);
        let series = shipments.series(&key("DRY", None)).unwrap();
        assert_eq!(series.values.len(), 1095);
        assert_eq!(
            series.dates[0],
            NaiveDate::from_ymd_opt(2023, 1, 1).unwrap()
        );
        assert_eq!(
            series.dates[1094],
            NaiveDate::from_ymd_opt(2025, 12, 30).unwrap()
        );
        assert_eq!(shipments.report().rows, 8023);
    }

    #[test]
    fn real_lu_brand_starts_in_2025_with_zero_filled_days() {
        let shipments = real_dry();
        let lu = shipments.series(&key("DRY", Some("LU"))).unwrap();
        assert_eq!(lu.dates[0].year(), 2025);
        assert_eq!(shipments.report().days_zero_filled, 6);
        let category = lu.category_values.as_ref().unwrap();
        assert!(lu
            .values
            .iter()
            .zip(category)
            .all(|(b, c)| b <= &(c + 1e-9)));
    }

    #[test]
    fn real_sunday_mean_is_far_below_weekdays() {
        let series = real_dry().series(&key("DRY", None)).unwrap();
        let mean_of = |weekday: chrono::Weekday| {
            let days: Vec<f64> = series
                .dates
                .iter()
                .zip(&series.values)
                .filter(|(d, _)| d.weekday() == weekday)
                .map(|(_, v)| *v)
                .collect();
            days.iter().sum::<f64>() / days.len() as f64
        };
        let sunday = mean_of(chrono::Weekday::Sun);
        let wednesday = mean_of(chrono::Weekday::Wed);
        assert!(sunday < 100.0, "Sunday mean {sunday}");
        assert!(
            wednesday > 5.0 * sunday,
            "Wednesday {wednesday} vs Sunday {sunday}"
        );
    }
}
