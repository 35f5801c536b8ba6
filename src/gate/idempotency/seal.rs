//! Token entities at rest: sealed (ChaCha20-Poly1305) with a key derived (HKDF-SHA256) from
//! the client's secret, which the store never holds, and bound to `(client, key)`. Proxied
//! responses at rest: sealed with a key derived from `store.seal_key_file` ([`ResponseSeal`]).

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::HeaderMap;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf::{HKDF_SHA256, Salt};

use crate::store::StoredResponse;

const SALT: &[u8] = b"warden idempotency token entity v1";

fn key(secret: &str, client: &str, key: &str) -> Option<LessSafeKey> {
    let prk = Salt::new(HKDF_SHA256, SALT).extract(secret.as_bytes());
    let info = [client.as_bytes(), b"\0", key.as_bytes()];
    let okm = prk.expand(&info, &CHACHA20_POLY1305).ok()?;
    Some(LessSafeKey::new(UnboundKey::from(okm)))
}

fn aad(client: &str, key: &str) -> Vec<u8> {
    [client.as_bytes(), b"\0", key.as_bytes()].concat()
}

/// `nonce ‖ ciphertext ‖ tag`.
pub fn seal(secret: &str, client: &str, idem_key: &str, plain: &[u8]) -> Vec<u8> {
    let nonce: [u8; NONCE_LEN] = rand::random();
    let mut out = nonce.to_vec();
    let mut body = plain.to_vec();
    let sealed = key(secret, client, idem_key).and_then(|k| {
        k.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(client, idem_key)),
            &mut body,
        )
        .ok()
    });
    // HKDF and sealing fail only on impossible lengths; an empty record then fails to open.
    if sealed.is_none() {
        return Vec::new();
    }
    out.extend_from_slice(&body);
    out
}

/// The header a sealed response is stored under, alone: a name no HTTP header can have,
/// so a response stored in plaintext (before sealing, or a marker) is never taken for one.
pub const SEALED: &str = ":sealed";
const RESPONSE_SALT: &[u8] = b"warden store seal v1";
const RESPONSE_INFO: &[u8] = b"idempotency responses";
const RESPONSE_FORMAT: u8 = 1;
const TAG_LEN: usize = 16;

/// Seals the upstream responses kept for idempotency keys: their headers (`Set-Cookie`
/// included) and body, ChaCha20-Poly1305 under a key derived (HKDF-SHA256) from the store's
/// seal key, bound to the record's namespace, key and status. The status stays in the
/// clear (a marker's 0 must be read without the key), and so do markers' reasons.
///
/// Nonces never repeat under one key: each process counts its own from a random 64-bit
/// start (the counter's high half is folded into it), so two processes' nonces meet only if
/// their starts do (2^-64 a pair), where random 96-bit nonces would collide once in 2^32
/// records.
pub struct ResponseSeal {
    key: LessSafeKey,
    start: u64,
    count: AtomicU64,
}

impl ResponseSeal {
    /// The seal for the store's seal key `secret`.
    pub fn new(secret: &[u8]) -> Option<Self> {
        let prk = Salt::new(HKDF_SHA256, RESPONSE_SALT).extract(secret);
        let okm = prk.expand(&[RESPONSE_INFO], &CHACHA20_POLY1305).ok()?;
        Some(Self {
            key: LessSafeKey::new(UnboundKey::from(okm)),
            start: rand::random(),
            count: AtomicU64::new(0),
        })
    }

    fn nonce(&self) -> [u8; NONCE_LEN] {
        let n = self.count.fetch_add(1, Ordering::Relaxed);
        let mut nonce = [0; NONCE_LEN];
        nonce[..8].copy_from_slice(&(self.start ^ (n >> 32)).to_be_bytes());
        nonce[8..].copy_from_slice(&(n as u32).to_be_bytes());
        nonce
    }

    /// The headers of a response to seal, in the form [`ResponseSeal::seal`] takes.
    pub fn head(headers: &HeaderMap) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + 48 * headers.len());
        out.extend_from_slice(&[RESPONSE_FORMAT]);
        out.extend_from_slice(&[0; NONCE_LEN]);
        out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (name, value) in headers {
            for part in [name.as_str().as_bytes(), value.as_bytes()] {
                out.extend_from_slice(&(part.len() as u32).to_be_bytes());
                out.extend_from_slice(part);
            }
        }
        out
    }

    /// The record of a response: `head` (from [`ResponseSeal::head`]) and `body`, sealed
    /// in place: `format ‖ nonce ‖ ciphertext ‖ tag`.
    pub fn seal(
        &self,
        namespace: &str,
        idem_key: &str,
        status: u16,
        mut head: Vec<u8>,
        body: &[Bytes],
    ) -> StoredResponse {
        let len: usize = body.iter().map(Bytes::len).sum();
        head.reserve_exact(len + TAG_LEN);
        for chunk in body {
            head.extend_from_slice(chunk);
        }
        let nonce = self.nonce();
        head[1..1 + NONCE_LEN].copy_from_slice(&nonce);
        let sealed = self.key.seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(response_aad(namespace, idem_key, status)),
            &mut head[1 + NONCE_LEN..],
        );
        match sealed {
            Ok(tag) => head.extend_from_slice(tag.as_ref()),
            // Only for a record past ChaCha20's 256 GiB: kept as one that does not open.
            Err(_) => head.truncate(1),
        }
        StoredResponse {
            status,
            headers: vec![(SEALED.to_owned(), Vec::new())],
            body: head,
        }
    }

    /// The stored response as it was recorded, or `None` for another seal key or a
    /// damaged record. A record that is not sealed is returned as it is.
    pub fn open(
        &self,
        namespace: &str,
        idem_key: &str,
        stored: StoredResponse,
    ) -> Option<StoredResponse> {
        if !is_sealed(&stored) {
            return Some(stored);
        }
        let StoredResponse {
            status, mut body, ..
        } = stored;
        if body.len() < 1 + NONCE_LEN + TAG_LEN || body[0] != RESPONSE_FORMAT {
            return None;
        }
        let nonce = Nonce::try_assume_unique_for_key(&body[1..1 + NONCE_LEN]).ok()?;
        let aad = Aad::from(response_aad(namespace, idem_key, status));
        let plain = self
            .key
            .open_in_place(nonce, aad, &mut body[1 + NONCE_LEN..])
            .ok()?;
        let (headers, used) = read_head(plain)?;
        let start = 1 + NONCE_LEN + used;
        let end = body.len() - TAG_LEN;
        body.truncate(end);
        body.drain(..start);
        Some(StoredResponse {
            status,
            headers,
            body,
        })
    }
}

/// Whether a stored response is sealed with the store's seal key.
pub fn is_sealed(stored: &StoredResponse) -> bool {
    matches!(stored.headers.as_slice(), [(name, _)] if name == SEALED)
}

fn response_aad(namespace: &str, idem_key: &str, status: u16) -> Vec<u8> {
    [
        b"warden idempotency response\0".as_slice(),
        namespace.as_bytes(),
        b"\0",
        idem_key.as_bytes(),
        b"\0",
        &status.to_be_bytes(),
    ]
    .concat()
}

/// Header names and raw values, as [`StoredResponse`] holds them.
type Headers = Vec<(String, Vec<u8>)>;

/// The headers at the start of an opened record, and how many bytes they took.
fn read_head(plain: &[u8]) -> Option<(Headers, usize)> {
    fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (taken, left) = rest.split_at_checked(n)?;
        *rest = left;
        Some(taken)
    }
    fn len(rest: &mut &[u8]) -> Option<usize> {
        let bytes: [u8; 4] = take(rest, 4)?.try_into().ok()?;
        usize::try_from(u32::from_be_bytes(bytes)).ok()
    }
    let mut rest = plain;
    let count = len(&mut rest)?;
    // Each header takes at least 8 bytes: a count beyond that is damage, not a reason to
    // reserve memory.
    let mut headers = Vec::with_capacity(count.min(rest.len() / 8));
    for _ in 0..count {
        let n = len(&mut rest)?;
        let name = String::from_utf8(take(&mut rest, n)?.to_vec()).ok()?;
        let n = len(&mut rest)?;
        headers.push((name, take(&mut rest, n)?.to_vec()));
    }
    Some((headers, plain.len() - rest.len()))
}

/// The plaintext, or `None` for another secret or a damaged record.
pub fn open(secret: &str, client: &str, idem_key: &str, sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN {
        return None;
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut body = body.to_vec();
    let plain = key(secret, client, idem_key)?
        .open_in_place(nonce, Aad::from(aad(client, idem_key)), &mut body)
        .ok()?;
    Some(plain.to_vec())
}
