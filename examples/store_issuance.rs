//! Store-level issuance rate: `insert_token` (with an outbox event, as issuance writes one)
//! from N concurrent tasks for a few seconds, against the store named by the first argument.
//!
//! `.ci/with-postgres sh -c 'cargo run --release --example store_issuance -- "$TEST_WARDEN_PG_URL" 32'`
//! or `cargo run --release --example store_issuance -- sqlite:///tmp/x.db 32`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use warden::store::{NewEvent, StoreOptions, TokenKind, TokenRecord, open};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .expect("usage: store_issuance <store url> [concurrency] [seconds]");
    let tasks: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(32);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let store = open(&url, StoreOptions::default()).await.expect("open");
    let run = format!("{:x}", rand::random::<u64>());
    let done = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (store, done, run) = (Arc::clone(&store), Arc::clone(&done), run.clone());
        handles.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < end {
                let id = format!("{run}-{t}-{i}");
                let token = TokenRecord {
                    id: id.clone(),
                    hash: Sha256::digest(id.as_bytes()).into(),
                    kind: TokenKind::Access,
                    client_id: "bench".into(),
                    account: "acct".into(),
                    name: None,
                    user: None,
                    audience: None,
                    scopes: vec!["read".into()],
                    trusted_ips: Vec::new(),
                    created_at: 1_700_000_000,
                    updated_at: 1_700_000_000,
                    expires_at: Some(1_700_003_600),
                    enabled: true,
                    disabled_reason: None,
                    revoked_at: None,
                    replaced_by: None,
                };
                let event = NewEvent {
                    id: format!("evt_{id}"),
                    event_type: "AUTH.CREATED".into(),
                    account: "acct".into(),
                    payload: "{}".into(),
                    created_at: 1_700_000_000,
                };
                store
                    .insert_token(token, Some(event))
                    .await
                    .expect("insert");
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    for h in handles {
        h.await.expect("task");
    }
    let n = done.load(Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{n} tokens in {elapsed:.2}s with {tasks} tasks: {:.0} tokens/s",
        n as f64 / elapsed
    );
}
