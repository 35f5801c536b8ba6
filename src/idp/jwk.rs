//! JSON Web Keys (RFC 7517, RFC 7518 §6, RFC 8037) as verification keys for the five JWS
//! algorithms Warden accepts from an identity provider, and the signature check itself (ring for
//! RSA and ECDSA, ed25519-dalek for Ed25519). Pure: fetching and caching key sets is `keys.rs`'s.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::VerifyingKey;
use ring::signature::{self as sig, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;

/// The smallest RSA modulus accepted, in bits (RFC 7518 §3.3 says 2048 or larger).
pub const MIN_RSA_BITS: usize = 2048;
/// The largest RSA modulus ring verifies with, in bits.
pub const MAX_RSA_BITS: usize = 8192;

/// A JWS algorithm Warden verifies. `none` and the HMAC algorithms are not among them, whatever
/// the configuration says: a verifier that holds only public keys must never be asked to treat
/// one as a shared secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    EdDsa,
    Es256,
    Es384,
    Rs256,
    Ps256,
}

impl Alg {
    /// Every algorithm, in the order the configuration's default lists them.
    pub const ALL: [Alg; 5] = [Alg::EdDsa, Alg::Es256, Alg::Es384, Alg::Rs256, Alg::Ps256];

    /// The algorithm named by a JWS `alg` (case-sensitive, RFC 7515 §4.1.1).
    pub fn parse(name: &str) -> Option<Alg> {
        match name {
            "EdDSA" => Some(Alg::EdDsa),
            "ES256" => Some(Alg::Es256),
            "ES384" => Some(Alg::Es384),
            "RS256" => Some(Alg::Rs256),
            "PS256" => Some(Alg::Ps256),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::EdDsa => "EdDSA",
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
            Alg::Rs256 => "RS256",
            Alg::Ps256 => "PS256",
        }
    }
}

/// The public key itself, checked for shape when parsed.
enum Material {
    /// Modulus and exponent, big-endian without leading zeros.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed SEC1 point (0x04 ‖ x ‖ y), 65 bytes.
    P256(Vec<u8>),
    /// An uncompressed SEC1 point, 97 bytes.
    P384(Vec<u8>),
    Ed25519(VerifyingKey),
}

/// One usable verification key of an issuer.
pub struct Jwk {
    /// `kid`, if the key has one.
    pub kid: Option<String>,
    /// `alg`, if the key names one: then it verifies that algorithm only.
    pub alg: Option<Alg>,
    material: Material,
}

impl std::fmt::Debug for Jwk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kty = match &self.material {
            Material::Rsa { n, .. } => format!("RSA-{}", bits(n)),
            Material::P256(_) => "EC P-256".into(),
            Material::P384(_) => "EC P-384".into(),
            Material::Ed25519(_) => "OKP Ed25519".into(),
        };
        f.debug_struct("Jwk")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("kty", &kty)
            .finish()
    }
}

impl Jwk {
    /// Whether this key may verify a signature made with `alg`: its type and curve fit the
    /// algorithm (RS256/PS256 need RSA, ES256 P-256, ES384 P-384, EdDSA Ed25519), and its own
    /// `alg`, if any, is the same one.
    pub fn supports(&self, alg: Alg) -> bool {
        let fits = matches!(
            (&self.material, alg),
            (Material::Rsa { .. }, Alg::Rs256 | Alg::Ps256)
                | (Material::P256(_), Alg::Es256)
                | (Material::P384(_), Alg::Es384)
                | (Material::Ed25519(_), Alg::EdDsa)
        );
        fits && self.alg.is_none_or(|own| own == alg)
    }

    /// Whether `signature` over `message` verifies with this key under `alg`. A key that does
    /// not [`Jwk::supports`] `alg` verifies nothing.
    pub fn verify(&self, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
        if !self.supports(alg) {
            return false;
        }
        match (&self.material, alg) {
            (Material::Rsa { n, e }, Alg::Rs256) => RsaPublicKeyComponents { n, e }
                .verify(&sig::RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
            (Material::Rsa { n, e }, Alg::Ps256) => RsaPublicKeyComponents { n, e }
                .verify(&sig::RSA_PSS_2048_8192_SHA256, message, signature)
                .is_ok(),
            // JWS ECDSA signatures are the fixed-width r ‖ s (RFC 7518 §3.4), never DER.
            (Material::P256(point), Alg::Es256) => {
                UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
            (Material::P384(point), Alg::Es384) => {
                UnparsedPublicKey::new(&sig::ECDSA_P384_SHA384_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
            (Material::Ed25519(key), Alg::EdDsa) => {
                let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else {
                    return false;
                };
                key.verify_strict(message, &signature).is_ok()
            }
            _ => false,
        }
    }
}

/// The usable keys of a JWKS document.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<Jwk>,
}

/// Which key verifies a token, or why none does.
#[derive(Debug)]
pub enum Selected<'a> {
    Key(&'a Jwk),
    /// No key with the token's `kid` (or, for a token without `kid`, no key at all) fits its
    /// algorithm: the set may be out of date.
    Unknown,
    /// A token without `kid`, and more than one key could verify it: refused rather than tried
    /// one after the other.
    Ambiguous,
}

impl KeySet {
    pub fn new(keys: Vec<Jwk>) -> Self {
        Self { keys }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key for a token signed with `alg` under `kid`. With a `kid`, the key of that id that
    /// fits `alg` (two such keys are ambiguous). Without one, the only key fitting `alg`: an
    /// issuer publishing several keys must name them in its tokens.
    pub fn select(&self, kid: Option<&str>, alg: Alg) -> Selected<'_> {
        let mut fitting = self
            .keys
            .iter()
            .filter(|k| k.supports(alg) && kid.is_none_or(|kid| k.kid.as_deref() == Some(kid)));
        match (fitting.next(), fitting.next()) {
            (Some(k), None) => Selected::Key(k),
            (None, _) => Selected::Unknown,
            (Some(_), Some(_)) => Selected::Ambiguous,
        }
    }
}

/// Why a JWKS document was not read at all (a single unusable key is skipped instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    #[error("not a JWKS document (a JSON object with a \"keys\" array): {0}")]
    Json(String),
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

/// One key as published. Unknown members (`x5c`, `x5t`, …) are ignored.
#[derive(Deserialize)]
struct RawKey {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    usage: Option<String>,
    #[serde(default)]
    key_ops: Option<Vec<String>>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    // Private members: a set that publishes one has lost that key.
    #[serde(default)]
    d: Option<serde_json::Value>,
    #[serde(default)]
    p: Option<serde_json::Value>,
    #[serde(default)]
    k: Option<serde_json::Value>,
}

/// Parses a JWKS document. Keys Warden cannot use (encryption keys, other types or curves,
/// other algorithms, short RSA moduli, malformed members, private material) are skipped, each
/// with the reason in the second list, so one odd key does not take the issuer's others down.
pub fn parse_set(json: &[u8]) -> Result<(KeySet, Vec<String>), SetError> {
    let raw: RawSet = serde_json::from_slice(json).map_err(|e| SetError::Json(e.to_string()))?;
    let mut keys = Vec::with_capacity(raw.keys.len());
    let mut skipped = Vec::new();
    for (i, value) in raw.keys.into_iter().enumerate() {
        let kid = value
            .get("kid")
            .and_then(|k| k.as_str())
            .map(|k| k.chars().take(64).collect::<String>())
            .unwrap_or_default();
        match serde_json::from_value::<RawKey>(value)
            .map_err(|_| "not a JWK object".to_string())
            .and_then(|k| parse_key(&k).map_err(str::to_string))
        {
            Ok(key) => keys.push(key),
            Err(why) => skipped.push(format!("keys[{i}] (kid {kid:?}): {why}")),
        }
    }
    Ok((KeySet::new(keys), skipped))
}

fn parse_key(k: &RawKey) -> Result<Jwk, &'static str> {
    if k.d.is_some() || k.p.is_some() || k.k.is_some() {
        return Err("carries private or symmetric key material; never used");
    }
    if k.usage.as_deref().is_some_and(|u| u != "sig") {
        return Err("\"use\" is not \"sig\"");
    }
    if k.key_ops
        .as_ref()
        .is_some_and(|ops| !ops.iter().any(|o| o == "verify"))
    {
        return Err("\"key_ops\" does not allow \"verify\"");
    }
    let alg = match &k.alg {
        None => None,
        Some(a) => {
            Some(Alg::parse(a).ok_or("\"alg\" is not one of EdDSA ES256 ES384 RS256 PS256")?)
        }
    };
    let material = match (k.kty.as_str(), k.crv.as_deref()) {
        ("RSA", _) => {
            let n = strip_zeros(b64(k.n.as_deref()).ok_or("RSA key without a valid \"n\"")?);
            let e = strip_zeros(b64(k.e.as_deref()).ok_or("RSA key without a valid \"e\"")?);
            let size = bits(&n);
            if size < MIN_RSA_BITS {
                return Err("RSA modulus shorter than 2048 bits");
            }
            if size > MAX_RSA_BITS {
                return Err("RSA modulus longer than 8192 bits");
            }
            if e.is_empty() || e.len() > 4 {
                return Err("RSA exponent out of range");
            }
            Material::Rsa { n, e }
        }
        ("EC", Some(crv @ ("P-256" | "P-384"))) => {
            let len = if crv == "P-256" { 32 } else { 48 };
            let x = b64(k.x.as_deref()).ok_or("EC key without a valid \"x\"")?;
            let y = b64(k.y.as_deref()).ok_or("EC key without a valid \"y\"")?;
            // RFC 7518 §6.2.1.2: the coordinates are full length, leading zeros kept.
            if x.len() != len || y.len() != len {
                return Err("EC coordinates of the wrong length for the curve");
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            if !on_curve(crv, &point) {
                return Err("EC point not on the curve");
            }
            if crv == "P-256" {
                Material::P256(point)
            } else {
                Material::P384(point)
            }
        }
        ("EC", _) => return Err("EC curve other than P-256 and P-384"),
        ("OKP", Some("Ed25519")) => {
            let x = b64(k.x.as_deref()).ok_or("OKP key without a valid \"x\"")?;
            let bytes: [u8; 32] = x
                .try_into()
                .map_err(|_| "Ed25519 key that is not 32 bytes")?;
            let key = VerifyingKey::from_bytes(&bytes).map_err(|_| "not an Ed25519 point")?;
            if key.is_weak() {
                return Err("Ed25519 key of small order");
            }
            Material::Ed25519(key)
        }
        ("OKP", _) => return Err("OKP curve other than Ed25519"),
        ("oct", _) => return Err("symmetric key; never used"),
        _ => return Err("key type other than RSA, EC and OKP"),
    };
    let key = Jwk {
        kid: k.kid.clone(),
        alg,
        material,
    };
    if let Some(alg) = alg {
        if !key.supports(alg) {
            return Err("\"alg\" does not fit the key type or curve");
        }
    }
    Ok(key)
}

/// Base64url without padding (RFC 7515 §2); padded values are tolerated, as some IdPs send them.
fn b64(value: Option<&str>) -> Option<Vec<u8>> {
    let v = value?.trim_end_matches('=');
    URL_SAFE_NO_PAD.decode(v).ok().filter(|b| !b.is_empty())
}

fn strip_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let zeros = v.iter().take_while(|&&b| b == 0).count();
    v.drain(..zeros);
    v
}

/// The bit length of a big-endian unsigned integer without leading zero bytes.
fn bits(n: &[u8]) -> usize {
    match n.first() {
        None => 0,
        Some(&top) => n.len() * 8 - top.leading_zeros() as usize,
    }
}

/// Whether `point` is a valid public key on `crv`. ring checks it again on every verification;
/// checking once here skips a bad key when the set is read, with a reason in the log.
fn on_curve(crv: &str, point: &[u8]) -> bool {
    // ring exposes no public-key check of its own; its key agreement validates the peer's point.
    let alg = if crv == "P-256" {
        &ring::agreement::ECDH_P256
    } else {
        &ring::agreement::ECDH_P384
    };
    let rng = ring::rand::SystemRandom::new();
    let Ok(private) = ring::agreement::EphemeralPrivateKey::generate(alg, &rng) else {
        return false;
    };
    let peer = ring::agreement::UnparsedPublicKey::new(alg, point);
    ring::agreement::agree_ephemeral(private, &peer, |_| ()).is_ok()
}

#[cfg(test)]
mod tests;
