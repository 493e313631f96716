//! The end-of-session order-to-trade report of MiFID II RTS 9 (Commission Delegated Regulation
//! (EU) 2017/566).
//!
//! RTS 9 has a venue compute, per member and per instrument and at least at the end of every
//! trading session, the ratio of orders to transactions in number (`orders / transactions - 1`)
//! and in volume (`order volume / transaction volume - 1`) terms, counting messages with the
//! weights of its Annex (a modification counts twice), and report the breaches of its maximum.
//! The run's order-to-trade rule already counts every (account, instrument, session) that way
//! and writes its final values to `order_to_trade.jsonl`; this report reads them back, groups
//! them by the member asked for (the account, or its desk or beneficial owner from the
//! accounts file, whose counts are summed), applies the limits of the configuration, and marks
//! the breaches with the same rule the run alerts by: at least `min_messages` counted messages
//! and either ratio above its maximum.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::Value as Json;

use super::{ReportError, read};
use crate::config::Config;
use crate::model::{RatioCounts, Symbol};
use crate::reference::ReferenceData;

/// Who a row of the report is about.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Member {
    /// Each account.
    Account,
    /// The account's desk (accounts file).
    Desk,
    /// The account's beneficial owner (accounts file).
    Owner,
}

impl Member {
    /// The member named `name` (`account`, `desk`, `owner`).
    pub fn parse(name: &str) -> Option<Member> {
        match name {
            "account" => Some(Member::Account),
            "desk" => Some(Member::Desk),
            "owner" => Some(Member::Owner),
            _ => None,
        }
    }
}

/// The member shown for accounts the reference data does not place.
pub const UNASSIGNED: &str = "(unassigned)";

/// One (member, instrument) of the session.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OtrRow {
    /// The member: an account, desk or owner name; `(unassigned)` when unknown.
    pub member: String,
    /// The instrument.
    pub instrument: String,
    /// Accounts whose counts make up the row.
    pub accounts: u64,
    /// Messages counted with the Annex weights.
    pub messages: u64,
    /// Executions.
    pub transactions: u64,
    /// Order volume.
    pub order_volume: u64,
    /// Executed volume.
    pub transaction_volume: u64,
    /// `messages / max(transactions, 1) - 1`.
    pub count_ratio: f64,
    /// `order volume / max(transaction volume, 1) - 1`.
    pub volume_ratio: f64,
    /// The instrument's maximum count ratio.
    pub max_count_ratio: f64,
    /// The instrument's maximum volume ratio.
    pub max_volume_ratio: f64,
    /// Fewer counted messages than `min_messages`: not judged.
    pub below_min_messages: bool,
    /// The count ratio is above its maximum (and the row is judged).
    pub count_breach: bool,
    /// The volume ratio is above its maximum (and the row is judged).
    pub volume_breach: bool,
}

impl OtrRow {
    /// Either ratio breached.
    pub fn breach(&self) -> bool {
        self.count_breach || self.volume_breach
    }

    /// The row's totals.
    pub fn counts(&self) -> RatioCounts {
        RatioCounts {
            messages: self.messages,
            order_volume: self.order_volume,
            transactions: self.transactions,
            transaction_volume: self.transaction_volume,
        }
    }
}

/// Totals of one instrument over every member.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InstrumentTotal {
    /// The instrument.
    pub instrument: String,
    /// Members with activity.
    pub members: u64,
    /// Members in breach.
    pub breaches: u64,
    /// Messages counted.
    pub messages: u64,
    /// Executions.
    pub transactions: u64,
    /// Count ratio over every member.
    pub count_ratio: f64,
    /// Volume ratio over every member.
    pub volume_ratio: f64,
}

/// Where the report's numbers come from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OtrSource {
    /// The run.
    #[serde(flatten)]
    pub run: super::RunSource,
    /// The digest of the order-to-trade limits and sessions the run used (its audit trail's
    /// `run_started`).
    pub run_limits_sha256: Option<String>,
    /// The digest of the limits and sessions the report applies.
    pub report_limits_sha256: String,
}

/// The report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OtrReport {
    /// The regulation.
    pub regulation: &'static str,
    /// The session (local date in `sessions.timezone`).
    pub session: String,
    /// Who rows are about.
    pub member: Member,
    /// The default limits (per-instrument ones are on each row).
    pub max_count_ratio: f64,
    /// The default volume limit.
    pub max_volume_ratio: f64,
    /// Rows with fewer counted messages are not judged.
    pub min_messages: u64,
    /// Messages a modification counts for.
    pub replace_weight: u64,
    /// Where the numbers come from.
    pub source: OtrSource,
    /// Rows in breach.
    pub breaches: u64,
    /// Every (member, instrument) of the session, breaches first, then by member and instrument.
    pub rows: Vec<OtrRow>,
    /// Every instrument of the session.
    pub instruments: Vec<InstrumentTotal>,
}

/// The sessions whose final values the run in `folder` wrote.
pub fn sessions(folder: &Path) -> Result<Vec<String>, ReportError> {
    let mut sessions: Vec<String> = final_lines(folder)?.into_iter().map(|(session, ..)| session).collect();
    sessions.sort();
    sessions.dedup();
    Ok(sessions)
}

/// (session, account, instrument, counts) of every final line of `order_to_trade.jsonl`.
fn final_lines(folder: &Path) -> Result<Vec<(String, String, String, RatioCounts)>, ReportError> {
    let path = folder.join(crate::output::RATIOS);
    let text = read(&path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let invalid = |message: String| ReportError::Invalid { path: path.clone(), line: i + 1, message };
        let value: Json = serde_json::from_str(line).map_err(|e| invalid(e.to_string()))?;
        if value["final"] != Json::Bool(true) {
            continue;
        }
        let text = |key: &str| value[key].as_str().unwrap_or_default().to_string();
        let number = |key: &str| value[key].as_u64().ok_or_else(|| invalid(format!("`{key}` is not a count")));
        let counts = RatioCounts {
            messages: number("messages")?,
            order_volume: number("order_volume")?,
            transactions: number("transactions")?,
            transaction_volume: number("transaction_volume")?,
        };
        let session = text("session");
        if session.is_empty() {
            return Err(invalid("no `session`".into()));
        }
        out.push((session, text("account"), text("instrument"), counts));
    }
    Ok(out)
}

/// Adds `counts` to `total`, saturating: counts read from a file are not trusted to fit.
fn add(total: &mut RatioCounts, counts: &RatioCounts) {
    total.messages = total.messages.saturating_add(counts.messages);
    total.order_volume = total.order_volume.saturating_add(counts.order_volume);
    total.transactions = total.transactions.saturating_add(counts.transactions);
    total.transaction_volume = total.transaction_volume.saturating_add(counts.transaction_volume);
}

/// The report of `session` from the run in `folder`, with the limits of `config` and the
/// members of `reference` (loaded from `config` by [`otr_report_for`]).
pub fn otr_report(
    folder: &Path,
    session: &str,
    member: Member,
    config: &Config,
    reference: &ReferenceData,
) -> Result<OtrReport, ReportError> {
    let lines = final_lines(folder)?;
    if !lines.iter().any(|(s, ..)| s == session) {
        let mut known: Vec<&str> = lines.iter().map(|(s, ..)| s.as_str()).collect();
        known.sort();
        known.dedup();
        return Err(ReportError::NotInRun(format!(
            "the run in {} has no order-to-trade values for session {session} (it has: {})",
            folder.display(),
            if known.is_empty() { "none".to_string() } else { known.join(", ") }
        )));
    }
    let rule = &config.rules.order_to_trade;
    let member_of = |account: &str| -> String {
        let place = |pick: fn(&crate::reference::Account) -> Symbol| {
            // Members are placed where the reference data puts them last.
            let found = reference.account(Symbol::of(account.as_bytes()), u64::MAX).map(pick).filter(|s| !s.is_none());
            found.map(|s| reference.names.name(s).into_owned()).unwrap_or_else(|| UNASSIGNED.into())
        };
        match member {
            Member::Account if account.is_empty() => UNASSIGNED.into(),
            Member::Account => account.into(),
            Member::Desk => place(|a| a.desk),
            Member::Owner => place(|a| a.owner),
        }
    };
    let mut grouped: BTreeMap<(String, String), (RatioCounts, u64)> = BTreeMap::new();
    for (_, account, instrument, counts) in lines.iter().filter(|(s, ..)| s == session) {
        let entry = grouped.entry((member_of(account), instrument.clone())).or_default();
        add(&mut entry.0, counts);
        entry.1 += 1;
    }
    let mut rows: Vec<OtrRow> = grouped
        .into_iter()
        .map(|((member, instrument), (c, accounts))| {
            let limits = rule.instruments.get(&instrument);
            let max_count = limits.and_then(|l| l.max_count_ratio).unwrap_or(rule.max_count_ratio);
            let max_volume = limits.and_then(|l| l.max_volume_ratio).unwrap_or(rule.max_volume_ratio);
            let below = c.messages < rule.min_messages;
            OtrRow {
                member,
                instrument,
                accounts,
                messages: c.messages,
                transactions: c.transactions,
                order_volume: c.order_volume,
                transaction_volume: c.transaction_volume,
                count_ratio: c.count_ratio(),
                volume_ratio: c.volume_ratio(),
                max_count_ratio: max_count,
                max_volume_ratio: max_volume,
                below_min_messages: below,
                count_breach: !below && c.count_ratio() > max_count,
                volume_breach: !below && c.volume_ratio() > max_volume,
            }
        })
        .collect();
    rows.sort_by(|a, b| (!a.breach(), &a.member, &a.instrument).cmp(&(!b.breach(), &b.member, &b.instrument)));
    let mut by_instrument: BTreeMap<&str, (RatioCounts, u64, u64)> = BTreeMap::new();
    for row in &rows {
        let entry = by_instrument.entry(&row.instrument).or_default();
        add(&mut entry.0, &row.counts());
        entry.1 += 1;
        entry.2 += row.breach() as u64;
    }
    let instruments = by_instrument
        .into_iter()
        .map(|(instrument, (c, members, breaches))| InstrumentTotal {
            instrument: instrument.into(),
            members,
            breaches,
            messages: c.messages,
            transactions: c.transactions,
            count_ratio: c.count_ratio(),
            volume_ratio: c.volume_ratio(),
        })
        .collect();
    Ok(OtrReport {
        regulation: "MiFID II RTS 9, Commission Delegated Regulation (EU) 2017/566",
        session: session.into(),
        member,
        max_count_ratio: rule.max_count_ratio,
        max_volume_ratio: rule.max_volume_ratio,
        min_messages: rule.min_messages,
        replace_weight: rule.replace_weight,
        source: source(folder, config)?,
        breaches: rows.iter().filter(|r| r.breach()).count() as u64,
        rows,
        instruments,
    })
}

/// [`otr_report`] with the reference data of `config`.
pub fn otr_report_for(folder: &Path, session: &str, member: Member, config: &Config) -> Result<OtrReport, ReportError> {
    let reference = ReferenceData::load(config)?;
    otr_report(folder, session, member, config, &reference)
}

fn source(folder: &Path, config: &Config) -> Result<OtrSource, ReportError> {
    // An encrypted log opens with the configuration's key or those of the environment; without
    // them the run's limits are unknown, which the report says (`run_limits_sha256` is null).
    let keys = crate::encryption::keys_for_reading(config);
    let run_config = crate::audit::read_log(&folder.join(crate::audit::AUDIT), &keys).ok().and_then(|log| {
        let first: Json = serde_json::from_str(log.lines().next()?).ok()?;
        first["data"]["order_to_trade_sha256"].as_str().map(String::from)
    });
    Ok(OtrSource {
        run: super::run_source(folder)?,
        run_limits_sha256: run_config,
        report_limits_sha256: crate::audit::order_to_trade_digest(config),
    })
}

impl OtrReport {
    /// Whether the limits and sessions applied are those the run used (when the run recorded
    /// them).
    pub fn limits_match_run(&self) -> Option<bool> {
        self.source.run_limits_sha256.as_ref().map(|run| *run == self.source.report_limits_sha256)
    }

    /// The rows as CSV, with a header.
    pub fn to_csv(&self) -> String {
        let mut out = csv::Writer::from_writer(Vec::new());
        let header = [
            "session",
            "member",
            "instrument",
            "accounts",
            "messages",
            "transactions",
            "order_volume",
            "transaction_volume",
            "count_ratio",
            "volume_ratio",
            "max_count_ratio",
            "max_volume_ratio",
            "below_min_messages",
            "count_breach",
            "volume_breach",
        ];
        let _ = out.write_record(header);
        for r in &self.rows {
            let _ = out.write_record([
                self.session.clone(),
                r.member.clone(),
                r.instrument.clone(),
                r.accounts.to_string(),
                r.messages.to_string(),
                r.transactions.to_string(),
                r.order_volume.to_string(),
                r.transaction_volume.to_string(),
                format!("{:.4}", r.count_ratio),
                format!("{:.4}", r.volume_ratio),
                r.max_count_ratio.to_string(),
                r.max_volume_ratio.to_string(),
                r.below_min_messages.to_string(),
                r.count_breach.to_string(),
                r.volume_breach.to_string(),
            ]);
        }
        String::from_utf8(out.into_inner().unwrap_or_default()).unwrap_or_default()
    }

    /// A readable HTML page: the basis, the breaches, every row and the instruments.
    pub fn to_html(&self) -> String {
        let e = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
        let mut h = String::new();
        h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
        h.push_str(&format!("<title>Order-to-trade report, session {}</title>", e(&self.session)));
        h.push_str(
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #bbb;\
             padding:2px 6px;text-align:right}td.t,th.t{text-align:left}tr.breach{background:#fdd}</style></head><body>\n",
        );
        h.push_str(&format!("<h1>Order-to-trade ratios, session {}</h1>\n", e(&self.session)));
        h.push_str(&format!(
            "<p>{}. Ratios per {} and instrument: count = messages / transactions &minus; 1, volume = order \
             volume / executed volume &minus; 1; a modification counts {} messages. A row is judged from {} \
             messages; limits {} (count) and {} (volume) unless the instrument has its own.</p>\n",
            e(self.regulation),
            serde_json::to_value(self.member).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
            self.replace_weight,
            self.min_messages,
            self.max_count_ratio,
            self.max_volume_ratio
        ));
        h.push_str(&format!(
            "<p>Run: {} ({}), audit head <code>{}</code>.{}</p>\n",
            e(&self.source.run.inputs.join(", ")),
            if self.source.run.complete { "complete" } else { "PARTIAL: the run did not read all its input" },
            e(self.source.run.audit_head.as_deref().unwrap_or("none")),
            match self.limits_match_run() {
                Some(false) => " The limits applied are not those the run used.",
                _ => "",
            }
        ));
        h.push_str(&format!("<h2>{} breach(es)</h2>\n<table>\n<tr>", self.breaches));
        for name in ["member", "instrument", "accounts", "messages", "transactions", "order volume", "executed volume"]
        {
            h.push_str(&format!("<th class=\"t\">{name}</th>"));
        }
        h.push_str(
            "<th>count ratio</th><th>limit</th><th>volume ratio</th><th>limit</th><th class=\"t\">verdict</th></tr>\n",
        );
        for r in &self.rows {
            let verdict = match (r.below_min_messages, r.count_breach, r.volume_breach) {
                (true, ..) => "below minimum activity",
                (_, true, true) => "BREACH: count and volume",
                (_, true, false) => "BREACH: count",
                (_, false, true) => "BREACH: volume",
                _ => "within limits",
            };
            h.push_str(&format!(
                "<tr{}><td class=\"t\">{}</td><td class=\"t\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{:.2}</td><td>{}</td><td>{:.2}</td><td>{}</td><td class=\"t\">{verdict}</td></tr>\n",
                if r.breach() { " class=\"breach\"" } else { "" },
                e(&r.member),
                e(&r.instrument),
                r.accounts,
                r.messages,
                r.transactions,
                r.order_volume,
                r.transaction_volume,
                r.count_ratio,
                r.max_count_ratio,
                r.volume_ratio,
                r.max_volume_ratio
            ));
        }
        h.push_str("</table>\n<h2>Instruments</h2>\n<table>\n<tr><th class=\"t\">instrument</th><th>members</th><th>breaches</th>");
        h.push_str("<th>messages</th><th>transactions</th><th>count ratio</th><th>volume ratio</th></tr>\n");
        for i in &self.instruments {
            h.push_str(&format!(
                "<tr><td class=\"t\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td></tr>\n",
                e(&i.instrument),
                i.members,
                i.breaches,
                i.messages,
                i.transactions,
                i.count_ratio,
                i.volume_ratio
            ));
        }
        h.push_str("</table>\n</body></html>\n");
        h
    }
}
