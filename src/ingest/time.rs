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
