//! Warden: an authentication sidecar in front of an HTTP API.
//!
//! Module map (see `docs/architecture.md`):
//! - [`config`]: defaults → TOML → `WARDEN_…` env, validated into typed [`config::Settings`].
//! - [`server`]: accept loop, TLS, HTTP/1.1 + HTTP/2, limits, graceful shutdown.
//! - [`service`]: the per-request handler: route → checks → own endpoint or forward.
//! - [`router`]: path patterns and methods → Warden endpoint or proxied route with its policy.
//! - [`scope`]: scope validity and wildcard matching (`table://*.**`), route scope requirements.
//! - [`gate`]: the checks, one file each (client IP, …).
//! - [`idp`]: access tokens of other issuers (`[[issuers]]`): JWTs, JWKS, introspection.
//! - [`forward`]: pooled upstream client, header hygiene, streaming, upgrades.
//! - [`forward_auth`]: the decision endpoint for nginx `auth_request`, Envoy `ext_authz`, …
//! - [`problem`]: the one place where refusals become `application/problem+json` responses.
//! - [`body`]: the boxed body type shared by all of the above.
//! - [`response_signing`]: Warden's RFC 9421 signature on the responses of signed routes.
//! - [`devproxy`]: `warden dev-proxy`, the developer's local signing and token-refreshing proxy.
//! - [`telemetry`]: log set-up and header redaction.
//! - [`metrics`]: the Prometheus families of `endpoints.metrics`.
//! - [`checks`]: check names and a route's mode for each (`enforce` or `report`).
//! - [`webhooks`]: events about credentials, signed and delivered to subscribers at least once.

pub mod body;
pub mod cache;
pub mod checks;
pub mod clock;
pub mod coarse_timer;
pub mod config;
pub mod devproxy;
pub mod digest;
pub mod forward;
pub mod forward_auth;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod gate;
pub mod httpsig;
pub mod idp;
pub mod issuer;
pub mod metrics;
pub mod problem;
pub mod response_signing;
pub mod router;
pub mod scope;
pub mod secret;
pub mod server;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod webhooks;

pub use config::Settings;
pub use server::run;
pub use service::Warden;
