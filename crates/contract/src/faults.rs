//! Faults for adapters' tests: a TCP relay to a real server (PostgreSQL,
//! Redis, NATS) that a test can cut, so a dependency "goes down" under an
//! adapter without touching the server the other tests share.

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Relays every connection made to [`addr`](Self::addr) to `upstream`
/// until [`cut`](Self::cut): then open connections drop and new ones are
/// refused.
pub struct CuttableProxy {
    /// `host:port` to connect to instead of the server.
    pub addr: String,
    tasks: JoinSet<()>,
}

impl CuttableProxy {
    /// A relay to `upstream` (`host:port`) on a free local port.
    ///
    /// # Panics
    /// If no local port can be bound (a failed test).
    pub async fn to(upstream: &str) -> Self {
        #[allow(clippy::expect_used)] // Test support: a failure is a failed test.
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the proxy");
        #[allow(clippy::expect_used)]
        let addr = listener
            .local_addr()
            .expect("the proxy's address")
            .to_string();
        let upstream = upstream.to_owned();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut relays = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                relays.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self { addr, tasks }
    }

    /// Closes the listener and every relayed connection.
    pub fn cut(&mut self) {
        self.tasks.abort_all();
    }
}
