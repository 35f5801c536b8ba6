//! Private keys, for signers (never the server's check): PKCS#8, PKCS#1 and SEC1.

use der::asn1::{BitStringRef, ContextSpecific, ObjectIdentifier, OctetStringRef};
use der::{Decode as _, Reader as _, SliceReader, TagNumber};
use ring::signature as ring_sig;

use super::public::check_curve;
use super::{KeyError, OID_EC, OID_ED25519, OID_RSA, OID_RSA_PSS, describe};
use crate::httpsig::alg::{Algorithm, SignerKey};

pub(super) fn rsa_alg(alg: Option<Algorithm>) -> Result<Algorithm, KeyError> {
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

pub(super) fn pkcs8_private(alg: Option<Algorithm>, der: &[u8]) -> Result<SignerKey, KeyError> {
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

pub(super) fn rsa_private(alg: Option<Algorithm>, der: &[u8]) -> Result<SignerKey, KeyError> {
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
pub(super) fn sec1_private(
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

pub(super) fn ec_pair(alg: Algorithm, d: &[u8], point: &[u8]) -> Result<SignerKey, KeyError> {
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
