//! A stacked LSTM with PyTorch's layout (gates i, f, g, o; two bias vectors per layer) built for
//! speed: the input projection of all time steps is one matrix product per layer, the four gates
//! are one product per step, and the recurrence itself is a backend operation
//! ([`LstmBackend::lstm_recurrence`]) so that the autodiff backend can run it with a
//! hand-derived backward pass instead of recording a dozen small operations per step.

use std::borrow::Cow;

use burn::backend::ndarray::NdArrayTensor;
use burn::module::{Module, Param};
use burn::tensor::activation::sigmoid;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{backend::Backend, Tensor, TensorMetadata, TensorPrimitive};
use rand::rngs::StdRng;

use crate::cpu_kernel;
use crate::fused::{self, RecurrenceState};
use crate::init::{self, Dropout};

/// A backend that can run the LSTM recurrence as one operation.
///
/// The default methods compose ordinary tensor operations (correct on every backend); the
/// CPU backend overrides them with a fused kernel on plain buffers, and the autodiff backend
/// records the whole recurrence as one node whose backward pass is [`Self::lstm_backward`].
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
        recurrence_composed(xp, h0, w_hh).into_primitive().tensor()
    }

    /// The recurrence, keeping what [`Self::lstm_backward`] needs.
    fn lstm_forward_saving(
        xp: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, RecurrenceState<Self>) {
        let (hiddens, state) = fused::forward_with_state::<Self>(
            Tensor::from_primitive(TensorPrimitive::Float(xp)),
            Tensor::from_primitive(TensorPrimitive::Float(h0)),
            Tensor::from_primitive(TensorPrimitive::Float(w_hh)),
        );
        (hiddens.into_primitive().tensor(), state)
    }

    /// Gradients of `[xp, h0, w_hh]` from the gradient of the hidden states `[T, B, H]`.
    fn lstm_backward(
        state: RecurrenceState<Self>,
        grad_hiddens: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        let (dxp, dh0, dw) = fused::backward_from_state::<Self>(
            state,
            Tensor::from_primitive(TensorPrimitive::Float(grad_hiddens)),
        );
        [
            dxp.into_primitive().tensor(),
            dh0.into_primitive().tensor(),
            dw.into_primitive().tensor(),
        ]
    }
}

type Cpu = burn::backend::NdArray<f32>;

/// A CPU tensor's values in row-major order, borrowed when its storage already is.
fn values(tensor: &FloatTensor<Cpu>) -> Cow<'_, [f32]> {
    let NdArrayTensor::F32(storage) = tensor else {
        unreachable!("NdArray<f32> holds f32 tensors, found {:?}", tensor.dtype());
    };
    let view = storage.view();
    match view.to_slice() {
        Some(values) => Cow::Borrowed(values),
        None => Cow::Owned(view.iter().copied().collect()),
    }
}

/// A CPU tensor's values as an owned row-major buffer, without a copy when the tensor is the
/// only owner of a contiguous buffer (the usual case for a freshly computed projection).
fn into_values(tensor: FloatTensor<Cpu>) -> Vec<f32> {
    let dtype = tensor.dtype();
    let NdArrayTensor::F32(storage) = tensor else {
        unreachable!("NdArray<f32> holds f32 tensors, found {dtype:?}");
    };
    let array = storage.into_owned();
    if !array.is_standard_layout() {
        return array.iter().copied().collect();
    }
    let len = array.len();
    match array.into_owned().into_raw_vec_and_offset() {
        (values, Some(0)) if values.len() == len => values,
        (values, offset) => {
            let start = offset.unwrap_or(0);
            values[start..start + len].to_vec()
        }
    }
}

/// Wraps a row-major buffer as a CPU tensor of shape `dims`, without a copy.
fn tensor(values: Vec<f32>, dims: &[usize]) -> FloatTensor<Cpu> {
    ndarray::ArcArray::from_shape_vec(ndarray::IxDyn(dims), values)
        .expect("buffer length matches the shape")
        .into()
}

impl LstmBackend for Cpu {
    fn lstm_recurrence(
        xp: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::lstm_forward_saving(xp, h0, w_hh).0
    }

    fn lstm_forward_saving(
        xp: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, RecurrenceState<Self>) {
        let [steps, batch, four_h]: [usize; 3] = xp
            .shape()
            .dims
            .as_slice()
            .try_into()
            .expect("xp is [T, B, 4H]");
        let hidden = four_h / 4;
        let out = cpu_kernel::forward(
            into_values(xp),
            &values(&h0),
            &values(&w_hh),
            steps,
            batch,
            hidden,
        );
        // The hidden states are both the output and part of the state: one buffer, shared.
        let hiddens = tensor(out.hiddens, &[steps, batch, hidden]);
        let state = RecurrenceState {
            acts: tensor(out.acts, &[steps, batch, four_h]),
            cells: tensor(out.cells, &[steps, batch, hidden]),
            hiddens: hiddens.clone(),
            h0,
            w_hh,
        };
        (hiddens, state)
    }

    fn lstm_backward(
        state: RecurrenceState<Self>,
        grad_hiddens: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        let [steps, batch, four_h]: [usize; 3] = state
            .acts
            .shape()
            .dims
            .as_slice()
            .try_into()
            .expect("acts are [T, B, 4H]");
        let hidden = four_h / 4;
        let (acts, cells, hiddens) = (
            values(&state.acts),
            values(&state.cells),
            values(&state.hiddens),
        );
        let (h0, w_hh, grad) = (
            values(&state.h0),
            values(&state.w_hh),
            values(&grad_hiddens),
        );
        let saved = cpu_kernel::Saved {
            steps,
            batch,
            hidden,
            acts: &acts,
            cells: &cells,
            hiddens: &hiddens,
            h0: &h0,
            w_hh: &w_hh,
        };
        let (dxp, dh0, dw) = cpu_kernel::backward(saved, &grad);
        [
            tensor(dxp, &[steps, batch, four_h]),
            tensor(dh0, &[batch, hidden]),
            tensor(dw, &[hidden, four_h]),
        ]
    }
}

/// The CUDA backend runs the recurrence with the default (composed) methods; its own fused
/// kernel is future work.
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
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        h0: Tensor<B, 2>,
        dropout: &mut Dropout,
    ) -> Tensor<B, 2> {
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
            last = hs
                .clone()
                .narrow(0, steps - 1, 1)
                .reshape([batch, four_h / 4]);
            input = hs;
        }

        last
    }
}
