//! Ed25519 verification with `verify_strict`'s rules, cheaper: small-order `R` encodings
//! refused up front, keys checked for weakness once ([`StrongKey`]).

use ed25519_dalek::{Signature, VerifyingKey};

use super::error::SigError;

/// The canonical encodings of the eight points of small order (the curve's torsion subgroup).
/// A signature whose `R` is one of them is refused, as `verify_strict` refuses it.
pub const SMALL_ORDER_ENCODINGS: [[u8; 32]; 8] = {
    const fn point(first: u8, last: u8) -> [u8; 32] {
        let mut p = [0u8; 32];
        p[0] = first;
        p[31] = last;
        p
    }
    const A: [u8; 32] = [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ];
    const B: [u8; 32] = [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ];
    const fn with_sign(mut p: [u8; 32]) -> [u8; 32] {
        p[31] |= 0x80;
        p
    }
    let mut minus_one = [0xff; 32];
    minus_one[0] = 0xec;
    minus_one[31] = 0x7f;
    [
        point(0x01, 0x00),
        A,
        point(0x00, 0x80),
        B,
        minus_one,
        with_sign(B),
        point(0x00, 0x00),
        with_sign(A),
    ]
};

/// Verifies an Ed25519 signature over the raw base bytes (no pre-hash) with the semantics of
/// `verify_strict`: a non-canonical `s` or `R`, a small-order `R` and a weak key all fail. The
/// signature must be 64 bytes.
///
/// Cheaper than `verify_strict`, which decompresses `R` to test its order: the recomputed `R`
/// is compared as a canonical encoding, so a small-order `R` can only match through one of the
/// eight [`SMALL_ORDER_ENCODINGS`], which are refused up front (libsodium does the same).
pub fn verify_ed25519(base: &[u8], signature: &[u8], key: &VerifyingKey) -> Result<(), SigError> {
    use ed25519_dalek::Verifier as _;
    if key.is_weak() {
        return Err(SigError::InvalidSignature);
    }
    let signature = strict_signature(signature)?;
    key.verify(base, &signature)
        .map_err(|_| SigError::InvalidSignature)
}

/// The checks on the signature itself that come before the curve arithmetic: 64 bytes, and an
/// `R` not of small order. (A non-canonical `s` fails in the verification itself, single or
/// batch; the key's weakness is checked by the caller, once per key where it can.)
pub(super) fn strict_signature(signature: &[u8]) -> Result<Signature, SigError> {
    let signature = Signature::from_slice(signature).map_err(|_| SigError::InvalidSignature)?;
    if SMALL_ORDER_ENCODINGS.contains(signature.r_bytes()) {
        return Err(SigError::InvalidSignature);
    }
    Ok(signature)
}

/// An Ed25519 public key known not to be weak (of small order), checked once when the key is
/// loaded instead of on every verification.
#[derive(Debug, Clone, Copy)]
pub struct StrongKey(VerifyingKey);

impl StrongKey {
    /// `None` for a weak key, which [`verify_ed25519`] would refuse every signature of.
    pub fn new(key: VerifyingKey) -> Option<Self> {
        (!key.is_weak()).then_some(Self(key))
    }

    pub fn key(&self) -> &VerifyingKey {
        &self.0
    }
}
