//! Secret values Warden mints (access tokens, API keys, managed tokens, client secrets) and
//! their hashes. A value is 256 bits from the OS CSPRNG, base64url, behind a recognisable
//! prefix so secret scanners can find leaked ones. Only the SHA-256 of a value is ever stored.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a secret is for; decides its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// Short-lived bearer token from `/v1/auth` or `/v1/oauth/token`.
    AccessToken,
    /// Long-lived user API key.
    ApiKey,
    /// Named token from the token management API.
    ManagedToken,
    /// A client's secret for the token endpoints.
    ClientSecret,
}

impl SecretKind {
    /// The prefix of values of this kind.
    pub fn prefix(self) -> &'static str {
        match self {
            SecretKind::AccessToken => "wdn_at_",
            SecretKind::ApiKey => "wdn_ak_",
            SecretKind::ManagedToken => "wdn_mt_",
            SecretKind::ClientSecret => "wdn_cs_",
        }
    }
}

/// A freshly minted secret: the value (shown once) and its hash (stored).
pub struct Minted {
    pub value: String,
    pub hash: [u8; 32],
}

/// Mints a new secret of `kind`.
pub fn mint(kind: SecretKind) -> Minted {
    let mut raw = [0u8; 32];
    OsRng.fill_bytes(&mut raw);
    let value = format!("{}{}", kind.prefix(), URL_SAFE_NO_PAD.encode(raw));
    let hash = hash(&value);
    Minted { value, hash }
}

/// A random identifier (not a secret): `prefix` + 128 bits in hex.
pub fn new_id(prefix: &str) -> String {
    let mut raw = [0u8; 16];
    OsRng.fill_bytes(&mut raw);
    format!("{prefix}{}", hex::encode(raw))
}

/// SHA-256 of a secret value. The values are 256-bit random, so a fast hash is enough: there
/// is nothing to brute-force.
pub fn hash(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

/// Whether `value` hashes to `expected`, compared in constant time.
pub fn matches(value: &str, expected: &[u8; 32]) -> bool {
    hash(value).ct_eq(expected).into()
}

/// Parses a 64-hex-digit SHA-256 as written in config (`secret_sha256`).
pub fn parse_sha256_hex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_values_carry_their_prefix_and_256_bits() {
        let m = mint(SecretKind::AccessToken);
        assert!(m.value.starts_with("wdn_at_"));
        let raw = URL_SAFE_NO_PAD.decode(&m.value["wdn_at_".len()..]).unwrap();
        assert_eq!(raw.len(), 32);
        assert_eq!(m.hash, hash(&m.value));
        assert_ne!(mint(SecretKind::AccessToken).value, m.value);
    }

    #[test]
    fn matching_is_exact() {
        let m = mint(SecretKind::ClientSecret);
        assert!(matches(&m.value, &m.hash));
        assert!(!matches(&format!("{}x", m.value), &m.hash));
    }

    #[test]
    fn config_hashes_parse() {
        let h = hex::encode(hash("s3cret"));
        assert_eq!(parse_sha256_hex(&h), Some(hash("s3cret")));
        assert_eq!(parse_sha256_hex("zz"), None);
    }
}
