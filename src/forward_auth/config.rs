//! `[forward_auth]` (the decision cache) as written and validated (by
//! `config/forward_auth.rs`, which also checks `endpoints.forward_auth`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[forward_auth]` as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawForwardAuth {
    /// Most decisions kept; default 10000; 0 turns the cache off.
    pub cache_capacity: u64,
    /// Longest a decision is kept; default 5s. A revocation or client change ends it at once
    /// whatever this says; it bounds the memory of decisions nobody asks for again.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
}

impl Default for RawForwardAuth {
    fn default() -> Self {
        Self {
            cache_capacity: 10_000,
            cache_ttl: Duration::from_secs(5),
        }
    }
}

/// `[forward_auth]`, validated.
#[derive(Debug, Clone)]
pub struct ForwardAuthSettings {
    /// `forward_auth.cache_capacity`, default 10000 (0: no cache).
    pub cache_capacity: u64,
    /// `forward_auth.cache_ttl`, default 5s.
    pub cache_ttl: Duration,
}
