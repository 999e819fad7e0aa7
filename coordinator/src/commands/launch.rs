//! `sweep launch`: validate, plan, run the trials (in-process, or over NATS with `--nats`), then
//! print the leaderboard.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use shared::trial::TrialStatus;

use crate::cli::LaunchArgs;
use crate::engine::embedded::EmbeddedTransport;
use crate::engine::prepare::{prepare, Prepared};
use crate::engine::transport::Transport;
use crate::engine::{self, EngineConfig, SweepSummary};
use crate::leaderboard::{Format, Leaderboard};
use crate::progress::Progress;
use crate::store::{Manifest, RunDir};

/// Exit code of a sweep stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: u8 = 130;

/// Runs the command. Exit 0 when every trial completed, 1 when any failed, 2 when the spec,
/// the data or the leakage check stops the sweep before training, 130 when interrupted.
pub fn run(args: LaunchArgs) -> anyhow::Result<ExitCode> {
    let prepared = prepare(&args.spec, args.data.as_deref(), args.max_trials, true)?;
    let root = RunDir::path_of(&args.out, &prepared.spec.name);
    let (mut run_dir, previous) = RunDir::open(&root)
        .with_context(|| format!("opening the run folder {}", root.display()))?;
    run_dir.ensure_same_data(&prepared.digest, &previous)?;
    run_dir.write_manifest(&manifest(&prepared))?;

    if args.nats.url.is_some() {
        let mut transport = crate::nats::launch::transport(&prepared, &args)?;
        if args.detach {
            let todo = engine::pending(&prepared.plan.trials, &previous);
            let queued = crate::nats::launch::detach(&mut transport, todo)?;
            transport.shutdown()?;
            eprintln!(
                "sweep: queued {queued} trials of {}; follow with `sweep status {} --nats ...`",
                prepared.spec.name, prepared.spec.name
            );
            return Ok(ExitCode::SUCCESS);
        }
        return run_sweep(
            &prepared,
            &mut run_dir,
            &previous,
            &mut transport,
            args.json,
        );
    }

    let trial_root = run_dir.root().join("trials");
    let mut transport = EmbeddedTransport::start(
        args.workers,
        prepared.shipments.clone(),
        prepared.data.clone(),
        worker::DeviceSpec::Cpu,
        Arc::new(move |id| trial_root.join(&id.0)),
    )?;
    run_sweep(
        &prepared,
        &mut run_dir,
        &previous,
        &mut transport,
        args.json,
    )
}

/// Runs a prepared sweep through `transport`, writes the leaderboard files into the run folder
/// and prints the leaderboard on stdout. Shared by the embedded and the NATS launch.
pub fn run_sweep(
    prepared: &Prepared,
    run_dir: &mut RunDir,
    previous: &[shared::trial::TrialResult],
    transport: &mut dyn Transport,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let spec = &prepared.spec;
    let stop = watch_signals().context("installing the Ctrl-C / SIGTERM handler")?;
    let settled =
        prepared.plan.trials.len() - engine::pending(&prepared.plan.trials, previous).len();
    let visible = !json && std::io::stderr().is_terminal();
    let mut progress = Progress::new(
        prepared.plan.trials.len() as u64,
        settled as u64,
        spec.objective.direction(),
        visible,
    );
    let cfg = EngineConfig {
        retries: spec.retries,
        objective: spec.objective,
    };
    let summary = engine::run(
        &prepared.plan.trials,
        previous,
        transport,
        run_dir,
        &mut progress,
        cfg,
        &stop,
    )?;
    report(prepared, run_dir, &summary, json)
}

fn report(
    prepared: &Prepared,
    run_dir: &RunDir,
    summary: &SweepSummary,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let board = Leaderboard::build(
        &prepared.spec.name,
        &summary.outcomes,
        prepared.spec.objective,
    );
    board
        .write_files(run_dir.root(), &summary.outcomes)
        .context("writing the leaderboard files")?;

    let text = board.render(if json { Format::Json } else { Format::Table });
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    out.write_all(text.as_bytes())
        .context("writing to stdout")?;

    let failed = summary.failed();
    tracing::info!(
        sweep = %prepared.spec.name,
        ran = summary.ran,
        skipped = summary.skipped,
        retried = summary.retried,
        failed,
        folder = %run_dir.root().display(),
        "sweep finished"
    );
    if summary.interrupted {
        eprintln!(
            "sweep: interrupted; {} of {} trials have an outcome, stored in {}. Run the same \
             `sweep launch` again to resume: settled trials are skipped.",
            summary.outcomes.len(),
            prepared.plan.trials.len(),
            run_dir.root().join(crate::store::RESULTS_FILE).display()
        );
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    }
    let incomplete = summary
        .outcomes
        .iter()
        .any(|r| r.status != TrialStatus::Completed);
    if failed > 0 || incomplete || summary.outcomes.len() < prepared.plan.trials.len() {
        Ok(ExitCode::from(crate::EXIT_FAILURES))
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

fn manifest(prepared: &Prepared) -> Manifest {
    Manifest {
        sweep: prepared.spec.name.clone(),
        objective: prepared.spec.objective,
        retries: prepared.spec.retries,
        data: prepared.data_label.clone(),
        dataset_digest: prepared.digest.clone(),
        trials: prepared.plan.trials.clone(),
    }
}

/// Sets the returned flag on the first SIGINT (Ctrl-C) or SIGTERM. The handlers are installed
/// before this returns, so a signal sent right after never kills the process outright.
fn watch_signals() -> std::io::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    #[cfg(unix)]
    let (mut interrupt, mut terminate) = {
        use tokio::signal::unix::{signal, SignalKind};
        let _guard = runtime.enter();
        (
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        )
    };
    let flag = stop.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            runtime.block_on(async {
                #[cfg(unix)]
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                #[cfg(not(unix))]
                let _ = tokio::signal::ctrl_c().await;
            });
            tracing::warn!("signal received: stopping the sweep");
            flag.store(true, Ordering::SeqCst);
        })?;
    Ok(stop)
}
