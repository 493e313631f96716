use super::*;
use crate::config::{FixConfig, FixOrders};
use crate::model::{IdMap, Origin, Price, Report};
use crate::reference::ReferenceData;

/// A message of `fields` (after 8, 9 and 35..., before 10) with its true body length and
/// checksum, fields separated by `separator`.
fn message(version: &str, fields: &[(u32, &str)], separator: char) -> String {
    let body: String = fields.iter().map(|(t, v)| format!("{t}={v}\u{1}")).collect();
    let head = format!("8={version}\u{1}9={}\u{1}", body.len());
    let sum = (head.clone() + &body).bytes().map(u32::from).sum::<u32>() % 256;
    format!("{head}{body}10={sum:03}\u{1}").replace('\u{1}', &separator.to_string())
}

fn parse(parser: &mut FixParser, line: &str) -> Result<Vec<Event>, Rejection> {
    let mut reference = ReferenceData::new(4);
    reference.add_instrument("ACME", crate::reference::Instrument { price_scale: 2, ..Default::default() });
    let (mut side, mut announced, mut events) = (Vec::<Report>::new(), IdMap::default(), Vec::new());
    let mut context = ParseContext::new(&reference, &mut side, &mut announced);
    let line = Line { bytes: line.as_bytes(), origin: Origin::new(0, 0), companion: None };
    context.parse(parser, &line, &mut events).map(|()| events)
}

fn report(exec_type: &str, extra: &[(u32, &str)]) -> String {
    let mut fields = vec![
        (35, "8"),
        (34, "12"),
        (49, "VENUE"),
        (56, "FIRM"),
        (52, "20240301-14:30:00.000"),
        (1, "ACC1"),
        (37, "V-77"),
        (11, "C-1"),
        (17, "E-1"),
        (150, exec_type),
        (39, "0"),
        (55, "ACME"),
        (54, "1"),
        (38, "500"),
        (40, "2"),
        (44, "101.25"),
        (60, "20240301-14:30:00.123456789"),
    ];
    fields.extend_from_slice(extra);
    message("FIX.4.4", &fields, '\u{1}')
}

#[test]
fn execution_reports_make_the_order_events_of_a_drop_copy() {
    let mut parser = FixParser::new(&FixConfig::default());
    let new = parse(&mut parser, &report("0", &[])).expect("new");
    assert_eq!(new.len(), 1);
    let event = new[0];
    assert_eq!(event.time, 1_709_303_400_123_456_789);
    assert_eq!(event.seq, 12);
    assert_eq!(event.account, Symbol::of(b"ACC1"));
    assert_eq!(
        event.body,
        Body::NewOrder { order: Symbol::of(b"V-77"), side: Side::Buy, price: Some(Price(10125)), quantity: 500 }
    );
    let fill =
        parse(&mut parser, &report("F", &[(31, "101.20"), (32, "200"), (851, "2"), (30, "XLON")])).expect("fill");
    assert_eq!(
        fill[0].body,
        Body::Fill {
            order: Symbol::of(b"V-77"),
            side: Side::Buy,
            price: Price(10120),
            quantity: 200,
            aggressor: Some(Side::Buy),
            hidden: false
        }
    );
    assert_eq!(fill[0].venue, Symbol::of(b"XLON"));
    let cancel = parse(&mut parser, &report("4", &[])).expect("cancel");
    assert!(matches!(cancel[0].body, Body::Cancel { quantity: None, reason: CancelReason::Member, .. }));
    let replace = parse(&mut parser, &report("5", &[])).expect("replace");
    assert!(matches!(replace[0].body, Body::Replace { quantity: 500, .. }));
    // A pending state and a request: checked, no event.
    assert_eq!(parse(&mut parser, &report("A", &[])).expect("pending"), vec![]);
    let request = message("FIX.4.4", &[(35, "D"), (11, "C-2"), (55, "ACME"), (54, "2"), (38, "1"), (40, "1")], '|');
    assert_eq!(parse(&mut parser, &request).expect("request"), vec![]);
}

#[test]
fn a_log_line_with_a_prefix_and_bars_for_separators_is_checked_as_the_wire_bytes() {
    let mut parser = FixParser::new(&FixConfig::default());
    let line = format!("20240301-14:30:00.123 : {}", report("0", &[]).replace('\u{1}', "|"));
    assert_eq!(parse(&mut parser, &line).expect("parsed").len(), 1);
}

#[test]
fn damaged_messages_are_dead_letters_with_the_reason() {
    let mut parser = FixParser::new(&FixConfig::default());
    let good = report("0", &[]);
    let reason = |line: &str, parser: &mut FixParser| parse(parser, line).map(|_| ()).map_err(|e| e.reason);
    // One byte changed in the body: the checksum no longer matches.
    let bad_sum = good.replace("ACC1", "ACC2");
    assert_eq!(reason(&bad_sum, &mut parser), Err(RejectReason::FixChecksum));
    // A field dropped with the checksum recomputed elsewhere: the body length does not match.
    let short = good.replace("49=VENUE\u{1}", "");
    assert_eq!(reason(&short, &mut parser), Err(RejectReason::FixBodyLength));
    assert_eq!(reason("hello", &mut parser), Err(RejectReason::FixSyntax));
    assert_eq!(reason("8=FIX.4.4\u{1}35=D\u{1}9=5\u{1}10=000\u{1}", &mut parser), Err(RejectReason::FixSyntax));
    let truncated = &good[..good.len() - 8];
    assert_eq!(reason(truncated, &mut parser), Err(RejectReason::FixSyntax));
    let no_symbol = message(
        "FIX.4.4",
        &[(35, "8"), (150, "0"), (37, "V"), (54, "1"), (38, "1"), (40, "1"), (60, "20240301-14:30:00")],
        '|',
    );
    assert_eq!(reason(&no_symbol, &mut parser), Err(RejectReason::MissingField));
    let bad_time = report("0", &[]).replace("20240301-14:30:00.123456789", "2024-03-01T14:30");
    let bad_time = {
        // Rebuild so that only the time is wrong.
        let fields: Vec<(u32, String)> = bad_time
            .trim_end_matches('\u{1}')
            .split('\u{1}')
            .filter_map(|f| f.split_once('='))
            .filter(|(t, _)| !["8", "9", "10"].contains(t))
            .map(|(t, v)| (t.parse().expect("tag"), v.to_string()))
            .collect();
        let borrowed: Vec<(u32, &str)> = fields.iter().map(|(t, v)| (*t, v.as_str())).collect();
        message("FIX.4.4", &borrowed, '\u{1}')
    };
    assert_eq!(reason(&bad_time, &mut parser), Err(RejectReason::BadTime));
    let odd_side = message(
        "FIX.4.2",
        &[(35, "8"), (150, "0"), (37, "V"), (55, "ACME"), (54, "7"), (38, "1"), (40, "1"), (60, "20240301-14:30:00")],
        '|',
    );
    assert_eq!(reason(&odd_side, &mut parser), Err(RejectReason::UnknownSide));
}

#[test]
fn an_order_entry_log_follows_an_order_through_its_request_ids() {
    let mut parser = FixParser::new(&FixConfig { orders_from: FixOrders::Requests });
    let at = (60, "20240301-14:30:00");
    let lines = [
        message(
            "FIX.4.2",
            &[(35, "D"), (11, "A1"), (55, "ACME"), (54, "2"), (38, "100"), (40, "2"), (44, "10"), at],
            '|',
        ),
        message(
            "FIX.4.2",
            &[(35, "G"), (11, "A2"), (41, "A1"), (55, "ACME"), (54, "2"), (38, "80"), (40, "2"), (44, "10.5"), at],
            '|',
        ),
        message(
            "FIX.4.2",
            &[(35, "8"), (150, "1"), (11, "A2"), (37, "V1"), (55, "ACME"), (54, "2"), (31, "10.5"), (32, "30"), at],
            '|',
        ),
        message("FIX.4.2", &[(35, "F"), (11, "A3"), (41, "A2"), (55, "ACME"), (54, "2"), at], '|'),
        // The venue's acknowledgement of the cancel: no event of its own in this mode.
        message("FIX.4.2", &[(35, "8"), (150, "4"), (11, "A3"), (37, "V1"), (55, "ACME"), (54, "2"), at], '|'),
    ];
    let events: Vec<Event> = lines.iter().flat_map(|l| parse(&mut parser, l).expect("parsed")).collect();
    let a1 = Symbol::of(b"A1");
    assert_eq!(events.len(), 4);
    assert!(events.iter().all(|e| e.order() == Some(a1)), "{events:?}");
    assert!(matches!(events[1].body, Body::Replace { quantity: 80, price: Some(Price(1050)), .. }));
    assert!(matches!(events[2].body, Body::Fill { quantity: 30, .. }));
    assert!(matches!(events[3].body, Body::Cancel { quantity: None, .. }));
}
