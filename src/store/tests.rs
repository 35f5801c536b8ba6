//! The contract every [`Store`] backend keeps: each operation's behaviour, through
//! `Arc<dyn Store>`, written once and run against each backend.
//!
//! Each test is a function generic over a [`Backend`] (how to get an empty store, and another
//! handle on the same data). A backend runs the whole suite with one line in its own test
//! module, after implementing [`Backend`] for a fixture type:
//!
//! ```ignore
//! // src/store/postgres/tests.rs
//! struct FreshSchema { /* a schema created for the test, dropped at the end */ }
//! impl crate::store::tests::Backend for FreshSchema {
//!     async fn empty() -> Self { /* CREATE SCHEMA … */ }
//!     async fn connect(&self) -> Arc<dyn Store> { /* a new pool on that schema */ }
//! }
//! mod contract {
//!     crate::store::tests::contract_suite!(super::FreshSchema);
//! }
//! ```
//!
//! SQLite's instantiation is in `store/sqlite/tests.rs`, beside the tests of what only SQLite
//! does (files, WAL, group commit, its in-process index). A new contract test is a
//! `pub(super) async fn name<B: Backend>()` here plus its name in [`contract_suite!`]; one left
//! out of the list is never called, which the `dead_code` lint (denied in CI) reports.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{
    AttemptOutcome, ClientRecord, ClientSource, DeliveryFilter, DeliveryState, Hash,
    IdempotencyState, NewEvent, Reservation, SecretHash, SigningKey, Store, StoreError,
    StoredResponse, TokenKind, TokenRecord, WebhookSubscription,
};

/// A backend under test: an empty store of its own for each test, and more handles on it.
pub(super) trait Backend: Sized {
    /// A new, empty store that no other test sees (a temporary file, a fresh schema…), not yet
    /// opened.
    async fn empty() -> Self;
    /// Opens a new handle on this store's data, as another process would: a restarted Warden,
    /// a second replica, or an admin command.
    async fn connect(&self) -> Arc<dyn Store>;
}

pub(super) const T0: i64 = 1_700_000_000;

pub(super) fn sha(seed: &str) -> Hash {
    Sha256::digest(seed.as_bytes()).into()
}

/// A test's store: the backend's fixture and one open handle on it.
pub(super) struct Db<B> {
    pub(super) backend: B,
    pub(super) store: Arc<dyn Store>,
}

impl<B: Backend> Db<B> {
    pub(super) async fn new() -> Self {
        let backend = B::empty().await;
        let store = backend.connect().await;
        Self { backend, store }
    }

    /// Drops every connection, as a restarted process has none, then opens the store again.
    pub(super) async fn reopen(self) -> Self {
        let Self { backend, store } = self;
        drop(store);
        let store = backend.connect().await;
        Self { backend, store }
    }

    /// A second handle on the same data, standing for another process.
    pub(super) async fn other(&self) -> Arc<dyn Store> {
        self.backend.connect().await
    }
}

pub(super) fn client(id: &str) -> ClientRecord {
    ClientRecord {
        id: id.to_owned(),
        name: format!("{id} name"),
        account: "acme".to_owned(),
        secrets: vec![SecretHash {
            hash: sha(&format!("{id} secret")),
            created_at: T0,
            expires_at: None,
        }],
        keys: vec![
            SigningKey {
                key_id: format!("{id}-ed25519"),
                alg: "ed25519".to_owned(),
                public_key: vec![7; 32],
            },
            SigningKey {
                key_id: format!("{id}-ed25519-next"),
                alg: "ed25519".to_owned(),
                public_key: vec![8; 32],
            },
        ],
        trusted_ips: vec!["127.0.0.1/32".to_owned(), "::1/128".to_owned()],
        scopes: vec!["read".to_owned(), "write".to_owned()],
        enabled: true,
        source: ClientSource::Config,
        created_at: T0,
        updated_at: T0,
    }
}

pub(super) fn token(id: &str, kind: TokenKind) -> TokenRecord {
    TokenRecord {
        id: id.to_owned(),
        hash: sha(&format!("{id} value")),
        kind,
        client_id: "c1".to_owned(),
        account: "acme".to_owned(),
        name: Some(format!("{id} name")),
        user: Some("alice".to_owned()),
        audience: Some("api".to_owned()),
        scopes: vec![
            "table://my.app.test.tokenapi".to_owned(),
            "level://admin".to_owned(),
        ],
        trusted_ips: vec!["10.0.0.0/8".to_owned()],
        created_at: T0,
        updated_at: T0,
        expires_at: Some(T0 + 3600),
        enabled: true,
        disabled_reason: None,
        revoked_at: None,
        replaced_by: None,
    }
}

/// An event of `acme`.
fn event(event_type: &str, at: i64) -> Option<NewEvent> {
    Some(event_of("acme", event_type, at))
}

fn event_of(account: &str, event_type: &str, at: i64) -> NewEvent {
    let id = crate::secret::new_id("evt_");
    NewEvent {
        payload: format!(r#"{{"id":"{id}","type":"{event_type}"}}"#),
        id,
        event_type: event_type.to_owned(),
        account: account.to_owned(),
        created_at: at,
    }
}

/// A subscription of `account` (`None`: the operator's) to `patterns`.
fn subscription(id: &str, account: Option<&str>, patterns: &[&str]) -> WebhookSubscription {
    WebhookSubscription {
        id: id.to_owned(),
        account: account.map(str::to_owned),
        url: format!("https://hooks.example/{id}"),
        events: patterns.iter().map(|p| (*p).to_owned()).collect(),
        description: Some(format!("{id} description")),
        sealed_secrets: vec![1, 2, 3, id.len() as u8],
        enabled: true,
        disabled_reason: None,
        source: if account.is_some() {
            ClientSource::Managed
        } else {
            ClientSource::Config
        },
        created_at: T0,
        updated_at: T0,
    }
}

/// Subscribes `acme` to every event, so that events are kept.
async fn subscribe_all(store: &dyn Store) {
    assert!(
        store
            .insert_subscription(subscription("wh_all", Some("acme"), &["*"]), 100)
            .await
            .expect("subscribe")
    );
}

pub(super) fn response(status: u16) -> StoredResponse {
    StoredResponse {
        status,
        headers: vec![
            ("content-type".to_owned(), b"application/json".to_vec()),
            ("set-cookie".to_owned(), b"a=1".to_vec()),
            ("set-cookie".to_owned(), vec![0xff, 0x00, 0x80]),
            ("x-empty".to_owned(), Vec::new()),
        ],
        body: br#"{"ok":true}"#.to_vec(),
    }
}

/// The types of the events delivered to anyone, oldest first.
async fn event_types(store: &dyn Store) -> Vec<String> {
    let filter = DeliveryFilter {
        limit: 1000,
        ..DeliveryFilter::default()
    };
    let mut all = store.list_deliveries(filter).await.expect("deliveries");
    all.reverse();
    all.into_iter().map(|d| d.event_type).collect()
}

pub(super) async fn ping_answers_on_a_fresh_store<B: Backend>() {
    let db = Db::<B>::new().await;
    db.store.ping().await.expect("ping");
}

pub(super) async fn upserted_client_reads_back_whole_and_upsert_replaces_everything_but_created_at<
    B: Backend,
>() {
    let db = Db::<B>::new().await;
    let c = client("c1");
    db.store.upsert_client(c.clone()).await.expect("upsert");
    assert_eq!(
        db.store.get_client("c1").await.expect("get"),
        Some(c.clone())
    );

    let mut changed = client("c1");
    changed.name = "renamed".to_owned();
    changed.keys.truncate(1);
    changed.secrets = vec![SecretHash {
        hash: sha("other"),
        created_at: T0 + 10,
        expires_at: Some(T0 + 100),
    }];
    changed.scopes = vec!["read".to_owned()];
    changed.trusted_ips.clear();
    changed.enabled = false;
    changed.source = ClientSource::Managed;
    changed.created_at = T0 + 10;
    changed.updated_at = T0 + 10;
    db.store
        .upsert_client(changed.clone())
        .await
        .expect("upsert again");

    let got = db
        .store
        .get_client("c1")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        got.created_at, T0,
        "created_at is kept from the first insert"
    );
    assert_eq!(
        got,
        ClientRecord {
            created_at: T0,
            ..changed
        }
    );
    assert_eq!(db.store.get_client("nobody").await.expect("get"), None);
}

pub(super) async fn list_clients_returns_every_client_with_its_own_secrets_and_keys<B: Backend>() {
    let db = Db::<B>::new().await;
    for id in ["b", "a", "c"] {
        db.store.upsert_client(client(id)).await.expect("upsert");
    }
    let listed = db.store.list_clients().await.expect("list");
    assert_eq!(listed, vec![client("a"), client("b"), client("c")]);
}

pub(super) async fn set_client_enabled_updates_and_reports_unknown_clients<B: Backend>() {
    let db = Db::<B>::new().await;
    db.store.upsert_client(client("c1")).await.expect("upsert");
    assert!(
        db.store
            .set_client_enabled("c1", false, T0 + 5)
            .await
            .expect("disable")
    );
    let got = db
        .store
        .get_client("c1")
        .await
        .expect("get")
        .expect("exists");
    assert!(!got.enabled);
    assert_eq!(got.updated_at, T0 + 5);
    assert!(
        !db.store
            .set_client_enabled("nobody", false, T0)
            .await
            .expect("unknown")
    );
}

pub(super) async fn secret_rotation_keeps_the_old_secret_until_the_overlap_ends<B: Backend>() {
    let db = Db::<B>::new().await;
    db.store.upsert_client(client("c1")).await.expect("upsert");
    let new = SecretHash {
        hash: sha("new secret"),
        created_at: T0 + 10,
        expires_at: None,
    };
    let added = db
        .store
        .add_client_secret("c1", new.clone(), Some(T0 + 100), T0 + 10, None)
        .await
        .expect("rotate");
    assert!(added);
    let got = db
        .store
        .get_client("c1")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got.secrets.len(), 2);
    assert_eq!(got.secrets[0].expires_at, Some(T0 + 100));
    assert!(got.secrets[0].is_active(T0 + 99) && !got.secrets[0].is_active(T0 + 100));
    assert_eq!(got.secrets[1], new);
    assert_eq!(got.updated_at, T0 + 10);

    // A second rotation after the overlap drops the expired secret and caps the current one.
    let newer = SecretHash {
        hash: sha("newer secret"),
        created_at: T0 + 200,
        expires_at: None,
    };
    db.store
        .add_client_secret("c1", newer.clone(), Some(T0 + 200), T0 + 200, None)
        .await
        .expect("rotate again");
    let got = db
        .store
        .get_client("c1")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        got.secrets,
        vec![newer.clone()],
        "an overlap ending now drops the old at once"
    );

    let dup = db
        .store
        .add_client_secret("c1", newer, None, T0 + 300, None)
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict { .. })), "{dup:?}");
    let unknown = db
        .store
        .add_client_secret("nobody", new, None, T0, event("CLIENT.SECRET_ROTATED", T0))
        .await
        .expect("unknown");
    assert!(!unknown);
}

pub(super) async fn prune_expired_secrets_drops_only_expired_ones<B: Backend>() {
    let db = Db::<B>::new().await;
    let mut c = client("c1");
    c.secrets.push(SecretHash {
        hash: sha("old"),
        created_at: T0,
        expires_at: Some(T0 + 50),
    });
    db.store.upsert_client(c).await.expect("upsert");
    assert_eq!(
        db.store
            .prune_expired_secrets(T0 + 49)
            .await
            .expect("prune"),
        0
    );
    assert_eq!(
        db.store
            .prune_expired_secrets(T0 + 50)
            .await
            .expect("prune"),
        1
    );
    let got = db
        .store
        .get_client("c1")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got.secrets, client("c1").secrets);
}

pub(super) async fn inserted_token_is_found_by_hash_and_by_id<B: Backend>() {
    let db = Db::<B>::new().await;
    let t = token("t1", TokenKind::Access);
    db.store
        .insert_token(t.clone(), None)
        .await
        .expect("insert");
    assert_eq!(
        db.store.token_by_hash(&t.hash).await.expect("by hash"),
        Some(t.clone())
    );
    assert_eq!(db.store.get_token("t1").await.expect("by id"), Some(t));
    assert_eq!(
        db.store.token_by_hash(&sha("nope")).await.expect("miss"),
        None
    );
    assert_eq!(db.store.get_token("nope").await.expect("miss"), None);
}

pub(super) async fn token_with_no_optional_fields_round_trips<B: Backend>() {
    let db = Db::<B>::new().await;
    let mut t = token("t1", TokenKind::ApiKey);
    t.name = None;
    t.user = None;
    t.audience = None;
    t.scopes.clear();
    t.trusted_ips.clear();
    t.expires_at = None;
    db.store
        .insert_token(t.clone(), None)
        .await
        .expect("insert");
    assert_eq!(db.store.get_token("t1").await.expect("get"), Some(t));
}

pub(super) async fn outbox_event_is_written_with_the_token_and_not_without_it<B: Backend>() {
    let db = Db::<B>::new().await;
    subscribe_all(db.store.as_ref()).await;
    let t = token("t1", TokenKind::Access);
    let created = event("AUTH.CREATED", T0).expect("event");
    db.store
        .insert_token(t.clone(), Some(created.clone()))
        .await
        .expect("insert");
    let claimed = db
        .store
        .claim_deliveries("w1", T0, T0 + 60, 10, 100)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].event.id, created.id);
    assert_eq!(claimed[0].event.event_type, "AUTH.CREATED");
    assert_eq!(claimed[0].event.account, "acme");
    assert_eq!(claimed[0].event.payload, created.payload);
    assert_eq!(claimed[0].event.created_at, T0);
    assert_eq!(claimed[0].attempt, 1);

    // The same hash again conflicts, and its event rolls back with it.
    let mut dup = token("t2", TokenKind::Access);
    dup.hash = t.hash;
    let err = db.store.insert_token(dup, event("AUTH.CREATED", T0)).await;
    assert!(matches!(err, Err(StoreError::Conflict { .. })), "{err:?}");
    let err = db
        .store
        .insert_token(token("t1", TokenKind::Access), event("AUTH.CREATED", T0))
        .await;
    assert!(matches!(err, Err(StoreError::Conflict { .. })), "{err:?}");
    assert_eq!(event_types(db.store.as_ref()).await, ["AUTH.CREATED"]);
    assert_eq!(db.store.get_token("t2").await.expect("get"), None);
}

pub(super) async fn list_tokens_filters_by_account_and_kind_oldest_first<B: Backend>() {
    let db = Db::<B>::new().await;
    let mut a = token("a", TokenKind::Managed);
    a.created_at = T0 + 2;
    let mut b = token("b", TokenKind::Managed);
    b.created_at = T0 + 1;
    let c = token("c", TokenKind::ApiKey);
    let mut other = token("d", TokenKind::Managed);
    other.account = "other".to_owned();
    for t in [&a, &b, &c, &other] {
        db.store
            .insert_token(t.clone(), None)
            .await
            .expect("insert");
    }
    let all = db.store.list_tokens("acme", None).await.expect("list");
    assert_eq!(all, vec![c.clone(), b.clone(), a.clone()]);
    let managed = db
        .store
        .list_tokens("acme", Some(TokenKind::Managed))
        .await
        .expect("list");
    assert_eq!(managed, vec![b, a]);
    let none = db.store.list_tokens("nobody", None).await.expect("list");
    assert!(none.is_empty());
}

pub(super) async fn revoke_token_is_idempotent_and_writes_one_event<B: Backend>() {
    let db = Db::<B>::new().await;
    subscribe_all(db.store.as_ref()).await;
    db.store
        .insert_token(token("t1", TokenKind::Access), None)
        .await
        .expect("insert");
    assert!(
        db.store
            .revoke_token("t1", T0 + 5, event("AUTH.DELETED", T0 + 5))
            .await
            .expect("revoke")
    );
    assert!(
        db.store
            .revoke_token("t1", T0 + 9, event("AUTH.DELETED", T0 + 9))
            .await
            .expect("again")
    );
    let got = db
        .store
        .get_token("t1")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        got.revoked_at,
        Some(T0 + 5),
        "the first revocation time stays"
    );
    assert_eq!(got.updated_at, T0 + 5);
    assert!(!got.is_active(T0 + 6));
    assert_eq!(event_types(db.store.as_ref()).await, ["AUTH.DELETED"]);
    assert!(
        !db.store
            .revoke_token("nope", T0, event("AUTH.DELETED", T0))
            .await
            .expect("unknown")
    );
    assert_eq!(event_types(db.store.as_ref()).await.len(), 1);
}

pub(super) async fn disabling_a_token_records_the_reason_and_enabling_clears_it<B: Backend>() {
    let db = Db::<B>::new().await;
    subscribe_all(db.store.as_ref()).await;
    db.store
        .insert_token(token("t1", TokenKind::Managed), None)
        .await
        .expect("insert");
    let reason = Some("leaked".to_owned());
    assert!(
        db.store
            .set_token_enabled(
                "t1",
                false,
                reason.clone(),
                T0 + 1,
                event("TOKEN.DISABLED", T0 + 1)
            )
            .await
            .expect("off")
    );
    // Disabled again: no change, so no second event.
    assert!(
        db.store
            .set_token_enabled(
                "t1",
                false,
                reason.clone(),
                T0 + 1,
                event("TOKEN.DISABLED", T0 + 1)
            )
            .await
            .expect("off again")
    );
    let got = db
        .store
        .get_token("t1")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        (got.enabled, got.disabled_reason, got.updated_at),
        (false, reason, T0 + 1)
    );
    assert!(
        db.store
            .set_token_enabled(
                "t1",
                true,
                Some("x".to_owned()),
                T0 + 2,
                event("TOKEN.ENABLED", T0 + 2)
            )
            .await
            .expect("on")
    );
    let got = db
        .store
        .get_token("t1")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        (got.enabled, got.disabled_reason, got.updated_at),
        (true, None, T0 + 2)
    );
    assert!(
        !db.store
            .set_token_enabled("nope", true, None, T0, event("TOKEN.ENABLED", T0))
            .await
            .expect("unknown")
    );
    assert_eq!(
        event_types(db.store.as_ref()).await,
        ["TOKEN.DISABLED", "TOKEN.ENABLED"]
    );
}

pub(super) async fn rename_token_changes_only_the_name<B: Backend>() {
    let db = Db::<B>::new().await;
    subscribe_all(db.store.as_ref()).await;
    let t = token("t1", TokenKind::Managed);
    db.store
        .insert_token(t.clone(), None)
        .await
        .expect("insert");
    assert!(
        db.store
            .rename_token(
                "t1",
                "new name".to_owned(),
                T0 + 3,
                event("TOKEN.RENAMED", T0 + 3)
            )
            .await
            .expect("rename")
    );
    // The same name again: no change, no event.
    assert!(
        db.store
            .rename_token(
                "t1",
                "new name".to_owned(),
                T0 + 3,
                event("TOKEN.RENAMED", T0 + 3)
            )
            .await
            .expect("rename")
    );
    let got = db
        .store
        .get_token("t1")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        got,
        TokenRecord {
            name: Some("new name".to_owned()),
            updated_at: T0 + 3,
            ..t
        }
    );
    assert!(
        !db.store
            .rename_token("nope", "x".to_owned(), T0, event("TOKEN.RENAMED", T0))
            .await
            .expect("unknown")
    );
    assert_eq!(event_types(db.store.as_ref()).await, ["TOKEN.RENAMED"]);
}

pub(super) async fn delete_token_removes_the_row_and_writes_its_event_once<B: Backend>() {
    let db = Db::<B>::new().await;
    subscribe_all(db.store.as_ref()).await;
    let t = token("t1", TokenKind::Managed);
    db.store
        .insert_token(t.clone(), None)
        .await
        .expect("insert");
    assert!(
        db.store
            .delete_token("t1", event("AUTH.DELETED", T0))
            .await
            .expect("delete")
    );
    assert_eq!(
        db.store.token_by_hash(&t.hash).await.expect("by hash"),
        None
    );
    assert!(
        !db.store
            .delete_token("t1", event("AUTH.DELETED", T0))
            .await
            .expect("again")
    );
    assert_eq!(event_types(db.store.as_ref()).await, ["AUTH.DELETED"]);
}

pub(super) async fn replace_api_key_revokes_the_old_key_and_inserts_the_new_one_atomically<
    B: Backend,
>() {
    let db = Db::<B>::new().await;
    subscribe_all(db.store.as_ref()).await;
    let old = token("k1", TokenKind::ApiKey);
    db.store
        .insert_token(old.clone(), None)
        .await
        .expect("insert");
    let new = token("k2", TokenKind::ApiKey);
    let replaced = db
        .store
        .replace_api_key(
            "k1",
            new.clone(),
            T0 + 7,
            vec![
                event_of("acme", "AUTH.DELETED", T0 + 7),
                event_of("acme", "AUTH.CREATED", T0 + 7),
            ],
        )
        .await
        .expect("replace");
    assert!(replaced);
    let got = db
        .store
        .get_token("k1")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got.revoked_at, Some(T0 + 7));
    assert_eq!(got.replaced_by.as_deref(), Some("k2"));
    assert_eq!(
        db.store.token_by_hash(&new.hash).await.expect("new"),
        Some(new)
    );

    // The old key is revoked now: it cannot be replaced a second time.
    let again = db
        .store
        .replace_api_key(
            "k1",
            token("k3", TokenKind::ApiKey),
            T0 + 8,
            vec![event_of("acme", "AUTH.CREATED", T0 + 8)],
        )
        .await
        .expect("replace again");
    assert!(!again);
    assert_eq!(db.store.get_token("k3").await.expect("get"), None);
    assert!(
        !db.store
            .replace_api_key("nope", token("k4", TokenKind::ApiKey), T0, Vec::new())
            .await
            .expect("unknown")
    );
    assert_eq!(
        event_types(db.store.as_ref()).await,
        ["AUTH.DELETED", "AUTH.CREATED"]
    );
}

pub(super) async fn failed_replacement_leaves_the_old_key_unrevoked<B: Backend>() {
    let db = Db::<B>::new().await;
    subscribe_all(db.store.as_ref()).await;
    db.store
        .insert_token(token("k1", TokenKind::ApiKey), None)
        .await
        .expect("insert");
    db.store
        .insert_token(token("taken", TokenKind::ApiKey), None)
        .await
        .expect("insert");
    let clash = token("taken", TokenKind::ApiKey);
    let err = db
        .store
        .replace_api_key(
            "k1",
            clash,
            T0 + 1,
            vec![event_of("acme", "AUTH.DELETED", T0 + 1)],
        )
        .await;
    assert!(matches!(err, Err(StoreError::Conflict { .. })), "{err:?}");
    let old = db
        .store
        .get_token("k1")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!((old.revoked_at, old.replaced_by), (None, None));
    assert!(event_types(db.store.as_ref()).await.is_empty());
}

pub(super) async fn purge_removes_tokens_expired_or_revoked_before_the_cutoff<B: Backend>() {
    let db = Db::<B>::new().await;
    let mut expired = token("expired", TokenKind::Access);
    expired.expires_at = Some(T0 + 10);
    let mut live = token("live", TokenKind::Access);
    live.expires_at = Some(T0 + 100);
    let mut forever = token("forever", TokenKind::ApiKey);
    forever.expires_at = None;
    let mut revoked = token("revoked", TokenKind::ApiKey);
    revoked.expires_at = None;
    for t in [&expired, &live, &forever, &revoked] {
        db.store
            .insert_token(t.clone(), None)
            .await
            .expect("insert");
    }
    db.store
        .revoke_token("revoked", T0 + 20, None)
        .await
        .expect("revoke");
    assert_eq!(
        db.store.purge_expired_tokens(T0 + 10).await.expect("purge"),
        0
    );
    assert_eq!(
        db.store.purge_expired_tokens(T0 + 50).await.expect("purge"),
        2
    );
    let left: Vec<String> = db
        .store
        .list_tokens("acme", None)
        .await
        .expect("list")
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(left, ["forever", "live"]);
}

pub(super) async fn idempotency_key_goes_from_reserved_to_in_flight_to_done<B: Backend>() {
    let db = Db::<B>::new().await;
    let s = db.store.as_ref();
    let fp = sha("POST /orders body");
    let r = s
        .reserve_idempotency("c1", "k1", fp, T0, T0 + 30, T0 + 86_400)
        .await;
    assert_eq!(r.expect("reserve"), Reservation::Reserved);
    let r = s
        .reserve_idempotency("c1", "k1", fp, T0 + 1, T0 + 31, T0 + 86_400)
        .await;
    assert_eq!(
        r.expect("reserve"),
        Reservation::InFlight {
            lease_until: T0 + 30
        }
    );
    let r = s
        .reserve_idempotency("c1", "k1", sha("other"), T0 + 1, T0 + 31, T0 + 86_400)
        .await;
    assert_eq!(r.expect("reserve"), Reservation::Mismatch);
    // Keys are per client.
    let r = s
        .reserve_idempotency("c2", "k1", sha("other"), T0 + 1, T0 + 31, T0 + 86_400)
        .await;
    assert_eq!(r.expect("reserve"), Reservation::Reserved);

    let done = s
        .complete_idempotency("c1", "k1", T0 + 30, response(201))
        .await
        .expect("complete");
    assert!(done);
    let r = s
        .reserve_idempotency("c1", "k1", fp, T0 + 3, T0 + 33, T0 + 90_000)
        .await;
    let Reservation::Done(record) = r.expect("reserve") else {
        panic!("expected Done");
    };
    assert_eq!(
        (record.client_id.as_str(), record.key.as_str()),
        ("c1", "k1")
    );
    assert_eq!(record.fingerprint, fp);
    assert_eq!(record.state, IdempotencyState::Done(response(201)));
    assert_eq!((record.created_at, record.expires_at), (T0, T0 + 86_400));
    let r = s
        .reserve_idempotency("c1", "k1", sha("other"), T0 + 3, T0 + 33, T0 + 90_000)
        .await;
    assert_eq!(r.expect("reserve"), Reservation::Mismatch);

    // Completing twice, or a key never reserved, changes nothing.
    let again = s
        .complete_idempotency("c1", "k1", T0 + 30, response(500))
        .await;
    assert!(!again.expect("complete again"));
    let unknown = s
        .complete_idempotency("c1", "nope", T0 + 30, response(200))
        .await;
    assert!(!unknown.expect("complete unknown"));
}

pub(super) async fn an_expired_lease_is_taken_over_by_the_next_request<B: Backend>() {
    let db = Db::<B>::new().await;
    let s = db.store.as_ref();
    let fp = sha("req");
    let r = s
        .reserve_idempotency("c1", "k1", fp, T0, T0 + 30, T0 + 86_400)
        .await;
    assert_eq!(r.expect("reserve"), Reservation::Reserved);
    let r = s
        .reserve_idempotency("c1", "k1", fp, T0 + 29, T0 + 59, T0 + 86_400)
        .await;
    assert_eq!(
        r.expect("live lease"),
        Reservation::InFlight {
            lease_until: T0 + 30
        }
    );
    // The holder crashed; at lease_until the key is free again, even for another request.
    let r = s
        .reserve_idempotency("c1", "k1", sha("new req"), T0 + 30, T0 + 60, T0 + 90_000)
        .await;
    assert_eq!(r.expect("takeover"), Reservation::Reserved);
    let r = s
        .reserve_idempotency("c1", "k1", sha("new req"), T0 + 31, T0 + 61, T0 + 90_000)
        .await;
    assert_eq!(
        r.expect("new lease"),
        Reservation::InFlight {
            lease_until: T0 + 60
        }
    );
}

pub(super) async fn a_holder_whose_lease_was_taken_over_can_neither_complete_nor_release<
    B: Backend,
>() {
    let db = Db::<B>::new().await;
    let s = db.store.as_ref();
    let fp = sha("req");
    let r = s
        .reserve_idempotency("c1", "k1", fp, T0, T0 + 30, T0 + 86_400)
        .await;
    assert_eq!(r.expect("reserve"), Reservation::Reserved);
    // The first holder is still running when its lease runs out; a retry takes the key over.
    let r = s
        .reserve_idempotency("c1", "k1", fp, T0 + 30, T0 + 60, T0 + 86_400)
        .await;
    assert_eq!(r.expect("takeover"), Reservation::Reserved);

    // The late first holder's writes are fenced off by its old lease.
    let late = s
        .complete_idempotency("c1", "k1", T0 + 30, response(500))
        .await;
    assert!(!late.expect("late complete"));
    let late = s.release_idempotency("c1", "k1", T0 + 30).await;
    assert!(!late.expect("late release"));
    let r = s
        .reserve_idempotency("c1", "k1", fp, T0 + 31, T0 + 61, T0 + 86_400)
        .await;
    assert_eq!(
        r.expect("still the new holder's"),
        Reservation::InFlight {
            lease_until: T0 + 60
        }
    );

    // The new holder completes under its own lease, and that is what replays.
    let done = s
        .complete_idempotency("c1", "k1", T0 + 60, response(201))
        .await;
    assert!(done.expect("complete"));
    let r = s
        .reserve_idempotency("c1", "k1", fp, T0 + 33, T0 + 63, T0 + 86_400)
        .await;
    assert!(
        matches!(r.expect("done"), Reservation::Done(rec) if rec.state == IdempotencyState::Done(response(201)))
    );
}

pub(super) async fn a_not_replayable_marker_round_trips<B: Backend>() {
    let db = Db::<B>::new().await;
    let s = db.store.as_ref();
    let fp = sha("req");
    s.reserve_idempotency("c1", "k1", fp, T0, T0 + 30, T0 + 100)
        .await
        .expect("reserve");
    let marker = StoredResponse::not_replayable("streamed");
    assert!(!marker.is_replayable());
    s.complete_idempotency("c1", "k1", T0 + 30, marker.clone())
        .await
        .expect("complete");
    let r = s
        .reserve_idempotency("c1", "k1", fp, T0 + 2, T0 + 32, T0 + 100)
        .await;
    assert!(
        matches!(r.expect("done"), Reservation::Done(rec) if rec.state == IdempotencyState::Done(marker))
    );
}

pub(super) async fn an_expired_done_record_no_longer_answers<B: Backend>() {
    let db = Db::<B>::new().await;
    let s = db.store.as_ref();
    let fp = sha("req");
    s.reserve_idempotency("c1", "k1", fp, T0, T0 + 30, T0 + 100)
        .await
        .expect("reserve");
    s.complete_idempotency("c1", "k1", T0 + 30, response(200))
        .await
        .expect("complete");
    let r = s
        .reserve_idempotency("c1", "k1", sha("other"), T0 + 100, T0 + 130, T0 + 200)
        .await;
    assert_eq!(r.expect("reserve after expiry"), Reservation::Reserved);
}

pub(super) async fn release_frees_an_in_flight_key_but_never_a_done_one<B: Backend>() {
    let db = Db::<B>::new().await;
    let s = db.store.as_ref();
    let fp = sha("req");
    s.reserve_idempotency("c1", "k1", fp, T0, T0 + 30, T0 + 100)
        .await
        .expect("reserve");
    assert!(
        s.release_idempotency("c1", "k1", T0 + 30)
            .await
            .expect("release")
    );
    let r = s
        .reserve_idempotency("c1", "k1", sha("other"), T0 + 1, T0 + 30, T0 + 100)
        .await;
    assert_eq!(r.expect("reserve again"), Reservation::Reserved);
    s.complete_idempotency("c1", "k1", T0 + 30, response(200))
        .await
        .expect("complete");
    assert!(
        !s.release_idempotency("c1", "k1", T0 + 30)
            .await
            .expect("release done")
    );
    let r = s
        .reserve_idempotency("c1", "k1", sha("other"), T0 + 3, T0 + 30, T0 + 100)
        .await;
    assert!(matches!(r.expect("still done"), Reservation::Done(_)));
}

pub(super) async fn concurrent_reservations_of_one_key_give_exactly_one_reserved<B: Backend>() {
    let db = Db::<B>::new().await;
    let fp = sha("req");
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let store = Arc::clone(&db.store);
            tokio::spawn(async move {
                store
                    .reserve_idempotency("c1", "k1", fp, T0, T0 + 30, T0 + 100)
                    .await
            })
        })
        .collect();
    let mut reserved = 0;
    let mut in_flight = 0;
    for task in tasks {
        match task.await.expect("join").expect("reserve") {
            Reservation::Reserved => reserved += 1,
            Reservation::InFlight { lease_until } => {
                assert_eq!(lease_until, T0 + 30);
                in_flight += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((reserved, in_flight), (1, 31));
}

pub(super) async fn a_nonce_is_claimed_once_until_it_lapses_by_any_handle<B: Backend>() {
    let db = Db::<B>::new().await;
    let other = db.other().await;
    let (n1, n2) = (sha("c1 k1 n1"), sha("c1 k1 n2"));
    assert!(db.store.claim_nonce(&n1, T0, T0 + 5).await.expect("claim"));
    // Used: refused by this handle and by another process on the same data.
    assert!(
        !db.store
            .claim_nonce(&n1, T0 + 1, T0 + 6)
            .await
            .expect("claim")
    );
    assert!(!other.claim_nonce(&n1, T0 + 5, T0 + 9).await.expect("claim"));
    // Another entry is another nonce.
    assert!(other.claim_nonce(&n2, T0, T0 + 5).await.expect("claim"));
    // Live through second T0 + 5 inclusive; after it, the entry is taken over, for its new window.
    assert!(
        db.store
            .claim_nonce(&n1, T0 + 6, T0 + 20)
            .await
            .expect("claim")
    );
    assert!(
        !other
            .claim_nonce(&n1, T0 + 19, T0 + 25)
            .await
            .expect("claim")
    );
    // A claim survives a restart.
    let db = db.reopen().await;
    assert!(
        !db.store
            .claim_nonce(&n1, T0 + 20, T0 + 25)
            .await
            .expect("claim")
    );
}

pub(super) async fn concurrent_claims_of_one_nonce_give_exactly_one_true<B: Backend>() {
    let db = Db::<B>::new().await;
    let other = db.other().await;
    let entry = sha("c1 k1 raced");
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let store = if i % 2 == 0 {
                Arc::clone(&db.store)
            } else {
                Arc::clone(&other)
            };
            tokio::spawn(async move { store.claim_nonce(&entry, T0, T0 + 30).await })
        })
        .collect();
    let mut claimed = 0;
    for task in tasks {
        if task.await.expect("join").expect("claim") {
            claimed += 1;
        }
    }
    assert_eq!(claimed, 1);
}

pub(super) async fn sweep_deletes_lapsed_nonces_in_bounded_batches<B: Backend>() {
    let db = Db::<B>::new().await;
    let s = db.store.as_ref();
    for i in 0..5 {
        let entry = sha(&format!("old{i}"));
        assert!(s.claim_nonce(&entry, T0, T0 + 10).await.expect("claim"));
    }
    assert!(
        s.claim_nonce(&sha("young"), T0, T0 + 100)
            .await
            .expect("claim")
    );
    // Live through second T0 + 10: nothing lapsed yet.
    assert_eq!(s.sweep_nonces(T0 + 10, 10).await.expect("sweep"), 0);
    assert_eq!(s.sweep_nonces(T0 + 11, 2).await.expect("sweep"), 2);
    assert_eq!(s.sweep_nonces(T0 + 11, 2).await.expect("sweep"), 2);
    assert_eq!(s.sweep_nonces(T0 + 11, 2).await.expect("sweep"), 1);
    assert_eq!(s.sweep_nonces(T0 + 11, 2).await.expect("sweep"), 0);
    // The live claim was kept.
    assert!(
        !s.claim_nonce(&sha("young"), T0 + 11, T0 + 100)
            .await
            .expect("claim")
    );
}

pub(super) async fn sweep_deletes_expired_records_in_bounded_batches<B: Backend>() {
    let db = Db::<B>::new().await;
    let s = db.store.as_ref();
    for i in 0..5 {
        s.reserve_idempotency("c1", &format!("old{i}"), sha("r"), T0, T0 + 30, T0 + 50)
            .await
            .expect("reserve");
    }
    s.reserve_idempotency("c1", "young", sha("r"), T0, T0 + 500, T0 + 500)
        .await
        .expect("reserve");
    assert_eq!(s.sweep_idempotency(T0 + 49, 10).await.expect("sweep"), 0);
    assert_eq!(s.sweep_idempotency(T0 + 50, 2).await.expect("sweep"), 2);
    assert_eq!(s.sweep_idempotency(T0 + 50, 2).await.expect("sweep"), 2);
    assert_eq!(s.sweep_idempotency(T0 + 50, 2).await.expect("sweep"), 1);
    assert_eq!(s.sweep_idempotency(T0 + 50, 2).await.expect("sweep"), 0);
    let r = s
        .reserve_idempotency("c1", "young", sha("r"), T0 + 50, T0 + 80, T0 + 500)
        .await;
    assert_eq!(
        r.expect("kept"),
        Reservation::InFlight {
            lease_until: T0 + 500
        }
    );
}

/// The ids of the deliveries of `subscription`, oldest first.
async fn deliveries_of(store: &dyn Store, subscription: &str) -> Vec<(String, DeliveryState)> {
    let filter = DeliveryFilter {
        subscription: Some(subscription.to_owned()),
        limit: 100,
        ..DeliveryFilter::default()
    };
    let mut all = store.list_deliveries(filter).await.expect("deliveries");
    all.reverse();
    all.into_iter().map(|d| (d.event_type, d.state)).collect()
}

pub(super) async fn events_fan_out_to_the_subscriptions_that_want_them<B: Backend>() {
    let db = Db::<B>::new().await;
    let s = db.store.as_ref();
    let mut off = subscription("wh_off", Some("acme"), &["*"]);
    off.enabled = false;
    for sub in [
        subscription("wh_auth", Some("acme"), &["AUTH.*"]),
        subscription(
            "wh_disabled",
            Some("acme"),
            &["TOKEN.DISABLED", "AUTH.DELETED"],
        ),
        subscription("wh_other", Some("globex"), &["*"]),
        off,
    ] {
        assert!(s.insert_subscription(sub, 10).await.expect("subscribe"));
    }
    assert!(
        s.put_config_subscription(subscription("ops", None, &["AUTH.CREATED"]))
            .await
            .expect("operator")
    );
    s.insert_token(token("t1", TokenKind::Access), event("AUTH.CREATED", T0))
        .await
        .expect("insert");
    s.revoke_token("t1", T0 + 1, event("AUTH.DELETED", T0 + 1))
        .await
        .expect("revoke");
    // Nobody wants TOKEN.RENAMED: the event is not kept.
    s.rename_token("t1", "n".to_owned(), T0 + 2, event("TOKEN.RENAMED", T0 + 2))
        .await
        .expect("rename");
    let created = |t: &str| (t.to_owned(), DeliveryState::Pending);
    assert_eq!(
        deliveries_of(s, "wh_auth").await,
        [created("AUTH.CREATED"), created("AUTH.DELETED")]
    );
    assert_eq!(
        deliveries_of(s, "wh_disabled").await,
        [created("AUTH.DELETED")]
    );
    assert_eq!(deliveries_of(s, "ops").await, [created("AUTH.CREATED")]);
    assert!(
        deliveries_of(s, "wh_other").await.is_empty(),
        "another account"
    );
    assert!(deliveries_of(s, "wh_off").await.is_empty(), "disabled");
    assert_eq!(event_types(s).await.len(), 4);

    // One event id for all its deliveries, so receivers see the same webhook-id.
    let claimed = s
        .claim_deliveries("w1", T0 + 5, T0 + 60, 10, 100)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 4);
    let ids: std::collections::BTreeSet<&str> = claimed
        .iter()
        .filter(|c| c.event.event_type == "AUTH.CREATED")
        .map(|c| c.event.id.as_str())
        .collect();
    assert_eq!(ids.len(), 1);
    let ops = claimed
        .iter()
        .find(|c| c.subscription.id == "ops")
        .expect("operator delivery");
    assert_eq!(
        ops.subscription,
        subscription("ops", None, &["AUTH.CREATED"])
    );
}

pub(super) async fn deliveries_are_leased_retried_declared_dead_and_replayed<B: Backend>() {
    let db = Db::<B>::new().await;
    let s = db.store.as_ref();
    subscribe_all(s).await;
    s.insert_token(token("t1", TokenKind::Access), event("AUTH.CREATED", T0))
        .await
        .expect("insert");
    assert!(
        s.claim_deliveries("w1", T0 - 1, T0 + 60, 10, 100)
            .await
            .expect("early")
            .is_empty(),
        "not due before the event"
    );
    let c = s
        .claim_deliveries("w1", T0, T0 + 60, 10, 100)
        .await
        .expect("claim")
        .pop()
        .expect("one");
    assert_eq!((c.attempt, c.lease_until), (1, T0 + 60));
    // Leased: nobody else gets it, not even after it falls due again.
    assert!(
        s.claim_deliveries("w2", T0 + 59, T0 + 120, 10, 100)
            .await
            .expect("leased")
            .is_empty()
    );
    let retry = AttemptOutcome::Failed {
        status: Some(500),
        error: "HTTP 500".to_owned(),
        retry_at: Some(T0 + 100),
        disable_subscription: None,
    };
    assert!(
        !s.finish_attempt(c.id, "w2", T0 + 60, retry.clone(), T0 + 1)
            .await
            .expect("wrong owner"),
        "only the holder records its attempt"
    );
    assert!(
        !s.finish_attempt(c.id, "w1", T0 + 61, retry.clone(), T0 + 1)
            .await
            .expect("wrong lease")
    );
    assert!(
        s.finish_attempt(c.id, "w1", T0 + 60, retry.clone(), T0 + 1)
            .await
            .expect("retry")
    );
    let d = s.get_delivery(c.id).await.expect("get").expect("exists");
    assert_eq!(
        (d.state, d.attempts, d.next_attempt_at, d.last_status),
        (DeliveryState::Pending, 1, T0 + 100, Some(500))
    );
    assert_eq!(d.last_error.as_deref(), Some("HTTP 500"));
    assert!(
        s.claim_deliveries("w2", T0 + 99, T0 + 200, 10, 100)
            .await
            .expect("not yet")
            .is_empty()
    );
    let c2 = s
        .claim_deliveries("w2", T0 + 100, T0 + 200, 10, 100)
        .await
        .expect("claim")
        .pop()
        .expect("due again");
    assert_eq!((c2.id, c2.attempt), (c.id, 2));
    let dead = AttemptOutcome::Failed {
        status: None,
        error: "connect: refused".to_owned(),
        retry_at: None,
        disable_subscription: None,
    };
    assert!(
        s.finish_attempt(c.id, "w2", T0 + 200, dead, T0 + 150)
            .await
            .expect("dead")
    );
    let d = s.get_delivery(c.id).await.expect("get").expect("exists");
    assert_eq!(
        (d.state, d.finished_at, d.last_status),
        (DeliveryState::Dead, Some(T0 + 150), None)
    );
    assert!(
        s.claim_deliveries("w1", i64::MAX / 2, i64::MAX / 2 + 1, 10, 100)
            .await
            .expect("dead stays")
            .is_empty()
    );
    let dead_only = DeliveryFilter {
        state: Some(DeliveryState::Dead),
        limit: 10,
        ..DeliveryFilter::default()
    };
    assert_eq!(
        s.list_deliveries(dead_only.clone())
            .await
            .expect("list")
            .len(),
        1
    );

    // Replayed: all of it since a time, then one by id.
    assert_eq!(
        s.replay_dead_deliveries(T0 + 151, None, T0 + 300)
            .await
            .expect("none so late"),
        0
    );
    assert_eq!(
        s.replay_dead_deliveries(T0 + 150, Some("wh_all"), T0 + 300)
            .await
            .expect("replay"),
        1
    );
    assert!(s.list_deliveries(dead_only).await.expect("list").is_empty());
    let c3 = s
        .claim_deliveries("w3", T0 + 300, T0 + 360, 10, 100)
        .await
        .expect("claim")
        .pop()
        .expect("replayed");
    assert_eq!(c3.attempt, 1, "a replay starts the count again");
    assert!(
        !s.replay_delivery(c.id, T0 + 301).await.expect("leased"),
        "a delivery being sent is not replayed under its sender"
    );
    assert!(
        s.finish_attempt(
            c.id,
            "w3",
            T0 + 360,
            AttemptOutcome::Delivered { status: 204 },
            T0 + 301
        )
        .await
        .expect("delivered")
    );
    let d = s.get_delivery(c.id).await.expect("get").expect("exists");
    assert_eq!(
        (d.state, d.last_status, d.last_error, d.finished_at),
        (DeliveryState::Delivered, Some(204), None, Some(T0 + 301))
    );
    assert!(
        !s.finish_attempt(
            c.id,
            "w3",
            T0 + 360,
            AttemptOutcome::Delivered { status: 200 },
            T0 + 302
        )
        .await
        .expect("twice")
    );
    assert!(s.replay_delivery(c.id, T0 + 400).await.expect("replay"));
    assert!(!s.replay_delivery(999_999, T0).await.expect("unknown"));
    let again = s
        .claim_deliveries("w1", T0 + 400, T0 + 460, 10, 100)
        .await
        .expect("claim");
    assert_eq!(again.len(), 1);
}

pub(super) async fn a_lapsed_lease_is_claimed_again_and_fences_its_first_holder<B: Backend>() {
    let db = Db::<B>::new().await;
    let s = db.store.as_ref();
    subscribe_all(s).await;
    s.insert_token(token("t1", TokenKind::Access), event("AUTH.CREATED", T0))
        .await
        .expect("insert");
    let first = s
        .claim_deliveries("crashed", T0, T0 + 30, 10, 100)
        .await
        .expect("claim")
        .pop()
        .expect("one");
    // The holder died: at the end of its lease the delivery goes to the next claimant.
    let other = db.other().await;
    let second = other
        .claim_deliveries("w2", T0 + 30, T0 + 90, 10, 100)
        .await
        .expect("claim")
        .pop()
        .expect("taken over");
    assert_eq!((second.id, second.attempt), (first.id, 2));
    assert!(
        !s.finish_attempt(
            first.id,
            "crashed",
            T0 + 30,
            AttemptOutcome::Delivered { status: 200 },
            T0 + 31
        )
        .await
        .expect("fenced")
    );
    assert!(
        other
            .finish_attempt(
                second.id,
                "w2",
                T0 + 90,
                AttemptOutcome::Delivered { status: 200 },
                T0 + 31
            )
            .await
            .expect("finish")
    );
}

pub(super) async fn gone_disables_the_subscription_and_its_deliveries_wait<B: Backend>() {
    let db = Db::<B>::new().await;
    let s = db.store.as_ref();
    subscribe_all(s).await;
    for (i, at) in [(1, T0), (2, T0 + 1)] {
        s.insert_token(
            token(&format!("t{i}"), TokenKind::Access),
            event("AUTH.CREATED", at),
        )
        .await
        .expect("insert");
    }
    let c = s
        .claim_deliveries("w1", T0, T0 + 60, 1, 100)
        .await
        .expect("claim")
        .pop()
        .expect("one");
    let gone = AttemptOutcome::Failed {
        status: Some(410),
        error: "HTTP 410".to_owned(),
        retry_at: Some(T0 + 5),
        disable_subscription: Some("the receiver answered 410 Gone".to_owned()),
    };
    assert!(
        s.finish_attempt(c.id, "w1", T0 + 60, gone, T0 + 2)
            .await
            .expect("gone")
    );
    let sub = s
        .get_subscription("wh_all")
        .await
        .expect("get")
        .expect("exists");
    assert!(!sub.enabled);
    assert_eq!(
        sub.disabled_reason.as_deref(),
        Some("the receiver answered 410 Gone")
    );
    assert!(
        s.claim_deliveries("w1", T0 + 10, T0 + 70, 10, 100)
            .await
            .expect("claim")
            .is_empty(),
        "a disabled subscription's deliveries wait"
    );
    s.insert_token(
        token("t3", TokenKind::Access),
        event("AUTH.CREATED", T0 + 3),
    )
    .await
    .expect("insert");
    assert!(
        s.set_subscription_enabled("wh_all", true, None, T0 + 10)
            .await
            .expect("enable")
    );
    let resumed = s
        .claim_deliveries("w1", T0 + 10, T0 + 70, 10, 100)
        .await
        .expect("claim");
    assert_eq!(
        resumed.len(),
        2,
        "the waiting ones, not the event of the disabled time"
    );
}

pub(super) async fn subscriptions_round_trip_and_are_limited_per_account<B: Backend>() {
    let db = Db::<B>::new().await;
    let s = db.store.as_ref();
    let a = subscription("wh_a", Some("acme"), &["AUTH.*"]);
    let mut b = subscription("wh_b", Some("acme"), &["*"]);
    b.created_at = T0 + 1;
    assert!(s.insert_subscription(a.clone(), 2).await.expect("a"));
    assert!(s.insert_subscription(b.clone(), 2).await.expect("b"));
    assert!(
        !s.insert_subscription(subscription("wh_c", Some("acme"), &["*"]), 2)
            .await
            .expect("limit"),
        "acme holds two"
    );
    let err = s.insert_subscription(a.clone(), 10).await;
    assert!(matches!(err, Err(StoreError::Conflict { .. })), "{err:?}");
    assert!(
        s.insert_subscription(subscription("wh_g", Some("globex"), &["*"]), 2)
            .await
            .expect("another account")
    );
    assert_eq!(
        s.get_subscription("wh_a").await.expect("get"),
        Some(a.clone())
    );
    assert_eq!(
        s.list_subscriptions(Some("acme")).await.expect("list"),
        [a.clone(), b.clone()]
    );
    assert_eq!(s.list_subscriptions(None).await.expect("all").len(), 3);

    // Operator subscriptions: put again replaces all but created_at; a managed id is refused.
    let mut ops = subscription("ops", None, &["*"]);
    assert!(s.put_config_subscription(ops.clone()).await.expect("put"));
    ops.url = "https://elsewhere.example/".to_owned();
    ops.events = vec!["AUTH.CREATED".to_owned()];
    ops.created_at = T0 + 50;
    ops.updated_at = T0 + 50;
    assert!(s.put_config_subscription(ops.clone()).await.expect("again"));
    let got = s
        .get_subscription("ops")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        got,
        WebhookSubscription {
            created_at: T0,
            ..ops
        }
    );
    let mut hijack = subscription("wh_a", None, &["*"]);
    hijack.url = "https://attacker.example/".to_owned();
    assert!(!s.put_config_subscription(hijack).await.expect("refused"));
    assert_eq!(
        s.get_subscription("wh_a").await.expect("get"),
        Some(a.clone())
    );

    assert!(
        s.set_subscription_enabled("wh_a", false, Some("paused".to_owned()), T0 + 5)
            .await
            .expect("off")
    );
    let got = s
        .get_subscription("wh_a")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        (got.enabled, got.disabled_reason.as_deref(), got.updated_at),
        (false, Some("paused"), T0 + 5)
    );
    assert!(
        s.set_subscription_secrets("wh_a", vec![9, 9], T0 + 6)
            .await
            .expect("secrets")
    );
    let got = s
        .get_subscription("wh_a")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!((got.sealed_secrets, got.updated_at), (vec![9, 9], T0 + 6));
    assert!(
        !s.set_subscription_enabled("nope", true, None, T0)
            .await
            .expect("unknown")
    );
    assert!(
        !s.set_subscription_secrets("nope", vec![], T0)
            .await
            .expect("unknown")
    );

    // Deleting a subscription takes its deliveries with it.
    s.insert_token(token("t1", TokenKind::Access), event("AUTH.CREATED", T0))
        .await
        .expect("insert");
    assert_eq!(deliveries_of(s, "wh_b").await.len(), 1);
    assert!(s.delete_subscription("wh_b").await.expect("delete"));
    assert!(!s.delete_subscription("wh_b").await.expect("again"));
    assert!(deliveries_of(s, "wh_b").await.is_empty());
    assert_eq!(s.get_subscription("wh_b").await.expect("get"), None);
    let db = db.reopen().await;
    assert_eq!(
        db.store
            .get_subscription("wh_a")
            .await
            .expect("get")
            .map(|s| s.id),
        Some("wh_a".to_owned())
    );
}

pub(super) async fn finished_deliveries_and_their_events_are_purged<B: Backend>() {
    let db = Db::<B>::new().await;
    let s = db.store.as_ref();
    subscribe_all(s).await;
    for i in 0..3 {
        s.insert_token(
            token(&format!("t{i}"), TokenKind::Access),
            event("AUTH.CREATED", T0),
        )
        .await
        .expect("insert");
    }
    let claimed = s
        .claim_deliveries("w1", T0, T0 + 60, 2, 100)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 2);
    s.finish_attempt(
        claimed[0].id,
        "w1",
        T0 + 60,
        AttemptOutcome::Delivered { status: 200 },
        T0 + 10,
    )
    .await
    .expect("delivered");
    let dead = AttemptOutcome::Failed {
        status: Some(500),
        error: "HTTP 500".to_owned(),
        retry_at: None,
        disable_subscription: None,
    };
    s.finish_attempt(claimed[1].id, "w1", T0 + 60, dead, T0 + 20)
        .await
        .expect("dead");
    assert_eq!(s.purge_webhooks(T0 + 10, 100).await.expect("purge"), 0);
    // The delivered one and its event; the dead one is younger than the cut-off.
    assert_eq!(s.purge_webhooks(T0 + 11, 100).await.expect("purge"), 2);
    assert_eq!(s.get_delivery(claimed[0].id).await.expect("get"), None);
    assert!(s.get_delivery(claimed[1].id).await.expect("get").is_some());
    // Pending deliveries stay whatever their age.
    assert_eq!(s.purge_webhooks(T0 + 1000, 100).await.expect("purge"), 2);
    assert_eq!(event_types(s).await, ["AUTH.CREATED"]);
    let left = s
        .claim_deliveries("w1", T0 + 1000, T0 + 1060, 10, 100)
        .await
        .expect("claim");
    assert_eq!(left.len(), 1);
    // Ids are never reused after a purge.
    s.insert_token(token("t9", TokenKind::Access), event("AUTH.CREATED", T0))
        .await
        .expect("insert");
    let newest = s
        .list_deliveries(DeliveryFilter {
            limit: 1,
            ..DeliveryFilter::default()
        })
        .await
        .expect("list");
    assert!(newest[0].id > claimed[1].id);
}

/// One subscription's backlog never takes more than its share of the senders, whoever claims.
pub(super) async fn a_subscription_never_holds_more_than_its_share_of_leases<B: Backend>() {
    let db = Db::<B>::new().await;
    let s = db.store.as_ref();
    let mut quiet = subscription("wh_quiet", Some("globex"), &["*"]);
    quiet.created_at = T0 + 1;
    assert!(
        s.insert_subscription(subscription("wh_busy", Some("acme"), &["*"]), 10)
            .await
            .expect("busy")
    );
    assert!(s.insert_subscription(quiet, 10).await.expect("quiet"));
    // acme's backlog is older than globex's two events.
    for i in 0..10 {
        s.insert_token(
            token(&format!("a{i}"), TokenKind::Access),
            event("AUTH.CREATED", T0),
        )
        .await
        .expect("insert");
    }
    for i in 0..2 {
        s.insert_token(
            token(&format!("g{i}"), TokenKind::Access),
            Some(event_of("globex", "AUTH.CREATED", T0 + 1)),
        )
        .await
        .expect("insert");
    }
    let first = s
        .claim_deliveries("w1", T0 + 5, T0 + 60, 10, 3)
        .await
        .expect("claim");
    let count = |claimed: &[crate::store::ClaimedDelivery], sub: &str| {
        claimed.iter().filter(|c| c.subscription.id == sub).count()
    };
    assert_eq!(
        (count(&first, "wh_busy"), count(&first, "wh_quiet")),
        (3, 2)
    );
    let other = db.other().await;
    assert!(
        other
            .claim_deliveries("w2", T0 + 5, T0 + 60, 10, 3)
            .await
            .expect("claim")
            .is_empty(),
        "acme holds its three, across owners"
    );
    let done = first
        .iter()
        .find(|c| c.subscription.id == "wh_busy")
        .expect("one");
    assert!(
        s.finish_attempt(
            done.id,
            "w1",
            T0 + 60,
            AttemptOutcome::Delivered { status: 200 },
            T0 + 6
        )
        .await
        .expect("finish")
    );
    let next = other
        .claim_deliveries("w2", T0 + 6, T0 + 60, 10, 3)
        .await
        .expect("claim");
    assert_eq!(
        (next.len(), count(&next, "wh_busy")),
        (1, 1),
        "one slot came free"
    );
    // Leases that ran out free their slots too.
    let later = other
        .claim_deliveries("w2", T0 + 60, T0 + 120, 10, 3)
        .await
        .expect("claim");
    assert_eq!(count(&later, "wh_busy"), 3);
}

/// Two processes claiming at once never get the same delivery.
pub(super) async fn concurrent_claims_never_share_a_delivery<B: Backend>() {
    let db = Db::<B>::new().await;
    subscribe_all(db.store.as_ref()).await;
    for i in 0..40 {
        db.store
            .insert_token(
                token(&format!("t{i}"), TokenKind::Access),
                event("AUTH.CREATED", T0),
            )
            .await
            .expect("insert");
    }
    let mut tasks = Vec::new();
    for w in 0..4 {
        let store = db.other().await;
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            // Bounded: a store that handed leased deliveries out again would never run dry.
            for _ in 0..50 {
                let got = store
                    .claim_deliveries(&format!("w{w}"), T0, T0 + 60, 3, 100)
                    .await
                    .expect("claim");
                if got.is_empty() {
                    break;
                }
                mine.extend(got.into_iter().map(|c| c.id));
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let unique: std::collections::BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), 40, "every delivery claimed");
    assert_eq!(unique.len(), 40, "and none twice");
}

pub(super) async fn everything_written_is_there_after_a_reopen<B: Backend>() {
    let db = Db::<B>::new().await;
    subscribe_all(db.store.as_ref()).await;
    let c = client("c1");
    let t = token("t1", TokenKind::Access);
    let k = token("k1", TokenKind::ApiKey);
    db.store.upsert_client(c.clone()).await.expect("upsert");
    db.store
        .insert_token(t.clone(), event("AUTH.CREATED", T0))
        .await
        .expect("insert");
    db.store.insert_token(k, None).await.expect("insert");
    db.store
        .revoke_token("k1", T0 + 1, None)
        .await
        .expect("revoke");
    let fp = sha("req");
    db.store
        .reserve_idempotency("c1", "done", fp, T0, T0 + 30, T0 + 100)
        .await
        .expect("reserve");
    db.store
        .complete_idempotency("c1", "done", T0 + 30, response(201))
        .await
        .expect("complete");
    db.store
        .reserve_idempotency("c1", "flying", fp, T0, T0 + 30, T0 + 100)
        .await
        .expect("reserve");

    let db = db.reopen().await;
    let s = db.store.as_ref();
    assert_eq!(s.get_client("c1").await.expect("get"), Some(c));
    assert_eq!(s.token_by_hash(&t.hash).await.expect("get"), Some(t));
    let k = s.get_token("k1").await.expect("get").expect("exists");
    assert_eq!(k.revoked_at, Some(T0 + 1));
    assert_eq!(event_types(s).await, ["AUTH.CREATED"]);
    let r = s
        .reserve_idempotency("c1", "done", fp, T0 + 1, T0 + 31, T0 + 100)
        .await;
    assert!(
        matches!(r.expect("reserve"), Reservation::Done(rec) if rec.state == IdempotencyState::Done(response(201)))
    );
    let r = s
        .reserve_idempotency("c1", "flying", fp, T0 + 1, T0 + 31, T0 + 100)
        .await;
    assert_eq!(
        r.expect("reserve"),
        Reservation::InFlight {
            lease_until: T0 + 30
        }
    );
}

/// A reservation this process did not make (here: made before a restart) is not in the
/// process's list of its own, so its completion looks the row up: it lands under the lease it
/// was reserved with, and only under that one.
pub(super) async fn a_reservation_made_before_a_restart_completes_after_it<B: Backend>() {
    let db = Db::<B>::new().await;
    let fp = sha("req");
    let r = db
        .store
        .reserve_idempotency("c1", "k1", fp, T0, T0 + 30, T0 + 100)
        .await;
    assert_eq!(r.expect("reserve"), Reservation::Reserved);

    let db = db.reopen().await;
    let s = db.store.as_ref();
    let stale = s
        .complete_idempotency("c1", "k1", T0 + 29, response(201))
        .await;
    assert!(!stale.expect("complete"), "another lease");
    let done = s
        .complete_idempotency("c1", "k1", T0 + 30, response(201))
        .await;
    assert!(done.expect("complete"), "its own lease");
    let r = s
        .reserve_idempotency("c1", "k1", fp, T0 + 1, T0 + 31, T0 + 100)
        .await;
    assert!(
        matches!(r.expect("reserve"), Reservation::Done(rec) if rec.state == IdempotencyState::Done(response(201)))
    );
}

pub(super) async fn the_change_feed_sees_token_and_client_changes_from_another_process<
    B: Backend,
>() {
    let db = Db::<B>::new().await;
    db.store
        .insert_token(token("t1", TokenKind::Access), None)
        .await
        .expect("insert");
    db.store.upsert_client(client("c1")).await.expect("client");
    let marker = db.store.change_marker().expect("marker");
    let base = db.store.latest_change().await.expect("latest");
    // A second store on the same data stands for an admin command in another process.
    let other = db.other().await;
    assert!(
        other
            .revoke_token("t1", T0 + 1, None)
            .await
            .expect("revoke")
    );
    assert!(
        other
            .set_client_enabled("c1", false, T0 + 1)
            .await
            .expect("disable")
    );
    // SQLite sees another process's commit at once; PostgreSQL when the notification (or the
    // fallback poll) arrives. Bounded: a marker that never moves fails the test.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while db.store.change_marker().expect("marker") == marker {
        assert!(
            std::time::Instant::now() < deadline,
            "the marker never moved after another process's changes"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let changes = db.store.changes_since(base, 10).await.expect("changes");
    assert_eq!(changes.len(), 2);
    assert_eq!(
        changes[0].token_hash,
        Some(token("t1", TokenKind::Access).hash)
    );
    assert_eq!(changes[1].client_id.as_deref(), Some("c1"));
    assert!(changes[0].seq < changes[1].seq);
    assert!(
        db.store
            .changes_since(changes[1].seq, 10)
            .await
            .expect("none")
            .is_empty()
    );
}

pub(super) async fn group_committed_reservations_are_each_atomic_and_durable<B: Backend>() {
    let db = Db::<B>::new().await;
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let store = Arc::clone(&db.store);
            tokio::spawn(async move {
                let key = format!("k{}", i % 32);
                let r = store
                    .reserve_idempotency("c1", &key, sha(&key), T0, T0 + 30, T0 + 100)
                    .await
                    .expect("reserve");
                if r == Reservation::Reserved {
                    let done = store
                        .complete_idempotency("c1", &key, T0 + 30, response(201))
                        .await
                        .expect("complete");
                    assert!(done);
                }
                r
            })
        })
        .collect();
    let mut reserved = 0;
    for task in tasks {
        if task.await.expect("join") == Reservation::Reserved {
            reserved += 1;
        }
    }
    assert_eq!(
        reserved, 32,
        "one reservation per key, however the batches fell"
    );
    let db = db.reopen().await;
    for i in 0..32 {
        let key = format!("k{i}");
        let r = db
            .store
            .reserve_idempotency("c1", &key, sha(&key), T0 + 1, T0 + 31, T0 + 100)
            .await
            .expect("reserve");
        assert!(matches!(r, Reservation::Done(_)), "{key}: {r:?}");
    }
}

/// The change marker is read by authenticated requests to learn that a token or client
/// changed: idempotency commits (which change neither) must not move it, or every request
/// would go looking for changes that are not there.
pub(super) async fn the_change_marker_moves_with_the_change_feed_only<B: Backend>() {
    let db = Db::<B>::new().await;
    let marker = db.store.change_marker().expect("marker");
    let r = db
        .store
        .reserve_idempotency("c1", "k1", sha("k1"), T0, T0 + 30, T0 + 86_400)
        .await;
    assert_eq!(r.expect("reserve"), Reservation::Reserved);
    assert_eq!(db.store.change_marker().expect("marker"), marker);
    db.store
        .insert_token(token("t1", TokenKind::Access), None)
        .await
        .expect("insert");
    assert!(
        db.store
            .revoke_token("t1", T0 + 1, None)
            .await
            .expect("revoke")
    );
    assert_ne!(db.store.change_marker().expect("marker"), marker);
}

/// Instantiates the contract suite for a backend: `contract_suite!(Fixture)`, where `Fixture`
/// implements [`Backend`], defines one `#[tokio::test]` per contract test in the module it is
/// invoked in (see the module comment).
///
/// `contract_suite!(Fixture, guard)` runs each test only when `guard(test_name)` is true (a
/// backend that needs a server returns early, saying why, when there is none).
macro_rules! contract_suite {
    ($backend:ty) => {
        $crate::store::tests::contract_suite!($backend, |_: &str| true);
    };
    ($backend:ty, $guard:expr) => {
        $crate::store::tests::contract_suite!(@each $backend, $guard, #[tokio::test];
            ping_answers_on_a_fresh_store,
            upserted_client_reads_back_whole_and_upsert_replaces_everything_but_created_at,
            list_clients_returns_every_client_with_its_own_secrets_and_keys,
            set_client_enabled_updates_and_reports_unknown_clients,
            secret_rotation_keeps_the_old_secret_until_the_overlap_ends,
            prune_expired_secrets_drops_only_expired_ones,
            inserted_token_is_found_by_hash_and_by_id,
            token_with_no_optional_fields_round_trips,
            outbox_event_is_written_with_the_token_and_not_without_it,
            list_tokens_filters_by_account_and_kind_oldest_first,
            revoke_token_is_idempotent_and_writes_one_event,
            disabling_a_token_records_the_reason_and_enabling_clears_it,
            rename_token_changes_only_the_name,
            delete_token_removes_the_row_and_writes_its_event_once,
            replace_api_key_revokes_the_old_key_and_inserts_the_new_one_atomically,
            failed_replacement_leaves_the_old_key_unrevoked,
            purge_removes_tokens_expired_or_revoked_before_the_cutoff,
            idempotency_key_goes_from_reserved_to_in_flight_to_done,
            an_expired_lease_is_taken_over_by_the_next_request,
            a_holder_whose_lease_was_taken_over_can_neither_complete_nor_release,
            a_not_replayable_marker_round_trips,
            an_expired_done_record_no_longer_answers,
            release_frees_an_in_flight_key_but_never_a_done_one,
            sweep_deletes_expired_records_in_bounded_batches,
            a_nonce_is_claimed_once_until_it_lapses_by_any_handle,
            sweep_deletes_lapsed_nonces_in_bounded_batches,
            events_fan_out_to_the_subscriptions_that_want_them,
            deliveries_are_leased_retried_declared_dead_and_replayed,
            a_lapsed_lease_is_claimed_again_and_fences_its_first_holder,
            gone_disables_the_subscription_and_its_deliveries_wait,
            subscriptions_round_trip_and_are_limited_per_account,
            finished_deliveries_and_their_events_are_purged,
            a_subscription_never_holds_more_than_its_share_of_leases,
            everything_written_is_there_after_a_reopen,
            a_reservation_made_before_a_restart_completes_after_it,
            the_change_feed_sees_token_and_client_changes_from_another_process,
            the_change_marker_moves_with_the_change_feed_only,
        );
        $crate::store::tests::contract_suite!(
            @each $backend, $guard, #[tokio::test(flavor = "multi_thread", worker_threads = 4)];
            concurrent_reservations_of_one_key_give_exactly_one_reserved,
            group_committed_reservations_are_each_atomic_and_durable,
            concurrent_claims_never_share_a_delivery,
            concurrent_claims_of_one_nonce_give_exactly_one_true,
        );
    };
    (@each $backend:ty, $guard:expr, #[$attr:meta]; $($test:ident,)*) => {
        $(
            #[$attr]
            async fn $test() {
                if !($guard)(stringify!($test)) {
                    return;
                }
                $crate::store::tests::$test::<$backend>().await
            }
        )*
    };
}
pub(crate) use contract_suite;
