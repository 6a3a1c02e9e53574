//! Stampede's HTTP edge (docs/api.md): an axum router over the application services.
//!
//! - [`routes`]: one module of handlers per area (catalog, purchase, orders,
//!   accounts, operations).
//! - [`extract`]: authentication and input extractors that fail with problems.
//! - [`problem`]: RFC 9457 problem+json, the only error shape we send.
//! - [`dto`]: the JSON shapes on the wire.
//! - [`edge`]: the one service every request passes, around the router.
//! - [`protect`], [`limits`], [`account_limits`]: the edge's rate limits,
//!   load shedding and deadlines; [`live_rules`]: the rules in force,
//!   replaced while serving; [`hot_keys`]: the hottest limited keys.
//! - [`serve`]: the connections under the edge, with their timeouts and cap.
//! - [`streams`]: the bound on open event streams.
//! - [`readings`]: what the live sale page shows, from the node's own metrics.
//! - [`telemetry`]: request ids, trace spans, metrics, the problem safety net.
//! - [`openapi`]: the generated OpenAPI 3.1 document.

pub mod account_limits;
pub mod client_ip;
pub mod config;
pub mod dto;
pub mod edge;
pub mod extract;
pub mod hot_keys;
pub mod limits;
pub mod live_rules;
pub mod openapi;
mod openapi_links;
pub mod problem;
pub mod protect;
pub mod readings;
pub mod routes;
pub mod serve;
pub mod state;
pub mod streams;
pub mod telemetry;
pub mod waiting;

use std::sync::OnceLock;

use axum::routing::{get, post};

pub use edge::Edge;
pub use state::{AppState, HttpSettings};

use edge::Routes;
use routes::{
    accounts, anti_abuse, catalog, live, ops, orders, payments, profile, purchase, rate_limits,
    sale_controls, waiting_room, webhooks,
};

/// The API proper, served by `all` and `api` nodes.
fn api_routes(routes: Routes) -> Routes {
    routes
        .route(
            "/api/v1/products",
            post(catalog::create_product).get(catalog::list_products),
        )
        .route("/api/v1/products/{id}", get(catalog::get_product))
        .route("/api/v1/sales", post(catalog::create_sale))
        .route(
            "/api/v1/sales/{id}",
            get(catalog::get_sale).patch(sale_controls::patch_sale),
        )
        .route("/api/v1/sales/{id}/stats", get(catalog::sale_stats))
        .route("/api/v1/sales/{id}/pause", post(sale_controls::pause_sale))
        .route(
            "/api/v1/sales/{id}/resume",
            post(sale_controls::resume_sale),
        )
        .route("/api/v1/sales/{id}/end", post(sale_controls::end_sale))
        .route(
            "/api/v1/sales/{id}/stock",
            post(sale_controls::change_stock),
        )
        .route("/api/v1/sales/{id}/queue", post(waiting_room::join_queue))
        .route("/api/v1/sales/{id}/challenge", get(anti_abuse::challenge))
        .route("/api/v1/sales/{id}/token", post(anti_abuse::token))
        .route(purchase::ROUTE, post(purchase::purchase))
        .route("/api/v1/orders", get(orders::list_orders))
        .route("/api/v1/orders/{id}", get(orders::get_order))
        .route("/api/v1/orders/{id}/cancel", post(orders::cancel_order))
        .route("/api/v1/orders/{id}/pay", post(payments::pay))
        .route("/api/v1/orders/{id}/events", get(orders::events))
        .route("/api/v1/orders/{id}/detail", get(orders::detail))
        .route("/api/v1/payments/webhook", post(payments::webhook))
        .route(
            "/api/v1/webhooks",
            post(webhooks::create).get(webhooks::list),
        )
        .route(
            "/api/v1/webhooks/{id}",
            get(webhooks::get).delete(webhooks::delete),
        )
        .route(
            "/api/v1/webhooks/{id}/deliveries",
            get(webhooks::deliveries),
        )
        .route("/api/v1/users", post(accounts::register))
        .route("/api/v1/sessions", post(accounts::login))
}

/// The whole service: the routes behind the [`Edge`].
pub fn router(state: AppState, settings: &HttpSettings) -> Edge {
    // Rules replaced while serving may name any route of the API, whatever
    // this node's role serves: every node runs the cluster's one set.
    state.protection().rules().know_routes(route_templates());
    routes(settings.serve_api).into_edge(state, settings.max_body_bytes)
}

/// Every route template of an `api` node: what rate-limit rules may name.
pub fn route_templates() -> &'static [&'static str] {
    static TEMPLATES: OnceLock<Vec<&'static str>> = OnceLock::new();
    TEMPLATES.get_or_init(|| routes(true).paths().to_vec())
}

/// The routes a node serves: the API's with `serve_api`, the operations'
/// always.
fn routes(serve_api: bool) -> Routes {
    let routes = match serve_api {
        true => api_routes(Routes::new()),
        false => Routes::new(),
    };
    routes
        .route("/api/v1/openapi.json", get(openapi::openapi_json))
        .route("/livez", get(ops::livez))
        .route("/readyz", get(ops::readyz))
        .route("/startupz", get(ops::startupz))
        .route("/metrics", get(ops::metrics))
        .route("/api/v1/admin/workers", get(ops::workers))
        .route(
            limits::RULES_ROUTE,
            get(rate_limits::rules).put(rate_limits::replace),
        )
        .route("/api/v1/admin/rate-limits/hot", get(ops::hot_keys))
        .route("/api/v1/admin/live", get(live::live))
        .route("/api/v1/admin/profile", get(profile::profile))
        .route("/dashboard", get(live::dashboard))
}
