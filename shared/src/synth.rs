//! A built-in generator of **synthetic** shipments, for demos and for specs that name no data
//! file. Nothing it produces is real data: it is a seeded simulation shaped after the patterns of
//! the company's real DRY shipments, so that the main job runs on a fresh clone.
//!
//! The output is a CSV in the default columns (`ACTUALSHIPDATE`, `CATEGORY`, `BRAND`,
//! `Total CBM`), one row per day and brand, for four categories:
//!
//! | category | brands | daily level (CBM, category) | seasonality |
//! |---|---|---|---|
//! | DRY | 3 | about 530 | pre-Tet surge to about 2.3x |
//! | FRESH | 2 | about 260 | mild pre-Tet surge, summer dip |
//! | TET | 3 | about 40 outside the season | rises over the 45 days before Tet to about 1,000 |
//! | MOONCAKE | 2 | zero outside lunar months 6-8 | rises to a few hundred just before Mid-Autumn |
//!
//! Every category: Sundays near zero, Wednesday and Friday peaks, Saturday lighter, a shutdown
//! from two days before Tet day through four days after, other public holidays near zero, slow
//! growth and multiplicative noise; all but MOONCAKE also surge over the last three days of each
//! month (a seasonal surge and the month end do not stack: the larger applies). Brands
//! split the category volume by fixed shares with their own noise; about one brand-day in ten
//! ships nothing.
//!
//! The random numbers come from a SplitMix64 generator written here, so a seed gives the same
//! bytes on every platform and with every version of the `rand` crate.

use chrono::{Datelike, Duration, NaiveDate, Weekday};

use crate::calendar::{days_in_month, mid_autumn, solar_to_lunar, tet_day, Calendar};

/// File name under which synthetic data is reported (in logs, results and leaderboards).
pub const SYNTHETIC_NAME: &str = "synthetic-demo.csv";

/// Seed used when a spec does not set `data.synthetic_seed`.
pub const DEFAULT_SEED: u64 = 7;

/// The default date range of the generator: 2022-01-01 through 2025-12-31.
pub fn default_range() -> (NaiveDate, NaiveDate) {
    (
        NaiveDate::from_ymd_opt(2022, 1, 1).expect("valid date"),
        NaiveDate::from_ymd_opt(2025, 12, 31).expect("valid date"),
    )
}

/// One synthetic category: its brands with their shares of the volume and its base level.
struct CategoryModel {
    name: &'static str,
    brands: &'static [(&'static str, f64)],
    base: f64,
}

const CATEGORIES: [CategoryModel; 4] = [
    CategoryModel {
        name: "DRY",
        brands: &[("OREO", 0.45), ("COSY", 0.33), ("AFC", 0.22)],
        base: 530.0,
    },
    CategoryModel {
        name: "FRESH",
        brands: &[("CADBURY", 0.6), ("TOBLERONE", 0.4)],
        base: 260.0,
    },
    CategoryModel {
        name: "TET",
        brands: &[("KINH DO GIFT", 0.5), ("COSY GIFT", 0.3), ("AFC GIFT", 0.2)],
        base: 40.0,
    },
    CategoryModel {
        name: "MOONCAKE",
        brands: &[("KINH DO MOONCAKE", 0.7), ("SOLITE MOONCAKE", 0.3)],
        base: 0.0,
    },
];

/// SplitMix64: a small, fast generator with a fixed, documented output sequence.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Log-normal noise with median 1.
    fn noise(&mut self, sigma: f64) -> f64 {
        (sigma * self.normal()).exp()
    }
}

/// Relative volume of each weekday: Wednesday and Friday peak, Sunday near zero.
fn weekday_factor(day: Weekday) -> f64 {
    match day {
        Weekday::Mon => 0.95,
        Weekday::Tue => 1.0,
        Weekday::Wed => 1.35,
        Weekday::Thu => 1.05,
        Weekday::Fri => 1.3,
        Weekday::Sat => 0.8,
        Weekday::Sun => 0.06,
    }
}

/// Days from `date` to the next Tet day on or after it.
fn days_until_tet(date: NaiveDate) -> i64 {
    let this_year = tet_day(date.year());
    let tet = if this_year >= date {
        this_year
    } else {
        tet_day(date.year() + 1)
    };
    (tet - date).num_days()
}

/// Days since the latest Tet day on or before `date`.
fn days_since_tet(date: NaiveDate) -> i64 {
    let this_year = tet_day(date.year());
    let tet = if this_year <= date {
        this_year
    } else {
        tet_day(date.year() - 1)
    };
    (date - tet).num_days()
}

/// Seasonal multiplier of a category on a day (before weekday, month-end and noise), and whether
/// the category ships at all.
fn season_factor(category: &str, date: NaiveDate) -> f64 {
    let until = days_until_tet(date);
    let since = days_since_tet(date);

    // Tet shutdown: two days before Tet day through four days after.
    if until <= 2 || since <= 4 {
        return 0.0;
    }
    // The week after the shutdown restarts slowly.
    let restart = if since <= 11 { 0.6 } else { 1.0 };

    match category {
        "DRY" => {
            // Stores stock up over the three weeks before the shutdown.
            let surge = if (3..=21).contains(&until) {
                1.0 + 1.3 * (21 - until) as f64 / 18.0
            } else {
                1.0
            };
            surge * restart
        }
        "FRESH" => {
            let surge = if (3..=14).contains(&until) { 1.4 } else { 1.0 };
            // Chocolate ships less in the hot months.
            let summer = if (5..=8).contains(&date.month()) {
                0.8
            } else {
                1.0
            };
            surge * summer * restart
        }
        "TET" => {
            // Gift boxes: a ramp over the 45 days before Tet, peaking about ten days before.
            if (3..=45).contains(&until) {
                let peak = 18.0 * (-((until as f64 - 10.0) / 12.0).powi(2)).exp();
                1.0 + peak
            } else {
                restart * 0.8
            }
        }
        "MOONCAKE" => mooncake_level(date),
        _ => 1.0,
    }
}

/// Mooncake volume (CBM, category, before weekday and noise): only in lunar months 6-8, rising
/// to a peak a few days before Mid-Autumn and dropping right after it.
fn mooncake_level(date: NaiveDate) -> f64 {
    let lunar = solar_to_lunar(date);
    if !(6..=8).contains(&lunar.month) {
        return 0.0;
    }

    let festival = mid_autumn(lunar.year);
    let until = (festival - date).num_days();
    if until < 0 {
        // After the festival: leftovers only.
        return 8.0;
    }
    // From about 10 CBM at the start of month 6 to about 270 four days before the festival.
    let peak = 260.0 * (-((until as f64 - 4.0) / 14.0).powi(2)).exp();
    (10.0 + peak).min(400.0)
}

/// Generates synthetic shipments from `start` through `end` (inclusive) as CSV bytes with a
/// header, one row per day and brand, dates as `YYYY-MM-DD`, volumes in CBM with three decimals.
/// The same seed and range always give the same bytes. An empty range (end before start) gives
/// the header alone.
pub fn generate_csv(seed: u64, start: NaiveDate, end: NaiveDate) -> Vec<u8> {
    let mut rng = SplitMix64(seed);
    let calendar = Calendar::vietnam();
    let mut out = String::from("ACTUALSHIPDATE,CATEGORY,BRAND,Total CBM\n");

    let mut date = start;
    while date <= end {
        // Slow growth (about 6% a year from 2022) and a month-end push.
        let years = (date - default_range().0).num_days() as f64 / 365.25;
        let growth = 1.0 + 0.06 * years;
        let days_in_month = days_in_month(date);
        let month_end = if date.day() + 3 > days_in_month {
            1.35
        } else {
            1.0
        };
        let holiday =
            calendar.is_holiday(date) && days_until_tet(date) > 2 && days_since_tet(date) > 4;

        for category in &CATEGORIES {
            // MOONCAKE has no base level: its season factor is the volume itself, and its
            // festival rush outweighs any month end. Elsewhere the month-end push and a seasonal
            // surge do not stack (trucks and stock are the limit), so the larger one applies.
            let season = season_factor(category.name, date);
            let level = if category.name == "MOONCAKE" {
                season
            } else if season > 1.0 {
                category.base * growth * season.max(month_end)
            } else {
                category.base * growth * season * month_end
            };
            let mut volume = level * weekday_factor(date.weekday());
            if holiday {
                volume *= 0.05;
            }
            volume *= rng.noise(0.2);

            for &(brand, share) in category.brands {
                // Draw every random number whatever the branch, so one brand's zero day does
                // not shift the sequence of the others.
                let brand_noise = rng.noise(0.25);
                let skip = rng.uniform() < 0.08;
                let value = if skip || volume <= 0.0 {
                    0.0
                } else {
                    volume * share * brand_noise
                };
                out.push_str(&format!(
                    "{},{},{},{:.3}\n",
                    date.format("%Y-%m-%d"),
                    category.name,
                    brand,
                    value
                ));
            }
        }

        date += Duration::days(1);
    }

    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Category totals per day parsed back from the CSV.
    fn category_days(csv: &[u8]) -> BTreeMap<(String, NaiveDate), f64> {
        let text = std::str::from_utf8(csv).unwrap();
        let mut totals = BTreeMap::new();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split(',').collect();
            let date = NaiveDate::parse_from_str(fields[0], "%Y-%m-%d").unwrap();
            let value: f64 = fields[3].parse().unwrap();
            *totals.entry((fields[1].to_string(), date)).or_insert(0.0) += value;
        }
        totals
    }

    fn default_csv() -> Vec<u8> {
        let (start, end) = default_range();
        generate_csv(DEFAULT_SEED, start, end)
    }

    fn mean(values: impl Iterator<Item = f64>) -> f64 {
        let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
        sum / n.max(1) as f64
    }

    fn series(
        totals: &BTreeMap<(String, NaiveDate), f64>,
        category: &str,
    ) -> Vec<(NaiveDate, f64)> {
        totals
            .iter()
            .filter(|((c, _), _)| c == category)
            .map(|((_, d), v)| (*d, *v))
            .collect()
    }

    #[test]
    fn same_seed_gives_identical_bytes_and_another_seed_differs() {
        let (start, end) = default_range();

        assert_eq!(generate_csv(3, start, end), generate_csv(3, start, end));
        assert_ne!(generate_csv(3, start, end), generate_csv(4, start, end));
    }

    #[test]
    fn output_has_the_default_columns_and_every_category_with_brands() {
        let csv = default_csv();
        let text = String::from_utf8(csv).unwrap();

        assert!(text.starts_with("ACTUALSHIPDATE,CATEGORY,BRAND,Total CBM\n"));
        for category in &CATEGORIES {
            assert!((2..=3).contains(&category.brands.len()));
            for (brand, _) in category.brands {
                assert!(text.contains(&format!(",{},{brand},", category.name)));
            }
        }
        let days = (default_range().1 - default_range().0).num_days() as usize + 1;
        assert_eq!(text.lines().count(), 1 + days * 10);
    }

    #[test]
    fn dry_ships_about_500_cbm_a_day_with_sundays_near_zero_and_wed_fri_peaks() {
        let totals = category_days(&default_csv());
        let dry = series(&totals, "DRY");
        let on = |day: Weekday| mean(dry.iter().filter(|(d, _)| d.weekday() == day).map(|x| x.1));

        let overall = mean(dry.iter().map(|x| x.1));
        assert!((400.0..700.0).contains(&overall), "DRY mean {overall}");
        assert!(
            on(Weekday::Sun) < 0.1 * on(Weekday::Tue),
            "Sunday {}",
            on(Weekday::Sun)
        );
        for peak in [Weekday::Wed, Weekday::Fri] {
            for other in [Weekday::Mon, Weekday::Tue, Weekday::Thu, Weekday::Sat] {
                assert!(on(peak) > on(other), "{peak:?} vs {other:?}");
            }
        }
    }

    #[test]
    fn tet_brings_a_surge_before_and_a_shutdown_around_tet_day() {
        let totals = category_days(&default_csv());
        for year in 2022..=2025 {
            let tet = tet_day(year);
            for category in ["DRY", "FRESH", "TET"] {
                for offset in -2..=4 {
                    let day = tet + Duration::days(offset);
                    assert_eq!(
                        totals[&(category.to_string(), day)],
                        0.0,
                        "{category} {day}"
                    );
                }
            }

            let dry = series(&totals, "DRY");
            // Working days only: the window may hold one Sunday or two.
            let working = |d: &NaiveDate| d.weekday() != Weekday::Sun;
            let before = mean(
                dry.iter()
                    .filter(|(d, _)| working(d) && (3..=10).contains(&(tet - *d).num_days()))
                    .map(|x| x.1),
            );
            let year_mean = mean(
                dry.iter()
                    .filter(|(d, _)| working(d) && d.year() == year)
                    .map(|x| x.1),
            );
            assert!(before > 1.3 * year_mean, "{year}: {before} vs {year_mean}");
        }
    }

    #[test]
    fn mooncake_ships_only_in_lunar_months_6_to_8_and_peaks_before_mid_autumn() {
        let totals = category_days(&default_csv());
        let mooncake = series(&totals, "MOONCAKE");

        for (date, value) in &mooncake {
            if *value > 0.0 {
                let month = solar_to_lunar(*date).month;
                assert!(
                    (6..=8).contains(&month),
                    "{date} (lunar month {month}): {value}"
                );
            }
        }
        for year in 2022..=2025 {
            let festival = mid_autumn(year);
            let (peak_day, peak) = mooncake.iter().filter(|(d, _)| d.year() == year).fold(
                (festival, 0.0),
                |best, &(d, v)| if v > best.1 { (d, v) } else { best },
            );
            assert!((150.0..1000.0).contains(&peak), "{year}: peak {peak}");
            let lead = (festival - peak_day).num_days();
            assert!(
                (0..=21).contains(&lead),
                "{year}: peak {lead} days before Mid-Autumn"
            );
        }
    }

    #[test]
    fn last_three_days_of_a_month_ship_more() {
        let totals = category_days(&default_csv());
        let dry = series(&totals, "DRY");
        let working = |d: &NaiveDate| d.weekday() != Weekday::Sun && days_until_tet(*d) > 30;

        let month_end = mean(
            dry.iter()
                .filter(|(d, _)| working(d) && d.day() + 3 > days_in_month(*d))
                .map(|x| x.1),
        );
        let rest = mean(
            dry.iter()
                .filter(|(d, _)| working(d) && d.day() + 3 <= days_in_month(*d))
                .map(|x| x.1),
        );
        assert!(month_end > 1.15 * rest, "{month_end} vs {rest}");
    }

    #[test]
    fn empty_range_gives_the_header_alone() {
        let day = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();

        assert_eq!(
            generate_csv(1, day, day - Duration::days(1)),
            b"ACTUALSHIPDATE,CATEGORY,BRAND,Total CBM\n".to_vec()
        );
    }
}
