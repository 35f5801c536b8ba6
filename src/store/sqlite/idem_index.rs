//! The in-process index of idempotency records, `(client, key)` → row id: how a record is
//! found without a unique index on random keys (migration 3), and how it follows other
//! processes' appends and deletions.

use std::sync::{MutexGuard, PoisonError};

use rusqlite::{Connection, Transaction, params};

use super::Inner;
use super::rows::{db, execute};
use crate::store::StoreError;

/// The in-process index of idempotency records: `(client_id, key)` → the row `id` holding it.
///
/// The table has no unique index on the key (see migration 3); this map is what finds a record,
/// and it is only read or changed while holding the writer connection, inside the transaction
/// that acts on what it found. It is a hint, never the truth: every row it points at is read
/// back with its `client_id` and key compared, so a stale entry (a row released or swept by
/// another process, or an id of a rolled-back batch) only ever reads as "no record".
///
/// Other processes writing the same file (a second Warden during a rolling restart) append rows
/// too; [`IdemIndex::sync`] reads every row past the last id seen, under the write lock, before
/// a reservation looks anything up. Ids only grow, as the highest row is never deleted
/// (migration 4), so the tail misses nothing. Memory: 25 bytes an entry, 30 to 60 a live record
/// as the maps double ([`KeyMap`]), plus [`IdemIndex::held`] for the reservations this process
/// has running.
pub(super) struct IdemIndex {
    /// Every row with an id up to this one is in `by_key` (committed rows only).
    seen: i64,
    /// The highest id this process appended in the batch being committed.
    appended: i64,
    /// The last entry of the deletion log already applied to `by_key`.
    deleted_seen: i64,
    /// Whether the batch being run has read the tail yet: once is enough, as no other process
    /// can append while the batch holds the write lock.
    synced: bool,
    /// The writer's `PRAGMA data_version` at the last batch that looked: it changes whenever
    /// another connection (another process) has committed since, and only then. Unchanged,
    /// the tail and the deletion log hold nothing this process has not already applied, and a
    /// batch skips reading them (two statements a group commit). `None`: read them.
    writer_version: Option<i64>,
    pub(super) by_key: KeyMap,
    /// Rows this process reserved and has not completed or released: slot → (id,
    /// `lease_until`). Such a row changes only through this process (its release, its
    /// completion) or by being deleted (a takeover or a sweep, in this process or, read from
    /// the deletion log at each batch, another one), and every one of those drops the entry.
    /// So a completion whose lease is here needs no lookup of the row to know it still holds
    /// it, nor a probe of `by_key` (large, so rarely in the CPU cache): this map holds only
    /// the requests running. A hint only in the other direction: an entry missing (a restart,
    /// a failed batch) means "look it up".
    held: std::collections::HashMap<Slot, (i64, i64), std::hash::BuildHasherDefault<SlotHasher>>,
    /// The entries this batch added to `held`, taken back if it fails to commit.
    held_in_batch: Vec<(Slot, i64)>,
}

impl IdemIndex {
    /// Reads every record's key; done once, when the store opens.
    pub(super) fn load(conn: &Connection) -> Result<Self, StoreError> {
        const OP: &str = "idempotency_index";
        let started = std::time::Instant::now();
        let mut index = Self {
            seen: 0,
            appended: 0,
            synced: false,
            writer_version: None,
            // Rows deleted before this load are not in the map: start past them.
            held: Default::default(),
            held_in_batch: Vec::new(),
            deleted_seen: conn
                .query_row(
                    "SELECT coalesce(max(seq), 0) FROM idempotency_deleted",
                    [],
                    |row| row.get(0),
                )
                .map_err(db(OP))?,
            by_key: KeyMap::new(),
        };
        index.sync(conn)?;
        tracing::info!(
            records = index.by_key.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "idempotency index loaded"
        );
        Ok(index)
    }

    /// Reads the rows appended since the last call.
    fn sync(&mut self, conn: &Connection) -> Result<(), StoreError> {
        const OP: &str = "idempotency_index";
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, client_id, idem_key FROM idempotency_keys WHERE id > ?1 ORDER BY id",
            )
            .map_err(db(OP))?;
        // Rows past `appended` are this batch's own, already in the map; none can be another
        // process's, which cannot write while this transaction holds the lock.
        let mut rows = stmt.query([self.seen.max(self.appended)]).map_err(db(OP))?;
        while let Some(row) = rows.next().map_err(db(OP))? {
            let id: i64 = row.get(0).map_err(db(OP))?;
            let client_id: String = row.get(1).map_err(db(OP))?;
            let key: String = row.get(2).map_err(db(OP))?;
            self.by_key.insert(idem_slot(&client_id, &key), id);
            self.seen = id;
        }
        Ok(())
    }

    /// [`IdemIndex::sync`] and [`IdemIndex::read_deleted`], unless this batch did already.
    /// Unless no other connection has committed since the last batch (see
    /// [`IdemIndex::writer_version`]).
    pub(super) fn sync_once(&mut self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        const OP: &str = "idempotency_index";
        if self.synced {
            return Ok(());
        }
        let version = tx
            .prepare_cached("PRAGMA data_version")
            .and_then(|mut stmt| stmt.query_row([], |row| row.get::<_, i64>(0)))
            .map_err(db(OP))?;
        if self.writer_version != Some(version) {
            self.sync(tx)?;
            self.read_deleted(tx)?;
            self.writer_version = Some(version);
        }
        self.synced = true;
        Ok(())
    }

    /// At the start of a group commit (its write lock is held from here to its end).
    pub(super) fn begin_batch(&mut self) {
        self.appended = 0;
        self.synced = false;
        self.held_in_batch.clear();
    }

    /// Notes that this process now holds row `id` of `slot` under `lease_until`.
    pub(super) fn hold(&mut self, slot: Slot, id: i64, lease_until: i64) {
        self.held.insert(slot, (id, lease_until));
        self.held_in_batch.push((slot, id));
    }

    /// The row of `slot` this process holds under `lease_until`, if it does (see
    /// [`IdemIndex::held`]).
    pub(super) fn holds(&self, slot: Slot, lease_until: i64) -> Option<i64> {
        self.held
            .get(&slot)
            .filter(|(_, lease)| *lease == lease_until)
            .map(|(id, _)| *id)
    }

    /// Row `id` of `slot` is no longer running here: completed, released or deleted.
    pub(super) fn let_go(&mut self, slot: Slot, id: i64) {
        if self.held.get(&slot).is_some_and(|(held, _)| *held == id) {
            self.held.remove(&slot);
        }
    }

    /// Drops the entries of rows deleted since the last call, by this process or another, and
    /// prunes the deletion log of what every process has had [`DELETED_KEPT_SECS`] to read.
    pub(super) fn forget_deleted(
        &mut self,
        tx: &Transaction<'_>,
        now: i64,
    ) -> Result<(), StoreError> {
        const OP: &str = "idempotency_index";
        self.read_deleted(tx)?;
        execute(
            tx,
            OP,
            "DELETE FROM idempotency_deleted WHERE at < ?1",
            params![now - DELETED_KEPT_SECS],
        )?;
        Ok(())
    }

    /// Drops the entries of rows deleted since the last call, by this process or another.
    fn read_deleted(&mut self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        const OP: &str = "idempotency_index";
        let mut stmt = tx
            .prepare_cached(
                "SELECT seq, id, client_id, idem_key FROM idempotency_deleted \
                 WHERE seq > ?1 ORDER BY seq",
            )
            .map_err(db(OP))?;
        let mut rows = stmt.query([self.deleted_seen]).map_err(db(OP))?;
        while let Some(row) = rows.next().map_err(db(OP))? {
            let seq: i64 = row.get(0).map_err(db(OP))?;
            let id: i64 = row.get(1).map_err(db(OP))?;
            let client_id: String = row.get(2).map_err(db(OP))?;
            let key: String = row.get(3).map_err(db(OP))?;
            self.removed(idem_slot(&client_id, &key), id);
            self.deleted_seen = seq;
        }
        Ok(())
    }

    pub(super) fn appended(&mut self, slot: Slot, id: i64) {
        self.by_key.insert(slot, id);
        self.appended = self.appended.max(id);
    }

    pub(super) fn removed(&mut self, slot: Slot, id: i64) {
        if self.by_key.get(slot) == Some(id) {
            self.by_key.remove(slot);
        }
        self.let_go(slot, id);
    }

    /// After a group commit: this process's appends need not be read back, unless the commit
    /// failed (then their ids may be reused by another process, and the tail must read them).
    pub(super) fn committed(&mut self, ok: bool) {
        if ok && self.appended > self.seen {
            self.seen = self.appended;
        }
        if !ok {
            // Its appends are not in the table: the next batch reads the tail again.
            self.writer_version = None;
            for (slot, id) in std::mem::take(&mut self.held_in_batch) {
                self.let_go(slot, id);
            }
        }
        self.appended = 0;
    }
}

/// How long the idempotency deletion log keeps an entry for other processes to read (their
/// sweeps, which read it, run every `store.sweep_interval`, far more often).
pub(super) const DELETED_KEPT_SECS: i64 = 24 * 3600;

pub(super) fn idem_index(inner: &Inner) -> MutexGuard<'_, IdemIndex> {
    inner.idem.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where `(client_id, key)` sits in the index: 128 bits of SHA-256, so two live keys never
/// share one. Two `u64`s rather than a `u128`, whose 16-byte alignment would pad every entry
/// of the map from 24 to 32 bytes.
pub(super) type Slot = (u64, u64);

pub(super) fn idem_slot(client_id: &str, key: &str) -> Slot {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(client_id.as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    let digest = h.finalize();
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&digest[i..i + 8]);
        u64::from_le_bytes(w)
    };
    (word(0), word(8))
}

/// How many maps [`KeyMap`] splits the index into.
const KEY_MAP_SHARDS: usize = 256;

/// `slot → id` for every record, split by the slot's top byte into [`KEY_MAP_SHARDS`] maps, so
/// that growing one is never a stall. A map grows by moving every entry into a table twice the
/// size, inside the insert that fills it, and this one is filled inside a group commit on the
/// runtime: as one map, the insert that took it past 0.9 M records took 36 ms, past 7.3 M
/// 278 ms, every request on the runtime waiting meanwhile (a throwaway timing loop, the same
/// map and hasher, `docs/benchmarks.md`). A shard holds 1/256th: at 7 M records, about 1 ms.
/// (The same holds for the rehash in place that clears the tombstones of deleted entries.)
pub(super) struct KeyMap {
    pub(super) shards:
        Vec<std::collections::HashMap<Slot, i64, std::hash::BuildHasherDefault<SlotHasher>>>,
}

impl KeyMap {
    pub(super) fn new() -> Self {
        Self {
            shards: (0..KEY_MAP_SHARDS).map(|_| Default::default()).collect(),
        }
    }

    fn shard(&self, slot: Slot) -> usize {
        // The slot is SHA-256 output: its top byte is as uniform as any.
        (slot.1 >> 56) as usize % KEY_MAP_SHARDS
    }

    pub(super) fn get(&self, slot: Slot) -> Option<i64> {
        self.shards.get(self.shard(slot))?.get(&slot).copied()
    }

    pub(super) fn insert(&mut self, slot: Slot, id: i64) {
        let shard = self.shard(slot);
        if let Some(map) = self.shards.get_mut(shard) {
            map.insert(slot, id);
        }
    }

    pub(super) fn remove(&mut self, slot: Slot) {
        let shard = self.shard(slot);
        if let Some(map) = self.shards.get_mut(shard) {
            map.remove(&slot);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.shards.iter().map(|map| map.len()).sum()
    }
}

/// Slots are already uniformly distributed: the map hashes them by mixing their two words, not
/// with SipHash.
#[derive(Default)]
pub(super) struct SlotHasher(u64);

impl std::hash::Hasher for SlotHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = self.0.rotate_left(29) ^ n;
    }
}
