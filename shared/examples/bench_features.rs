//! Benchmark of the feature pipeline and the leakage check.
//!
//! Generates 1,000 daily series of 10 years (about 3.65 million rows), computes their feature
//! frames and runs the full leakage check on each, spread over the machine's cores, and prints
//! rows per second (the best of three runs each). The straightforward per-row reference implementation
//! (`features::compute_reference`) runs in the same process on a smaller slice for comparison.
//!
//! Run with `cargo run -p shared --example bench_features [-- SERIES YEARS]`.

use std::time::Instant;

use chrono::{Datelike, NaiveDate};
use rand::{rngs::StdRng, Rng, SeedableRng};
use shared::calendar::Calendar;
use shared::config::PipelineConfig;
use shared::dataset::{Series, SeriesKey};
use shared::params::TargetTransform;
use shared::{features, leakage};

/// Series of the reference slice: the per-row version is quadratic in the series length.
const REFERENCE_SERIES: usize = 8;

/// Runs of each measurement; the fastest is reported.
const REPEATS: usize = 3;

fn main() {
    // The benchmark spreads whole series over the cores itself. Polars runs every query on
    // its own thread pool, so that pool keeps its default of one thread per core: a smaller
    // one would make the benchmark's threads queue for it.
    let mut args = std::env::args().skip(1);
    let n_series: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let years: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);

    let start = Instant::now();
    let series = generate(n_series, years * 365);
    let rows: usize = series.iter().map(|s| s.values.len()).sum();
    println!(
        "generated {n_series} series x {} days = {rows} rows in {:.2}s; {threads} threads",
        years * 365,
        start.elapsed().as_secs_f64()
    );
    let calendar = Calendar::vietnam();
    let cfg = PipelineConfig::default();

    let features_s = best_of(REPEATS, &series, threads, |s| {
        let frame = features::compute(s, &calendar).expect("features of generated data");
        assert_eq!(frame.len(), s.values.len());
    });
    let check_s = best_of(REPEATS, &series, threads, |s| {
        let report = leakage::check(s, &calendar, &cfg, TargetTransform::None)
            .expect("generated series are long enough");
        assert!(report.passed(), "{}", report.table());
    });
    let slice = &series[..REFERENCE_SERIES.min(series.len())];
    let slice_rows: usize = slice.iter().map(|s| s.values.len()).sum();
    let reference_s = best_of(REPEATS, slice, threads, |s| {
        features::compute_reference(s, &calendar).expect("reference features");
    });
    let fast_slice_s = best_of(REPEATS, slice, threads, |s| {
        features::compute(s, &calendar).expect("features");
    });

    let rate = |rows: usize, s: f64| rows as f64 / s / 1e6;
    println!(
        "features (polars):        {rows:>9} rows in {features_s:>7.3}s = {:>7.2} M rows/s",
        rate(rows, features_s)
    );
    println!(
        "leakage check (all six):  {rows:>9} rows in {check_s:>7.3}s = {:>7.2} M rows/s ({:.2}x the feature time)",
        rate(rows, check_s),
        check_s / features_s
    );
    println!(
        "reference per-row slice:  {slice_rows:>9} rows in {reference_s:>7.3}s = {:>7.2} M rows/s",
        rate(slice_rows, reference_s)
    );
    println!(
        "polars on the same slice: {slice_rows:>9} rows in {fast_slice_s:>7.3}s = {:>7.2} M rows/s ({:.1}x the reference)",
        rate(slice_rows, fast_slice_s),
        reference_s / fast_slice_s
    );
}

/// The shortest of `repeats` runs of [`timed`]: the machine is shared, and the least disturbed
/// run is the one that measures the code.
fn best_of(
    repeats: usize,
    series: &[Series],
    threads: usize,
    work: impl Fn(&Series) + Sync,
) -> f64 {
    (0..repeats)
        .map(|_| timed(series, threads, &work))
        .fold(f64::INFINITY, f64::min)
}

/// Runs `work` on every series over `threads` threads and returns the wall time in seconds.
fn timed(series: &[Series], threads: usize, work: impl Fn(&Series) + Sync) -> f64 {
    let start = Instant::now();
    let chunk = series.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        for part in series.chunks(chunk) {
            let work = &work;
            scope.spawn(move || part.iter().for_each(work));
        }
    });
    start.elapsed().as_secs_f64()
}

/// Shipment-like series: weekly shape (quiet Sundays, busy Wednesdays and Fridays), a yearly
/// swell, noise and some zero days.
fn generate(n: usize, days: usize) -> Vec<Series> {
    let first = NaiveDate::from_ymd_opt(2015, 1, 1).expect("valid date");
    let dates: Vec<NaiveDate> = first.iter_days().take(days).collect();
    (0..n)
        .map(|i| {
            let mut rng = StdRng::seed_from_u64(i as u64);
            let level = rng.random_range(50.0..800.0);
            let values = dates
                .iter()
                .map(|d| {
                    let weekday = match d.weekday().num_days_from_monday() {
                        6 => 0.05,
                        2 | 4 => 1.3,
                        _ => 1.0,
                    };
                    let season = 1.0 + 0.2 * (d.ordinal() as f64 / 58.0).sin();
                    if rng.random_bool(0.05) {
                        0.0
                    } else {
                        level * weekday * season * rng.random_range(0.7..1.3)
                    }
                })
                .collect();
            Series {
                key: SeriesKey {
                    category: format!("C{i:04}"),
                    brand: None,
                },
                dates: dates.clone(),
                values,
                category_values: None,
            }
        })
        .collect()
}
