//! The webhook sender against a real endpoint on 127.0.0.1: refused in
//! every notation of loopback unless allowed, and refused alike whether
//! anything listens or not. Nothing here leaves loopback.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use stampede_app::ports::{SendError, WebhookSender};
use stampede_domain::net::AllowList;
use stampede_outbound::HttpWebhookSender;

const REFUSED: &str = "destination refused: not a public address";

/// An endpoint on 127.0.0.1 that counts its hits; its port.
async fn endpoint() -> (u16, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = Router::new().route(
        "/hook",
        post(move || async move {
            counter.fetch_add(1, Ordering::SeqCst);
            "ok"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr.port(), hits)
}

async fn post_to(sender: &HttpWebhookSender, url: &str) -> Result<u16, SendError> {
    sender
        .post(url, &[], b"{}".to_vec(), Duration::from_secs(5))
        .await
}

#[tokio::test]
async fn loopback_in_any_notation_is_refused_and_never_reached() {
    let (port, hits) = endpoint().await;
    let sender = HttpWebhookSender::new(AllowList::default()).unwrap();
    for host in [
        "127.0.0.1",
        "2130706433",
        "0x7f.1",
        "0x7f000001",
        "127.1",
        "0177.0.0.1",
        "[::ffff:127.0.0.1]",
        "[::1]",
        "localhost",
        "LOCALHOST.",
    ] {
        let url = format!("http://{host}:{port}/hook");
        assert_eq!(
            post_to(&sender, &url).await,
            Err(SendError(REFUSED.into())),
            "{url}"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_refusal_says_the_same_whether_anything_listens_or_not() {
    let (open, _) = endpoint().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let sender = HttpWebhookSender::new(AllowList::default()).unwrap();
    let mut answers = Vec::new();
    for port in [open, closed] {
        answers.push(post_to(&sender, &format!("http://127.0.0.1:{port}/hook")).await);
    }
    assert_eq!(answers[0], Err(SendError(REFUSED.into())));
    assert_eq!(answers[0], answers[1]);
}

#[tokio::test]
async fn allowed_addresses_and_names_are_delivered_to() {
    let (port, hits) = endpoint().await;
    let by_range = HttpWebhookSender::new(AllowList::parse("127.0.0.0/8").unwrap()).unwrap();
    for host in ["127.0.0.1", "2130706433", "127.1"] {
        let url = format!("http://{host}:{port}/hook");
        assert_eq!(post_to(&by_range, &url).await, Ok(200), "{url}");
    }
    // A name allowed by name: whatever it resolves to (here, loopback).
    let by_name = HttpWebhookSender::new(AllowList::parse("localhost").unwrap()).unwrap();
    let url = format!("http://localhost:{port}/hook");
    assert_eq!(post_to(&by_name, &url).await, Ok(200));
    // The name allowed is not its addresses.
    let url = format!("http://127.0.0.1:{port}/hook");
    assert_eq!(
        post_to(&by_name, &url).await,
        Err(SendError(REFUSED.into()))
    );
    assert_eq!(hits.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn only_http_urls_are_called() {
    let sender = HttpWebhookSender::new(AllowList::default()).unwrap();
    for url in ["ftp://127.0.0.1/", "file:///etc/passwd", "not a url"] {
        assert_eq!(
            post_to(&sender, url).await,
            Err(SendError("not an http:// or https:// URL".into())),
            "{url}"
        );
    }
}
