//! A trained model's folder: `model.json` (architecture, parameters, series, pipeline and
//! scalers), `model.mpk` (the weights), plus the reports `metrics.json`, `history.csv` and
//! `predictions.csv`. `sweep predict` reads `model.json` and `model.mpk` back.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::backend::Backend;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use shared::config::{DataConfig, PipelineConfig};
use shared::dataset::{FeatureScaler, SeriesKey, TargetScaler};
use shared::params::HyperParams;
use shared::trial::{EpochReport, TrialResult};

use crate::error::WorkerError;
use crate::model::{HybridLstm, HybridLstmConfig};

/// File name of the model description.
pub const MODEL_JSON: &str = "model.json";
/// File stem of the weights (the recorder adds `.mpk`).
pub const WEIGHTS_STEM: &str = "model";

/// Everything besides the weights that a forecast needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    /// Architecture.
    pub config: HybridLstmConfig,
    /// Hyperparameters the model was trained with.
    pub params: HyperParams,
    /// Series the model was trained on.
    pub series: SeriesKey,
    /// Window, split and calendar settings.
    pub pipeline: PipelineConfig,
    /// How the shipments file was read (columns, date format, negative volumes).
    pub data: DataConfig,
    /// Target scaler fitted on the training span.
    pub target_scaler: TargetScaler,
    /// Temporal feature scaler.
    pub temporal_scaler: FeatureScaler,
    /// Static feature scaler.
    pub static_scaler: FeatureScaler,
    /// Last day of the training data.
    pub last_date: Option<NaiveDate>,
}

fn io_error(path: &Path, err: impl std::fmt::Display) -> WorkerError {
    WorkerError::Io {
        path: path.to_path_buf(),
        message: err.to_string(),
    }
}

fn write(path: PathBuf, text: &str) -> Result<(), WorkerError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|err| io_error(dir, err))?;
    }
    std::fs::write(&path, text).map_err(|err| io_error(&path, err))
}

/// Writes `model.json` and the weights into `dir` (created if missing).
pub fn save_model<B: Backend>(
    dir: &Path,
    card: &ModelCard,
    model: HybridLstm<B>,
) -> Result<(), WorkerError> {
    std::fs::create_dir_all(dir).map_err(|err| io_error(dir, err))?;
    let json = serde_json::to_string_pretty(card).expect("model card serialises");
    write(dir.join(MODEL_JSON), &json)?;
    let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
    model
        .save_file(dir.join(WEIGHTS_STEM), &recorder)
        .map_err(|err| io_error(&dir.join(WEIGHTS_STEM), format!("{err:?}")))
}

/// Reads `model.json` of a model folder.
pub fn read_card(dir: &Path) -> Result<ModelCard, WorkerError> {
    let path = dir.join(MODEL_JSON);
    let text = std::fs::read_to_string(&path).map_err(|err| {
        io_error(
            &path,
            format!("{err}; is this a folder written by `sweep train`?"),
        )
    })?;
    serde_json::from_str(&text).map_err(|err| io_error(&path, err))
}

/// Reads a model folder written by [`save_model`].
pub fn load_model<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<(ModelCard, HybridLstm<B>), WorkerError> {
    let card = read_card(dir)?;
    let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
    let weights = dir.join(WEIGHTS_STEM);
    let model = card
        .config
        .init::<B>(card.params.seed, device)
        .load_file(weights.clone(), &recorder, device)
        .map_err(|err| io_error(&weights.with_extension("mpk"), format!("{err:?}")))?;
    Ok((card, model))
}

/// Writes `metrics.json` (the whole trial result).
pub fn write_metrics(dir: &Path, result: &TrialResult) -> Result<(), WorkerError> {
    std::fs::create_dir_all(dir).map_err(|err| io_error(dir, err))?;
    let json = serde_json::to_string_pretty(result).expect("trial result serialises");
    write(dir.join("metrics.json"), &json)
}

/// Writes `history.csv`: one row per epoch.
pub fn write_history(dir: &Path, history: &[EpochReport]) -> Result<(), WorkerError> {
    let mut csv = String::from("epoch,train_loss,val_loss,learning_rate,elapsed_s\n");
    for r in history {
        let _ = writeln!(
            csv,
            "{},{},{},{},{:.3}",
            r.epoch, r.train_loss, r.val_loss, r.learning_rate, r.elapsed_s
        );
    }
    write(dir.join("history.csv"), &csv)
}

/// One forecast row of `predictions.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionRow {
    /// First forecast day of the sample.
    pub origin: NaiveDate,
    /// Forecast day.
    pub date: NaiveDate,
    /// 1-based step of the horizon.
    pub horizon_step: usize,
    /// Actual volume in CBM.
    pub actual: f64,
    /// Forecast in CBM.
    pub forecast: f64,
}

/// Writes `predictions.csv` with the columns origin, date, horizon_step, actual, forecast.
pub fn write_predictions(dir: &Path, rows: &[PredictionRow]) -> Result<(), WorkerError> {
    let mut csv = String::from("origin,date,horizon_step,actual,forecast\n");
    for r in rows {
        let _ = writeln!(
            csv,
            "{},{},{},{:.4},{:.4}",
            r.origin, r.date, r.horizon_step, r.actual, r.forecast
        );
    }
    write(dir.join("predictions.csv"), &csv)
}

#[cfg(test)]
mod tests {
    use shared::params::TargetTransform;

    use super::*;
    use crate::device::CpuBackend;
    use crate::trainer::{self, tests::learnable_set, tests::small_config};

    #[test]
    fn saved_and_reloaded_model_predicts_identically() {
        let dir = tempfile::tempdir().unwrap();
        let device = Default::default();
        let config = small_config();
        let model = config.init::<CpuBackend>(11, &device);
        let set = learnable_set(10, 6);
        let before = trainer::predict(&model, &set, &device);
        let scaler = FeatureScaler {
            names: vec![],
            mean: vec![],
            std: vec![],
            fitted_through: None,
        };
        let card = ModelCard {
            config: config.clone(),
            params: HyperParams {
                seed: 99,
                ..HyperParams::default()
            },
            series: SeriesKey {
                category: "DRY".into(),
                brand: None,
            },
            pipeline: PipelineConfig::default(),
            data: DataConfig::default(),
            target_scaler: TargetScaler {
                transform: TargetTransform::None,
                mean: 1.0,
                std: 2.0,
            },
            temporal_scaler: scaler.clone(),
            static_scaler: scaler,
            last_date: None,
        };
        save_model(dir.path(), &card, model).unwrap();

        let (loaded_card, loaded) = load_model::<CpuBackend>(dir.path(), &device).unwrap();
        assert_eq!(loaded_card, card);
        assert_eq!(trainer::predict(&loaded, &set, &device), before);
    }

    #[test]
    fn missing_model_folder_names_the_file() {
        let err = read_card(Path::new("/nonexistent/model")).unwrap_err();
        assert!(err.to_string().contains("model.json"), "{err}");
    }
}
