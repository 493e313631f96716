//! Live metrics of a run, in the Prometheus text format: what has been read, refused, written
//! and alerted, how far the watermark is, and where the workers spend their time.
//!
//! A [`Metrics`] is shared by the run and whoever shows it: the run's sources count into its
//! [`ReadProgress`], worker 0 copies the writer's counts and the watermark into it as it goes
//! (every 250 ms), and a timely logger on each worker adds up the time each operator is
//! scheduled. [`Metrics::render`] reads all of that when it is asked; [`serve`] answers
//! `GET /metrics` with it. In a cluster each process serves its own: process 0's has the
//! alerts and the writer's counts, every process its own reading and operators.
//!
//! The exposition is a few counter and gauge families written by hand: the format is a
//! line per series, and a registry crate would add a second copy of counters the run already
//! keeps.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::ingest::ReadProgress;
use crate::model::EventKind;
use crate::output::WrittenCounts;

/// The watermark when no event time has been passed yet.
const NO_WATERMARK: u64 = 0;

/// The live counters of one run (one process of a cluster).
#[derive(Debug)]
pub struct Metrics {
    started: Instant,
    inputs: Mutex<Option<(Arc<ReadProgress>, Vec<String>)>>,
    written: Mutex<WrittenCounts>,
    /// The frontier of worker 0's probe: event time (ns since the epoch) that every event
    /// before has been processed; `u64::MAX` once the run is complete.
    watermark: AtomicU64,
    /// Records the sources sent that are not yet behind the watermark, summed over the
    /// workers (kept by the sources: `SourceOptions::in_flight_gauge`).
    in_flight: Arc<AtomicI64>,
    /// Seconds each operator (by name) was scheduled, summed over this process's workers.
    busy: Mutex<BTreeMap<String, Duration>>,
    /// When the run's checkpoints were written, when it keeps them.
    checkpoint: Mutex<Option<Arc<crate::checkpoint::CheckpointClock>>>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            started: Instant::now(),
            inputs: Mutex::new(None),
            written: Mutex::new(WrittenCounts::default()),
            watermark: AtomicU64::new(NO_WATERMARK),
            in_flight: Arc::default(),
            busy: Mutex::new(BTreeMap::new()),
            checkpoint: Mutex::new(None),
        }
    }
}

impl Metrics {
    /// Counts the run's reading from `progress`, whose inputs are named by `sources`.
    pub fn watch_inputs(&self, progress: Arc<ReadProgress>, sources: Vec<String>) {
        if let Ok(mut inputs) = self.inputs.lock() {
            *inputs = Some((progress, sources));
        }
    }

    /// Reports the age of the run's checkpoints from `clock`.
    pub fn watch_checkpoints(&self, clock: Arc<crate::checkpoint::CheckpointClock>) {
        if let Ok(mut checkpoint) = self.checkpoint.lock() {
            *checkpoint = Some(clock);
        }
    }

    /// The writer's counts so far.
    pub fn set_written(&self, counts: &WrittenCounts) {
        if let Ok(mut written) = self.written.lock() {
            written.alerts_by_rule.clone_from(&counts.alerts_by_rule);
            written.alerts_by_rule_and_severity.clone_from(&counts.alerts_by_rule_and_severity);
            written.alerts_by_tier.clone_from(&counts.alerts_by_tier);
            written.dead_letters_by_reason.clone_from(&counts.dead_letters_by_reason);
            written.late_events = counts.late_events;
            written.ratio_values = counts.ratio_values;
            written.notices_by_route.clone_from(&counts.notices_by_route);
        }
    }

    /// The watermark: event time (ns since the epoch) before which everything is processed;
    /// `None` once the run is complete.
    pub fn set_watermark(&self, watermark: Option<u64>) {
        self.watermark.store(watermark.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The gauge the sources keep their records in flight in.
    pub fn in_flight_gauge(&self) -> Arc<AtomicI64> {
        self.in_flight.clone()
    }

    /// Adds `time` to the busy time of the operator `name`.
    pub fn add_busy(&self, name: &str, time: Duration) {
        if let Ok(mut busy) = self.busy.lock() {
            match busy.get_mut(name) {
                Some(total) => *total += time,
                None => {
                    busy.insert(name.to_string(), time);
                }
            }
        }
    }

    /// The Prometheus text exposition of everything counted so far.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        family(&mut out, "surveil_uptime_seconds", "gauge", "Seconds since the run started.");
        sample(&mut out, "surveil_uptime_seconds", &[], self.started.elapsed().as_secs_f64());

        if let Ok(inputs) = self.inputs.lock()
            && let Some((progress, sources)) = inputs.as_ref()
        {
            let name = |source: u32| sources.get(source as usize).cloned().unwrap_or_else(|| source.to_string());
            family(&mut out, "surveil_events_read_total", "counter", "Events read, by input and kind.");
            for (source, counts) in progress.events_by_source() {
                for kind in EventKind::ALL {
                    let n = counts[kind.index()];
                    if n > 0 {
                        sample(
                            &mut out,
                            "surveil_events_read_total",
                            &[("input", &name(source)), ("kind", kind.as_str())],
                            n as f64,
                        );
                    }
                }
            }
            family(
                &mut out,
                "surveil_events_incomplete_total",
                "counter",
                "Events naming reference data the files lack at their time, by input and missing field.",
            );
            for (source, counts) in progress.incomplete_by_source() {
                for (field, n) in crate::reference::Missing::FIELDS.iter().zip(counts) {
                    if n > 0 {
                        let labels = [("input", name(source)), ("field", field.to_string())];
                        let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                        sample(&mut out, "surveil_events_incomplete_total", &labels, n as f64);
                    }
                }
            }
            family(&mut out, "surveil_read_bytes_total", "counter", "Bytes read from the inputs.");
            sample(&mut out, "surveil_read_bytes_total", &[], progress.bytes() as f64);
            let lines = progress.lines();
            family(&mut out, "surveil_lines_total", "counter", "Lines read, by what became of them.");
            for (what, n) in [
                ("accepted", lines.accepted),
                ("rejected", lines.rejected),
                ("header", lines.header),
                ("blank", lines.blank),
            ] {
                sample(&mut out, "surveil_lines_total", &[("outcome", what)], n as f64);
            }
        }

        if let Ok(written) = self.written.lock() {
            family(&mut out, "surveil_alerts_total", "counter", "Alerts written, by rule and severity.");
            for ((rule, severity), n) in &written.alerts_by_rule_and_severity {
                sample(&mut out, "surveil_alerts_total", &[("rule", rule), ("severity", severity)], *n as f64);
            }
            family(&mut out, "surveil_alerts_by_tier_total", "counter", "Triaged alerts written, by tier.");
            for (tier, n) in &written.alerts_by_tier {
                sample(&mut out, "surveil_alerts_by_tier_total", &[("tier", tier)], *n as f64);
            }
            family(&mut out, "surveil_dead_letters_total", "counter", "Records refused, by reason.");
            for (reason, n) in &written.dead_letters_by_reason {
                sample(&mut out, "surveil_dead_letters_total", &[("reason", reason)], *n as f64);
            }
            family(&mut out, "surveil_late_events_total", "counter", "Events that arrived behind the watermark.");
            sample(&mut out, "surveil_late_events_total", &[], written.late_events as f64);
            family(&mut out, "surveil_notices_total", "counter", "Notices sent, by route.");
            for (route, n) in &written.notices_by_route {
                sample(&mut out, "surveil_notices_total", &[("route", route)], *n as f64);
            }
        }

        let watermark = self.watermark.load(Ordering::Relaxed);
        let known = watermark != NO_WATERMARK && watermark != u64::MAX;
        family(
            &mut out,
            "surveil_watermark_seconds",
            "gauge",
            "Event time (Unix seconds) before which everything is processed: the replay position of files.",
        );
        if known {
            sample(&mut out, "surveil_watermark_seconds", &[], watermark as f64 / 1e9);
        }
        family(
            &mut out,
            "surveil_watermark_lag_seconds",
            "gauge",
            "Wall clock minus the watermark: how far a live run is behind.",
        );
        if known {
            sample(&mut out, "surveil_watermark_lag_seconds", &[], now_ns.saturating_sub(watermark) as f64 / 1e9);
        }
        family(
            &mut out,
            "surveil_complete",
            "gauge",
            "1 once the dataflow has processed everything it read (to the inputs' end, or to where it was stopped).",
        );
        sample(&mut out, "surveil_complete", &[], f64::from(u8::from(watermark == u64::MAX)));
        family(&mut out, "surveil_records_in_flight", "gauge", "Events read but not yet past the watermark.");
        sample(&mut out, "surveil_records_in_flight", &[], self.in_flight.load(Ordering::Relaxed).max(0) as f64);

        if let Ok(busy) = self.busy.lock() {
            family(
                &mut out,
                "surveil_operator_busy_seconds_total",
                "counter",
                "Seconds each dataflow operator was scheduled, over this process's workers.",
            );
            for (operator, time) in busy.iter() {
                sample(&mut out, "surveil_operator_busy_seconds_total", &[("operator", operator)], time.as_secs_f64());
            }
        }
        if let Ok(checkpoint) = self.checkpoint.lock()
            && let Some(clock) = checkpoint.as_ref()
        {
            family(&mut out, "surveil_checkpoints_total", "counter", "Checkpoints written by this run.");
            sample(&mut out, "surveil_checkpoints_total", &[], clock.count() as f64);
            if let Some(ms) = clock.last_unix_ms() {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                family(&mut out, "surveil_checkpoint_age_seconds", "gauge", "Seconds since the last checkpoint.");
                sample(&mut out, "surveil_checkpoint_age_seconds", &[], now.saturating_sub(ms) as f64 / 1000.0);
            }
        }
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (key, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(key);
            out.push_str("=\"");
            for c in value.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Adds up, on one worker, the time timely schedules each operator, into `metrics`. Call
/// before building the worker's dataflows, so that their operators' names are seen.
pub fn log_operator_time(worker: &mut timely::worker::Worker, metrics: Arc<Metrics>) {
    use timely::logging::{StartStop, TimelyEvent, TimelyEventBuilder};
    let Some(mut registry) = worker.log_register() else { return };
    let mut names: std::collections::HashMap<usize, String> = std::collections::HashMap::new();
    let mut started: std::collections::HashMap<usize, Duration> = std::collections::HashMap::new();
    let mut pending: BTreeMap<usize, Duration> = BTreeMap::new();
    let mut last_flush: Option<Duration> = None;
    registry.insert::<TimelyEventBuilder, _>("timely", move |time, data| {
        if let Some(events) = data {
            for (at, event) in events.iter() {
                match event {
                    TimelyEvent::Operates(operates) => {
                        names.insert(operates.id, operates.name.clone());
                    }
                    TimelyEvent::Schedule(schedule) => match schedule.start_stop {
                        StartStop::Start => {
                            started.insert(schedule.id, *at);
                        }
                        StartStop::Stop => {
                            if let Some(start) = started.remove(&schedule.id) {
                                *pending.entry(schedule.id).or_default() += at.saturating_sub(start);
                            }
                        }
                    },
                    _ => {}
                }
            }
        }
        // Into the shared counters a few times a second, not per batch of events.
        if data.is_none() || last_flush.is_none_or(|at| time.saturating_sub(at) >= Duration::from_millis(250)) {
            last_flush = Some(*time);
            for (id, busy) in std::mem::take(&mut pending) {
                let name = names.get(&id).map(String::as_str).unwrap_or("unnamed");
                metrics.add_busy(name, busy);
            }
        }
    });
}

/// A running metrics endpoint; stops when dropped.
#[cfg(feature = "metrics")]
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
    address: std::net::SocketAddr,
}

#[cfg(feature = "metrics")]
impl MetricsServer {
    /// The address it listens on (the port chosen when 0 was asked for).
    pub fn address(&self) -> std::net::SocketAddr {
        self.address
    }
}

#[cfg(feature = "metrics")]
impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Why the metrics endpoint cannot start.
#[derive(Debug, thiserror::Error)]
#[error("serving metrics on {address}: {message}")]
pub struct ServeError {
    /// The address asked for.
    pub address: String,
    /// What went wrong.
    pub message: String,
}

/// Serves `metrics` at `http://ADDRESS/metrics` on a thread of its own until the returned
/// server is dropped.
#[cfg(feature = "metrics")]
pub fn serve(address: &str, metrics: Arc<Metrics>) -> Result<MetricsServer, ServeError> {
    let error = |message: String| ServeError { address: address.to_string(), message };
    let socket: std::net::SocketAddr =
        address.parse().map_err(|e| error(format!("not an address (host:port, e.g. 127.0.0.1:9184): {e}")))?;
    let server = Arc::new(tiny_http::Server::http(socket).map_err(|e| error(e.to_string()))?);
    let address = server.server_addr().to_ip().unwrap_or(socket);
    let serving = server.clone();
    let thread = std::thread::Builder::new()
        .name("surveil:metrics".into())
        .spawn(move || {
            for request in serving.incoming_requests() {
                let response = match request.url().split('?').next() {
                    Some("/metrics") => {
                        let header = tiny_http::Header::from_bytes(
                            &b"Content-Type"[..],
                            &b"text/plain; version=0.0.4; charset=utf-8"[..],
                        );
                        let mut response = tiny_http::Response::from_string(metrics.render());
                        if let Ok(header) = header {
                            response.add_header(header);
                        }
                        response
                    }
                    _ => tiny_http::Response::from_string("surveil serves /metrics\n").with_status_code(404),
                };
                let _ = request.respond(response);
            }
        })
        .map_err(|e| error(e.to_string()))?;
    Ok(MetricsServer { server, thread: Some(thread), address })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_serves_the_text_format() {
        let metrics = Arc::new(Metrics::default());
        let progress = Arc::new(ReadProgress::default());
        let mut partition = progress.track(0, 0);
        let event = crate::testing::new_order("XYZ", "O1", "ACC", crate::model::Side::Buy, "10.00", 100);
        partition.read(std::slice::from_ref(&event), 64);
        metrics.watch_inputs(progress, vec!["day \"1\".csv".into()]);
        let mut counts = WrittenCounts::default();
        counts.alerts_by_rule_and_severity.insert(("wash".into(), "high".into()), 3);
        counts.dead_letters_by_reason.insert("bad_price".into(), 2);
        metrics.set_written(&counts);
        metrics.set_watermark(Some(1_700_000_000_000_000_000));
        metrics.in_flight_gauge().store(5, Ordering::Relaxed);
        metrics.add_busy("Detect", Duration::from_millis(1500));
        let text = metrics.render();
        assert!(text.contains("surveil_events_read_total{input=\"day \\\"1\\\".csv\",kind=\"new\"} 1\n"), "{text}");
        assert!(text.contains("surveil_alerts_total{rule=\"wash\",severity=\"high\"} 3\n"), "{text}");
        assert!(text.contains("surveil_dead_letters_total{reason=\"bad_price\"} 2\n"), "{text}");
        assert!(text.contains("surveil_watermark_seconds 1700000000\n"), "{text}");
        assert!(text.contains("surveil_records_in_flight 5\n"), "{text}");
        assert!(text.contains("surveil_operator_busy_seconds_total{operator=\"Detect\"} 1.5\n"), "{text}");
        assert!(text.contains("surveil_complete 0\n"), "{text}");
        // Every line is a comment or `name{labels} value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().expect("value");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
        #[cfg(feature = "metrics")]
        served(metrics);
    }

    /// The dashboard and the deployment guide name only series the run serves.
    #[test]
    fn the_documented_series_exist() {
        let metrics = Metrics::default();
        metrics.watch_inputs(Arc::new(ReadProgress::default()), Vec::new());
        let text = metrics.render();
        let families: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next()).collect();
        for (name, doc) in [
            ("docs/grafana-dashboard.json", include_str!("../docs/grafana-dashboard.json")),
            ("docs/deployment.md", include_str!("../docs/deployment.md")),
        ] {
            let mut named = 0;
            for (at, _) in doc.match_indices("surveil_") {
                let series: String = doc[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                    .collect();
                if series.starts_with("surveil_checkpoint") || !series.ends_with(|c: char| c.is_ascii_lowercase()) {
                    continue;
                }
                named += 1;
                assert!(families.contains(&series.as_str()), "{name} names {series}, which is not served");
            }
            assert!(named > 5, "{name}");
        }
    }

    #[cfg(feature = "metrics")]
    fn served(metrics: Arc<Metrics>) {
        let server = serve("127.0.0.1:0", metrics).expect("serve");
        let get = |path: &str| {
            use std::io::{Read, Write};
            let mut stream = std::net::TcpStream::connect(server.address()).expect("connect");
            write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("send");
            let mut answer = String::new();
            stream.read_to_string(&mut answer).expect("read");
            answer
        };
        let answer = get("/metrics");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("text/plain; version=0.0.4"), "{answer}");
        assert!(answer.contains("surveil_alerts_total{rule=\"wash\",severity=\"high\"} 3"), "{answer}");
        assert!(get("/").starts_with("HTTP/1.1 404"));
        assert!(serve("not an address", Arc::new(Metrics::default())).is_err());
    }
}
