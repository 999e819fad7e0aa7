//! Spec validation, `sweep plan`, the embedded `sweep launch` (resume, kill, fail fast) and the
//! leaderboard, run through the real binary on synthetic and real data.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{real_dry_csv, repo_root, sweep_bin, text};

/// A spec small enough to train in about a second per trial.
const TINY: &str = "name: tiny
data:
  categories: [DRY]
window: {input: 14, horizon: 7}
parameters:
  hidden_size: [8, 16]
  n_layers: 1
  dense_hidden_sizes: [8]
  fusion_hidden_sizes: [8]
  epochs: 1
  batch_size: 64
";

fn write_spec(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn sweep(dir: &Path, args: &[&str]) -> Output {
    Command::new(sweep_bin())
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .output()
        .expect("the sweep binary runs")
}

fn results(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every results line is complete JSON"))
        .collect()
}

#[test]
fn launch_runs_tiny_spec_and_ends_with_leaderboard() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "tiny.yaml", TINY);

    let out = sweep(
        dir.path(),
        &["launch", spec.to_str().unwrap(), "--out", "runs"],
    );

    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(stdout.contains("ranked by val_asymmetric_loss"), "{stdout}");
    assert!(
        stdout.contains("seasonal_naive") && stdout.contains("weekday_profile"),
        "{stdout}"
    );
    let run = dir.path().join("runs/tiny");
    let lines = results(&run.join("results.jsonl"));
    assert_eq!(lines.len(), 2);
    for line in &lines {
        assert_eq!(line["status"], "completed");
        let folder = run.join("trials").join(line["trial_id"].as_str().unwrap());
        assert!(
            folder.join("metrics.json").exists(),
            "{} has no metrics.json",
            folder.display()
        );
    }
    for file in [
        "leaderboard.csv",
        "leaderboard.json",
        "best.yaml",
        "report.md",
        "sweep.json",
    ] {
        assert!(run.join(file).exists(), "{file} missing");
    }
}

#[test]
fn relaunch_skips_completed_trials() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "tiny.yaml", TINY);
    let first = sweep(
        dir.path(),
        &["launch", spec.to_str().unwrap(), "--out", "runs"],
    );
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));

    let second = sweep(
        dir.path(),
        &["launch", spec.to_str().unwrap(), "--out", "runs", "--json"],
    );

    assert_eq!(second.status.code(), Some(0), "{}", text(&second.stderr));
    assert_eq!(
        results(&dir.path().join("runs/tiny/results.jsonl")).len(),
        2
    );
    assert!(
        text(&second.stderr).contains("skipped=2"),
        "{}",
        text(&second.stderr)
    );
    let board: Value = serde_json::from_slice(&second.stdout).unwrap();
    let ranked = board["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r["rank"].is_null())
        .count();
    assert_eq!(ranked, 2);
}

#[test]
fn killed_launch_loses_at_most_the_running_trials() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "kill.yaml",
        &TINY
            .replace("name: tiny", "name: kill")
            .replace("hidden_size: [8, 16]", "hidden_size: [4, 6, 8, 10, 12, 14]")
            .replace("epochs: 1", "epochs: 3"),
    );
    let results_path = dir.path().join("runs/kill/results.jsonl");

    let mut child = Command::new(sweep_bin())
        .args(["launch", spec.to_str().unwrap(), "--out", "runs"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while results_path.metadata().map(|m| m.len()).unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "no trial finished within 120 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before: Vec<String> = results(&results_path)
        .iter()
        .map(|r| r["trial_id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !before.is_empty() && before.len() < 6,
        "{} results before the kill",
        before.len()
    );

    let again = sweep(
        dir.path(),
        &["launch", spec.to_str().unwrap(), "--out", "runs"],
    );

    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    let after: Vec<String> = results(&results_path)
        .iter()
        .map(|r| r["trial_id"].as_str().unwrap().to_string())
        .collect();
    let distinct: BTreeSet<&String> = after.iter().collect();
    assert_eq!(after.len(), 6, "a finished trial ran twice: {after:?}");
    assert_eq!(distinct.len(), 6);
    assert_eq!(&after[..before.len()], &before[..]);
}

#[test]
fn unknown_category_fails_fast_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "bad.yaml", &TINY.replace("[DRY]", "[DYR]"));

    let out = sweep(
        dir.path(),
        &["launch", spec.to_str().unwrap(), "--out", "runs"],
    );

    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("category `DYR`") && stderr.contains("did you mean `DRY`?"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("runs").exists(),
        "a run folder was created before validation"
    );
}

#[test]
fn horizon_longer_than_the_data_fails_fast_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "long.yaml",
        &TINY.replace("horizon: 7", "horizon: 4000"),
    );

    let out = sweep(
        dir.path(),
        &["launch", spec.to_str().unwrap(), "--out", "runs"],
    );

    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("days"), "{stderr}");
    assert!(!stderr.contains("trial started"), "{stderr}");
}

#[test]
fn misspelt_key_names_file_line_and_nearest_key() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "typo.yaml",
        &TINY.replace("n_layers", "n_layer"),
    );

    let out = sweep(dir.path(), &["launch", spec.to_str().unwrap()]);

    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("typo.yaml:7"), "{stderr}");
    assert!(stderr.contains("`parameters.n_layer`"), "{stderr}");
    assert!(stderr.contains("did you mean `n_layers`?"), "{stderr}");
}

/// Bad specs and a piece of the message each must produce (exit 2, no panic).
const BAD_SPECS: &[(&str, &str)] = &[
    ("nme: x\n", "did you mean `name`?"),
    (
        "name: x\nparameters:\n  hiden_size: 8\n",
        "did you mean `hidden_size`?",
    ),
    (
        "name: x\nsearch:\n  metod: random\n",
        "did you mean `method`?",
    ),
    ("name: x\nwindow:\n  horizon: soon\n", "`window.horizon`"),
    (
        "name: x\nwindow:\n  horizon: 0\n",
        "`window.horizon`: must be at least 1 day",
    ),
    ("name: x\nwindow:\n  input: 0\n", "`window.input`"),
    ("name: x\nparameters:\n  hidden_size: []\n", "empty list"),
    (
        "name: x\nparameters:\n  learning_rate: -0.001\n",
        "`parameters.learning_rate`: must be a positive number",
    ),
    (
        "name: x\nparameters:\n  learning_rate: 0\n",
        "`parameters.learning_rate`",
    ),
    (
        "name: x\nparameters:\n  hidden_size: 0\n",
        "`parameters.hidden_size`: must be at least 1",
    ),
    (
        "name: x\nparameters:\n  dropout: 1.5\n",
        "`parameters.dropout`",
    ),
    ("name: x\nparameters:\n  loss: huber\n", "`parameters.loss`"),
    (
        "name: x\nsearch:\n  method: random\n",
        "random search needs `samples`",
    ),
    (
        "name: x\nsearch:\n  method: random\n  samples: 0\n",
        "`search.samples`: must be at least 1",
    ),
    ("name: x\nsearch:\n  method: annealing\n", "`search.method`"),
    ("name: x\nsearch:\n  max_trials: 0\n", "`search.max_trials`"),
    (
        "name: x\nparameters:\n  dropout: {uniform: [0.1, 0.5]}\n",
        "continuous distribution cannot be enumerated",
    ),
    (
        "name: x\nparameters:\n  dropout: {normal: [0.1, 0.5]}\n",
        "unknown distribution `normal`",
    ),
    (
        "name: x\nparameters:\n  learning_rate: {log_uniform: [0, 0.1]}\n",
        "positive lower bound",
    ),
    (
        "name: x\ndata:\n  categories: [DRY]\n  path: no-such-file.csv\n",
        "the data file does not exist",
    ),
    (
        "name: x\ndata:\n  categories: [CANDY]\n",
        "category `CANDY` is not in",
    ),
    (
        "name: x\ndata:\n  categories: []\n",
        "`data.categories`: empty list",
    ),
    (
        "name: x\nobjective:\n  metric: test_wape\n",
        "`objective.metric`",
    ),
    (
        "name: x\nsplit:\n  fractions: {train: 0.8, val: 0.3, test: 0.2}\n",
        "must add up to 1",
    ),
    ("name: \"my sweep\"\n", "`name`"),
    ("name: x\nretries: many\n", "`retries`"),
    (
        "name: x\ndata:\n  categories: [DRY]\noverrides:\n  TET:\n    parameters: {}\n",
        "`overrides.TET`",
    ),
    (
        "name: x\nparameters:\n  epochs: 2.5\n",
        "`parameters.epochs`",
    ),
    ("- just\n- a list\n", "invalid type"),
];

#[test]
fn bad_specs_exit_2_with_a_message_naming_the_culprit() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (i, (spec, expected)) in BAD_SPECS.iter().enumerate() {
        let path = write_spec(dir.path(), &format!("bad{i}.yaml"), spec);

        let out = sweep(dir.path(), &["plan", path.to_str().unwrap()]);

        let stderr = text(&out.stderr);
        if out.status.code() != Some(2) || !stderr.contains(expected) || stderr.contains("panicked")
        {
            failures.push(format!(
                "spec {i}:\n{spec}expected exit 2 and `{expected}`, got {:?}: {stderr}",
                out.status.code()
            ));
        }
        assert!(
            stderr.contains(&format!("bad{i}.yaml")),
            "spec {i} message names no file: {stderr}"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn plan_prints_counts_and_varying_parameters_without_running() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "tiny.yaml", TINY);

    let table = sweep(dir.path(), &["plan", spec.to_str().unwrap()]);
    let json = sweep(dir.path(), &["plan", spec.to_str().unwrap(), "--json"]);

    assert_eq!(table.status.code(), Some(0), "{}", text(&table.stderr));
    let stdout = text(&table.stdout);
    assert!(stdout.contains("DRY: 2 trials"), "{stdout}");
    assert!(stdout.contains("varying: hidden_size"), "{stdout}");
    assert_eq!(text(&json.stdout).lines().count(), 2);
    assert!(!dir.path().join("runs").exists());
}

#[test]
fn shipped_specs_plan_cleanly() {
    for name in ["mooncake", "tet", "dry", "fresh"] {
        let spec = repo_root().join(format!("sweeps/{name}.yaml"));
        let out = sweep(&repo_root(), &["plan", spec.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
    }
}

#[test]
fn real_dry_leaderboard_agrees_with_the_results_file() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "dry.yaml",
        &TINY
            .replace("name: tiny", "name: dry")
            .replace("epochs: 1", "epochs: 2"),
    );
    let data = real_dry_csv();

    let out = sweep(
        dir.path(),
        &[
            "launch",
            spec.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out",
            "runs",
            "--json",
        ],
    );

    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let board: Value = serde_json::from_slice(&out.stdout).unwrap();
    let lines = results(&dir.path().join("runs/dry/results.jsonl"));
    let ranked: Vec<&Value> = board["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r["rank"].is_null())
        .collect();
    assert_eq!(ranked.len(), lines.len());
    let mut previous = f64::NEG_INFINITY;
    for row in &ranked {
        let result = lines
            .iter()
            .find(|l| l["trial_id"] == row["trial_id"])
            .expect("every ranked trial is in results.jsonl");
        let loss = result["metrics"]["val"]["model"]["asymmetric_loss"]
            .as_f64()
            .unwrap();
        assert_eq!(row["val_objective"].as_f64().unwrap(), loss);
        assert_eq!(row["test_wape"], result["metrics"]["test"]["model"]["wape"]);
        assert!(loss >= previous, "ranks are not ordered by validation loss");
        previous = loss;
    }

    let again = sweep(
        dir.path(),
        &["leaderboard", "dry", "--out", "runs", "--json"],
    );
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    let reread: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(reread["rows"], board["rows"]);
}

#[test]
fn objective_is_equal_for_identical_forecasts_with_different_penalties() {
    // With the MSE loss the penalties do not change training, so both trials make the same
    // forecasts; only the scoring could tell them apart, and it must not.
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "fair.yaml",
        &TINY
            .replace("name: tiny", "name: fair")
            .replace("hidden_size: [8, 16]", "hidden_size: 8\n  loss: mse")
            .replace("epochs: 1", "epochs: 1\n  under_penalty: [1.0, 6.0]"),
    );

    let out = sweep(
        dir.path(),
        &["launch", spec.to_str().unwrap(), "--out", "runs"],
    );

    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines = results(&dir.path().join("runs/fair/results.jsonl"));
    assert_eq!(lines.len(), 2);
    let val = |i: usize, key: &str| lines[i]["metrics"]["val"]["model"][key].as_f64().unwrap();
    assert_eq!(val(0, "mae"), val(1, "mae"), "the forecasts differ");
    assert_eq!(val(0, "asymmetric_loss"), val(1, "asymmetric_loss"));
    assert_ne!(val(0, "own_asymmetric_loss"), val(1, "own_asymmetric_loss"));
}

#[test]
fn leaderboard_flags_filter_and_format() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "tiny.yaml", TINY);
    let launch = sweep(
        dir.path(),
        &["launch", spec.to_str().unwrap(), "--out", "runs"],
    );
    assert_eq!(launch.status.code(), Some(0), "{}", text(&launch.stderr));
    let board = |extra: &[&str]| {
        let mut args = vec!["leaderboard", "tiny", "--out", "runs"];
        args.extend_from_slice(extra);
        let out = sweep(dir.path(), &args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
    };

    let csv = board(&["--format", "csv"]);
    assert!(csv.lines().next().unwrap().contains(','), "{csv}");
    let markdown = board(&["--format", "markdown", "--top", "1"]);
    assert!(
        markdown.contains("|---") || markdown.contains("| ---"),
        "{markdown}"
    );
    let json: Value = serde_json::from_str(&board(&["--format", "json", "--top", "1"])).unwrap();
    let alias: Value = serde_json::from_str(&board(&["--json", "--top", "1"])).unwrap();
    assert_eq!(json, alias);
    let ranked = |v: &Value| {
        v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| !r["rank"].is_null())
            .count()
    };
    assert_eq!(ranked(&json), 1);
    let other: Value = serde_json::from_str(&board(&["--json", "--category", "FRESH"])).unwrap();
    assert_eq!(other["rows"].as_array().unwrap().len(), 0);
    let dry: Value = serde_json::from_str(&board(&["--json", "--category", "DRY"])).unwrap();
    assert_eq!(ranked(&dry), 2);
}

#[test]
fn interrupted_launch_stores_finished_trials_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "int.yaml",
        &TINY
            .replace("name: tiny", "name: int")
            .replace("hidden_size: [8, 16]", "hidden_size: [4, 6, 8, 10, 12, 14]")
            .replace("epochs: 1", "epochs: 3"),
    );
    let results_path = dir.path().join("runs/int/results.jsonl");

    let child = Command::new(sweep_bin())
        .args(["launch", spec.to_str().unwrap(), "--out", "runs", "--json"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while results_path.metadata().map(|m| m.len()).unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "no trial finished within 120 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();

    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("launch` again to resume"), "{stderr}");
    let board: Value = serde_json::from_slice(&out.stdout).expect("a partial leaderboard");
    let before = results(&results_path);
    assert!(
        !before.is_empty() && before.len() < 6,
        "{} results",
        before.len()
    );
    assert!(
        before.iter().all(|r| r["status"] == "completed"),
        "{before:?}"
    );
    let ranked = board["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r["rank"].is_null())
        .count();
    assert_eq!(ranked, before.len());

    let again = sweep(
        dir.path(),
        &["launch", spec.to_str().unwrap(), "--out", "runs"],
    );

    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    let after = results(&results_path);
    let distinct: BTreeSet<&str> = after
        .iter()
        .map(|r| r["trial_id"].as_str().unwrap())
        .collect();
    assert_eq!(after.len(), 6, "a finished trial ran twice");
    assert_eq!(distinct.len(), 6);
}

#[test]
fn relative_out_first_attempts_do_not_fail_on_missing_history_csv() {
    // Reported: with a relative `--out runs`, first attempts failed with
    // `history.csv: No such file or directory` and only retries completed.
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "rel.yaml",
        &TINY
            .replace("name: tiny", "name: rel")
            .replace("hidden_size: [8, 16]", "hidden_size: [4, 8, 12]"),
    );
    let launch = |extra: &[&str]| {
        let mut args = vec!["launch", spec.to_str().unwrap(), "--out", "runs"];
        args.extend_from_slice(extra);
        let out = sweep(dir.path(), &args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    };

    launch(&["--workers", "2", "--max-trials", "2"]);
    launch(&["--workers", "2"]);

    let run = dir.path().join("runs/rel");
    let lines = results(&run.join("results.jsonl"));
    assert_eq!(lines.len(), 3, "a trial failed and was retried: {lines:?}");
    for line in &lines {
        assert_eq!(line["attempt"], 1, "{line}");
        assert_eq!(line["status"], "completed", "{line}");
        let folder = run.join("trials").join(line["trial_id"].as_str().unwrap());
        assert!(folder.join("history.csv").exists(), "{}", folder.display());
    }
}

#[test]
fn trials_on_two_workers_score_exactly_as_on_one() {
    // Two workers each train on a pool of their own with half the cores; one worker trains on
    // every core. A batch of 32 splits the recurrence over the threads of a pool, so the two
    // launches run each trial on different thread counts, which must not change its result.
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "share.yaml",
        &TINY
            .replace("name: tiny", "name: share")
            .replace("hidden_size: [8, 16]", "hidden_size: [16, 32]")
            .replace("batch_size: 64", "batch_size: 32"),
    );
    let metrics_by_trial = |out: &str, workers: &str| {
        let launched = sweep(
            dir.path(),
            &[
                "launch",
                spec.to_str().unwrap(),
                "--out",
                out,
                "--workers",
                workers,
            ],
        );
        assert_eq!(
            launched.status.code(),
            Some(0),
            "{}",
            text(&launched.stderr)
        );
        let mut lines: Vec<(String, Value)> =
            results(&dir.path().join(out).join("share/results.jsonl"))
                .into_iter()
                .map(|line| {
                    assert_eq!(line["status"], "completed", "{line}");
                    (
                        line["trial_id"].as_str().unwrap().to_string(),
                        line["metrics"].clone(),
                    )
                })
                .collect();
        lines.sort_by(|a, b| a.0.cmp(&b.0));
        lines
    };
    let one = metrics_by_trial("one", "1");
    let two = metrics_by_trial("two", "2");
    assert_eq!(one.len(), 2);
    assert_eq!(one, two);
}

#[test]
fn erroring_trial_is_retried_then_listed_as_error_with_its_reason() {
    // A trial folder that cannot be created (a file sits where `trials/` should be) makes every
    // attempt fail with status `error`, the one status the engine retries.
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "retry.yaml",
        &(TINY
            .replace("name: tiny", "name: retry")
            .replace("hidden_size: [8, 16]", "hidden_size: 8")
            + "retries: 2\n"),
    );
    std::fs::create_dir_all(dir.path().join("runs/retry")).unwrap();
    std::fs::write(dir.path().join("runs/retry/trials"), "not a folder").unwrap();

    let out = sweep(
        dir.path(),
        &["launch", spec.to_str().unwrap(), "--out", "runs", "--json"],
    );

    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let lines = results(&dir.path().join("runs/retry/results.jsonl"));
    let attempts: Vec<u64> = lines
        .iter()
        .map(|l| l["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, vec![1, 2, 3], "retries + 1 attempts");
    assert!(lines.iter().all(|l| l["status"] == "error"));
    let board: Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = board["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["trial_id"] == lines[0]["trial_id"])
        .expect("the failed trial is listed");
    assert_eq!(row["status"], "error");
    assert!(row["rank"].is_null());
    assert!(row["reason"].as_str().unwrap().contains("trials"), "{row}");
}

// Relaunching into a folder after the data changed used to skip every trial and present the old
// results as results on the new data.
#[test]
fn relaunch_with_other_data_into_the_same_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "tiny.yaml", TINY);
    let first = sweep(
        dir.path(),
        &["launch", spec.to_str().unwrap(), "--out", "runs"],
    );
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let reseeded = TINY.replace("data:\n", "data:\n  synthetic_seed: 99\n");
    let spec = write_spec(dir.path(), "tiny.yaml", &reseeded);

    let second = sweep(
        dir.path(),
        &["launch", spec.to_str().unwrap(), "--out", "runs"],
    );

    let stderr = text(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("holds results of other data"), "{stderr}");
    assert!(stderr.contains("another --out"), "{stderr}");
    assert_eq!(
        results(&dir.path().join("runs/tiny/results.jsonl")).len(),
        2
    );
}

// Two launches of one spec into one folder used to train every trial twice.
#[test]
fn second_launch_into_a_folder_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let slow = TINY.replace("epochs: 1", "epochs: 40");
    let spec = write_spec(dir.path(), "tiny.yaml", &slow);
    let mut first = Command::new(sweep_bin())
        .args(["launch", spec.to_str().unwrap(), "--out", "runs"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lock = dir.path().join("runs/tiny/.lock");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !lock.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }

    let second = sweep(
        dir.path(),
        &["launch", spec.to_str().unwrap(), "--out", "runs"],
    );

    let first_status = first.wait().unwrap();
    let stderr = text(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("in use by another `sweep launch`"),
        "{stderr}"
    );
    assert!(first_status.success());
    let ids: Vec<Value> = results(&dir.path().join("runs/tiny/results.jsonl"));
    assert_eq!(ids.len(), 2, "each trial ran once");
}

#[test]
fn plan_reads_the_data_given_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "brands.yaml",
        &TINY.replace("categories: [DRY]", "categories: [DRY]\n  level: brand"),
    );
    let data = real_dry_csv();

    let out = sweep(
        dir.path(),
        &[
            "plan",
            spec.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ],
    );

    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(stdout.contains("mdlz_dry_shipments.csv"), "{stdout}");
    assert!(stdout.contains("DRY/OREO: 2 trials"), "{stdout}");
    assert!(stdout.contains("DRY/LU: 2 trials"), "{stdout}");
}
