//! Errors of the worker crate. Each variant names the step that failed and what to do about it.

use std::path::PathBuf;

use thiserror::Error;

/// Why a trial could not be trained, evaluated, saved or loaded.
#[derive(Debug, Error)]
pub enum WorkerError {
    /// The device string is neither `cpu` nor `cuda:N`.
    #[error("unknown device `{given}`; expected `cpu` or `cuda:N` (for example cuda:0)")]
    BadDevice {
        /// The text as given.
        given: String,
    },
    /// A CUDA device was asked for but this binary was built without the `cuda` feature.
    #[error("device `{given}` needs CUDA support; rebuild with --features cuda")]
    CudaNotBuilt {
        /// The device as given.
        given: String,
    },
    /// The CUDA device could not be opened (no GPU, no driver, wrong index).
    #[error("CUDA device {index} is unavailable: {message}; check the driver with nvidia-smi or use --device cpu")]
    DeviceUnavailable {
        /// The device index.
        index: usize,
        /// What the runtime said.
        message: String,
    },
    /// The hyperparameters are invalid.
    #[error(transparent)]
    Params(#[from] shared::error::ParamError),
    /// The data pipeline failed.
    #[error(transparent)]
    Data(#[from] shared::error::DataError),
    /// A split has no samples, so nothing can be trained or evaluated on it.
    #[error("the {split} split has no samples; widen it or shorten the window")]
    EmptySplit {
        /// `train`, `val` or `test`.
        split: &'static str,
    },
    /// The samples do not match the model's input sizes.
    #[error("samples have {what} {found} but the model expects {expected}")]
    Shape {
        /// Which size.
        what: &'static str,
        /// Size in the samples.
        found: usize,
        /// Size the model was built for.
        expected: usize,
    },
    /// Reading or writing a model folder failed.
    #[error("{}: {message}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The trial was cancelled through its cancel flag.
    #[error("cancelled")]
    Cancelled,
}
