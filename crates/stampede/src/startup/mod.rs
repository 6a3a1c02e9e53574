//! The one place that builds adapters, wires the app, serves and shuts down.
//!
//! Start-up, in order: data directory → secrets → metrics recorder → listener
//! (bound first: the payment provider calls back to its address) → store of
//! record, SQLite or PostgreSQL (migrations) → stock ledger rebuilt from the store → event bus, payment
//! provider, webhook sender → services, commit workers and background workers
//! → the HTTP edge (with the shared rate-limit store in cluster mode).
//! Shutdown, in stages: stop accepting and fail readiness (new purchases get
//! 503, event streams end) → finish in-flight requests within the grace period
//! → commit every queued order → stop the background workers at a safe point →
//! close the store.

mod adapters;
mod rules;
mod services;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use stampede_app::App;
use stampede_app::auth::JwtKey;
use stampede_app::failure::Chain;
use stampede_app::ports::{Clock, SystemClock};
use stampede_app::webhooks::SecretSealer;
use stampede_app::workers::{Background, Next, StepError, Worker};
use stampede_http::AppState;
use stampede_http::protect::Protection;
use stampede_http::serve::{ConnectionSettings, serve};
use stampede_outbound::{HttpWebhookSender, SimulatedProvider, SimulatedSettings};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::secret;
use adapters::{
    open_bus, open_captcha, open_ledger, open_rate_store, open_room_book, open_shared_cache,
    open_store,
};
use services::{Adapters, start_app};

pub use rules::LoadRules;

/// A built server, bound to its address, not yet serving.
pub struct Server {
    app: Arc<App>,
    protection: Arc<Protection>,
    listener: TcpListener,
    router: stampede_http::Edge,
    connections: ConnectionSettings,
    local_addr: SocketAddr,
    grace: Duration,
}

impl Server {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        for warning in &settings.warnings {
            tracing::warn!("{warning}");
        }
        let data_dir = settings.data_dir.clone();
        secret::prepare_data_dir(&data_dir)?;

        let jwt_secret = match &settings.jwt_secret {
            Some(secret) => secret.clone(),
            None => secret::load_or_create(&data_dir, secret::JWT)?,
        };
        let webhook_key = match &settings.webhook_secret_key {
            Some(key) => key.clone(),
            None => secret::load_or_create(&data_dir, secret::WEBHOOK_KEY)?,
        };
        let sealer = SecretSealer::from_hex(webhook_key.expose()).with_context(|| {
            format!(
                "{} must hold 64 hexadecimal digits",
                secret::path_in(&data_dir, secret::WEBHOOK_KEY).display()
            )
        })?;
        let webhook_secret = match &settings.payment_webhook_secret {
            Some(secret) => secret.clone(),
            None => secret::load_or_create(&data_dir, secret::PAYMENT_WEBHOOK)?,
        };
        // Before anything makes a metric handle.
        let prometheus = stampede_http::telemetry::prometheus();

        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("listening on {}", settings.listen))?;
        let local_addr = listener.local_addr()?;

        let (store, mut probes) = open_store(&settings).await?;

        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        // Every background loop and task of this node runs on it.
        let background = Arc::new(Background::new());
        let provider = SimulatedProvider::new(
            SimulatedSettings {
                webhook_url: format!(
                    "{}/api/v1/payments/webhook",
                    public_url(&settings, local_addr)
                ),
                webhook_secret: webhook_secret.expose().as_bytes().to_vec(),
                ..settings.payment_sim.clone()
            },
            clock.clone(),
            background.spawner(),
        )
        .context("building the payment provider's HTTP client")?;
        let sender = HttpWebhookSender::new(settings.app.webhooks.allow_hosts.clone())
            .context("building the webhook HTTP client")?;
        let ledger = open_ledger(&settings, clock.as_ref(), &mut probes).await?;
        let (bus, jobs, relay) = open_bus(&settings, store.clone(), &mut probes).await?;
        let mut app_settings = settings.app.clone();
        app_settings.payments.webhook_secret = webhook_secret.expose().as_bytes().to_vec();
        let adapters = Adapters {
            bus: bus.clone(),
            jobs,
            ledger,
            store,
            provider: Arc::new(provider),
            sender: Arc::new(sender),
            clock,
            jwt: JwtKey::new(jwt_secret.expose().as_bytes())
                .with_max_ttl(settings.jwt_max_ttl_secs),
            sealer,
            probes,
            shared_cache: open_shared_cache(&settings)?,
            room_book: open_room_book(&settings)?,
            tag_secret: jwt_secret.expose().as_bytes().to_vec(),
            captcha: open_captcha(&settings)?,
        };
        let app = Arc::new(
            start_app(adapters, app_settings, background.clone())
                .await
                .context("starting the services")?,
        );
        if let Some(relay) = relay.filter(|_| settings.app.run_workers) {
            background.run(relay);
        }
        let rate_store = open_rate_store(&settings)?;
        let cluster = rate_store.is_some();
        let state = AppState::new(app.clone(), prometheus, &settings.http, rate_store);
        background.run(LimiterUpkeep(state.clone()));
        let protection = state.protection().clone();
        let router = stampede_http::router(state, &settings.http);
        if cluster {
            // The cluster's stored rules win over the file's, before the
            // first request; Redis away, the poll adopts them later.
            if let Err(err) = protection.rules().follow().await {
                tracing::warn!(
                    error = %Chain(&err),
                    "cannot read the cluster's rate limit rules yet: the configured ones run until then"
                );
            }
            background.run(rules::FollowRules(protection.clone()));
        }
        Ok(Self {
            app,
            protection,
            listener,
            router,
            connections: settings.http.connections,
            local_addr,
            grace: settings.shutdown_grace,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn app(&self) -> Arc<App> {
        self.app.clone()
    }

    /// From now on a `SIGHUP` puts the rate-limit rules `load` gives in
    /// force (in cluster mode, on every node); a worker of the node's driver.
    pub fn reload_rules_on_hangup(&self, load: LoadRules) -> anyhow::Result<()> {
        let worker = rules::ReloadOnHangup::new(self.protection.clone(), load)
            .context("listening for SIGHUP")?;
        self.app.background.run(worker);
        Ok(())
    }

    /// Serves until `shutdown` completes, then shuts down in stages.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            app,
            protection: _,
            listener,
            router,
            connections,
            local_addr,
            grace,
        } = self;
        app.lifecycle.mark_started();
        tracing::info!(addr = %local_addr, "serving");

        let draining = CancellationToken::new();
        let graceful = {
            let app = app.clone();
            let draining = draining.clone();
            async move {
                shutdown.await;
                tracing::info!("shutdown requested: draining");
                app.lifecycle.start_draining();
                draining.cancel();
            }
        };
        let mut serving = tokio::spawn(async move {
            serve(listener, router, connections, graceful).await;
            Ok::<(), std::io::Error>(())
        });
        let served = tokio::select! {
            result = &mut serving => Some(result),
            () = draining.cancelled() => None,
        };
        let result = match served {
            Some(result) => result,
            None => match tokio::time::timeout(grace, &mut serving).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::warn!(
                        grace_secs = grace.as_secs(),
                        "grace period over: closing the remaining connections"
                    );
                    serving.abort();
                    Ok(Ok(()))
                }
            },
        };
        // Whatever happened to the listener, commit what was accepted.
        app.shutdown().await;
        tracing::info!("stopped");
        result.context("server task")?.context("serving HTTP")
    }
}

/// Drops idle keys' rate-limit state every ten seconds, so per-user state does
/// not grow with every user ever seen.
struct LimiterUpkeep(AppState);

#[async_trait]
impl Worker for LimiterUpkeep {
    fn name(&self) -> String {
        "limiter-upkeep".into()
    }

    async fn step(&mut self, _stop: &CancellationToken) -> Result<Next, StepError> {
        self.0.protection().purge_idle();
        Ok(Next::Idle)
    }

    async fn wait_for_work(&mut self) {
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

/// The base URL other parties use to reach this node: the setting, or the
/// bound address (loopback when bound to every interface).
fn public_url(settings: &Settings, local_addr: SocketAddr) -> String {
    if let Some(url) = &settings.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let mut addr = local_addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    format!("http://{addr}")
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %Chain(&err), "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %Chain(&err), "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
