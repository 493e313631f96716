//! Unit tests of the commit bookkeeping (`tests/kafka_mock.rs` runs the source and sinks against
//! librdkafka's in-process mock cluster, `tests/kafka.rs` against a real broker).

use super::source::position_before_for_tests as position_before;

#[test]
fn commits_stop_before_the_first_message_that_may_reach_the_cutoff() {
    let second = 1_000_000_000;
    // Messages 0..4 at 0 s, 0.5 s, 1 s, 2.5 s, 2 s (out of order), 10 s.
    let times = [0, second / 2, second, 5 * second / 2, 2 * second, 10 * second];
    assert_eq!(position_before(&times, 0), 0, "nothing is before 0");
    assert_eq!(position_before(&times, second / 2), 0, "message 0 shares a granule with message 1");
    // Entries are granules: 0 s (messages 0, 1), 1 s (2), 2.5 s (3, 4), 10 s (5).
    assert_eq!(position_before(&times, second), 2, "messages 0 and 1 are before 1 s");
    assert_eq!(position_before(&times, 2 * second), 3, "message 2 (1 s) is alone in its granule");
    assert_eq!(position_before(&times, 3 * second), 3, "message 3's granule reaches 3 s");
    assert_eq!(position_before(&times, 7 * second / 2), 5, "messages 3 and 4 are before 3.5 s");
    assert_eq!(position_before(&times, 11 * second), 6, "everything read");
    assert_eq!(position_before(&times, u64::MAX), 6);
}
