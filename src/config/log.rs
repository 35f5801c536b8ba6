//! `[log]`: format, level filter and the access event.

use super::{ConfigError, RawLog, invalid};
use crate::telemetry::LogSettings;

/// `[log]`, validated: `log.level` must parse as a `tracing` filter.
pub(super) fn validate_log(l: &RawLog) -> Result<LogSettings, ConfigError> {
    let level = l.level.clone();
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        return Err(invalid(
            "log.level",
            format!("'{level}' is not a level or filter like info or warden=debug"),
        ));
    }
    Ok(LogSettings {
        format: l.format,
        level,
        access: l.access,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::raw;
    use crate::telemetry::LogFormat;

    #[test]
    fn defaults_and_filters() {
        let l = validate_log(&RawLog::default()).unwrap();
        assert_eq!(l.format, LogFormat::Plain);
        assert_eq!(l.level, "info");
        assert!(l.access);
        // The defaults `warden dev-proxy` starts its log with are the config's.
        assert_eq!(l, crate::telemetry::LogSettings::default());
        let l = validate_log(&raw("[log]\nlevel = \"warn,warden=debug\"\nformat = \"json\"\n").log)
            .unwrap();
        assert_eq!(
            (l.level.as_str(), l.format),
            ("warn,warden=debug", LogFormat::Json)
        );
    }

    #[test]
    fn a_level_that_is_no_filter_is_refused_by_its_key() {
        let e = validate_log(&raw("[log]\nlevel = \"warden=loud\"\n").log)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("log.level: ") && e.contains("warden=loud"),
            "{e}"
        );
    }
}
