//! The Vietnamese lunisolar calendar, public holidays and peak seasons.
//!
//! Lunar dates are computed from astronomy (see `astro` and `lunar`): new moons and the sun's
//! longitude, on the UTC+7 meridian the Vietnamese calendar has used since 1968. The same rules
//! at UTC+8 give the Chinese calendar; the two differ when a new moon or a solar term falls
//! between 23:00 and 24:00 Vietnam time (Tet 1985 and 2007, for example). Before 1968 Vietnam
//! followed the Chinese calendar; this module applies UTC+7 to every year so that features do
//! not change rule mid-series. Month starts of lunar years 1900-2200 are computed once and
//! cached, so a conversion is a binary search; other years are computed on demand.
//!
//! Public holidays (the built-in Vietnamese set):
//! - New Year's Day, January 1;
//! - Tet: Tet day (lunar 1/1) plus the days `tet_holiday_span` around it, by default two days
//!   before through four days after (seven days);
//! - Hung Kings' Commemoration, lunar 3/10;
//! - Reunification Day, April 30, and International Labour Day, May 1;
//! - National Day, September 2 plus one adjacent day (the rule since 2021). The adjacent day is
//!   the one that joins the weekend: September 3 when September 2 is a Monday or a Thursday,
//!   September 1 otherwise. This matches the days the government announced for 2021-2025 and is
//!   applied to every year.
//!
//! Days off given in exchange for a holiday on a weekend are announced year by year and are not
//! built in; a calendar file adds them.
//!
//! Peak seasons (used to boost the loss): the Tet season runs from `tet_season_days` (default
//! 45) days before Tet day through Tet day; the Mid-Autumn season from lunar 7/15 through lunar
//! 8/15 (Mid-Autumn day), including a leap month 7 when there is one.

mod astro;
mod lunar;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use chrono::{Datelike, Duration, NaiveDate, Weekday};
use serde::Deserialize;

use crate::config::{CalendarConfig, CalendarSource};
use crate::error::DataError;
use crate::features::CalendarColumnCache;

use lunar::{jdn_to_lunar, lunar_month_start, VIETNAM_UTC_OFFSET};

/// A date of the Vietnamese lunisolar calendar.
///
/// Displayed as `YYYY-MM-DD` of the lunar calendar, with an `L` after the month of a leap month
/// (`2025-06L-01`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LunarDate {
    /// Lunar year: the Gregorian year in which its Tet day falls.
    pub year: i32,
    /// Lunar month, 1..=12.
    pub month: u32,
    /// Day of the lunar month, 1..=30.
    pub day: u32,
    /// Whether the month is the leap (intercalary) month that repeats `month`.
    pub leap: bool,
}

impl fmt::Display for LunarDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let leap = if self.leap { "L" } else { "" };
        write!(f, "{}-{:02}{leap}-{:02}", self.year, self.month, self.day)
    }
}

/// Offset between chrono's days from the common era and Julian day numbers.
const JDN_OF_CE_DAY_0: i64 = 1721425;

fn to_jdn(date: NaiveDate) -> i64 {
    date.num_days_from_ce() as i64 + JDN_OF_CE_DAY_0
}

fn from_jdn(jdn: i64) -> Option<NaiveDate> {
    NaiveDate::from_num_days_from_ce_opt(i32::try_from(jdn - JDN_OF_CE_DAY_0).ok()?)
}

/// Converts a Gregorian date to the Vietnamese lunar date.
pub fn solar_to_lunar(date: NaiveDate) -> LunarDate {
    let (year, month, day, leap) = jdn_to_lunar(to_jdn(date), VIETNAM_UTC_OFFSET);

    LunarDate {
        year,
        month,
        day,
        leap,
    }
}

/// Converts a Vietnamese lunar date to the Gregorian date. `None` when the date does not exist:
/// a month outside 1..=12, a leap month the year does not have, day 0, or day 30 of a 29-day
/// month.
pub fn lunar_to_solar(year: i32, month: u32, day: u32, leap: bool) -> Option<NaiveDate> {
    let (first, length) = lunar_month_start(year, month, leap, VIETNAM_UTC_OFFSET)?;
    if day == 0 || i64::from(day) > length {
        return None;
    }

    from_jdn(first + i64::from(day) - 1)
}

/// Tet day (lunar 1/1) of a Gregorian year, in Vietnam (UTC+7).
pub fn tet_day(year: i32) -> NaiveDate {
    lunar_to_solar(year, 1, 1, false).expect("every lunar year has a first day of month 1")
}

/// Mid-Autumn day (lunar 8/15) of a Gregorian year.
pub fn mid_autumn(year: i32) -> NaiveDate {
    lunar_to_solar(year, 8, 15, false).expect("every lunar month has a 15th day")
}

/// Days in the month of `date`.
pub(crate) fn days_in_month(date: NaiveDate) -> u32 {
    let (y, m) = if date.month() == 12 {
        (date.year() + 1, 1)
    } else {
        (date.year(), date.month() + 1)
    };
    let first_next = NaiveDate::from_ymd_opt(y, m, 1).expect("first of a month exists");
    (first_next - Duration::days(1)).day()
}

/// Whether a day lies in the Tet season: `season_days` days before a Tet day through Tet day.
fn in_tet_season(date: NaiveDate, season_days: i64) -> bool {
    // The season can start in December, before the Tet of the next Gregorian year.
    [date.year(), date.year() + 1]
        .iter()
        .any(|&y| (0..=season_days).contains(&(tet_day(y) - date).num_days()))
}

/// Whether a day lies in the Mid-Autumn season, lunar 7/15 through 8/15.
pub(crate) fn in_mid_autumn_season(lunar: LunarDate) -> bool {
    (lunar.month == 7 && (lunar.leap || lunar.day >= 15))
        || (lunar.month == 8 && !lunar.leap && lunar.day <= 15)
}

/// A public holiday.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holiday {
    /// The day off.
    pub date: NaiveDate,
    /// Its name, e.g. `National Day`.
    pub name: String,
    /// Its kind: `public` or `tet` for the built-in days, as written in a calendar file (default
    /// `custom`) for the others.
    pub kind: String,
}

impl Holiday {
    fn new(date: NaiveDate, name: &str, kind: &str) -> Self {
        Self {
            date,
            name: name.to_string(),
            kind: kind.to_string(),
        }
    }
}

/// The adjacent day off of National Day in a year (see the module docs).
fn national_day_adjacent(year: i32) -> NaiveDate {
    let sep2 = NaiveDate::from_ymd_opt(year, 9, 2).expect("September 2 exists");
    match sep2.weekday() {
        Weekday::Mon | Weekday::Thu => sep2 + Duration::days(1),
        _ => sep2 - Duration::days(1),
    }
}

/// Holidays and peak seasons, as a [`CalendarConfig`] describes them.
#[derive(Debug, Clone)]
pub struct Calendar {
    /// Whether the built-in Vietnamese holidays apply.
    built_in: bool,
    /// Tet holiday span around Tet day, in days (first, last).
    tet_span: (i64, i64),
    /// Days before Tet day that start the Tet season.
    tet_season_days: i64,
    /// Holidays read from a calendar file, by date.
    extra: BTreeMap<NaiveDate, Vec<Holiday>>,
    /// The calendar feature columns of the days features were asked for so far: they depend on
    /// these settings and the date alone, so every series shares them.
    feature_columns: CalendarColumnCache,
}

impl Calendar {
    /// Builds the calendar a config describes; reads the calendar file of
    /// [`CalendarSource::File`]. Fails, naming the file and row, when the file cannot be read or
    /// a row has no valid date or name, and when the Tet span or season is inverted or negative.
    pub fn new(cfg: &CalendarConfig) -> Result<Calendar, DataError> {
        let (first, last) = cfg.tet_holiday_span;
        if first > last || first < -60 || last > 60 {
            return Err(DataError::Config {
                key: "calendar.tet_holiday_span".into(),
                message: format!(
                    "({first}, {last}) must be two day offsets from Tet day with first <= last, \
                     each within 60 days, e.g. [-2, 4]"
                ),
            });
        }
        if !(0..=366).contains(&cfg.tet_season_days) {
            return Err(DataError::Config {
                key: "calendar.tet_season_days".into(),
                message: format!("is {}; it must be between 0 and 366", cfg.tet_season_days),
            });
        }

        let (built_in, rows) = match &cfg.holidays {
            CalendarSource::Vietnam => (true, Vec::new()),
            CalendarSource::None => (false, Vec::new()),
            CalendarSource::File { path, replace } => (!replace, read_calendar_file(path)?),
        };
        if let CalendarSource::File { path, replace } = &cfg.holidays {
            tracing::debug!(
                path = %path.display(),
                holidays = rows.len(),
                replace,
                "calendar file read"
            );
        }
        let mut extra: BTreeMap<NaiveDate, Vec<Holiday>> = BTreeMap::new();
        for row in rows {
            extra.entry(row.date).or_default().push(row);
        }

        Ok(Calendar {
            built_in,
            tet_span: cfg.tet_holiday_span,
            tet_season_days: cfg.tet_season_days,
            extra,
            feature_columns: CalendarColumnCache::default(),
        })
    }

    /// The built-in Vietnamese calendar with default settings.
    pub fn vietnam() -> Calendar {
        Calendar::new(&CalendarConfig::default()).expect("the default calendar config is valid")
    }

    /// The built-in holidays of one Gregorian year, in no particular order.
    fn built_in_holidays(&self, year: i32) -> Vec<Holiday> {
        let ymd = |m, d| NaiveDate::from_ymd_opt(year, m, d).expect("fixed holiday dates exist");
        let tet = tet_day(year);
        let mut days = vec![
            Holiday::new(ymd(1, 1), "New Year's Day", "public"),
            Holiday::new(
                lunar_to_solar(year, 3, 10, false).expect("lunar month 3 has a 10th day"),
                "Hung Kings' Commemoration",
                "public",
            ),
            Holiday::new(ymd(4, 30), "Reunification Day", "public"),
            Holiday::new(ymd(5, 1), "International Labour Day", "public"),
            Holiday::new(ymd(9, 2), "National Day", "public"),
            Holiday::new(
                national_day_adjacent(year),
                "National Day holiday",
                "public",
            ),
        ];
        for offset in self.tet_span.0..=self.tet_span.1 {
            let name = if offset == 0 {
                "Tet (Lunar New Year)"
            } else {
                "Tet holiday"
            };
            days.push(Holiday::new(tet + Duration::days(offset), name, "tet"));
        }

        days
    }

    /// Holidays from `from` through `to` (both inclusive), sorted by date; empty when `to` is
    /// before `from`. A day listed by both the built-in set and a calendar file appears twice.
    pub fn holidays_between(&self, from: NaiveDate, to: NaiveDate) -> Vec<Holiday> {
        if to < from {
            return Vec::new();
        }

        let mut out: Vec<Holiday> = Vec::new();
        if self.built_in {
            // A wide Tet span can reach into the neighbouring Gregorian years.
            for year in from.year() - 1..=to.year() + 1 {
                out.extend(
                    self.built_in_holidays(year)
                        .into_iter()
                        .filter(|h| (from..=to).contains(&h.date)),
                );
            }
        }
        out.extend(
            self.extra
                .range(from..=to)
                .flat_map(|(_, h)| h.iter().cloned()),
        );
        out.sort_by_key(|h| h.date);

        out
    }

    pub(crate) fn column_cache(&self) -> &CalendarColumnCache {
        &self.feature_columns
    }

    /// Whether a day is a holiday (built-in or from the calendar file).
    pub fn is_holiday(&self, date: NaiveDate) -> bool {
        self.extra.contains_key(&date) || (self.built_in && self.is_built_in_holiday(date))
    }

    fn is_built_in_holiday(&self, date: NaiveDate) -> bool {
        let year = date.year();
        let fixed = matches!(
            (date.month(), date.day()),
            (1, 1) | (4, 30) | (5, 1) | (9, 2)
        ) || date == national_day_adjacent(year);
        let lunar = solar_to_lunar(date);
        let hung_kings = lunar.month == 3 && lunar.day == 10 && !lunar.leap;
        let tet = [year - 1, year, year + 1].iter().any(|&y| {
            (self.tet_span.0..=self.tet_span.1).contains(&(date - tet_day(y)).num_days())
        });

        fixed || hung_kings || tet
    }

    /// Whether a day lies in a peak season of a category (see [`PeakSeasons::of`]).
    pub fn is_peak(&self, category: &str, date: NaiveDate) -> bool {
        let seasons = PeakSeasons::of(category);
        (seasons.tet && in_tet_season(date, self.tet_season_days))
            || (seasons.mid_autumn && in_mid_autumn_season(solar_to_lunar(date)))
    }

    /// Days of the Tet season before Tet day.
    pub(crate) fn tet_season_days(&self) -> i64 {
        self.tet_season_days
    }
}

/// The peak seasons that boost a category's loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeakSeasons {
    pub tet: bool,
    pub mid_autumn: bool,
}

impl PeakSeasons {
    /// Category names compare case-insensitively: `TET` peaks in the Tet season, `MOONCAKE`
    /// in the Mid-Autumn season, and every other category in either season.
    pub fn of(category: &str) -> Self {
        let tet = category.eq_ignore_ascii_case("TET");
        let mooncake = category.eq_ignore_ascii_case("MOONCAKE");
        Self {
            tet: !mooncake,
            mid_autumn: !tet,
        }
    }
}

/// One row of a calendar file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRow {
    date: String,
    name: String,
    #[serde(default)]
    kind: Option<String>,
}

/// Reads a calendar file: YAML (`.yaml`, `.yml`: a list of `{date, name, kind}`) or CSV with a
/// `date,name,kind` header (`kind` optional). Dates are `YYYY-MM-DD` or `M/D/YYYY`.
fn read_calendar_file(path: &Path) -> Result<Vec<Holiday>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|err| DataError::Read {
        path: path.to_path_buf(),
        message: format!("cannot read the calendar file: {err}"),
    })?;
    let invalid = |message: String| DataError::Invalid {
        path: path.to_path_buf(),
        message,
    };

    let is_yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    let rows: Vec<(String, FileRow)> = if is_yaml {
        let de = serde_norway::Deserializer::from_str(&text);
        let rows: Vec<FileRow> = serde_path_to_error::deserialize(de).map_err(|err| {
            invalid(format!(
                "calendar YAML at `{}`: {}; expected a list of entries with `date`, `name` and \
                 optionally `kind`",
                err.path(),
                err.inner()
            ))
        })?;
        rows.into_iter()
            .enumerate()
            .map(|(i, row)| (format!("entry {}", i + 1), row))
            .collect()
    } else {
        parse_calendar_csv(&text).map_err(invalid)?
    };

    rows.into_iter()
        .map(|(place, row)| {
            let date = parse_date(row.date.trim()).ok_or_else(|| {
                invalid(format!(
                    "{place}: date `{}` is not YYYY-MM-DD or M/D/YYYY",
                    row.date
                ))
            })?;
            if row.name.trim().is_empty() {
                return Err(invalid(format!("{place}: the holiday has no name")));
            }
            let kind = row
                .kind
                .map(|k| k.trim().to_string())
                .filter(|k| !k.is_empty())
                .unwrap_or_else(|| "custom".to_string());
            Ok(Holiday {
                date,
                name: row.name.trim().to_string(),
                kind,
            })
        })
        .collect()
}

/// Splits calendar CSV text into rows labelled with their line numbers. The header must name
/// `date` and `name` columns; `kind` is optional. Fields may be double-quoted.
fn parse_calendar_csv(text: &str) -> Result<Vec<(String, FileRow)>, String> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err("the calendar file is empty; expected a `date,name,kind` header".to_string());
    };

    let header: Vec<String> = split_csv_line(header)
        .into_iter()
        .map(|h| h.trim().trim_start_matches('\u{feff}').to_ascii_lowercase())
        .collect();
    let column = |name: &str| header.iter().position(|h| h == name);
    let (Some(date_col), Some(name_col)) = (column("date"), column("name")) else {
        return Err(format!(
            "line 1: header `{}` lacks a `date` or `name` column; expected `date,name,kind`",
            header.join(",")
        ));
    };
    let kind_col = column("kind");

    lines
        .map(|(index, line)| {
            let fields = split_csv_line(line);
            let place = format!("line {}", index + 1);
            let field = |col: usize| fields.get(col).map(|f| f.to_string());
            let (Some(date), Some(name)) = (field(date_col), field(name_col)) else {
                return Err(format!(
                    "{place}: expected {} fields (`date,name,kind`), found {}",
                    header.len(),
                    fields.len()
                ));
            };
            let kind = kind_col.and_then(field);
            Ok((place, FileRow { date, name, kind }))
        })
        .collect()
}

/// Splits one CSV line on commas, honouring double quotes (`""` inside quotes is a quote).
fn split_csv_line(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();

    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                current.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    fields.push(current);

    fields
}

/// Parses `YYYY-MM-DD` or `M/D/YYYY`.
fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(text, "%m/%d/%Y"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("test dates are valid")
    }

    #[test]
    fn tet_days_match_the_official_dates() {
        for (year, date) in [
            (2023, "2023-01-22"),
            (2024, "2024-02-10"),
            (2025, "2025-01-29"),
            (2026, "2026-02-17"),
            (2027, "2027-02-06"),
        ] {
            assert_eq!(tet_day(year), d(date), "Tet {year}");
        }
    }

    #[test]
    fn mid_autumn_days_match_the_official_dates() {
        for (year, date) in [
            (2023, "2023-09-29"),
            (2024, "2024-09-17"),
            (2025, "2025-10-06"),
            (2026, "2026-09-25"),
        ] {
            assert_eq!(mid_autumn(year), d(date), "Mid-Autumn {year}");
        }
    }

    #[test]
    fn vietnamese_tet_differs_from_chinese_new_year_in_1985_and_2007() {
        assert_eq!(tet_day(1985), d("1985-01-21"));
        assert_eq!(tet_day(2007), d("2007-02-17"));

        // The same rules on the UTC+8 meridian give the Chinese dates.
        let chinese = |year| from_jdn(lunar_month_start(year, 1, false, 8.0).unwrap().0).unwrap();
        assert_eq!(chinese(1985), d("1985-02-20"));
        assert_eq!(chinese(2007), d("2007-02-18"));
    }

    #[test]
    fn every_day_1950_to_2100_round_trips_through_the_lunar_calendar() {
        let mut date = d("1950-01-01");
        let mut previous = solar_to_lunar(date - Duration::days(1));

        while date <= d("2100-12-31") {
            let lunar = solar_to_lunar(date);
            assert_eq!(
                lunar_to_solar(lunar.year, lunar.month, lunar.day, lunar.leap),
                Some(date),
                "{date} -> {lunar}"
            );
            // Consecutive days advance the lunar day or start a new month on day 1.
            assert!(
                lunar.day == previous.day + 1 || (lunar.day == 1 && previous.day >= 29),
                "{date}: {previous} then {lunar}"
            );
            previous = lunar;
            date += Duration::days(1);
        }
    }

    #[test]
    fn leap_months_fall_where_the_calendar_has_them() {
        // 2020 had a leap month 4, 2023 a leap month 2, 2025 a leap month 6.
        assert_eq!(lunar_to_solar(2020, 4, 1, true), Some(d("2020-05-23")));
        assert_eq!(lunar_to_solar(2023, 2, 1, true), Some(d("2023-03-22")));
        assert_eq!(lunar_to_solar(2025, 6, 1, true), Some(d("2025-07-25")));
        assert_eq!(lunar_to_solar(2024, 6, 1, true), None);
    }

    #[test]
    fn impossible_lunar_dates_are_none() {
        assert_eq!(lunar_to_solar(2024, 13, 1, false), None);
        assert_eq!(lunar_to_solar(2024, 1, 0, false), None);
        assert_eq!(lunar_to_solar(2024, 1, 31, false), None);
    }

    #[test]
    fn lunar_dates_display_with_a_leap_marker() {
        assert_eq!(solar_to_lunar(d("2025-07-25")).to_string(), "2025-06L-01");
        assert_eq!(solar_to_lunar(d("2024-09-17")).to_string(), "2024-08-15");
    }

    #[test]
    fn built_in_holidays_of_2025_are_the_official_days() {
        let calendar = Calendar::vietnam();
        let days: Vec<NaiveDate> = calendar
            .holidays_between(d("2025-01-01"), d("2025-12-31"))
            .iter()
            .map(|h| h.date)
            .collect();

        let expected: Vec<NaiveDate> = [
            "2025-01-01",
            "2025-01-27",
            "2025-01-28",
            "2025-01-29",
            "2025-01-30",
            "2025-01-31",
            "2025-02-01",
            "2025-02-02",
            "2025-04-07",
            "2025-04-30",
            "2025-05-01",
            "2025-09-01",
            "2025-09-02",
        ]
        .into_iter()
        .map(d)
        .collect();
        assert_eq!(days, expected);
    }

    #[test]
    fn is_holiday_agrees_with_the_holiday_list() {
        let calendar = Calendar::vietnam();
        let listed: Vec<NaiveDate> = calendar
            .holidays_between(d("2019-12-01"), d("2027-01-31"))
            .iter()
            .map(|h| h.date)
            .collect();

        let mut date = d("2020-01-01");
        while date <= d("2026-12-31") {
            assert_eq!(calendar.is_holiday(date), listed.contains(&date), "{date}");
            date += Duration::days(1);
        }
    }

    #[test]
    fn national_day_adds_the_day_that_joins_the_weekend() {
        // Announced days: 2021 Sep 2-3, 2022 Sep 1-2, 2023 Sep 1-2, 2024 Sep 2-3, 2025 Sep 1-2.
        assert_eq!(national_day_adjacent(2021), d("2021-09-03"));
        assert_eq!(national_day_adjacent(2022), d("2022-09-01"));
        assert_eq!(national_day_adjacent(2023), d("2023-09-01"));
        assert_eq!(national_day_adjacent(2024), d("2024-09-03"));
        assert_eq!(national_day_adjacent(2025), d("2025-09-01"));
    }

    #[test]
    fn tet_span_setting_widens_the_tet_holiday() {
        let cfg = CalendarConfig {
            tet_holiday_span: (-5, 5),
            ..CalendarConfig::default()
        };
        let calendar = Calendar::new(&cfg).unwrap();

        assert!(calendar.is_holiday(d("2024-02-05")));
        assert!(calendar.is_holiday(d("2024-02-15")));
        assert!(!Calendar::vietnam().is_holiday(d("2024-02-05")));
    }

    #[test]
    fn no_holiday_source_has_no_holidays() {
        let cfg = CalendarConfig {
            holidays: CalendarSource::None,
            ..CalendarConfig::default()
        };
        let calendar = Calendar::new(&cfg).unwrap();

        assert!(calendar
            .holidays_between(d("2020-01-01"), d("2025-12-31"))
            .is_empty());
        assert!(!calendar.is_holiday(d("2025-01-01")));
    }

    #[test]
    fn tet_season_covers_45_days_before_tet_through_tet_day() {
        let calendar = Calendar::vietnam();
        let tet = d("2025-01-29");

        assert!(calendar.is_peak("TET", tet));
        assert!(calendar.is_peak("TET", tet - Duration::days(45)));
        assert!(calendar.is_peak("TET", d("2024-12-20")));
        assert!(!calendar.is_peak("TET", tet - Duration::days(46)));
        assert!(!calendar.is_peak("TET", tet + Duration::days(1)));
        assert!(!calendar.is_peak("TET", d("2025-09-20")));
    }

    #[test]
    fn mooncake_season_runs_from_lunar_7_15_through_mid_autumn() {
        let calendar = Calendar::vietnam();
        let start = lunar_to_solar(2024, 7, 15, false).unwrap();
        let end = mid_autumn(2024);

        assert!(calendar.is_peak("MOONCAKE", start));
        assert!(calendar.is_peak("mooncake", end));
        assert!(!calendar.is_peak("MOONCAKE", start - Duration::days(1)));
        assert!(!calendar.is_peak("MOONCAKE", end + Duration::days(1)));
        assert!(!calendar.is_peak("MOONCAKE", d("2024-02-01")));
    }

    #[test]
    fn mooncake_season_includes_a_leap_seventh_month() {
        // 2025 has no leap 7, but 2006 had one (leap month 7 from 2006-08-24).
        let calendar = Calendar::vietnam();
        let leap_seven = lunar_to_solar(2006, 7, 1, true).unwrap();

        assert!(calendar.is_peak("MOONCAKE", leap_seven));
        assert!(calendar.is_peak("MOONCAKE", mid_autumn(2006)));
    }

    #[test]
    fn other_categories_peak_in_either_season() {
        let calendar = Calendar::vietnam();

        assert!(calendar.is_peak("DRY", d("2025-01-20")));
        assert!(calendar.is_peak("DRY", d("2025-10-01")));
        assert!(!calendar.is_peak("DRY", d("2025-06-01")));
        assert!(!calendar.is_peak("TET", d("2025-10-01")));
        assert!(!calendar.is_peak("MOONCAKE", d("2025-01-20")));
    }

    fn calendar_from_file(name: &str, text: &str, replace: bool) -> Result<Calendar, DataError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let cfg = CalendarConfig {
            holidays: CalendarSource::File { path, replace },
            ..CalendarConfig::default()
        };
        Calendar::new(&cfg)
    }

    #[test]
    fn calendar_csv_file_extends_the_built_in_holidays() {
        let text = concat!(
            "date,name,kind\n",
            "2025-01-04,Compensation day,compensation\n",
            "3/8/2025,\"Women's Day, half\",\n",
        );
        let calendar = calendar_from_file("extra.csv", text, false).unwrap();

        assert!(calendar.is_holiday(d("2025-01-04")));
        assert!(calendar.is_holiday(d("2025-03-08")));
        assert!(calendar.is_holiday(d("2025-01-01")));
        let listed = calendar.holidays_between(d("2025-03-08"), d("2025-03-08"));
        assert_eq!(listed[0].name, "Women's Day, half");
        assert_eq!(listed[0].kind, "custom");
    }

    #[test]
    fn calendar_yaml_file_with_replace_drops_the_built_in_holidays() {
        let text = "- date: 2025-03-08\n  name: Women's Day\n  kind: company\n";
        let calendar = calendar_from_file("days.yaml", text, true).unwrap();

        assert!(calendar.is_holiday(d("2025-03-08")));
        assert!(!calendar.is_holiday(d("2025-01-01")));
        let listed = calendar.holidays_between(d("2025-01-01"), d("2025-12-31"));
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].kind, "company");
    }

    #[test]
    fn bad_date_in_calendar_csv_names_the_file_and_line() {
        let text = "date,name\n2025-01-04,Fine\n2025-13-40,Broken\n";
        let err = calendar_from_file("bad.csv", text, false)
            .unwrap_err()
            .to_string();

        assert!(err.contains("bad.csv"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("2025-13-40"), "{err}");
    }

    #[test]
    fn calendar_csv_without_a_name_column_is_rejected() {
        let err = calendar_from_file("nohdr.csv", "day,label\n2025-01-04,x\n", false)
            .unwrap_err()
            .to_string();

        assert!(err.contains("nohdr.csv") && err.contains("`name`"), "{err}");
    }

    #[test]
    fn bad_entry_in_calendar_yaml_names_the_entry() {
        let text = "- date: 2025-03-08\n  name: Fine\n- date: 2025-03-09\n  nmae: Typo\n";
        let err = calendar_from_file("bad.yaml", text, false)
            .unwrap_err()
            .to_string();

        assert!(err.contains("bad.yaml"), "{err}");
        assert!(err.contains("[1]"), "{err}");
    }

    #[test]
    fn missing_calendar_file_is_a_read_error_naming_it() {
        let cfg = CalendarConfig {
            holidays: CalendarSource::File {
                path: "/nonexistent/holidays.csv".into(),
                replace: false,
            },
            ..CalendarConfig::default()
        };
        let err = Calendar::new(&cfg).unwrap_err().to_string();

        assert!(err.contains("/nonexistent/holidays.csv"), "{err}");
    }

    #[test]
    fn inverted_tet_span_is_rejected() {
        let cfg = CalendarConfig {
            tet_holiday_span: (3, -1),
            ..CalendarConfig::default()
        };

        assert!(Calendar::new(&cfg).is_err());
    }
}
