//! Off-market prices: an order or execution priced too far from the reference price.
//!
//! The reference is the best bid and offer in force just before the event, and the last trade
//! price where a side has no quote (or the instrument's reference price before any trade).
//! An execution is off-market when it prints below `bid - allowance` or above `ask +
//! allowance`; an order is checked on its aggressive side only (a buy above `ask + allowance`,
//! a sell below `bid - allowance`), since a passive order far from the touch endangers nobody.
//! The allowance is a number of basis points of the reference price, or a number of ticks.

use std::sync::Arc;

use timely::dataflow::Stream;

use crate::config::PriceCollarConfig;
use crate::detect::{AlertSink, Detect, Detector, Key};
use crate::model::alert::{rules, score_from_excess};
use crate::model::{Alert, Body, Decimal, Event, IdMap, Price, Severity, Side, Symbol};
use crate::reference::{ReferenceData, TickRule};

#[derive(Copy, Clone, Debug)]
enum Allowance {
    BasisPoints(u32),
    Ticks(i64),
}

impl Allowance {
    fn of(self, reference: Price) -> i64 {
        match self {
            // i64 arithmetic when it cannot overflow (a 128-bit division is a library call).
            Allowance::BasisPoints(bps) => match reference.0.checked_mul(bps as i64) {
                Some(product) => product / 10_000,
                None => (reference.0 as i128 * bps as i128 / 10_000) as i64,
            },
            Allowance::Ticks(ticks) => ticks,
        }
    }

    fn describe(self) -> String {
        match self {
            Allowance::BasisPoints(bps) => format!("{}%", bps as f64 / 100.0),
            Allowance::Ticks(t) => format!("{t} ticks"),
        }
    }
}

/// An instrument's collar settings.
#[derive(Copy, Clone, Debug)]
struct Collar {
    allowance: Allowance,
    /// The allowance is at least this many minimum price increments.
    min_ticks: u32,
}

/// A collar bound: the limit price, the reference it came from, what that reference is, and
/// the tick minimum when it set the distance (minimum ticks, tick size).
#[derive(Copy, Clone, Debug)]
struct Bound {
    limit: i64,
    reference: Price,
    what: &'static str,
    distance: i64,
    tick_minimum: Option<(u32, i64)>,
}

/// What the rule knows of an instrument's market.
#[derive(Copy, Clone, Debug, Default)]
pub struct Market {
    bid: Option<Price>,
    ask: Option<Price>,
    last: Option<Price>,
    /// The last off-market print alerted (time, price, quantity): one print reported as two
    /// fills and a trade raises one alert.
    alerted_print: Option<(u64, Price, u64)>,
    /// The instrument's tick rule on the venue it was last seen on, looked up once for as long
    /// as its reference data stays the same.
    ticks: Option<Ticks>,
}

/// A tick rule, the venue it is for, and the span of event time over which it holds.
#[derive(Copy, Clone, Debug)]
struct Ticks {
    venue: Symbol,
    from: u64,
    until: u64,
    rule: TickRule,
}

impl Ticks {
    fn holds_for(&self, event: &Event) -> bool {
        self.venue == event.venue && (self.from..self.until).contains(&event.time)
    }
}

/// The price-collar rule.
#[derive(Clone)]
pub struct PriceCollar {
    collar: Collar,
    per_instrument: IdMap<Symbol, Collar>,
    check_orders: bool,
    check_executions: bool,
    reference: Arc<ReferenceData>,
}

impl PriceCollar {
    /// Builds the rule.
    pub fn new(config: &PriceCollarConfig, reference: Arc<ReferenceData>) -> PriceCollar {
        let allowance = |bps: u32, ticks: Option<i64>| match ticks {
            Some(t) => Allowance::Ticks(t),
            None => Allowance::BasisPoints(bps),
        };
        let default = allowance(config.max_deviation_bps, config.max_deviation_ticks);
        let per_instrument = config
            .instruments
            .iter()
            .map(|(name, o)| {
                let a = match (o.max_deviation_ticks, o.max_deviation_bps) {
                    (Some(t), _) => Allowance::Ticks(t),
                    (None, Some(b)) => Allowance::BasisPoints(b),
                    (None, None) => default,
                };
                let min_ticks = o.min_deviation_ticks.unwrap_or(config.min_deviation_ticks);
                (Symbol::of(name.as_bytes()), Collar { allowance: a, min_ticks })
            })
            .collect();
        PriceCollar {
            collar: Collar { allowance: default, min_ticks: config.min_deviation_ticks },
            per_instrument,
            check_orders: config.check_orders,
            check_executions: config.check_executions,
            reference,
        }
    }

    /// The (lower, upper) collar of `event`'s instrument and what each bound was derived from.
    fn collar(&self, market: &Market, event: &Event) -> (Option<Bound>, Option<Bound>) {
        let instrument = event.instrument;
        let collar = self.per_instrument.get(&instrument).copied().unwrap_or(self.collar);
        let ticks = match market.ticks {
            Some(ticks) if ticks.holds_for(event) => ticks.rule,
            _ => self.reference.tick_rule(instrument, event.venue, event.time),
        };
        let fallback = market.last.map(|p| (p, "last trade")).or_else(|| {
            let known = self.reference.instrument(instrument, event.time);
            known.and_then(|i| i.reference_price).map(|p| (p, "reference price"))
        });
        let bound = |(reference, what): (Price, &'static str), sign: i64| {
            let base = collar.allowance.of(reference);
            let tick = ticks.at(reference);
            let floor = tick.saturating_mul(collar.min_ticks as i64);
            let (distance, tick_minimum) =
                if floor > base { (floor, Some((collar.min_ticks, tick))) } else { (base, None) };
            Bound { limit: reference.0.saturating_add(sign * distance), reference, what, distance, tick_minimum }
        };
        let lower = market.bid.map(|b| (b, "best bid")).or(fallback).map(|r| bound(r, -1));
        let upper = market.ask.map(|a| (a, "best ask")).or(fallback).map(|r| bound(r, 1));
        (lower, upper)
    }

    fn alert(&self, event: &Event, price: Price, bound: Bound, above: bool, subject: &str, out: &mut AlertSink<'_>) {
        let collar = self.per_instrument.get(&event.instrument).copied().unwrap_or(self.collar);
        let scale = self.reference.price_scale(event.instrument);
        let reference = bound.reference;
        let deviation = (price.0 - reference.0).abs();
        let deviation_bps = deviation as f64 * 10_000.0 / reference.0.max(1) as f64;
        let ratio = deviation as f64 / bound.distance.max(1) as f64;
        let direction = if above { "above" } else { "below" };
        let allowed = match bound.tick_minimum {
            Some((ticks, tick)) => format!("{ticks} ticks of {}", Decimal::price(Price(tick), scale)),
            None => collar.allowance.describe(),
        };
        let mut alert = out.alert(event);
        alert
            .severity(Severity::from_excess(ratio))
            .score(score_from_excess(ratio))
            .explain(format!(
                "{subject} at {} is {:.2}% {direction} the {} {} (allowed {allowed})",
                Decimal::price(price, scale),
                deviation_bps / 100.0,
                bound.what,
                Decimal::price(reference, scale),
            ))
            .param("price", Decimal::price(price, scale))
            .param("reference_price", Decimal::price(reference, scale))
            .param("reference", bound.what)
            .param("collar_price", Decimal::price(Price(bound.limit), scale))
            .param("deviation_bps", (deviation_bps * 100.0).round() / 100.0);
        match collar.allowance {
            Allowance::BasisPoints(b) => alert.param("max_deviation_bps", b),
            Allowance::Ticks(t) => alert.param("max_deviation_ticks", t.max(0) as u64),
        };
        if let Some((ticks, tick)) = bound.tick_minimum {
            alert.param("min_deviation_ticks", ticks).param("tick_size", Decimal::price(Price(tick), scale));
        }
    }
}

impl Detector for PriceCollar {
    type State = Market;

    fn name(&self) -> &str {
        rules::OFF_MARKET_PRICE
    }

    fn needs_order_state(&self) -> bool {
        true
    }

    fn key(&self, event: &Event) -> Option<Key> {
        Some(Key::Instrument(event.instrument))
    }

    fn on_event(&self, market: &mut Market, event: &Event, out: &mut AlertSink<'_>) {
        if market.ticks.is_none_or(|ticks| !ticks.holds_for(event))
            && matches!(
                event.body,
                Body::Fill { .. } | Body::Trade { .. } | Body::NewOrder { .. } | Body::Replace { .. }
            )
        {
            let (from, until) = self.reference.instrument_span(event.instrument, event.time);
            let rule = self.reference.tick_rule(event.instrument, event.venue, event.time);
            market.ticks = Some(Ticks { venue: event.venue, from, until, rule });
        }
        // Every check reads the market as it was before the event, so it runs before the
        // event's own changes to it.
        match event.body {
            Body::Quote { bid, ask } => {
                market.bid = bid.map(|l| l.price);
                market.ask = ask.map(|l| l.price);
            }
            Body::Fill { price, quantity, .. } | Body::Trade { price, quantity, .. } => {
                let print = (event.time, price, quantity);
                if self.check_executions && market.alerted_print != Some(print) {
                    let (lower, upper) = self.collar(market, event);
                    let subject = if matches!(event.body, Body::Fill { .. }) { "execution" } else { "trade" };
                    let breach = match (lower, upper) {
                        (Some(bound), _) if price.0 < bound.limit => Some((bound, false)),
                        (_, Some(bound)) if price.0 > bound.limit => Some((bound, true)),
                        _ => None,
                    };
                    if let Some((bound, above)) = breach {
                        self.alert(event, price, bound, above, subject, out);
                        market.alerted_print = Some(print);
                    }
                }
                // Both fills of a trade and the trade itself carry the price: the last
                // trade price is the same whichever arrives first.
                market.last = Some(price);
            }
            Body::NewOrder { side, price: Some(price), .. }
            | Body::Replace { side: Some(side), price: Some(price), .. }
                if self.check_orders =>
            {
                self.check_order(event, side, price, market, out);
            }
            Body::Replace { side: None, price: Some(price), .. } if self.check_orders => {
                if let Some(side) = out.order().and_then(|o| o.before).map(|b| b.side) {
                    self.check_order(event, side, price, market, out);
                }
            }
            _ => {}
        }
    }
}

/// Extension trait: the price collar as an operator on a stream of events.
pub trait PriceCollarExt<'scope> {
    /// Alerts for orders and executions priced too far from the market.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use surveil::config::PriceCollarConfig;
    /// use surveil::reference::ReferenceData;
    /// use surveil::rules::PriceCollarExt;
    /// use surveil::model::Side;
    /// use surveil::testing::{fill, quote};
    /// use timely::dataflow::operators::capture::Capture;
    /// use timely::dataflow::operators::ToStream;
    ///
    /// let events = vec![
    ///     quote("ACME", "20", "20.10").at_ms(1),
    ///     fill("ACME", "O1", "ACC1", Side::Sell, "18", 100).at_ms(2), // 10 % below the bid
    /// ];
    /// let alerts = timely::example(move |scope| {
    ///     let reference = Arc::new(ReferenceData::new(4));
    ///     events.to_stream(scope).price_collar(&PriceCollarConfig::default(), &reference).capture()
    /// });
    /// let alerts: Vec<_> = surveil::testing::captured(alerts).into_iter().collect();
    /// assert_eq!(alerts[0].rule, "off_market_price");
    /// ```
    fn price_collar(
        self,
        config: &PriceCollarConfig,
        reference: &Arc<ReferenceData>,
    ) -> Stream<'scope, u64, Vec<Alert>>;
}

impl<'scope> PriceCollarExt<'scope> for Stream<'scope, u64, Vec<Event>> {
    fn price_collar(
        self,
        config: &PriceCollarConfig,
        reference: &Arc<ReferenceData>,
    ) -> Stream<'scope, u64, Vec<Alert>> {
        self.detect(PriceCollar::new(config, reference.clone()))
    }
}

impl PriceCollar {
    fn check_order(&self, event: &Event, side: Side, price: Price, market: &Market, out: &mut AlertSink<'_>) {
        let (lower, upper) = self.collar(market, event);
        let subject = if matches!(event.body, Body::Replace { .. }) { "modified buy order" } else { "buy order" };
        match side {
            Side::Buy => {
                if let Some(bound) = upper
                    && price.0 > bound.limit
                {
                    self.alert(event, price, bound, true, subject, out);
                }
            }
            Side::Sell => {
                if let Some(bound) = lower
                    && price.0 < bound.limit
                {
                    let subject = subject.replace("buy", "sell");
                    self.alert(event, price, bound, false, &subject, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::model::Level;
    use crate::reference::Instrument;
    use crate::testing::{event, run};

    fn quote(t: u64, bid: i64, ask: i64) -> Event {
        event(
            t,
            "X",
            "",
            Body::Quote {
                bid: Some(Level { price: Price(bid), quantity: 1 }),
                ask: Some(Level { price: Price(ask), quantity: 1 }),
            },
        )
    }

    fn fill(t: u64, price: i64) -> Event {
        event(
            t,
            "X",
            "A",
            Body::Fill {
                order: Symbol::NONE,
                side: Side::Sell,
                price: Price(price),
                quantity: 1,
                aggressor: None,
                hidden: false,
            },
        )
    }

    fn order(t: u64, side: Side, price: i64) -> Event {
        event(
            t,
            "X",
            "A",
            Body::NewOrder {
                order: Symbol::of_integer(t),
                side,
                price: Some(Price(price)),
                quantity: 1,
                displayed: None,
            },
        )
    }

    fn run_collar(events: Vec<Event>) -> Vec<(u64, String)> {
        let config = Config::default().rules.price_collar; // 500 bps
        let reference = Arc::new(ReferenceData::new(2));
        run(PriceCollar::new(&config, reference.clone()), events)
            .iter()
            .map(|a| (a.time, a.explanation.clone()))
            .collect()
    }

    #[test]
    fn executions_inside_the_collar_pass_and_outside_fail() {
        let got = run_collar(vec![
            quote(1, 10000, 10010),
            fill(2, 10005), // inside the spread
            fill(3, 10510), // ask + 5% = 10510.5 -> inside
            fill(4, 10511), // above
            fill(5, 9500),  // bid - 5% = 9500 -> at the bound
            fill(6, 9499),  // below
        ]);
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![4, 6], "{got:?}");
        assert!(got[0].1.contains("above the best ask 100.1"), "{}", got[0].1);
    }

    #[test]
    fn orders_are_checked_on_their_aggressive_side_only() {
        let got = run_collar(vec![
            quote(1, 10000, 10010),
            order(2, Side::Buy, 5000),   // passive, far: fine
            order(3, Side::Buy, 11000),  // aggressive, 9.9% above ask
            order(4, Side::Sell, 20000), // passive: fine
            order(5, Side::Sell, 9000),  // aggressive
        ]);
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![3, 5], "{got:?}");
    }

    #[test]
    fn one_print_reported_as_fills_and_a_trade_raises_one_alert() {
        let mut events = vec![quote(1, 10000, 10010), fill(2, 11000), fill(2, 11000)];
        events.push(event(
            2,
            "X",
            "",
            Body::Trade {
                buyer: Default::default(),
                seller: Default::default(),
                price: Price(11000),
                quantity: 1,
                aggressor: None,
                linked: None,
            },
        ));
        assert_eq!(run_collar(events).len(), 1);
    }

    #[test]
    fn without_quotes_the_last_trade_is_the_reference() {
        let got = run_collar(vec![fill(1, 10000), fill(2, 10400), fill(3, 11000)]);
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![3], "{got:?}");
        assert!(got[0].1.contains("last trade"));
    }

    #[test]
    fn a_tick_size_change_applies_from_its_event_time() {
        // 1.00 at scale 2: 500 bps is 0.05, less than two ticks of 0.10 from time 1000 on.
        let mut reference = ReferenceData::new(2);
        let tick = |units| Instrument { price_scale: 2, tick_size: Some(Price(units)), ..Default::default() };
        reference.add_instrument("X", tick(1));
        reference.change_instrument(1000, "X", tick(10));
        let config = Config::default().rules.price_collar;
        let events =
            vec![fill(1, 100), order(2, Side::Buy, 115), order(999, Side::Buy, 115), order(1000, Side::Buy, 115)];
        let alerts: Vec<u64> =
            run(PriceCollar::new(&config, Arc::new(reference)), events).iter().map(|a| a.time).collect();
        assert_eq!(alerts, vec![2, 999], "within two ticks of 0.10 from time 1000");
    }
}
