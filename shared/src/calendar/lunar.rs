//! Lunar months from new moons and solar terms, and the cached table of month starts.
//!
//! The rules of the Vietnamese (and, at UTC+8, the Chinese) lunisolar calendar:
//! - a month starts on the local day of a new moon;
//! - month 11 is the month that contains the winter solstice (sun at 270 degrees);
//! - a "sui", from one month 11 to the next, has 12 or 13 months; when it has 13, the first
//!   month after month 11 that contains no major solar term (no multiple of 30 degrees of solar
//!   longitude is crossed between its first day and the next month's first day) is the leap
//!   month and repeats the number of the month before it.
//!
//! Days are Julian day numbers (JDN, an integer per civil day) so this module works on plain
//! integers; `super` converts them to and from `NaiveDate`.

use std::sync::OnceLock;

use super::astro::{lunation_near, new_moon_ut, sun_longitude};

/// UTC offset of Vietnam in hours, the meridian the Vietnamese calendar is computed for.
pub const VIETNAM_UTC_OFFSET: f64 = 7.0;

/// First and last lunar year held in the cached table; other years are computed on demand.
const CACHED_YEARS: (i32, i32) = (1900, 2200);

/// The first day of a lunar month and its label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthStart {
    /// Julian day number of the month's first day.
    pub jdn: i64,
    /// Lunar year.
    pub year: i32,
    /// Month number, 1..=12.
    pub month: u32,
    /// Leap (intercalary) month.
    pub leap: bool,
}

/// Julian day number of a proleptic Gregorian date.
pub fn jdn_from_ymd(year: i32, month: u32, day: u32) -> i64 {
    let (y, m, d) = (year as i64, month as i64, day as i64);
    let a = (14 - m) / 12;
    let y = y + 4800 - a;
    let m = m + 12 * a - 3;

    d + (153 * m + 2) / 5 + 365 * y + y.div_euclid(4) - y.div_euclid(100) + y.div_euclid(400)
        - 32045
}

/// The local civil day (JDN) of the new moon of lunation `k` at a UTC offset in hours.
fn new_moon_day(k: i64, utc_offset: f64) -> i64 {
    (new_moon_ut(k) + 0.5 + utc_offset / 24.0).floor() as i64
}

/// The sun's longitude at local midnight starting day `jdn`.
fn sun_longitude_at_day_start(jdn: i64, utc_offset: f64) -> f64 {
    sun_longitude(jdn as f64 - 0.5 - utc_offset / 24.0)
}

/// The lunation that starts month 11 of Gregorian year `year`: the month containing the
/// December solstice.
fn month_11_lunation(year: i32, utc_offset: f64) -> i64 {
    // The new moon nearest December 31 is at most ~15 days away, so the solstice month is this
    // lunation or the one before it.
    let mut k = lunation_near(jdn_from_ymd(year, 12, 31) as f64);
    while sun_longitude_at_day_start(new_moon_day(k, utc_offset), utc_offset) >= 270.0 {
        k -= 1;
    }

    k
}

/// The 30-degree segment of solar longitude the sun is in at the start of a day; a month holds
/// a major solar term exactly when its first day and the next month's first day differ here.
fn term_segment(jdn: i64, utc_offset: f64) -> u32 {
    (sun_longitude_at_day_start(jdn, utc_offset) / 30.0).floor() as u32
}

/// Month starts of lunar years `first..=last`, in order, at a UTC offset. Every month from
/// month 11 of `first - 1` through the last month before month 11 of `last` is included.
pub fn build_table(first: i32, last: i32, utc_offset: f64) -> Vec<MonthStart> {
    let mut table = Vec::with_capacity(((last - first + 1) * 13) as usize);
    let mut k_start = month_11_lunation(first - 1, utc_offset);

    for year in first..=last {
        let k_end = month_11_lunation(year, utc_offset);
        let days: Vec<i64> = (k_start..=k_end)
            .map(|k| new_moon_day(k, utc_offset))
            .collect();
        let months = days.len() - 1;

        // With 13 months, the first one after month 11 without a major term is the leap month.
        let leap_index = (months == 13)
            .then(|| {
                (1..months).find(|&i| {
                    term_segment(days[i], utc_offset) == term_segment(days[i + 1], utc_offset)
                })
            })
            .flatten();

        for (i, &jdn) in days[..months].iter().enumerate() {
            let (ordinal, leap) = match leap_index {
                Some(l) if i == l => (i - 1, true),
                Some(l) if i > l => (i - 1, false),
                _ => (i, false),
            };
            let month = ((10 + ordinal) % 12) as u32 + 1;
            let month_year = if month >= 11 { year - 1 } else { year };
            table.push(MonthStart {
                jdn,
                year: month_year,
                month,
                leap,
            });
        }

        k_start = k_end;
    }

    table
}

/// The cached table of Vietnamese month starts.
fn vietnam_table() -> &'static [MonthStart] {
    static TABLE: OnceLock<Vec<MonthStart>> = OnceLock::new();
    TABLE.get_or_init(|| build_table(CACHED_YEARS.0, CACHED_YEARS.1, VIETNAM_UTC_OFFSET))
}

/// Lunar date (year, month, day, leap) of a JDN in a table that covers it.
fn find_in(table: &[MonthStart], jdn: i64) -> Option<(i32, u32, u32, bool)> {
    let index = table.partition_point(|m| m.jdn <= jdn).checked_sub(1)?;
    let start = table[index];
    let next = table.get(index + 1)?;
    debug_assert!(jdn < next.jdn);

    Some((
        start.year,
        start.month,
        (jdn - start.jdn + 1) as u32,
        start.leap,
    ))
}

/// First day (JDN) and length of a lunar month in a table that covers it.
fn month_in(table: &[MonthStart], year: i32, month: u32, leap: bool) -> Option<(i64, i64)> {
    let index = table
        .binary_search_by(|m| (m.year, m.month, m.leap).cmp(&(year, month, leap)))
        .ok()?;
    let next = table.get(index + 1)?;

    Some((table[index].jdn, next.jdn - table[index].jdn))
}

/// Lunar date of a JDN at a UTC offset; uses the cache for Vietnam inside its years.
pub fn jdn_to_lunar(jdn: i64, utc_offset: f64) -> (i32, u32, u32, bool) {
    if utc_offset == VIETNAM_UTC_OFFSET {
        if let Some(found) = find_in(vietnam_table(), jdn) {
            return found;
        }
    }

    // The day lies in lunar year y-1, y or y+1 of its Gregorian year y.
    let year = approximate_year(jdn);
    let table = build_table(year - 1, year + 1, utc_offset);
    find_in(&table, jdn).expect("three lunar years around a day's Gregorian year contain it")
}

/// First day (JDN) and length in days of a lunar month at a UTC offset, or `None` when that
/// month does not exist (a leap month in a year without one, a month outside 1..=12).
pub fn lunar_month_start(year: i32, month: u32, leap: bool, utc_offset: f64) -> Option<(i64, i64)> {
    if !(1..=12).contains(&month) {
        return None;
    }
    if utc_offset == VIETNAM_UTC_OFFSET && (CACHED_YEARS.0..CACHED_YEARS.1).contains(&year) {
        return month_in(vietnam_table(), year, month, leap);
    }

    // Months 11 and 12 of year y belong to the sui of year y + 1.
    let table = build_table(year, year + 1, utc_offset);
    month_in(&table, year, month, leap)
}

/// The Gregorian year of a JDN (exact enough: off by one only at year ends, which the callers
/// absorb by looking one year either side).
fn approximate_year(jdn: i64) -> i32 {
    (2000.0 + (jdn - jdn_from_ymd(2000, 1, 1)) as f64 / 365.2425).floor() as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_day(year: i32, month: u32, leap: bool, offset: f64) -> i64 {
        lunar_month_start(year, month, leap, offset)
            .expect("month exists")
            .0
    }

    #[test]
    fn jdn_of_2000_01_01_is_2451545() {
        assert_eq!(jdn_from_ymd(2000, 1, 1), 2451545);
    }

    #[test]
    fn vietnamese_new_year_1985_is_a_month_before_the_chinese_one() {
        assert_eq!(first_day(1985, 1, false, 7.0), jdn_from_ymd(1985, 1, 21));
        assert_eq!(first_day(1985, 1, false, 8.0), jdn_from_ymd(1985, 2, 20));
    }

    #[test]
    fn vietnamese_new_year_2007_is_a_day_before_the_chinese_one() {
        assert_eq!(first_day(2007, 1, false, 7.0), jdn_from_ymd(2007, 2, 17));
        assert_eq!(first_day(2007, 1, false, 8.0), jdn_from_ymd(2007, 2, 18));
    }

    #[test]
    fn months_last_29_or_30_days_and_years_hold_12_or_13() {
        let table = build_table(1900, 2200, VIETNAM_UTC_OFFSET);

        for pair in table.windows(2) {
            let length = pair[1].jdn - pair[0].jdn;
            assert!(length == 29 || length == 30, "{:?} lasts {length}", pair[0]);
        }
        for year in 1901..2200 {
            let months = table.iter().filter(|m| m.year == year).count();
            assert!(months == 12 || months == 13, "{year} has {months} months");
        }
    }

    #[test]
    fn uncached_years_agree_with_the_cache() {
        let cached = vietnam_table();
        let computed = build_table(2049, 2051, VIETNAM_UTC_OFFSET);

        for month in &computed {
            assert!(cached.contains(month), "{month:?}");
        }
    }
}
