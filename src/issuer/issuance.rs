//! Issuing, rotating and revoking Warden's own credentials.

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
        let now = self.clock.now();
        let ttl = self.cfg.access_ttl.as_secs() as i64;
        self.issue(
            client,
            TokenKind::Access,
            scopes,
            Some(now + ttl),
            None,
            now,
        )
        .await
    }

    /// Issues a long-lived API key with the client's full scopes.
    pub async fn issue_api_key(
        &self,
        client: &ClientRecord,
        name: Option<String>,
    ) -> Result<Issued, StoreError> {
        let now = self.clock.now();
        self.issue(
            client,
            TokenKind::ApiKey,
            client.scopes.clone(),
            None,
            name,
            now,
        )
        .await
    }

    async fn issue(
        &self,
        client: &ClientRecord,
        kind: TokenKind,
        scopes: Vec<String>,
        expires_at: Option<i64>,
        name: Option<String>,
        now: i64,
    ) -> Result<Issued, StoreError> {
        let record = new_token_record(client, kind, scopes, expires_at, name, now);
        let minted = secret::mint(secret_kind(kind));
        let record = TokenRecord {
            hash: minted.hash,
            ..record
        };
        let event = events::token_created(&record, now);
        self.store.insert_token(record.clone(), Some(event)).await?;
        Ok(Issued {
            record,
            value: minted.value,
        })
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
        let minted = secret::mint(SecretKind::ApiKey);
        let record = TokenRecord {
            hash: minted.hash,
            name: old.name.clone(),
            ..new_token_record(
                &client,
                TokenKind::ApiKey,
                old.scopes.clone(),
                None,
                None,
                now,
            )
        };
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
        Ok(Some(Issued {
            record,
            value: minted.value,
        }))
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

/// A token record for `client` with a fresh id; its `hash` is filled in by the caller.
pub(super) fn new_token_record(
    client: &ClientRecord,
    kind: TokenKind,
    scopes: Vec<String>,
    expires_at: Option<i64>,
    name: Option<String>,
    now: i64,
) -> TokenRecord {
    let prefix = match kind {
        TokenKind::Access => "at_",
        TokenKind::ApiKey => "ak_",
        TokenKind::Managed => "mt_",
    };
    TokenRecord {
        id: secret::new_id(prefix),
        hash: [0; 32],
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
    }
}
