//! Start-up: [`Warden`]'s shared state built from the
//! settings (TLS material, router, forwarder, issuer, gates, webhooks, forward auth, metrics).

use std::sync::Arc;

use super::{StartError, Warden};
use crate::clock::Clock;
use crate::coarse_timer::{self, CoarseTimer};
use crate::config::Settings;
use crate::forward::Forwarder;
use crate::gate::allowlist::Allowlist;
use crate::gate::idempotency::{Idempotency, ResponseSeal};
use crate::gate::signature::SignatureGate;
use crate::issuer::Issuer;
use crate::metrics::Metrics;
use crate::router::Router;
use crate::store::{self, StoreOptions};
use crate::webhooks::Webhooks;

impl Warden {
    /// Builds the shared state: opens (creating and migrating) the store and writes the
    /// config-declared clients into it. Fails, before anything binds, on unusable TLS material
    /// or an unusable store.
    pub async fn new(settings: Settings) -> Result<Arc<Self>, StartError> {
        Self::with_clock(settings, Clock::default()).await
    }

    /// [`Warden::new`] with a given clock (tests move it forward).
    pub async fn with_clock(settings: Settings, clock: Clock) -> Result<Arc<Self>, StartError> {
        let tls = match &settings.server.tls {
            Some(files) => Some(Arc::new(
                crate::tls::TlsReloader::load(files).map_err(StartError::Tls)?,
            )),
            None => None,
        };
        let router = Router::new(&settings.endpoints, settings.routes.clone())
            .case_insensitive(settings.router.case_insensitive);
        let timer = CoarseTimer::start(coarse_timer::DEFAULT_TICK);
        let forwarder = Forwarder::new(settings.upstream.clone(), timer.clone());
        // Recorded when something serves them: `endpoints.metrics` or the admin listener.
        let metrics = (settings.endpoints.metrics.is_some() || settings.admin.listen.is_some())
            .then(|| Arc::new(Metrics::new(&settings.routes)));
        let options = StoreOptions {
            timing: metrics.as_ref().map(|m| m.store_timing()),
            ..settings.store.options.clone()
        };
        let store = store::open(&settings.store.url, options).await?;
        let issuer = Issuer::new(store, settings.tokens.clone(), clock);
        issuer.bootstrap(&settings.clients).await?;
        issuer.start_feed().await?;
        let signatures = SignatureGate::new(
            &settings.signatures,
            settings.signature_context(),
            issuer.challenge(),
        )
        .with_store(issuer.store().clone());
        signatures.follow(issuer.feed());
        signatures.fence_nonces(issuer.clock().now());
        let allowlist = Allowlist::new(
            settings.server.allow_ips.clone(),
            settings.server.deny_ips.clone(),
        );
        let secret = store::seal_key::load(&settings.store.url, &settings.store.seal_key_file)
            .map_err(StartError::SealKey)?;
        let seal = ResponseSeal::new(&secret)
            .ok_or_else(|| StartError::SealKey("cannot derive the sealing key".into()))?;
        let idempotency = Idempotency::new(
            settings.idempotency.clone(),
            settings.upstream.timeout,
            issuer.store().clone(),
            issuer.clock().clone(),
            timer.clone(),
            seal,
        );
        let webhooks = Webhooks::new(
            issuer.store().clone(),
            issuer.clock().clone(),
            settings.webhooks.clone(),
            &secret,
        )
        .map_err(StartError::Webhooks)?;
        webhooks.apply_config(true).await?;
        let idp = crate::idp::Idp::new(
            &settings.issuers,
            issuer.clock().clone(),
            &settings.tokens.realm,
        );
        let forward_auth = crate::forward_auth::ForwardAuth::new(
            settings.endpoints.forward_auth.as_ref(),
            &settings.routes,
            &settings.forward_auth,
        );
        if let Some(m) = &metrics {
            m.count_lookups("token", issuer.token_cache_lookups());
            m.count_lookups("signature_key", signatures.key_cache_lookups());
            m.count_deliveries(&webhooks.stats().deliveries);
        }
        for route in settings
            .routes
            .iter()
            .filter(|r| r.policy.checks.any_report())
        {
            tracing::warn!(
                route = %route.name,
                "some checks of this route only report: requests that fail them are forwarded"
            );
        }
        Ok(Arc::new(Self {
            metrics,
            forward_auth,
            idp,
            settings,
            timer,
            router,
            forwarder,
            issuer,
            idempotency,
            allowlist,
            signatures,
            tls,
            webhooks,
        }))
    }
}
