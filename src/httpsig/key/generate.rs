//! New keys for `warden keygen`.

use base64::Engine as _;
use ring::signature as ring_sig;

use super::KeyError;
use crate::httpsig::alg::Algorithm;

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
mod tests {
    use super::*;
    use crate::httpsig::MessageSigner as _;
    use crate::httpsig::key::{parse_signer_key, parse_verification_key};

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
