//! The `--nats` branch of `sweep launch` and `sweep leaderboard`: the transport for a prepared
//! sweep, the detached launch, and the results of a sweep read back from the server.

use std::path::Path;

use shared::trial::TrialResult;

use super::query;
use super::session::Session;
use super::transport::{NatsTransport, SweepUpload};
use super::worker::training_runner;
use super::NatsError;
use crate::cli::{LaunchArgs, NatsArgs};
use crate::engine::prepare::Prepared;
use crate::engine::transport::{Dispatch, Transport, TransportError};

/// The transport of `sweep launch SPEC --nats URL`: uploads the dataset, records the sweep and
/// starts `--local-workers` in-process workers (CPU).
pub fn transport(prepared: &Prepared, args: &LaunchArgs) -> Result<NatsTransport, NatsError> {
    let dataset_name = Path::new(&prepared.data_label)
        .file_name()
        .map(|name| name.to_string_lossy().to_string())
        .unwrap_or_else(|| prepared.data_label.clone());
    let upload = SweepUpload {
        sweep: prepared.spec.name.clone(),
        dataset: bytes::Bytes::from(prepared.bytes.as_ref().clone()),
        dataset_name,
        data: prepared.data.clone(),
        trials: prepared.plan.trials.len(),
        objective: prepared.spec.objective,
    };
    let mut transport = NatsTransport::connect(&args.nats, upload)?;
    if args.local_workers > 0 {
        transport.start_local_workers(
            args.local_workers,
            "cpu",
            training_runner(::worker::DeviceSpec::Cpu),
        );
    }
    Ok(transport)
}

/// `sweep launch --detach`: queues the pending attempts and returns without following them.
/// Retries of failed attempts happen when the sweep is launched again (or `retry-failed`).
pub fn detach(
    transport: &mut NatsTransport,
    pending: Vec<Dispatch>,
) -> Result<usize, TransportError> {
    let count = pending.len();
    transport.submit(pending)?;
    Ok(count)
}

/// The latest result of every trial of a sweep, as stored on the server, with the sweep's
/// objective (for `sweep leaderboard SWEEP --nats URL`).
pub fn results(
    args: &NatsArgs,
    sweep: &str,
) -> Result<(Vec<TrialResult>, shared::spec::Objective), NatsError> {
    let runtime = super::runtime().map_err(|e| NatsError::jetstream("starting tokio", e))?;
    runtime.block_on(async {
        let client = super::connect(args, "sweep-cli").await?;
        let session = Session::open(client).await?;
        let snapshot = query::snapshot(&session, sweep).await?;
        Ok((
            snapshot.results.into_values().collect(),
            snapshot.manifest.objective,
        ))
    })
}
