//! The NATS JetStream path against a real nats-server (loopback, random port, file storage):
//! real `sweep worker` processes train real trials on the DRY data, while the test drives the
//! coordinator side through `coordinator::nats::transport::NatsTransport`, the transport the
//! sweep engine runs on, or through the `sweep` commands.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use coordinator::cli::NatsArgs;
use coordinator::engine::transport::{Dispatch, Transport, TransportEvent};
use coordinator::nats::transport::{NatsTransport, SweepUpload};
use shared::config::{DataConfig, PipelineConfig};
use shared::dataset::SeriesKey;
use shared::trial::{TrialId, TrialResult, TrialSpec, TrialStatus};
use tempfile::TempDir;

use crate::common::nats_server::{Auth, NatsServer};
use crate::common::{real_dry_csv, sweep_bin};

/// Ack wait of the tests' consumer: short, so a lost worker's trial comes back quickly.
const ACK_WAIT_MS: &str = "2000";

fn nats_args(server: &NatsServer) -> NatsArgs {
    NatsArgs {
        url: Some(server.url()),
        ..NatsArgs::default()
    }
}

/// A small real trial on one DRY brand; `epochs` sets how long it trains.
fn trial(sweep: &str, n: usize, brand: &str, epochs: usize) -> TrialSpec {
    let mut params = BTreeMap::new();
    params.insert("hidden_size".to_string(), serde_json::json!(8));
    params.insert("n_layers".to_string(), serde_json::json!(1));
    params.insert("dense_hidden_sizes".to_string(), serde_json::json!([8]));
    params.insert("fusion_hidden_sizes".to_string(), serde_json::json!([8]));
    params.insert("batch_size".to_string(), serde_json::json!(64));
    params.insert("epochs".to_string(), serde_json::json!(epochs));
    params.insert("seed".to_string(), serde_json::json!(n));
    TrialSpec {
        trial_id: TrialId(format!("{sweep}-t{n}")),
        sweep: sweep.to_string(),
        series: SeriesKey {
            category: "DRY".into(),
            brand: Some(brand.to_string()),
        },
        params,
        pipeline: PipelineConfig::default(),
        dataset_digest: String::new(),
        evaluation: Default::default(),
    }
}

fn transport(server: &NatsServer, sweep: &str, trials: usize) -> NatsTransport {
    let bytes = std::fs::read(real_dry_csv()).unwrap();
    NatsTransport::connect(
        &nats_args(server),
        SweepUpload {
            sweep: sweep.to_string(),
            dataset: bytes.into(),
            dataset_name: "mdlz_dry_shipments.csv".into(),
            data: DataConfig::default(),
            trials,
            objective: shared::spec::Objective::default(),
        },
    )
    .unwrap()
}

fn dispatches(transport: &NatsTransport, trials: &[TrialSpec]) -> Vec<Dispatch> {
    trials
        .iter()
        .map(|t| Dispatch {
            trial: TrialSpec {
                dataset_digest: transport.dataset_digest().to_string(),
                evaluation: Default::default(),
                ..t.clone()
            },
            attempt: 1,
        })
        .collect()
}

/// A `sweep worker` process with its own cache folder.
struct WorkerProcess {
    child: Child,
    _cache: TempDir,
}

impl WorkerProcess {
    fn start(server: &NatsServer, name: &str) -> Self {
        Self::start_with(server, name, &[])
    }

    fn start_with(server: &NatsServer, name: &str, extra: &[&str]) -> Self {
        let cache = tempfile::tempdir().unwrap();
        let child = Command::new(sweep_bin())
            .args([
                "worker",
                "--nats",
                &server.url(),
                "--name",
                name,
                "--cache-dir",
            ])
            .arg(cache.path())
            .args(extra)
            .env("SWEEP_NATS_ACK_WAIT_MS", ACK_WAIT_MS)
            .env_remove("SWEEP_NATS_USER")
            .env_remove("SWEEP_NATS_PASSWORD")
            .env_remove("SWEEP_NATS_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        WorkerProcess {
            child,
            _cache: cache,
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} failed");
    }

    /// SIGTERM, then waits for the exit code.
    fn terminate(mut self) -> std::process::ExitStatus {
        self.signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "worker ignored SIGTERM for 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every event until `done` says stop, with a deadline.
fn collect(
    transport: &mut NatsTransport,
    limit: Duration,
    mut on_event: impl FnMut(&TransportEvent, &mut NatsTransport) -> bool,
) {
    let deadline = Instant::now() + limit;
    loop {
        assert!(
            Instant::now() < deadline,
            "sweep did not finish within {limit:?}"
        );
        if let Some(event) = transport.next_event(Duration::from_millis(200)).unwrap() {
            if on_event(&event, transport) {
                return;
            }
        }
    }
}

/// Finished results by (trial, attempt), counting repeats.
#[derive(Default)]
struct Results {
    by_key: BTreeMap<(TrialId, u32), TrialResult>,
    repeats: usize,
}

impl Results {
    fn add(&mut self, result: &TrialResult) {
        let key = (result.trial_id.clone(), result.attempt);
        if self.by_key.insert(key, result.clone()).is_some() {
            self.repeats += 1;
        }
    }

    fn trials(&self) -> BTreeSet<TrialId> {
        self.by_key.keys().map(|(id, _)| id.clone()).collect()
    }
}

fn run_sweep_cli(args: &[&str], server: &NatsServer) -> Output {
    Command::new(sweep_bin())
        .args(args)
        .args(["--nats", &server.url()])
        .output()
        .unwrap()
}

fn status_json(server: &NatsServer, sweep: &str) -> serde_json::Value {
    let output = run_sweep_cli(&["status", sweep, "--json"], server);
    assert!(
        output.status.code().is_some_and(|c| c <= 1),
        "status failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn two_workers_complete_every_trial_once() {
    let server = NatsServer::start();
    let trials: Vec<_> = (0..4).map(|n| trial("two", n, "OREO", 1)).collect();
    let mut transport = transport(&server, "two", trials.len());
    let _a = WorkerProcess::start(&server, "a");
    let _b = WorkerProcess::start(&server, "b");

    transport.submit(dispatches(&transport, &trials)).unwrap();
    let mut results = Results::default();
    let mut started = 0;
    collect(&mut transport, Duration::from_secs(240), |event, _| {
        match event {
            TransportEvent::Started { .. } => started += 1,
            TransportEvent::Finished(result) => results.add(result),
            TransportEvent::Epoch { .. } => {}
        }
        results.trials().len() == trials.len()
    });
    transport.shutdown().unwrap();

    assert_eq!(results.by_key.len(), 4, "one result per trial");
    for result in results.by_key.values() {
        assert_eq!(result.status, TrialStatus::Completed, "{:?}", result.reason);
        assert_eq!(result.attempt, 1);
        assert!(result.metrics.is_some());
        assert!(["a", "b"].contains(&result.worker.as_str()));
    }
    assert!(started >= 4, "every trial announced its start");
    let status = status_json(&server, "two");
    assert_eq!(status["statuses"]["completed"], 4);
    assert_eq!(status["attempts"], 4);
    assert_eq!(status["unfinished"], 0);
}

#[test]
fn killed_worker_trial_is_redelivered_and_completes() {
    let server = NatsServer::start();
    let trials = vec![trial("kill", 0, "OREO", 30)];
    let mut transport = transport(&server, "kill", 1);
    let doomed = WorkerProcess::start(&server, "doomed");

    transport.submit(dispatches(&transport, &trials)).unwrap();
    collect(
        &mut transport,
        Duration::from_secs(60),
        |event, _| matches!(event, TransportEvent::Started { worker, .. } if worker == "doomed"),
    );
    doomed.signal("-KILL");
    let _rescuer = WorkerProcess::start(&server, "rescuer");
    let mut results = Results::default();
    collect(&mut transport, Duration::from_secs(240), |event, _| {
        if let TransportEvent::Finished(result) = event {
            results.add(result);
        }
        !results.by_key.is_empty()
    });
    transport.shutdown().unwrap();

    let result = results.by_key.values().next().unwrap();
    assert_eq!(result.status, TrialStatus::Completed, "{:?}", result.reason);
    assert_eq!(result.worker, "rescuer");
    assert_eq!(
        result.attempt, 1,
        "a lost worker's redelivery keeps the attempt"
    );
    assert_eq!(status_json(&server, "kill")["attempts"], 1);
}

#[test]
fn stopped_worker_late_result_is_stored_once() {
    let server = NatsServer::start();
    let trials = vec![trial("late", 0, "OREO", 6)];
    let mut transport = transport(&server, "late", 1);
    let sleeper = WorkerProcess::start(&server, "sleeper");

    transport.submit(dispatches(&transport, &trials)).unwrap();
    collect(
        &mut transport,
        Duration::from_secs(60),
        |event, _| matches!(event, TransportEvent::Started { worker, .. } if worker == "sleeper"),
    );
    sleeper.signal("-STOP");
    // Past the ack wait: JetStream hands the trial to the next worker.
    std::thread::sleep(Duration::from_millis(3000));
    let awake = WorkerProcess::start(&server, "awake");
    let mut results = Results::default();
    collect(&mut transport, Duration::from_secs(240), |event, _| {
        if let TransportEvent::Finished(result) = event {
            results.add(result);
        }
        !results.by_key.is_empty()
    });
    sleeper.signal("-CONT");
    // The sleeper finishes its copy and publishes the same (trial, attempt) late.
    let exit = sleeper.terminate();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(TransportEvent::Finished(result)) =
            transport.next_event(Duration::from_millis(200)).unwrap()
        {
            results.add(&result);
        }
    }
    drop(awake);
    transport.shutdown().unwrap();

    assert_eq!(exit.code(), Some(0), "the woken worker shuts down cleanly");
    assert_eq!(results.by_key.len(), 1, "one (trial, attempt) result");
    let status = status_json(&server, "late");
    assert_eq!(status["attempts"], 1);
    assert_eq!(status["statuses"]["completed"], 1);
}

#[test]
fn poison_trial_ends_error_after_retries_while_the_worker_serves_others() {
    let server = NatsServer::start();
    let mut trials: Vec<_> = (0..3).map(|n| trial("poison", n, "OREO", 1)).collect();
    trials.push(trial("poison", 9, "NO SUCH BRAND", 1));
    let poison_id = trials[3].trial_id.clone();
    let mut transport = transport(&server, "poison", trials.len());
    let _worker = WorkerProcess::start(&server, "only");
    let max_attempts = 3;

    transport.submit(dispatches(&transport, &trials)).unwrap();
    let mut results = Results::default();
    let mut finals = BTreeMap::new();
    collect(
        &mut transport,
        Duration::from_secs(240),
        |event, transport| {
            if let TransportEvent::Finished(result) = event {
                results.add(result);
                // What the engine does: retry `error` up to the limit.
                if result.status == TrialStatus::Error && result.attempt < max_attempts {
                    let spec = trials
                        .iter()
                        .find(|t| t.trial_id == result.trial_id)
                        .unwrap();
                    let spec = TrialSpec {
                        dataset_digest: transport.dataset_digest().to_string(),
                        evaluation: Default::default(),
                        ..spec.clone()
                    };
                    transport.resubmit(spec, result.attempt + 1).unwrap();
                } else {
                    finals.insert(result.trial_id.clone(), result.clone());
                }
            }
            finals.len() == trials.len()
        },
    );
    transport.shutdown().unwrap();

    let poison = &finals[&poison_id];
    assert_eq!(poison.status, TrialStatus::Error);
    assert_eq!(poison.attempt, max_attempts);
    assert!(
        poison
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("NO SUCH BRAND"),
        "{:?}",
        poison.reason
    );
    let completed = finals
        .values()
        .filter(|r| r.status == TrialStatus::Completed)
        .count();
    assert_eq!(completed, 3, "the worker kept serving the healthy trials");
    assert_eq!(status_json(&server, "poison")["attempts"], 3 + max_attempts);
}

#[test]
fn three_workers_started_together_run_each_grid_point_once() {
    let server = NatsServer::start();
    // The workers race to create the consumer before anything is queued.
    let workers: Vec<_> = ["w1", "w2", "w3"]
        .iter()
        .map(|name| WorkerProcess::start(&server, name))
        .collect();
    let trials: Vec<_> = (0..3).map(|n| trial("grid", n, "OREO", 1)).collect();
    let mut transport = transport(&server, "grid", trials.len());

    transport.submit(dispatches(&transport, &trials)).unwrap();
    // A second submission of the same attempts (a relaunch) must queue nothing.
    transport.submit(dispatches(&transport, &trials)).unwrap();
    let mut results = Results::default();
    collect(&mut transport, Duration::from_secs(240), |event, _| {
        if let TransportEvent::Finished(result) = event {
            results.add(result);
        }
        results.trials().len() == 3
    });
    for worker in workers {
        assert_eq!(worker.terminate().code(), Some(0));
    }
    transport.shutdown().unwrap();

    assert_eq!(results.by_key.len(), 3);
    assert_eq!(results.repeats, 0);
    let status = status_json(&server, "grid");
    assert_eq!(status["attempts"], 3, "each point ran exactly once");
    assert_eq!(status["queued"], 0);
}

#[test]
fn server_restart_mid_sweep_loses_nothing() {
    let mut server = NatsServer::start();
    let trials: Vec<_> = (0..4).map(|n| trial("restart", n, "OREO", 12)).collect();
    let mut transport = transport(&server, "restart", trials.len());
    let _worker = WorkerProcess::start(&server, "survivor");

    transport.submit(dispatches(&transport, &trials)).unwrap();
    let mut results = Results::default();
    collect(&mut transport, Duration::from_secs(120), |event, _| {
        if let TransportEvent::Finished(result) = event {
            results.add(result);
        }
        !results.by_key.is_empty()
    });
    server.restart();
    collect(&mut transport, Duration::from_secs(240), |event, _| {
        if let TransportEvent::Finished(result) = event {
            results.add(result);
        }
        results.trials().len() == trials.len()
    });
    transport.shutdown().unwrap();

    for result in results.by_key.values() {
        assert_eq!(result.status, TrialStatus::Completed, "{:?}", result.reason);
    }
    let status = status_json(&server, "restart");
    assert_eq!(status["statuses"]["completed"], 4);
    assert_eq!(status["unfinished"], 0);
}

#[test]
fn worker_without_credentials_is_refused_with_a_clear_message() {
    let server = NatsServer::start_with(Auth::UserPassword("sweeper".into(), "s3cret".into()));

    let refused = Command::new(sweep_bin())
        .args(["worker", "--nats", &server.url()])
        .env_remove("SWEEP_NATS_USER")
        .env_remove("SWEEP_NATS_PASSWORD")
        .env_remove("SWEEP_NATS_TOKEN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("refused the credentials"), "{stderr}");
    assert!(stderr.contains("--nats-user"), "{stderr}");

    let allowed = run_with_env(
        &["status", "nosuch", "--nats", &server.url()],
        &[
            ("SWEEP_NATS_USER", "sweeper"),
            ("SWEEP_NATS_PASSWORD", "s3cret"),
        ],
    );
    let stderr = String::from_utf8_lossy(&allowed.stderr);
    assert!(
        stderr.contains("not recorded on this NATS server"),
        "{stderr}"
    );
}

#[test]
fn unreachable_server_fails_fast_with_exit_2() {
    let output = run_with_env(&["worker", "--nats", "nats://127.0.0.1:1"], &[]);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot connect to NATS at nats://127.0.0.1:1"),
        "{stderr}"
    );
}

#[test]
fn cancel_drops_queued_trials_and_stops_the_following_launch() {
    let server = NatsServer::start();
    let trials: Vec<_> = (0..3).map(|n| trial("cancel", n, "OREO", 1)).collect();
    let mut transport = transport(&server, "cancel", trials.len());
    transport.submit(dispatches(&transport, &trials)).unwrap();

    let output = run_sweep_cli(&["cancel", "cancel", "--json"], &server);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let cancelled: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(cancelled["dropped"], 3);
    let err = transport.next_event(Duration::from_secs(5));
    assert!(
        matches!(&err, Err(e) if e.to_string().contains("cancelled")),
        "the following launch stops: {err:?}"
    );
    transport.shutdown().unwrap();
    let status = status_json(&server, "cancel");
    assert_eq!(status["cancelled"], true);
    assert_eq!(status["queued"], 0);
}

fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(sweep_bin());
    cmd.args(args)
        .env_remove("SWEEP_NATS_USER")
        .env_remove("SWEEP_NATS_PASSWORD")
        .env_remove("SWEEP_NATS_TOKEN");
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.output().unwrap()
}

/// A grid over seeds on the DRY category total, hidden size 8.
fn write_spec(dir: &Path, name: &str, seeds: &[u64], epochs: usize) -> std::path::PathBuf {
    let seeds: Vec<String> = seeds.iter().map(u64::to_string).collect();
    let spec = format!(
        "name: {name}\n\
         data:\n  path: {}\n  categories: [DRY]\n\
         parameters:\n  hidden_size: 8\n  n_layers: 1\n  epochs: {epochs}\n  batch_size: 64\n  \
         seed: [{}]\n\
         retries: 1\n",
        real_dry_csv().display(),
        seeds.join(", ")
    );
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, spec).unwrap();
    path
}

/// The results a launch stored in its run folder.
fn stored_results(out: &Path, sweep: &str) -> Vec<TrialResult> {
    let text = std::fs::read_to_string(out.join(sweep).join("results.jsonl")).unwrap_or_default();
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn launch(spec: &Path, out: &Path, nats: Option<&NatsServer>) -> Command {
    let mut cmd = Command::new(sweep_bin());
    cmd.arg("launch")
        .arg(spec)
        .arg("--out")
        .arg(out)
        .arg("--json");
    if let Some(server) = nats {
        cmd.args(["--nats", &server.url()]);
    }
    cmd.env("SWEEP_NATS_ACK_WAIT_MS", ACK_WAIT_MS);
    cmd
}

#[test]
fn launch_over_nats_with_two_workers_matches_the_embedded_leaderboard() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "same", &[1, 2, 3], 1);
    let embedded_out = dir.path().join("embedded");
    let nats_out = dir.path().join("nats");

    let embedded = launch(&spec, &embedded_out, None).output().unwrap();
    assert!(
        embedded.status.success(),
        "{}",
        String::from_utf8_lossy(&embedded.stderr)
    );
    // Worker b trains two trials at once, each on a pool of its own with its share of the
    // cores; worker a one at a time on the whole machine. Both must agree with the embedded run.
    let _a = WorkerProcess::start(&server, "a");
    let _b = WorkerProcess::start_with(&server, "b", &["--slots", "2"]);
    let remote = launch(&spec, &nats_out, Some(&server)).output().unwrap();
    assert!(
        remote.status.success(),
        "{}",
        String::from_utf8_lossy(&remote.stderr)
    );

    let by_id = |results: Vec<TrialResult>| -> BTreeMap<TrialId, TrialResult> {
        results
            .into_iter()
            .map(|r| (r.trial_id.clone(), r))
            .collect()
    };
    let embedded = by_id(stored_results(&embedded_out, "same"));
    let remote = by_id(stored_results(&nats_out, "same"));
    assert_eq!(embedded.len(), 3);
    assert_eq!(
        embedded.keys().collect::<Vec<_>>(),
        remote.keys().collect::<Vec<_>>(),
        "same trials"
    );
    for (id, local) in &embedded {
        let far = &remote[id];
        assert_eq!(far.status, TrialStatus::Completed, "{:?}", far.reason);
        assert!(
            ["a", "b"].contains(&far.worker.as_str()),
            "ran on a NATS worker"
        );
        let (l, f) = (
            local.metrics.as_ref().unwrap().val.model.wape,
            far.metrics.as_ref().unwrap().val.model.wape,
        );
        assert!(
            (l - f).abs() <= 1e-6 * l.abs().max(1.0),
            "trial {id}: {l} vs {f}"
        );
    }
    let leaderboard = run_sweep_cli(&["leaderboard", "same", "--json"], &server);
    assert!(
        leaderboard.status.success(),
        "{}",
        String::from_utf8_lossy(&leaderboard.stderr)
    );
    let text = String::from_utf8_lossy(&leaderboard.stdout);
    for id in embedded.keys() {
        assert_eq!(
            text.matches(id.0.as_str()).count(),
            1,
            "{id} once in the leaderboard"
        );
    }
}

#[test]
fn killed_coordinator_relaunch_completes_without_running_anything_twice() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "phoenix", &[1, 2, 3, 4], 20);
    let out = dir.path().join("runs");
    let _worker = WorkerProcess::start(&server, "steady");

    let mut first = launch(&spec, &out, Some(&server))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while stored_results(&out, "phoenix").is_empty() {
        assert!(Instant::now() < deadline, "no result within 120 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let before = stored_results(&out, "phoenix").len();
    assert!(
        before < 4,
        "the coordinator was killed mid-sweep ({before} of 4 stored)"
    );
    let second = launch(&spec, &out, Some(&server)).output().unwrap();

    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let results = stored_results(&out, "phoenix");
    let keys: BTreeSet<_> = results
        .iter()
        .map(|r| (r.trial_id.clone(), r.attempt))
        .collect();
    assert_eq!(
        keys.len(),
        results.len(),
        "no (trial, attempt) stored twice"
    );
    assert_eq!(keys.len(), 4);
    assert!(results
        .iter()
        .all(|r| r.status == TrialStatus::Completed && r.attempt == 1));
    let status = status_json(&server, "phoenix");
    assert_eq!(status["attempts"], 4, "each trial ran once on the workers");
}

#[test]
fn worker_stops_after_k_failures_in_a_row_and_says_why() {
    let server = NatsServer::start();
    let trials: Vec<_> = (0..2)
        .map(|n| trial("broken", n, "NO SUCH BRAND", 1))
        .collect();
    let mut transport = transport(&server, "broken", trials.len());
    transport.submit(dispatches(&transport, &trials)).unwrap();
    let cache = tempfile::tempdir().unwrap();

    let output = Command::new(sweep_bin())
        .args(["worker", "--nats", &server.url(), "--name", "fragile"])
        .args(["--max-consecutive-failures", "2", "--cache-dir"])
        .arg(cache.path())
        .env("SWEEP_NATS_ACK_WAIT_MS", ACK_WAIT_MS)
        .output()
        .unwrap();
    transport.shutdown().unwrap();

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("stopped taking work: 2 trials failed in a row"),
        "{stderr}"
    );
    assert!(
        stderr.contains("NO SUCH BRAND"),
        "the last reason is shown: {stderr}"
    );
}

#[test]
fn trial_whose_worker_dies_every_time_ends_error_after_max_deliver() {
    let server = NatsServer::start();
    let trials = vec![trial("doomed", 0, "OREO", 1)];
    let mut transport = transport(&server, "doomed", trials.len());
    let runtime = coordinator::nats::runtime().unwrap();
    // The workers' consumer, as a deployment with a short ack wait and max deliver 2 has it.
    let consumer = runtime.block_on(async {
        let client = async_nats::connect(server.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let stream = js
            .get_stream(shared::protocol::TRIALS_STREAM)
            .await
            .unwrap();
        stream
            .get_or_create_consumer(
                shared::protocol::TRIALS_CONSUMER,
                async_nats::jetstream::consumer::pull::Config {
                    durable_name: Some(shared::protocol::TRIALS_CONSUMER.to_string()),
                    ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(1),
                    max_deliver: 2,
                    ..Default::default()
                },
            )
            .await
            .unwrap()
    });

    transport.submit(dispatches(&transport, &trials)).unwrap();
    // A worker takes the trial and dies without a word, twice: no ack, no result.
    for expected in 1..=2 {
        let delivered = runtime.block_on(async {
            use futures::StreamExt;
            let mut batch = consumer
                .fetch()
                .max_messages(1)
                .expires(Duration::from_secs(30))
                .messages()
                .await
                .unwrap();
            let message = batch.next().await.expect("the trial is delivered").unwrap();
            message.info().unwrap().delivered
        });
        assert_eq!(delivered, expected);
    }
    // Workers keep pulling; JetStream gives up on the trial instead of a third delivery.
    let third = runtime.block_on(async {
        use futures::StreamExt;
        let mut batch = consumer
            .fetch()
            .max_messages(1)
            .expires(Duration::from_secs(4))
            .messages()
            .await
            .unwrap();
        batch.next().await.transpose().unwrap().is_some()
    });
    assert!(!third, "no third delivery");
    let mut finished = None;
    collect(&mut transport, Duration::from_secs(60), |event, _| {
        if let TransportEvent::Finished(result) = event {
            finished = Some(result.clone());
        }
        finished.is_some()
    });
    transport.shutdown().unwrap();

    let result = finished.unwrap();
    assert_eq!(result.trial_id, trials[0].trial_id);
    assert_eq!(result.status, TrialStatus::Error);
    assert_eq!(result.attempt, 1);
    let reason = result.reason.unwrap_or_default();
    assert!(
        reason.contains("delivered 2 times without a result"),
        "{reason}"
    );
    let status = status_json(&server, "doomed");
    assert_eq!(status["statuses"]["error"], 1);
    assert_eq!(status["queued"], 0, "the given-up message left the queue");
}

#[test]
fn worker_started_before_any_launch_waits_for_the_streams_then_serves() {
    let server = NatsServer::start();
    let cache = tempfile::tempdir().unwrap();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut early = Command::new(sweep_bin())
        .args(["worker", "--nats", &server.url(), "--name", "early"])
        .arg("--cache-dir")
        .arg(cache.path())
        .env("SWEEP_NATS_ACK_WAIT_MS", ACK_WAIT_MS)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(log.path())
        .unwrap()
        .contains("waiting for sweep streams; has a sweep been launched?")
    {
        assert!(
            early.try_wait().unwrap().is_none(),
            "the worker exited instead of waiting: {}",
            std::fs::read_to_string(log.path()).unwrap()
        );
        assert!(Instant::now() < deadline, "no waiting message within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Past the old 5 s JetStream timeout, it is still waiting.
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        early.try_wait().unwrap().is_none(),
        "the worker kept waiting"
    );

    let trials = vec![trial("late", 0, "OREO", 1)];
    let mut transport = transport(&server, "late", trials.len());
    transport.submit(dispatches(&transport, &trials)).unwrap();
    let mut finished = None;
    collect(&mut transport, Duration::from_secs(180), |event, _| {
        if let TransportEvent::Finished(result) = event {
            finished = Some(result.clone());
        }
        finished.is_some()
    });
    transport.shutdown().unwrap();
    let _ = early.kill();
    let _ = early.wait();

    let result = finished.unwrap();
    assert_eq!(result.status, TrialStatus::Completed, "{:?}", result.reason);
    assert_eq!(result.worker, "early");
}

#[test]
fn retry_failed_over_nats_reruns_only_the_failed_trials() {
    let server = NatsServer::start();
    let trials = vec![
        trial("again", 0, "OREO", 1),
        trial("again", 1, "NO SUCH BRAND", 1),
    ];
    let poison_id = trials[1].trial_id.clone();
    let mut transport = transport(&server, "again", trials.len());
    let _worker = WorkerProcess::start(&server, "retrier");

    transport.submit(dispatches(&transport, &trials)).unwrap();
    let mut results = Results::default();
    collect(&mut transport, Duration::from_secs(240), |event, _| {
        if let TransportEvent::Finished(result) = event {
            results.add(result);
        }
        results.trials().len() == 2
    });
    let output = run_sweep_cli(&["retry-failed", "again", "--json"], &server);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let retried: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(retried["queued"], serde_json::json!([poison_id.0.clone()]));
    collect(&mut transport, Duration::from_secs(240), |event, _| {
        if let TransportEvent::Finished(result) = event {
            results.add(result);
        }
        results.by_key.len() == 3
    });
    transport.shutdown().unwrap();

    let retry = &results.by_key[&(poison_id.clone(), 2)];
    assert_eq!(retry.status, TrialStatus::Error);
    assert_eq!(results.repeats, 0);
    let status = status_json(&server, "again");
    assert_eq!(
        status["attempts"], 3,
        "the completed trial did not run again"
    );
    assert_eq!(status["statuses"]["completed"], 1);
    assert_eq!(status["statuses"]["error"], 1);
}

#[test]
fn status_without_nats_reads_the_run_folder_and_cancel_needs_nats() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "folder", &[1], 1);
    let out = dir.path().join("runs");
    let launched = launch(&spec, &out, None).output().unwrap();
    assert!(
        launched.status.success(),
        "{}",
        String::from_utf8_lossy(&launched.stderr)
    );
    let local = |command: &str| {
        let mut cmd = Command::new(sweep_bin());
        cmd.args([command, "folder", "--json", "--out"])
            .arg(&out)
            .env_remove("SWEEP_NATS_URL");
        cmd.output().unwrap()
    };

    let status = local("status");
    assert_eq!(
        status.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["completed"], 1);
    assert_eq!(status["planned"], 1);
    assert_eq!(status["pending"], 0);
    let cancel = local("cancel");
    let stderr = String::from_utf8_lossy(&cancel.stderr);
    assert_eq!(cancel.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("needs --nats"), "{stderr}");
    let retry = local("retry-failed");
    let stderr = String::from_utf8_lossy(&retry.stderr);
    assert_eq!(retry.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("launch its spec again"), "{stderr}");
}

// A relaunch of a sweep on other data used to replay the old results as results on the new data.
#[test]
fn relaunch_on_other_data_is_refused_naming_both_digests() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "drift", &[1], 1);
    let first = launch(&spec, &dir.path().join("a"), Some(&server))
        .arg("--detach")
        .output()
        .unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let halved = dir.path().join("half.csv");
    let text = std::fs::read_to_string(real_dry_csv()).unwrap();
    let half: Vec<&str> = text.lines().take(4000).collect();
    std::fs::write(&halved, half.join("\n") + "\n").unwrap();
    let spec_text = std::fs::read_to_string(&spec).unwrap();
    let other = spec_text.replace(
        &real_dry_csv().display().to_string(),
        &halved.display().to_string(),
    );
    std::fs::write(&spec, other).unwrap();

    let second = launch(&spec, &dir.path().join("b"), Some(&server))
        .arg("--detach")
        .output()
        .unwrap();

    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("was launched on other data"), "{stderr}");
    assert!(stderr.contains("give the spec another name"), "{stderr}");
}
