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

use timely::dataflow::Stream;

use crate::config::{OrderToTradeConfig, SessionConfig};
use crate::detect::{AlertSink, Detect, Detected, Detector, Key, OrderContext};
use crate::ingest::time::SessionCalendar;
use crate::model::alert::{rules, score_from_excess};
use crate::model::{Body, Event, IdMap, RatioCounts, RatioReport, Report, Severity, Symbol};

/// Counts one event of a key (with its order's state before it) into `counts`.
fn count(counts: &mut RatioCounts, event: &Event, order: &OrderContext, replace_weight: u64) {
    match event.body {
        Body::NewOrder { quantity, .. } => {
            counts.messages += 1;
            counts.order_volume += quantity;
        }
        Body::Replace { quantity, .. } => {
            counts.messages += replace_weight;
            counts.order_volume += order.removed + quantity;
        }
        // RTS 9 does not count the cancels a venue makes after an uncross, on loss of
        // connectivity or by kill functionality.
        Body::Cancel { reason, .. } if !reason.counts_for_rts9() => {}
        Body::Cancel { .. } => {
            counts.messages += 1;
            counts.order_volume += order.removed;
        }
        Body::Fill { quantity, .. } => {
            counts.transactions += 1;
            counts.transaction_volume += quantity;
        }
        _ => {}
    }
}

#[derive(Clone, Debug)]
pub(crate) struct KeyState {
    session: String,
    session_end: u64,
    counts: RatioCounts,
    changed: bool,
}

/// The order-to-trade rule.
#[derive(Clone)]
pub struct OrderToTrade {
    config: OrderToTradeConfig,
    limits: IdMap<Symbol, (f64, f64)>,
    calendar: SessionCalendar,
}

/// What the rule keeps of one instrument: its accounts' totals in their current session.
#[derive(Default)]
pub struct InstrumentTotals {
    accounts: IdMap<Symbol, KeyState>,
    /// Session bounds of the last event, to avoid a calendar lookup per event.
    current: Option<(u64, u64)>,
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
        OrderToTrade { config: config.clone(), limits, calendar: SessionCalendar::new(zone) }
    }

    /// The end of the session holding `time`; the bounds of the last session are cached,
    /// so this is two comparisons for nearly every event.
    fn session_end(&self, current: &mut Option<(u64, u64)>, time: u64) -> u64 {
        if let Some((start, end)) = *current
            && time >= start
            && time < end
        {
            return end;
        }
        let (date, end) = self.calendar.session_of(time);
        let start = self.calendar.session_start(date).unwrap_or(time).min(time);
        *current = Some((start, end));
        end
    }

    fn report(account: Symbol, instrument: Symbol, state: &KeyState, time: u64, r#final: bool) -> Report {
        Report::Ratio(Box::new(RatioReport {
            account,
            instrument,
            session: state.session.clone(),
            time,
            counts: state.counts,
            r#final,
        }))
    }
}

impl Detector for OrderToTrade {
    type State = InstrumentTotals;

    fn name(&self) -> &str {
        rules::ORDER_TO_TRADE_RATIO
    }

    fn needs_order_state(&self) -> bool {
        true
    }

    fn key(&self, event: &Event) -> Option<Key> {
        matches!(event.body, Body::NewOrder { .. } | Body::Replace { .. } | Body::Cancel { .. } | Body::Fill { .. })
            .then_some(Key::Instrument(event.instrument))
    }

    fn on_event(&self, totals: &mut InstrumentTotals, event: &Event, out: &mut AlertSink<'_>) {
        // A cancel the venue made counts for nothing (RTS 9), so it changes no report: orders
        // expiring at the end of the session leave no extra row behind them.
        if matches!(event.body, Body::Cancel { reason, .. } if !reason.counts_for_rts9())
            && totals.accounts.contains_key(&event.account)
        {
            return;
        }
        let end = self.session_end(&mut totals.current, event.time);
        let state = match totals.accounts.get_mut(&event.account) {
            Some(state) => state,
            None => {
                out.timer(end);
                let session = self.calendar.session_of(event.time).0.to_string();
                totals.accounts.entry(event.account).or_insert(KeyState {
                    session,
                    session_end: end,
                    counts: RatioCounts::default(),
                    changed: false,
                })
            }
        };
        let order = out.order().copied().unwrap_or_default();
        count(&mut state.counts, event, &order, self.config.replace_weight);
        state.changed = true;
        if let Some(interval) = self.config.report_interval.map(|d| d.as_nanos().max(1) as u64)
            && totals.next_report.is_none()
        {
            // Reports fall on multiples of the interval.
            let at = (event.time / interval + 1) * interval;
            totals.next_report = Some(at);
            out.timer(at);
        }
    }

    fn on_timer(&self, totals: &mut InstrumentTotals, time: u64, out: &mut AlertSink<'_>) {
        let instrument = out.key().symbol();
        if totals.next_report == Some(time) {
            let mut changed: Vec<_> = totals.accounts.iter_mut().filter(|(_, s)| s.changed).collect();
            changed.sort_by_key(|(k, _)| **k);
            for (account, state) in changed {
                state.changed = false;
                out.side(Self::report(*account, instrument, state, time, false));
            }
            // The next report is armed by the next counted event, so quiet periods (and the end
            // of the input) do not tick through every interval.
            totals.next_report = None;
        }
        let mut ending: Vec<Symbol> =
            totals.accounts.iter().filter(|(_, s)| s.session_end == time).map(|(k, _)| *k).collect();
        ending.sort();
        for account in ending {
            let Some(state) = totals.accounts.remove(&account) else {
                continue;
            };
            out.side(Self::report(account, instrument, &state, time, true));
            let (max_count, max_volume) = self
                .limits
                .get(&instrument)
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
            out.alert_now()
                .account(account)
                .severity(Severity::from_excess(excess))
                .score(score_from_excess(excess))
                .explain(format!(
                    "session {}: {} messages for {} transaction(s) (count ratio {:.1}, limit {}), order volume {} for {} executed (volume ratio {:.1}, limit {}): {which} exceeded",
                    state.session, c.messages, c.transactions, count_ratio, max_count, c.order_volume, c.transaction_volume, volume_ratio, max_volume
                ))
                .param("session", state.session.as_str())
                .param("messages", c.messages)
                .param("transactions", c.transactions)
                .param("order_volume", c.order_volume)
                .param("transaction_volume", c.transaction_volume)
                .param("count_ratio", count_ratio)
                .param("volume_ratio", volume_ratio)
                .param("max_count_ratio", max_count)
                .param("max_volume_ratio", max_volume);
        }
    }
}

/// What the order-to-trade rule produces.
pub struct OrderToTradeStreams<'scope> {
    /// Alerts at session end.
    pub alerts: Stream<'scope, u64, Vec<crate::model::Alert>>,
    /// Ratio values ([`Report::Ratio`]): final ones at session end, running ones with
    /// `report_interval`.
    pub ratios: Stream<'scope, u64, Vec<Report>>,
}

/// Extension trait: the order-to-trade ratio as an operator on a stream of events.
pub trait OrderToTradeExt<'scope> {
    /// Ratio values per (account, instrument, session) and alerts for ratios over the limits.
    ///
    /// ```
    /// use surveil::config::{OrderToTradeConfig, SessionConfig};
    /// use surveil::rules::OrderToTradeExt;
    /// use surveil::model::Side;
    /// use surveil::testing::{cancel, new_order};
    /// use timely::dataflow::operators::capture::Capture;
    /// use timely::dataflow::operators::ToStream;
    ///
    /// let mut events = Vec::new();
    /// for i in 0..600 {
    ///     events.push(new_order("ACME", &format!("O{i}"), "ACC1", Side::Buy, "10", 1).at(2 * i + 1));
    ///     events.push(cancel("ACME", &format!("O{i}"), "ACC1").at(2 * i + 2));
    /// }
    /// let (alerts, ratios) = timely::example(move |scope| {
    ///     let out = events.to_stream(scope).order_to_trade(&OrderToTradeConfig::default(), &SessionConfig::default());
    ///     (out.alerts.capture(), out.ratios.capture())
    /// });
    /// assert_eq!(surveil::testing::captured(alerts).into_iter().count(), 1); // 1,200 messages, no fill
    /// assert_eq!(surveil::testing::captured(ratios).into_iter().count(), 1); // the session's final value
    /// ```
    fn order_to_trade(self, config: &OrderToTradeConfig, sessions: &SessionConfig) -> OrderToTradeStreams<'scope>;
}

impl<'scope> OrderToTradeExt<'scope> for Stream<'scope, u64, Vec<Event>> {
    fn order_to_trade(self, config: &OrderToTradeConfig, sessions: &SessionConfig) -> OrderToTradeStreams<'scope> {
        let Detected { alerts, side } = self.detect_all(OrderToTrade::new(config, sessions));
        OrderToTradeStreams { alerts, ratios: side }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::model::{Price, Side};
    use crate::testing::{event, outputs_on};

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
                Body::NewOrder { order, side: Side::Buy, price: Some(Price(100)), quantity: 10, displayed: None },
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
                events.push(event(t + 1, "X", account, Body::cancel_rest(order)));
            }
        }
        events
    }

    #[test]
    fn ratios_follow_rts9_and_alert_at_session_end() {
        let mut config = Config::default();
        config.rules.order_to_trade.min_messages = 100;
        let detector = OrderToTrade::new(&config.rules.order_to_trade, &config.sessions);
        let mut events = storm("SPAM", 0, 1000, 2); // 1000 new + 998 cancels, 2 fills
        events.extend(storm("GOOD", 0, 300, 150));
        events.extend(storm("SPAM", 1, 40, 0)); // next day, below min_messages
        let (a, reports) = outputs_on(2, detector, events);
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
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].account, Symbol::of(b"SPAM"));
        assert_eq!(a[0].time, DAY);
        assert!(a[0].explanation.contains("count ratio 998.0"), "{}", a[0].explanation);
    }

    #[test]
    fn cancels_by_the_venue_are_not_counted() {
        use crate::model::CancelReason;
        let mut config = Config::default();
        config.rules.order_to_trade.min_messages = 100;
        let detector = OrderToTrade::new(&config.rules.order_to_trade, &config.sessions);
        // 400 orders, 2 filled; the venue cancels the rest: 100 after an uncross, 100 on a lost
        // connection, 100 by the kill switch, and the member itself cancels 98.
        let mut events = storm("MEMBER", 0, 400, 2);
        let mut cancelled = 0;
        for event in &mut events {
            if let Body::Cancel { reason, .. } = &mut event.body {
                *reason =
                    [CancelReason::Uncross, CancelReason::Connectivity, CancelReason::KillSwitch, CancelReason::Member]
                        [(cancelled / 100).min(3)];
                cancelled += 1;
            }
        }
        let (_, reports) = outputs_on(1, detector, events);
        let counts = reports
            .iter()
            .find_map(|r| match r {
                Report::Ratio(r) if r.r#final => Some(r.counts),
                _ => None,
            })
            .expect("a final value");
        // 400 submissions and the member's 98 cancels; the 300 venue cancels count for nothing.
        assert_eq!(counts, RatioCounts { messages: 498, order_volume: 4980, transactions: 2, transaction_volume: 20 });
    }

    #[test]
    fn running_values_are_reported_on_interval_boundaries_after_activity() {
        let mut config = Config::default();
        config.rules.order_to_trade.report_interval = Some(std::time::Duration::from_secs(1));
        let detector = OrderToTrade::new(&config.rules.order_to_trade, &config.sessions);
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
                        displayed: None,
                    },
                )
            })
            .collect();
        let mut running: Vec<(u64, u64)> = outputs_on(1, detector, events)
            .1
            .iter()
            .filter_map(|r| match r {
                Report::Ratio(r) if !r.r#final => Some((r.time / second, r.counts.messages)),
                _ => None,
            })
            .collect();
        running.sort();
        assert_eq!(running, vec![(1, 1), (2, 2), (11, 3)]);
    }
}
