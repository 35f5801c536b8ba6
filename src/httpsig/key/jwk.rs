//! JWKs (RFC 7517, RFC 7518 §6): public keys, and private ones for signers.

use base64::Engine as _;
use ring::signature as ring_sig;

use super::KeyError;
use super::URL_SAFE;
use super::private::{ec_pair, rsa_alg};
use super::public::{check_rsa_components, ec_public, ed25519_public, rsa_public, rsa_public_der};
use crate::httpsig::alg::{Algorithm, SignerKey, VerificationKey};

/// The members of a JWK this code reads (RFC 7517 §4, RFC 7518 §6).
#[derive(serde::Deserialize)]
pub(super) struct Jwk {
    pub(super) kty: String,
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
    pub(super) k: Option<String>,
}

pub(super) fn parse_jwk(text: &str) -> Result<Jwk, KeyError> {
    serde_json::from_str(text).map_err(|_| KeyError::Format("jwk is not a json object with kty"))
}

/// A JWK member: base64url without padding (padding tolerated).
pub(super) fn b64url(value: Option<&str>) -> Result<Vec<u8>, KeyError> {
    value
        .and_then(|v| URL_SAFE.decode(v).ok())
        .ok_or(KeyError::Format(
            "jwk lacks a member its kty needs, or it is not base64url",
        ))
}

/// `use` must be `sig` when present, and `alg` the JOSE name of the configured algorithm.
pub(super) fn check_jwk_use(alg: Algorithm, jwk: &Jwk) -> Result<(), KeyError> {
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

pub(super) fn short(s: &str) -> String {
    s.chars().take(32).collect()
}

pub(super) fn jwk_public(alg: Algorithm, jwk: &Jwk) -> Result<VerificationKey, KeyError> {
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
pub(super) fn jwk_ec_point(alg: Algorithm, jwk: &Jwk) -> Result<Vec<u8>, KeyError> {
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

pub(super) fn jwk_private(alg: Option<Algorithm>, jwk: &Jwk) -> Result<SignerKey, KeyError> {
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
