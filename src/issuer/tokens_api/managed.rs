//! The issuer's side of managed tokens: find, list, create, enable/disable, rename and
//! delete them in the store, with their change events, and drop them from the token cache.

use super::ManagedSpec;
use crate::events::{self, Gone};
use crate::issuer::{Issued, Issuer, new_token};
use crate::store::{ClientRecord, StoreError, TokenKind, TokenRecord};

impl Issuer {
    /// A managed token by id, if there is one and it belongs to `account` (any, for `None`).
    pub async fn managed_token(
        &self,
        id: &str,
        account: Option<&str>,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let token = self.store.get_token(id).await?;
        Ok(
            token
                .filter(|t| t.kind == TokenKind::Managed && account.is_none_or(|a| a == t.account)),
        )
    }

    /// An account's managed tokens, oldest first.
    pub async fn managed_tokens(&self, account: &str) -> Result<Vec<TokenRecord>, StoreError> {
        self.store
            .list_tokens(account, Some(TokenKind::Managed))
            .await
    }

    /// Creates a managed token for `client` (its account, its trusted IPs) from a vetted spec;
    /// the value is in the answer, and nowhere else ever again.
    pub async fn create_managed_token(
        &self,
        client: &ClientRecord,
        spec: ManagedSpec,
    ) -> Result<Issued, StoreError> {
        let now = self.clock.now();
        let mut token = new_token(
            client,
            TokenKind::Managed,
            spec.scopes,
            spec.expires_at,
            Some(spec.name),
            now,
        );
        token.record.user = spec.user;
        token.record.audience = spec.audience;
        self.insert_new(token, now).await
    }

    /// Enables or disables a managed token (with a reason); the very next request with it
    /// sees the change, here at once and on every other instance through the change feed.
    /// Returns the token as it now is (`None` if it went away meanwhile).
    pub async fn set_managed_enabled(
        &self,
        token: &TokenRecord,
        enabled: bool,
        reason: Option<String>,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let now = self.clock.now();
        let event = events::token_enabled(token, enabled, reason.as_deref(), now);
        let found = self
            .store
            .set_token_enabled(&token.id, enabled, reason, now, Some(event))
            .await?;
        self.cache.invalidate(&token.hash);
        if !found {
            return Ok(None);
        }
        self.store.get_token(&token.id).await
    }

    /// Renames a managed token; returns it as it now is.
    pub async fn rename_managed_token(
        &self,
        token: &TokenRecord,
        name: String,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let now = self.clock.now();
        let event = events::token_renamed(token, &name, now);
        let found = self
            .store
            .rename_token(&token.id, name, now, Some(event))
            .await?;
        self.cache.invalidate(&token.hash);
        if !found {
            return Ok(None);
        }
        self.store.get_token(&token.id).await
    }

    /// Deletes a managed token for good; the very next request with it is refused.
    pub async fn delete_managed_token(&self, token: &TokenRecord) -> Result<bool, StoreError> {
        let event = events::token_deleted(token, Gone::Deleted, self.clock.now());
        let found = self.store.delete_token(&token.id, Some(event)).await?;
        self.cache.invalidate(&token.hash);
        Ok(found)
    }
}
