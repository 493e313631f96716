//! Order-to-trade ratio per (account, instrument, session), by the MiFID II RTS 9 method.
//!
//! * Count form: `messages / transactions - 1`.
//! * Volume form: `order volume / transaction volume - 1`.
//!
//! Messages are every order input: a new order counts 1 (volume: its quantity), a cancel or
//! partial cancel counts 1 (volume: the quantity cancelled), a modification counts
//! `replace_weight` (2 in the RTS 9 Annex: a cancel and a new insert; volume: the quantity
//! removed plus the new quantity). A transaction is an execution (fill) of one of the account's
//! orders (volume: the executed quantity); trade reports are not counted again. With no
//! transaction the denominator is taken as 1, so the ratio stays finite and comparable.
//!
//! At each session end every key of the session gets a final [`RatioReport`], and an alert
//! when either ratio exceeds its limit and the key sent at least `min_messages` messages.
//! With `report_interval`, running values are reported along the way.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use surveil_operators::Emitter;

use super::{Detector, OrderContext};
use crate::alert::{Alert, Rule, Severity, Value, param, score_from_excess};
use crate::config::{OrderToTradeConfig, SessionConfig};
use crate::ingest::time::SessionCalendar;
use crate::model::{Body, Event, IdMap, Symbol};
use crate::report::Report;

/// Running totals of one key.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RatioCounts {
    /// Weighted order messages.
    pub messages: u64,
    /// Order volume.
    pub order_volume: u64,
    /// Executions.
    pub transactions: u64,
    /// Executed volume.
    pub transaction_volume: u64,
}

impl RatioCounts {
    /// Counts one event of the key (with its order's state before it).
    pub fn add(&mut self, event: &Event, order: &OrderContext, replace_weight: u64) {
        match event.body {
            Body::NewOrder { quantity, .. } => {
                self.messages += 1;
                self.order_volume += quantity;
            }
            Body::Replace { quantity, .. } => {
                self.messages += replace_weight;
                self.order_volume += order.removed + quantity;
            }
            Body::Cancel { .. } => {
                self.messages += 1;
                self.order_volume += order.removed;
            }
            Body::Fill { quantity, .. } => {
                self.transactions += 1;
                self.transaction_volume += quantity;
            }
            _ => {}
        }
    }

    /// `messages / max(transactions, 1) - 1`.
    pub fn count_ratio(&self) -> f64 {
        self.messages as f64 / self.transactions.max(1) as f64 - 1.0
    }

    /// `order volume / max(transaction volume, 1) - 1`.
    pub fn volume_ratio(&self) -> f64 {
        self.order_volume as f64 / self.transaction_volume.max(1) as f64 - 1.0
    }
}

/// An order-to-trade ratio value, final at session end or running.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RatioReport {
    /// Account.
    pub account: Symbol,
    /// Instrument.
    pub instrument: Symbol,
    /// Session date.
    pub session: String,
    /// Event time the value is as of.
    pub time: u64,
    /// Totals.
    pub counts: RatioCounts,
    /// True at session end.
    pub r#final: bool,
}

#[derive(Clone, Debug)]
struct KeyState {
    session: String,
    session_end: u64,
    counts: RatioCounts,
    changed: bool,
}

/// The order-to-trade rule.
pub struct OrderToTrade {
    config: OrderToTradeConfig,
    limits: IdMap<Symbol, (f64, f64)>,
    calendar: SessionCalendar,
    /// Session bounds of the last event, to avoid a calendar lookup per event.
    current: Option<(u64, u64)>,
    keys: IdMap<(Symbol, Symbol), KeyState>,
    session_ends: BTreeSet<u64>,
    next_report: Option<u64>,
}

impl OrderToTrade {
    /// Builds the rule.
    pub fn new(config: &OrderToTradeConfig, sessions: &SessionConfig) -> OrderToTrade {
        let zone = sessions.timezone.parse().unwrap_or(chrono_tz::UTC);
        let limits = config
            .instruments
            .iter()
            .map(|(name, o)| {
                (
                    Symbol::of(name.as_bytes()),
                    (
                        o.max_count_ratio.unwrap_or(config.max_count_ratio),
                        o.max_volume_ratio.unwrap_or(config.max_volume_ratio),
                    ),
                )
            })
            .collect();
        OrderToTrade {
            config: config.clone(),
            limits,
            calendar: SessionCalendar::new(zone),
            current: None,
            keys: IdMap::default(),
            session_ends: BTreeSet::new(),
            next_report: None,
        }
    }

    /// The running totals of a key in its current session.
    pub fn counts(&self, account: Symbol, instrument: Symbol) -> Option<RatioCounts> {
        self.keys.get(&(account, instrument)).map(|k| k.counts)
    }

    /// The end of the session holding `time`; the bounds of the last session are cached,
    /// so this is two comparisons for nearly every event.
    fn session_end(&mut self, time: u64) -> u64 {
        if let Some((start, end)) = self.current
            && time >= start
            && time < end
        {
            return end;
        }
        let (date, end) = self.calendar.session_of(time);
        let start = self.calendar.session_start(date).unwrap_or(time).min(time);
        self.current = Some((start, end));
        end
    }

    fn report(&self, key: &(Symbol, Symbol), state: &KeyState, time: u64, r#final: bool) -> Report {
        Report::Ratio(Box::new(RatioReport {
            account: key.0,
            instrument: key.1,
            session: state.session.clone(),
            time,
            counts: state.counts,
            r#final,
        }))
    }
}

impl Detector for OrderToTrade {
    fn name(&self) -> &'static str {
        "order_to_trade"
    }

    fn on_event(&mut self, event: &Event, order: &OrderContext, _out: &mut Emitter<'_, Report>) {
        if !matches!(event.body, Body::NewOrder { .. } | Body::Replace { .. } | Body::Cancel { .. } | Body::Fill { .. })
        {
            return;
        }
        let end = self.session_end(event.time);
        let key = (event.account, event.instrument);
        let state = match self.keys.get_mut(&key) {
            Some(state) => state,
            None => {
                self.session_ends.insert(end);
                let session = self.calendar.session_of(event.time).0.to_string();
                self.keys.entry(key).or_insert(KeyState {
                    session,
                    session_end: end,
                    counts: RatioCounts::default(),
                    changed: false,
                })
            }
        };
        state.counts.add(event, order, self.config.replace_weight);
        state.changed = true;
        if let Some(interval) = self.config.report_interval.map(|d| d.as_nanos() as u64).filter(|&i| i > 0)
            && self.next_report.is_none()
        {
            // Reports fall on multiples of the interval.
            self.next_report = Some((event.time / interval + 1) * interval);
        }
    }

    fn next_timer(&self) -> Option<u64> {
        match (self.session_ends.first().copied(), self.next_report) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn on_timer(&mut self, time: u64, out: &mut Emitter<'_, Report>) {
        if self.next_report == Some(time) {
            let mut changed: Vec<_> = self.keys.iter_mut().filter(|(_, s)| s.changed).collect();
            changed.sort_by_key(|(k, _)| **k);
            let mut reports = Vec::with_capacity(changed.len());
            for (key, state) in changed {
                state.changed = false;
                reports.push((*key, state.clone()));
            }
            for (key, state) in reports {
                out.emit(self.report(&key, &state, time, false));
            }
            // The next report is armed by the next counted event, so quiet periods (and the end
            // of the input) do not tick through every interval.
            self.next_report = None;
        }
        if self.session_ends.first() == Some(&time) {
            self.session_ends.pop_first();
            let mut ending: Vec<(Symbol, Symbol)> =
                self.keys.iter().filter(|(_, s)| s.session_end == time).map(|(k, _)| *k).collect();
            ending.sort();
            for key in ending {
                let Some(state) = self.keys.remove(&key) else {
                    continue;
                };
                out.emit(self.report(&key, &state, time, true));
                let (max_count, max_volume) = self
                    .limits
                    .get(&key.1)
                    .copied()
                    .unwrap_or((self.config.max_count_ratio, self.config.max_volume_ratio));
                let c = state.counts;
                if c.messages < self.config.min_messages {
                    continue;
                }
                let (count_ratio, volume_ratio) = (c.count_ratio(), c.volume_ratio());
                let count_excess = count_ratio / max_count.max(f64::MIN_POSITIVE);
                let volume_excess = volume_ratio / max_volume.max(f64::MIN_POSITIVE);
                if count_ratio <= max_count && volume_ratio <= max_volume {
                    continue;
                }
                let excess = count_excess.max(volume_excess);
                let which = match (count_ratio > max_count, volume_ratio > max_volume) {
                    (true, true) => "count and volume ratios",
                    (true, false) => "count ratio",
                    _ => "volume ratio",
                };
                out.emit(Report::Alert(Box::new(Alert::new(
                    Rule::OrderToTradeRatio,
                    Severity::from_excess(excess),
                    score_from_excess(excess),
                    time,
                    key.1,
                    key.0,
                    format!(
                        "session {}: {} messages for {} transaction(s) (count ratio {:.1}, limit {}), order volume {} for {} executed (volume ratio {:.1}, limit {}): {which} exceeded",
                        state.session, c.messages, c.transactions, count_ratio, max_count, c.order_volume, c.transaction_volume, volume_ratio, max_volume
                    ),
                    vec![
                        param("session", Value::Text(state.session.clone())),
                        param("messages", Value::Count(c.messages)),
                        param("transactions", Value::Count(c.transactions)),
                        param("order_volume", Value::Count(c.order_volume)),
                        param("transaction_volume", Value::Count(c.transaction_volume)),
                        param("count_ratio", Value::Ratio(count_ratio)),
                        param("volume_ratio", Value::Ratio(volume_ratio)),
                        param("max_count_ratio", Value::Ratio(max_count)),
                        param("max_volume_ratio", Value::Ratio(max_volume)),
                    ],
                    Vec::new(),
                    0,
                ))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::detect::SurveillanceProcessor;
    use crate::detect::testing::{alerts, event, run};
    use crate::model::{Price, Side};

    const DAY: u64 = 86_400_000_000_000;

    fn storm(account: &str, day: u64, orders: u64, fills: u64) -> Vec<Event> {
        let mut events = Vec::new();
        for i in 0..orders {
            let order = Symbol::of(format!("{account}{day}x{i}").as_bytes());
            let t = day * DAY + i * 1000 + 1;
            events.push(event(
                t,
                "X",
                account,
                Body::NewOrder { order, side: Side::Buy, price: Some(Price(100)), quantity: 10 },
            ));
            if i < fills {
                events.push(event(
                    t + 1,
                    "X",
                    account,
                    Body::Fill {
                        order,
                        side: Side::Buy,
                        price: Price(100),
                        quantity: 10,
                        aggressor: None,
                        hidden: false,
                    },
                ));
            } else {
                events.push(event(
                    t + 1,
                    "X",
                    account,
                    Body::Cancel { order, side: None, price: None, quantity: None },
                ));
            }
        }
        events
    }

    #[test]
    fn ratios_follow_rts9_and_alert_at_session_end() {
        let mut config = Config::default();
        config.rules.order_to_trade.min_messages = 100;
        let detector = OrderToTrade::new(&config.rules.order_to_trade, &config.sessions);
        let mut p = SurveillanceProcessor::new(vec![Box::new(detector)]);
        let mut events = storm("SPAM", 0, 1000, 2); // 1000 new + 998 cancels, 2 fills
        events.extend(storm("GOOD", 0, 300, 150));
        events.extend(storm("SPAM", 1, 40, 0)); // next day, below min_messages
        let reports = run(&mut p, events);
        let finals: Vec<&RatioReport> = reports
            .iter()
            .filter_map(|r| match r {
                Report::Ratio(r) if r.r#final => Some(&**r),
                _ => None,
            })
            .collect();
        assert_eq!(finals.len(), 3);
        let spam = finals.iter().find(|r| r.account == Symbol::of(b"SPAM") && r.session == "1970-01-01").expect("spam");
        assert_eq!(
            spam.counts,
            RatioCounts { messages: 1998, order_volume: 19980, transactions: 2, transaction_volume: 20 }
        );
        assert_eq!(spam.time, DAY);
        let a = alerts(&reports);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].account, Symbol::of(b"SPAM"));
        assert_eq!(a[0].time, DAY);
        assert!(a[0].explanation.contains("count ratio 998.0"), "{}", a[0].explanation);
    }

    #[test]
    fn running_values_are_reported_on_interval_boundaries_after_activity() {
        let mut config = Config::default();
        config.rules.order_to_trade.report_interval = Some(std::time::Duration::from_secs(1));
        let detector = OrderToTrade::new(&config.rules.order_to_trade, &config.sessions);
        let mut p = SurveillanceProcessor::new(vec![Box::new(detector)]);
        let second = 1_000_000_000;
        let events: Vec<Event> = [second / 2, second + second / 2, 10 * second + 1]
            .iter()
            .map(|&t| {
                event(
                    t,
                    "X",
                    "A",
                    Body::NewOrder {
                        order: Symbol::of_integer(t),
                        side: Side::Buy,
                        price: Some(Price(1)),
                        quantity: 1,
                    },
                )
            })
            .collect();
        let running: Vec<(u64, u64)> = run(&mut p, events)
            .iter()
            .filter_map(|r| match r {
                Report::Ratio(r) if !r.r#final => Some((r.time / second, r.counts.messages)),
                _ => None,
            })
            .collect();
        assert_eq!(running, vec![(1, 1), (2, 2), (11, 3)]);
    }
}
