//! The shared read cache (L2) on a real Redis, under the catalog's
//! in-process caches: a second node reads what the first loaded without
//! touching the store, absences are shared too, and invalidation reaches
//! every node that has not cached the entry itself.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use stampede_app::cache::{CacheSettings, ReadCache};
use stampede_app::catalog::product_codec;
use stampede_app::ports::SharedCache;
use stampede_domain::catalog::Product;
use stampede_domain::ids::ProductId;
use stampede_domain::time::Timestamp;
use stampede_ledger_redis::RedisCache;
use stampede_ledger_redis::testing::TestNamespace;

/// One node's product cache over the shared Redis.
fn node(l2: &Arc<RedisCache>) -> ReadCache<ProductId, Product> {
    let l2: Arc<dyn SharedCache> = l2.clone();
    ReadCache::with_l2(
        "product",
        CacheSettings::default(),
        Some((l2, product_codec())),
    )
}

/// The store: one product, and a count of its reads.
struct Store {
    product: Product,
    reads: AtomicUsize,
}

impl Store {
    async fn read(&self, id: ProductId) -> Result<Option<Product>, ()> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        Ok((id == self.product.id).then(|| self.product.clone()))
    }
}

#[tokio::test]
async fn a_second_node_reads_from_l2_without_touching_the_store() {
    let Some(ns) = TestNamespace::create().await else {
        return;
    };
    let l2 = Arc::new(RedisCache::new(&ns.url, &ns.name).unwrap());
    let store = Store {
        product: Product::create(
            "SKU-L2",
            "Phone",
            100,
            "EUR",
            Timestamp::from_millis(1_800_000_000_000),
        )
        .unwrap(),
        reads: AtomicUsize::new(0),
    };
    let id = store.product.id;
    let (a, b) = (node(&l2), node(&l2));

    let first = a.get_or_load(id, || store.read(id)).await.unwrap();
    assert_eq!(first.as_ref(), Some(&store.product));
    assert_eq!(store.reads.load(Ordering::SeqCst), 1);
    let second = b.get_or_load(id, || store.read(id)).await.unwrap();
    assert_eq!(second.as_ref(), Some(&store.product));
    assert_eq!(
        store.reads.load(Ordering::SeqCst),
        1,
        "node b read the store"
    );

    // The value carries a lifetime in Redis: the cache TTL, jittered.
    let client = redis::Client::open(ns.url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(l2.key(&format!("product:{id}")))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!((26_000..=33_000).contains(&ttl), "PTTL {ttl}");

    // An unknown id is remembered as unknown for every node.
    let unknown = ProductId::generate();
    assert_eq!(
        a.get_or_load(unknown, || store.read(unknown))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        b.get_or_load(unknown, || store.read(unknown))
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.reads.load(Ordering::SeqCst), 2);

    // Invalidation deletes the shared entry: a node without its own copy
    // reads the store again.
    a.invalidate(&id).await;
    let c = node(&l2);
    c.get_or_load(id, || store.read(id)).await.unwrap();
    assert_eq!(store.reads.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn an_unreachable_l2_is_a_miss_and_the_store_answers() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    drop(listener);
    let l2: Arc<dyn SharedCache> = Arc::new(RedisCache::new(&url, "stampede-test").unwrap());
    let settings = CacheSettings {
        l2_timeout: Duration::from_millis(50),
        ..CacheSettings::default()
    };
    let cache = ReadCache::with_l2("product", settings, Some((l2, product_codec())));
    let id = ProductId::generate();
    let found = cache
        .get_or_load(id, || async { Ok::<_, ()>(None) })
        .await
        .unwrap();
    assert_eq!(found, None);
}
