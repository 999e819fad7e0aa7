//! Everything a launch checks before any training: the spec, the data (a file, or the built-in
//! synthetic generator when the spec names none), the series, the leakage check once per series
//! and target transform, and the plan. The embedded and the NATS launch both start here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use shared::calendar::Calendar;
use shared::config::DataConfig;
use shared::data::Shipments;
use shared::dataset::SeriesKey;
use shared::error::DataError;
use shared::params::{nearest, HyperParams};
use shared::spec::{Categories, Level, Plan, SpecError, SweepSpec};
use thiserror::Error;

/// Why a sweep cannot start. Every variant is a usage, spec or data problem (exit 2).
#[derive(Debug, Error)]
pub enum PrepareError {
    /// The spec is invalid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The data file does not exist.
    #[error("{origin}: {}: the data file does not exist; fix the path or pass --data FILE", path.display())]
    MissingData {
        /// Where the path was given: `--data`, or the spec file and `data.path`.
        origin: String,
        /// The path as given.
        path: PathBuf,
    },
    /// The data cannot be read or is too short for the windows and split.
    #[error("{0}")]
    Data(#[from] DataError),
    /// A category of the spec is not in the data.
    #[error("{spec}: `data.categories`: category `{category}` is not in {data}{}; categories in the data: {available}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownCategory {
        /// The spec file.
        spec: PathBuf,
        /// The category as written.
        category: String,
        /// The data's name.
        data: String,
        /// Categories present, comma separated.
        available: String,
        /// The nearest category present.
        suggestion: Option<String>,
    },
    /// A series failed the leakage check: no trial of the sweep may train on it.
    #[error("series {series} fails the leakage check; no trial was started\n{table}")]
    Leakage {
        /// The series.
        series: String,
        /// The check's table.
        table: String,
    },
    /// The plan has no trial.
    #[error("{}: the spec expands to no trial", spec.display())]
    Empty {
        /// The spec file.
        spec: PathBuf,
    },
}

/// A validated sweep, ready to hand to a transport.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The spec.
    pub spec: SweepSpec,
    /// The trials, capped by `--max-trials`.
    pub plan: Plan,
    /// The parsed shipments.
    pub shipments: Arc<Shipments>,
    /// The raw bytes of the data (what the dataset digest hashes; a NATS launch uploads them).
    pub bytes: Arc<Vec<u8>>,
    /// How the data is read.
    pub data: DataConfig,
    /// The data's name: its path, or the synthetic generator's label.
    pub data_label: String,
    /// SHA-256 of the bytes (hex).
    pub digest: String,
    /// The series of the sweep, in plan order.
    pub series: Vec<SeriesKey>,
}

/// The data of a spec: `--data` first, then `data.path`, else the synthetic generator.
/// Returns the bytes and the name they are reported under.
pub fn read_data(
    spec: &SweepSpec,
    data_override: Option<&Path>,
) -> Result<(Vec<u8>, String), PrepareError> {
    let origin = match data_override {
        Some(_) => "--data".to_string(),
        None => format!("{}: `data.path`", spec.source.file.display()),
    };
    let path = data_override
        .map(Path::to_path_buf)
        .or_else(|| spec.data.path.clone());
    match path {
        Some(path) => {
            if !path.exists() {
                return Err(PrepareError::MissingData { origin, path });
            }
            let bytes = std::fs::read(&path).map_err(|err| DataError::Read {
                path: path.clone(),
                message: format!("cannot read the file: {err}"),
            })?;
            Ok((bytes, path.display().to_string()))
        }
        None => {
            let seed = spec
                .data
                .synthetic_seed
                .unwrap_or(shared::synth::DEFAULT_SEED);
            let (start, end) = shared::synth::default_range();
            Ok((
                shared::synth::generate_csv(seed, start, end),
                shared::synth::SYNTHETIC_NAME.to_string(),
            ))
        }
    }
}

/// Loads the spec and data, picks the series, runs the leakage check and expands the plan.
/// Nothing is trained and nothing is written.
pub fn prepare(
    spec_path: &Path,
    data_override: Option<&Path>,
    max_trials: Option<usize>,
    check_leakage: bool,
) -> Result<Prepared, PrepareError> {
    let spec = SweepSpec::load(spec_path)?;
    let (bytes, data_label) = read_data(&spec, data_override)?;
    let mut data = spec.data.config();
    data.path = data_override
        .map(Path::to_path_buf)
        .or_else(|| spec.data.path.clone());
    let shipments = shared::data::load_bytes(&bytes, &data_label, &data)?;
    let digest = hex::encode(Sha256::digest(&bytes));

    let series = select_series(&spec, &shipments, &data_label)?;
    let mut plan = spec.plan(&series, &digest)?;
    if let Some(n) = max_trials {
        plan.cap(n);
    }
    if plan.trials.is_empty() {
        return Err(PrepareError::Empty {
            spec: spec_path.to_path_buf(),
        });
    }

    if check_leakage {
        run_leakage_checks(&spec, &shipments, &plan)?;
    }
    tracing::info!(
        sweep = %spec.name,
        data = %data_label,
        digest = %&digest[..12],
        series = series.len(),
        trials = plan.trials.len(),
        duplicates = plan.duplicates.len(),
        "sweep planned"
    );
    Ok(Prepared {
        spec,
        plan,
        shipments: Arc::new(shipments),
        bytes: Arc::new(bytes),
        data,
        data_label,
        digest,
        series,
    })
}

/// The series a spec trains on, in the order the spec lists its categories (or the data's).
pub fn select_series(
    spec: &SweepSpec,
    shipments: &Shipments,
    data_label: &str,
) -> Result<Vec<SeriesKey>, PrepareError> {
    let available = shipments.categories();
    let categories: Vec<String> = match &spec.data.categories {
        Categories::All => available.clone(),
        Categories::List(list) => {
            for category in list {
                if !available.contains(category) {
                    let names: Vec<&str> = available.iter().map(String::as_str).collect();
                    return Err(PrepareError::UnknownCategory {
                        spec: spec.source.file.clone(),
                        category: category.clone(),
                        data: data_label.to_string(),
                        available: available.join(", "),
                        suggestion: nearest(category, &names),
                    });
                }
            }
            list.clone()
        }
    };
    let mut series = Vec::new();
    for category in categories {
        match spec.data.level {
            Level::Category => series.push(SeriesKey {
                category,
                brand: None,
            }),
            Level::Brand => {
                let brands = shipments.brands(&category);
                if brands.is_empty() {
                    // No brand column: the category total is the only series.
                    series.push(SeriesKey {
                        category: category.clone(),
                        brand: None,
                    });
                }
                for brand in brands {
                    series.push(SeriesKey {
                        category: category.clone(),
                        brand: Some(brand),
                    });
                }
            }
        }
    }
    Ok(series)
}

/// Runs the leakage check once per (series, target transform) of the plan.
fn run_leakage_checks(
    spec: &SweepSpec,
    shipments: &Shipments,
    plan: &Plan,
) -> Result<(), PrepareError> {
    let calendar = Calendar::new(&spec.calendar)?;
    let pipeline = spec.pipeline();
    let mut checked = BTreeSet::new();
    for trial in &plan.trials {
        let transform = HyperParams::from_map(&trial.params)
            .map(|p| p.target_transform)
            .unwrap_or_default();
        if !checked.insert((trial.series.clone(), format!("{transform:?}"))) {
            continue;
        }
        let series = shipments.series(&trial.series)?;
        let report = shared::leakage::check(&series, &calendar, &pipeline, transform)?;
        if !report.passed() {
            return Err(PrepareError::Leakage {
                series: trial.series.to_string(),
                table: report.table(),
            });
        }
        tracing::info!(series = %trial.series, transform = ?transform, "leakage check passed");
    }
    Ok(())
}
