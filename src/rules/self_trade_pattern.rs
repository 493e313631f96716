//! A pattern of self-trades (FINRA Rule 5210, Supplementary Material .02): a desk, or an
//! algorithm or trader, whose trades against itself make up a large share of its volume in a
//! security over a session.
//!
//! FINRA 5210 SM .02 treats self-trades (the same beneficial owner on both sides, no change of
//! ownership) from unrelated algorithms or separate trading strategies of one firm as generally
//! bona fide, and expects firms to have policies reasonably designed to review for, and prevent,
//! **a pattern of self-trades from orders of a single algorithm or trading desk, or related
//! algorithms or desks**. One self-trade is the self-trade rule's alert
//! ([`crate::rules::self_trade`]); this rule looks at the day: how much of what a desk (or, with
//! `by = "trader"`, an algorithm or trader) did in a security was with itself. FINRA publishes no
//! number for "a pattern"; the defaults (at least `min_prints` self-trades making up at least
//! `min_share` of the desk's executed volume) are a starting point for a firm's own policy.
//!
//! # Logic
//!
//! Per instrument and session (`sessions.timezone` midnight), over the trade prints whose
//! parties the account reference data places on a desk (trader):
//!
//! 1. each side adds its quantity to its desk's executed volume;
//! 2. a print is a **self-trade of the desk** when both sides are on that desk and it is
//!    self-matched: the same account, the same beneficial owner, or accounts linked by
//!    ownership as of the print ([`crate::links`]); both of its sides count as self-matched
//!    volume. A self-matched print between two desks is counted apart (bona fide under SM .02)
//!    and reported with the desk's numbers;
//! 3. at the session's end, a desk with at least `min_prints` self-trades whose self-matched
//!    volume is at least `min_share` of its executed volume raises one alert, with the share,
//!    the counts and the first self-trades as evidence.

use std::collections::BTreeMap;
use std::sync::Arc;

use timely::dataflow::Stream;

use crate::config::{PatternBy, SelfTradePatternConfig};
use crate::detect::{AlertSink, Detect, Detector, Key};
use crate::model::alert::rules;
use crate::model::time::SessionCalendar;
use crate::model::{Alert, Body, Event, Party, Severity, Symbol, Timestamp};
use crate::reference::ReferenceData;

/// The self-trade pattern rule.
#[derive(Clone)]
pub struct SelfTradePattern {
    config: SelfTradePatternConfig,
    calendar: SessionCalendar,
    reference: Arc<ReferenceData>,
}

impl SelfTradePattern {
    /// Builds the rule; desks and traders come from `reference`'s accounts, sessions end at
    /// midnight in `calendar`'s zone.
    pub fn new(
        config: &SelfTradePatternConfig,
        calendar: SessionCalendar,
        reference: Arc<ReferenceData>,
    ) -> SelfTradePattern {
        SelfTradePattern { config: *config, calendar, reference }
    }

    /// The beneficial owner of a party at `time`: the print's, else the account reference
    /// data's.
    fn owner_of(&self, party: &Party, time: u64) -> Symbol {
        if party.owner.is_none() {
            self.reference.account(party.account, time).map_or(Symbol::NONE, |a| a.owner)
        } else {
            party.owner
        }
    }

    /// The desk (or trader) of a party's account at `time`, if the reference data places it.
    fn unit_of(&self, party: &Party, time: u64) -> Option<Symbol> {
        let account = self.reference.account(party.account, time)?;
        let unit = match self.config.by {
            PatternBy::Desk => account.desk,
            PatternBy::Trader => account.trader,
        };
        (!unit.is_none()).then_some(unit)
    }
}

/// A desk's session on an instrument.
#[derive(Default)]
struct Tally {
    /// Executed quantity, both sides counted.
    volume: u64,
    /// Quantity of both sides of the desk's self-trades.
    self_volume: u64,
    self_prints: u64,
    /// Self-matched prints between this desk and another.
    cross_desk_prints: u64,
    /// The first self-trades.
    evidence: Vec<Event>,
}

/// What the rule remembers of an instrument: the current session.
#[derive(Default)]
pub struct SelfTradePatternState {
    session: Option<(Timestamp, BTreeMap<Symbol, Tally>)>,
}

impl Detector for SelfTradePattern {
    type State = SelfTradePatternState;

    fn name(&self) -> &str {
        rules::SELF_TRADE_PATTERN
    }

    fn key(&self, event: &Event) -> Option<Key> {
        matches!(event.body, Body::Trade { .. }).then_some(Key::Instrument(event.instrument))
    }

    fn on_event(&self, state: &mut SelfTradePatternState, event: &Event, out: &mut AlertSink<'_>) {
        let Body::Trade { buyer, seller, quantity, linked, .. } = event.body else {
            return;
        };
        let (buyer_unit, seller_unit) = (self.unit_of(&buyer, event.time), self.unit_of(&seller, event.time));
        if buyer_unit.is_none() && seller_unit.is_none() {
            return;
        }
        let (_, end) = self.calendar.session_of(event.time);
        if state.session.as_ref().is_some_and(|(e, _)| *e != end) {
            self.close_session(state, out);
        }
        let (_, desks) = state.session.get_or_insert_with(|| {
            out.timer(end);
            (end, BTreeMap::new())
        });
        for unit in [buyer_unit, seller_unit].into_iter().flatten() {
            desks.entry(unit).or_default().volume += quantity;
        }
        let same_account = !buyer.account.is_none() && buyer.account == seller.account;
        let (buyer_owner, seller_owner) = (self.owner_of(&buyer, event.time), self.owner_of(&seller, event.time));
        let same_owner = !buyer_owner.is_none() && buyer_owner == seller_owner;
        let self_matched = same_account || linked.unwrap_or(same_owner);
        if !self_matched {
            return;
        }
        match (buyer_unit, seller_unit) {
            (Some(b), Some(s)) if b == s => {
                let tally = desks.entry(b).or_default();
                tally.self_volume += 2 * quantity;
                tally.self_prints += 1;
                if tally.evidence.len() < self.config.max_evidence {
                    tally.evidence.push(*event);
                }
            }
            (b, s) => {
                for unit in [b, s].into_iter().flatten() {
                    desks.entry(unit).or_default().cross_desk_prints += 1;
                }
            }
        }
    }

    fn on_timer(&self, state: &mut SelfTradePatternState, time: Timestamp, out: &mut AlertSink<'_>) {
        if state.session.as_ref().is_some_and(|(end, _)| *end <= time) {
            self.close_session(state, out);
        }
    }
}

impl SelfTradePattern {
    fn close_session(&self, state: &mut SelfTradePatternState, out: &mut AlertSink<'_>) {
        let Some((_, desks)) = state.session.take() else {
            return;
        };
        let unit = match self.config.by {
            PatternBy::Desk => "desk",
            PatternBy::Trader => "trader",
        };
        for (desk, tally) in desks {
            let share = tally.self_volume as f64 / tally.volume.max(1) as f64;
            if tally.self_prints < self.config.min_prints || share < self.config.min_share {
                continue;
            }
            // Twice the share asked for is as bad as it gets for the score.
            let score = (60.0 + 40.0 * ((share - self.config.min_share) / self.config.min_share.max(1e-9)).min(1.0))
                .clamp(60.0, 100.0);
            let mut alert = out.alert_now();
            alert
                .severity(Severity::from_score(score, 60.0, 80.0))
                .score(score)
                .explain(format!(
                    "{} self-trades of one {unit} made up {:.1} % of its executed volume in the session ({} of {})",
                    tally.self_prints,
                    100.0 * share,
                    tally.self_volume,
                    tally.volume
                ))
                .param(unit, desk)
                .param("self_trades", tally.self_prints)
                .param("self_matched_volume", tally.self_volume)
                .param("volume", tally.volume)
                .param("share", share)
                .param("cross_desk_self_trades", tally.cross_desk_prints)
                .discriminator(desk.0);
            for event in &tally.evidence {
                alert.evidence(event);
            }
        }
    }
}

/// Extension trait: the self-trade pattern rule as an operator.
pub trait SelfTradePatternExt<'scope> {
    /// Alerts for desks (or traders) whose self-trades in an instrument make up a large share
    /// of their volume over a session (see the [module documentation](self)).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use surveil::config::SelfTradePatternConfig;
    /// use surveil::model::time::SessionCalendar;
    /// use surveil::reference::ReferenceData;
    /// use surveil::rules::SelfTradePatternExt;
    /// use surveil::testing::{captured, trade};
    /// use timely::dataflow::operators::ToStream;
    /// use timely::dataflow::operators::capture::Capture;
    ///
    /// let mut reference = ReferenceData::new(4);
    /// reference.set_account("ALGO1", "FIRM", "DESK1", "BOT1");
    /// reference.set_account("CLIENT", "CLIENT", "", "");
    /// // The desk's account buys 20 times from a client and trades 5 times with itself: both
    /// // sides of those 5 prints, 1,000 of the desk's 3,000 executed, are self-matched.
    /// let mut prints: Vec<_> = (0..20).map(|i| trade("ACME", "ALGO1", "CLIENT", 100).at(i + 1)).collect();
    /// prints.extend((0..5).map(|i| trade("ACME", "ALGO1", "ALGO1", 100).at(100 + i)));
    /// let reference = Arc::new(reference);
    /// let alerts = timely::example(move |scope| {
    ///     let calendar = SessionCalendar::new(chrono_tz::UTC);
    ///     prints.to_stream(scope).self_trade_pattern(&SelfTradePatternConfig::default(), calendar, reference).capture()
    /// });
    /// assert_eq!(captured(alerts).len(), 1);
    /// ```
    fn self_trade_pattern(
        self,
        config: &SelfTradePatternConfig,
        calendar: SessionCalendar,
        reference: Arc<ReferenceData>,
    ) -> Stream<'scope, u64, Vec<Alert>>;
}

impl<'scope> SelfTradePatternExt<'scope> for Stream<'scope, u64, Vec<Event>> {
    fn self_trade_pattern(
        self,
        config: &SelfTradePatternConfig,
        calendar: SessionCalendar,
        reference: Arc<ReferenceData>,
    ) -> Stream<'scope, u64, Vec<Alert>> {
        self.detect_all(SelfTradePattern::new(config, calendar, reference)).alerts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{run_on, trade};

    const DAY: u64 = 86_400_000_000_000;

    fn reference() -> Arc<ReferenceData> {
        let mut reference = ReferenceData::new(4);
        reference.set_account("A1", "FIRM", "EQ", "ALGO_A");
        reference.set_account("A2", "FIRM", "EQ", "ALGO_B");
        reference.set_account("B1", "FIRM", "FX", "ALGO_C");
        reference.set_account("C", "CLIENT", "", "");
        Arc::new(reference)
    }

    fn rule(by: PatternBy) -> SelfTradePattern {
        let config = SelfTradePatternConfig { by, ..SelfTradePatternConfig::default() };
        SelfTradePattern::new(&config, SessionCalendar::new(chrono_tz::UTC), reference())
    }

    /// `client` prints with the client and `own` prints between `buyer` and `seller`, in the
    /// session starting at `start`.
    fn day(client: u64, own: u64, buyer: &str, seller: &str, start: u64) -> Vec<Event> {
        let mut prints: Vec<Event> = (0..client).map(|i| trade("ACME", "A1", "C", 100).at(start + i + 1)).collect();
        prints.extend((0..own).map(|i| trade("ACME", buyer, seller, 100).at(start + 1_000 + i)));
        prints
    }

    #[test]
    fn a_desk_trading_with_itself_is_raised_once_per_session() {
        let mut prints = day(50, 10, "A1", "A2", 0);
        prints.extend(day(50, 10, "A2", "A1", DAY));
        let alerts = run_on(2, rule(PatternBy::Desk), prints);
        assert_eq!(alerts.len(), 2, "{alerts:?}");
        assert_eq!(alerts.iter().map(|a| a.time).collect::<Vec<_>>(), vec![DAY, 2 * DAY]);
        let share = alerts[0].parameters.iter().find(|p| p.name == "share").map(|p| p.value.clone());
        // 10 self-trades, both sides: 2,000 of 7,000.
        assert_eq!(share, Some(crate::model::alert::Value::Ratio(2_000.0 / 7_000.0)));
        assert_eq!(alerts[0].evidence.len(), 10);
    }

    #[test]
    fn self_trades_across_desks_are_bona_fide() {
        // The same owner on both sides, but two desks: counted apart, no pattern.
        let alerts = run_on(1, rule(PatternBy::Desk), day(50, 10, "A1", "B1", 0));
        assert!(alerts.is_empty(), "{alerts:?}");
    }

    #[test]
    fn by_trader_separates_the_algorithms_of_a_desk() {
        // A1 and A2 are two algorithms of one desk: a pattern by desk, none by algorithm...
        assert_eq!(run_on(1, rule(PatternBy::Trader), day(50, 10, "A1", "A2", 0)).len(), 0);
        // ...until one algorithm trades with itself.
        assert_eq!(run_on(1, rule(PatternBy::Trader), day(50, 10, "A1", "A1", 0)).len(), 1);
    }

    #[test]
    fn a_few_self_trades_in_a_large_volume_are_no_pattern() {
        assert!(run_on(1, rule(PatternBy::Desk), day(500, 10, "A1", "A2", 0)).is_empty());
        assert!(run_on(1, rule(PatternBy::Desk), day(5, 4, "A1", "A2", 0)).is_empty(), "too few prints");
    }
}
