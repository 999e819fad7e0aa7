//! The LSTM recurrence on plain `f32` buffers for the CPU backend: one matrix product per step
//! and the gate arithmetic of a step fused into vectorisable loops, forward and backward.
//! Mirrors [`crate::fused::forward_with_state`] and [`crate::fused::backward_from_state`],
//! which the tests compare it with.
//!
//! Speed notes. The per-step products are small (`[B, H] x [H, 4H]`), and a general GEMM
//! re-packs the `[H, 4H]` weights on every call; here the weights are packed into column
//! panels once per call ([`Panels`]; the backward pass packs `W_hh^T`), and [`step_gemm`]
//! runs a register-tiled kernel over them, compiled for AVX-512 or AVX2+FMA when the CPU has
//! them.
//! Sigmoid and tanh use an `f32` exponential (Cody-Waite reduction and a degree-6 polynomial,
//! about 2 ulp) written without branches so that the loops vectorise. On AVX-512 the gate
//! arithmetic runs in [`crate::avx512`] instead, the same formulas on explicit vectors.

use std::ops::Range;

use gemm::Parallelism;
use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use crate::avx512;

/// What the forward pass computes and the backward pass reads, row-major.
#[derive(Debug, Clone)]
pub struct Forward {
    /// Gate activations i, f, g, o, `[T, B, 4H]`.
    pub acts: Vec<f32>,
    /// Cell states, `[T, B, H]`.
    pub cells: Vec<f32>,
    /// Hidden states, `[T, B, H]`.
    pub hiddens: Vec<f32>,
}

/// The forward pass's buffers and inputs as the backward pass reads them.
#[derive(Debug, Clone, Copy)]
pub struct Saved<'a> {
    /// Steps.
    pub steps: usize,
    /// Batch.
    pub batch: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Gate activations i, f, g, o, `[T, B, 4H]`.
    pub acts: &'a [f32],
    /// Cell states, `[T, B, H]`.
    pub cells: &'a [f32],
    /// Hidden states, `[T, B, H]`.
    pub hiddens: &'a [f32],
    /// Initial hidden state, `[B, H]`.
    pub h0: &'a [f32],
    /// Recurrent weights, `[H, 4H]`.
    pub w_hh: &'a [f32],
}

/// Fewest batch rows worth a thread of their own: one register tile of the AVX-512 kernel.
const MIN_ROWS_PER_THREAD: usize = 8;

/// Contiguous row ranges of the batch, one per thread. Batch rows are independent in the
/// recurrence, so each range runs all its steps without synchronising with the others; the
/// split does not change any row's arithmetic, so results do not depend on the thread count.
///
/// The alternative split, by hidden units (each thread multiplying by its own slice of `W_hh`,
/// which at hidden 256 would then fit in its core's L2 cache, and computing its units' gates,
/// with a barrier between steps), was built and measured against this one in the same process
/// on forward plus backward passes of the benchmark shapes: 2% slower at `T 30, B 32, H 256`,
/// 6% at `B 64, H 128` and 9% at `B 32, H 128`. Each thread packs every row of the step's left
/// operand instead of its own, and waits at every step, while reading `W_hh` from L3 was
/// not what bounded the step product.
fn row_parts(batch: usize) -> Vec<Range<usize>> {
    let threads = rayon::current_num_threads()
        .min(batch / MIN_ROWS_PER_THREAD)
        .max(1);
    let chunk = batch.div_ceil(threads);
    (0..batch)
        .step_by(chunk)
        .map(|start| start..(start + chunk).min(batch))
        .collect()
}

/// Splits a `[T, B, width]` buffer into, per row range, the list of its per-step blocks.
fn split_steps<'a>(
    buffer: &'a mut [f32],
    batch: usize,
    width: usize,
    parts: &[Range<usize>],
) -> Vec<Vec<&'a mut [f32]>> {
    let mut out: Vec<Vec<&mut [f32]>> = parts.iter().map(|_| Vec::new()).collect();
    for step in buffer.chunks_exact_mut(batch * width) {
        let mut rest = step;
        for (blocks, range) in out.iter_mut().zip(parts) {
            let (block, tail) = std::mem::take(&mut rest).split_at_mut(range.len() * width);
            blocks.push(block);
            rest = tail;
        }
    }
    out
}

/// Runs `work` on every job, the first on this thread and the others on rayon's pool.
fn run_parallel<J: Send>(mut jobs: Vec<J>, work: impl Fn(J) + Sync) {
    if jobs.len() <= 1 {
        jobs.into_iter().for_each(work);
        return;
    }
    let first = jobs.remove(0);
    let work = &work;
    rayon::in_place_scope(|scope| {
        for job in jobs {
            scope.spawn(move |_| work(job));
        }
        work(first);
    });
}

/// `e^x` in `f32`, branch-free so that loops over it vectorise: `x = n ln 2 + r` with `|r| <=
/// ln 2 / 2` (Cody-Waite), a degree-6 polynomial for `e^r`, and `2^n` built in the exponent
/// bits. The input is clamped to the normal range; relative error about 2 ulp.
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it rounds to the nearest integer without a rounding instruction.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    // `n` as an integer, read from the mantissa of `shifted` (ROUND + n keeps ROUND's exponent
    // for |n| < 2^22): a float-to-int cast would saturate and map NaN to 0, which compiles
    // to scalar code.
    let n_int = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 5e-1;
    let e = p * r * r + r + 1.0;
    // Wrapping arithmetic: the clamp keeps `n + 127` in 1..=255, and unchecked adds keep the
    // loop vectorisable in builds with overflow checks.
    e * f32::from_bits((n_int.wrapping_add(127) as u32) << 23)
}

/// The logistic function through [`exp_f32`].
#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-x))
}

/// `tanh` through [`exp_f32`] (`1 - 2 / (e^{2x} + 1)`), with an odd polynomial below 0.625 in
/// magnitude where that form would lose relative accuracy.
#[inline(always)]
fn tanh(x: f32) -> f32 {
    let z = x * x;
    let small =
        ((((-5.704_988_7e-3 * z + 2.063_909e-2) * z - 5.373_971_6e-2) * z + 1.333_144_2e-1) * z
            - 3.333_328e-1)
            * z
            * x
            + x;
    let large = 1.0 - 2.0 / (exp_f32(2.0 * x) + 1.0);
    if x.abs() < 0.625 {
        small
    } else {
        large
    }
}

/// Output columns per task when [`gemm`] splits a short, wide product by hand.
const SPLIT_COLUMNS: usize = 256;

/// Fewest multiply-adds for which [`gemm`] splits a short, wide product by hand: below this, a
/// task costs more to hand over than it saves.
const SPLIT_MIN_WORK: usize = 1 << 22;

/// `c[m, n] = beta * c + a[m, k] b[k, n]` with explicit strides (row, column) of a and b, `c`
/// row-major; `beta` is 0 or 1. The large products of training (input projections of all
/// steps, weight gradients, dense layers) go through the `gemm` crate, whose AVX-512 kernels
/// run at about 1.25x `matrixmultiply`'s rate on these shapes, on rayon's threads.
///
/// Weight gradients are short and wide (`[H, 4H]` summed over every step's rows), and there
/// the crate's own threading gained little: at `128 x 1920 x 512`, 130 GFLOP/s on two threads
/// against 121 on one. Such products run here as single-threaded products over fixed blocks of
/// [`SPLIT_COLUMNS`] output columns on rayon's threads instead (measured 170-190 GFLOP/s on
/// that shape, and 230-265 against 200-220 at `256 x 960 x 1024`). The blocks do not depend on
/// the thread count, so neither do the results.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
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
    assert!(beta == 0.0 || beta == 1.0, "gemm beta must be 0 or 1");
    assert!(c.len() >= m * n, "gemm output buffer too small");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if beta == 0.0 {
            c[..m * n].fill(0.0);
        }
        return;
    }
    assert!(
        a.len() > (m - 1) * rsa + (k - 1) * csa,
        "gemm lhs buffer too small"
    );
    assert!(
        b.len() > (k - 1) * rsb + (n - 1) * csb,
        "gemm rhs buffer too small"
    );
    let product = Product {
        m,
        k,
        a: a.as_ptr(),
        a_strides: (rsa, csa),
        b: b.as_ptr(),
        b_strides: (rsb, csb),
        accumulate: beta == 1.0,
        c: c.as_mut_ptr(),
        ldc: n,
    };
    if 2 * m <= n && n > SPLIT_COLUMNS && m * k * n >= SPLIT_MIN_WORK {
        let product = &product;
        (0..n.div_ceil(SPLIT_COLUMNS))
            .into_par_iter()
            .for_each(|block| {
                let first = block * SPLIT_COLUMNS;
                // SAFETY: the blocks' column ranges are disjoint and inside `0..n`, which the
                // asserts above checked against the slices.
                unsafe { product.columns(first..(first + SPLIT_COLUMNS).min(n), Parallelism::None) }
            });
        return;
    }
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: all columns, checked against the slices above.
    unsafe { product.columns(0..n, parallelism) }
}

/// The operands of one [`gemm`] call as raw parts, so that tasks on other threads can each
/// write their own columns of `c`.
struct Product {
    m: usize,
    k: usize,
    a: *const f32,
    a_strides: (usize, usize),
    b: *const f32,
    b_strides: (usize, usize),
    accumulate: bool,
    c: *mut f32,
    ldc: usize,
}

// SAFETY: `Product` only lives inside one `gemm` call, which holds the borrows its pointers
// came from; tasks write disjoint column ranges of `c` and only read `a` and `b`.
unsafe impl Sync for Product {}

impl Product {
    /// Columns `cols` of `c`.
    ///
    /// # Safety
    /// `cols` must lie inside the `n` columns the slices were checked for, and no other
    /// thread may write these columns at the same time.
    unsafe fn columns(&self, cols: Range<usize>, parallelism: Parallelism) {
        let (rsa, csa) = self.a_strides;
        let (rsb, csb) = self.b_strides;
        // SAFETY: the caller keeps `cols` inside the checked shape, so every offset below
        // stays inside the slices; `c` does not alias `a` or `b` (it came from a distinct
        // mutable borrow). The crate computes `c = alpha c + beta a b` and reads `c` only when
        // asked to.
        unsafe {
            gemm::gemm(
                self.m,
                cols.len(),
                self.k,
                self.c.add(cols.start),
                1,
                self.ldc as isize,
                self.accumulate,
                self.a,
                csa as isize,
                rsa as isize,
                self.b.add(cols.start * csb),
                csb as isize,
                rsb as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
    }
}

/// A `[k, n]` matrix cut into panels of `width` whole columns, each panel row-major
/// (`[n / width][k][width]`, the last panel zero-padded): the layout [`step_gemm`] reads. A
/// register tile then streams one contiguous block instead of `k` rows a page apart (measured
/// alone on a `16 x 256 x 1024` product: about 1.5x faster than reading row-major weights).
/// Built once per recurrence call, since every step multiplies by the same weights.
struct Panels {
    k: usize,
    n: usize,
    width: usize,
    data: Vec<f32>,
}

impl Panels {
    /// Empty panels for a `[k, n]` matrix, as wide as the register tile of the detected
    /// instruction set, and a function that fills panel `p` (`[k][width]`, `width` columns
    /// from column `p * width`, fewer in the last one) on rayon's threads.
    fn pack(k: usize, n: usize, fill: impl Fn(usize, &mut [f32]) + Sync) -> Panels {
        let width = isa().panel_width();
        let mut data = vec![0.0f32; n.div_ceil(width) * k * width];
        data.par_chunks_mut(k * width)
            .enumerate()
            .for_each(|(p, panel)| fill(p, panel));
        Panels { k, n, width, data }
    }

    /// Packs a row-major `[k, n]` matrix: each panel row is one contiguous copy.
    fn from_row_major(k: usize, n: usize, b: &[f32]) -> Panels {
        assert!(b.len() >= k * n, "matrix buffer too small");
        let width = isa().panel_width();
        Panels::pack(k, n, |p, panel| {
            let col = p * width;
            let cols = width.min(n - col);
            for (dst, src) in panel.chunks_exact_mut(width).zip(b.chunks_exact(n)) {
                dst[..cols].copy_from_slice(&src[col..col + cols]);
            }
        })
    }

    /// Packs the transpose `[n, k]` of a row-major `[k, n]` matrix: panel row `r` gathers
    /// column `r` of `width` consecutive rows of `b`.
    fn transposed(k: usize, n: usize, b: &[f32]) -> Panels {
        assert!(b.len() >= k * n, "matrix buffer too small");
        let width = isa().panel_width();
        Panels::pack(n, k, |p, panel| {
            let first = p * width;
            let rows = &b[first * n..(first + width).min(k) * n];
            for (r, dst) in panel.chunks_exact_mut(width).enumerate() {
                for (d, &v) in dst.iter_mut().zip(rows[r..].iter().step_by(n)) {
                    *d = v;
                }
            }
        })
    }
}

/// `c = a[m, k] b`, `a` and `c` row-major, through `R x NR` register tiles: rows of `a` in
/// blocks of R packed column by column (`[m / R][k][R]`, zero rows past `m`), one panel of `b`
/// per tile column. Accumulates in registers; the inner loop has no bounds or overflow checks.
/// `c` is only written: the recurrence multiplies into a small scratch buffer and adds the
/// input projection in its gate pass, so the kernel never reads the large projection buffer.
#[inline(always)]
fn panel_tiles<const R: usize, const NR: usize>(m: usize, a: &[f32], b: &Panels, c: &mut [f32]) {
    let (k, n) = (b.k, b.n);
    assert_eq!(b.width, NR, "panels packed for another tile width");
    assert!(a.len() >= m * k, "lhs buffer too small");
    let blocks = m.div_ceil(R);
    let mut packed = vec![0.0f32; blocks * k * R];
    // Rows past `m` in the last block read zeros.
    let zeros = vec![0.0f32; k];
    for (block, dst) in packed.chunks_exact_mut(k * R).enumerate() {
        let row = block * R;
        let a_rows: [&[f32]; R] = std::array::from_fn(|r| {
            if row + r < m {
                &a[(row + r) * k..(row + r + 1) * k]
            } else {
                &zeros[..]
            }
        });
        // Contiguous stores, each column of the block gathered from its R rows: a strided
        // store would compile to scatter instructions, which are slow on some CPUs.
        for (depth, dst) in dst.chunks_exact_mut(R).enumerate() {
            let dst: &mut [f32; R] = dst.try_into().expect("block width");
            *dst = std::array::from_fn(|r| a_rows[r][depth]);
        }
    }
    for (p, panel) in b.data.chunks_exact(k * NR).enumerate() {
        let col = p * NR;
        let cols = NR.min(n - col);
        for (block, a_block) in packed.chunks_exact(k * R).enumerate() {
            let row = block * R;
            let rows = R.min(m - row);
            let mut acc = [[0.0f32; NR]; R];
            for (b_row, a_col) in panel.chunks_exact(NR).zip(a_block.chunks_exact(R)) {
                let b_row: &[f32; NR] = b_row.try_into().expect("panel width");
                for (acc, &av) in acc.iter_mut().zip(a_col) {
                    for (acc, &bv) in acc.iter_mut().zip(b_row) {
                        *acc = av.mul_add(bv, *acc);
                    }
                }
            }
            // Constant indices (the loop unrolls), so that `acc` can live in registers.
            for (r, acc) in acc.iter().enumerate() {
                if r < rows {
                    let start = (row + r) * n + col;
                    store_row(acc, &mut c[start..start + cols]);
                }
            }
        }
    }
}

/// Stores the first `dst.len()` values of a tile row (`NR`, fewer at the last panel). A full
/// row is a fixed-size copy, which compiles to vector moves rather than a `memcpy` call.
#[inline(always)]
fn store_row<const NR: usize>(acc: &[f32; NR], dst: &mut [f32]) {
    let len = dst.len();
    match <&mut [f32; NR]>::try_from(&mut *dst) {
        Ok(full) => *full = *acc,
        Err(_) => dst.copy_from_slice(&acc[..len]),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn panel_tiles_avx512(m: usize, a: &[f32], b: &Panels, c: &mut [f32]) {
    panel_tiles::<8, 32>(m, a, b, c);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn panel_tiles_avx2(m: usize, a: &[f32], b: &Panels, c: &mut [f32]) {
    panel_tiles::<4, 16>(m, a, b, c);
}

/// The instruction set [`step_gemm`] runs with, detected once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    Avx512,
    Avx2,
    Generic,
}

impl Isa {
    /// Columns of one register tile, and so of one [`Panels`] panel.
    fn panel_width(self) -> usize {
        match self {
            Isa::Avx512 => 32,
            Isa::Avx2 | Isa::Generic => 16,
        }
    }
}

fn isa() -> Isa {
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx2;
            }
        }
        Isa::Generic
    })
}

/// `c[m, n] = a[m, k] b[k, n]` with `a` and `c` row-major and `b` in panels: the product of one
/// recurrence step, where `b` is the same weight matrix at every step.
fn step_gemm(m: usize, a: &[f32], b: &Panels, c: &mut [f32]) {
    assert!(a.len() >= m * b.k, "step_gemm lhs buffer too small");
    assert!(c.len() >= m * b.n, "step_gemm output buffer too small");
    match isa() {
        // SAFETY: `isa` returned these variants only after detecting the features they enable.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { panel_tiles_avx512(m, a, b, c) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { panel_tiles_avx2(m, a, b, c) },
        _ => panel_tiles::<4, 16>(m, a, b, c),
    }
}

/// The gate arithmetic of one batch row: the activations of `g + hh` in place in `g` `[4H]`
/// (`g` holds the input projection, `hh` the recurrent product), then `c = f c_prev + i g` and
/// `h = o tanh(c)` into `c_out` and `h_out` `[H]`. Every buffer is a separate argument so that
/// the compiler knows they do not overlap and vectorises the loops.
#[inline(always)]
fn gate_row_body(g: &mut [f32], hh: &[f32], c_prev: &[f32], c_out: &mut [f32], h_out: &mut [f32]) {
    let hidden = c_out.len();
    let (sig, rest) = g.split_at_mut(2 * hidden);
    let (cand, out) = rest.split_at_mut(hidden);
    let (hh_sig, hh_rest) = hh[..4 * hidden].split_at(2 * hidden);
    let (hh_cand, hh_out) = hh_rest.split_at(hidden);
    for (v, &r) in sig.iter_mut().zip(hh_sig) {
        *v = sigmoid(*v + r);
    }
    for (v, &r) in cand.iter_mut().zip(hh_cand) {
        *v = tanh(*v + r);
    }
    for (v, &r) in out.iter_mut().zip(hh_out) {
        *v = sigmoid(*v + r);
    }
    let (i, f) = sig.split_at(hidden);
    let (f, cand, o) = (&f[..hidden], &cand[..hidden], &out[..hidden]);
    let (c_prev, h_out) = (&c_prev[..hidden], &mut h_out[..hidden]);
    for j in 0..hidden {
        let c = f[j] * c_prev[j] + i[j] * cand[j];
        c_out[j] = c;
        h_out[j] = o[j] * tanh(c);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn gate_row_avx2(g: &mut [f32], hh: &[f32], c_prev: &[f32], c_out: &mut [f32], h_out: &mut [f32]) {
    gate_row_body(g, hh, c_prev, c_out, h_out);
}

/// The gate arithmetic of one forward step over the batch: the activations of `gates + hh` in
/// place in `gates` `[B, 4H]`, new cell and hidden states into `c_out` and `h_out` `[B, H]`
/// from `c_prev`.
fn step_elementwise(
    gates: &mut [f32],
    hh: &[f32],
    c_prev: &[f32],
    c_out: &mut [f32],
    h_out: &mut [f32],
    hidden: usize,
) {
    let isa = isa();
    let rows = gates
        .chunks_exact_mut(4 * hidden)
        .zip(hh.chunks_exact(4 * hidden))
        .zip(c_prev.chunks_exact(hidden))
        .zip(
            c_out
                .chunks_exact_mut(hidden)
                .zip(h_out.chunks_exact_mut(hidden)),
        );
    for (((g, hh), cp), (c, h)) in rows {
        match isa {
            // SAFETY: `isa` returned these variants only after detecting their features.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { avx512::gate_row(g, hh, cp, c, h) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { gate_row_avx2(g, hh, cp, c, h) },
            _ => gate_row_body(g, hh, cp, c, h),
        }
    }
}

/// Runs the recurrence: `xp [T, B, 4H]` (consumed: it becomes the activations), `h0 [B, H]`,
/// `w_hh [H, 4H]`, with the batch rows split over rayon's threads.
pub fn forward(
    xp: Vec<f32>,
    h0: &[f32],
    w_hh: &[f32],
    steps: usize,
    batch: usize,
    hidden: usize,
) -> Forward {
    let four_h = 4 * hidden;
    assert_eq!(xp.len(), steps * batch * four_h, "xp is not [T, B, 4H]");
    assert_eq!(h0.len(), batch * hidden, "h0 is not [B, H]");
    assert_eq!(w_hh.len(), hidden * four_h, "w_hh is not [H, 4H]");
    let mut acts = xp;
    let mut cells = vec![0.0f32; steps * batch * hidden];
    let mut hiddens = vec![0.0f32; steps * batch * hidden];
    let w_hh = Panels::from_row_major(hidden, four_h, w_hh);
    let parts = row_parts(batch);
    let jobs: Vec<_> = split_steps(&mut acts, batch, four_h, &parts)
        .into_iter()
        .zip(split_steps(&mut cells, batch, hidden, &parts))
        .zip(split_steps(&mut hiddens, batch, hidden, &parts))
        .zip(&parts)
        .collect();
    run_parallel(jobs, |(((acts, cells), hiddens), range)| {
        let h0 = &h0[range.start * hidden..range.end * hidden];
        forward_rows(acts, cells, hiddens, h0, &w_hh, hidden);
    });
    Forward {
        acts,
        cells,
        hiddens,
    }
}

/// The recurrence of one row range, given its per-step blocks of the three buffers.
fn forward_rows(
    mut acts: Vec<&mut [f32]>,
    mut cells: Vec<&mut [f32]>,
    mut hiddens: Vec<&mut [f32]>,
    h0: &[f32],
    w_hh: &Panels,
    hidden: usize,
) {
    let rows = h0.len() / hidden;
    let zeros = vec![0.0f32; h0.len()];
    // `h_{t-1} W_hh` of this step.
    let mut hh = vec![0.0f32; rows * 4 * hidden];
    for (t, gates) in acts.iter_mut().enumerate() {
        let (done, rest) = hiddens.split_at_mut(t);
        let h_prev: &[f32] = done.last().map_or(h0, |h| &**h);
        step_gemm(rows, h_prev, w_hh, &mut hh);
        let (cells_done, cells_rest) = cells.split_at_mut(t);
        let c_prev: &[f32] = cells_done.last().map_or(&zeros, |c| &**c);
        step_elementwise(gates, &hh, c_prev, cells_rest[0], rest[0], hidden);
    }
}

/// Gate activations of one batch row, `[H]` each.
#[derive(Clone, Copy)]
struct Gates<'a> {
    i: &'a [f32],
    f: &'a [f32],
    g: &'a [f32],
    o: &'a [f32],
}

/// Gate gradients of one batch row, `[H]` each.
struct GateGrads<'a> {
    i: &'a mut [f32],
    f: &'a mut [f32],
    g: &'a mut [f32],
    o: &'a mut [f32],
}

/// The gate gradients of one batch row (see [`crate::fused`] for the formulas): `c`, `c_prev`
/// the cell states, `dh` the gradient reaching `h_t`; updates `dc` in place from the gradient
/// reaching `c_t` from step t+1 to the one reaching `c_{t-1}`.
#[inline(always)]
fn backward_row_body(
    a: Gates,
    c: &[f32],
    c_prev: &[f32],
    dh: &[f32],
    dc: &mut [f32],
    d: GateGrads,
) {
    let hidden = dc.len();
    let (ai, af, ag, ao) = (
        &a.i[..hidden],
        &a.f[..hidden],
        &a.g[..hidden],
        &a.o[..hidden],
    );
    let (c, c_prev, dh) = (&c[..hidden], &c_prev[..hidden], &dh[..hidden]);
    let (di, df, dg, d_o) = (
        &mut d.i[..hidden],
        &mut d.f[..hidden],
        &mut d.g[..hidden],
        &mut d.o[..hidden],
    );
    for j in 0..hidden {
        let (i, f, g, o) = (ai[j], af[j], ag[j], ao[j]);
        let tc = tanh(c[j]);
        let dcj = dc[j] + dh[j] * o * (1.0 - tc * tc);
        di[j] = dcj * g * i * (1.0 - i);
        df[j] = dcj * c_prev[j] * f * (1.0 - f);
        dg[j] = dcj * i * (1.0 - g * g);
        d_o[j] = dh[j] * tc * o * (1.0 - o);
        dc[j] = dcj * f;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn backward_row_avx2(
    a: Gates,
    c: &[f32],
    c_prev: &[f32],
    dh: &[f32],
    dc: &mut [f32],
    d: GateGrads,
) {
    backward_row_body(a, c, c_prev, dh, dc, d);
}

/// The gate gradients of one backward step over the batch: `da [B, 4H]` from the activations
/// `[B, 4H]`, the cell states `c`, `c_prev` and the gradient `dh` reaching `h_t` `[B, H]`;
/// `dc` `[B, H]` goes from the gradient reaching `c_t` from step t+1 to the one reaching
/// `c_{t-1}`.
fn backward_step(
    acts: &[f32],
    c: &[f32],
    c_prev: &[f32],
    dh: &[f32],
    dc: &mut [f32],
    da: &mut [f32],
    hidden: usize,
) {
    let isa = isa();
    let four_h = 4 * hidden;
    let rows = acts
        .chunks_exact(four_h)
        .zip(da.chunks_exact_mut(four_h))
        .zip(c.chunks_exact(hidden).zip(c_prev.chunks_exact(hidden)))
        .zip(dh.chunks_exact(hidden).zip(dc.chunks_exact_mut(hidden)));
    for (((a, d), (c, cp)), (dh, dc)) in rows {
        #[cfg(target_arch = "x86_64")]
        if isa == Isa::Avx512 {
            // SAFETY: `isa` returned this variant only after detecting AVX-512F.
            unsafe { avx512::backward_row(a, c, cp, dh, dc, d) };
            continue;
        }
        let (i, rest) = a.split_at(hidden);
        let (f, rest) = rest.split_at(hidden);
        let (g, o) = rest.split_at(hidden);
        let gates = Gates { i, f, g, o };
        let (i, rest) = d.split_at_mut(hidden);
        let (f, rest) = rest.split_at_mut(hidden);
        let (g, o) = rest.split_at_mut(hidden);
        let grads = GateGrads { i, f, g, o };
        match isa {
            // SAFETY: `isa` returned these variants only after detecting their features.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { backward_row_avx2(gates, c, cp, dh, dc, grads) },
            _ => backward_row_body(gates, c, cp, dh, dc, grads),
        }
    }
}

/// Gradients of the recurrence's inputs: `(dxp [T, B, 4H], dh0 [B, H], dw_hh [H, 4H])`.
pub type Grads = (Vec<f32>, Vec<f32>, Vec<f32>);

/// Gradients `(dxp [T, B, 4H], dh0 [B, H], dw_hh [H, 4H])` from the gradient of the hidden
/// states `[T, B, H]`, with the batch rows split over rayon's threads as in [`forward`].
pub fn backward(saved: Saved, grad_hiddens: &[f32]) -> Grads {
    let (steps, batch, hidden) = (saved.steps, saved.batch, saved.hidden);
    let four_h = 4 * hidden;
    let step_gates = batch * four_h;
    assert_eq!(
        saved.acts.len(),
        steps * step_gates,
        "acts are not [T, B, 4H]"
    );
    assert_eq!(
        grad_hiddens.len(),
        steps * batch * hidden,
        "grad is not [T, B, H]"
    );
    let mut dxp = vec![0.0f32; steps * step_gates];
    let mut dh0 = vec![0.0f32; batch * hidden];
    // W_hh^T `[4H, H]`, transposed and packed once for every step.
    let w_t = Panels::transposed(hidden, four_h, saved.w_hh);

    let parts = row_parts(batch);
    // `dh0` is a single step's worth of rows, `[1, B, H]`.
    let dh0_rows = split_steps(&mut dh0, batch, hidden, &parts)
        .into_iter()
        .map(|mut blocks| blocks.remove(0));
    let jobs: Vec<_> = split_steps(&mut dxp, batch, four_h, &parts)
        .into_iter()
        .zip(dh0_rows)
        .zip(&parts)
        .collect();
    run_parallel(jobs, |((dxp, dh0), range)| {
        backward_rows(&saved, grad_hiddens, &w_t, range.clone(), dxp, dh0);
    });

    let mut dw = vec![0.0f32; hidden * four_h];
    gemm(
        hidden,
        batch,
        four_h,
        saved.h0,
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
    (dxp, dh0, dw)
}

/// The backward recurrence of the batch rows `range`: their per-step gate gradients into
/// `dxp` and the gradient reaching their `h0` into `dh0`.
fn backward_rows(
    saved: &Saved,
    grad_hiddens: &[f32],
    w_t: &Panels,
    range: Range<usize>,
    mut dxp: Vec<&mut [f32]>,
    dh0: &mut [f32],
) {
    let (batch, hidden) = (saved.batch, saved.hidden);
    let rows = range.len();
    // Rows `range` of step `t` of a `[T, B, width]` buffer.
    fn block<'a>(
        buffer: &'a [f32],
        t: usize,
        batch: usize,
        range: &Range<usize>,
        width: usize,
    ) -> &'a [f32] {
        &buffer[(t * batch + range.start) * width..(t * batch + range.end) * width]
    }
    let mut dh_next = vec![0.0f32; rows * hidden];
    let mut dh_prev = vec![0.0f32; rows * hidden];
    let mut dc_next = vec![0.0f32; rows * hidden];
    let mut dh = vec![0.0f32; rows * hidden];
    let zeros = vec![0.0f32; rows * hidden];

    for (t, da) in dxp.iter_mut().enumerate().rev() {
        let c_prev = if t == 0 {
            &zeros[..]
        } else {
            block(saved.cells, t - 1, batch, &range, hidden)
        };
        for ((d, g), n) in dh
            .iter_mut()
            .zip(block(grad_hiddens, t, batch, &range, hidden))
            .zip(&dh_next)
        {
            *d = g + n;
        }
        backward_step(
            block(saved.acts, t, batch, &range, 4 * hidden),
            block(saved.cells, t, batch, &range, hidden),
            c_prev,
            &dh,
            &mut dc_next,
            da,
            hidden,
        );
        step_gemm(rows, da, w_t, &mut dh_prev);
        std::mem::swap(&mut dh_next, &mut dh_prev);
    }
    dh0.copy_from_slice(&dh_next);
}

/// The portable gate arithmetic of one batch row, which the AVX-512 version is tested against.
#[cfg(test)]
pub(crate) fn portable_gate_row(
    g: &mut [f32],
    hh: &[f32],
    c_prev: &[f32],
    c_out: &mut [f32],
    h_out: &mut [f32],
) {
    gate_row_body(g, hh, c_prev, c_out, h_out);
}

/// The portable gate gradients of one batch row: `(da [4H], dc [H])` from the gradient `dc`
/// reaching `c_t` from step t+1; the AVX-512 version is tested against it.
#[cfg(test)]
pub(crate) fn portable_backward_row(
    acts: &[f32],
    c: &[f32],
    c_prev: &[f32],
    dh: &[f32],
    dc: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let hidden = dc.len();
    let mut da = vec![0.0f32; 4 * hidden];
    let mut dc = dc.to_vec();
    let (i, rest) = acts.split_at(hidden);
    let (f, rest) = rest.split_at(hidden);
    let (g, o) = rest.split_at(hidden);
    let (di, rest) = da.split_at_mut(hidden);
    let (df, rest) = rest.split_at_mut(hidden);
    let (dg, d_o) = rest.split_at_mut(hidden);
    let grads = GateGrads {
        i: di,
        f: df,
        g: dg,
        o: d_o,
    };
    backward_row_body(Gates { i, f, g, o }, c, c_prev, dh, &mut dc, grads);
    (da, dc)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small seeded generator of values in [-0.5, 0.5).
    fn uniform(seed: u32) -> impl FnMut() -> f32 {
        let mut state = seed;
        move || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        }
    }

    #[test]
    fn fast_exp_sigmoid_and_tanh_match_std_to_a_few_ulp() {
        let mut worst = [0.0f64; 3];
        let mut x = -30.0f32;
        while x <= 30.0 {
            let pairs = [
                (exp_f32(x.min(80.0)), x.min(80.0).exp()),
                (sigmoid(x), 1.0 / (1.0 + (-x).exp())),
                (tanh(x), x.tanh()),
            ];
            for (k, (fast, exact)) in pairs.into_iter().enumerate() {
                let rel = ((fast - exact) as f64).abs() / (exact as f64).abs().max(1e-30);
                worst[k] = worst[k].max(rel);
            }
            x += 0.000_731;
        }
        for (name, err) in ["exp", "sigmoid", "tanh"].iter().zip(worst) {
            assert!(err < 1e-6, "{name}: worst relative error {err:e}");
        }
        assert_eq!(tanh(0.0), 0.0);
        assert!((sigmoid(-200.0)).abs() < 1e-30 && (sigmoid(200.0) - 1.0).abs() < 1e-7);
        assert!((tanh(-50.0) + 1.0).abs() < 1e-7 && (tanh(50.0) - 1.0).abs() < 1e-7);
    }

    /// Forward and backward of the recurrence on a pool of `threads` threads.
    fn run_on(threads: usize, inputs: &RecurrenceInputs) -> (Forward, Grads) {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("thread pool");
        pool.install(|| {
            let (t, b, h) = inputs.dims;
            let out = forward(inputs.xp.clone(), &inputs.h0, &inputs.w_hh, t, b, h);
            let saved = Saved {
                steps: t,
                batch: b,
                hidden: h,
                acts: &out.acts,
                cells: &out.cells,
                hiddens: &out.hiddens,
                h0: &inputs.h0,
                w_hh: &inputs.w_hh,
            };
            let grads = backward(saved, &inputs.grad);
            (out, grads)
        })
    }

    struct RecurrenceInputs {
        dims: (usize, usize, usize),
        xp: Vec<f32>,
        h0: Vec<f32>,
        w_hh: Vec<f32>,
        grad: Vec<f32>,
    }

    #[test]
    fn splitting_the_batch_over_threads_gives_bitwise_the_same_results() {
        let mut next = uniform(7);
        // 37 rows: uneven parts, and one part shorter than a register tile.
        let (t, b, h) = (6, 37, 24);
        let inputs = RecurrenceInputs {
            dims: (t, b, h),
            xp: (0..t * b * 4 * h).map(|_| 2.0 * next()).collect(),
            h0: (0..b * h).map(|_| next()).collect(),
            w_hh: (0..h * 4 * h).map(|_| 0.5 * next()).collect(),
            grad: (0..t * b * h).map(|_| next()).collect(),
        };
        let (one, one_grads) = run_on(1, &inputs);
        for threads in [2, 3, 4] {
            let (many, many_grads) = run_on(threads, &inputs);
            assert_eq!(one.acts, many.acts, "{threads} threads: activations");
            assert_eq!(one.cells, many.cells, "{threads} threads: cells");
            assert_eq!(one.hiddens, many.hiddens, "{threads} threads: hiddens");
            assert_eq!(one_grads, many_grads, "{threads} threads: gradients");
        }
    }

    #[test]
    fn wide_products_split_by_columns_match_a_plain_product_bitwise_on_any_thread_count() {
        let mut next = uniform(5);
        // Short and wide, above the work threshold: split into three column blocks, the last
        // one partial. The lhs is read transposed, as weight gradients read it.
        let (m, k, n) = (40, 300, 2 * SPLIT_COLUMNS + 88);
        assert!(m * k * n >= SPLIT_MIN_WORK && 2 * m <= n);
        let a_t: Vec<f32> = (0..k * m).map(|_| next()).collect();
        let b: Vec<f32> = (0..k * n).map(|_| next()).collect();
        let c0: Vec<f32> = (0..m * n).map(|_| next()).collect();
        let on = |threads: usize, beta: f32| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("thread pool");
            let mut c = c0.clone();
            pool.install(|| gemm(m, k, n, &a_t, (1, m), &b, (n, 1), beta, &mut c));
            c
        };
        for beta in [0.0, 1.0] {
            let one = on(1, beta);
            for (row, out) in one.chunks_exact(n).enumerate() {
                for (col, &out) in out.iter().enumerate() {
                    let plain: f32 = (0..k).map(|p| a_t[p * m + row] * b[p * n + col]).sum();
                    let expected = beta * c0[row * n + col] + plain;
                    assert!(
                        (out - expected).abs() < 1e-3,
                        "beta {beta}, ({row}, {col}): {out} vs {expected}"
                    );
                }
            }
            for threads in [2, 3] {
                assert_eq!(one, on(threads, beta), "beta {beta}, {threads} threads");
            }
        }
    }

    #[test]
    fn row_parts_cover_the_batch_in_order_with_whole_tiles_per_thread() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("thread pool");
        pool.install(|| {
            assert_eq!(row_parts(32), vec![0..16, 16..32]);
            assert_eq!(row_parts(21), vec![0..11, 11..21]);
            // Too few rows for two threads to pay off.
            assert_eq!(row_parts(15), vec![0..15]);
            assert_eq!(row_parts(1), vec![0..1]);
        });
    }

    #[test]
    fn step_gemm_on_packed_panels_and_gemm_match_a_plain_product_on_edge_shapes() {
        let mut next = uniform(1);
        for (m, k, n) in [
            (32, 128, 512),
            (7, 5, 20),
            (1, 3, 48),
            (9, 33, 70),
            (3, 4, 16),
            // Large enough for the gemm crate to split the work over threads.
            (200, 300, 260),
        ] {
            let a: Vec<f32> = (0..m * k).map(|_| next()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| next()).collect();
            let c0: Vec<f32> = (0..m * n).map(|_| next()).collect();
            let b_t: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
            let mut fast = c0.clone();
            step_gemm(m, &a, &Panels::from_row_major(k, n, &b), &mut fast);
            let mut from_transposed = c0.clone();
            step_gemm(m, &a, &Panels::transposed(n, k, &b_t), &mut from_transposed);
            assert_eq!(fast, from_transposed, "{m}x{k}x{n}: packing the transpose");
            let mut product = vec![0.0f32; m * n];
            for (row, out) in product.chunks_exact_mut(n).enumerate() {
                for (col, out) in out.iter_mut().enumerate() {
                    *out = (0..k).map(|p| a[row * k + p] * b[p * n + col]).sum();
                }
            }
            for (x, y) in fast.iter().zip(&product) {
                assert!((x - y).abs() < 1e-4, "{m}x{k}x{n}: step {x} vs plain {y}");
            }
            for beta in [0.0, 1.0] {
                let expected: Vec<f32> =
                    c0.iter().zip(&product).map(|(c, p)| beta * c + p).collect();
                let mut general = c0.clone();
                gemm(m, k, n, &a, (k, 1), &b, (n, 1), beta, &mut general);
                // The transposed operand read through strides.
                let mut strided = c0.clone();
                gemm(m, k, n, &a, (k, 1), &b_t, (1, k), beta, &mut strided);
                for ((x, y), z) in general.iter().zip(&strided).zip(&expected) {
                    assert!(
                        (x - z).abs() < 1e-4,
                        "{m}x{k}x{n}, beta {beta}: gemm {x} vs {z}"
                    );
                    assert!(
                        (y - z).abs() < 1e-4,
                        "{m}x{k}x{n}, beta {beta}: strided {y} vs {z}"
                    );
                }
            }
        }
    }
}
