//! Configuration: built-in defaults, then the TOML file, then `WARDEN_…` environment variables
//! (`__` between levels), read into a raw serde shape and validated into typed [`Settings`].
//! Nothing here is parsed again per request; a bad value stops Warden before it binds.
//!
//! Layout: `load.rs` reads the sources into [`RawConfig`] (the sections' serde shapes are in
//! `raw.rs`); [`Settings::validate`] calls one function per section, each in its own file with
//! its unit tests (`server.rs`, `upstream.rs`, `endpoints.rs`, `log.rs`, `routes.rs`, `store.rs`
//! with `postgres.rs`, `tokens.rs`, `idempotency.rs`, `signatures.rs`, `clients.rs`,
//! `issuers.rs`, `webhooks.rs`, `forward_auth.rs`, `admin.rs`); `values.rs` holds the value
//! checks several sections share. Each section's typed settings belong to the concern that
//! uses them (`forward::UpstreamSettings`, `router::EndpointSettings`, …): config builds them
//! from the top, and the concerns it builds never import it (only modules above it do:
//! `service`, `server`, `admin`, `telemetry`, `devproxy` and the CLI).

mod admin;
mod clients;
mod endpoints;
mod forward_auth;
mod idempotency;
mod issuers;
mod load;
mod log;
mod postgres;
mod raw;
mod routes;
mod server;
mod signatures;
mod store;
mod tokens;
mod upstream;
mod values;
mod webhooks;

pub use self::admin::{AdminSettings, RawAdmin};
pub use self::issuers::validate_issuers;
pub use self::postgres::RawPostgres;
pub use self::raw::{
    Durability, RawClient, RawClientKey, RawDigest, RawEndpoints, RawIdempotency, RawLog, RawRoute,
    RawRouter, RawServer, RawSignatures, RawStore, RawTls, RawUpstream,
};
pub use self::server::ServerSettings;
pub use self::values::parse_cidrs;
pub use self::webhooks::validate_webhooks;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use self::clients::{hmac_secrets, validate_clients};
use self::endpoints::validate_endpoints;
use self::forward_auth::validate_forward_auth;
use self::idempotency::validate_idempotency;
use self::log::validate_log;
use self::routes::validate_routes;
use self::server::validate_server;
use self::signatures::{validate_response_signing, validate_signatures};
use self::store::validate_store;
use self::tokens::validate_tokens;
use self::upstream::validate_upstream;
use self::values::{parse_public_url, validate_components};
use crate::forward::UpstreamSettings;
use crate::gate::digest::DigestSettings;
use crate::gate::idempotency::IdempotencySettings;
use crate::gate::signature::{SignatureContext, SignatureSettings};
use crate::issuer::{ClientSettings, TokenSettings};
use crate::response_signing::ResponseSigning;
use crate::router::{EndpointSettings, Route};
use crate::store::StoreSettings;
use crate::telemetry::LogSettings;

/// Why the configuration was refused. Each message names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path} not found")]
    Missing { path: PathBuf },
    #[error("{key}: {detail}{source_name}")]
    Load {
        key: String,
        detail: String,
        source_name: String,
    },
    #[error("{key}: {detail}")]
    Invalid { key: String, detail: String },
}

fn invalid(key: impl Into<String>, detail: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        detail: detail.into(),
    }
}

// ------------------------------------------------------------------ raw shape

/// The configuration as written. Every struct refuses unknown keys.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub server: RawServer,
    pub upstream: RawUpstream,
    pub log: RawLog,
    pub endpoints: RawEndpoints,
    pub store: RawStore,
    pub tokens: TokenSettings,
    pub signatures: RawSignatures,
    pub digest: RawDigest,
    pub idempotency: RawIdempotency,
    pub router: RawRouter,
    pub routes: Vec<RawRoute>,
    pub clients: Vec<RawClient>,
    pub webhook_delivery: crate::webhooks::config::RawWebhookDelivery,
    pub webhooks: Vec<crate::webhooks::config::RawWebhook>,
    /// `[[issuers]]`: identity providers whose access tokens are accepted (see `idp.rs`).
    pub issuers: Vec<crate::idp::settings::RawIssuer>,
    /// `[forward_auth]`: the decision cache of `endpoints.forward_auth`.
    pub forward_auth: crate::forward_auth::RawForwardAuth,
    /// `[admin]`: the admin listener (metrics, health), off by default (`config/admin.rs`).
    pub admin: RawAdmin,
}

// ------------------------------------------------------------------ typed settings

/// Validated settings: every string that matters on the request path is parsed here, once.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub upstream: UpstreamSettings,
    pub log: LogSettings,
    pub endpoints: EndpointSettings,
    pub store: StoreSettings,
    pub tokens: TokenSettings,
    pub signatures: SignatureSettings,
    /// `signatures.response_key_*`: the key of signed responses; `None` without a key file.
    pub response_signing: Option<ResponseSigning>,
    pub digest: DigestSettings,
    pub idempotency: IdempotencySettings,
    pub clients: Vec<ClientSettings>,
    pub router: RawRouter,
    pub routes: Vec<Route>,
    /// `[webhook_delivery]` and `[[webhooks]]`.
    pub webhooks: crate::webhooks::config::WebhookSettings,
    /// `[[issuers]]`, validated; default none.
    pub issuers: Vec<crate::idp::settings::IssuerSettings>,
    /// `[forward_auth]`, validated.
    pub forward_auth: crate::forward_auth::ForwardAuthSettings,
    /// `[admin]`, validated.
    pub admin: AdminSettings,
}

impl Settings {
    /// Turns the raw shape into typed settings, naming the key of the first bad value. Each
    /// section is validated by its own module.
    pub fn validate(raw: RawConfig) -> Result<Self, ConfigError> {
        let server = validate_server(&raw.server)?;
        let signatures = validate_signatures(&raw.signatures)?;
        let response_signing = validate_response_signing(&raw.signatures)?;
        let upstream = validate_upstream(&raw.upstream)?;
        let endpoints = validate_endpoints(&raw.endpoints, &server.trusted_proxies)?;
        let log = validate_log(&raw.log)?;
        let routes = validate_routes(&raw, &signatures)?;
        let admin = raw.admin.validate(server.listen, &raw.endpoints.metrics)?;

        Ok(Settings {
            server,
            upstream,
            log,
            endpoints,
            store: validate_store(&raw.store)?,
            tokens: validate_tokens(&raw.tokens)?,
            signatures,
            response_signing,
            digest: DigestSettings {
                verify_unsigned: raw.digest.verify_unsigned,
            },
            idempotency: validate_idempotency(&raw.idempotency, raw.upstream.timeout)?,
            clients: validate_clients(&raw.clients)?,
            router: raw.router.clone(),
            routes,
            webhooks: validate_webhooks(&raw.webhook_delivery, &raw.webhooks)?,
            issuers: validate_issuers(&raw.issuers)?,
            forward_auth: validate_forward_auth(&raw.forward_auth)?,
            admin,
        })
    }

    /// What the signature gate needs beyond `[signatures]`: the declared clients' modes and
    /// HMAC secrets, how long keys are cached, and what the store promises.
    pub fn signature_context(&self) -> SignatureContext {
        SignatureContext {
            client_modes: self
                .clients
                .iter()
                .map(|c| (c.id.clone(), c.signature))
                .collect(),
            hmac_secrets: hmac_secrets(&self.clients),
            key_ttl: self.tokens.cache_ttl,
            postgres: crate::store::postgres::is_postgres_url(&self.store.url),
            durability_full: self.store.options.durability == Durability::Full,
        }
    }
}

#[cfg(test)]
mod tests;
