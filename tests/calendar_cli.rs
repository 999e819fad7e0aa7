//! `sweep calendar` and the built-in synthetic data generator, through the real binary.

use crate::common::{stderr, stdout, sweep};

#[test]
fn calendar_csv_lists_2025_holidays_tet_and_mid_autumn_with_lunar_dates() {
    let output = sweep(&[
        "calendar",
        "--from",
        "2025-01-01",
        "--to",
        "2025-12-31",
        "--format",
        "csv",
    ]);

    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "date,weekday,lunar_date,name,kind");
    for expected in [
        "2025-01-01,Wed,2024-12-02,New Year's Day,public",
        "2025-01-29,Wed,2025-01-01,Tet (Lunar New Year),tet",
        "2025-04-07,Mon,2025-03-10,Hung Kings' Commemoration,public",
        "2025-04-30,Wed,2025-04-03,Reunification Day,public",
        "2025-09-02,Tue,2025-07-11,National Day,public",
        "2025-10-06,Mon,2025-08-15,Mid-Autumn Festival,festival",
    ] {
        assert!(lines.contains(&expected), "missing `{expected}` in\n{text}");
    }
    // Seven Tet days, New Year, Hung Kings, Apr 30, May 1, two National Day days, Mid-Autumn.
    assert_eq!(lines.len() - 1, 14, "{text}");
    let dates: Vec<&str> = lines[1..].iter().map(|l| &l[..10]).collect();
    let mut sorted = dates.clone();
    sorted.sort();
    assert_eq!(dates, sorted);
}

#[test]
fn calendar_table_shows_a_leap_month_in_lunar_dates() {
    // 2025 has a leap sixth month; Mid-Autumn 2025 falls after it.
    let output = sweep(&["calendar", "--from", "2025-07-01", "--to", "2025-10-31"]);

    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("lunar date"), "{text}");
    assert!(text.contains("Mid-Autumn Festival"), "{text}");
    assert!(text.contains("2025-08-15"), "{text}");
    assert!(text.contains("leap month"), "{text}");
}

#[test]
fn calendar_range_spanning_tet_1985_uses_the_vietnamese_date() {
    let output = sweep(&[
        "calendar",
        "--from",
        "1985-01-15",
        "--to",
        "1985-02-28",
        "--format",
        "csv",
    ]);

    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("1985-01-21,Mon,1985-01-01,Tet (Lunar New Year),tet"),
        "{text}"
    );
    assert!(!text.contains("1985-02-20"), "{text}");
}

#[test]
fn calendar_with_an_invalid_date_exits_2_naming_the_flag() {
    let output = sweep(&["calendar", "--from", "2025-13-01", "--to", "2025-12-31"]);

    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains("--from `2025-13-01`"), "{err}");
    assert!(err.contains("YYYY-MM-DD"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(output.stdout.is_empty());
}

#[test]
fn calendar_with_to_before_from_exits_2() {
    let output = sweep(&["calendar", "--from", "2025-06-01", "--to", "2025-01-01"]);

    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("before --from"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn calendar_outside_the_supported_years_exits_2() {
    let output = sweep(&["calendar", "--from", "1700-01-01", "--to", "1700-12-31"]);

    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("1900-2200"), "{}", stderr(&output));
}

#[test]
fn synthetic_shipments_load_as_a_dataset_and_export_features() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join(shared::synth::SYNTHETIC_NAME);
    let (start, end) = shared::synth::default_range();
    std::fs::write(&data, shared::synth::generate_csv(11, start, end)).unwrap();
    let out = dir.path().join("features.csv");

    let output = sweep(&[
        "features",
        "--data",
        data.to_str().unwrap(),
        "--category",
        "MOONCAKE",
        "--out",
        out.to_str().unwrap(),
    ]);

    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let features = std::fs::read_to_string(&out).unwrap();
    let days = (end - start).num_days() as usize + 1;
    assert_eq!(
        features.lines().count(),
        1 + days,
        "one row per day plus the header"
    );
}
