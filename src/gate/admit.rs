//! Admission: the one sequence every caller holding a credential goes through after it,
//! written once. The credential's client must be the `X-Client-Id` the request names, the
//! request must carry the signature its endpoint and client call for, and the body's
//! `Content-Digest` is planned (checked as the body streams or is read). Proxied routes
//! (`Warden::signed`, also behind forward auth), the tokens and webhooks APIs and
//! `DELETE /v1/auth` call it; `POST /v1/auth` cannot, as it checks the secret first and the
//! signature against the client record the secret found (see `issuer::auth::create`).

use http::Request;

use crate::digest::DigestVerifier;
use crate::gate::client_ip::Origin;
use crate::gate::digest;
use crate::gate::signature::{Endpoint, RequestParts, SignatureGate, Verdict};
use crate::policy::SignatureMode;
use crate::problem::Problem;
use crate::store::Store;

/// What an admitted request carries on.
#[derive(Debug)]
pub struct Admission {
    /// The check of the body's `Content-Digest`, if the body gets one.
    pub digest: Option<DigestVerifier>,
    /// The label of the verified signature, if one was (a signed response binds it).
    pub label: Option<String>,
}

impl<'a> RequestParts<'a> {
    /// What the checks read of `req`, arrived from `origin`; `has_body`: whether a body follows
    /// that will be read (and so can be checked against its digest).
    pub fn of<B>(req: &'a Request<B>, origin: &'a Origin, has_body: bool) -> Self {
        Self {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
            has_body,
            origin,
        }
    }
}

impl SignatureGate {
    /// Admits a request of `client_id` (already authenticated) at `at`: `X-Client-Id`, then
    /// the signature (the client's keys loaded only when the endpoint's mode is not `off`),
    /// then the digest plan: a digest is checked when the signature covers it or
    /// `verify_unsigned` (`digest.verify_unsigned`) says so.
    pub async fn admit(
        &self,
        store: &dyn Store,
        parts: &RequestParts<'_>,
        at: &Endpoint<'_>,
        client_id: &str,
        now: i64,
        verify_unsigned: bool,
    ) -> Result<Admission, Problem> {
        let verdict = self.verdict(store, parts, at, client_id, now).await?;
        Ok(Admission {
            digest: plan_digest(&verdict, parts, verify_unsigned)?,
            label: verdict.label().map(str::to_owned),
        })
    }

    /// The first two steps of [`SignatureGate::admit`], for a caller that reports the
    /// signature and the digest as separate checks (the proxy, under shadow mode): then
    /// [`plan_digest`].
    pub async fn verdict(
        &self,
        store: &dyn Store,
        parts: &RequestParts<'_>,
        at: &Endpoint<'_>,
        client_id: &str,
        now: i64,
    ) -> Result<Verdict, Problem> {
        self.check_client_id(parts.headers, client_id)?;
        if at.mode == SignatureMode::Off {
            return Ok(Verdict::Unchecked);
        }
        let keys = self.client_keys(store, client_id).await?;
        self.check(parts, at, client_id, &keys, now, true).await
    }
}

/// The last step of admission: the check of the body's `Content-Digest`, when the verified
/// signature covers it or `verify_unsigned` (`digest.verify_unsigned`) asks for it anyway.
pub fn plan_digest(
    verdict: &Verdict,
    parts: &RequestParts<'_>,
    verify_unsigned: bool,
) -> Result<Option<DigestVerifier>, Problem> {
    digest::plan(parts.headers, verdict.digest_covered() || verify_unsigned)
}
