//! Sizes and durations with units, read the same way in files and flags;
//! TOML date-times as points in time.

use std::time::{Duration, SystemTime};

use schemars::JsonSchema;

/// A size: bytes, or a number with `KiB`, `MiB`, `GiB` (or `K`, `M`, `G`,
/// `KB`, `MB`, `GB`, all powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (write e.g. `64MiB` or `1048576`)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}` (use KiB, MiB or GiB)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// A duration with a unit: `500ms`, `10s`, `2m`, `1h 30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}`: {e} (write e.g. `500ms`, `10s`, `2m`)"))
}

/// A size read from a string with a unit, or an integer of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Size(pub u64);

impl<'de> serde::Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a size such as \"64MiB\", or a number of bytes")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Size, E> {
                parse_size(v).map(Size).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// The schema of a size.
pub(crate) struct SizeSchema;

impl JsonSchema for SizeSchema {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Size".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A size: a number of bytes, or a string with a unit (KiB, MiB, GiB), e.g. \"64MiB\".",
            "oneOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^\\s*[0-9]+\\s*([KkMmGg]([Ii]?[Bb])?|[Bb])?\\s*$" }
            ]
        })
    }
}

/// A duration read from a string with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dur(pub Duration);

impl<'de> serde::Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

/// The schema of a duration.
pub(crate) struct DurationSchema;

impl JsonSchema for DurationSchema {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A duration with a unit, e.g. \"500ms\", \"10s\", \"2m\".",
            "type": "string"
        })
    }
}

/// The point in time a TOML offset date-time names. A date-time without an
/// offset is refused: an expiry must not depend on the host's time zone.
pub(crate) fn system_time(dt: &toml::value::Datetime) -> Result<SystemTime, String> {
    let (Some(date), Some(time), Some(offset)) = (dt.date, dt.time, dt.offset) else {
        return Err(format!(
            "`{dt}` is not a full date-time with an offset (write e.g. 2026-12-31T00:00:00Z)"
        ));
    };
    let days = days_from_civil(
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
    );
    let offset_minutes = match offset {
        toml::value::Offset::Z => 0,
        toml::value::Offset::Custom { minutes } => i64::from(minutes),
    };
    let secs = days * 86_400
        + i64::from(time.hour) * 3600
        + i64::from(time.minute) * 60
        + i64::from(time.second.unwrap_or(0))
        - offset_minutes * 60;
    let secs = u64::try_from(secs).map_err(|_| format!("`{dt}` is before 1970"))?;
    Ok(SystemTime::UNIX_EPOCH
        + Duration::from_secs(secs)
        + Duration::from_nanos(u64::from(time.nanosecond.unwrap_or(0))))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(
            parse_size("12 parsecs")
                .unwrap_err()
                .contains("unknown size unit")
        );
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
        assert!(
            parse_size("99999999999G")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").unwrap_err().contains("500ms"));
    }

    #[test]
    fn date_times_with_offsets() {
        let t = |s: &str| system_time(&s.parse().unwrap());
        // 2001-09-09T01:46:40Z is 1_000_000_000 s after the epoch.
        assert_eq!(
            t("2001-09-09T01:46:40Z").unwrap(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000)
        );
        assert_eq!(
            t("2001-09-09T03:46:40+02:00").unwrap(),
            t("2001-09-09T01:46:40Z").unwrap()
        );
        assert_eq!(
            t("1970-01-01T00:00:00.5Z").unwrap(),
            SystemTime::UNIX_EPOCH + Duration::from_millis(500)
        );
        assert!(t("2026-12-31T00:00:00").unwrap_err().contains("offset"));
        assert!(t("2026-12-31").unwrap_err().contains("offset"));
        assert!(t("1969-12-31T00:00:00Z").unwrap_err().contains("1970"));
    }
}
