//! Helpers shared by the integration tests.

#![allow(dead_code)]

pub mod nats_server;

use std::path::PathBuf;
use std::process::{Command, Output};

/// The `sweep` binary under test.
pub fn sweep_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sweep"))
}

/// The repository root. Read at run time (cargo sets the variable for the tests it runs): the
/// compile-time value goes stale when a build directory is shared between clones at different
/// paths, since cargo does not rebuild a crate for that.
pub fn repo_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .parent()
        .expect("coordinator/ sits in the repository root")
        .to_path_buf()
}

/// The real DRY shipments handed to the project, beside the repository in `../shared/data`.
pub fn real_dry_csv() -> PathBuf {
    let path = repo_root().join("../shared/data/mdlz_dry_shipments.csv");
    assert!(
        path.exists(),
        "the real data file {} is missing; it is handed out beside the repository",
        path.display()
    );
    path
}

/// Runs the `sweep` binary with `args` in the current folder and waits for it.
pub fn sweep(args: &[&str]) -> Output {
    Command::new(sweep_bin())
        .args(args)
        .output()
        .expect("the sweep binary runs")
}

/// Bytes a process wrote, as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What a finished process wrote to stdout.
pub fn stdout(output: &Output) -> String {
    text(&output.stdout)
}

/// What a finished process wrote to stderr.
pub fn stderr(output: &Output) -> String {
    text(&output.stderr)
}
