//! The time-series sink: alerts and case changes as points of the InfluxDB 1.x line protocol,
//! written over HTTP(S) to InfluxDB (or VictoriaMetrics, which accepts the same writes).
//!
//! Tags are what dashboards group by and what the database indexes, so they are kept to few
//! values: the rule, the instrument, the tier (and, for cases, the change). Accounts and ids
//! are fields: an account x instrument tag set makes one series per pair, and a database
//! that indexes every series runs out of memory on a real day's accounts.
//!
//! ```text
//! surveil_alerts,rule=self_trade,instrument=ACME,tier=high score=75,count=1i,account="ACC1",id="5f0c…" 1709303400000000000
//! surveil_cases,rule=self_trade,instrument=ACME,tier=critical,change=escalated count=1i,case="5f0c…",escalations=1i 1709305200000000000
//! ```
//!
//! Points go to a thread of their own, which writes them in batches (`batch_points`, or
//! whatever has come when the stream pauses), retrying refused connections, 429 and 5xx
//! answers with a doubling backoff. The database keeps one point per series and nanosecond, so a
//! second point of a series at the same time is written a nanosecond after the previous one
//! (the `id` field tells the alerts apart). The end of a run waits up to `drain_timeout`; points that
//! could not be written are kept in the run's `timeseries_unwritten.lp`, which the InfluxDB
//! command line (`influx -import`) or a `curl --data-binary @file` write can load later.

use std::io::Write;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::TimeSeriesConfig;
use crate::webhook::{WebhookError, send, with_retries};

/// Escapes a measurement, tag key or tag value: commas, spaces and equals signs. A backslash
/// is written as `/`: InfluxDB 1.x has no escape for it, and before a separator it would
/// escape the separator (measured: Debian's InfluxDB 1.6 refuses `tag=FOO\\,` with a 400).
fn escape_tag(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            ',' | ' ' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '\\' => out.push('/'),
            '\n' | '\r' => out.push(' '),
            _ => out.push(c),
        }
    }
}

/// Appends a string field value, quoted, with quotes and backslashes escaped.
fn string_field(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(c),
        }
    }
    out.push('"');
}

/// The series of a point: its measurement and the tags with a value (an empty value has no
/// tag), as the line protocol writes them.
pub fn series(measurement: &str, tags: &[(&str, &str)]) -> String {
    let mut line = String::with_capacity(96);
    escape_tag(measurement, &mut line);
    for (key, value) in tags.iter().filter(|(_, v)| !v.is_empty()) {
        line.push(',');
        escape_tag(key, &mut line);
        line.push('=');
        escape_tag(value, &mut line);
    }
    line
}

/// A point: `measurement`, the tags with a value (an empty value has no tag), the fields, the
/// time in nanoseconds.
pub fn point(measurement: &str, tags: &[(&str, &str)], fields: &[(&str, FieldValue<'_>)], time: u64) -> String {
    point_of_series(series(measurement, tags), fields, time)
}

fn point_of_series(mut line: String, fields: &[(&str, FieldValue<'_>)], time: u64) -> String {
    for (i, (key, value)) in fields.iter().enumerate() {
        line.push(if i == 0 { ' ' } else { ',' });
        escape_tag(key, &mut line);
        line.push('=');
        match value {
            FieldValue::Float(f) => line.push_str(&format!("{}", if f.is_finite() { *f } else { 0.0 })),
            FieldValue::Integer(n) => line.push_str(&format!("{n}i")),
            FieldValue::Text(t) => string_field(t, &mut line),
        }
    }
    line.push(' ');
    line.push_str(&time.to_string());
    line
}

/// A field's value.
#[derive(Clone, Copy, Debug)]
pub enum FieldValue<'a> {
    /// A float.
    Float(f64),
    /// An integer.
    Integer(i64),
    /// Text.
    Text(&'a str),
}

/// What became of a run's points.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimeSeriesOutcome {
    /// Points the database accepted (in every attempt of a resumed run).
    pub written: u64,
    /// Points it did not: kept in the unwritten file, for a later import.
    pub unwritten: u64,
    /// The last error, when something was not written.
    pub error: Option<String>,
}

/// Writes one batch, with retries; `Err` carries the last error.
fn write_batch(
    agent: &ureq::Agent,
    url: &str,
    config: &TimeSeriesConfig,
    body: &str,
    give_up: &dyn Fn() -> Option<Instant>,
) -> Result<(), String> {
    let (_, outcome) = with_retries(config.timeout, config.backoff, config.max_attempts, give_up, |timeout| {
        let mut request = agent
            .post(url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .header("Content-Type", "text/plain; charset=utf-8");
        if let Some(user) = &config.username {
            use base64::Engine;
            let credentials = format!("{user}:{}", config.password.as_deref().unwrap_or(""));
            let token = base64::engine::general_purpose::STANDARD.encode(credentials);
            request = request.header("Authorization", &format!("Basic {token}"));
        }
        send(request, body)
    });
    match outcome {
        Ok(_) => Ok(()),
        Err(Some(failure)) => Err(failure.error),
        Err(None) => Err("not written before the end of the run's drain timeout".into()),
    }
}

/// The write endpoint of `config`: `/write?db=…&precision=ns`.
pub fn write_url(config: &TimeSeriesConfig) -> String {
    let mut db = String::new();
    for b in config.database.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            db.push(b as char);
        } else {
            db.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{}/write?db={db}&precision=ns", config.url.trim_end_matches('/'))
}

/// What a checkpoint keeps of the sink: the points queued and not yet settled (written, or
/// kept in the unwritten file), which a resumed run sends first, and the counts so far. The
/// points queued after the checkpoint come again from the resumed run's reports; those a
/// stopped attempt had written already are written again with the same series, time and
/// fields, which the database keeps as one point.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TimeSeriesCheckpoint {
    /// Lines queued and not settled, oldest first.
    pub pending: Vec<String>,
    /// Points written so far.
    pub written: u64,
    /// Points kept in the unwritten file so far.
    pub unwritten: u64,
}

/// What the delivery thread has settled, shared with the writer so that a checkpoint sees the
/// unwritten file and the count of settled points at one moment.
struct Ledger {
    /// Where points the database did not take are kept, as they fail.
    unwritten_file: std::io::BufWriter<std::fs::File>,
    /// Points settled in this attempt (queued ones, in order).
    settled: u64,
    written: u64,
    unwritten: u64,
    error: Option<String>,
    /// A failure to keep unwritten points in the file.
    file_error: Option<String>,
}

impl Ledger {
    fn settle(&mut self, batch: &mut Vec<String>, result: Result<(), String>) {
        match result {
            Ok(()) => self.written += batch.len() as u64,
            Err(error) => {
                self.error = Some(error);
                self.unwritten += batch.len() as u64;
                for line in batch.iter() {
                    if let Err(e) = writeln!(self.unwritten_file, "{line}")
                        && self.file_error.is_none()
                    {
                        self.file_error = Some(e.to_string());
                    }
                }
                if let Err(e) = self.unwritten_file.flush()
                    && self.file_error.is_none()
                {
                    self.file_error = Some(e.to_string());
                }
            }
        }
        self.settled += batch.len() as u64;
        batch.clear();
    }
}

/// The delivery thread of the time-series sink.
pub struct TimeSeriesSender {
    /// The times used in each series: the database keeps one point per series and time, so a
    /// second alert of a series at a time already used is written at the next free nanosecond
    /// (its `id` field says which alert it is).
    used: std::collections::HashMap<String, std::collections::HashSet<u64>>,
    /// Points moved that way.
    pub moved: u64,
    queue: Option<Sender<String>>,
    /// Lines queued and perhaps not settled yet, oldest first, and the number of the first.
    unsettled: std::collections::VecDeque<String>,
    first_unsettled: u64,
    ledger: std::sync::Arc<std::sync::Mutex<Ledger>>,
    deadline: std::sync::Arc<std::sync::Mutex<Option<Instant>>>,
    drain_timeout: Duration,
    thread: Option<JoinHandle<()>>,
}

impl TimeSeriesSender {
    /// Starts writing to the database of `config`, keeping points it does not take in
    /// `unwritten` (appended to as they fail); `resumed` is what a checkpoint kept of an
    /// earlier attempt: its pending points are sent first.
    pub fn start(
        config: &TimeSeriesConfig,
        unwritten: std::fs::File,
        resumed: Option<&TimeSeriesCheckpoint>,
    ) -> Result<TimeSeriesSender, WebhookError> {
        let agent = crate::webhook::http_agent(config.timeout, config.ca_file.as_deref())?;
        let (queue, points): (Sender<String>, Receiver<String>) = channel();
        let deadline = std::sync::Arc::new(std::sync::Mutex::new(None::<Instant>));
        let give_up = deadline.clone();
        let drain_timeout = config.drain_timeout;
        let ledger = std::sync::Arc::new(std::sync::Mutex::new(Ledger {
            unwritten_file: std::io::BufWriter::new(unwritten),
            settled: 0,
            written: resumed.map_or(0, |r| r.written),
            unwritten: resumed.map_or(0, |r| r.unwritten),
            error: None,
            file_error: None,
        }));
        let shared = ledger.clone();
        let config = config.clone();
        let thread = std::thread::Builder::new()
            .name("timeseries".into())
            .spawn(move || {
                let url = write_url(&config);
                let give_up = move || give_up.lock().ok().and_then(|d| *d);
                let mut batch: Vec<String> = Vec::new();
                let mut failed: Option<String> = None;
                let mut flush = |batch: &mut Vec<String>| {
                    if batch.is_empty() {
                        return;
                    }
                    // Once one write has failed for good, later ones go straight to the file:
                    // the database is not there, and the run must not wait on it per batch.
                    let result = match &failed {
                        Some(error) if give_up().is_some() => Err(error.clone()),
                        _ => write_batch(&agent, &url, &config, &(batch.join("\n") + "\n"), &give_up),
                    };
                    if let Err(error) = &result {
                        failed = Some(error.clone());
                    }
                    match shared.lock() {
                        Ok(mut ledger) => ledger.settle(batch, result),
                        Err(_) => batch.clear(),
                    }
                };
                loop {
                    match points.recv_timeout(Duration::from_millis(200)) {
                        Ok(line) => {
                            batch.push(line);
                            if batch.len() >= config.batch_points {
                                flush(&mut batch);
                            }
                        }
                        Err(RecvTimeoutError::Timeout) => flush(&mut batch),
                        Err(RecvTimeoutError::Disconnected) => {
                            flush(&mut batch);
                            break;
                        }
                    }
                }
            })
            .map_err(WebhookError::Thread)?;
        let mut sender = TimeSeriesSender {
            used: std::collections::HashMap::new(),
            moved: 0,
            queue: Some(queue),
            unsettled: std::collections::VecDeque::new(),
            first_unsettled: 0,
            ledger,
            deadline,
            drain_timeout,
            thread: Some(thread),
        };
        for line in resumed.map(|r| r.pending.as_slice()).unwrap_or_default() {
            sender.queue_line(line.clone());
        }
        Ok(sender)
    }

    /// The time a point of `series` at `time` is written at: the next free nanosecond of the
    /// series, which it then takes.
    fn place(&mut self, series: &str, time: u64) -> u64 {
        let used = match self.used.get_mut(series) {
            Some(used) => used,
            None => self.used.entry(series.to_string()).or_default(),
        };
        let mut time = time;
        if used.contains(&time) {
            self.moved += 1;
            while used.contains(&time) {
                time = time.saturating_add(1);
            }
        }
        used.insert(time);
        time
    }

    fn queue_line(&mut self, line: String) {
        let Some(queue) = &self.queue else { return };
        if queue.send(line.clone()).is_ok() {
            self.unsettled.push_back(line);
        }
        // Forget what is settled, so that only the lines in flight are kept twice.
        if self.unsettled.len() >= 1024 {
            let settled = self.ledger.lock().map_or(0, |l| l.settled);
            self.forget_to(settled);
        }
    }

    fn forget_to(&mut self, settled: u64) {
        while self.first_unsettled < settled && self.unsettled.pop_front().is_some() {
            self.first_unsettled += 1;
        }
    }

    /// Queues a point (never blocks), at the next free nanosecond of its series if its time is
    /// already used there.
    pub fn send(&mut self, measurement: &str, tags: &[(&str, &str)], fields: &[(&str, FieldValue<'_>)], time: u64) {
        let series = series(measurement, tags);
        let time = self.place(&series, time);
        self.queue_line(point_of_series(series, fields, time));
    }

    /// Takes the time a point would be written at without sending it: a resumed run's points
    /// from before its checkpoint were sent by an earlier attempt, and the points after it must
    /// still move past them.
    pub fn reserve(&mut self, measurement: &str, tags: &[(&str, &str)], time: u64) {
        let series = series(measurement, tags);
        self.place(&series, time);
    }

    /// What a checkpoint keeps, with the unwritten file flushed and synced: the pending points,
    /// the counts, and the file's length, all at one moment of the delivery thread.
    pub fn checkpoint(&mut self) -> std::io::Result<(TimeSeriesCheckpoint, u64)> {
        let ledger = self.ledger.clone();
        let mut ledger = ledger.lock().map_err(|_| std::io::Error::other("the time-series thread failed"))?;
        if let Some(error) = &ledger.file_error {
            return Err(std::io::Error::other(format!("keeping unwritten time-series points: {error}")));
        }
        self.forget_to(ledger.settled);
        ledger.unwritten_file.flush()?;
        let file = ledger.unwritten_file.get_ref();
        file.sync_data()?;
        let length = file.metadata()?.len();
        let state = TimeSeriesCheckpoint {
            pending: self.unsettled.iter().cloned().collect(),
            written: ledger.written,
            unwritten: ledger.unwritten,
        };
        Ok((state, length))
    }

    /// Stops taking points and starts the drain timeout.
    pub fn stop(&mut self) {
        if let Ok(mut deadline) = self.deadline.lock()
            && deadline.is_none()
        {
            *deadline = Some(Instant::now() + self.drain_timeout);
        }
        self.queue = None;
    }

    /// Stops (if not yet stopped), waits up to the drain timeout for the rest, syncs the
    /// unwritten file, and says what was written and what was not.
    pub fn finish(mut self) -> std::io::Result<TimeSeriesOutcome> {
        self.stop();
        let joined = self.thread.take().map(JoinHandle::join);
        let mut ledger = self.ledger.lock().map_err(|_| std::io::Error::other("the time-series thread failed"))?;
        if !matches!(joined, Some(Ok(()))) {
            ledger.error = Some("the time-series thread failed".into());
        }
        if let Some(error) = &ledger.file_error {
            return Err(std::io::Error::other(format!("keeping unwritten time-series points: {error}")));
        }
        ledger.unwritten_file.flush()?;
        ledger.unwritten_file.get_ref().sync_all()?;
        Ok(TimeSeriesOutcome { written: ledger.written, unwritten: ledger.unwritten, error: ledger.error.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_escape_what_the_line_protocol_needs() {
        let line = point(
            "surveil_alerts",
            &[("rule", "self_trade"), ("instrument", "BRK A,=x"), ("desk", "")],
            &[
                ("score", FieldValue::Float(75.0)),
                ("count", FieldValue::Integer(1)),
                ("account", FieldValue::Text("a \"b\" \\c")),
            ],
            1_709_303_400_000_000_000,
        );
        assert_eq!(
            line,
            r#"surveil_alerts,rule=self_trade,instrument=BRK\ A\,\=x score=75,count=1i,account="a \"b\" \\c" 1709303400000000000"#
        );
        // A trailing backslash cannot swallow the separator after it.
        let line = point("m", &[("instrument", "FOO\\"), ("tier", "high")], &[("count", FieldValue::Integer(1))], 5);
        assert_eq!(line, "m,instrument=FOO/,tier=high count=1i 5");
    }
}
