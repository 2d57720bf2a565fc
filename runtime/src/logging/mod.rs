//! Log output through tracing-subscriber: human-readable text (coloured only on a terminal),
//! or JSON lines for log shippers; the level comes from `RUST_LOG`. Events that can come by the
//! thousand are logged through a [`LogThrottle`].

mod throttle;

pub use throttle::{LogThrottle, PERIOD as THROTTLE_PERIOD};

use serde::Deserialize;
use std::io::IsTerminal;
use std::str::FromStr;
use tracing_subscriber::EnvFilter;

/// How log lines are written: `log_format:` in the config, or `--log-format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One human-readable line per event; coloured when standard error is a terminal.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, fields), for log shippers.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format {other:?}; use text or json")),
        }
    }
}

/// Whether text logs get ANSI colours: only on a terminal, and never with `NO_COLOR` set
/// (no-color.org), so a file or a pipe gets plain text.
pub fn colour(stderr_is_terminal: bool, no_color: Option<&str>) -> bool {
    stderr_is_terminal && no_color.is_none_or(str::is_empty)
}

/// Installs the global subscriber with `default` as the filter when `RUST_LOG` is unset.
/// Calling it twice is harmless (the second call is ignored).
pub fn init(format: LogFormat, default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => {
            let no_color = std::env::var("NO_COLOR").ok();
            let ansi = colour(std::io::stderr().is_terminal(), no_color.as_deref());
            builder.with_ansi(ansi).try_init()
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(
            colour(true, Some("")),
            "an empty NO_COLOR does not count (no-color.org)"
        );
        assert!(!colour(true, Some("1")));
        assert!(!colour(false, None), "a file or a pipe gets plain text");
    }

    #[test]
    fn formats_parse_by_name() {
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert!("xml".parse::<LogFormat>().is_err());
    }
}
