//! A stacked LSTM with PyTorch's layout (gates i, f, g, o; two bias vectors per layer) built for
//! speed: the input projection of all time steps is one matrix product per layer, the four gates
//! are one product per step, and the recurrence itself is a backend operation
//! ([`LstmBackend::lstm_recurrence`]) so that the autodiff backend can run it with a
//! hand-derived backward pass instead of recording a dozen small operations per step.

use burn::module::{Module, Param};
use burn::tensor::activation::sigmoid;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{backend::Backend, Tensor, TensorPrimitive};
use rand::rngs::StdRng;

use crate::init::{self, Dropout};

/// A backend that can run the LSTM recurrence as one operation.
///
/// The default method composes ordinary tensor operations (correct on every backend);
/// the autodiff backend overrides it with a fused forward and a hand-written backward.
pub trait LstmBackend: Backend {
    /// Runs the recurrence of one LSTM layer.
    ///
    /// - `xp`: `[T, B, 4H]`, the input projection `x W_ih + b_ih + b_hh` of every step
    /// - `h0`: `[B, H]`, the initial hidden state (the cell state starts at zero)
    /// - `w_hh`: `[H, 4H]`, the recurrent weights
    ///
    /// Returns the hidden state of every step, `[T, B, H]`.
    fn lstm_recurrence(
        xp: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let xp = Tensor::<Self, 3>::from_primitive(TensorPrimitive::Float(xp));
        let h0 = Tensor::<Self, 2>::from_primitive(TensorPrimitive::Float(h0));
        let w_hh = Tensor::<Self, 2>::from_primitive(TensorPrimitive::Float(w_hh));
        recurrence_composed(xp, h0, w_hh)
            .into_primitive()
            .tensor()
    }
}

impl LstmBackend for burn::backend::NdArray<f32> {}

#[cfg(feature = "cuda")]
impl LstmBackend for burn::backend::Cuda<f32> {}

/// The recurrence written with ordinary tensor operations: the reference the fused operation
/// is tested against, and the forward pass of backends without a fused one.
pub fn recurrence_composed<B: Backend>(
    xp: Tensor<B, 3>,
    h0: Tensor<B, 2>,
    w_hh: Tensor<B, 2>,
) -> Tensor<B, 3> {
    let [steps, batch, four_h] = xp.dims();
    let hidden = four_h / 4;
    let mut h = h0;
    let mut c = Tensor::<B, 2>::zeros([batch, hidden], &xp.device());
    let mut outputs = Vec::with_capacity(steps);

    for t in 0..steps {
        let gates = xp.clone().narrow(0, t, 1).reshape([batch, four_h]) + h.matmul(w_hh.clone());
        let act = sigmoid(gates.clone());
        let i = act.clone().narrow(1, 0, hidden);
        let f = act.clone().narrow(1, hidden, hidden);
        let o = act.narrow(1, 3 * hidden, hidden);
        let g = gates.narrow(1, 2 * hidden, hidden).tanh();
        c = f * c + i * g;
        h = o * c.clone().tanh();
        outputs.push(h.clone());
    }

    Tensor::stack(outputs, 0)
}

/// One LSTM layer.
#[derive(Module, Debug)]
pub struct LstmLayer<B: Backend> {
    /// Input weights `[input, 4H]`, gates in the order i, f, g, o.
    pub w_ih: Param<Tensor<B, 2>>,
    /// Recurrent weights `[H, 4H]`.
    pub w_hh: Param<Tensor<B, 2>>,
    /// Input bias `[4H]`.
    pub b_ih: Param<Tensor<B, 1>>,
    /// Recurrent bias `[4H]` (kept separate, as PyTorch does, so parameter counts match).
    pub b_hh: Param<Tensor<B, 1>>,
}

impl<B: Backend> LstmLayer<B> {
    /// PyTorch's initialisation: every weight and bias from U(-1/sqrt(H), 1/sqrt(H)).
    pub fn init(rng: &mut StdRng, input: usize, hidden: usize, device: &B::Device) -> Self {
        let bound = 1.0 / (hidden as f64).sqrt();
        Self {
            w_ih: init::uniform(rng, [input, 4 * hidden], bound, device),
            w_hh: init::uniform(rng, [hidden, 4 * hidden], bound, device),
            b_ih: init::uniform(rng, [4 * hidden], bound, device),
            b_hh: init::uniform(rng, [4 * hidden], bound, device),
        }
    }

    /// Parameters of a layer with these sizes.
    pub fn num_params(input: usize, hidden: usize) -> usize {
        4 * hidden * (input + hidden) + 2 * 4 * hidden
    }
}

/// A stack of LSTM layers, time-major inside.
#[derive(Module, Debug)]
pub struct Lstm<B: Backend> {
    /// Layers, bottom first.
    pub layers: Vec<LstmLayer<B>>,
}

impl<B: LstmBackend> Lstm<B> {
    /// Runs the stack over `x` `[B, T, I]` with every layer starting from `h0` `[B, H]` (the
    /// cell state starts at zero); `dropout` applies between layers. Returns the top layer's
    /// last hidden state `[B, H]`.
    pub fn forward(&self, x: Tensor<B, 3>, h0: Tensor<B, 2>, dropout: &mut Dropout) -> Tensor<B, 2> {
        let [batch, steps, _] = x.dims();
        let mut input = x.swap_dims(0, 1);
        let mut last = h0.clone();

        for (index, layer) in self.layers.iter().enumerate() {
            if index > 0 {
                input = dropout.apply(input);
            }
            let [_, _, width] = input.dims();
            let four_h = layer.w_hh.dims()[1];
            let bias = layer.b_ih.val() + layer.b_hh.val();
            let xp = input
                .reshape([steps * batch, width])
                .matmul(layer.w_ih.val())
                .add(bias.unsqueeze())
                .reshape([steps, batch, four_h]);
            let hs = B::lstm_recurrence(
                xp.into_primitive().tensor(),
                h0.clone().into_primitive().tensor(),
                layer.w_hh.val().into_primitive().tensor(),
            );
            let hs = Tensor::<B, 3>::from_primitive(TensorPrimitive::Float(hs));
            last = hs.clone().narrow(0, steps - 1, 1).reshape([batch, four_h / 4]);
            input = hs;
        }

        last
    }
}
