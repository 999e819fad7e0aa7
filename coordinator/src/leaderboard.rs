//! The leaderboard: trials ranked per series by the validation objective, never by test.
//!
//! Completed trials come first within their series, ordered by the objective (NaN after every
//! number, so the order is total), followed by one row per baseline (seasonal naive, weekday
//! profile) taken from the best trial's evaluation. Trials that failed, diverged or were
//! rejected by the leakage check are listed last, with their status and reason. Test WAPE and
//! MAE and the skill scores (on test) are reported for the planner, not used for ranking.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, ContentArrangement, Table};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::metrics::ForecastMetrics;
use shared::spec::{varying_keys, Direction, Metric, Objective};
use shared::trial::{TrialResult, TrialStatus};

use crate::store::{latest_by_trial, StoreError};

/// What a row stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowKind {
    /// A trial of the sweep.
    Trial,
    /// A naive baseline of the series, for comparison.
    Baseline,
}

/// One line of the leaderboard. Metrics are `None` where they do not exist (failed trials,
/// baselines' training columns).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// 1-based rank within the series; `None` for baselines and failed trials.
    pub rank: Option<usize>,
    /// Trial or baseline.
    pub kind: RowKind,
    /// Trial id, or the baseline's name.
    pub trial_id: String,
    /// Series (category, or category/brand).
    pub series: String,
    /// `completed`, `diverged`, `leakage_rejected`, `error`, `cancelled`, or `baseline`.
    pub status: String,
    /// Why the trial did not complete.
    pub reason: Option<String>,
    /// Values of the parameters that vary in the sweep.
    pub params: BTreeMap<String, Value>,
    /// The objective on validation.
    pub val_objective: Option<f64>,
    /// WAPE on validation.
    pub val_wape: Option<f64>,
    /// WAPE on test (reported only).
    pub test_wape: Option<f64>,
    /// MAE on test in CBM/day (reported only).
    pub test_mae: Option<f64>,
    /// Test skill versus the seasonal naive baseline.
    pub skill_vs_seasonal_naive: Option<f64>,
    /// Test skill versus the weekday profile baseline.
    pub skill_vs_weekday_profile: Option<f64>,
    /// Epochs run.
    pub epochs: Option<usize>,
    /// Wall time of the trial in seconds.
    pub duration_s: Option<f64>,
}

/// A ranked leaderboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Leaderboard {
    /// Sweep name.
    pub sweep: String,
    /// Objective metric.
    pub metric: Metric,
    /// Objective direction.
    pub direction: Direction,
    /// Parameters that vary between trials (the `params` of each row).
    pub varying: Vec<String>,
    /// Rows in display order.
    pub rows: Vec<Row>,
}

/// Output formats of `sweep leaderboard`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// comfy-table for people.
    Table,
    /// CSV with one column per varying parameter.
    Csv,
    /// JSON document.
    Json,
    /// Markdown table.
    Markdown,
}

impl Leaderboard {
    /// Ranks the outcome of each trial in `results` (retries collapsed to the trial's last
    /// attempt).
    pub fn build(sweep: &str, results: &[TrialResult], objective: Objective) -> Self {
        let direction = objective.direction();
        let latest = latest_by_trial(results);
        let outcomes: Vec<&TrialResult> = latest.values().collect();
        let varying = varying_keys(outcomes.iter().map(|r| &r.params));

        // Series in order of first appearance in the results file.
        let mut series_order: Vec<String> = Vec::new();
        for r in results {
            let s = r.series.to_string();
            if !series_order.contains(&s) {
                series_order.push(s);
            }
        }

        let mut rows = Vec::new();
        let mut failed = Vec::new();
        for series in &series_order {
            let mut done: Vec<(&TrialResult, f64)> = outcomes
                .iter()
                .filter(|r| r.series.to_string() == *series)
                .filter_map(|r| match (&r.metrics, r.status) {
                    (Some(m), TrialStatus::Completed) => Some((*r, objective.metric.value(m))),
                    _ => None,
                })
                .collect();
            done.sort_by(|(a, x), (b, y)| {
                rank_key(*x, direction)
                    .partial_cmp(&rank_key(*y, direction))
                    .expect("rank keys are never NaN")
                    .then_with(|| a.trial_id.cmp(&b.trial_id))
            });
            for (i, (r, value)) in done.iter().enumerate() {
                rows.push(trial_row(r, Some(i + 1), Some(*value), &varying));
            }
            if let Some((best, _)) = done.first() {
                let m = best
                    .metrics
                    .as_ref()
                    .expect("completed trials have metrics");
                rows.push(baseline_row(
                    series,
                    "seasonal_naive",
                    &m.val.seasonal_naive,
                    &m.test.seasonal_naive,
                    objective.metric,
                ));
                rows.push(baseline_row(
                    series,
                    "weekday_profile",
                    &m.val.weekday_profile,
                    &m.test.weekday_profile,
                    objective.metric,
                ));
            }
            failed.extend(
                outcomes
                    .iter()
                    .filter(|r| {
                        r.series.to_string() == *series && r.status != TrialStatus::Completed
                    })
                    .map(|r| trial_row(r, None, None, &varying)),
            );
        }
        rows.extend(failed);

        Self {
            sweep: sweep.to_string(),
            metric: objective.metric,
            direction,
            varying,
            rows,
        }
    }

    /// Keeps the top `n` trials of each series (baselines and failed trials stay) and, when
    /// `series` is given, only that series' rows.
    pub fn filter(&mut self, top: Option<usize>, series: Option<&str>) {
        if let Some(s) = series {
            self.rows
                .retain(|r| r.series == s || r.series.starts_with(&format!("{s}/")));
        }
        if let Some(n) = top {
            self.rows
                .retain(|r| r.rank.is_none_or(|rank| rank <= n) || r.kind == RowKind::Baseline);
        }
    }

    /// The best completed trial of each series.
    pub fn best(&self) -> Vec<&Row> {
        self.rows.iter().filter(|r| r.rank == Some(1)).collect()
    }

    /// Renders the leaderboard.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Table => self.table(),
            Format::Csv => self.csv(),
            Format::Json => {
                serde_json::to_string_pretty(self).expect("leaderboards serialise") + "\n"
            }
            Format::Markdown => self.markdown(),
        }
    }

    fn headers(&self) -> Vec<String> {
        let mut headers: Vec<String> = vec!["rank".into(), "trial".into(), "series".into()];
        headers.extend(self.varying.iter().cloned());
        headers.extend([
            format!("val {}", self.metric.as_str().trim_start_matches("val_")),
            "val WAPE".into(),
            "test WAPE".into(),
            "test MAE".into(),
            "skill vs SN".into(),
            "skill vs WP".into(),
            "epochs".into(),
            "duration s".into(),
            "status".into(),
        ]);
        headers
    }

    fn cells(&self, row: &Row) -> Vec<String> {
        let mut cells = vec![
            row.rank
                .map(|r| r.to_string())
                .unwrap_or_else(|| "-".into()),
            row.trial_id.clone(),
            row.series.clone(),
        ];
        for key in &self.varying {
            cells.push(match row.params.get(key) {
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None if row.kind == RowKind::Baseline => String::new(),
                None => default_value(key),
            });
        }
        cells.extend([
            num(row.val_objective, 4),
            num(row.val_wape, 4),
            num(row.test_wape, 4),
            num(row.test_mae, 3),
            num(row.skill_vs_seasonal_naive, 3),
            num(row.skill_vs_weekday_profile, 3),
            row.epochs.map(|e| e.to_string()).unwrap_or_default(),
            num(row.duration_s, 1),
            match &row.reason {
                Some(reason) => format!("{}: {reason}", row.status),
                None => row.status.clone(),
            },
        ]);
        cells
    }

    fn table(&self) -> String {
        let mut table = Table::new();
        table
            .load_preset(UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_header(self.headers());
        let numeric_from = 3 + self.varying.len();
        for row in &self.rows {
            let cells = self.cells(row);
            let n = cells.len();
            table.add_row(cells.into_iter().enumerate().map(|(i, c)| {
                let cell = Cell::new(c);
                if i == 0 || (i >= numeric_from && i + 1 < n) {
                    cell.set_alignment(CellAlignment::Right)
                } else {
                    cell
                }
            }));
        }
        format!(
            "{} ranked by {} ({}) on validation\n{table}\n",
            self.sweep,
            self.metric.as_str(),
            match self.direction {
                Direction::Minimize => "lower is better",
                Direction::Maximize => "higher is better",
            }
        )
    }

    fn csv(&self) -> String {
        let mut out = String::new();
        let mut headers = vec!["rank", "kind", "trial_id", "series", "status", "reason"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        headers.extend(self.varying.iter().cloned());
        headers.extend(
            [
                "val_objective",
                "val_wape",
                "test_wape",
                "test_mae",
                "skill_vs_seasonal_naive",
                "skill_vs_weekday_profile",
                "epochs",
                "duration_s",
            ]
            .map(String::from),
        );
        out.push_str(&headers.join(","));
        out.push('\n');
        for row in &self.rows {
            let mut fields = vec![
                row.rank.map(|r| r.to_string()).unwrap_or_default(),
                match row.kind {
                    RowKind::Trial => "trial".into(),
                    RowKind::Baseline => "baseline".into(),
                },
                row.trial_id.clone(),
                row.series.clone(),
                row.status.clone(),
                row.reason.clone().unwrap_or_default(),
            ];
            for key in &self.varying {
                fields.push(match row.params.get(key) {
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                    None => default_value(key),
                });
            }
            for v in [
                row.val_objective,
                row.val_wape,
                row.test_wape,
                row.test_mae,
                row.skill_vs_seasonal_naive,
                row.skill_vs_weekday_profile,
            ] {
                fields.push(v.map(|x| x.to_string()).unwrap_or_default());
            }
            fields.push(row.epochs.map(|e| e.to_string()).unwrap_or_default());
            fields.push(
                row.duration_s
                    .map(|d| format!("{d:.3}"))
                    .unwrap_or_default(),
            );
            let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
            out.push_str(&line.join(","));
            out.push('\n');
        }
        out
    }

    fn markdown(&self) -> String {
        let headers = self.headers();
        let mut out = String::new();
        let _ = writeln!(out, "| {} |", headers.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(headers.len()));
        for row in &self.rows {
            let cells: Vec<String> = self
                .cells(row)
                .into_iter()
                .map(|c| c.replace('|', "\\|"))
                .collect();
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
        out
    }

    /// Writes `leaderboard.csv`, `leaderboard.json`, `best.yaml` and `report.md` into the run
    /// folder. `best.yaml` maps each series to its best trial: the folder with its model (for
    /// `sweep predict --model`) and the `--set` arguments that retrain it with `sweep train`.
    pub fn write_files(&self, root: &Path, results: &[TrialResult]) -> Result<(), StoreError> {
        let write = |name: &str, text: String| {
            let path = root.join(name);
            std::fs::write(&path, text).map_err(|source| StoreError::Io { path, source })
        };
        write("leaderboard.csv", self.render(Format::Csv))?;
        write("leaderboard.json", self.render(Format::Json))?;

        let latest = latest_by_trial(results);
        let mut best = String::from(
            "# The best trial of each series, ranked on validation. Retrain one with\n\
             # `sweep train --data FILE --category C --set KEY=VALUE ...`, or forecast with\n\
             # `sweep predict --model <folder>`.\n",
        );
        for row in self.best() {
            let Some(result) = latest.get(&shared::trial::TrialId(row.trial_id.clone())) else {
                continue;
            };
            let set: Vec<String> = result
                .params
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => format!("{k}={s}"),
                    v => format!("{k}={v}"),
                })
                .collect();
            let _ = writeln!(best, "{}:", yaml_key(&row.series));
            let _ = writeln!(best, "  trial_id: {}", row.trial_id);
            let _ = writeln!(best, "  folder: trials/{}", row.trial_id);
            let _ = writeln!(
                best,
                "  {}: {}",
                self.metric.as_str(),
                row.val_objective
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| ".nan".into())
            );
            let _ = writeln!(
                best,
                "  parameters: {}",
                serde_json::to_string(&result.params).expect("json")
            );
            let _ = writeln!(
                best,
                "  set: {}",
                serde_json::to_string(&set).expect("json")
            );
        }
        write("best.yaml", best)?;

        let report = format!(
            "# Sweep `{}`\n\nRanked by `{}` on validation ({}); test metrics are reported, never \
             used for ranking.\n\n{}",
            self.sweep,
            self.metric.as_str(),
            match self.direction {
                Direction::Minimize => "lower is better",
                Direction::Maximize => "higher is better",
            },
            self.markdown()
        );
        write("report.md", report)
    }
}

/// The default of a hyperparameter as shown in tables (a trial's params omit defaults).
pub fn default_value(key: &str) -> String {
    let defaults = serde_json::to_value(shared::params::HyperParams::default())
        .expect("hyperparameters serialise");
    match defaults.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    }
}

/// Sorts NaN after every number in either direction.
fn rank_key(value: f64, direction: Direction) -> (u8, f64) {
    if value.is_nan() {
        (1, 0.0)
    } else {
        match direction {
            Direction::Minimize => (0, value),
            Direction::Maximize => (0, -value),
        }
    }
}

fn trial_row(
    r: &TrialResult,
    rank: Option<usize>,
    objective: Option<f64>,
    varying: &[String],
) -> Row {
    let m = r
        .metrics
        .as_ref()
        .filter(|_| r.status == TrialStatus::Completed);
    Row {
        rank,
        kind: RowKind::Trial,
        trial_id: r.trial_id.0.clone(),
        series: r.series.to_string(),
        status: r.status.as_str().to_string(),
        reason: r.reason.clone(),
        params: varying
            .iter()
            .filter_map(|k| r.params.get(k).map(|v| (k.clone(), v.clone())))
            .collect(),
        val_objective: objective,
        val_wape: m.map(|m| m.val.model.wape),
        test_wape: m.map(|m| m.test.model.wape),
        test_mae: m.map(|m| m.test.model.mae),
        skill_vs_seasonal_naive: m.map(|m| m.test.skill_vs_seasonal_naive()),
        skill_vs_weekday_profile: m.map(|m| m.test.skill_vs_weekday_profile()),
        epochs: Some(r.epochs_run),
        duration_s: Some(r.duration_s),
    }
}

fn baseline_row(
    series: &str,
    name: &str,
    val: &ForecastMetrics,
    test: &ForecastMetrics,
    metric: Metric,
) -> Row {
    let objective = match metric {
        Metric::ValAsymmetricLoss => Some(val.asymmetric_loss),
        Metric::ValWape => Some(val.wape),
        Metric::ValMae => Some(val.mae),
        Metric::ValRmse => Some(val.rmse),
        Metric::ValMape => Some(val.mape),
        Metric::ValLoss | Metric::ValSkillVsSeasonalNaive | Metric::ValSkillVsWeekdayProfile => {
            None
        }
    };
    Row {
        rank: None,
        kind: RowKind::Baseline,
        trial_id: name.to_string(),
        series: series.to_string(),
        status: "baseline".into(),
        reason: None,
        params: BTreeMap::new(),
        val_objective: objective,
        val_wape: Some(val.wape),
        test_wape: Some(test.wape),
        test_mae: Some(test.mae),
        skill_vs_seasonal_naive: None,
        skill_vs_weekday_profile: None,
        epochs: None,
        duration_s: None,
    }
}

fn num(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) if x.is_nan() => "NaN".into(),
        Some(x) => format!("{x:.digits$}"),
        None => String::new(),
    }
}

fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

fn yaml_key(key: &str) -> String {
    if key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_string()
    } else {
        format!("\"{}\"", key.replace('"', "\\\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::dataset::SeriesKey;
    use shared::metrics::{SpanMetrics, TrialMetrics};
    use shared::trial::TrialId;

    fn result(id: &str, category: &str, status: TrialStatus, loss: f64) -> TrialResult {
        let span = |wape: f64| SpanMetrics {
            samples: 10,
            model: ForecastMetrics {
                wape,
                asymmetric_loss: loss,
                mae: 1.0,
                ..Default::default()
            },
            seasonal_naive: ForecastMetrics {
                wape: 0.5,
                ..Default::default()
            },
            weekday_profile: ForecastMetrics {
                wape: 0.4,
                ..Default::default()
            },
            ..Default::default()
        };
        TrialResult {
            trial_id: TrialId(id.into()),
            sweep: "s".into(),
            attempt: 1,
            status,
            reason: (status != TrialStatus::Completed).then(|| "boom".to_string()),
            series: SeriesKey {
                category: category.into(),
                brand: None,
            },
            params: BTreeMap::from([("hidden_size".to_string(), Value::from(id.len()))]),
            metrics: (status == TrialStatus::Completed).then(|| TrialMetrics {
                val: span(0.3),
                // Test is deliberately ordered against validation: ranking must ignore it.
                test: span(loss),
                ..Default::default()
            }),
            epochs_run: 2,
            duration_s: 1.0,
            worker: "w".into(),
            device: "cpu".into(),
        }
    }

    #[test]
    fn trials_rank_by_validation_with_nan_and_failures_last() {
        let results = vec![
            result("a", "DRY", TrialStatus::Completed, 3.0),
            result("bb", "DRY", TrialStatus::Diverged, f64::NAN),
            result("ccc", "DRY", TrialStatus::Completed, f64::NAN),
            result("dddd", "DRY", TrialStatus::Completed, 1.0),
        ];
        let board = Leaderboard::build("s", &results, Objective::default());
        let order: Vec<(&str, Option<usize>)> = board
            .rows
            .iter()
            .map(|r| (r.trial_id.as_str(), r.rank))
            .collect();
        assert_eq!(
            order,
            vec![
                ("dddd", Some(1)),
                ("a", Some(2)),
                ("ccc", Some(3)),
                ("seasonal_naive", None),
                ("weekday_profile", None),
                ("bb", None),
            ]
        );
        assert_eq!(board.rows[5].status, "diverged");
    }

    #[test]
    fn maximize_reverses_the_order() {
        let results = vec![
            result("a", "DRY", TrialStatus::Completed, 3.0),
            result("dddd", "DRY", TrialStatus::Completed, 1.0),
        ];
        let objective = Objective {
            metric: Metric::ValAsymmetricLoss,
            direction: Some(Direction::Maximize),
            ..Objective::default()
        };
        let board = Leaderboard::build("s", &results, objective);
        assert_eq!(board.rows[0].trial_id, "a");
    }

    #[test]
    fn each_series_is_ranked_separately_and_top_keeps_baselines() {
        let results = vec![
            result("a", "DRY", TrialStatus::Completed, 3.0),
            result("bb", "DRY", TrialStatus::Completed, 2.0),
            result("ccc", "TET", TrialStatus::Completed, 5.0),
        ];
        let mut board = Leaderboard::build("s", &results, Objective::default());
        assert_eq!(board.best().len(), 2);
        board.filter(Some(1), Some("DRY"));
        let ids: Vec<&str> = board.rows.iter().map(|r| r.trial_id.as_str()).collect();
        assert_eq!(ids, vec!["bb", "seasonal_naive", "weekday_profile"]);
    }

    #[test]
    fn csv_has_one_row_per_line_and_quotes_reasons() {
        let mut failed = result("a", "DRY", TrialStatus::Error, 1.0);
        failed.reason = Some("bad, \"very\"".into());
        let board = Leaderboard::build("s", &[failed], Objective::default());
        let csv = board.render(Format::Csv);
        assert_eq!(csv.lines().count(), 2);
        assert!(csv.contains("\"bad, \"\"very\"\"\""), "{csv}");
    }
}
