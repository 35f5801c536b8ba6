//! Subscription secrets at rest. A Standard Webhooks secret is a shared HMAC key that Warden
//! must keep usable, so it cannot be hashed as client secrets are: the store keeps a
//! subscription's secrets sealed (ChaCha20-Poly1305) under a key derived (HKDF-SHA256) from the
//! store's seal key (`store.seal_key_file`, see `store::seal_key`), bound to the subscription's
//! id. A copy of the database without the seal key holds no usable secret; a seal key replaced
//! leaves the sealed secrets unreadable (deliveries of those subscriptions then fail until
//! their secret is rotated; operator subscriptions are sealed again at the next start).

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf::{HKDF_SHA256, Salt};
use serde::{Deserialize, Serialize};

use super::signing::Secret;

const SALT: &[u8] = b"warden store seal v1";
const INFO: &[u8] = b"webhook subscription secrets";
const FORMAT: u8 = 1;

/// One of a subscription's secrets: the newest signs alone, once the others expire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningSecret {
    pub secret: Secret,
    /// Unix seconds after which it no longer signs; `None`: current.
    pub expires_at: Option<i64>,
}

#[derive(Serialize, Deserialize)]
struct Plain {
    secret: String,
    #[serde(default)]
    expires_at: Option<i64>,
}

/// Seals and opens subscription secrets.
pub struct SecretSeal {
    key: LessSafeKey,
}

impl std::fmt::Debug for SecretSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretSeal(..)")
    }
}

impl SecretSeal {
    /// The seal for the store's seal key.
    pub fn new(seal_key: &[u8]) -> Option<Self> {
        let prk = Salt::new(HKDF_SHA256, SALT).extract(seal_key);
        let okm = prk.expand(&[INFO], &CHACHA20_POLY1305).ok()?;
        Some(Self {
            key: LessSafeKey::new(UnboundKey::from(okm)),
        })
    }

    /// `format ‖ nonce ‖ ciphertext ‖ tag` of the secrets, bound to `subscription`. Nonces are
    /// random: a subscription's secrets are sealed at creation and rotation only, far from the
    /// 2^32 seals where 96-bit random nonces could meet.
    pub fn seal(&self, subscription: &str, secrets: &[SigningSecret]) -> Vec<u8> {
        let plain: Vec<Plain> = secrets
            .iter()
            .map(|s| Plain {
                secret: s.secret.expose(),
                expires_at: s.expires_at,
            })
            .collect();
        let mut body = serde_json::to_vec(&plain).unwrap_or_default();
        let nonce: [u8; NONCE_LEN] = rand::random();
        let sealed = self.key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(subscription)),
            &mut body,
        );
        if sealed.is_err() {
            // Only past ChaCha20's 256 GiB: kept as a record that does not open.
            return vec![FORMAT];
        }
        let mut out = Vec::with_capacity(1 + NONCE_LEN + body.len());
        out.push(FORMAT);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        out
    }

    /// The secrets, or `None` for another seal key, another subscription or a damaged record.
    pub fn open(&self, subscription: &str, sealed: &[u8]) -> Option<Vec<SigningSecret>> {
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != FORMAT {
            return None;
        }
        let nonce = Nonce::try_assume_unique_for_key(&sealed[1..1 + NONCE_LEN]).ok()?;
        let mut body = sealed[1 + NONCE_LEN..].to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad(subscription)), &mut body)
            .ok()?;
        let items: Vec<Plain> = serde_json::from_slice(plain).ok()?;
        items
            .into_iter()
            .map(|p| {
                Some(SigningSecret {
                    secret: Secret::parse(&p.secret).ok()?,
                    expires_at: p.expires_at,
                })
            })
            .collect()
    }
}

fn aad(subscription: &str) -> Vec<u8> {
    [
        b"warden webhook secrets\0".as_slice(),
        subscription.as_bytes(),
    ]
    .concat()
}

/// The secrets that sign at `now`, newest first.
pub fn signing(secrets: &[SigningSecret], now: i64) -> Vec<Secret> {
    let mut live: Vec<&SigningSecret> = secrets
        .iter()
        .filter(|s| s.expires_at.is_none_or(|end| now < end))
        .collect();
    // The current one (no expiry) first, then the others by how long they have left.
    live.sort_by_key(|s| std::cmp::Reverse(s.expires_at.unwrap_or(i64::MAX)));
    live.into_iter().map(|s| s.secret.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_for_their_subscription_and_key() {
        let seal = SecretSeal::new(&[7; 32]).unwrap();
        let secrets = vec![
            SigningSecret {
                secret: Secret::generate(),
                expires_at: None,
            },
            SigningSecret {
                secret: Secret::generate(),
                expires_at: Some(100),
            },
        ];
        let sealed = seal.seal("wh_1", &secrets);
        let text = secrets[0].secret.expose();
        assert!(
            !sealed
                .windows(8)
                .any(|w| text.as_bytes().windows(8).any(|t| t == w)),
            "nothing of the secret shows"
        );
        assert_eq!(seal.open("wh_1", &sealed).unwrap(), secrets);
        assert!(seal.open("wh_2", &sealed).is_none());
        assert!(
            SecretSeal::new(&[8; 32])
                .unwrap()
                .open("wh_1", &sealed)
                .is_none()
        );
        let mut bad = sealed.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(seal.open("wh_1", &bad).is_none());
        assert!(seal.open("wh_1", &[]).is_none());
        assert_ne!(
            seal.seal("wh_1", &secrets),
            sealed,
            "a fresh nonce each time"
        );
    }

    #[test]
    fn the_current_secret_signs_first_and_expired_ones_not_at_all() {
        let current = Secret::generate();
        let old = Secret::generate();
        let older = Secret::generate();
        let all = vec![
            SigningSecret {
                secret: older.clone(),
                expires_at: Some(50),
            },
            SigningSecret {
                secret: old.clone(),
                expires_at: Some(100),
            },
            SigningSecret {
                secret: current.clone(),
                expires_at: None,
            },
        ];
        assert_eq!(signing(&all, 10), [current.clone(), old.clone(), older]);
        assert_eq!(signing(&all, 50), [current.clone(), old]);
        assert_eq!(signing(&all, 100), [current]);
    }
}
