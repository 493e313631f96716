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
        Body::NewOrder {
            order: Symbol::of(b"V-77"),
            side: Side::Buy,
            price: Some(Price(10125)),
            quantity: 500,
            displayed: None
        }
    );
    // A reserve order: DisplayQty (1138), or MaxFloor (111) in FIX 4.2.
    for tag in [1138, 111] {
        let mut fresh = FixParser::new(&FixConfig::default());
        let reserve = parse(&mut fresh, &report("0", &[(tag, "100")])).expect("reserve");
        assert!(matches!(reserve[0].body, Body::NewOrder { quantity: 500, displayed: Some(100), .. }), "{tag}");
    }
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
    // A cancel answering the member's request names it (OrigClOrdID); one without is the
    // venue's own, as are expiry and the end of the day.
    let cancel = parse(&mut parser, &report("4", &[(41, "C-0")])).expect("cancel");
    assert!(matches!(cancel[0].body, Body::Cancel { quantity: None, reason: CancelReason::Member, .. }));
    for ended in ["4", "C", "3"] {
        let venue = parse(&mut parser, &report(ended, &[])).expect("venue cancel");
        assert!(matches!(venue[0].body, Body::Cancel { reason: CancelReason::Expired, .. }), "{ended}");
    }
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
        message(
            "FIX.4.2",
            &[(35, "8"), (150, "4"), (11, "A3"), (41, "A2"), (37, "V1"), (55, "ACME"), (54, "2"), at],
            '|',
        ),
    ];
    let events: Vec<Event> = lines.iter().flat_map(|l| parse(&mut parser, l).expect("parsed")).collect();
    let a1 = Symbol::of(b"A1");
    assert_eq!(events.len(), 4);
    assert!(events.iter().all(|e| e.order() == Some(a1)), "{events:?}");
    assert!(matches!(events[1].body, Body::Replace { quantity: 80, price: Some(Price(1050)), .. }));
    assert!(matches!(events[2].body, Body::Fill { quantity: 30, .. }));
    assert!(matches!(events[3].body, Body::Cancel { quantity: None, .. }));
}

#[test]
fn busts_corrections_and_resent_reports_are_not_counted_as_fills() {
    let mut parser = FixParser::new(&FixConfig::default());
    let fill = |extra: &[(u32, &str)]| {
        let mut fields =
            vec![(35, "8"), (17, "E-9"), (150, "2"), (37, "V"), (55, "ACME"), (54, "1"), (31, "10"), (32, "5")];
        fields.extend_from_slice(extra);
        fields.push((60, "20240301-14:30:00"));
        message("FIX.4.2", &fields, '|')
    };
    let reason = |parser: &mut FixParser, line: &str| parse(parser, line).map(|e| e.len()).map_err(|e| e.reason);
    assert_eq!(reason(&mut parser, &fill(&[])), Ok(1));
    // Sent again after a resend request: the same execution, not a second one.
    assert_eq!(reason(&mut parser, &fill(&[(43, "Y")])), Ok(0));
    assert_eq!(reason(&mut parser, &fill(&[(20, "1")])), Err(RejectReason::FixTradeCorrection));
    assert_eq!(reason(&mut parser, &fill(&[(20, "2")])), Err(RejectReason::FixTradeCorrection));
    assert_eq!(reason(&mut parser, &fill(&[(20, "3")])), Ok(0));
    let bust = message(
        "FIX.4.4",
        &[(35, "8"), (150, "H"), (37, "V"), (55, "ACME"), (54, "1"), (60, "20240301-14:30:00")],
        '|',
    );
    assert_eq!(reason(&mut parser, &bust), Err(RejectReason::FixTradeCorrection));
}

#[test]
fn order_types_sides_and_framing_as_engines_write_them() {
    let mut parser = FixParser::new(&FixConfig::default());
    let new = |extra: &[(u32, &str)]| {
        let mut fields = vec![(35, "8"), (150, "0"), (37, "V"), (55, "ACME"), (38, "10")];
        fields.extend_from_slice(extra);
        fields.push((60, "20240301-14:30:00"));
        message("FIX.4.4", &fields, '|')
    };
    // A stop order without a limit price, a pegged order: no price, not a dead letter.
    for ord_type in ["3", "P"] {
        let events = parse(&mut parser, &new(&[(54, "3"), (40, ord_type), (99, "10")])).expect("no price needed");
        assert!(matches!(events[0].body, Body::NewOrder { price: None, side: Side::Buy, .. }), "{ord_type}");
    }
    let limit_without_price = parse(&mut parser, &new(&[(54, "4"), (40, "2")])).map_err(|e| e.reason);
    assert_eq!(limit_without_price, Err(RejectReason::MissingField));
    let sell_plus = parse(&mut parser, &new(&[(54, "4"), (40, "2"), (44, "9.5")])).expect("sell plus");
    assert!(matches!(sell_plus[0].body, Body::NewOrder { side: Side::Sell, .. }));
    let syntax_of = |parser: &mut FixParser, line: &str| parse(parser, line).map(|_| ()).map_err(|e| e.reason);
    // The same tag twice, a tag without a value, a signed number, another protocol version.
    let twice = new(&[(54, "1"), (40, "1"), (150, "F")]);
    assert_eq!(syntax_of(&mut parser, &twice), Err(RejectReason::FixSyntax));
    let empty = new(&[(54, "1"), (40, "1")]).replace("37=V|", "37=|");
    assert_eq!(syntax_of(&mut parser, &empty), Err(RejectReason::FixSyntax));
    let signed = new(&[(54, "1"), (40, "1")]).replacen("|9=", "|9=+", 1);
    assert_eq!(syntax_of(&mut parser, &signed), Err(RejectReason::FixBodyLength));
    let fixt =
        message("FIXT.1.1", &[(35, "8"), (150, "0"), (37, "V"), (55, "ACME"), (54, "1"), (38, "1"), (40, "1")], '|');
    assert_eq!(syntax_of(&mut parser, &fixt), Err(RejectReason::FixSyntax));
    // A log prefix that itself holds 8=FIX is not taken for the message.
    let prefixed = format!("gw 8=FIXGW in: {}", new(&[(54, "1"), (40, "1")]));
    assert_eq!(parse(&mut parser, &prefixed).expect("prefixed").len(), 1);
}

#[test]
fn a_client_order_id_used_again_starts_a_new_order() {
    let mut parser = FixParser::new(&FixConfig { orders_from: FixOrders::Requests });
    let at = (60, "20240301-14:30:00");
    let lines = [
        message("FIX.4.2", &[(35, "D"), (11, "A1"), (55, "ACME"), (54, "2"), (38, "100"), (40, "1"), at], '|'),
        message(
            "FIX.4.2",
            &[(35, "G"), (11, "A2"), (41, "A1"), (55, "ACME"), (54, "2"), (38, "80"), (40, "1"), at],
            '|',
        ),
        message("FIX.4.2", &[(35, "D"), (11, "A2"), (55, "ACME"), (54, "1"), (38, "7"), (40, "1"), at], '|'),
        // The venue ends the new A2 on its own: a report with no OrigClOrdID.
        message("FIX.4.2", &[(35, "8"), (150, "4"), (11, "A2"), (37, "V2"), (55, "ACME"), (54, "1"), at], '|'),
    ];
    let events: Vec<Event> = lines.iter().flat_map(|l| parse(&mut parser, l).expect("parsed")).collect();
    assert_eq!(events.len(), 4);
    assert_eq!(events[2].order(), Some(Symbol::of(b"A2")));
    assert!(matches!(events[3].body, Body::Cancel { reason: CancelReason::Expired, .. }));
    assert_eq!(events[3].order(), Some(Symbol::of(b"A2")));
}
