//! What every handler can reach: the application and the metrics handle.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use stampede_app::App;
use stampede_flow::limit::shared::RateStore;

use crate::protect::{ProtectSettings, Protection};
use crate::streams::StreamSlots;

/// Settings of the HTTP edge; built from [`HttpConfig`](crate::config::HttpConfig),
/// which holds the defaults.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Bodies larger than this are refused with 413, from `Content-Length`
    /// before reading when the client sends one.
    pub max_body_bytes: usize,
    /// Rate limits, load shedding, deadlines.
    pub protect: ProtectSettings,
    /// Serve the API (`all` and `api` nodes); without it only the probes,
    /// `/metrics` and the OpenAPI document (`worker` nodes).
    pub serve_api: bool,
    /// Open order event streams per node at most.
    pub max_event_streams: usize,
    /// Request-head and idle timeouts, and the cap on connections.
    pub connections: ConnectionSettings,
}

/// Bounds on connections; defaults in [`HttpConfig`](crate::config::HttpConfig),
/// applied by [`serve`](crate::serve).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionSettings {
    /// The most a client may take to send a request head.
    pub header_timeout: Duration,
    /// A keep-alive connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
}

struct Inner {
    app: Arc<App>,
    prometheus: PrometheusHandle,
    protection: Arc<Protection>,
    streams: Arc<StreamSlots>,
}

/// Cheap to clone: one `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    /// `rate_store`: where shared rate limits keep their state (Redis in
    /// cluster mode); `None`: every rule is local.
    pub fn new(
        app: Arc<App>,
        prometheus: PrometheusHandle,
        settings: &HttpSettings,
        rate_store: Option<Arc<dyn RateStore>>,
    ) -> Self {
        let protection = Arc::new(Protection::new(
            &settings.protect,
            rate_store,
            app.jwt.clone(),
            app.clock.clone(),
            app.purchases.answered().clone(),
        ));
        // The waiting rooms admit as many as the node can take at once.
        if let Some(limit) = protection.adaptive() {
            app.purchases.room().follow(limit.clone());
        }
        Self(Arc::new(Inner {
            prometheus,
            protection,
            streams: StreamSlots::new(settings.max_event_streams),
            app,
        }))
    }

    pub fn protection(&self) -> &Arc<Protection> {
        &self.0.protection
    }

    pub fn streams(&self) -> &Arc<StreamSlots> {
        &self.0.streams
    }

    pub fn app(&self) -> &App {
        &self.0.app
    }

    pub fn prometheus(&self) -> &PrometheusHandle {
        &self.0.prometheus
    }
}
