//! Warden: an authentication sidecar in front of an HTTP API.
//!
//! # Layout
//! Read top to bottom, a request's way through (the picture is in `docs/architecture.md`).
//!
//! **Serving**
//! - [`server`]: accept loop, HTTP/1.1 + HTTP/2, connection limits, graceful shutdown.
//! - [`tls`]: the certificate files, the rustls acceptor and its reload without a restart.
//! - `server/admin.rs`: the admin listener (`[admin]`): metrics and health probes on their own
//!   socket, accepted and drained like the main listener.
//! - [`service`]: [`Warden`], the per-request handler: route → checks → own endpoint or forward.
//! - [`router`]: path normalisation and patterns → Warden endpoint or proxied route and policy.
//! - [`problem`]: the one place where a refusal becomes an `application/problem+json` (or
//!   OAuth error) response.
//! - [`body`]: the boxed body type, the small bodies and JSON answers Warden writes itself, and
//!   the errors a request body fails with.
//!
//! **Checks** (each decided in one file)
//! - [`gate`]: client IP and address lists, bearer credentials, signatures (and nonces),
//!   digests, idempotency keys; [`gate::admit`] is the sequence every credential goes through.
//! - [`checks`]: check names and a route's mode for each (`enforce`, or `report`: shadow mode).
//! - [`policy`]: the route-policy vocabulary the checks enforce (auth, signature, idempotency
//!   modes, the public URL clients sign against).
//! - [`scope`]: scope, audience and identifier validity, wildcard matching (`table://*.**`),
//!   route requirements.
//! - [`httpsig`]: RFC 9421 message signatures, pure (no I/O, no clock).
//! - [`digest`]: RFC 9530 `Content-Digest`, pure.
//! - [`idp`]: access tokens of other issuers (`[[issuers]]`): JWTs, JWKS, introspection.
//!
//! **Credentials Warden issues**
//! - [`issuer`]: clients, access tokens, API keys, managed tokens, revocation; its HTTP
//!   endpoints (`/v1/auth`, `/v1/oauth/*`, the tokens API) in `issuer/`.
//! - [`cache`]: the bounded credential cache and its invalidation generation.
//! - [`secret`]: minting secret values and hashing them (only hashes are stored).
//! - [`store`]: persistence behind the [`store::Store`] trait (SQLite backend in `store/sqlite/`,
//!   PostgreSQL in `store/postgres/`; one file per concern in each).
//! - [`events`]: the events about credentials (payloads, types, subscription patterns).
//! - [`webhooks`]: events about credentials, signed and delivered to subscribers at least once.
//!
//! **Around the proxy**
//! - [`forward`]: pooled upstream client, header hygiene (`forward/headers.rs`), the request
//!   body's limit and stall deadline (`forward/body_limit.rs`), streaming, upgrades.
//! - [`forward_auth`]: the decision endpoint for nginx `auth_request`, Envoy `ext_authz`, …
//! - [`response_signing`]: Warden's RFC 9421 signature on the responses of signed routes.
//! - [`devproxy`]: `warden dev-proxy`, the developer's local signing and token-refreshing proxy.
//!
//! **Foundations**
//! - [`config`]: defaults → TOML → `WARDEN_…` env (`config/load.rs`), read into the raw shape
//!   (`config/raw.rs`) and validated section by section (`config/<section>.rs`) into typed
//!   [`config::Settings`].
//! - [`clock`]: the clock every expiry reads (tests move it); [`coarse_timer`]: the cheap
//!   per-request deadlines.
//! - [`telemetry`]: log set-up.
//! - [`metrics`]: the Prometheus families of `endpoints.metrics`.
//! - [`net`]: whether an address lies in configured networks.
//! - `fuzzing` (tests and the `fuzzing` feature only): the parsers' fuzz entry points.
//!
//! The `warden` binary (`src/main.rs`, with `src/cli/` for the admin, webhook and development
//! commands) is a thin layer over this library.
//!
//! # Direction
//! Imports point one way: each concern owns its settings type (`forward::UpstreamSettings`,
//! `gate::signature::SignatureSettings`, …) and `config` builds them all from the TOML, so
//! nothing below `config` imports it; `service` assembles the concerns, `server` serves
//! `service`, and the binary sits on top. `.ci/structure.py --check` (run by `.ci/run`) fails
//! on any import cycle between these modules.

pub mod body;
pub mod cache;
pub mod checks;
pub mod clock;
pub mod coarse_timer;
pub mod config;
pub mod devproxy;
pub mod digest;
pub mod events;
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
pub mod net;
pub mod policy;
pub mod problem;
pub mod response_signing;
pub mod router;
pub mod scope;
pub mod secret;
pub mod server;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod webhooks;

pub use config::Settings;
pub use server::{run, run_with_admin};
pub use service::Warden;
