//! Ed25519 public keys from configuration: base64 of the 32 raw bytes, or a PEM SPKI.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use ed25519_dalek::VerifyingKey;
use ed25519_dalek::pkcs8::DecodePublicKey as _;

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(false);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Why a configured public key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not base64 (standard or url-safe, padded or not) and not a PEM block.
    #[error("public key is neither base64 nor a pem spki")]
    Encoding,
    /// Base64 that does not decode to 32 bytes.
    #[error("public key is {len} bytes, expected 32")]
    Length {
        /// The decoded length.
        len: usize,
    },
    /// The PEM is not an Ed25519 SubjectPublicKeyInfo.
    #[error("public key pem is not an ed25519 spki")]
    Pem,
    /// The bytes are not a usable Ed25519 point (invalid or small order).
    #[error("public key is not a valid ed25519 point")]
    Point,
    /// A private key that is neither an Ed25519 PKCS#8 PEM nor base64 of a 32-byte seed.
    #[error("private key is neither an ed25519 pkcs#8 pem nor base64 of a 32-byte seed")]
    PrivateKey,
}

/// Parses an Ed25519 public key: base64 (standard or url-safe alphabet, padding optional) of
/// the 32 raw bytes, or a PEM `-----BEGIN PUBLIC KEY-----` SPKI. Weak (small-order) keys are
/// refused.
pub fn parse_public_key(s: &str) -> Result<VerifyingKey, KeyError> {
    let s = s.trim();
    let key = if s.starts_with("-----BEGIN") {
        VerifyingKey::from_public_key_pem(s).map_err(|_| KeyError::Pem)?
    } else {
        let bytes = STANDARD
            .decode(s)
            .or_else(|_| URL_SAFE.decode(s))
            .map_err(|_| KeyError::Encoding)?;
        let raw: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::Length { len: bytes.len() })?;
        VerifyingKey::from_bytes(&raw).map_err(|_| KeyError::Point)?
    };
    if key.is_weak() {
        return Err(KeyError::Point);
    }
    Ok(key)
}

/// Parses an Ed25519 private key: a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, as `warden
/// keygen` writes it) or base64 of the 32-byte seed. For signing clients, never the server.
pub fn parse_private_key(s: &str) -> Result<ed25519_dalek::SigningKey, KeyError> {
    use ed25519_dalek::pkcs8::DecodePrivateKey as _;
    let s = s.trim();
    if s.starts_with("-----BEGIN") {
        return ed25519_dalek::SigningKey::from_pkcs8_pem(s).map_err(|_| KeyError::PrivateKey);
    }
    let bytes = STANDARD
        .decode(s)
        .or_else(|_| URL_SAFE.decode(s))
        .map_err(|_| KeyError::PrivateKey)?;
    let seed: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| KeyError::PrivateKey)?;
    Ok(ed25519_dalek::SigningKey::from_bytes(&seed))
}
