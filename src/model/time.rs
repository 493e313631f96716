//! Event-time parsing and session calendars.

use chrono::{DateTime, NaiveDate, TimeZone};

/// Nanoseconds per second.
pub const SECOND: u64 = 1_000_000_000;
/// Nanoseconds per day.
pub const DAY: u64 = 86_400 * SECOND;

/// Reads an event time: integer nanoseconds since the Unix epoch, or RFC 3339 text.
#[inline]
pub fn parse_event_time(text: &[u8]) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    if text.len() == 19 {
        // Nanoseconds since 1970 have 19 digits from 2001 to 2286: read them 8 at a time.
        if let (Some(a), Some(b)) = (eight_digits(&text[0..8]), eight_digits(&text[8..16])) {
            let c = &text[16..19];
            if c.iter().all(u8::is_ascii_digit) {
                let c = (c[0] - b'0') as u64 * 100 + (c[1] - b'0') as u64 * 10 + (c[2] - b'0') as u64;
                return a.checked_mul(100_000_000_000)?.checked_add(b * 1_000 + c);
            }
        }
    }
    if text.len() <= 19 && text.iter().all(u8::is_ascii_digit) {
        let mut n = 0u64;
        for &b in text {
            n = n.checked_mul(10)?.checked_add((b - b'0') as u64)?;
        }
        return Some(n);
    }
    let text = std::str::from_utf8(text).ok()?;
    let time = DateTime::parse_from_rfc3339(text).ok()?;
    u64::try_from(time.timestamp_nanos_opt()?).ok()
}

/// Why `text` is not an event time, for a `bad_time` dead letter: missing, before 1970, beyond
/// what 64-bit nanoseconds hold (2554), or neither integer nanoseconds nor RFC 3339.
#[cold]
pub fn event_time_error(text: &[u8]) -> String {
    let shown = String::from_utf8_lossy(text);
    if text.is_empty() {
        return "event_time is missing".into();
    }
    if text.iter().all(u8::is_ascii_digit) {
        return format!("event_time {shown:?} is beyond 2554-07-21, the last time 64-bit nanoseconds hold");
    }
    if text.first() == Some(&b'-') && text[1..].iter().all(u8::is_ascii_digit) && text.len() > 1 {
        return format!("event_time {shown:?} is before 1970-01-01 (negative nanoseconds)");
    }
    match std::str::from_utf8(text).ok().map(DateTime::parse_from_rfc3339) {
        Some(Ok(time)) if time.timestamp() < 0 => format!("event_time {shown:?} is before 1970-01-01"),
        Some(Ok(_)) => format!("event_time {shown:?} is beyond 2554-07-21, the last time 64-bit nanoseconds hold"),
        Some(Err(e)) => {
            format!("event_time {shown:?} is neither integer nanoseconds since 1970 nor RFC 3339 text ({e})")
        }
        None => format!("event_time {shown:?} is not UTF-8 text"),
    }
}

/// The value of eight ASCII digits, or `None` if any byte is not a digit (SWAR: all eight
/// digits are checked and combined with three multiplications).
#[inline]
fn eight_digits(bytes: &[u8]) -> Option<u64> {
    let chunk = u64::from_le_bytes(bytes.try_into().ok()?);
    let digits = chunk.wrapping_sub(0x3030_3030_3030_3030);
    // Every byte must be in 0..=9: no high nibble left after subtracting '0', and adding 6
    // must not carry into it.
    if (digits | digits.wrapping_add(0x0606_0606_0606_0606)) & 0xF0F0_F0F0_F0F0_F0F0 != 0 {
        return None;
    }
    let v = (digits.wrapping_mul(10) + (digits >> 8)) & 0x00FF_00FF_00FF_00FF;
    let v = (v.wrapping_mul(100) + (v >> 16)) & 0x0000_FFFF_0000_FFFF;
    Some((v.wrapping_mul(10_000) + (v >> 32)) & 0xFFFF_FFFF)
}

/// Formats nanoseconds since the epoch as RFC 3339 UTC with nanoseconds
/// (`2024-03-01T14:30:00.000000000Z`). Every alert and evidence line carries such times, so
/// this writes the digits directly instead of going through a format string.
pub fn format_time(nanos: u64) -> String {
    let mut out = String::with_capacity(30);
    write_time(nanos, &mut out);
    out
}

/// Appends [`format_time`]'s text to `out`.
pub fn write_time(nanos: u64, out: &mut String) {
    let seconds = nanos / SECOND;
    let (days, second_of_day) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    let digits = |n: u64, width: usize, out: &mut String| {
        let mut buf = [b'0'; 9];
        let mut n = n;
        for slot in buf[..width].iter_mut().rev() {
            *slot = b'0' + (n % 10) as u8;
            n /= 10;
        }
        out.push_str(std::str::from_utf8(&buf[..width]).unwrap_or("?"));
    };
    digits(year as u64, 4, out);
    out.push('-');
    digits(month as u64, 2, out);
    out.push('-');
    digits(day as u64, 2, out);
    out.push('T');
    digits(second_of_day / 3600, 2, out);
    out.push(':');
    digits(second_of_day / 60 % 60, 2, out);
    out.push(':');
    digits(second_of_day % 60, 2, out);
    out.push('.');
    digits(nanos % SECOND, 9, out);
    out.push('Z');
}

/// (year, month, day) of a count of days since 1970-01-01 in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Reads `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

/// Nanoseconds since the epoch of local midnight starting `date` in `zone`; where a change to
/// summer time skips midnight (America/Santiago, 2024-09-08), the first local time that exists
/// after it.
pub fn local_midnight(date: NaiveDate, zone: chrono_tz::Tz) -> Option<u64> {
    let midnight = date.and_hms_opt(0, 0, 0)?;
    // Gaps are at most a few hours; look in quarter hours.
    let local = (0..=16).find_map(|quarter| {
        zone.from_local_datetime(&(midnight + chrono::Duration::minutes(15 * quarter))).earliest()
    })?;
    u64::try_from(local.timestamp_nanos_opt()?).ok()
}

/// A session calendar: a session is a calendar day in a time zone.
#[derive(Clone, Debug)]
pub struct SessionCalendar {
    zone: chrono_tz::Tz,
}

impl SessionCalendar {
    /// A calendar in `zone`.
    pub fn new(zone: chrono_tz::Tz) -> SessionCalendar {
        SessionCalendar { zone }
    }

    /// The event time at which the session of local date `date` starts.
    pub fn session_start(&self, date: NaiveDate) -> Option<u64> {
        local_midnight(date, self.zone)
    }

    /// The session (local date) of an event time and the event time at which it ends.
    pub fn session_of(&self, nanos: u64) -> (NaiveDate, u64) {
        let utc = DateTime::from_timestamp((nanos / SECOND) as i64, (nanos % SECOND) as u32).unwrap_or_default();
        let date = utc.with_timezone(&self.zone).date_naive();
        let end = date.succ_opt().and_then(|next| local_midnight(next, self.zone)).unwrap_or(nanos.saturating_add(DAY));
        (date, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_integer_and_rfc3339_times() {
        assert_eq!(parse_event_time(b"1709303400000000123"), Some(1_709_303_400_000_000_123));
        assert_eq!(parse_event_time(b"2024-03-01T14:30:00.000000123Z"), Some(1_709_303_400_000_000_123));
        assert_eq!(parse_event_time(b"2024-03-01T09:30:00-05:00"), Some(1_709_303_400_000_000_000));
        assert_eq!(parse_event_time(b"yesterday"), None);
        for n in [1_000_000_000_000_000_000u64, 1_709_303_400_123_456_789, 9_999_999_999_999_999_999] {
            assert_eq!(parse_event_time(n.to_string().as_bytes()), Some(n));
        }
        assert_eq!(parse_event_time(b"17093034001234567x9"), None);
        assert_eq!(parse_event_time(b"1709303400:23456789"), None);
        assert_eq!(parse_event_time(b"170930340/123456789"), None);
        assert_eq!(parse_event_time(b""), None);
        assert_eq!(format_time(1_709_303_400_000_000_123), "2024-03-01T14:30:00.000000123Z");
    }

    #[test]
    fn a_day_whose_midnight_is_skipped_starts_at_its_first_hour() {
        let santiago = SessionCalendar::new(chrono_tz::America::Santiago);
        // 2024-09-08 00:00 does not exist in Santiago: clocks go from 23:59:59 to 01:00 (UTC-3).
        let (date, end) = santiago.session_of(1_725_750_000_000_000_000); // 2024-09-07T23:00Z
        assert_eq!(date.to_string(), "2024-09-07");
        assert_eq!(format_time(end), "2024-09-08T04:00:00.000000000Z");
        let (_, later_end) = santiago.session_of(1_725_753_000_000_000_000);
        assert_eq!(end, later_end, "one session, one end");
    }

    #[test]
    fn sessions_follow_the_local_calendar() {
        let ny = SessionCalendar::new(chrono_tz::America::New_York);
        let (date, end) = ny.session_of(1_709_303_400_000_000_000);
        assert_eq!(date.to_string(), "2024-03-01");
        assert_eq!(format_time(end), "2024-03-02T05:00:00.000000000Z");
    }
}

#[cfg(test)]
mod format_tests {
    use super::*;

    proptest::proptest! {
        /// The direct formatter writes what chrono's format string writes.
        #[test]
        fn format_time_matches_chrono(nanos in proptest::prelude::any::<u64>()) {
            let time = DateTime::from_timestamp((nanos / SECOND) as i64, (nanos % SECOND) as u32).unwrap_or_default();
            proptest::prop_assert_eq!(format_time(nanos), time.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string());
        }
    }

    #[test]
    fn bad_times_say_why() {
        let why = |t: &str| event_time_error(t.as_bytes());
        assert!(why("").contains("missing"));
        assert!(why("1969-12-31T23:59:59Z").contains("before 1970"));
        assert!(why("-5").contains("before 1970"));
        assert!(why("99999999999999999999").contains("beyond 2554"));
        assert!(why("2600-01-01T00:00:00Z").contains("beyond 2554"));
        assert!(why("soon").contains("neither integer nanoseconds"));
        assert!(why("2024-13-01T00:00:00Z").contains("neither integer nanoseconds"));
        for text in ["1969-12-31T23:59:59Z", "-5", "99999999999999999999", "soon"] {
            assert_eq!(parse_event_time(text.as_bytes()), None, "{text}");
        }
    }

    #[test]
    fn format_time_edges() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(format_time(1_709_303_400_000_000_001), "2024-03-01T14:30:00.000000001Z");
        assert_eq!(format_time(u64::MAX), "2554-07-21T23:34:33.709551615Z");
        assert_eq!(format_time(951_782_400 * SECOND), "2000-02-29T00:00:00.000000000Z");
    }
}
