//! `sweep train`: one trial standalone. Loads the shipments, runs the leakage check (through
//! the worker, which refuses to train when it fails), trains with one line per epoch on
//! stderr, and writes metrics.json, history.csv, predictions.csv and the model to `--out`.
//! `--config` is the pipeline YAML of `sweep check-leakage` ([`SeriesConfig`]).

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Context;
use sha2::{Digest, Sha256};
use shared::data::SeriesConfig;
use shared::dataset::SeriesKey;
use shared::params::{HyperParams, TargetTransform};
use shared::trial::{TrialId, TrialSpec, TrialStatus};
use worker::{DeviceSpec, RunContext};

use crate::cli::TrainArgs;

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
    // The same YAML as `sweep check-leakage --config`; its target_transform is the default
    // of the trial's parameter of that name.
    let file = match &args.series.config {
        Some(path) => SeriesConfig::from_file(path)
            .with_context(|| format!("reading the pipeline config {}", path.display()))?,
        None => SeriesConfig::default(),
    };
    if file.target_transform != TargetTransform::None && !params.contains_key("target_transform") {
        params.insert(
            "target_transform".to_string(),
            serde_json::to_value(file.target_transform).expect("transform serialises"),
        );
    }
    let bytes = std::fs::read(&args.series.data)
        .with_context(|| format!("reading {}", args.series.data.display()))?;
    let shipments =
        shared::data::load_bytes(&bytes, &args.series.data.display().to_string(), &file.data)?;
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
        evaluation: Default::default(),
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
            let metrics = result
                .metrics
                .as_ref()
                .expect("completed trials have metrics");
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
        TrialStatus::Error => {
            anyhow::bail!("training failed: {}", result.reason.unwrap_or_default())
        }
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
