//! The run folder of a sweep, `DIR/<sweep>/`: `results.jsonl` (one [`TrialResult`] per line,
//! appended and flushed as each attempt ends), `sweep.json` (the plan and objective, written at
//! launch), the leaderboard files and one folder per trial under `trials/<id>/`.
//!
//! A launch that is killed loses at most the trials that were running: every finished attempt
//! is already on disk. A half-written last line (the process died mid-write) is dropped when the
//! file is opened again, so appending never glues two records together.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shared::spec::Objective;
use shared::trial::{TrialId, TrialResult, TrialSpec, TrialStatus};
use thiserror::Error;

/// File of results in a run folder.
pub const RESULTS_FILE: &str = "results.jsonl";
/// File describing the sweep in a run folder.
pub const MANIFEST_FILE: &str = "sweep.json";
/// File a launch locks while it uses the run folder.
pub const LOCK_FILE: &str = ".lock";

/// A run folder that cannot be read or written.
#[derive(Debug, Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line of `results.jsonl` (other than a cut-off last line) is not a result.
    #[error("{}:{line}: not a trial result ({message}); fix or delete that line", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The JSON error.
        message: String,
    },
    /// Another process holds the run folder.
    #[error("{} is in use by another `sweep launch`; wait for it to finish or pass another --out", path.display())]
    Locked {
        /// The folder.
        path: PathBuf,
    },
    /// The run folder holds results of other data than this launch's.
    #[error("{} holds results of other data (dataset digest {recorded}, this launch has {current}); results of different data never mix: pass another --out, or delete the folder to start over", path.display())]
    OtherData {
        /// The folder.
        path: PathBuf,
        /// Digest recorded in the folder's manifest.
        recorded: String,
        /// Digest of this launch's data.
        current: String,
    },
    /// The run folder has no results and no manifest.
    #[error("{} holds no sweep (no {RESULTS_FILE} or {MANIFEST_FILE}); check the sweep name and --out", path.display())]
    NoSweep {
        /// The folder.
        path: PathBuf,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a launch records about its sweep, so that the leaderboard and status commands can work
/// from the folder alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Sweep name.
    pub sweep: String,
    /// Objective used for ranking.
    pub objective: Objective,
    /// Retries per trial.
    pub retries: u32,
    /// Where the data came from (a path, or the synthetic generator's label).
    pub data: String,
    /// SHA-256 of the data file's bytes.
    pub dataset_digest: String,
    /// The planned trials.
    pub trials: Vec<TrialSpec>,
}

/// The run folder `DIR/<sweep>` and its open results file.
#[derive(Debug)]
pub struct RunDir {
    root: PathBuf,
    results: File,
    // Held for the life of the launch: an exclusive lock on `.lock` keeps a second launch from
    // running the same trials into the same folder. The operating system drops it on exit,
    // including a kill -9, so a stale lock cannot block a relaunch.
    _lock: File,
}

impl RunDir {
    /// The folder of `sweep` under `out`.
    pub fn path_of(out: &Path, sweep: &str) -> PathBuf {
        out.join(sweep)
    }

    /// Creates (or reopens) the run folder and returns it with the results already recorded.
    pub fn open(root: &Path) -> Result<(Self, Vec<TrialResult>), StoreError> {
        std::fs::create_dir_all(root).map_err(io(root))?;
        let lock_path = root.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    path: root.to_path_buf(),
                })
            }
            Err(std::fs::TryLockError::Error(err)) => return Err(io(&lock_path)(err)),
        }
        let path = root.join(RESULTS_FILE);
        let previous = if path.exists() {
            drop_partial_tail(&path)?;
            read_results(&path)?
        } else {
            Vec::new()
        };
        let results = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        Ok((
            Self {
                root: root.to_path_buf(),
                results,
                _lock: lock,
            },
            previous,
        ))
    }

    /// Refuses to go on when the folder already holds results of data whose digest differs
    /// from `digest`: trial ids do not include the data, so resuming would silently pass old
    /// results off as results on the new data.
    pub fn ensure_same_data(
        &self,
        digest: &str,
        previous: &[TrialResult],
    ) -> Result<(), StoreError> {
        if previous.is_empty() {
            return Ok(());
        }
        match read_manifest(&self.root)? {
            Some(manifest) if manifest.dataset_digest != digest => Err(StoreError::OtherData {
                path: self.root.clone(),
                recorded: manifest.dataset_digest,
                current: digest.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder a trial's model and metrics go to.
    pub fn trial_dir(&self, trial_id: &TrialId) -> PathBuf {
        self.root.join("trials").join(&trial_id.0)
    }

    /// Appends one result as a line and flushes it to the operating system.
    pub fn append(&mut self, result: &TrialResult) -> Result<(), StoreError> {
        let mut line = serde_json::to_string(result).expect("trial results serialise");
        line.push('\n');
        let path = self.root.join(RESULTS_FILE);
        self.results.write_all(line.as_bytes()).map_err(io(&path))?;
        self.results.flush().map_err(io(&path))
    }

    /// Writes `sweep.json`.
    pub fn write_manifest(&self, manifest: &Manifest) -> Result<(), StoreError> {
        let path = self.root.join(MANIFEST_FILE);
        let text = serde_json::to_string_pretty(manifest).expect("manifests serialise");
        std::fs::write(&path, text).map_err(io(&path))
    }
}

/// Reads `sweep.json` of a run folder, if there is one.
pub fn read_manifest(root: &Path) -> Result<Option<Manifest>, StoreError> {
    let path = root.join(MANIFEST_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|err| StoreError::Corrupt {
            path,
            line: err.line(),
            message: err.to_string(),
        })
}

/// Reads every result of a `results.jsonl`. A last line without its newline (cut off by a kill)
/// is ignored; any other bad line is an error naming it.
pub fn read_results(path: &Path) -> Result<Vec<TrialResult>, StoreError> {
    let file = File::open(path).map_err(io(path))?;
    let text = {
        let mut lines = Vec::new();
        for line in BufReader::new(file).split(b'\n') {
            lines.push(line.map_err(io(path))?);
        }
        lines
    };
    let complete = std::fs::read(path)
        .map_err(io(path))?
        .last()
        .is_none_or(|b| *b == b'\n');

    let mut results = Vec::new();
    let last = text.len();
    for (i, raw) in text.iter().enumerate() {
        let line = String::from_utf8_lossy(raw);
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<TrialResult>(&line) {
            Ok(result) => results.push(result),
            Err(_) if i + 1 == last && !complete => {
                tracing::warn!(path = %path.display(), line = i + 1, "ignoring a cut-off last result line");
            }
            Err(err) => {
                return Err(StoreError::Corrupt {
                    path: path.to_path_buf(),
                    line: i + 1,
                    message: err.to_string(),
                })
            }
        }
    }
    Ok(results)
}

/// Cuts a half-written last line off the file so that the next append starts on a fresh line.
fn drop_partial_tail(path: &Path) -> Result<(), StoreError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(());
    }
    let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    tracing::warn!(path = %path.display(), bytes = bytes.len() - keep, "dropping a cut-off last result line");
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io(path))?;
    file.set_len(keep as u64).map_err(io(path))
}

/// The outcome of each trial: its last attempt, except that a final status (completed,
/// diverged, leakage rejected) is never replaced by a later duplicate.
pub fn latest_by_trial(results: &[TrialResult]) -> BTreeMap<TrialId, TrialResult> {
    let mut latest: BTreeMap<TrialId, TrialResult> = BTreeMap::new();
    for r in results {
        match latest.get(&r.trial_id) {
            Some(prev) if is_settled(prev.status) && !is_settled(r.status) => {}
            Some(prev)
                if is_settled(prev.status) == is_settled(r.status) && prev.attempt > r.attempt => {}
            _ => {
                latest.insert(r.trial_id.clone(), r.clone());
            }
        }
    }
    latest
}

/// True for outcomes a relaunch does not run again. An `error` that exhausted its retries and a
/// `cancelled` trial are run again by the next launch.
pub fn is_settled(status: TrialStatus) -> bool {
    matches!(
        status,
        TrialStatus::Completed | TrialStatus::Diverged | TrialStatus::LeakageRejected
    )
}

/// Counts of a sweep in a run folder.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LocalStatus {
    /// Sweep name.
    pub sweep: String,
    /// Planned trials (0 when the folder has no manifest).
    pub planned: usize,
    /// Trials completed.
    pub completed: usize,
    /// Trials diverged or rejected by the leakage check.
    pub failed: usize,
    /// Trials whose last attempt ended in error or was cancelled (a relaunch runs them again).
    pub errored: usize,
    /// Planned trials with no result yet.
    pub pending: usize,
    /// Attempts recorded, retries included.
    pub attempts: usize,
}

/// Status of the sweep in `DIR/<sweep>` (for `sweep status SWEEP --out DIR` without NATS).
pub fn local_status(out: &Path, sweep: &str) -> Result<LocalStatus, StoreError> {
    let root = RunDir::path_of(out, sweep);
    let manifest = read_manifest(&root)?;
    let results_path = root.join(RESULTS_FILE);
    if manifest.is_none() && !results_path.exists() {
        return Err(StoreError::NoSweep { path: root });
    }
    let results = if results_path.exists() {
        read_results(&results_path)?
    } else {
        Vec::new()
    };
    let latest = latest_by_trial(&results);

    let mut status = LocalStatus {
        sweep: sweep.to_string(),
        attempts: results.len(),
        ..LocalStatus::default()
    };
    for r in latest.values() {
        match r.status {
            TrialStatus::Completed => status.completed += 1,
            TrialStatus::Diverged | TrialStatus::LeakageRejected => status.failed += 1,
            TrialStatus::Error | TrialStatus::Cancelled => status.errored += 1,
        }
    }
    if let Some(m) = manifest {
        status.planned = m.trials.len();
        status.pending = m
            .trials
            .iter()
            .filter(|t| !latest.contains_key(&t.trial_id))
            .count();
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::dataset::SeriesKey;

    fn result(id: &str, attempt: u32, status: TrialStatus) -> TrialResult {
        TrialResult {
            trial_id: TrialId(id.into()),
            sweep: "s".into(),
            attempt,
            status,
            reason: None,
            series: SeriesKey {
                category: "DRY".into(),
                brand: None,
            },
            params: Default::default(),
            metrics: None,
            epochs_run: 0,
            duration_s: 0.0,
            worker: "w".into(),
            device: "cpu".into(),
        }
    }

    #[test]
    fn appended_results_are_read_back_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut run, previous) = RunDir::open(dir.path()).unwrap();
        assert!(previous.is_empty());
        run.append(&result("a", 1, TrialStatus::Completed)).unwrap();
        run.append(&result("b", 1, TrialStatus::Error)).unwrap();
        drop(run);

        let (_, previous) = RunDir::open(dir.path()).unwrap();
        assert_eq!(previous.len(), 2);
        assert_eq!(previous[1].status, TrialStatus::Error);
    }

    #[test]
    fn cut_off_last_line_is_dropped_and_appends_stay_valid() {
        let dir = tempfile::tempdir().unwrap();
        let (mut run, _) = RunDir::open(dir.path()).unwrap();
        run.append(&result("a", 1, TrialStatus::Completed)).unwrap();
        drop(run);
        let path = dir.path().join(RESULTS_FILE);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"trial_id\":\"b\",\"swe").unwrap();
        drop(file);

        let (mut run, previous) = RunDir::open(dir.path()).unwrap();
        assert_eq!(previous.len(), 1);
        run.append(&result("c", 1, TrialStatus::Completed)).unwrap();
        assert_eq!(read_results(&path).unwrap().len(), 2);
    }

    #[test]
    fn corrupt_middle_line_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RESULTS_FILE);
        let good = serde_json::to_string(&result("a", 1, TrialStatus::Completed)).unwrap();
        std::fs::write(&path, format!("{good}\nnot json\n{good}\n")).unwrap();

        let err = read_results(&path).unwrap_err().to_string();
        assert!(err.contains("results.jsonl:2"), "{err}");
    }

    #[test]
    fn settled_outcome_is_not_replaced_by_a_late_error() {
        let results = vec![
            result("a", 1, TrialStatus::Error),
            result("a", 2, TrialStatus::Completed),
            result("a", 1, TrialStatus::Error),
        ];
        let latest = latest_by_trial(&results);
        assert_eq!(latest[&TrialId("a".into())].status, TrialStatus::Completed);
    }
}
