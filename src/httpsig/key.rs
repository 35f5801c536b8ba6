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

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use der::asn1::{BitStringRef, ContextSpecific, ObjectIdentifier, OctetStringRef, UintRef};
use der::{Decode as _, Reader as _, SliceReader, TagNumber};
use ed25519_dalek::VerifyingKey;
use ed25519_dalek::pkcs8::DecodePublicKey as _;
use ring::signature as ring_sig;

use super::StrongKey;
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

// ------------------------------------------------------------------------- public keys

fn ed25519_public(alg: Algorithm, raw: &[u8]) -> Result<VerificationKey, KeyError> {
    if alg != Algorithm::Ed25519 {
        return Err(KeyError::WrongType {
            alg,
            found: "an ed25519 key",
        });
    }
    let raw: [u8; 32] = raw
        .try_into()
        .map_err(|_| KeyError::Length { len: raw.len() })?;
    let key = VerifyingKey::from_bytes(&raw).map_err(|_| KeyError::Point)?;
    StrongKey::new(key)
        .map(VerificationKey::Ed25519)
        .ok_or(KeyError::Point)
}

fn spki_public(alg: Algorithm, der: &[u8]) -> Result<VerificationKey, KeyError> {
    let spki = spki::SubjectPublicKeyInfoRef::from_der(der)
        .map_err(|_| KeyError::Format("public key pem is not a valid spki"))?;
    let key = spki
        .subject_public_key
        .as_bytes()
        .ok_or(KeyError::Format("spki key bits are not whole bytes"))?;
    let oid = spki.algorithm.oid;
    if oid == OID_ED25519 {
        ed25519_public(alg, key)
    } else if oid == OID_EC {
        let curve = spki
            .algorithm
            .parameters
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        ec_public(check_curve(alg, curve)?, key)
    } else if oid == OID_RSA {
        rsa_public(alg, key)
    } else if oid == OID_RSA_PSS {
        // RFC 4055 §3.1: absent parameters leave the hash open; present ones would restrict
        // the key to a hash this code does not check, so they are refused.
        if alg != Algorithm::RsaPssSha512 {
            return Err(KeyError::WrongType {
                alg,
                found: "an rsa-pss key",
            });
        }
        if spki.algorithm.parameters.is_some() {
            return Err(KeyError::Format(
                "rsa-pss spki with parameters is not supported: use rsaEncryption",
            ));
        }
        rsa_public(alg, key)
    } else {
        Err(KeyError::Format(
            "spki algorithm is none of rsa, ec (p-256, p-384) and ed25519",
        ))
    }
}

/// The algorithm of the named curve, which must be `alg`'s.
fn check_curve(alg: Algorithm, curve: Option<ObjectIdentifier>) -> Result<Algorithm, KeyError> {
    let found = match curve {
        Some(c) if c == OID_P256 => Algorithm::EcdsaP256Sha256,
        Some(c) if c == OID_P384 => Algorithm::EcdsaP384Sha384,
        _ => return Err(KeyError::Format("ec key is on neither p-256 nor p-384")),
    };
    if found != alg {
        return Err(KeyError::WrongType {
            alg,
            found: describe(found),
        });
    }
    Ok(found)
}

/// An uncompressed point of `alg`'s curve, checked to be on it: ring's ECDH refuses a peer
/// point that is not, so one agreement with a throwaway key is the check (run once, at load).
fn ec_public(alg: Algorithm, point: &[u8]) -> Result<VerificationKey, KeyError> {
    use ring::agreement;
    let (curve, len) = match alg {
        Algorithm::EcdsaP256Sha256 => (&agreement::ECDH_P256, 65),
        Algorithm::EcdsaP384Sha384 => (&agreement::ECDH_P384, 97),
        _ => {
            return Err(KeyError::WrongType {
                alg,
                found: "an ec key",
            });
        }
    };
    if point.len() != len || point[0] != 4 {
        return Err(KeyError::Format(
            "ec public key is not an uncompressed point of its curve",
        ));
    }
    let rng = ring::rand::SystemRandom::new();
    let ours = agreement::EphemeralPrivateKey::generate(curve, &rng)
        .map_err(|_| KeyError::Format("cannot check the ec point"))?;
    agreement::agree_ephemeral(
        ours,
        &agreement::UnparsedPublicKey::new(curve, point),
        |_| (),
    )
    .map_err(|_| KeyError::Format("ec public key is not a point on its curve"))?;
    Ok(VerificationKey::Ecdsa {
        alg,
        point: point.into(),
    })
}

/// A PKCS#1 `RSAPublicKey` DER: its size and exponent checked as ring would at every
/// verification (2048 to 8192 bits, odd exponent from 3 to 2^33 - 1).
fn rsa_public(alg: Algorithm, der: &[u8]) -> Result<VerificationKey, KeyError> {
    if !matches!(alg, Algorithm::RsaPssSha512 | Algorithm::RsaV15Sha256) {
        return Err(KeyError::WrongType {
            alg,
            found: "an rsa key",
        });
    }
    let bad = || KeyError::Format("rsa public key is not a valid pkcs#1 RSAPublicKey");
    let mut reader = SliceReader::new(der).map_err(|_| bad())?;
    let (n, e) = reader
        .sequence(|r| Ok((UintRef::decode(r)?, UintRef::decode(r)?)))
        .map_err(|_| bad())?;
    reader.finish(()).map_err(|_| bad())?;
    check_rsa_components(n.as_bytes(), e.as_bytes())?;
    Ok(VerificationKey::Rsa {
        alg,
        der: der.into(),
        bits: bit_length(n.as_bytes()),
    })
}

fn check_rsa_components(n: &[u8], e: &[u8]) -> Result<(), KeyError> {
    let bits = bit_length(n);
    if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
        return Err(KeyError::RsaSize { bits });
    }
    let e_value = e.iter().try_fold(0u64, |acc, &b| {
        (acc < (1 << 56)).then(|| (acc << 8) | u64::from(b))
    });
    match e_value {
        Some(v) if v >= 3 && v % 2 == 1 && v < (1 << 33) => Ok(()),
        _ => Err(KeyError::Format(
            "rsa public exponent must be odd, from 3 to 2^33 - 1",
        )),
    }
}

fn bit_length(be: &[u8]) -> usize {
    let be = &be[be.iter().position(|&b| b != 0).unwrap_or(be.len())..];
    match be.first() {
        Some(first) => be.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}

/// The DER of PKCS#1 `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`
/// from big-endian magnitudes.
fn rsa_public_der(n: &[u8], e: &[u8]) -> Result<Vec<u8>, KeyError> {
    use der::Encode as _;
    let bad = || KeyError::Format("rsa jwk n or e is not a valid integer");
    let n = UintRef::new(n).map_err(|_| bad())?;
    let e = UintRef::new(e).map_err(|_| bad())?;
    let len = (n.encoded_len().map_err(|_| bad())? + e.encoded_len().map_err(|_| bad())?)
        .map_err(|_| bad())?;
    let header = der::Header::new(der::Tag::Sequence, len).map_err(|_| bad())?;
    let mut out = Vec::new();
    header.encode_to_vec(&mut out).map_err(|_| bad())?;
    n.encode_to_vec(&mut out).map_err(|_| bad())?;
    e.encode_to_vec(&mut out).map_err(|_| bad())?;
    Ok(out)
}

// ------------------------------------------------------------------------------- JWK

/// The members of a JWK this code reads (RFC 7517 §4, RFC 7518 §6).
#[derive(serde::Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    d: Option<String>,
    #[serde(default)]
    p: Option<String>,
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    dp: Option<String>,
    #[serde(default)]
    dq: Option<String>,
    #[serde(default)]
    qi: Option<String>,
    #[serde(default)]
    k: Option<String>,
}

fn parse_jwk(text: &str) -> Result<Jwk, KeyError> {
    serde_json::from_str(text).map_err(|_| KeyError::Format("jwk is not a json object with kty"))
}

/// A JWK member: base64url without padding (padding tolerated).
fn b64url(value: Option<&str>) -> Result<Vec<u8>, KeyError> {
    value
        .and_then(|v| URL_SAFE.decode(v).ok())
        .ok_or(KeyError::Format(
            "jwk lacks a member its kty needs, or it is not base64url",
        ))
}

/// `use` must be `sig` when present, and `alg` the JOSE name of the configured algorithm.
fn check_jwk_use(alg: Algorithm, jwk: &Jwk) -> Result<(), KeyError> {
    if let Some(u) = jwk.use_.as_deref()
        && u != "sig"
    {
        return Err(KeyError::JwkMismatch {
            member: "use",
            value: short(u),
            expected: "sig",
        });
    }
    if let Some(a) = jwk.alg.as_deref()
        && a != alg.jose_name()
    {
        return Err(KeyError::JwkMismatch {
            member: "alg",
            value: short(a),
            expected: alg.jose_name(),
        });
    }
    Ok(())
}

fn short(s: &str) -> String {
    s.chars().take(32).collect()
}

fn jwk_public(alg: Algorithm, jwk: &Jwk) -> Result<VerificationKey, KeyError> {
    if jwk.d.is_some() || jwk.k.is_some() {
        return Err(KeyError::PrivateNotPublic);
    }
    check_jwk_use(alg, jwk)?;
    match jwk.kty.as_str() {
        "OKP" => {
            if jwk.crv.as_deref() != Some("Ed25519") {
                return Err(KeyError::Format("okp jwk is not crv Ed25519"));
            }
            ed25519_public(alg, &b64url(jwk.x.as_deref())?)
        }
        "EC" => {
            let point = jwk_ec_point(alg, jwk)?;
            ec_public(alg, &point)
        }
        "RSA" => {
            let der = rsa_public_der(&b64url(jwk.n.as_deref())?, &b64url(jwk.e.as_deref())?)?;
            rsa_public(alg, &der)
        }
        _ => Err(KeyError::Format("jwk kty is none of RSA, EC and OKP")),
    }
}

/// `04 ‖ x ‖ y` from an EC JWK whose `crv` is `alg`'s curve.
fn jwk_ec_point(alg: Algorithm, jwk: &Jwk) -> Result<Vec<u8>, KeyError> {
    let (expected, len) = match alg {
        Algorithm::EcdsaP256Sha256 => ("P-256", 32),
        Algorithm::EcdsaP384Sha384 => ("P-384", 48),
        _ => {
            return Err(KeyError::WrongType {
                alg,
                found: "an ec key",
            });
        }
    };
    let crv = jwk.crv.as_deref().unwrap_or("");
    if crv != expected {
        return Err(KeyError::JwkMismatch {
            member: "crv",
            value: short(crv),
            expected,
        });
    }
    let (x, y) = (b64url(jwk.x.as_deref())?, b64url(jwk.y.as_deref())?);
    if x.len() != len || y.len() != len {
        return Err(KeyError::Format("ec jwk x or y is not the curve's length"));
    }
    let mut point = Vec::with_capacity(1 + 2 * len);
    point.push(4);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Ok(point)
}

fn jwk_private(alg: Option<Algorithm>, jwk: &Jwk) -> Result<SignerKey, KeyError> {
    let not_private = KeyError::Format("jwk has no private part (d)");
    match jwk.kty.as_str() {
        "OKP" => {
            if jwk.crv.as_deref() != Some("Ed25519") {
                return Err(KeyError::Format("okp jwk is not crv Ed25519"));
            }
            let seed: [u8; 32] = b64url(jwk.d.as_deref())
                .map_err(|_| not_private)?
                .as_slice()
                .try_into()
                .map_err(|_| KeyError::PrivateKey)?;
            Ok(SignerKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(
                &seed,
            )))
        }
        "EC" => {
            let alg = match (alg, jwk.crv.as_deref()) {
                (Some(a), _) => a,
                (None, Some("P-384")) => Algorithm::EcdsaP384Sha384,
                (None, _) => Algorithm::EcdsaP256Sha256,
            };
            let point = jwk_ec_point(alg, jwk)?;
            let d = b64url(jwk.d.as_deref()).map_err(|_| not_private)?;
            ec_pair(alg, &d, &point)
        }
        "RSA" => {
            let alg = rsa_alg(alg)?;
            let part = |v: &Option<String>| b64url(v.as_deref());
            let components = ring::rsa::KeyPairComponents {
                public_key: ring::rsa::PublicKeyComponents {
                    n: part(&jwk.n)?,
                    e: part(&jwk.e)?,
                },
                d: part(&jwk.d).map_err(|_| not_private)?,
                p: part(&jwk.p)?,
                q: part(&jwk.q)?,
                dP: part(&jwk.dp)?,
                dQ: part(&jwk.dq)?,
                qInv: part(&jwk.qi)?,
            };
            check_rsa_components(&components.public_key.n, &components.public_key.e)?;
            let pair = ring_sig::RsaKeyPair::from_components(&components)
                .map_err(|_| KeyError::Format("rsa jwk is not a consistent private key"))?;
            Ok(SignerKey::Rsa { alg, pair })
        }
        _ => Err(KeyError::Format("jwk kty is none of RSA, EC and OKP")),
    }
}

// ------------------------------------------------------------------------ private keys

fn rsa_alg(alg: Option<Algorithm>) -> Result<Algorithm, KeyError> {
    match alg {
        Some(a @ (Algorithm::RsaPssSha512 | Algorithm::RsaV15Sha256)) => Ok(a),
        Some(a) => Err(KeyError::WrongType {
            alg: a,
            found: "an rsa key",
        }),
        None => Err(KeyError::Format(
            "an rsa key serves rsa-pss-sha512 or rsa-v1_5-sha256: name the algorithm",
        )),
    }
}

fn pkcs8_private(alg: Option<Algorithm>, der: &[u8]) -> Result<SignerKey, KeyError> {
    let info = pkcs8::PrivateKeyInfo::try_from(der)
        .map_err(|_| KeyError::Format("private key pem is not a valid pkcs#8"))?;
    let oid = info.algorithm.oid;
    if oid == OID_ED25519 {
        use ed25519_dalek::pkcs8::DecodePrivateKey as _;
        return ed25519_dalek::SigningKey::from_pkcs8_der(der)
            .map(SignerKey::Ed25519)
            .map_err(|_| KeyError::PrivateKey);
    }
    if oid == OID_EC {
        let curve = info
            .algorithm
            .parameters
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        return sec1_private(alg, curve, info.private_key);
    }
    if oid == OID_RSA || oid == OID_RSA_PSS {
        // The inner key is a PKCS#1 RSAPrivateKey whatever the OID (id-RSASSA-PSS, as
        // test-key-rsa-pss uses, is one ring's from_pkcs8 refuses).
        return rsa_private(alg, info.private_key);
    }
    Err(KeyError::Format(
        "pkcs#8 algorithm is none of rsa, ec (p-256, p-384) and ed25519",
    ))
}

fn rsa_private(alg: Option<Algorithm>, der: &[u8]) -> Result<SignerKey, KeyError> {
    let alg = rsa_alg(alg)?;
    let pair = ring_sig::RsaKeyPair::from_der(der).map_err(|_| {
        KeyError::Format(
            "rsa private key refused: not a pkcs#1 RSAPrivateKey, under 2048 bits, or with \
                 unbalanced primes (which ring does not sign with)",
        )
    })?;
    Ok(SignerKey::Rsa { alg, pair })
}

/// SEC1 `ECPrivateKey` (RFC 5915): the scalar, the curve (here or from PKCS#8) and the public
/// point, which ring needs beside the scalar.
fn sec1_private(
    alg: Option<Algorithm>,
    outer_curve: Option<ObjectIdentifier>,
    der: &[u8],
) -> Result<SignerKey, KeyError> {
    let bad = || KeyError::Format("ec private key is not a valid sec1 ECPrivateKey");
    let mut reader = SliceReader::new(der).map_err(|_| bad())?;
    let (d, curve, public) = reader
        .sequence(|r| {
            let _version = u8::decode(r)?;
            let d = OctetStringRef::decode(r)?;
            let curve = ContextSpecific::<ObjectIdentifier>::decode_explicit(r, TagNumber::N0)?;
            let public = ContextSpecific::<BitStringRef<'_>>::decode_explicit(r, TagNumber::N1)?;
            Ok((d, curve.map(|c| c.value), public.map(|p| p.value)))
        })
        .map_err(|_| bad())?;
    let curve = outer_curve.or(curve);
    let found = check_curve(Algorithm::EcdsaP256Sha256, curve)
        .or_else(|_| check_curve(Algorithm::EcdsaP384Sha384, curve))?;
    let alg = alg.unwrap_or(found);
    if alg != found {
        return Err(KeyError::WrongType {
            alg,
            found: describe(found),
        });
    }
    let public = public.and_then(|p| p.as_bytes()).ok_or(KeyError::Format(
        "ec private key lacks its public key (write it with openssl, which includes it)",
    ))?;
    ec_pair(alg, d.as_bytes(), public)
}

fn ec_pair(alg: Algorithm, d: &[u8], point: &[u8]) -> Result<SignerKey, KeyError> {
    let signing: &'static ring_sig::EcdsaSigningAlgorithm = match alg {
        Algorithm::EcdsaP256Sha256 => &ring_sig::ECDSA_P256_SHA256_FIXED_SIGNING,
        Algorithm::EcdsaP384Sha384 => &ring_sig::ECDSA_P384_SHA384_FIXED_SIGNING,
        _ => {
            return Err(KeyError::WrongType {
                alg,
                found: "an ec key",
            });
        }
    };
    let rng = ring::rand::SystemRandom::new();
    let pair = ring_sig::EcdsaKeyPair::from_private_key_and_public_key(signing, d, point, &rng)
        .map_err(|_| KeyError::Format("ec private and public key do not match"))?;
    Ok(SignerKey::Ecdsa { alg, pair })
}

/// A new key of `alg`: its private text (PKCS#8 PEM; for `hmac-sha256` base64 of 32 random
/// bytes) and the public text to register (ed25519: base64 of the 32 bytes; ECDSA: a JWK).
/// RSA keys are not generated here (ring cannot): use `openssl genpkey`.
pub fn generate(alg: Algorithm) -> Result<(String, String), KeyError> {
    use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD};
    let rng = ring::rand::SystemRandom::new();
    let pem = |der: &[u8]| {
        der::pem::encode_string("PRIVATE KEY", der::pem::LineEnding::LF, der)
            .map_err(|_| KeyError::Format("cannot encode the key"))
    };
    match alg {
        Algorithm::Ed25519 => {
            use ed25519_dalek::pkcs8::EncodePrivateKey as _;
            let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
            // PKCS#8 v1 (RFC 8410 §7, private key only): OpenSSL 3.0 and pyca/cryptography
            // refuse the v2 form with the public key embedded.
            let v1 = ed25519_dalek::pkcs8::KeypairBytes {
                secret_key: key.to_bytes(),
                public_key: None,
            };
            let private = v1
                .to_pkcs8_pem(der::pem::LineEnding::LF)
                .map_err(|_| KeyError::Format("cannot encode the key"))?;
            Ok((
                private.as_str().to_owned(),
                B64.encode(key.verifying_key().to_bytes()),
            ))
        }
        Algorithm::EcdsaP256Sha256 | Algorithm::EcdsaP384Sha384 => {
            let (signing, crv, len): (&'static ring_sig::EcdsaSigningAlgorithm, _, _) = match alg {
                Algorithm::EcdsaP256Sha256 => {
                    (&ring_sig::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", 32)
                }
                _ => (&ring_sig::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", 48),
            };
            let doc = ring_sig::EcdsaKeyPair::generate_pkcs8(signing, &rng)
                .map_err(|_| KeyError::Format("cannot generate the key"))?;
            let pair = ring_sig::EcdsaKeyPair::from_pkcs8(signing, doc.as_ref(), &rng)
                .map_err(|_| KeyError::Format("cannot generate the key"))?;
            use ring::signature::KeyPair as _;
            let point = pair.public_key().as_ref();
            let jwk = serde_json::json!({
                "kty": "EC",
                "crv": crv,
                "x": URL_SAFE_NO_PAD.encode(&point[1..1 + len]),
                "y": URL_SAFE_NO_PAD.encode(&point[1 + len..]),
            });
            Ok((pem(doc.as_ref())?, jwk.to_string()))
        }
        Algorithm::HmacSha256 => {
            let secret: [u8; 32] = rand::random();
            Ok((B64.encode(secret), String::new()))
        }
        Algorithm::RsaPssSha512 | Algorithm::RsaV15Sha256 => Err(KeyError::Format(
            "rsa keys are not generated here: openssl genpkey -algorithm RSA -pkeyopt \
             rsa_keygen_bits:3072 -out key.pem; openssl pkey -in key.pem -pubout",
        )),
    }
}

#[cfg(test)]
mod generate_tests {
    use super::*;
    use crate::httpsig::MessageSigner as _;

    #[test]
    fn generated_keys_sign_what_their_registered_halves_verify() {
        for alg in [
            Algorithm::Ed25519,
            Algorithm::EcdsaP256Sha256,
            Algorithm::EcdsaP384Sha384,
            Algorithm::HmacSha256,
        ] {
            let (private, public) = generate(alg).unwrap();
            let signer = parse_signer_key(&private, Some(alg)).unwrap();
            let verifier = if alg.is_symmetric() {
                parse_verification_key(alg, &private).unwrap()
            } else {
                parse_verification_key(alg, &public).unwrap()
            };
            let sig = signer.sign_base(b"base").unwrap();
            assert_eq!(verifier.verify(b"base", &sig), Ok(()), "{alg}");
        }
        assert!(generate(Algorithm::RsaPssSha512).is_err());
    }
}
