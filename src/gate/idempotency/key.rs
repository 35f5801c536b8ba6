//! The idempotency key itself: read from its header fields and validated, the request's
//! fingerprint (method, target and body digest), and the namespace a credential's keys live in.

use std::borrow::Cow;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use sha2::{Digest, Sha256};

use crate::cache::Identity;
use crate::problem::Problem;
use crate::store::{Hash, TokenKind};

/// The longest key accepted (draft §2.2 leaves the format to the resource; 255 is Pipevest's).
pub const MAX_KEY_LEN: usize = 255;

pub(super) fn invalid(detail: String) -> Problem {
    Problem::IdempotencyKeyInvalid { detail }
}

/// The idempotency key of a request, from the first of `names` present (all present must
/// agree). Validated here, before any lookup: one field line per name, 1 to [`MAX_KEY_LEN`]
/// visible ASCII characters, given as an sf-string (`"…"`, the draft's form) or as a plain value.
pub fn key_from(headers: &HeaderMap, names: &[HeaderName]) -> Result<Option<String>, Problem> {
    let mut found: Option<(String, &HeaderName)> = None;
    for name in names {
        let mut values = headers.get_all(name).iter();
        let Some(value) = values.next() else {
            continue;
        };
        if values.next().is_some() {
            return Err(invalid(format!("{name} is repeated; send one key")));
        }
        let key = parse_key(value.as_bytes()).map_err(|why| invalid(format!("{name}: {why}")))?;
        match &found {
            Some((first, first_name)) if *first != key => {
                return Err(invalid(format!(
                    "{first_name} and {name} carry different keys; send one"
                )));
            }
            Some(_) => {}
            None => found = Some((key, name)),
        }
    }
    Ok(found.map(|(key, _)| key))
}

/// Parses one field value into a key.
pub fn parse_key(value: &[u8]) -> Result<String, &'static str> {
    let key = if value.first() == Some(&b'"') {
        let item: sfv::Item = sfv::Parser::new(value)
            .parse()
            .map_err(|_| "not a valid structured-field string")?;
        match item.bare_item {
            sfv::BareItem::String(s) => s.as_str().to_owned(),
            _ => return Err("not a valid structured-field string"),
        }
    } else {
        String::from_utf8(value.to_vec()).map_err(|_| "must be visible ASCII")?
    };
    if key.is_empty() {
        return Err("must not be empty");
    }
    if key.len() > MAX_KEY_LEN {
        return Err("longer than 255 characters");
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be visible ASCII without spaces");
    }
    Ok(key)
}

/// How the body enters a request's fingerprint.
#[derive(Debug, Clone, Copy)]
pub enum BodyDigest<'a> {
    /// The request's `Content-Digest`, which the digest check holds the body to.
    Verified(&'a HeaderValue),
    /// The body itself, held whole.
    Bytes(&'a [u8]),
}

/// What a key is bound to: method, path and query (as sent), and the body. A retry must match
/// it; the same key with another fingerprint is `idempotency_key_reused`.
pub fn fingerprint(method: &Method, uri: &Uri, body: BodyDigest<'_>) -> Hash {
    let mut h = Sha256::new();
    h.update(b"warden idempotency v1\n");
    h.update(method.as_str().as_bytes());
    h.update(b" ");
    h.update(
        uri.path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/")
            .as_bytes(),
    );
    match body {
        BodyDigest::Verified(value) => {
            h.update(b"\ncontent-digest: ");
            h.update(value.as_bytes());
        }
        BodyDigest::Bytes(bytes) => {
            h.update(b"\nbody: ");
            h.update(bytes);
        }
    }
    h.finalize().into()
}

/// The namespace a proxied request's keys live in: whose requests a key can be a retry of.
///
/// An access token (from `/v1/auth` or `/v1/oauth/token`) is the client itself: whoever holds
/// the client's secret mints as many as they like, and one lasts an hour (`tokens.access_ttl`)
/// where a record lasts a day, so its records are the client's (`client id`): a retry made with a
/// refreshed token finds its record instead of running the request again. API keys and managed
/// tokens are handed to different people or systems of one client, so their records are their
/// own (`client id/token id`): another credential of the client neither gets their response nor
/// learns from 409 or 422 that the key is in use. (`/` never appears in a client id.)
pub fn namespace(identity: &Identity) -> Cow<'_, str> {
    // A token of another issuer: per client and user (`idp.rs` says which).
    if let Some(remote) = &identity.remote {
        return Cow::Borrowed(&remote.namespace);
    }
    match identity.kind {
        TokenKind::Access => Cow::Borrowed(&identity.client_id),
        TokenKind::ApiKey | TokenKind::Managed => {
            Cow::Owned(format!("{}/{}", identity.client_id, identity.token_id))
        }
    }
}
