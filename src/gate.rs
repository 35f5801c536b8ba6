//! The checks a proxied request must pass, cheapest and most identifying first. Each check is a
//! plain function over parsed request parts that returns a decision; `problem` turns a refusal
//! into a response.

pub mod admit;
pub mod allowlist;
pub mod bearer;
pub mod client_ip;
pub mod digest;
pub mod idempotency;
pub mod nonce;
pub mod signature;
