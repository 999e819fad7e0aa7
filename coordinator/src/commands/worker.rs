//! `sweep worker`: pulls trials from NATS JetStream and runs them until stopped.
//!
//! SIGTERM or Ctrl-C stops pulling; running trials are asked to stop and handed back to the
//! queue so that another worker takes them at once. Exit 0 after a shutdown, 1 when the worker
//! stopped because too many trials failed in a row, 2 when it cannot connect.

use std::process::ExitCode;

use anyhow::Context;
use tokio::sync::watch;

use crate::cli::WorkerArgs;
use crate::nats::session::Session;
use crate::nats::transport::{default_cache_dir, hostname};
use crate::nats::worker::{self, WorkerConfig, WorkerExit};

/// Runs the command.
pub fn run(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let device: ::worker::DeviceSpec = args
        .device
        .parse()
        .with_context(|| format!("--device {}", args.device))?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
    let config = WorkerConfig {
        name: name.clone(),
        device: args.device.clone(),
        slots: args.slots.max(1),
        core_shares: args.slots.max(1),
        max_consecutive_failures: args.max_consecutive_failures,
        cache_dir: args.cache_dir.clone().unwrap_or_else(default_cache_dir),
    };

    let runtime = crate::nats::runtime().context("starting the async runtime")?;
    let exit = runtime.block_on(async {
        // Installed first, so that a worker still waiting for the sweep streams stops cleanly.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing a SIGTERM handler")?;
        let (stop_tx, mut stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            tracing::info!("signal received: finishing or handing back running trials");
            let _ = stop_tx.send(true);
        });
        let client = crate::nats::connect(&args.nats, &name).await?;
        let session = tokio::select! {
            session = Session::open_existing(client) => session?,
            _ = stop_rx.changed() => return Ok(WorkerExit::Shutdown),
        };
        worker::run(session, config, worker::training_runner(device), stop_rx)
            .await
            .map_err(anyhow::Error::from)
    })?;

    match exit {
        WorkerExit::Shutdown => Ok(ExitCode::SUCCESS),
        WorkerExit::TooManyFailures { count, last_reason } => {
            eprintln!(
                "sweep: worker {name} stopped taking work: {count} trials failed in a row \
                 (last: {last_reason}); check this machine's device and data cache, then restart \
                 it (--max-consecutive-failures 0 never stops)"
            );
            Ok(ExitCode::from(crate::EXIT_FAILURES))
        }
    }
}
