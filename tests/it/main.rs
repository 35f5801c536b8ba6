//! The one integration test binary: each module starts real servers through [`harness`].

mod admin;
mod algorithms;
mod connections;
mod devproxy;
mod forward_auth;
mod foundation;
mod harness;
mod idempotency;
mod idp;
mod issuer;
mod lenient;
mod metrics;
mod reload;
mod replicas;
mod responses;
mod routing;
mod shadow;
mod signatures;
mod stalls;
mod tokens;
mod webhooks;
