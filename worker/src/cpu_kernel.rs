//! The LSTM recurrence on plain `f32` buffers for the CPU backend: one matrix product per step
//! (through `matrixmultiply`, which burn's ndarray backend also uses) and the gate arithmetic
//! of a step fused into one loop, forward and backward. Mirrors
//! [`crate::fused::forward_with_state`] and [`crate::fused::backward_from_state`], which the
//! tests compare it with.

/// Buffers kept by the forward pass, row-major.
#[derive(Debug, Clone)]
pub struct Saved {
    /// Steps.
    pub steps: usize,
    /// Batch.
    pub batch: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Gate activations i, f, g, o, `[T, B, 4H]`.
    pub acts: Vec<f32>,
    /// Cell states, `[T, B, H]`.
    pub cells: Vec<f32>,
    /// Hidden states, `[T, B, H]`.
    pub hiddens: Vec<f32>,
    /// Initial hidden state, `[B, H]`.
    pub h0: Vec<f32>,
    /// Recurrent weights, `[H, 4H]`.
    pub w_hh: Vec<f32>,
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `c[m, n] = beta * c + a[m, k] b[k, n]` with explicit strides (row, column) of a and b.
#[allow(clippy::too_many_arguments)]
fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    (rsb, csb): (usize, usize),
    beta: f32,
    c: &mut [f32],
) {
    assert!(c.len() >= m * n, "gemm output buffer too small");
    assert!(
        a.len() > (m - 1) * rsa + (k - 1) * csa,
        "gemm lhs buffer too small"
    );
    assert!(
        b.len() > (k - 1) * rsb + (n - 1) * csb,
        "gemm rhs buffer too small"
    );
    // SAFETY: the asserts above keep every index the strides reach inside the slices, and `c`
    // does not alias `a` or `b` (it is a distinct mutable borrow).
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Runs the recurrence: `xp [T, B, 4H]`, `h0 [B, H]`, `w_hh [H, 4H]`.
pub fn forward(
    xp: &[f32],
    h0: Vec<f32>,
    w_hh: Vec<f32>,
    steps: usize,
    batch: usize,
    hidden: usize,
) -> Saved {
    let four_h = 4 * hidden;
    let mut acts = xp.to_vec();
    let mut cells = vec![0.0f32; steps * batch * hidden];
    let mut hiddens = vec![0.0f32; steps * batch * hidden];
    let step_gates = batch * four_h;
    let step_state = batch * hidden;

    for t in 0..steps {
        let (done, rest) = hiddens.split_at_mut(t * step_state);
        let h_prev: &[f32] = if t == 0 {
            &h0
        } else {
            &done[(t - 1) * step_state..]
        };
        let gates = &mut acts[t * step_gates..(t + 1) * step_gates];
        gemm(
            batch,
            hidden,
            four_h,
            h_prev,
            (hidden, 1),
            &w_hh,
            (four_h, 1),
            1.0,
            gates,
        );
        let h_out = &mut rest[..step_state];
        let (cells_done, cells_rest) = cells.split_at_mut(t * step_state);
        let c_out = &mut cells_rest[..step_state];
        for b in 0..batch {
            let g = &mut gates[b * four_h..(b + 1) * four_h];
            for j in 0..hidden {
                let i = sigmoid(g[j]);
                let f = sigmoid(g[hidden + j]);
                let cand = g[2 * hidden + j].tanh();
                let o = sigmoid(g[3 * hidden + j]);
                let c_prev = if t == 0 {
                    0.0
                } else {
                    cells_done[(t - 1) * step_state + b * hidden + j]
                };
                let c = f * c_prev + i * cand;
                c_out[b * hidden + j] = c;
                h_out[b * hidden + j] = o * c.tanh();
                g[j] = i;
                g[hidden + j] = f;
                g[2 * hidden + j] = cand;
                g[3 * hidden + j] = o;
            }
        }
    }

    Saved {
        steps,
        batch,
        hidden,
        acts,
        cells,
        hiddens,
        h0,
        w_hh,
    }
}

/// Gradients `(dxp [T, B, 4H], dh0 [B, H], dw_hh [H, 4H])` from the gradient of the hidden
/// states `[T, B, H]`.
pub fn backward(saved: &Saved, grad_hiddens: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (steps, batch, hidden) = (saved.steps, saved.batch, saved.hidden);
    let four_h = 4 * hidden;
    let step_gates = batch * four_h;
    let step_state = batch * hidden;
    let mut dxp = vec![0.0f32; steps * step_gates];
    let mut dh_next = vec![0.0f32; step_state];
    let mut dc_next = vec![0.0f32; step_state];

    for t in (0..steps).rev() {
        let acts = &saved.acts[t * step_gates..(t + 1) * step_gates];
        let da = &mut dxp[t * step_gates..(t + 1) * step_gates];
        for b in 0..batch {
            let a = &acts[b * four_h..(b + 1) * four_h];
            let d = &mut da[b * four_h..(b + 1) * four_h];
            for j in 0..hidden {
                let s = b * hidden + j;
                let (i, f, g, o) = (a[j], a[hidden + j], a[2 * hidden + j], a[3 * hidden + j]);
                let c = saved.cells[t * step_state + s];
                let c_prev = if t == 0 {
                    0.0
                } else {
                    saved.cells[(t - 1) * step_state + s]
                };
                let dh = grad_hiddens[t * step_state + s] + dh_next[s];
                let tc = c.tanh();
                let dc = dc_next[s] + dh * o * (1.0 - tc * tc);
                d[j] = dc * g * i * (1.0 - i);
                d[hidden + j] = dc * c_prev * f * (1.0 - f);
                d[2 * hidden + j] = dc * i * (1.0 - g * g);
                d[3 * hidden + j] = dh * tc * o * (1.0 - o);
                dc_next[s] = dc * f;
            }
        }
        // dh_{t-1} = da W_hh^T: W_hh^T read through strides (row stride 1, column stride 4H).
        gemm(
            batch,
            four_h,
            hidden,
            da,
            (four_h, 1),
            &saved.w_hh,
            (1, four_h),
            0.0,
            &mut dh_next,
        );
    }

    // dW_hh = H_prev^T dA over all steps at once, with H_prev = [h0; h_0 .. h_{T-2}].
    let mut dw = vec![0.0f32; hidden * four_h];
    gemm(
        hidden,
        batch,
        four_h,
        &saved.h0,
        (1, hidden),
        &dxp[..step_gates],
        (four_h, 1),
        0.0,
        &mut dw,
    );
    if steps > 1 {
        let rows = (steps - 1) * batch;
        gemm(
            hidden,
            rows,
            four_h,
            &saved.hiddens[..rows * hidden],
            (1, hidden),
            &dxp[step_gates..],
            (four_h, 1),
            1.0,
            &mut dw,
        );
    }
    (dxp, dh_next, dw)
}
