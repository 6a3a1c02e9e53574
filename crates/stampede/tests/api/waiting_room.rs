//! A sale's waiting room end to end (docs/api.md §3.3, "Waiting rooms"): tickets before the
//! start, the draw at the start, first come first served afterwards,
//! purchases only with one's own admitted ticket, and the room ended the
//! moment the sale sells out.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, customer, eventually, spawn_app};

impl TestApp {
    async fn join_queue(&self, sale: &str, user: &str) -> reqwest::Response {
        self.request(
            Method::POST,
            &format!("/api/v1/sales/{sale}/queue"),
            Some(&customer(user)),
        )
        .send()
        .await
        .unwrap()
    }

    async fn standing(&self, sale: &str, user: &str) -> Value {
        let response = self.join_queue(sale, user).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    async fn buy_with_ticket(
        &self,
        sale: &str,
        user: &str,
        ticket: Option<&str>,
    ) -> reqwest::Response {
        let shown = ticket.map(|value| ("Queue-Ticket", value));
        self.buy_showing(sale, user, shown).await
    }
}

/// A room sale of `quantity` that starts in `secs` seconds.
async fn room_sale(app: &TestApp, quantity: u64, secs: u32) -> String {
    let starts_at = chrono_like_in(secs);
    let sale = app
        .create_sale(
            quantity,
            1,
            json!({ "waiting_room": true, "starts_at": starts_at }),
        )
        .await;
    assert_eq!(sale["waiting_room"], true);
    sale["id"].as_str().unwrap().to_owned()
}

/// Now plus `secs` as RFC 3339 (UTC), without a date library.
fn chrono_like_in(secs: u32) -> String {
    let at = stampede_domain::time::Timestamp::from_millis(
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap(),
    )
    .plus_secs(secs);
    at.to_rfc3339()
}

#[tokio::test]
async fn early_comers_are_drawn_at_random_at_the_start_and_later_ones_queue_in_order() {
    let app = spawn_app().await;
    let sale = room_sale(&app, 1_000, 2).await;
    let early: Vec<String> = (0..30).map(|n| format!("early-{n}")).collect();
    for user in &early {
        let response = app.join_queue(&sale, user).await;
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers().clone();
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], "waiting");
        assert_eq!(body["position"], Value::Null, "no place before the draw");
        assert!(headers.contains_key("retry-after"));
        assert!(
            headers["ratelimit"]
                .to_str()
                .unwrap()
                .starts_with("\"waiting-room\";r=0;t="),
            "{headers:?}"
        );
        assert!(headers.contains_key("ratelimit-policy"));
    }
    // The draw happens at the start, on the room's next step.
    eventually(10, "the draw", || async {
        let standing = app.standing(&sale, &early[0]).await;
        standing["position"].as_u64()
    })
    .await;
    let mut places = Vec::new();
    for user in &early {
        let standing = app.standing(&sale, user).await;
        places.push(standing["position"].as_u64().unwrap());
    }
    let drawn: BTreeSet<u64> = places.iter().copied().collect();
    assert_eq!(
        drawn,
        (1..=30).collect(),
        "a permutation of 1..=30: {places:?}"
    );
    assert_ne!(
        places,
        (1..=30).collect::<Vec<_>>(),
        "not the arrival order"
    );

    for n in 0..5u64 {
        let standing = app.standing(&sale, &format!("late-{n}")).await;
        assert_eq!(standing["position"], 31 + n, "{standing}");
    }
}

#[tokio::test]
async fn only_ones_own_admitted_ticket_buys_and_the_room_ends_at_the_sell_out() {
    let app = spawn_app().await;
    let sale = room_sale(&app, 3, 0).await;
    let users: Vec<String> = (0..6).map(|n| format!("buyer-{n}")).collect();
    let mut tickets = Vec::new();
    for user in &users {
        let standing = app.standing(&sale, user).await;
        tickets.push(standing["ticket"].as_str().unwrap().to_owned());
    }
    // The line moves within a step or two, as far as there are units: the
    // first three (the sale started before anyone joined: no lottery).
    eventually(10, "admission", || async {
        let standing = app.standing(&sale, &users[2]).await;
        (standing["status"] == "admitted").then_some(())
    })
    .await;
    let fourth = app.standing(&sale, &users[3]).await;
    assert_eq!(
        fourth["status"], "waiting",
        "no more admitted than units left"
    );
    let admitted = app.standing(&sale, &users[0]).await;
    assert_eq!(admitted["retry_after_ms"], 0);

    let response = app.buy_with_ticket(&sale, &users[0], None).await;
    assert_problem(response, StatusCode::FORBIDDEN, "queue-ticket").await;
    let response = app
        .buy_with_ticket(&sale, &users[1], Some(&tickets[0]))
        .await;
    assert_problem(response, StatusCode::FORBIDDEN, "queue-ticket").await;
    let response = app.buy_with_ticket(&sale, &users[0], Some("1.00")).await;
    assert_problem(response, StatusCode::FORBIDDEN, "queue-ticket").await;

    for n in 0..3 {
        let response = app
            .buy_with_ticket(&sale, &users[n], Some(&tickets[n]))
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED, "buyer {n}");
    }
    // Sold out: the next buyer is told at once, and so is anyone who asks
    // where they stand, from then on.
    let response = app
        .buy_with_ticket(&sale, &users[3], Some(&tickets[3]))
        .await;
    assert_problem(response, StatusCode::CONFLICT, "sold-out").await;
    let response = app.join_queue(&sale, &users[4]).await;
    assert_problem(response, StatusCode::CONFLICT, "sold-out").await;
    let response = app.join_queue(&sale, "newcomer").await;
    assert_problem(response, StatusCode::CONFLICT, "sold-out").await;
    assert_eq!(app.stats(&sale).await["sold"], 3);
}

#[tokio::test]
async fn a_purchase_before_its_turn_waits_with_its_place_and_a_sale_without_a_room_has_none() {
    let app = spawn_app().await;
    let sale = room_sale(&app, 10, 3600).await;
    let standing = app.standing(&sale, "eager").await;
    let ticket = standing["ticket"].as_str().unwrap();
    let response = app.buy_with_ticket(&sale, "eager", Some(ticket)).await;
    assert!(response.headers().contains_key("retry-after"));
    assert!(response.headers().contains_key("ratelimit"));
    assert_problem(response, StatusCode::CONFLICT, "not-your-turn").await;

    let plain = app.create_sale(10, 1, json!({})).await;
    let plain = plain["id"].as_str().unwrap();
    assert_eq!(app.sale(plain).await["waiting_room"], false);
    let response = app.join_queue(plain, "eager").await;
    assert_problem(response, StatusCode::CONFLICT, "no-waiting-room").await;
    let response = app.buy_with_ticket(plain, "eager", None).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
}
