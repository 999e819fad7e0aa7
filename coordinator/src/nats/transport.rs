//! The NATS JetStream [`Transport`]: the sweep engine's trials go to the `SWEEP_TRIALS` work queue
//! and its results come back from `SWEEP_RESULTS`.
//!
//! On [`NatsTransport::connect`] the dataset is uploaded under its digest (once), the manifest
//! is recorded, and the sweep's results are replayed from the beginning through a durable
//! consumer. The replay is what makes a relaunch lose nothing: results that arrived while no
//! coordinator was running reach the engine, which drops those it already stored (it
//! deduplicates by trial id and attempt). The consumer is durable so that a server restart in the
//! middle of a sweep resumes where it was.
//!
//! [`Transport::submit`] queues each attempt at most once: a trial record in the KV bucket tells
//! whether an attempt of this sweep generation was already queued (then nothing is published),
//! and the `Nats-Msg-Id` drops a repeated publication that raced past that check.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::kv;
use async_nats::jetstream::stream::{self, RetentionPolicy, StorageType};
use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use shared::config::DataConfig;
use shared::protocol::{
    self, MaxDeliveriesAdvisory, Message, ProgressEvent, ProgressMessage, ResultMessage,
    SweepManifest, TrialMessage, TrialRecord,
};
use shared::trial::{TrialResult, TrialStatus};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::session::Session;
use super::worker::{self, Runner, WorkerConfig, WorkerExit};
use super::NatsError;
use crate::cli::NatsArgs;
use crate::engine::transport::{Dispatch, Transport, TransportError, TransportEvent};

/// Publications in flight at once while submitting.
const SUBMIT_CONCURRENCY: usize = 256;
/// Events buffered for the engine. Results beyond it wait in JetStream (unacked), so memory
/// stays flat while the engine is busy, for instance queuing 100,000 trials.
const EVENT_BUFFER: usize = 1024;

/// What the coordinator records for a sweep before queuing its trials.
#[derive(Debug, Clone)]
pub struct SweepUpload {
    /// Sweep name (a valid subject token).
    pub sweep: String,
    /// The dataset file's bytes.
    pub dataset: Bytes,
    /// Its name (the extension picks CSV or Parquet on the worker).
    pub dataset_name: String,
    /// How to read it; its `path` is dropped before anything is sent.
    pub data: DataConfig,
    /// Trials in the plan.
    pub trials: usize,
    /// The spec's objective.
    pub objective: shared::spec::Objective,
}

type Event = Result<TransportEvent, TransportError>;

/// The sweep engine's transport over NATS JetStream. See the module docs.
pub struct NatsTransport {
    runtime: Runtime,
    session: Session,
    sweep: String,
    digest: String,
    dataset_name: String,
    data: DataConfig,
    generation: u32,
    noop_ms: Option<u64>,
    events: mpsc::Receiver<Event>,
    tasks: Vec<JoinHandle<()>>,
    workers_stop: watch::Sender<bool>,
    workers: Vec<JoinHandle<Result<WorkerExit, NatsError>>>,
}

impl NatsTransport {
    /// Connects, uploads the dataset, records the manifest and starts following results.
    pub fn connect(args: &NatsArgs, upload: SweepUpload) -> Result<Self, NatsError> {
        protocol::validate_sweep_name(&upload.sweep)?;
        let runtime = super::runtime().map_err(|e| NatsError::jetstream("starting tokio", e))?;
        let (session, digest, generation) = runtime.block_on(async {
            let client = super::connect(args, "sweep-coordinator").await?;
            let session = Session::open(client).await?;
            let digest = upload_dataset(&session, &upload.dataset).await?;
            let generation = record_manifest(&session, &upload, &digest).await?;
            Ok::<_, NatsError>((session, digest, generation))
        })?;

        let (tx, events) = mpsc::channel(EVENT_BUFFER);
        let tasks = runtime.block_on(async {
            let follower = follow_results(&session, &upload.sweep, tx.clone()).await?;
            let progress = follow_progress(&session, &upload.sweep, tx.clone()).await?;
            let cancel = watch_cancel(&session, &upload.sweep, tx).await?;
            let given_up = follow_max_deliveries(&session).await?;
            Ok::<_, NatsError>(vec![follower, progress, cancel, given_up])
        })?;
        let (workers_stop, _) = watch::channel(false);
        info!(sweep = %upload.sweep, dataset = %digest, generation, "sweep recorded on NATS");

        let mut data = upload.data;
        data.path = None;
        Ok(NatsTransport {
            runtime,
            session,
            sweep: upload.sweep,
            digest,
            dataset_name: upload.dataset_name,
            data,
            generation,
            noop_ms: None,
            events,
            tasks,
            workers_stop,
            workers: Vec::new(),
        })
    }

    /// The dataset's SHA-256 (hex), as trials must name it.
    pub fn dataset_digest(&self) -> &str {
        &self.digest
    }

    /// Benchmark mode: workers sleep `ms` milliseconds instead of training each trial.
    pub fn set_noop_ms(&mut self, ms: Option<u64>) {
        self.noop_ms = ms;
    }

    /// Runs `count` workers inside this process (`--local-workers`); they stop at shutdown.
    pub fn start_local_workers(&mut self, count: usize, device: &str, runner: Runner) {
        for index in 0..count {
            let config = WorkerConfig {
                name: format!("{}-local-{}", hostname(), index + 1),
                device: device.to_string(),
                slots: 1,
                core_shares: count,
                max_consecutive_failures: 0,
                cache_dir: default_cache_dir(),
            };
            let session = self.session.clone();
            let stop = self.workers_stop.subscribe();
            let runner = runner.clone();
            self.workers.push(
                self.runtime
                    .spawn(async move { worker::run(session, config, runner, stop).await }),
            );
        }
    }

    async fn submit_one(&self, dispatch: Dispatch) -> Result<(), TransportError> {
        let trial_id = dispatch.trial.trial_id.clone();
        let submit_err = |message: String| TransportError::Submit {
            trial_id: trial_id.clone(),
            message,
        };
        if dispatch.trial.sweep != self.sweep {
            return Err(submit_err(format!(
                "belongs to sweep `{}`, not `{}`",
                dispatch.trial.sweep, self.sweep
            )));
        }
        let key = protocol::trial_key(&self.sweep, &trial_id);
        let state = &self.session.state;

        // Already queued (or run) in this generation: its result comes through the replay.
        let existing = state
            .entry(key.clone())
            .await
            .map_err(|e| submit_err(e.to_string()))?;
        let existing = existing.filter(|entry| entry.operation == kv::Operation::Put);
        if let Some(entry) = &existing {
            if let Ok(record) = TrialRecord::decode(&entry.value) {
                if record.generation == self.generation && record.attempt >= dispatch.attempt {
                    debug!(trial_id = %trial_id, attempt = dispatch.attempt, "already queued");
                    return Ok(());
                }
            }
        }

        let message = TrialMessage {
            version: protocol::PROTOCOL_VERSION,
            trial: dispatch.trial,
            data: self.data.clone(),
            dataset_name: self.dataset_name.clone(),
            attempt: dispatch.attempt,
            noop_ms: self.noop_ms,
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            "Nats-Msg-Id",
            protocol::trial_msg_id(&self.sweep, &trial_id, dispatch.attempt, self.generation)
                .as_str(),
        );
        let ack = self
            .session
            .js
            .publish_with_headers(
                protocol::trials_subject(&self.sweep),
                headers,
                message.encode().into(),
            )
            .await
            .map_err(|e| submit_err(e.to_string()))?;
        ack.await.map_err(|e| submit_err(e.to_string()))?;

        let record = TrialRecord {
            version: protocol::PROTOCOL_VERSION,
            trial_id: trial_id.clone(),
            attempt: message.attempt,
            generation: self.generation,
            published_at: Utc::now(),
            message,
        }
        .encode();
        let written = match &existing {
            None => state
                .create(&key, record.into())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Some(entry) => state
                .update(&key, record.into(), entry.revision)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        };
        if let Err(err) = written {
            // Another coordinator queued the trial at the same moment; the message id made
            // sure only one copy is in the queue.
            debug!(trial_id = %trial_id, error = %err, "trial record written concurrently");
        }
        Ok(())
    }
}

impl Transport for NatsTransport {
    fn submit(&mut self, dispatches: Vec<Dispatch>) -> Result<(), TransportError> {
        let this = &*self;
        let count = dispatches.len();
        self.runtime.block_on(async {
            let mut results = futures::stream::iter(dispatches)
                .map(|dispatch| this.submit_one(dispatch))
                .buffer_unordered(SUBMIT_CONCURRENCY);
            while let Some(result) = results.next().await {
                result?;
            }
            Ok::<_, TransportError>(())
        })?;
        debug!(sweep = %self.sweep, trials = count, "trials queued");
        Ok(())
    }

    fn next_event(&mut self, timeout: Duration) -> Result<Option<TransportEvent>, TransportError> {
        let events = &mut self.events;
        let received = self
            .runtime
            .block_on(async { tokio::time::timeout(timeout, events.recv()).await });
        match received {
            Err(_elapsed) => Ok(None),
            Ok(None) => Err(TransportError::Connection {
                message: "the NATS result follower stopped".into(),
            }),
            Ok(Some(event)) => event.map(Some),
        }
    }

    fn shutdown(&mut self) -> Result<(), TransportError> {
        let _ = self.workers_stop.send(true);
        let workers = std::mem::take(&mut self.workers);
        self.runtime.block_on(async {
            for handle in workers {
                match handle.await {
                    Ok(Ok(exit)) => debug!(?exit, "local worker stopped"),
                    Ok(Err(err)) => warn!(error = %err, "local worker failed"),
                    Err(err) => warn!(error = %err, "local worker panicked"),
                }
            }
            for task in &self.tasks {
                task.abort();
            }
            let consumer = protocol::results_consumer(&self.sweep);
            let _ = self.session.results.delete_consumer(&consumer).await;
            self.session.client.flush().await.ok();
        });
        Ok(())
    }
}

/// Stores the dataset under its digest unless it is there already; returns the digest.
async fn upload_dataset(session: &Session, bytes: &Bytes) -> Result<String, NatsError> {
    let digest = worker::sha256_hex(bytes);
    if session.datasets.info(&digest).await.is_ok() {
        return Ok(digest);
    }
    let mut reader: &[u8] = bytes;
    session
        .datasets
        .put(digest.as_str(), &mut reader)
        .await
        .map_err(|e| NatsError::jetstream(format!("uploading dataset {digest}"), e))?;
    info!(dataset = %digest, bytes = bytes.len(), "dataset uploaded");
    Ok(digest)
}

/// Writes the manifest; a cancelled sweep launched again gets a new generation.
async fn record_manifest(
    session: &Session,
    upload: &SweepUpload,
    digest: &str,
) -> Result<u32, NatsError> {
    let key = protocol::manifest_key(&upload.sweep);
    let previous = match session.state.get(key.clone()).await {
        Ok(Some(bytes)) => Some(SweepManifest::decode(&bytes)?),
        Ok(None) => None,
        Err(err) => return Err(NatsError::jetstream("reading the sweep manifest", err)),
    };
    // Trial ids do not include the data, and a launch replays every stored result of its sweep
    // (of every generation), so a relaunch on other data would pass the old results off as
    // results on the new data.
    if let Some(m) = &previous {
        if m.dataset_digest != digest {
            return Err(NatsError::OtherData {
                sweep: upload.sweep.clone(),
                recorded: m.dataset_digest.clone(),
                current: digest.to_string(),
            });
        }
    }
    let (created_at, generation) = match &previous {
        Some(m) if m.cancelled => (m.created_at, m.generation + 1),
        Some(m) => (m.created_at, m.generation),
        None => (Utc::now(), 1),
    };
    let manifest = SweepManifest {
        version: protocol::PROTOCOL_VERSION,
        sweep: upload.sweep.clone(),
        trials: upload.trials,
        dataset_digest: digest.to_string(),
        dataset_name: upload.dataset_name.clone(),
        objective: upload.objective,
        created_at,
        cancelled: false,
        generation,
    };
    session
        .state
        .put(key, manifest.encode().into())
        .await
        .map_err(|e| NatsError::jetstream("writing the sweep manifest", e))?;
    Ok(generation)
}

/// Replays the sweep's results from the start, then follows new ones.
async fn follow_results(
    session: &Session,
    sweep: &str,
    tx: mpsc::Sender<Event>,
) -> Result<JoinHandle<()>, NatsError> {
    let name = protocol::results_consumer(sweep);
    // A fresh consumer replays everything: the engine drops what it already has.
    let _ = session.results.delete_consumer(&name).await;
    let consumer = session
        .results
        .create_consumer(pull::Config {
            durable_name: Some(name.clone()),
            filter_subject: protocol::results_subject(sweep),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 10_000,
            ..Default::default()
        })
        .await
        .map_err(|e| NatsError::jetstream(format!("creating consumer {name}"), e))?;

    Ok(tokio::spawn(async move {
        loop {
            let mut messages = match consumer.messages().await {
                Ok(messages) => messages,
                Err(err) => {
                    warn!(error = %err, "following results failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            while let Some(message) = messages.next().await {
                let message = match message {
                    Ok(message) => message,
                    Err(err) => {
                        // Missed heartbeats during a server restart; the stream recovers.
                        debug!(error = %err, "result stream hiccup");
                        continue;
                    }
                };
                match ResultMessage::decode(&message.payload) {
                    Ok(result) => {
                        let event = Ok(TransportEvent::Finished(result.result));
                        if tx.send(event).await.is_err() {
                            return;
                        }
                    }
                    Err(err) => warn!(error = %err, "ignoring a malformed result"),
                }
                // Without the ack the result is delivered again after 30 s; harmless but slow.
                let _ = message.ack().await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }))
}

/// Opens the advisories stream and its shared consumer, then turns every max-deliveries
/// advisory into an `error` result (see [`give_up_trial`]).
///
/// The stream keeps the advisories while no coordinator runs, and every coordinator shares one
/// durable consumer, so each advisory is handled once by whichever coordinator is up, whatever
/// sweep the trial belongs to.
async fn follow_max_deliveries(session: &Session) -> Result<JoinHandle<()>, NatsError> {
    let stream = session
        .js
        .get_or_create_stream(stream::Config {
            name: protocol::ADVISORIES_STREAM.to_string(),
            subjects: vec![protocol::max_deliveries_subject()],
            retention: RetentionPolicy::WorkQueue,
            storage: StorageType::File,
            num_replicas: super::session::replicas(),
            ..Default::default()
        })
        .await
        .map_err(|e| {
            NatsError::jetstream(format!("opening stream {}", protocol::ADVISORIES_STREAM), e)
        })?;
    let consumer = stream
        .get_or_create_consumer(
            protocol::ADVISORIES_CONSUMER,
            pull::Config {
                durable_name: Some(protocol::ADVISORIES_CONSUMER.to_string()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| {
            NatsError::jetstream(
                format!("opening consumer {}", protocol::ADVISORIES_CONSUMER),
                e,
            )
        })?;
    let session = session.clone();
    Ok(tokio::spawn(async move {
        loop {
            let mut messages = match consumer.messages().await {
                Ok(messages) => messages,
                Err(err) => {
                    warn!(error = %err, "following max-deliveries advisories failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            while let Some(message) = messages.next().await {
                let Ok(message) = message else { continue };
                let handled =
                    match serde_json::from_slice::<MaxDeliveriesAdvisory>(&message.payload) {
                        Ok(advisory) => give_up_trial(&session, &advisory).await,
                        Err(err) => {
                            warn!(error = %err, "ignoring a malformed max-deliveries advisory");
                            Ok(())
                        }
                    };
                match handled {
                    Ok(()) => {
                        let _ = message.ack().await;
                    }
                    // Not acked: redelivered after the ack wait and tried again.
                    Err(err) => warn!(error = %err, "handling a max-deliveries advisory failed"),
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }))
}

/// The `error` result of a trial message JetStream stopped delivering: its reason says how many
/// times it was delivered without a result.
pub fn given_up_result(message: &TrialMessage, deliveries: u64) -> TrialResult {
    let trial = &message.trial;
    TrialResult {
        trial_id: trial.trial_id.clone(),
        sweep: trial.sweep.clone(),
        attempt: message.attempt,
        status: TrialStatus::Error,
        reason: Some(format!(
            "delivered {deliveries} times without a result: the worker running it was lost or \
             crashed each time (SWEEP_NATS_MAX_DELIVER)"
        )),
        series: trial.series.clone(),
        params: trial.params.clone(),
        metrics: None,
        epochs_run: 0,
        duration_s: 0.0,
        worker: String::new(),
        device: String::new(),
    }
}

/// Publishes the `error` result of the trial message an advisory names (with the result's
/// `Nats-Msg-Id`, so a late result of the same attempt is a duplicate) and removes the message
/// from the work queue. A message already gone (handled before) is skipped.
async fn give_up_trial(
    session: &Session,
    advisory: &MaxDeliveriesAdvisory,
) -> Result<(), NatsError> {
    let seq = advisory.stream_seq;
    let stored = match session.trials.get_raw_message(seq).await {
        Ok(stored) => stored,
        Err(err) => {
            debug!(seq, error = %err, "trial message of a max-deliveries advisory is gone");
            return Ok(());
        }
    };
    let trial_message = match TrialMessage::decode(&stored.payload) {
        Ok(message) => message,
        Err(err) => {
            warn!(seq, error = %err, "dropping a malformed trial message JetStream gave up on");
            let _ = session.trials.delete_message(seq).await;
            return Ok(());
        }
    };
    let result = given_up_result(&trial_message, advisory.deliveries);
    let trial = &trial_message.trial;
    warn!(
        sweep = %trial.sweep,
        trial_id = %trial.trial_id,
        attempt = trial_message.attempt,
        deliveries = advisory.deliveries,
        "trial delivered too many times without a result; recording it as an error"
    );
    let now = Utc::now();
    let payload = ResultMessage {
        version: protocol::PROTOCOL_VERSION,
        result,
        weights: vec![],
        started_at: now,
        finished_at: now,
        data_s: 0.0,
    }
    .encode();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        "Nats-Msg-Id",
        protocol::result_msg_id(&trial.sweep, &trial.trial_id, trial_message.attempt).as_str(),
    );
    session
        .js
        .publish_with_headers(
            protocol::results_subject(&trial.sweep),
            headers,
            payload.into(),
        )
        .await
        .map_err(|e| NatsError::jetstream("publishing a given-up trial's result", e))?
        .await
        .map_err(|e| NatsError::jetstream("publishing a given-up trial's result", e))?;
    session
        .trials
        .delete_message(seq)
        .await
        .map_err(|e| NatsError::jetstream("removing a given-up trial message", e))?;
    Ok(())
}

/// Turns progress events into `Started` and `Epoch` events.
async fn follow_progress(
    session: &Session,
    sweep: &str,
    tx: mpsc::Sender<Event>,
) -> Result<JoinHandle<()>, NatsError> {
    let mut subscriber = session
        .client
        .subscribe(protocol::progress_subject(sweep))
        .await
        .map_err(|e| NatsError::jetstream("subscribing to progress", e))?;
    Ok(tokio::spawn(async move {
        while let Some(message) = subscriber.next().await {
            let Ok(progress) = ProgressMessage::decode(&message.payload) else {
                continue;
            };
            let event = match progress.event {
                ProgressEvent::Started => TransportEvent::Started {
                    trial_id: progress.trial_id,
                    attempt: progress.attempt,
                    worker: progress.worker,
                },
                ProgressEvent::Epoch(report) => TransportEvent::Epoch {
                    trial_id: progress.trial_id,
                    attempt: progress.attempt,
                    worker: progress.worker,
                    report,
                },
            };
            // Progress is best effort: dropped when the engine is behind.
            if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(Ok(event)) {
                return;
            }
        }
    }))
}

/// Ends the launch with an error when `sweep cancel` marks the manifest.
async fn watch_cancel(
    session: &Session,
    sweep: &str,
    tx: mpsc::Sender<Event>,
) -> Result<JoinHandle<()>, NatsError> {
    let mut watch = session
        .state
        .watch(protocol::manifest_key(sweep))
        .await
        .map_err(|e| NatsError::jetstream("watching the sweep manifest", e))?;
    let sweep = sweep.to_string();
    Ok(tokio::spawn(async move {
        while let Some(entry) = watch.next().await {
            let Ok(entry) = entry else { continue };
            if let Ok(manifest) = SweepManifest::decode(&entry.value) {
                if manifest.cancelled {
                    let _ = tx
                        .send(Err(TransportError::Other(format!(
                            "sweep `{sweep}` was cancelled (sweep cancel); launch it again to resume"
                        ))))
                        .await;
                    return;
                }
            }
        }
    }))
}

/// This machine's host name, for worker names.
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_string())
}

/// Default dataset cache: `$XDG_CACHE_HOME/sweep`, else `~/.cache/sweep`, else a temp folder.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("sweep");
    }
    if let Some(home) = std::env::var_os("HOME") {
        return PathBuf::from(home).join(".cache").join("sweep");
    }
    std::env::temp_dir().join("sweep-cache")
}
