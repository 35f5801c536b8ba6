//! The [`Identity`] a verified token or an active introspection answer stands for: its client
//! (mapped to a Warden client or namespaced by issuer), user, scopes and audiences.

use std::sync::Arc;

use http::HeaderValue;
use sha2::{Digest, Sha256};

use super::Refusal;
use super::jwt::Claims;
use super::remote::RemoteIssuer;
use crate::cache::{Identity, Remote};
use crate::store::TokenKind;

/// The most audiences of one token kept on its identity.
const MAX_AUDIENCES: usize = 16;

impl RemoteIssuer {
    /// The identity a verified token or an active answer stands for.
    pub(super) fn identity(
        &self,
        claims: &Claims,
        until: Option<i64>,
        token: &str,
    ) -> Result<(Identity, bool), Refusal> {
        let s = &self.s;
        let raw_client = claims
            .str(&s.client_id_claim)?
            .filter(|c| !c.is_empty())
            .ok_or(Refusal::NoClient)?;
        let (client_id, mapped) = match s.clients.get(raw_client) {
            Some(local) => (local.clone(), true),
            None if crate::scope::valid_id(raw_client) => {
                (format!("{raw_client}@{}", s.name), false)
            }
            None => return Err(Refusal::BadClient),
        };
        let aud = claims.list("aud", false)?;
        if !s.audiences.is_empty() && !aud.iter().any(|a| s.audiences.iter().any(|w| w == a)) {
            return Err(Refusal::WrongAudience);
        }
        let audiences: Vec<String> = aud
            .iter()
            .filter(|a| crate::scope::valid_audience(a))
            .take(MAX_AUDIENCES)
            .map(|a| a.to_string())
            .collect();
        let mut granted = claims.list("scope", true)?;
        if granted.is_empty() {
            granted = claims.list("scp", true)?;
        }
        let mut scopes: Vec<String> = Vec::with_capacity(granted.len());
        for theirs in granted {
            let ours: Vec<&str> = match &s.scope_map {
                Some(map) => map
                    .get(theirs)
                    .map(|v| v.iter().map(String::as_str).collect())
                    .unwrap_or_default(),
                None => vec![theirs],
            };
            for scope in ours {
                if crate::scope::check(scope).is_ok() && !scopes.iter().any(|s| s == scope) {
                    scopes.push(scope.to_string());
                }
            }
        }
        let user = claims.str("sub")?.map(str::to_string);
        let token_id = match claims.str("jti")? {
            Some(jti) if jti.len() <= 128 && crate::scope::valid_scope(jti) => {
                format!("{jti}@{}", s.name)
            }
            _ => format!(
                "sha256:{}@{}",
                hex::encode(&Sha256::digest(token.as_bytes())[..16]),
                s.name
            ),
        };
        // Idempotency records are the client's, as for Warden's access tokens, but a client
        // acting for many users (a single-page app) keeps each user's apart.
        let namespace = match &user {
            Some(u) if u != raw_client => format!(
                "{client_id}/sub:{}",
                hex::encode(&Sha256::digest(u.as_bytes())[..16])
            ),
            _ => client_id.clone(),
        };
        let scopes_header = header(&scopes.join(" "));
        let audience_header = (!audiences.is_empty()).then(|| header(&audiences.join(" ")));
        Ok((
            Identity {
                token_id_header: header(&token_id),
                client_id_header: header(&client_id),
                token_id,
                kind: TokenKind::Access,
                client_id,
                account: s.account.clone(),
                user,
                audience: audiences.first().cloned(),
                scopes,
                trusted_ips: Vec::new(),
                client_trusted_ips: Vec::new(),
                expires_at: until,
                scopes_header,
                audience_header,
                remote: Some(Arc::new(Remote {
                    issuer: s.name.clone(),
                    audiences,
                    namespace,
                })),
            },
            mapped,
        ))
    }
}

fn header(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}
