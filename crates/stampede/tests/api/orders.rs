use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, admin, assert_problem, customer, spawn_app};

async fn buy(app: &TestApp, user: &str, sale_id: &str, key: &str, quantity: u64) -> Value {
    let response = app.purchase(&customer(user), sale_id, key, quantity).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    response.json().await.unwrap()
}

async fn cancel(app: &TestApp, token: &str, order_id: &str) -> reqwest::Response {
    app.request(
        Method::POST,
        &format!("/api/v1/orders/{order_id}/cancel"),
        Some(token),
    )
    .send()
    .await
    .unwrap()
}

#[tokio::test]
async fn an_order_is_visible_to_its_owner_and_admins_and_not_found_for_others() {
    let app = spawn_app().await;
    let sale = app.create_sale(5, 1, json!({})).await;
    let order = buy(&app, "alice", sale["id"].as_str().unwrap(), "k", 1).await;
    let path = format!("/api/v1/orders/{}", order["id"].as_str().unwrap());
    assert_eq!(
        app.get(&path, Some(&customer("alice"))).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get(&path, Some(&admin())).await.status(),
        StatusCode::OK
    );
    assert_problem(
        app.get(&path, Some(&customer("bob"))).await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    assert_problem(
        app.get(&path, None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_problem(
        app.get("/api/v1/orders/nope", Some(&customer("alice")))
            .await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
}

#[tokio::test]
async fn a_user_lists_their_own_orders_newest_first_page_by_page() {
    let app = spawn_app().await;
    let sale = app.create_sale(100, 10, json!({})).await;
    let id = sale["id"].as_str().unwrap();
    let mut mine = Vec::new();
    for i in 0..5 {
        mine.push(
            buy(&app, "alice", id, &format!("k{i}"), 1).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    buy(&app, "bob", id, "k0", 1).await;
    mine.reverse();

    let mut seen = Vec::new();
    let mut path = "/api/v1/orders?limit=2".to_owned();
    loop {
        let page: Value = app
            .get(&path, Some(&customer("alice")))
            .await
            .json()
            .await
            .unwrap();
        for order in page["items"].as_array().unwrap() {
            assert_eq!(order["user_id"], "alice");
            seen.push(order["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/orders?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, mine);
}

#[tokio::test]
async fn cancelling_returns_the_stock_exactly_once() {
    let app = spawn_app().await;
    let sale = app.create_sale(10, 3, json!({})).await;
    let id = sale["id"].as_str().unwrap();
    let order = buy(&app, "alice", id, "k", 3).await;
    let order_id = order["id"].as_str().unwrap();
    assert_eq!(app.sale(id).await["remaining"], 7);

    let first = cancel(&app, &customer("alice"), order_id).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.json::<Value>().await.unwrap()["status"], "cancelled");
    assert_eq!(app.sale(id).await["remaining"], 10);

    let again = cancel(&app, &customer("alice"), order_id).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(app.sale(id).await["remaining"], 10, "stock came back twice");
    let stats = app.stats(id).await;
    assert_eq!(stats["sold"], 0);
    assert_eq!(stats["orders"]["cancelled"], 1);
    // The user's allowance came back too.
    buy(&app, "alice", id, "k-after", 3).await;
}

#[tokio::test]
async fn concurrent_cancels_return_the_stock_once() {
    let app = spawn_app().await;
    let sale = app.create_sale(10, 1, json!({})).await;
    let id = sale["id"].as_str().unwrap().to_owned();
    let order = buy(&app, "alice", &id, "k", 1).await;
    let order_id = order["id"].as_str().unwrap().to_owned();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let client = app.client.clone();
        let url = app.url(&format!("/api/v1/orders/{order_id}/cancel"));
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(customer("alice"))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(app.sale(&id).await["remaining"], 10);
}

#[tokio::test]
async fn someone_elses_order_cannot_be_cancelled() {
    let app = spawn_app().await;
    let sale = app.create_sale(10, 1, json!({})).await;
    let id = sale["id"].as_str().unwrap();
    let order = buy(&app, "alice", id, "k", 1).await;
    let response = cancel(&app, &customer("bob"), order["id"].as_str().unwrap()).await;
    assert_problem(response, StatusCode::NOT_FOUND, "not-found").await;
    assert_eq!(app.sale(id).await["remaining"], 9);
}
