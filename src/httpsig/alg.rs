//! The algorithms of the HTTP Signature Algorithms registry (RFC 9421 §3.3, §6.2.2), and the
//! keys that verify and sign with them. Ed25519 goes through ed25519-dalek (strict, and the
//! batch path of [`super::batch`]); the others through ring. A key has one algorithm: it is
//! named when the key is registered, never taken from a signature (§3.2 step 6, §7.3.6).

use std::fmt;

use ring::signature::{self as ring_sig, KeyPair as _};

use super::{SigError, StrongKey, verify_ed25519};

/// An algorithm of the registry. JOSE names (`ES256`, `RS256`, ...) are not among them: RFC
/// 9421 §3.3.7 keeps them out of `alg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `ed25519` (§3.3.6): EdDSA over the raw base, 64-byte signature.
    Ed25519,
    /// `ecdsa-p256-sha256` (§3.3.4): raw `r‖s`, 64 bytes (not DER).
    EcdsaP256Sha256,
    /// `ecdsa-p384-sha384` (§3.3.5): raw `r‖s`, 96 bytes (not DER).
    EcdsaP384Sha384,
    /// `rsa-pss-sha512` (§3.3.1): RSASSA-PSS, SHA-512, MGF1-SHA-512, 64-byte salt.
    RsaPssSha512,
    /// `rsa-v1_5-sha256` (§3.3.2): RSASSA-PKCS1-v1_5 with SHA-256.
    RsaV15Sha256,
    /// `hmac-sha256` (§3.3.3): a shared secret; compared in constant time.
    HmacSha256,
}

impl Algorithm {
    /// Every algorithm, in registry order.
    pub const ALL: [Algorithm; 6] = [
        Algorithm::RsaPssSha512,
        Algorithm::RsaV15Sha256,
        Algorithm::HmacSha256,
        Algorithm::EcdsaP256Sha256,
        Algorithm::EcdsaP384Sha384,
        Algorithm::Ed25519,
    ];

    /// The registry name, as in `alg` and in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "ed25519",
            Algorithm::EcdsaP256Sha256 => "ecdsa-p256-sha256",
            Algorithm::EcdsaP384Sha384 => "ecdsa-p384-sha384",
            Algorithm::RsaPssSha512 => "rsa-pss-sha512",
            Algorithm::RsaV15Sha256 => "rsa-v1_5-sha256",
            Algorithm::HmacSha256 => "hmac-sha256",
        }
    }

    /// The algorithm of a registry name (exact, lowercase as registered).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The JWK `alg` (RFC 7518) that names the same algorithm, checked when a JWK carries one.
    pub fn jose_name(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "EdDSA",
            Algorithm::EcdsaP256Sha256 => "ES256",
            Algorithm::EcdsaP384Sha384 => "ES384",
            Algorithm::RsaPssSha512 => "PS512",
            Algorithm::RsaV15Sha256 => "RS256",
            Algorithm::HmacSha256 => "HS256",
        }
    }

    /// Whether the key is a shared secret (HMAC) rather than a public key.
    pub fn is_symmetric(self) -> bool {
        self == Algorithm::HmacSha256
    }

    /// The names, comma-separated, for error messages.
    pub fn names() -> String {
        Algorithm::ALL.map(Algorithm::name).join(", ")
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A key that verifies signatures of one algorithm: a public key, or an HMAC secret.
#[derive(Clone)]
pub enum VerificationKey {
    /// Known not to be weak.
    Ed25519(StrongKey),
    /// The uncompressed point (`04 ‖ x ‖ y`), checked to be on the curve at load.
    Ecdsa { alg: Algorithm, point: Box<[u8]> },
    /// The PKCS#1 `RSAPublicKey` DER, 2048 to 8192 bits.
    Rsa {
        alg: Algorithm,
        der: Box<[u8]>,
        bits: usize,
    },
    /// A shared secret, held in memory only.
    Hmac(HmacKey),
}

impl VerificationKey {
    /// The key's one algorithm.
    pub fn alg(&self) -> Algorithm {
        match self {
            VerificationKey::Ed25519(_) => Algorithm::Ed25519,
            VerificationKey::Ecdsa { alg, .. } | VerificationKey::Rsa { alg, .. } => *alg,
            VerificationKey::Hmac(_) => Algorithm::HmacSha256,
        }
    }

    /// Verifies `signature` over the signature base `base` (RFC 9421 §3.3): the verify
    /// primitive of each algorithm, never a re-signing and comparing (§7.3.5) except HMAC,
    /// whose check is a constant-time comparison of the tags.
    pub fn verify(&self, base: &[u8], signature: &[u8]) -> Result<(), SigError> {
        let ok = match self {
            VerificationKey::Ed25519(key) => return verify_ed25519(base, signature, key.key()),
            VerificationKey::Ecdsa { alg, point } => {
                let params: &ring_sig::EcdsaVerificationAlgorithm = match alg {
                    Algorithm::EcdsaP384Sha384 => &ring_sig::ECDSA_P384_SHA384_FIXED,
                    _ => &ring_sig::ECDSA_P256_SHA256_FIXED,
                };
                ring_sig::UnparsedPublicKey::new(params, point)
                    .verify(base, signature)
                    .is_ok()
            }
            VerificationKey::Rsa { alg, der, .. } => {
                let params: &ring_sig::RsaParameters = match alg {
                    Algorithm::RsaV15Sha256 => &ring_sig::RSA_PKCS1_2048_8192_SHA256,
                    _ => &ring_sig::RSA_PSS_2048_8192_SHA512,
                };
                ring_sig::UnparsedPublicKey::new(params, der)
                    .verify(base, signature)
                    .is_ok()
            }
            VerificationKey::Hmac(key) => ring::hmac::verify(&key.0, base, signature).is_ok(),
        };
        if ok {
            Ok(())
        } else {
            Err(SigError::InvalidSignature)
        }
    }

    /// The bytes a store keeps of a public key: Ed25519 the 32 raw bytes, ECDSA the
    /// uncompressed point, RSA the PKCS#1 DER. `None` for an HMAC secret, which is never stored.
    pub fn stored(&self) -> Option<Vec<u8>> {
        match self {
            VerificationKey::Ed25519(key) => Some(key.key().to_bytes().to_vec()),
            VerificationKey::Ecdsa { point, .. } => Some(point.to_vec()),
            VerificationKey::Rsa { der, .. } => Some(der.to_vec()),
            VerificationKey::Hmac(_) => None,
        }
    }
}

impl fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerificationKey::Ed25519(key) => f.debug_tuple("Ed25519").field(key).finish(),
            VerificationKey::Ecdsa { alg, .. } => write!(f, "Ecdsa({alg})"),
            VerificationKey::Rsa { alg, bits, .. } => write!(f, "Rsa({alg}, {bits} bits)"),
            VerificationKey::Hmac(key) => key.fmt(f),
        }
    }
}

/// An HMAC-SHA256 secret. Debug never shows it.
#[derive(Clone)]
pub struct HmacKey(ring::hmac::Key);

impl HmacKey {
    /// The key of `secret` (the decoded bytes, not their base64).
    pub fn new(secret: &[u8]) -> Self {
        Self(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret))
    }
}

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hmac(<secret>)")
    }
}

/// Something that signs a signature base: a private key of one algorithm. The Ed25519
/// `SigningKey` of ed25519-dalek is one, as is every [`SignerKey`].
pub trait MessageSigner {
    /// The algorithm, written into `alg` by [`super::sign_request`].
    fn alg(&self) -> Algorithm;
    /// The signature of `base` (raw `r‖s` for ECDSA).
    fn sign_base(&self, base: &[u8]) -> Result<Vec<u8>, SigError>;
}

impl MessageSigner for ed25519_dalek::SigningKey {
    fn alg(&self) -> Algorithm {
        Algorithm::Ed25519
    }

    fn sign_base(&self, base: &[u8]) -> Result<Vec<u8>, SigError> {
        use ed25519_dalek::Signer as _;
        Ok(self.sign(base).to_bytes().to_vec())
    }
}

/// A private key (or HMAC secret) of one algorithm, for signing clients, `warden dev` and
/// Warden's own response signatures.
pub enum SignerKey {
    Ed25519(ed25519_dalek::SigningKey),
    Ecdsa {
        alg: Algorithm,
        pair: ring_sig::EcdsaKeyPair,
    },
    Rsa {
        alg: Algorithm,
        pair: ring_sig::RsaKeyPair,
    },
    Hmac(HmacKey),
}

impl SignerKey {
    /// The key that verifies this key's signatures: the public half, or the same secret.
    pub fn verification_key(&self) -> Result<VerificationKey, super::KeyError> {
        match self {
            SignerKey::Ed25519(key) => StrongKey::new(key.verifying_key())
                .map(VerificationKey::Ed25519)
                .ok_or(super::KeyError::Point),
            SignerKey::Ecdsa { alg, pair } => Ok(VerificationKey::Ecdsa {
                alg: *alg,
                point: pair.public_key().as_ref().into(),
            }),
            SignerKey::Rsa { alg, pair } => Ok(VerificationKey::Rsa {
                alg: *alg,
                der: pair.public_key().as_ref().into(),
                bits: pair.public().modulus_len() * 8,
            }),
            SignerKey::Hmac(key) => Ok(VerificationKey::Hmac(key.clone())),
        }
    }
}

impl MessageSigner for SignerKey {
    fn alg(&self) -> Algorithm {
        match self {
            SignerKey::Ed25519(_) => Algorithm::Ed25519,
            SignerKey::Ecdsa { alg, .. } | SignerKey::Rsa { alg, .. } => *alg,
            SignerKey::Hmac(_) => Algorithm::HmacSha256,
        }
    }

    fn sign_base(&self, base: &[u8]) -> Result<Vec<u8>, SigError> {
        let failed = || SigError::SigningFailed;
        let rng = ring::rand::SystemRandom::new();
        match self {
            SignerKey::Ed25519(key) => key.sign_base(base),
            SignerKey::Ecdsa { pair, .. } => pair
                .sign(&rng, base)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| failed()),
            SignerKey::Rsa { alg, pair } => {
                let padding: &dyn ring_sig::RsaEncoding = match alg {
                    Algorithm::RsaV15Sha256 => &ring_sig::RSA_PKCS1_SHA256,
                    _ => &ring_sig::RSA_PSS_SHA512,
                };
                let mut out = vec![0; pair.public().modulus_len()];
                pair.sign(padding, &rng, base, &mut out)
                    .map_err(|_| failed())?;
                Ok(out)
            }
            SignerKey::Hmac(key) => Ok(ring::hmac::sign(&key.0, base).as_ref().to_vec()),
        }
    }
}

impl fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignerKey({})", self.alg())
    }
}
