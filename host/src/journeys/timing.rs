//! Journey time arithmetic: durations as people write them (`90s`, `2h30m`, `3d`), times of
//! day, and the next occurrence of a time of day in a contact's time zone (jiff, IANA names).

use jiff::civil::Time;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Zoned};

/// The longest duration a journey may wait: ten years.
pub const MAX_DURATION_MS: u64 = 10 * 366 * 24 * 3_600_000;

/// Parses a duration: one or more `<number><unit>` pairs, units `ms`, `s`, `m`, `h`, `d`,
/// `w` (`"90s"`, `"2h30m"`, `"3d"`). `None` when malformed, zero or above
/// [`MAX_DURATION_MS`].
pub fn parse_duration(text: &str) -> Option<u64> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 12 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    (total > 0 && total <= MAX_DURATION_MS).then_some(total)
}

/// Parses a time of day, `HH:MM` or `HH:MM:SS` (24-hour clock).
pub fn parse_time_of_day(text: &str) -> Option<Time> {
    let parts: Vec<&str> = text.trim().split(':').collect();
    if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.len() != 2) {
        return None;
    }
    let num = |s: &str| s.parse::<i8>().ok();
    let second = if parts.len() == 3 { num(parts[2])? } else { 0 };
    Time::new(num(parts[0])?, num(parts[1])?, second, 0).ok()
}

/// The time zone named `name` (an IANA name such as `Europe/Paris`), or UTC when the name is
/// absent or unknown: a contact with a bad `timezone` trait still gets its message.
pub fn zone(name: Option<&str>) -> TimeZone {
    name.and_then(|n| TimeZone::get(n.trim()).ok())
        .unwrap_or(TimeZone::UTC)
}

/// Whether `name` is a time zone the host knows.
pub fn is_known_zone(name: &str) -> bool {
    TimeZone::get(name).is_ok()
}

/// The first instant strictly after `after_ms` (Unix ms) at which the wall clock in `tz`
/// shows `at`. A time that a DST change skips is taken as the instant after the gap, and a
/// repeated one as its first occurrence (jiff's compatible disambiguation).
pub fn next_time_of_day(after_ms: i64, at: Time, tz: &TimeZone) -> i64 {
    let Ok(now) = Timestamp::from_millisecond(after_ms) else {
        return after_ms;
    };
    let local: Zoned = now.to_zoned(tz.clone());
    let mut date = local.date();
    for _ in 0..3 {
        if let Ok(candidate) = date.to_datetime(at).to_zoned(tz.clone()) {
            let ms = candidate.timestamp().as_millisecond();
            if ms > after_ms {
                return ms;
            }
        }
        match date.checked_add(1.day()) {
            Ok(next) => date = next,
            Err(_) => break,
        }
    }
    // Only reachable at the end of jiff's range.
    after_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("90s"), Some(90_000));
        assert_eq!(parse_duration("2h30m"), Some(9_000_000));
        assert_eq!(parse_duration("3d"), Some(3 * 86_400_000));
        assert_eq!(parse_duration("1w"), Some(7 * 86_400_000));
        assert_eq!(parse_duration("250ms"), Some(250));
        for bad in [
            "",
            "3",
            "d",
            "3x",
            "-1s",
            "0s",
            "1.5h",
            "3 d",
            "99999999999999d",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn times_of_day_are_checked() {
        assert_eq!(
            parse_time_of_day("09:30"),
            Some(Time::constant(9, 30, 0, 0))
        );
        assert_eq!(
            parse_time_of_day("23:59:59"),
            Some(Time::constant(23, 59, 59, 0))
        );
        for bad in ["9:30", "24:00", "12:60", "noon", "12", "12:00:00:00"] {
            assert_eq!(parse_time_of_day(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_next_nine_oclock_is_in_the_contacts_zone() {
        let nine = Time::constant(9, 0, 0, 0);
        // 10:00 UTC is 11:00 in Paris in winter: tomorrow 09:00 Paris = 08:00 UTC.
        let paris = zone(Some("Europe/Paris"));
        assert_eq!(
            next_time_of_day(ms("2026-01-15T10:00:00Z"), nine, &paris),
            ms("2026-01-16T08:00:00Z")
        );
        // 06:00 UTC is 01:00 in New York: today 09:00 there = 14:00 UTC.
        let ny = zone(Some("America/New_York"));
        assert_eq!(
            next_time_of_day(ms("2026-01-15T06:00:00Z"), nine, &ny),
            ms("2026-01-15T14:00:00Z")
        );
        // Exactly at the time: the next day, never now again.
        assert_eq!(
            next_time_of_day(ms("2026-01-15T09:00:00Z"), nine, &TimeZone::UTC),
            ms("2026-01-16T09:00:00Z")
        );
    }

    #[test]
    fn an_unknown_zone_is_utc_and_dst_gaps_move_forward() {
        let nine = Time::constant(9, 0, 0, 0);
        assert!(!is_known_zone("Mars/Olympus"));
        assert_eq!(
            next_time_of_day(
                ms("2026-01-15T10:00:00Z"),
                nine,
                &zone(Some("Mars/Olympus"))
            ),
            ms("2026-01-16T09:00:00Z")
        );
        // 02:30 does not exist in Paris on 2026-03-29 (clocks jump 02:00 -> 03:00).
        let half_two = Time::constant(2, 30, 0, 0);
        let paris = zone(Some("Europe/Paris"));
        assert_eq!(
            next_time_of_day(ms("2026-03-28T23:00:00Z"), half_two, &paris),
            ms("2026-03-29T01:30:00Z")
        );
    }
}
