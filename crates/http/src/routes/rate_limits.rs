//! The rate-limit rules in force, read and replaced by admins while
//! serving (docs/api.md §3.7, design.md §8.1). The built-in login and
//! registration limits are apart from the rules and never replaced.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use serde_json::Value;
use stampede_app::failure::Chain;

use crate::extract::{Admin, json_problem};
use crate::limits::{MAX_RULES, RateLimitRule};
use crate::live_rules::{ReplaceError, Source};
use crate::problem::{ApiError, Kind};
use crate::state::AppState;

/// The rules in force on this node, in their order: the same objects as
/// the configuration file's `[[rate_limits]]` tables, and what `PUT` takes.
#[utoipa::path(get, path = "/api/v1/admin/rate-limits", tag = "operations", security(("bearer" = [])),
    responses((status = 200, description = "The rules in force", body = Vec<RateLimitRule>)))]
pub async fn rules(State(state): State<AppState>, Admin(_): Admin) -> Json<Vec<RateLimitRule>> {
    Json(state.protection().rules().rules())
}

/// Replaces the rules whole (in cluster mode on every node, within about a
/// second); a set with a bad rule is refused, naming it, and the old set
/// stays. Rules whose definition is unchanged keep their counts.
#[utoipa::path(put, path = "/api/v1/admin/rate-limits", tag = "operations", security(("bearer" = [])),
    request_body(content = Vec<RateLimitRule>, description = "The new rules, at most 64"),
    responses((status = 200, description = "The rules now in force", body = Vec<RateLimitRule>)))]
pub async fn replace(
    State(state): State<AppState>,
    Admin(_): Admin,
    body: Result<Json<Vec<Value>>, JsonRejection>,
) -> Result<Json<Vec<RateLimitRule>>, ApiError> {
    let Json(values) = body.map_err(|rejection| match rejection {
        JsonRejection::JsonDataError(err) => ApiError::invalid(
            "rules".into(),
            format!("must be an array of rules: {}", err.body_text()),
        ),
        other => json_problem(other),
    })?;
    if values.len() > MAX_RULES {
        return Err(ApiError::invalid(
            "rules".into(),
            format!("at most {MAX_RULES} rate limits, got {}", values.len()),
        ));
    }
    let mut rules = Vec::with_capacity(values.len());
    for (index, value) in values.into_iter().enumerate() {
        // serde would also take an array of the fields in order.
        if !value.is_object() {
            return Err(ApiError::invalid(
                format!("rules[{index}]"),
                "must be a JSON object".into(),
            ));
        }
        let rule = serde_json::from_value(value)
            .map_err(|err| ApiError::invalid(format!("rules[{index}]"), err.to_string()))?;
        rules.push(rule);
    }
    match state.protection().rules().replace(rules, Source::Api).await {
        Ok(rules) => Ok(Json(rules)),
        Err(ReplaceError::Invalid(err)) => Err(ApiError::invalid(err.path(), err.message)),
        Err(ReplaceError::Unavailable(err)) => {
            tracing::warn!(error = %Chain(&err), "rate limit rules not stored for the cluster");
            Err(ApiError::new(Kind::UNAVAILABLE)
                .with_detail(
                    "the rules could not be stored for every node; none changed here \
                     (read them back before trying again)",
                )
                .retry_after(1))
        }
    }
}
