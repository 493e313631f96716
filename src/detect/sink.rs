//! What a detector writes to: alerts, side records and timers of the key being processed.

use std::ops::{Deref, DerefMut};

use super::book::OrderBook;
use super::key::Key;
use super::orders::OrderContext;
use crate::model::alert::AlertBuilder;
use crate::model::{Alert, CorrectionKind, Event, Report, Timestamp};

/// Where a [`crate::detect::Detector`] puts what it finds while it handles one event or timer
/// of one key. Alerts start from [`AlertSink::alert`] and are emitted when the builder goes
/// out of scope, so a rule reads as a sentence:
///
/// ```
/// # use surveil::detect::{AlertSink, Detector, Key};
/// # use surveil::model::{Event, Severity};
/// # struct Big;
/// # impl Detector for Big {
/// #     type State = ();
/// #     fn name(&self) -> &str { "big" }
/// #     fn key(&self, e: &Event) -> Option<Key> { Some(Key::Account(e.account)) }
/// fn on_event(&self, _: &mut (), event: &Event, out: &mut AlertSink<'_>) {
///     out.alert(event).severity(Severity::High).score(90.0).explain("a big one");
/// }
/// # }
/// ```
pub struct AlertSink<'a> {
    rule: &'a str,
    key: Key,
    now: Timestamp,
    order: Option<&'a OrderContext>,
    book: Option<&'a OrderBook>,
    reports: &'a mut Vec<(Timestamp, Report)>,
    timers: &'a mut Vec<(Timestamp, Key)>,
}

impl<'a> AlertSink<'a> {
    /// A sink for `rule` handling `key` at event time `now`, appending to `reports` and
    /// `timers`. The detector operators build these; tests of a detector's logic can too.
    pub fn new(
        rule: &'a str,
        key: Key,
        now: Timestamp,
        order: Option<&'a OrderContext>,
        reports: &'a mut Vec<(Timestamp, Report)>,
        timers: &'a mut Vec<(Timestamp, Key)>,
    ) -> AlertSink<'a> {
        AlertSink { rule, key, now, order, book: None, reports, timers }
    }

    /// The same sink showing the rule `book` ([`AlertSink::book`]).
    pub fn with_book(mut self, book: Option<&'a OrderBook>) -> AlertSink<'a> {
        self.book = book;
        self
    }

    /// The order book of the event's instrument after the event, for detectors keyed by
    /// instrument that ask for it ([`crate::detect::Detector::needs_book`]); `None` otherwise
    /// and for timers.
    pub fn book(&self) -> Option<&'a OrderBook> {
        self.book
    }

    /// The key being processed.
    pub fn key(&self) -> Key {
        self.key
    }

    /// The event time being processed: the event's time, or the timer's.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// The state of the event's order before the event, for detectors keyed by instrument that
    /// ask for it ([`crate::detect::Detector::needs_order_state`]); `None` for other detectors
    /// and keys, for events without an order, and for timers.
    pub fn order(&self) -> Option<&OrderContext> {
        self.order
    }

    /// An alert about `event`: at its time, on its instrument and account, with the event as
    /// evidence. Set the rest on the builder; it is emitted when the builder is dropped.
    pub fn alert(&mut self, event: &Event) -> PendingAlert<'_, 'a> {
        let mut builder = Alert::builder(self.rule, event.time.max(self.now));
        builder.instrument(event.instrument).account(event.account).evidence(event);
        PendingAlert { builder, sink: self }
    }

    /// An alert at the current time with no event behind it (a period's total, at a timer): its
    /// instrument or account comes from the key, and the rest from the builder.
    pub fn alert_now(&mut self) -> PendingAlert<'_, 'a> {
        let mut builder = Alert::builder(self.rule, self.now);
        match self.key {
            Key::Instrument(s) => {
                builder.instrument(s);
            }
            Key::Account(s) => {
                builder.account(s);
            }
            _ => {}
        }
        PendingAlert { builder, sink: self }
    }

    /// A correction of `original`, an alert this rule raised before, at the current time: it
    /// keeps the original's id, rule, instrument and account; set the new score, explanation,
    /// parameters and evidence on the builder. Downstream, the last version of an id is the
    /// verdict: the alert manager sends a correction where the original went, cases record it,
    /// `surveil eval` counts a retracted alert as never raised.
    pub fn correction(
        &mut self,
        original: &Alert,
        kind: CorrectionKind,
        reason: impl Into<String>,
    ) -> PendingAlert<'_, 'a> {
        let mut builder = Alert::builder(original.rule.as_str(), self.now);
        builder.instrument(original.instrument).account(original.account).corrects(original, kind, reason);
        PendingAlert { builder, sink: self }
    }

    /// The last alert emitted through this sink (or another sink on the same output), as built:
    /// what a rule keeps to correct it later.
    pub fn last_alert(&self) -> Option<&Alert> {
        self.reports.iter().rev().find_map(|(_, r)| if let Report::Alert(a) = r { Some(&**a) } else { None })
    }

    /// A record beside the alerts (a ratio value, a feature row): it goes to the detector's side
    /// output at the current time.
    pub fn side(&mut self, report: Report) {
        self.reports.push((self.now, report));
    }

    /// Asks for [`crate::detect::Detector::on_timer`] with this key at `time` (raised to the
    /// current time if earlier). Asking twice for the same time gives one call.
    pub fn timer(&mut self, time: Timestamp) {
        self.timers.push((time.max(self.now), self.key));
    }

    fn emit(&mut self, alert: Alert) {
        self.reports.push((alert.time.max(self.now), Report::Alert(Box::new(alert))));
    }
}

/// An alert being filled in; emitted when dropped. Derefs to [`AlertBuilder`] for the setters.
pub struct PendingAlert<'s, 'a> {
    builder: AlertBuilder,
    sink: &'s mut AlertSink<'a>,
}

impl Deref for PendingAlert<'_, '_> {
    type Target = AlertBuilder;
    fn deref(&self) -> &AlertBuilder {
        &self.builder
    }
}

impl DerefMut for PendingAlert<'_, '_> {
    fn deref_mut(&mut self) -> &mut AlertBuilder {
        &mut self.builder
    }
}

impl Drop for PendingAlert<'_, '_> {
    fn drop(&mut self) {
        let alert = self.builder.build();
        self.sink.emit(alert);
    }
}
