//! Scoring alerts against the labels of a generated day: which injected breaches were found,
//! which were missed, and which alerts match no label.

use std::collections::BTreeSet;
use std::path::Path;

/// (rule, instrument, account, order id, or session date for order-to-trade labels)
pub type LabelKey = (String, String, String, String);

/// How the alerts of a run compare with the labels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelScore {
    /// Labelled breaches.
    pub labels: usize,
    /// Labels with a matching alert.
    pub found: usize,
    /// Labels without one.
    pub missed: Vec<LabelKey>,
    /// Alerts matching no label.
    pub unexpected: Vec<LabelKey>,
}

/// Why labels or alerts could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct LabelError {
    path: String,
    message: String,
}

fn error(path: &Path, message: impl ToString) -> LabelError {
    LabelError { path: path.display().to_string(), message: message.to_string() }
}

/// The keys of `labels.csv`.
pub fn label_keys(path: &Path) -> Result<BTreeSet<LabelKey>, LabelError> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| error(path, e))?;
    let mut keys = BTreeSet::new();
    for record in reader.records() {
        let r = record.map_err(|e| error(path, e))?;
        let field = |i: usize| r.get(i).unwrap_or_default().to_string();
        let rule = field(0);
        let id = if rule == "order_to_trade_ratio" { field(3) } else { field(5) };
        keys.insert((rule, field(1), field(2), id));
    }
    Ok(keys)
}

/// The keys of the alerts in an `alerts.jsonl` file.
pub fn alert_keys(path: &Path) -> Result<Vec<LabelKey>, LabelError> {
    let text = std::fs::read_to_string(path).map_err(|e| error(path, e))?;
    let mut keys = Vec::new();
    for line in text.lines() {
        let a: serde_json::Value = serde_json::from_str(line).map_err(|e| error(path, e))?;
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        let rule = text(&a["rule"]);
        let evidence = &a["evidence"][0];
        let id = match rule.as_str() {
            "order_to_trade_ratio" => text(&a["parameters"]["session"]),
            "self_trade" => text(&evidence["buy_order"]),
            _ => text(&evidence["order_id"]),
        };
        keys.push((rule, text(&a["instrument"]), text(&a["account"]), id));
    }
    Ok(keys)
}

/// Compares the alerts of a run with the labels of the generated day it read.
pub fn score(labels: &Path, alerts: &Path) -> Result<LabelScore, LabelError> {
    let labels = label_keys(labels)?;
    let alerts = alert_keys(alerts)?;
    let found: BTreeSet<LabelKey> = alerts.iter().filter(|k| labels.contains(*k)).cloned().collect();
    Ok(LabelScore {
        labels: labels.len(),
        found: found.len(),
        missed: labels.difference(&found).cloned().collect(),
        unexpected: alerts.into_iter().filter(|k| !labels.contains(k)).collect(),
    })
}
