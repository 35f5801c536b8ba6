//! Keys from configuration, in the formats RFC 9421 uses (Appendix B.1) and JWK (RFC 7517):
//!
//! - public keys: PEM SPKI (`BEGIN PUBLIC KEY`), PKCS#1 (`BEGIN RSA PUBLIC KEY`), a JWK of kty
//!   `RSA`, `EC` or `OKP`, and for Ed25519 also base64 of the 32 raw bytes;
//! - HMAC secrets: base64 of the secret bytes (at least 32), or a JWK of kty `oct`;
//! - private keys (for signers, never the server's check): PKCS#8 (`BEGIN PRIVATE KEY`, also
//!   with the id-RSASSA-PSS OID of test-key-rsa-pss), PKCS#1 (`BEGIN RSA PRIVATE KEY`), SEC1
//!   (`BEGIN EC PRIVATE KEY`), a private JWK, and for Ed25519 base64 of the 32-byte seed.
//!
//! The algorithm is always the configuration's: a key whose type cannot serve it is refused,
//! as is an RSA modulus under 2048 bits (or over ring's 8192), an EC point off its curve, and
//! a weak Ed25519 key.
//!
//! This file holds the entry points, the limits and [`KeyError`]; beside it `public.rs` (public
//! keys: SPKI, PKCS#1, EC points, RSA checks), `jwk.rs` (JWKs, public and private),
//! `private.rs` (PKCS#8, PKCS#1 and SEC1 private keys) and `generate.rs` ([`generate`]).

mod generate;
mod jwk;
mod private;
mod public;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use der::asn1::ObjectIdentifier;
use ed25519_dalek::VerifyingKey;
use ed25519_dalek::pkcs8::DecodePublicKey as _;

use self::jwk::{b64url, check_jwk_use, jwk_private, jwk_public, parse_jwk};
use self::private::{pkcs8_private, rsa_private, sec1_private};
use self::public::{ec_public, ed25519_public, rsa_public, spki_public};
use super::alg::{Algorithm, HmacKey, SignerKey, VerificationKey};

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(false);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Smallest RSA modulus accepted, in bits.
pub const RSA_MIN_BITS: usize = 2048;
/// Largest RSA modulus ring verifies, in bits.
pub const RSA_MAX_BITS: usize = 8192;
/// Shortest HMAC secret accepted, in bytes (the SHA-256 output length, RFC 2104 §3).
pub const HMAC_MIN_BYTES: usize = 32;

const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_RSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// Why a configured key was refused. Messages name the problem, never the key material.
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
    /// The key is well formed but of another type than the algorithm needs.
    #[error("the key is {found}, which cannot verify or sign {alg}")]
    WrongType {
        /// The configured algorithm.
        alg: Algorithm,
        /// What the key is.
        found: &'static str,
    },
    /// The text is in none of the accepted formats, or its DER / JSON does not parse.
    #[error("{0}")]
    Format(&'static str),
    /// An RSA modulus outside 2048 to 8192 bits.
    #[error("rsa key is {bits} bits; {RSA_MIN_BITS} to {RSA_MAX_BITS} are accepted")]
    RsaSize {
        /// The modulus length.
        bits: usize,
    },
    /// An HMAC secret shorter than [`HMAC_MIN_BYTES`].
    #[error("hmac secret is {len} bytes; at least {HMAC_MIN_BYTES} random bytes are needed")]
    SecretTooShort {
        /// The decoded length.
        len: usize,
    },
    /// A private key where a public key was expected (it would put a secret in the config).
    #[error("this is a private key: register the public key only")]
    PrivateNotPublic,
    /// A JWK whose `alg` or `use` says it is for something else.
    #[error("jwk {member} is {value:?}, expected {expected:?}")]
    JwkMismatch {
        /// `alg`, `use` or `crv`.
        member: &'static str,
        /// The JWK's value (a short public string).
        value: String,
        /// What the configured algorithm needs.
        expected: &'static str,
    },
}

/// Parses an Ed25519 public key: base64 (standard or url-safe alphabet, padding optional) of
/// the 32 raw bytes, or a PEM `-----BEGIN PUBLIC KEY-----` SPKI. Weak (small-order) keys are
/// refused.
pub fn parse_public_key(s: &str) -> Result<VerifyingKey, KeyError> {
    let s = s.trim();
    let key = if s.starts_with("-----BEGIN") {
        VerifyingKey::from_public_key_pem(s).map_err(|_| KeyError::Pem)?
    } else {
        let bytes = decode_b64(s).ok_or(KeyError::Encoding)?;
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
    let bytes = decode_b64(s).ok_or(KeyError::PrivateKey)?;
    let seed: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| KeyError::PrivateKey)?;
    Ok(ed25519_dalek::SigningKey::from_bytes(&seed))
}

fn decode_b64(s: &str) -> Option<Vec<u8>> {
    STANDARD.decode(s).or_else(|_| URL_SAFE.decode(s)).ok()
}

/// Parses the key that verifies `alg` signatures from its text: a PEM, a JWK, base64 of an
/// Ed25519 key, or for `hmac-sha256` the secret (see [`parse_hmac_secret`]).
pub fn parse_verification_key(alg: Algorithm, text: &str) -> Result<VerificationKey, KeyError> {
    let text = text.trim();
    if alg.is_symmetric() {
        return parse_hmac_secret(text).map(VerificationKey::Hmac);
    }
    if text.starts_with('{') {
        return jwk_public(alg, &parse_jwk(text)?);
    }
    if text.starts_with("-----BEGIN") {
        let (label, der) = pem(text)?;
        return match label.as_str() {
            "PUBLIC KEY" => spki_public(alg, &der),
            "RSA PUBLIC KEY" => rsa_public(alg, &der),
            l if l.contains("PRIVATE KEY") => Err(KeyError::PrivateNotPublic),
            _ => Err(KeyError::Format(
                "pem is neither a public key (spki) nor an rsa public key (pkcs#1)",
            )),
        };
    }
    match alg {
        Algorithm::Ed25519 => ed25519_public(alg, &decode_b64(text).ok_or(KeyError::Encoding)?),
        _ => Err(KeyError::Format(
            "expected a pem (BEGIN PUBLIC KEY or BEGIN RSA PUBLIC KEY) or a jwk",
        )),
    }
}

/// Rebuilds a public key from the bytes a store keeps ([`VerificationKey::stored`]), with the
/// same checks as at registration.
pub fn stored_verification_key(alg: Algorithm, bytes: &[u8]) -> Result<VerificationKey, KeyError> {
    match alg {
        Algorithm::Ed25519 => ed25519_public(alg, bytes),
        Algorithm::EcdsaP256Sha256 | Algorithm::EcdsaP384Sha384 => ec_public(alg, bytes),
        Algorithm::RsaPssSha512 | Algorithm::RsaV15Sha256 => rsa_public(alg, bytes),
        Algorithm::HmacSha256 => Err(KeyError::Format("an hmac secret is never stored")),
    }
}

/// An HMAC secret: base64 (standard or url-safe, padding optional) of at least 32 bytes, or a
/// JWK `{"kty":"oct","k":"..."}`. The key is the decoded bytes (RFC 9421 B.1.5).
pub fn parse_hmac_secret(text: &str) -> Result<HmacKey, KeyError> {
    let text = text.trim();
    let secret = if text.starts_with('{') {
        let jwk = parse_jwk(text)?;
        if jwk.kty != "oct" {
            return Err(KeyError::WrongType {
                alg: Algorithm::HmacSha256,
                found: "a jwk that is not of kty oct",
            });
        }
        check_jwk_use(Algorithm::HmacSha256, &jwk)?;
        b64url(jwk.k.as_deref())?
    } else {
        decode_b64(text).ok_or(KeyError::Format(
            "hmac secret is not base64 (give the secret's bytes base64-encoded)",
        ))?
    };
    if secret.len() < HMAC_MIN_BYTES {
        return Err(KeyError::SecretTooShort { len: secret.len() });
    }
    Ok(HmacKey::new(&secret))
}

/// Parses a private key (or HMAC secret) that signs `alg`. `alg` may be left out when the key
/// says it (Ed25519, ECDSA); an RSA key needs it (PSS or PKCS#1 v1.5).
pub fn parse_signer_key(text: &str, alg: Option<Algorithm>) -> Result<SignerKey, KeyError> {
    let text = text.trim();
    if alg == Some(Algorithm::HmacSha256) {
        return parse_hmac_secret(text).map(SignerKey::Hmac);
    }
    let key = if text.starts_with('{') {
        jwk_private(alg, &parse_jwk(text)?)?
    } else if text.starts_with("-----BEGIN") {
        let (label, der) = pem(text)?;
        match label.as_str() {
            "PRIVATE KEY" => pkcs8_private(alg, &der)?,
            "RSA PRIVATE KEY" => rsa_private(alg, &der)?,
            "EC PRIVATE KEY" => sec1_private(alg, None, &der)?,
            _ => {
                return Err(KeyError::Format(
                    "pem is not a private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)",
                ));
            }
        }
    } else {
        // Base64 of an Ed25519 seed, as before.
        SignerKey::Ed25519(parse_private_key(text)?)
    };
    use super::MessageSigner as _;
    match alg {
        Some(alg) if alg != key.alg() => Err(KeyError::WrongType {
            alg,
            found: describe(key.alg()),
        }),
        _ => Ok(key),
    }
}

fn describe(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::Ed25519 => "an ed25519 key",
        Algorithm::EcdsaP256Sha256 => "a p-256 key",
        Algorithm::EcdsaP384Sha384 => "a p-384 key",
        Algorithm::RsaPssSha512 | Algorithm::RsaV15Sha256 => "an rsa key",
        Algorithm::HmacSha256 => "a shared secret",
    }
}

fn pem(text: &str) -> Result<(String, Vec<u8>), KeyError> {
    let (label, der) = der::pem::decode_vec(text.as_bytes())
        .map_err(|_| KeyError::Format("not a valid pem block"))?;
    Ok((label.to_owned(), der))
}

pub use self::generate::generate;
