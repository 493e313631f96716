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

use differential_dataflow::{AsCollection, VecCollection};
use serde::{Deserialize, Serialize};
use surveil_operators::ReleaseAt;
use timely::dataflow::Stream;
use timely::dataflow::operators::vec::Map;

use super::executions::Execution;
use crate::config::InsiderLikeConfig;
use crate::model::alert::{rules, score_from_excess};
use crate::model::time::SessionCalendar;
use crate::model::{Alert, Body, Event, Severity, Side, Symbol};

/// At most this many executions at the extreme go into an alert as evidence.
pub const MAX_EVIDENCE: usize = 20;

/// What the rule keeps of a trade for its session.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum Sessioned {
    /// A trade's price, named parties or not: the session's range.
    Price(Symbol, i64),
    /// A named party's execution.
    Execution(Execution),
}

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
        // Every trade's price and its named parties' executions at the session's last
        // nanosecond, retracted at its end.
        let updates: VecCollection<'scope, u64, (u64, Sessioned), isize> = self
            .flat_map(move |event: Event| {
                let Body::Trade { price, .. } = event.body else {
                    return Vec::new();
                };
                let (_, end) = calendar.session_of(event.time);
                let last = end.saturating_sub(1).max(event.time);
                let [buy, sell] = Execution::of_trade(&event);
                std::iter::once(Sessioned::Price(event.instrument, price.0))
                    .chain([buy, sell].into_iter().flatten().map(Sessioned::Execution))
                    .flat_map(move |u| [((last, u.clone()), last, 1), ((last, u), last + 1, -1)])
                    .collect()
            })
            // The updates run ahead of the stream to the session's end: held in a buffer and
            // handed over together, rather than re-sorted by the arrangements at every step.
            .release_at("SessionTrades", |update: &((u64, Sessioned), u64, isize)| update.1)
            .as_collection();
        let executions = updates.clone().flat_map(|(session, u)| match u {
            Sessioned::Execution(x) => Some((session, x)),
            Sessioned::Price(..) => None,
        });
        let prices = updates.flat_map(|(session, u)| match u {
            Sessioned::Price(instrument, price) => Some(((session, instrument), price)),
            Sessioned::Execution(_) => None,
        });
        let extremes = prices.reduce(|_, prices: &[(&i64, isize)], out: &mut Vec<((i64, i64), isize)>| {
            if let (Some(low), Some(high)) = (prices.first(), prices.last()) {
                out.push(((*low.0, *high.0), 1));
            }
        });
        let judged = executions.map(|(session, x)| ((session, x.instrument), x)).join_map(
            extremes,
            move |&(session, _), x, &(low, high)| {
                let range = (high - low) as f64;
                let at_extreme = range > 0.0
                    && match x.side {
                        Side::Buy => ((x.price - low) as f64) <= band * range,
                        Side::Sell => ((high - x.price) as f64) <= band * range,
                    };
                ((session, x.account), (range > 0.0, at_extreme, *x))
            },
        );
        let records = judged.reduce(
            move |_, executions: &[(&(bool, bool, Execution), isize)], out: &mut Vec<(Record, isize)>| {
                let mut record = Record { at_extreme: 0, counted: 0, evidence: Vec::new() };
                for ((counts, at_extreme, execution), times) in executions {
                    let times = u64::try_from(*times).unwrap_or(0);
                    if *counts {
                        record.counted += times;
                    }
                    if *at_extreme {
                        record.at_extreme += times;
                        record.evidence.push(*execution);
                    }
                }
                if record.counted >= min_trades
                    && wilson_lower_bound(record.at_extreme, record.counted, confidence_z) >= min_lower_bound
                {
                    record.evidence.sort_by_key(|x| (x.time, x.origin));
                    record.evidence.truncate(MAX_EVIDENCE);
                    out.push((record, 1));
                }
            },
        );
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
}
