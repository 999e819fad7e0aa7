//! Adam as one pass over each parameter tensor.
//!
//! The same update as burn's `Adam` (and PyTorch's `torch.optim.Adam`): L2 weight decay added to
//! the gradient, exponential moving averages of the gradient and its square, bias correction,
//! `p -= lr * m_hat / (sqrt(v_hat) + eps)`. burn's version spends about 15 tensor operations
//! per parameter tensor, each allocating its result and running on one thread; on the CPU
//! backend that took an eighth of a training step for the 256-hidden, 3-layer model. Here the
//! CPU backend updates the parameter and both moments in place, in one loop split over
//! rayon's threads ([`FusedBackend::adam_step`]); other backends compose the same arithmetic
//! from tensor operations.

use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{LearningRate, SimpleOptimizer};
use burn::record::Record;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;

use crate::lstm::FusedBackend;

/// Adam's hyper-parameters for one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamStep {
    /// Learning rate.
    pub lr: f32,
    /// Decay of the first moment.
    pub beta_1: f32,
    /// Decay of the second moment.
    pub beta_2: f32,
    /// Added to the root of the second moment.
    pub epsilon: f32,
    /// L2 penalty added to the gradient (0 for none).
    pub weight_decay: f32,
    /// Bias correction of the first moment, `1 - beta_1^t` at step `t` (from 1).
    pub correction_1: f32,
    /// Bias correction of the second moment, `1 - beta_2^t`.
    pub correction_2: f32,
}

impl AdamStep {
    /// Step `time` (from 1) with these hyper-parameters.
    pub fn at(
        time: usize,
        lr: f32,
        beta_1: f32,
        beta_2: f32,
        epsilon: f32,
        weight_decay: f32,
    ) -> Self {
        let time = i32::try_from(time).unwrap_or(i32::MAX);
        Self {
            lr,
            beta_1,
            beta_2,
            epsilon,
            weight_decay,
            correction_1: 1.0 - beta_1.powi(time),
            correction_2: 1.0 - beta_2.powi(time),
        }
    }

    /// Updates one element: returns the new parameter and writes the new moments. The
    /// operations and their order are burn's, so both give the same values.
    #[inline(always)]
    pub fn apply(&self, param: f32, grad: f32, m: &mut f32, v: &mut f32) -> f32 {
        let grad = if self.weight_decay != 0.0 {
            param * self.weight_decay + grad
        } else {
            grad
        };
        *m = *m * self.beta_1 + grad * (1.0 - self.beta_1);
        *v = *v * self.beta_2 + grad * grad * (1.0 - self.beta_2);
        let m_hat = *m / self.correction_1;
        let v_hat = *v / self.correction_2;
        param - m_hat / (v_hat.sqrt() + self.epsilon) * self.lr
    }
}

/// Adam whose update runs as [`FusedBackend::adam_step`].
#[derive(Debug, Clone)]
pub struct FusedAdam {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    weight_decay: f32,
}

/// The moments of one parameter tensor.
#[derive(Record, Clone)]
pub struct FusedAdamState<B: Backend, const D: usize> {
    /// Steps taken so far.
    pub time: usize,
    /// Moving average of the gradient.
    pub moment_1: Tensor<B, D>,
    /// Moving average of the squared gradient.
    pub moment_2: Tensor<B, D>,
}

impl FusedAdam {
    /// Adam with PyTorch's default betas (0.9, 0.999), the given epsilon and L2 weight decay.
    pub fn new(epsilon: f32, weight_decay: f32) -> Self {
        Self {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon,
            weight_decay,
        }
    }

    /// The optimizer for a model, as burn's `AdamConfig::init` returns one.
    pub fn init<B, M>(self) -> OptimizerAdaptor<FusedAdam, M, B>
    where
        B: AutodiffBackend,
        B::InnerBackend: FusedBackend,
        M: AutodiffModule<B>,
    {
        OptimizerAdaptor::from(self)
    }
}

impl<B: FusedBackend> SimpleOptimizer<B> for FusedAdam {
    type State<const D: usize> = FusedAdamState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        // Zero moments before the first step give burn's first-step moments exactly.
        let (time, moment_1, moment_2) = match state {
            Some(state) => (state.time + 1, state.moment_1, state.moment_2),
            None => (1, grad.zeros_like(), grad.zeros_like()),
        };
        let step = AdamStep::at(
            time,
            lr as f32,
            self.beta_1,
            self.beta_2,
            self.epsilon,
            self.weight_decay,
        );
        let [param, moment_1, moment_2] = B::adam_step(tensor, grad, moment_1, moment_2, &step);
        let state = FusedAdamState {
            time,
            moment_1,
            moment_2,
        };
        (param, Some(state))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        FusedAdamState {
            time: state.time,
            moment_1: state.moment_1.to_device(device),
            moment_2: state.moment_2.to_device(device),
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, NdArray};
    use burn::module::{Module, Param};
    use burn::optim::decay::WeightDecayConfig;
    use burn::optim::{AdamConfig, GradientsParams, Optimizer};
    use burn::tensor::{Tensor, TensorData};

    use super::*;

    type Ad = Autodiff<NdArray<f32>>;

    #[derive(Module, Debug)]
    struct Tiny<B: Backend> {
        w: Param<Tensor<B, 2>>,
        b: Param<Tensor<B, 1>>,
    }

    fn tiny(device: &<Ad as Backend>::Device) -> Tiny<Ad> {
        let w: Vec<f32> = (0..24)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) / 10.0)
            .collect();
        Tiny {
            w: Param::from_tensor(Tensor::from_data(TensorData::new(w, [4, 6]), device)),
            b: Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![0.1f32, -0.2, 0.3, 0.0, 0.5, -0.6], [6]),
                device,
            )),
        }
    }

    /// A loss whose gradient changes from step to step: `sum((x w + b)^2)`.
    fn grads(model: &Tiny<Ad>, device: &<Ad as Backend>::Device) -> GradientsParams {
        let x: Vec<f32> = (0..12).map(|i| (i as f32 - 6.0) / 4.0).collect();
        let x = Tensor::<Ad, 2>::from_data(TensorData::new(x, [3, 4]), device);
        let y = x.matmul(model.w.val()) + model.b.val().unsqueeze();
        GradientsParams::from_grads((y.clone() * y).sum().backward(), model)
    }

    fn values(model: &Tiny<Ad>) -> Vec<f32> {
        let mut out = model.w.val().into_data().to_vec::<f32>().expect("f32");
        out.extend(model.b.val().into_data().to_vec::<f32>().expect("f32"));
        out
    }

    #[test]
    fn fused_adam_follows_burns_adam_step_by_step_with_and_without_weight_decay() {
        let device = Default::default();
        for decay in [0.0f32, 0.01] {
            let mut stock_model = tiny(&device);
            let mut fused_model = tiny(&device);
            let mut stock = AdamConfig::new()
                .with_epsilon(1e-8)
                .with_weight_decay((decay > 0.0).then(|| WeightDecayConfig::new(decay)))
                .init::<Ad, Tiny<Ad>>();
            let mut fused = FusedAdam::new(1e-8, decay).init::<Ad, Tiny<Ad>>();
            let start = values(&stock_model);
            for step in 1..=6 {
                let g = grads(&stock_model, &device);
                stock_model = stock.step(1e-2, stock_model, g);
                let g = grads(&fused_model, &device);
                fused_model = fused.step(1e-2, fused_model, g);
                for (i, (s, f)) in values(&stock_model)
                    .iter()
                    .zip(values(&fused_model))
                    .enumerate()
                {
                    assert!(
                        (s - f).abs() <= 1e-6 * s.abs().max(1.0),
                        "decay {decay}, step {step}, parameter {i}: burn {s} vs fused {f}"
                    );
                }
            }
            assert_ne!(start, values(&fused_model), "the parameters moved");
        }
    }

    #[test]
    fn adam_step_matches_the_update_written_out_by_hand() {
        // One element, first step: m = 0.1 g, v = 0.001 g^2, m_hat = g, v_hat = g^2, so the
        // step is lr * g / (|g| + eps) = lr * sign(g) up to eps.
        let step = AdamStep::at(1, 0.5, 0.9, 0.999, 1e-8, 0.0);
        let (mut m, mut v) = (0.0, 0.0);
        let p = step.apply(2.0, -4.0, &mut m, &mut v);
        // 1 - 0.999 is 0.00099998713 in f32.
        assert!(
            (m + 0.4).abs() < 1e-6 && (v - 0.016).abs() < 1e-6,
            "{m} {v}"
        );
        assert!((p - 2.5).abs() < 1e-5, "2 - 0.5 * (-4 / 4): {p}");
        // Later steps: the bias correction shrinks towards 1.
        let late = AdamStep::at(10_000, 0.5, 0.9, 0.999, 1e-8, 0.0);
        assert!(
            (late.correction_1 - 1.0).abs() < 1e-6,
            "{}",
            late.correction_1
        );
        assert!((late.correction_2 - (1.0 - 0.999f32.powi(10_000))).abs() < 1e-6);
        // Weight decay adds penalty * param to the gradient before the moments.
        let decayed = AdamStep {
            weight_decay: 0.5,
            ..step
        };
        let (mut m, mut v) = (0.0, 0.0);
        decayed.apply(2.0, 1.0, &mut m, &mut v);
        assert!(
            (m - 0.2).abs() < 1e-6,
            "gradient 1 + 0.5 * 2 = 2, m = 0.1 * 2: {m}"
        );
    }
}
