//! Clients: who they are, their hashed secrets and signing keys, and the [`ClientStore`] trait.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Hash, NewEvent, StoreError};

/// One hashed client secret. Two may be active at once during a rotation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretHash {
    /// SHA-256 of the secret; the secret itself is never stored.
    pub hash: Hash,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds after which the secret no longer authenticates; `None`: never expires.
    pub expires_at: Option<i64>,
}

impl SecretHash {
    /// Whether the secret still authenticates at `now`.
    pub fn is_active(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|end| now < end)
    }
}

/// A client's registered public key, named by the RFC 9421 `keyid`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKey {
    /// The `keyid` a signature names; unique within one client.
    pub key_id: String,
    /// Signature algorithm (an RFC 9421 registry name), e.g. `ed25519`.
    pub alg: String,
    /// The public key bytes (`httpsig::VerificationKey::stored`: ed25519 the 32 raw bytes,
    /// ecdsa the uncompressed point, rsa the PKCS#1 DER). Empty for `hmac-sha256`: a secret
    /// is never stored; the config that declared it holds it in memory.
    pub public_key: Vec<u8>,
}

/// Where a client was declared, which says who may change it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientSource {
    /// `[[clients]]` in the config file: rewritten by [`ClientStore::upsert_client`] at every
    /// start.
    Config,
    /// Created at run time through the API.
    Managed,
}

impl ClientSource {
    /// The stored text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Managed => "managed",
        }
    }

    /// Parses the stored text form.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "config" => Some(Self::Config),
            "managed" => Some(Self::Managed),
            _ => None,
        }
    }
}

/// An API client: who it is, how it authenticates, what it may do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    pub id: String,
    pub name: String,
    pub account: String,
    /// Hashed secrets, oldest first.
    pub secrets: Vec<SecretHash>,
    /// Signing keys, in the order given.
    pub keys: Vec<SigningKey>,
    /// CIDRs the client may call from; validated by the caller before storing.
    pub trusted_ips: Vec<String>,
    pub scopes: Vec<String>,
    pub enabled: bool,
    pub source: ClientSource,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// Clients, with their secrets and signing keys.
#[async_trait]
pub trait ClientStore: Send + Sync {
    /// Creates or replaces a client with exactly what is given (secrets and keys included);
    /// an existing client keeps its original `created_at`.
    async fn upsert_client(&self, client: ClientRecord) -> Result<(), StoreError>;
    async fn get_client(&self, id: &str) -> Result<Option<ClientRecord>, StoreError>;
    /// All clients, by id.
    async fn list_clients(&self) -> Result<Vec<ClientRecord>, StoreError>;
    async fn set_client_enabled(
        &self,
        id: &str,
        enabled: bool,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Rotation: existing secrets that would outlive `old_secrets_expire_at` now expire then
    /// (`None` leaves them as they are), secrets already expired at `now` are dropped, and
    /// `secret` is added, with `event`. A secret the client already has is a
    /// [`StoreError::Conflict`].
    async fn add_client_secret(
        &self,
        id: &str,
        secret: SecretHash,
        old_secrets_expire_at: Option<i64>,
        now: i64,
        event: Option<NewEvent>,
    ) -> Result<bool, StoreError>;
    /// Drops every client secret expired at `now`; returns how many.
    async fn prune_expired_secrets(&self, now: i64) -> Result<u64, StoreError>;
}
