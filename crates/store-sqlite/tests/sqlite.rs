//! What the SQLite adapter promises beyond the port's contract: durability
//! across reopening the file, exclusive use of it, one outbox row per change,
//! and independent commands inside one group commit.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use stampede_app::failure::Chain;
use stampede_app::ports::{
    CatalogStore, CommitOutcome, OrderStore, OutboxStore, Store, StoreError, UserStore,
};
use stampede_domain::account::{Email, User};
use stampede_domain::catalog::{Product, Sale, SaleRequest, SaleState};
use stampede_domain::idempotency::IdempotencyKey;
use stampede_domain::ids::{ProductId, SaleId, UserId};
use stampede_domain::order::{Order, OrderStatus};
use stampede_domain::quantity::Quantity;
use stampede_domain::time::Timestamp;
use stampede_store_sqlite::{SqliteSettings, SqliteStore};
use tempfile::TempDir;

const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);

fn db(dir: &TempDir) -> PathBuf {
    dir.path().join("stampede.db")
}

fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path, SqliteSettings::default()).unwrap()
}

fn product() -> Product {
    Product::create(
        &format!("SKU-{}", ProductId::generate()),
        "Phone",
        49_900,
        "EUR",
        NOW,
    )
    .unwrap()
}

async fn stored_sale(store: &SqliteStore, quantity: i64) -> Sale {
    let product = product();
    store.insert_product(&product).await.unwrap();
    let request = SaleRequest {
        quantity,
        per_user_limit: Some(quantity),
        ..SaleRequest::default()
    };
    let sale = Sale::create(&product, &request, NOW).unwrap();
    store.insert_sale(&sale).await.unwrap();
    sale
}

fn place(sale: &Sale, user: &str, key: &str) -> Order {
    Order::place(
        sale,
        UserId::parse(user).unwrap(),
        Quantity::parse("quantity", 1).unwrap(),
        IdempotencyKey::parse(key).unwrap(),
        NOW,
    )
}

fn places(sale: &Sale, count: usize) -> Vec<Order> {
    (0..count)
        .map(|i| place(sale, &format!("user-{i}"), "key"))
        .collect()
}

#[tokio::test]
async fn committed_orders_survive_closing_and_reopening_the_file() {
    let dir = TempDir::new().unwrap();
    let store = open(&db(&dir));
    let sale = stored_sale(&store, 10).await;
    let orders = places(&sale, 4);
    store.commit_orders(&orders).await.unwrap();
    store.cancel_order(orders[0].id, NOW).await.unwrap();
    store.close().await;
    drop(store);

    let store = open(&db(&dir));
    assert_eq!(store.sale(sale.id).await.unwrap(), Some(sale.clone()));
    for order in &orders[1..] {
        assert_eq!(store.order(order.id).await.unwrap().as_ref(), Some(order));
    }
    let first = store.order(orders[0].id).await.unwrap().unwrap();
    assert_eq!(first.status, OrderStatus::Cancelled);
    let counts = store.sale_counts(sale.id).await.unwrap();
    assert_eq!((counts.sold, counts.remaining), (3, 7));
}

#[tokio::test]
async fn dropping_the_store_without_closing_it_keeps_what_was_answered() {
    let dir = TempDir::new().unwrap();
    let store = open(&db(&dir));
    let sale = stored_sale(&store, 10).await;
    let orders = places(&sale, 3);
    store.commit_orders(&orders).await.unwrap();
    drop(store);

    // Dropping waited for the writer: the file is free at once.
    let store = open(&db(&dir));
    for order in &orders {
        assert!(store.order(order.id).await.unwrap().is_some());
    }
}

#[tokio::test]
async fn a_second_open_of_the_same_file_fails_while_the_first_is_open() {
    let dir = TempDir::new().unwrap();
    let first = open(&db(&dir));
    let err = SqliteStore::open(&db(&dir), SqliteSettings::default()).unwrap_err();
    match err {
        err @ StoreError::Unavailable { .. } => {
            let message = Chain(&err).to_string();
            assert!(message.contains("another process is using"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    first.close().await;
    // Released on close, even before the store is dropped.
    let second = open(&db(&dir));
    second.ping().await.unwrap();
}

/// `(event_type, aggregate_id)` of every outbox row, read from the file with a
/// connection of our own.
/// Every file in `dir` with its permission bits.
fn modes(dir: &Path) -> Vec<(String, u32)> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
            (entry.file_name().to_string_lossy().into_owned(), mode)
        })
        .collect()
}

#[tokio::test]
async fn the_database_and_its_side_files_are_readable_by_the_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let store = open(&path);
    stored_sale(&store, 3).await;
    let files = modes(dir.path());
    let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
    for expected in ["stampede.db", "stampede.db-wal", "stampede.db-shm"] {
        assert!(names.contains(&expected), "{expected} missing: {names:?}");
    }
    for (name, mode) in &files {
        assert_eq!(*mode, 0o600, "{name} is {mode:o}");
    }
    store.close().await;

    // A database an older build left readable by others is narrowed at open.
    for name in ["stampede.db", "stampede.db-wal"] {
        let file = dir.path().join(name);
        if file.exists() {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    let store = open(&path);
    stored_sale(&store, 3).await;
    for (name, mode) in modes(dir.path()) {
        assert_eq!(mode, 0o600, "{name} is {mode:o}");
    }
    store.close().await;
}

fn outbox(path: &Path) -> Vec<(String, String, serde_json::Value)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut statement = conn
        .prepare("SELECT event_type, aggregate_id, payload FROM outbox ORDER BY seq")
        .unwrap();
    statement
        .query_map([], |row| {
            let payload: String = row.get(2)?;
            Ok((
                row.get(0)?,
                row.get(1)?,
                serde_json::from_str(&payload).unwrap(),
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test]
async fn every_change_writes_exactly_one_outbox_event() {
    let dir = TempDir::new().unwrap();
    let store = open(&db(&dir));
    let sale = stored_sale(&store, 3).await;
    let mut orders = places(&sale, 4);
    // A replay of the first key: no second event.
    orders.push(place(&sale, "user-0", "key"));
    let outcomes = store.commit_orders(&orders).await.unwrap();
    assert_eq!(
        outcomes[..4],
        [
            CommitOutcome::Created,
            CommitOutcome::Created,
            CommitOutcome::Created,
            CommitOutcome::SoldOut
        ]
    );
    // Cancelled twice: one event.
    for _ in 0..2 {
        store.cancel_order(orders[1].id, NOW).await.unwrap();
    }
    let user = User {
        id: UserId::generate(),
        email: Email::parse("ada@example.com").unwrap(),
        password_hash: "$argon2id$v=19$secret".into(),
        created_at: NOW,
    };
    store.insert_user(&user).await.unwrap();
    store.close().await;

    let events = outbox(&db(&dir));
    let of = |kind: &str| -> Vec<&String> {
        events
            .iter()
            .filter(|(event_type, _, _)| event_type == kind)
            .map(|(_, aggregate, _)| aggregate)
            .collect()
    };
    let created: Vec<String> = orders[..3].iter().map(|o| o.id.to_string()).collect();
    assert_eq!(of("order.created"), created.iter().collect::<Vec<_>>());
    assert_eq!(of("order.cancelled"), [&orders[1].id.to_string()]);
    assert_eq!(of("sale.created"), [&sale.id.to_string()]);
    assert_eq!(of("product.created"), [&sale.product_id.to_string()]);
    assert_eq!(of("user.registered"), [&user.id.to_string()]);
    assert_eq!(events.len(), 7);

    let (_, _, registered) = events
        .iter()
        .find(|(event_type, _, _)| event_type == "user.registered")
        .unwrap();
    assert_eq!(registered["email"], "ada@example.com");
    assert!(registered.get("password_hash").is_none());
    assert!(!registered.to_string().contains("secret"));
    let (_, _, cancelled) = events
        .iter()
        .find(|(event_type, _, _)| event_type == "order.cancelled")
        .unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["amount_cents"], 49_900);
    assert_eq!(cancelled["currency"], "EUR");
    assert_eq!(cancelled["created_at"], NOW.to_rfc3339());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_write_does_not_undo_the_writes_committed_beside_it() {
    let dir = TempDir::new().unwrap();
    let store = Arc::new(open(&db(&dir)));
    let taken = product();
    store.insert_product(&taken).await.unwrap();
    let sale = stored_sale(&store, 1_000).await;
    // Sent at once, so the writer groups them: conflicting inserts, fresh
    // inserts and order commits side by side.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = store.clone();
        let sale = sale.clone();
        let taken_sku = taken.sku.clone();
        tasks.push(tokio::spawn(async move {
            match i % 3 {
                0 => {
                    let mut duplicate = product();
                    duplicate.sku = taken_sku;
                    let err = store.insert_product(&duplicate).await.unwrap_err();
                    assert!(matches!(err, StoreError::Conflict { field: "sku" }));
                    None
                }
                1 => {
                    let fresh = product();
                    store.insert_product(&fresh).await.unwrap();
                    Some(fresh.id)
                }
                _ => {
                    let orders = places(&sale, 5)
                        .into_iter()
                        .map(|o| Order {
                            user_id: UserId::parse(format!("{}-{i}", o.user_id)).unwrap(),
                            ..o
                        })
                        .collect::<Vec<_>>();
                    let outcomes = store.commit_orders(&orders).await.unwrap();
                    assert!(outcomes.iter().all(|o| *o == CommitOutcome::Created));
                    None
                }
            }
        }));
    }
    let mut fresh = Vec::new();
    for task in tasks {
        fresh.extend(task.await.unwrap());
    }
    for id in fresh {
        assert!(store.product(id).await.unwrap().is_some());
    }
    let counts = store.sale_counts(sale.id).await.unwrap();
    assert_eq!(counts.sold, 13 * 5);
}

#[tokio::test]
async fn a_database_written_by_a_newer_build_is_refused() {
    let dir = TempDir::new().unwrap();
    {
        let conn = rusqlite::Connection::open(db(&dir)).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    let err = SqliteStore::open(&db(&dir), SqliteSettings::default()).unwrap_err();
    assert!(err.to_string().contains("newer than this build"), "{err}");
}

#[tokio::test]
async fn a_database_from_the_first_schema_keeps_its_orders_and_events() {
    let dir = TempDir::new().unwrap();
    let path = db(&dir);
    // Written as the first release left it: schema 1, a published and a
    // pending event.
    let sale_id = "0190a4a0-0000-7000-8000-000000000002";
    let order_id = "0190a4a0-0000-7000-8000-000000000003";
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("../migrations/0001_initial.sql"))
            .unwrap();
        conn.execute_batch(&format!(
            "INSERT INTO products VALUES ('0190a4a0-0000-7000-8000-000000000001', 'SKU', \
             'Phone', 100, 'EUR', 0);
             INSERT INTO sales VALUES ('{sale_id}', '0190a4a0-0000-7000-8000-000000000001', \
             100, 'EUR', 5, 4, 5, 0, NULL, 60, 0);
             INSERT INTO orders VALUES ('{order_id}', 'ada', '{sale_id}', \
             '0190a4a0-0000-7000-8000-000000000001', 1, 100, 'EUR', 'awaiting_payment', 'k', \
             0, 60000, 0);
             INSERT INTO outbox VALUES ('0190a4a0-0000-7000-8000-00000000000b', \
             'sale.created', '{sale_id}', '{{}}', 0, 5);
             INSERT INTO outbox VALUES ('0190a4a0-0000-7000-8000-00000000000a', \
             'order.created', '{order_id}', '{{\"id\":\"{order_id}\"}}', 0, NULL);
             PRAGMA user_version = 1;"
        ))
        .unwrap();
    }
    let store = open(&path);
    let events = store.events_after(0, 10).await.unwrap();
    let kinds: Vec<(i64, &str)> = events
        .iter()
        .map(|e| (e.seq, e.event_type.as_str()))
        .collect();
    assert_eq!(kinds, [(1, "sale.created"), (2, "order.created")]);
    assert_eq!(events[1].payload["id"], order_id);
    // The old order expires like a new one, and its event follows.
    let expired = store
        .expire_due(Timestamp::from_millis(60_000), 10)
        .await
        .unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].status, OrderStatus::Cancelled);
    let history = store.events_of(order_id).await.unwrap();
    let kinds: Vec<(i64, &str)> = history
        .iter()
        .map(|e| (e.seq, e.event_type.as_str()))
        .collect();
    assert_eq!(kinds, [(2, "order.created"), (3, "order.expired")]);
    assert_eq!(store.last_seq().await.unwrap(), 3);
    // The old sale is running, at its first version, as if just created.
    let sale = store
        .sale(SaleId::parse(sale_id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (sale.quantity, sale.state, sale.version),
        (5, SaleState::Running, 1)
    );
    assert_eq!(
        store.sale_versions().await.unwrap(),
        [(SaleId::parse(sale_id).unwrap(), 1)]
    );
}

#[tokio::test]
async fn an_outbox_row_whose_payload_is_not_json_is_corrupt() {
    let dir = TempDir::new().unwrap();
    let store = open(&db(&dir));
    stored_sale(&store, 1).await;
    store.close().await;
    drop(store);
    {
        let conn = rusqlite::Connection::open(db(&dir)).unwrap();
        conn.execute("UPDATE outbox SET payload = '{not json' WHERE seq = 2", [])
            .unwrap();
    }
    let store = open(&db(&dir));
    assert_eq!(store.events_after(0, 1).await.unwrap().len(), 1);
    match store.events_after(0, 10).await.unwrap_err() {
        err @ StoreError::Corrupt { .. } => {
            let message = Chain(&err).to_string();
            assert!(
                message.starts_with("corrupt data in store: outbox.payload is not json"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn seq_is_never_handed_out_twice_even_after_old_events_are_pruned() {
    let dir = TempDir::new().unwrap();
    let store = open(&db(&dir));
    stored_sale(&store, 1).await;
    let last = store.last_seq().await.unwrap();
    store.close().await;
    drop(store);
    {
        let conn = rusqlite::Connection::open(db(&dir)).unwrap();
        conn.execute("DELETE FROM outbox", []).unwrap();
    }
    let store = open(&db(&dir));
    stored_sale(&store, 1).await;
    let events = store.events_after(0, 10).await.unwrap();
    assert_eq!(events.len(), 2);
    assert!(events[0].seq > last, "{} reused", events[0].seq);
}
