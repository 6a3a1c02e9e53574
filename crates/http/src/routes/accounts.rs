//! Optional accounts: register, and log in for a customer token.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;

use crate::dto::{CredentialsBody, SessionBody, UserBody};
use crate::extract::ApiJson;
use crate::problem::ApiError;
use crate::state::AppState;

/// Register an account.
#[utoipa::path(post, path = "/api/v1/users", tag = "accounts", request_body = CredentialsBody,
    responses((status = 201, description = "Registered", body = UserBody)))]
pub async fn register(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CredentialsBody>,
) -> Result<impl IntoResponse, ApiError> {
    let user = state
        .app()
        .accounts
        .register(&body.email, &body.password)
        .await?;
    Ok((StatusCode::CREATED, Json(UserBody::from(&user))))
}

/// Log in: a customer token for the account.
#[utoipa::path(post, path = "/api/v1/sessions", tag = "accounts", request_body = CredentialsBody,
    responses((status = 201, description = "Logged in", body = SessionBody)))]
pub async fn login(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CredentialsBody>,
) -> Result<impl IntoResponse, ApiError> {
    let session = state
        .app()
        .accounts
        .login(&body.email, &body.password)
        .await?;
    Ok((StatusCode::CREATED, Json(SessionBody::from(&session))))
}
