//! A real HTTP endpoint for webhook tests: records what it receives and
//! answers with the status a script chooses for each hit. It listens on
//! 127.0.0.1, which webhooks may reach only when allowed: a test server that
//! delivers to it is started with [`allow_receivers`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;
use stampede::config::Config;
use stampede_domain::net::AllowList;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Hit {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Hit {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    pub fn header(&self, name: &str) -> String {
        self.headers[name].to_str().unwrap().to_owned()
    }
}

/// Lets the server's webhooks reach receivers (`webhook_allow_hosts`).
pub fn allow_receivers(config: &mut Config) {
    config.webhook.allow_hosts = AllowList::parse("127.0.0.1").unwrap();
}

type Script = Arc<dyn Fn(usize) -> u16 + Send + Sync>;

#[derive(Clone)]
struct Shared {
    hits: Arc<Mutex<Vec<Hit>>>,
    script: Script,
}

pub struct Receiver {
    pub url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Receiver {
    /// Starts a receiver whose `n`th hit (from 0) is answered `script(n)`.
    pub async fn start(script: impl Fn(usize) -> u16 + Send + Sync + 'static) -> Self {
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let shared = Shared {
            hits: hits.clone(),
            script: Arc::new(script),
        };
        let app = Router::new().route("/hook", post(hook)).with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url: format!("http://{addr}/hook"),
            hits,
        }
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }
}

async fn hook(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let n = {
        let mut hits = shared.hits.lock().unwrap();
        hits.push(Hit { headers, body });
        hits.len() - 1
    };
    StatusCode::from_u16((shared.script)(n)).unwrap()
}
