//! Handlers, one module per area of docs/api.md §3.

pub mod accounts;
pub mod anti_abuse;
pub mod catalog;
pub mod live;
pub mod ops;
pub mod orders;
pub mod payments;
pub mod profile;
pub mod purchase;
pub mod rate_limits;
pub mod sale_controls;
pub mod waiting_room;
pub mod webhooks;

use axum::http::{HeaderName, HeaderValue, header};

/// A `Location` header for a created resource.
pub(crate) fn location(path: String) -> [(HeaderName, HeaderValue); 1] {
    let value = HeaderValue::try_from(path).unwrap_or_else(|_| HeaderValue::from_static("/"));
    [(header::LOCATION, value)]
}
