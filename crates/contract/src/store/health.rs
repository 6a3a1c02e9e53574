//! The store contract: Pings.

use super::*;

pub async fn an_open_store_answers_pings(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
}

pub async fn a_closed_store_answers_unavailable(store: Arc<dyn Store>) {
    let sale = stored_sale(&*store, 5).await;
    store.close().await;
    let unavailable = |result: Result<(), StoreError>| {
        assert!(
            matches!(result, Err(StoreError::Unavailable { .. })),
            "{result:?}"
        );
    };
    unavailable(store.ping().await);
    unavailable(store.insert_product(&new_product("LATE")).await);
    unavailable(
        store
            .commit_orders(&[place(&sale, "ada", "k", 1)])
            .await
            .map(drop),
    );
    unavailable(store.sale(sale.id).await.map(drop));
    unavailable(store.expire_due(NOW, 10).await.map(drop));
    unavailable(store.save_cursor("relay", 1).await);
    unavailable(store.events_after(0, 10).await.map(drop));
    // Closing twice is harmless.
    store.close().await;
}
