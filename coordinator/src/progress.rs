//! The live progress bar of a sweep on stderr: done / failed / running, elapsed, ETA and the best
//! objective so far.
//!
//! Log lines share stderr with the bar. [`log_writer`] hands tracing a writer that hides the bar
//! while a line is written, so lines never tear the bar. When stderr is not a terminal the bar
//! draws nothing and only the log lines remain.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shared::spec::Direction;
use shared::trial::TrialStatus;

/// The bar currently on screen, if any; log lines are written around it.
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// A writer for log lines that suspends the active progress bar while writing.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let active = ACTIVE.lock().ok().and_then(|guard| guard.clone());
        match active {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The `MakeWriter` of the log subscriber: stderr, around the progress bar.
pub fn log_writer() -> LogWriter {
    LogWriter
}

/// Counters of a running sweep and the bar that shows them.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    direction: Direction,
    done: u64,
    failed: u64,
    running: u64,
    best: Option<f64>,
}

impl Progress {
    /// A bar over `total` trials of which `settled` were already finished by an earlier launch.
    /// `visible: false` draws nothing (for `--json` runs and tests).
    pub fn new(total: u64, settled: u64, direction: Direction, visible: bool) -> Self {
        let target = if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(total), target);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} {msg} (ETA {eta})",
            )
            .expect("the progress template is valid")
            .progress_chars("=> "),
        );
        bar.set_position(settled);
        bar.enable_steady_tick(Duration::from_millis(200));
        if let Ok(mut active) = ACTIVE.lock() {
            *active = Some(bar.clone());
        }
        let progress = Self {
            bar,
            direction,
            done: settled,
            failed: 0,
            running: 0,
            best: None,
        };
        progress.refresh();
        progress
    }

    /// A worker began an attempt.
    pub fn started(&mut self) {
        self.running += 1;
        self.refresh();
    }

    /// An attempt ended and will be retried.
    pub fn retrying(&mut self) {
        self.running = self.running.saturating_sub(1);
        self.refresh();
    }

    /// A trial ended for good; `objective` is its value when it completed.
    pub fn finished(&mut self, status: TrialStatus, objective: Option<f64>) {
        self.running = self.running.saturating_sub(1);
        if status == TrialStatus::Completed {
            self.done += 1;
        } else {
            self.failed += 1;
        }
        if let Some(value) = objective.filter(|v| !v.is_nan()) {
            let better = match (self.best, self.direction) {
                (None, _) => true,
                (Some(best), Direction::Minimize) => value < best,
                (Some(best), Direction::Maximize) => value > best,
            };
            if better {
                self.best = Some(value);
            }
        }
        self.bar.inc(1);
        self.refresh();
    }

    /// The best objective so far.
    pub fn best(&self) -> Option<f64> {
        self.best
    }

    /// Removes the bar from the screen.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
        if let Ok(mut active) = ACTIVE.lock() {
            *active = None;
        }
    }

    fn refresh(&self) {
        let best = self
            .best
            .map(|b| format!("{b:.4}"))
            .unwrap_or_else(|| "-".into());
        self.bar.set_message(format!(
            "done {} failed {} running {} best {best}",
            self.done, self.failed, self.running
        ));
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
