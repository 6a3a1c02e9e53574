//! The access layer for real (cluster mode only): Debian's nginx with
//! deploy/nginx/stampede.conf in front of two `api` nodes and a worker on
//! loopback. Each simulated client binds its own loopback address
//! (127.0.0.0/8 is all local on Linux), so per-IP limits see a crowd of
//! addresses. Purchases pass through with their request id and
//! `traceparent`, and reach both nodes; a client over its rate gets nginx's
//! own 429 as problem+json; killing one node mid-burst loses no 202 and the
//! other node goes on serving; a slowloris client is cut off by nginx
//! before any node sees its request.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use stampede::cli::TokenRole;

use crate::harness::{Api, Binary, DataDir, eventually, token};

/// nginx from Debian's package (scripts/setup.sh installs it); root's PATH
/// has /usr/sbin, others' may not.
fn nginx_binary() -> &'static str {
    let installed = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|path| Path::new(path).is_file());
    installed.expect("nginx is not installed: run scripts/setup.sh")
}

/// An nginx serving the shipped configuration, with only its listening
/// address and its two upstream servers rewritten to loopback.
struct Nginx {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(node_a: &Binary, node_b: &Binary) -> Self {
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/nginx/stampede.conf"),
        )
        .unwrap();
        let port = {
            let probe = TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let mut config = shipped;
        for (from, to) in [
            ("listen 80;".to_owned(), format!("listen 127.0.0.1:{port};")),
            (
                "server api-a:8080 ".to_owned(),
                format!("server {} ", node_a.addr),
            ),
            (
                "server api-b:8080 ".to_owned(),
                format!("server {} ", node_b.addr),
            ),
            // The log goes to the test's output, not to a pipe nobody reads.
            (
                "access_log /dev/stdout".to_owned(),
                "access_log stderr".to_owned(),
            ),
        ] {
            assert_eq!(
                config.matches(&from).count(),
                1,
                "deploy/nginx/stampede.conf no longer has `{from}` once"
            );
            config = config.replace(&from, &to);
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("stampede.conf"), config).unwrap();
        // The main context around it, as a distribution's nginx.conf would
        // have; the test runs as root in CI, where workers would otherwise
        // switch to a user that cannot reach the scratch directory.
        let main = format!(
            "{user}daemon off;\nworker_processes 1;\npid {root}/nginx.pid;\n\
             error_log stderr warn;\nevents {{ worker_connections 1024; }}\n\
             http {{\n  client_body_temp_path {root}/body;\n  proxy_temp_path {root}/proxy;\n  \
             fastcgi_temp_path {root}/fastcgi;\n  uwsgi_temp_path {root}/uwsgi;\n  \
             scgi_temp_path {root}/scgi;\n  include stampede.conf;\n}}\n",
            user = if is_root() { "user root;\n" } else { "" },
            root = root.display(),
        );
        std::fs::write(root.join("nginx.conf"), main).unwrap();
        let check = Command::new(nginx_binary())
            .args(["-e", "stderr", "-p"])
            .arg(root)
            .arg("-c")
            .arg(root.join("nginx.conf"))
            .arg("-t")
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "nginx -t refused the configuration:\n{}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = Command::new(nginx_binary())
            .args(["-e", "stderr", "-p"])
            .arg(root)
            .arg("-c")
            .arg(root.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    /// A client of nginx from its own loopback address `127.0.0.<host>`.
    fn client(&self, host: u8) -> Api {
        let client = reqwest::Client::builder()
            .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)))
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Api {
            client,
            base: format!("http://127.0.0.1:{}", self.port),
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM is nginx's fast shutdown, which takes its workers along.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn is_root() -> bool {
    let output = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&output.stdout).trim() == "0"
}

/// Two api nodes trusting nginx's `X-Forwarded-For`, and a worker that
/// settles what a killed node left.
fn cluster(dir: &DataDir) -> (Binary, Binary, Binary) {
    let env = [
        ("STAMPEDE_ROLE", "api"),
        ("STAMPEDE_TRUSTED_PROXIES", "127.0.0.1"),
    ];
    (
        Binary::start_with(dir, &env),
        Binary::start_with(dir, &env),
        Binary::start_with(dir, &[("STAMPEDE_ROLE", "worker")]),
    )
}

/// A purchase through nginx: status, headers and the body as JSON (`Null`
/// when it is not JSON).
async fn purchase(
    api: &Api,
    user: &str,
    sale: &str,
    key: &str,
    headers: &[(&str, &str)],
) -> Result<(StatusCode, reqwest::header::HeaderMap, Value), reqwest::Error> {
    let mut request = api
        .client
        .post(format!("{}/api/v1/sales/{sale}/purchase", api.base))
        .bearer_auth(token(user, TokenRole::Customer))
        .header("Idempotency-Key", key)
        .json(&json!({"quantity": 1}));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await?;
    let (status, headers) = (response.status(), response.headers().clone());
    let body = response.json().await.unwrap_or(Value::Null);
    Ok((status, headers, body))
}

/// nginx's own refusal: problem+json with `Retry-After`, from the access
/// layer rather than a node (whose details differ).
fn assert_nginx_problem(status: StatusCode, headers: &reqwest::header::HeaderMap, body: &Value) {
    assert_eq!(
        headers["content-type"], "application/problem+json",
        "{status}: {body}"
    );
    assert_eq!(headers["retry-after"], "1", "{status}: {body}");
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .starts_with("https://stampede.dev/problems/")
    );
}

/// Sends every request at once and answers in their order.
async fn all_at_once(
    requests: impl Iterator<Item = reqwest::RequestBuilder>,
) -> Vec<Result<reqwest::Response, reqwest::Error>> {
    let tasks: Vec<_> = requests.map(|r| tokio::spawn(r.send())).collect();
    let mut answers = Vec::with_capacity(tasks.len());
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

fn answered_lines(node: &Binary) -> Vec<Value> {
    node.logs()
        .into_iter()
        .filter(|line| line["fields"]["message"] == "answered")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purchases_pass_through_nginx_with_their_headers_and_a_client_over_its_rate_gets_its_429() {
    let dir = DataDir::new();
    if !dir.is_cluster() {
        return; // Services missing outside CI: there is no cluster to front.
    }
    let (node_a, node_b, _worker) = cluster(&dir);
    let nginx = Nginx::start(&node_a, &node_b);
    let sale = Api::new(&node_a).create_sale(1_000, 100).await;

    // Headers pass both ways: the request id the client chose comes back
    // and is the node's, and the node's trace continues the client's.
    let client = nginx.client(2);
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace}-00f067aa0ba902b7-01");
    let (status, headers, order) = purchase(
        &client,
        "headers",
        &sale,
        "k-1",
        &[
            ("x-request-id", "through-nginx-1"),
            ("traceparent", &traceparent),
        ],
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{order}");
    assert_eq!(headers["x-request-id"], "through-nginx-1");
    let line = eventually(10, "the node to log the purchase", || async {
        [&node_a, &node_b]
            .into_iter()
            .flat_map(answered_lines)
            .find(|line| line["fields"]["request_id"] == "through-nginx-1")
    })
    .await;
    assert_eq!(line["fields"]["trace_id"], trace, "{line}");

    // Both nodes serve: nginx names both in its upstream.
    for n in 0..20 {
        let (status, _, body) = purchase(&client, "spread", &sale, &format!("s-{n}"), &[])
            .await
            .unwrap();
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    for node in [&node_a, &node_b] {
        assert!(
            answered_lines(node).len() >= 3,
            "a node behind nginx got almost nothing"
        );
    }

    // One user over its rate from one address: nginx's per-token limit
    // (10 a second, burst 20) answers first, as problem+json.
    let flood = nginx.client(3);
    let answers = all_at_once((0..150).map(|_| {
        flood
            .client
            .get(format!("{}/api/v1/orders", flood.base))
            .bearer_auth(token("flooder", TokenRole::Customer))
    }))
    .await;
    let mut limited = 0;
    for answer in answers {
        let answer = answer.unwrap();
        let (status, headers) = (answer.status(), answer.headers().clone());
        let body: Value = answer.json().await.unwrap();
        match status {
            StatusCode::OK => {}
            StatusCode::TOO_MANY_REQUESTS => {
                assert_nginx_problem(status, &headers, &body);
                assert!(body["detail"].as_str().unwrap().contains("access layer"));
                limited += 1;
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert!(
        limited > 0,
        "150 requests at once all passed the per-token limit"
    );

    // Many users from one address (throwaway tokens): the per-IP limit
    // (20 a second, burst 40) still holds them.
    let nat = nginx.client(4);
    let answers = all_at_once((0..150).map(|n| {
        nat.client
            .get(format!("{}/api/v1/orders", nat.base))
            .bearer_auth(token(&format!("throwaway-{n}"), TokenRole::Customer))
    }))
    .await;
    let limited = answers
        .into_iter()
        .filter(|answer| answer.as_ref().unwrap().status() == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(limited > 0, "150 tokens from one address all passed");
    eprintln!("nginx refused {limited} of 150 requests from one address");

    // The nodes' metrics are for Prometheus, not for the crowd.
    let metrics = nginx
        .client(6)
        .client
        .get(format!("{}/metrics", client.base));
    assert_eq!(
        metrics.send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    // A client elsewhere is untouched by those two.
    let (status, _, body) = purchase(&nginx.client(5), "bystander", &sale, "k", &[])
        .await
        .unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

/// Buyers in the burst, each on its own address, and purchases each.
const BUYERS: u8 = 30;
const PURCHASES: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_node_behind_nginx_mid_burst_loses_no_202_and_the_other_node_serves() {
    let dir = DataDir::new();
    if !dir.is_cluster() {
        return;
    }
    let (node_a, node_b, _worker) = cluster(&dir);
    let nginx = Arc::new(Nginx::start(&node_a, &node_b));
    let direct = Api::new(&node_b);
    let sale = Arc::new(direct.create_sale(100_000, 1_000).await);

    // Each buyer buys in turn, retrying a key nginx answered 503 (no node
    // answered it) or 429 with the same key, as a client is told to.
    let accepted = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let after_kill = Arc::new(AtomicUsize::new(0));
    let won: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let unresolved = Arc::new(AtomicUsize::new(0));
    let retried = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for buyer in 0..BUYERS {
        let (nginx, sale, accepted, killed, after_kill, won, unresolved, retried) = (
            nginx.clone(),
            sale.clone(),
            accepted.clone(),
            killed.clone(),
            after_kill.clone(),
            won.clone(),
            unresolved.clone(),
            retried.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let client = nginx.client(10 + buyer);
            let user = format!("burst-{buyer}");
            for n in 0..PURCHASES {
                let key = format!("key-{n}");
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    if Instant::now() > deadline {
                        unresolved.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    let (status, headers, body) =
                        match purchase(&client, &user, &sale, &key, &[]).await {
                            Ok(answer) => answer,
                            Err(err) => panic!("nginx dropped a client: {err}"),
                        };
                    match status {
                        StatusCode::ACCEPTED => {
                            accepted.fetch_add(1, Ordering::Relaxed);
                            if killed.load(Ordering::Relaxed) {
                                after_kill.fetch_add(1, Ordering::Relaxed);
                            }
                            let id = body["id"].as_str().unwrap().to_owned();
                            won.lock().unwrap().insert(format!("{user}/{key}"), id);
                            break;
                        }
                        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                            assert_eq!(
                                headers["content-type"], "application/problem+json",
                                "{status}: {body}"
                            );
                            retried.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        other => panic!("{user}/{key}: {other} {body}"),
                    }
                }
            }
        }));
    }
    let total = usize::from(BUYERS) * PURCHASES;
    eventually(60, "a third of the burst to be accepted", || async {
        (accepted.load(Ordering::Relaxed) >= total / 3).then_some(())
    })
    .await;
    node_a.kill_9();
    killed.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let won = won.lock().unwrap().clone();
    let unresolved = unresolved.load(Ordering::Relaxed);
    let after_kill = after_kill.load(Ordering::Relaxed);
    eprintln!(
        "{} accepted, {after_kill} after the kill, {} retries of a 429 or 503, \
         {unresolved} keys never answered",
        won.len(),
        retried.load(Ordering::Relaxed)
    );
    assert!(after_kill > 0, "nothing was accepted after node A died");
    assert_eq!(unresolved, 0, "keys still unanswered after a minute");

    // Every 202 is in the database, read from the survivor (directly: a
    // reader through nginx would be rate-limited); the stock counts each
    // exactly once.
    for (user_key, id) in &won {
        let user = user_key.split('/').next().unwrap();
        let (status, _) = direct.order(user, id).await;
        assert_eq!(status, StatusCode::OK, "order {id} of {user_key} lost");
    }
    let stats = eventually(30, "the ledger to equal the database", || async {
        let stats = direct.stats(&sale).await;
        let sold = stats["sold"].as_u64().unwrap();
        (stats["remaining"].as_u64().unwrap() == 100_000 - sold).then_some(stats)
    })
    .await;
    assert_eq!(stats["sold"], won.len() as u64, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_client_is_cut_off_by_nginx_before_any_node_sees_it() {
    let dir = DataDir::new();
    if !dir.is_cluster() {
        return;
    }
    let (node_a, node_b, _worker) = cluster(&dir);
    let nginx = Nginx::start(&node_a, &node_b);
    let port = nginx.port;
    let cut = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .write_all(b"GET /api/v1/orders HTTP/1.1\r\nHost: stampede\r\nX-Slow: ")
            .unwrap();
        let mut reader = stream.try_clone().unwrap();
        let closed = Arc::new(AtomicBool::new(false));
        let seen = closed.clone();
        let watcher = std::thread::spawn(move || {
            let mut answer = Vec::new();
            let _ = reader.read_to_end(&mut answer);
            seen.store(true, Ordering::Relaxed);
            answer
        });
        // One byte every 200 ms, never ending the head: each byte alone
        // would keep a per-read timeout alive forever.
        let started = Instant::now();
        while !closed.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(60) {
            if stream.write_all(b"a").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let elapsed = started.elapsed();
        let _ = stream.shutdown(std::net::Shutdown::Both);
        (watcher.join().unwrap(), elapsed)
    });
    let (answer, elapsed) = cut.await.unwrap();
    assert!(
        elapsed < Duration::from_secs(60),
        "nginx kept a trickling request head open for a minute"
    );
    eprintln!(
        "nginx cut the slowloris off after {elapsed:?}, answering {:?}",
        String::from_utf8_lossy(&answer)
    );
    let nodes_saw = [&node_a, &node_b]
        .into_iter()
        .flat_map(answered_lines)
        .filter(|line| {
            let route = line["fields"]["route"].as_str().unwrap_or_default();
            route.contains("/api/v1/orders")
        })
        .count();
    assert_eq!(nodes_saw, 0, "a half-sent request reached a node");
}
