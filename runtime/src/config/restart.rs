//! `restart:` as written: a module's (or the defaults') restart settings, applied over the
//! settings they inherit.

use super::ConfigDuration;
use crate::supervision::RestartPolicy;
use serde::Deserialize;

/// `restart:` as written in the config; unset keys keep the inherited value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRestartPolicy {
    intensity: Option<u32>,
    period: Option<ConfigDuration>,
    backoff_min: Option<ConfigDuration>,
    backoff_max: Option<ConfigDuration>,
    random_factor: Option<f64>,
    stash: Option<usize>,
    watchdog: Option<ConfigDuration>,
    cooldown: Option<ConfigDuration>,
}

impl RawRestartPolicy {
    /// `base` with this block's settings applied; the error names the offending key.
    pub fn apply(&self, base: RestartPolicy) -> Result<RestartPolicy, (&'static str, String)> {
        let p = RestartPolicy {
            intensity: self.intensity.unwrap_or(base.intensity),
            period: self.period.map_or(base.period, |d| d.0),
            backoff_min: self.backoff_min.map_or(base.backoff_min, |d| d.0),
            backoff_max: self.backoff_max.map_or(base.backoff_max, |d| d.0),
            random_factor: self.random_factor.unwrap_or(base.random_factor),
            stash: self.stash.unwrap_or(base.stash),
            watchdog: self.watchdog.map_or(base.watchdog, |d| d.0),
            cooldown: self.cooldown.map_or(base.cooldown, |d| d.0),
        };
        if p.period.is_zero() {
            return Err(("period", "must be longer than 0".into()));
        }
        if p.backoff_max < p.backoff_min {
            return Err(("backoff_max", "must not be shorter than backoff_min".into()));
        }
        if !(0.0..=10.0).contains(&p.random_factor) {
            return Err(("random_factor", "must be between 0 and 10".into()));
        }
        if p.watchdog.is_zero() {
            return Err(("watchdog", "must be longer than 0".into()));
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn raw_policies_apply_over_their_base_and_are_checked() {
        let base = RestartPolicy::default();
        let raw: RawRestartPolicy =
            serde_json::from_value(serde_json::json!({"intensity": 2, "period": "1m"})).unwrap();
        let p = raw.apply(base).unwrap();
        assert_eq!(
            (p.intensity, p.period, p.stash),
            (2, Duration::from_secs(60), base.stash)
        );
        let bad: RawRestartPolicy =
            serde_json::from_value(serde_json::json!({"backoff_min": "2s", "backoff_max": "1s"}))
                .unwrap();
        assert_eq!(bad.apply(base).unwrap_err().0, "backoff_max");
    }
}
