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
        waiting_room: true,
    };
    let bounded = Sale::create(&product, &request, NOW).unwrap();
    let open_ended = Sale::create(&product, &sale_request(7), NOW).unwrap();
    store.insert_sale(&bounded).await.unwrap();
    store.insert_sale(&open_ended).await.unwrap();
    assert_eq!(store.sale(bounded.id).await.unwrap(), Some(bounded));
    assert_eq!(store.sale(open_ended.id).await.unwrap(), Some(open_ended));
    assert_eq!(store.sale(SaleId::generate()).await.unwrap(), None);
}

/// `sale` after `control` at `at`, which must change it.
fn changed(sale: &Sale, control: SaleControl, at: Timestamp) -> Sale {
    sale.apply(control, at)
        .unwrap()
        .expect("the control changes the sale")
}

fn units(n: i64) -> Quantity {
    Quantity::parse("units", n).unwrap()
}

/// Writes `sale` after `control` at `at`, which must be updated; returns it.
async fn updated(store: &dyn Store, sale: &Sale, control: SaleControl, at: Timestamp) -> Sale {
    let next = changed(sale, control, at);
    assert_eq!(
        store.update_sale(sale, &next, control, at).await.unwrap(),
        SaleUpdate::Updated
    );
    next
}

/// The sale's own stock column, as the ledger's snapshot reads it.
async fn snapshot_remaining(store: &dyn Store, sale: &Sale) -> u64 {
    let snapshots = store.sale_snapshots().await.unwrap();
    let snapshot = snapshots
        .iter()
        .find(|snapshot| snapshot.sale.id == sale.id)
        .expect("every sale has a snapshot");
    assert_eq!(
        &snapshot.sale, sale,
        "the snapshot holds the sale as stored"
    );
    snapshot.remaining
}

pub async fn a_sale_update_moves_quantity_and_stock_bumps_the_version_and_writes_its_event(
    store: Arc<dyn Store>,
) {
    let sale = stored_sale(&*store, 10).await;
    committed(&*store, place(&sale, "ada", "k", 3)).await;
    let at = NOW.plus_secs(60);
    let added = updated(&*store, &sale, SaleControl::AddStock(units(5)), at).await;
    assert_eq!((added.quantity, added.version), (15, 2));
    assert_eq!(store.sale(sale.id).await.unwrap(), Some(added.clone()));
    // The stock column moves by the units added: the 3 sold stay sold.
    let after_add = counts(&*store, &added).await;
    assert_eq!((after_add.sold, after_add.remaining), (3, 12));
    assert_eq!(snapshot_remaining(&*store, &added).await, 12);

    let later = at.plus_secs(60);
    let withdrawn = updated(&*store, &added, SaleControl::WithdrawStock(units(4)), later).await;
    assert_eq!((withdrawn.quantity, withdrawn.version), (11, 3));
    assert_eq!(store.sale(sale.id).await.unwrap(), Some(withdrawn.clone()));
    let after_withdrawal = counts(&*store, &withdrawn).await;
    assert_eq!((after_withdrawal.sold, after_withdrawal.remaining), (3, 8));
    assert_eq!(snapshot_remaining(&*store, &withdrawn).await, 8);

    // One event per change, of the control's type, on the sale, in order.
    assert_eq!(
        history(&*store, &sale.id.to_string()).await,
        ["sale.created", "sale.stock_added", "sale.stock_withdrawn"]
    );
    let events = store.events_of(&sale.id.to_string()).await.unwrap();
    let (add, withdrawal) = (&events[1], &events[2]);
    assert_eq!(add.created_at, at);
    assert_eq!(add.payload["quantity"], 15);
    assert_eq!(add.payload["units"], 5);
    assert_eq!(add.payload["version"], 2);
    assert_eq!(add.payload["changed_at"], at.to_rfc3339());
    assert_eq!(withdrawal.created_at, later);
    assert_eq!(withdrawal.payload["quantity"], 11);
    assert_eq!(withdrawal.payload["units"], 4);
    assert_eq!(withdrawal.payload["version"], 3);
    let counted = event_counts(&*store).await;
    assert_eq!(counted.get("sale.stock_added"), Some(&1));
    assert_eq!(counted.get("sale.stock_withdrawn"), Some(&1));
}

pub async fn an_update_from_a_stale_version_writes_nothing(store: Arc<dyn Store>) {
    let sale = stored_sale(&*store, 10).await;
    let at = NOW.plus_secs(60);
    // Two admins read version 1; the first one's change lands.
    let first = updated(&*store, &sale, SaleControl::WithdrawStock(units(5)), at).await;
    let events = all_events(&*store).await;
    for control in [
        SaleControl::Pause,
        SaleControl::AddStock(units(1)),
        // More than is left after the first change: stale all the same, so
        // the caller reads the sale again rather than giving up.
        SaleControl::WithdrawStock(units(10)),
    ] {
        let next = changed(&sale, control, at);
        assert_eq!(
            store.update_sale(&sale, &next, control, at).await.unwrap(),
            SaleUpdate::Stale,
            "{control:?}"
        );
    }
    assert_eq!(store.sale(sale.id).await.unwrap(), Some(first.clone()));
    let counts = counts(&*store, &first).await;
    assert_eq!((counts.sold, counts.remaining), (0, 5));
    assert_eq!(
        all_events(&*store).await,
        events,
        "no event for a stale update"
    );
    // From the version now stored, the change goes through.
    let paused = updated(&*store, &first, SaleControl::Pause, at).await;
    assert_eq!(store.sale(sale.id).await.unwrap(), Some(paused));
}

pub async fn a_withdrawal_takes_only_unsold_units(store: Arc<dyn Store>) {
    let sale = stored_sale(&*store, 10).await;
    let order = committed(&*store, place(&sale, "ada", "k", 4)).await;
    let at = NOW.plus_secs(60);
    let events = all_events(&*store).await;
    // 6 units are unsold: 7 cannot go.
    let control = SaleControl::WithdrawStock(units(7));
    let too_many = changed(&sale, control, at);
    assert_eq!(
        store
            .update_sale(&sale, &too_many, control, at)
            .await
            .unwrap(),
        SaleUpdate::InsufficientStock
    );
    assert_eq!(store.sale(sale.id).await.unwrap(), Some(sale.clone()));
    let unchanged = counts(&*store, &sale).await;
    assert_eq!((unchanged.sold, unchanged.remaining), (4, 6));
    assert_eq!(snapshot_remaining(&*store, &sale).await, 6);
    assert_eq!(all_events(&*store).await, events, "no event for a refusal");
    assert_eq!(store.sale_versions().await.unwrap(), [(sale.id, 1)]);

    // Exactly the unsold units can: the sale holds its sold ones, none left.
    let emptied = updated(&*store, &sale, SaleControl::WithdrawStock(units(6)), at).await;
    assert_eq!((emptied.quantity, emptied.version), (4, 2));
    assert_eq!(store.sale(sale.id).await.unwrap(), Some(emptied.clone()));
    let empty = counts(&*store, &emptied).await;
    assert_eq!((empty.sold, empty.remaining), (4, 0));
    // Nothing unsold is left to withdraw.
    let control = SaleControl::WithdrawStock(units(1));
    let one_more = changed(&emptied, control, at);
    assert_eq!(
        store
            .update_sale(&emptied, &one_more, control, at)
            .await
            .unwrap(),
        SaleUpdate::InsufficientStock
    );
    // A cancelled order's units come back to the stock column, and can then
    // be withdrawn, down to a sale of 0 units.
    assert!(matches!(
        store.cancel_order(order.id, at).await.unwrap(),
        CancelOutcome::Cancelled(_)
    ));
    let returned = counts(&*store, &emptied).await;
    assert_eq!((returned.sold, returned.remaining), (0, 4));
    let none = updated(&*store, &emptied, SaleControl::WithdrawStock(units(4)), at).await;
    assert_eq!(none.quantity, 0);
    assert_eq!(store.sale(sale.id).await.unwrap(), Some(none.clone()));
    assert_eq!(counts(&*store, &none).await.remaining, 0);
    assert_eq!(snapshot_remaining(&*store, &none).await, 0);
    assert_eq!(
        history(&*store, &sale.id.to_string()).await,
        [
            "sale.created",
            "sale.stock_withdrawn",
            "sale.stock_withdrawn"
        ]
    );
}

pub async fn sale_versions_list_every_sale_with_its_version(store: Arc<dyn Store>) {
    assert!(store.sale_versions().await.unwrap().is_empty());
    let at = NOW.plus_secs(60);
    let one = stored_sale(&*store, 5).await;
    let two = stored_sale(&*store, 5).await;
    let three = stored_sale(&*store, 5).await;
    let paused = updated(&*store, &two, SaleControl::Pause, at).await;
    updated(&*store, &paused, SaleControl::Resume, at).await;
    updated(&*store, &three, SaleControl::End, at).await;
    let mut expected = vec![(one.id, 1), (two.id, 3), (three.id, 2)];
    expected.sort_by_key(|(id, _)| *id);
    assert_eq!(store.sale_versions().await.unwrap(), expected);
}

pub async fn a_paused_amended_or_ended_sale_reads_back_as_it_was_written(store: Arc<dyn Store>) {
    let sale = stored_sale(&*store, 10).await;
    let at = NOW.plus_secs(60);
    let paused = updated(&*store, &sale, SaleControl::Pause, at).await;
    assert_eq!(paused.state, SaleState::Paused);
    assert_eq!(store.sale(sale.id).await.unwrap(), Some(paused.clone()));
    let resumed = updated(&*store, &paused, SaleControl::Resume, at).await;
    assert_eq!(store.sale(sale.id).await.unwrap(), Some(resumed.clone()));
    let amend = SaleControl::Amend {
        ends_at: Some(Some(NOW.plus_secs(3600))),
        per_user_limit: Some(units(2)),
    };
    let amended = updated(&*store, &resumed, amend, at).await;
    assert_eq!(store.sale(sale.id).await.unwrap(), Some(amended.clone()));
    // Back to running until sold out.
    let open_ended = SaleControl::Amend {
        ends_at: Some(None),
        per_user_limit: None,
    };
    let reopened = updated(&*store, &amended, open_ended, at).await;
    assert_eq!(reopened.ends_at, None);
    assert_eq!(store.sale(sale.id).await.unwrap(), Some(reopened.clone()));
    let ended = updated(&*store, &reopened, SaleControl::End, at).await;
    assert_eq!(
        (ended.state, ended.ends_at, ended.version),
        (SaleState::Ended, Some(at), 6)
    );
    assert_eq!(store.sale(sale.id).await.unwrap(), Some(ended.clone()));
    assert_eq!(snapshot_remaining(&*store, &ended).await, 10);
    assert_eq!(
        history(&*store, &sale.id.to_string()).await,
        [
            "sale.created",
            "sale.paused",
            "sale.resumed",
            "sale.amended",
            "sale.amended",
            "sale.ended"
        ]
    );
    let events = store.events_of(&sale.id.to_string()).await.unwrap();
    assert_eq!(events[1].payload["state"], "paused");
    assert_eq!(events[3].payload["per_user_limit"], 2);
    assert_eq!(events[5].payload["state"], "ended");
    assert_eq!(events[5].payload["version"], 6);
}
