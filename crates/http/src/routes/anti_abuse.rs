//! A buyer's purchase token for a sale, and what it costs to get one
//! (docs/api.md §3.3, "Purchase tokens"): `GET …/challenge` says what is
//! asked (a proof of work, a captcha, from when), `POST …/token` answers it.

use axum::Json;
use axum::extract::State;
use stampede_app::abuse::Proof;
use stampede_domain::ids::SaleId;

use crate::dto::{ChallengeBody, PurchaseTokenBody, TokenRequestBody};
use crate::extract::{ApiJson, ClientIp, Customer, PathId};
use crate::problem::ApiError;
use crate::state::AppState;

/// What a purchase token of this sale asks of you.
#[utoipa::path(get, path = "/api/v1/sales/{id}/challenge", tag = "sales",
    params(("id" = String, Path, description = "Sale id")), security(("bearer" = [])),
    responses((status = 200, description = "The proof of work and captcha asked, and when tokens are issued", body = ChallengeBody)))]
pub async fn challenge(
    State(state): State<AppState>,
    Customer(caller): Customer,
    id: PathId,
) -> Result<Json<ChallengeBody>, ApiError> {
    let sale_id = id.parse(SaleId::parse)?;
    let sale = state.app().catalog.sale(sale_id).await?.sale;
    let challenge = state.app().abuse.challenge(&sale, &caller.user);
    Ok(Json(ChallengeBody {
        challenge: challenge.challenge,
        bits: challenge.bits,
        captcha: challenge.captcha,
        token_from: challenge.token_from.to_rfc3339(),
    }))
}

/// Get your purchase token for this sale: send it as `Purchase-Token` when
/// buying (needed when the service asks for tokens).
#[utoipa::path(post, path = "/api/v1/sales/{id}/token", tag = "sales",
    request_body = TokenRequestBody, params(("id" = String, Path, description = "Sale id")), security(("bearer" = [])),
    responses((status = 200, description = "Your token for this sale", body = PurchaseTokenBody)))]
pub async fn token(
    State(state): State<AppState>,
    Customer(caller): Customer,
    id: PathId,
    ClientIp(remote_ip): ClientIp,
    ApiJson(body): ApiJson<TokenRequestBody>,
) -> Result<Json<PurchaseTokenBody>, ApiError> {
    let sale_id = id.parse(SaleId::parse)?;
    let sale = state.app().catalog.sale(sale_id).await?.sale;
    let proof = Proof {
        challenge: body.challenge,
        nonce: body.nonce,
        captcha: body.captcha,
        remote_ip,
    };
    let token = state.app().abuse.issue(&sale, &caller.user, &proof).await?;
    Ok(Json(PurchaseTokenBody { token }))
}
