//! The one integration test binary: each module starts real servers through [`harness`].

mod connections;
mod foundation;
mod harness;
mod idempotency;
mod idp;
mod issuer;
mod lenient;
mod routing;
mod signatures;
mod tokens;
mod webhooks;
