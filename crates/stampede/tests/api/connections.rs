//! The connection layer's bounds (`crates/http/src/serve.rs`): a deadline
//! for each request head, an idle timeout between requests, and a cap on
//! open connections. Raw sockets, because an HTTP client would hide them.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::helpers::{TestApp, spawn_app_with};

const LIVEZ: &[u8] = b"GET /livez HTTP/1.1\r\nhost: test\r\n\r\n";

/// Whether the server has closed the socket (EOF or reset) within `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 1024];
    matches!(
        timeout(wait, stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// Sends one request and reads its whole answer (small, with a length).
async fn exchange(stream: &mut TcpStream, request: &[u8]) -> String {
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("no answer")
            .unwrap();
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= length || n == 0 {
                return text;
            }
        }
        if n == 0 {
            return text;
        }
    }
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.addr).await.unwrap()
}

#[tokio::test]
async fn a_head_trickling_in_is_cut_off_at_its_deadline_not_kept_alive_by_each_byte() {
    let app =
        spawn_app_with(|config| config.http.header_timeout = Duration::from_millis(500)).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /livez HTTP/1.1\r\nx-slow: ")
        .await
        .unwrap();
    // A byte every 100 ms would keep a per-byte timer alive for ever; ten
    // seconds of it must see the connection closed.
    for _ in 0..100 {
        if stream.write_all(b"a").await.is_err()
            || closed_within(&mut stream, Duration::from_millis(100)).await
        {
            return;
        }
    }
    panic!("a trickling request head kept its connection open for 10 s");
}

#[tokio::test]
async fn a_connection_that_never_sends_a_head_is_closed() {
    let app =
        spawn_app_with(|config| config.http.header_timeout = Duration::from_millis(300)).await;
    let mut stream = connect(&app).await;
    assert!(closed_within(&mut stream, Duration::from_secs(10)).await);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let app = spawn_app_with(|config| config.http.idle_timeout = Duration::from_millis(300)).await;
    let mut stream = connect(&app).await;
    let answer = exchange(&mut stream, LIVEZ).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Kept alive for the next request…
    let answer = exchange(&mut stream, LIVEZ).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // …until it has been idle for the timeout.
    assert!(closed_within(&mut stream, Duration::from_secs(10)).await);
}

#[tokio::test]
async fn past_the_connection_cap_a_new_connection_gets_a_problem_and_is_closed() {
    let app = spawn_app_with(|config| config.http.max_connections = 2).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = connect(&app).await;
        assert!(
            exchange(&mut stream, LIVEZ)
                .await
                .starts_with("HTTP/1.1 200")
        );
        held.push(stream);
    }
    let mut third = connect(&app).await;
    let answer = exchange(&mut third, LIVEZ).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    assert!(answer.contains("/problems/overloaded"), "{answer}");
    assert!(closed_within(&mut third, Duration::from_secs(10)).await);

    // A closed connection gives its place back.
    drop(held.pop());
    for _ in 0..100 {
        let mut stream = connect(&app).await;
        if exchange(&mut stream, LIVEZ)
            .await
            .starts_with("HTTP/1.1 200")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the closed connection's place never came back");
}

/// Sends `GET /livez` with `extra` headers through an HTTP client.
async fn livez_with(app: &TestApp, extra: &[(String, String)]) -> reqwest::Response {
    let mut request = app.request(reqwest::Method::GET, "/livez", None);
    for (name, value) in extra {
        request = request.header(name, value);
    }
    request.send().await.unwrap()
}

async fn assert_headers_too_large(response: reqwest::Response) {
    assert_eq!(
        response.status(),
        reqwest::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    crate::helpers::assert_problem(
        response,
        reqwest::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "request-header-fields-too-large",
    )
    .await;
}

#[tokio::test]
async fn too_many_or_too_large_headers_get_a_431_problem_and_the_server_goes_on() {
    let app = spawn_app_with(|_| {}).await;
    let many: Vec<_> = (0..200)
        .map(|i| (format!("x-filler-{i}"), "1".to_owned()))
        .collect();
    assert_headers_too_large(livez_with(&app, &many).await).await;
    let large = vec![("x-large".to_owned(), "a".repeat(64 * 1024))];
    assert_headers_too_large(livez_with(&app, &large).await).await;
    // Within the limits, on the same server: 90 fields, one of 12 KiB.
    let mut fine: Vec<_> = many.into_iter().take(89).collect();
    fine.push(("x-large".to_owned(), "a".repeat(12 * 1024)));
    assert_eq!(
        livez_with(&app, &fine).await.status(),
        reqwest::StatusCode::OK
    );
    // On a raw socket, the answer is ours, whole, and the connection closes.
    let mut stream = connect(&app).await;
    let mut head = b"GET /livez HTTP/1.1\r\nhost: test\r\n".to_vec();
    for i in 0..200 {
        head.extend_from_slice(format!("x-filler-{i}: 1\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    let answer = exchange(&mut stream, &head).await;
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{answer}"
    );
    assert!(answer.contains(r#""status":431"#), "{answer}");
    assert!(closed_within(&mut stream, Duration::from_secs(10)).await);
    // A request line hyper cannot parse keeps hyper's bare 400.
    let mut stream = connect(&app).await;
    let answer = exchange(&mut stream, b"NOT A REQUEST\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    // And the server still serves.
    let mut stream = connect(&app).await;
    assert!(
        exchange(&mut stream, LIVEZ)
            .await
            .starts_with("HTTP/1.1 200 ")
    );
}
