//! Timestamps as Unix milliseconds: RFC 3339 text (`2024-03-01T12:00:00Z`, with an offset or
//! fractional seconds) or a bare date (`2024-03-01`, midnight UTC) parsed without a clock.
//!
//! ```
//! use tessera_sdk::time::parse_ms;
//!
//! assert_eq!(parse_ms("1970-01-02"), Some(86_400_000));
//! assert_eq!(parse_ms("1970-01-01T01:00:00+01:00"), Some(0));
//! assert_eq!(parse_ms("yesterday"), None);
//! ```

/// A second, in milliseconds.
pub const SECOND_MS: i64 = 1_000;
/// A minute, in milliseconds.
pub const MINUTE_MS: i64 = 60 * SECOND_MS;
/// An hour, in milliseconds.
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
/// A day, in milliseconds.
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// `text` (RFC 3339, or a bare `YYYY-MM-DD` taken as midnight UTC) as Unix milliseconds;
/// `None` when it is neither or names no real date.
pub fn parse_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    let bytes = text.as_bytes();
    let digits = |from: usize, len: usize| -> Option<i64> {
        let part = bytes.get(from..from + len)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    if bytes.get(4) != Some(&b'-') || bytes.get(7) != Some(&b'-') {
        return None;
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let date_ms = days_from_civil(year, month, day) * DAY_MS;
    if bytes.len() == 10 {
        return Some(date_ms);
    }
    if !matches!(bytes.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    if bytes.get(13) != Some(&b':') || bytes.get(16) != Some(&b':') {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut at = 19;
    let mut millis = 0;
    if bytes.get(at) == Some(&b'.') {
        let start = at + 1;
        let mut end = start;
        while bytes.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        if end == start {
            return None;
        }
        // Milliseconds from the first three digits; finer digits are dropped.
        let first = &bytes[start..end.min(start + 3)];
        millis = first.iter().fold(0, |n, b| n * 10 + i64::from(b - b'0'))
            * 10_i64.pow(3 - first.len() as u32);
        at = end;
    }
    let offset_ms = match bytes.get(at) {
        Some(b'Z' | b'z') if bytes.len() == at + 1 => 0,
        Some(sign @ (b'+' | b'-')) if bytes.len() == at + 6 && bytes[at + 3] == b':' => {
            let (h, m) = (digits(at + 1, 2)?, digits(at + 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let offset = h * HOUR_MS + m * MINUTE_MS;
            if *sign == b'+' { offset } else { -offset }
        }
        _ => return None,
    };
    Some(date_ms + hour * HOUR_MS + minute * MINUTE_MS + second * SECOND_MS + millis - offset_ms)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_parse_to_unix_milliseconds() {
        assert_eq!(parse_ms("1970-01-01"), Some(0));
        assert_eq!(parse_ms("2000-03-01"), Some(951_868_800_000));
        assert_eq!(parse_ms("2024-02-29T12:30:15Z"), Some(1_709_209_815_000));
        assert_eq!(parse_ms("2024-02-29T12:30:15.25Z"), Some(1_709_209_815_250));
        assert_eq!(
            parse_ms("2024-02-29T12:30:15.123456Z"),
            Some(1_709_209_815_123)
        );
        assert_eq!(
            parse_ms("2024-02-29T14:30:15+02:00"),
            Some(1_709_209_815_000)
        );
        assert_eq!(
            parse_ms("2024-02-29 10:30:15-02:00"),
            Some(1_709_209_815_000)
        );
        assert_eq!(parse_ms("1969-12-31T23:59:59Z"), Some(-1_000));
    }

    #[test]
    fn what_is_not_a_date_is_none() {
        for text in [
            "",
            "2023-02-29",
            "2024-13-01",
            "2024-1-01",
            "2024-01-01T10:00Z",
            "2024-01-01T10:00:00",
            "2024-01-01T25:00:00Z",
            "2024-01-01T10:00:00.Z",
            "2024-01-01T10:00:00+0200",
            "soon",
        ] {
            assert_eq!(parse_ms(text), None, "{text}");
        }
    }
}
