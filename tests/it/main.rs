//! The one integration test binary: each module starts real servers through [`harness`].

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
mod replicas;
mod responses;
mod routing;
mod signatures;
mod tokens;
mod webhooks;
