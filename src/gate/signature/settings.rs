//! The gate's settings: `[signatures]` as validated by `config/signatures.rs`, the nonce modes,
//! and what the gate needs from other sections ([`SignatureContext`]).

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::HmacSecrets;
use crate::policy::{PublicUrl, SignatureMode};

/// `[signatures]`, validated by `config/signatures.rs` (the key of signed responses is
/// `Settings::response_signing`).
#[derive(Debug, Clone)]
pub struct SignatureSettings {
    /// `signatures.policy`, default `auto`: the mode of routes that set no `signature`.
    pub policy: SignatureMode,
    /// `signatures.auth_endpoint`, default `auto`: the mode of `/v1/auth`.
    pub auth_endpoint: SignatureMode,
    /// `signatures.public_url`, default none (the request's own scheme and `Host`).
    pub public_url: Option<PublicUrl>,
    /// `signatures.max_age`, default 5m: oldest `created` accepted.
    pub max_age: Duration,
    /// `signatures.clock_skew`, default 30s: tolerance for `created` in the future and
    /// `expires` in the past.
    pub clock_skew: Duration,
    /// `signatures.nonce`, default `optional`.
    pub nonce: NonceMode,
    /// `signatures.nonce_cache_capacity`, default 200000 nonces remembered.
    pub nonce_cache_capacity: u64,
    /// `signatures.nonce_cache_per_client`, default a quarter of the capacity: most live
    /// nonces of one client.
    pub nonce_cache_per_client: u64,
    /// `signatures.nonce_store`, default `auto`: where nonces are claimed besides memory.
    pub nonce_store: NonceStoreMode,
    /// `signatures.nonce_sweep_batch`, default 1000: most lapsed nonce claims one sweep
    /// transaction deletes (the sweep repeats, in bounded rounds, while batches come back full).
    pub nonce_sweep_batch: u32,
    /// `signatures.cover_if_present`, default `authorization`, `x-client-id`,
    /// `x-idempotency-key`, `idempotency-key`: fields a signature must cover when the request has them.
    pub cover_if_present: Vec<http::HeaderName>,
    /// `signatures.cover_always`, default none: components every signature must cover.
    pub cover_always: Vec<String>,
    /// `signatures.key_cache_capacity`, default 100000 clients' parsed keys kept in memory.
    pub key_cache_capacity: u64,
    /// `signatures.verify_batch_max`, default 64: most signatures verified together (1 = each
    /// on its own).
    pub verify_batch_max: usize,
}

/// Whether a signature may, must or must not carry a `nonce` (replay-checked when present).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NonceMode {
    /// Nonces are not looked at.
    Off,
    /// A nonce, when present, is refused if seen before within the signature window.
    Optional,
    /// Every signature must carry a nonce, refused if seen before.
    Required,
}

/// Where signature nonces are claimed (`signatures.nonce_store`): memory only (one process),
/// or also the store, so that every Warden on it refuses a nonce used at any of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NonceStoreMode {
    /// The store when it is PostgreSQL (replicas), memory with SQLite.
    #[default]
    Auto,
    /// This process's memory only.
    Memory,
    /// The store too: one write per signed request that carries a nonce.
    Store,
}

/// What the gate needs from sections other than `[signatures]`, gathered by the caller
/// (`config::Settings::signature_context`).
#[derive(Debug, Clone, Default)]
pub struct SignatureContext {
    /// `clients[].signature` of config-declared clients; others are `auto`.
    pub client_modes: HashMap<String, SignatureMode>,
    /// The HMAC secrets of config-declared clients (never in the store).
    pub hmac_secrets: HmacSecrets,
    /// `tokens.cache_ttl`: how long a client's parsed keys are kept.
    pub key_ttl: Duration,
    /// Whether the store is PostgreSQL (`store.url`).
    pub postgres: bool,
    /// Whether `store.durability` is `full`.
    pub durability_full: bool,
}
