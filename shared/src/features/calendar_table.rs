//! The calendar feature columns: functions of the date alone, computed once per [`Calendar`].
//!
//! Lunar dates and holiday distances are lookups polars cannot express, and they are the same
//! for every series over the same days. So a calendar keeps a table of all
//! [`CALENDAR_FEATURES`] for a range of whole Gregorian years, and a series (consecutive days)
//! takes its columns as one slice of that table by day offset. The table starts empty and is
//! rebuilt to the union of its years and a series' years the first time a series reaches
//! outside it, so it only ever covers years some series asked for.

use std::f64::consts::PI;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, PoisonError, RwLock};

use chrono::{Datelike, Duration, NaiveDate};

use super::{FeatureColumn, HOLIDAY_DISTANCE_CAP};
use crate::calendar::{
    days_in_month, in_mid_autumn_season, mid_autumn, solar_to_lunar, tet_day, Calendar, LunarDate,
    PeakSeasons,
};

/// Names of the calendar columns, in export order.
pub const CALENDAR_FEATURES: [&str; 19] = [
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
    "weekday_volume_tier",
    "is_EOM",
    "days_until_month_end",
    "lunar_month",
    "lunar_day",
    "days_until_tet",
    "days_until_mid_autumn",
];

/// The calendar columns of every day of whole years, shared by the clones of one [`Calendar`]
/// (a calendar never changes after it is built, so neither does a day's row).
#[derive(Clone, Default)]
pub(crate) struct CalendarColumnCache(Arc<RwLock<Option<Arc<Table>>>>);

impl fmt::Debug for CalendarColumnCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let table = self.0.read().unwrap_or_else(PoisonError::into_inner);
        match table.as_ref() {
            Some(t) => write!(f, "CalendarColumnCache({} days from {})", t.len, t.first),
            None => f.write_str("CalendarColumnCache(empty)"),
        }
    }
}

/// [`CALENDAR_FEATURES`] of the consecutive days `first ..= first + len - 1`.
struct Table {
    first: NaiveDate,
    len: usize,
    columns: Columns,
}

/// Calendar columns of some days: the features and the peak seasons of the loss boost.
struct Columns {
    features: Vec<Vec<f64>>,
    tet_season: Vec<bool>,
    mid_autumn_season: Vec<bool>,
}

impl Table {
    fn last(&self) -> NaiveDate {
        self.first + Duration::days(self.len as i64 - 1)
    }

    fn covers(&self, first: NaiveDate, last: NaiveDate) -> bool {
        self.first <= first && last <= self.last()
    }
}

impl CalendarColumnCache {
    /// A table covering `first ..= last`, building a wider one when the cached one does not.
    fn covering(&self, calendar: &Calendar, first: NaiveDate, last: NaiveDate) -> Arc<Table> {
        let cached = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(table) = cached.as_ref().filter(|t| t.covers(first, last)) {
            return Arc::clone(table);
        }

        // Whole years, so that series starting or ending a few days apart share one table.
        let (mut from, mut to) = (first.year(), last.year());
        if let Some(t) = &cached {
            from = from.min(t.first.year());
            to = to.max(t.last().year());
        }
        let from = NaiveDate::from_ymd_opt(from, 1, 1).unwrap_or(first);
        let to = NaiveDate::from_ymd_opt(to, 12, 31).unwrap_or(last);
        // Built outside the lock: readers of the old table keep going meanwhile, and two threads
        // that miss at once build the same rows.
        let len = (to - from).num_days() as usize + 1;
        let table = Arc::new(Table {
            first: from,
            len,
            columns: compute_columns(from.iter_days().take(len), calendar),
        });

        let mut slot = self.0.write().unwrap_or_else(PoisonError::into_inner);
        match slot.as_ref() {
            Some(current) if current.covers(from, to) => Arc::clone(current),
            _ => {
                *slot = Some(Arc::clone(&table));
                table
            }
        }
    }
}

/// Runs `read` on calendar columns that hold `dates` at the index range it is given: a range of
/// the calendar's table when the days are consecutive (as a [`crate::dataset::Series`]
/// guarantees), else columns computed day by day for exactly these dates.
fn read_columns<T>(
    dates: &[NaiveDate],
    calendar: &Calendar,
    read: impl FnOnce(&Columns, Range<usize>) -> T,
) -> T {
    if let (Some(&first), Some(&last)) = (dates.first(), dates.last()) {
        if (last - first).num_days() == dates.len() as i64 - 1 {
            let table = calendar.column_cache().covering(calendar, first, last);
            let offset = (first - table.first).num_days() as usize;
            return read(&table.columns, offset..offset + dates.len());
        }
    }
    read(
        &compute_columns(dates.iter().copied(), calendar),
        0..dates.len(),
    )
}

/// The calendar feature columns of a series' days.
pub(super) fn calendar_columns(dates: &[NaiveDate], calendar: &Calendar) -> Vec<FeatureColumn> {
    read_columns(dates, calendar, |columns, range| {
        named(
            columns
                .features
                .iter()
                .map(|column| column[range.clone()].to_vec())
                .collect(),
        )
    })
}

/// Per day, 1 when it lies in a peak season of `category` (see [`Calendar::is_peak`]), else 0.
pub(crate) fn peak_flags(dates: &[NaiveDate], calendar: &Calendar, category: &str) -> Vec<f32> {
    let seasons = PeakSeasons::of(category);
    read_columns(dates, calendar, |columns, range| {
        range
            .map(|i| {
                let peak = (seasons.tet && columns.tet_season[i])
                    || (seasons.mid_autumn && columns.mid_autumn_season[i]);
                peak as u8 as f32
            })
            .collect()
    })
}

fn named(columns: Vec<Vec<f64>>) -> Vec<FeatureColumn> {
    CALENDAR_FEATURES
        .iter()
        .zip(columns)
        .map(|(name, values)| FeatureColumn {
            name: name.to_string(),
            values,
        })
        .collect()
}

/// The calendar columns of ascending days, in one sweep over them.
fn compute_columns(
    dates: impl ExactSizeIterator<Item = NaiveDate> + Clone,
    calendar: &Calendar,
) -> Columns {
    let n = dates.len();
    let mut out = Columns {
        features: (0..CALENDAR_FEATURES.len())
            .map(|_| Vec::with_capacity(n))
            .collect(),
        tet_season: Vec::with_capacity(n),
        mid_autumn_season: Vec::with_capacity(n),
    };
    let (Some(first), Some(last)) = (dates.clone().next(), dates.clone().last()) else {
        return out;
    };

    let reach = Duration::days(HOLIDAY_DISTANCE_CAP as i64 + 1);
    let mut holidays: Vec<NaiveDate> = calendar
        .holidays_between(first - reach, last + reach)
        .into_iter()
        .map(|h| h.date)
        .collect();
    holidays.dedup();
    let mut next_holiday = 0;
    let mut tet = YearlyDays::new(tet_day);
    let mut autumn = YearlyDays::new(mid_autumn);
    let mut lunar = solar_to_lunar(first);
    let mut previous = first;
    // Encodings of each month, day of month and weekday, computed once instead of per day.
    let cyclic = |period: usize, slots: usize| -> Vec<(f64, f64)> {
        (0..slots)
            .map(|i| (2.0 * PI * i as f64 / period as f64).sin_cos())
            .collect()
    };
    let (months, days, weekdays) = (cyclic(12, 12), cyclic(31, 31), cyclic(7, 7));

    for date in dates {
        // Lunar months have 29 or 30 days, so up to day 28 the next day is simply day + 1;
        // only near a month end, or after skipped days, is the full conversion needed.
        if date != first {
            lunar = if lunar.day <= 28 && date == previous + Duration::days(1) {
                LunarDate {
                    day: lunar.day + 1,
                    ..lunar
                }
            } else {
                solar_to_lunar(date)
            };
        }
        previous = date;
        while next_holiday < holidays.len() && holidays[next_holiday] < date {
            next_holiday += 1;
        }
        let until_holiday = holidays
            .get(next_holiday)
            .map(|h| (*h - date).num_days() as f64)
            .unwrap_or(HOLIDAY_DISTANCE_CAP)
            .min(HOLIDAY_DISTANCE_CAP);
        let latest = if until_holiday == 0.0 {
            Some(date)
        } else {
            next_holiday.checked_sub(1).map(|j| holidays[j])
        };
        let since_holiday = latest
            .map(|h| (date - h).num_days() as f64)
            .unwrap_or(HOLIDAY_DISTANCE_CAP)
            .min(HOLIDAY_DISTANCE_CAP);

        let month = months[date.month0() as usize];
        let day = days[date.day0() as usize];
        let dow = date.weekday().num_days_from_monday();
        let weekday = weekdays[dow as usize];
        let days_left = (days_in_month(date) - date.day()) as f64;
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let days_until_tet = tet.days_until(date);
        let row = [
            month.0,
            month.1,
            day.0,
            day.1,
            weekday.0,
            weekday.1,
            flag(until_holiday == 0.0),
            until_holiday,
            since_holiday,
            flag(dow == 6),
            flag(dow == 0),
            flag(dow == 2 || dow == 4),
            match dow {
                2 => 3.0,
                4 => 2.0,
                1 | 3 => 1.0,
                _ => 0.0,
            },
            flag(days_left < 3.0),
            days_left,
            lunar.month as f64,
            lunar.day as f64,
            days_until_tet as f64,
            autumn.days_until(date) as f64,
        ];
        for (column, value) in out.features.iter_mut().zip(row) {
            column.push(value);
        }
        // The next Tet day on or after `date` is the only one whose season can hold it.
        out.tet_season
            .push(days_until_tet <= calendar.tet_season_days());
        out.mid_autumn_season.push(in_mid_autumn_season(lunar));
    }
    out
}

/// A once-a-year day (Tet, Mid-Autumn) memoised per year.
struct YearlyDays {
    day_of: fn(i32) -> NaiveDate,
    cache: Vec<(i32, NaiveDate)>,
}

impl YearlyDays {
    fn new(day_of: fn(i32) -> NaiveDate) -> Self {
        Self {
            day_of,
            cache: Vec::new(),
        }
    }

    fn of(&mut self, year: i32) -> NaiveDate {
        if let Some((_, d)) = self.cache.iter().find(|(y, _)| *y == year) {
            return *d;
        }
        let d = (self.day_of)(year);
        self.cache.push((year, d));
        d
    }

    /// Days from `date` to the next such day on or after it.
    fn days_until(&mut self, date: NaiveDate) -> i64 {
        let this_year = self.of(date.year());
        let next = if this_year >= date {
            this_year
        } else {
            self.of(date.year() + 1)
        };
        (next - date).num_days()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CalendarConfig;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn days(first: NaiveDate, n: usize) -> Vec<NaiveDate> {
        first.iter_days().take(n).collect()
    }

    fn direct(dates: &[NaiveDate], calendar: &Calendar) -> Vec<FeatureColumn> {
        named(compute_columns(dates.iter().copied(), calendar).features)
    }

    #[test]
    fn table_slices_equal_the_day_by_day_columns_anywhere_in_the_table() {
        let calendar = Calendar::vietnam();
        // The first series fills the table; the later ones start and end mid-year inside it,
        // across Tet and a lunar month end.
        for (first, n) in [
            (d(2019, 1, 1), 3 * 365),
            (d(2020, 1, 20), 40),
            (d(2021, 7, 3), 1),
        ] {
            let dates = days(first, n);
            assert_eq!(
                calendar_columns(&dates, &calendar),
                direct(&dates, &calendar)
            );
        }
    }

    #[test]
    fn table_grows_to_cover_a_series_outside_it_and_keeps_the_earlier_years() {
        let calendar = Calendar::vietnam();
        let early = days(d(2010, 3, 1), 500);
        let late = days(d(2030, 11, 15), 120);
        calendar_columns(&early, &calendar);
        assert_eq!(calendar_columns(&late, &calendar), direct(&late, &calendar));
        let table = calendar
            .column_cache()
            .covering(&calendar, early[0], late[119]);
        assert_eq!(
            (table.first, table.last()),
            (d(2010, 1, 1), d(2031, 12, 31))
        );
        assert_eq!(
            calendar_columns(&early, &calendar),
            direct(&early, &calendar)
        );
    }

    #[test]
    fn clones_of_a_calendar_share_one_table_and_other_calendars_keep_their_own() {
        let calendar = Calendar::vietnam();
        let dates = days(d(2024, 2, 1), 30);
        calendar_columns(&dates, &calendar);
        let clone = calendar.clone();
        assert!(format!("{:?}", clone.column_cache()).contains("366 days from 2024-01-01"));

        // Without holidays the holiday columns differ, so a table must never be shared across
        // calendar settings.
        let no_holidays = Calendar::new(&CalendarConfig {
            holidays: crate::config::CalendarSource::None,
            ..CalendarConfig::default()
        })
        .unwrap();
        let columns = calendar_columns(&dates, &no_holidays);
        assert_eq!(columns, direct(&dates, &no_holidays));
        assert_ne!(columns, calendar_columns(&dates, &calendar));
    }

    #[test]
    fn days_with_gaps_get_the_day_by_day_columns() {
        let calendar = Calendar::vietnam();
        let dates = vec![d(2024, 1, 28), d(2024, 2, 9), d(2024, 2, 10), d(2024, 3, 1)];
        let columns = calendar_columns(&dates, &calendar);
        let lunar_day = &columns[CALENDAR_FEATURES
            .iter()
            .position(|n| *n == "lunar_day")
            .unwrap()];
        let expected: Vec<f64> = dates
            .iter()
            .map(|&date| solar_to_lunar(date).day as f64)
            .collect();
        assert_eq!(lunar_day.values, expected);
    }

    #[test]
    fn peak_flags_equal_is_peak_day_by_day_for_every_kind_of_category() {
        let calendar = Calendar::vietnam();
        // Years with a leap seventh month (2006) and Tet seasons reaching back into December.
        let dates = days(d(2005, 6, 1), 4 * 365);
        for category in ["TET", "MOONCAKE", "mooncake", "DRY", "FRESH"] {
            let expected: Vec<f32> = dates
                .iter()
                .map(|&date| calendar.is_peak(category, date) as u8 as f32)
                .collect();
            assert!(expected.contains(&1.0) && expected.contains(&0.0));
            assert_eq!(
                peak_flags(&dates, &calendar, category),
                expected,
                "{category}"
            );
            // A slice inside the table, and days with gaps (computed day by day).
            assert_eq!(
                peak_flags(&dates[400..500], &calendar, category),
                expected[400..500]
            );
            let sparse: Vec<NaiveDate> = dates.iter().step_by(9).copied().collect();
            let sparse_expected: Vec<f32> = expected.iter().step_by(9).copied().collect();
            assert_eq!(peak_flags(&sparse, &calendar, category), sparse_expected);
        }
    }
}
