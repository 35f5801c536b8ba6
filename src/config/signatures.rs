//! `[signatures]`: the RFC 9421 policy and the key of signed responses.

use super::{ConfigError, RawSignatures, invalid, parse_public_url, validate_components};
use crate::gate::signature::SignatureSettings;
use crate::response_signing::ResponseSigning;

pub(super) fn validate_signatures(s: &RawSignatures) -> Result<SignatureSettings, ConfigError> {
    let public_url = match s.public_url.trim() {
        "" => None,
        u => Some(parse_public_url("signatures.public_url", u)?),
    };
    if s.max_age.is_zero() {
        return Err(invalid("signatures.max_age", "must be more than 0"));
    }
    if s.nonce_cache_capacity == 0 {
        return Err(invalid(
            "signatures.nonce_cache_capacity",
            "must be at least 1",
        ));
    }
    if s.nonce_sweep_batch == 0 {
        return Err(invalid(
            "signatures.nonce_sweep_batch",
            "must be at least 1",
        ));
    }
    if s.nonce_cache_per_client > s.nonce_cache_capacity {
        return Err(invalid(
            "signatures.nonce_cache_per_client",
            "must not exceed signatures.nonce_cache_capacity (0: a quarter of it)",
        ));
    }
    let nonce_cache_per_client = match s.nonce_cache_per_client {
        0 => (s.nonce_cache_capacity / 4).max(1),
        n => n,
    };
    if s.verify_batch_max == 0 || s.verify_batch_max > 1024 {
        return Err(invalid(
            "signatures.verify_batch_max",
            "must be between 1 and 1024",
        ));
    }
    if s.key_cache_capacity == 0 {
        return Err(invalid(
            "signatures.key_cache_capacity",
            "must be at least 1",
        ));
    }
    let mut cover_if_present = Vec::with_capacity(s.cover_if_present.len());
    for (i, name) in s.cover_if_present.iter().enumerate() {
        let header = http::HeaderName::from_bytes(name.as_bytes())
            .ok()
            .filter(|h| h.as_str() == name)
            .ok_or_else(|| {
                invalid(
                    format!("signatures.cover_if_present[{i}]"),
                    format!("'{name}' is not a lowercase header name"),
                )
            })?;
        cover_if_present.push(header);
    }
    Ok(SignatureSettings {
        policy: s.policy,
        auth_endpoint: s.auth_endpoint,
        public_url,
        max_age: s.max_age,
        clock_skew: s.clock_skew,
        nonce: s.nonce,
        nonce_cache_capacity: s.nonce_cache_capacity,
        nonce_cache_per_client,
        nonce_store: s.nonce_store,
        nonce_sweep_batch: s.nonce_sweep_batch,
        cover_if_present,
        cover_always: validate_components("signatures.cover_always", &s.cover_always)?,
        key_cache_capacity: s.key_cache_capacity,
        verify_batch_max: s.verify_batch_max,
    })
}

/// `signatures.response_key_*`: the key of signed responses; `None` without a key file.
pub(super) fn validate_response_signing(
    s: &RawSignatures,
) -> Result<Option<ResponseSigning>, ConfigError> {
    Ok(match s.response_key_file.trim() {
        "" => None,
        file => Some(
            ResponseSigning::load(
                file.into(),
                &s.response_key_alg,
                &s.response_key_id,
                s.response_max_bytes,
            )
            .map_err(|(key, detail)| invalid(key, detail))?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::raw;
    use std::time::Duration;

    use crate::gate::signature::NonceMode;
    use crate::policy::SignatureMode;

    fn refused(toml: &str) -> String {
        let s = raw(toml).signatures;
        validate_signatures(&s)
            .and_then(|_| validate_response_signing(&s))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults() {
        let s = validate_signatures(&super::super::RawSignatures::default()).unwrap();
        assert_eq!(s.policy, SignatureMode::Auto);
        assert_eq!(s.auth_endpoint, SignatureMode::Auto);
        assert_eq!(s.public_url, None);
        assert_eq!(s.max_age, Duration::from_secs(300));
        assert_eq!(s.clock_skew, Duration::from_secs(30));
        assert_eq!(s.nonce, NonceMode::Optional);
        assert_eq!(s.nonce_cache_capacity, 200_000);
        assert_eq!(s.nonce_cache_per_client, 50_000);
        assert_eq!(s.nonce_sweep_batch, 1000);
        let cover: Vec<&str> = s.cover_if_present.iter().map(|h| h.as_str()).collect();
        assert_eq!(
            cover,
            [
                "authorization",
                "x-client-id",
                "x-idempotency-key",
                "idempotency-key"
            ]
        );
        assert!(s.cover_always.is_empty());
        assert_eq!(s.key_cache_capacity, 100_000);
        assert_eq!(s.verify_batch_max, 64);
        let response = validate_response_signing(&super::super::RawSignatures::default());
        assert!(response.unwrap().is_none());
    }

    #[test]
    fn each_bad_value_is_refused_by_its_key() {
        for (toml, key) in [
            ("public_url = \"api.example.com\"", "signatures.public_url"),
            ("max_age = \"0s\"", "signatures.max_age"),
            (
                "nonce_cache_capacity = 0",
                "signatures.nonce_cache_capacity",
            ),
            (
                "nonce_cache_capacity = 8\nnonce_cache_per_client = 9",
                "signatures.nonce_cache_per_client",
            ),
            ("nonce_sweep_batch = 0", "signatures.nonce_sweep_batch"),
            ("verify_batch_max = 0", "signatures.verify_batch_max"),
            ("verify_batch_max = 1025", "signatures.verify_batch_max"),
            ("key_cache_capacity = 0", "signatures.key_cache_capacity"),
            (
                "cover_if_present = [\"Authorization\"]",
                "signatures.cover_if_present[0]",
            ),
            (
                "cover_if_present = [\"date\", \"@query\"]",
                "signatures.cover_if_present[1]",
            ),
            (
                "cover_always = [\"@method\", \"@bogus\"]",
                "signatures.cover_always[1]",
            ),
            (
                "response_key_file = \"/nonexistent/warden.key\"",
                "signatures.response_key_file",
            ),
        ] {
            let e = refused(&format!("[signatures]\n{toml}\n"));
            assert!(e.starts_with(&format!("{key}: ")), "{toml}: {e}");
        }
    }

    #[test]
    fn given_values_are_kept() {
        let s = validate_signatures(
            &raw("[signatures]\npolicy = \"required\"\nnonce = \"required\"\nnonce_cache_per_client = 7\nnonce_sweep_batch = 10\n\
                  cover_always = [\"@method\", \"content-digest\"]\nverify_batch_max = 1\n")
            .signatures,
        )
        .unwrap();
        assert_eq!(
            (s.policy, s.nonce),
            (SignatureMode::Required, NonceMode::Required)
        );
        assert_eq!(s.nonce_cache_per_client, 7);
        assert_eq!(s.nonce_sweep_batch, 10);
        assert_eq!(s.cover_always, ["@method", "content-digest"]);
        assert_eq!(s.verify_batch_max, 1);
    }
}
