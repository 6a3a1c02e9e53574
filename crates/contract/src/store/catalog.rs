//! The store contract: Products and sales.

use super::*;

pub async fn a_product_reads_back_as_it_was_inserted(store: Arc<dyn Store>) {
    let product = new_product("PHONE-1");
    store.insert_product(&product).await.unwrap();
    assert_eq!(store.product(product.id).await.unwrap(), Some(product));
    assert_eq!(store.product(ProductId::generate()).await.unwrap(), None);
}

pub async fn products_page_in_creation_order_after_the_cursor(store: Arc<dyn Store>) {
    let products: Vec<Product> = (0..5).map(|i| new_product(&format!("P-{i}"))).collect();
    // Inserted out of order: paging follows the ids, which follow creation.
    for product in products.iter().rev() {
        store.insert_product(product).await.unwrap();
    }
    assert_eq!(store.products(None, 2).await.unwrap(), products[0..2]);
    assert_eq!(
        store.products(Some(products[1].id), 2).await.unwrap(),
        products[2..4]
    );
    assert_eq!(
        store.products(Some(products[3].id), 10).await.unwrap(),
        products[4..]
    );
    assert!(
        store
            .products(Some(products[4].id), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn a_second_product_with_the_same_sku_is_a_sku_conflict(store: Arc<dyn Store>) {
    let first = new_product("SAME-SKU");
    store.insert_product(&first).await.unwrap();
    let second = new_product("SAME-SKU");
    let err = store.insert_product(&second).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { field: "sku" }),
        "{err:?}"
    );
    assert_eq!(store.product(second.id).await.unwrap(), None);
    assert_eq!(store.product(first.id).await.unwrap(), Some(first));
}

pub async fn a_sale_reads_back_as_it_was_inserted(store: Arc<dyn Store>) {
    let product = stored_product(&*store).await;
    let request = SaleRequest {
        price_cents: Some(19_900),
        quantity: 100,
        per_user_limit: Some(2),
        starts_at: Some(NOW.plus_secs(60)),
        ends_at: Some(NOW.plus_secs(3600)),
        payment_window_secs: Some(300),
    };
    let bounded = Sale::create(&product, &request, NOW).unwrap();
    let open_ended = Sale::create(&product, &sale_request(7), NOW).unwrap();
    store.insert_sale(&bounded).await.unwrap();
    store.insert_sale(&open_ended).await.unwrap();
    assert_eq!(store.sale(bounded.id).await.unwrap(), Some(bounded));
    assert_eq!(store.sale(open_ended.id).await.unwrap(), Some(open_ended));
    assert_eq!(store.sale(SaleId::generate()).await.unwrap(), None);
}
