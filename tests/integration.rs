//! End-to-end tests of the `sweep` binary. Each module names the area it covers; the shared
//! helpers (paths, the real data file, a nats-server started on a random loopback port) live in
//! `common`.

mod common;

// Data pipeline commands: calendar, features, check-leakage, bad input.
mod data_cli;
// The calendar command and the synthetic data generator.
mod calendar_cli;
// Standalone training and prediction.
mod train_cli;
// Spec validation, plan, embedded launch, resume and the leaderboard.
mod launch;
// The NATS JetStream path: workers, redelivery, restarts, authentication.
mod nats;
// Deploy manifests: lint against the code, three-node cluster, permissions.
mod deploy;
