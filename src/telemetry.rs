//! Logging set-up (plain or JSON). No log line holds a header map: the access event names its
//! fields one by one, and credentials never among them (test `issuer::secrets_and_tokens_never_reach_the_log`).

use serde::{Deserialize, Serialize};

/// How log lines are written (`log.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Plain,
    Json,
}

/// `[log]`, validated (`config/log.rs` builds it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// `log.format`, default plain.
    pub format: LogFormat,
    /// `log.level`: a `tracing` filter (`info`, `warn,warden=debug`), default info.
    pub level: String,
    /// `log.access`, default true: one access event per request.
    pub access: bool,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Plain,
            level: "info".into(),
            access: true,
        }
    }
}

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `log.level`.
pub fn init(log: &LogSettings) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let _ = match log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Plain => builder.try_init(),
    };
}
