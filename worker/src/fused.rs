//! The LSTM recurrence as one autodiff operation with a hand-derived backward pass.
//!
//! Recording the recurrence op by op costs about sixteen graph nodes per time step, and on the
//! CPU backend that bookkeeping, not arithmetic, bounds training speed. Here the whole
//! recurrence of a layer is one node: the forward pass runs on the inner backend and keeps the
//! gate activations and cell states; the backward pass walks the steps in reverse and returns
//! the gradients of the input projection (all steps at once), of `h0` and of `W_hh` (one
//! matrix product over all steps).
//!
//! With gates `a = xp_t + h_{t-1} W_hh` split into i, f, g, o:
//! `i, f, o = sigmoid(.)`, `g = tanh(.)`, `c_t = f c_{t-1} + i g`, `h_t = o tanh(c_t)`.
//! Backward, with `dh` the gradient reaching `h_t` (from the output and from step t+1) and
//! `dc` the one reaching `c_t`:
//! `dc += dh o (1 - tanh(c_t)^2)`, `da_i = dc g i (1 - i)`, `da_f = dc c_{t-1} f (1 - f)`,
//! `da_g = dc i (1 - g^2)`, `da_o = dh tanh(c_t) o (1 - o)`; then `dh_{t-1} = da W_hh^T` and
//! `dc_{t-1} = dc f`.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::activation::sigmoid;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{backend::Backend, Tensor, TensorPrimitive};

use std::sync::atomic::{AtomicBool, Ordering};

use crate::lstm::{flatten_steps, recurrence_composed, steps_of, FusedBackend};

/// Whether the autodiff backend uses the fused operation (true by default). Turning it off
/// records the recurrence op by op instead; it exists so that benchmarks can measure both in
/// one run, and it affects every trial in the process.
static FUSED: AtomicBool = AtomicBool::new(true);

/// Chooses the fused recurrence (default) or the op-by-op one for the whole process.
pub fn set_enabled(enabled: bool) {
    FUSED.store(enabled, Ordering::Relaxed);
}

fn wrap<B: Backend, const D: usize>(primitive: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(primitive))
}

fn unwrap<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> FloatTensor<B> {
    tensor.into_primitive().tensor()
}

/// What the backward pass needs from the forward pass. The composed path keeps the step
/// buffers as `[T, B, width]`, the CPU kernel as flat `[T * B, width]`; each backend reads
/// back its own.
#[derive(Debug, Clone)]
pub struct RecurrenceState<B: Backend> {
    /// Gate activations i, f, g, o of every step, `[T, B, 4H]`.
    pub acts: FloatTensor<B>,
    /// Cell states, `[T, B, H]`.
    pub cells: FloatTensor<B>,
    /// Hidden states, `[T, B, H]`.
    pub hiddens: FloatTensor<B>,
    /// Initial hidden state, `[B, H]`.
    pub h0: FloatTensor<B>,
    /// Recurrent weights, `[H, 4H]`.
    pub w_hh: FloatTensor<B>,
}

/// Runs the recurrence and keeps what the backward pass needs. Returns `(hiddens, state)`.
pub fn forward_with_state<B: Backend>(
    xp: Tensor<B, 3>,
    h0: Tensor<B, 2>,
    w_hh: Tensor<B, 2>,
) -> (Tensor<B, 3>, RecurrenceState<B>) {
    let [steps, batch, four_h] = xp.dims();
    let hidden = four_h / 4;
    let mut h = h0.clone();
    let mut c = Tensor::<B, 2>::zeros([batch, hidden], &xp.device());
    let mut acts = Vec::with_capacity(steps);
    let mut cells = Vec::with_capacity(steps);
    let mut hiddens = Vec::with_capacity(steps);

    for t in 0..steps {
        let gates = xp.clone().narrow(0, t, 1).reshape([batch, four_h]) + h.matmul(w_hh.clone());
        let s = sigmoid(gates.clone().narrow(1, 0, 2 * hidden));
        let g = gates.clone().narrow(1, 2 * hidden, hidden).tanh();
        let o = sigmoid(gates.narrow(1, 3 * hidden, hidden));
        let i = s.clone().narrow(1, 0, hidden);
        let f = s.clone().narrow(1, hidden, hidden);
        c = f * c + i * g.clone();
        h = o.clone() * c.clone().tanh();
        acts.push(Tensor::cat(vec![s, g, o], 1));
        cells.push(c.clone());
        hiddens.push(h.clone());
    }

    let hiddens = Tensor::stack::<3>(hiddens, 0);
    let state = RecurrenceState {
        acts: unwrap(Tensor::stack::<3>(acts, 0)),
        cells: unwrap(Tensor::stack::<3>(cells, 0)),
        hiddens: unwrap(hiddens.clone()),
        h0: unwrap(h0),
        w_hh: unwrap(w_hh),
    };
    (hiddens, state)
}

/// Gradients of `(xp, h0, w_hh)` given the gradient of the hidden states `[T, B, H]`.
pub fn backward_from_state<B: Backend>(
    state: RecurrenceState<B>,
    grad_hiddens: Tensor<B, 3>,
) -> (Tensor<B, 3>, Tensor<B, 2>, Tensor<B, 2>) {
    let acts: Tensor<B, 3> = wrap(state.acts);
    let cells: Tensor<B, 3> = wrap(state.cells);
    let hiddens: Tensor<B, 3> = wrap(state.hiddens);
    let h0: Tensor<B, 2> = wrap(state.h0);
    let w_hh: Tensor<B, 2> = wrap(state.w_hh);
    let [steps, batch, four_h] = acts.dims();
    let hidden = four_h / 4;
    let w_hh_t = w_hh.transpose();
    let mut dh_next = Tensor::<B, 2>::zeros([batch, hidden], &acts.device());
    let mut dc_next = dh_next.clone();
    let mut dgates = Vec::with_capacity(steps);
    let step = |tensor: &Tensor<B, 3>, t: usize, width: usize| {
        tensor.clone().narrow(0, t, 1).reshape([batch, width])
    };

    for t in (0..steps).rev() {
        let act = step(&acts, t, four_h);
        let i = act.clone().narrow(1, 0, hidden);
        let f = act.clone().narrow(1, hidden, hidden);
        let g = act.clone().narrow(1, 2 * hidden, hidden);
        let o = act.narrow(1, 3 * hidden, hidden);
        let c = step(&cells, t, hidden);
        let c_prev = if t > 0 {
            step(&cells, t - 1, hidden)
        } else {
            Tensor::zeros([batch, hidden], &c.device())
        };
        let dh = step(&grad_hiddens, t, hidden) + dh_next;
        let tc = c.tanh();
        let dc = dc_next + dh.clone() * o.clone() * (tc.clone() * tc.clone()).neg().add_scalar(1.0);
        let d_i = dc.clone() * g.clone() * i.clone() * i.clone().neg().add_scalar(1.0);
        let d_f = dc.clone() * c_prev * f.clone() * f.clone().neg().add_scalar(1.0);
        let d_g = dc.clone() * i * (g.clone() * g).neg().add_scalar(1.0);
        let d_o = dh * tc * o.clone() * o.neg().add_scalar(1.0);
        let da = Tensor::cat(vec![d_i, d_f, d_g, d_o], 1);
        dh_next = da.clone().matmul(w_hh_t.clone());
        dc_next = dc * f;
        dgates.push(da);
    }
    dgates.reverse();

    let dxp = Tensor::stack::<3>(dgates, 0);
    let h_prev = Tensor::cat(
        vec![h0.unsqueeze::<3>(), hiddens.narrow(0, 0, steps - 1)],
        0,
    )
    .reshape([steps * batch, hidden]);
    let dw_hh = h_prev
        .transpose()
        .matmul(dxp.clone().reshape([steps * batch, four_h]));
    (dxp, dh_next, dw_hh)
}

#[derive(Debug)]
struct Recurrence;

impl<B: FusedBackend> Backward<B, 3> for Recurrence {
    type State = RecurrenceState<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let [dxp, dh0, dw_hh] = B::lstm_backward(ops.state, grad);
        let [xp_node, h0_node, w_node] = ops.parents;
        if let Some(node) = xp_node {
            grads.register::<B>(node.id, dxp);
        }
        if let Some(node) = h0_node {
            grads.register::<B>(node.id, dh0);
        }
        if let Some(node) = w_node {
            grads.register::<B>(node.id, dw_hh);
        }
    }
}

impl<B: FusedBackend, C: CheckpointStrategy> FusedBackend for Autodiff<B, C> {
    const ON_RAYON: bool = B::ON_RAYON;

    fn lstm_recurrence(
        xp: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        if !FUSED.load(Ordering::Relaxed) {
            let h0: Tensor<Self, 2> = wrap(h0);
            let xp = steps_of(xp, h0.dims()[0]);
            return flatten_steps(recurrence_composed::<Self>(xp, h0, wrap(w_hh)));
        }
        let nodes = [xp.node.clone(), h0.node.clone(), w_hh.node.clone()];
        let prep = Recurrence.prepare::<C>(nodes).compute_bound().stateful();
        match prep {
            OpsKind::Tracked(prep) => {
                let (hiddens, state) =
                    B::lstm_forward_saving(xp.primitive, h0.primitive, w_hh.primitive);
                prep.finish(state, hiddens)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::lstm_recurrence(
                xp.primitive,
                h0.primitive,
                w_hh.primitive,
            )),
        }
    }

    fn linear(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let nodes = [x.node.clone(), w.node.clone(), b.node.clone()];
        match Linear.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                // Inner tensors share their buffers, so keeping them costs no copy.
                let out = B::linear(x.primitive.clone(), w.primitive.clone(), b.primitive);
                prep.finish((x.primitive, w.primitive), out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::linear(x.primitive, w.primitive, b.primitive))
            }
        }
    }
}

/// A linear layer `x W + b` as one autodiff node; its state is `(x, W)`.
#[derive(Debug)]
struct Linear;

impl<B: FusedBackend> Backward<B, 3> for Linear {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (x, w) = ops.state;
        let [x_node, w_node, b_node] = ops.parents;
        let (dx, dw, db) = B::linear_backward(x, w, grad, x_node.is_some());
        if let (Some(node), Some(dx)) = (x_node, dx) {
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = w_node {
            grads.register::<B>(node.id, dw);
        }
        if let Some(node) = b_node {
            grads.register::<B>(node.id, db);
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Tolerance};

    use super::*;
    use crate::device::CpuTrainBackend;

    type Ad = CpuTrainBackend;

    fn inputs(seed: u64) -> (Tensor<Ad, 3>, Tensor<Ad, 2>, Tensor<Ad, 2>) {
        let device = Default::default();
        <Ad as Backend>::seed(&device, seed);
        let (t, b, h) = (5, 3, 4);
        let xp = Tensor::<Ad, 3>::random([t, b, 4 * h], Distribution::Normal(0.0, 1.0), &device);
        let h0 = Tensor::<Ad, 2>::random([b, h], Distribution::Normal(0.0, 0.5), &device);
        let w = Tensor::<Ad, 2>::random([h, 4 * h], Distribution::Normal(0.0, 0.5), &device);
        (xp.require_grad(), h0.require_grad(), w.require_grad())
    }

    #[test]
    fn fused_recurrence_matches_composed_values_and_gradients() {
        let (xp, h0, w) = inputs(3);
        let weights =
            Tensor::<Ad, 3>::random([5, 3, 4], Distribution::Normal(0.0, 1.0), &xp.device());

        let composed = recurrence_composed(xp.clone(), h0.clone(), w.clone());
        let fused = steps_of::<Ad>(
            Ad::lstm_recurrence(
                flatten_steps(xp.clone()),
                unwrap(h0.clone()),
                unwrap(w.clone()),
            ),
            3,
        );
        composed
            .clone()
            .into_data()
            .assert_approx_eq::<f32>(&fused.clone().into_data(), Tolerance::absolute(1e-5));

        let g1 = (composed * weights.clone()).sum().backward();
        let g2 = (fused * weights).sum().backward();
        for (a, b) in [
            (
                xp.grad(&g1).unwrap().into_data(),
                xp.grad(&g2).unwrap().into_data(),
            ),
            (
                w.grad(&g1).unwrap().into_data(),
                w.grad(&g2).unwrap().into_data(),
            ),
        ] {
            a.assert_approx_eq::<f32>(&b, Tolerance::absolute(1e-4));
        }
        h0.grad(&g1).unwrap().into_data().assert_approx_eq::<f32>(
            &h0.grad(&g2).unwrap().into_data(),
            Tolerance::absolute(1e-4),
        );
    }

    #[test]
    fn linear_operation_matches_matmul_values_and_gradients() {
        let device = Default::default();
        <Ad as Backend>::seed(&device, 11);
        let normal = Distribution::Normal(0.0, 1.0);
        let x = Tensor::<Ad, 2>::random([7, 5], normal, &device).require_grad();
        let w = Tensor::<Ad, 2>::random([5, 3], normal, &device).require_grad();
        let b = Tensor::<Ad, 1>::random([3], normal, &device).require_grad();
        let weights = Tensor::<Ad, 2>::random([7, 3], normal, &device);

        let composed = x.clone().matmul(w.clone()) + b.clone().unsqueeze();
        let fused: Tensor<Ad, 2> = wrap(Ad::linear(
            unwrap(x.clone()),
            unwrap(w.clone()),
            unwrap(b.clone()),
        ));
        let close = |a: burn::tensor::TensorData, b: burn::tensor::TensorData| {
            a.assert_approx_eq::<f32>(&b, Tolerance::absolute(1e-5))
        };
        close(composed.clone().into_data(), fused.clone().into_data());

        let g1 = (composed * weights.clone()).sum().backward();
        let g2 = (fused * weights.clone()).sum().backward();
        close(
            x.grad(&g1).unwrap().into_data(),
            x.grad(&g2).unwrap().into_data(),
        );
        close(
            w.grad(&g1).unwrap().into_data(),
            w.grad(&g2).unwrap().into_data(),
        );
        close(
            b.grad(&g1).unwrap().into_data(),
            b.grad(&g2).unwrap().into_data(),
        );

        // Data inputs get no gradient; the weights still do.
        let data = Tensor::<Ad, 2>::from_data(x.to_data(), &device);
        let fused: Tensor<Ad, 2> = wrap(Ad::linear(
            unwrap(data.clone()),
            unwrap(w.clone()),
            unwrap(b),
        ));
        let g3 = (fused * weights).sum().backward();
        assert!(data.grad(&g3).is_none());
        close(
            w.grad(&g1).unwrap().into_data(),
            w.grad(&g3).unwrap().into_data(),
        );
    }

    #[test]
    fn generic_state_path_matches_cpu_kernel() {
        use crate::device::CpuBackend;
        type Cpu = CpuBackend;

        let (xp, h0, w) = inputs(5);
        let (xp, h0, w) = (xp.inner(), h0.inner(), w.inner());
        let grad =
            Tensor::<Cpu, 3>::random([5, 3, 4], Distribution::Normal(0.0, 1.0), &xp.device());

        let (h_generic, state) = forward_with_state::<Cpu>(xp.clone(), h0.clone(), w.clone());
        let (dxp, dh0, dw) = backward_from_state::<Cpu>(state, grad.clone());
        let (h_kernel, state) = Cpu::lstm_forward_saving(flatten_steps(xp), unwrap(h0), unwrap(w));
        let [kxp, kh0, kw] = Cpu::lstm_backward(state, flatten_steps(grad));

        let close = |a: burn::tensor::TensorData, b: burn::tensor::TensorData| {
            a.assert_approx_eq::<f32>(&b, Tolerance::absolute(1e-5))
        };
        close(
            h_generic.into_data(),
            steps_of::<Cpu>(h_kernel, 3).into_data(),
        );
        close(dxp.into_data(), steps_of::<Cpu>(kxp, 3).into_data());
        close(dh0.into_data(), wrap::<Cpu, 2>(kh0).into_data());
        close(dw.into_data(), wrap::<Cpu, 2>(kw).into_data());
    }
}
