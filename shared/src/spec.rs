//! Sweep specs: the YAML file a user writes, its validation and its expansion into trials.
//!
//! [`SweepSpec::load`] reads and checks a spec. Unknown keys and wrong types are rejected with
//! the YAML path of the culprit, the spec file and line, and for a misspelt key the nearest valid
//! one. [`SweepSpec::plan`] expands the spec over the series of a dataset into a [`Plan`]:
//! deterministic, duplicates dropped and reported, capped by `search.max_trials`. See
//! `docs/SPEC.md` for the reference of every key.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::config::{
    CalendarConfig, Columns, DataConfig, DateFormat, NegativeVolume, PipelineConfig, SplitConfig,
    WindowConfig,
};
use crate::dataset::SeriesKey;
use crate::error::ParamError;
use crate::metrics::TrialMetrics;
use crate::params::nearest;
use crate::space::{canonical_params, trial_id, ParamSpace, SpaceError};
use crate::trial::{EvaluationWeights, TrialId, TrialSpec};

/// Default number of retries of a trial attempt that ended in status `error`.
pub const DEFAULT_RETRIES: u32 = 2;

/// A spec that cannot be used. Displays as `FILE[:LINE]: PATH: what is wrong`.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum SpecError {
    /// The spec file could not be read.
    #[error("{}: cannot read the spec: {message}", file.display())]
    Read {
        /// The spec file.
        file: PathBuf,
        /// The I/O error.
        message: String,
    },
    /// A key, value or combination of values is not valid.
    #[error("{}{}: {}{message}{}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default(), if yaml_path.is_empty() || yaml_path == "." { String::new() } else { format!("`{yaml_path}`: ") }, suggestion.as_ref().map(|s| format!("; did you mean `{s}`?")).unwrap_or_default())]
    Invalid {
        /// The spec file.
        file: PathBuf,
        /// 1-based line of the culprit, when known.
        line: Option<usize>,
        /// YAML path of the culprit, e.g. `search.samples` or `parameters.hidden_size`.
        yaml_path: String,
        /// What is wrong and what to do.
        message: String,
        /// The nearest valid key or value for a misspelling.
        suggestion: Option<String>,
    },
}

impl SpecError {
    /// The YAML path of the culprit, when the error is about one.
    pub fn yaml_path(&self) -> Option<&str> {
        match self {
            SpecError::Invalid { yaml_path, .. } => Some(yaml_path),
            SpecError::Read { .. } => None,
        }
    }
}

/// A sweep spec as written in YAML. Every section but `name` is optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// Sweep name: letters, digits, `-` and `_`. Names the run folder and the trial ids.
    pub name: String,
    /// Where the shipments come from and which series to train on.
    #[serde(default)]
    pub data: SpecData,
    /// Input window, horizon and gap. Default 30 / 30 / 0.
    #[serde(default)]
    pub window: WindowConfig,
    /// Chronological split. Default fractions 0.7 / 0.1 / 0.2. Written as a one-key map,
    /// `{fractions: {train, val, test}}` or `{dates: {train_end, val_end}}`.
    #[serde(default, deserialize_with = "crate::config::split_from_map")]
    pub split: SplitConfig,
    /// Calendar. Default Vietnamese holidays. `holidays: {file: {path, replace}}` is written
    /// as a one-key map, like `split`.
    #[serde(default, deserialize_with = "crate::config::via_json")]
    pub calendar: CalendarConfig,
    /// The validation metric trials are ranked by.
    #[serde(default)]
    pub objective: Objective,
    /// Grid or random search.
    #[serde(default)]
    pub search: Search,
    /// Hyperparameters: a value, a list or a distribution per key (see [`crate::space`]).
    #[serde(default)]
    pub parameters: BTreeMap<String, Value>,
    /// Per-category parameters that replace (or add to) `parameters` for that category.
    #[serde(default)]
    pub overrides: BTreeMap<String, Override>,
    /// Retries of an attempt that ended in status `error`. Default 2.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// The file and text the spec was read from, for error locations. Not part of the YAML.
    #[serde(skip)]
    pub source: SpecSource,
}

/// Where a spec came from: errors found after parsing (during expansion) still name the file
/// and line.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpecSource {
    /// The spec file (or a label such as `<stdin>`).
    pub file: PathBuf,
    /// Its text.
    pub text: String,
}

fn default_retries() -> u32 {
    DEFAULT_RETRIES
}

/// The `data` section: a [`DataConfig`] plus the series to train on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SpecData {
    /// CSV or Parquet file, relative to the spec's folder; absent means the built-in synthetic
    /// generator.
    pub path: Option<PathBuf>,
    /// Seed of the synthetic generator. Default 7.
    pub synthetic_seed: Option<u64>,
    /// Column names.
    pub columns: Columns,
    /// Date parsing.
    pub date_format: DateFormat,
    /// Negative volume policy.
    pub negative_volume: NegativeVolume,
    /// `all` (default) or a list of categories.
    pub categories: Categories,
    /// Train per category total (default) or per brand of each category.
    pub level: Level,
}

impl SpecData {
    /// The data loader's settings.
    pub fn config(&self) -> DataConfig {
        DataConfig {
            path: self.path.clone(),
            synthetic_seed: self.synthetic_seed,
            columns: self.columns.clone(),
            date_format: self.date_format,
            negative_volume: self.negative_volume,
        }
    }
}

/// Which categories a sweep trains on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Categories {
    /// Every category in the data.
    #[default]
    All,
    /// These categories, in this order.
    List(Vec<String>),
}

impl Serialize for Categories {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Categories::All => serializer.serialize_str("all"),
            Categories::List(list) => list.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Categories {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CategoriesVisitor;

        impl<'de> Visitor<'de> for CategoriesVisitor {
            type Value = Categories;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`all` or a list of categories such as [DRY, TET]")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Categories, E> {
                if v.eq_ignore_ascii_case("all") {
                    Ok(Categories::All)
                } else {
                    Ok(Categories::List(vec![v.to_string()]))
                }
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Categories, A::Error> {
                let mut list = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    list.push(item);
                }
                Ok(Categories::List(list))
            }
        }

        deserializer.deserialize_any(CategoriesVisitor)
    }
}

/// Series granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// One series per category (the category total). Default.
    #[default]
    Category,
    /// One series per brand of each category.
    Brand,
}

/// A validation metric trials can be ranked by. Test metrics are never a choice: ranking on test
/// would leak the test span into model selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// The trial's own asymmetric loss in CBM on validation. Default.
    #[default]
    ValAsymmetricLoss,
    /// Validation loss in model space (what early stopping watches).
    ValLoss,
    /// Validation WAPE.
    ValWape,
    /// Validation MAE.
    ValMae,
    /// Validation RMSE.
    ValRmse,
    /// Validation MAPE.
    ValMape,
    /// Validation skill versus the seasonal naive baseline.
    ValSkillVsSeasonalNaive,
    /// Validation skill versus the weekday profile baseline.
    ValSkillVsWeekdayProfile,
}

impl Metric {
    /// The metric of a finished trial.
    pub fn value(self, metrics: &TrialMetrics) -> f64 {
        let val = &metrics.val;
        match self {
            Metric::ValAsymmetricLoss => val.model.asymmetric_loss,
            Metric::ValLoss => val.loss,
            Metric::ValWape => val.model.wape,
            Metric::ValMae => val.model.mae,
            Metric::ValRmse => val.model.rmse,
            Metric::ValMape => val.model.mape,
            Metric::ValSkillVsSeasonalNaive => val.skill_vs_seasonal_naive(),
            Metric::ValSkillVsWeekdayProfile => val.skill_vs_weekday_profile(),
        }
    }

    /// The direction that is better when none is given: up for skills, down for errors.
    pub fn default_direction(self) -> Direction {
        match self {
            Metric::ValSkillVsSeasonalNaive | Metric::ValSkillVsWeekdayProfile => {
                Direction::Maximize
            }
            _ => Direction::Minimize,
        }
    }

    /// The snake_case name, as written in a spec.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::ValAsymmetricLoss => "val_asymmetric_loss",
            Metric::ValLoss => "val_loss",
            Metric::ValWape => "val_wape",
            Metric::ValMae => "val_mae",
            Metric::ValRmse => "val_rmse",
            Metric::ValMape => "val_mape",
            Metric::ValSkillVsSeasonalNaive => "val_skill_vs_seasonal_naive",
            Metric::ValSkillVsWeekdayProfile => "val_skill_vs_weekday_profile",
        }
    }
}

/// Whether a larger or a smaller objective is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Smaller is better.
    Minimize,
    /// Larger is better.
    Maximize,
}

/// The `objective` section.
///
/// The three weights fix the asymmetric loss that scores every trial (`val_asymmetric_loss`),
/// whatever penalties the trial trains with. A weight not given takes the value of the parameter
/// of the same name when it is the same in every trial of the series, else its default
/// (under 3, over 1, peak boost 2).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Objective {
    /// The metric. Default `val_asymmetric_loss`.
    pub metric: Metric,
    /// Default: minimize for errors and losses, maximize for skills.
    pub direction: Option<Direction>,
    /// Evaluation weight of under-forecasts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub under_penalty: Option<f64>,
    /// Evaluation weight of over-forecasts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub over_penalty: Option<f64>,
    /// Evaluation multiplier on peak-season days.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_season_boost: Option<f64>,
}

impl Objective {
    /// The direction in force.
    pub fn direction(&self) -> Direction {
        self.direction
            .unwrap_or_else(|| self.metric.default_direction())
    }

    /// The evaluation weights of a series whose trials have the parameter sets `points`: a
    /// weight given in the objective wins; else the parameter's value when every point has the
    /// same one (a missing key counting as the default); else the default.
    pub fn weights<'a>(
        &self,
        points: impl Iterator<Item = &'a BTreeMap<String, Value>>,
    ) -> EvaluationWeights {
        let points: Vec<&BTreeMap<String, Value>> = points.collect();
        let defaults = EvaluationWeights::default();
        let fixed = |key: &str, default: f64| -> f64 {
            let values: BTreeSet<u64> = points
                .iter()
                .map(|p| {
                    p.get(key)
                        .and_then(Value::as_f64)
                        .unwrap_or(default)
                        .to_bits()
                })
                .collect();
            match values.len() {
                1 => f64::from_bits(*values.iter().next().expect("one value")),
                _ => default,
            }
        };
        EvaluationWeights {
            under_penalty: self
                .under_penalty
                .unwrap_or_else(|| fixed("under_penalty", defaults.under_penalty)),
            over_penalty: self
                .over_penalty
                .unwrap_or_else(|| fixed("over_penalty", defaults.over_penalty)),
            peak_season_boost: self
                .peak_season_boost
                .unwrap_or_else(|| fixed("peak_season_boost", defaults.peak_season_boost)),
        }
    }
}

/// Search method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Every combination of the parameter lists. Default.
    #[default]
    Grid,
    /// Seeded samples of the parameter distributions.
    Random,
}

/// The `search` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Search {
    /// Grid (default) or random.
    pub method: Method,
    /// Random search: samples per series (required, at least 1).
    pub samples: Option<usize>,
    /// Random search: seed. Default 0.
    pub seed: u64,
    /// Cap on the number of trials of the whole sweep, taken round-robin over the series so
    /// that every series gets its share. Default: no cap.
    pub max_trials: Option<usize>,
}

/// One category's overrides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Override {
    /// Parameters replacing the sweep's for this category.
    pub parameters: BTreeMap<String, Value>,
}

/// A duplicate parameter set that expansion dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Duplicate {
    /// The series.
    pub series: SeriesKey,
    /// The canonical parameters of the dropped point.
    pub params: BTreeMap<String, Value>,
    /// The trial that already has them.
    pub same_as: TrialId,
}

/// The trials of a sweep, in run order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Sweep name.
    pub sweep: String,
    /// Trials to run.
    pub trials: Vec<TrialSpec>,
    /// Points dropped because an earlier point had the same canonical parameters.
    pub duplicates: Vec<Duplicate>,
    /// Trials dropped by `max_trials`.
    pub capped: usize,
}

impl Plan {
    /// Trials per series, in series order.
    pub fn counts(&self) -> Vec<(SeriesKey, usize)> {
        let mut counts: Vec<(SeriesKey, usize)> = Vec::new();
        for t in &self.trials {
            match counts.iter_mut().find(|(k, _)| *k == t.series) {
                Some((_, n)) => *n += 1,
                None => counts.push((t.series.clone(), 1)),
            }
        }
        counts
    }

    /// Parameters whose value differs between trials.
    pub fn varying(&self) -> Vec<String> {
        varying_keys(self.trials.iter().map(|t| &t.params))
    }

    /// Keeps at most `n` trials, taken round-robin over the series so that each series keeps
    /// its first trials; run order is otherwise unchanged.
    pub fn cap(&mut self, n: usize) {
        if self.trials.len() <= n {
            return;
        }
        let mut rank_in_series: BTreeMap<&SeriesKey, usize> = BTreeMap::new();
        let mut order: Vec<(usize, usize, usize)> = Vec::with_capacity(self.trials.len());
        let series_order: Vec<&SeriesKey> = self.counts_keys();
        for (i, t) in self.trials.iter().enumerate() {
            let r = rank_in_series.entry(&t.series).or_default();
            let s = series_order
                .iter()
                .position(|k| **k == t.series)
                .expect("every trial's series is listed");
            order.push((*r, s, i));
            *r += 1;
        }
        order.sort();
        let keep: BTreeSet<usize> = order.iter().take(n).map(|(_, _, i)| *i).collect();

        let before = self.trials.len();
        let mut i = 0;
        self.trials.retain(|_| {
            i += 1;
            keep.contains(&(i - 1))
        });
        self.capped += before - self.trials.len();
    }

    fn counts_keys(&self) -> Vec<&SeriesKey> {
        let mut keys: Vec<&SeriesKey> = Vec::new();
        for t in &self.trials {
            if !keys.contains(&&t.series) {
                keys.push(&t.series);
            }
        }
        keys
    }
}

/// Keys whose value (a missing key meaning the default) is not the same in every set.
pub fn varying_keys<'a>(sets: impl Iterator<Item = &'a BTreeMap<String, Value>>) -> Vec<String> {
    let sets: Vec<&BTreeMap<String, Value>> = sets.collect();
    let keys: BTreeSet<&String> = sets.iter().flat_map(|s| s.keys()).collect();
    keys.into_iter()
        .filter(|k| {
            let values: BTreeSet<String> = sets
                .iter()
                .map(|s| s.get(*k).map(|v| v.to_string()).unwrap_or_default())
                .collect();
            values.len() > 1
        })
        .cloned()
        .collect()
}

impl SweepSpec {
    /// Reads, parses and validates a spec file. A relative `data.path` is resolved against the
    /// spec's folder.
    pub fn load(file: &Path) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(file).map_err(|err| SpecError::Read {
            file: file.to_path_buf(),
            message: err.to_string(),
        })?;
        let mut spec = Self::from_yaml(&text, file)?;
        if let Some(path) = spec.data.path.as_mut() {
            if path.is_relative() {
                if let Some(dir) = file.parent() {
                    *path = dir.join(&*path);
                }
            }
        }
        Ok(spec)
    }

    /// Parses and validates spec text; `file` only names the source in errors.
    pub fn from_yaml(text: &str, file: &Path) -> Result<Self, SpecError> {
        let deserializer = serde_norway::Deserializer::from_str(text);
        let mut spec: SweepSpec = serde_path_to_error::deserialize(deserializer)
            .map_err(|err| serde_error(text, file, err))?;
        spec.validate(text, file)?;
        spec.source = SpecSource {
            file: file.to_path_buf(),
            text: text.to_string(),
        };
        Ok(spec)
    }

    /// The pipeline settings every trial carries.
    pub fn pipeline(&self) -> PipelineConfig {
        PipelineConfig {
            window: self.window,
            split: self.split.clone(),
            calendar: self.calendar.clone(),
        }
    }

    /// Categories named in the spec, or `None` for `all`.
    pub fn categories(&self) -> Option<&[String]> {
        match &self.data.categories {
            Categories::All => None,
            Categories::List(list) => Some(list),
        }
    }

    /// Expands the spec over `series` (in that order) into trials of a dataset whose bytes hash
    /// to `dataset_digest`.
    ///
    /// Errors name the parameter (in `parameters` or in the category's override) whose value
    /// the model rejects, e.g. `learning_rate: 0`.
    pub fn plan(&self, series: &[SeriesKey], dataset_digest: &str) -> Result<Plan, SpecError> {
        let text = self.source.text.as_str();
        let file = self.source.file.as_path();
        let base = ParamSpace::parse(&self.parameters)
            .map_err(|err| space_error(text, file, "parameters", err))?;
        let mut plan = Plan {
            sweep: self.name.clone(),
            trials: Vec::new(),
            duplicates: Vec::new(),
            capped: 0,
        };
        let mut seen: BTreeMap<TrialId, ()> = BTreeMap::new();

        for key in series {
            let over = self.overrides.get(&key.category);
            let space = match over {
                Some(o) => {
                    let section = format!("overrides.{}.parameters", key.category);
                    let extra = ParamSpace::parse(&o.parameters)
                        .map_err(|err| space_error(text, file, &section, err))?;
                    base.merged(&extra)
                }
                None => base.clone(),
            };
            let points = match self.search.method {
                Method::Grid => space.grid(),
                Method::Random => space.random(self.search.samples.unwrap_or(0), self.search.seed),
            };
            let points = points.map_err(|err| {
                let section = section_of(err.key(), over, &key.category);
                space_error(text, file, &section, err)
            })?;

            let first_of_series = plan.trials.len();
            for point in points {
                let canonical = canonical_params(&point).map_err(|err| {
                    let param = match &err {
                        ParamError::UnknownKey { key, .. } | ParamError::Invalid { key, .. } => {
                            key.clone()
                        }
                    };
                    let section = section_of(Some(&param), over, &key.category);
                    let yaml_path = format!("{section}.{param}");
                    invalid(text, file, &yaml_path, param_message(&err), None)
                })?;
                let trial_id = trial_id(&self.name, key, &canonical);
                if seen.insert(trial_id.clone(), ()).is_some() {
                    plan.duplicates.push(Duplicate {
                        series: key.clone(),
                        params: canonical,
                        same_as: trial_id,
                    });
                    continue;
                }
                plan.trials.push(TrialSpec {
                    trial_id,
                    sweep: self.name.clone(),
                    series: key.clone(),
                    params: canonical,
                    pipeline: self.pipeline(),
                    dataset_digest: dataset_digest.to_string(),
                    evaluation: EvaluationWeights::default(),
                });
            }
            let series_trials = &mut plan.trials[first_of_series..];
            let weights = self
                .objective
                .weights(series_trials.iter().map(|t| &t.params));
            for trial in series_trials {
                trial.evaluation = weights;
            }
        }

        if let Some(n) = self.search.max_trials {
            plan.cap(n);
        }
        Ok(plan)
    }

    /// Checks that serde cannot express, each naming its YAML path.
    fn validate(&self, text: &str, file: &Path) -> Result<(), SpecError> {
        let fail = |path: &str, message: &str| Err(invalid(text, file, path, message.into(), None));

        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return fail(
                "name",
                "the sweep name must be non-empty and use only letters, digits, `-` and `_`",
            );
        }
        for (key, weight) in [
            ("objective.under_penalty", self.objective.under_penalty),
            ("objective.over_penalty", self.objective.over_penalty),
            (
                "objective.peak_season_boost",
                self.objective.peak_season_boost,
            ),
        ] {
            if weight.is_some_and(|w| !(w.is_finite() && w > 0.0)) {
                return fail(key, "must be a positive number");
            }
        }
        if self.window.input == 0 {
            return fail("window.input", "must be at least 1 day");
        }
        if self.window.horizon == 0 {
            return fail("window.horizon", "must be at least 1 day");
        }
        match &self.split {
            SplitConfig::Fractions { train, val, test } => {
                if [train, val, test].iter().any(|f| !(**f > 0.0 && **f < 1.0)) {
                    return fail(
                        "split.fractions",
                        "each fraction must lie strictly between 0 and 1",
                    );
                }
                if ((train + val + test) - 1.0).abs() > 1e-6 {
                    return fail(
                        "split.fractions",
                        &format!(
                            "train + val + test must add up to 1, got {}",
                            train + val + test
                        ),
                    );
                }
            }
            SplitConfig::Dates { train_end, val_end } => {
                if train_end >= val_end {
                    return fail("split.dates", "train_end must come before val_end");
                }
            }
        }
        if let Categories::List(list) = &self.data.categories {
            if list.is_empty() {
                return fail(
                    "data.categories",
                    "empty list; name at least one category or write `all`",
                );
            }
            let distinct: BTreeSet<&String> = list.iter().collect();
            if distinct.len() != list.len() {
                return fail("data.categories", "a category is listed twice");
            }
            for category in self.overrides.keys() {
                if !list.contains(category) {
                    return Err(invalid(
                        text,
                        file,
                        &format!("overrides.{category}"),
                        format!(
                            "`{category}` is not in data.categories ({})",
                            list.join(", ")
                        ),
                        nearest(
                            category,
                            &list.iter().map(String::as_str).collect::<Vec<_>>(),
                        ),
                    ));
                }
            }
        }
        match self.search.method {
            Method::Random => match self.search.samples {
                None => {
                    return fail(
                        "search.samples",
                        "random search needs `samples` (at least 1)",
                    )
                }
                Some(0) => return fail("search.samples", "must be at least 1"),
                Some(_) => {}
            },
            Method::Grid => {
                if self.search.samples.is_some() {
                    return fail(
                        "search.samples",
                        "only random search takes `samples`; remove it or set `method: random`",
                    );
                }
            }
        }
        if self.search.max_trials == Some(0) {
            return fail("search.max_trials", "must be at least 1");
        }
        if self.retries > 10 {
            return fail("retries", "at most 10 retries");
        }

        ParamSpace::parse(&self.parameters)
            .map_err(|err| space_error(text, file, "parameters", err))?;
        for (category, o) in &self.overrides {
            let section = format!("overrides.{category}.parameters");
            ParamSpace::parse(&o.parameters)
                .map_err(|err| space_error(text, file, &section, err))?;
        }
        Ok(())
    }
}

/// Where a parameter of a category's space was written: its override, or the base section.
fn section_of(param: Option<&str>, over: Option<&Override>, category: &str) -> String {
    match (param, over) {
        (Some(p), Some(o)) if o.parameters.contains_key(p) => {
            format!("overrides.{category}.parameters")
        }
        _ => "parameters".to_string(),
    }
}

fn param_message(err: &ParamError) -> String {
    match err {
        ParamError::UnknownKey { .. } => "unknown parameter".into(),
        ParamError::Invalid { message, .. } => message.clone(),
    }
}

fn space_error(text: &str, file: &Path, section: &str, err: SpaceError) -> SpecError {
    match err {
        SpaceError::UnknownKey { key, suggestion } => invalid(
            text,
            file,
            &format!("{section}.{key}"),
            "unknown parameter".into(),
            suggestion,
        ),
        SpaceError::Invalid { key, message } => {
            invalid(text, file, &format!("{section}.{key}"), message, None)
        }
        SpaceError::GridTooLarge { .. } => invalid(text, file, section, err.to_string(), None),
    }
}

fn invalid(
    text: &str,
    file: &Path,
    yaml_path: &str,
    message: String,
    suggestion: Option<String>,
) -> SpecError {
    SpecError::Invalid {
        file: file.to_path_buf(),
        line: locate(text, yaml_path),
        yaml_path: yaml_path.to_string(),
        message,
        suggestion,
    }
}

/// Turns a deserialisation error into a [`SpecError`]: the YAML path from
/// serde_path_to_error, the line from the YAML parser, and for an unknown field or variant the
/// nearest of the names serde expected.
fn serde_error(
    text: &str,
    file: &Path,
    err: serde_path_to_error::Error<serde_norway::Error>,
) -> SpecError {
    let yaml_path = err.path().to_string();
    let inner = err.inner();
    let raw = inner.to_string();
    let mut message = match raw.find(" at line ") {
        Some(i) => raw[..i].to_string(),
        None => raw.clone(),
    };
    // The YAML parser prefixes its own path ("search: unknown field ..."); the path is shown
    // separately, so drop it.
    if let Some((prefix, rest)) = message.split_once(": ") {
        if !prefix.contains(' ') && !prefix.contains('`') {
            message = rest.to_string();
        }
    }
    let line = inner
        .location()
        .map(|l| l.line())
        .or_else(|| locate(text, &yaml_path));

    // serde writes "unknown field `x`, expected one of `a`, `b`" (or "unknown variant").
    let suggestion =
        if message.starts_with("unknown field") || message.starts_with("unknown variant") {
            let names: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
            names
                .split_first()
                .and_then(|(culprit, expected)| nearest(culprit, expected))
        } else {
            None
        };
    let yaml_path = if message.starts_with("unknown field") {
        let culprit = message.split('`').nth(1).unwrap_or_default();
        if yaml_path == "." || yaml_path.is_empty() {
            culprit.to_string()
        } else if yaml_path == culprit || yaml_path.ends_with(&format!(".{culprit}")) {
            yaml_path
        } else {
            format!("{yaml_path}.{culprit}")
        }
    } else {
        yaml_path
    };

    SpecError::Invalid {
        file: file.to_path_buf(),
        line,
        yaml_path,
        message,
        suggestion,
    }
}

/// Best-effort line of a dotted YAML path in block-style text: each segment is looked for as
/// `segment:` on a later line indented deeper than the previous one.
fn locate(text: &str, yaml_path: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut start = 0;
    let mut indent: Option<usize> = None;
    let mut found = None;
    for segment in yaml_path
        .split('.')
        .filter(|s| !s.is_empty() && !s.starts_with('['))
    {
        let pos = (start..lines.len()).find(|&i| {
            let line = lines[i];
            let trimmed = line.trim_start().trim_start_matches("- ");
            let this_indent = line.len() - line.trim_start().len();
            indent.is_none_or(|ind| this_indent > ind)
                && (trimmed.starts_with(&format!("{segment}:"))
                    || trimmed.starts_with(&format!("\"{segment}\":")))
        })?;
        indent = Some(lines[pos].len() - lines[pos].trim_start().len());
        start = pos + 1;
        found = Some(pos + 1);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SweepSpec, SpecError> {
        SweepSpec::from_yaml(text, Path::new("spec.yaml"))
    }

    fn series(categories: &[&str]) -> Vec<SeriesKey> {
        categories
            .iter()
            .map(|c| SeriesKey {
                category: c.to_string(),
                brand: None,
            })
            .collect()
    }

    fn plan(text: &str, categories: &[&str]) -> Result<Plan, SpecError> {
        parse(text)?.plan(&series(categories), "digest")
    }

    #[test]
    fn evaluation_weights_are_carried_in_every_trial_of_a_series() {
        let text = "name: fair
objective: {over_penalty: 1.5}
parameters:
  under_penalty: [1.0, 6.0]
  peak_season_boost: 4.0
overrides:
  TET:
    parameters: {under_penalty: 5.0}
";
        let plan = plan(text, &["DRY", "TET"]).unwrap();

        let weights = |category: &str| -> Vec<EvaluationWeights> {
            plan.trials
                .iter()
                .filter(|t| t.series.category == category)
                .map(|t| t.evaluation)
                .collect()
        };
        // DRY varies under_penalty: the default weight, the same for both trials.
        let dry = EvaluationWeights {
            under_penalty: 3.0,
            over_penalty: 1.5,
            peak_season_boost: 4.0,
        };
        assert_eq!(weights("DRY"), vec![dry, dry]);
        // TET fixes it: its value.
        let tet = EvaluationWeights {
            under_penalty: 5.0,
            ..dry
        };
        assert_eq!(weights("TET"), vec![tet]);
    }

    #[test]
    fn non_positive_evaluation_weight_is_rejected_with_its_path() {
        let err = parse("name: demo\nobjective: {under_penalty: 0}\n").unwrap_err();
        assert_eq!(err.yaml_path(), Some("objective.under_penalty"));
    }

    #[test]
    fn trial_message_without_evaluation_still_parses() {
        let plan = plan("name: demo\n", &["DRY"]).unwrap();
        let mut json = serde_json::to_value(&plan.trials[0]).unwrap();
        json.as_object_mut().unwrap().remove("evaluation");
        let trial: TrialSpec = serde_json::from_value(json).unwrap();
        assert_eq!(trial.evaluation, EvaluationWeights::default());
    }

    #[test]
    fn minimal_spec_takes_defaults() {
        let spec = parse("name: demo\n").unwrap();
        assert_eq!(spec.retries, DEFAULT_RETRIES);
        assert_eq!(spec.objective.metric, Metric::ValAsymmetricLoss);
        assert_eq!(spec.objective.direction(), Direction::Minimize);
        assert_eq!(spec.data.categories, Categories::All);
    }

    #[test]
    fn misspelt_top_level_key_names_line_and_nearest_key() {
        let err = parse("name: demo\nparamters:\n  hidden_size: 8\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("spec.yaml:2"), "{text}");
        assert!(text.contains("`paramters`"), "{text}");
        assert!(text.contains("did you mean `parameters`?"), "{text}");
    }

    #[test]
    fn misspelt_nested_key_names_its_yaml_path() {
        let err = parse("name: demo\nsearch:\n  method: random\n  sampels: 3\n").unwrap_err();
        assert_eq!(err.yaml_path(), Some("search.sampels"));
        assert!(err.to_string().contains("did you mean `samples`?"), "{err}");
    }

    #[test]
    fn misspelt_parameter_names_its_yaml_path_and_nearest_key() {
        let err = parse("name: demo\nparameters:\n  hiden_size: [8, 16]\n").unwrap_err();
        assert_eq!(err.yaml_path(), Some("parameters.hiden_size"));
        let text = err.to_string();
        assert!(text.contains("spec.yaml:3"), "{text}");
        assert!(text.contains("did you mean `hidden_size`?"), "{text}");
    }

    #[test]
    fn wrong_type_names_yaml_path() {
        let err = parse("name: demo\nwindow:\n  horizon: soon\n").unwrap_err();
        assert_eq!(err.yaml_path(), Some("window.horizon"));
    }

    #[test]
    fn misspelt_metric_suggests_nearest_variant() {
        let err = parse("name: demo\nobjective:\n  metric: val_wap\n").unwrap_err();
        assert!(
            err.to_string().contains("did you mean `val_wape`?"),
            "{err}"
        );
    }

    #[test]
    fn invalid_learning_rate_in_override_names_override_path() {
        let text = "name: demo\ndata:\n  categories: [DRY, TET]\noverrides:\n  TET:\n    parameters:\n      learning_rate: 0\n";
        let err = plan(text, &["DRY", "TET"]).unwrap_err();
        assert_eq!(
            err.yaml_path(),
            Some("overrides.TET.parameters.learning_rate")
        );
        assert!(err.to_string().contains("spec.yaml:7"), "{err}");
    }

    #[test]
    fn grid_plan_counts_each_series() {
        let text = "name: demo\nparameters:\n  hidden_size: [8, 16]\n  dropout: [0.1, 0.2]\noverrides:\n  TET:\n    parameters:\n      hidden_size: 32\n";
        let p = plan(text, &["DRY", "TET"]).unwrap();
        let counts: Vec<usize> = p.counts().into_iter().map(|(_, n)| n).collect();
        assert_eq!(counts, vec![4, 2]);
        assert_eq!(
            p.varying(),
            vec!["dropout".to_string(), "hidden_size".to_string()]
        );
        assert!(p.duplicates.is_empty());
    }

    #[test]
    fn duplicate_points_are_dropped_and_reported() {
        let text = "name: demo\nparameters:\n  hidden_size: [8, 8.0, 128]\n  n_layers: [2, 2]\n";
        let p = plan(text, &["DRY"]).unwrap();
        // 3 x 2 points; `8.0` is `8`, and `128` and `n_layers: 2` are the defaults.
        assert_eq!(p.trials.len(), 2);
        assert_eq!(p.duplicates.len(), 4);
    }

    #[test]
    fn expansion_is_deterministic() {
        let text = "name: demo\nsearch:\n  method: random\n  samples: 5\n  seed: 9\nparameters:\n  dropout: {uniform: [0.0, 0.5]}\n";
        let a = plan(text, &["DRY", "TET"]).unwrap();
        let b = plan(text, &["DRY", "TET"]).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.trials.len(), 10);
    }

    #[test]
    fn max_trials_caps_round_robin_over_series() {
        let text =
            "name: demo\nsearch:\n  max_trials: 3\nparameters:\n  hidden_size: [8, 16, 32]\n";
        let p = plan(text, &["DRY", "TET"]).unwrap();
        let counts: Vec<usize> = p.counts().into_iter().map(|(_, n)| n).collect();
        assert_eq!(counts, vec![2, 1]);
        assert_eq!(p.capped, 3);
    }

    #[test]
    fn random_search_without_samples_is_rejected() {
        for text in [
            "name: demo\nsearch:\n  method: random\n",
            "name: demo\nsearch:\n  method: random\n  samples: 0\n",
        ] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.yaml_path(), Some("search.samples"));
        }
    }

    #[test]
    fn override_for_unlisted_category_is_rejected() {
        let text =
            "name: demo\ndata:\n  categories: [DRY]\noverrides:\n  DYR:\n    parameters: {}\n";
        let err = parse(text).unwrap_err();
        assert!(err.to_string().contains("did you mean `DRY`?"), "{err}");
    }

    #[test]
    fn split_is_read_from_a_one_key_map() {
        let spec = parse(
            "name: demo\nsplit:\n  dates:\n    train_end: 2024-06-30\n    val_end: 2024-10-31\n",
        )
        .unwrap();
        assert!(matches!(spec.split, SplitConfig::Dates { .. }));
        let err = parse("name: demo\nsplit:\n  date:\n    train_end: 2024-06-30\n").unwrap_err();
        assert_eq!(err.yaml_path(), Some("split"));
    }

    #[test]
    fn calendar_file_source_is_read_from_a_one_key_map() {
        let spec =
            parse("name: demo\ncalendar:\n  holidays:\n    file: {path: h.csv, replace: true}\n")
                .unwrap();
        assert!(matches!(
            spec.calendar.holidays,
            crate::config::CalendarSource::File { replace: true, .. }
        ));
        let spec = parse("name: demo\ncalendar:\n  holidays: none\n").unwrap();
        assert_eq!(spec.calendar.holidays, crate::config::CalendarSource::None);
    }

    #[test]
    fn locate_follows_nested_sections() {
        let text = "name: x\nsearch:\n  seed: 1\nparameters:\n  seed: 2\n";
        assert_eq!(locate(text, "parameters.seed"), Some(5));
        assert_eq!(locate(text, "search.seed"), Some(3));
        assert_eq!(locate(text, "missing"), None);
    }
}
