//! The RFC 7662 client: asks an issuer's introspection endpoint about an opaque token, with
//! Warden's client authentication (RFC 6749 §2.3.1). Concurrent requests with the same token
//! share one call, and at most `introspection_max_in_flight` calls run at once. What the answer
//! means for the request, and how long it is remembered, is `idp.rs`'s.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use http::{HeaderValue, Request, header};
use http_body_util::Full;
use serde_json::Value;

use super::fetch::{FetchError, Fetcher};
use super::jwt::Claims;
use super::settings::{ClientAuth, IntrospectionSettings};
use crate::store::Hash;

/// What the endpoint said about a token.
#[derive(Debug, Clone)]
pub enum Answer {
    /// `active: true`, with the rest of the response.
    Active(Arc<Claims>),
    /// `active: false` (or anything but `true`).
    Inactive,
}

/// The endpoint could not answer (unreachable, slow, an error status, not JSON), or too many
/// calls are under way. Nothing was learned about the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

type Call = Shared<BoxFuture<'static, Result<Answer, Unavailable>>>;

/// One issuer's introspection endpoint.
pub struct Introspector {
    issuer: String,
    settings: IntrospectionSettings,
    fetcher: Arc<Fetcher>,
    /// `Authorization: Basic …` for `client_secret_basic`.
    basic: Option<HeaderValue>,
    /// Calls under way, by the cache key of their token (never the token itself).
    inflight: Mutex<HashMap<Hash, Call>>,
    calls: AtomicU64,
}

impl Introspector {
    pub fn new(issuer: &str, settings: IntrospectionSettings, fetcher: Arc<Fetcher>) -> Self {
        let basic = (settings.auth == ClientAuth::ClientSecretBasic).then(|| {
            // RFC 6749 §2.3.1: both are form-encoded before they are joined and encoded.
            let id: String =
                form_urlencoded::byte_serialize(settings.client_id.as_bytes()).collect();
            let secret: String =
                form_urlencoded::byte_serialize(settings.secret.0.as_bytes()).collect();
            let mut v = HeaderValue::from_str(&format!(
                "Basic {}",
                STANDARD.encode(format!("{id}:{secret}"))
            ))
            .unwrap_or_else(|_| HeaderValue::from_static("Basic"));
            v.set_sensitive(true);
            v
        });
        Self {
            issuer: issuer.to_string(),
            settings,
            fetcher,
            basic,
            inflight: Mutex::new(HashMap::new()),
            calls: AtomicU64::new(0),
        }
    }

    /// Calls made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Asks about `token`, whose cache key is `key`; joins the call under way for the same
    /// key, if any.
    pub async fn introspect(
        self: &Arc<Self>,
        key: Hash,
        token: &str,
    ) -> Result<Answer, Unavailable> {
        let call = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            match inflight.get(&key) {
                Some(call) => call.clone(),
                None => {
                    if inflight.len() >= self.settings.max_in_flight {
                        tracing::warn!(issuer = %self.issuer, limit = self.settings.max_in_flight, "introspection calls at their limit (introspection_max_in_flight); request refused");
                        return Err(Unavailable);
                    }
                    self.calls.fetch_add(1, Ordering::Relaxed);
                    let this = self.clone();
                    let token = token.to_string();
                    // A task of its own, so the answer is had (and cached by the caller that
                    // awaits it) even if the request that began it goes away.
                    let task = tokio::spawn(async move {
                        let answer = this.call(&token).await;
                        this.inflight
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&key);
                        answer
                    });
                    let call = async move { task.await.unwrap_or(Err(Unavailable)) }
                        .boxed()
                        .shared();
                    inflight.insert(key, call.clone());
                    call
                }
            }
        };
        call.await
    }

    async fn call(&self, token: &str) -> Result<Answer, Unavailable> {
        let s = &self.settings;
        let form = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("token", token);
            form.append_pair("token_type_hint", "access_token");
            if s.auth == ClientAuth::ClientSecretPost {
                form.append_pair("client_id", &s.client_id);
                form.append_pair("client_secret", &s.secret.0);
            }
            form.finish()
        };
        let mut req = Request::post(s.endpoint.clone())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json");
        if let Some(basic) = &self.basic {
            req = req.header(header::AUTHORIZATION, basic.clone());
        }
        let req = req
            .body(Full::new(Bytes::from(form)))
            .map_err(|_| Unavailable)?;
        let body = self.fetcher.send(req).await.map_err(|e| {
            match &e {
                FetchError::Status(status) if status.as_u16() == 401 || status.as_u16() == 403 => {
                    tracing::error!(issuer = %self.issuer, endpoint = %s.endpoint, %status, "the introspection endpoint refused Warden's client credentials (introspection_client_id and its secret)");
                }
                _ => {
                    tracing::warn!(issuer = %self.issuer, endpoint = %s.endpoint, error = %e, "introspection failed");
                }
            }
            Unavailable
        })?;
        parse_answer(&body).inspect_err(|_| {
            tracing::warn!(issuer = %self.issuer, endpoint = %s.endpoint, "introspection answer is not a JSON object with a boolean \"active\"");
        })
    }
}

/// Reads an RFC 7662 §2.2 response: a JSON object whose `active` is a boolean.
pub fn parse_answer(body: &[u8]) -> Result<Answer, Unavailable> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return Err(Unavailable);
    };
    match map.get("active") {
        Some(Value::Bool(true)) => Ok(Answer::Active(Arc::new(Claims(map)))),
        Some(Value::Bool(false)) => Ok(Answer::Inactive),
        _ => Err(Unavailable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_boolean_true_is_active() {
        assert!(matches!(
            parse_answer(br#"{"active":true,"scope":"a"}"#),
            Ok(Answer::Active(_))
        ));
        assert!(matches!(
            parse_answer(br#"{"active":false}"#),
            Ok(Answer::Inactive)
        ));
        for bad in [
            &br#"{"active":"true"}"#[..],
            br#"{"active":1}"#,
            br#"{}"#,
            br#"[true]"#,
            b"active",
        ] {
            assert_eq!(
                parse_answer(bad).unwrap_err(),
                Unavailable,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
