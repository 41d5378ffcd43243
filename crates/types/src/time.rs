//! Timestamps as the API writes them: RFC 3339 strings for objects, milliseconds for events.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as i64
}

/// An RFC 3339 timestamp (UTC, seconds precision) for a millisecond timestamp.
pub fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// An RFC 3339 timestamp with milliseconds (log lines).
pub fn rfc3339_millis(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Parses a duration the way the reference accepts one: `"15s"`, `"1m30s"`, `"500ms"`, what Go's
/// `time.Duration` writes (`"1h0m0s"`, `"1.5s"`, `"0s"`), or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    if let Some(d) = parse_go_duration(s) {
        return Ok(d);
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}); write it like \"15s\" or \"1m30s\""))
}

/// Go's `time.ParseDuration` form: `<decimal><unit>` repeated, units `ns`, `us`/`µs`, `ms`, `s`,
/// `m`, `h` (no sign).
fn parse_go_duration(s: &str) -> Option<Duration> {
    const UNITS: [(&str, f64); 8] = [
        ("ns", 1.0),
        ("us", 1e3),
        ("µs", 1e3),
        ("μs", 1e3),
        ("ms", 1e6),
        ("h", 3.6e12),
        ("m", 6e10),
        ("s", 1e9),
    ];
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut nanos = 0f64;
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&i| i > 0)?;
        let value: f64 = rest[..end].parse().ok()?;
        rest = &rest[end..];
        let (unit, scale) = UNITS.iter().find(|(u, _)| rest.starts_with(u))?;
        nanos += value * scale;
        rest = &rest[unit.len()..];
    }
    (nanos.is_finite() && nanos < 1e19).then(|| Duration::from_nanos(nanos.round() as u64))
}

/// A duration as Go's `time.Duration.String` writes it (`"0s"`, `"1.5s"`, `"1m30s"`, `"1h0m0s"`,
/// `"500ms"`), so that the reference's Go clients can read back what they sent.
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    match nanos {
        0 => "0s".into(),
        1..1_000 => format!("{nanos}ns"),
        1_000..1_000_000 => format!("{}µs", decimal(nanos, 1_000)),
        1_000_000..1_000_000_000 => format!("{}ms", decimal(nanos, 1_000_000)),
        _ => {
            let secs = d.as_secs();
            let (h, m) = (secs / 3600, secs % 3600 / 60);
            let mut out = String::new();
            if h > 0 {
                out.push_str(&format!("{h}h"));
            }
            if h > 0 || m > 0 {
                out.push_str(&format!("{m}m"));
            }
            let rest = u128::from(secs % 60) * 1_000_000_000 + u128::from(d.subsec_nanos());
            out.push_str(&format!("{}s", decimal(rest, 1_000_000_000)));
            out
        }
    }
}

/// `n / unit` with its fraction, trailing zeros dropped (`1500, 1000` -> `1.5`).
fn decimal(n: u128, unit: u128) -> String {
    let (whole, frac) = (n / unit, n % unit);
    if frac == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15s").unwrap(), Duration::from_secs(15));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn go_durations_read_and_written() {
        for (text, d) in [
            ("0s", Duration::ZERO),
            ("1.5s", Duration::from_millis(1500)),
            ("1h0m0s", Duration::from_secs(3600)),
            ("1m30s", Duration::from_secs(90)),
            ("500ms", Duration::from_millis(500)),
            ("2µs", Duration::from_micros(2)),
            ("7ns", Duration::from_nanos(7)),
            ("2h1m0.25s", Duration::from_millis(7_260_250)),
        ] {
            assert_eq!(parse_duration(text).unwrap(), d, "{text}");
            assert_eq!(go_duration(d), text);
        }
        assert_eq!(parse_duration("1min").unwrap(), Duration::from_secs(60));
        assert_eq!(go_duration(Duration::from_secs(60)), "1m0s");
        assert_eq!(parse_duration("1us").unwrap(), Duration::from_micros(1));
        for bad in ["", "s", "1x", "-1s", "1..5s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc3339_is_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
