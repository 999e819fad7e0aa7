//! The worker loop of `sweep worker` (and of `sweep launch --nats --local-workers N`).
//!
//! A worker pulls trials from the durable `sweep-workers` consumer, up to `slots` at a time. For
//! each trial it announces the start on the progress subject, fetches the dataset by digest from
//! the object store (cached on disk and in memory, verified by SHA-256), runs it on a blocking
//! thread while a heartbeat (`+WPI`) keeps the message leased, stores the weights, publishes the
//! result on the results stream (`Nats-Msg-Id` = trial id and attempt) and only then acks the
//! trial. A worker that dies mid-trial never acks, so JetStream redelivers the trial to another
//! worker after the ack wait, under the same attempt number.
//!
//! Every outcome is acked, `error` included: retries are the coordinator's decision and arrive as
//! a new message with the next attempt number. A worker whose trials fail `K` times in a row
//! stops taking work (something is wrong with this machine, not with the trials). On shutdown it
//! stops pulling, asks running trials to stop, and hands each unfinished one back (`-NAK`) so
//! another worker picks it up at once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use shared::config::DataConfig;
use shared::data::Shipments;
use shared::protocol::{
    self, Message, ProgressEvent, ProgressMessage, ResultMessage, SweepManifest, TrialMessage,
};
use shared::trial::{EpochReport, TrialResult, TrialSpec, TrialStatus};
use tokio::io::AsyncReadExt;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn, Instrument};

use super::session::Session;
use super::NatsError;

/// What the loop hands to the code that trains one trial.
pub struct RunInput<'a> {
    /// The trial.
    pub trial: &'a TrialSpec,
    /// Its attempt number.
    pub attempt: u32,
    /// The dataset, parsed.
    pub shipments: &'a Shipments,
    /// How the dataset was read (recorded with the model).
    pub data: &'a DataConfig,
    /// An empty folder for the trial's outputs; files left in it are stored as its weights.
    pub out_dir: &'a Path,
    /// Set when the worker shuts down: training should stop soon.
    pub cancel: &'a Arc<AtomicBool>,
}

/// Trains one trial and reports each epoch; blocking, CPU-bound. `sweep worker` plugs in
/// `worker::execute`.
pub type Runner =
    Arc<dyn Fn(RunInput<'_>, &mut dyn FnMut(&EpochReport)) -> TrialResult + Send + Sync>;

/// The real runner: trains with `worker::execute_with_data` on `device`.
pub fn training_runner(device: ::worker::DeviceSpec) -> Runner {
    Arc::new(
        move |input: RunInput<'_>, on_epoch: &mut dyn FnMut(&EpochReport)| {
            let ctx = ::worker::RunContext {
                device,
                worker: String::new(),
                attempt: input.attempt,
                cancel: input.cancel.clone(),
                out_dir: Some(input.out_dir.to_path_buf()),
            };
            ::worker::execute_with_data(input.trial, input.shipments, input.data, &ctx, on_epoch)
        },
    )
}

/// Settings of one worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Name in results and logs.
    pub name: String,
    /// Device, e.g. `cpu` or `cuda:0`.
    pub device: String,
    /// Trials run at the same time. At least 1.
    pub slots: usize,
    /// Trials that train at once in this process (this worker's slots, or the slots of every
    /// worker it runs beside); each trains on that share of the cores.
    pub core_shares: usize,
    /// Consecutive failed trials after which the worker stops. 0 never stops.
    pub max_consecutive_failures: usize,
    /// Folder of the dataset cache and the trials' scratch folders.
    pub cache_dir: PathBuf,
}

/// Why a worker loop ended.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerExit {
    /// Shutdown was requested (SIGTERM, Ctrl-C, or the launch that started it finished).
    Shutdown,
    /// `count` trials in a row failed; the last one's reason.
    TooManyFailures {
        /// Consecutive failures.
        count: usize,
        /// Reason of the last failure.
        last_reason: String,
    },
}

/// What the running trials share.
struct Shared {
    session: Session,
    config: WorkerConfig,
    runner: Runner,
    ack_wait: Duration,
    shutting_down: AtomicBool,
    consecutive_failures: AtomicUsize,
    last_failure: Mutex<String>,
    datasets: tokio::sync::Mutex<HashMap<String, Arc<Shipments>>>,
    manifests: Mutex<HashMap<String, (Instant, bool)>>,
    running: Mutex<Vec<Arc<AtomicBool>>>,
}

/// Runs the worker loop until `shutdown` turns true or too many trials fail in a row.
///
/// # Cancel safety
///
/// Not cancel safe: dropping the future abandons running trials without handing them back;
/// they are redelivered after the ack wait. Signal shutdown through `shutdown` instead.
pub async fn run(
    session: Session,
    config: WorkerConfig,
    runner: Runner,
    mut shutdown: watch::Receiver<bool>,
) -> Result<WorkerExit, NatsError> {
    let mut consumer = session.trials_consumer().await?;
    let ack_wait = consumer
        .info()
        .await
        .map(|info| info.config.ack_wait)
        .unwrap_or(super::session::DEFAULT_ACK_WAIT);
    let slots = config.slots.max(1);
    info!(worker = %config.name, device = %config.device, slots, ?ack_wait, "worker started");

    let shared = Arc::new(Shared {
        session,
        config,
        runner,
        ack_wait,
        shutting_down: AtomicBool::new(false),
        consecutive_failures: AtomicUsize::new(0),
        last_failure: Mutex::new(String::new()),
        datasets: tokio::sync::Mutex::new(HashMap::new()),
        manifests: Mutex::new(HashMap::new()),
        running: Mutex::new(Vec::new()),
    });
    let semaphore = Arc::new(Semaphore::new(slots));
    let mut tasks = JoinSet::new();

    let exit = loop {
        if let Some(exit) = failure_exit(&shared) {
            break exit;
        }
        if *shutdown.borrow() {
            break WorkerExit::Shutdown;
        }
        let first = tokio::select! {
            permit = semaphore.clone().acquire_owned() => permit.expect("semaphore is never closed"),
            _ = shutdown.changed() => continue,
        };
        let mut permits = vec![first];
        while let Ok(permit) = semaphore.clone().try_acquire_owned() {
            permits.push(permit);
        }
        while tasks.try_join_next().is_some() {}

        let batch = consumer
            .batch()
            .max_messages(permits.len())
            .expires(Duration::from_millis(1000))
            .messages()
            .await;
        let mut batch = match batch {
            Ok(batch) => batch,
            Err(err) => {
                // The server is restarting or unreachable: the client reconnects by itself.
                warn!(error = %err, "pulling trials failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                next = batch.next() => next,
                _ = shutdown.changed() => None,
            };
            let Some(message) = next else { break };
            let message = match message {
                Ok(message) => message,
                Err(err) => {
                    debug!(error = %err, "pull batch ended with an error");
                    break;
                }
            };
            let permit = permits
                .pop()
                .expect("a batch holds at most one message per permit");
            let shared = shared.clone();
            tasks.spawn(async move {
                handle(shared, message).await;
                drop(permit);
            });
        }
        // A batch abandoned on shutdown may still receive messages; those are redelivered
        // after the ack wait, which is the same as a lost worker.
    };

    // Stop running trials and wait for them to publish or hand back.
    shared.shutting_down.store(true, Ordering::SeqCst);
    for cancel in shared.running.lock().expect("running list lock").iter() {
        cancel.store(true, Ordering::SeqCst);
    }
    while tasks.join_next().await.is_some() {}
    shared.session.client.flush().await.ok();
    info!(worker = %shared.config.name, ?exit, "worker stopped");
    Ok(exit)
}

fn failure_exit(shared: &Shared) -> Option<WorkerExit> {
    let limit = shared.config.max_consecutive_failures;
    let count = shared.consecutive_failures.load(Ordering::SeqCst);
    (limit > 0 && count >= limit).then(|| WorkerExit::TooManyFailures {
        count,
        last_reason: shared.last_failure.lock().expect("failure lock").clone(),
    })
}

async fn handle(shared: Arc<Shared>, message: jetstream::Message) {
    let delivered = message.info().map(|info| info.delivered).unwrap_or(1);
    let trial_message = match TrialMessage::decode(&message.payload) {
        Ok(trial_message) => trial_message,
        Err(err) => {
            // Not a trial this build can run; redelivering it would fail the same way.
            error!(error = %err, subject = %message.subject, "dropping a malformed trial message");
            message.ack_with(AckKind::Term).await.ok();
            return;
        }
    };
    let span = tracing::info_span!(
        "trial",
        trial_id = %trial_message.trial.trial_id,
        attempt = trial_message.attempt,
        worker_id = %shared.config.name,
    );
    run_trial(shared, message, trial_message, delivered)
        .instrument(span)
        .await
}

async fn run_trial(
    shared: Arc<Shared>,
    message: jetstream::Message,
    trial_message: TrialMessage,
    delivered: i64,
) {
    let message = Arc::new(message);
    let trial = &trial_message.trial;
    let started_at = Utc::now();
    let clock = Instant::now();
    if delivered > 1 {
        warn!(
            delivered,
            "trial redelivered (a worker was lost or handed it back)"
        );
    }

    if is_cancelled(&shared, &trial.sweep).await {
        let result = failed_result(
            &shared.config,
            &trial_message,
            TrialStatus::Cancelled,
            "the sweep was cancelled".into(),
            0.0,
        );
        finish(
            &shared,
            &message,
            &trial_message,
            result,
            vec![],
            started_at,
            0.0,
        )
        .await;
        return;
    }
    publish_progress(&shared, &trial_message, ProgressEvent::Started).await;

    // Keep the lease while the trial runs: JetStream redelivers it after the ack wait otherwise.
    let heartbeat = {
        let message = message.clone();
        let every = (shared.ack_wait / 3).max(Duration::from_millis(100));
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                if let Err(err) = message.ack_with(AckKind::Progress).await {
                    warn!(error = %err, "heartbeat failed");
                }
            }
        })
    };

    let cancel = Arc::new(AtomicBool::new(shared.shutting_down.load(Ordering::SeqCst)));
    shared
        .running
        .lock()
        .expect("running list lock")
        .push(cancel.clone());
    let (result, weights, data_s) = execute(&shared, &trial_message, &cancel).await;
    shared
        .running
        .lock()
        .expect("running list lock")
        .retain(|c| !Arc::ptr_eq(c, &cancel));
    heartbeat.abort();

    if shared.shutting_down.load(Ordering::SeqCst) && result.status != TrialStatus::Completed {
        // Interrupted by shutdown: hand the trial back so another worker runs it now.
        info!("handing the trial back on shutdown");
        message.ack_with(AckKind::Nak(None)).await.ok();
        return;
    }
    debug!(elapsed_s = clock.elapsed().as_secs_f64(), "trial ran");
    finish(
        &shared,
        &message,
        &trial_message,
        result,
        weights,
        started_at,
        data_s,
    )
    .await;
}

/// Fetches the data and runs the trial; never fails (failures become `error` results).
async fn execute(
    shared: &Arc<Shared>,
    trial_message: &TrialMessage,
    cancel: &Arc<AtomicBool>,
) -> (TrialResult, Vec<String>, f64) {
    let clock = Instant::now();

    if let Some(ms) = trial_message.noop_ms {
        // Benchmark mode: measures the orchestration alone.
        tokio::time::sleep(Duration::from_millis(ms)).await;
        let mut result = failed_result(
            &shared.config,
            trial_message,
            TrialStatus::Completed,
            String::new(),
            clock.elapsed().as_secs_f64(),
        );
        result.reason = None;
        return (result, vec![], 0.0);
    }

    let shipments = match dataset(shared, trial_message).await {
        Ok(shipments) => shipments,
        Err(err) => {
            let reason = format!("dataset {}: {err}", trial_message.trial.dataset_digest);
            error!(reason = %reason, "trial cannot get its data");
            let result = failed_result(
                &shared.config,
                trial_message,
                TrialStatus::Error,
                reason,
                clock.elapsed().as_secs_f64(),
            );
            return (result, vec![], clock.elapsed().as_secs_f64());
        }
    };
    let data_s = clock.elapsed().as_secs_f64();

    let out_dir = shared.config.cache_dir.join("runs").join(format!(
        "{}-a{}-{}",
        trial_message.trial.trial_id,
        trial_message.attempt,
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&out_dir);
    if let Err(err) = std::fs::create_dir_all(&out_dir) {
        let reason = format!("cannot create scratch folder {}: {err}", out_dir.display());
        let result = failed_result(
            &shared.config,
            trial_message,
            TrialStatus::Error,
            reason,
            0.0,
        );
        return (result, vec![], data_s);
    }

    let (progress_tx, mut progress_rx) = tokio::sync::mpsc::unbounded_channel::<EpochReport>();
    let forwarder = {
        let shared = shared.clone();
        let trial_message = trial_message.clone();
        tokio::spawn(async move {
            while let Some(report) = progress_rx.recv().await {
                publish_progress(&shared, &trial_message, ProgressEvent::Epoch(report)).await;
            }
        })
    };
    let blocking = {
        let runner = shared.runner.clone();
        let trial_message = trial_message.clone();
        let out_dir = out_dir.clone();
        let cancel = cancel.clone();
        let shares = shared.config.core_shares;
        tokio::task::spawn_blocking(move || {
            let input = RunInput {
                trial: &trial_message.trial,
                attempt: trial_message.attempt,
                shipments: &shipments,
                data: &trial_message.data,
                out_dir: &out_dir,
                cancel: &cancel,
            };
            ::worker::trainer::on_core_share(shares, || {
                runner(input, &mut |report: &EpochReport| {
                    // The receiver lives until this closure is dropped; a send cannot fail
                    // earlier.
                    let _ = progress_tx.send(*report);
                })
            })
        })
    };
    let mut result = match blocking.await {
        Ok(result) => result,
        Err(err) => {
            let reason = match err.try_into_panic() {
                Ok(payload) => format!("trial panicked: {}", ::worker::panic_message(&*payload)),
                Err(err) => format!("trial task failed: {err}"),
            };
            error!(reason = %reason, "trial crashed");
            failed_result(
                &shared.config,
                trial_message,
                TrialStatus::Error,
                reason,
                clock.elapsed().as_secs_f64(),
            )
        }
    };
    forwarder.await.ok();
    result.attempt = trial_message.attempt;
    result.worker = shared.config.name.clone();
    result.device = shared.config.device.clone();

    let weights = if result.status == TrialStatus::Completed {
        store_weights(shared, trial_message, &out_dir).await
    } else {
        vec![]
    };
    let _ = std::fs::remove_dir_all(&out_dir);
    (result, weights, data_s)
}

/// Publishes the result (retrying through a server restart), then acks the trial.
async fn finish(
    shared: &Arc<Shared>,
    message: &jetstream::Message,
    trial_message: &TrialMessage,
    result: TrialResult,
    weights: Vec<String>,
    started_at: chrono::DateTime<Utc>,
    data_s: f64,
) {
    let status = result.status;
    let reason = result.reason.clone().unwrap_or_default();
    let payload = ResultMessage {
        version: protocol::PROTOCOL_VERSION,
        result,
        weights,
        started_at,
        finished_at: Utc::now(),
        data_s,
    }
    .encode();
    let subject = protocol::results_subject(&trial_message.trial.sweep);
    let msg_id = protocol::result_msg_id(
        &trial_message.trial.sweep,
        &trial_message.trial.trial_id,
        trial_message.attempt,
    );

    let mut delay = Duration::from_millis(100);
    let deadline = Instant::now() + shared.ack_wait.max(Duration::from_secs(30));
    loop {
        match publish_once(&shared.session.js, &subject, &msg_id, payload.clone()).await {
            Ok(()) => break,
            Err(err) if Instant::now() < deadline => {
                warn!(error = %err, "publishing the result failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(err) => {
                // Leave the trial unacked: it is redelivered and run again.
                error!(error = %err, "cannot publish the result; the trial will be redelivered");
                return;
            }
        }
    }
    // A confirmed ack: once it returns, the trial has left the queue for good.
    if let Err(err) = message.double_ack().await {
        // The result is stored; a redelivery produces the same (trial, attempt), which the
        // coordinator drops.
        warn!(error = %err, "ack failed after the result was stored");
    }

    if status == TrialStatus::Error {
        shared.consecutive_failures.fetch_add(1, Ordering::SeqCst);
        *shared.last_failure.lock().expect("failure lock") = reason.clone();
        warn!(reason = %reason, "trial failed");
    } else if status != TrialStatus::Cancelled {
        shared.consecutive_failures.store(0, Ordering::SeqCst);
        debug!(status = status.as_str(), "trial finished");
    }
}

async fn publish_once(
    js: &jetstream::Context,
    subject: &str,
    msg_id: &str,
    payload: Vec<u8>,
) -> Result<(), String> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", msg_id);
    let ack = js
        .publish_with_headers(subject.to_string(), headers, Bytes::from(payload))
        .await
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(5), ack)
        .await
        .map_err(|_| "no acknowledgement from JetStream within 5 s".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(())
}

async fn publish_progress(shared: &Shared, trial_message: &TrialMessage, event: ProgressEvent) {
    let payload = ProgressMessage {
        version: protocol::PROTOCOL_VERSION,
        sweep: trial_message.trial.sweep.clone(),
        trial_id: trial_message.trial.trial_id.clone(),
        attempt: trial_message.attempt,
        worker: shared.config.name.clone(),
        device: shared.config.device.clone(),
        event,
    }
    .encode();
    let subject = protocol::progress_subject(&trial_message.trial.sweep);
    // Progress is best effort: nobody may be listening, and nothing depends on it.
    let _ = shared.session.client.publish(subject, payload.into()).await;
}

/// True when the sweep's manifest says it was cancelled (cached for two seconds).
async fn is_cancelled(shared: &Shared, sweep: &str) -> bool {
    if let Some((at, cancelled)) = shared.manifests.lock().expect("manifest lock").get(sweep) {
        if at.elapsed() < Duration::from_secs(2) {
            return *cancelled;
        }
    }
    let cancelled = match shared
        .session
        .state
        .get(protocol::manifest_key(sweep))
        .await
    {
        Ok(Some(bytes)) => SweepManifest::decode(&bytes)
            .map(|m| m.cancelled)
            .unwrap_or(false),
        _ => false,
    };
    shared
        .manifests
        .lock()
        .expect("manifest lock")
        .insert(sweep.to_string(), (Instant::now(), cancelled));
    cancelled
}

/// The dataset of a trial: from memory, else the disk cache, else the object store.
async fn dataset(shared: &Shared, trial_message: &TrialMessage) -> Result<Arc<Shipments>, String> {
    let digest = &trial_message.trial.dataset_digest;
    if digest.len() != 64 || !digest.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("not a SHA-256 digest".into());
    }
    let key = format!(
        "{digest}:{}",
        serde_json::to_string(&trial_message.data).unwrap_or_default()
    );
    let mut datasets = shared.datasets.lock().await;
    if let Some(shipments) = datasets.get(&key) {
        return Ok(shipments.clone());
    }

    let bytes = dataset_bytes(shared, digest).await?;
    let name = trial_message.dataset_name.clone();
    let data: DataConfig = trial_message.data.clone();
    let shipments = tokio::task::spawn_blocking(move || {
        shared::data::load_bytes(&bytes, &name, &data).map_err(|err| err.to_string())
    })
    .await
    .map_err(|err| format!("loading panicked: {err}"))??;
    let shipments = Arc::new(shipments);
    datasets.insert(key, shipments.clone());
    Ok(shipments)
}

async fn dataset_bytes(shared: &Shared, digest: &str) -> Result<Vec<u8>, String> {
    let dir = shared.config.cache_dir.join("datasets");
    let path = dir.join(digest);
    if let Ok(bytes) = tokio::fs::read(&path).await {
        if sha256_hex(&bytes) == digest {
            return Ok(bytes);
        }
        warn!(path = %path.display(), "cached dataset does not match its digest; fetching again");
    }

    let mut object = shared
        .session
        .datasets
        .get(digest)
        .await
        .map_err(|err| format!("not in the object store ({err}); launch the sweep again"))?;
    let mut bytes = Vec::new();
    object
        .read_to_end(&mut bytes)
        .await
        .map_err(|err| format!("reading from the object store failed: {err}"))?;
    let found = sha256_hex(&bytes);
    if found != digest {
        return Err(NatsError::DigestMismatch {
            digest: digest.to_string(),
            found,
        }
        .to_string());
    }

    // Write-then-rename, so a concurrent reader never sees half a file.
    if tokio::fs::create_dir_all(&dir).await.is_ok() {
        let tmp = dir.join(format!("{digest}.{}.tmp", std::process::id()));
        if tokio::fs::write(&tmp, &bytes).await.is_ok() {
            let _ = tokio::fs::rename(&tmp, &path).await;
        }
    }
    Ok(bytes)
}

/// Uploads every file the trial left in its folder; returns the object names.
async fn store_weights(shared: &Shared, trial_message: &TrialMessage, dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return names;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        let file = entry.file_name().to_string_lossy().to_string();
        let name = protocol::weights_object(
            &trial_message.trial.sweep,
            &trial_message.trial.trial_id,
            &file,
        );
        let Ok(mut reader) = tokio::fs::File::open(&path).await else {
            continue;
        };
        match shared.session.weights.put(name.as_str(), &mut reader).await {
            Ok(_) => names.push(name),
            Err(err) => warn!(file = %file, error = %err, "storing weights failed"),
        }
    }
    names.sort();
    names
}

/// A result for an attempt that did not train.
fn failed_result(
    config: &WorkerConfig,
    trial_message: &TrialMessage,
    status: TrialStatus,
    reason: String,
    duration_s: f64,
) -> TrialResult {
    let trial = &trial_message.trial;
    TrialResult {
        trial_id: trial.trial_id.clone(),
        sweep: trial.sweep.clone(),
        attempt: trial_message.attempt,
        status,
        reason: Some(reason),
        series: trial.series.clone(),
        params: trial.params.clone(),
        metrics: None,
        epochs_run: 0,
        duration_s,
        worker: config.name.clone(),
        device: config.device.clone(),
    }
}

/// Lower-case hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
