//! Trains one HybridLSTM trial: the model and its fused LSTM, the losses, the trainer, the
//! metrics and the naive baselines they are compared with.

pub mod adam;
pub mod artifacts;
#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod baselines;
pub mod cpu_kernel;
pub mod device;
pub mod error;
pub mod forecast;
pub mod fused;
pub mod init;
pub mod loss;
pub mod lstm;
pub mod metrics;
pub mod model;
pub mod run;
pub mod trainer;

pub use device::DeviceSpec;
pub use error::WorkerError;
pub use run::{execute, execute_with_data, RunContext};

/// The text of a caught panic's payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "panic with a non-text payload".to_string()
    }
}
