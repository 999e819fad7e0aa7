//! `sweep train`: one trial standalone. Loads the shipments, runs the leakage check (through
//! the worker, which refuses to train when it fails), trains with one line per epoch on
//! stderr, and writes metrics.json, history.csv, predictions.csv and the model to `--out`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use shared::config::{CalendarConfig, DataConfig, PipelineConfig, SplitConfig, WindowConfig};
use shared::dataset::SeriesKey;
use shared::params::HyperParams;
use shared::trial::{TrialId, TrialSpec, TrialStatus};
use worker::{DeviceSpec, RunContext};

use crate::cli::TrainArgs;

/// The pipeline YAML of `--config`: the data, window, split and calendar sections of a spec.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineFile {
    /// How to read the shipments file.
    pub data: DataConfig,
    /// Input window, horizon and gap.
    pub window: WindowConfig,
    /// Chronological split.
    pub split: SplitConfig,
    /// Calendar.
    pub calendar: CalendarConfig,
}

impl PipelineFile {
    /// Reads `path`, or the defaults when there is none.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the pipeline config {}", path.display()))?;
        // Through a JSON value, so that enums read as maps (`split: {dates: {...}}`) as they do
        // in JSON, rather than as YAML tags.
        let value: serde_json::Value = serde_norway::from_str(&text)
            .with_context(|| format!("{}: not valid YAML", path.display()))?;
        let value = if value.is_null() {
            serde_json::Value::Object(Default::default())
        } else {
            value
        };
        serde_path_to_error::deserialize(value).map_err(|err| {
            anyhow::anyhow!(
                "{}: key `{}`: {}",
                path.display(),
                err.path(),
                err.inner()
            )
        })
    }

    /// The pipeline part.
    pub fn pipeline(&self) -> PipelineConfig {
        PipelineConfig {
            window: self.window,
            split: self.split.clone(),
            calendar: self.calendar.clone(),
        }
    }
}

/// Runs the command. Exit 0 when the trial completed, 1 when it diverged, was rejected by the
/// leakage check or was cancelled, 2 on errors.
pub fn run(args: TrainArgs) -> anyhow::Result<ExitCode> {
    let device: DeviceSpec = args.device.parse()?;
    device.ensure_available()?;
    let mut params = BTreeMap::new();
    for assignment in &args.set {
        let (key, value) = HyperParams::parse_assignment(assignment)?;
        params.insert(key, value);
    }
    HyperParams::from_map(&params).context("checking --set values")?;
    let file = PipelineFile::load(args.series.config.as_deref())?;
    let bytes = std::fs::read(&args.series.data)
        .with_context(|| format!("reading {}", args.series.data.display()))?;
    let shipments = shared::data::load_bytes(
        &bytes,
        &args.series.data.display().to_string(),
        &file.data,
    )?;
    let series = SeriesKey {
        category: args.series.category.clone(),
        brand: args.series.brand.clone(),
    };
    let trial = TrialSpec {
        trial_id: TrialId(format!("train-{}", series.to_string().replace('/', "-"))),
        sweep: "standalone".into(),
        series,
        params,
        pipeline: file.pipeline(),
        dataset_digest: hex::encode(Sha256::digest(&bytes)),
    };
    let ctx = RunContext {
        device,
        out_dir: Some(args.out.clone()),
        ..RunContext::cpu("standalone")
    };

    let mut on_epoch = |r: &shared::trial::EpochReport| {
        eprintln!(
            "epoch {:>3}  train_loss {:.5}  val_loss {:.5}  lr {:.2e}  {:.1}s",
            r.epoch, r.train_loss, r.val_loss, r.learning_rate, r.elapsed_s
        );
    };
    let result = worker::execute_with_data(&trial, &shipments, &file.data, &ctx, &mut on_epoch);

    match result.status {
        TrialStatus::Completed => {
            let metrics = result.metrics.as_ref().expect("completed trials have metrics");
            for (name, span) in [("val", &metrics.val), ("test", &metrics.test)] {
                println!(
                    "{name}: model MAE {:.1} WAPE {:.3} | weekday profile WAPE {:.3} | seasonal naive WAPE {:.3} | skill vs profile {:+.3}",
                    span.model.mae,
                    span.model.wape,
                    span.weekday_profile.wape,
                    span.seasonal_naive.wape,
                    span.skill_vs_weekday_profile()
                );
            }
            println!("wrote {}", args.out.display());
            Ok(ExitCode::SUCCESS)
        }
        TrialStatus::Error => anyhow::bail!(
            "training failed: {}",
            result.reason.unwrap_or_default()
        ),
        status => {
            eprintln!(
                "sweep: trial {}: {}",
                status.as_str(),
                result.reason.unwrap_or_default()
            );
            Ok(ExitCode::from(crate::EXIT_FAILURES))
        }
    }
}
