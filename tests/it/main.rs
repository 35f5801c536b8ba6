//! The one integration test binary: each module starts real servers through [`harness`].

mod algorithms;
mod connections;
mod foundation;
mod harness;
mod idempotency;
mod issuer;
mod lenient;
mod routing;
mod signatures;
mod tokens;
