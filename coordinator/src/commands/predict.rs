//! `sweep predict`: a forecast of the next horizon days from a trained model, as CSV
//! (date, horizon_step, forecast) on stdout.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use chrono::NaiveDate;

use crate::cli::PredictArgs;

/// Runs the command.
pub fn run(args: PredictArgs) -> anyhow::Result<ExitCode> {
    let from = args
        .from
        .as_deref()
        .map(|text| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .with_context(|| format!("--from `{text}`: expected a date as YYYY-MM-DD"))
        })
        .transpose()?;
    let card = worker::artifacts::read_card(&args.model)?;
    let shipments = shared::data::load_file(&args.data, &card.data)?;
    let rows = worker::forecast::forecast(&args.model, &shipments, from)?;

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "date,horizon_step,forecast")?;
    for row in rows {
        writeln!(out, "{},{},{:.4}", row.date, row.horizon_step, row.forecast)?;
    }
    Ok(ExitCode::SUCCESS)
}
