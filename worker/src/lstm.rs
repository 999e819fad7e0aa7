//! A stacked LSTM with PyTorch's layout (gates i, f, g, o; two bias vectors per layer) built for
//! speed: the input projection of all time steps is one matrix product per layer, the four gates
//! are one product per step, and the recurrence itself is a backend operation
//! ([`FusedBackend::lstm_recurrence`]) so that the autodiff backend can run it with a
//! hand-derived backward pass instead of recording a dozen small operations per step.

use std::borrow::Cow;

use burn::backend::ndarray::NdArrayTensor;
use burn::module::{Module, Param};
use burn::tensor::activation::sigmoid;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{backend::Backend, Tensor, TensorMetadata, TensorPrimitive};
use rand::rngs::StdRng;
use rayon::prelude::*;

use crate::adam::AdamStep;
use crate::cpu_kernel;
use crate::fused::{self, RecurrenceState};
use crate::init::{self, Dropout};

/// A backend that runs the hot spots of training as one operation each: the LSTM recurrence,
/// a linear layer, and an Adam update.
///
/// The default methods compose ordinary tensor operations (correct on every backend); the
/// CPU backend overrides them with kernels on plain buffers, and the autodiff backend records
/// the first two as one node each, whose backward pass is [`Self::lstm_backward`] /
/// [`Self::linear_backward`].
///
/// Sequences are time-major and flat: row `t * B + b` of a `[T * B, width]` tensor is step `t`
/// of batch row `b`, so that the input projection, the recurrence and the next layer pass
/// tensors along without reshaping them (a reshape copies on the CPU backend).
pub trait FusedBackend: Backend {
    /// Whether this backend's kernels split their work over rayon's pool, so that training
    /// runs faster on one of the pool's threads ([`crate::trainer::on_pool`]).
    const ON_RAYON: bool = false;

    /// Runs the recurrence of one LSTM layer.
    ///
    /// - `xp`: `[T * B, 4H]`, the input projection `x W_ih + b_ih + b_hh` of every step
    /// - `h0`: `[B, H]`, the initial hidden state (the cell state starts at zero)
    /// - `w_hh`: `[H, 4H]`, the recurrent weights
    ///
    /// Returns the hidden state of every step, `[T * B, H]`.
    fn lstm_recurrence(
        xp: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let h0 = Tensor::<Self, 2>::from_primitive(TensorPrimitive::Float(h0));
        let xp = steps_of(xp, h0.dims()[0]);
        let w_hh = Tensor::<Self, 2>::from_primitive(TensorPrimitive::Float(w_hh));
        flatten_steps(recurrence_composed(xp, h0, w_hh))
    }

    /// The recurrence, keeping what [`Self::lstm_backward`] needs.
    fn lstm_forward_saving(
        xp: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, RecurrenceState<Self>) {
        let h0 = Tensor::<Self, 2>::from_primitive(TensorPrimitive::Float(h0));
        let xp = steps_of(xp, h0.dims()[0]);
        let (hiddens, state) = fused::forward_with_state::<Self>(
            xp,
            h0,
            Tensor::from_primitive(TensorPrimitive::Float(w_hh)),
        );
        (flatten_steps(hiddens), state)
    }

    /// Gradients of `[xp, h0, w_hh]` from the gradient of the hidden states `[T * B, H]`.
    fn lstm_backward(
        state: RecurrenceState<Self>,
        grad_hiddens: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        let batch =
            Tensor::<Self, 2>::from_primitive(TensorPrimitive::Float(state.h0.clone())).dims()[0];
        let (dxp, dh0, dw) =
            fused::backward_from_state::<Self>(state, steps_of(grad_hiddens, batch));
        [
            flatten_steps(dxp),
            dh0.into_primitive().tensor(),
            dw.into_primitive().tensor(),
        ]
    }

    /// `x W + b`: `x [M, K]`, `w [K, N]`, `b [N]`, returns `[M, N]`.
    fn linear(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let x = Tensor::<Self, 2>::from_primitive(TensorPrimitive::Float(x));
        let w = Tensor::<Self, 2>::from_primitive(TensorPrimitive::Float(w));
        let b = Tensor::<Self, 1>::from_primitive(TensorPrimitive::Float(b));
        (x.matmul(w) + b.unsqueeze()).into_primitive().tensor()
    }

    /// Gradients of [`Self::linear`] from the gradient of its output `[M, N]`: `(dx, dw, db)`
    /// = `(g W^T, x^T g, column sums of g)`, with `dx` only when `need_dx` (the inputs of the
    /// first layers are data, which need no gradient).
    fn linear_backward(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        need_dx: bool,
    ) -> (
        Option<FloatTensor<Self>>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    ) {
        let x = Tensor::<Self, 2>::from_primitive(TensorPrimitive::Float(x));
        let w = Tensor::<Self, 2>::from_primitive(TensorPrimitive::Float(w));
        let g = Tensor::<Self, 2>::from_primitive(TensorPrimitive::Float(grad));
        let n = g.dims()[1];
        let dx = need_dx.then(|| g.clone().matmul(w.transpose()).into_primitive().tensor());
        let dw = x.transpose().matmul(g.clone());
        let db = g.sum_dim(0).reshape([n]);
        (
            dx,
            dw.into_primitive().tensor(),
            db.into_primitive().tensor(),
        )
    }

    /// One Adam update ([`AdamStep::apply`] on every element) of a parameter tensor from its
    /// gradient and moments; returns `[param, moment_1, moment_2]` after the step.
    fn adam_step<const D: usize>(
        param: Tensor<Self, D>,
        grad: Tensor<Self, D>,
        moment_1: Tensor<Self, D>,
        moment_2: Tensor<Self, D>,
        step: &AdamStep,
    ) -> [Tensor<Self, D>; 3] {
        let grad = if step.weight_decay != 0.0 {
            param.clone().mul_scalar(step.weight_decay).add(grad)
        } else {
            grad
        };
        let m = moment_1
            .mul_scalar(step.beta_1)
            .add(grad.clone().mul_scalar(1.0 - step.beta_1));
        let v = moment_2
            .mul_scalar(step.beta_2)
            .add(grad.square().mul_scalar(1.0 - step.beta_2));
        let update = m.clone().div_scalar(step.correction_1).div(
            v.clone()
                .div_scalar(step.correction_2)
                .sqrt()
                .add_scalar(step.epsilon),
        );
        [param - update.mul_scalar(step.lr), m, v]
    }

    /// The sum of the squares of a tensor's values, `[1]` (for gradient-norm clipping).
    fn sum_squares<const D: usize>(tensor: Tensor<Self, D>) -> Tensor<Self, 1> {
        tensor.clone().mul(tensor).sum()
    }

    /// `tensor * factor` (for gradient-norm clipping).
    fn scale<const D: usize>(tensor: Tensor<Self, D>, factor: f32) -> Tensor<Self, D> {
        tensor.mul_scalar(factor)
    }
}

/// A flat time-major `[T * B, width]` tensor as `[T, B, width]`.
pub(crate) fn steps_of<B: Backend>(flat: FloatTensor<B>, batch: usize) -> Tensor<B, 3> {
    let flat = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(flat));
    let [rows, width] = flat.dims();
    flat.reshape([rows / batch, batch, width])
}

/// `[T, B, width]` as a flat `[T * B, width]` tensor.
pub(crate) fn flatten_steps<B: Backend>(steps: Tensor<B, 3>) -> FloatTensor<B> {
    let [t, b, width] = steps.dims();
    steps.reshape([t * b, width]).into_primitive().tensor()
}

/// The two dimensions of a matrix.
fn dims2<B: Backend>(tensor: &FloatTensor<B>) -> [usize; 2] {
    tensor
        .shape()
        .dims
        .as_slice()
        .try_into()
        .expect("a matrix has two dimensions")
}

type Cpu = burn::backend::NdArray<f32>;

/// Rows per rayon task in the CPU backend's row-wise loops (bias rows, bias gradients): enough
/// work per task to outweigh handing it to another thread.
const ROWS_PER_TASK: usize = 64;

/// Elements per rayon task in the CPU backend's passes over whole parameter tensors (Adam,
/// gradient clipping): enough that a thread's share outweighs handing it over.
const TENSOR_CHUNK: usize = 1 << 15;

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

impl FusedBackend for Cpu {
    const ON_RAYON: bool = true;

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
        let [rows, four_h] = dims2::<Self>(&xp);
        let [batch, hidden] = dims2::<Self>(&h0);
        let steps = rows / batch;
        let out = cpu_kernel::forward(
            into_values(xp),
            &values(&h0),
            &values(&w_hh),
            steps,
            batch,
            hidden,
        );
        // The hidden states are both the output and part of the state: one buffer, shared.
        let hiddens = tensor(out.hiddens, &[rows, hidden]);
        let state = RecurrenceState {
            acts: tensor(out.acts, &[rows, four_h]),
            cells: tensor(out.cells, &[rows, hidden]),
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
        let [rows, four_h] = dims2::<Self>(&state.acts);
        let [batch, hidden] = dims2::<Self>(&state.h0);
        let steps = rows / batch;
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
            tensor(dxp, &[rows, four_h]),
            tensor(dh0, &[batch, hidden]),
            tensor(dw, &[hidden, four_h]),
        ]
    }

    fn linear(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let ([m, k], [_, n]) = (dims2::<Self>(&x), dims2::<Self>(&w));
        let (x, w, b) = (values(&x), values(&w), values(&b));
        // The bias in every row, then the product added to it (both on rayon's threads).
        let mut out = vec![0.0f32; m * n];
        out.par_chunks_mut(n)
            .with_min_len(ROWS_PER_TASK)
            .for_each(|row| row.copy_from_slice(&b));
        cpu_kernel::gemm(m, k, n, &x, (k, 1), &w, (n, 1), 1.0, &mut out);
        tensor(out, &[m, n])
    }

    fn linear_backward(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        need_dx: bool,
    ) -> (
        Option<FloatTensor<Self>>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    ) {
        let ([m, k], [_, n]) = (dims2::<Self>(&x), dims2::<Self>(&w));
        let (x, w, g) = (values(&x), values(&w), values(&grad));
        // The transposes are strides, not copies.
        let dx = need_dx.then(|| {
            let mut dx = vec![0.0f32; m * k];
            cpu_kernel::gemm(m, n, k, &g, (n, 1), &w, (1, n), 0.0, &mut dx);
            tensor(dx, &[m, k])
        });
        let mut dw = vec![0.0f32; k * n];
        cpu_kernel::gemm(k, m, n, &x, (1, k), &g, (n, 1), 0.0, &mut dw);
        // Column sums of fixed row blocks on rayon's threads, then the blocks' sums in order:
        // the same additions in the same order whatever the thread count.
        let partial: Vec<Vec<f32>> = g
            .par_chunks(n * ROWS_PER_TASK)
            .map(|block| {
                let mut sum = vec![0.0f32; n];
                for row in block.chunks_exact(n) {
                    for (s, v) in sum.iter_mut().zip(row) {
                        *s += v;
                    }
                }
                sum
            })
            .collect();
        let mut db = vec![0.0f32; n];
        for block in &partial {
            for (s, v) in db.iter_mut().zip(block) {
                *s += v;
            }
        }
        (dx, tensor(dw, &[k, n]), tensor(db, &[n]))
    }

    fn adam_step<const D: usize>(
        param: Tensor<Self, D>,
        grad: Tensor<Self, D>,
        moment_1: Tensor<Self, D>,
        moment_2: Tensor<Self, D>,
        step: &AdamStep,
    ) -> [Tensor<Self, D>; 3] {
        let dims = param.dims();
        let grad = grad.into_primitive().tensor();
        let grad = values(&grad);
        // In place: the parameter and its moments are usually the only owners of their
        // buffers (a copy is made where they are shared, as with a kept best model).
        let mut p = into_values(param.into_primitive().tensor());
        let mut m = into_values(moment_1.into_primitive().tensor());
        let mut v = into_values(moment_2.into_primitive().tensor());
        p.par_chunks_mut(TENSOR_CHUNK)
            .zip(m.par_chunks_mut(TENSOR_CHUNK))
            .zip(v.par_chunks_mut(TENSOR_CHUNK))
            .zip(grad.par_chunks(TENSOR_CHUNK))
            .for_each(|(((p, m), v), g)| {
                for (((p, m), v), &g) in p.iter_mut().zip(m).zip(v).zip(g) {
                    *p = step.apply(*p, g, m, v);
                }
            });
        let wrap = |values| Tensor::from_primitive(TensorPrimitive::Float(tensor(values, &dims)));
        [wrap(p), wrap(m), wrap(v)]
    }

    fn sum_squares<const D: usize>(tensor: Tensor<Self, D>) -> Tensor<Self, 1> {
        let device = tensor.device();
        let primitive = tensor.into_primitive().tensor();
        // Fixed blocks summed in order: the same result whatever the thread count.
        let partial: Vec<f64> = values(&primitive)
            .par_chunks(TENSOR_CHUNK)
            .map(|block| block.iter().map(|&v| f64::from(v) * f64::from(v)).sum())
            .collect();
        let total = partial.iter().sum::<f64>() as f32;
        Tensor::from_data(burn::tensor::TensorData::new(vec![total], [1]), &device)
    }

    fn scale<const D: usize>(grad: Tensor<Self, D>, factor: f32) -> Tensor<Self, D> {
        let dims = grad.dims();
        let mut values = into_values(grad.into_primitive().tensor());
        values
            .par_chunks_mut(TENSOR_CHUNK)
            .for_each(|block| block.iter_mut().for_each(|v| *v *= factor));
        Tensor::from_primitive(TensorPrimitive::Float(tensor(values, &dims)))
    }
}

/// The CUDA backend runs the recurrence with the default (composed) methods; its own fused
/// kernel is future work.
#[cfg(feature = "cuda")]
impl FusedBackend for burn::backend::Cuda<f32> {}

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

impl<B: FusedBackend> Lstm<B> {
    /// Runs the stack over `x` `[B, T, I]` with every layer starting from `h0` `[B, H]` (the
    /// cell state starts at zero); `dropout` applies between layers. Returns the top layer's
    /// last hidden state `[B, H]`.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        h0: Tensor<B, 2>,
        dropout: &mut Dropout,
    ) -> Tensor<B, 2> {
        let [batch, steps, width] = x.dims();
        if self.layers.is_empty() {
            return h0;
        }
        let mut input = x.swap_dims(0, 1).reshape([steps * batch, width]);
        for (index, layer) in self.layers.iter().enumerate() {
            if index > 0 {
                input = dropout.apply(input);
            }
            let bias = layer.b_ih.val() + layer.b_hh.val();
            let xp = B::linear(
                input.into_primitive().tensor(),
                layer.w_ih.val().into_primitive().tensor(),
                bias.into_primitive().tensor(),
            );
            let hs = B::lstm_recurrence(
                xp,
                h0.clone().into_primitive().tensor(),
                layer.w_hh.val().into_primitive().tensor(),
            );
            input = Tensor::from_primitive(TensorPrimitive::Float(hs));
        }
        // The last step's rows.
        input.narrow(0, (steps - 1) * batch, batch)
    }
}
