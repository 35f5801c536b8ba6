//! `[idempotency]`: idempotency keys on bearer routes and `/v1/auth`.

use std::time::Duration;

use http::Method;

use super::{ConfigError, RawIdempotency, invalid};
use crate::gate::idempotency::IdempotencySettings;

pub(super) fn validate_idempotency(
    r: &RawIdempotency,
    upstream_timeout: Duration,
) -> Result<IdempotencySettings, ConfigError> {
    if r.headers.is_empty() {
        return Err(invalid(
            "idempotency.headers",
            "must name at least one header",
        ));
    }
    let mut headers = Vec::with_capacity(r.headers.len());
    for (i, name) in r.headers.iter().enumerate() {
        let lower = name.to_ascii_lowercase();
        let header = http::HeaderName::from_bytes(lower.as_bytes()).map_err(|_| {
            invalid(
                format!("idempotency.headers[{i}]"),
                format!("'{name}' is not a header name"),
            )
        })?;
        headers.push(header);
    }
    let mut require_methods = Vec::with_capacity(r.require_methods.len());
    for m in &r.require_methods {
        let method = Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
            invalid(
                "idempotency.require_methods",
                format!("'{m}' is not an HTTP method"),
            )
        })?;
        require_methods.push(method);
    }
    if r.lease_margin < Duration::from_secs(4) {
        return Err(invalid("idempotency.lease_margin", "must be at least 4s"));
    }
    if r.ttl <= upstream_timeout + r.lease_margin {
        return Err(invalid(
            "idempotency.ttl",
            "must be longer than upstream.timeout + idempotency.lease_margin (a record must outlive its lease)",
        ));
    }
    if r.token_ttl <= r.lease_margin {
        return Err(invalid(
            "idempotency.token_ttl",
            "must be longer than idempotency.lease_margin",
        ));
    }
    if r.sweep_batch == 0 {
        return Err(invalid("idempotency.sweep_batch", "must be at least 1"));
    }
    if r.request_read_timeout.is_zero() {
        return Err(invalid(
            "idempotency.request_read_timeout",
            "must be more than 0",
        ));
    }
    if r.buffer_budget_bytes < r.max_request_bytes {
        return Err(invalid(
            "idempotency.buffer_budget_bytes",
            "must be at least idempotency.max_request_bytes (one keyed body must fit)",
        ));
    }
    Ok(IdempotencySettings {
        headers,
        require_methods,
        auth_endpoint: r.auth_endpoint,
        ttl: r.ttl,
        token_ttl: r.token_ttl,
        lease_margin: r.lease_margin,
        max_request_bytes: r.max_request_bytes,
        max_response_bytes: r.max_response_bytes,
        store_server_errors: r.store_server_errors,
        sweep_batch: r.sweep_batch,
        request_read_timeout: r.request_read_timeout,
        buffer_budget_bytes: r.buffer_budget_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::raw;
    use crate::policy::IdempotencyMode;

    const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

    #[test]
    fn defaults() {
        let i = validate_idempotency(&RawIdempotency::default(), UPSTREAM_TIMEOUT).unwrap();
        let headers: Vec<&str> = i.headers.iter().map(|h| h.as_str()).collect();
        assert_eq!(headers, ["idempotency-key", "x-idempotency-key"]);
        assert_eq!(i.require_methods, [Method::POST]);
        assert_eq!(i.auth_endpoint, IdempotencyMode::Auto);
        assert_eq!(i.ttl, Duration::from_secs(24 * 3600));
        assert_eq!(i.token_ttl, Duration::from_secs(600));
        assert_eq!(i.lease_margin, Duration::from_secs(30));
        assert_eq!(
            (i.max_request_bytes, i.max_response_bytes),
            (1 << 20, 1 << 20)
        );
        assert!(!i.store_server_errors);
        assert_eq!(i.sweep_batch, 1000);
        assert_eq!(i.request_read_timeout, Duration::from_secs(30));
        assert_eq!(i.buffer_budget_bytes, 64 << 20);
    }

    #[test]
    fn header_names_and_methods_are_normalised() {
        let r = raw(
            "[idempotency]\nheaders = [\"Request-Key\"]\nrequire_methods = [\"post\", \"Patch\"]\n",
        );
        let i = validate_idempotency(&r.idempotency, UPSTREAM_TIMEOUT).unwrap();
        assert_eq!(i.headers[0].as_str(), "request-key");
        assert_eq!(i.require_methods, [Method::POST, Method::PATCH]);
    }

    #[test]
    fn each_bad_value_is_refused_by_its_key() {
        for (toml, key) in [
            ("headers = []", "idempotency.headers"),
            ("headers = [\"key\", \"a key\"]", "idempotency.headers[1]"),
            (
                "require_methods = [\"PO ST\"]",
                "idempotency.require_methods",
            ),
            ("lease_margin = \"3s\"", "idempotency.lease_margin"),
            // A record must outlive its lease: upstream.timeout (60s) + lease_margin (30s).
            ("ttl = \"90s\"", "idempotency.ttl"),
            ("token_ttl = \"30s\"", "idempotency.token_ttl"),
            ("sweep_batch = 0", "idempotency.sweep_batch"),
            (
                "request_read_timeout = \"0s\"",
                "idempotency.request_read_timeout",
            ),
            (
                "max_request_bytes = 2048\nbuffer_budget_bytes = 2047",
                "idempotency.buffer_budget_bytes",
            ),
        ] {
            let r = raw(&format!("[idempotency]\n{toml}\n"));
            let e = validate_idempotency(&r.idempotency, UPSTREAM_TIMEOUT)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(&format!("{key}: ")), "{toml}: {e}");
        }
        let r = raw("[idempotency]\nttl = \"91s\"\ntoken_ttl = \"31s\"\nlease_margin = \"30s\"\n");
        validate_idempotency(&r.idempotency, UPSTREAM_TIMEOUT).unwrap();
    }
}
