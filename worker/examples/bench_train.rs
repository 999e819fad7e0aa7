//! Training throughput of the HybridLSTM on the CPU backend.
//!
//! `cargo run -p worker --example bench_train [-- --epochs N --samples N --only 128x2:32
//! [--concurrent N]]`
//!
//! Prints samples/s (the median of 5 timed epochs after a warm-up epoch) for the default model
//! (hidden 128, 2 layers) at batch 32 and 64 and for hidden 256 with 3 layers, the achieved
//! GFLOP/s from the closed-form FLOP count, and the machine's matrix-multiply rate measured in
//! the same run (a 1024^3 product through the backend's linear operation, the multiply every
//! layer uses). Then, for the default model at
//! batch 32: the op-by-op recurrence (autodiff recording every step) measured in the same run
//! and the fused path's speed-up over it, and two trainings on two threads at once (several
//! trials in one process). The data are synthetic samples of the real shape (30 input days, 4
//! temporal and 17 static features, 30 target days); 725 samples per epoch, as the reference
//! benchmark.

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::{Distribution, ElementConversion, Tensor, TensorPrimitive};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use shared::dataset::SampleSet;
use worker::adam::FusedAdam;
use worker::device::{CpuBackend, CpuTrainBackend};
use worker::init::Dropout;
use worker::loss::LossSpec;
use worker::lstm::FusedBackend;
use worker::model::{HybridLstm, HybridLstmConfig};
use worker::trainer::{self, Batch};

type Ad = CpuTrainBackend;

fn synthetic(n: usize, seed: u64) -> SampleSet {
    let (t, dt, ds, h) = (30, 4, 17, 30);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut normal =
        |len: usize| -> Vec<f32> { (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect() };
    SampleSet {
        input_len: t,
        horizon: h,
        temporal_dim: dt,
        static_dim: ds,
        x_temporal: normal(n * t * dt),
        x_static: normal(n * ds),
        category: vec![0; n],
        y: normal(n * h),
        y_cbm: vec![0.0; n * h],
        peak: (0..n * h)
            .map(|i| ((i / 7) % 3 == 0) as u8 as f32)
            .collect(),
        origin: (0..n).collect(),
    }
}

/// Samples per second of training (forward, loss, backward, Adam): the median over `epochs`
/// timed epochs after one warm-up epoch, as the PyTorch reference reports it.
fn train_rate(config: &HybridLstmConfig, set: &SampleSet, batch: usize, epochs: usize) -> f64 {
    // On rayon's pool, as the trainer runs its epochs.
    trainer::on_pool(|| train_on_this_thread(config, set, batch, epochs))
}

fn train_on_this_thread(
    config: &HybridLstmConfig,
    set: &SampleSet,
    batch: usize,
    epochs: usize,
) -> f64 {
    let device = Default::default();
    let loss = LossSpec::default();
    let mut model: HybridLstm<Ad> = config.init(0, &device);
    let mut optimizer = FusedAdam::new(1e-8, 0.0).init::<Ad, HybridLstm<Ad>>();
    let mut dropout = Dropout::train(config.dropout, 1);
    let mut rng = StdRng::seed_from_u64(2);
    let mut order: Vec<usize> = (0..set.len()).collect();
    let mut rates = Vec::with_capacity(epochs);
    for epoch in 0..=epochs {
        order.shuffle(&mut rng);
        let started = Instant::now();
        for chunk in order.chunks(batch) {
            let b = Batch::<Ad>::gather(set, chunk, &device);
            let forecast = model.forward(b.x_temporal, b.x_static, b.category, &mut dropout);
            let value = loss.tensor(forecast, b.y, b.peak);
            let _: f64 = value.clone().into_scalar().elem();
            let grads = GradientsParams::from_grads(value.backward(), &model);
            model = optimizer.step(1e-3, model, grads);
        }
        if epoch > 0 {
            rates.push(set.len() as f64 / started.elapsed().as_secs_f64());
        }
    }
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// Forecasts per second with the inference backend.
fn infer_rate(config: &HybridLstmConfig, set: &SampleSet) -> f64 {
    let device = Default::default();
    let model: HybridLstm<Ad> = config.init(0, &device);
    let model = model.valid();
    let _ = trainer::predict::<CpuBackend>(&model, set, &device);
    let started = Instant::now();
    let _ = trainer::predict::<CpuBackend>(&model, set, &device);
    set.len() as f64 / started.elapsed().as_secs_f64()
}

/// Best-of-five GFLOP/s of an n^3 matrix product through the CPU backend's linear operation
/// (the matrix multiply every layer of the model uses).
fn matmul_rate(n: usize) -> f64 {
    let device = Default::default();
    let normal = Distribution::Normal(0.0, 1.0);
    let a = Tensor::<CpuBackend, 2>::random([n, n], normal, &device);
    let b = Tensor::<CpuBackend, 2>::random([n, n], normal, &device);
    let zero = Tensor::<CpuBackend, 1>::zeros([n], &device);
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let started = Instant::now();
        let c = CpuBackend::linear(
            a.clone().into_primitive().tensor(),
            b.clone().into_primitive().tensor(),
            zero.clone().into_primitive().tensor(),
        );
        let c = Tensor::<CpuBackend, 2>::from_primitive(TensorPrimitive::Float(c));
        let _: f32 = c.slice([0..1, 0..1]).into_scalar().elem();
        best = best.min(started.elapsed().as_secs_f64());
    }
    2.0 * (n as f64).powi(3) / best / 1e9
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str, default: usize| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let epochs = value("--epochs", 5).max(1);
    let samples = value("--samples", 725);
    let set = synthetic(samples, 7);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());

    // On rayon's pool, as training runs its products.
    let matmul = trainer::on_pool(|| matmul_rate(1024));
    println!("machine: {threads} threads; matrix multiply 1024^3: {matmul:.1} GFLOP/s");
    println!("lstm recurrence: fused autodiff operation");
    println!(
        "{:<12} {:>6} {:>12} {:>14} {:>10} {:>12} {:>14}",
        "model", "batch", "train smp/s", "MFLOP/sample", "GFLOP/s", "% of matmul", "infer smp/s"
    );
    let big = HybridLstmConfig {
        hidden_size: 256,
        n_layers: 3,
        ..HybridLstmConfig::default()
    };
    let default = HybridLstmConfig::default();
    let cases = [
        ("128x2", default.clone(), 32),
        ("128x2", default.clone(), 64),
        ("256x3", big.clone(), 32),
        ("256x3", big, 64),
    ];
    // `--only 128x2:32` measures one case (for profiling).
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    // `--only CASE --concurrent N`: N trainings of that case at once in this process, as a
    // sweep runs N trials with `--workers N`; prints their total samples/s.
    let concurrent = value("--concurrent", 1);
    if let (Some(only), true) = (&only, concurrent > 1) {
        let Some((name, config, batch)) = cases
            .iter()
            .find(|(name, _, batch)| *only == format!("{name}:{batch}"))
        else {
            eprintln!("bench_train: unknown case {only}; cases are 128x2:32, 128x2:64, 256x3:32, 256x3:64");
            std::process::exit(2);
        };
        let total = concurrent_rate(config, &set, *batch, epochs, concurrent);
        println!("{name:<12} {batch:>6} {total:>12.0}   ({concurrent} trainings at once, total)");
        return;
    }
    let mut fused_default = 0.0;
    for (name, config, batch) in cases {
        if only
            .as_ref()
            .is_some_and(|o| *o != format!("{name}:{batch}"))
        {
            continue;
        }
        let rate = train_rate(&config, &set, batch, epochs);
        if name == "128x2" && batch == 32 {
            fused_default = rate;
        }
        let flops = config.train_flops(30);
        let gflops = rate * flops / 1e9;
        let infer = infer_rate(&config, &set);
        println!(
            "{name:<12} {batch:>6} {rate:>12.0} {:>14.2} {gflops:>10.1} {:>11.0}% {infer:>14.0}",
            flops / 1e6,
            100.0 * gflops / matmul
        );
    }

    if only.is_some() {
        return;
    }
    worker::fused::set_enabled(false);
    let op_by_op = train_rate(&default, &set, 32, 1);
    worker::fused::set_enabled(true);
    println!(
        "128x2 batch 32, op-by-op recurrence: {op_by_op:.0} smp/s; fused is {:.1}x faster",
        fused_default / op_by_op
    );

    let started = Instant::now();
    let total = concurrent_rate(&default, &set, 32, epochs, 2);
    let wall = started.elapsed().as_secs_f64();
    println!(
        "128x2 batch 32, two trainings on two threads: {total:.0} smp/s together \
         ({:.2}x one training; {wall:.1} s wall)",
        total / fused_default
    );
}

/// The total samples per second of `n` trainings running at once, each on its own thread and
/// its share of the cores ([`trainer::on_core_share`]), as trials of a sweep with
/// `--workers n` run.
fn concurrent_rate(
    config: &HybridLstmConfig,
    set: &SampleSet,
    batch: usize,
    epochs: usize,
    n: usize,
) -> f64 {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                scope.spawn(move || {
                    trainer::on_core_share(n, || train_rate(config, set, batch, epochs))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("training thread"))
            .sum()
    })
}
