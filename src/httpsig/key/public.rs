//! Public keys: Ed25519 raw bytes, SPKI, EC points checked on their curve, and PKCS#1 RSA
//! keys checked as ring would check them.

use der::asn1::{ObjectIdentifier, UintRef};
use der::{Decode as _, Reader as _, SliceReader};
use ed25519_dalek::VerifyingKey;

use super::{
    KeyError, OID_EC, OID_ED25519, OID_P256, OID_P384, OID_RSA, OID_RSA_PSS, RSA_MAX_BITS,
    RSA_MIN_BITS, describe,
};
use crate::httpsig::StrongKey;
use crate::httpsig::alg::{Algorithm, VerificationKey};

pub(super) fn ed25519_public(alg: Algorithm, raw: &[u8]) -> Result<VerificationKey, KeyError> {
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

pub(super) fn spki_public(alg: Algorithm, der: &[u8]) -> Result<VerificationKey, KeyError> {
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
pub(super) fn check_curve(
    alg: Algorithm,
    curve: Option<ObjectIdentifier>,
) -> Result<Algorithm, KeyError> {
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
pub(super) fn ec_public(alg: Algorithm, point: &[u8]) -> Result<VerificationKey, KeyError> {
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
pub(super) fn rsa_public(alg: Algorithm, der: &[u8]) -> Result<VerificationKey, KeyError> {
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

pub(super) fn check_rsa_components(n: &[u8], e: &[u8]) -> Result<(), KeyError> {
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

pub(super) fn bit_length(be: &[u8]) -> usize {
    let be = &be[be.iter().position(|&b| b != 0).unwrap_or(be.len())..];
    match be.first() {
        Some(first) => be.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}

/// The DER of PKCS#1 `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`
/// from big-endian magnitudes.
pub(super) fn rsa_public_der(n: &[u8], e: &[u8]) -> Result<Vec<u8>, KeyError> {
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
