//! Typed settings, parsed once at cold start. Every function reads its environment through
//! [`Settings`], so a missing or malformed setting is reported by name before the first event.

use std::time::Duration;

use crate::error::ConfigError;

/// Where settings come from: the process environment in Lambda, a map in tests.
pub trait Source {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct Env;

impl Source for Env {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<const N: usize> Source for [(&str, &str); N] {
    fn get(&self, name: &str) -> Option<String> {
        self.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.to_string())
    }
}

/// Reads settings from a [`Source`] with typed accessors whose errors name the setting.
pub struct Settings<S: Source> {
    source: S,
}

impl<S: Source> Settings<S> {
    pub fn new(source: S) -> Self {
        Settings { source }
    }

    /// A setting that must be present and not blank.
    pub fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        match self.source.get(name) {
            Some(value) if !value.trim().is_empty() => Ok(value),
            _ => Err(ConfigError::Missing { name }),
        }
    }

    /// A setting that may be absent; blank counts as absent.
    pub fn optional(&self, name: &'static str) -> Option<String> {
        self.source
            .get(name)
            .filter(|value| !value.trim().is_empty())
    }

    /// A boolean flag: `true`/`false`/`1`/`0`/`yes`/`no`, case-insensitive; absent is `default`.
    pub fn flag(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        let Some(value) = self.optional(name) else {
            return Ok(default);
        };
        match value.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err(ConfigError::Invalid {
                name,
                value,
                reason: "expected true or false".to_string(),
            }),
        }
    }

    /// A duration written as a number with a unit: `250ms`, `2s`, `5m`; absent is `default`.
    pub fn duration(&self, name: &'static str, default: Duration) -> Result<Duration, ConfigError> {
        let Some(value) = self.optional(name) else {
            return Ok(default);
        };
        parse_duration(&value).ok_or_else(|| ConfigError::Invalid {
            name,
            value,
            reason: "expected a number with a unit, e.g. 250ms, 2s or 5m".to_string(),
        })
    }
}

/// Parses `250ms`, `2s`, `5m`, `1h` (whole numbers only, so a typo cannot pass as a fraction).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let millis = match unit {
        "ms" => number,
        "s" => number.checked_mul(1_000)?,
        "m" => number.checked_mul(60_000)?,
        "h" => number.checked_mul(3_600_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(millis))
}

/// Settings every longshore function shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommonConfig {
    /// The CloudFormation stack name; it scopes tags, SSM paths and the scaler's lease.
    pub stack: String,
    /// Observe and plan for real, but only log the actions (`DRY_RUN=true`).
    pub dry_run: bool,
}

impl CommonConfig {
    pub fn from_settings<S: Source>(settings: &Settings<S>) -> Result<Self, ConfigError> {
        Ok(CommonConfig {
            stack: settings.required("LONGSHORE_STACK")?,
            dry_run: settings.flag("DRY_RUN", false)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_setting_names_itself() {
        let settings = Settings::new([("DRY_RUN", "true")]);
        assert_eq!(
            CommonConfig::from_settings(&settings),
            Err(ConfigError::Missing {
                name: "LONGSHORE_STACK"
            })
        );
    }

    #[test]
    fn blank_required_setting_is_missing() {
        let settings = Settings::new([("LONGSHORE_STACK", "  ")]);
        assert!(matches!(
            settings.required("LONGSHORE_STACK"),
            Err(ConfigError::Missing { .. })
        ));
    }

    #[test]
    fn bad_flag_is_rejected_with_its_value() {
        let settings = Settings::new([("LONGSHORE_STACK", "s"), ("DRY_RUN", "maybe")]);
        let err = CommonConfig::from_settings(&settings).unwrap_err();
        assert_eq!(
            err.to_string(),
            "setting DRY_RUN has the invalid value \"maybe\": expected true or false"
        );
    }

    #[test]
    fn durations_parse_with_units_only() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2"), None);
        assert_eq!(parse_duration("1.5s"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("99999999999999999999h"), None);
    }

    #[test]
    fn absent_values_take_defaults() {
        let settings = Settings::new([("LONGSHORE_STACK", "s")]);
        assert_eq!(
            settings.duration("POLL_INTERVAL", Duration::from_secs(2)),
            Ok(Duration::from_secs(2))
        );
        assert_eq!(settings.flag("DRY_RUN", false), Ok(false));
    }
}
