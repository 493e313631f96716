//! Insider-like trading: accounts whose trades sit systematically at the session's price
//! extremes.
//!
//! A trader who buys at the day's low and sells at the day's high, trade after trade, is either
//! lucky or trading on what the market does not know yet (MAR Art. 8 insider dealing; FINRA
//! Rule 3110(d) requires member firms to review their own and their employees' trades for
//! insider trading). Surveillance systems flag the pattern, not the proof: the account's
//! executions are compared with the session's range afterwards, and those that keep landing at
//! the favourable end are ranked for review.
//!
//! # Logic (per session, over the named parties of trades)
//!
//! 1. Per instrument, the session's lowest and highest trade price, over every trade (known when
//!    the session ends).
//! 2. An execution is **at the extreme** when it is a buy within `band` of the range above the
//!    low, or a sell within `band` of the range below the high. An instrument that traded at one
//!    price has no extremes and does not count.
//! 3. Per account: `n` executions that count, `k` at the extreme; the lower bound of the Wilson
//!    score interval for `k / n` at `confidence_z` (95 % by default). The bound ranks small
//!    perfect records below large strong ones only as far as the evidence warrants: 5 of 7 at
//!    the extreme (lower bound 0.36) ranks above 1,035 of 5,778 (0.17), and 3 of 5 (0.23) below
//!    the default threshold.
//! 4. An alert for every account with `n >= min_trades` and a lower bound of at least
//!    `min_lower_bound`, ranked within the session by that bound; evidence: the executions at the
//!    extreme (the first `MAX_EVIDENCE` in time).
//!
//! Under chance, an execution lands in the favourable `band` of the range about `band` of the
//! time (less, as prices gather mid-range); the default threshold (0.25 with a 5 % band) asks
//! for five times that, with 95 % confidence.
//!
//! A session's trades never change once it is over, so the rule needs no differential
//! collections (whose arranged batches would hold each session's updates, and their
//! retractions, long after it ends): three folds, each handing its result on once the watermark
//! passes the session's last nanosecond, the same on any number of workers. Every trade of an
//! instrument goes to one worker, which folds it into the session's summary as it arrives: each
//! instrument's low and high, per account, instrument and side a count per price, and only the
//! executions the evidence could still show (an execution preceded by `MAX_EVIDENCE` others of
//! the same account, instrument and side at the same or a better price never can). Memory is
//! bounded by the price levels a session trades, not by its number of trades. At the session's
//! end each worker judges its instruments' executions and sends each account's part of the
//! record to the worker of that account, which adds the parts up and keeps the accounts that
//! clear the thresholds; one worker per session ranks them and writes the alerts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use surveil_operators::{FoldAt, KeyMap, route};
use timely::dataflow::Stream;
use timely::dataflow::operators::Exchange;
use timely::dataflow::operators::vec::Map;

use super::executions::Execution;
use crate::config::InsiderLikeConfig;
use crate::model::alert::{rules, score_from_excess};
use crate::model::time::SessionCalendar;
use crate::model::{Alert, Body, Event, Severity, Side, Symbol};

/// At most this many executions at the extreme go into an alert as evidence.
pub const MAX_EVIDENCE: usize = 20;

/// A session's trades on one worker (every trade of an instrument comes to the same worker),
/// folded as they arrive. The rule needs of them each instrument's range, per account,
/// instrument and side how many executions sit at each price, and the executions the evidence
/// could show. The alert shows an account's first [`MAX_EVIDENCE`] executions at the extremes
/// in time; when an execution is at the extreme, so is every execution of the same account,
/// instrument and side at the same or a better price, so an execution preceded by
/// [`MAX_EVIDENCE`] of those can never be shown and is only counted. The state is bounded by the
/// price levels traded (after each pruning at most [`MAX_EVIDENCE`] showable executions per
/// price, since earlier ones at the same price hide later ones), not by the number of trades.
#[derive(Default)]
struct SessionTrades {
    last: u64,
    ranges: KeyMap<Symbol, (i64, i64)>,
    books: KeyMap<(Symbol, Symbol, Side), Executions>,
}

/// Executions of one account in one instrument on one side.
#[derive(Default)]
struct Executions {
    /// How many at each price.
    levels: BTreeMap<i64, u64>,
    /// Those the evidence could show (distinct).
    showable: Vec<Execution>,
    /// How many `showable` held after it was last pruned.
    pruned_at: usize,
}

impl SessionTrades {
    fn add(&mut self, last: u64, event: &Event) {
        let Body::Trade { price, .. } = event.body else { return };
        self.last = self.last.max(last);
        let range = self.ranges.entry(event.instrument).or_insert((price.0, price.0));
        *range = (range.0.min(price.0), range.1.max(price.0));
        for execution in Execution::of_trade(event).into_iter().flatten() {
            let key = (execution.account, execution.instrument, execution.side);
            self.books.entry(key).or_default().add(execution);
        }
    }

    /// Each account's record over the instruments folded here, judged against their ranges:
    /// `(session's last nanosecond, account, record)`. An instrument that traded at one price
    /// has no extremes: its executions neither count nor sit at an extreme.
    fn records(self, band: f64, out: &mut Vec<(u64, Symbol, Record)>) {
        let mut accounts: BTreeMap<Symbol, Record> = BTreeMap::new();
        for ((account, instrument, side), executions) in self.books {
            let record = accounts.entry(account).or_default();
            let Some(&(low, high)) = self.ranges.get(&instrument) else { continue };
            if high <= low {
                continue;
            }
            let range = (high - low) as f64;
            let at_extreme = |price: i64| match side {
                Side::Buy => ((price - low) as f64) <= band * range,
                Side::Sell => ((high - price) as f64) <= band * range,
            };
            for (&price, &count) in &executions.levels {
                record.counted += count;
                if at_extreme(price) {
                    record.at_extreme += count;
                }
            }
            let shown = executions.showable.iter().filter(|x| at_extreme(x.price));
            record.evidence.extend(shown.copied());
        }
        for (account, mut record) in accounts {
            record.keep_first_evidence();
            out.push((self.last, account, record));
        }
    }
}

impl Executions {
    fn add(&mut self, execution: Execution) {
        *self.levels.entry(execution.price).or_default() += 1;
        // One pass that stops at a copy already kept or at the last execution needed to hide
        // this one: late in a session most executions are hidden by a few of the first kept,
        // and the list holds up to MAX_EVIDENCE per price level.
        let mut hidden_by = 0;
        for kept in &self.showable {
            if *kept == execution {
                return;
            }
            if hides(kept, &execution) {
                hidden_by += 1;
                if hidden_by >= MAX_EVIDENCE {
                    return;
                }
            }
        }
        self.showable.push(execution);
        // Executions that arrived before others that hide them are pruned now and then: a
        // pass costs the square of the list, so it runs each time the list has doubled.
        if self.showable.len() >= 2 * self.pruned_at.max(2 * MAX_EVIDENCE) {
            let keep: Vec<bool> = self
                .showable
                .iter()
                .map(|e| self.showable.iter().filter(|d| hides(d, e)).take(MAX_EVIDENCE).count() < MAX_EVIDENCE)
                .collect();
            let mut index = 0;
            self.showable.retain(|_| {
                index += 1;
                keep[index - 1]
            });
            self.pruned_at = self.showable.len();
        }
    }
}

/// Whether `earlier` keeps `later` out of the evidence: it precedes it and is at the extreme
/// whenever `later` is (same account, instrument and side, at the same or a better price).
fn hides(earlier: &Execution, later: &Execution) -> bool {
    let better = match later.side {
        Side::Buy => earlier.price <= later.price,
        Side::Sell => earlier.price >= later.price,
    };
    better && (earlier.time, earlier.origin, *earlier) < (later.time, later.origin, *later)
}

/// An account's record in one session, or in the part of it one worker saw.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    at_extreme: u64,
    counted: u64,
    /// Executions at the extremes, the first [`MAX_EVIDENCE`] in time once kept.
    evidence: Vec<Execution>,
}

impl Record {
    fn merge(&mut self, other: Record) {
        self.at_extreme += other.at_extreme;
        self.counted += other.counted;
        self.evidence.extend(other.evidence);
    }

    /// The first executions in time are the evidence; the first of a whole session are among
    /// the first of each of its parts, so a part keeps only its own first.
    fn keep_first_evidence(&mut self) {
        self.evidence.sort_by_key(|x| (x.time, x.origin, *x));
        self.evidence.dedup();
        self.evidence.truncate(MAX_EVIDENCE);
    }
}

/// A session's records, gathered on one worker: its last nanosecond and a record per account.
#[derive(Default)]
struct SessionRecords {
    last: u64,
    accounts: BTreeMap<Symbol, Record>,
}

impl SessionRecords {
    fn add(&mut self, (last, account, record): (u64, Symbol, Record)) {
        self.last = self.last.max(last);
        self.accounts.entry(account).or_default().merge(record);
    }
}

/// The lower bound of the Wilson score interval for `k` successes in `n` trials at `z`.
///
/// ```
/// use surveil::rules::insider_like::wilson_lower_bound;
/// assert!((wilson_lower_bound(5, 7, 1.96) - 0.359).abs() < 0.001);
/// assert!((wilson_lower_bound(3, 5, 1.96) - 0.231).abs() < 0.001);
/// assert_eq!(wilson_lower_bound(0, 0, 1.96), 0.0);
/// ```
pub fn wilson_lower_bound(k: u64, n: u64, z: f64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let z2 = z * z;
    let centre = p + z2 / (2.0 * n);
    let margin = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - margin) / (1.0 + z2 / n)).max(0.0)
}

/// Extension trait: the insider-like rule as an operator on a stream of events.
pub trait InsiderLikeExt<'scope> {
    /// Alerts for accounts whose executions sit at their sessions' price extremes (see the
    /// [module documentation](self)), one per account and session, at the session's last
    /// nanosecond of event time.
    ///
    /// ```
    /// use surveil::config::InsiderLikeConfig;
    /// use surveil::model::time::SessionCalendar;
    /// use surveil::rules::InsiderLikeExt;
    /// use surveil::testing::{captured, trade_at_price};
    /// use timely::dataflow::operators::capture::Capture;
    /// use timely::dataflow::operators::ToStream;
    ///
    /// // MM trades at 100-110 all day; LUCKY buys at the low twice and sells at the high
    /// // four times.
    /// let mut trades = Vec::new();
    /// for i in 0..40u64 {
    ///     trades.push(trade_at_price(1_000 + i, "ACME", "MM1", "MM2", &format!("{}", 100 + i % 11)));
    /// }
    /// for (i, (buyer, seller, price)) in [("LUCKY", "MM1", "100"), ("MM2", "LUCKY", "110"),
    ///     ("LUCKY", "MM2", "100"), ("MM1", "LUCKY", "110"), ("MM2", "LUCKY", "110"),
    ///     ("MM1", "LUCKY", "110")].into_iter().enumerate() {
    ///     trades.push(trade_at_price(2_000 + i as u64, "ACME", buyer, seller, price));
    /// }
    /// let alerts = timely::example(move |scope| {
    ///     let calendar = SessionCalendar::new(chrono_tz::UTC);
    ///     trades.to_stream(scope).insider_like(&InsiderLikeConfig::default(), calendar).capture()
    /// });
    /// let alerts = captured(alerts);
    /// assert_eq!(alerts.len(), 1);
    /// assert_eq!(alerts[0].account, surveil::model::Symbol::of(b"LUCKY"));
    /// ```
    fn insider_like(self, config: &InsiderLikeConfig, calendar: SessionCalendar) -> Stream<'scope, u64, Vec<Alert>>;
}

impl<'scope> InsiderLikeExt<'scope> for Stream<'scope, u64, Vec<Event>> {
    fn insider_like(self, config: &InsiderLikeConfig, calendar: SessionCalendar) -> Stream<'scope, u64, Vec<Alert>> {
        let InsiderLikeConfig { band, min_trades, min_lower_bound, confidence_z, .. } = *config;
        let bound = move |record: &Record| wilson_lower_bound(record.at_extreme, record.counted, confidence_z);
        // 1. Every trade of an instrument on one worker, folded per session as it arrives
        //    (`SessionTrades`); at the session's end, each account's record over the worker's
        //    instruments.
        let parts = self
            .flat_map(move |event: Event| {
                let Body::Trade { .. } = event.body else { return None };
                let (_, end) = calendar.session_of(event.time);
                Some((end.saturating_sub(1).max(event.time), event))
            })
            .exchange(|(_, event): &(u64, Event)| route(&event.instrument))
            .fold_at(
                "SessionTrades",
                |(last, _): &(u64, Event)| *last,
                |session: &mut SessionTrades, (last, event)| session.add(last, &event),
                move |session, out| session.records(band, out),
            );
        // 2. Each account's parts on one worker: its whole record, kept when it clears the
        //    thresholds.
        let flagged = parts.exchange(|(_, account, _): &(u64, Symbol, Record)| route(account)).fold_at(
            "AccountRecords",
            |(last, _, _): &(u64, Symbol, Record)| *last,
            SessionRecords::add,
            move |session: SessionRecords, out: &mut Vec<(u64, Symbol, Record)>| {
                for (account, mut record) in session.accounts {
                    if record.counted >= min_trades && bound(&record) >= min_lower_bound {
                        record.keep_first_evidence();
                        out.push((session.last, account, record));
                    }
                }
            },
        );
        // 3. A session's flagged accounts on one worker, ranked.
        let ranked = flagged.exchange(|(last, _, _): &(u64, Symbol, Record)| route(last)).fold_at(
            "RankAccounts",
            |(last, _, _): &(u64, Symbol, Record)| *last,
            SessionRecords::add,
            move |session: SessionRecords, out: &mut Vec<(u64, u64, u64, Symbol, Record)>| {
                let mut all: Vec<(f64, Symbol, Record)> =
                    session.accounts.into_iter().map(|(account, record)| (bound(&record), account, record)).collect();
                all.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
                let of = all.len() as u64;
                for (rank, (_, account, record)) in all.into_iter().enumerate() {
                    out.push((session.last, rank as u64 + 1, of, account, record));
                }
            },
        );
        ranked.map(move |(session, rank, of, account, record)| {
            let lower = wilson_lower_bound(record.at_extreme, record.counted, confidence_z);
            let share = record.at_extreme as f64 / record.counted as f64;
            // How far the bound clears the threshold, scored as every limit is.
            let excess = if min_lower_bound > 0.0 { lower / min_lower_bound } else { f64::INFINITY };
            let mut alert = Alert::builder(rules::INSIDER_LIKE, session);
            alert
                .account(account)
                .severity(Severity::from_excess(excess))
                .score(score_from_excess(excess))
                .explain(format!(
                    "{} of {} trades at the session's price extremes (buys within {:.0}% of the range above \
                         the low, sells within {:.0}% below the high): at least {:.0}% by the Wilson bound at \
                         z = {confidence_z}; rank {rank} of {of} flagged accounts",
                    record.at_extreme,
                    record.counted,
                    band * 100.0,
                    band * 100.0,
                    lower * 100.0,
                ))
                .param("trades", record.counted)
                .param("at_extremes", record.at_extreme)
                .param("share", share)
                .param("lower_bound", lower)
                .param("rank", rank)
                .param("band", band);
            for execution in &record.evidence {
                alert.evidence(&execution.evidence());
            }
            alert.build()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_rank_small_perfect_records_by_their_evidence() {
        let z = 1.96;
        assert!(wilson_lower_bound(5, 7, z) > wilson_lower_bound(1_035, 5_778, z));
        assert!(wilson_lower_bound(3, 5, z) < 0.25);
        assert!(wilson_lower_bound(5, 5, z) > 0.5);
        assert!(wilson_lower_bound(0, 100, z) == 0.0);
    }

    /// A session folded in any order keeps its range, every execution's count, and the
    /// executions the evidence could show; its records judge them against the range.
    #[test]
    fn a_folded_session_keeps_counts_ranges_and_what_the_evidence_can_show() {
        use crate::testing::trade_at_price;
        let trades: Vec<Event> = (0..50u64)
            .map(|i| {
                let price = if i % 2 == 0 { "10.00" } else { "11.00" };
                trade_at_price(1_000 + i, "ACME", "BUYER", &format!("S{}", i % 3), price)
            })
            .collect();
        let fold = |trades: &mut dyn Iterator<Item = &Event>| {
            let mut session = SessionTrades::default();
            for trade in trades {
                session.add(5_000, trade);
            }
            session
        };
        let (buyer, acme) = (Symbol::of(b"BUYER"), Symbol::of(b"ACME"));
        for backwards in [true, false] {
            let session = if backwards { fold(&mut trades.iter().rev()) } else { fold(&mut trades.iter()) };
            let (low, high) = session.ranges.get(&acme).copied().expect("range");
            assert!(low < high);
            // In time order, a buy preceded by 20 buys at its price or a better one is only
            // counted: at 10.00 the 20 first are kept, at 11.00 the 10 before the 20th buy.
            if !backwards {
                let buys = session.books.get(&(buyer, acme, Side::Buy)).expect("buys");
                let kept = |price: i64| buys.showable.iter().filter(|x| x.price == price).count();
                assert_eq!((kept(low), kept(high)), (MAX_EVIDENCE, MAX_EVIDENCE / 2));
            }
            let mut records = Vec::new();
            session.records(0.05, &mut records);
            assert!(records.iter().all(|(last, _, _)| *last == 5_000));
            let record = |account: &[u8]| {
                let account = Symbol::of(account);
                records.iter().find(|(_, a, _)| *a == account).map(|(_, _, r)| r.clone()).expect("record")
            };
            // Every buy counts, those at the low are at the extreme, and the evidence is the
            // first 20 of those in time, whatever the order of arrival.
            let bought = record(b"BUYER");
            assert_eq!((bought.counted, bought.at_extreme), (50, 25));
            let first: Vec<u64> = (0..50u64).filter(|i| i % 2 == 0).map(|i| 1_000 + i).take(MAX_EVIDENCE).collect();
            assert_eq!(bought.evidence.iter().map(|x| x.time).collect::<Vec<_>>(), first);
            // The sellers sold at the high half the time.
            let sold: Vec<(u64, u64)> =
                [&b"S0"[..], b"S1", b"S2"].iter().map(|s| record(s)).map(|r| (r.counted, r.at_extreme)).collect();
            assert_eq!(sold.iter().map(|r| r.0).sum::<u64>(), 50);
            assert_eq!(sold.iter().map(|r| r.1).sum::<u64>(), 25);
        }
    }

    /// An instrument that traded at one price has no extremes: its executions do not count.
    #[test]
    fn an_instrument_at_one_price_counts_nothing() {
        use crate::testing::trade_at_price;
        let mut session = SessionTrades::default();
        for i in 0..5 {
            session.add(5_000, &trade_at_price(1_000 + i, "FLAT", "BUYER", "SELLER", "10.00"));
        }
        let mut records = Vec::new();
        session.records(0.05, &mut records);
        assert_eq!(records.len(), 2);
        assert!(records.iter().all(|(_, _, r)| *r == Record::default()), "{records:?}");
    }
}
