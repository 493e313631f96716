//! `surveil case`: record people's actions on cases, and read a run's cases.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use surveil::cases::{action_line, parse_action};
use surveil::model::{AlertId, CaseAction, CaseActionKind, Disposition};

/// Who acts, why, when, and where the action is recorded.
#[derive(Args)]
pub struct ActionArgs {
    /// The case: its group's id, the id of the group's first alert (32 hex digits, as
    /// cases.jsonl shows).
    id: String,
    /// Who acts.
    #[arg(long)]
    by: String,
    /// Why (required to close: the reason for filing or for not filing).
    #[arg(long, default_value = "")]
    reason: String,
    /// The case-actions file the action is appended to; `surveil run --case-actions FILE`
    /// (or `cases.actions` in the configuration) replays it.
    #[arg(long, default_value = "case_actions.jsonl")]
    actions: PathBuf,
    /// When the action happened (RFC 3339 or nanoseconds since 1970): the event time the
    /// workflow orders it by. Default: now. A replay of a recorded day needs times on that day.
    #[arg(long)]
    at: Option<String>,
    /// Check the action against this run's cases.jsonl first: the case must have opened by
    /// then and not be closed.
    #[arg(long)]
    run: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum CaseCommand {
    /// Acknowledge a case: stops its deadline; an open or escalated case is assigned to you.
    Ack {
        #[command(flatten)]
        action: ActionArgs,
    },
    /// Give a case to someone (acknowledges it too).
    Assign {
        #[command(flatten)]
        action: ActionArgs,
        /// The new owner.
        #[arg(long)]
        to: String,
    },
    /// Start investigating a case (acknowledges it too).
    Review {
        #[command(flatten)]
        action: ActionArgs,
    },
    /// Hand a case to the next tier now.
    Escalate {
        #[command(flatten)]
        action: ActionArgs,
    },
    /// Decide a case: stor_filed or no_action, with the reason.
    Close {
        #[command(flatten)]
        action: ActionArgs,
        /// stor_filed (a STOR was filed) or no_action.
        #[arg(long)]
        disposition: String,
    },
    /// Print every version of a case from a run's cases.jsonl, oldest first.
    Show {
        /// The case id.
        id: String,
        /// The run's output folder (or its cases.jsonl).
        run: PathBuf,
    },
    /// List a run's cases as they ended: state, tier, owner, deadline.
    List {
        /// The run's output folder (or its cases.jsonl).
        run: PathBuf,
        /// Only cases in this state (open, assigned, under_review, escalated, closed).
        #[arg(long)]
        state: Option<String>,
    },
}

/// Runs a `surveil case` command.
pub fn case(command: CaseCommand) -> Result<()> {
    let (args, kind) = match command {
        CaseCommand::Show { id, run } => return show(&id, &run),
        CaseCommand::List { run, state } => return list(&run, state.as_deref()),
        CaseCommand::Ack { action } => (action, CaseActionKind::Ack),
        CaseCommand::Assign { action, to } => (action, CaseActionKind::Assign { to }),
        CaseCommand::Review { action } => (action, CaseActionKind::Review),
        CaseCommand::Escalate { action } => (action, CaseActionKind::Escalate),
        CaseCommand::Close { action, disposition } => {
            let parsed = Disposition::parse(&disposition)
                .with_context(|| format!("--disposition {disposition:?}: stor_filed or no_action"))?;
            (action, CaseActionKind::Close { disposition: parsed })
        }
    };
    record(args, kind)
}

fn record(args: ActionArgs, kind: CaseActionKind) -> Result<()> {
    let case = AlertId::parse(&args.id)
        .with_context(|| format!("{:?} is not a case id (32 hexadecimal digits, as cases.jsonl shows)", args.id))?;
    let time = crate::time_arg("--at", args.at.as_deref())?;
    let action = CaseAction {
        time,
        case,
        kind,
        by: args.by.trim().to_string(),
        reason: args.reason.trim().to_string(),
        source: 0,
        line: 0,
        offset: 0,
    };
    // The same checks a replay makes when it reads the line.
    parse_action(&action_line(&action)).map_err(|rejection| anyhow::anyhow!("{}", rejection.detail))?;
    if let Some(run) = &args.run {
        check_against_run(&action, run)?;
    }
    surveil::cases::append_action(&args.actions, &action)
        .with_context(|| format!("cannot write the case-actions file {}", args.actions.display()))?;
    eprintln!(
        "recorded {} on case {} in {} (replayed by `surveil run --case-actions {}`)",
        action.kind.as_str(),
        action.case,
        args.actions.display(),
        args.actions.display()
    );
    Ok(())
}

/// The versions of each case in a run's cases.jsonl (the folder or the file), oldest first.
fn read_cases(run: &Path) -> Result<(PathBuf, BTreeMap<String, Vec<serde_json::Value>>)> {
    let path = if run.is_dir() { run.join(surveil::output::CASES) } else { run.to_path_buf() };
    let cases = surveil::reports::case_versions(&path)?;
    Ok((path, cases))
}

fn check_against_run(action: &CaseAction, run: &Path) -> Result<()> {
    let (path, cases) = read_cases(run)?;
    let id = action.case.to_string();
    let time = surveil::ingest::time::format_time(action.time);
    // RFC 3339 with nanoseconds in UTC sorts as text.
    let Some(last) = cases.get(&id).and_then(|v| v.iter().rev().find(|c| c["time"].as_str() <= Some(time.as_str())))
    else {
        bail!("{} has no case {id} opened by {time}", path.display());
    };
    if last["state"] == "closed" {
        bail!(
            "case {id} was closed at {} ({}: {}); a closed case takes no further actions",
            last["time"].as_str().unwrap_or("?"),
            last["disposition"].as_str().unwrap_or("?"),
            last["reason"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

fn show(id: &str, run: &Path) -> Result<()> {
    let (path, cases) = read_cases(run)?;
    let Some(versions) = cases.get(id) else { bail!("{} has no case {id}", path.display()) };
    let mut out = String::new();
    for version in versions {
        out.push_str(&format!("{version}\n"));
    }
    crate::write_stdout(&out)
}

fn list(run: &Path, state: Option<&str>) -> Result<()> {
    const STATES: [&str; 5] = ["open", "assigned", "under_review", "escalated", "closed"];
    if let Some(state) = state
        && !STATES.contains(&state)
    {
        bail!("--state {state:?}: one of {}", STATES.join(", "));
    }
    let (_, cases) = read_cases(run)?;
    let mut out = format!(
        "{:<32}  {:<12}  {:<8}  {:<16}  {:<24}  {:<30}  {}\n",
        "case", "state", "tier", "rule", "owner", "deadline", "versions"
    );
    for (id, versions) in &cases {
        let Some(last) = versions.last() else { continue };
        let text = |field: &str| last[field].as_str().unwrap_or("").to_string();
        if state.is_some_and(|s| text("state") != s) {
            continue;
        }
        out.push_str(&format!(
            "{id:<32}  {:<12}  {:<8}  {:<16}  {:<24}  {:<30}  {}\n",
            text("state"),
            text("tier"),
            text("rule"),
            text("assignee"),
            text("deadline"),
            versions.len()
        ));
    }
    crate::write_stdout(&out)
}
