//! Products and sales: admins write, anyone reads.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use stampede_app::catalog::NewProduct;
use stampede_domain::ValidationError;
use stampede_domain::catalog::SaleRequest;
use stampede_domain::ids::{ProductId, SaleId};
use stampede_domain::time::Timestamp;

use super::location;
use crate::dto::{NewProductBody, NewSaleBody, PageBody, ProductBody, SaleBody, SaleStatsBody};
use crate::extract::{Admin, ApiJson, Page, PathId};
use crate::problem::ApiError;
use crate::state::AppState;

/// Create a product.
#[utoipa::path(post, path = "/api/v1/products", tag = "catalog", request_body = NewProductBody,
    security(("bearer" = [])), responses((status = 201, description = "Created", body = ProductBody)))]
pub async fn create_product(
    State(state): State<AppState>,
    Admin(_): Admin,
    ApiJson(body): ApiJson<NewProductBody>,
) -> Result<impl IntoResponse, ApiError> {
    let product = state
        .app()
        .catalog
        .create_product(NewProduct {
            sku: body.sku,
            name: body.name,
            price_cents: body.price_cents,
            currency: body.currency,
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        location(format!("/api/v1/products/{}", product.id)),
        Json(ProductBody::from(&product)),
    ))
}

/// Get a product.
#[utoipa::path(get, path = "/api/v1/products/{id}", tag = "catalog",
    params(("id" = String, Path, description = "Product id")),
    responses((status = 200, description = "The product", body = ProductBody)))]
pub async fn get_product(
    State(state): State<AppState>,
    id: PathId,
) -> Result<Json<ProductBody>, ApiError> {
    let id = id.parse(ProductId::parse)?;
    let product = state.app().catalog.product(id).await?;
    Ok(Json(ProductBody::from(&product)))
}

/// List products in creation order.
#[utoipa::path(get, path = "/api/v1/products", tag = "catalog",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "1 to 100, default 20"),
           ("cursor" = Option<String>, Query, pattern = r"^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})?$", description = "`next_cursor` of the previous page")),
    responses((status = 200, description = "A page of products", body = PageBody<ProductBody>)))]
pub async fn list_products(
    State(state): State<AppState>,
    Page(query): Page,
) -> Result<Json<PageBody<ProductBody>>, ApiError> {
    let limit = query.limit()?;
    let after = query.cursor(ProductId::parse)?;
    let (items, next) = state.app().catalog.products(after, limit).await?;
    Ok(Json(PageBody {
        items: items.iter().map(ProductBody::from).collect(),
        next_cursor: next.map(|id| id.to_string()),
    }))
}

fn timestamp(
    field: &'static str,
    text: Option<String>,
) -> Result<Option<Timestamp>, ValidationError> {
    text.map(|t| Timestamp::parse_rfc3339(field, &t))
        .transpose()
}

/// Create a flash sale of a product.
#[utoipa::path(post, path = "/api/v1/sales", tag = "sales", request_body = NewSaleBody,
    security(("bearer" = [])), responses((status = 201, description = "Created", body = SaleBody)))]
pub async fn create_sale(
    State(state): State<AppState>,
    Admin(_): Admin,
    ApiJson(body): ApiJson<NewSaleBody>,
) -> Result<impl IntoResponse, ApiError> {
    let product_id = ProductId::parse(&body.product_id)
        .ok_or_else(|| ValidationError::new("product_id", "no such product"))?;
    let request = SaleRequest {
        price_cents: body.price_cents,
        quantity: body.quantity,
        per_user_limit: body.per_user_limit,
        starts_at: timestamp("starts_at", body.starts_at)?,
        ends_at: timestamp("ends_at", body.ends_at)?,
        payment_window_secs: body.payment_window_secs,
        waiting_room: body.waiting_room.unwrap_or(false),
    };
    let view = state.app().catalog.create_sale(product_id, request).await?;
    Ok((
        StatusCode::CREATED,
        location(format!("/api/v1/sales/{}", view.sale.id)),
        Json(SaleBody::from(&view)),
    ))
}

/// Get a sale with its live `remaining` and `status`.
#[utoipa::path(get, path = "/api/v1/sales/{id}", tag = "sales",
    params(("id" = String, Path, description = "Sale id")),
    responses((status = 200, description = "The sale", body = SaleBody)))]
pub async fn get_sale(
    State(state): State<AppState>,
    id: PathId,
) -> Result<axum::response::Response, ApiError> {
    let id = id.parse(SaleId::parse)?;
    let view = state.app().catalog.sale(id).await?;
    Ok(super::sale_controls::with_etag(SaleBody::from(&view)))
}

/// A sale's ledger and store numbers, for audits.
#[utoipa::path(get, path = "/api/v1/sales/{id}/stats", tag = "sales",
    params(("id" = String, Path, description = "Sale id")), security(("bearer" = [])),
    responses((status = 200, description = "The sale's numbers", body = SaleStatsBody)))]
pub async fn sale_stats(
    State(state): State<AppState>,
    Admin(_): Admin,
    id: PathId,
) -> Result<Json<SaleStatsBody>, ApiError> {
    let id = id.parse(SaleId::parse)?;
    let stats = state.app().catalog.stats(id).await?;
    Ok(Json(SaleStatsBody::from(&stats)))
}
