//! Standard Webhooks 1.0 signatures: `webhook-signature: v1,<base64 HMAC-SHA256>` over
//! `"{webhook-id}.{webhook-timestamp}.{body}"`, keyed with the base64-decoded bytes of a
//! `whsec_…` secret. Several signatures, space-separated, while a rotated-out secret is still in
//! its overlap: a receiver accepts the message when any of them verifies.
//!
//! The asymmetric `v1a` (ed25519) form is not produced: every Standard Webhooks library verifies
//! `v1`, few verify `v1a`, and a receiver ignores versions it does not know, so it can be added
//! later without breaking anyone.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use ring::hmac;
use subtle::ConstantTimeEq as _;

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// The fewest secret bytes accepted (the spec: 24 to 64).
pub const MIN_SECRET_BYTES: usize = 24;
/// The most secret bytes accepted.
pub const MAX_SECRET_BYTES: usize = 64;
/// The secret bytes Warden generates.
pub const GENERATED_SECRET_BYTES: usize = 32;

/// Standard base64, padded or not (receivers' libraries print either).
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A subscription's HMAC key. Never printed: its `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// A new secret: 32 bytes from the OS CSPRNG.
    pub fn generate() -> Self {
        let mut raw = vec![0u8; GENERATED_SECRET_BYTES];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw);
        Self(raw)
    }

    /// Parses `whsec_<base64>` (24 to 64 bytes once decoded). The error never holds the text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some(b64) = text.trim().strip_prefix(SECRET_PREFIX) else {
            return Err(format!(
                "a webhook secret starts with {SECRET_PREFIX} (Standard Webhooks)"
            ));
        };
        let raw = LENIENT
            .decode(b64)
            .map_err(|_| format!("the text after {SECRET_PREFIX} is not standard base64"))?;
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&raw.len()) {
            return Err(format!(
                "a webhook secret holds {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes; this one \
                 holds {} (e.g. `echo whsec_$(openssl rand -base64 32)`)",
                raw.len()
            ));
        }
        Ok(Self(raw))
    }

    /// The `whsec_…` text, to show once to whoever will verify with it.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.0))
    }

    /// The key bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The content a `v1` signature covers.
fn signed_content(id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(id.len() + 24 + body.len());
    out.extend_from_slice(id.as_bytes());
    out.push(b'.');
    out.extend_from_slice(timestamp.to_string().as_bytes());
    out.push(b'.');
    out.extend_from_slice(body);
    out
}

/// One `v1,<base64>` signature.
pub fn sign(secret: &Secret, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.bytes());
    let tag = hmac::sign(&key, &signed_content(id, timestamp, body));
    format!("v1,{}", STANDARD.encode(tag.as_ref()))
}

/// The `webhook-signature` value: one signature per secret, in the order given (the newest
/// first), separated by spaces.
pub fn signature_header(secrets: &[Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| sign(s, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Verifies a message as a receiver does: some `v1` signature of `header` matches, and
/// `timestamp` lies within `tolerance_secs` of `now` (the spec's replay window, 5 minutes).
/// For tests and the README's example; Warden itself only signs.
pub fn verify(
    secret: &Secret,
    id: &str,
    timestamp: i64,
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> bool {
    if (now - timestamp).abs() > tolerance_secs {
        return false;
    }
    let expected = sign(secret, id, timestamp, body);
    header
        .split(' ')
        .any(|sig| bool::from(sig.as_bytes().ct_eq(expected.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks reference implementations' test suites.
    #[test]
    fn the_reference_example_signs_as_the_reference_libraries_do() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&secret, id, 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        let header = sign(&secret, id, 1614265330, body);
        assert!(verify(
            &secret, id, 1614265330, &header, body, 1614265330, 300
        ));
        assert!(!verify(
            &secret, id, 1614265330, &header, b"{}", 1614265330, 300
        ));
        assert!(!verify(
            &secret,
            id,
            1614265330,
            &header,
            body,
            1614265330 + 301,
            300
        ));
    }

    #[test]
    fn secrets_parse_only_in_the_standard_form_and_never_show_in_debug() {
        let s = Secret::generate();
        let text = s.expose();
        assert!(text.starts_with("whsec_"));
        assert_eq!(Secret::parse(&text).unwrap(), s);
        assert_eq!(Secret::parse(text.trim_end_matches('=')).unwrap(), s);
        assert_eq!(format!("{s:?}"), "Secret(..)");
        assert!(Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(Secret::parse("whsec_???").is_err());
        let short = format!("whsec_{}", STANDARD.encode([1u8; 23]));
        assert!(Secret::parse(&short).unwrap_err().contains("23"));
        let long = format!("whsec_{}", STANDARD.encode([1u8; 65]));
        assert!(Secret::parse(&long).is_err());
        let e = Secret::parse("whsec_not base64!").unwrap_err();
        assert!(
            !e.contains("not base64!"),
            "the error never echoes the secret: {e}"
        );
    }

    #[test]
    fn during_a_rotation_either_secret_verifies() {
        let (new, old) = (Secret::generate(), Secret::generate());
        let header = signature_header(&[new.clone(), old.clone()], "evt_1", 10, b"{}");
        assert_eq!(header.split(' ').count(), 2);
        assert!(verify(&new, "evt_1", 10, &header, b"{}", 10, 300));
        assert!(verify(&old, "evt_1", 10, &header, b"{}", 10, 300));
        assert!(!verify(
            &Secret::generate(),
            "evt_1",
            10,
            &header,
            b"{}",
            10,
            300
        ));
        assert!(!verify(&new, "evt_2", 10, &header, b"{}", 10, 300));
    }
}
