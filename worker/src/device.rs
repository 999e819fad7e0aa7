//! Which device a trial runs on: the CPU backend (burn's ndarray) or a CUDA GPU when the crate
//! is built with the `cuda` feature.

use std::fmt;
use std::str::FromStr;

use crate::error::WorkerError;

/// The autodiff backend used to train on the CPU.
pub type CpuTrainBackend = burn::backend::Autodiff<burn::backend::NdArray<f32>>;
/// The plain backend used for inference on the CPU.
pub type CpuBackend = burn::backend::NdArray<f32>;

/// The autodiff backend used to train on a CUDA GPU.
#[cfg(feature = "cuda")]
pub type CudaTrainBackend = burn::backend::Autodiff<burn::backend::Cuda<f32>>;
/// The plain backend used for inference on a CUDA GPU.
#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Cuda<f32>;

/// A device to train on, parsed from `cpu` or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeviceSpec {
    /// The CPU backend. Default.
    #[default]
    Cpu,
    /// CUDA device N (needs a build with the `cuda` feature).
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = WorkerError;

    /// Parses `cpu`, `cuda` (device 0) or `cuda:N`. The parse itself accepts `cuda:N` in a
    /// build without CUDA; [`DeviceSpec::ensure_available`] reports that case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim().to_ascii_lowercase();
        let bad = || WorkerError::BadDevice {
            given: s.to_string(),
        };
        match text.as_str() {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            _ => {
                let index = text.strip_prefix("cuda:").ok_or_else(bad)?;
                index.parse().map(DeviceSpec::Cuda).map_err(|_| bad())
            }
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(index) => write!(f, "cuda:{index}"),
        }
    }
}

impl DeviceSpec {
    /// Checks that the device can be used by this build and machine: a CUDA device in a build
    /// without the `cuda` feature is [`WorkerError::CudaNotBuilt`]; a missing GPU or driver is
    /// [`WorkerError::DeviceUnavailable`] (the runtime's panic is caught, never propagated).
    pub fn ensure_available(&self) -> Result<(), WorkerError> {
        match *self {
            DeviceSpec::Cpu => Ok(()),
            #[cfg(not(feature = "cuda"))]
            DeviceSpec::Cuda(_) => Err(WorkerError::CudaNotBuilt {
                given: self.to_string(),
            }),
            #[cfg(feature = "cuda")]
            DeviceSpec::Cuda(index) => probe_cuda(index),
        }
    }
}

/// Opens the CUDA device and runs one tiny operation on it.
#[cfg(feature = "cuda")]
fn probe_cuda(index: usize) -> Result<(), WorkerError> {
    use burn::tensor::Tensor;

    let outcome = std::panic::catch_unwind(|| {
        let device = burn::backend::cuda::CudaDevice { index };
        let t = Tensor::<CudaBackend, 1>::from_floats([1.0, 2.0], &device);
        t.sum().into_scalar()
    });
    match outcome {
        Ok(sum) if sum == 3.0 => Ok(()),
        Ok(sum) => Err(WorkerError::DeviceUnavailable {
            index,
            message: format!("a test sum returned {sum} instead of 3"),
        }),
        Err(panic) => Err(WorkerError::DeviceUnavailable {
            index,
            message: crate::panic_message(panic.as_ref()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_strings_parse() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("cuda:1".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(1));
        assert_eq!("CUDA".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!(DeviceSpec::Cuda(3).to_string(), "cuda:3");
    }

    #[test]
    fn unknown_device_is_a_clear_error() {
        let err = "tpu:0".parse::<DeviceSpec>().unwrap_err();
        assert!(
            err.to_string().contains("expected `cpu` or `cuda:N`"),
            "{err}"
        );
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_feature_asks_for_rebuild() {
        let err = DeviceSpec::Cuda(0).ensure_available().unwrap_err();
        assert!(
            err.to_string().contains("rebuild with --features cuda"),
            "{err}"
        );
    }
}
