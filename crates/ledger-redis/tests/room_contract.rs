//! The `RoomBook` contract suite (stampede_contract::room), run against the
//! Redis room book, each test in a namespace of its own that is deleted when
//! it ends.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

stampede_contract::room_contract_tests!(common::fresh_room_book());

use std::future::Future;
use std::sync::Arc;

use stampede_app::ports::{Draw, Joined, RoomBook};
use stampede_contract::room::RoomFixture;
use stampede_domain::ids::{SaleId, UserId};
use stampede_ledger_redis::RedisRoomBook;

/// Runs `check` on a fresh book and the Redis URL (no Redis: skipped), then
/// deletes the book's namespace, whether `check` passed or not.
async fn with_book<Fut>(check: impl FnOnce(Arc<RedisRoomBook>, String) -> Fut)
where
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(fixture) = common::fresh_room_book().await else {
        return;
    };
    let outcome = tokio::spawn(check(fixture.book.clone(), fixture.url.clone())).await;
    fixture.teardown().await;
    match outcome {
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(err) => panic!("the check did not finish: {err}"),
        Ok(()) => {}
    }
}

#[tokio::test]
async fn seeds_keep_all_64_bits_and_huge_moves_stop_at_the_tickets_issued() {
    with_book(|book, _| async move {
        let sale = SaleId::generate();
        let ann = UserId::parse("ann").unwrap();
        // Above 2^53 a double would round it.
        let seed = u64::MAX - 2;
        let joined = book.join(sale, &ann, Some(seed), u64::MAX).await.unwrap();
        let Joined::Ticket(1, counters) = joined else {
            panic!("{joined:?}");
        };
        assert_eq!(counters.draw, Some(Draw { count: 0, seed }));
        let after = book.admit(sale, 1, u64::MAX, 0).await.unwrap();
        assert_eq!(
            (after.admitted, after.draw),
            (1, Some(Draw { count: 0, seed }))
        );
        assert_eq!(book.counters(sale).await.unwrap(), after);
    })
    .await;
}

#[tokio::test]
async fn the_keys_have_no_ttl_and_forgetting_deletes_them() {
    with_book(|book, url| async move {
        let sale = SaleId::generate();
        book.join(sale, &UserId::parse("ann").unwrap(), None, 10)
            .await
            .unwrap();
        let keys = [book.room_key(sale), book.tickets_key(sale)];
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        for key in &keys {
            let ttl: i64 = redis::cmd("PTTL")
                .arg(key)
                .query_async(&mut con)
                .await
                .unwrap();
            assert_eq!(ttl, -1, "{key} has no TTL");
        }
        book.forget(sale).await.unwrap();
        let left: usize = redis::cmd("EXISTS")
            .arg(&keys[..])
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(left, 0);
    })
    .await;
}
