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
//! Built on differential dataflow: executions are a collection over event time whose updates
//! all land on the session's last nanosecond (and are retracted one nanosecond later, so state
//! is released when the session is over), the extremes are a `reduce` per (session,
//! instrument), the judgement a `join` and a `reduce` per (session, account), and the ranking a
//! `reduce` per session. The alerts come out once the watermark passes the session's end, the
//! same on any number of workers.
//!
//! Until its session ends, a trade is folded into the session's summary as it arrives: each
//! instrument's low and high, per account, instrument and side a count per price, and only the
//! executions the evidence could still show (an execution preceded by `MAX_EVIDENCE` others of
//! the same account, instrument and side at the same or a better price never can). Memory is
//! bounded by the price levels a session trades, not by its number of trades.

use std::collections::BTreeMap;

use differential_dataflow::{AsCollection, VecCollection};
use serde::{Deserialize, Serialize};
use surveil_operators::{FoldAt, KeyMap};
use timely::dataflow::Stream;
use timely::dataflow::operators::vec::Map;

use super::executions::Execution;
use crate::config::InsiderLikeConfig;
use crate::model::alert::{rules, score_from_excess};
use crate::model::time::SessionCalendar;
use crate::model::{Alert, Body, Event, Severity, Side, Symbol};

/// At most this many executions at the extreme go into an alert as evidence.
pub const MAX_EVIDENCE: usize = 20;

/// What the rule hands to its collections of a session's trades.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum Sessioned {
    /// The session's low or high trade price of an instrument, named parties or not.
    Price(Symbol, i64),
    /// A named party's execution; `false` stands for executions of the same account, instrument,
    /// side and price that the evidence cannot show (counted by the update's weight).
    Execution(Execution, bool),
}

/// A session's trades, folded as they arrive. The rule needs of them each instrument's range,
/// per account, instrument and side how many executions sit at each price, and the executions
/// the evidence could show. The alert shows an account's first [`MAX_EVIDENCE`] executions at
/// the extremes in time; when an execution is at the extreme, so is every execution of the same
/// account, instrument and side at the same or a better price, so an execution preceded by
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
    /// Those the evidence could show (distinct, with how often each was seen).
    showable: Vec<(Execution, u64)>,
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

    /// The session's updates with their weights: each range's ends, each showable execution,
    /// and for each price level one stand-in for the executions that cannot be shown.
    fn finish(self, out: &mut Vec<((u64, Sessioned), isize)>) {
        let last = self.last;
        let weight = |times: u64| isize::try_from(times).unwrap_or(isize::MAX);
        for (instrument, (low, high)) in self.ranges {
            out.push(((last, Sessioned::Price(instrument, low)), 1));
            out.push(((last, Sessioned::Price(instrument, high)), 1));
        }
        for ((account, instrument, side), executions) in self.books {
            let mut hidden = executions.levels;
            for &(execution, times) in &executions.showable {
                if let Some(count) = hidden.get_mut(&execution.price) {
                    *count = count.saturating_sub(times);
                }
                out.push(((last, Sessioned::Execution(execution, true)), weight(times)));
            }
            for (price, count) in hidden.into_iter().filter(|(_, count)| *count > 0) {
                let stand_in = Execution {
                    time: last,
                    origin: 0,
                    instrument,
                    account,
                    counterparty: Symbol::NONE,
                    side,
                    price,
                    quantity: 0,
                };
                out.push(((last, Sessioned::Execution(stand_in, false)), weight(count)));
            }
        }
    }
}

impl Executions {
    fn add(&mut self, execution: Execution) {
        *self.levels.entry(execution.price).or_default() += 1;
        if let Some(seen) = self.showable.iter_mut().find(|(e, _)| *e == execution) {
            seen.1 += 1;
            return;
        }
        if self.showable.iter().filter(|(d, _)| hides(d, &execution)).count() >= MAX_EVIDENCE {
            return;
        }
        self.showable.push((execution, 1));
        // Executions that arrived before others that hide them are pruned now and then: a
        // pass costs the square of the list, so it runs each time the list has doubled.
        if self.showable.len() >= 2 * self.pruned_at.max(2 * MAX_EVIDENCE) {
            let keep: Vec<bool> = self
                .showable
                .iter()
                .map(|(e, _)| self.showable.iter().filter(|(d, _)| hides(d, e)).count() < MAX_EVIDENCE)
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

/// An execution judged against its session's range: whether it counts (the instrument's range
/// is not empty), whether it is at the extreme, whether the evidence may show it, and itself.
type Judged = (bool, bool, bool, Execution);

/// An account's place in its session: (rank, flagged accounts, account, record).
type Ranked = (u64, u64, Symbol, Record);

/// An account's record in one session.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Record {
    at_extreme: u64,
    counted: u64,
    evidence: Vec<Execution>,
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
        // Every trade's price and its named parties' executions, folded per session as they
        // arrive (see `SessionTrades`), handed over at the session's last nanosecond and
        // retracted at its end.
        let updates: VecCollection<'scope, u64, (u64, Sessioned), isize> = self
            .flat_map(move |event: Event| {
                let Body::Trade { .. } = event.body else { return None };
                let (_, end) = calendar.session_of(event.time);
                Some((end.saturating_sub(1).max(event.time), event))
            })
            .fold_at(
                "SessionTrades",
                |(last, _): &(u64, Event)| *last,
                |session: &mut SessionTrades, (last, event)| session.add(last, &event),
                SessionTrades::finish,
            )
            .flat_map(|((last, u), diff): ((u64, Sessioned), isize)| {
                [((last, u.clone()), last, diff), ((last, u), last + 1, -diff)]
            })
            .as_collection();
        let executions = updates.clone().flat_map(|(session, u)| match u {
            Sessioned::Execution(x, shown) => Some((session, (x, shown))),
            Sessioned::Price(..) => None,
        });
        let prices = updates.flat_map(|(session, u)| match u {
            Sessioned::Price(instrument, price) => Some(((session, instrument), price)),
            Sessioned::Execution(..) => None,
        });
        let extremes = prices.reduce(|_, prices: &[(&i64, isize)], out: &mut Vec<((i64, i64), isize)>| {
            if let (Some(low), Some(high)) = (prices.first(), prices.last()) {
                out.push(((*low.0, *high.0), 1));
            }
        });
        let judged = executions.map(|(session, x)| ((session, x.0.instrument), x)).join_map(
            extremes,
            move |&(session, _), &(x, shown), &(low, high)| {
                let range = (high - low) as f64;
                let at_extreme = range > 0.0
                    && match x.side {
                        Side::Buy => ((x.price - low) as f64) <= band * range,
                        Side::Sell => ((high - x.price) as f64) <= band * range,
                    };
                ((session, x.account), (range > 0.0, at_extreme, shown, x))
            },
        );
        let records = judged.reduce(move |_, executions: &[(&Judged, isize)], out: &mut Vec<(Record, isize)>| {
            let mut record = Record { at_extreme: 0, counted: 0, evidence: Vec::new() };
            for ((counts, at_extreme, shown, execution), times) in executions {
                let times = u64::try_from(*times).unwrap_or(0);
                if *counts {
                    record.counted += times;
                }
                if *at_extreme {
                    record.at_extreme += times;
                    if *shown {
                        record.evidence.push(*execution);
                    }
                }
            }
            if record.counted >= min_trades
                && wilson_lower_bound(record.at_extreme, record.counted, confidence_z) >= min_lower_bound
            {
                record.evidence.sort_by_key(|x| (x.time, x.origin));
                record.evidence.truncate(MAX_EVIDENCE);
                out.push((record, 1));
            }
        });
        let ranked = records.map(|((session, account), record)| (session, (account, record))).reduce(
            move |_, accounts: &[(&(Symbol, Record), isize)], out: &mut Vec<(Ranked, isize)>| {
                let mut all: Vec<(f64, &(Symbol, Record))> = accounts
                    .iter()
                    .map(|(a, _)| (wilson_lower_bound(a.1.at_extreme, a.1.counted, confidence_z), *a))
                    .collect();
                all.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.0.cmp(&y.1.0)));
                let of = all.len() as u64;
                for (rank, (_, (account, record))) in all.into_iter().enumerate() {
                    out.push(((rank as u64 + 1, of, *account, record.clone()), 1));
                }
            },
        );
        ranked.inner.flat_map(move |((session, (rank, of, account, record)), _, diff)| {
            (diff > 0).then(|| {
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

    /// A session folded in any order keeps its range, every execution's weight, and the
    /// executions the evidence could show.
    #[test]
    fn a_folded_session_keeps_counts_ranges_and_what_the_evidence_can_show() {
        use crate::testing::trade_at_price;
        let mut trades: Vec<Event> = (0..50u64)
            .map(|i| {
                let price = if i % 2 == 0 { "10.00" } else { "11.00" };
                trade_at_price(1_000 + i, "ACME", "BUYER", &format!("S{}", i % 3), price)
            })
            .collect();
        trades.reverse();
        let mut session = SessionTrades::default();
        for trade in &trades {
            session.add(5_000, trade);
        }
        let mut out = Vec::new();
        session.finish(&mut out);
        assert!(out.iter().all(|((last, _), _)| *last == 5_000));
        let mut prices: Vec<i64> = out
            .iter()
            .filter_map(|((_, u), _)| match u {
                Sessioned::Price(_, p) => Some(*p),
                Sessioned::Execution(..) => None,
            })
            .collect();
        prices.sort();
        assert_eq!(prices.len(), 2);
        assert!(prices[0] < prices[1]);
        // Every execution weighs in once: 50 buys and 50 sells.
        let weight = |side: Side| -> isize {
            out.iter()
                .filter_map(|((_, u), w)| match u {
                    Sessioned::Execution(x, _) if x.side == side => Some(*w),
                    _ => None,
                })
                .sum()
        };
        assert_eq!((weight(Side::Buy), weight(Side::Sell)), (50, 50));
        // The buyer's executions at 10.00 (25, the better price) keep at least their 20
        // earliest showable, whatever the order of arrival; the rest are counted at that price.
        let low = prices[0];
        let at_low = |shown: bool| -> Vec<(u64, isize)> {
            out.iter()
                .filter_map(|((_, u), w)| match u {
                    Sessioned::Execution(x, s) if *s == shown && x.side == Side::Buy && x.price == low => {
                        Some((x.time, *w))
                    }
                    _ => None,
                })
                .collect()
        };
        let shown: Vec<u64> = at_low(true).into_iter().map(|(t, _)| t).collect();
        let earliest: Vec<u64> = (0..50u64).filter(|i| i % 2 == 0).map(|i| 1_000 + i).take(MAX_EVIDENCE).collect();
        assert!(earliest.iter().all(|t| shown.contains(t)), "{shown:?}");
        let weights: isize = at_low(true).iter().chain(&at_low(false)).map(|(_, w)| w).sum();
        assert_eq!(weights, 25);
        // In time order, a buy preceded by 20 buys at its price or a better one is only counted:
        // at 10.00 the 20 first, at 11.00 the 10 before the 20th buy of the session.
        let mut in_order = SessionTrades::default();
        for trade in trades.iter().rev() {
            in_order.add(5_000, trade);
        }
        let mut out = Vec::new();
        in_order.finish(&mut out);
        let kept = |price_is_low: bool| {
            out.iter()
                .filter(|((_, u), _)| {
                    matches!(u, Sessioned::Execution(x, true) if x.side == Side::Buy && (x.price == low) == price_is_low)
                })
                .count()
        };
        assert_eq!(kept(true), MAX_EVIDENCE);
        assert_eq!(kept(false), MAX_EVIDENCE / 2);
    }
}
