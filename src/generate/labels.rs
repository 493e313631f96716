//! Scoring alerts against the labels of a generated day: which injected breaches were found,
//! which were missed, and which alerts match no label.

use std::collections::BTreeSet;
use std::path::Path;

use crate::model::alert::rules;

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
        let id = match rule.as_str() {
            "order_to_trade_ratio" => field(3),
            // One per account, instrument and session: the alert's first evidence is whichever
            // of its messages or executions came first.
            rules::QUOTE_STUFFING | rules::MARKING_CLOSE => String::new(),
            _ => field(5),
        };
        keys.insert((rule, field(1), field(2), id));
    }
    Ok(keys)
}

/// The keys of the alerts in an `alerts.jsonl` file, each alert in its last version: a
/// correction replaces the version it corrects, and a retracted alert counts as never raised.
pub fn alert_keys(path: &Path) -> Result<Vec<LabelKey>, LabelError> {
    let text = std::fs::read_to_string(path).map_err(|e| error(path, e))?;
    let mut versions: Vec<serde_json::Value> = Vec::new();
    let mut last: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for line in text.lines() {
        let a: serde_json::Value = serde_json::from_str(line).map_err(|e| error(path, e))?;
        let id = a["id"].as_str().unwrap_or_default().to_string();
        match last.get(&id) {
            Some(&i) if !id.is_empty() => versions[i] = a,
            _ => {
                last.insert(id, versions.len());
                versions.push(a);
            }
        }
    }
    let mut keys = Vec::new();
    for a in versions.into_iter().filter(|a| a["correction"]["kind"] != "retracted") {
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        let rule = text(&a["rule"]);
        let evidence = &a["evidence"][0];
        let id = match rule.as_str() {
            "order_to_trade_ratio" => text(&a["parameters"]["session"]),
            "self_trade" => text(&evidence["buy_order"]),
            rules::QUOTE_STUFFING | rules::MARKING_CLOSE => String::new(),
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

/// How one rule's alerts compare with its labels.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleScore {
    /// The rule.
    pub rule: String,
    /// Labelled breaches of the rule.
    pub labels: usize,
    /// Distinct alerts of the rule (by label key).
    pub alerts: usize,
    /// Labels with a matching alert.
    pub found: usize,
    /// Alerts matching no label.
    pub false_alerts: usize,
}

impl RuleScore {
    /// Share of the alerts that match a label (1 when there is no alert).
    pub fn precision(&self) -> f64 {
        if self.alerts == 0 { 1.0 } else { (self.alerts - self.false_alerts) as f64 / self.alerts as f64 }
    }

    /// Share of the labels found (1 when there is no label).
    pub fn recall(&self) -> f64 {
        if self.labels == 0 { 1.0 } else { self.found as f64 / self.labels as f64 }
    }

    /// Harmonic mean of precision and recall.
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) }
    }
}

/// Precision, recall and F1 per rule (every rule with a label or an alert, by name).
pub fn evaluate(labels: &Path, alerts: &Path) -> Result<Vec<RuleScore>, LabelError> {
    let labels = label_keys(labels)?;
    let alerts: BTreeSet<LabelKey> = alert_keys(alerts)?.into_iter().collect();
    let rules: BTreeSet<&String> = labels.iter().chain(alerts.iter()).map(|k| &k.0).collect();
    Ok(rules
        .into_iter()
        .map(|rule| {
            let of = |keys: &BTreeSet<LabelKey>| keys.iter().filter(|k| &k.0 == rule).count();
            let found = labels.iter().filter(|k| &k.0 == rule && alerts.contains(*k)).count();
            let false_alerts = alerts.iter().filter(|k| &k.0 == rule && !labels.contains(*k)).count();
            RuleScore { rule: rule.clone(), labels: of(&labels), alerts: of(&alerts), found, false_alerts }
        })
        .collect())
}

/// The hours of flow in an events file of the canonical CSV format, plain or gzip (`.gz`): from
/// its first to its last event time (the first column, nanoseconds or a timestamp the CSV reader
/// accepts).
pub fn flow_hours(events: &Path) -> Result<f64, LabelError> {
    let file = std::fs::File::open(events).map_err(|e| error(events, e))?;
    let input: Box<dyn std::io::Read> = if events.extension().is_some_and(|x| x.eq_ignore_ascii_case("gz")) {
        Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file)))
    } else {
        Box::new(file)
    };
    let mut reader = csv::Reader::from_reader(input);
    let (mut first, mut last) = (None, None);
    for record in reader.records() {
        let r = record.map_err(|e| error(events, e))?;
        let time = r.get(0).unwrap_or_default();
        let nanos = crate::ingest::time::parse_event_time(time.as_bytes())
            .ok_or_else(|| error(events, format!("event time {time:?} is not a time")))?;
        first.get_or_insert(nanos);
        last = Some(nanos);
    }
    match (first, last) {
        (Some(a), Some(b)) if b > a => Ok((b - a) as f64 / 3.6e12),
        _ => Err(error(events, "fewer than two event times: no hours of flow")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_recall_and_f1_per_rule() {
        let dir = tempfile::tempdir().expect("tempdir");
        let labels = dir.path().join("labels.csv");
        std::fs::write(
            &labels,
            "rule,instrument,account,date,time,order_id,detail\n\
             spoofing,X,A1,2024-03-01,1,O1,\n\
             spoofing,X,A1,2024-03-01,2,O2,\n\
             layering,X,A2,2024-03-01,3,O3,\n",
        )
        .expect("labels");
        let alerts = dir.path().join("alerts.jsonl");
        let alert = |rule: &str, account: &str, order: &str| {
            format!(
                r#"{{"rule":"{rule}","instrument":"X","account":"{account}","evidence":[{{"order_id":"{order}"}}]}}"#
            )
        };
        let lines = [alert("spoofing", "A1", "O1"), alert("spoofing", "A9", "O7"), alert("spoofing", "A1", "O1")];
        std::fs::write(&alerts, lines.join("\n") + "\n").expect("alerts");
        let scores = evaluate(&labels, &alerts).expect("evaluate");
        let spoofing = scores.iter().find(|s| s.rule == "spoofing").expect("spoofing");
        // A repeated alert counts once; one of two labels found; one alert matches none.
        assert_eq!((spoofing.labels, spoofing.alerts, spoofing.found, spoofing.false_alerts), (2, 2, 1, 1));
        assert_eq!((spoofing.precision(), spoofing.recall()), (0.5, 0.5));
        assert!((spoofing.f1() - 0.5).abs() < 1e-12);
        let layering = scores.iter().find(|s| s.rule == "layering").expect("layering");
        assert_eq!((layering.found, layering.recall(), layering.precision()), (0, 0.0, 1.0));
        assert_eq!(layering.f1(), 0.0);
        // Hours of flow, from a plain or a gzip file.
        let text = "event_time,kind\n1709303400000000000,new\n1709310600000000000,new\n";
        let plain = dir.path().join("events.csv");
        std::fs::write(&plain, text).expect("events");
        assert_eq!(flow_hours(&plain).expect("hours"), 2.0);
        let gz = dir.path().join("events.csv.gz");
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut encoder, text.as_bytes()).expect("compress");
        std::fs::write(&gz, encoder.finish().expect("finish")).expect("write");
        assert_eq!(flow_hours(&gz).expect("hours"), 2.0);
    }

    #[test]
    fn an_alert_counts_in_its_last_version_and_a_retracted_one_not_at_all() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("alerts.jsonl");
        let line = |id: &str, order: &str, correction: &str| {
            format!(
                r#"{{"id":"{id}","rule":"layering","instrument":"ACME","account":"A1","evidence":[{{"order_id":"{order}"}}]{correction}}}"#
            )
        };
        let text = [
            line("01", "L1", ""),
            line("02", "L2", ""),
            line("01", "L0", r#","correction":{"kind":"amended"}"#),
            line("02", "L2", r#","correction":{"kind":"retracted"}"#),
        ]
        .join("\n");
        std::fs::write(&path, text).expect("write");
        let keys = alert_keys(&path).expect("keys");
        assert_eq!(keys, vec![("layering".into(), "ACME".into(), "A1".into(), "L0".into())]);
    }
}
