//! Operations endpoints: health probes, Prometheus metrics, the OpenAPI document.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use std::collections::BTreeMap;
use std::time::Duration;

use stampede_app::App;
use stampede_app::catalog::LiveStock;

use crate::dto::{HealthBody, ReadyBody, WorkerBody, WorkersBody};
use crate::extract::Admin;
use crate::hot_keys::HotKeysBody;
use crate::problem::{ApiError, Kind};
use crate::state::AppState;

const OK: HealthBody = HealthBody { status: "ok" };

fn unavailable(detail: &'static str) -> ApiError {
    ApiError::new(Kind::UNAVAILABLE)
        .with_detail(detail)
        .retry_after(1)
}

/// 200 while the process runs.
#[utoipa::path(get, path = "/livez", tag = "operations",
    responses((status = 200, description = "Alive", body = HealthBody)))]
pub async fn livez() -> Json<HealthBody> {
    Json(OK)
}

/// How long readiness waits for each dependency.
const CHECK_BUDGET: Duration = Duration::from_secs(1);

/// 200 when ready for traffic: started, not draining, every dependency
/// answers. The body (or the problem's `checks` member) lists each one.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready", body = ReadyBody)))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<ReadyBody>, ApiError> {
    readiness(state.app()).await
}

/// Readiness as `/readyz` answers it, also kept in `stampede_ready` (1 or 0)
/// for alerting; `/metrics` asks too, so the gauge is as fresh as the scrape.
async fn readiness(app: &App) -> Result<Json<ReadyBody>, ApiError> {
    let verdict = readiness_verdict(app).await;
    metrics::gauge!("stampede_ready").set(if verdict.is_ok() { 1.0 } else { 0.0 });
    verdict
}

async fn readiness_verdict(app: &App) -> Result<Json<ReadyBody>, ApiError> {
    if !app.lifecycle.is_started() {
        return Err(unavailable("starting"));
    }
    if app.lifecycle.is_draining() {
        return Err(unavailable("draining"));
    }
    let checks = app.check_dependencies(CHECK_BUDGET).await;
    let report: BTreeMap<&'static str, String> = checks
        .iter()
        .map(|check| {
            let said = match &check.result {
                Ok(()) => "ok".to_owned(),
                Err(err) => err.clone(),
            };
            (check.name, said)
        })
        .collect();
    if let Some(down) = checks.iter().find(|check| check.result.is_err()) {
        tracing::warn!(dependency = down.name, checks = ?report, "not ready");
        let down: Vec<&str> = checks
            .iter()
            .filter(|check| check.result.is_err())
            .map(|check| check.name)
            .collect();
        // Names only: causes stay in the log.
        return Err(ApiError::new(Kind::UNAVAILABLE)
            .with_detail(format!("not answering: {}", down.join(", ")))
            .retry_after(1));
    }
    Ok(Json(ReadyBody {
        status: "ok",
        checks: report.into_keys().map(|name| (name, "ok")).collect(),
    }))
}

/// 200 once start-up (migrations, ledger rebuild) is done.
#[utoipa::path(get, path = "/startupz", tag = "operations",
    responses((status = 200, description = "Started", body = HealthBody)))]
pub async fn startupz(State(state): State<AppState>) -> Result<Json<HealthBody>, ApiError> {
    if state.app().lifecycle.is_started() {
        Ok(Json(OK))
    } else {
        Err(unavailable("starting"))
    }
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Metrics", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let app = state.app();
    refresh_gauges(app).await;
    let _ = readiness(app).await;
    let body = render(&state);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// Sets the gauges read at scrape time rather than kept up on the hot path;
/// returns the live sales' stock.
pub(crate) async fn refresh_gauges(app: &App) -> Vec<LiveStock> {
    let live = app.catalog.live_stock().await;
    for stock in &live {
        let sale = stock.sale.to_string();
        metrics::gauge!("stampede_sale_remaining", "sale_id" => sale.clone())
            .set(stock.remaining as f64);
        metrics::gauge!("stampede_sale_sold", "sale_id" => sale)
            .set(stock.quantity.saturating_sub(stock.remaining) as f64);
    }
    metrics::gauge!("stampede_commit_queue_depth").set(app.purchases.queue_depth() as f64);
    app.record_dependency_gauges();
    live
}

/// The node's metrics in the Prometheus text format.
pub(crate) fn render(state: &AppState) -> String {
    state.prometheus().run_upkeep();
    state.prometheus().render()
}

/// This node's background workers: state, steps, failures, last run, last
/// error (also in `/metrics` as `stampede_worker_*`). Served by every role.
#[utoipa::path(get, path = "/api/v1/admin/workers", tag = "operations", security(("bearer" = [])),
    responses((status = 200, description = "The node's workers", body = WorkersBody)))]
pub async fn workers(State(state): State<AppState>, Admin(_): Admin) -> Json<WorkersBody> {
    let reports = state.app().background.reports();
    Json(WorkersBody {
        workers: reports.iter().map(WorkerBody::from).collect(),
    })
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HotKeysQuery {
    /// Keys per rule, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
}

/// The hottest keys of this node's local per-address and per-user rate
/// limits, whose state is in fixed memory (design.md §8.1): who is pressing
/// hardest, and whether each is limited now.
#[utoipa::path(get, path = "/api/v1/admin/rate-limits/hot", tag = "operations", security(("bearer" = [])),
    params(HotKeysQuery),
    responses((status = 200, description = "Each rule's hottest keys", body = HotKeysBody)))]
pub async fn hot_keys(
    State(state): State<AppState>,
    Admin(_): Admin,
    query: Result<Query<HotKeysQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<HotKeysBody>, ApiError> {
    let Query(query) = query.map_err(|err| ApiError::bad_request(err.body_text()))?;
    let limit = match &query.limit {
        None => 20,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| {
                ApiError::validation(stampede_domain::ValidationError::new(
                    "limit",
                    "must be an integer from 1 to 100",
                ))
            })?,
    };
    Ok(Json(HotKeysBody {
        rules: state.protection().hot_keys(limit),
    }))
}
