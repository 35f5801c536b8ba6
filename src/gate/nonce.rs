//! The signature nonces seen within their signature's window (RFC 9421 §7.2.2), for the replay
//! check of [`super::signature`].
//!
//! An entry is kept for exactly as long as its signature can still be accepted: through the
//! last whole second in which `created` is not older than `max_age` and `expires` (when there is
//! one) has not passed `clock_skew` ago, read from the same injected clock as the time checks
//! ([`crate::httpsig::check_times`] compares whole seconds, so a signature created in second
//! `c` is accepted until the end of second `c + max_age`).
//!
//! Entries that are still live are never evicted: forgetting one would make its request
//! replayable. When the table is full of live entries, a new nonce is refused instead (the
//! caller answers 503 with `Retry-After`), and one client may hold at most `per_client` of them
//! (429 past it), so a single signer cannot fill the table and deny every other client.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest as _, Sha256};

/// What became of a nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First use within its window: now remembered.
    Fresh,
    /// Already used within its window.
    Replayed,
    /// Not remembered, so not accepted: the client already holds `per_client` live nonces.
    /// The oldest of them lapses in `retry_after` seconds.
    ClientFull { retry_after: u64 },
    /// Not remembered, so not accepted: the table holds `capacity` live nonces. The oldest
    /// lapses in `retry_after` seconds.
    Full { retry_after: u64 },
}

/// The nonces of every client, bounded in total and per client.
pub struct NonceCache {
    capacity: usize,
    per_client: usize,
    table: Mutex<Table>,
}

/// An entry (SHA-256 of client, keyid and nonce) and the client it counts against.
type Entry = ([u8; 32], Arc<str>);

#[derive(Default)]
struct Table {
    /// SHA-256 of (client, keyid, nonce) of every live entry.
    live: HashSet<[u8; 32]>,
    /// The same entries by the last second they are live in, with their client.
    by_last: BTreeMap<i64, Vec<Entry>>,
    /// Per client: how many live entries, and how many end in each second.
    clients: HashMap<Arc<str>, ClientLoad>,
}

#[derive(Default)]
struct ClientLoad {
    live: usize,
    by_last: BTreeMap<i64, usize>,
}

impl NonceCache {
    /// A cache of at most `capacity` live nonces, at most `per_client` of them one client's
    /// (both at least 1).
    pub fn new(capacity: u64, per_client: u64) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX).max(1);
        let per_client = usize::try_from(per_client)
            .unwrap_or(usize::MAX)
            .clamp(1, capacity);
        Self {
            capacity,
            per_client,
            table: Mutex::new(Table::default()),
        }
    }

    /// Records the nonce of a verified signature of `client_id` by `key_id`, live through
    /// second `last` (inclusive), at `now` (unix seconds of the injected clock). Insert-if-absent
    /// under one lock: of two concurrent uses, exactly one is [`Seen::Fresh`].
    pub fn check(&self, client_id: &str, key_id: &str, nonce: &str, now: i64, last: i64) -> Seen {
        self.check_entry(entry(client_id, key_id, nonce), client_id, now, last)
    }

    /// [`NonceCache::check`] of an [`entry`] already hashed.
    pub fn check_entry(&self, entry: [u8; 32], client_id: &str, now: i64, last: i64) -> Seen {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        table.forget_before(now);
        if table.live.contains(&entry) {
            return Seen::Replayed;
        }
        let wait = |first: Option<i64>| {
            // The oldest entry lapses when its last second has passed.
            u64::try_from(first.unwrap_or(now).saturating_add(1).saturating_sub(now))
                .unwrap_or(1)
                .max(1)
        };
        if let Some(load) = table.clients.get(client_id)
            && load.live >= self.per_client
        {
            let first = load.by_last.first_key_value().map(|(s, _)| *s);
            return Seen::ClientFull {
                retry_after: wait(first),
            };
        }
        if table.live.len() >= self.capacity {
            let first = table.by_last.first_key_value().map(|(s, _)| *s);
            return Seen::Full {
                retry_after: wait(first),
            };
        }
        let last = last.max(now);
        let client: Arc<str> = match table.clients.get_key_value(client_id) {
            Some((name, _)) => name.clone(),
            None => Arc::from(client_id),
        };
        let load = table.clients.entry(client.clone()).or_default();
        load.live += 1;
        *load.by_last.entry(last).or_default() += 1;
        table.by_last.entry(last).or_default().push((entry, client));
        table.live.insert(entry);
        Seen::Fresh
    }

    /// Forgets `entry` of `client_id`, remembered by a [`Seen::Fresh`] check with `last` at
    /// `now` whose request was then refused before it could use the nonce (the store could not
    /// claim it), so a retry is not taken for a replay.
    pub fn forget(&self, entry: &[u8; 32], client_id: &str, now: i64, last: i64) {
        let last = last.max(now);
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        // Already dropped, by `forget_before` or an earlier call: nothing is counted for it.
        if !table.live.remove(entry) {
            return;
        }
        if let Some(entries) = table.by_last.get_mut(&last) {
            if let Some(at) = entries.iter().position(|(e, _)| e == entry) {
                entries.swap_remove(at);
            }
            if entries.is_empty() {
                table.by_last.remove(&last);
            }
        }
        let Some(load) = table.clients.get_mut(client_id) else {
            return;
        };
        load.live = load.live.saturating_sub(1);
        if let Some(n) = load.by_last.get_mut(&last) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                load.by_last.remove(&last);
            }
        }
        if load.live == 0 {
            table.clients.remove(client_id);
        }
    }

    /// How many nonces are remembered (some may have lapsed and not yet been dropped).
    pub fn len(&self) -> usize {
        let table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        table.live.len()
    }

    /// Whether no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The entry of a nonce: SHA-256 of (client, keyid, nonce), each part length-prefixed so that
/// no two triples share one. Also the key a store claims ([`crate::store::NonceStore`]).
pub fn entry(client_id: &str, key_id: &str, nonce: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [client_id, key_id, nonce] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

impl Table {
    /// Drops the entries whose last second is before `now`. Each entry is dropped once, so the
    /// work is that of the inserts that made them.
    fn forget_before(&mut self, now: i64) {
        while let Some(entry) = self.by_last.first_entry() {
            if *entry.key() >= now {
                break;
            }
            let (second, entries) = entry.remove_entry();
            for (nonce, client) in entries {
                self.live.remove(&nonce);
                let Some(load) = self.clients.get_mut(&client) else {
                    continue;
                };
                load.live = load.live.saturating_sub(1);
                if load.live == 0 {
                    self.clients.remove(&client);
                    continue;
                }
                if let Some(n) = load.by_last.get_mut(&second) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        load.by_last.remove(&second);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    #[test]
    fn a_nonce_is_fresh_once_until_its_last_second_has_passed() {
        let c = NonceCache::new(10, 10);
        assert_eq!(c.check("c1", "k1", "n", NOW, NOW + 2), Seen::Fresh);
        assert_eq!(c.check("c1", "k1", "n", NOW + 2, NOW + 4), Seen::Replayed);
        // Another client, key or nonce is another entry.
        assert_eq!(c.check("c2", "k1", "n", NOW, NOW + 2), Seen::Fresh);
        assert_eq!(c.check("c1", "k2", "n", NOW, NOW + 2), Seen::Fresh);
        // Length-prefixed parts: ("c1", "k1n") is not ("c1k1", "n").
        assert_eq!(c.check("c1k1", "", "n", NOW, NOW + 2), Seen::Fresh);
        assert_eq!(c.check("c1", "k1", "n", NOW + 3, NOW + 5), Seen::Fresh);
        assert_eq!(c.len(), 1, "the lapsed entries were dropped");
    }

    #[test]
    fn a_full_table_refuses_new_nonces_and_never_forgets_live_ones() {
        let c = NonceCache::new(3, 3);
        for n in ["a", "b", "c"] {
            assert_eq!(c.check("victim", "k", n, NOW, NOW + 5), Seen::Fresh);
        }
        assert_eq!(
            c.check("other", "k", "d", NOW + 1, NOW + 6),
            Seen::Full { retry_after: 5 }
        );
        assert_eq!(
            c.check("victim", "k", "a", NOW + 5, NOW + 5),
            Seen::Replayed
        );
        // Once they lapse, there is room again.
        assert_eq!(c.check("other", "k", "d", NOW + 6, NOW + 8), Seen::Fresh);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn one_client_holds_at_most_its_share_and_others_keep_theirs() {
        let c = NonceCache::new(10, 4);
        for i in 0..4 {
            let n = i.to_string();
            assert_eq!(c.check("flood", "k", &n, NOW, NOW + 3 + i), Seen::Fresh);
        }
        assert_eq!(
            c.check("flood", "k", "x", NOW + 1, NOW + 9),
            Seen::ClientFull { retry_after: 3 }
        );
        assert_eq!(c.check("victim", "k", "v", NOW + 1, NOW + 9), Seen::Fresh);
        // The flood's oldest lapses at NOW + 4: one more of its nonces fits.
        assert_eq!(c.check("flood", "k", "x", NOW + 4, NOW + 9), Seen::Fresh);
        assert_eq!(
            c.check("flood", "k", "y", NOW + 4, NOW + 9),
            Seen::ClientFull { retry_after: 1 }
        );
        assert_eq!(
            c.check("victim", "k", "v", NOW + 9, NOW + 9),
            Seen::Replayed
        );
    }

    #[test]
    fn a_forgotten_nonce_is_fresh_again_and_no_longer_counts_against_its_client() {
        let c = NonceCache::new(10, 2);
        assert_eq!(c.check("c1", "k", "a", NOW, NOW + 5), Seen::Fresh);
        assert_eq!(c.check("c1", "k", "b", NOW, NOW + 5), Seen::Fresh);
        c.forget(&entry("c1", "k", "a"), "c1", NOW, NOW + 5);
        assert_eq!(c.len(), 1);
        // Its share has room again, and the nonce itself is fresh.
        assert_eq!(c.check("c1", "k", "a", NOW + 1, NOW + 6), Seen::Fresh);
        assert_eq!(c.check("c1", "k", "b", NOW + 1, NOW + 6), Seen::Replayed);
        // Forgetting what is not there (or twice) changes nothing.
        c.forget(&entry("c1", "k", "zz"), "c1", NOW, NOW + 5);
        c.forget(&entry("c1", "k", "a"), "c1", NOW + 1, NOW + 6);
        c.forget(&entry("c1", "k", "a"), "c1", NOW + 1, NOW + 6);
        let table = c.table.lock().unwrap();
        assert_eq!(table.live.len(), 1);
        assert_eq!(table.clients["c1"].live, 1);
        assert_eq!(
            table.by_last.values().map(Vec::len).sum::<usize>(),
            1,
            "no stale entry left to be dropped again"
        );
    }

    #[test]
    fn a_client_whose_nonces_all_lapse_is_forgotten() {
        let c = NonceCache::new(10, 10);
        c.check("c1", "k", "a", NOW, NOW);
        c.check("c2", "k", "b", NOW, NOW + 3);
        c.check("c2", "k", "c", NOW, NOW + 1);
        let mut table = c.table.lock().unwrap();
        table.forget_before(NOW + 2);
        assert_eq!(table.live.len(), 1);
        assert!(!table.clients.contains_key("c1"));
        let load = &table.clients["c2"];
        assert_eq!(load.live, 1);
        assert_eq!(load.by_last.keys().copied().collect::<Vec<_>>(), [NOW + 3]);
    }
}
