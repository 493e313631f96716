//! The operators that run detectors on a stream of events.

use std::rc::Rc;

use surveil_operators::ProcessInTimeOrder;
use timely::dataflow::Stream;
use timely::dataflow::operators::Concat;
use timely::dataflow::operators::core::OkErr;
use timely::dataflow::operators::vec::Filter;

use super::group::Tracking;
use super::{Detector, DetectorGroup, InstrumentRules, Key, Keyed};
use crate::model::{Alert, Event, Report};

/// What detectors produced: alerts, and side records (ratio values, feature rows, the dead
/// letters of events the order state could not interpret).
pub struct Detected<'scope> {
    /// Alerts.
    pub alerts: Stream<'scope, u64, Vec<Alert>>,
    /// Everything else.
    pub side: Stream<'scope, u64, Vec<Report>>,
}

/// Extension trait: run detectors over a stream of events.
///
/// Events must be on time for their timely time (as [`crate::source`] sends them): each
/// detector sees its keys' events in `(time, origin)` order once the watermark has passed them,
/// which is what makes its alerts the same on any number of workers.
pub trait Detect<'scope> {
    /// Runs one detector: routes the events it looks at by their key, keeps its state per key,
    /// and returns its alerts.
    ///
    /// ```
    /// use surveil::detect::Detect;
    /// use surveil::rules::SelfTrade;
    /// use timely::dataflow::operators::capture::Capture;
    /// use timely::dataflow::operators::{ToStream, vec::Map};
    ///
    /// let trade = surveil::testing::trade("ACME", "ACC1", "ACC1", 100).at_ms(1);
    /// let alerts = timely::example(move |scope| {
    ///     let events = vec![trade].to_stream(scope).map(|e| e);
    ///     events.detect(SelfTrade::new(&Default::default())).capture()
    /// });
    /// let alerts: Vec<_> = surveil::testing::captured(alerts).into_iter().collect();
    /// assert_eq!(alerts[0].rule, "self_trade");
    /// ```
    fn detect<D: Detector>(self, detector: D) -> Stream<'scope, u64, Vec<Alert>>;

    /// Runs one detector and returns its alerts and its side records.
    fn detect_all<D: Detector>(self, detector: D) -> Detected<'scope>;

    /// Runs rules keyed by instrument in one operator over one order book state (see
    /// [`InstrumentRules`]); with `dead_letters`, events the order state cannot interpret go to
    /// the side output as `unknown_order` dead letters.
    fn detect_by_instrument(self, rules: InstrumentRules, dead_letters: bool) -> Detected<'scope>;
}

impl<'scope> Detect<'scope> for Stream<'scope, u64, Vec<Event>> {
    fn detect<D: Detector>(self, detector: D) -> Stream<'scope, u64, Vec<Alert>> {
        self.detect_all(detector).alerts
    }

    fn detect_all<D: Detector>(self, detector: D) -> Detected<'scope> {
        let name = format!("Detect({})", detector.name());
        let detector = Rc::new(detector);
        let (filter, route) = (detector.clone(), detector.clone());
        // A rule that reads order state also needs the order events it does not look at, routed
        // by instrument, to keep its instruments' open orders.
        let orders = detector.needs_order_state() || detector.needs_book();
        let tracking = if orders { Tracking::InstrumentKeys } else { Tracking::Off };
        let group = DetectorGroup::new(vec![Box::new(Keyed::new(detector))], tracking, false);
        let reports = self
            .filter(move |e: &Event| filter.key(e).is_some() || (orders && e.order().is_some()))
            .process_in_time_order(
                &name,
                move |e: &Event| route.key(e).unwrap_or(Key::Instrument(e.instrument)).route(),
                |e: &Event| e.order_key(),
                group,
            );
        split(reports)
    }

    fn detect_by_instrument(self, rules: InstrumentRules, dead_letters: bool) -> Detected<'scope> {
        let roots = rules.roots();
        let (detectors, sessions, apart) = rules.into_parts();
        let apart: Vec<Stream<'scope, u64, Vec<Alert>>> = apart.into_iter().map(|rule| rule(self.clone())).collect();
        let group = DetectorGroup::new(detectors, Tracking::AllEvents, dead_letters).expiring_orders(sessions);
        let reports = self.process_in_time_order(
            "DetectByInstrument",
            move |e: &Event| match &roots {
                Some(reference) => Key::Instrument(reference.root(e.instrument, e.time)).route(),
                None => Key::Instrument(e.instrument).route(),
            },
            |e: &Event| e.order_key(),
            group,
        );
        let Detected { alerts, side } = split(reports);
        Detected { alerts: apart.into_iter().fold(alerts, |all, more| all.concat(more)), side }
    }
}

/// Alerts one way, everything else the other.
fn split<'scope>(reports: Stream<'scope, u64, Vec<Report>>) -> Detected<'scope> {
    let (alerts, side) = reports.ok_err::<Vec<Alert>, _, Vec<Report>, _, _>(|report| match report {
        Report::Alert(alert) => Ok(*alert),
        other => Err(other),
    });
    Detected { alerts, side }
}
