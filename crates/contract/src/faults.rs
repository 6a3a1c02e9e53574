//! Faults for adapters' tests: a TCP relay to a real server (PostgreSQL,
//! Redis, NATS) that a test can cut, slow down, reset or blackhole, so a
//! dependency misbehaves under an adapter without touching the server the
//! other tests share.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// What the relay does to traffic, switchable at run time with
/// [`CuttableProxy::set`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Relays as it comes.
    None,
    /// Holds each chunk this long before passing it on, both ways.
    Latency(Duration),
    /// Resets (RST) every open connection and every new one at once.
    Reset,
    /// Accepts connections and holds every byte, closing nothing: a silent
    /// network. Held bytes flow again once the fault is lifted.
    Blackhole,
}

/// Relays every connection made to [`addr`](Self::addr) to `upstream`
/// under the current [`Fault`] until [`cut`](Self::cut): then open
/// connections drop and new ones are refused.
pub struct CuttableProxy {
    /// `host:port` to connect to instead of the server.
    pub addr: String,
    tasks: JoinSet<()>,
    fault: watch::Sender<Fault>,
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
        let (fault, watching) = watch::channel(Fault::None);
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut relays = JoinSet::new();
            while let Ok((inbound, _)) = listener.accept().await {
                relays.spawn(relay(inbound, upstream.clone(), watching.clone()));
            }
        });
        Self { addr, tasks, fault }
    }

    /// Applies `fault` to open and new connections from now on.
    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// Back to relaying as it comes.
    pub fn heal(&self) {
        self.set(Fault::None);
    }

    /// Closes the listener and every relayed connection.
    pub fn cut(&mut self) {
        self.tasks.abort_all();
    }
}

/// How one direction of a relayed connection ended.
#[derive(PartialEq, Eq)]
enum End {
    Closed,
    Reset,
}

async fn relay(inbound: TcpStream, upstream: String, mut fault: watch::Receiver<Fault>) {
    // A blackhole holds a new connection before it reaches the server.
    if hold(&mut fault).await == Some(End::Reset) {
        return reset(&inbound);
    }
    let Ok(outbound) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut inbound, mut outbound) = (inbound, outbound);
    let end = {
        let (mut from_client, mut to_client) = inbound.split();
        let (mut from_server, mut to_server) = outbound.split();
        tokio::select! {
            end = pump(&mut from_client, &mut to_server, fault.clone()) => end,
            end = pump(&mut from_server, &mut to_client, fault) => end,
        }
    };
    if end == End::Reset {
        reset(&inbound);
        reset(&outbound);
    }
}

/// Copies `from` to `to` under the fault in force, chunk by chunk.
async fn pump(
    from: &mut ReadHalf<'_>,
    to: &mut WriteHalf<'_>,
    mut fault: watch::Receiver<Fault>,
) -> End {
    let mut buf = vec![0_u8; 16 * 1024];
    loop {
        let n = loop {
            if let Some(end) = hold(&mut fault).await {
                return end;
            }
            // A reset must reach an idle connection too: wait for either.
            tokio::select! {
                read = from.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return End::Closed,
                    Ok(n) => break n,
                },
                changed = fault.changed() => if changed.is_err() {
                    return End::Closed;
                },
            }
        };
        let now = *fault.borrow_and_update();
        if let Fault::Latency(delay) = now {
            tokio::time::sleep(delay).await;
        }
        if let Some(end) = hold(&mut fault).await {
            return end;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return End::Closed;
        }
    }
}

/// Waits out a blackhole; `Some` when the connection must end instead.
async fn hold(fault: &mut watch::Receiver<Fault>) -> Option<End> {
    loop {
        let now = *fault.borrow_and_update();
        match now {
            Fault::Reset => return Some(End::Reset),
            Fault::Blackhole => {
                if fault.changed().await.is_err() {
                    return Some(End::Closed);
                }
            }
            Fault::None | Fault::Latency(_) => return None,
        }
    }
}

/// Closing with a zero linger sends RST instead of FIN.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// An echo server; returns its address.
    async fn echo() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut from, mut to) = stream.split();
                    let _ = tokio::io::copy(&mut from, &mut to).await;
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        stream.write_all(bytes).await?;
        let mut back = vec![0_u8; bytes.len()];
        stream.read_exact(&mut back).await?;
        Ok(back)
    }

    #[tokio::test]
    async fn faults_switch_at_run_time_and_heal() {
        let proxy = CuttableProxy::to(&echo().await).await;
        let mut stream = TcpStream::connect(&proxy.addr).await.unwrap();
        assert_eq!(round_trip(&mut stream, b"one").await.unwrap(), b"one");

        proxy.set(Fault::Latency(Duration::from_millis(20)));
        assert_eq!(round_trip(&mut stream, b"two").await.unwrap(), b"two");

        // A blackhole holds the bytes without closing; healing lets them on.
        proxy.set(Fault::Blackhole);
        stream.write_all(b"held").await.unwrap();
        let mut back = [0_u8; 4];
        let held = tokio::time::timeout(Duration::from_millis(300), stream.read_exact(&mut back));
        assert!(held.await.is_err(), "a byte crossed the blackhole");
        proxy.heal();
        stream.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"held");

        // A reset ends open connections with RST, and new ones too.
        proxy.set(Fault::Reset);
        let err = stream
            .read(&mut back)
            .await
            .expect_err("an open connection survived");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
        let mut fresh = TcpStream::connect(&proxy.addr).await.unwrap();
        let err = round_trip(&mut fresh, b"x")
            .await
            .expect_err("a new connection survived");
        assert!(
            matches!(
                err.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
            ),
            "{err}"
        );

        proxy.heal();
        let mut healed = TcpStream::connect(&proxy.addr).await.unwrap();
        assert_eq!(round_trip(&mut healed, b"back").await.unwrap(), b"back");
    }
}
