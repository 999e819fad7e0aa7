//! Seeded parameter initialisation and dropout, driven by the trial's own random generator
//! rather than the backend's process-wide one, so that trials running side by side in one
//! process stay reproducible.

use burn::module::Param;
use burn::tensor::{backend::Backend, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A parameter drawn from U(-bound, bound), PyTorch's default for Linear and LSTM weights.
pub fn uniform<B: Backend, const D: usize>(
    rng: &mut StdRng,
    shape: [usize; D],
    bound: f64,
    device: &B::Device,
) -> Param<Tensor<B, D>> {
    let n = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| rng.random_range(-bound..bound) as f32)
        .collect();
    Param::from_tensor(Tensor::from_data(TensorData::new(values, shape), device))
}

/// A parameter drawn from N(0, 1) (Box-Muller), PyTorch's default for embeddings.
pub fn normal<B: Backend, const D: usize>(
    rng: &mut StdRng,
    shape: [usize; D],
    device: &B::Device,
) -> Param<Tensor<B, D>> {
    let n = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| {
            let u1: f64 = rng.random_range(f64::EPSILON..1.0);
            let u2: f64 = rng.random();
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        })
        .collect();
    Param::from_tensor(Tensor::from_data(TensorData::new(values, shape), device))
}

/// A parameter filled with one value (LayerNorm's gamma = 1, beta = 0).
pub fn constant<B: Backend>(len: usize, value: f32, device: &B::Device) -> Param<Tensor<B, 1>> {
    Param::from_tensor(Tensor::from_data(
        TensorData::new(vec![value; len], [len]),
        device,
    ))
}

/// Dropout whose masks come from a seeded generator; `Off` in evaluation.
#[derive(Debug)]
pub enum Dropout {
    /// No dropout (evaluation and inference).
    Off,
    /// Zero each element with probability `p` and scale the rest by 1 / (1 - p).
    On {
        /// Drop probability.
        p: f64,
        /// Mask generator (boxed: the generator's state is large and `Off` is common).
        rng: Box<StdRng>,
    },
}

impl Dropout {
    /// Training dropout with probability `p`, seeded; `Off` when `p` is 0.
    pub fn train(p: f64, seed: u64) -> Self {
        if p > 0.0 {
            Dropout::On {
                p,
                rng: Box::new(StdRng::seed_from_u64(seed)),
            }
        } else {
            Dropout::Off
        }
    }

    /// Applies dropout to `x`.
    pub fn apply<B: Backend, const D: usize>(&mut self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Dropout::Off => x,
            Dropout::On { p, rng } => {
                let shape = x.dims();
                let n: usize = shape.iter().product();
                let keep = 1.0 - *p;
                let scale = (1.0 / keep) as f32;
                // One bulk fill of random words, each kept below `keep * 2^32`: the
                // generator's block output used directly, instead of one draw per element.
                let threshold = (keep * 4_294_967_296.0) as u64;
                let mut bits = vec![0u32; n];
                rng.fill(&mut bits[..]);
                let mask: Vec<f32> = bits
                    .iter()
                    .map(|&b| if u64::from(b) < threshold { scale } else { 0.0 })
                    .collect();
                let mask = Tensor::from_data(TensorData::new(mask, shape), &x.device());
                x * mask
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::NdArray;

    use super::*;

    fn ones(n: usize) -> Tensor<NdArray, 1> {
        Tensor::from_data(TensorData::new(vec![1.0f32; n], [n]), &Default::default())
    }

    fn applied(dropout: &mut Dropout, n: usize) -> Vec<f32> {
        dropout
            .apply(ones(n))
            .into_data()
            .to_vec::<f32>()
            .expect("f32")
    }

    #[test]
    fn dropout_zeroes_about_p_of_the_values_and_scales_the_rest_by_one_over_keep() {
        let n = 100_000;
        let out = applied(&mut Dropout::train(0.2, 3), n);
        let dropped = out.iter().filter(|&&v| v == 0.0).count();
        assert!(
            out.iter().all(|&v| v == 0.0 || (v - 1.25).abs() < 1e-6),
            "kept values are scaled by 1 / 0.8"
        );
        let share = dropped as f64 / n as f64;
        assert!((share - 0.2).abs() < 0.01, "dropped share {share}");
        // The mean is preserved in expectation.
        let mean = out.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        assert!((mean - 1.0).abs() < 0.02, "mean {mean}");
    }

    #[test]
    fn dropout_masks_repeat_with_the_seed_and_differ_between_calls_and_seeds() {
        let (mut a, mut b, mut c) = (
            Dropout::train(0.5, 9),
            Dropout::train(0.5, 9),
            Dropout::train(0.5, 10),
        );
        let (first, again, other) = (
            applied(&mut a, 256),
            applied(&mut b, 256),
            applied(&mut c, 256),
        );
        assert_eq!(first, again, "same seed, same mask");
        assert_ne!(first, other, "another seed, another mask");
        assert_ne!(
            first,
            applied(&mut a, 256),
            "the next call draws a new mask"
        );
        assert_eq!(
            applied(&mut Dropout::Off, 8),
            vec![1.0; 8],
            "off passes values through"
        );
    }
}
