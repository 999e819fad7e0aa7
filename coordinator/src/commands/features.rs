//! `sweep features`: exports the unscaled daily feature frame of one series (date plus every
//! feature of the contract) as CSV.

use std::process::ExitCode;

use anyhow::Context;
use shared::features;

use crate::cli::FeaturesArgs;
use crate::commands::check_leakage::load_series;

/// Runs the command; a summary line goes to stderr, the frame to `--out`.
pub fn run(args: FeaturesArgs) -> anyhow::Result<ExitCode> {
    let loaded = load_series(&args.series)?;
    let frame = features::compute(&loaded.series, &loaded.calendar)
        .with_context(|| format!("computing the features of {}", loaded.series.key))?;
    frame
        .write_csv(&args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;

    eprintln!(
        "sweep: wrote {} days x {} features of {} to {} ({} duplicate rows summed, {} missing \
         days zero-filled in the file)",
        frame.len(),
        frame.columns().len(),
        loaded.series.key,
        args.out.display(),
        loaded.report.duplicate_rows_summed,
        loaded.report.days_zero_filled
    );
    Ok(ExitCode::SUCCESS)
}
