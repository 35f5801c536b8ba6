//! `[upstream]`: the one application Warden forwards to.

use http::Uri;

use super::{ConfigError, RawUpstream, invalid};
use crate::forward::UpstreamSettings;

/// `[upstream]`, validated: an http(s) URL without a query, timeouts above 0.
pub(super) fn validate_upstream(u: &RawUpstream) -> Result<UpstreamSettings, ConfigError> {
    let uri: Uri = u.url.parse().map_err(|_| {
        invalid(
            "upstream.url",
            format!("'{}' is not a URL like http://127.0.0.1:3000", u.url),
        )
    })?;
    let scheme = uri.scheme().cloned().ok_or_else(|| {
        invalid(
            "upstream.url",
            format!("'{}' has no scheme (http or https)", u.url),
        )
    })?;
    if scheme != http::uri::Scheme::HTTP && scheme != http::uri::Scheme::HTTPS {
        return Err(invalid(
            "upstream.url",
            format!("scheme '{scheme}' is not http or https"),
        ));
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| invalid("upstream.url", format!("'{}' has no host", u.url)))?;
    if uri.query().is_some() {
        return Err(invalid("upstream.url", "must not carry a query"));
    }
    let base_path = uri.path().trim_end_matches('/').to_string();
    if u.timeout.is_zero() || u.connect_timeout.is_zero() {
        return Err(invalid("upstream.timeout", "timeouts must be more than 0"));
    }
    Ok(UpstreamSettings {
        scheme,
        authority,
        base_path,
        connect_timeout: u.connect_timeout,
        timeout: u.timeout,
        pool_idle_timeout: u.pool_idle_timeout,
        pool_max_idle_per_host: u.pool_max_idle_per_host,
        preserve_host: u.preserve_host,
        body_idle_timeout: Some(u.body_idle_timeout).filter(|d| !d.is_zero()),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::load::raw;

    fn refused(toml: &str) -> String {
        validate_upstream(&raw(toml).upstream)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults() {
        let u = validate_upstream(&RawUpstream::default()).unwrap();
        assert_eq!(u.scheme, http::uri::Scheme::HTTP);
        assert_eq!(u.authority.as_str(), "127.0.0.1:3000");
        assert_eq!(u.base_path, "");
        assert_eq!(u.connect_timeout, Duration::from_secs(5));
        assert_eq!(u.timeout, Duration::from_secs(60));
        assert_eq!(u.pool_idle_timeout, Duration::from_secs(90));
        assert_eq!(u.pool_max_idle_per_host, 256);
        assert!(!u.preserve_host);
        assert_eq!(u.body_idle_timeout, Some(Duration::from_secs(300)));
    }

    #[test]
    fn a_base_path_loses_its_trailing_slash() {
        let u = validate_upstream(
            &raw("[upstream]\nurl = \"https://app.internal:8443/api/v2/\"\n").upstream,
        )
        .unwrap();
        assert_eq!(u.scheme, http::uri::Scheme::HTTPS);
        assert_eq!(u.authority.as_str(), "app.internal:8443");
        assert_eq!(u.base_path, "/api/v2");
    }

    #[test]
    fn each_bad_value_is_refused_by_its_key() {
        for (toml, key, why) in [
            ("url = \"http://a b\"", "upstream.url", "is not a URL"),
            ("url = \"/just/a/path\"", "upstream.url", "no scheme"),
            (
                "url = \"ftp://files.internal\"",
                "upstream.url",
                "not http or https",
            ),
            (
                "url = \"http://app.internal/?x=1\"",
                "upstream.url",
                "query",
            ),
            ("timeout = \"0s\"", "upstream.timeout", "more than 0"),
            (
                "connect_timeout = \"0s\"",
                "upstream.timeout",
                "more than 0",
            ),
        ] {
            let e = refused(&format!("[upstream]\n{toml}\n"));
            assert!(
                e.starts_with(&format!("{key}: ")) && e.contains(why),
                "{toml}: {e}"
            );
        }
    }
}
