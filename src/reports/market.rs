//! The market around a case's suspicious activity: the best bid and ask and the prints of its
//! instruments in a window around it, read again from the run's inputs, for a report's chart.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::config::Config;
use crate::ingest::lines::LineReader;
use crate::ingest::time::format_time;
use crate::ingest::{Format, InputSpec, Line, ParseContext, companion_of, parser_for};
use crate::model::decimal::Decimal;
use crate::model::{Body, Event, IdMap, Origin, Symbol};
use crate::reference::ReferenceData;

/// The most points of each kind kept per instrument: more are thinned evenly.
pub const MAX_POINTS: usize = 4000;

/// The market of one instrument over a window.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct MarketContext {
    /// The instrument.
    pub instrument: String,
    /// The window's start and end, RFC 3339.
    pub from: String,
    /// See `from`.
    pub to: String,
    /// The best bid and ask after each quote: time (ns), bid, ask (exact decimals).
    pub quotes: Vec<(u64, Option<String>, Option<String>)>,
    /// The prints (trades and fills): time (ns), price, quantity.
    pub prints: Vec<(u64, String, u64)>,
    /// Points were dropped evenly to keep at most [`MAX_POINTS`] of each kind.
    pub thinned: bool,
}

/// The market of `instruments` from `from` to `to` (ns), read from `inputs` with the run's
/// parsers; an input that cannot be read any more is named in the error list, not fatal.
pub fn market_around(
    inputs: &[PathBuf],
    config: &Config,
    reference: &ReferenceData,
    instruments: &[String],
    from: u64,
    to: u64,
) -> (Vec<MarketContext>, Vec<String>) {
    let wanted: BTreeMap<Symbol, usize> =
        instruments.iter().enumerate().map(|(i, name)| (Symbol::of(name.as_bytes()), i)).collect();
    let mut markets: Vec<MarketContext> = instruments
        .iter()
        .map(|name| MarketContext {
            instrument: name.clone(),
            from: format_time(from),
            to: format_time(to),
            ..MarketContext::default()
        })
        .collect();
    let mut problems = Vec::new();
    for (index, path) in inputs.iter().enumerate() {
        let spec = InputSpec { index: index as u32, path: path.clone(), format: Format::detect(path) };
        let scan = scan(&spec, config, reference, |event| {
            let (Some(&slot), true) = (wanted.get(&event.instrument), (from..=to).contains(&event.time)) else {
                return;
            };
            let scale = reference.price_scale(event.instrument);
            let text = |price| Decimal::price(price, scale).to_string();
            match &event.body {
                Body::Quote { bid, ask } => {
                    markets[slot].quotes.push((event.time, bid.map(|l| text(l.price)), ask.map(|l| text(l.price))))
                }
                Body::Trade { price, quantity, .. } | Body::Fill { price, quantity, .. } => {
                    markets[slot].prints.push((event.time, text(*price), *quantity))
                }
                _ => {}
            }
        });
        if let Err(e) = scan {
            problems.push(format!("{}: {e}", path.display()));
        }
    }
    for market in &mut markets {
        market.quotes.sort_by_key(|q| q.0);
        market.prints.sort_by_key(|p| p.0);
        market.thinned = thin(&mut market.quotes) | thin(&mut market.prints);
    }
    (markets, problems)
}

/// Reads every event of `spec` into `each`; lines that do not parse are skipped (the run
/// reported them as dead letters).
fn scan(
    spec: &InputSpec,
    config: &Config,
    reference: &ReferenceData,
    mut each: impl FnMut(&Event),
) -> Result<(), String> {
    let mut parser = parser_for(spec, config).map_err(|e| e.to_string())?;
    let mut reader = LineReader::open(&spec.path, 0).map_err(|e| e.to_string())?;
    let mut companion = match companion_of(spec, config) {
        Some(path) => Some(LineReader::open(&path, 0).map_err(|e| format!("{}: {e}", path.display()))?),
        None => None,
    };
    let (mut side, mut announced, mut out) = (Vec::new(), IdMap::default(), Vec::new());
    let mut first = true;
    let mut companion_line = Vec::new();
    while let Some((offset, bytes)) = reader.next_line().map_err(|e| e.to_string())? {
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        if std::mem::take(&mut first) && parser.is_header(bytes) {
            continue;
        }
        if let Some(companion) = companion.as_mut() {
            companion_line.clear();
            match companion.next_line().map_err(|e| e.to_string())? {
                Some((_, line)) => companion_line.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line)),
                None => break,
            }
        }
        let line = Line {
            bytes,
            origin: Origin::new(spec.index, offset),
            companion: companion.is_some().then_some(companion_line.as_slice()),
        };
        out.clear();
        side.clear();
        let mut context = ParseContext::new(reference, &mut side, &mut announced);
        if context.parse(parser.as_mut(), &line, &mut out).is_ok() {
            out.iter().for_each(&mut each);
        }
    }
    Ok(())
}

/// Keeps at most [`MAX_POINTS`] of `points`, evenly spaced; whether any were dropped.
fn thin<T>(points: &mut Vec<T>) -> bool {
    if points.len() <= MAX_POINTS {
        return false;
    }
    let step = points.len().div_ceil(MAX_POINTS);
    let mut index = 0;
    points.retain(|_| {
        index += 1;
        (index - 1) % step == 0
    });
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_market_of_the_example_session_around_its_self_trade() {
        let example = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/datasets/example.csv"));
        let reference = ReferenceData::new(4);
        let day = |text: &str| crate::ingest::time::parse_event_time(text.as_bytes()).expect("time");
        let (markets, problems) = market_around(
            &[example, PathBuf::from("/nonexistent/input.csv")],
            &Config::default(),
            &reference,
            &["BOLT".to_string()],
            day("2024-03-01T14:30:00Z"),
            day("2024-03-01T14:30:02Z"),
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("/nonexistent/input.csv"));
        let bolt = &markets[0];
        assert_eq!(bolt.instrument, "BOLT");
        assert!(!bolt.quotes.is_empty() && !bolt.prints.is_empty(), "{bolt:?}");
        // The off-market fill at 18.00 is among the prints, with the best bid of 20.00 quoted.
        assert!(bolt.prints.iter().any(|p| p.1 == "18"), "{:?}", bolt.prints);
        assert!(bolt.quotes.iter().any(|q| q.1.as_deref() == Some("20")), "{:?}", bolt.quotes);
        assert!(bolt.quotes.windows(2).all(|w| w[0].0 <= w[1].0));
        let mut many: Vec<u32> = (0..10_001).collect();
        assert!(thin(&mut many) && many.len() <= MAX_POINTS && many[0] == 0);
    }
}
