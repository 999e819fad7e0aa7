//! `sweep check-leakage`: runs the leakage check on one series of a shipments file and prints
//! its table. Exit code 0 when every check passes, 1 when one fails, 2 on bad input.
//!
//! `--config FILE` is a YAML [`SeriesConfig`]: `window`, `split`, `calendar`, an optional
//! `data` section (column names, date format, negative-volume policy) and `target_transform`.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Context;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, Color, Table};
use shared::calendar::Calendar;
use shared::data::{self, LoadReport, SeriesConfig};
use shared::dataset::{Series, SeriesKey};
use shared::leakage;

use crate::cli::SeriesArgs;

/// A series read from the command line's file, with the settings it was read under.
pub struct LoadedSeries {
    /// The series.
    pub series: Series,
    /// The settings of `--config` (defaults without it).
    pub config: SeriesConfig,
    /// The calendar of the settings.
    pub calendar: Calendar,
    /// What the loader did to the file.
    pub report: LoadReport,
}

/// Reads `--config`, the file of `--data` and the series of `--category`/`--brand`. Every
/// error names the file involved.
pub fn load_series(args: &SeriesArgs) -> anyhow::Result<LoadedSeries> {
    let config = match &args.config {
        Some(path) => SeriesConfig::from_file(path)
            .with_context(|| format!("reading the pipeline config {}", path.display()))?,
        None => SeriesConfig::default(),
    };
    let calendar = Calendar::new(&config.calendar).context("building the calendar")?;
    let shipments = data::load_file(&args.data, &config.data)
        .with_context(|| format!("loading shipments from {}", args.data.display()))?;
    let key = SeriesKey {
        category: args.category.clone(),
        brand: args.brand.clone(),
    };
    let series = shipments
        .series(&key)
        .with_context(|| format!("selecting series {key}"))?;
    tracing::debug!(
        series = %key,
        days = series.values.len(),
        duplicates = shipments.report().duplicate_rows_summed,
        zero_filled = shipments.report().days_zero_filled,
        "series loaded"
    );
    Ok(LoadedSeries {
        series,
        config,
        calendar,
        report: shipments.report().clone(),
    })
}

/// Runs the command.
pub fn run(args: SeriesArgs) -> anyhow::Result<ExitCode> {
    let loaded = load_series(&args)?;
    let series = &loaded.series;
    let report = leakage::check(
        series,
        &loaded.calendar,
        &loaded.config.pipeline(),
        loaded.config.target_transform,
    )
    .with_context(|| format!("checking series {} of {}", series.key, args.data.display()))?;

    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(vec!["check", "result", "detail"]);
    for check in &report.checks {
        let result = if check.passed {
            Cell::new("PASS").fg(Color::Green)
        } else {
            Cell::new("FAIL").fg(Color::Red)
        };
        table.add_row(vec![
            Cell::new(check.name),
            result,
            Cell::new(&check.detail),
        ]);
    }
    let first = series
        .dates
        .first()
        .map(|d| d.to_string())
        .unwrap_or_default();
    let last = series
        .dates
        .last()
        .map(|d| d.to_string())
        .unwrap_or_default();
    let verdict = if report.passed() {
        "all checks passed".to_string()
    } else {
        format!(
            "{} failed",
            report.first_failure().map(|c| c.name).unwrap_or("a check")
        )
    };
    let text = format!(
        "series {}: {} days, {first} .. {last}\n{table}\n{verdict}\n",
        series.key,
        series.values.len()
    );

    // A closed pipe is a normal end; the verdict still decides the exit code.
    let mut out = io::stdout().lock();
    if let Err(err) = out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        if err.kind() != io::ErrorKind::BrokenPipe {
            return Err(err).context("writing the leakage table to stdout");
        }
    }
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::EXIT_FAILURES)
    })
}
