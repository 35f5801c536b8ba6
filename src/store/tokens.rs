//! Issued tokens: the [`TokenRecord`] and the [`TokenStore`] trait.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Hash, NewEvent, StoreError};

/// What a token is; stored as text (`access`, `api_key`, `managed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// A short-lived bearer token from `/v1/auth` or `/v1/oauth/token`.
    Access,
    /// A long-lived user API key; revoking it may issue a replacement.
    ApiKey,
    /// A token created through the token-management API.
    Managed,
}

impl TokenKind {
    /// The stored text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::ApiKey => "api_key",
            Self::Managed => "managed",
        }
    }

    /// Parses the stored text form.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "access" => Some(Self::Access),
            "api_key" => Some(Self::ApiKey),
            "managed" => Some(Self::Managed),
            _ => None,
        }
    }
}

/// An issued credential. Only the hash of its value is stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public identifier (e.g. `accessTokenId`); not a secret.
    pub id: String,
    /// SHA-256 of the token value; unique, and the key of [`TokenStore::token_by_hash`].
    pub hash: Hash,
    pub kind: TokenKind,
    pub client_id: String,
    pub account: String,
    pub name: Option<String>,
    pub user: Option<String>,
    pub audience: Option<String>,
    pub scopes: Vec<String>,
    /// CIDRs the token may be used from (on top of the client's).
    pub trusted_ips: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// Unix seconds; `None` for long-lived tokens.
    pub expires_at: Option<i64>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// Unix seconds of the first revocation; a revoked token never comes back.
    pub revoked_at: Option<i64>,
    /// The id of the token that replaced this one ([`TokenStore::replace_api_key`]).
    pub replaced_by: Option<String>,
}

impl TokenRecord {
    /// Whether the token authenticates at `now`: enabled, not revoked, not expired.
    pub fn is_active(&self, now: i64) -> bool {
        self.enabled && self.revoked_at.is_none() && self.expires_at.is_none_or(|end| now < end)
    }
}

/// Issued tokens, kept by the hash of their value; their outbox events are written with them.
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Stores a new token, and `event` in the outbox in the same transaction.
    /// A token with the same id or hash is a [`StoreError::Conflict`].
    async fn insert_token(
        &self,
        token: TokenRecord,
        event: Option<NewEvent>,
    ) -> Result<(), StoreError>;
    /// The indexed lookup behind a cache miss; returns revoked and expired tokens too.
    async fn token_by_hash(&self, hash: &Hash) -> Result<Option<TokenRecord>, StoreError>;
    async fn get_token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// An account's tokens (optionally of one kind), oldest first.
    async fn list_tokens(
        &self,
        account: &str,
        kind: Option<TokenKind>,
    ) -> Result<Vec<TokenRecord>, StoreError>;
    /// Sets `revoked_at` once; later calls change nothing. `event` is written only by the call that
    /// revokes.
    async fn revoke_token(
        &self,
        id: &str,
        now: i64,
        event: Option<NewEvent>,
    ) -> Result<bool, StoreError>;
    /// Enabling clears `reason`. `event` is written only when `enabled` changes.
    async fn set_token_enabled(
        &self,
        id: &str,
        enabled: bool,
        reason: Option<String>,
        now: i64,
        event: Option<NewEvent>,
    ) -> Result<bool, StoreError>;
    /// `event` is written only when the name changes.
    async fn rename_token(
        &self,
        id: &str,
        name: String,
        now: i64,
        event: Option<NewEvent>,
    ) -> Result<bool, StoreError>;
    /// Deletes the row; `event` is written only if there was one.
    async fn delete_token(&self, id: &str, event: Option<NewEvent>) -> Result<bool, StoreError>;
    /// Atomically revokes `old_id` (with `replaced_by = new.id`) and inserts `new`, with
    /// `events`. `false`, and nothing written, when `old_id` is unknown or already revoked.
    async fn replace_api_key(
        &self,
        old_id: &str,
        new: TokenRecord,
        now: i64,
        events: Vec<NewEvent>,
    ) -> Result<bool, StoreError>;
    /// Deletes tokens that expired, or were revoked, before `before` (a retention cut-off);
    /// returns how many.
    async fn purge_expired_tokens(&self, before: i64) -> Result<u64, StoreError>;
}
