//! `sweep check-leakage` and `sweep features` through the real binary: the real DRY file, and
//! every kind of bad input (exit code 2, a message naming the file, the row or column, and what
//! to do).

use std::path::{Path, PathBuf};

use crate::common::{real_dry_csv, stderr, stdout, sweep};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("temp file writes");
    path
}

const DATED_SPLIT: &str = "split:\n  dates:\n    train_end: 2024-06-30\n    val_end: 2024-12-31\n";

const HEADER: &str = "ACTUALSHIPDATE,CATEGORY,BRAND,Total CBM\n";

/// `check-leakage` on a small file; returns the exit code and stderr.
fn check_file(text: &str, extra: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let data = write(dir.path(), "ship.csv", text);
    let mut args = vec![
        "check-leakage",
        "--data",
        data.to_str().unwrap(),
        "--category",
        "DRY",
    ];
    args.extend_from_slice(extra);
    let output = sweep(&args);
    (output.status.code(), stderr(&output))
}

/// 400 days of one brand, starting 2023-01-01, with `edit` applied to the data lines.
fn long_file(edit: impl Fn(usize, String) -> String) -> String {
    let first = chrono::NaiveDate::from_ymd_opt(2023, 1, 1).unwrap();
    let mut text = HEADER.to_string();
    for (i, day) in first.iter_days().take(400).enumerate() {
        let line = format!("{day},DRY,OREO,{}", 10 + i % 7);
        text.push_str(&edit(i, line));
        text.push('\n');
    }
    text
}

#[test]
fn check_leakage_passes_on_real_dry_with_the_dated_split() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "pipeline.yaml", DATED_SPLIT);
    let data = real_dry_csv();
    let output = sweep(&[
        "check-leakage",
        "--data",
        data.to_str().unwrap(),
        "--category",
        "DRY",
        "--config",
        config.to_str().unwrap(),
    ]);

    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    let text = stdout(&output);
    assert!(
        text.contains("1095 days, 2023-01-01 .. 2025-12-30"),
        "{text}"
    );
    for check in [
        "no_lookahead",
        "finite_features",
        "no_window_overlap",
        "correct_gap",
        "temporal_order",
        "scaler_train_only",
    ] {
        let row = text.lines().find(|l| l.contains(check)).expect(check);
        assert!(row.contains("PASS"), "{row}");
    }
    assert!(text.contains("train 2023-01-31..2024-06-30"), "{text}");
    assert!(text.contains("test 2025-01-01..2025-12-30"), "{text}");
}

#[test]
fn check_leakage_passes_on_the_late_starting_brand_with_the_default_split() {
    let data = real_dry_csv();
    let output = sweep(&[
        "check-leakage",
        "--data",
        data.to_str().unwrap(),
        "--category",
        "DRY",
        "--brand",
        "LU",
    ]);

    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(stdout(&output).contains("all checks passed"));
}

#[test]
fn features_exports_every_feature_of_a_brand_with_zero_filled_days() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lu.csv");
    let data = real_dry_csv();
    let output = sweep(&[
        "features",
        "--data",
        data.to_str().unwrap(),
        "--category",
        "DRY",
        "--brand",
        "LU",
        "--out",
        out.to_str().unwrap(),
    ]);

    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let raw_lu_rows = std::fs::read_to_string(&data)
        .unwrap()
        .lines()
        .filter(|l| l.contains(",LU,"))
        .count();
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    for feature in [
        "date",
        "volume",
        "rolling_mean_7d_expanding",
        "rolling_mean_30d_expanding",
        "momentum_3d_vs_14d_expanding",
        "weekday_avg_expanding",
        "category_avg_expanding",
        "brand_tier_expanding",
        "month_sin",
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
    ] {
        assert!(
            header.contains(&feature),
            "{feature} missing from {header:?}"
        );
    }
    let rows: Vec<&str> = lines.collect();
    assert_eq!(
        rows.len(),
        raw_lu_rows + 6,
        "six missing LU days are zero-filled"
    );
    assert!(rows[0].starts_with("2025-"), "{}", rows[0]);
    assert!(
        stderr(&output).contains("6 missing days zero-filled"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn missing_column_exits_2_listing_the_columns_found() {
    let (code, err) = check_file(
        "DATE,CATEGORY,BRAND,Total CBM\n2024-01-01,DRY,OREO,1\n",
        &[],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("ship.csv"), "{err}");
    assert!(err.contains("missing column `ACTUALSHIPDATE`"), "{err}");
    assert!(
        err.contains("columns found: DATE, CATEGORY, BRAND, Total CBM"),
        "{err}"
    );
}

#[test]
fn unparsable_date_exits_2_naming_the_row_and_value() {
    let text = long_file(|i, line| {
        if i == 9 {
            line.replacen("2023-01-10", "10.01.2023", 1)
        } else {
            line
        }
    });
    let (code, err) = check_file(&text, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("ship.csv") && err.contains("ACTUALSHIPDATE"),
        "{err}"
    );
    assert!(err.contains("row 10 (line 11) (`10.01.2023`)"), "{err}");
}

#[test]
fn slash_dates_are_accepted_like_iso_dates() {
    let text = long_file(|i, line| {
        if i % 2 == 0 {
            return line;
        }
        let (date, rest) = line.split_once(',').unwrap();
        let d = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap();
        format!(
            "{}/{}/{},{rest}",
            chrono::Datelike::month(&d),
            chrono::Datelike::day(&d),
            chrono::Datelike::year(&d)
        )
    });
    let (code, err) = check_file(&text, &[]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn empty_or_non_numeric_volume_exits_2_naming_the_row() {
    let empty = long_file(|i, line| {
        if i == 4 {
            line.rsplit_once(',').unwrap().0.to_string() + ","
        } else {
            line
        }
    });
    let (code, err) = check_file(&empty, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("empty volume") && err.contains("row 5 (line 6)"),
        "{err}"
    );

    let text = long_file(|i, line| {
        if i == 2 {
            line.replace(",12", ",n/a")
        } else {
            line
        }
    });
    let (code, err) = check_file(&text, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("Total CBM") && err.contains("row 3 (line 4) (`n/a`)"),
        "{err}"
    );
}

#[test]
fn negative_volume_exits_2_unless_the_config_clips_it() {
    let text = long_file(|i, line| {
        if i == 3 || i == 5 {
            line.replace(",DRY,OREO,", ",DRY,OREO,-")
        } else {
            line
        }
    });
    let (code, err) = check_file(&text, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("negative volume in 2 rows"), "{err}");
    assert!(
        err.contains("row 4 (line 5)") && err.contains("row 6 (line 7)"),
        "{err}"
    );
    assert!(err.contains("negative_volume"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "clip.yaml", "data:\n  negative_volume: clip\n");
    let (code, err) = check_file(&text, &["--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn unknown_category_or_brand_exits_2_listing_those_present() {
    let text = long_file(|_, line| line);
    let dir = tempfile::tempdir().unwrap();
    let data = write(dir.path(), "ship.csv", &text);
    let data = data.to_str().unwrap();

    let output = sweep(&["check-leakage", "--data", data, "--category", "WET"]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(
        err.contains("unknown category `WET`; categories in the file: DRY"),
        "{err}"
    );

    let output = sweep(&[
        "features",
        "--data",
        data,
        "--category",
        "DRY",
        "--brand",
        "LU",
        "--out",
        "x.csv",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(
        err.contains("unknown brand `LU`") && err.contains("brands present: OREO"),
        "{err}"
    );
}

#[test]
fn too_short_series_exits_2_naming_the_minimum_days() {
    let text: String = long_file(|_, line| line)
        .lines()
        .take(201)
        .map(|l| format!("{l}\n"))
        .collect();
    let (code, err) = check_file(&text, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("has 200 days; at least"), "{err}");
    assert!(err.contains("ship.csv"), "{err}");
}

#[test]
fn empty_file_exits_2() {
    let (code, err) = check_file("", &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("ship.csv") && err.contains("the file is empty"),
        "{err}"
    );

    let (code, err) = check_file(HEADER, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no data rows"), "{err}");
}

#[test]
fn unknown_config_key_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "bad.yaml", "window:\n  inptu: 30\n");
    let (code, err) = check_file(
        &long_file(|_, l| l),
        &["--config", config.to_str().unwrap()],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("bad.yaml") && err.contains("inptu"), "{err}");
}
