//! The live sale page in a real headless browser (Debian's `chromium`,
//! driven over WebDriver by `chromedriver`; `scripts/setup.sh` installs
//! both): a customer's token is refused on the page, an admin's connects,
//! and during a sale the remaining-stock figure goes down, wave by wave, to
//! 0. The test saves a screenshot of the page (`dashboard.png` in Cargo's
//! test temporary directory).

use std::process::{Child, Stdio};
use std::sync::Arc;

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use stampede::cli::TokenRole;

use crate::harness::{Api, Binary, DataDir, eventually, require_tool, token};

/// WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A `chromedriver` and one headless browser session on it.
struct Browser {
    driver: Child,
    session: String,
    base: String,
    client: reqwest::Client,
    /// The driver's and the browser's temporary files, removed with it.
    _tmp: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Self {
        // The browser itself is started by chromedriver.
        require_tool("chromium");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let tmp = tempfile::tempdir().unwrap();
        let driver = require_tool("chromedriver")
            .arg(format!("--port={port}"))
            .env("TMPDIR", tmp.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        eventually(30, "chromedriver to start", || async {
            let status: Value = client
                .get(format!("{base}/status"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (status["value"]["ready"] == true).then_some(())
        })
        .await;
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"args": [
                "--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--window-size=1280,860",
            ]},
        }}});
        let created: Value = client
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {created}"))
            .to_owned();
        Self {
            driver,
            session,
            base,
            client,
            _tmp: tmp,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let request = self.client.request(method.clone(), url);
        // A GET carries no body: chromedriver refuses one.
        let request = match method {
            reqwest::Method::GET => request,
            _ => request.json(&body),
        };
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        assert!(
            answer["value"]["error"].is_null(),
            "WebDriver {path}: {answer}"
        );
        answer["value"].clone()
    }

    async fn open(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    async fn element(&self, css: &str) -> String {
        let found = self
            .call(
                reqwest::Method::POST,
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        found[ELEMENT].as_str().unwrap().to_owned()
    }

    /// Replaces the text of the input `css` with `text` and submits it.
    async fn submit(&self, css: &str, text: &str) {
        let input = self.element(css).await;
        let path = format!("/element/{input}");
        self.call(reqwest::Method::POST, &format!("{path}/clear"), json!({}))
            .await;
        self.call(
            reqwest::Method::POST,
            &format!("{path}/value"),
            json!({ "text": text }),
        )
        .await;
        let button = self.element("#connect").await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{button}/click"),
            json!({}),
        )
        .await;
    }

    /// The text of the first element matching `css`, if there is one.
    async fn text(&self, css: &str) -> Option<String> {
        let script =
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;";
        let value = self
            .call(
                reqwest::Method::POST,
                "/execute/sync",
                json!({"script": script, "args": [css]}),
            )
            .await;
        value.as_str().map(str::to_owned)
    }

    /// Waits until `css` shows exactly `expected`.
    async fn shows(&self, css: &str, expected: &str) {
        eventually(30, &format!("{css} to show {expected:?}"), || async {
            (self.text(css).await.as_deref() == Some(expected)).then_some(())
        })
        .await;
    }

    async fn screenshot(&self) -> Vec<u8> {
        let encoded = self
            .call(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap())
            .unwrap()
    }
}

impl Drop for Browser {
    /// Ends the session first, also after a failed assertion: chromedriver
    /// then quits the browser and removes its profile directory, which
    /// killing chromedriver alone would leave behind (with the browser).
    fn drop(&mut self) {
        let end = format!(
            "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.session
        );
        if let Some(addr) = self.base.strip_prefix("http://")
            && let Ok(mut stream) = std::net::TcpStream::connect(addr)
        {
            use std::io::{Read, Write};
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(30)));
            let _ = stream.write_all(end.as_bytes());
            // The answer's head comes once the browser has quit.
            let mut answer = Vec::new();
            let mut chunk = [0u8; 1024];
            while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&chunk[..n]),
                }
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_live_page_shows_the_stock_going_down_to_zero_during_a_sale() {
    if crate::ON_POSTGRES {
        // The page reads the same readings in either mode; one browser run.
        return;
    }
    let data = DataDir::new();
    let binary = Binary::start(&data);
    let api = Arc::new(Api::new(&binary));
    let browser = Browser::start().await;
    browser.open(&format!("{}/dashboard", api.base)).await;

    // The page holds nothing until an admin's token is given.
    browser
        .submit("#token", &token("somebody", TokenRole::Customer))
        .await;
    eventually(30, "the page to say a customer is refused", || async {
        let status = browser.text("#status").await?;
        status.contains("refused (403)").then_some(())
    })
    .await;

    const UNITS: u64 = 250;
    const WAVE: u64 = 50;
    let sale = api.create_sale(UNITS, 1).await;
    browser
        .submit("#token", &token("admin", TokenRole::Admin))
        .await;
    let remaining = format!("[data-sale=\"{sale}\"] .remaining");
    browser.shows(&remaining, &UNITS.to_string()).await;

    // Waves of buyers: the page follows each one down to 0.
    for wave in 0..UNITS / WAVE {
        let buyers = (wave * WAVE..(wave + 1) * WAVE).map(|buyer| {
            let api = api.clone();
            let sale = sale.clone();
            tokio::spawn(async move {
                let (status, body) = api
                    .purchase(&format!("wave-buyer-{buyer}"), &sale, "k")
                    .await
                    .unwrap();
                assert_eq!(status, StatusCode::ACCEPTED, "{body}");
            })
        });
        for buyer in buyers.collect::<Vec<_>>() {
            buyer.await.unwrap();
        }
        let left = UNITS - (wave + 1) * WAVE;
        browser.shows(&remaining, &left.to_string()).await;
    }
    // The crowd's figures are there too.
    let won = browser.text("#won").await.unwrap();
    assert!(won != "–", "wins per second never shown");
    assert!(
        browser.text("#status").await.unwrap().starts_with("live"),
        "{:?}",
        browser.text("#status").await
    );

    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&path, png).unwrap();
    eprintln!("the live page: {}", path.display());
}
