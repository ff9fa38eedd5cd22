//! `chainlog replay -m URI`: rebuild a logged chain, answer its LLM calls from the model's
//! cassettes through the in-process mock (no network, no key), compare every output with the
//! logged one; prints `identical` (exit 0) or each differing case with a diff and the first
//! LLM request not in the cassette (exit 1); exit 2 when it cannot replay at all
//! ([`OutputsDiffer`]). `--trace <id>` replays one production prediction from its trace
//! instead. `--json` prints the [`ReplayReport`].

use std::{fmt::Write as _, io::Write as _};

use anyhow::Context;
use clap::Args;

use super::{App, args::ModelArgs};
use crate::replay::{CaseOutcome, FirstMiss, ReplayReport, replay_cases, replay_trace};

/// The one `replay` failure that exits 1: a replayed output differs from the logged one.
/// Every other failure (the model, the trace or a case could not be replayed at all) exits 2,
/// as `diff` does, so CI tells "changed" from "could not check".
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OutputsDiffer(String);

/// Options of `chainlog replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Replay one production prediction instead of the logged cases: the trace's root span
    /// gives the input and output, its CHAT_MODEL spans (request sent, response received) the
    /// cassette; the trace is read from the tracking store.
    #[arg(long, value_name = "TRACE_ID")]
    trace: Option<String>,
    /// Print the report as JSON (`identical`, and per case: output logged and replayed, diff,
    /// the LLM calls and what answered them, the first request not in the cassette).
    #[arg(long)]
    json: bool,
}

/// Runs `chainlog replay`.
///
/// # Errors
///
/// A model that cannot be loaded or has no cassettes; a replayed output that differs.
pub async fn run(app: &App, args: ReplayArgs) -> anyhow::Result<()> {
    let hand_over = std::env::args_os().skip(1).collect();
    let artifact = args
        .model
        .locate(&app.registry, &app.compiled, hand_over)
        .await?;
    let report = match &args.trace {
        Some(trace_id) => {
            let tracking = args.model.tracking(&app.compiled)?;
            replay_trace(
                &app.registry,
                &artifact,
                &tracking,
                trace_id,
                &args.model.set,
            )
            .await
        }
        None => {
            replay_cases(
                &app.registry,
                &artifact,
                &args.model.model_uri,
                &args.model.set,
            )
            .await
        }
    }
    .with_context(|| format!("failed to replay model `{}`", args.model.model_uri))?;
    let text = if args.json {
        serde_json::to_string_pretty(&report).context("failed to print the report")? + "\n"
    } else {
        render(&report)
    };
    let mut out = std::io::stdout().lock();
    out.write_all(crate::secret::mask_registered(&text).as_bytes())
        .context("failed to print the report")?;
    out.flush().context("failed to print the report")?;
    if !report.identical {
        let differ = report.cases.iter().filter(|c| !c.identical).count();
        return Err(OutputsDiffer(format!(
            "{differ} of {} case(s) of model `{}` did not reproduce the logged output",
            report.cases.len(),
            args.model.model_uri
        ))
        .into());
    }
    Ok(())
}

/// The report as text: one line per identical case, the details of each differing one, and
/// `identical` at the end when every case is.
fn render(report: &ReplayReport) -> String {
    let mut out = String::new();
    for case in &report.cases {
        let calls = case.calls.len();
        if case.identical {
            let _ = writeln!(
                out,
                "case {}: identical ({calls} LLM call(s), all answered from the cassette)",
                case.case
            );
        } else {
            render_difference(&mut out, case);
        }
    }
    if report.identical {
        out.push_str("identical\n");
    }
    out
}

fn render_difference(out: &mut String, case: &CaseOutcome) {
    let _ = writeln!(out, "case {}: differs", case.case);
    let _ = writeln!(out, "  input: {}", case.input);
    if let Some(miss) = &case.first_miss {
        render_miss(out, miss);
    }
    if let Some(error) = &case.error {
        let _ = writeln!(out, "  the chain failed: {error}");
    }
    if let Some(diff) = &case.diff {
        let _ = writeln!(out, "  output:");
        for line in diff.lines() {
            let _ = writeln!(out, "    {line}");
        }
    }
}

fn render_miss(out: &mut String, miss: &FirstMiss) {
    let model = miss
        .model
        .as_deref()
        .map(|m| format!(" (model {m})"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "  first LLM request not in the cassette: call {}, {} {}{model}",
        miss.call, miss.method, miss.path
    );
    let Some(index) = miss.closest else {
        let _ = writeln!(out, "    {} holds no interaction", miss.cassette);
        return;
    };
    let line = miss
        .closest_line
        .map(|l| format!(", line {l}"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "    closest recorded: interaction #{index} ({}{line}), which differs at:",
        miss.cassette
    );
    for change in &miss.differences {
        let _ = writeln!(out, "      {}", change.at);
        let (recorded, asked) = excerpts(change.recorded.as_ref(), change.asked.as_ref());
        let _ = writeln!(out, "        recorded: {recorded}");
        let _ = writeln!(out, "        asked:    {asked}");
    }
}

/// Both values as JSON, cut to the part around their first difference when long.
fn excerpts(
    recorded: Option<&serde_json::Value>,
    asked: Option<&serde_json::Value>,
) -> (String, String) {
    const WIDTH: usize = 120;
    const BEFORE: usize = 30;
    let text = |v: Option<&serde_json::Value>| {
        v.map_or_else(|| "(absent)".to_owned(), ToString::to_string)
    };
    let (a, b) = (text(recorded), text(asked));
    let (a_chars, b_chars): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a_chars.len() <= WIDTH && b_chars.len() <= WIDTH {
        return (a, b);
    }
    let first = a_chars
        .iter()
        .zip(&b_chars)
        .take_while(|(x, y)| x == y)
        .count();
    let start = first.saturating_sub(BEFORE);
    let cut = |chars: &[char]| {
        let end = (start + WIDTH).min(chars.len());
        let body: String = chars[start.min(end)..end].iter().collect();
        let head = if start > 0 { "…" } else { "" };
        let tail = if end < chars.len() { "…" } else { "" };
        format!("{head}{body}{tail}")
    };
    (cut(&a_chars), cut(&b_chars))
}
