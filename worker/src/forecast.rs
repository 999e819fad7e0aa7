//! Production forecasting with a saved model: the next horizon days from a chosen origin.

use std::path::Path;

use burn::tensor::{Int, Tensor, TensorData};
use chrono::NaiveDate;
use shared::calendar::Calendar;
use shared::data::Shipments;
use shared::samples;

use crate::artifacts;
use crate::device::CpuBackend;
use crate::error::WorkerError;
use crate::init::Dropout;

/// One forecast day.
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastRow {
    /// Forecast day.
    pub date: NaiveDate,
    /// 1-based step of the horizon.
    pub horizon_step: usize,
    /// Forecast in CBM (floored at 0).
    pub forecast: f64,
}

/// Forecasts `horizon` days starting at `from` (default: the day after the last data day)
/// for the series the model in `model_dir` was trained on, on the CPU.
pub fn forecast(
    model_dir: &Path,
    shipments: &Shipments,
    from: Option<NaiveDate>,
) -> Result<Vec<ForecastRow>, WorkerError> {
    let device = Default::default();
    let (card, model) = artifacts::load_model::<CpuBackend>(model_dir, &device)?;
    let series = shipments.series(&card.series)?;
    let calendar = Calendar::new(&card.pipeline.calendar)?;
    let first = *series
        .dates
        .first()
        .ok_or(WorkerError::EmptySplit { split: "series" })?;
    let origin_date = from.unwrap_or_else(|| {
        *series.dates.last().expect("series is not empty") + chrono::Duration::days(1)
    });
    let offset = (origin_date - first).num_days();
    let origin = usize::try_from(offset).map_err(|_| shared::error::DataError::Config {
        key: "from".into(),
        message: format!("{origin_date} is before the first data day {first}"),
    })?;
    let (x_temporal, x_static) = samples::inference_input(
        &series,
        &calendar,
        (&card.temporal_scaler, &card.static_scaler),
        &card.pipeline.window,
        origin,
    )?;

    let window = card.pipeline.window;
    let xt = Tensor::<CpuBackend, 3>::from_data(
        TensorData::new(
            x_temporal,
            [1, window.input, card.config.temporal_input_dim],
        ),
        &device,
    );
    let xs = Tensor::<CpuBackend, 2>::from_data(
        TensorData::new(x_static, [1, card.config.static_input_dim]),
        &device,
    );
    let category =
        Tensor::<CpuBackend, 1, Int>::from_data(TensorData::new(vec![0i64], [1]), &device);
    let scaled = model
        .forward(xt, xs, category, &mut Dropout::Off)
        .into_data()
        .to_vec::<f32>()
        .expect("forecasts are f32");

    Ok(scaled
        .iter()
        .enumerate()
        .map(|(step, value)| ForecastRow {
            date: origin_date + chrono::Duration::days(step as i64),
            horizon_step: step + 1,
            forecast: card.target_scaler.inverse(*value as f64).max(0.0),
        })
        .collect())
}
