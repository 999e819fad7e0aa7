//! The search space of a sweep and its expansion into parameter sets.
//!
//! A spec's `parameters` section maps each hyperparameter key to one of:
//!
//! - a value (`hidden_size: 64`), fixed for every trial;
//! - a list of candidates (`hidden_size: [32, 64]`); for the list-valued keys
//!   (`dense_hidden_sizes`, `fusion_hidden_sizes`) a list of numbers is one fixed value and a
//!   list of lists is the candidates;
//! - a distribution: `{uniform: [a, b]}`, `{log_uniform: [a, b]}`, `{int_uniform: [a, b]}`
//!   (both ends included) or `{choice: [..]}`.
//!
//! Grid search takes the cartesian product of the finite domains; random search draws seeded
//! samples, without replacement when the space is finite. Parameter sets are canonicalised
//! ([`canonical_params`]) before they are hashed into a [`TrialId`] ([`trial_id`]), so `1` and
//! `1.0` of an integer key give the same trial and key order never matters.

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::dataset::SeriesKey;
use crate::error::ParamError;
use crate::params::HyperParams;
use crate::trial::TrialId;

/// Largest number of parameter sets a grid may expand to.
pub const MAX_GRID: usize = 100_000;

/// Keys whose value is itself a list of integers.
const LIST_KEYS: &[&str] = &["dense_hidden_sizes", "fusion_hidden_sizes"];

/// Distribution names accepted inside `{name: ..}`.
const DISTRIBUTIONS: &[&str] = &["uniform", "log_uniform", "int_uniform", "choice"];

/// A search space entry that cannot be used. `key` is the hyperparameter it is about.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum SpaceError {
    /// The key is not a hyperparameter.
    #[error("unknown parameter `{key}`{}", suggestion.as_ref().map(|s| format!("; did you mean `{s}`?")).unwrap_or_default())]
    UnknownKey {
        /// The key as written.
        key: String,
        /// The nearest valid key.
        suggestion: Option<String>,
    },
    /// The value or distribution is malformed.
    #[error("{message}")]
    Invalid {
        /// The key.
        key: String,
        /// What is wrong and what to write instead.
        message: String,
    },
    /// The grid has too many points.
    #[error("the grid expands to {size} trials (more than {MAX_GRID}); narrow the lists or use `search.method: random` with `samples`")]
    GridTooLarge {
        /// Size of the cartesian product (saturated).
        size: u128,
    },
}

impl SpaceError {
    /// The hyperparameter the error is about, when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            SpaceError::UnknownKey { key, .. } | SpaceError::Invalid { key, .. } => Some(key),
            SpaceError::GridTooLarge { .. } => None,
        }
    }
}

/// The values one hyperparameter takes in a sweep.
#[derive(Debug, Clone, PartialEq)]
pub enum Domain {
    /// A finite set of candidates (a fixed value is a set of one).
    Values(Vec<Value>),
    /// Real numbers drawn uniformly from `[low, high]`.
    Uniform {
        /// Lower end.
        low: f64,
        /// Upper end.
        high: f64,
    },
    /// Real numbers whose logarithm is uniform on `[ln low, ln high]`; `low > 0`.
    LogUniform {
        /// Lower end.
        low: f64,
        /// Upper end.
        high: f64,
    },
    /// Integers drawn uniformly from `low..=high`.
    IntUniform {
        /// Lower end, included.
        low: i64,
        /// Upper end, included.
        high: i64,
    },
}

impl Domain {
    /// Reads one entry of a `parameters` section.
    pub fn parse(key: &str, raw: &Value) -> Result<Self, SpaceError> {
        let invalid = |message: String| SpaceError::Invalid {
            key: key.to_string(),
            message,
        };
        match raw {
            Value::Object(obj) => {
                if obj.len() != 1 {
                    return Err(invalid(format!(
                        "a distribution is a map with exactly one of {}, e.g. {{uniform: [0.1, 0.5]}}",
                        DISTRIBUTIONS.join(", ")
                    )));
                }
                let (name, args) = obj.iter().next().expect("map has one entry");
                match name.as_str() {
                    "uniform" | "log_uniform" => {
                        let (low, high) = float_pair(args).ok_or_else(|| {
                            invalid(format!("`{name}` takes two numbers [low, high]"))
                        })?;
                        if !(low.is_finite() && high.is_finite() && low < high) {
                            return Err(invalid(format!(
                                "`{name}` needs finite bounds with low < high, got [{low}, {high}]"
                            )));
                        }
                        if name == "uniform" {
                            Ok(Domain::Uniform { low, high })
                        } else if low <= 0.0 {
                            Err(invalid(format!(
                                "`log_uniform` needs a positive lower bound, got {low}"
                            )))
                        } else {
                            Ok(Domain::LogUniform { low, high })
                        }
                    }
                    "int_uniform" => {
                        let (low, high) = int_pair(args).ok_or_else(|| {
                            invalid("`int_uniform` takes two integers [low, high]".to_string())
                        })?;
                        if low > high {
                            return Err(invalid(format!(
                                "`int_uniform` needs low <= high, got [{low}, {high}]"
                            )));
                        }
                        Ok(Domain::IntUniform { low, high })
                    }
                    "choice" => match args {
                        Value::Array(items) if !items.is_empty() => {
                            Ok(Domain::Values(items.clone()))
                        }
                        Value::Array(_) => Err(invalid("`choice` needs at least one value".into())),
                        _ => Err(invalid("`choice` takes a list of values".into())),
                    },
                    other => Err(invalid(format!(
                        "unknown distribution `{other}`{}; use one of {}",
                        crate::params::nearest(other, DISTRIBUTIONS)
                            .map(|s| format!(" (did you mean `{s}`?)"))
                            .unwrap_or_default(),
                        DISTRIBUTIONS.join(", ")
                    ))),
                }
            }
            Value::Array(items) if items.is_empty() => Err(invalid(
                "empty list; give at least one value or remove the key".into(),
            )),
            Value::Array(items) if LIST_KEYS.contains(&key) => {
                if items.iter().all(Value::is_array) {
                    Ok(Domain::Values(items.clone()))
                } else {
                    Ok(Domain::Values(vec![raw.clone()]))
                }
            }
            Value::Array(items) => Ok(Domain::Values(items.clone())),
            Value::Null => Err(invalid(
                "no value; give a value, a list or a distribution".into(),
            )),
            _ => Ok(Domain::Values(vec![raw.clone()])),
        }
    }

    /// Number of distinct values, or `None` for a continuous distribution.
    pub fn len(&self) -> Option<usize> {
        match self {
            Domain::Values(values) => Some(values.len()),
            Domain::IntUniform { low, high } => usize::try_from(high - low + 1).ok(),
            Domain::Uniform { .. } | Domain::LogUniform { .. } => None,
        }
    }

    /// True when the domain holds no value (never for a parsed domain).
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// True when trials can differ in this parameter.
    pub fn varies(&self) -> bool {
        self.len() != Some(1)
    }

    /// Every value of a finite domain, in order.
    fn values(&self) -> Option<Vec<Value>> {
        match self {
            Domain::Values(values) => Some(values.clone()),
            Domain::IntUniform { low, high } => Some((*low..=*high).map(Value::from).collect()),
            Domain::Uniform { .. } | Domain::LogUniform { .. } => None,
        }
    }

    /// Draws one value. Real numbers are rounded to 4 significant digits so that trial tables
    /// stay readable; two draws that round to the same value are the same trial.
    fn sample(&self, rng: &mut StdRng) -> Value {
        match self {
            Domain::Values(values) => values[rng.random_range(0..values.len())].clone(),
            Domain::IntUniform { low, high } => Value::from(rng.random_range(*low..=*high)),
            Domain::Uniform { low, high } => float_value(round_sig(rng.random_range(*low..=*high))),
            Domain::LogUniform { low, high } => {
                let x = rng.random_range(low.ln()..=high.ln()).exp();
                float_value(round_sig(x.clamp(*low, *high)))
            }
        }
    }
}

/// A parsed `parameters` section: one domain per hyperparameter key.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParamSpace {
    /// Domains by key.
    pub domains: BTreeMap<String, Domain>,
}

impl ParamSpace {
    /// Parses a `parameters` section, rejecting unknown keys with the nearest valid one.
    pub fn parse(raw: &BTreeMap<String, Value>) -> Result<Self, SpaceError> {
        let mut domains = BTreeMap::new();
        for (key, value) in raw {
            if !HyperParams::KEYS.contains(&key.as_str()) {
                return Err(SpaceError::UnknownKey {
                    key: key.clone(),
                    suggestion: crate::params::nearest(key, HyperParams::KEYS),
                });
            }
            domains.insert(key.clone(), Domain::parse(key, value)?);
        }
        Ok(Self { domains })
    }

    /// This space with the domains of `overrides` replacing (or adding) keys.
    pub fn merged(&self, overrides: &ParamSpace) -> ParamSpace {
        let mut domains = self.domains.clone();
        domains.extend(overrides.domains.clone());
        ParamSpace { domains }
    }

    /// Keys whose domain has more than one value.
    pub fn varying(&self) -> Vec<String> {
        self.domains
            .iter()
            .filter(|(_, d)| d.varies())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Number of points, or `None` when a domain is continuous. Saturates at `u128::MAX`.
    pub fn size(&self) -> Option<u128> {
        self.domains.values().try_fold(1u128, |acc, d| {
            d.len().map(|n| acc.saturating_mul(n as u128))
        })
    }

    /// The cartesian product of every domain, in a stable order (keys sorted, values in the
    /// order written). A continuous distribution is an error naming the key.
    pub fn grid(&self) -> Result<Vec<BTreeMap<String, Value>>, SpaceError> {
        for (key, domain) in &self.domains {
            if domain.len().is_none() {
                return Err(SpaceError::Invalid {
                    key: key.clone(),
                    message: "a continuous distribution cannot be enumerated by grid search; \
                              use `search.method: random` or give a list"
                        .into(),
                });
            }
        }
        let size = self.size().expect("every domain is finite");
        if size > MAX_GRID as u128 {
            return Err(SpaceError::GridTooLarge { size });
        }

        let mut points = vec![BTreeMap::new()];
        for (key, domain) in &self.domains {
            let values = domain.values().expect("every domain is finite");
            let mut next = Vec::with_capacity(points.len() * values.len());
            for point in &points {
                for value in &values {
                    let mut p: BTreeMap<String, Value> = point.clone();
                    p.insert(key.clone(), value.clone());
                    next.push(p);
                }
            }
            points = next;
        }
        Ok(points)
    }

    /// `samples` seeded draws. A finite space (up to [`MAX_GRID`] points) is sampled without
    /// replacement and yields at most its size; otherwise draws that repeat an earlier one are
    /// dropped and redrawn a bounded number of times.
    pub fn random(
        &self,
        samples: usize,
        seed: u64,
    ) -> Result<Vec<BTreeMap<String, Value>>, SpaceError> {
        let mut rng = StdRng::seed_from_u64(seed);

        if let Some(size) = self.size().filter(|s| *s <= MAX_GRID as u128) {
            let grid = self.grid()?;
            let amount = samples.min(size as usize);
            let picked = rand::seq::index::sample(&mut rng, grid.len(), amount);
            return Ok(picked.into_iter().map(|i| grid[i].clone()).collect());
        }

        let mut seen = BTreeSet::new();
        let mut points = Vec::with_capacity(samples);
        let mut draws_left = samples.saturating_mul(20).max(100);
        while points.len() < samples && draws_left > 0 {
            draws_left -= 1;
            let point: BTreeMap<String, Value> = self
                .domains
                .iter()
                .map(|(k, d)| (k.clone(), d.sample(&mut rng)))
                .collect();
            if seen.insert(
                Value::from(point.clone().into_iter().collect::<serde_json::Map<_, _>>())
                    .to_string(),
            ) {
                points.push(point);
            }
        }
        Ok(points)
    }
}

/// The canonical form of a parameter set: validated through [`HyperParams`], integral floats of
/// integer keys as integers, and only the keys whose value differs from the default. Two sets
/// that train the same model have the same canonical form.
pub fn canonical_params(
    params: &BTreeMap<String, Value>,
) -> Result<BTreeMap<String, Value>, ParamError> {
    let typed = HyperParams::from_map(params).map_err(|err| name_culprit(params, err))?;
    let full = serde_json::to_value(&typed).expect("hyperparameters serialise");
    let default = serde_json::to_value(HyperParams::default()).expect("hyperparameters serialise");
    let (Value::Object(full), Value::Object(default)) = (full, default) else {
        unreachable!("hyperparameters serialise to a map")
    };
    Ok(full
        .into_iter()
        .filter(|(k, v)| default.get(k) != Some(v))
        .collect())
}

/// Stable trial id: the first 16 hex digits of SHA-256 over the sweep name, the series and the
/// canonical parameters (as compact JSON with sorted keys).
pub fn trial_id(sweep: &str, series: &SeriesKey, canonical: &BTreeMap<String, Value>) -> TrialId {
    let mut hasher = Sha256::new();
    hasher.update(sweep.as_bytes());
    hasher.update([0]);
    hasher.update(series.category.as_bytes());
    hasher.update([0]);
    hasher.update(series.brand.as_deref().unwrap_or("").as_bytes());
    hasher.update([0]);
    hasher.update(
        serde_json::to_string(canonical)
            .expect("json values serialise")
            .as_bytes(),
    );
    let digest = hasher.finalize();
    TrialId(hex::encode(&digest[..8]))
}

/// A type error of the whole map may not say which key it is about; trying each key alone
/// finds it, so the message can name the YAML path.
fn name_culprit(params: &BTreeMap<String, Value>, err: ParamError) -> ParamError {
    match &err {
        ParamError::Invalid { key, .. } if !HyperParams::KEYS.contains(&key.as_str()) => params
            .iter()
            .find_map(|(k, v)| {
                let alone = BTreeMap::from([(k.clone(), v.clone())]);
                HyperParams::from_map(&alone).err().map(|e| match e {
                    ParamError::Invalid { message, .. } => ParamError::Invalid {
                        key: k.clone(),
                        message,
                    },
                    other => other,
                })
            })
            .unwrap_or(err),
        _ => err,
    }
}

fn float_pair(args: &Value) -> Option<(f64, f64)> {
    match args {
        Value::Array(items) if items.len() == 2 => Some((items[0].as_f64()?, items[1].as_f64()?)),
        _ => None,
    }
}

fn int_pair(args: &Value) -> Option<(i64, i64)> {
    let int = |v: &Value| {
        v.as_i64().or_else(|| {
            v.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        })
    };
    match args {
        Value::Array(items) if items.len() == 2 => Some((int(&items[0])?, int(&items[1])?)),
        _ => None,
    }
}

fn round_sig(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let magnitude = x.abs().log10().floor() as i32;
    let factor = 10f64.powi(3 - magnitude);
    (x * factor).round() / factor
}

fn float_value(x: f64) -> Value {
    serde_json::Number::from_f64(x)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn space(raw: Value) -> ParamSpace {
        let map: BTreeMap<String, Value> = serde_json::from_value(raw).unwrap();
        ParamSpace::parse(&map).unwrap()
    }

    fn key(category: &str) -> SeriesKey {
        SeriesKey {
            category: category.into(),
            brand: None,
        }
    }

    fn id_of(raw: Value) -> TrialId {
        let map: BTreeMap<String, Value> = serde_json::from_value(raw).unwrap();
        trial_id("s", &key("DRY"), &canonical_params(&map).unwrap())
    }

    #[test]
    fn grid_space_expands_to_cartesian_product() {
        let s = space(json!({"hidden_size": [16, 32, 64], "dropout": [0.1, 0.2], "epochs": 3}));
        let grid = s.grid().unwrap();

        assert_eq!(grid.len(), 6);
        let distinct: BTreeSet<String> = grid
            .iter()
            .map(|p| serde_json::to_string(p).unwrap())
            .collect();
        assert_eq!(distinct.len(), 6);
        assert!(grid.iter().all(|p| p["epochs"] == json!(3)));
        assert_eq!(
            s.varying(),
            vec!["dropout".to_string(), "hidden_size".to_string()]
        );
    }

    #[test]
    fn list_of_numbers_is_one_value_for_list_keys() {
        let fixed = space(json!({"dense_hidden_sizes": [64, 32]}));
        let candidates = space(json!({"dense_hidden_sizes": [[64, 32], [32]]}));

        assert_eq!(fixed.grid().unwrap().len(), 1);
        assert_eq!(candidates.grid().unwrap().len(), 2);
    }

    #[test]
    fn int_uniform_enumerates_both_ends_in_grid() {
        let s = space(json!({"n_layers": {"int_uniform": [1, 3]}}));
        let values: Vec<Value> = s
            .grid()
            .unwrap()
            .into_iter()
            .map(|p| p["n_layers"].clone())
            .collect();
        assert_eq!(values, vec![json!(1), json!(2), json!(3)]);
    }

    #[test]
    fn continuous_distribution_in_grid_names_the_key() {
        let s = space(json!({"dropout": {"uniform": [0.1, 0.5]}}));
        let err = s.grid().unwrap_err();
        assert_eq!(err.key(), Some("dropout"));
        assert!(err.to_string().contains("random"), "{err}");
    }

    #[test]
    fn misspelt_parameter_suggests_nearest_key() {
        let map = BTreeMap::from([("hiden_size".to_string(), json!(3))]);
        let err = ParamSpace::parse(&map).unwrap_err();
        assert!(
            err.to_string().contains("did you mean `hidden_size`"),
            "{err}"
        );
    }

    #[test]
    fn malformed_distributions_are_rejected() {
        let cases = [
            json!({"dropout": {"uniform": [0.5, 0.1]}}),
            json!({"learning_rate": {"log_uniform": [0.0, 0.1]}}),
            json!({"n_layers": {"int_uniform": [3, 1]}}),
            json!({"dropout": {"gaussian": [0.1, 0.2]}}),
            json!({"dropout": {"choice": []}}),
            json!({"dropout": []}),
            json!({"dropout": {"uniform": [0.1, 0.2], "choice": [1]}}),
        ];
        for case in cases {
            let map: BTreeMap<String, Value> = serde_json::from_value(case.clone()).unwrap();
            assert!(ParamSpace::parse(&map).is_err(), "{case} was accepted");
        }
    }

    #[test]
    fn integral_float_of_integer_key_gives_same_trial_id() {
        assert_eq!(
            id_of(json!({"hidden_size": 1})),
            id_of(json!({"hidden_size": 1.0}))
        );
    }

    #[test]
    fn large_floats_that_differ_give_different_trial_ids() {
        assert_ne!(
            id_of(json!({"weight_decay": 1e14})),
            id_of(json!({"weight_decay": 1e15}))
        );
        assert_ne!(id_of(json!({"seed": 1e14})), id_of(json!({"seed": 1e15})));
    }

    #[test]
    fn key_order_and_default_values_do_not_change_trial_id() {
        let a = id_of(json!({"hidden_size": 32, "dropout": 0.1}));
        let b: BTreeMap<String, Value> =
            serde_json::from_str(r#"{"dropout": 0.1, "hidden_size": 32, "n_layers": 2}"#).unwrap();
        assert_eq!(
            a,
            trial_id("s", &key("DRY"), &canonical_params(&b).unwrap())
        );
    }

    #[test]
    fn trial_id_depends_on_sweep_and_series() {
        let p = canonical_params(&BTreeMap::new()).unwrap();
        let base = trial_id("s", &key("DRY"), &p);
        assert_ne!(base, trial_id("t", &key("DRY"), &p));
        assert_ne!(base, trial_id("s", &key("TET"), &p));
        let brand = SeriesKey {
            category: "DRY".into(),
            brand: Some("OREO".into()),
        };
        assert_ne!(base, trial_id("s", &brand, &p));
    }

    #[test]
    fn random_search_is_deterministic_for_a_seed() {
        let s = space(
            json!({"dropout": {"uniform": [0.0, 0.5]}, "learning_rate": {"log_uniform": [1e-4, 1e-2]}}),
        );
        assert_eq!(s.random(10, 3).unwrap(), s.random(10, 3).unwrap());
        assert_ne!(s.random(10, 3).unwrap(), s.random(10, 4).unwrap());
    }

    #[test]
    fn random_draws_stay_inside_their_bounds() {
        // Property: over many seeds every draw lies in its declared range.
        let s = space(json!({
            "dropout": {"uniform": [0.05, 0.5]},
            "learning_rate": {"log_uniform": [1e-4, 1e-2]},
            "hidden_size": {"int_uniform": [8, 64]},
            "loss": {"choice": ["asymmetric", "mse"]},
        }));
        for seed in 0..50 {
            for p in s.random(8, seed).unwrap() {
                let d = p["dropout"].as_f64().unwrap();
                let lr = p["learning_rate"].as_f64().unwrap();
                let h = p["hidden_size"].as_i64().unwrap();
                assert!((0.05..=0.5).contains(&d), "dropout {d}");
                assert!((1e-4..=1e-2).contains(&lr), "learning_rate {lr}");
                assert!((8..=64).contains(&h), "hidden_size {h}");
                assert!(canonical_params(&p).is_ok());
            }
        }
    }

    #[test]
    fn random_search_over_finite_space_samples_without_replacement_and_stops() {
        // Property: for every seed and sample count, draws are distinct and capped by the size.
        let s = space(json!({"hidden_size": [8, 16, 32], "n_layers": {"int_uniform": [1, 2]}}));
        for seed in 0..30 {
            for samples in [1, 4, 6, 50] {
                let points = s.random(samples, seed).unwrap();
                let distinct: BTreeSet<String> = points
                    .iter()
                    .map(|p| serde_json::to_string(p).unwrap())
                    .collect();
                assert_eq!(points.len(), samples.min(6));
                assert_eq!(distinct.len(), points.len());
            }
        }
    }

    #[test]
    fn type_error_names_the_offending_key() {
        let map = BTreeMap::from([
            ("hidden_size".to_string(), json!(8)),
            ("loss".to_string(), json!("huber")),
        ]);
        let err = canonical_params(&map).unwrap_err();
        assert!(
            matches!(err, ParamError::Invalid { ref key, .. } if key == "loss"),
            "{err}"
        );
    }

    #[test]
    fn huge_grid_is_refused() {
        let s = space(json!({"seed": {"int_uniform": [0, 1000000]}}));
        assert!(matches!(s.grid(), Err(SpaceError::GridTooLarge { .. })));
    }
}
