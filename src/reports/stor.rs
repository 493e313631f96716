//! The suspicious transaction and order report (STOR) of MAR Article 16, in the sections of
//! the template in the Annex of Commission Delegated Regulation (EU) 2016/957, drafted from a
//! case of a finished run: its alerts and their evidence, its history, the reference data and
//! the submitter's details (`[stor]`).
//!
//! The report is a draft for a person to complete and submit: it fills what the run knows and
//! lists, field by field, what it could not fill (`missing`), rather than inventing it. It is
//! `final` only for a case closed as `stor_filed` with nothing left to fill; until then it is a
//! `draft`.
//!
//! Filing late is allowed, with the delay explained (Article 6(2)): a report made longer than
//! `stor.explain_delay_after` (default one day) after the last suspicious order or transaction
//! needs that explanation.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;
use serde_json::Value as Json;

use super::{ReportError, RunSource, read};
use crate::config::{Config, StorConfig};
use crate::ingest::time::{format_time, parse_event_time};
use crate::model::Symbol;
use crate::reference::ReferenceData;

/// The legal basis printed on every report.
pub const REGULATION: &str =
    "Regulation (EU) No 596/2014 (MAR) Article 16; Commission Delegated Regulation (EU) 2016/957, Annex";

/// One suspicious order or transaction (section 2).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StorEvent {
    /// Event time, RFC 3339.
    pub time: String,
    /// new, replace, cancel, fill, trade, quote.
    pub kind: String,
    /// Instrument name.
    pub instrument: String,
    /// Venue or segment, when the input names it.
    pub venue: Option<String>,
    /// buy or sell (orders and fills).
    pub side: Option<String>,
    /// Price, as an exact decimal.
    pub price: Option<String>,
    /// Volume.
    pub quantity: Option<u64>,
    /// The account, or the buyer and seller of a trade.
    pub parties: Vec<String>,
    /// Order ids and the record's place in its input (`file:offset`).
    pub references: Vec<String>,
}

/// An instrument of section 2.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StorInstrument {
    /// Name.
    pub name: String,
    /// ISIN (the MiFIR Article 26 identifier), when the reference data has it.
    pub isin: Option<String>,
    /// CFI code (ISO 10962), when the reference data has it.
    pub cfi: Option<String>,
    /// Currency.
    pub currency: Option<String>,
}

/// An alert of the case, as section 3 cites it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StorAlert {
    /// Alert id.
    pub id: String,
    /// Rule.
    pub rule: String,
    /// Event time.
    pub time: String,
    /// Score and tier.
    pub score: f64,
    /// Tier.
    pub tier: String,
    /// The detector's explanation.
    pub explanation: String,
}

/// Section 3: the nature of the suspicion.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Suspicion {
    /// Types of suspected abuse, with their basis in MAR.
    pub types: Vec<String>,
    /// The analyst's reasons (the case's closing reason and the reasons given on the way).
    pub reasons: Vec<String>,
    /// The alerts the case holds.
    pub alerts: Vec<StorAlert>,
}

/// A person or account the report is about (section 4), as far as the reference data knows.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Subject {
    /// The account.
    pub account: String,
    /// Its beneficial owner.
    pub owner: Option<String>,
    /// Its desk.
    pub desk: Option<String>,
    /// Its trader.
    pub trader: Option<String>,
}

/// Something attached to the report (section 6), with its digest.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Attachment {
    /// What it is.
    pub name: String,
    /// What it shows.
    pub description: String,
    /// SHA-256 of its content.
    pub sha256: String,
}

/// A STOR drafted from a case.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Stor {
    /// The legal basis.
    pub regulation: &'static str,
    /// The case.
    pub case: String,
    /// `final` for a case closed as `stor_filed` with nothing missing, else `draft`.
    pub status: &'static str,
    /// When the report was prepared: its submission, for the delay of Article 6(2).
    pub prepared_at: String,
    /// When the case was closed as `stor_filed`.
    pub decided_at: Option<String>,
    /// When the suspicion was formed (the "without delay" clock of Article 6(1)): as given, else
    /// the decision's time, with the field listed as missing.
    pub suspicion_formed_at: Option<String>,
    /// The first and last suspicious order or transaction.
    pub activity_from: String,
    /// See `activity_from`.
    pub activity_to: String,
    /// Why the report comes late, when it does (Article 6(2)).
    pub delay_explanation: Option<String>,
    /// Whether a delay explanation is required: the report comes more than
    /// `stor.explain_delay_after` after the last suspicious activity.
    pub delay_explanation_required: bool,
    /// Section 1: the submitter.
    pub submitter: StorConfig,
    /// Section 2: the orders and transactions, in time order.
    pub orders_and_transactions: Vec<StorEvent>,
    /// Section 2: their instruments.
    pub instruments: Vec<StorInstrument>,
    /// Section 3.
    pub suspicion: Suspicion,
    /// Section 4.
    pub subjects: Vec<Subject>,
    /// Section 5: the case's history, one line per version.
    pub additional_information: Vec<String>,
    /// Section 6.
    pub attachments: Vec<Attachment>,
    /// Fields the run could not fill, for the person completing the report.
    pub missing: Vec<String>,
    /// The market of each instrument around the activity (`stor.market_window` before and
    /// after), read again from the run's inputs: the chart's best bid, ask and prints.
    pub market: Vec<super::market::MarketContext>,
    /// Inputs of the run that could not be read again for the market (moved, deleted).
    pub market_unread: Vec<String>,
    /// The run.
    pub source: RunSource,
}

/// The type of abuse a rule's alerts point to, with its basis in MAR.
pub fn suspicion_type(rule: &str) -> String {
    match rule {
        "self_trade" => "Wash trade: no change in beneficial ownership (MAR Article 12(1)(a); Annex I A(c))".into(),
        "off_market_price" => {
            "Price positioning: a price at an abnormal or artificial level (MAR Article 12(1)(a)(ii))".into()
        }
        "order_to_trade" => "Orders without intention to trade: layering, spoofing or quote stuffing \
                             (MAR Article 12(2)(c))"
            .into(),
        "order_quantity_limit" | "order_notional_limit" => {
            "Order beyond the firm's limits, reviewed for false or misleading signals (MAR Article 12(1)(a)(i))".into()
        }
        "behavioural_anomaly" => "Trading unusual for the account and its peers (type to be assessed)".into(),
        other => format!("Other: alerts of rule {other}"),
    }
}

/// The lines of a JSON Lines file whose `field` is `value`: each as written and parsed.
fn lines_where(path: &Path, field: &str, value: &str) -> Result<Vec<(String, Json)>, ReportError> {
    let needle = format!("\"{field}\":\"{value}\"");
    read(path)?
        .lines()
        .enumerate()
        .filter(|(_, line)| line.contains(&needle))
        .map(|(i, line)| {
            let parsed: Json = serde_json::from_str(line).map_err(|e| ReportError::Invalid {
                path: path.into(),
                line: i + 1,
                message: e.to_string(),
            })?;
            Ok((line.to_string(), parsed))
        })
        .filter(|r| r.as_ref().map_or(true, |(_, v)| v[field] == value))
        .collect()
}

fn text(value: &Json) -> Option<String> {
    value.as_str().filter(|s| !s.is_empty()).map(String::from)
}

/// Drafts the STOR of `case` from the run in `folder`, with the reference data and submitter
/// of `config`, prepared (submitted) at `prepared_at` (ns), with when the suspicion was formed
/// and the explanation of a delay, if given.
pub fn stor_report(
    folder: &Path,
    case: &str,
    config: &Config,
    reference: &ReferenceData,
    prepared_at: u64,
    suspicion_formed_at: Option<u64>,
    delay_explanation: Option<&str>,
) -> Result<Stor, ReportError> {
    let cases_path = folder.join(crate::output::CASES);
    let version_lines = lines_where(&cases_path, "case", case)?;
    let versions: Vec<Json> = version_lines.iter().map(|(_, v)| v.clone()).collect();
    if versions.is_empty() {
        return Err(ReportError::NotInRun(format!("{} has no case {case}", cases_path.display())));
    }
    let alerts_path = folder.join(crate::output::ALERTS);
    let alert_lines = lines_where(&alerts_path, "group", case)?;
    // Each alert in its last version: a detector's correction replaces what it corrects, and a
    // retracted alert is no ground for suspicion.
    let mut alerts: Vec<Json> = Vec::new();
    for (_, a) in &alert_lines {
        match alerts.iter_mut().find(|known| known["id"] == a["id"]) {
            Some(known) => *known = a.clone(),
            None => alerts.push(a.clone()),
        }
    }
    alerts.retain(|a| a["correction"]["kind"] != "retracted");
    if alerts.is_empty() {
        return Err(ReportError::NotInRun(format!(
            "{} has no alert of case {case} that was not retracted",
            alerts_path.display()
        )));
    }
    let mut missing = Vec::new();
    let submitter = config.stor.clone();
    for (field, value) in submitter_fields(&submitter) {
        if value.is_empty() {
            missing.push(format!("section 1: {field} (stor.{field} in the configuration)"));
        }
    }

    // Section 2: the evidence of every alert, once each, in time order.
    let mut seen = BTreeSet::new();
    let mut events: Vec<(u64, StorEvent)> = Vec::new();
    let mut instruments: BTreeMap<String, StorInstrument> = BTreeMap::new();
    // The subjects: the accounts the alerts are about; for an alert about no account (an
    // off-market print), the parties of its evidence. Counterparties of an account's alert
    // stay in section 2: naming them as subjects would report people nobody suspects.
    let mut accounts: BTreeSet<String> = BTreeSet::new();
    for alert in &alerts {
        let about_account = text(&alert["account"]);
        if let Some(account) = &about_account {
            accounts.insert(account.clone());
        }
        for evidence in alert["evidence"].as_array().into_iter().flatten() {
            let key = (evidence["source"].to_string(), evidence["offset"].as_u64(), evidence["event_time_ns"].as_u64());
            if !seen.insert(key) {
                continue;
            }
            let instrument = text(&evidence["instrument"]).unwrap_or_default();
            if !instrument.is_empty() && !instruments.contains_key(&instrument) {
                let known = reference.instrument(
                    Symbol::of(instrument.as_bytes()),
                    evidence["event_time_ns"].as_u64().unwrap_or(u64::MAX),
                );
                let isin = known.map(|i| i.isin.clone()).filter(|s| !s.is_empty());
                let cfi = known.map(|i| i.cfi.clone()).filter(|s| !s.is_empty());
                let currency = known.map(|i| i.currency.clone()).filter(|s| !s.is_empty());
                if isin.is_none() {
                    missing.push(format!("section 2: ISIN of {instrument} (not in the reference data)"));
                }
                if cfi.is_none() {
                    missing.push(format!("section 2: CFI code of {instrument} (not in the reference data)"));
                }
                instruments
                    .insert(instrument.clone(), StorInstrument { name: instrument.clone(), isin, cfi, currency });
            }
            let parties: Vec<String> =
                ["account", "buyer", "seller"].iter().filter_map(|f| text(&evidence[*f])).collect();
            if about_account.is_none() {
                accounts.extend(parties.iter().cloned());
            }
            let mut references: Vec<String> =
                ["order_id", "buy_order", "sell_order"].iter().filter_map(|f| text(&evidence[*f])).collect();
            if let (Some(source), Some(offset)) = (text(&evidence["source"]), evidence["offset"].as_u64()) {
                references.push(format!("{source}:{offset}"));
            }
            events.push((
                evidence["event_time_ns"].as_u64().unwrap_or(0),
                StorEvent {
                    time: text(&evidence["event_time"]).unwrap_or_default(),
                    kind: text(&evidence["kind"]).unwrap_or_default(),
                    instrument,
                    venue: text(&evidence["venue"]),
                    side: text(&evidence["side"]),
                    price: text(&evidence["price"]),
                    quantity: evidence["quantity"].as_u64(),
                    parties,
                    references,
                },
            ));
        }
    }
    events.sort_by(|a, b| (a.0, &a.1.references).cmp(&(b.0, &b.1.references)));
    let (first, last) = match (events.first(), events.last()) {
        (Some(f), Some(l)) => (f.0, l.0),
        _ => {
            let times: Vec<u64> = alerts.iter().filter_map(|a| a["event_time_ns"].as_u64()).collect();
            (times.iter().copied().min().unwrap_or(0), times.iter().copied().max().unwrap_or(0))
        }
    };

    // Section 3: the types the rules point to and the people's reasons.
    let rules: BTreeSet<String> = alerts.iter().filter_map(|a| text(&a["rule"])).collect();
    let reasons: Vec<String> = versions
        .iter()
        .filter(|v| !v["by"].as_str().unwrap_or("").is_empty())
        .filter_map(|v| {
            text(&v["reason"]).map(|r| {
                format!("{} ({}, {})", r, text(&v["by"]).unwrap_or_default(), v["time"].as_str().unwrap_or(""))
            })
        })
        .collect();
    let suspicion = Suspicion {
        types: rules.iter().map(|r| suspicion_type(r)).collect(),
        reasons,
        alerts: alerts
            .iter()
            .map(|a| StorAlert {
                id: text(&a["id"]).unwrap_or_default(),
                rule: text(&a["rule"]).unwrap_or_default(),
                time: text(&a["event_time"]).unwrap_or_default(),
                score: a["score"].as_f64().unwrap_or(0.0),
                tier: text(&a["tier"]).unwrap_or_default(),
                explanation: text(&a["explanation"]).unwrap_or_default(),
            })
            .collect(),
    };

    // Section 4: the accounts involved, with what the reference data says of them.
    let subjects: Vec<Subject> = accounts
        .iter()
        .map(|account| {
            // As the reference data describes the account at the report's last event.
            let known = reference.account(Symbol::of(account.as_bytes()), last);
            let name = |s: Symbol| (!s.is_none()).then(|| reference.names.name(s).into_owned());
            let subject = Subject {
                account: account.clone(),
                owner: known.and_then(|a| name(a.owner)),
                desk: known.and_then(|a| name(a.desk)),
                trader: known.and_then(|a| name(a.trader)),
            };
            if subject.owner.is_none() {
                missing.push(format!(
                    "section 4: identity of the owner of account {account} (name, date of birth, national id, \
                     address; not in the reference data)"
                ));
            }
            subject
        })
        .collect();

    // When the case was decided, when the suspicion was formed, and whether the time from the
    // suspicious activity to this report needs explaining (Article 6(2)).
    let filed = versions.iter().rev().find(|v| v["state"] == "closed" && v["disposition"] == "stor_filed");
    let decided_at = filed.and_then(|v| v["time"].as_str()).and_then(|t| parse_event_time(t.as_bytes()));
    let formed_at = suspicion_formed_at.or(decided_at);
    if suspicion_formed_at.is_none() {
        missing.push(
            "when the suspicion was formed (--suspicion-formed; the case's closing as stor_filed stands in for it)"
                .into(),
        );
    }
    let allowed = config.stor.explain_delay_after.unwrap_or(std::time::Duration::from_secs(24 * 3600));
    let allowed = crate::config::nanos_of(allowed);
    let delay = prepared_at.saturating_sub(last);
    let delay_explanation_required = delay > allowed;
    let delay_explanation = delay_explanation.map(str::trim).filter(|s| !s.is_empty()).map(String::from);
    if delay_explanation_required && delay_explanation.is_none() {
        missing.push(format!(
            "explanation of the delay: the report comes {} after the last suspicious activity \
             (Article 6(2) of Delegated Regulation (EU) 2016/957; --delay-reason)",
            humantime::format_duration(std::time::Duration::from_secs(delay / 1_000_000_000))
        ));
    }
    if decided_at.is_none() {
        missing.push("the decision: the case is not closed as stor_filed".into());
    }

    // Section 5: the history of the case.
    let additional_information = versions
        .iter()
        .map(|v| {
            let by = text(&v["by"]).unwrap_or_else(|| "surveil".into());
            let reason = text(&v["reason"]).map(|r| format!(": {r}")).unwrap_or_default();
            format!(
                "{} {} by {by} (state {}, tier {}){reason}",
                v["time"].as_str().unwrap_or(""),
                v["change"].as_str().unwrap_or(""),
                v["state"].as_str().unwrap_or(""),
                v["tier"].as_str().unwrap_or("")
            )
        })
        .collect();

    // Section 6: the alerts and the case's versions as the run wrote them, with digests.
    // The lines exactly as the run wrote them, so the digests can be checked against its files.
    let alert_lines: String = alert_lines.iter().map(|(line, _)| format!("{line}\n")).collect();
    let case_lines: String = version_lines.iter().map(|(line, _)| format!("{line}\n")).collect();
    let attachments = vec![
        Attachment {
            name: format!("alerts of case {case} (JSON Lines)"),
            description: format!(
                "{} alert(s) with their evidence, as alerts.jsonl of the run holds them",
                alerts.len()
            ),
            sha256: crate::audit::sha256_hex(alert_lines.as_bytes()),
        },
        Attachment {
            name: format!("history of case {case} (JSON Lines)"),
            description: format!("{} version(s) of the case, as cases.jsonl of the run holds them", versions.len()),
            sha256: crate::audit::sha256_hex(case_lines.as_bytes()),
        },
    ];

    let source = super::run_source(folder)?;
    // The market around the activity, for the chart.
    let window = config.stor.market_window.unwrap_or(std::time::Duration::from_secs(300));
    let window = crate::config::nanos_of(window);
    let names: Vec<String> = instruments.keys().cloned().collect();
    let paths: Vec<std::path::PathBuf> = source.inputs.iter().map(std::path::PathBuf::from).collect();
    let (market, market_unread) = super::market::market_around(
        &paths,
        config,
        reference,
        &names,
        first.saturating_sub(window),
        last.saturating_add(window),
    );
    Ok(Stor {
        regulation: REGULATION,
        case: case.into(),
        status: if decided_at.is_some() && missing.is_empty() { "final" } else { "draft" },
        prepared_at: format_time(prepared_at),
        decided_at: decided_at.map(format_time),
        suspicion_formed_at: formed_at.map(format_time),
        activity_from: format_time(first),
        activity_to: format_time(last),
        delay_explanation,
        delay_explanation_required,
        submitter,
        orders_and_transactions: events.into_iter().map(|(_, e)| e).collect(),
        instruments: instruments.into_values().collect(),
        suspicion,
        subjects,
        additional_information,
        attachments,
        missing,
        market,
        market_unread,
        source,
    })
}

/// [`stor_report`] with the reference data of `config`.
pub fn stor_report_for(
    folder: &Path,
    case: &str,
    config: &Config,
    prepared_at: u64,
    suspicion_formed_at: Option<u64>,
    delay_explanation: Option<&str>,
) -> Result<Stor, ReportError> {
    let reference = ReferenceData::load(config)?;
    stor_report(folder, case, config, &reference, prepared_at, suspicion_formed_at, delay_explanation)
}

/// The submitter's fields by name, in the template's order.
fn submitter_fields(s: &StorConfig) -> [(&'static str, &str); 12] {
    [
        ("person_name", &s.person_name),
        ("person_position", &s.person_position),
        ("entity_name", &s.entity_name),
        ("legal_form", &s.legal_form),
        ("lei", &s.lei),
        ("address", &s.address),
        ("acting_capacity", &s.acting_capacity),
        ("trading_activity", &s.trading_activity),
        ("relationship_with_subject", &s.relationship_with_subject),
        ("contact_name", &s.contact_name),
        ("contact_position", &s.contact_position),
        ("contact_email", &s.contact_email),
    ]
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

impl Stor {
    /// The report as XML, one element per field, in the template's sections.
    pub fn to_xml(&self) -> String {
        let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let el = |x: &mut String, indent: usize, name: &str, value: &str| {
            x.push_str(&format!("{}<{name}>{}</{name}>\n", "  ".repeat(indent), escape(value)));
        };
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        x.push_str(&format!("<STOR case=\"{}\" status=\"{}\">\n", escape(&self.case), self.status));
        el(&mut x, 1, "Regulation", self.regulation);
        el(&mut x, 1, "PreparedAt", &self.prepared_at);
        el(&mut x, 1, "DecidedAt", &opt(&self.decided_at));
        el(&mut x, 1, "SuspicionFormedAt", &opt(&self.suspicion_formed_at));
        el(&mut x, 1, "ActivityFrom", &self.activity_from);
        el(&mut x, 1, "ActivityTo", &self.activity_to);
        el(&mut x, 1, "DelayExplanation", &opt(&self.delay_explanation));
        x.push_str("  <Section1Submitter>\n");
        for (field, value) in submitter_fields(&self.submitter) {
            el(&mut x, 2, &camel(field), value);
        }
        x.push_str("  </Section1Submitter>\n  <Section2OrdersAndTransactions>\n");
        for i in &self.instruments {
            x.push_str("    <Instrument>\n");
            el(&mut x, 3, "Name", &i.name);
            el(&mut x, 3, "ISIN", &opt(&i.isin));
            el(&mut x, 3, "CFI", &opt(&i.cfi));
            el(&mut x, 3, "Currency", &opt(&i.currency));
            x.push_str("    </Instrument>\n");
        }
        for e in &self.orders_and_transactions {
            x.push_str("    <Event>\n");
            el(&mut x, 3, "Time", &e.time);
            el(&mut x, 3, "Kind", &e.kind);
            el(&mut x, 3, "Instrument", &e.instrument);
            el(&mut x, 3, "Venue", &opt(&e.venue));
            el(&mut x, 3, "Side", &opt(&e.side));
            el(&mut x, 3, "Price", &opt(&e.price));
            el(&mut x, 3, "Quantity", &e.quantity.map(|q| q.to_string()).unwrap_or_default());
            for p in &e.parties {
                el(&mut x, 3, "Party", p);
            }
            for r in &e.references {
                el(&mut x, 3, "Reference", r);
            }
            x.push_str("    </Event>\n");
        }
        x.push_str("  </Section2OrdersAndTransactions>\n  <Section3NatureOfSuspicion>\n");
        for t in &self.suspicion.types {
            el(&mut x, 2, "Type", t);
        }
        for r in &self.suspicion.reasons {
            el(&mut x, 2, "Reason", r);
        }
        for a in &self.suspicion.alerts {
            x.push_str(&format!(
                "    <Alert id=\"{}\" rule=\"{}\" time=\"{}\" score=\"{}\" tier=\"{}\">{}</Alert>\n",
                escape(&a.id),
                escape(&a.rule),
                escape(&a.time),
                a.score,
                escape(&a.tier),
                escape(&a.explanation)
            ));
        }
        x.push_str("  </Section3NatureOfSuspicion>\n  <Section4Subjects>\n");
        for s in &self.subjects {
            x.push_str("    <Subject>\n");
            el(&mut x, 3, "Account", &s.account);
            el(&mut x, 3, "Owner", &opt(&s.owner));
            el(&mut x, 3, "Desk", &opt(&s.desk));
            el(&mut x, 3, "Trader", &opt(&s.trader));
            x.push_str("    </Subject>\n");
        }
        x.push_str("  </Section4Subjects>\n  <Section5AdditionalInformation>\n");
        for line in &self.additional_information {
            el(&mut x, 2, "Entry", line);
        }
        x.push_str("  </Section5AdditionalInformation>\n  <Section6Attachments>\n");
        for a in &self.attachments {
            x.push_str(&format!(
                "    <Attachment sha256=\"{}\" name=\"{}\">{}</Attachment>\n",
                a.sha256,
                escape(&a.name),
                escape(&a.description)
            ));
        }
        x.push_str("  </Section6Attachments>\n  <Missing>\n");
        for m in &self.missing {
            el(&mut x, 2, "Field", m);
        }
        x.push_str("  </Missing>\n</STOR>\n");
        x
    }

    /// A readable HTML page: the sections, the evidence table and a chart of the prices of
    /// the suspicious orders and transactions over time.
    pub fn to_html(&self) -> String {
        let e = |s: &str| escape(s);
        let opt = |v: &Option<String>| e(v.as_deref().unwrap_or("—"));
        let mut h = String::new();
        h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
        h.push_str(&format!("<title>STOR {} ({})</title>", e(&self.case), self.status));
        h.push_str(
            "<style>body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}\
             td,th{border:1px solid #bbb;padding:2px 6px;text-align:left}.missing{background:#fff3cd;padding:.5em}\
             </style></head><body>\n",
        );
        h.push_str(&format!(
            "<h1>Suspicious transaction and order report: case {} ({})</h1>\n<p>{}</p>\n",
            e(&self.case),
            self.status.to_uppercase(),
            e(self.regulation)
        ));
        h.push_str(&format!(
            "<p>Prepared {}. Suspicion formed {}; decided {}. Activity from {} to {}.{}</p>\n",
            e(&self.prepared_at),
            opt(&self.suspicion_formed_at),
            opt(&self.decided_at),
            e(&self.activity_from),
            e(&self.activity_to),
            match &self.delay_explanation {
                Some(d) => format!(" Delay explained: {}.", e(d)),
                None => String::new(),
            }
        ));
        if !self.missing.is_empty() {
            h.push_str("<div class=\"missing\"><strong>To complete before submitting:</strong><ul>");
            for m in &self.missing {
                h.push_str(&format!("<li>{}</li>", e(m)));
            }
            h.push_str("</ul></div>\n");
        }
        h.push_str("<h2>1. Submitter</h2>\n<table>\n");
        for (field, value) in submitter_fields(&self.submitter) {
            h.push_str(&format!("<tr><th>{}</th><td>{}</td></tr>\n", field.replace('_', " "), e(value)));
        }
        h.push_str("</table>\n<h2>2. Orders and transactions</h2>\n<table>\n<tr><th>instrument</th><th>ISIN</th><th>CFI</th><th>currency</th></tr>\n");
        for i in &self.instruments {
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                e(&i.name),
                opt(&i.isin),
                opt(&i.cfi),
                opt(&i.currency)
            ));
        }
        h.push_str("</table>\n");
        h.push_str(&self.price_chart());
        h.push_str("<table>\n<tr><th>time</th><th>kind</th><th>instrument</th><th>venue</th><th>side</th><th>price</th><th>quantity</th><th>parties</th><th>references</th></tr>\n");
        for ev in &self.orders_and_transactions {
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                e(&ev.time),
                e(&ev.kind),
                e(&ev.instrument),
                opt(&ev.venue),
                opt(&ev.side),
                opt(&ev.price),
                ev.quantity.map(|q| q.to_string()).unwrap_or_default(),
                e(&ev.parties.join(", ")),
                e(&ev.references.join(", "))
            ));
        }
        h.push_str("</table>\n<h2>3. Nature of the suspicion</h2>\n<ul>");
        for t in &self.suspicion.types {
            h.push_str(&format!("<li>{}</li>", e(t)));
        }
        h.push_str("</ul>\n<p>Reasons:</p><ul>");
        for r in &self.suspicion.reasons {
            h.push_str(&format!("<li>{}</li>", e(r)));
        }
        h.push_str("</ul>\n<table>\n<tr><th>alert</th><th>rule</th><th>time</th><th>score</th><th>tier</th><th>explanation</th></tr>\n");
        for a in &self.suspicion.alerts {
            h.push_str(&format!(
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td></tr>\n",
                e(&a.id),
                e(&a.rule),
                e(&a.time),
                a.score,
                e(&a.tier),
                e(&a.explanation)
            ));
        }
        h.push_str("</table>\n<h2>4. Subjects</h2>\n<table>\n<tr><th>account</th><th>owner</th><th>desk</th><th>trader</th></tr>\n");
        for s in &self.subjects {
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                e(&s.account),
                opt(&s.owner),
                opt(&s.desk),
                opt(&s.trader)
            ));
        }
        h.push_str("</table>\n<h2>5. Additional information</h2>\n<ol>");
        for line in &self.additional_information {
            h.push_str(&format!("<li>{}</li>", e(line)));
        }
        h.push_str("</ol>\n<h2>6. Attachments</h2>\n<ul>");
        for a in &self.attachments {
            h.push_str(&format!("<li>{}: {} (SHA-256 <code>{}</code>)</li>", e(&a.name), e(&a.description), a.sha256));
        }
        h.push_str(&format!(
            "</ul>\n<p>Run: {} ({}), audit head <code>{}</code>.</p>\n</body></html>\n",
            e(&self.source.inputs.join(", ")),
            if self.source.complete { "complete" } else { "PARTIAL" },
            opt(&self.source.audit_head)
        ));
        h
    }

    /// An SVG chart per instrument: the market around the activity (best bid and ask as step
    /// lines, prints as grey dots) under the suspicious orders and transactions (buys as green
    /// triangles up, sells as red triangles down, others as dark dots); time across, price up.
    fn price_chart(&self) -> String {
        let mut charts = String::new();
        for instrument in &self.instruments {
            let market = self.market.iter().find(|m| m.instrument == instrument.name);
            charts.push_str(&self.instrument_chart(&instrument.name, market));
        }
        if !self.market_unread.is_empty() {
            charts.push_str(&format!(
                "<p>The market could not be read again from: {}.</p>\n",
                escape(&self.market_unread.join("; "))
            ));
        }
        charts
    }

    fn instrument_chart(&self, name: &str, market: Option<&super::market::MarketContext>) -> String {
        let price = |text: &str| text.parse::<f64>().ok();
        let points: Vec<(u64, f64, &StorEvent)> = self
            .orders_and_transactions
            .iter()
            .filter(|ev| ev.instrument == name)
            .filter_map(|ev| Some((parse_event_time(ev.time.as_bytes())?, price(ev.price.as_deref()?)?, ev)))
            .collect();
        if points.is_empty() {
            return String::new();
        }
        let empty = super::market::MarketContext::default();
        let market = market.unwrap_or(&empty);
        let quotes: Vec<(u64, Option<f64>, Option<f64>)> = market
            .quotes
            .iter()
            .map(|(t, bid, ask)| (*t, bid.as_deref().and_then(price), ask.as_deref().and_then(price)))
            .collect();
        let prints: Vec<(u64, f64)> = market.prints.iter().filter_map(|(t, p, _)| Some((*t, price(p)?))).collect();
        let times = points.iter().map(|p| p.0).chain(quotes.iter().map(|q| q.0)).chain(prints.iter().map(|p| p.0));
        let (t0, t1) = times.fold((u64::MAX, 0), |(a, b), t| (a.min(t), b.max(t)));
        let prices = points
            .iter()
            .map(|p| p.1)
            .chain(quotes.iter().flat_map(|q| [q.1, q.2]).flatten())
            .chain(prints.iter().map(|p| p.1));
        let (p0, p1) = prices.fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p), b.max(p)));
        let (w, hgt, pad) = (800.0, 280.0, 40.0);
        let span_t = (t1 - t0).max(1) as f64;
        let span_p = if p1 > p0 { p1 - p0 } else { 1.0 };
        let x = |t: u64| pad + (t - t0) as f64 / span_t * (w - 2.0 * pad);
        let y = |p: f64| hgt - pad - (p - p0) / span_p * (hgt - 2.0 * pad);
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{hgt}\" role=\"img\" \
             aria-label=\"{name}: the market and the suspicious orders and transactions\">\n\
             <rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{hgt}\" fill=\"white\" stroke=\"#bbb\"/>\n\
             <text x=\"{pad}\" y=\"15\" font-size=\"11\">{name}: {} to {}; price {} to {}; best bid (blue), \
             best ask (orange), prints (grey){}</text>\n",
            escape(&format_time(t0)),
            escape(&format_time(t1)),
            p0,
            p1,
            if market.thinned { "; thinned" } else { "" },
            name = escape(name),
        );
        // The best bid and ask as step lines: each level holds until the next quote.
        for (side, colour) in [(1usize, "#36c"), (2, "#e80")] {
            let mut path = String::new();
            let mut last: Option<(f64, f64)> = None;
            for (t, bid, ask) in &quotes {
                let level = if side == 1 { *bid } else { *ask };
                let cx = x(*t);
                match (level, last) {
                    // An unchanged level draws nothing: the line goes on to the next change.
                    (Some(p), Some((_, py))) if (y(p) - py).abs() < 0.05 => continue,
                    (Some(p), Some((_, py))) => path.push_str(&format!(" L{cx:.1},{py:.1} L{cx:.1},{:.1}", y(p))),
                    (Some(p), None) => path.push_str(&format!(" M{cx:.1},{:.1}", y(p))),
                    (None, Some((_, py))) => path.push_str(&format!(" L{cx:.1},{py:.1}")),
                    (None, None) => {}
                }
                // A side with no level ends the line until it is quoted again.
                last = level.map(|p| (cx, y(p)));
            }
            if let Some((_, py)) = last {
                path.push_str(&format!(" L{:.1},{py:.1}", x(t1)));
            }
            if !path.is_empty() {
                s.push_str(&format!(
                    "<path d=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1\"/>\n",
                    path.trim()
                ));
            }
        }
        for (t, p) in &prints {
            s.push_str(&format!("<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"1.5\" fill=\"#999\"/>\n", x(*t), y(*p)));
        }
        for (t, p, ev) in &points {
            let (cx, cy) = (x(*t), y(*p));
            let title = format!("{} {} {} @ {}", ev.time, ev.kind, ev.side.as_deref().unwrap_or(""), p);
            let shape = match ev.side.as_deref() {
                Some("buy") => format!(
                    "<polygon points=\"{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}\" fill=\"#2a2\">",
                    cx,
                    cy - 5.0,
                    cx - 4.0,
                    cy + 3.0,
                    cx + 4.0,
                    cy + 3.0
                ),
                Some("sell") => format!(
                    "<polygon points=\"{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}\" fill=\"#c22\">",
                    cx,
                    cy + 5.0,
                    cx - 4.0,
                    cy - 3.0,
                    cx + 4.0,
                    cy - 3.0
                ),
                _ => format!("<circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"3\" fill=\"#225\">"),
            };
            let close = if shape.starts_with("<polygon") { "</polygon>" } else { "</circle>" };
            s.push_str(&format!("{shape}<title>{}</title>{close}\n", escape(&title)));
        }
        s.push_str("</svg>\n");
        s
    }
}

fn camel(field: &str) -> String {
    field
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(first) => first.to_uppercase().chain(c).collect::<String>(),
                None => String::new(),
            }
        })
        .collect()
}
