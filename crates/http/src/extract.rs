//! Extractors that turn a request into validated inputs, each failing with the
//! problem docs/api.md §5 prescribes: credentials first (401/403, before the body is
//! looked at), then headers (400), then the body (400/413/415/422).

use std::fmt;
use std::marker::PhantomData;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use stampede_app::auth::Caller;
use stampede_app::auth::JwtError;
use stampede_domain::ValidationError;
use stampede_domain::account::Role;
use stampede_domain::idempotency::IdempotencyKey;

use crate::problem::{ApiError, Kind};
use crate::state::AppState;

fn unauthorized(detail: &'static str) -> ApiError {
    ApiError::new(Kind::UNAUTHORIZED).with_detail(detail)
}

/// Any caller with a valid token.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Caller);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // Verified already at the edge when a rate limit counts users; one
        // extractor per handler takes it.
        if let Some(caller) = parts.extensions.remove::<Caller>() {
            return Ok(Self(caller));
        }
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| unauthorized("an Authorization: Bearer token is required"))?;
        let value = header
            .to_str()
            .map_err(|_| unauthorized("malformed Authorization header"))?;
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => return Err(unauthorized("the Authorization scheme must be Bearer")),
        };
        let app = state.app();
        let claims = app.jwt.verify(token, app.clock.now()).map_err(|err| {
            unauthorized(match err {
                JwtError::Expired => "the token has expired",
                JwtError::NotYetValid => "the token is not valid yet (nbf)",
                JwtError::TooLong => "the token's exp is further ahead than the server allows",
                JwtError::Signature => "the token's signature does not verify",
                JwtError::Algorithm => "the token must be signed with HS256",
                JwtError::Malformed | JwtError::Claims => "the token is malformed",
            })
        })?;
        Ok(Self(Caller {
            user: claims.user,
            role: claims.role,
        }))
    }
}

/// A caller with the `customer` role: buyers.
#[derive(Debug, Clone)]
pub struct Customer(pub Caller);

impl FromRequestParts<AppState> for Customer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Authenticated(caller) = Authenticated::from_request_parts(parts, state).await?;
        if caller.role != Role::Customer {
            return Err(
                ApiError::new(Kind::FORBIDDEN).with_detail("this route needs a customer token")
            );
        }
        Ok(Self(caller))
    }
}

/// A caller with the `admin` role.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Authenticated(caller) = Authenticated::from_request_parts(parts, state).await?;
        if caller.role != Role::Admin {
            return Err(
                ApiError::new(Kind::FORBIDDEN).with_detail("this route needs an admin token")
            );
        }
        Ok(Self(caller))
    }
}

/// The `Idempotency-Key` header, required on purchases.
#[derive(Debug, Clone)]
pub struct IdempotencyKeyHeader(pub IdempotencyKey);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKeyHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let value = parts
            .headers
            .get("idempotency-key")
            .ok_or_else(|| ApiError::bad_request("the Idempotency-Key header is required"))?;
        let text = value
            .to_str()
            .map_err(|_| ApiError::bad_request("Idempotency-Key must be printable ASCII"))?;
        IdempotencyKey::parse(text)
            .map(Self)
            .map_err(|err| ApiError::bad_request(err.message))
    }
}

/// A JSON object body whose rejections are problems: syntax 400, wrong media
/// type 415, too large 413, values of the wrong shape 422 (a body that is not
/// an object among them).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<Object<T>>::from_request(req, state).await {
            Ok(Json(Object(value))) => Ok(Self(value)),
            Err(rejection) => Err(json_problem(rejection)),
        }
    }
}

/// `T`, from a JSON object only. serde's derived structs also take an array
/// of their fields in order (`[5]` would be a purchase of 5, `[]` one of 1);
/// asking the parser for a map refuses any other JSON type as a data error
/// (422) before `T` sees it, at no extra cost.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for Visit<T> {
            type Value = T;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }

        deserializer.deserialize_map(Visit(PhantomData)).map(Object)
    }
}

/// `T` from a JSON object body already read, with [`ApiJson`]'s problems.
pub(crate) fn json_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    match Json::<Object<T>>::from_bytes(bytes) {
        Ok(Json(Object(value))) => Ok(value),
        Err(rejection) => Err(json_problem(rejection)),
    }
}

pub(crate) fn json_problem(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(err) => {
            ApiError::new(Kind::VALIDATION).with_detail(err.body_text())
        }
        JsonRejection::JsonSyntaxError(err) => ApiError::bad_request(err.body_text()),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(Kind::UNSUPPORTED_MEDIA_TYPE)
            .with_detail("the body must be JSON with Content-Type: application/json"),
        JsonRejection::BytesRejection(err) if err.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(Kind::PAYLOAD_TOO_LARGE).with_detail("the body is larger than the limit")
        }
        other => ApiError::bad_request(other.body_text()),
    }
}

/// `?limit=&cursor=` of a listing.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PageQuery {
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

impl PageQuery {
    pub const DEFAULT_LIMIT: u32 = 20;
    pub const MAX_LIMIT: u32 = 100;

    pub fn limit(&self) -> Result<u32, ValidationError> {
        match &self.limit {
            None => Ok(Self::DEFAULT_LIMIT),
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=Self::MAX_LIMIT).contains(n))
                .ok_or_else(|| ValidationError::new("limit", "must be an integer from 1 to 100")),
        }
    }

    /// The cursor parsed by `parse`, or a validation error naming `cursor`.
    pub fn cursor<T>(
        &self,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Option<T>, ValidationError> {
        match self.cursor.as_deref() {
            // `?cursor=` is the first page, as without one.
            None | Some("") => Ok(None),
            Some(text) => parse(text).map(Some).ok_or_else(|| {
                ValidationError::new("cursor", "is not a cursor this listing gave out")
            }),
        }
    }
}

/// The query string of a listing; a query that does not parse is a 400.
pub struct Page(pub PageQuery);

impl<S: Send + Sync> FromRequestParts<S> for Page {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<PageQuery>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|err| ApiError::bad_request(err.body_text()))
    }
}

/// The `{id}` of a route, as text; a path that does not decode is a 404 like
/// any id that cannot exist.
pub struct PathId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|p| Self(p.0))
            .map_err(|_| ApiError::not_found())
    }
}

impl PathId {
    /// Parses the id with `parse`; anything that cannot be an id is a 404.
    pub fn parse<T>(&self, parse: impl FnOnce(&str) -> Option<T>) -> Result<T, ApiError> {
        parse(&self.0).ok_or_else(ApiError::not_found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dto::{NewSaleBody, PurchaseBody};

    fn parse<T: DeserializeOwned>(body: &str) -> Result<T, JsonRejection> {
        Json::<Object<T>>::from_bytes(body.as_bytes()).map(|Json(Object(value))| value)
    }

    #[test]
    fn only_an_object_is_a_body_and_other_json_is_a_validation_problem() {
        assert_eq!(
            parse::<PurchaseBody>(r#" {"quantity": 3}"#)
                .unwrap()
                .quantity,
            3
        );
        assert_eq!(parse::<PurchaseBody>("{}").unwrap().quantity, 1);
        for bad in ["[]", "[5]", " \n[5]", "5", "\"5\"", "null", "true"] {
            let rejection = parse::<PurchaseBody>(bad).unwrap_err();
            assert!(
                matches!(rejection, JsonRejection::JsonDataError(_)),
                "{bad}: {rejection:?}"
            );
        }
        let rejection = parse::<PurchaseBody>(r#"{"quantity": 1, "quantiy": 5}"#).unwrap_err();
        assert!(
            rejection.body_text().contains("unknown field `quantiy`"),
            "{}",
            rejection.body_text()
        );
        assert!(matches!(
            parse::<PurchaseBody>("{\"quantity\": "),
            Err(JsonRejection::JsonSyntaxError(_))
        ));
        let sale: NewSaleBody = parse(r#"{"product_id": "p", "quantity": 5}"#).unwrap();
        assert_eq!(sale.quantity, 5);
        assert!(parse::<NewSaleBody>(r#"["p", null, 5]"#).is_err());
    }
}

/// The client's address as the edge sees it (a trusted proxy's
/// `X-Forwarded-For` read), when the connection's is known.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<std::net::IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip());
        Ok(Self(peer.map(|ip| {
            state.protection().client_ip(ip, &parts.headers)
        })))
    }
}
