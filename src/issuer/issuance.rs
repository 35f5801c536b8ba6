//! Issuing, rotating and revoking Warden's own credentials.

use std::time::Duration;

use super::{Issued, Issuer};
use crate::events::{self, Gone};
use crate::secret::{self, SecretKind};
use crate::store::{ClientRecord, StoreError, TokenKind, TokenRecord};

impl Issuer {
    /// Issues an access token for `client` with `scopes` (already checked to be allowed).
    pub async fn issue_access_token(
        &self,
        client: &ClientRecord,
        scopes: Vec<String>,
    ) -> Result<Issued, StoreError> {
        let ttl = Some(self.cfg.access_ttl);
        self.issue(client, TokenKind::Access, scopes, ttl, None)
            .await
    }

    /// Issues a long-lived API key with the client's full scopes.
    pub async fn issue_api_key(
        &self,
        client: &ClientRecord,
        name: Option<String>,
    ) -> Result<Issued, StoreError> {
        let scopes = client.scopes.clone();
        self.issue(client, TokenKind::ApiKey, scopes, None, name)
            .await
    }

    /// Issues a token of `kind` that lives `ttl` (`None`: until revoked) from now.
    async fn issue(
        &self,
        client: &ClientRecord,
        kind: TokenKind,
        scopes: Vec<String>,
        ttl: Option<Duration>,
        name: Option<String>,
    ) -> Result<Issued, StoreError> {
        let now = self.clock.now();
        let expires_at = ttl.map(|ttl| now + ttl.as_secs() as i64);
        let token = new_token(client, kind, scopes, expires_at, name, now);
        self.insert_new(token, now).await
    }

    /// Stores a token just made by [`new_token`], with its `token_created` event.
    pub(super) async fn insert_new(&self, token: Issued, now: i64) -> Result<Issued, StoreError> {
        let event = events::token_created(&token.record, now);
        self.store
            .insert_token(token.record.clone(), Some(event))
            .await?;
        Ok(token)
    }

    /// Revokes an API key and issues its replacement in one transaction. `None` when the key is
    /// unknown, not an API key, or already revoked.
    pub async fn rotate_api_key(&self, old_id: &str) -> Result<Option<Issued>, StoreError> {
        let Some(old) = self.store.get_token(old_id).await? else {
            return Ok(None);
        };
        if old.kind != TokenKind::ApiKey || old.revoked_at.is_some() {
            return Ok(None);
        }
        let Some(client) = self.store.get_client(&old.client_id).await? else {
            return Ok(None);
        };
        let now = self.clock.now();
        let Issued { record, value } = new_token(
            &client,
            TokenKind::ApiKey,
            old.scopes.clone(),
            None,
            old.name.clone(),
            now,
        );
        let events = vec![
            events::token_deleted(&old, Gone::Replaced(&record.id), now),
            events::token_created(&record, now),
        ];
        if !self
            .store
            .replace_api_key(old_id, record.clone(), now, events)
            .await?
        {
            return Ok(None);
        }
        self.cache.invalidate(&old.hash);
        Ok(Some(Issued { record, value }))
    }

    /// Revokes a token; the very next request with it is refused. `false` if unknown.
    pub async fn revoke(&self, token: &TokenRecord) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let event = events::token_deleted(token, Gone::Revoked, now);
        let found = self.store.revoke_token(&token.id, now, Some(event)).await?;
        self.cache.invalidate(&token.hash);
        Ok(found)
    }
}

fn secret_kind(kind: TokenKind) -> SecretKind {
    match kind {
        TokenKind::Access => SecretKind::AccessToken,
        TokenKind::ApiKey => SecretKind::ApiKey,
        TokenKind::Managed => SecretKind::ManagedToken,
    }
}

/// A new token for `client`: a fresh id and a fresh secret, of which the record keeps only the
/// hash (the value is shown once, in the answer that made it).
pub(super) fn new_token(
    client: &ClientRecord,
    kind: TokenKind,
    scopes: Vec<String>,
    expires_at: Option<i64>,
    name: Option<String>,
    now: i64,
) -> Issued {
    let prefix = match kind {
        TokenKind::Access => "at_",
        TokenKind::ApiKey => "ak_",
        TokenKind::Managed => "mt_",
    };
    let minted = secret::mint(secret_kind(kind));
    let record = TokenRecord {
        id: secret::new_id(prefix),
        hash: minted.hash,
        kind,
        client_id: client.id.clone(),
        account: client.account.clone(),
        name,
        user: None,
        audience: None,
        scopes,
        trusted_ips: client.trusted_ips.clone(),
        created_at: now,
        updated_at: now,
        expires_at,
        enabled: true,
        disabled_reason: None,
        revoked_at: None,
        replaced_by: None,
    };
    Issued {
        record,
        value: minted.value,
    }
}
