//! `sweep calendar`: lists the Vietnamese public holidays, Tet days and Mid-Autumn days of a
//! date range with their lunar dates, as a table or as CSV.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::{bail, Context};
use chrono::{Datelike, NaiveDate};
use comfy_table::Table;
use shared::calendar::{mid_autumn, solar_to_lunar, Calendar, Holiday};

use crate::cli::{CalendarArgs, OutputFormat};

/// Dates the command accepts; the lunar tables are cached for these years.
const FIRST_YEAR: i32 = 1900;
const LAST_YEAR: i32 = 2200;

/// Runs the command. Bad or inverted dates are errors (exit code 2).
pub fn run(args: CalendarArgs) -> anyhow::Result<ExitCode> {
    let from = parse_day("--from", &args.from)?;
    let to = parse_day("--to", &args.to)?;
    if to < from {
        bail!(
            "--to {to} is before --from {from}; give the first day with --from and the last \
             with --to"
        );
    }

    let rows = rows_between(from, to);
    let text = match args.format {
        OutputFormat::Table => render_table(&rows),
        OutputFormat::Csv => render_csv(&rows),
    };

    // A closed pipe (`sweep calendar ... | head`) is a normal end, not an error.
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(err) if err.kind() != io::ErrorKind::BrokenPipe => {
            Err(err).context("writing the calendar to stdout")
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// Parses a `--from`/`--to` value: `YYYY-MM-DD` within the supported years.
fn parse_day(flag: &str, value: &str) -> anyhow::Result<NaiveDate> {
    let date = NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d").map_err(|_| {
        anyhow::anyhow!(
            "{flag} `{value}` is not a valid date; write it as YYYY-MM-DD, e.g. 2025-01-29"
        )
    })?;
    if !(FIRST_YEAR..=LAST_YEAR).contains(&date.year()) {
        bail!("{flag} {date} is outside the supported years {FIRST_YEAR}-{LAST_YEAR}");
    }

    Ok(date)
}

/// One line of the listing.
struct Row {
    date: NaiveDate,
    lunar: String,
    name: String,
    kind: String,
}

/// Holidays plus Mid-Autumn days from `from` through `to`, sorted by date.
fn rows_between(from: NaiveDate, to: NaiveDate) -> Vec<Row> {
    let holidays = Calendar::vietnam().holidays_between(from, to);
    let festivals = (from.year()..=to.year())
        .map(mid_autumn)
        .filter(|day| (from..=to).contains(day))
        .map(|date| Holiday {
            date,
            name: "Mid-Autumn Festival".to_string(),
            kind: "festival".to_string(),
        });

    let mut rows: Vec<Row> = holidays
        .into_iter()
        .chain(festivals)
        .map(|h| Row {
            date: h.date,
            lunar: solar_to_lunar(h.date).to_string(),
            name: h.name,
            kind: h.kind,
        })
        .collect();
    rows.sort_by_key(|r| r.date);

    rows
}

fn render_table(rows: &[Row]) -> String {
    let mut table = Table::new();
    table.set_header(vec!["date", "weekday", "lunar date", "name", "kind"]);
    for row in rows {
        table.add_row(vec![
            row.date.to_string(),
            row.date.format("%a").to_string(),
            row.lunar.clone(),
            row.name.clone(),
            row.kind.clone(),
        ]);
    }

    format!(
        "{table}\nLunar dates are YYYY-MM-DD of the Vietnamese lunar calendar (UTC+7); L marks a \
         leap month.\n"
    )
}

fn render_csv(rows: &[Row]) -> String {
    let mut out = String::from("date,weekday,lunar_date,name,kind\n");
    for row in rows {
        out.push_str(&format!(
            "{},{},{},{},{}\n",
            row.date,
            row.date.format("%a"),
            row.lunar,
            csv_field(&row.name),
            csv_field(&row.kind)
        ));
    }

    out
}

/// Quotes a CSV field when it holds a comma, a quote or a line break.
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_2024_include_tet_and_mid_autumn_in_date_order() {
        let day = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let rows = rows_between(day("2024-01-01"), day("2024-12-31"));

        assert!(rows.windows(2).all(|w| w[0].date <= w[1].date));
        let tet = rows.iter().find(|r| r.date == day("2024-02-10")).unwrap();
        assert_eq!(tet.lunar, "2024-01-01");
        let autumn = rows.iter().find(|r| r.kind == "festival").unwrap();
        assert_eq!(
            (autumn.date, autumn.lunar.as_str()),
            (day("2024-09-17"), "2024-08-15")
        );
    }

    #[test]
    fn csv_fields_with_commas_are_quoted() {
        assert_eq!(csv_field("a, b"), "\"a, b\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
