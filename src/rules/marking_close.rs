//! Marking the close: trading in the closing period to move the closing price, on which
//! positions, funds and derivatives are valued (CEA §4c(a)(5)(B), "reckless disregard for the
//! orderly execution of transactions during the closing period"; CME Rule 575; MAR Annex I
//! 1(a) and Annex II §I 2(a)).
//!
//! At each session's close (`sessions.close`, local time in `sessions.timezone`; the default job
//! runs the rule only where the configuration sets it, since a wrong close judges ordinary
//! trading), per
//! instrument, an account is reported when, in the closing `window` (RedDeer's default: the
//! 30 minutes before the close):
//!
//! 1. it took part in at least `min_window_share` of the executed volume (RedDeer's
//!    `PercentageThresholdWindowVolume`; kishoreqwerty's share of the pre-close volume);
//! 2. the closing price (the last execution) moved at least `min_price_move` from the last
//!    price before the window, in the direction of the account's net trading there: net
//!    buying into a rise, net selling into a fall (the "price move against the last trade" of
//!    the classic rule; Trillium: the print improves the position's valuation);
//! 3. the window holds at least `min_concentration` of the account's executed volume of the
//!    session on the instrument: trading bunched at the close rather than all day (Neurensic:
//!    judge the closing activity against the trader's intraday activity);
//! 4. with `require_last_print`, it is a party to the session's last execution (Trillium: the
//!    account gets the last round-lot execution of the day).
//!
//! Executions come from fill events when the input has them (the fills of one time and price
//! count the larger of their bought and sold quantities, so both sides' fills of a trade count
//! it once and an input with one side's fills only, a firm's own flow, counts each), or from
//! trade prints otherwise (both parties). Executions after the close belong to no window. With
//! no execution before the window, the reference price is the window's first; every party to
//! an execution at the last execution's time counts as a party to the last print. Accounts
//! without a name (anonymous market data) are never reported, but their volume counts in the
//! window.

use std::collections::VecDeque;
use std::sync::Arc;

use chrono::{NaiveDate, NaiveTime, TimeZone};
use timely::dataflow::Stream;

use crate::config::{MarkingCloseConfig, SessionConfig, nanos_of};
use crate::detect::{AlertSink, Detect, Detector, Key};
use crate::model::alert::rules;
use crate::model::{Alert, Body, Decimal, Event, IdMap, Price, Severity, Side, Symbol, Timestamp};
use crate::reference::ReferenceData;
use crate::rules::executions::Execution;

/// Executions of an account kept as an alert's evidence (its last in the window).
const MAX_EVIDENCE: usize = 20;

/// The marking-the-close rule.
#[derive(Clone)]
pub struct MarkingClose {
    config: MarkingCloseConfig,
    zone: chrono_tz::Tz,
    /// The close of instruments without a closing time of their own; `None`: those are not
    /// judged.
    close: Option<NaiveTime>,
    reference: Arc<ReferenceData>,
}

impl MarkingClose {
    /// Builds the rule for the sessions `sessions` describes (a validated configuration: a time
    /// zone that does not parse falls back to UTC, and a close that is not set or does not parse
    /// to 16:00; the default job runs the rule only where the close is set). An instrument
    /// whose reference data gives a `closing_time` closes then instead.
    pub fn new(config: &MarkingCloseConfig, sessions: &SessionConfig, reference: Arc<ReferenceData>) -> MarkingClose {
        MarkingClose {
            config: *config,
            zone: sessions.timezone.parse().unwrap_or(chrono_tz::UTC),
            close: Some(sessions.close_time().ok().flatten().unwrap_or(NaiveTime::MIN + chrono::Duration::hours(16))),
            reference,
        }
    }

    /// Judges only the instruments whose reference data gives a closing time (the default
    /// job's rule where `sessions.close` is not set: a wrong close judges ordinary trading).
    pub fn only_instruments_with_a_closing_time(mut self) -> MarkingClose {
        self.close = None;
        self
    }

    /// The close of `instrument` at `time`, if it is judged.
    fn close_of(&self, instrument: Symbol, time: Timestamp) -> Option<NaiveTime> {
        self.reference.instrument(instrument, time).and_then(|i| i.closing_time).or(self.close)
    }

    /// The session (local date) of `time` on `instrument` and its close in event time, if the
    /// instrument is judged.
    fn session_of(&self, instrument: Symbol, time: Timestamp) -> Option<(NaiveDate, Timestamp)> {
        let close_time = self.close_of(instrument, time)?;
        let utc = chrono::DateTime::from_timestamp((time / 1_000_000_000) as i64, (time % 1_000_000_000) as u32)
            .unwrap_or_default();
        let date = utc.with_timezone(&self.zone).date_naive();
        let close = self
            .zone
            .from_local_datetime(&date.and_time(close_time))
            .earliest()
            .and_then(|c| c.timestamp_nanos_opt())
            .and_then(|n| u64::try_from(n).ok())
            // A close in a daylight-saving gap: an hour later, as the clocks say.
            .or_else(|| {
                let later = date.and_time(close_time) + chrono::Duration::hours(1);
                self.zone.from_local_datetime(&later).earliest()?.timestamp_nanos_opt()?.try_into().ok()
            })
            .unwrap_or(u64::MAX);
        Some((date, close))
    }
}

/// What an account did on the instrument in the session.
#[derive(Default)]
struct CloseActivity {
    /// Executed volume in the session before the close.
    session: u64,
    bought: u64,
    sold: u64,
    /// Its last executions in the window.
    evidence: VecDeque<Event>,
}

/// The session's executions as one kind of event shows them (fills, or trade prints).
#[derive(Default)]
struct Tally {
    seen: bool,
    /// The last price before the window, and the first and last in it.
    before: Option<Price>,
    first_in_window: Option<Price>,
    last: Option<Price>,
    /// Window volume of the groups of executions already closed, and the group of the current
    /// time and price: its bought and sold quantities (fills), of which the larger is the
    /// volume traded (both sides' fills of a trade count it once; a one-sided input, a firm's
    /// own flow, counts each of its fills).
    volume: u64,
    group: Option<(Timestamp, Price)>,
    group_bought: u64,
    group_sold: u64,
    /// Time and parties of the last execution.
    last_print: Timestamp,
    last_parties: Vec<Symbol>,
    last_event: Option<Event>,
    accounts: IdMap<Symbol, CloseActivity>,
}

impl Tally {
    /// Adds an execution of the window to the volume: `side` for a fill, `None` for a print.
    fn add_volume(&mut self, time: Timestamp, price: Price, side: Option<Side>, quantity: u64) {
        if self.group != Some((time, price)) {
            self.volume = self.volume.saturating_add(self.group_bought.max(self.group_sold));
            (self.group, self.group_bought, self.group_sold) = (Some((time, price)), 0, 0);
        }
        match side {
            Some(Side::Buy) => self.group_bought = self.group_bought.saturating_add(quantity),
            Some(Side::Sell) => self.group_sold = self.group_sold.saturating_add(quantity),
            None => {
                self.group_bought = self.group_bought.saturating_add(quantity);
                self.group_sold = self.group_sold.saturating_add(quantity);
            }
        }
    }

    /// The window's executed volume.
    fn window_volume(&self) -> f64 {
        self.volume.saturating_add(self.group_bought.max(self.group_sold)) as f64
    }
}

/// One session of the instrument, until its close is judged.
struct Session {
    date: NaiveDate,
    close: Timestamp,
    window_start: Timestamp,
    fills: Tally,
    prints: Tally,
}

/// What the rule remembers of an instrument: its current session.
#[derive(Default)]
pub struct MarkingCloseState {
    session: Option<Session>,
}

impl Detector for MarkingClose {
    type State = MarkingCloseState;

    fn name(&self) -> &str {
        rules::MARKING_CLOSE
    }

    fn key(&self, event: &Event) -> Option<Key> {
        (matches!(event.body, Body::Fill { .. } | Body::Trade { .. })
            && self.close_of(event.instrument, event.time).is_some())
        .then_some(Key::Instrument(event.instrument))
    }

    fn on_event(&self, state: &mut MarkingCloseState, event: &Event, out: &mut AlertSink<'_>) {
        let Some((date, close)) = self.session_of(event.instrument, event.time) else { return };
        if state.session.as_ref().is_some_and(|s| s.date != date) {
            // The previous session's close timer has not come yet (it comes before any later
            // event where the operator runs in time order); judge it now.
            if let Some(previous) = state.session.take() {
                self.judge(&previous, out);
            }
        }
        if event.time >= close {
            return;
        }
        let session = state.session.get_or_insert_with(|| {
            out.timer(close);
            Session {
                date,
                close,
                window_start: close.saturating_sub(nanos_of(self.config.window)),
                fills: Tally::default(),
                prints: Tally::default(),
            }
        });
        let in_window = event.time >= session.window_start;
        let (session, price, parties) = match event.body {
            Body::Fill { side, price, quantity, .. } => {
                let tally = &mut session.fills;
                if in_window {
                    tally.add_volume(event.time, price, Some(side), quantity);
                }
                (tally, price, [Some((event.account, side, quantity)), None])
            }
            Body::Trade { price, quantity, .. } => {
                let tally = &mut session.prints;
                if in_window {
                    tally.add_volume(event.time, price, None, quantity);
                }
                let [buy, sell] = Execution::of_trade(event);
                let party = |x: Option<Execution>| x.map(|x| (x.account, x.side, x.quantity));
                (tally, price, [party(buy), party(sell)])
            }
            _ => return,
        };
        session.seen = true;
        if in_window {
            session.first_in_window.get_or_insert(price);
            session.last = Some(price);
        } else {
            session.before = Some(price);
        }
        if event.time > session.last_print {
            session.last_print = event.time;
            session.last_parties.clear();
        }
        session.last_event = Some(*event);
        for (account, side, quantity) in parties.into_iter().flatten() {
            if account.is_none() {
                continue;
            }
            if !session.last_parties.contains(&account) {
                session.last_parties.push(account);
            }
            let activity = session.accounts.entry(account).or_default();
            activity.session = activity.session.saturating_add(quantity);
            if in_window {
                match side {
                    Side::Buy => activity.bought = activity.bought.saturating_add(quantity),
                    Side::Sell => activity.sold = activity.sold.saturating_add(quantity),
                }
                if activity.evidence.back() != Some(event) {
                    activity.evidence.push_back(*event);
                    if activity.evidence.len() > MAX_EVIDENCE {
                        activity.evidence.pop_front();
                    }
                }
            }
        }
    }

    fn on_timer(&self, state: &mut MarkingCloseState, time: Timestamp, out: &mut AlertSink<'_>) {
        if state.session.as_ref().is_some_and(|s| s.close <= time)
            && let Some(session) = state.session.take()
        {
            self.judge(&session, out);
        }
    }
}

impl MarkingClose {
    fn judge(&self, day: &Session, out: &mut AlertSink<'_>) {
        let config = &self.config;
        // Fills when the input has them, trade prints otherwise.
        let session = if day.fills.seen { &day.fills } else { &day.prints };
        let window_volume = session.window_volume();
        let (Some(last), Some(reference)) = (session.last, session.before.or(session.first_in_window)) else {
            return;
        };
        if reference.0 == 0 || window_volume <= 0.0 {
            return;
        }
        let moved = (last.0 - reference.0) as f64 / reference.0 as f64;
        if moved.abs() < config.min_price_move || moved == 0.0 {
            return;
        }
        let mut accounts: Vec<(&Symbol, &CloseActivity)> = session.accounts.iter().collect();
        accounts.sort_by_key(|(account, _)| account.0);
        for (&account, activity) in accounts {
            let window = activity.bought.saturating_add(activity.sold);
            let net = i128::from(activity.bought) - i128::from(activity.sold);
            if window == 0 || net == 0 || (net > 0) != (moved > 0.0) {
                continue;
            }
            let share = (window as f64 / window_volume).min(1.0);
            let concentration = window as f64 / activity.session.max(1) as f64;
            let in_last = session.last_parties.contains(&account);
            if share < config.min_window_share
                || concentration < config.min_concentration
                || (config.require_last_print && !in_last)
            {
                continue;
            }
            self.alert(day, session, account, activity, (reference, last, moved), (share, concentration, in_last), out);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn alert(
        &self,
        day: &Session,
        session: &Tally,
        account: Symbol,
        activity: &CloseActivity,
        (reference, last, moved): (Price, Price, f64),
        (share, concentration, in_last): (f64, f64, bool),
        out: &mut AlertSink<'_>,
    ) {
        let config = &self.config;
        let scale = self.reference.price_scale(out.key().symbol());
        let share_weight = (share / (2.0 * config.min_window_share.max(0.01))).clamp(0.0, 1.0);
        let move_weight = (moved.abs() / (3.0 * config.min_price_move.max(1e-6))).clamp(0.0, 1.0);
        let score = 100.0
            * (0.35 * share_weight
                + 0.35 * move_weight
                + 0.15 * concentration.clamp(0.0, 1.0)
                + 0.15 * f64::from(u8::from(in_last)));
        let severity = Severity::from_score(score, 50.0, 75.0);
        let direction = if moved > 0.0 { "buy" } else { "sell" };
        let minutes = config.window.as_secs_f64() / 60.0;
        let mut alert = out.alert_now();
        alert
            .account(account)
            .severity(severity)
            .score(score)
            .explain(format!(
                "net {direction}er of {} in the {minutes:.0} min before the {} close ({:.0} % of the window's volume, {:.0} % of its own volume of the session){}; the closing price moved {:+.2} % from {} to {}",
                activity.bought.abs_diff(activity.sold),
                day.date,
                100.0 * share,
                100.0 * concentration,
                if in_last { ", a party to the last execution" } else { "" },
                100.0 * moved,
                Decimal::price(reference, scale),
                Decimal::price(last, scale),
            ))
            .param("direction", direction)
            .param("bought", activity.bought)
            .param("sold", activity.sold)
            .param("window_share", share)
            .param("min_window_share", config.min_window_share)
            .param("price_move", moved)
            .param("min_price_move", config.min_price_move)
            .param("reference_price", Decimal::price(reference, scale))
            .param("closing_price", Decimal::price(last, scale))
            .param("concentration", concentration)
            .param("min_concentration", config.min_concentration)
            .param("in_last_print", if in_last { "yes" } else { "no" })
            .param("window", config.window);
        for e in &activity.evidence {
            alert.evidence(e);
        }
        if let Some(last) = session.last_event
            && !activity.evidence.contains(&last)
        {
            alert.evidence(&last);
        }
        alert.discriminator(day.close);
    }
}

/// Extension trait: the marking-the-close rule as an operator on a stream of events.
pub trait MarkingCloseExt<'scope> {
    /// Marking-the-close alerts: see the [module documentation](self).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use surveil::config::{MarkingCloseConfig, SessionConfig};
    /// use surveil::reference::ReferenceData;
    /// use surveil::rules::MarkingCloseExt;
    /// use timely::dataflow::operators::capture::Capture;
    /// use timely::dataflow::operators::ToStream;
    ///
    /// let reference = Arc::new(ReferenceData::new(2));
    /// let sessions = SessionConfig { timezone: "America/New_York".into(), close: Some("16:00".into()), ..SessionConfig::default() };
    /// let alerts = timely::example(move |scope| {
    ///     Vec::<surveil::model::Event>::new()
    ///         .to_stream(scope)
    ///         .marking_close(&MarkingCloseConfig::default(), &sessions, reference)
    ///         .capture()
    /// });
    /// assert!(surveil::testing::captured(alerts).is_empty());
    /// ```
    fn marking_close(
        self,
        config: &MarkingCloseConfig,
        sessions: &SessionConfig,
        reference: Arc<ReferenceData>,
    ) -> Stream<'scope, u64, Vec<Alert>>;
}

impl<'scope> MarkingCloseExt<'scope> for Stream<'scope, u64, Vec<Event>> {
    fn marking_close(
        self,
        config: &MarkingCloseConfig,
        sessions: &SessionConfig,
        reference: Arc<ReferenceData>,
    ) -> Stream<'scope, u64, Vec<Alert>> {
        self.detect(MarkingClose::new(config, sessions, reference))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{event, run, run_on};

    const MINUTE: u64 = 60_000_000_000;
    /// 2024-03-01 00:00 UTC.
    const DAY: u64 = 1_709_251_200_000_000_000;
    const CLOSE: u64 = DAY + 16 * 60 * MINUTE;

    fn sessions() -> SessionConfig {
        SessionConfig { close: Some("16:00".into()), ..SessionConfig::default() }
    }

    fn rule() -> MarkingClose {
        MarkingClose::new(&MarkingCloseConfig::default(), &sessions(), Arc::new(ReferenceData::new(2)))
    }

    /// A trade print of `quantity` at `cents`.
    fn print(time: u64, buyer: &str, seller: &str, cents: i64, quantity: u64) -> Event {
        let party = |name: &str| crate::model::Party { account: Symbol::of(name.as_bytes()), ..Default::default() };
        event(
            time,
            "ACME",
            "",
            Body::Trade {
                buyer: party(buyer),
                seller: party(seller),
                price: Price(cents),
                quantity,
                aggressor: Some(Side::Buy),
                linked: None,
            },
        )
    }

    /// A day of trades between others around 10.00, then `closer` buying in the last
    /// 20 minutes at rising prices up to `last_cents`, the last print its own.
    fn day(closer_buys: u64, last_cents: i64, earlier_volume: u64) -> Vec<Event> {
        let mut events = Vec::new();
        for m in 0..120 {
            events.push(print(CLOSE - (150 - m) * MINUTE, "A", "B", 1_000, 100));
        }
        if earlier_volume > 0 {
            events.push(print(CLOSE - 200 * MINUTE, "CLOSER", "B", 1_000, earlier_volume));
        }
        for k in 0..closer_buys {
            let cents = 1_000 + (last_cents - 1_000) * (k as i64 + 1) / closer_buys as i64;
            events.push(print(CLOSE - (20 - 2 * k) * MINUTE, "CLOSER", "C", cents, 200));
            events.push(print(CLOSE - (19 - 2 * k) * MINUTE, "A", "B", cents, 100));
        }
        events.push(print(CLOSE - 10_000_000, "CLOSER", "C", last_cents, 100));
        // After the close: no window.
        events.push(print(CLOSE + MINUTE, "A", "CLOSER", 990, 1_000));
        with_origins(events)
    }

    fn with_origins(mut events: Vec<Event>) -> Vec<Event> {
        for (i, e) in events.iter_mut().enumerate() {
            e.origin = crate::model::Origin::new(0, i as u64);
        }
        events
    }

    #[test]
    fn buying_up_the_close_with_the_last_print_is_one_alert() {
        for workers in [1, 2] {
            let alerts = run_on(workers, rule(), day(5, 1_010, 0));
            assert_eq!(alerts.len(), 1, "{alerts:#?}");
            let a = &alerts[0];
            assert_eq!((a.rule.as_str(), a.account), (rules::MARKING_CLOSE, Symbol::of(b"CLOSER")));
            assert_eq!(a.time, CLOSE);
            assert!(
                a.explanation.contains("net buyer of 1100") && a.explanation.contains("+1.00 %"),
                "{}",
                a.explanation
            );
            assert_eq!(a.evidence.len(), 6, "{a:#?}");
        }
    }

    /// A fill of `account`'s order at `cents`, taking liquidity or not.
    fn own_fill(time: u64, account: &str, side: Side, cents: i64, quantity: u64, aggressive: bool) -> Event {
        let aggressor = if aggressive { side } else { side.opposite() };
        event(
            time,
            "ACME",
            account,
            Body::Fill {
                order: Symbol::of(format!("{account}{time}").as_bytes()),
                side,
                price: Price(cents),
                quantity,
                aggressor: Some(aggressor),
                hidden: false,
            },
        )
    }

    #[test]
    fn fills_count_each_trade_once_whether_both_sides_or_one_are_in_the_input() {
        // Both sides' fills: the closer's aggressive buys of 200 against MM's resting sells,
        // and A's 300 bought from B, in the window; before it, trading at 10.00.
        let mut both = vec![own_fill(CLOSE - 60 * MINUTE, "A", Side::Buy, 1_000, 100, true)];
        both.push(own_fill(CLOSE - 60 * MINUTE, "B", Side::Sell, 1_000, 100, false));
        for k in 0..5u64 {
            let (t, cents) = (CLOSE - (20 - 2 * k) * MINUTE, 1_002 + 2 * k as i64);
            both.push(own_fill(t, "CLOSER", Side::Buy, cents, 200, true));
            both.push(own_fill(t, "MM", Side::Sell, cents, 200, false));
        }
        both.push(own_fill(CLOSE - 5 * MINUTE, "A", Side::Buy, 1_005, 300, false));
        both.push(own_fill(CLOSE - 5 * MINUTE, "B", Side::Sell, 1_005, 300, true));
        both.push(own_fill(CLOSE - MINUTE, "CLOSER", Side::Buy, 1_012, 100, true));
        both.push(own_fill(CLOSE - MINUTE, "MM", Side::Sell, 1_012, 100, false));
        let alerts = run(rule(), with_origins(both.clone()));
        assert_eq!(alerts.iter().map(|a| a.account).collect::<Vec<_>>(), [Symbol::of(b"CLOSER")]);
        // 1,100 of a window volume of 1,400, each trade once.
        assert!(alerts[0].explanation.contains("(79 % of the window's volume"), "{}", alerts[0].explanation);
        // The closer's own flow only (one side of each of its trades): the window is its own.
        let own: Vec<Event> = both.into_iter().filter(|e| e.account == Symbol::of(b"CLOSER")).collect();
        let alerts = run(rule(), with_origins(own));
        assert_eq!(alerts.len(), 1, "{alerts:#?}");
        assert!(alerts[0].explanation.contains("(100 % of the window's volume"), "{}", alerts[0].explanation);
    }

    #[test]
    fn small_moves_small_shares_all_day_traders_or_no_last_print_are_not_marking() {
        // A move of 0.3 %.
        assert!(run(rule(), day(5, 1_003, 0)).is_empty());
        // Its own 10,000 earlier in the day: a concentration of 1,100 / 11,100.
        assert!(run(rule(), day(5, 1_010, 10_000)).is_empty());
        // The last print is someone else's.
        let mut events = day(5, 1_010, 0);
        let n = events.len();
        events.insert(n - 1, print(CLOSE - 1_000_000, "A", "B", 1_010, 100));
        let events = with_origins(events);
        assert!(run(rule(), events.clone()).is_empty());
        let lenient = MarkingCloseConfig { require_last_print: false, ..MarkingCloseConfig::default() };
        let alerts = run(MarkingClose::new(&lenient, &sessions(), Arc::new(ReferenceData::new(2))), events);
        assert_eq!(alerts.len(), 1);
        // Selling into a rise is not marking it (its buyer is).
        let selling: Vec<Event> = day(5, 1_010, 0)
            .into_iter()
            .map(|mut e| {
                if let Body::Trade { buyer, seller, .. } = &mut e.body
                    && buyer.account == Symbol::of(b"CLOSER")
                {
                    std::mem::swap(buyer, seller);
                }
                e
            })
            .collect();
        let alerts = run(rule(), selling);
        assert_eq!(alerts.iter().map(|a| a.account).collect::<Vec<_>>(), [Symbol::of(b"C")]);
    }

    #[test]
    fn an_instrument_closes_at_its_own_closing_time() {
        // ACME closes at 15:15; OTHER has no closing time of its own.
        let mut reference = ReferenceData::new(2);
        let early = NaiveTime::from_hms_opt(15, 15, 0);
        reference.add_instrument("ACME", crate::reference::Instrument { closing_time: early, ..Default::default() });
        let reference = Arc::new(reference);
        let shift = 45 * MINUTE;
        let mut events: Vec<Event> = day(5, 1_010, 0).into_iter().map(|e| e.at(e.time - shift)).collect();
        events.extend(day(5, 1_010, 0).into_iter().map(|mut e| {
            e.instrument = Symbol::of(b"OTHER");
            e
        }));
        events.sort_by_key(|e| e.time);
        let events = with_origins(events);
        let alerts = |rule: MarkingClose| {
            let mut got: Vec<(Symbol, u64)> =
                run(rule, events.clone()).iter().map(|a| (a.instrument, a.time)).collect();
            got.sort();
            got
        };
        let config = MarkingCloseConfig::default();
        let (acme, other) = (Symbol::of(b"ACME"), Symbol::of(b"OTHER"));
        // With a session close for the others, each instrument is judged at its own close.
        let rule = MarkingClose::new(&config, &sessions(), reference.clone());
        assert_eq!(alerts(rule.clone()), vec![(acme, CLOSE - shift), (other, CLOSE)]);
        // Without one, only the instrument that has a closing time is judged.
        assert_eq!(alerts(rule.only_instruments_with_a_closing_time()), vec![(acme, CLOSE - shift)]);
    }
}
