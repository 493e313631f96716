//! Per-key anomaly scoring in event-time order.
//!
//! A [`Scorer`] is stateful and causal: a value's score depends on every earlier value of the
//! same series and on nothing later. This operator makes that hold in a dataflow: records are
//! routed by key, released in `(time, tie_break)` order once the watermark passes them (via
//! [`ProcessInTimeOrder`]), and each key's scorer, made by a factory on the key's first
//! record, sees exactly the sequence a batch replay of the sorted input would. Scores therefore
//! do not depend on the number of workers or on scheduling.

use std::collections::HashMap;

use timely::ExchangeData;
use timely::dataflow::Stream;

use crate::in_time_order::{Emitter, ProcessInTimeOrder, TimeOrderedProcessor};
use crate::scorers::{Scored, Scorer};

/// Extension trait: score each key's values with its own scorer, in event-time order.
pub trait ScoreByKey<'scope, D: ExchangeData> {
    /// Emits `(record, scored)` for every record, at the record's event time, where `scored` is
    /// what the key's scorer returned for `value(record)`. `key` routes and separates series,
    /// `order` gives `(event time, tie_break)`, and `factory(key)` makes a key's scorer.
    ///
    /// # Examples
    /// ```
    /// use timely::dataflow::operators::{Capture, ToStream};
    /// use timely::dataflow::operators::capture::Event;
    /// use surveil_operators::{EwmaZ, ScoreByKey};
    ///
    /// let captured = timely::example(|scope| {
    ///     // (time, key, value): key 1 is calm then spikes, key 2 is calm; out of order.
    ///     let mut records: Vec<(u64, u64, f64)> = (0..50).map(|t| (t, 1, 10.0 + (t % 3) as f64)).collect();
    ///     records.extend((0..50).map(|t| (t, 2, 5.0 + (t % 2) as f64)));
    ///     records.push((50, 1, 40.0));
    ///     records.reverse();
    ///     records
    ///         .to_stream(scope)
    ///         .score_by_key("Score", |r| r.1, |r| (r.0, 0), |r| r.2, |_key| EwmaZ::new(0.05, 10))
    ///         .capture()
    /// });
    /// let scored: Vec<_> = captured
    ///     .iter()
    ///     .flat_map(|event| if let Event::Messages(_, batch) = event { batch } else { Vec::new() })
    ///     .collect();
    /// assert_eq!(scored.len(), 101);
    /// let spike = scored.iter().find(|(r, _)| r.0 == 50).unwrap();
    /// assert!(spike.1.score > 0.999 && spike.1.z > 5.0);
    /// ```
    fn score_by_key<S, F, K, O, V>(
        self,
        name: &str,
        key: K,
        order: O,
        value: V,
        factory: F,
    ) -> Stream<'scope, u64, Vec<(D, Scored)>>
    where
        S: Scorer + 'static,
        F: Fn(u64) -> S + 'static,
        K: Fn(&D) -> u64 + 'static,
        O: Fn(&D) -> (u64, u64) + 'static,
        V: Fn(&D) -> f64 + 'static;
}

/// One worker's scorers, one per key it owns.
struct KeyedScorers<S, F, K, V> {
    scorers: HashMap<u64, S>,
    factory: F,
    key: K,
    value: V,
}

impl<D, S, F, K, V> TimeOrderedProcessor<D> for KeyedScorers<S, F, K, V>
where
    S: Scorer,
    F: Fn(u64) -> S,
    K: Fn(&D) -> u64,
    V: Fn(&D) -> f64,
{
    type Output = (D, Scored);

    fn on_record(&mut self, _time: u64, record: D, output: &mut Emitter<'_, Self::Output>) {
        let key = (self.key)(&record);
        let scorer = self.scorers.entry(key).or_insert_with(|| (self.factory)(key));
        let scored = scorer.observe((self.value)(&record));
        output.emit((record, scored));
    }
}

impl<'scope, D: ExchangeData + Clone> ScoreByKey<'scope, D> for Stream<'scope, u64, Vec<D>> {
    fn score_by_key<S, F, K, O, V>(
        self,
        name: &str,
        key: K,
        order: O,
        value: V,
        factory: F,
    ) -> Stream<'scope, u64, Vec<(D, Scored)>>
    where
        S: Scorer + 'static,
        F: Fn(u64) -> S + 'static,
        K: Fn(&D) -> u64 + 'static,
        O: Fn(&D) -> (u64, u64) + 'static,
        V: Fn(&D) -> f64 + 'static,
    {
        let route = std::rc::Rc::new(key);
        let processor_key = std::rc::Rc::clone(&route);
        let processor = KeyedScorers { scorers: HashMap::new(), factory, key: move |d: &D| processor_key(d), value };
        self.process_in_time_order(name, move |d| route(d), order, processor)
    }
}
