//! `sweep train` and `sweep predict` on the real DRY shipments, with a small model so the
//! whole module runs in seconds on two cores.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{real_dry_csv, sweep_bin, text};

/// The acceptance split: train to 2024-06-30, validation to 2024-12-31, test 2025.
const PIPELINE: &str = "split: {dates: {train_end: 2024-06-30, val_end: 2024-12-31}}\n";

fn train(dir: &Path, out: &str, extra: &[&str]) -> Output {
    let config = dir.join("pipeline.yaml");
    std::fs::write(&config, PIPELINE).unwrap();
    let data = real_dry_csv();
    let mut args = vec![
        "train",
        "--data",
        data.to_str().unwrap(),
        "--category",
        "DRY",
        "--config",
        config.to_str().unwrap(),
        "--set",
        "epochs=2",
        "--set",
        "hidden_size=16",
        "--set",
        "dense_hidden_sizes=[8]",
        "--out",
    ];
    let out = dir.join(out);
    args.push(out.to_str().unwrap());
    args.extend_from_slice(extra);
    Command::new(sweep_bin()).args(&args).output().unwrap()
}

#[test]
fn train_on_real_data_writes_every_file_and_reports_baselines() {
    let dir = tempfile::tempdir().unwrap();
    let output = train(dir.path(), "model", &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert_eq!(stderr.matches("epoch ").count(), 2, "{stderr}");

    let model = dir.path().join("model");
    for file in [
        "metrics.json",
        "history.csv",
        "predictions.csv",
        "model.json",
        "model.mpk",
    ] {
        assert!(model.join(file).exists(), "{file} missing");
    }
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("metrics.json")).unwrap())
            .unwrap();
    assert_eq!(metrics["status"], "completed");
    let test = &metrics["metrics"]["test"];
    assert!(test["samples"].as_u64().unwrap() > 300);
    // The weekday profile over 2025 scores WAPE about 0.33 on this series.
    let profile = test["weekday_profile"]["wape"].as_f64().unwrap();
    assert!(
        (0.25..0.40).contains(&profile),
        "weekday profile WAPE {profile}"
    );
    assert!(test["model"]["mae"].as_f64().unwrap() > 0.0);
    assert_eq!(test["model"]["mae_per_step"].as_array().unwrap().len(), 30);

    let predictions = std::fs::read_to_string(model.join("predictions.csv")).unwrap();
    let mut lines = predictions.lines();
    assert_eq!(
        lines.next(),
        Some("origin,date,horizon_step,actual,forecast")
    );
    let first: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(first[0], "2025-01-01");
    assert_eq!(first[2], "1");
    let history = std::fs::read_to_string(model.join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), 3);
}

#[test]
fn same_seed_gives_same_metrics_and_predict_reads_the_model_back() {
    let dir = tempfile::tempdir().unwrap();
    let a = train(dir.path(), "a", &[]);
    let b = train(dir.path(), "b", &[]);
    assert!(
        a.status.success() && b.status.success(),
        "{}",
        text(&a.stderr)
    );
    let metrics = |name: &str| {
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(name).join("metrics.json")).unwrap(),
        )
        .unwrap();
        json["metrics"].clone()
    };
    assert_eq!(metrics("a"), metrics("b"));

    let data = real_dry_csv();
    let predict = |from: Option<&str>| {
        let mut cmd = Command::new(sweep_bin());
        cmd.args(["predict", "--model"])
            .arg(dir.path().join("a"))
            .arg("--data")
            .arg(&data);
        if let Some(from) = from {
            cmd.args(["--from", from]);
        }
        cmd.output().unwrap()
    };
    let latest = predict(None);
    assert!(latest.status.success(), "{}", text(&latest.stderr));
    let csv = text(&latest.stdout);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "date,horizon_step,forecast");
    assert_eq!(lines.len(), 31);
    // The data end on 2025-12-30, so the forecast starts the day after.
    assert!(lines[1].starts_with("2025-12-31,1,"), "{}", lines[1]);
    assert_eq!(predict(None).stdout, latest.stdout);

    let from = predict(Some("2025-03-01"));
    assert!(text(&from.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .starts_with("2025-03-01,1,"));
    let bad = predict(Some("01/03/2025"));
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("YYYY-MM-DD"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn cuda_device_without_the_feature_exits_2_asking_for_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let output = train(dir.path(), "gpu", &["--device", "cuda:0"]);
    if cfg!(feature = "cuda") {
        return;
    }
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("rebuild with --features cuda"),
        "{}",
        text(&output.stderr)
    );
    assert!(!dir.path().join("gpu").exists());
}

#[test]
fn unknown_device_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = train(dir.path(), "tpu", &["--device", "tpu"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("expected `cpu` or `cuda:N`"));
}

#[test]
fn misspelt_parameter_is_rejected_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let output = train(dir.path(), "bad", &["--set", "hiden_size=8"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("did you mean `hidden_size`"), "{stderr}");
    assert!(!stderr.contains("epoch "), "{stderr}");
}

#[test]
fn predict_without_a_model_names_the_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(sweep_bin())
        .args(["predict", "--model"])
        .arg(dir.path())
        .arg("--data")
        .arg(real_dry_csv())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("model.json"));
}
