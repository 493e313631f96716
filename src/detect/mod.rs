//! Detectors: rules that watch the event stream of each instrument in event-time order.
//!
//! Every detector implements [`Detector`]. The [`SurveillanceProcessor`] runs a set of them
//! inside one [`surveil_operators::ProcessInTimeOrder`] operator keyed by instrument: the events
//! are routed and sorted once, the order state is tracked once, and each detector sees every
//! event of its instruments in `(time, origin)` order, so the alerts are the same on any number
//! of workers. A single detector can also run alone as its own operator (see
//! [`crate::pipeline::detect`]).

pub mod anomaly;
pub mod order_limits;
pub mod order_to_trade;
pub mod orders;
pub mod price_collar;
pub mod self_trade;

use std::sync::Arc;

use surveil_operators::{Emitter, TimeOrderedProcessor};

use crate::config::Config;
use crate::ingest::DeadLetter;
use crate::model::Event;
use crate::reference::ReferenceData;
use crate::report::Report;

pub use orders::{OrderContext, OrderTracker};

/// A rule over the events of the instruments a worker owns.
pub trait Detector {
    /// A short name for logs.
    fn name(&self) -> &'static str;

    /// Sees one event, with the state of its order before the event.
    fn on_event(&mut self, event: &Event, order: &OrderContext, out: &mut Emitter<'_, Report>);

    /// The earliest event time at which [`on_timer`](Detector::on_timer) must run.
    fn next_timer(&self) -> Option<u64> {
        None
    }

    /// Runs the timer at `time` (session ends, periodic reports).
    fn on_timer(&mut self, time: u64, out: &mut Emitter<'_, Report>) {
        let _ = (time, out);
    }
}

/// Builds the detectors enabled in the configuration.
pub fn default_detectors(config: &Config, reference: &Arc<ReferenceData>) -> Vec<Box<dyn Detector>> {
    let rules = &config.rules;
    let mut detectors: Vec<Box<dyn Detector>> = Vec::new();
    if rules.order_limits.enabled {
        detectors.push(Box::new(order_limits::OrderLimits::new(&rules.order_limits, reference.clone())));
    }
    if rules.price_collar.enabled {
        detectors.push(Box::new(price_collar::PriceCollar::new(&rules.price_collar, reference.clone())));
    }
    if rules.order_to_trade.enabled {
        detectors.push(Box::new(order_to_trade::OrderToTrade::new(&rules.order_to_trade, &config.sessions)));
    }
    if rules.self_trade.enabled {
        detectors.push(Box::new(self_trade::SelfTrade::new(&rules.self_trade)));
    }
    detectors
}

/// Dead letters found by the order state are emitted on a grid of this many nanoseconds
/// (a power of two, about a millisecond).
const DEAD_LETTER_GRID: u64 = 1 << 20;

/// Tracks orders and runs detectors over one worker's instruments.
pub struct SurveillanceProcessor {
    orders: OrderTracker,
    detectors: Vec<Box<dyn Detector>>,
}

impl SurveillanceProcessor {
    /// A processor running `detectors`.
    pub fn new(detectors: Vec<Box<dyn Detector>>) -> SurveillanceProcessor {
        SurveillanceProcessor { orders: OrderTracker::default(), detectors }
    }

    /// Open orders being tracked.
    pub fn open_orders(&self) -> usize {
        self.orders.len()
    }
}

impl TimeOrderedProcessor<Event> for SurveillanceProcessor {
    type Output = Report;

    fn on_record(&mut self, _time: u64, event: Event, out: &mut Emitter<'_, Report>) {
        match self.orders.apply(&event) {
            Ok(context) => {
                for detector in self.detectors.iter_mut() {
                    detector.on_event(&event, &context, out);
                }
            }
            Err(rejection) => {
                // Letters go out at the end of their millisecond: a feed gone bad then costs
                // one timely time per millisecond, not one per letter (each distinct time is a
                // message and a progress update of its own).
                let at = event.time | (DEAD_LETTER_GRID - 1);
                out.emit_at(
                    at,
                    Report::DeadLetter(Box::new(DeadLetter {
                        source: event.origin.source(),
                        line: None,
                        offset: event.origin.offset(),
                        raw: String::new(),
                        reason: rejection.reason,
                        detail: rejection.detail,
                        event: Some(Box::new(event)),
                    })),
                )
            }
        }
    }

    fn next_timer(&self) -> Option<u64> {
        self.detectors.iter().filter_map(|d| d.next_timer()).min()
    }

    fn on_timer(&mut self, time: u64, out: &mut Emitter<'_, Report>) {
        for detector in self.detectors.iter_mut() {
            if detector.next_timer() == Some(time) {
                detector.on_timer(time, out);
            }
        }
    }
}

/// Helpers for detector tests: run a detector over events in order and collect its reports.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::model::{Body, Origin, Symbol};

    /// Runs `processor` over `events` (sorted here) and flushes all timers.
    pub fn run(processor: &mut SurveillanceProcessor, mut events: Vec<Event>) -> Vec<Report> {
        events.sort_by_key(|e| e.order_key());
        let mut buffer = Vec::new();
        for event in events {
            while let Some(t) = processor.next_timer().filter(|&t| t <= event.time) {
                processor.on_timer(t, &mut test_emitter(t, &mut buffer));
            }
            let time = event.time;
            processor.on_record(time, event, &mut test_emitter(time, &mut buffer));
        }
        while let Some(t) = processor.next_timer() {
            processor.on_timer(t, &mut test_emitter(t, &mut buffer));
        }
        buffer.into_iter().map(|(_, r)| r).collect()
    }

    /// An emitter for tests.
    pub fn test_emitter(now: u64, buffer: &mut Vec<(u64, Report)>) -> Emitter<'_, Report> {
        Emitter::new(now, buffer)
    }

    /// An event at `time` in `instrument` for `account`.
    pub fn event(time: u64, instrument: &str, account: &str, body: Body) -> Event {
        let mut e = Event::new(time, Origin::new(0, time), Symbol::of(instrument.as_bytes()), body);
        e.account = Symbol::of(account.as_bytes());
        e
    }

    /// The alerts among reports.
    pub fn alerts(reports: &[Report]) -> Vec<&crate::alert::Alert> {
        reports
            .iter()
            .filter_map(|r| match r {
                Report::Alert(a) => Some(&**a),
                _ => None,
            })
            .collect()
    }
}
