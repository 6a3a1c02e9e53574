//! Request bodies through the extractor every handler uses (`ApiJson`): any
//! bytes give a value or a 400, 413, 415 or 422 problem, never a panic; a
//! purchase's quantity and `Idempotency-Key` parse or are refused.
#![no_main]

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use futures_util::FutureExt;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use stampede_domain::idempotency::IdempotencyKey;
use stampede_domain::quantity::Quantity;
use stampede_http::dto::{
    CredentialsBody, NewProductBody, NewSaleBody, NewSubscriptionBody, PurchaseBody,
};
use stampede_http::extract::ApiJson;

/// The body as `T`, or the status of the problem it is refused with.
fn extract<T: DeserializeOwned>(data: &[u8]) -> Result<T, StatusCode> {
    let request = Request::builder()
        .method("POST")
        .header("content-type", "application/json")
        .body(Body::from(data.to_vec()))
        .expect("a request");
    // An in-memory body is ready at once: no runtime needed.
    match ApiJson::<T>::from_request(request, &())
        .now_or_never()
        .expect("an in-memory body is ready")
    {
        Ok(ApiJson(value)) => Ok(value),
        Err(err) => Err(err.kind().status),
    }
}

fn refused_properly<T>(result: Result<T, StatusCode>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(status) => {
            assert!(
                [400, 413, 415, 422].contains(&status.as_u16()),
                "refused with {status}"
            );
            None
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some(body) = refused_properly(extract::<PurchaseBody>(data)) {
        let _ = Quantity::parse("quantity", body.quantity);
    }
    refused_properly(extract::<NewSaleBody>(data));
    refused_properly(extract::<NewProductBody>(data));
    refused_properly(extract::<NewSubscriptionBody>(data));
    refused_properly(extract::<CredentialsBody>(data));
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(key) = IdempotencyKey::parse(text) {
            assert!(!key.as_str().is_empty());
        }
    }
});
