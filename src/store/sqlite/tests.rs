//! SQLite-specific tests: the files on disk, WAL mode, migrations, group commit, checkpoints,
//! two stores on one file, and the in-process idempotency index; and the contract suite every
//! backend keeps (`store/tests.rs`), run here on SQLite files.

use std::path::Path;

use proptest::prelude::*;
use rusqlite::params;
use sha2::{Digest, Sha256};

use super::batch::{RESTART_WAIT, checkpoint};
use super::files::database_files;
use super::idem_index::{DELETED_KEPT_SECS, KeyMap, Slot, idem_index, idem_slot};
use super::schema::MIGRATIONS;
use super::*;
use crate::store::idempotency::{decode_headers, encode_headers};
use crate::store::tests::{Backend, Db, T0, response, sha, token};
use crate::store::{
    IdempotencyState, IdempotencyStore, Reservation, Store, StoredResponse, TokenKind, TokenRecord,
    TokenStore, open,
};

/// The contract suite's backend: a database file in a temporary directory of its own.
struct SqliteFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Backend for SqliteFile {
    async fn empty() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        // A nested path: open must create the parent directories.
        let path = dir.path().join("nested").join("warden.db");
        Self { _dir: dir, path }
    }

    async fn connect(&self) -> Arc<dyn Store> {
        open(
            &format!("sqlite://{}", self.path.display()),
            StoreOptions::default(),
        )
        .await
        .expect("open")
    }
}

mod contract {
    crate::store::tests::contract_suite!(super::SqliteFile);
}

fn temp_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("warden.db");
    (dir, path)
}

fn pragma(conn: &Connection, name: &str) -> String {
    conn.query_row(&format!("PRAGMA {name}"), [], |row| {
        row.get::<_, rusqlite::types::Value>(0)
    })
    .map(|value| format!("{value:?}"))
    .expect("pragma")
}

fn sample_token(i: usize) -> TokenRecord {
    TokenRecord {
        id: format!("tok_{i:08}"),
        hash: Sha256::digest(i.to_be_bytes()).into(),
        kind: TokenKind::Access,
        client_id: "bench".to_owned(),
        account: "acme".to_owned(),
        name: None,
        user: None,
        audience: None,
        scopes: vec!["read".to_owned(), "write".to_owned()],
        trusted_ips: vec!["127.0.0.1/32".to_owned()],
        created_at: 1_700_000_000,
        updated_at: 1_700_000_000,
        expires_at: Some(1_700_003_600),
        enabled: true,
        disabled_reason: None,
        revoked_at: None,
        replaced_by: None,
    }
}

#[test]
fn the_key_map_spreads_records_over_its_shards() {
    let mut map = KeyMap::new();
    let slots: Vec<Slot> = (0..20_000)
        .map(|i| idem_slot("client", &format!("key-{i}")))
        .collect();
    for (id, slot) in slots.iter().enumerate() {
        map.insert(*slot, id as i64);
    }
    assert_eq!(map.len(), slots.len());
    // ~78 a shard: none empty, none holding a large share (a growth is a shard's rehash).
    let largest = map.shards.iter().map(|m| m.len()).max().unwrap_or(0);
    assert!(map.shards.iter().all(|m| !m.is_empty()));
    assert!(largest < 200, "largest shard {largest}");
    for (id, slot) in slots.iter().enumerate() {
        assert_eq!(map.get(*slot), Some(id as i64));
    }
    map.remove(slots[7]);
    assert_eq!(map.get(slots[7]), None);
    assert_eq!(map.len(), slots.len() - 1);
}

#[test]
fn store_urls_and_plain_paths_parse_to_a_location() {
    let file = |p: &str| Some(Location::File(PathBuf::from(p)));
    let parse = |url: &str| Location::parse(url).ok();
    assert_eq!(parse("sqlite://data/warden.db"), file("data/warden.db"));
    assert_eq!(parse("sqlite:data/warden.db"), file("data/warden.db"));
    assert_eq!(parse("sqlite:///var/lib/w.db"), file("/var/lib/w.db"));
    assert_eq!(parse("sqlite://data/w.db?mode=rwc"), file("data/w.db"));
    assert_eq!(parse("data/warden.db"), file("data/warden.db"));
    assert_eq!(parse("sqlite::memory:"), Some(Location::Memory));
    assert_eq!(parse(":memory:"), Some(Location::Memory));
    assert!(matches!(Location::parse(""), Err(StoreError::EmptyPath)));
    assert!(matches!(
        Location::parse("sqlite://"),
        Err(StoreError::EmptyPath)
    ));
    let err = Location::parse("postgres://warden:hunter2@db/warden").map(|_| ());
    let Err(err) = err else {
        panic!("postgres is not supported yet");
    };
    let message = err.to_string();
    assert!(message.contains("\"postgres\""), "{message}");
    assert!(
        !message.contains("hunter2"),
        "the url's password leaked: {message}"
    );
}

#[test]
fn a_fresh_file_is_created_migrated_and_opened_in_wal_mode() {
    let (dir, _) = temp_file();
    let path = dir.path().join("a").join("b").join("warden.db");
    let store = SqliteStore::open_blocking(&Location::File(path.clone()), &Default::default())
        .expect("open");
    assert!(path.exists());
    let conn = lock(&store.inner.writer);
    assert_eq!(
        pragma(&conn, "user_version"),
        format!("Integer({})", schema_version())
    );
    assert_eq!(pragma(&conn, "journal_mode"), "Text(\"wal\")");
    assert_eq!(pragma(&conn, "synchronous"), "Integer(1)", "NORMAL");
    assert_eq!(pragma(&conn, "foreign_keys"), "Integer(1)");
    assert_eq!(pragma(&conn, "busy_timeout"), "Integer(5000)");
    assert_eq!(store.inner.readers.len(), StoreOptions::default().readers);
    let reader = store.inner.reader();
    assert_eq!(pragma(&reader, "query_only"), "Integer(1)");
    assert_eq!(pragma(&reader, "synchronous"), "Integer(1)");
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[cfg(unix)]
#[test]
fn a_new_store_its_directories_and_files_are_its_owners_only() {
    // Review finding 17: under the usual umask (022) they came out 0755 and 0644.
    let (dir, _) = temp_file();
    let path = dir.path().join("a").join("b").join("warden.db");
    let store = SqliteStore::open_blocking(&Location::File(path.clone()), &Default::default())
        .expect("open");
    let [db, wal, shm, _] = database_files(&path);
    assert!(wal.exists() && shm.exists());
    for file in [&db, &wal, &shm] {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    for made in [dir.path().join("a"), dir.path().join("a").join("b")] {
        assert_eq!(mode(&made), 0o700, "{}", made.display());
    }
    drop(store);
}

#[cfg(unix)]
#[test]
fn existing_store_files_others_may_read_are_narrowed_at_open() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, path) = temp_file();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let store = SqliteStore::open_blocking(&Location::File(path.clone()), &Default::default())
        .expect("open");
    let files = database_files(&path);
    for file in files.iter().filter(|f| f.exists()) {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o664)).unwrap();
    }
    let again = SqliteStore::open_blocking(&Location::File(path.clone()), &Default::default())
        .expect("reopen");
    for file in files.iter().filter(|f| f.exists()) {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    assert_eq!(
        mode(dir.path()),
        0o755,
        "an existing directory is left alone"
    );
    drop((store, again));
}

#[test]
fn full_durability_sets_synchronous_full() {
    let (_dir, path) = temp_file();
    let options = StoreOptions {
        durability: Durability::Full,
        ..Default::default()
    };
    let store = SqliteStore::open_blocking(&Location::File(path), &options).expect("open");
    assert_eq!(
        pragma(&lock(&store.inner.writer), "synchronous"),
        "Integer(2)"
    );
}

#[test]
fn reopening_an_existing_file_keeps_its_schema_and_data() {
    let (_dir, path) = temp_file();
    let location = Location::File(path.clone());
    {
        let store = SqliteStore::open_blocking(&location, &Default::default()).expect("open");
        lock(&store.inner.writer)
            .execute(
                "INSERT INTO webhook_events (id, event_type, account, payload, created_at) \
                 VALUES ('evt_1', 'E', 'acme', '{}', 1)",
                [],
            )
            .expect("insert");
    }
    let store = SqliteStore::open_blocking(&location, &Default::default()).expect("reopen");
    let conn = lock(&store.inner.writer);
    assert_eq!(
        pragma(&conn, "user_version"),
        format!("Integer({})", schema_version())
    );
    let count: i64 = conn
        .query_row("SELECT count(*) FROM webhook_events", [], |row| row.get(0))
        .expect("count");
    assert_eq!(count, 1);
}

#[tokio::test]
async fn idempotency_records_of_schema_2_survive_the_migration() {
    let (_dir, path) = temp_file();
    {
        let conn = Connection::open(&path).expect("open");
        for migration in &MIGRATIONS[..2] {
            conn.execute_batch(migration).expect("old schema");
        }
        conn.pragma_update(None, "user_version", 2)
            .expect("version");
        conn.execute(
            "INSERT INTO idempotency (client_id, idem_key, fingerprint, state, status, \
             headers, body, created_at, updated_at, expires_at) \
             VALUES ('c1', 'done', ?1, 'done', 201, ?2, x'6f6b', 10, 11, 4000000000)",
            params![
                [7u8; 32],
                encode_headers(&[("a".to_owned(), b"b".to_vec())])
            ],
        )
        .expect("done record");
        conn.execute(
            "INSERT INTO idempotency (client_id, idem_key, fingerprint, state, lease_until, \
             created_at, updated_at, expires_at) \
             VALUES ('c1', 'running', ?1, 'in_flight', 3999999999, 10, 10, 4000000000)",
            params![[7u8; 32]],
        )
        .expect("in-flight record");
    }
    let store = SqliteStore::open(path.to_str().expect("utf-8"), Default::default())
        .await
        .expect("migrate");
    let now = 1_000;
    let r = store
        .reserve_idempotency("c1", "done", [7u8; 32], now, now + 30, now + 60)
        .await
        .expect("reserve");
    let Reservation::Done(record) = r else {
        panic!("expected Done, got {r:?}");
    };
    assert_eq!(
        record.state,
        IdempotencyState::Done(StoredResponse {
            status: 201,
            headers: vec![("a".to_owned(), b"b".to_vec())],
            body: b"ok".to_vec(),
        })
    );
    let r = store
        .reserve_idempotency("c1", "running", [7u8; 32], now, now + 30, now + 60)
        .await
        .expect("reserve");
    assert_eq!(
        r,
        Reservation::InFlight {
            lease_until: 3_999_999_999
        }
    );
    // The old table and its unique index are gone: keys are found in the process.
    let indexes: i64 = lock(&store.inner.writer)
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'idempotency' \
             OR (type = 'index' AND tbl_name LIKE 'idempotency%' \
             AND name LIKE 'sqlite_autoindex%')",
            [],
            |row| row.get(0),
        )
        .expect("count");
    assert_eq!(indexes, 0);
}

/// Schema 3 to 4: records keep their ids, and ids never go back below the old sequence,
/// even when the row that reached it had been deleted.
#[tokio::test]
async fn idempotency_records_of_schema_3_keep_their_ids_and_the_sequence() {
    let (_dir, path) = temp_file();
    {
        let conn = Connection::open(&path).expect("open");
        for migration in &MIGRATIONS[..3] {
            conn.execute_batch(migration).expect("old schema");
        }
        conn.pragma_update(None, "user_version", 3)
            .expect("version");
        for key in ["a", "b", "c"] {
            conn.execute(
                "INSERT INTO idempotency_keys (client_id, idem_key, fingerprint, lease_until, \
                 created_at, expires_at) VALUES ('c1', ?1, ?2, 3999999999, 10, 4000000000)",
                params![key, [7u8; 32]],
            )
            .expect("record");
        }
        conn.execute("DELETE FROM idempotency_keys WHERE idem_key = 'c'", [])
            .expect("delete the highest");
    }
    let store = SqliteStore::open(path.to_str().expect("utf-8"), Default::default())
        .await
        .expect("migrate");
    let now = 1_000;
    let r = store
        .reserve_idempotency("c1", "b", [7u8; 32], now, now + 30, now + 60)
        .await
        .expect("reserve");
    assert_eq!(
        r,
        Reservation::InFlight {
            lease_until: 3_999_999_999
        }
    );
    let r = store
        .reserve_idempotency("c1", "new", [7u8; 32], now, now + 30, now + 60)
        .await
        .expect("reserve");
    assert_eq!(r, Reservation::Reserved);
    let conn = lock(&store.inner.writer);
    let id_of = |key: &str| -> i64 {
        conn.query_row(
            "SELECT id FROM idempotency_keys WHERE client_id = 'c1' AND idem_key = ?1",
            [key],
            |row| row.get(0),
        )
        .expect("id")
    };
    assert_eq!((id_of("a"), id_of("b")), (1, 2));
    assert_eq!(id_of("new"), 4, "id 3 was handed out before the migration");
    let left: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name IN \
             ('idempotency_keys_by_expiry', 'idempotency_keys_4') \
             OR (name = 'sqlite_sequence' AND sql LIKE '%idempotency_keys%')",
            [],
            |row| row.get(0),
        )
        .expect("count");
    assert_eq!(left, 0);
    let sequenced: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_sequence WHERE name = 'idempotency_keys'",
            [],
            |row| row.get(0),
        )
        .expect("count");
    assert_eq!(sequenced, 0, "no AUTOINCREMENT any more");
}

/// Without AUTOINCREMENT, SQLite hands out `max(id) + 1`: were the highest row deleted,
/// its id would come back, and a process that had already read it would never read the new
/// row, and would reserve the same key a second time.
#[tokio::test]
async fn a_released_highest_row_keeps_its_id_from_coming_back() {
    let (_dir, _url, a, b) = two_stores().await;
    let fp = [1u8; 32];
    let t0 = 1_000;
    for (store, key) in [(&a, "k1"), (&a, "k2"), (&b, "b1")] {
        let r = store
            .reserve_idempotency("c1", key, fp, t0, t0 + 30, t0 + 100)
            .await;
        assert_eq!(r.expect("reserve"), Reservation::Reserved, "{key}");
    }
    // B has read A's rows (its reservation synced the tail past k2). B releases b1, the
    // highest row; then A appends k3.
    assert!(
        b.release_idempotency("c1", "b1", t0 + 30)
            .await
            .expect("release")
    );
    let r = a
        .reserve_idempotency("c1", "k3", fp, t0 + 1, t0 + 31, t0 + 100)
        .await;
    assert_eq!(r.expect("reserve"), Reservation::Reserved);
    // B must find A's k3 in flight, not reserve it again.
    let r = b
        .reserve_idempotency("c1", "k3", fp, t0 + 2, t0 + 32, t0 + 100)
        .await;
    assert_eq!(
        r.expect("reserve"),
        Reservation::InFlight {
            lease_until: t0 + 31
        }
    );
    // The released key is free again, for either process.
    let r = a
        .reserve_idempotency("c1", "b1", fp, t0 + 3, t0 + 33, t0 + 100)
        .await;
    assert_eq!(r.expect("reserve"), Reservation::Reserved);
}

/// A completion trusts what the process knows of its own reservations (`IdemIndex::held`)
/// only after reading what other processes deleted: a row another Warden swept must not get
/// a response (it would belong to no record, and never be swept).
#[tokio::test]
async fn a_row_another_process_swept_takes_no_response() {
    let (_dir, _url, a, b) = two_stores().await;
    let fp = [1u8; 32];
    let t0 = 1_000;
    for (key, expires_at) in [("k1", t0 + 40), ("k2", t0 + 5_000)] {
        let r = a
            .reserve_idempotency("c1", key, fp, t0, t0 + 30, expires_at)
            .await;
        assert_eq!(r.expect("reserve"), Reservation::Reserved, "{key}");
    }
    assert_eq!(b.sweep_idempotency(t0 + 50, 100).await.expect("sweep"), 1);
    let late = a
        .complete_idempotency("c1", "k1", t0 + 30, crate::store::tests::response(201))
        .await;
    assert!(!late.expect("complete"), "k1's row is gone");
    assert!(
        a.complete_idempotency("c1", "k2", t0 + 30, crate::store::tests::response(201))
            .await
            .expect("complete")
    );
    let orphans: i64 = lock(&a.inner.writer)
        .query_row(
            "SELECT count(*) FROM idempotency_responses \
             WHERE id NOT IN (SELECT id FROM idempotency_keys)",
            [],
            |row| row.get(0),
        )
        .expect("count");
    assert_eq!(orphans, 0);
}

/// Two stores on one file, standing for two Wardens.
async fn two_stores() -> (tempfile::TempDir, String, SqliteStore, SqliteStore) {
    let (dir, path) = temp_file();
    let url = path.to_str().expect("utf-8").to_owned();
    let a = SqliteStore::open(&url, Default::default())
        .await
        .expect("open a");
    let b = SqliteStore::open(&url, Default::default())
        .await
        .expect("open b");
    (dir, url, a, b)
}

/// Two Wardens on one file both sweep: entries for rows the other one deleted must leave
/// this process's index too, or its memory grows for good.
#[tokio::test]
async fn rows_another_process_deletes_leave_this_process_index() {
    let (_dir, url, a, b) = two_stores().await;
    let fp = [1u8; 32];
    let t0 = 1_000;
    for key in ["k1", "k2", "k3"] {
        let r = a
            .reserve_idempotency("c1", key, fp, t0, t0 + 30, t0 + 100)
            .await;
        assert_eq!(r.expect("reserve"), Reservation::Reserved);
    }
    // B reads A's rows into its index on its next reservation.
    let r = b
        .reserve_idempotency("c1", "b1", fp, t0, t0 + 30, t0 + 5_000)
        .await;
    assert_eq!(r.expect("reserve"), Reservation::Reserved);
    let size = |s: &SqliteStore| idem_index(&s.inner).by_key.len();
    assert_eq!(size(&b), 4);
    assert!(
        a.release_idempotency("c1", "k2", t0 + 30)
            .await
            .expect("release")
    );
    // k2's release ended its lease in place; the sweep takes it with k1 and k3.
    assert_eq!(a.sweep_idempotency(t0 + 100, 100).await.expect("sweep"), 3);
    assert_eq!(size(&a), 0, "a's own deletions (it never read b's row)");
    assert_eq!(size(&b), 4, "b has not swept yet");
    // B's sweep finds nothing of its own to delete, and reads what A deleted.
    assert_eq!(b.sweep_idempotency(t0 + 100, 100).await.expect("sweep"), 0);
    assert_eq!(size(&b), 1);
    // A new process starts past the old deletions, and the log is pruned after a day.
    let c = SqliteStore::open(&url, Default::default())
        .await
        .expect("open c");
    assert_eq!(size(&c), 1);
    let log = |s: &SqliteStore| -> i64 {
        lock(&s.inner.writer)
            .query_row("SELECT count(*) FROM idempotency_deleted", [], |row| {
                row.get(0)
            })
            .expect("count")
    };
    assert_eq!(log(&c), 3);
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let later = i64::try_from(wall).expect("secs") + DELETED_KEPT_SECS + 1;
    // b1 has expired too, but the highest row stays (migration 4).
    assert_eq!(c.sweep_idempotency(later, 100).await.expect("sweep"), 0);
    assert_eq!(log(&c), 0);
    assert_eq!(size(&c), 1);
}

/// Under writes that never pause, the WAL still starts over once it passes the threshold.
/// With passive checkpoints alone this file grew to all the frames ever written (~25 MB).
#[test]
fn a_wal_under_steady_writes_starts_over() {
    test_wal_stays_bounded(64, 8 * 1024 * 1024);
}

fn test_wal_stays_bounded(restart_frames: i64, bound: u64) {
    let (_dir, path) = temp_file();
    let open = || {
        let conn = Connection::open(&path).expect("open");
        conn.busy_timeout(Duration::from_secs(10)).expect("busy");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        conn.pragma_update(None, "synchronous", "NORMAL")
            .expect("sync");
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .expect("no auto");
        conn
    };
    let writer = open();
    writer
        .execute_batch("CREATE TABLE t (b BLOB NOT NULL)")
        .expect("table");
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = Arc::clone(&done);
    let writes = std::thread::spawn(move || {
        // Commits with short gaps between them, as group commits come.
        for _ in 0..3000 {
            writer
                .execute("INSERT INTO t (b) VALUES (randomblob(3000))", [])
                .expect("insert");
            std::thread::sleep(Duration::from_micros(100));
        }
        stop.store(true, std::sync::atomic::Ordering::Release);
    });
    let checkpointer = open();
    checkpointer.busy_timeout(RESTART_WAIT).expect("busy");
    let mut largest = 0;
    while !done.load(std::sync::atomic::Ordering::Acquire) {
        checkpoint(&checkpointer, restart_frames).expect("checkpoint");
        let wal = path.with_extension("db-wal");
        largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        std::thread::sleep(Duration::from_millis(2));
    }
    writes.join().expect("writer");
    assert!(largest < bound, "the WAL reached {largest} bytes");
}

#[test]
fn an_index_entry_is_24_bytes() {
    assert_eq!(std::mem::size_of::<(Slot, i64)>(), 24);
    assert_ne!(idem_slot("a", "bc"), idem_slot("ab", "c"));
}

#[test]
fn a_schema_newer_than_this_build_is_refused() {
    let (_dir, path) = temp_file();
    Connection::open(&path)
        .and_then(|conn| conn.pragma_update(None, "user_version", schema_version() + 1))
        .expect("set version");
    let result = SqliteStore::open_blocking(&Location::File(path), &Default::default());
    assert!(
        matches!(result, Err(StoreError::SchemaTooNew { found, supported })
            if found == schema_version() + 1 && supported == schema_version()),
        "{:?}",
        result.err()
    );
}

#[tokio::test]
async fn malformed_rows_are_reported_as_corrupt_not_a_panic() {
    let (_dir, path) = temp_file();
    let store = SqliteStore::open(path.to_str().expect("utf-8"), Default::default())
        .await
        .expect("open");
    let t = sample_token(1);
    store.insert_token(t.clone(), None).await.expect("insert");
    lock(&store.inner.writer)
        .execute("UPDATE tokens SET scopes = 'not json'", [])
        .expect("corrupt");
    let err = store.token_by_hash(&t.hash).await;
    assert!(matches!(err, Err(StoreError::Corrupt { .. })), "{err:?}");
    lock(&store.inner.writer)
        .execute("UPDATE tokens SET scopes = '[]', hash = x'0102'", [])
        .expect("corrupt");
    let err = store.get_token(&t.id).await;
    assert!(matches!(err, Err(StoreError::Corrupt { .. })), "{err:?}");
}

#[test]
fn header_blocks_round_trip_and_truncation_is_detected() {
    let headers = vec![
        ("a".to_owned(), b"1".to_vec()),
        ("".to_owned(), Vec::new()),
        ("set-cookie".to_owned(), vec![0, 255]),
    ];
    let blob = encode_headers(&headers);
    assert_eq!(decode_headers(&blob), Some(headers));
    assert_eq!(decode_headers(&[]), Some(Vec::new()));
    assert_eq!(decode_headers(&blob[..blob.len() - 1]), None);
    assert_eq!(decode_headers(&[0, 0, 0, 1]), None);
}

proptest! {
    #[test]
    fn decoding_any_header_blob_never_panics(blob in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode_headers(&blob);
    }

    #[test]
    fn any_header_list_round_trips(
        headers in proptest::collection::vec((".{0,8}", proptest::collection::vec(any::<u8>(), 0..16)), 0..6)
    ) {
        prop_assert_eq!(decode_headers(&encode_headers(&headers)), Some(headers));
    }
}

/// Two stores on one file stand for two Wardens (a rolling restart): each finds records through
/// its own in-process index, so each must follow the other's appends, releases and takeovers.
#[tokio::test]
async fn two_processes_on_one_file_see_each_others_keys() {
    let db = Db::<SqliteFile>::new().await;
    let a = db.store.as_ref();
    let other = db.other().await;
    let b = other.as_ref();
    let fp = sha("req");
    // B loads its index before A appends anything, so what follows comes from the tail.
    assert_eq!(
        b.reserve_idempotency("c1", "warm", fp, T0, T0 + 30, T0 + 86_400)
            .await
            .expect("reserve"),
        Reservation::Reserved
    );
    for (i, key) in ["k1", "k2", "k3"].iter().enumerate() {
        let r = a
            .reserve_idempotency("c1", key, fp, T0, T0 + 30, T0 + 86_400)
            .await;
        assert_eq!(r.expect("reserve"), Reservation::Reserved, "{i}");
    }
    let r = b
        .reserve_idempotency("c1", "k2", fp, T0 + 1, T0 + 31, T0 + 86_400)
        .await;
    assert_eq!(
        r.expect("reserve"),
        Reservation::InFlight {
            lease_until: T0 + 30
        }
    );
    // A releases k2: B's index still points at the deleted row, which must read as free.
    assert!(
        a.release_idempotency("c1", "k2", T0 + 30)
            .await
            .expect("release")
    );
    let r = b
        .reserve_idempotency("c1", "k2", fp, T0 + 2, T0 + 32, T0 + 86_400)
        .await;
    assert_eq!(r.expect("reserve"), Reservation::Reserved);
    // ...and A, whose index dropped k2, must now find B's new row rather than append another.
    let r = a
        .reserve_idempotency("c1", "k2", fp, T0 + 3, T0 + 33, T0 + 86_400)
        .await;
    assert_eq!(
        r.expect("reserve"),
        Reservation::InFlight {
            lease_until: T0 + 32
        }
    );
    // B completes k2; A replays it.
    assert!(
        b.complete_idempotency("c1", "k2", T0 + 32, response(201))
            .await
            .expect("complete")
    );
    let r = a
        .reserve_idempotency("c1", "k2", fp, T0 + 5, T0 + 35, T0 + 86_400)
        .await;
    assert!(matches!(r.expect("reserve"), Reservation::Done(_)));
    // A's k1 lease runs out; B takes it over (a new row), and A's late completion is refused.
    let r = b
        .reserve_idempotency("c1", "k1", fp, T0 + 40, T0 + 70, T0 + 86_400)
        .await;
    assert_eq!(r.expect("reserve"), Reservation::Reserved);
    let late = a
        .complete_idempotency("c1", "k1", T0 + 30, response(200))
        .await;
    assert!(!late.expect("complete"));
    // A sweep in B removes what A's index points at (warm, k3 and k2; k1's row, the highest
    // since B took it over by appending, stays); A then reserves k3 afresh.
    assert_eq!(
        b.sweep_idempotency(T0 + 86_400, 100).await.expect("sweep"),
        3
    );
    let r = a
        .reserve_idempotency("c1", "k3", fp, T0 + 86_401, T0 + 86_431, T0 + 172_800)
        .await;
    assert_eq!(r.expect("reserve"), Reservation::Reserved);
    let r = b
        .reserve_idempotency("c1", "k3", fp, T0 + 86_402, T0 + 86_432, T0 + 172_800)
        .await;
    assert_eq!(
        r.expect("reserve"),
        Reservation::InFlight {
            lease_until: T0 + 86_431
        }
    );
}

#[tokio::test]
async fn in_memory_store_serves_reads_from_its_only_connection() {
    let store = open("sqlite::memory:", StoreOptions::default())
        .await
        .expect("open");
    let t = token("t1", TokenKind::Access);
    store.insert_token(t.clone(), None).await.expect("insert");
    assert_eq!(store.token_by_hash(&t.hash).await.expect("get"), Some(t));
    store.ping().await.expect("ping");
}

/// Group commits run on the runtime, or on the blocking pool when they must wait: with
/// `durability = "full"` (fsync per commit), when the writer is busy in this process, and when
/// another connection holds the database's write lock. Every path commits.
#[tokio::test]
async fn group_commits_land_whether_they_run_on_the_runtime_or_must_wait() {
    use crate::store::Durability;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("warden.db");
    let url = format!("sqlite://{}", path.display());
    let full = StoreOptions {
        durability: Durability::Full,
        ..StoreOptions::default()
    };
    let store = open(&url, full).await.expect("open");
    let fp = sha("body");
    let r = store
        .reserve_idempotency("c1", "full", fp, T0, T0 + 30, T0 + 86_400)
        .await;
    assert_eq!(
        r.expect("reserve under full durability"),
        Reservation::Reserved
    );
    drop(store);

    let store = open(&url, StoreOptions::default()).await.expect("open");
    // Another connection (an admin command, say) holds the write lock for a moment: the batch
    // does not wait on the runtime, it waits on the blocking pool and then commits.
    let other = rusqlite::Connection::open(&path).expect("second connection");
    other.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let reserving = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .reserve_idempotency("c1", "locked", fp, T0, T0 + 30, T0 + 86_400)
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // The runtime was free all along: this task ran while the batch waited.
    assert!(!reserving.is_finished(), "the batch waits for the lock");
    other.execute_batch("COMMIT").expect("unlock");
    let r = tokio::time::timeout(std::time::Duration::from_secs(5), reserving)
        .await
        .expect("answered once the lock is free")
        .expect("task");
    assert_eq!(r.expect("reserve after waiting"), Reservation::Reserved);
}

/// The writer never checkpoints inside a commit (`wal_autocheckpoint = 0`): the checkpointer
/// thread moves committed pages into the database file on its own.
#[tokio::test]
async fn committed_pages_reach_the_database_file_without_a_checkpoint_in_any_commit() {
    let db = Db::<SqliteFile>::new().await;
    let size = || std::fs::metadata(&db.backend.path).expect("db file").len();
    let before = size();
    for i in 0..2000 {
        let key = format!("k{i}");
        let r = db
            .store
            .reserve_idempotency("c1", &key, sha(&key), T0, T0 + 30, T0 + 86_400)
            .await;
        assert_eq!(r.expect("reserve"), Reservation::Reserved);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while size() <= before && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        size() > before,
        "the database file grew: the WAL was checkpointed"
    );
}
