//! The dual-branch HybridLSTM.
//!
//! Branch A: the category embedding, mapped by a Linear layer to the initial hidden state of
//! every LSTM layer (cell state zero); a stacked LSTM over the input window with dropout
//! between layers; the top layer's last hidden state, LayerNorm, dropout. Branch B: the static
//! features through `Linear, LayerNorm, ReLU, Dropout` blocks. Fusion: the same blocks over
//! `[A || B]`, then one Linear to every horizon day at once.

use burn::module::{Module, Param};
use burn::tensor::activation::relu;
use burn::tensor::{backend::Backend, Int, Tensor, TensorPrimitive};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use shared::params::HyperParams;

use crate::init::{self, Dropout};
use crate::lstm::{FusedBackend, Lstm, LstmLayer};

/// Every architecture knob, with the defaults of the reference model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HybridLstmConfig {
    /// Rows of the category embedding. Default 1.
    pub num_categories: usize,
    /// Category embedding width. Default 5.
    pub cat_emb_dim: usize,
    /// Temporal features per day. Default 4.
    pub temporal_input_dim: usize,
    /// Static features per sample. Default 17.
    pub static_input_dim: usize,
    /// LSTM hidden size. Default 128.
    pub hidden_size: usize,
    /// Stacked LSTM layers. Default 2.
    pub n_layers: usize,
    /// Static-branch block sizes. Default [64, 32].
    pub dense_hidden_sizes: Vec<usize>,
    /// Fusion block sizes. Default [64].
    pub fusion_hidden_sizes: Vec<usize>,
    /// Forecast horizon in days. Default 30.
    pub output_dim: usize,
    /// Dropout probability. Default 0.2.
    pub dropout: f64,
    /// LayerNorm after the LSTM and in every block. Default true.
    pub use_layer_norm: bool,
}

impl Default for HybridLstmConfig {
    fn default() -> Self {
        Self {
            num_categories: 1,
            cat_emb_dim: 5,
            temporal_input_dim: 4,
            static_input_dim: 17,
            hidden_size: 128,
            n_layers: 2,
            dense_hidden_sizes: vec![64, 32],
            fusion_hidden_sizes: vec![64],
            output_dim: 30,
            dropout: 0.2,
            use_layer_norm: true,
        }
    }
}

impl HybridLstmConfig {
    /// The architecture of a trial: its parameters plus the data's sizes.
    pub fn from_params(
        params: &HyperParams,
        temporal_input_dim: usize,
        static_input_dim: usize,
        output_dim: usize,
    ) -> Self {
        Self {
            num_categories: 1,
            cat_emb_dim: params.cat_emb_dim,
            temporal_input_dim,
            static_input_dim,
            hidden_size: params.hidden_size,
            n_layers: params.n_layers,
            dense_hidden_sizes: params.dense_hidden_sizes.clone(),
            fusion_hidden_sizes: params.fusion_hidden_sizes.clone(),
            output_dim,
            dropout: params.dropout,
            use_layer_norm: params.use_layer_norm,
        }
    }

    /// Width of the static branch's output.
    fn static_out(&self) -> usize {
        self.dense_hidden_sizes
            .last()
            .copied()
            .unwrap_or(self.static_input_dim)
    }

    /// Trainable parameters, in closed form (equal to the module's count).
    pub fn num_params(&self) -> usize {
        let h = self.hidden_size;
        let norm = |d: usize| if self.use_layer_norm { 2 * d } else { 0 };
        let mut total = self.num_categories * self.cat_emb_dim + (self.cat_emb_dim * h + h);
        for layer in 0..self.n_layers {
            let input = if layer == 0 {
                self.temporal_input_dim
            } else {
                h
            };
            total += LstmLayer::<burn::backend::NdArray>::num_params(input, h);
        }
        total += norm(h);
        let mut width = self.static_input_dim;
        for &d in &self.dense_hidden_sizes {
            total += width * d + d + norm(d);
            width = d;
        }
        width = h + self.static_out();
        for &d in &self.fusion_hidden_sizes {
            total += width * d + d + norm(d);
            width = d;
        }
        total + width * self.output_dim + self.output_dim
    }

    /// Matrix-multiply FLOPs of one forward pass of one sample over `input_len` steps
    /// (a multiply-add counts 2).
    pub fn forward_flops(&self, input_len: usize) -> f64 {
        let h = self.hidden_size as f64;
        let mut flops = 0.0;
        for layer in 0..self.n_layers {
            let input = if layer == 0 {
                self.temporal_input_dim as f64
            } else {
                h
            };
            flops += input_len as f64 * 8.0 * h * (input + h);
        }
        flops += 2.0 * self.cat_emb_dim as f64 * h;
        let mut width = self.static_input_dim as f64;
        for &d in &self.dense_hidden_sizes {
            flops += 2.0 * width * d as f64;
            width = d as f64;
        }
        width = h + self.static_out() as f64;
        for &d in &self.fusion_hidden_sizes {
            flops += 2.0 * width * d as f64;
            width = d as f64;
        }
        flops + 2.0 * width * self.output_dim as f64
    }

    /// FLOPs of one training sample: forward plus a backward of twice the forward's products.
    pub fn train_flops(&self, input_len: usize) -> f64 {
        3.0 * self.forward_flops(input_len)
    }

    /// Builds the model with PyTorch's initialisation, drawn from a generator seeded with
    /// `seed`; every parameter is materialised here (no lazy initialisation).
    pub fn init<B: Backend>(&self, seed: u64, device: &B::Device) -> HybridLstm<B> {
        let mut rng = StdRng::seed_from_u64(seed);
        let h = self.hidden_size;
        let cat_emb = init::normal(&mut rng, [self.num_categories, self.cat_emb_dim], device);
        let cat_to_h0 = Dense::init(&mut rng, self.cat_emb_dim, h, device);
        let layers = (0..self.n_layers)
            .map(|layer| {
                let input = if layer == 0 {
                    self.temporal_input_dim
                } else {
                    h
                };
                LstmLayer::init(&mut rng, input, h, device)
            })
            .collect();
        let lstm_norm = self.use_layer_norm.then(|| Norm::init(h, device));
        let mut width = self.static_input_dim;
        let mut static_blocks = Vec::new();
        for &d in &self.dense_hidden_sizes {
            static_blocks.push(Block::init(&mut rng, width, d, self.use_layer_norm, device));
            width = d;
        }
        width = h + self.static_out();
        let mut fusion_blocks = Vec::new();
        for &d in &self.fusion_hidden_sizes {
            fusion_blocks.push(Block::init(&mut rng, width, d, self.use_layer_norm, device));
            width = d;
        }
        let head = Dense::init(&mut rng, width, self.output_dim, device);

        HybridLstm {
            cat_emb,
            cat_to_h0,
            lstm: Lstm { layers },
            lstm_norm,
            static_blocks,
            fusion_blocks,
            head,
            dropout: self.dropout,
        }
    }
}

/// A Linear layer, `y = x W + b`, with `W` stored `[input, output]`.
#[derive(Module, Debug)]
pub struct Dense<B: Backend> {
    /// Weights `[input, output]`.
    pub weight: Param<Tensor<B, 2>>,
    /// Bias `[output]`.
    pub bias: Param<Tensor<B, 1>>,
}

impl<B: Backend> Dense<B> {
    /// PyTorch's initialisation: U(-1/sqrt(input), 1/sqrt(input)).
    pub fn init(rng: &mut StdRng, input: usize, output: usize, device: &B::Device) -> Self {
        let bound = 1.0 / (input as f64).sqrt();
        Self {
            weight: init::uniform(rng, [input, output], bound, device),
            bias: init::uniform(rng, [output], bound, device),
        }
    }
}

impl<B: FusedBackend> Dense<B> {
    /// `x [B, input] -> [B, output]`, as one backend operation.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        Tensor::from_primitive(TensorPrimitive::Float(B::linear(
            x.into_primitive().tensor(),
            self.weight.val().into_primitive().tensor(),
            self.bias.val().into_primitive().tensor(),
        )))
    }
}

/// LayerNorm over the last dimension (epsilon 1e-5, as PyTorch).
#[derive(Module, Debug)]
pub struct Norm<B: Backend> {
    /// Scale, initialised to 1.
    pub gamma: Param<Tensor<B, 1>>,
    /// Shift, initialised to 0.
    pub beta: Param<Tensor<B, 1>>,
}

impl<B: Backend> Norm<B> {
    /// A LayerNorm of width `d`.
    pub fn init(d: usize, device: &B::Device) -> Self {
        Self {
            gamma: init::constant(d, 1.0, device),
            beta: init::constant(d, 0.0, device),
        }
    }

    /// Normalises each row of `x [B, d]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let (var, mean) = x.clone().var_mean_bias(1);
        let normalised = (x - mean) / var.add_scalar(1e-5).sqrt();
        normalised * self.gamma.val().unsqueeze() + self.beta.val().unsqueeze()
    }
}

/// `Linear, LayerNorm, ReLU, Dropout`.
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    /// The Linear layer.
    pub dense: Dense<B>,
    /// The LayerNorm, when enabled.
    pub norm: Option<Norm<B>>,
}

impl<B: Backend> Block<B> {
    /// A block from `input` to `output` features.
    pub fn init(
        rng: &mut StdRng,
        input: usize,
        output: usize,
        layer_norm: bool,
        device: &B::Device,
    ) -> Self {
        Self {
            dense: Dense::init(rng, input, output, device),
            norm: layer_norm.then(|| Norm::init(output, device)),
        }
    }
}

impl<B: FusedBackend> Block<B> {
    /// `x [B, input] -> [B, output]`.
    pub fn forward(&self, x: Tensor<B, 2>, dropout: &mut Dropout) -> Tensor<B, 2> {
        let mut y = self.dense.forward(x);
        if let Some(norm) = &self.norm {
            y = norm.forward(y);
        }
        dropout.apply(relu(y))
    }
}

/// The HybridLSTM. Build it with [`HybridLstmConfig::init`].
#[derive(Module, Debug)]
pub struct HybridLstm<B: Backend> {
    /// Category embedding `[num_categories, cat_emb_dim]`.
    pub cat_emb: Param<Tensor<B, 2>>,
    /// Embedding to the initial hidden state.
    pub cat_to_h0: Dense<B>,
    /// The stacked LSTM.
    pub lstm: Lstm<B>,
    /// LayerNorm of the last hidden state.
    pub lstm_norm: Option<Norm<B>>,
    /// Static branch.
    pub static_blocks: Vec<Block<B>>,
    /// Fusion blocks.
    pub fusion_blocks: Vec<Block<B>>,
    /// Output layer to every horizon day.
    pub head: Dense<B>,
    /// Dropout probability, used when the caller passes a training [`Dropout`].
    pub dropout: f64,
}

impl<B: FusedBackend> HybridLstm<B> {
    /// Forecasts every horizon day.
    ///
    /// - `x_temporal`: `[B, T, temporal_input_dim]`
    /// - `x_static`: `[B, static_input_dim]`
    /// - `category`: `[B]`, rows of the embedding
    /// - `dropout`: [`Dropout::Off`] for evaluation, a seeded one for training
    ///
    /// Returns `[B, output_dim]` in scaled target space.
    pub fn forward(
        &self,
        x_temporal: Tensor<B, 3>,
        x_static: Tensor<B, 2>,
        category: Tensor<B, 1, Int>,
        dropout: &mut Dropout,
    ) -> Tensor<B, 2> {
        let embedding = self.cat_emb.val().select(0, category);
        let h0 = self.cat_to_h0.forward(embedding);
        let mut temporal = self.lstm.forward(x_temporal, h0, dropout);
        if let Some(norm) = &self.lstm_norm {
            temporal = norm.forward(temporal);
        }
        let temporal = dropout.apply(temporal);

        let mut fixed = x_static;
        for block in &self.static_blocks {
            fixed = block.forward(fixed, dropout);
        }

        let mut fused = Tensor::cat(vec![temporal, fixed], 1);
        for block in &self.fusion_blocks {
            fused = block.forward(fused, dropout);
        }
        self.head.forward(fused)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;

    use super::*;
    use crate::device::CpuBackend;

    /// The reference's own count for the default model (`flops.py`, `param_count(128, 2)`).
    const REFERENCE_DEFAULT_PARAMS: usize = 217_539;

    #[test]
    fn default_parameter_count_matches_reference_formula() {
        let config = HybridLstmConfig::default();
        assert_eq!(config.num_params(), REFERENCE_DEFAULT_PARAMS);
        let model = config.init::<CpuBackend>(0, &Default::default());
        assert_eq!(model.num_params(), REFERENCE_DEFAULT_PARAMS);
    }

    #[test]
    fn closed_form_count_matches_module_for_other_shapes() {
        let config = HybridLstmConfig {
            hidden_size: 24,
            n_layers: 3,
            dense_hidden_sizes: vec![16],
            fusion_hidden_sizes: vec![],
            use_layer_norm: false,
            num_categories: 3,
            ..HybridLstmConfig::default()
        };
        let model = config.init::<CpuBackend>(0, &Default::default());
        assert_eq!(model.num_params(), config.num_params());
    }

    #[test]
    fn default_training_flops_match_reference() {
        // flops.py: F_fwd = 11,951,232 for 128x2 over 30 steps; training is 3x.
        let config = HybridLstmConfig::default();
        assert_eq!(config.forward_flops(30), 11_951_232.0);
        assert_eq!(config.train_flops(30), 35_853_696.0);
    }

    #[test]
    fn forward_maps_batch_to_horizon() {
        let config = HybridLstmConfig {
            hidden_size: 16,
            ..HybridLstmConfig::default()
        };
        let device = Default::default();
        let model = config.init::<CpuBackend>(1, &device);
        let (b, t) = (3, 7);
        let xt = Tensor::<CpuBackend, 3>::ones([b, t, 4], &device);
        let xs = Tensor::<CpuBackend, 2>::ones([b, 17], &device);
        let cat =
            Tensor::<CpuBackend, 1, Int>::from_data(TensorData::new(vec![0i64; b], [b]), &device);
        let y = model.forward(xt, xs, cat, &mut Dropout::Off);
        assert_eq!(y.dims(), [b, 30]);
        let values = y.into_data().to_vec::<f32>().unwrap();
        assert!(values.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn same_seed_builds_identical_weights() {
        let config = HybridLstmConfig::default();
        let device = Default::default();
        let a = config.init::<CpuBackend>(9, &device);
        let b = config.init::<CpuBackend>(9, &device);
        let c = config.init::<CpuBackend>(10, &device);
        let w = |m: &HybridLstm<CpuBackend>| m.lstm.layers[1].w_hh.val().into_data();
        assert_eq!(w(&a), w(&b));
        assert_ne!(w(&a), w(&c));
    }
}
