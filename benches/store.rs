//! The store alone, no HTTP: token issuance and lookups (`insert_rate`), and the store's share of
//! a fresh-key idempotent request (`idem_rate`, the measurement `docs/benchmarks.md` and the
//! store's comments quote). `cargo bench --bench store`; `-- idem_rate` for one group.
//!
//! Both drive the store from one current-thread runtime, so one core does the work, as with
//! `TOKIO_WORKER_THREADS=1` in the load benchmarks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use sha2::{Digest, Sha256};
use warden::store::sqlite::SqliteStore;
use warden::store::{
    Durability, Hash, IdempotencyStore, NewEvent, Reservation, StoreOptions, StoredResponse,
    TokenKind, TokenRecord, TokenStore,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn sample_token(i: u64) -> TokenRecord {
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

/// Issuance (`insert_token` with its outbox event, one transaction each) and lookups of the
/// tokens issued (`token_by_hash`), for each durability; wall time.
fn insert_rate(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("insert_rate");
    // `durability = "full"` fsyncs every commit: samples of milliseconds, not microseconds.
    group.sampling_mode(SamplingMode::Flat).sample_size(20);
    for durability in [Durability::Normal, Durability::Full] {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("warden.db");
        let options = StoreOptions {
            durability,
            ..Default::default()
        };
        let store = rt
            .block_on(SqliteStore::open(path.to_str().expect("utf-8"), options))
            .expect("open");
        let mut issued = 0u64;
        group.bench_function(format!("insert_token/{durability:?}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        let event = NewEvent {
                            event_type: "AUTH.CREATED".to_owned(),
                            payload: format!(r#"{{"accessTokenId":"tok_{issued:08}"}}"#),
                            created_at: 1_700_000_000,
                        };
                        store
                            .insert_token(sample_token(issued), Some(event))
                            .await
                            .expect("insert");
                        issued += 1;
                    }
                    started.elapsed()
                })
            })
        });
        let issued = issued.max(1);
        let mut next = 0u64;
        group.bench_function(format!("token_by_hash/{durability:?}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        let hash: Hash = Sha256::digest((next % issued).to_be_bytes()).into();
                        store.token_by_hash(&hash).await.expect("lookup");
                        next += 1;
                    }
                    started.elapsed()
                })
            })
        });
    }
    group.finish();
}

/// The store's share of a fresh-key request: one reservation and one completion of a 1 KiB
/// response, 32 at a time as under `wrk -c64`, group commits included. Timed in CPU time of the
/// whole process (every thread: the blocking pool and the checkpointer too), from
/// `/proc/self/stat`, else in wall time. `IDEM_URL=sqlite::memory:` leaves the file I/O out;
/// `IDEM_BODY=5` stores a 5-byte body (what `bench/compare.sh idempotent`'s upstream answers).
fn idem_rate(c: &mut Criterion) {
    const TASKS: u64 = 32;
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let url = std::env::var("IDEM_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("w.db").display()));
    let body_len: usize = std::env::var("IDEM_BODY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let store = Arc::new(
        rt.block_on(SqliteStore::open(&url, StoreOptions::default()))
            .expect("open"),
    );
    let mut group = c.benchmark_group("idem_rate");
    // CPU time counts in 10 ms ticks: samples long enough for that to be ~1%.
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function(format!("pair/{body_len}B"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let started = Clock::now();
                let tasks: Vec<_> = (0..TASKS)
                    .map(|t| {
                        let store = Arc::clone(&store);
                        let pairs = iters / TASKS + u64::from(t < iters % TASKS);
                        tokio::spawn(async move {
                            for i in 0..pairs {
                                let key = format!("{:016x}-{t}-{i}", rand::random::<u64>());
                                let r = store
                                    .reserve_idempotency("bench", &key, [7; 32], 1000, 1060, 90_000)
                                    .await;
                                assert_eq!(r.expect("reserve"), Reservation::Reserved);
                                let response = StoredResponse {
                                    status: 201,
                                    headers: vec![(
                                        "content-type".to_owned(),
                                        b"text/plain".to_vec(),
                                    )],
                                    body: vec![b'x'; body_len],
                                };
                                let done = store
                                    .complete_idempotency("bench", &key, 1060, response)
                                    .await;
                                assert!(done.expect("complete"));
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.expect("task");
                }
                started.elapsed()
            })
        })
    });
    group.finish();
}

/// Where a sample's time is read: this process's CPU time where `/proc/self/stat` has it, else
/// the wall clock.
enum Clock {
    Cpu(f64),
    Wall(Instant),
}

impl Clock {
    fn now() -> Self {
        cpu_secs().map_or_else(|| Self::Wall(Instant::now()), Self::Cpu)
    }

    fn elapsed(&self) -> Duration {
        match self {
            Self::Cpu(start) => {
                Duration::from_secs_f64((cpu_secs().unwrap_or(*start) - start).max(0.0))
            }
            Self::Wall(start) => start.elapsed(),
        }
    }
}

/// This process's CPU time so far (user + system, all threads), from `/proc/self/stat`.
fn cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = stat.rsplit(')').next()?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name; clock ticks
    // of 1/100 s (USER_HZ).
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

criterion_group!(store, insert_rate, idem_rate);
criterion_main!(store);
