//! Command-line definition. Every flag that talks to NATS has a `SWEEP_NATS_*` environment
//! fallback so that deployments configure workers through the environment.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Leak-free hyperparameter sweeps for demand forecasting. See `sweep <command> --help`.
///
/// Exit codes: 0 done; 1 finished with failed trials or failed checks; 2 usage, configuration,
/// data or connection error.
#[derive(Debug, Parser)]
#[command(name = "sweep", version, about, long_about = None)]
pub struct Cli {
    /// More log output on stderr (-v debug, -vv trace). RUST_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Every subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Expand a sweep spec and run its trials, then print the leaderboard.
    Launch(LaunchArgs),
    /// Print the trials a spec expands to, without running anything.
    Plan(PlanArgs),
    /// Train one trial standalone and write its metrics, history, predictions and weights.
    Train(TrainArgs),
    /// Forecast the next horizon days from the latest data with a trained model.
    Predict(PredictArgs),
    /// Pull trials from NATS JetStream and run them.
    Worker(WorkerArgs),
    /// Show a sweep's progress (from NATS, or from a run folder).
    Status(SweepRefArgs),
    /// Print a sweep's leaderboard (from NATS, or from a run folder).
    Leaderboard(LeaderboardArgs),
    /// Cancel a sweep on NATS: queued trials are not run.
    Cancel(SweepRefArgs),
    /// Publish the failed trials of a sweep again.
    RetryFailed(SweepRefArgs),
    /// Run the leakage check on a series and print its table.
    CheckLeakage(SeriesArgs),
    /// Export the unscaled daily feature frame of a series as CSV.
    Features(FeaturesArgs),
    /// List holidays, Tet and Mid-Autumn days with their lunar dates.
    Calendar(CalendarArgs),
}

/// Connection settings for NATS; each flag falls back to a `SWEEP_NATS_*` variable.
#[derive(Debug, Clone, Args, Default)]
pub struct NatsArgs {
    /// NATS server URL(s), comma separated, e.g. nats://127.0.0.1:4222.
    #[arg(long = "nats", env = "SWEEP_NATS_URL", value_name = "URL")]
    pub url: Option<String>,
    /// User name for user/password authentication.
    #[arg(long = "nats-user", env = "SWEEP_NATS_USER", value_name = "USER")]
    pub user: Option<String>,
    /// Password for user/password authentication.
    #[arg(
        long = "nats-password",
        env = "SWEEP_NATS_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// Token authentication.
    #[arg(
        long = "nats-token",
        env = "SWEEP_NATS_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Credentials file (JWT + NKey).
    #[arg(long = "nats-creds", env = "SWEEP_NATS_CREDS", value_name = "FILE")]
    pub creds: Option<PathBuf>,
    /// CA certificate to verify the server's TLS certificate.
    #[arg(long = "nats-tls-ca", env = "SWEEP_NATS_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate for mutual TLS.
    #[arg(
        long = "nats-tls-cert",
        env = "SWEEP_NATS_TLS_CERT",
        value_name = "FILE"
    )]
    pub tls_cert: Option<PathBuf>,
    /// Client key for mutual TLS.
    #[arg(long = "nats-tls-key", env = "SWEEP_NATS_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
}

/// `sweep launch`.
#[derive(Debug, Args)]
pub struct LaunchArgs {
    /// Sweep spec (YAML).
    pub spec: PathBuf,
    /// Shipments file (CSV or Parquet); overrides the spec's data.path.
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// In-process workers for the embedded launch, each training on its share of the CPU
    /// cores. Default: 1.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub workers: usize,
    /// Run at most N trials (after the spec's own max_trials).
    #[arg(long, value_name = "N")]
    pub max_trials: Option<usize>,
    /// Run folder; results go to DIR/<sweep>/. Default: runs.
    #[arg(long, value_name = "DIR", default_value = "runs")]
    pub out: PathBuf,
    /// With --nats: also run N workers inside this process, each training on its share of the
    /// CPU cores.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub local_workers: usize,
    /// With --nats: publish the trials and return without following results.
    #[arg(long)]
    pub detach: bool,
    /// Print the leaderboard as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// NATS connection; without it the sweep runs in-process.
    #[command(flatten)]
    pub nats: NatsArgs,
}

/// `sweep plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Sweep spec (YAML).
    pub spec: PathBuf,
    /// Shipments file (CSV or Parquet); overrides the spec's data.path, as in `sweep launch`.
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// Plan at most N trials, as `sweep launch --max-trials N` would run.
    #[arg(long, value_name = "N")]
    pub max_trials: Option<usize>,
    /// Print the trials as JSON lines.
    #[arg(long)]
    pub json: bool,
}

/// Which series of a file.
#[derive(Debug, Clone, Args)]
pub struct SeriesArgs {
    /// Shipments file (CSV or Parquet).
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// Category, e.g. DRY.
    #[arg(long, value_name = "CATEGORY")]
    pub category: String,
    /// One brand of the category; default the category total.
    #[arg(long, value_name = "BRAND")]
    pub brand: Option<String>,
    /// Pipeline settings (window, split, calendar, data columns) as YAML.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `sweep train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The series to train on.
    #[command(flatten)]
    pub series: SeriesArgs,
    /// Override a hyperparameter, e.g. --set hidden_size=64 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Device: cpu or cuda:N.
    #[arg(long, default_value = "cpu", value_name = "DEVICE")]
    pub device: String,
    /// Output folder for metrics.json, history.csv, predictions.csv and the model.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// `sweep predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Folder written by `sweep train` (or a trial folder of a sweep).
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Shipments file with the latest data.
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// Forecast origin (first forecast day); default the day after the last data day.
    #[arg(long, value_name = "DATE")]
    pub from: Option<String>,
}

/// `sweep worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// NATS connection (required).
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Device: cpu or cuda:N.
    #[arg(
        long,
        env = "SWEEP_DEVICE",
        default_value = "cpu",
        value_name = "DEVICE"
    )]
    pub device: String,
    /// Trials run concurrently by this worker, each training on its share of the CPU cores.
    #[arg(long, env = "SWEEP_SLOTS", default_value_t = 1, value_name = "N")]
    pub slots: usize,
    /// Worker name in results and logs; default host name and process id.
    #[arg(long, env = "SWEEP_WORKER_NAME", value_name = "NAME")]
    pub name: Option<String>,
    /// Stop taking work after this many consecutive failed trials.
    #[arg(
        long,
        env = "SWEEP_MAX_CONSECUTIVE_FAILURES",
        default_value_t = 5,
        value_name = "K"
    )]
    pub max_consecutive_failures: usize,
    /// Dataset cache folder.
    #[arg(long, env = "SWEEP_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// A sweep on NATS or in a run folder.
#[derive(Debug, Args)]
pub struct SweepRefArgs {
    /// Sweep name.
    pub sweep: String,
    /// Run folder (when not using NATS). Default: runs.
    #[arg(long, value_name = "DIR", default_value = "runs")]
    pub out: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// NATS connection.
    #[command(flatten)]
    pub nats: NatsArgs,
}

/// `sweep leaderboard`.
#[derive(Debug, Args)]
pub struct LeaderboardArgs {
    /// The sweep.
    #[command(flatten)]
    pub sweep: SweepRefArgs,
    /// Show only the top N rows per category.
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
    /// Show only this category (all its brands at brand level), or one `CATEGORY/BRAND`.
    #[arg(long, value_name = "C")]
    pub category: Option<String>,
    /// Output format; `--json` is short for `--format json`.
    #[arg(long, value_enum, default_value = "table")]
    pub format: LeaderboardFormat,
}

/// Output formats of `sweep leaderboard`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LeaderboardFormat {
    /// A table for people.
    Table,
    /// CSV for scripts.
    Csv,
    /// A JSON document.
    Json,
    /// A Markdown table.
    Markdown,
}

/// `sweep features`.
#[derive(Debug, Args)]
pub struct FeaturesArgs {
    /// The series.
    #[command(flatten)]
    pub series: SeriesArgs,
    /// Output CSV.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// `sweep calendar`.
#[derive(Debug, Args)]
pub struct CalendarArgs {
    /// First day (YYYY-MM-DD).
    #[arg(long, value_name = "DATE")]
    pub from: String,
    /// Last day (YYYY-MM-DD).
    #[arg(long, value_name = "DATE")]
    pub to: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
}

/// Table or CSV output.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum OutputFormat {
    /// A table for people.
    Table,
    /// CSV for scripts.
    Csv,
}
