//! One trial end to end: series, leakage check, samples, training, evaluation of the model and
//! the baselines on validation and test, and the model folder.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use shared::calendar::Calendar;
use shared::config::{DataConfig, PipelineConfig};
use shared::data::Shipments;
use shared::dataset::{Dataset, SampleSet};
use shared::metrics::{SpanMetrics, TrialMetrics};
use shared::params::HyperParams;
use shared::trial::{EpochReport, EvaluationWeights, TrialResult, TrialSpec, TrialStatus};

use crate::artifacts::{self, ModelCard, PredictionRow};
use crate::baselines;
use crate::device::{CpuTrainBackend, DeviceSpec};
use crate::error::WorkerError;
use crate::loss::LossSpec;
use crate::lstm::FusedBackend;
use crate::metrics::forecast_metrics_weighted;
use crate::model::{HybridLstm, HybridLstmConfig};
use crate::trainer::{self, TrainOutcome};

/// Where and how a trial runs.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// Device to train on.
    pub device: DeviceSpec,
    /// Worker name reported in the result.
    pub worker: String,
    /// Attempt number, 1-based.
    pub attempt: u32,
    /// Raised to stop the trial; checked before every batch.
    pub cancel: Arc<AtomicBool>,
    /// When set: the folder that receives metrics.json, history.csv, predictions.csv,
    /// model.json and the weights.
    pub out_dir: Option<PathBuf>,
}

impl RunContext {
    /// A CPU context named `worker`, first attempt, no output folder.
    pub fn cpu(worker: impl Into<String>) -> Self {
        Self {
            device: DeviceSpec::Cpu,
            worker: worker.into(),
            attempt: 1,
            cancel: Arc::new(AtomicBool::new(false)),
            out_dir: None,
        }
    }
}

/// What training and evaluation produced.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Completed, diverged or cancelled.
    pub status: TrialStatus,
    /// Why it did not complete.
    pub reason: Option<String>,
    /// Metrics when it completed.
    pub metrics: Option<TrialMetrics>,
    /// Epochs run.
    pub epochs_run: usize,
}

/// Runs one trial end to end: builds the series and dataset from the shipments, runs the
/// mandatory leakage check (failing -> status LeakageRejected, no training), trains
/// (NaN/inf loss -> Diverged), evaluates val and test with the best weights, and returns the
/// result. Never panics: any error or panic inside becomes status Error with the reason.
pub fn execute(
    trial: &TrialSpec,
    shipments: &Shipments,
    ctx: &RunContext,
    on_epoch: &mut dyn FnMut(&EpochReport),
) -> TrialResult {
    execute_with_data(trial, shipments, &DataConfig::default(), ctx, on_epoch)
}

/// [`execute`], recording in the model folder how the shipments file was read (so that
/// `sweep predict` reads a newer file with the same columns).
pub fn execute_with_data(
    trial: &TrialSpec,
    shipments: &Shipments,
    data: &DataConfig,
    ctx: &RunContext,
    on_epoch: &mut dyn FnMut(&EpochReport),
) -> TrialResult {
    let started = Instant::now();
    let _span =
        tracing::info_span!("trial", trial_id = %trial.trial_id, worker_id = %ctx.worker).entered();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        run_trial(trial, shipments, data, ctx, on_epoch)
    }));
    let evaluation = match outcome {
        Ok(Ok(evaluation)) => evaluation,
        Ok(Err(err)) => failed(err.to_string()),
        Err(panic) => failed(format!(
            "internal error (panic): {}",
            crate::panic_message(panic.as_ref())
        )),
    };
    if evaluation.status == TrialStatus::Error {
        tracing::error!(reason = ?evaluation.reason, "trial failed");
    }
    let result = TrialResult {
        trial_id: trial.trial_id.clone(),
        sweep: trial.sweep.clone(),
        attempt: ctx.attempt,
        status: evaluation.status,
        reason: evaluation.reason,
        series: trial.series.clone(),
        params: trial.params.clone(),
        metrics: evaluation.metrics,
        epochs_run: evaluation.epochs_run,
        duration_s: started.elapsed().as_secs_f64(),
        worker: ctx.worker.clone(),
        device: ctx.device.to_string(),
    };
    if let Some(dir) = &ctx.out_dir {
        if let Err(err) = artifacts::write_metrics(dir, &result) {
            tracing::error!(error = %err, "cannot write metrics.json");
        }
    }
    result
}

fn failed(reason: String) -> Evaluation {
    Evaluation {
        status: TrialStatus::Error,
        reason: Some(reason),
        metrics: None,
        epochs_run: 0,
    }
}

fn run_trial(
    trial: &TrialSpec,
    shipments: &Shipments,
    data: &DataConfig,
    ctx: &RunContext,
    on_epoch: &mut dyn FnMut(&EpochReport),
) -> Result<Evaluation, WorkerError> {
    let params = HyperParams::from_map(&trial.params)?;
    ctx.device.ensure_available()?;
    let series = shipments.series(&trial.series)?;
    let calendar = Calendar::new(&trial.pipeline.calendar)?;
    let report =
        shared::leakage::check(&series, &calendar, &trial.pipeline, params.target_transform)?;
    if let Some(failure) = report.first_failure() {
        tracing::warn!(check = failure.name, detail = %failure.detail, "leakage check failed");
        return Ok(Evaluation {
            status: TrialStatus::LeakageRejected,
            reason: Some(format!(
                "leakage check `{}` failed: {}; refusing to train",
                failure.name, failure.detail
            )),
            metrics: None,
            epochs_run: 0,
        });
    }
    tracing::debug!(checks = report.checks.len(), "leakage check passed");
    let dataset =
        shared::samples::build(&series, &calendar, &trial.pipeline, params.target_transform)?;
    let card = |config: HybridLstmConfig, dataset: &Dataset| ModelCard {
        config,
        params: params.clone(),
        series: trial.series.clone(),
        pipeline: trial.pipeline.clone(),
        data: DataConfig {
            path: None,
            ..data.clone()
        },
        target_scaler: dataset.target_scaler,
        temporal_scaler: dataset.temporal_scaler.clone(),
        static_scaler: dataset.static_scaler.clone(),
        last_date: dataset.series.dates.last().copied(),
    };
    match ctx.device {
        DeviceSpec::Cpu => train_and_evaluate::<CpuTrainBackend>(
            &params,
            &dataset,
            &trial.pipeline,
            &trial.evaluation,
            &Default::default(),
            ctx,
            &card,
            on_epoch,
        ),
        #[cfg(feature = "cuda")]
        DeviceSpec::Cuda(index) => train_and_evaluate::<crate::device::CudaTrainBackend>(
            &params,
            &dataset,
            &trial.pipeline,
            &trial.evaluation,
            &burn::backend::cuda::CudaDevice { index },
            ctx,
            &card,
            on_epoch,
        ),
        #[cfg(not(feature = "cuda"))]
        DeviceSpec::Cuda(_) => Err(WorkerError::CudaNotBuilt {
            given: ctx.device.to_string(),
        }),
    }
}

/// Trains on `dataset` and evaluates the best weights on validation and test (test once),
/// writing the model folder when `ctx.out_dir` is set. `card` describes the model for the
/// folder; `evaluation` weighs the ranking loss (`asymmetric_loss`).
#[allow(clippy::too_many_arguments)]
pub fn train_and_evaluate<B>(
    params: &HyperParams,
    dataset: &Dataset,
    pipeline: &PipelineConfig,
    evaluation: &EvaluationWeights,
    device: &B::Device,
    ctx: &RunContext,
    card: &dyn Fn(HybridLstmConfig, &Dataset) -> ModelCard,
    on_epoch: &mut dyn FnMut(&EpochReport),
) -> Result<Evaluation, WorkerError>
where
    B: AutodiffBackend + FusedBackend,
    B::InnerBackend: FusedBackend,
{
    if dataset.test.is_empty() {
        return Err(WorkerError::EmptySplit { split: "test" });
    }
    let config = HybridLstmConfig::from_params(
        params,
        dataset.train.temporal_dim,
        dataset.train.static_dim,
        dataset.train.horizon,
    );
    let trained = trainer::train::<B>(
        &config,
        params,
        &dataset.train,
        &dataset.val,
        device,
        &ctx.cancel,
        on_epoch,
    )?;
    let epochs_run = trained.history.len();
    if let Some(dir) = &ctx.out_dir {
        artifacts::write_history(dir, &trained.history)?;
    }
    match trained.outcome {
        TrainOutcome::Completed => {}
        TrainOutcome::Diverged { reason, .. } => {
            return Ok(Evaluation {
                status: TrialStatus::Diverged,
                reason: Some(reason),
                metrics: None,
                epochs_run,
            })
        }
        TrainOutcome::Cancelled => {
            return Ok(Evaluation {
                status: TrialStatus::Cancelled,
                reason: Some("cancelled while training".into()),
                metrics: None,
                epochs_run,
            })
        }
    }

    let loss = LossSpec::from_params(params);
    let ranking = LossSpec {
        under_penalty: evaluation.under_penalty,
        over_penalty: evaluation.over_penalty,
        peak_season_boost: evaluation.peak_season_boost,
        ..loss
    };
    let gap = pipeline.window.gap;
    let span =
        |set| evaluate_span_weighted(&trained.model, dataset, set, gap, &loss, &ranking, device);
    let (val, _) = span(&dataset.val);
    let (test, test_forecast) = span(&dataset.test);
    let metrics = TrialMetrics {
        val,
        test,
        best_epoch: trained.best_epoch,
        parameters: config.num_params(),
    };

    if let Some(dir) = &ctx.out_dir {
        let rows = prediction_rows(dataset, &dataset.test, &test_forecast);
        artifacts::write_predictions(dir, &rows)?;
        artifacts::save_model(dir, &card(config.clone(), dataset), trained.model)?;
    }
    Ok(Evaluation {
        status: TrialStatus::Completed,
        reason: None,
        metrics: Some(metrics),
        epochs_run,
    })
}

/// Model and baseline metrics on one span; also returns the model's forecasts in CBM.
pub fn evaluate_span<B: FusedBackend>(
    model: &HybridLstm<B>,
    dataset: &Dataset,
    set: &SampleSet,
    gap: usize,
    loss: &LossSpec,
    device: &B::Device,
) -> (SpanMetrics, Vec<f64>) {
    evaluate_span_weighted(model, dataset, set, gap, loss, loss, device)
}

/// [`evaluate_span`] whose `asymmetric_loss` uses the weights of `evaluation` (the ranking
/// objective) while `loss` (the trial's own) gives the model-space loss and
/// `own_asymmetric_loss`.
pub fn evaluate_span_weighted<B: FusedBackend>(
    model: &HybridLstm<B>,
    dataset: &Dataset,
    set: &SampleSet,
    gap: usize,
    loss: &LossSpec,
    evaluation: &LossSpec,
    device: &B::Device,
) -> (SpanMetrics, Vec<f64>) {
    let scaled = trainer::predict(model, set, device);
    let forecast = to_cbm(dataset, &scaled);
    let actual: Vec<f64> = set.y_cbm.iter().map(|v| *v as f64).collect();
    let naive = baselines::forecast(&dataset.series.values, &set.origin, set.horizon, gap);
    let score =
        |f: &[f64]| forecast_metrics_weighted(f, &actual, &set.peak, set.horizon, evaluation, loss);
    let metrics = SpanMetrics {
        samples: set.len(),
        model: score(&forecast),
        seasonal_naive: score(&naive.seasonal_naive),
        mean_28d: score(&naive.mean_28d),
        weekday_profile: score(&naive.weekday_profile),
        loss: loss.mean(&scaled, &set.y, &set.peak),
    };
    (metrics, forecast)
}

/// Scaled forecasts to CBM; volumes cannot be negative, so forecasts are floored at 0.
pub fn to_cbm(dataset: &Dataset, scaled: &[f32]) -> Vec<f64> {
    scaled
        .iter()
        .map(|v| dataset.target_scaler.inverse(*v as f64).max(0.0))
        .collect()
}

fn prediction_rows(dataset: &Dataset, set: &SampleSet, forecast: &[f64]) -> Vec<PredictionRow> {
    let dates = &dataset.series.dates;
    let mut rows = Vec::with_capacity(forecast.len());
    for (sample, &origin) in set.origin.iter().enumerate() {
        for step in 0..set.horizon {
            let index = sample * set.horizon + step;
            rows.push(PredictionRow {
                origin: dates[origin],
                date: dates[origin + step],
                horizon_step: step + 1,
                actual: set.y_cbm[index] as f64,
                forecast: forecast[index],
            });
        }
    }
    rows
}
