//! The JetStream objects of the protocol: the coordinator creates the streams, bucket and object
//! stores ([`Session::open`]); a worker only opens them, waiting until a launch created them
//! ([`Session::open_existing`]). Whoever comes first creates the workers' consumer.
//!
//! Creation is idempotent: a coordinator and three workers starting at the same instant all end
//! up with the same streams, consumer, bucket and object stores. Settings that a deployment
//! tunes come from the environment:
//!
//! - `SWEEP_NATS_ACK_WAIT_MS` (default 60000): how long a worker may stay silent on a trial
//!   before it is redelivered. Workers heartbeat at a third of it while training.
//! - `SWEEP_NATS_MAX_DELIVER` (default 5): deliveries of one trial message before JetStream
//!   gives up on it (workers lost mid-trial count; retries of `error` are new messages).
//! - `SWEEP_NATS_REPLICAS` (default 1): replicas of every stream and bucket (3 in a cluster).
//!
//! The ack wait and max deliver are fixed when the consumer is first created; delete the
//! `sweep-workers` consumer to change them.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::object_store::{self, ObjectStore};
use async_nats::jetstream::stream::{self, RetentionPolicy, StorageType};
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::{self, kv, Context};
use async_nats::Client;
use shared::protocol;
use tracing::info;

use super::{env_millis, NatsError};

/// Default ack wait of the trials consumer.
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(60);
/// Default deliveries of one trial message.
pub const DEFAULT_MAX_DELIVER: i64 = 5;
/// How long the trials stream remembers a `Nats-Msg-Id` to drop a repeated publication.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(3600);

/// A connection with every JetStream object of the protocol opened.
#[derive(Clone)]
pub struct Session {
    /// The core client (progress events).
    pub client: Client,
    /// The JetStream context.
    pub js: Context,
    /// The trials work queue.
    pub trials: stream::Stream,
    /// The results stream.
    pub results: stream::Stream,
    /// Manifests and trial records.
    pub state: kv::Store,
    /// Datasets by digest.
    pub datasets: ObjectStore,
    /// Trial weights.
    pub weights: ObjectStore,
}

/// Replicas of every stream and bucket (`SWEEP_NATS_REPLICAS`, default 1).
pub(crate) fn replicas() -> usize {
    std::env::var("SWEEP_NATS_REPLICAS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(1)
}

impl Session {
    /// Opens (creating when missing) the streams, buckets and object stores.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: every step is idempotent, so a dropped call can simply be made again.
    pub async fn open(client: Client) -> Result<Self, NatsError> {
        let js = jetstream::new(client.clone());
        let replicas = replicas();

        let trials = js
            .get_or_create_stream(stream::Config {
                name: protocol::TRIALS_STREAM.to_string(),
                subjects: vec![format!("{}.>", protocol::TRIALS_SUBJECT_PREFIX)],
                retention: RetentionPolicy::WorkQueue,
                storage: StorageType::File,
                duplicate_window: DUPLICATE_WINDOW,
                num_replicas: replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| {
                NatsError::jetstream(format!("opening stream {}", protocol::TRIALS_STREAM), e)
            })?;
        let results = js
            .get_or_create_stream(stream::Config {
                name: protocol::RESULTS_STREAM.to_string(),
                subjects: vec![format!("{}.>", protocol::RESULTS_SUBJECT_PREFIX)],
                retention: RetentionPolicy::Limits,
                storage: StorageType::File,
                duplicate_window: Duration::from_secs(600),
                num_replicas: replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| {
                NatsError::jetstream(format!("opening stream {}", protocol::RESULTS_STREAM), e)
            })?;

        let state = open_bucket(&js, replicas).await?;
        let datasets = open_object_store(&js, protocol::DATASETS_BUCKET, replicas).await?;
        let weights = open_object_store(&js, protocol::WEIGHTS_BUCKET, replicas).await?;

        Ok(Session {
            client,
            js,
            trials,
            results,
            state,
            datasets,
            weights,
        })
    }

    /// Opens the objects a coordinator created, without creating any: what a worker does.
    ///
    /// While a stream, bucket or object store is missing (no sweep was launched on this server
    /// yet) it logs `waiting for sweep streams; has a sweep been launched?` and tries again with
    /// a growing delay (up to 10 s). A server that does not answer the JetStream API for this
    /// user (permissions, or JetStream disabled) ends the wait with [`NatsError::NoJetStream`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: read only.
    pub async fn open_existing(client: Client) -> Result<Self, NatsError> {
        let js = jetstream::new(client.clone());
        let mut delay = Duration::from_millis(250);
        loop {
            match missing_stream(&js).await? {
                None => break,
                Some(missing) => {
                    info!(
                        missing = %missing,
                        retry_in_ms = delay.as_millis() as u64,
                        "waiting for sweep streams; has a sweep been launched?"
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
        let trials = get_stream(&js, protocol::TRIALS_STREAM).await?;
        let results = get_stream(&js, protocol::RESULTS_STREAM).await?;
        let state = js
            .get_key_value(protocol::STATE_BUCKET)
            .await
            .map_err(|e| {
                NatsError::jetstream(format!("opening KV bucket {}", protocol::STATE_BUCKET), e)
            })?;
        let datasets = get_object_store(&js, protocol::DATASETS_BUCKET).await?;
        let weights = get_object_store(&js, protocol::WEIGHTS_BUCKET).await?;
        Ok(Session {
            client,
            js,
            trials,
            results,
            state,
            datasets,
            weights,
        })
    }

    /// The workers' durable pull consumer on the trials stream (created when missing).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: creation is idempotent.
    pub async fn trials_consumer(&self) -> Result<PullConsumer, NatsError> {
        let config = pull::Config {
            durable_name: Some(protocol::TRIALS_CONSUMER.to_string()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: env_millis("SWEEP_NATS_ACK_WAIT_MS", DEFAULT_ACK_WAIT),
            max_deliver: std::env::var("SWEEP_NATS_MAX_DELIVER")
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(DEFAULT_MAX_DELIVER),
            max_ack_pending: -1,
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        };
        self.trials
            .get_or_create_consumer(protocol::TRIALS_CONSUMER, config)
            .await
            .map_err(|e| NatsError::jetstream("opening the workers' consumer", e))
    }
}

/// The JetStream streams behind every object of the protocol.
fn protocol_streams() -> [String; 5] {
    [
        protocol::TRIALS_STREAM.to_string(),
        protocol::RESULTS_STREAM.to_string(),
        format!("KV_{}", protocol::STATE_BUCKET),
        format!("OBJ_{}", protocol::DATASETS_BUCKET),
        format!("OBJ_{}", protocol::WEIGHTS_BUCKET),
    ]
}

/// The first stream of the protocol that does not exist yet, if any.
async fn missing_stream(js: &Context) -> Result<Option<String>, NatsError> {
    for name in protocol_streams() {
        match js.get_stream(&name).await {
            Ok(_) => {}
            Err(err) => match err.kind() {
                GetStreamErrorKind::JetStream(inner)
                    if inner.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    return Ok(Some(name));
                }
                GetStreamErrorKind::Request => {
                    return Err(NatsError::NoJetStream {
                        what: format!("looking up stream {name}"),
                        message: err.to_string(),
                    });
                }
                _ => {
                    return Err(NatsError::jetstream(
                        format!("looking up stream {name}"),
                        err,
                    ))
                }
            },
        }
    }
    Ok(None)
}

async fn get_stream(js: &Context, name: &str) -> Result<stream::Stream, NatsError> {
    js.get_stream(name)
        .await
        .map_err(|e| NatsError::jetstream(format!("opening stream {name}"), e))
}

async fn get_object_store(js: &Context, bucket: &str) -> Result<ObjectStore, NatsError> {
    js.get_object_store(bucket)
        .await
        .map_err(|e| NatsError::jetstream(format!("opening object store {bucket}"), e))
}

async fn open_bucket(js: &Context, replicas: usize) -> Result<kv::Store, NatsError> {
    if let Ok(store) = js.get_key_value(protocol::STATE_BUCKET).await {
        return Ok(store);
    }
    let created = js
        .create_key_value(kv::Config {
            bucket: protocol::STATE_BUCKET.to_string(),
            history: 1,
            storage: StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        })
        .await;
    match created {
        Ok(store) => Ok(store),
        // Another process created it between our two calls.
        Err(err) => js.get_key_value(protocol::STATE_BUCKET).await.map_err(|_| {
            NatsError::jetstream(format!("opening KV bucket {}", protocol::STATE_BUCKET), err)
        }),
    }
}

async fn open_object_store(
    js: &Context,
    bucket: &str,
    replicas: usize,
) -> Result<ObjectStore, NatsError> {
    if let Ok(store) = js.get_object_store(bucket).await {
        return Ok(store);
    }
    let created = js
        .create_object_store(object_store::Config {
            bucket: bucket.to_string(),
            storage: StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        })
        .await;
    match created {
        Ok(store) => Ok(store),
        // Another process created it between our two calls.
        Err(err) => js
            .get_object_store(bucket)
            .await
            .map_err(|_| NatsError::jetstream(format!("opening object store {bucket}"), err)),
    }
}
