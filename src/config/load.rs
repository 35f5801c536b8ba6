//! The loader: built-in defaults, then the TOML file, then `WARDEN_…` environment variables
//! (`__` between levels), extracted into [`RawConfig`] with the key path of the first bad
//! value, then handed to [`Settings::validate`].

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};

use super::{ConfigError, RawConfig, Settings};

/// The `WARDEN_<SECTION>__<KEY>` variables. Only names with a `__` are keys: every key lives in
/// a section, and names without one are someone else's. Kubernetes sets `WARDEN_PORT`,
/// `WARDEN_SERVICE_HOST`, `WARDEN_PORT_8080_TCP…` for a Service named `warden` (service links),
/// and `warden dev-proxy` reads `WARDEN_DEV_KEY`; none of them may stop the sidecar from starting.
fn environment() -> Env {
    Env::prefixed("WARDEN_")
        .filter(|key| key.as_str().contains("__"))
        .split("__")
}

impl Settings {
    /// Loads defaults → `path` → environment, and validates. The file must exist.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        if !path.is_file() {
            return Err(ConfigError::Missing {
                path: path.to_path_buf(),
            });
        }
        let figment = Figment::from(Serialized::defaults(RawConfig::default()))
            .merge(Toml::file_exact(path))
            .merge(environment());
        Self::from_figment(figment)
    }

    /// Validates a configuration given as TOML text (no environment); for tests and tools.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let figment =
            Figment::from(Serialized::defaults(RawConfig::default())).merge(Toml::string(text));
        Self::from_figment(figment)
    }

    fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let raw: RawConfig = figment.extract().map_err(|e| {
            let e = e
                .into_iter()
                .next()
                .unwrap_or_else(|| figment::Error::from("invalid"));
            ConfigError::Load {
                key: e.path.join(".").to_ascii_lowercase(),
                detail: e.kind.to_string(),
                source_name: e
                    .metadata
                    .as_ref()
                    .map(|m| match &m.source {
                        Some(src) => format!(" (in {src})"),
                        None => format!(" (from {})", m.name),
                    })
                    .unwrap_or_default(),
            }
        })?;
        Self::validate(raw)
    }
}

/// The raw shape of a TOML text over the built-in defaults, for the sections' unit tests.
#[cfg(test)]
pub(super) fn raw(toml: &str) -> RawConfig {
    Figment::from(Serialized::defaults(RawConfig::default()))
        .merge(Toml::string(toml))
        .extract()
        .unwrap_or_else(|e| panic!("{toml}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_refused_by_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nowhere.toml");
        let e = Settings::load(&path).unwrap_err();
        assert!(matches!(e, ConfigError::Missing { .. }), "{e}");
        assert!(e.to_string().contains("nowhere.toml"), "{e}");
    }

    #[test]
    fn a_file_error_names_the_key_path_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warden.toml");
        std::fs::write(&path, "[idempotency]\nttl = \"a while\"\n").unwrap();
        let e = Settings::load(&path).unwrap_err().to_string();
        assert!(e.starts_with("idempotency.ttl: "), "{e}");
        assert!(e.contains("warden.toml"), "{e}");
        std::fs::write(
            &path,
            "[[routes]]\npath = \"/a\"\nauth = \"bearer\"\nmethod = \"GET\"\n",
        )
        .unwrap();
        let e = Settings::load(&path).unwrap_err().to_string();
        assert!(e.starts_with("routes.0.method: unknown field"), "{e}");
    }

    #[test]
    fn a_file_is_read_over_the_defaults_and_then_validated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warden.toml");
        std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:9\"\n").unwrap();
        let s = Settings::load(&path).unwrap();
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:9");
        assert_eq!(s.upstream.authority.as_str(), "127.0.0.1:3000", "a default");
        std::fs::write(&path, "[server]\nmax_connections = 0\n").unwrap();
        let e = Settings::load(&path).unwrap_err().to_string();
        assert!(e.starts_with("server.max_connections:"), "{e}");
    }

    #[test]
    fn text_is_read_over_the_defaults_and_a_section_that_is_not_one_is_named() {
        assert_eq!(raw("").server.listen, "127.0.0.1:8080");
        let e = Settings::from_toml("[serverr]\nlisten = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("serverr"), "{e}");
    }
}
