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

/// Formats nanoseconds since the epoch as RFC 3339 UTC with nanoseconds.
pub fn format_time(nanos: u64) -> String {
    let time = DateTime::from_timestamp((nanos / SECOND) as i64, (nanos % SECOND) as u32).unwrap_or_default();
    time.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

/// Reads `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

/// Nanoseconds since the epoch of local midnight starting `date` in `zone`.
pub fn local_midnight(date: NaiveDate, zone: chrono_tz::Tz) -> Option<u64> {
    let midnight = date.and_hms_opt(0, 0, 0)?;
    let local = zone.from_local_datetime(&midnight).earliest()?;
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
    fn sessions_follow_the_local_calendar() {
        let ny = SessionCalendar::new(chrono_tz::America::New_York);
        let (date, end) = ny.session_of(1_709_303_400_000_000_000);
        assert_eq!(date.to_string(), "2024-03-01");
        assert_eq!(format_time(end), "2024-03-02T05:00:00.000000000Z");
    }
}
