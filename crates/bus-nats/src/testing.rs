//! NATS for the binary's cluster-mode tests: whether the server is there
//! (failing under `CI=true` if not) and a namespace's stream removed on drop.

// Test support: a failure here is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

/// The NATS server of the tests (`NATS_URL` to change it).
pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// The streams of one test deployment's namespace, deleted (with their
/// consumers) on drop.
#[derive(Debug)]
pub struct TestStream {
    pub url: String,
    pub namespace: String,
}

impl TestStream {
    /// `None` (after printing why) when NATS is unreachable outside CI.
    pub async fn create(namespace: &str) -> Option<Self> {
        let url = nats_url();
        let address = url.trim_start_matches("nats://").to_owned();
        let reason = match tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(address),
        )
        .await
        {
            Ok(Ok(_)) => {
                return Some(Self {
                    url,
                    namespace: namespace.to_owned(),
                });
            }
            Ok(Err(err)) => err.to_string(),
            Err(_) => "connecting timed out".to_owned(),
        };
        if std::env::var("CI").is_ok_and(|ci| ci == "true") {
            panic!("NATS at {url} is unreachable under CI=true: {reason}");
        }
        eprintln!("skipping NATS: {url} is unreachable ({reason})");
        None
    }
}

impl TestStream {
    /// The deployment's streams: its events and its jobs.
    fn streams(&self) -> [String; 2] {
        ["events", "jobs"].map(|kind| format!("{}-{kind}", self.namespace))
    }

    /// Deletes the streams (and their consumers) now, from under whatever
    /// uses them: the bus-loss drill.
    pub async fn delete_now(&self) {
        let client = async_nats::connect(self.url.as_str()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        for stream in self.streams() {
            // The job stream exists once a worker opened the queue.
            let _ = js.delete_stream(stream).await;
        }
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        let (url, streams) = (self.url.clone(), self.streams());
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let Ok(client) = async_nats::connect(url.as_str()).await else {
                        return;
                    };
                    let js = async_nats::jetstream::new(client);
                    // The deployment's relay or workers may still be running
                    // and create a stream again as soon as they miss it:
                    // delete until both stay gone for a moment (or give up
                    // after ~3 s).
                    let mut gone_for = 0;
                    for _ in 0..30 {
                        let mut present = false;
                        for stream in &streams {
                            if js.get_stream(stream).await.is_ok() {
                                let _ = js.delete_stream(stream).await;
                                present = true;
                            }
                        }
                        if present {
                            gone_for = 0;
                        } else {
                            gone_for += 1;
                            if gone_for == 3 {
                                return;
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                })
        })
        .join();
    }
}
