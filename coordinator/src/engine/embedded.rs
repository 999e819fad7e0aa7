//! The embedded transport: N worker threads inside the coordinator process.
//!
//! Training is CPU-bound blocking code, so each worker is a plain thread that takes the next
//! [`Dispatch`] from a shared queue, runs it with [`worker::execute_with_data`] and sends its
//! events over a channel that [`Transport::next_event`] reads.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use shared::config::DataConfig;
use shared::data::Shipments;
use shared::trial::TrialId;
use worker::{DeviceSpec, RunContext};

use super::transport::{Dispatch, Transport, TransportError, TransportEvent};

/// Where each trial's model folder goes: `DIR/<sweep>/trials/<id>`.
pub type TrialDirFn = Arc<dyn Fn(&TrialId) -> PathBuf + Send + Sync>;

#[derive(Default)]
struct Queue {
    items: VecDeque<Dispatch>,
    closed: bool,
}

/// Worker threads in this process. Workers are named `local-1`, `local-2`, ...
pub struct EmbeddedTransport {
    queue: Arc<(Mutex<Queue>, Condvar)>,
    events: Receiver<TransportEvent>,
    cancel: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for EmbeddedTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedTransport")
            .field("workers", &self.handles.len())
            .finish_non_exhaustive()
    }
}

impl EmbeddedTransport {
    /// Starts `workers` threads (at least one) training on `shipments` (read with `data`) on
    /// `device`, writing each trial's folder where `trial_dir` says.
    pub fn start(
        workers: usize,
        shipments: Arc<Shipments>,
        data: DataConfig,
        device: DeviceSpec,
        trial_dir: TrialDirFn,
    ) -> Result<Self, TransportError> {
        let queue: Arc<(Mutex<Queue>, Condvar)> = Arc::default();
        let cancel = Arc::new(AtomicBool::new(false));
        let (tx, events) = channel();
        let mut handles = Vec::new();
        for i in 1..=workers.max(1) {
            let worker = WorkerLoop {
                name: format!("local-{i}"),
                queue: queue.clone(),
                events: tx.clone(),
                cancel: cancel.clone(),
                shipments: shipments.clone(),
                data: data.clone(),
                device,
                trial_dir: trial_dir.clone(),
                shares: workers.max(1),
            };
            let handle = std::thread::Builder::new()
                .name(worker.name.clone())
                .spawn(move || worker.run())
                .map_err(|err| {
                    TransportError::Other(format!("cannot start a worker thread: {err}"))
                })?;
            handles.push(handle);
        }
        Ok(Self {
            queue,
            events,
            cancel,
            handles,
        })
    }
}

impl Transport for EmbeddedTransport {
    fn submit(&mut self, dispatches: Vec<Dispatch>) -> Result<(), TransportError> {
        let (lock, ready) = &*self.queue;
        let mut queue = lock.lock().map_err(|_| TransportError::WorkersGone {
            reason: "a worker thread panicked while holding the queue".into(),
        })?;
        queue.items.extend(dispatches);
        ready.notify_all();
        Ok(())
    }

    fn next_event(&mut self, timeout: Duration) -> Result<Option<TransportEvent>, TransportError> {
        match self.events.recv_timeout(timeout) {
            Ok(event) => Ok(Some(event)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(TransportError::WorkersGone {
                reason: "every worker thread exited".into(),
            }),
        }
    }

    fn interrupt(&mut self) -> Result<(), TransportError> {
        self.cancel.store(true, Ordering::SeqCst);
        let (lock, ready) = &*self.queue;
        if let Ok(mut queue) = lock.lock() {
            queue.closed = true;
            queue.items.clear();
        }
        ready.notify_all();
        Ok(())
    }

    fn shutdown(&mut self) -> Result<(), TransportError> {
        self.cancel.store(true, Ordering::SeqCst);
        {
            let (lock, ready) = &*self.queue;
            if let Ok(mut queue) = lock.lock() {
                queue.closed = true;
                queue.items.clear();
            }
            ready.notify_all();
        }
        for handle in self.handles.drain(..) {
            // A panicking worker already reported its trial as an error result; joining is only
            // about not leaving threads behind.
            let _ = handle.join();
        }
        Ok(())
    }
}

impl Drop for EmbeddedTransport {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

struct WorkerLoop {
    name: String,
    queue: Arc<(Mutex<Queue>, Condvar)>,
    events: Sender<TransportEvent>,
    cancel: Arc<AtomicBool>,
    shipments: Arc<Shipments>,
    data: DataConfig,
    device: DeviceSpec,
    trial_dir: TrialDirFn,
    /// Workers in this process: each trial runs on its share of the cores.
    shares: usize,
}

impl WorkerLoop {
    fn run(self) {
        while let Some(dispatch) = self.next() {
            let Dispatch { trial, attempt } = dispatch;
            let _ = self.events.send(TransportEvent::Started {
                trial_id: trial.trial_id.clone(),
                attempt,
                worker: self.name.clone(),
            });
            let ctx = RunContext {
                device: self.device,
                worker: self.name.clone(),
                attempt,
                cancel: self.cancel.clone(),
                out_dir: Some((self.trial_dir)(&trial.trial_id)),
            };
            let events = self.events.clone();
            let mut on_epoch = |report: &shared::trial::EpochReport| {
                let _ = events.send(TransportEvent::Epoch {
                    trial_id: trial.trial_id.clone(),
                    attempt,
                    worker: self.name.clone(),
                    report: *report,
                });
            };
            let result = worker::trainer::on_core_share(self.shares, || {
                worker::execute_with_data(&trial, &self.shipments, &self.data, &ctx, &mut on_epoch)
            });
            // The engine may have stopped listening (it shut down); nothing is left to tell it.
            let _ = self.events.send(TransportEvent::Finished(result));
        }
    }

    fn next(&self) -> Option<Dispatch> {
        let (lock, ready) = &*self.queue;
        let mut queue = lock.lock().ok()?;
        loop {
            if queue.closed {
                return None;
            }
            if let Some(item) = queue.items.pop_front() {
                return Some(item);
            }
            queue = ready.wait(queue).ok()?;
        }
    }
}
