//! Logging set-up (plain or JSON) and the redaction that keeps credentials out of every log line.

use std::fmt;

use http::HeaderMap;

use crate::config::{LogFormat, RawLog};

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `log.level`.
pub fn init(log: &RawLog) {
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

/// Headers whose values are credentials, in whole or part.
const SENSITIVE: [&str; 7] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "signature",
    "x-client-secret",
];

/// A `Debug` view of a header map with credential values replaced by `[redacted]`.
pub struct Redacted<'a>(pub &'a HeaderMap);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (name, value) in self.0 {
            if SENSITIVE.contains(&name.as_str()) {
                map.entry(&name.as_str(), &"[redacted]");
            } else {
                map.entry(&name.as_str(), &value);
            }
        }
        map.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_a_debug_string() {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            "Bearer wdn_at_supersecret".parse().unwrap(),
        );
        h.insert("cookie", "session=abc".parse().unwrap());
        h.insert("accept", "text/plain".parse().unwrap());
        let s = format!("{:?}", Redacted(&h));
        assert!(!s.contains("supersecret") && !s.contains("abc"), "{s}");
        assert!(s.contains("text/plain"));
    }
}
