//! Feeds every line of the input to a parser, as a partition does: a result for every line,
//! never a panic; accepted lines give events and leave nothing half-written.

use surveil::ingest::{Line, LineParser, ParseContext};
use surveil::model::{IdMap, Origin};
use surveil::reference::ReferenceData;

pub fn parse_lines(parser: &mut dyn LineParser, data: &[u8], companion: Option<&[u8]>) {
    let reference = ReferenceData::new(4);
    let mut side = Vec::new();
    let mut announced = IdMap::default();
    let mut events = Vec::new();
    let mut offset = 0u64;
    for bytes in data.split(|&b| b == b'\n') {
        let before = events.len();
        let line = Line { bytes, origin: Origin::new(0, offset), companion };
        let mut context = ParseContext::new(&reference, &mut side, &mut announced);
        if context.parse(parser, &line, &mut events).is_err() {
            assert_eq!(events.len(), before, "a rejected line leaves no event behind");
        }
        offset += bytes.len() as u64 + 1;
    }
}
