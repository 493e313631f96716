//! Maximum order quantity and maximum order notional (MiFID II RTS 6 Art. 15 pre-trade limits,
//! checked after the fact): every new or modified order counts immediately.

use std::sync::Arc;

use timely::dataflow::Stream;

use crate::config::{Limit, OrderLimitsConfig};
use crate::detect::{AlertSink, Detect, Detector, Key};
use crate::model::alert::{rules, score_from_excess};
use crate::model::{Alert, Body, Decimal, Event, IdMap, Severity, Symbol};
use crate::reference::ReferenceData;

#[derive(Copy, Clone, Debug, Default)]
struct Limits {
    max_quantity: Option<u64>,
    max_notional: Option<Decimal>,
}

/// Which quantity limit an order is held to.
#[derive(Copy, Clone, Debug)]
enum Bound {
    /// The configured maximum quantity.
    Quantity,
    /// A share of the instrument's average daily volume.
    Volume { adv: u64, share: f64 },
    /// A number of the instrument's lots.
    Lots { lots: u64, lot_size: u64 },
}

/// The order-limits rule.
#[derive(Clone)]
pub struct OrderLimits {
    default: Limits,
    per_instrument: IdMap<Symbol, Limits>,
    max_adv_share: Option<f64>,
    max_lots: Option<u64>,
    reference: Arc<ReferenceData>,
}

impl OrderLimits {
    /// Builds the rule. Notional strings were validated with the configuration.
    pub fn new(config: &OrderLimitsConfig, reference: Arc<ReferenceData>) -> OrderLimits {
        let notional = |limit: &Limit<String>| limit.max().and_then(|t| Decimal::parse(t).ok());
        let default =
            Limits { max_quantity: config.max_quantity.max().copied(), max_notional: notional(&config.max_notional) };
        let per_instrument = config
            .instruments
            .iter()
            .map(|(name, o)| {
                (
                    Symbol::of(name.as_bytes()),
                    Limits {
                        max_quantity: o.max_quantity.as_ref().map_or(default.max_quantity, |l| l.max().copied()),
                        max_notional: o.max_notional.as_ref().map_or(default.max_notional, notional),
                    },
                )
            })
            .collect();
        OrderLimits {
            default,
            per_instrument,
            max_adv_share: config.max_adv_share,
            max_lots: config.max_lots,
            reference,
        }
    }
}

impl Detector for OrderLimits {
    type State = ();

    fn name(&self) -> &str {
        "order_limits"
    }

    fn needs_order_state(&self) -> bool {
        true
    }

    fn key(&self, event: &Event) -> Option<Key> {
        matches!(event.body, Body::NewOrder { .. } | Body::Replace { .. }).then_some(Key::Instrument(event.instrument))
    }

    fn on_event(&self, _: &mut (), event: &Event, out: &mut AlertSink<'_>) {
        let before_price = out.order().and_then(|o| o.before).and_then(|b| b.price);
        let (order_id, price, quantity, verb) = match event.body {
            Body::NewOrder { order, price, quantity, .. } => (order, price, quantity, "order"),
            Body::Replace { order: id, price, quantity, .. } => {
                (id, price.or(before_price), quantity, "modified order")
            }
            _ => return,
        };
        let limits = self.per_instrument.get(&event.instrument).copied().unwrap_or(self.default);
        // Limits from the instrument master as of the order's time: a share of the average
        // daily volume, and a number of lots.
        let master = (self.max_adv_share.is_some() || self.max_lots.is_some())
            .then(|| self.reference.instrument(event.instrument, event.time))
            .flatten();
        let by_volume = self.max_adv_share.zip(master.and_then(|i| i.average_daily_volume)).map(|(share, adv)| {
            let max = (adv as f64 * share).floor() as u64;
            (max, Bound::Volume { adv, share })
        });
        let by_lots = self
            .max_lots
            .zip(master.and_then(|i| i.lot_size))
            .map(|(lots, lot_size)| (lots.saturating_mul(lot_size), Bound::Lots { lots, lot_size }));
        // The smallest quantity limit holds; the configured one on a tie.
        let mut bound = limits.max_quantity.map(|max| (max, Bound::Quantity));
        for candidate in [by_volume, by_lots].into_iter().flatten() {
            if bound.is_none_or(|(max, _)| candidate.0 < max) {
                bound = Some(candidate);
            }
        }
        if let Some((max, why)) = bound
            && quantity > max
        {
            let ratio = quantity as f64 / max.max(1) as f64;
            let mut alert = out.alert(event);
            alert
                .rule(rules::ORDER_QUANTITY_LIMIT)
                .severity(Severity::from_excess(ratio))
                .score(score_from_excess(ratio))
                .param("quantity", quantity)
                .param("max_quantity", max)
                .discriminator(order_id.0);
            match why {
                Bound::Volume { adv, share } => {
                    alert
                        .explain(format!(
                            "{verb} quantity {quantity} exceeds {:.2} % of the instrument's average daily volume \
                             {adv}, {max} ({ratio:.1}x)",
                            share * 100.0
                        ))
                        .param("average_daily_volume", adv)
                        .param("max_adv_share", share);
                }
                Bound::Lots { lots, lot_size } => {
                    alert
                        .explain(format!(
                            "{verb} quantity {quantity} exceeds {lots} lots of {lot_size}, {max} ({ratio:.1}x)"
                        ))
                        .param("lot_size", lot_size)
                        .param("max_lots", lots);
                }
                Bound::Quantity => {
                    alert.explain(format!(
                        "{verb} quantity {quantity} exceeds the maximum order quantity {max} ({ratio:.1}x)"
                    ));
                }
            }
        }
        if let (Some(max), Some(price)) = (limits.max_notional, price) {
            let scale = self.reference.price_scale(event.instrument);
            let notional = Decimal::notional(price, quantity, scale);
            if notional.cmp_exact(max).is_gt() {
                let ratio = notional.to_f64() / max.to_f64().max(f64::MIN_POSITIVE);
                out.alert(event)
                    .rule(rules::ORDER_NOTIONAL_LIMIT)
                    .severity(Severity::from_excess(ratio))
                    .score(score_from_excess(ratio))
                    .explain(format!(
                        "{verb} notional {notional} ({quantity} at {}) exceeds the maximum order notional {max} ({ratio:.1}x)",
                        Decimal::price(price, scale)
                    ))
                    .param("notional", notional)
                    .param("max_notional", max)
                    .param("price", Decimal::price(price, scale))
                    .param("quantity", quantity)
                    .discriminator(order_id.0);
            }
        }
    }
}

/// Extension trait: the order-limits rule as an operator on a stream of events.
pub trait OrderLimitsExt<'scope> {
    /// Alerts for orders above the maximum quantity or notional.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use surveil::config::OrderLimitsConfig;
    /// use surveil::reference::ReferenceData;
    /// use surveil::rules::OrderLimitsExt;
    /// use surveil::model::Side;
    /// use timely::dataflow::operators::capture::Capture;
    /// use timely::dataflow::operators::ToStream;
    ///
    /// let big = surveil::testing::new_order("ACME", "O1", "ACC1", Side::Buy, "10", 200_000);
    /// let alerts = timely::example(move |scope| {
    ///     let reference = Arc::new(ReferenceData::new(4));
    ///     vec![big].to_stream(scope).order_limits(&OrderLimitsConfig::default(), &reference).capture()
    /// });
    /// let alerts: Vec<_> = surveil::testing::captured(alerts).into_iter().collect();
    /// assert_eq!(alerts[0].rule, "order_quantity_limit");
    /// ```
    fn order_limits(
        self,
        config: &OrderLimitsConfig,
        reference: &Arc<ReferenceData>,
    ) -> Stream<'scope, u64, Vec<Alert>>;
}

impl<'scope> OrderLimitsExt<'scope> for Stream<'scope, u64, Vec<Event>> {
    fn order_limits(
        self,
        config: &OrderLimitsConfig,
        reference: &Arc<ReferenceData>,
    ) -> Stream<'scope, u64, Vec<Alert>> {
        self.detect(OrderLimits::new(config, reference.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, OrderLimitsOverride};
    use crate::model::{Price, Side};
    use crate::testing::{event, run};

    fn new(order: &str, price: i64, quantity: u64, instrument: &str) -> Event {
        event(
            quantity,
            instrument,
            "ACC1",
            Body::NewOrder {
                order: Symbol::of(order.as_bytes()),
                side: Side::Buy,
                price: Some(Price(price)),
                quantity,
                displayed: None,
            },
        )
    }

    #[test]
    fn flags_quantity_and_notional_exactly_at_the_boundary() {
        let mut config = Config::default().rules.order_limits;
        config.max_quantity = Limit::Max(1000);
        config.max_notional = Limit::Max("10000.00".into());
        config
            .instruments
            .insert("BIG".into(), OrderLimitsOverride { max_quantity: Some(Limit::Max(5000)), max_notional: None });
        let reference = Arc::new(ReferenceData::new(2));
        let alerts = run(
            OrderLimits::new(&config, reference.clone()),
            vec![
                new("A", 1000, 1000, "X"), // 10.00 x 1000 = 10,000.00: at both limits
                new("B", 1000, 1001, "X"), // over both
                new("C", 100, 1500, "X"),  // quantity only
                new("D", 1001, 999, "X"),  // 10.01 x 999 = 9,999.99: under
                new("E", 100, 4000, "BIG"),
            ],
        );
        let got: Vec<(&str, u64)> = alerts.iter().map(|a| (a.rule.as_str(), a.time)).collect();
        assert_eq!(
            got,
            vec![
                (rules::ORDER_NOTIONAL_LIMIT, 1001),
                (rules::ORDER_QUANTITY_LIMIT, 1001),
                (rules::ORDER_QUANTITY_LIMIT, 1500)
            ]
        );
        let a = &alerts[0];
        assert!(a.explanation.contains("notional 10010 (1001 at 10)"), "{}", a.explanation);
    }

    #[test]
    fn a_limit_switched_off_is_not_checked_while_the_other_is() {
        let mut config = Config::default().rules.order_limits;
        config.max_quantity = Limit::Max(1000);
        config.max_notional = Limit::Off;
        config
            .instruments
            .insert("PENNY".into(), OrderLimitsOverride { max_quantity: Some(Limit::Off), max_notional: None });
        config.instruments.insert(
            "BIG".into(),
            OrderLimitsOverride { max_quantity: None, max_notional: Some(Limit::Max("10000".into())) },
        );
        let reference = Arc::new(ReferenceData::new(2));
        let alerts = run(
            OrderLimits::new(&config, reference.clone()),
            vec![
                new("A", 1_000_000, 1000, "X"), // 10,000.00 x 1000: notional is off
                new("B", 100, 1001, "X"),       // over the quantity limit
                new("C", 100, 50_000, "PENNY"), // quantity is off for PENNY, notional off by default
                new("D", 100_000, 1000, "BIG"), // BIG turns notional back on: 1,000 x 1000
                new("E", 100, 1001, "BIG"),     // and keeps the rule's quantity limit
            ],
        );
        let mut got: Vec<(u64, String, u64)> =
            alerts.iter().map(|a| (a.time, a.rule.clone(), a.instrument.0)).collect();
        got.sort();
        let mut want: Vec<(u64, String, u64)> = [
            (1000, rules::ORDER_NOTIONAL_LIMIT, "BIG"),
            (1001, rules::ORDER_QUANTITY_LIMIT, "X"),
            (1001, rules::ORDER_QUANTITY_LIMIT, "BIG"),
        ]
        .iter()
        .map(|(t, r, i)| (*t, r.to_string(), Symbol::of(i.as_bytes()).0))
        .collect();
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn an_order_above_a_share_of_the_average_daily_volume_as_of_its_time_is_flagged() {
        // ACME trades 100,000 a day until time 5,000, then 10,000,000; 5 % of it is the limit
        // where it is below the rule's 100,000. OTHER has no average daily volume.
        let mut reference = ReferenceData::new(2);
        let adv =
            |v| crate::reference::Instrument { price_scale: 2, average_daily_volume: Some(v), ..Default::default() };
        reference.add_instrument("ACME", adv(100_000));
        reference.change_instrument(5_000, "ACME", adv(10_000_000));
        let mut config = Config::default().rules.order_limits;
        config.max_adv_share = Some(0.05);
        config.max_notional = Limit::Off;
        let at = |time, order: &str, quantity, instrument: &str| new(order, 100, quantity, instrument).at(time);
        let events = vec![
            at(10, "O1", 6_000, "ACME"),
            at(6_000, "O2", 6_000, "ACME"),
            at(6_001, "O3", 6_000, "OTHER"),
            at(6_002, "O4", 120_000, "ACME"),
        ];
        let alerts = run(OrderLimits::new(&config, Arc::new(reference)), events);
        let got: Vec<(u64, String)> = alerts.iter().map(|a| (a.time, a.explanation.clone())).collect();
        assert_eq!(got.len(), 2, "{got:#?}");
        assert_eq!(got[0].0, 10);
        assert!(got[0].1.contains("5.00 % of the instrument's average daily volume 100000, 5000"), "{got:#?}");
        let adv = alerts[0].parameters.iter().find(|p| p.name == "average_daily_volume").map(|p| p.value.clone());
        assert_eq!(adv, Some(crate::model::alert::Value::Count(100_000)));
        // From time 5,000 on, 5 % is 500,000: the rule's own 100,000 is the smaller limit.
        assert_eq!(got[1].0, 6_002);
        assert!(got[1].1.contains("maximum order quantity 100000"), "{got:#?}");
    }

    #[test]
    fn an_order_above_a_number_of_lots_is_flagged_and_the_smallest_limit_holds() {
        // FUT trades in lots of 50 (of 25 from time 5,000), with an average daily volume of
        // 10,000: 200 lots is the limit where it is below 5 % of the volume (500) and the
        // rule's 100,000. NOLOT has no lot size.
        let mut reference = ReferenceData::new(2);
        let lots = |lot_size, adv| crate::reference::Instrument {
            price_scale: 2,
            lot_size: Some(lot_size),
            average_daily_volume: Some(adv),
            ..Default::default()
        };
        reference.add_instrument("FUT", lots(50, 1_000_000));
        reference.change_instrument(5_000, "FUT", lots(25, 10_000));
        let mut config = Config::default().rules.order_limits;
        config.max_lots = Some(200);
        config.max_adv_share = Some(0.05);
        config.max_notional = Limit::Off;
        let at = |time, order: &str, quantity, instrument: &str| new(order, 100, quantity, instrument).at(time);
        let events = vec![
            at(10, "O1", 10_000, "FUT"),
            at(20, "O2", 10_001, "FUT"),
            at(6_000, "O3", 501, "FUT"),
            at(6_001, "O4", 20_000, "NOLOT"),
        ];
        let alerts = run(OrderLimits::new(&config, Arc::new(reference)), events);
        let got: Vec<(u64, String)> = alerts.iter().map(|a| (a.time, a.explanation.clone())).collect();
        assert_eq!(got.len(), 2, "{got:#?}");
        assert_eq!(got[0].0, 20);
        assert!(got[0].1.contains("exceeds 200 lots of 50, 10000"), "{got:#?}");
        let lot = alerts[0].parameters.iter().find(|p| p.name == "lot_size").map(|p| p.value.clone());
        assert_eq!(lot, Some(crate::model::alert::Value::Count(50)));
        // From 5,000, 200 lots of 25 is 5,000 and 5 % of 10,000 is 500: the volume holds.
        assert_eq!(got[1].0, 6_000);
        assert!(got[1].1.contains("average daily volume 10000, 500"), "{got:#?}");
    }
}
