//! The training loop: seeded shuffling and dropout, Adam with weight decay, global
//! gradient-norm clipping, ReduceLROnPlateau on the validation loss, early stopping, best
//! weights kept, a per-epoch callback and a cancel flag checked before every batch.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use shared::dataset::SampleSet;
use shared::params::HyperParams;
use shared::trial::EpochReport;

use crate::adam::FusedAdam;
use crate::error::WorkerError;
use crate::init::Dropout;
use crate::loss::LossSpec;
use crate::lstm::FusedBackend;
use crate::model::{HybridLstm, HybridLstmConfig};

/// ReduceLROnPlateau: halve the rate after this many epochs without improvement.
pub const PLATEAU_PATIENCE: usize = 3;
/// ReduceLROnPlateau factor.
pub const PLATEAU_FACTOR: f64 = 0.5;
/// ReduceLROnPlateau floor.
pub const MIN_LEARNING_RATE: f64 = 1e-5;
/// Relative improvement that counts as better (PyTorch's default threshold).
const IMPROVEMENT: f64 = 1e-4;
/// Batch size of evaluation passes.
const EVAL_BATCH: usize = 256;

/// How training ended.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainOutcome {
    /// All epochs ran or early stopping ended training.
    Completed,
    /// The loss became NaN or infinite.
    Diverged {
        /// Epoch in which it happened.
        epoch: usize,
        /// Which loss and its value.
        reason: String,
    },
    /// The cancel flag was raised.
    Cancelled,
}

/// A trained model and how training went.
#[derive(Debug)]
pub struct Trained<B: Backend> {
    /// The best-validation weights (or the last ones when no epoch finished).
    pub model: HybridLstm<B>,
    /// One report per finished epoch.
    pub history: Vec<EpochReport>,
    /// Epoch whose weights were kept (0 when none finished).
    pub best_epoch: usize,
    /// How training ended.
    pub outcome: TrainOutcome,
}

/// Tensors of one mini-batch.
pub struct Batch<B: Backend> {
    /// `[B, T, Dt]`.
    pub x_temporal: Tensor<B, 3>,
    /// `[B, Ds]`.
    pub x_static: Tensor<B, 2>,
    /// `[B]`.
    pub category: Tensor<B, 1, Int>,
    /// Scaled targets `[B, horizon]`.
    pub y: Tensor<B, 2>,
    /// Peak-season flags `[B, horizon]`.
    pub peak: Tensor<B, 2>,
}

impl<B: Backend> Batch<B> {
    /// Gathers the samples `indices` of `set` onto `device`.
    pub fn gather(set: &SampleSet, indices: &[usize], device: &B::Device) -> Self {
        let n = indices.len();
        let (t, dt, ds, h) = (set.input_len, set.temporal_dim, set.static_dim, set.horizon);
        let rows = |buffer: &[f32], width: usize| -> Vec<f32> {
            let mut out = Vec::with_capacity(n * width);
            for &i in indices {
                out.extend_from_slice(&buffer[i * width..(i + 1) * width]);
            }
            out
        };
        let category: Vec<i64> = indices.iter().map(|&i| set.category[i] as i64).collect();
        Self {
            x_temporal: Tensor::from_data(
                TensorData::new(rows(&set.x_temporal, t * dt), [n, t, dt]),
                device,
            ),
            x_static: Tensor::from_data(TensorData::new(rows(&set.x_static, ds), [n, ds]), device),
            category: Tensor::from_data(TensorData::new(category, [n]), device),
            y: Tensor::from_data(TensorData::new(rows(&set.y, h), [n, h]), device),
            peak: Tensor::from_data(TensorData::new(rows(&set.peak, h), [n, h]), device),
        }
    }
}

/// Checks that `set` fits `config`.
pub fn check_shapes(config: &HybridLstmConfig, set: &SampleSet) -> Result<(), WorkerError> {
    let checks = [
        (
            "temporal features",
            set.temporal_dim,
            config.temporal_input_dim,
        ),
        ("static features", set.static_dim, config.static_input_dim),
        ("horizon", set.horizon, config.output_dim),
    ];
    for (what, found, expected) in checks {
        if found != expected {
            return Err(WorkerError::Shape {
                what,
                found,
                expected,
            });
        }
    }
    Ok(())
}

/// Runs `work` on one of rayon's worker threads and returns its result; on a worker thread
/// already, runs it in place.
///
/// Every kernel of the CPU backend splits its work over rayon's pool. Called from a thread
/// outside the pool, each of the hundred-odd parallel operations of a training step hands its
/// work to the pool and puts the caller to sleep until it is done: two thread switches per
/// operation, which on this project's 2-core machines cost 20-30% of training speed at hidden
/// 128 (measured alternately, batch 64: 2,193 against 2,783 samples/s, median of five). From a
/// worker thread, an operation runs its first part in place and shares the rest.
pub fn on_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| work())
}

/// Runs `work` on its share of the machine's cores when `shares` trials run at once in this
/// process: on a rayon pool of its own with `cores / shares` threads (at least one), or, with
/// one share, on the calling thread, whose parallel work then goes to rayon's global pool.
///
/// Trials at once on the global pool split every operation over every thread, where the other
/// trials' operations already wait: tasks queue behind each other and their data moves between
/// cores. A pool per trial keeps each on its own cores, as separate processes would. Measured
/// on 2 cores, two trainings at once, alternating, total samples/s: 4,000-4,220 against
/// 3,820-4,130 at hidden 128 and batch 32, 3,950-4,220 against 3,690-4,220 at batch 64,
/// 655-667 against 648-666 at hidden 256 with 3 layers (better or equal in all nine pairs).
/// Results do not depend on the pool's thread count. Should the pool fail to start, `work`
/// runs on the global pool.
pub fn on_core_share<R: Send>(shares: usize, work: impl FnOnce() -> R + Send) -> R {
    if shares <= 1 {
        return work();
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    match rayon::ThreadPoolBuilder::new()
        .num_threads((cores / shares).max(1))
        .thread_name(|i| format!("trial-pool-{i}"))
        .build()
    {
        Ok(pool) => pool.install(work),
        Err(err) => {
            tracing::warn!(%err, "cannot start a thread pool for this trial; using the shared one");
            work()
        }
    }
}

/// Runs `work` where backend `B` computes fastest: on rayon's pool ([`on_pool`]) when its
/// kernels run there (the CPU backend), on this thread otherwise (the CUDA backend, whose
/// kernels run on the GPU).
fn on_backend_threads<B: FusedBackend, R: Send>(work: impl FnOnce() -> R + Send) -> R {
    if B::ON_RAYON {
        on_pool(work)
    } else {
        work()
    }
}

/// How the batches of one epoch ended.
enum EpochEnd {
    /// Every batch ran; the sum over samples of the training loss.
    Finished { loss_sum: f64 },
    /// The cancel flag was raised before a batch.
    Cancelled,
    /// The training loss became NaN or infinite; which and its value.
    Diverged(String),
}

/// Forecasts (scaled space) for every sample of `set`, row-major `[samples, horizon]`, computed
/// on rayon's pool for the CPU backend ([`on_pool`]).
pub fn predict<B: FusedBackend>(
    model: &HybridLstm<B>,
    set: &SampleSet,
    device: &B::Device,
) -> Vec<f32> {
    // A module is `Send` but not `Sync`: the worker gets its own handle, which shares the
    // parameter buffers rather than copying them.
    let model = model.clone();
    on_backend_threads::<B, _>(move || predict_here(&model, set, device))
}

fn predict_here<B: FusedBackend>(
    model: &HybridLstm<B>,
    set: &SampleSet,
    device: &B::Device,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(set.len() * set.horizon);
    let indices: Vec<usize> = (0..set.len()).collect();
    for chunk in indices.chunks(EVAL_BATCH) {
        let batch = Batch::<B>::gather(set, chunk, device);
        let y = model.forward(
            batch.x_temporal,
            batch.x_static,
            batch.category,
            &mut Dropout::Off,
        );
        out.extend(
            y.into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .expect("forecasts are f32 after conversion"),
        );
    }
    out
}

/// Trains `config` on `train`, validating on `val` after every epoch, and returns the
/// best-validation weights. NaN or infinite losses end training as
/// [`TrainOutcome::Diverged`]; a raised `cancel` flag as [`TrainOutcome::Cancelled`].
pub fn train<B>(
    config: &HybridLstmConfig,
    params: &HyperParams,
    train: &SampleSet,
    val: &SampleSet,
    device: &B::Device,
    cancel: &AtomicBool,
    on_epoch: &mut dyn FnMut(&EpochReport),
) -> Result<Trained<B::InnerBackend>, WorkerError>
where
    B: AutodiffBackend + FusedBackend,
    B::InnerBackend: FusedBackend,
{
    if train.is_empty() {
        return Err(WorkerError::EmptySplit { split: "train" });
    }
    if val.is_empty() {
        return Err(WorkerError::EmptySplit { split: "val" });
    }
    check_shapes(config, train)?;
    check_shapes(config, val)?;

    let loss_spec = LossSpec::from_params(params);
    let mut model: HybridLstm<B> = config.init(params.seed, device);
    let mut optimizer = FusedAdam::new(1e-8, params.weight_decay as f32).init::<B, HybridLstm<B>>();
    let mut rng = StdRng::seed_from_u64(params.seed);
    let mut dropout = Dropout::train(config.dropout, params.seed.wrapping_add(1));
    let mut order: Vec<usize> = (0..train.len()).collect();
    let started = Instant::now();

    let mut lr = params.learning_rate;
    let mut plateau_best = f64::INFINITY;
    let mut plateau_wait = 0;
    let mut best_val = f64::INFINITY;
    let mut best_epoch = 0;
    let mut best_model: Option<HybridLstm<B::InnerBackend>> = None;
    let mut since_best = 0;
    let mut history = Vec::new();

    let finish = |model: HybridLstm<B>,
                  best: Option<HybridLstm<B::InnerBackend>>,
                  history,
                  best_epoch,
                  outcome| {
        Ok(Trained {
            model: best.unwrap_or_else(|| model.valid()),
            history,
            best_epoch,
            outcome,
        })
    };

    for epoch in 1..=params.epochs {
        order.shuffle(&mut rng);
        let (next, end) = on_backend_threads::<B, _>(|| {
            let mut model = model;
            let mut loss_sum = 0.0;
            for chunk in order.chunks(params.batch_size) {
                if cancel.load(Ordering::Relaxed) {
                    return (model, EpochEnd::Cancelled);
                }
                let batch = Batch::<B>::gather(train, chunk, device);
                let forecast = model.forward(
                    batch.x_temporal,
                    batch.x_static,
                    batch.category,
                    &mut dropout,
                );
                let loss = loss_spec.tensor(forecast, batch.y, batch.peak);
                let value: f64 = loss.clone().into_scalar().elem();
                if !value.is_finite() {
                    let reason = format!("training loss became {value} in epoch {epoch}");
                    return (model, EpochEnd::Diverged(reason));
                }
                loss_sum += value * chunk.len() as f64;

                let mut grads = GradientsParams::from_grads(loss.backward(), &model);
                if params.grad_clip > 0.0 {
                    clip_global_norm::<B>(&model, &mut grads, params.grad_clip);
                }
                model = optimizer.step(lr, model, grads);
            }
            (model, EpochEnd::Finished { loss_sum })
        });
        model = next;
        let loss_sum = match end {
            EpochEnd::Finished { loss_sum } => loss_sum,
            EpochEnd::Cancelled => {
                return finish(
                    model,
                    best_model,
                    history,
                    best_epoch,
                    TrainOutcome::Cancelled,
                );
            }
            EpochEnd::Diverged(reason) => {
                return finish(
                    model,
                    best_model,
                    history,
                    best_epoch,
                    TrainOutcome::Diverged { epoch, reason },
                );
            }
        };
        let train_loss = loss_sum / train.len() as f64;

        let valid = model.valid();
        let forecast = predict(&valid, val, device_inner::<B>(device));
        let val_loss = loss_spec.mean(&forecast, &val.y, &val.peak);
        let report = EpochReport {
            epoch,
            train_loss,
            val_loss,
            learning_rate: lr,
            elapsed_s: started.elapsed().as_secs_f64(),
        };
        history.push(report);
        on_epoch(&report);
        tracing::debug!(epoch, train_loss, val_loss, lr, "epoch finished");
        if !val_loss.is_finite() {
            let reason = format!("validation loss became {val_loss} in epoch {epoch}");
            return finish(
                model,
                best_model,
                history,
                best_epoch,
                TrainOutcome::Diverged { epoch, reason },
            );
        }

        if val_loss < best_val {
            best_val = val_loss;
            best_epoch = epoch;
            best_model = Some(valid);
            since_best = 0;
        } else {
            since_best += 1;
        }
        if val_loss < plateau_best * (1.0 - IMPROVEMENT) {
            plateau_best = val_loss;
            plateau_wait = 0;
        } else {
            plateau_wait += 1;
            if plateau_wait > PLATEAU_PATIENCE {
                lr = (lr * PLATEAU_FACTOR).max(MIN_LEARNING_RATE);
                plateau_wait = 0;
            }
        }
        if params.early_stopping_patience > 0 && since_best >= params.early_stopping_patience {
            tracing::debug!(epoch, best_epoch, "early stopping");
            break;
        }
    }

    finish(
        model,
        best_model,
        history,
        best_epoch,
        TrainOutcome::Completed,
    )
}

/// The inner backend's device of an autodiff device (they are the same type in burn).
fn device_inner<B: AutodiffBackend>(device: &B::Device) -> &<B::InnerBackend as Backend>::Device {
    device
}

/// Scales every gradient by `max_norm / norm` when the global L2 norm over all parameters
/// exceeds `max_norm` (PyTorch's `clip_grad_norm_`).
fn clip_global_norm<B: AutodiffBackend + FusedBackend>(
    model: &HybridLstm<B>,
    grads: &mut GradientsParams,
    max_norm: f64,
) where
    B::InnerBackend: FusedBackend,
{
    let mut norm = GradNorm::<B> {
        grads,
        sum: None,
        _backend: PhantomData,
    };
    model.visit(&mut norm);
    let Some(sum) = norm.sum else { return };
    let total: f64 = sum.into_scalar().elem::<f64>().sqrt();
    if total.is_finite() && total > max_norm {
        let factor = max_norm / (total + 1e-6);
        model.visit(&mut GradScale::<B> {
            grads,
            factor,
            _backend: PhantomData,
        });
    }
}

struct GradNorm<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    sum: Option<Tensor<B::InnerBackend, 1>>,
    _backend: PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for GradNorm<'_, B>
where
    B::InnerBackend: FusedBackend,
{
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let squares = B::InnerBackend::sum_squares(grad);
            self.sum = Some(match self.sum.take() {
                Some(sum) => sum + squares,
                None => squares,
            });
        }
    }
}

struct GradScale<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    factor: f64,
    _backend: PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for GradScale<'_, B>
where
    B::InnerBackend: FusedBackend,
{
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            let scaled = B::InnerBackend::scale(grad, self.factor as f32);
            self.grads.register(param.id, scaled);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::AtomicBool;

    use rand::Rng;

    use super::*;
    use crate::device::{CpuBackend, CpuTrainBackend};

    /// `n` samples whose targets are a smooth function of the inputs, so a model can fit them.
    pub(crate) fn learnable_set(n: usize, seed: u64) -> SampleSet {
        let (t, dt, ds, h) = (6, 4, 17, 5);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut set = SampleSet {
            input_len: t,
            horizon: h,
            temporal_dim: dt,
            static_dim: ds,
            ..SampleSet::default()
        };
        for sample in 0..n {
            let level: f32 = rng.random_range(-1.0..1.0);
            for step in 0..t {
                for feature in 0..dt {
                    let wiggle: f32 = rng.random_range(-0.1..0.1);
                    set.x_temporal
                        .push(level + 0.1 * (step + feature) as f32 + wiggle);
                }
            }
            for _ in 0..ds {
                set.x_static.push(rng.random_range(-1.0..1.0));
            }
            for step in 0..h {
                let y = level * (1.0 + 0.2 * step as f32);
                set.y.push(y);
                set.y_cbm.push(y);
                set.peak.push((step % 2) as f32);
            }
            set.category.push(0);
            set.origin.push(sample);
        }
        set
    }

    /// The global L2 norm of a model's gradients.
    fn grad_norm(model: &HybridLstm<CpuTrainBackend>, grads: &GradientsParams) -> f64 {
        let mut norm = GradNorm::<CpuTrainBackend> {
            grads,
            sum: None,
            _backend: PhantomData,
        };
        model.visit(&mut norm);
        norm.sum
            .expect("gradients")
            .into_scalar()
            .elem::<f64>()
            .sqrt()
    }

    #[test]
    fn gradient_clipping_scales_the_global_norm_down_to_the_limit_and_leaves_smaller_norms() {
        let device = Default::default();
        let set = learnable_set(8, 4);
        let model: HybridLstm<CpuTrainBackend> = small_config().init(1, &device);
        let order: Vec<usize> = (0..set.len()).collect();
        let grads = || {
            let batch = Batch::<CpuTrainBackend>::gather(&set, &order, &device);
            let forecast = model.forward(
                batch.x_temporal,
                batch.x_static,
                batch.category,
                &mut Dropout::Off,
            );
            let loss = LossSpec::default().tensor(forecast, batch.y, batch.peak);
            GradientsParams::from_grads(loss.backward(), &model)
        };
        let norm = grad_norm(&model, &grads());
        assert!(norm > 0.0, "the loss has gradients");

        let mut clipped = grads();
        clip_global_norm(&model, &mut clipped, norm / 4.0);
        let after = grad_norm(&model, &clipped);
        assert!(
            (after - norm / 4.0).abs() < 1e-4 * norm,
            "{norm} clipped to {after}"
        );

        let mut unclipped = grads();
        clip_global_norm(&model, &mut unclipped, norm * 2.0);
        let same = grad_norm(&model, &unclipped);
        assert!((same - norm).abs() < 1e-6 * norm, "{norm} left as {same}");
    }

    pub(crate) fn small_config() -> HybridLstmConfig {
        HybridLstmConfig {
            hidden_size: 16,
            dense_hidden_sizes: vec![8],
            fusion_hidden_sizes: vec![16],
            output_dim: 5,
            ..HybridLstmConfig::default()
        }
    }

    fn run(params: &HyperParams, set: &SampleSet) -> Trained<CpuBackend> {
        let mut config = small_config();
        config.dropout = params.dropout;
        run_config(&config, params, set)
    }

    /// Trains `config` on `set`, which also serves as the validation set.
    fn run_config(
        config: &HybridLstmConfig,
        params: &HyperParams,
        set: &SampleSet,
    ) -> Trained<CpuBackend> {
        train::<CpuTrainBackend>(
            config,
            params,
            set,
            set,
            &Default::default(),
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .unwrap()
    }

    #[test]
    fn overfits_eight_samples() {
        let set = learnable_set(8, 1);
        let params = HyperParams {
            dropout: 0.0,
            learning_rate: 1e-2,
            batch_size: 8,
            epochs: 150,
            early_stopping_patience: 0,
            loss: shared::params::LossKind::Mse,
            ..HyperParams::default()
        };
        let trained = run(&params, &set);
        assert_eq!(trained.outcome, TrainOutcome::Completed);
        let first = trained.history[0].train_loss;
        let best = trained
            .history
            .iter()
            .map(|r| r.val_loss)
            .fold(f64::INFINITY, f64::min);
        assert!(best < 0.1 * first, "loss fell from {first} only to {best}");
    }

    #[test]
    fn on_pool_runs_work_on_a_pool_thread_and_in_place_when_already_there() {
        assert!(
            rayon::current_thread_index().is_none(),
            "the test harness runs tests outside rayon's pool"
        );
        let (outer, inner) = on_pool(|| {
            let outer = rayon::current_thread_index();
            (outer, on_pool(rayon::current_thread_index))
        });
        assert!(outer.is_some(), "the work ran outside the pool");
        assert_eq!(outer, inner, "a nested call moved to another thread");
    }

    #[test]
    fn core_share_runs_on_a_pool_of_its_own_and_one_share_stays_in_place() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (threads, index) = on_core_share(2, || {
            (rayon::current_num_threads(), rayon::current_thread_index())
        });
        assert_eq!(threads, (cores / 2).max(1));
        assert!(index.is_some(), "the work ran outside its pool");
        // The harness thread is outside every pool, and one share leaves it there.
        assert_eq!(on_core_share(1, rayon::current_thread_index), None);
    }

    #[test]
    fn training_history_does_not_depend_on_the_thread_count() {
        // Large enough that the recurrence splits its batch rows, and the matrix products their
        // blocks, over the threads of a pool.
        let set = learnable_set(64, 3);
        let config = HybridLstmConfig {
            hidden_size: 64,
            ..small_config()
        };
        let params = HyperParams {
            epochs: 2,
            batch_size: 32,
            ..HyperParams::default()
        };
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("thread pool");
            pool.install(|| run_config(&config, &params, &set).history)
        };
        let one = on(1);
        assert_eq!(one.len(), 2);
        for threads in [2, 3] {
            let many = on(threads);
            for (x, y) in one.iter().zip(&many) {
                assert_eq!(
                    (x.train_loss, x.val_loss),
                    (y.train_loss, y.val_loss),
                    "{threads} threads"
                );
            }
        }
    }

    #[test]
    fn same_seed_gives_identical_history() {
        let set = learnable_set(40, 2);
        let params = HyperParams {
            epochs: 3,
            batch_size: 16,
            ..HyperParams::default()
        };
        let a = run(&params, &set);
        let b = run(&params, &set);
        assert_eq!(a.history.len(), 3);
        for (x, y) in a.history.iter().zip(&b.history) {
            assert_eq!((x.train_loss, x.val_loss), (y.train_loss, y.val_loss));
        }
        let other = run(&HyperParams { seed: 7, ..params }, &set);
        assert_ne!(a.history[0].train_loss, other.history[0].train_loss);
    }

    #[test]
    fn diverging_learning_rate_yields_diverged() {
        let set = learnable_set(32, 3);
        let params = HyperParams {
            learning_rate: 1e10,
            epochs: 20,
            batch_size: 8,
            ..HyperParams::default()
        };
        let trained = run(&params, &set);
        assert!(
            matches!(trained.outcome, TrainOutcome::Diverged { .. }),
            "{:?}",
            trained.outcome
        );
    }

    #[test]
    fn raised_cancel_flag_stops_before_training() {
        let set = learnable_set(8, 4);
        let trained = train::<CpuTrainBackend>(
            &small_config(),
            &HyperParams::default(),
            &set,
            &set,
            &Default::default(),
            &AtomicBool::new(true),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(trained.outcome, TrainOutcome::Cancelled);
        assert!(trained.history.is_empty());
    }

    #[test]
    fn mismatched_samples_are_a_shape_error() {
        let set = learnable_set(4, 5);
        let config = HybridLstmConfig {
            output_dim: 30,
            ..small_config()
        };
        let err = train::<CpuTrainBackend>(
            &config,
            &HyperParams::default(),
            &set,
            &set,
            &Default::default(),
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .unwrap_err();
        assert!(err.to_string().contains("horizon"), "{err}");
    }
}
