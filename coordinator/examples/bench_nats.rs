//! Benchmark of the NATS path's orchestration cost (not a test).
//!
//! Starts a nats-server (JetStream, file storage, loopback), four `sweep worker` processes, and
//! drives the coordinator side through `NatsTransport`, the transport the sweep engine uses:
//!
//! 1. `--trials` no-op trials (default 10,000): end-to-end trials per second, from the first
//!    submission to the last result received, and the coordinator's peak resident memory;
//! 2. `--sleep-trials` trials that sleep one second each (default 8 per slot): the wall time
//!    against the ideal `ceil(trials / slots) * 1 s`, as an overhead percentage.
//!
//! No-op trials use the benchmark mode of the protocol (`TrialMessage::noop_ms`): the worker
//! sleeps instead of fetching data and training, so only the orchestration is measured.
//!
//! ```text
//! cargo build -p coordinator --bin sweep --example bench_nats
//! target/debug/examples/bench_nats [--trials N] [--workers N] [--slots N] [--sleep-trials N]
//! ```
//!
//! The nats-server binary comes from `SWEEP_NATS_SERVER` or PATH; the `sweep` binary from
//! `SWEEP_BIN` or beside this example's folder.

use std::collections::{BTreeMap, HashSet};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coordinator::cli::NatsArgs;
use coordinator::engine::transport::{Dispatch, Transport, TransportEvent};
use coordinator::nats::transport::{NatsTransport, SweepUpload};
use shared::config::{DataConfig, PipelineConfig};
use shared::dataset::SeriesKey;
use shared::trial::{TrialId, TrialSpec};

struct Options {
    trials: usize,
    workers: usize,
    slots: usize,
    sleep_trials: Option<usize>,
}

fn options() -> Options {
    let mut options = Options {
        trials: 10_000,
        workers: 4,
        slots: 64,
        sleep_trials: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            eprintln!(
                "usage: bench_nats [--trials N] [--workers N] [--slots N] [--sleep-trials N]"
            );
            std::process::exit(2)
        });
        match pair[0].as_str() {
            "--trials" => options.trials = value,
            "--workers" => options.workers = value,
            "--slots" => options.slots = value,
            "--sleep-trials" => options.sleep_trials = Some(value),
            other => {
                eprintln!("bench_nats: unknown option {other}");
                std::process::exit(2)
            }
        }
    }
    options
}

fn sweep_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("SWEEP_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the benchmark knows its own path");
    exe.parent()
        .and_then(|examples| examples.parent())
        .map(|dir| dir.join("sweep"))
        .expect("the example lives in target/<profile>/examples")
}

struct Server {
    child: Child,
    url: String,
    _store: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server() -> Server {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = tempfile::tempdir().unwrap();
    let bin = std::env::var_os("SWEEP_NATS_SERVER").unwrap_or_else(|| "nats-server".into());
    let child = Command::new(bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(store.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server on PATH or in SWEEP_NATS_SERVER");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server {
        child,
        url: format!("nats://127.0.0.1:{port}"),
        _store: store,
    }
}

struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

fn start_workers(url: &str, count: usize, slots: usize) -> Workers {
    let cache = std::env::temp_dir().join("sweep-bench-cache");
    Workers(
        (0..count)
            .map(|i| {
                Command::new(sweep_bin())
                    .args(["worker", "--nats", url, "--slots", &slots.to_string()])
                    .args(["--name", &format!("bench-{i}"), "--cache-dir"])
                    .arg(&cache)
                    .stdout(Stdio::null())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .expect("the sweep binary (build it with cargo build -p coordinator)")
            })
            .collect(),
    )
}

/// Trials queued per `submit` call.
const SUBMIT_CHUNK: usize = 10_000;

fn trials(sweep: &str, first: usize, end: usize, digest: &str) -> Vec<Dispatch> {
    (first..end)
        .map(|n| Dispatch {
            trial: TrialSpec {
                trial_id: TrialId(format!("{n:08x}")),
                sweep: sweep.to_string(),
                series: SeriesKey {
                    category: "DRY".into(),
                    brand: None,
                },
                params: BTreeMap::new(),
                pipeline: PipelineConfig::default(),
                dataset_digest: digest.to_string(),
                evaluation: Default::default(),
            },
            attempt: 1,
        })
        .collect()
}

/// Runs one sweep of `count` trials sleeping `noop_ms`; returns the wall time.
fn run(url: &str, sweep: &str, count: usize, noop_ms: u64) -> Duration {
    let mut transport = NatsTransport::connect(
        &NatsArgs {
            url: Some(url.to_string()),
            ..NatsArgs::default()
        },
        SweepUpload {
            sweep: sweep.to_string(),
            dataset: bytes::Bytes::from_static(b"benchmark: no data"),
            dataset_name: "bench.csv".into(),
            data: DataConfig::default(),
            trials: count,
            objective: shared::spec::Objective::default(),
        },
    )
    .expect("connecting to the benchmark's nats-server");
    transport.set_noop_ms(Some(noop_ms));
    let digest = transport.dataset_digest().to_string();

    // The plan is queued in chunks, as it is generated, so the benchmark's own copy of the plan
    // does not dominate the memory it reports.
    let started = Instant::now();
    for first in (0..count).step_by(SUBMIT_CHUNK) {
        let chunk = trials(sweep, first, count.min(first + SUBMIT_CHUNK), &digest);
        transport.submit(chunk).expect("queuing trials");
    }
    let mut done = HashSet::with_capacity(count);
    while done.len() < count {
        match transport
            .next_event(Duration::from_secs(30))
            .expect("transport failed")
        {
            Some(TransportEvent::Finished(result)) => {
                done.insert(result.trial_id);
            }
            Some(_) => {}
            None => panic!("no result for 30 s; {} of {count} done", done.len()),
        }
    }
    let wall = started.elapsed();
    transport.shutdown().expect("shutting down");
    wall
}

/// Peak resident memory of this process (VmHWM), in MB.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn main() {
    let options = options();
    let server = start_server();
    let total_slots = options.workers * options.slots;
    let _workers = start_workers(&server.url, options.workers, options.slots);

    let wall = run(&server.url, "bench-noop", options.trials, 0);
    let rate = options.trials as f64 / wall.as_secs_f64();
    println!(
        "no-op trials: {} through {} workers x {} slots in {:.2} s = {:.0} trials/s; \
         coordinator peak memory {:.1} MB",
        options.trials,
        options.workers,
        options.slots,
        wall.as_secs_f64(),
        rate,
        peak_rss_mb()
    );

    let sleep_trials = options.sleep_trials.unwrap_or(total_slots * 8);
    let wall = run(&server.url, "bench-sleep", sleep_trials, 1000);
    let ideal = sleep_trials.div_ceil(total_slots) as f64;
    let overhead = (wall.as_secs_f64() - ideal) / ideal * 100.0;
    println!(
        "1-second trials: {sleep_trials} on {total_slots} slots in {:.2} s; ideal {ideal:.0} s; \
         overhead {overhead:.2}%",
        wall.as_secs_f64()
    );
}
