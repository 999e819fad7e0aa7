//! `sweep plan`: expands a spec and prints its trials, running nothing.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::Table;
use serde_json::Value;

use crate::cli::PlanArgs;
use crate::engine::prepare::prepare;

/// Runs the command: a table of trials per series and the parameters that vary (or, with
/// `--json`, one JSON trial per line). Exit 0, or 2 for an invalid spec or data.
pub fn run(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let prepared = prepare(&args.spec, args.data.as_deref(), args.max_trials, false)?;
    let plan = &prepared.plan;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();

    if args.json {
        for trial in &plan.trials {
            writeln!(out, "{}", serde_json::to_string(trial)?).context("writing to stdout")?;
        }
        return Ok(ExitCode::SUCCESS);
    }

    let varying = plan.varying();
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    let mut header = vec!["trial".to_string(), "series".to_string()];
    header.extend(varying.iter().cloned());
    table.set_header(header);
    for trial in &plan.trials {
        let mut row = vec![trial.trial_id.to_string(), trial.series.to_string()];
        for key in &varying {
            row.push(match trial.params.get(key) {
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => crate::leaderboard::default_value(key),
            });
        }
        table.add_row(row);
    }

    writeln!(
        out,
        "sweep {} on {} ({} trials)",
        plan.sweep,
        prepared.data_label,
        plan.trials.len()
    )?;
    for (series, n) in plan.counts() {
        writeln!(out, "  {series}: {n} trials")?;
    }
    if varying.is_empty() {
        writeln!(out, "  no parameter varies")?;
    } else {
        writeln!(out, "  varying: {}", varying.join(", "))?;
    }
    if !plan.duplicates.is_empty() {
        writeln!(out, "  {} duplicate points dropped:", plan.duplicates.len())?;
        for d in &plan.duplicates {
            writeln!(
                out,
                "    {} {} = trial {}",
                d.series,
                serde_json::to_string(&d.params)?,
                d.same_as
            )?;
        }
    }
    if plan.capped > 0 {
        writeln!(out, "  {} trials left out by max_trials", plan.capped)?;
    }
    writeln!(out, "{table}")?;
    Ok(ExitCode::SUCCESS)
}
