//! Cross trades: two accounts that trade with each other far more often than their activity
//! explains, within an hour and over a session.
//!
//! Prearranged trading ("cross trades" between two parties who agree price and size away from
//! the book and then meet on it) is prohibited by CME Rule 539 and ICE Futures US Rule 4.02(l);
//! under MAR Annex I (1)(a) and Delegated Regulation 2016/522 Annex II 1(b) trades between
//! parties acting in concert are an indicator of manipulation. A single trade between two
//! accounts says nothing: on a busy instrument two active accounts meet by chance. What
//! stands out is a pair that meets again and again while each of them rarely trades with
//! anyone else.
//!
//! # Logic
//!
//! Per instrument, the trade prints with both parties named (different accounts; a print
//! with the same account on both sides is the self-trade rule's), counted as **meetings**: the
//! prints of one moment (an order sweeping several of the other account's) and the further
//! fills of an order already in the pair's last meeting are one meeting, since an order
//! filling in pieces is one agreement, not many:
//!
//! 1. A print has two roles: aggressor and passive side when the print says which, else buyer
//!    and seller. If counterparties met at random in proportion to how often each takes each
//!    role, a print would be between accounts `a` and `b` with probability
//!    `p = (a₁ b₂ + a₂ b₁) / N²`, where `N` is the number of prints and `a₁`, `a₂` the prints
//!    in which `a` took the first and the second role. (Conditioning on roles matters: a market
//!    maker is the passive side of most of its prints and meets takers far more often than a
//!    model blind to roles expects.) The number of prints between them is then binomial,
//!    `X ~ Bin(N, p)`, with `N · p` expected.
//! 2. A pair is flagged when it met at least `min_trades` times, at least `min_lift` times as
//!    often as expected, and the chance of meeting that often at random, `P(X ≥ k)`, is at most
//!    `significance` divided by the number of tests (a Bonferroni correction: many pairs are
//!    tested at once, so one in a thousand passing a 0.1 % test is no finding): the number of
//!    pairs that met, and for the rolling test also the number of windows in a day, since it
//!    looks again at every meeting.
//! 3. **Rolling**: at each print of a pair, the counts over the last `window` (1 h by default)
//!    are tested; a flagged pair raises one alert, and no other until a whole window passed
//!    since it. **End of session**: at the session's end (`sessions.timezone` midnight) every
//!    pair is tested on the session's counts; a pair already raised by the rolling test that
//!    session is not raised again.
//!
//! The score grows with the lift and with the strength of the evidence (−log10 of the tail
//! probability); the evidence lists the pair's prints (the first `max_evidence`).

use std::collections::{BTreeMap, VecDeque};

use surveil_operators::{KeyMap, KeySet};

use timely::dataflow::Stream;

use super::executions::Execution;
use crate::config::{CrossTradesConfig, nanos_of};
use crate::detect::{AlertSink, Detect, Detector, Key};
use crate::model::alert::rules;
use crate::model::time::SessionCalendar;
use crate::model::{Alert, Event, Severity, Symbol, Timestamp};

/// The cross-trade rule.
#[derive(Clone)]
pub struct CrossTrades {
    config: CrossTradesConfig,
    window: u64,
    calendar: SessionCalendar,
}

impl CrossTrades {
    /// Builds the rule; sessions end at midnight in `calendar`'s zone.
    pub fn new(config: &CrossTradesConfig, calendar: SessionCalendar) -> CrossTrades {
        CrossTrades { config: *config, window: nanos_of(config.window), calendar }
    }
}

/// Two accounts, the lower symbol first.
type Pair = (Symbol, Symbol);

fn pair_of(a: Symbol, b: Symbol) -> Pair {
    if a <= b { (a, b) } else { (b, a) }
}

/// A print with its parties' roles: the aggressor and the passive side when the print says
/// which, else the buyer and the seller.
#[derive(Clone, Copy)]
struct Print {
    /// The buyer's execution (account: buyer, counterparty: seller).
    buy: Execution,
    /// The account in the first role (aggressor, else buyer).
    first: Symbol,
    /// The orders that met (buyer's, seller's; `NONE` when the print does not say).
    orders: (Symbol, Symbol),
}

impl Print {
    fn of(event: &Event) -> Option<Print> {
        let [Some(buy), Some(_)] = Execution::of_trade(event) else {
            return None;
        };
        let crate::model::Body::Trade { buyer, seller, aggressor, .. } = event.body else {
            return None;
        };
        let first = if aggressor == Some(crate::model::Side::Sell) { buy.counterparty } else { buy.account };
        Some(Print { buy, first, orders: (buyer.order, seller.order) })
    }

    /// The role of `account` in the print: 0 first, 1 second.
    fn role(&self, account: Symbol) -> usize {
        usize::from(account != self.first)
    }
}

/// Prints, prints per account and role, and prints per pair over some span.
#[derive(Default)]
struct Tally {
    prints: u64,
    /// Per account, the prints it took part in, in the first role and in the second.
    per_account: KeyMap<Symbol, [u64; 2]>,
    per_pair: KeyMap<Pair, PairTally>,
}

/// What a pair did over the span.
#[derive(Default)]
struct PairTally {
    prints: u64,
    quantity: u64,
    /// The first prints (up to `max_evidence`), as the buyer's execution.
    evidence: Vec<Execution>,
}

impl Tally {
    fn add(&mut self, print: &Print, max_evidence: usize) {
        self.prints += 1;
        for account in [print.buy.account, print.buy.counterparty] {
            self.per_account.entry(account).or_default()[print.role(account)] += 1;
        }
        let pair = self.per_pair.entry(pair_of(print.buy.account, print.buy.counterparty)).or_default();
        pair.prints += 1;
        pair.quantity += print.buy.quantity;
        if pair.evidence.len() < max_evidence {
            pair.evidence.push(print.buy);
        }
    }

    /// Takes a print out again (the rolling window's oldest; the rolling tally keeps no
    /// evidence: the window's prints are the evidence).
    fn remove(&mut self, print: &Print) {
        self.prints -= 1;
        for account in [print.buy.account, print.buy.counterparty] {
            if let Some(n) = self.per_account.get_mut(&account) {
                n[print.role(account)] -= 1;
                if n[0] + n[1] == 0 {
                    self.per_account.remove(&account);
                }
            }
        }
        let key = pair_of(print.buy.account, print.buy.counterparty);
        if let Some(pair) = self.per_pair.get_mut(&key) {
            pair.prints -= 1;
            pair.quantity -= print.buy.quantity;
            if pair.prints == 0 {
                self.per_pair.remove(&key);
            }
        }
    }

    /// The pair's test over this tally, one of `looks` made over the session.
    fn test(&self, pair: Pair, config: &CrossTradesConfig, looks: f64) -> Option<Finding> {
        let met = self.per_pair.get(&pair)?.prints;
        if met < config.min_trades {
            return None;
        }
        let n = self.prints as f64;
        let (a, b) = (self.per_account[&pair.0], self.per_account[&pair.1]);
        // One in the first role and the other in the second, either way round.
        let p = ((a[0] as f64 * b[1] as f64 + a[1] as f64 * b[0] as f64) / (n * n)).min(1.0);
        let expected = n * p;
        let lift = met as f64 / expected;
        if lift < config.min_lift {
            return None; // and the tail, a sum of about N·p terms, is not needed
        }
        let tail = binomial_upper_tail(self.prints, p, met);
        let bar = config.significance / (self.per_pair.len() as f64 * looks);
        (met >= config.min_trades && lift >= config.min_lift && tail <= bar).then_some(Finding {
            met,
            prints: self.prints,
            each: (a[0] + a[1], b[0] + b[1]),
            expected,
            lift,
            tail,
            pairs: self.per_pair.len() as u64,
        })
    }
}

/// Why a pair was flagged.
struct Finding {
    met: u64,
    prints: u64,
    each: (u64, u64),
    expected: f64,
    lift: f64,
    tail: f64,
    pairs: u64,
}

/// `P(X ≥ k)` for `X ~ Bin(n, p)`: each term computed in log space, so that no factorial
/// overflows; tails below the smallest `f64` come out as 0.
pub fn binomial_upper_tail(n: u64, p: f64, k: u64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n || p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    let (nf, lp, lq) = (n as f64, p.ln(), (-p).ln_1p());
    let log_term =
        |i: f64| libm::lgamma(nf + 1.0) - libm::lgamma(i + 1.0) - libm::lgamma(nf - i + 1.0) + i * lp + (nf - i) * lq;
    let mut total = 0.0;
    let mut i = k;
    while i <= n {
        let term = log_term(i as f64).exp();
        total += term;
        // Past the mode the terms fall at least geometrically: stop when they no longer count.
        if (i as f64) > nf * p && term <= total * 1e-17 {
            break;
        }
        i += 1;
    }
    total.min(1.0)
}

/// What the rule remembers of an instrument.
#[derive(Default)]
pub struct CrossTradeState {
    /// The prints of the rolling window, oldest first.
    recent: VecDeque<Print>,
    rolling: Tally,
    /// When each pair last raised a rolling alert.
    raised: KeyMap<Pair, Timestamp>,
    session: Option<Session>,
    /// Each pair's last meeting: its orders and time.
    last_meeting: KeyMap<Pair, ((Symbol, Symbol), Timestamp)>,
}

/// The current session of an instrument.
#[derive(Default)]
struct Session {
    end: Timestamp,
    tally: Tally,
    /// Pairs the rolling test raised in the session (the session's test skips them).
    raised: KeySet<Pair>,
}

impl Detector for CrossTrades {
    type State = CrossTradeState;

    fn name(&self) -> &str {
        rules::CROSS_TRADES
    }

    fn key(&self, event: &Event) -> Option<Key> {
        let [buy, sell] = Execution::of_trade(event);
        (buy.is_some() && sell.is_some()).then_some(Key::Instrument(event.instrument))
    }

    fn on_event(&self, state: &mut CrossTradeState, event: &Event, out: &mut AlertSink<'_>) {
        let Some(print) = Print::of(event) else {
            return;
        };
        if print.buy.account == print.buy.counterparty {
            return;
        }
        // A meeting: the prints of one moment (an order sweeping several of the other's), and
        // the further fills of an order of the print that opened the pair's last meeting, are
        // the same one.
        let pair = pair_of(print.buy.account, print.buy.counterparty);
        // Compared with the print that opened the meeting, so that a chain of orders each
        // sharing one side with the one before does not make one endless meeting.
        let same_order = |a: Symbol, b: Symbol| !a.is_none() && a == b;
        if let Some((orders, time)) = state.last_meeting.get(&pair)
            && (*time == event.time || same_order(orders.0, print.orders.0) || same_order(orders.1, print.orders.1))
        {
            return;
        }
        state.last_meeting.insert(pair, (print.orders, event.time));
        let (_, end) = self.calendar.session_of(event.time);
        if state.session.as_ref().is_some_and(|s| s.end != end) {
            // The previous session's timer comes before any later event; this only guards a
            // session that ended without one.
            self.close_session(state, out);
        }
        let max_evidence = self.config.max_evidence;
        let session = state.session.get_or_insert_with(|| {
            out.timer(end);
            Session { end, ..Session::default() }
        });
        session.tally.add(&print, max_evidence);

        while state.recent.front().is_some_and(|old| event.time.saturating_sub(old.buy.time) > self.window) {
            let old = state.recent.pop_front().expect("front");
            state.rolling.remove(&old);
        }
        state.recent.push_back(print);
        state.rolling.add(&print, 0);
        state.raised.retain(|_, at| event.time.saturating_sub(*at) <= self.window);
        if state.raised.contains_key(&pair) {
            return;
        }
        // The rolling test looks again at every meeting; over a day it has about as many
        // independent chances as windows fit in the day, so its level is divided by them too.
        let looks = (86_400_000_000_000u64.div_ceil(self.window.max(1))) as f64;
        if let Some(finding) = state.rolling.test(pair, &self.config, looks) {
            state.raised.insert(pair, event.time);
            if let Some(session) = &mut state.session {
                session.raised.insert(pair);
            }
            let prints: Vec<Execution> = state
                .recent
                .iter()
                .filter(|x| pair_of(x.buy.account, x.buy.counterparty) == pair)
                .take(self.config.max_evidence)
                .map(|x| x.buy)
                .collect();
            self.raise(out, pair, &finding, &prints, "rolling");
        }
    }

    fn on_timer(&self, state: &mut CrossTradeState, time: Timestamp, out: &mut AlertSink<'_>) {
        if state.session.as_ref().is_some_and(|s| s.end <= time) {
            self.close_session(state, out);
        }
    }
}

impl CrossTrades {
    fn close_session(&self, state: &mut CrossTradeState, out: &mut AlertSink<'_>) {
        let Some(session) = state.session.take() else {
            return;
        };
        state.last_meeting.clear();
        let pairs: BTreeMap<Pair, &PairTally> = session.tally.per_pair.iter().map(|(k, v)| (*k, v)).collect();
        for (pair, tally) in pairs {
            if session.raised.contains(&pair) {
                continue;
            }
            if let Some(finding) = session.tally.test(pair, &self.config, 1.0) {
                self.raise(out, pair, &finding, &tally.evidence, "session");
                // The rolling window runs on past midnight: the same meetings do not raise the
                // pair again within it.
                state.raised.insert(pair, session.end);
            }
        }
    }

    fn raise(&self, out: &mut AlertSink<'_>, pair: Pair, finding: &Finding, prints: &[Execution], span: &str) {
        let strength = if finding.tail > 0.0 { -finding.tail.log10() } else { 300.0 };
        let score = (50.0 + 10.0 * finding.lift.log10() + strength.min(30.0)).min(100.0);
        let window = match span {
            "rolling" => format!("within {}", humantime::format_duration(self.config.window)),
            _ => "over the session".to_string(),
        };
        let mut alert = out.alert_now();
        alert
            .account(pair.0)
            .severity(Severity::from_score(score, 60.0, 80.0))
            .score(score)
            .explain(format!(
                "the two accounts traded with each other {} times {window}, {:.1} times as often as their activity \
                 explains ({:.2} expected; chance {:.1e})",
                finding.met, finding.lift, finding.expected, finding.tail
            ))
            .param("span", span)
            .param("account", pair.0)
            .param("counterparty", pair.1)
            .param("prints_between", finding.met)
            .param("prints", finding.prints)
            .param("account_prints", finding.each.0)
            .param("counterparty_prints", finding.each.1)
            .param("expected", finding.expected)
            .param("lift", finding.lift)
            .param("tail_probability", finding.tail)
            .param("pairs_tested", finding.pairs)
            .discriminator(pair.1.0);
        for print in prints {
            alert.evidence(&print.evidence());
        }
    }
}

/// Extension trait: the cross-trade rule as an operator.
pub trait CrossTradesExt<'scope> {
    /// Alerts for pairs of accounts that trade with each other far more often than their
    /// activity explains (see the [module documentation](self)).
    ///
    /// ```
    /// use surveil::config::CrossTradesConfig;
    /// use surveil::model::time::SessionCalendar;
    /// use surveil::rules::CrossTradesExt;
    /// use surveil::testing::{captured, trade};
    /// use timely::dataflow::operators::ToStream;
    /// use timely::dataflow::operators::capture::Capture;
    ///
    /// // Buyers X0..X19 meet sellers Y0..Y19 once each, a print a second; A and B, who trade
    /// // with nobody else, meet eight times among them.
    /// let mut prints = Vec::new();
    /// for i in 0..400u64 {
    ///     let (buyer, seller) = if i % 50 == 7 { ("A".to_string(), "B".to_string()) }
    ///         else { (format!("X{}", i % 20), format!("Y{}", (i / 20) % 20)) };
    ///     prints.push(trade("ACME", &buyer, &seller, 100).at(1_000_000_000 * (i + 1)));
    /// }
    /// let alerts = timely::example(move |scope| {
    ///     let calendar = SessionCalendar::new(chrono_tz::UTC);
    ///     prints.to_stream(scope).cross_trades(&CrossTradesConfig::default(), calendar).capture()
    /// });
    /// let alerts = captured(alerts);
    /// assert_eq!(alerts.len(), 1);
    /// assert_eq!(alerts[0].rule, "cross_trades");
    /// ```
    fn cross_trades(self, config: &CrossTradesConfig, calendar: SessionCalendar) -> Stream<'scope, u64, Vec<Alert>>;
}

impl<'scope> CrossTradesExt<'scope> for Stream<'scope, u64, Vec<Event>> {
    fn cross_trades(self, config: &CrossTradesConfig, calendar: SessionCalendar) -> Stream<'scope, u64, Vec<Alert>> {
        self.detect_all(CrossTrades::new(config, calendar)).alerts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::alert::Value;
    use crate::testing::{run, run_on, trade};

    const S: u64 = 1_000_000_000;

    fn span(alert: &Alert) -> Option<&Value> {
        alert.parameters.iter().find(|p| p.name == "span").map(|p| &p.value)
    }

    fn rule() -> CrossTrades {
        CrossTrades::new(&CrossTradesConfig::default(), SessionCalendar::new(chrono_tz::UTC))
    }

    /// A busy market of `accounts` accounts meeting at random (seeded), one print a second.
    fn background(accounts: u64, prints: u64, seed: u64) -> Vec<Event> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..prints)
            .map(|i| {
                let a = rng.random_range(0..accounts);
                let b = (a + rng.random_range(1..accounts)) % accounts;
                trade("ACME", &format!("X{a}"), &format!("X{b}"), 100).at(S * (i + 1))
            })
            .collect()
    }

    #[test]
    fn binomial_tail_matches_the_exact_sum() {
        // Bin(10, 0.5): P(X >= 8) = (45 + 10 + 1) / 1024.
        assert!((binomial_upper_tail(10, 0.5, 8) - 56.0 / 1024.0).abs() < 1e-12);
        assert_eq!(binomial_upper_tail(10, 0.5, 0), 1.0);
        assert_eq!(binomial_upper_tail(10, 0.5, 11), 0.0);
        // Far tails stay ordered and positive.
        let (a, b) = (binomial_upper_tail(100_000, 1e-5, 8), binomial_upper_tail(100_000, 1e-5, 9));
        assert!(a > b && b > 0.0, "{a} {b}");
    }

    #[test]
    fn a_random_market_raises_nothing() {
        for seed in 0..5 {
            let alerts = run(rule(), background(30, 3_000, seed));
            assert!(alerts.is_empty(), "seed {seed}: {:?}", alerts.first().map(|a| &a.explanation));
        }
    }

    #[test]
    fn a_pair_meeting_again_and_again_is_raised_once_in_the_hour() {
        let mut prints = background(30, 3_000, 1);
        // A and B, who trade with nobody else, meet every 5 minutes for the first 40 minutes.
        for i in 0..8 {
            prints.push(trade("ACME", "A", "B", 100).at(S * (300 * i + 150)));
        }
        prints.sort_by_key(|e| e.time);
        let alerts = run(rule(), prints);
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        let alert = &alerts[0];
        assert_eq!(span(alert), Some(&Value::Text("rolling".into())));
        assert_eq!(alert.evidence.len(), 5, "the prints up to the alert");
        assert_eq!(alert.time, S * (300 * 4 + 150), "at the fifth meeting");
    }

    #[test]
    fn a_pair_spread_over_the_day_is_raised_at_the_session_end() {
        let mut prints = background(30, 20_000, 2);
        // Ten meetings, two hours apart: never five within an hour.
        for i in 0..10 {
            prints.push(trade("ACME", "A", "B", 100).at(S * (7_200 * i + 10)));
        }
        prints.sort_by_key(|e| e.time);
        let alerts = run_on(2, rule(), prints);
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(span(&alerts[0]), Some(&Value::Text("session".into())));
        assert_eq!(alerts[0].time, 86_400 * S, "at midnight UTC");
        assert_eq!(alerts[0].evidence.len(), 10);
    }

    #[test]
    fn two_accounts_that_are_the_whole_market_are_not_a_finding() {
        // Only A and B trade: each trades with the other because there is nobody else.
        let prints: Vec<Event> = (0..50).map(|i| trade("ACME", "A", "B", 100).at(S * (i + 1))).collect();
        assert!(run(rule(), prints).is_empty());
    }
}
