//! Durations written as in Synapse's config: `250ms`, `5s`, `1m`, `2h`.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// Parses `250ms`, `5s`, `1.5s`, `1m`, `2h`, `1d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| {
            format!("duration {text:?} needs a unit: ms, s, m, h or d (e.g. \"250ms\", \"5s\")")
        })?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("duration {text:?} does not start with a number"))?;
    let millis = match unit.trim() {
        "ms" => 1.0,
        "s" => 1_000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        other => {
            return Err(format!(
                "duration {text:?} has unknown unit {other:?}: use ms, s, m, h or d"
            ))
        }
    };
    Ok(Duration::from_micros(
        (value * millis * 1_000.0).round() as u64
    ))
}

/// A config duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A bare number is read as text, so it gets the same "needs a unit" message as "5".
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(serde_json::Number),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Text(t) => t,
            Raw::Number(n) => n.to_string(),
        };
        let duration = parse_duration(&text).map_err(serde::de::Error::custom)?;
        if duration.is_zero() {
            return Err(serde::de::Error::custom(format!(
                "duration {text:?} must be longer than 0"
            )));
        }
        Ok(ConfigDuration(duration))
    }
}

/// Parses a byte size: `65536`, `64KiB`, `1MiB`, `1MB`.
pub fn parse_byte_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: usize = number
        .parse()
        .map_err(|_| format!("size {text:?} does not start with a whole number"))?;
    let factor = match unit.trim() {
        "" | "B" => 1,
        "KB" | "K" => 1_000,
        "KiB" => 1 << 10,
        "MB" | "M" => 1_000_000,
        "MiB" => 1 << 20,
        other => {
            return Err(format!(
                "size {text:?} has unknown unit {other:?}: use B, KiB or MiB"
            ))
        }
    };
    value
        .checked_mul(factor)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// A config byte size (a number of bytes, or a string with a unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub usize);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(usize),
            Text(String),
        }
        let bytes = match Raw::deserialize(d)? {
            Raw::Number(n) => n,
            Raw::Text(t) => parse_byte_size(&t).map_err(serde::de::Error::custom)?,
        };
        if bytes == 0 {
            return Err(serde::de::Error::custom("size must be at least 1 byte"));
        }
        Ok(ByteSize(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("250ms", 250),
            ("5s", 5_000),
            ("1.5s", 1_500),
            ("1m", 60_000),
            ("2h", 7_200_000),
            ("1d", 86_400_000),
        ];
        for (text, ms) in ok {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
        for bad in ["5", "fast", "5 parsecs", "ms", ""] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(parse_duration("5").unwrap_err().contains("needs a unit"));
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_byte_size("65536"), Ok(65536));
        assert_eq!(parse_byte_size("64KiB"), Ok(65536));
        assert_eq!(parse_byte_size("1MiB"), Ok(1 << 20));
        assert!(parse_byte_size("1 GiB").is_err());
    }
}
