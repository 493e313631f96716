//! The webhook sink: a route's notices as PagerDuty Events API v2 events.
//!
//! Each notice becomes an event (`trigger` for an alert, a group's summary or an escalation;
//! `acknowledge` and `resolve` when a person acknowledges or closes the case), keyed by the
//! group's id (`dedup_key`), which is also its case's id, so that one incident follows one case
//! from its first alert to its closing.
//!
//! Delivery never holds up the dataflow: events go to a thread of their own, which sends them
//! in order, retrying connection failures, 408, 429 and 5xx answers with a doubling backoff.
//! Within an incident the order holds even through failures: once an event is undelivered,
//! the incident's later events are held behind it (a `resolve` never overtakes its `trigger`),
//! and a `trigger` after a delivered `resolve` is not sent. Every event is appended with its
//! outcome to the run's outbox, `webhook_NAME.jsonl`, as soon as the outcome is known; the end
//! of a run waits up to `drain_timeout` for the last ones, and `surveil deliver` sends what is
//! still undelivered later, so an endpoint that is down for a while loses nothing. The routing
//! key is added when an event is sent and is never written to the outbox.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::config::WebhookConfig;

/// Why a webhook cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The certificate file cannot be read or holds no certificate.
    #[error("webhook certificates {path}: {message}")]
    Certificates {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The outbox cannot be written.
    #[error("webhook outbox {path}: {source}")]
    Outbox {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The delivery thread cannot start.
    #[error("webhook thread: {0}")]
    Thread(std::io::Error),
}

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// PagerDuty's limit on an event's summary.
const MAX_SUMMARY: usize = 1024;

/// An event and what became of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// Place in the route's sequence, from 1.
    pub seq: u64,
    /// The event as sent.
    pub event: Json,
    /// Whether the endpoint accepted it.
    pub delivered: bool,
    /// Attempts made.
    pub attempts: u32,
    /// The last HTTP status, if an answer came.
    pub status: Option<u16>,
    /// Why it is not delivered (the last failure), if it is not.
    pub error: Option<String>,
    /// Not to be sent at all: a `trigger` for an incident already resolved, which would open it
    /// again.
    #[serde(default)]
    pub skipped: bool,
}

/// What a route's delivery came to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryCounts {
    /// Accepted by the endpoint.
    pub delivered: u64,
    /// Not accepted (or held behind an undelivered event of the same incident): in the outbox.
    pub undelivered: u64,
    /// Not to be sent: triggers for incidents already resolved.
    pub skipped: u64,
}

impl DeliveryCounts {
    fn count(&mut self, delivery: &Delivery) {
        match (delivery.delivered, delivery.skipped) {
            (true, _) => self.delivered += 1,
            (false, true) => self.skipped += 1,
            (false, false) => self.undelivered += 1,
        }
    }
}

/// The order PagerDuty needs within an incident: once an event of an incident is undelivered,
/// its later events are held (a `resolve` must not overtake its `trigger`), and a `trigger`
/// after a delivered `resolve` is not sent (it would open the incident again).
#[derive(Debug, Default)]
pub struct IncidentOrder {
    blocked: std::collections::HashSet<String>,
    resolved: std::collections::HashSet<String>,
}

impl IncidentOrder {
    /// Records what became of `delivery`.
    fn record(&mut self, delivery: &Delivery) {
        let key = delivery.event["dedup_key"].as_str().unwrap_or("").to_string();
        if delivery.delivered {
            if delivery.event["event_action"] == "resolve" {
                self.resolved.insert(key);
            }
        } else if !delivery.skipped {
            self.blocked.insert(key);
        }
    }

    /// Why `event` must not be sent now, if it must not.
    fn hold(&self, event: &Json) -> Option<(bool, &'static str)> {
        let key = event["dedup_key"].as_str().unwrap_or("");
        if self.blocked.contains(key) {
            return Some((false, "held: an earlier event of this incident is undelivered"));
        }
        if event["event_action"] == "trigger" && self.resolved.contains(key) {
            return Some((true, "not sent: the incident was resolved"));
        }
        None
    }
}

/// The PagerDuty severity of a tier.
fn severity(tier: &str) -> &'static str {
    match tier {
        "critical" => "critical",
        "high" => "error",
        "medium" => "warning",
        _ => "info",
    }
}

fn text<'a>(notice: &'a Json, field: &str) -> &'a str {
    notice[field].as_str().unwrap_or("")
}

/// The PagerDuty Events API v2 event of a notice (`notice` is the notice line, with its
/// `notice` kind), without its `routing_key` (a secret, added when it is sent, never kept in
/// a file), or `None` for a notice that has no event (a case change other than an escalation,
/// acknowledgement or closing).
pub fn pagerduty_event(notice: &Json) -> Option<Json> {
    let kind = text(notice, "notice");
    let (action, dedup_key, summary, tier, time) = match kind {
        "alert" => (
            "trigger",
            text(notice, "group"),
            format!(
                "{} on {}{}: {}",
                text(notice, "rule"),
                text(notice, "instrument"),
                match text(notice, "account") {
                    "" => String::new(),
                    account => format!(" by {account}"),
                },
                text(notice, "explanation")
            ),
            text(notice, "tier"),
            text(notice, "event_time"),
        ),
        "group" => (
            "trigger",
            text(notice, "group"),
            format!(
                "{} alerts of {} on {}{} from {} to {}",
                notice["count"],
                text(notice, "rule"),
                text(notice, "instrument"),
                match text(notice, "account") {
                    "" => String::new(),
                    account => format!(" by {account}"),
                },
                text(notice, "first_time"),
                text(notice, "last_time")
            ),
            text(notice, "tier"),
            text(notice, "last_time"),
        ),
        "escalation" | "case" => {
            let action = match text(notice, "change") {
                "escalated" => "trigger",
                "acknowledged" | "assigned" | "review_started" => "acknowledge",
                "closed" => "resolve",
                _ => return None,
            };
            let summary = format!(
                "case {} {} ({} on {}): {}",
                text(notice, "case"),
                text(notice, "change").replace('_', " "),
                text(notice, "rule"),
                text(notice, "instrument"),
                text(notice, "reason")
            );
            (action, text(notice, "case"), summary, text(notice, "tier"), text(notice, "time"))
        }
        _ => return None,
    };
    let mut summary = summary;
    if summary.len() > MAX_SUMMARY {
        let mut cut = MAX_SUMMARY - 3;
        while !summary.is_char_boundary(cut) {
            cut -= 1;
        }
        summary.truncate(cut);
        summary.push_str("...");
    }
    let mut event = json!({
        "event_action": action,
        "dedup_key": dedup_key,
    });
    if action == "trigger" {
        // The evidence can be large; the event carries the facts and the ids to look it up.
        let mut details = notice.clone();
        if let Json::Object(fields) = &mut details {
            if let Some(evidence) = fields.remove("evidence") {
                fields.insert("evidence_events".into(), json!(evidence.as_array().map_or(0, Vec::len)));
            }
            fields.remove("occurrences");
        }
        event["payload"] = json!({
            "summary": summary,
            "source": "surveil",
            "severity": severity(tier),
            "timestamp": time,
            "component": text(notice, "instrument"),
            "group": text(notice, "desk"),
            "class": text(notice, "rule"),
            "custom_details": details,
        });
    }
    Some(event)
}

/// Why an attempt failed, and whether another may succeed.
pub(crate) struct Failure {
    pub(crate) status: Option<u16>,
    pub(crate) error: String,
    pub(crate) retry: bool,
}

/// Sends `body` with `request`: `Ok(status)` for a 2xx answer. Connection errors, 408, 429 and
/// 5xx may pass if tried again; other answers (a malformed request, a redirect, which would turn
/// the POST into a GET) and a certificate the configured authorities do not vouch for will not.
pub(crate) fn send(request: ureq::RequestBuilder<ureq::typestate::WithBody>, body: &str) -> Result<u16, Failure> {
    // The answer's body of an accepted event is not needed: failing to read it must not make
    // the event look undelivered (and be sent twice).
    accepted(request.send(body)).map(|(status, _)| status)
}

/// [`send`], returning the answer's body with its status: an accepted answer whose body cannot
/// be read is a failure that may pass if tried again (for endpoints that recognise a repeat).
pub(crate) fn exchange(
    request: ureq::RequestBuilder<ureq::typestate::WithBody>,
    body: &[u8],
) -> Result<(u16, String), Failure> {
    answer_of(request.send(body))
}

/// Sends a request without a body (a GET) and returns the answer's body with its status, as
/// [`exchange`] does.
pub(crate) fn fetch(request: ureq::RequestBuilder<ureq::typestate::WithoutBody>) -> Result<(u16, String), Failure> {
    answer_of(request.call())
}

/// The body of an accepted answer with its status; one that cannot be read may pass if tried
/// again.
fn answer_of(sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<(u16, String), Failure> {
    let (status, mut response) = accepted(sent)?;
    let answer = response.body_mut().read_to_string().map_err(|e| Failure {
        status: Some(status),
        error: format!("HTTP {status}, but the answer could not be read: {e}"),
        retry: true,
    })?;
    Ok((status, answer))
}

/// A 2xx answer with its status, or the failure with whether it may pass if tried again.
fn accepted(
    sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<(u16, ureq::http::Response<ureq::Body>), Failure> {
    match sent {
        Ok(mut response) => {
            let status = response.status().as_u16();
            if (200..300).contains(&status) {
                return Ok((status, response));
            }
            let said: String = response.body_mut().read_to_string().unwrap_or_default().chars().take(300).collect();
            let retry = status == 429 || status >= 500 || status == 408;
            Err(Failure { status: Some(status), error: format!("HTTP {status}: {said}"), retry })
        }
        Err(e) => {
            let message = e.to_string();
            let retry = !matches!(e, ureq::Error::Tls(_) | ureq::Error::BadUri(_))
                && !message.to_ascii_lowercase().contains("certificate");
            Err(Failure { status: None, error: message, retry })
        }
    }
}

/// Runs `attempt` (given how long it may take) until it succeeds, fails for good or has been
/// made `max_attempts` times, waiting `backoff` doubled after each failure up to 30 s; no
/// attempt starts after `give_up` (when set), and none may run past it. Returns the attempts
/// made and the outcome: the last failure, or none if no attempt started.
pub(crate) fn with_retries<T>(
    timeout: Duration,
    backoff: Duration,
    max_attempts: u32,
    give_up: &dyn Fn() -> Option<Instant>,
    mut attempt: impl FnMut(Duration) -> Result<T, Failure>,
) -> (u32, Result<T, Option<Failure>>) {
    let mut wait = backoff;
    let mut attempts = 0;
    let mut last = None;
    loop {
        let mut limit = timeout;
        if let Some(deadline) = give_up() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return (attempts, Err(last));
            }
            limit = limit.min(left);
        }
        attempts += 1;
        match attempt(limit) {
            Ok(done) => return (attempts, Ok(done)),
            Err(failure) => {
                tracing::debug!(error = %failure.error, attempts, "HTTP attempt failed");
                let retry = failure.retry;
                last = Some(failure);
                if !retry || attempts >= max_attempts {
                    return (attempts, Err(last));
                }
            }
        }
        let mut pause = wait;
        if let Some(deadline) = give_up() {
            pause = pause.min(deadline.saturating_duration_since(Instant::now()));
        }
        std::thread::sleep(pause);
        wait = (wait * 2).min(MAX_BACKOFF);
    }
}

/// Sends one event with the routing key, within `timeout`.
fn post(agent: &ureq::Agent, config: &WebhookConfig, event: &Json, timeout: Duration) -> Result<u16, Failure> {
    let mut body = event.clone();
    body["routing_key"] = Json::from(config.routing_key.as_str());
    let request = agent.post(&config.url).config().timeout_global(Some(timeout)).build();
    send(request.header("Content-Type", "application/json"), &body.to_string())
}

/// An HTTP agent for `config`: its timeout, its certificate authorities.
pub fn agent(config: &WebhookConfig) -> Result<ureq::Agent, WebhookError> {
    http_agent(config.timeout, config.ca_file.as_deref())
}

/// An HTTP agent with a timeout per request, trusting the certificate authorities of
/// `ca_file` (PEM) instead of the bundled Mozilla roots when given.
pub fn http_agent(timeout: Duration, ca_file: Option<&std::path::Path>) -> Result<ureq::Agent, WebhookError> {
    let mut builder =
        ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).max_redirects(0);
    if let Some(path) = ca_file {
        let bad = |message: String| WebhookError::Certificates { path: path.to_path_buf(), message };
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let mut certificates = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            if let ureq::tls::PemItem::Certificate(c) = item.map_err(|e| bad(e.to_string()))? {
                certificates.push(c);
            }
        }
        if certificates.is_empty() {
            return Err(bad("no PEM certificate in the file".into()));
        }
        let tls =
            ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::new_with_certs(&certificates)).build();
        builder = builder.tls_config(tls);
    }
    Ok(builder.build().into())
}

/// Delivers `event` with retries: up to `max_attempts`, waiting `backoff` doubled after each
/// failure, and never past `give_up` (when set): no attempt starts after it, and none runs past
/// it.
pub fn deliver(
    agent: &ureq::Agent,
    config: &WebhookConfig,
    seq: u64,
    event: Json,
    give_up: impl Fn() -> Option<Instant>,
) -> Delivery {
    let (attempts, outcome) = with_retries(config.timeout, config.backoff, config.max_attempts, &give_up, |timeout| {
        post(agent, config, &event, timeout)
    });
    let (delivered, status, error) = match outcome {
        Ok(status) => (true, Some(status), None),
        Err(Some(failure)) => (false, failure.status, Some(failure.error)),
        Err(None) => (false, None, Some("not attempted before the end of the run's drain timeout".into())),
    };
    Delivery { seq, event, delivered, attempts, status, error, skipped: false }
}

/// [`deliver`], in the order an incident needs ([`IncidentOrder`]).
fn deliver_in_order(
    agent: &ureq::Agent,
    config: &WebhookConfig,
    seq: u64,
    event: Json,
    give_up: impl Fn() -> Option<Instant>,
    order: &mut IncidentOrder,
) -> Delivery {
    let delivery = match order.hold(&event) {
        Some((skipped, why)) => {
            Delivery { seq, event, delivered: false, attempts: 0, status: None, error: Some(why.into()), skipped }
        }
        None => deliver(agent, config, seq, event, give_up),
    };
    order.record(&delivery);
    delivery
}

/// What a checkpoint keeps of a webhook route.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WebhookCheckpoint {
    /// The place of the last event whose outcome was in the outbox.
    pub settled: u64,
    /// The events queued after it, with their places, oldest first.
    pub pending: Vec<(u64, Json)>,
}

/// What a resumed run knows of a route's earlier deliveries.
#[derive(Clone, Debug, Default)]
pub struct ResumedDeliveries {
    /// The outcomes of every event up to the checkpoint's last settled one, in order: they set
    /// the incidents' order and the counts again.
    pub history: Vec<Delivery>,
    /// The events queued and not settled at the checkpoint, with their places, oldest first:
    /// sent first.
    pub pending: Vec<(u64, Json)>,
    /// Outcomes the stopped attempts wrote after the checkpoint, by place: an event delivered
    /// (or skipped) then is not sent again.
    pub settled_later: std::collections::HashMap<u64, Delivery>,
}

impl ResumedDeliveries {
    /// Reads the outbox that stopped attempts left (every line they wrote, the later outcome
    /// of a place winning; a line torn by a kill is left out) with what the checkpoint kept of
    /// the route (nothing when the run starts over before its first checkpoint).
    pub fn read(outbox: &[u8], checkpoint: WebhookCheckpoint) -> std::io::Result<ResumedDeliveries> {
        let mut outcomes: std::collections::BTreeMap<u64, Delivery> = std::collections::BTreeMap::new();
        for line in outbox.split(|b| *b == b'\n') {
            if let Ok(delivery) = serde_json::from_slice::<Delivery>(line) {
                outcomes.insert(delivery.seq, delivery);
            }
        }
        let WebhookCheckpoint { settled, pending } = checkpoint;
        let settled_later: std::collections::HashMap<u64, Delivery> =
            outcomes.split_off(&(settled + 1)).into_iter().filter(|(_, d)| d.delivered || d.skipped).collect();
        let history: Vec<Delivery> = outcomes.into_values().collect();
        if history.len() as u64 != settled
            || pending.iter().enumerate().any(|(i, (seq, _))| *seq != settled + i as u64 + 1)
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "the outbox holds {} of the {settled} outcomes the checkpoint counts, or its pending events \
                     do not follow them",
                    history.len()
                ),
            ));
        }
        Ok(ResumedDeliveries { history, pending, settled_later })
    }
}

/// Rewrites an outbox that several attempts appended to as an uninterrupted run writes it: one
/// line per event up to place `last` (the run's last event), the last outcome of each, in
/// order (atomically: a new file renamed over it).
pub fn compact_outbox(path: &std::path::Path, last: u64) -> std::io::Result<()> {
    let text = std::fs::read(path)?;
    let mut outcomes: std::collections::BTreeMap<u64, &[u8]> = std::collections::BTreeMap::new();
    for line in text.split(|b| *b == b'\n') {
        if let Ok(delivery) = serde_json::from_slice::<Delivery>(line)
            && delivery.seq <= last
        {
            outcomes.insert(delivery.seq, line);
        }
    }
    let mut lines = Vec::with_capacity(text.len());
    for line in outcomes.values() {
        lines.extend_from_slice(line);
        lines.push(b'\n');
    }
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".new");
    let temporary = std::path::PathBuf::from(temporary);
    std::fs::write(&temporary, &lines)?;
    std::fs::File::open(&temporary)?.sync_all()?;
    std::fs::rename(&temporary, path)
}

/// What the delivery thread has settled, shared with the writer so that a checkpoint sees the
/// outbox and the last settled place at one moment.
struct Outbox {
    file: std::io::BufWriter<std::fs::File>,
    /// The place of the last event whose outcome is in the file.
    settled: u64,
}

/// A route's delivery thread.
pub struct WebhookSender {
    name: String,
    queue: Option<Sender<Json>>,
    /// Events queued and perhaps not settled, with their places, oldest first.
    unsettled: std::collections::VecDeque<(u64, Json)>,
    /// The place of the last event queued.
    queued: u64,
    outbox: std::sync::Arc<std::sync::Mutex<Outbox>>,
    deadline: std::sync::Arc<std::sync::Mutex<Option<Instant>>>,
    drain_timeout: Duration,
    thread: Option<JoinHandle<std::io::Result<DeliveryCounts>>>,
}

impl WebhookSender {
    /// Starts delivering to the webhook of route `name`, appending every event with its outcome
    /// to `outbox` as soon as it is known; `resumed` continues attempts that were stopped (their
    /// outbox, opened to append to).
    pub fn start(
        name: &str,
        config: &WebhookConfig,
        outbox: std::fs::File,
        resumed: Option<ResumedDeliveries>,
    ) -> Result<WebhookSender, WebhookError> {
        let agent = agent(config)?;
        let (queue, events): (Sender<Json>, Receiver<Json>) = channel();
        let deadline = std::sync::Arc::new(std::sync::Mutex::new(None::<Instant>));
        let give_up = deadline.clone();
        let config_for_thread = config.clone();
        let ResumedDeliveries { history, pending, mut settled_later } = resumed.unwrap_or_default();
        let settled = history.len() as u64;
        let outbox =
            std::sync::Arc::new(std::sync::Mutex::new(Outbox { file: std::io::BufWriter::new(outbox), settled }));
        let shared = outbox.clone();
        let failed = |name: &str| std::io::Error::other(format!("the webhook thread of route {name} failed"));
        let route = name.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("webhook-{name}"))
            .spawn(move || -> std::io::Result<DeliveryCounts> {
                use std::io::Write;
                let config = config_for_thread;
                let give_up = move || give_up.lock().ok().and_then(|d| *d);
                let (mut counts, mut order, mut seq) = (DeliveryCounts::default(), IncidentOrder::default(), settled);
                for delivery in &history {
                    counts.count(delivery);
                    order.record(delivery);
                }
                loop {
                    let event = match events.recv_timeout(Duration::from_millis(200)) {
                        Ok(event) => event,
                        Err(RecvTimeoutError::Timeout) => continue,
                        Err(RecvTimeoutError::Disconnected) => break,
                    };
                    seq += 1;
                    // Delivered by the attempt that was stopped: not sent twice.
                    let earlier = settled_later.remove(&seq).filter(|d| {
                        d.event["dedup_key"] == event["dedup_key"] && d.event["event_action"] == event["event_action"]
                    });
                    let (delivery, written) = match earlier {
                        Some(delivery) => {
                            order.record(&delivery);
                            (delivery, true)
                        }
                        None => (deliver_in_order(&agent, &config, seq, event, &give_up, &mut order), false),
                    };
                    counts.count(&delivery);
                    let mut outbox = shared.lock().map_err(|_| failed(&route))?;
                    // An outcome already in the outbox is not written twice; the end of the
                    // run puts the lines in order ([`compact_outbox`]).
                    if !written {
                        serde_json::to_writer(&mut outbox.file, &delivery)?;
                        outbox.file.write_all(b"\n")?;
                        outbox.file.flush()?;
                    }
                    outbox.settled = seq;
                }
                let outbox = shared.lock().map_err(|_| failed(&route))?;
                outbox.file.get_ref().sync_all()?;
                Ok(counts)
            })
            .map_err(WebhookError::Thread)?;
        let mut sender = WebhookSender {
            name: name.to_string(),
            queue: Some(queue),
            unsettled: std::collections::VecDeque::new(),
            queued: settled,
            outbox,
            deadline,
            drain_timeout: config.drain_timeout,
            thread: Some(thread),
        };
        for (_, event) in pending {
            sender.send(event);
        }
        Ok(sender)
    }

    /// Queues an event (never blocks).
    pub fn send(&mut self, event: Json) {
        if let Some(queue) = &self.queue {
            self.queued += 1;
            self.unsettled.push_back((self.queued, event.clone()));
            // The thread ends only after the queue closes, so the send cannot fail.
            let _ = queue.send(event);
            // Forget what is settled, so that only the events in flight are kept twice.
            if self.unsettled.len() >= 256 {
                let settled = self.outbox.lock().map_or(0, |o| o.settled);
                self.forget_to(settled);
            }
        }
    }

    /// Drops the queued events up to place `settled` (they are queued in order of place).
    fn forget_to(&mut self, settled: u64) {
        while self.unsettled.front().is_some_and(|(seq, _)| *seq <= settled) {
            self.unsettled.pop_front();
        }
    }

    /// What a checkpoint keeps of the route, with the outbox flushed and synced: the last
    /// settled place, the events queued after it, and the outbox's length, at one moment of the
    /// delivery thread.
    pub fn checkpoint(&mut self) -> std::io::Result<(WebhookCheckpoint, u64)> {
        let outbox = self.outbox.clone();
        let mut outbox = outbox
            .lock()
            .map_err(|_| std::io::Error::other(format!("the webhook thread of route {} failed", self.name)))?;
        let settled = outbox.settled;
        self.forget_to(settled);
        std::io::Write::flush(&mut outbox.file)?;
        let file = outbox.file.get_ref();
        file.sync_data()?;
        let state = WebhookCheckpoint { settled, pending: self.unsettled.iter().cloned().collect() };
        Ok((state, file.metadata()?.len()))
    }

    /// Stops taking events and starts the drain timeout: what is not delivered by then stays
    /// in the outbox. Several sinks stopped first and joined after share one wait.
    pub fn stop(&mut self) {
        if let Ok(mut deadline) = self.deadline.lock()
            && deadline.is_none()
        {
            *deadline = Some(Instant::now() + self.drain_timeout);
        }
        self.queue = None;
    }

    /// Stops (if not yet stopped), waits for the thread and says what the deliveries came to.
    pub fn finish(mut self) -> std::io::Result<DeliveryCounts> {
        self.stop();
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            _ => Err(std::io::Error::other(format!("the webhook thread of route {} failed", self.name))),
        }
    }
}

/// Sends again the undelivered events of an outbox (`webhook_NAME.jsonl` of a run) with
/// `config`, in order and in the order each incident needs, rewriting the outbox (atomically:
/// a new file renamed over the old) after each event, so that an interruption never leads to
/// an event being sent twice. Returns (delivered now, still undelivered).
pub fn redeliver(outbox: &std::path::Path, config: &WebhookConfig) -> Result<(u64, u64), WebhookError> {
    let io = |source: std::io::Error| WebhookError::Outbox { path: outbox.to_path_buf(), source };
    let text = std::fs::read_to_string(outbox).map_err(io)?;
    let mut deliveries = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let delivery: Delivery = serde_json::from_str(line)
            .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("line {}: {e}", i + 1))))?;
        deliveries.push(delivery);
    }
    let agent = agent(config)?;
    let save = |deliveries: &[Delivery]| -> Result<(), WebhookError> {
        let mut lines = String::new();
        for delivery in deliveries {
            lines.push_str(&serde_json::to_string(delivery).map_err(|e| io(e.into()))?);
            lines.push('\n');
        }
        let mut temporary = outbox.as_os_str().to_owned();
        temporary.push(".new");
        let temporary = std::path::PathBuf::from(temporary);
        std::fs::write(&temporary, lines.as_bytes()).map_err(io)?;
        std::fs::File::open(&temporary).and_then(|f| f.sync_all()).map_err(io)?;
        std::fs::rename(&temporary, outbox).map_err(io)
    };
    let (mut delivered, mut undelivered) = (0, 0);
    let mut order = IncidentOrder::default();
    for i in 0..deliveries.len() {
        let done = &deliveries[i];
        if done.delivered || done.skipped {
            order.record(done);
            continue;
        }
        let attempts = done.attempts;
        let mut again = deliver_in_order(&agent, config, done.seq, done.event.clone(), || None, &mut order);
        again.attempts += attempts;
        if again.delivered {
            delivered += 1;
        } else if !again.skipped {
            undelivered += 1;
        }
        deliveries[i] = again;
        save(&deliveries)?;
    }
    Ok((delivered, undelivered))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(seq: u64, delivered: bool) -> String {
        let event = json!({"event_action": "trigger", "dedup_key": format!("g{seq}")});
        let delivery = Delivery { seq, event, delivered, attempts: 1, status: None, error: None, skipped: false };
        serde_json::to_string(&delivery).expect("json") + "\n"
    }

    #[test]
    fn a_resumed_outbox_splits_at_the_checkpoint_and_compacts() {
        // Settled up to 2 at the checkpoint; after it one attempt delivered 3, failed 4 and was
        // torn writing 5; the next attempt delivered 4.
        let text = line(1, true) + &line(2, false) + &line(3, true) + &line(4, false) + &line(5, true)[..20];
        let text = text + "\n" + &line(4, true);
        let pending = vec![(3, json!({})), (4, json!({}))];
        let checkpoint = WebhookCheckpoint { settled: 2, pending: pending.clone() };
        let resumed = ResumedDeliveries::read(text.as_bytes(), checkpoint).expect("reads");
        assert_eq!(resumed.history.iter().map(|d| d.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(resumed.pending, pending);
        let mut later: Vec<u64> = resumed.settled_later.keys().copied().collect();
        later.sort();
        assert_eq!(later, [3, 4], "what was delivered, the later outcome winning");
        // Pending events that do not follow the last settled place, or outcomes missing: refused.
        let bad = WebhookCheckpoint { settled: 2, pending: vec![(4, json!({}))] };
        assert!(ResumedDeliveries::read(text.as_bytes(), bad).is_err());
        assert!(
            ResumedDeliveries::read(line(2, true).as_bytes(), WebhookCheckpoint { settled: 2, pending: Vec::new() })
                .is_err()
        );
        // Compacted: one line per place, the last outcome, in order.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("webhook_pager.jsonl.partial");
        std::fs::write(&path, &text).expect("write");
        compact_outbox(&path, 4).expect("compact");
        let expected = line(1, true) + &line(2, false) + &line(3, true) + &line(4, true);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), expected);
        // Lines past the run's last event (an earlier job's, in the same folder) go.
        std::fs::write(&path, expected.clone() + &line(5, true)).expect("write");
        compact_outbox(&path, 4).expect("compact");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), expected);
    }

    #[test]
    fn notices_map_to_pagerduty_events() {
        let alert = json!({
            "notice": "alert", "group": "g1", "id": "a1", "rule": "self_trade", "instrument": "ACME",
            "account": "ACC1", "explanation": "the same owner on both sides", "tier": "high",
            "event_time": "2024-03-01T14:30:00.000000000Z", "desk": "PROP", "evidence": [{}, {}],
        });
        let event = pagerduty_event(&alert).expect("an event");
        assert_eq!(event["event_action"], "trigger");
        assert_eq!(event["dedup_key"], "g1");
        assert!(event.get("routing_key").is_none(), "the key is added when sending, never kept");
        assert_eq!(event["payload"]["severity"], "error");
        assert_eq!(event["payload"]["summary"], "self_trade on ACME by ACC1: the same owner on both sides");
        assert_eq!(event["payload"]["custom_details"]["evidence_events"], 2);
        assert!(event["payload"]["custom_details"].get("evidence").is_none());
        let closed = json!({"notice": "case", "change": "closed", "case": "g1", "tier": "high", "reason": "r"});
        let event = pagerduty_event(&closed).expect("an event");
        assert_eq!((event["event_action"].as_str(), event["dedup_key"].as_str()), (Some("resolve"), Some("g1")));
        assert!(event.get("payload").is_none());
        let opened = json!({"notice": "case", "change": "opened", "case": "g1"});
        assert_eq!(pagerduty_event(&opened), None);
        let long = json!({"notice": "alert", "group": "g", "explanation": "é".repeat(2000)});
        let event = pagerduty_event(&long).expect("an event");
        assert!(event["payload"]["summary"].as_str().is_some_and(|s| s.len() <= MAX_SUMMARY));
    }
}
