//! Idempotency records: what a key was used for, the reservation that guards it, the
//! [`IdempotencyStore`] trait, and the header block a stored response is kept in (one codec for
//! every backend).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Hash, StoreError};

/// A recorded response, replayed for a repeated idempotency key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    /// The HTTP status, or [`StoredResponse::NOT_REPLAYABLE`].
    pub status: u16,
    /// Header names and raw values, in order; repeated names allowed.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl StoredResponse {
    /// The status of a marker: the request ran, but its response was not kept (streamed, too
    /// large, or cut short), so a retry must be refused rather than run again. The body holds
    /// the reason as text.
    pub const NOT_REPLAYABLE: u16 = 0;

    /// A marker record (see [`StoredResponse::NOT_REPLAYABLE`]).
    pub fn not_replayable(reason: &str) -> Self {
        Self {
            status: Self::NOT_REPLAYABLE,
            headers: Vec::new(),
            body: reason.as_bytes().to_vec(),
        }
    }

    /// Whether this is a response to replay rather than a marker.
    pub fn is_replayable(&self) -> bool {
        self.status != Self::NOT_REPLAYABLE
    }
}

/// Where an idempotent request stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdempotencyState {
    /// A request holds the key until `lease_until` (unix seconds); after that the reservation is
    /// an orphan (its holder crashed) and the next [`IdempotencyStore::reserve_idempotency`]
    /// takes it over.
    InFlight { lease_until: i64 },
    /// The request completed with this response.
    Done(StoredResponse),
}

/// `(client, key)` → the request it was first used for and what became of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub client_id: String,
    pub key: String,
    /// Hash of the request (method, path, body digest…), chosen by the caller.
    pub fingerprint: Hash,
    pub state: IdempotencyState,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds after which the record is void and may be swept.
    pub expires_at: i64,
}

impl IdempotencyRecord {
    /// How the record answers a reservation of `fingerprint` at `now` while it is live (not
    /// expired, and not an in-flight reservation whose lease ran out); `None` when it no longer
    /// counts and the reservation takes the key over. The rule every backend applies.
    pub(crate) fn live_answer(self, fingerprint: &Hash, now: i64) -> Option<Reservation> {
        let live = now < self.expires_at
            && match self.state {
                IdempotencyState::InFlight { lease_until } => now < lease_until,
                IdempotencyState::Done(_) => true,
            };
        if !live {
            return None;
        }
        if self.fingerprint != *fingerprint {
            return Some(Reservation::Mismatch);
        }
        Some(match self.state {
            IdempotencyState::InFlight { lease_until } => Reservation::InFlight { lease_until },
            IdempotencyState::Done(_) => Reservation::Done(Box::new(self)),
        })
    }
}

/// The answer of [`IdempotencyStore::reserve_idempotency`].
///
/// The store compares fingerprints itself, inside the reserving transaction, so a caller never
/// sees a record made for a different request: `InFlight` and `Done` always match the fingerprint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reservation {
    /// The caller now holds the key: a new record, or one taken over because it had expired or its
    /// in-flight lease had run out (the orphan of a crash). Run the request, then
    /// [`IdempotencyStore::complete_idempotency`] or [`IdempotencyStore::release_idempotency`].
    Reserved,
    /// The same request is running elsewhere and holds the key until `lease_until`.
    InFlight { lease_until: i64 },
    /// The same request already completed: replay its response.
    Done(Box<IdempotencyRecord>),
    /// The key is live but was used for a different request (another fingerprint).
    Mismatch,
}

/// Idempotency records: reservation, completion or release under a lease, and the sweep.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Atomic insert-if-absent of `(client_id, key)`; see [`Reservation`]. A record whose
    /// `expires_at` has passed counts as absent.
    async fn reserve_idempotency(
        &self,
        client_id: &str,
        key: &str,
        fingerprint: Hash,
        now: i64,
        lease_until: i64,
        expires_at: i64,
    ) -> Result<Reservation, StoreError>;
    /// Turns the caller's in-flight reservation into `Done(response)`, kept until the
    /// `expires_at` it was reserved with (the TTL counts from the first request, as Stripe's).
    ///
    /// `lease_until` is the one the caller reserved with, and fences the write: it changes
    /// nothing (`false`) unless the row is still in flight under that same lease. So a holder
    /// whose lease ran out and was taken over can never overwrite the newer reservation, nor
    /// one that was released, swept, or taken over and done.
    async fn complete_idempotency(
        &self,
        client_id: &str,
        key: &str,
        lease_until: i64,
        response: StoredResponse,
    ) -> Result<bool, StoreError>;
    /// Deletes the caller's in-flight reservation (fenced by `lease_until` as in
    /// [`IdempotencyStore::complete_idempotency`]) so the key is free again: the request was not
    /// run.
    async fn release_idempotency(
        &self,
        client_id: &str,
        key: &str,
        lease_until: i64,
    ) -> Result<bool, StoreError>;
    /// Deletes at most `limit` records expired at `now`; call again while it returns `limit`.
    async fn sweep_idempotency(&self, now: i64, limit: u32) -> Result<u64, StoreError>;
}

/// A stored response's headers as a blob, the same bytes in every backend: for each, u32-be
/// name length, name, u32-be value length, value.
pub(crate) fn encode_headers(headers: &[(String, Vec<u8>)]) -> Vec<u8> {
    let size = headers.iter().map(|(n, v)| 8 + n.len() + v.len()).sum();
    let mut out = Vec::with_capacity(size);
    for (name, value) in headers {
        for part in [name.as_bytes(), value.as_slice()] {
            // A header longer than 4 GiB never gets this far (bounded by the server's limits).
            out.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(part);
        }
    }
    out
}

/// The headers of [`encode_headers`]'s blob; `None` when it is truncated or a name is not UTF-8.
pub(crate) fn decode_headers(mut blob: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    fn take<'a>(blob: &mut &'a [u8]) -> Option<&'a [u8]> {
        let (len, rest) = blob.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
        if rest.len() < len {
            return None;
        }
        let (part, rest) = rest.split_at(len);
        *blob = rest;
        Some(part)
    }
    let mut headers = Vec::new();
    while !blob.is_empty() {
        let name = String::from_utf8(take(&mut blob)?.to_vec()).ok()?;
        let value = take(&mut blob)?.to_vec();
        headers.push((name, value));
    }
    Some(headers)
}
