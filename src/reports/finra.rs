//! FINRA Rule 3110(d) reports from a run's cases: the quarterly report of internal
//! investigations (due within ten business days after the quarter ends) and the written
//! reports of investigations that found a violation (due within five business days of their
//! completion).
//!
//! An investigation is a case ([`crate::cases`]): it commences when the case opens, is
//! completed when the case closes, and found a violation when it was closed as `stor_filed`.
//! Dates are taken in the member's time zone (by default America/New_York, FINRA's): a case
//! closed at 21:00 New York time on 31 March belongs to the first quarter, though it is already
//! 1 April in UTC. Business days are Monday to Friday but the US market holidays of the NYSE
//! calendar, which FINRA's own closures follow ([`us_market_holiday`]).

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{Datelike, NaiveDate, Weekday};
use serde::Serialize;
use serde_json::Value as Json;

use super::{ReportError, RunSource};
use crate::ingest::time::{format_time, parse_event_time};

/// The legal basis printed on every report.
pub const REGULATION: &str = "FINRA Rule 3110(d) (transaction review and investigation)";

/// A calendar quarter.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Quarter {
    /// The year.
    pub year: i32,
    /// 1 to 4.
    pub quarter: u32,
}

impl Quarter {
    /// Reads `2024Q1`, `2024-Q1` or `2024q1`.
    pub fn parse(text: &str) -> Option<Quarter> {
        let upper = text.trim().to_ascii_uppercase();
        let (year, quarter) = upper.split_once('Q')?;
        let year: i32 = year.trim_end_matches('-').parse().ok()?;
        let quarter: u32 = quarter.parse().ok()?;
        (1..=4).contains(&quarter).then_some(Quarter { year, quarter })
    }

    /// The quarter holding `date`.
    pub fn of(date: NaiveDate) -> Quarter {
        Quarter { year: date.year(), quarter: date.month0() / 3 + 1 }
    }

    /// Its first day.
    pub fn start(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, (self.quarter - 1) * 3 + 1, 1).unwrap_or_default()
    }

    /// The first day of the next quarter.
    pub fn end(self) -> NaiveDate {
        match self.quarter {
            4 => NaiveDate::from_ymd_opt(self.year + 1, 1, 1),
            q => NaiveDate::from_ymd_opt(self.year, q * 3 + 1, 1),
        }
        .unwrap_or_default()
    }
}

impl std::fmt::Display for Quarter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}Q{}", self.year, self.quarter)
    }
}

/// The date `days` business days after `date`: Monday to Friday, but market holidays.
pub fn business_days_after(date: NaiveDate, days: u32) -> NaiveDate {
    let mut day = date;
    let mut left = days;
    while left > 0 {
        day = day.succ_opt().unwrap_or(day);
        if !matches!(day.weekday(), Weekday::Sat | Weekday::Sun) && us_market_holiday(day).is_none() {
            left -= 1;
        }
    }
    day
}

/// The US market holiday `date` is, by the rules of the NYSE calendar (NYSE Rule 7.2), which
/// FINRA's office closures follow: New Year's Day, Martin Luther King Jr. Day (from 1998),
/// Washington's Birthday, Good Friday, Memorial Day, Juneteenth (from 2022), Independence Day,
/// Labor Day, Thanksgiving and Christmas. A holiday on a Saturday is observed on the Friday
/// before (but New Year's Day, which is then not observed: the year's last trading day stays
/// open), one on a Sunday on the Monday after. Unscheduled closures (national days of
/// mourning, storms) follow no rule and are not known here.
pub fn us_market_holiday(date: NaiveDate) -> Option<&'static str> {
    let year = date.year();
    let ymd = |m: u32, d: u32| NaiveDate::from_ymd_opt(year, m, d);
    // The nth `weekday` of a month (n from 1), or the last one (n = 0).
    let nth = |month: u32, weekday: Weekday, n: u8| -> Option<NaiveDate> {
        if n == 0 {
            let next = if month == 12 { NaiveDate::from_ymd_opt(year + 1, 1, 1) } else { ymd(month + 1, 1) }?;
            let mut day = next.pred_opt()?;
            while day.weekday() != weekday {
                day = day.pred_opt()?;
            }
            Some(day)
        } else {
            NaiveDate::from_weekday_of_month_opt(year, month, weekday, n)
        }
    };
    // A fixed-date holiday as observed: Saturday to Friday, Sunday to Monday.
    let observed = |month: u32, day: u32| -> Option<NaiveDate> {
        let date = ymd(month, day)?;
        match date.weekday() {
            Weekday::Sat => date.pred_opt(),
            Weekday::Sun => date.succ_opt(),
            _ => Some(date),
        }
    };
    let new_year = ymd(1, 1).and_then(|d| match d.weekday() {
        Weekday::Sat => None,
        Weekday::Sun => d.succ_opt(),
        _ => Some(d),
    });
    let holidays: [(Option<NaiveDate>, &'static str); 10] = [
        (new_year, "New Year's Day"),
        (if year >= 1998 { nth(1, Weekday::Mon, 3) } else { None }, "Martin Luther King Jr. Day"),
        (nth(2, Weekday::Mon, 3), "Washington's Birthday"),
        (easter(year).and_then(|e| e.checked_sub_days(chrono::Days::new(2))), "Good Friday"),
        (nth(5, Weekday::Mon, 0), "Memorial Day"),
        (if year >= 2022 { observed(6, 19) } else { None }, "Juneteenth National Independence Day"),
        (observed(7, 4), "Independence Day"),
        (nth(9, Weekday::Mon, 1), "Labor Day"),
        (nth(11, Weekday::Thu, 4), "Thanksgiving Day"),
        (observed(12, 25), "Christmas Day"),
    ];
    holidays.iter().find(|(day, _)| *day == Some(date)).map(|(_, name)| *name)
}

/// Easter Sunday of `year` in the Gregorian calendar (the anonymous algorithm of Meeus).
fn easter(year: i32) -> Option<NaiveDate> {
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    NaiveDate::from_ymd_opt(year, month as u32, day as u32)
}

/// FINRA's time zone, the default for the dates of its reports.
pub const FINRA_TIME_ZONE: chrono_tz::Tz = chrono_tz::America::New_York;

/// The date of `nanos` in `zone`.
pub fn date_in(nanos: u64, zone: chrono_tz::Tz) -> NaiveDate {
    chrono::DateTime::from_timestamp_nanos(nanos as i64).with_timezone(&zone).date_naive()
}

/// The first instant of `date` in `zone`, in nanoseconds since 1970.
fn start_of(date: NaiveDate, zone: chrono_tz::Tz) -> u64 {
    use chrono::TimeZone;
    let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    zone.from_local_datetime(&midnight)
        .earliest()
        .and_then(|t| t.timestamp_nanos_opt())
        .map_or(0, |n| u64::try_from(n).unwrap_or(0))
}

/// One investigation as the quarter saw it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Investigation {
    /// The case.
    pub case: String,
    /// What it is about.
    pub rule: String,
    /// Instrument.
    pub instrument: String,
    /// Account.
    pub account: String,
    /// Desk.
    pub desk: String,
    /// When it commenced (the case opened).
    pub commenced: String,
    /// Its state at the quarter's end (or its last state, for a run that ended before).
    pub status: String,
    /// Who owned it then.
    pub assignee: Option<String>,
    /// When it was completed, if it was by the quarter's end.
    pub completed: Option<String>,
    /// `violation found` (closed as stor_filed) or `no violation` (no_action).
    pub resolution: Option<String>,
    /// The reason given on closing.
    pub findings: Option<String>,
    /// Escalations by the quarter's end.
    pub escalations: u64,
}

/// A written report owed for an investigation that found a violation.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ViolationReport {
    /// The case.
    pub case: String,
    /// When the investigation was completed.
    pub completed: String,
    /// The last day to file (five business days later).
    pub due: String,
    /// The findings.
    pub findings: String,
}

/// The quarterly report.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Finra3110Report {
    /// The legal basis.
    pub regulation: &'static str,
    /// The quarter.
    pub quarter: String,
    /// The time zone its dates are in.
    pub time_zone: String,
    /// The last day to file it: ten business days after the quarter.
    pub due: String,
    /// Investigations commenced in the quarter.
    pub opened: u64,
    /// Completed in the quarter.
    pub closed: u64,
    /// Of those, with a violation found.
    pub violations_found: u64,
    /// Open at the quarter's end.
    pub pending: u64,
    /// Every investigation open at some time in the quarter, by commencement.
    pub investigations: Vec<Investigation>,
    /// The written reports owed for the violations found in the quarter.
    pub violation_reports: Vec<ViolationReport>,
    /// The run.
    pub source: RunSource,
}

/// The quarters (in `zone`) in which the run's cases commenced or were completed.
pub fn quarters(folder: &Path, zone: chrono_tz::Tz) -> Result<Vec<Quarter>, ReportError> {
    let mut all: Vec<Quarter> = versions(folder)?
        .values()
        .flatten()
        .filter(|v| v["change"] == "opened" || v["change"] == "closed")
        .filter_map(|v| v["time"].as_str().and_then(|t| parse_event_time(t.as_bytes())))
        .map(|t| Quarter::of(date_in(t, zone)))
        .collect();
    all.sort();
    all.dedup();
    Ok(all)
}

/// The versions of each case in the run's `cases.jsonl`, in order.
fn versions(folder: &Path) -> Result<BTreeMap<String, Vec<Json>>, ReportError> {
    super::case_versions(&folder.join(crate::output::CASES))
}

/// The FINRA Rule 3110(d) quarterly report of `quarter` (dates in `zone`) from the run in
/// `folder`.
pub fn finra_3110_report(folder: &Path, quarter: Quarter, zone: chrono_tz::Tz) -> Result<Finra3110Report, ReportError> {
    let (start, end) = (start_of(quarter.start(), zone), start_of(quarter.end(), zone));
    let time = |v: &Json| v["time"].as_str().and_then(|t| parse_event_time(t.as_bytes())).unwrap_or(0);
    let text = |v: &Json, field: &str| v[field].as_str().unwrap_or_default().to_string();
    let mut report = Finra3110Report {
        regulation: REGULATION,
        quarter: quarter.to_string(),
        time_zone: zone.name().to_string(),
        due: business_days_after(quarter.end().pred_opt().unwrap_or_default(), 10).to_string(),
        opened: 0,
        closed: 0,
        violations_found: 0,
        pending: 0,
        investigations: Vec::new(),
        violation_reports: Vec::new(),
        source: super::run_source(folder)?,
    };
    for (case, history) in versions(folder)? {
        let Some(first) = history.first() else { continue };
        let commenced = time(first);
        if commenced >= end {
            continue;
        }
        // The case as it stood at the quarter's end.
        let Some(last) = history.iter().rev().find(|v| time(v) < end) else { continue };
        let closed_at = history.iter().find(|v| v["change"] == "closed").map(time);
        if closed_at.is_some_and(|t| t < start) {
            continue; // completed before the quarter
        }
        let completed = closed_at.filter(|t| *t < end);
        if commenced >= start {
            report.opened += 1;
        }
        let closing = history.iter().find(|v| v["change"] == "closed" && time(v) < end);
        let violation = closing.is_some_and(|c| c["disposition"] == "stor_filed");
        match completed {
            Some(done) => {
                report.closed += 1;
                if violation {
                    report.violations_found += 1;
                    let findings = closing.map(|c| text(c, "reason")).unwrap_or_default();
                    report.violation_reports.push(ViolationReport {
                        case: case.clone(),
                        completed: format_time(done),
                        due: business_days_after(date_in(done, zone), 5).to_string(),
                        findings,
                    });
                }
            }
            None => report.pending += 1,
        }
        report.investigations.push(Investigation {
            case,
            rule: text(first, "rule"),
            instrument: text(first, "instrument"),
            account: text(first, "account"),
            desk: text(first, "desk"),
            commenced: format_time(commenced),
            status: text(last, "state"),
            assignee: last["assignee"].as_str().map(String::from),
            completed: completed.map(format_time),
            resolution: closing.map(|_| if violation { "violation found" } else { "no violation" }.to_string()),
            findings: closing.map(|c| text(c, "reason")),
            escalations: last["escalations"].as_u64().unwrap_or(0),
        });
    }
    report.investigations.sort_by(|a, b| (&a.commenced, &a.case).cmp(&(&b.commenced, &b.case)));
    Ok(report)
}

impl Finra3110Report {
    /// The investigations as CSV, with a header.
    pub fn to_csv(&self) -> String {
        let mut out = csv::Writer::from_writer(Vec::new());
        let _ = out.write_record([
            "quarter",
            "case",
            "rule",
            "instrument",
            "account",
            "desk",
            "commenced",
            "status",
            "assignee",
            "completed",
            "resolution",
            "findings",
            "escalations",
        ]);
        for i in &self.investigations {
            let _ = out.write_record([
                self.quarter.as_str(),
                &i.case,
                &i.rule,
                &i.instrument,
                &i.account,
                &i.desk,
                &i.commenced,
                &i.status,
                i.assignee.as_deref().unwrap_or(""),
                i.completed.as_deref().unwrap_or(""),
                i.resolution.as_deref().unwrap_or(""),
                i.findings.as_deref().unwrap_or(""),
                &i.escalations.to_string(),
            ]);
        }
        String::from_utf8(out.into_inner().unwrap_or_default()).unwrap_or_default()
    }

    /// A readable HTML page.
    pub fn to_html(&self) -> String {
        let e = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
        let mut h = String::from("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
        h.push_str(&format!("<title>FINRA 3110(d) report {}</title>", e(&self.quarter)));
        h.push_str(
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #bbb;\
             padding:2px 6px;text-align:left}tr.violation{background:#fdd}</style></head><body>\n",
        );
        h.push_str(&format!(
            "<h1>Internal investigations, {}</h1>\n<p>{}. Due {}. Opened {}, closed {} ({} with a violation found), \
             pending at the quarter's end {}.</p>\n",
            e(&self.quarter),
            REGULATION,
            e(&self.due),
            self.opened,
            self.closed,
            self.violations_found,
            self.pending
        ));
        h.push_str(
            "<table>\n<tr><th>case</th><th>rule</th><th>instrument</th><th>account</th><th>commenced</th>\
                    <th>status</th><th>owner</th><th>completed</th><th>resolution</th><th>findings</th></tr>\n",
        );
        for i in &self.investigations {
            h.push_str(&format!(
                "<tr{}><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td><td>{}</td></tr>\n",
                if i.resolution.as_deref() == Some("violation found") { " class=\"violation\"" } else { "" },
                e(&i.case),
                e(&i.rule),
                e(&i.instrument),
                e(&i.account),
                e(&i.commenced),
                e(&i.status),
                e(i.assignee.as_deref().unwrap_or("")),
                e(i.completed.as_deref().unwrap_or("")),
                e(i.resolution.as_deref().unwrap_or("")),
                e(i.findings.as_deref().unwrap_or(""))
            ));
        }
        h.push_str("</table>\n<h2>Written reports of violations (five business days)</h2>\n<ul>");
        for v in &self.violation_reports {
            h.push_str(&format!(
                "<li>case <code>{}</code>, completed {}: due {}. {}</li>",
                e(&v.case),
                e(&v.completed),
                e(&v.due),
                e(&v.findings)
            ));
        }
        h.push_str(&format!(
            "</ul>\n<p>Run: {} ({}), audit head <code>{}</code>.</p>\n</body></html>\n",
            e(&self.source.inputs.join(", ")),
            if self.source.complete { "complete" } else { "PARTIAL" },
            e(self.source.audit_head.as_deref().unwrap_or("none"))
        ));
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarters_and_business_days() {
        assert_eq!(Quarter::parse("2024Q1"), Some(Quarter { year: 2024, quarter: 1 }));
        assert_eq!(Quarter::parse("2024-q4"), Some(Quarter { year: 2024, quarter: 4 }));
        assert_eq!(Quarter::parse("2024Q5"), None);
        assert_eq!(Quarter::parse("Q1"), None);
        let q4 = Quarter { year: 2024, quarter: 4 };
        assert_eq!((q4.start().to_string(), q4.end().to_string()), ("2024-10-01".into(), "2025-01-01".into()));
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
        assert_eq!(Quarter::of(d("2024-03-31")), Quarter { year: 2024, quarter: 1 });
        // Friday + 5 business days = the next Friday; Saturday + 1 = Monday.
        assert_eq!(business_days_after(d("2024-03-01"), 5), d("2024-03-08"));
        assert_eq!(business_days_after(d("2024-03-02"), 1), d("2024-03-04"));
        // Q1 2024 ends on Sunday 31 March: ten business days later is Friday 12 April.
        assert_eq!(business_days_after(d("2024-03-31"), 10), d("2024-04-12"));
        // Holidays are not business days: Tuesday 18 June 2024 + 1 is Thursday 20 June (the
        // 19th is Juneteenth); Friday 20 December + 5 is Monday 30 December (Christmas).
        assert_eq!(business_days_after(d("2024-06-18"), 1), d("2024-06-20"));
        assert_eq!(business_days_after(d("2024-12-20"), 5), d("2024-12-30"));
        // Q4 2024 ends on 31 December: New Year's Day and the ten business days after it.
        assert_eq!(business_days_after(d("2024-12-31"), 10), d("2025-01-15"));
    }

    #[test]
    fn the_market_holidays_of_the_nyse_calendar() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
        // NYSE's published holidays of 2024 and 2025.
        let published: Vec<&str> = "2024-01-01 2024-01-15 2024-02-19 2024-03-29 2024-05-27 2024-06-19 2024-07-04 \
                                    2024-09-02 2024-11-28 2024-12-25 2025-01-01 2025-01-20 2025-02-17 2025-04-18 \
                                    2025-05-26 2025-06-19 2025-07-04 2025-09-01 2025-11-27 2025-12-25"
            .split_whitespace()
            .collect();
        let mut day = d("2024-01-01");
        let mut found = Vec::new();
        while day < d("2026-01-01") {
            if us_market_holiday(day).is_some() {
                found.push(day.to_string());
            }
            day = day.succ_opt().expect("next day");
        }
        assert_eq!(found, published);
        // Observed on a weekday: Independence Day 2026 (a Saturday) on Friday 3 July, Christmas
        // 2022 (a Sunday) on Monday 26 December; New Year's Day 2022 (a Saturday) not at all.
        assert_eq!(us_market_holiday(d("2026-07-03")), Some("Independence Day"));
        assert_eq!(us_market_holiday(d("2022-12-26")), Some("Christmas Day"));
        assert_eq!(us_market_holiday(d("2021-12-31")), None);
        assert_eq!(easter(2000), Some(d("2000-04-23")));
        assert_eq!(easter(2038), Some(d("2038-04-25")));
    }
}
