//! A graceful restart on the same data directory keeps orders, answers and stock.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{assert_problem, customer, spawn_app, spawn_app_in};

#[tokio::test]
async fn orders_replays_and_stock_survive_a_restart() {
    let app = spawn_app().await;
    let sale = app.create_sale(2, 1, json!({})).await;
    let id = sale["id"].as_str().unwrap().to_owned();
    let won: Value = app
        .purchase(&customer("alice"), &id, "a", 1)
        .await
        .json()
        .await
        .unwrap();
    let cancelled: Value = app
        .purchase(&customer("bob"), &id, "b", 1)
        .await
        .json()
        .await
        .unwrap();
    let response = app
        .client
        .post(app.url(&format!(
            "/api/v1/orders/{}/cancel",
            cancelled["id"].as_str().unwrap()
        )))
        .bearer_auth(customer("bob"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(app.app.lifecycle.is_started());

    let dir = app.stop().await;
    let app = spawn_app_in(dir, |_| {}).await;

    // The ledger was rebuilt from the database: one unit sold, one back.
    assert_eq!(app.sale(&id).await["remaining"], 1);
    let stats = app.stats(&id).await;
    assert_eq!(stats["sold"], 1);
    assert_eq!(stats["orders"]["cancelled"], 1);
    // The winning key still answers with its order; alice's limit still holds.
    let replay = app.purchase(&customer("alice"), &id, "a", 1).await;
    assert_eq!(replay.status(), StatusCode::ACCEPTED);
    assert_eq!(replay.json::<Value>().await.unwrap()["id"], won["id"]);
    assert_problem(
        app.purchase(&customer("alice"), &id, "a2", 1).await,
        StatusCode::CONFLICT,
        "limit-exceeded",
    )
    .await;
    assert_problem(
        app.purchase(&customer("alice"), &id, "a", 2).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency-mismatch",
    )
    .await;
    // Bob's units came back once, and he can buy again.
    assert_eq!(
        app.purchase(&customer("bob"), &id, "b2", 1).await.status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(app.sale(&id).await["remaining"], 0);
}

#[tokio::test]
async fn a_second_server_on_the_same_data_directory_is_refused() {
    if crate::ON_POSTGRES {
        // The lock guards the SQLite file; nodes share a PostgreSQL database
        // by design.
        return;
    }
    let app = spawn_app().await;
    let config = crate::helpers::test_config(&app.dir);
    let settings = stampede::config::Settings::new(config).unwrap();
    let err = match stampede::startup::Server::build(settings).await {
        Ok(_) => panic!("two servers opened one data directory"),
        Err(err) => format!("{err:#}"),
    };
    assert!(err.contains("another process"), "{err}");
}
