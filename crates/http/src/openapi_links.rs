//! OpenAPI links: which answer's id the next operation takes. Stateful API
//! fuzzers (schemathesis) follow them, so a created sale is bought, the order
//! it makes is read, paid and cancelled, rather than every id being a random
//! 404. One table, resolved against the document by method and path.

use utoipa::Modify;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::{OpenApi, RefOr};

/// What a link hands to its target operation.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pass {
    /// The answer's member at this JSON pointer, as the target's `{id}`.
    PathId(&'static str),
    /// As `PathId`, with these members in the request body (JSON): values
    /// that keep the target from refusing for a reason the link cannot help.
    PathIdWithBody(&'static str, &'static str),
    /// These members in the target's request body (JSON, `$response`
    /// expressions allowed); the fuzzer makes up the rest.
    Body(&'static str),
}

impl Pass {
    /// The request body members this link sets, if any.
    pub(crate) fn body(&self) -> Option<serde_json::Value> {
        match self {
            Self::PathId(_) => None,
            Self::PathIdWithBody(_, body) | Self::Body(body) => serde_json::from_str(body).ok(),
        }
    }
}

/// (from method, from path, status, link name, to method, to path, what passes).
pub(crate) type LinkRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Pass,
);

const ID: Pass = Pass::PathId("/id");
/// One unit: the fuzzer's quantities are mostly more than a sale has.
const BUY_ONE: Pass = Pass::PathIdWithBody("/id", r#"{"quantity": 1}"#);

#[rustfmt::skip]
pub(crate) const LINKS: &[LinkRow] = &[
    ("post", "/api/v1/products", "201", "GetProduct", "get", "/api/v1/products/{id}", ID),
    ("post", "/api/v1/products", "201", "CreateSale", "post", "/api/v1/sales", Pass::Body(r##"{"product_id": "$response.body#/id", "starts_at": null, "ends_at": null}"##)),
    ("post", "/api/v1/sales", "201", "GetSale", "get", "/api/v1/sales/{id}", ID),
    ("post", "/api/v1/sales", "201", "SaleStats", "get", "/api/v1/sales/{id}/stats", ID),
    ("post", "/api/v1/sales", "201", "Purchase", "post", "/api/v1/sales/{id}/purchase", BUY_ONE),
    ("get", "/api/v1/sales/{id}", "200", "Purchase", "post", "/api/v1/sales/{id}/purchase", BUY_ONE),
    // An admin's controls of the sale just made, and purchases after them.
    ("post", "/api/v1/sales", "201", "PauseSale", "post", "/api/v1/sales/{id}/pause", ID),
    ("post", "/api/v1/sales", "201", "EndSale", "post", "/api/v1/sales/{id}/end", ID),
    ("post", "/api/v1/sales", "201", "AmendSale", "patch", "/api/v1/sales/{id}", ID),
    ("post", "/api/v1/sales", "201", "ChangeStock", "post", "/api/v1/sales/{id}/stock", ID),
    ("post", "/api/v1/sales/{id}/pause", "200", "ResumeSale", "post", "/api/v1/sales/{id}/resume", ID),
    ("post", "/api/v1/sales/{id}/pause", "200", "Purchase", "post", "/api/v1/sales/{id}/purchase", BUY_ONE),
    ("post", "/api/v1/sales/{id}/resume", "200", "Purchase", "post", "/api/v1/sales/{id}/purchase", BUY_ONE),
    ("post", "/api/v1/sales/{id}/stock", "200", "Purchase", "post", "/api/v1/sales/{id}/purchase", BUY_ONE),
    ("patch", "/api/v1/sales/{id}", "200", "Purchase", "post", "/api/v1/sales/{id}/purchase", BUY_ONE),
    ("post", "/api/v1/sales/{id}/purchase", "202", "GetOrder", "get", "/api/v1/orders/{id}", ID),
    ("post", "/api/v1/sales/{id}/purchase", "202", "OrderDetail", "get", "/api/v1/orders/{id}/detail", ID),
    ("post", "/api/v1/sales/{id}/purchase", "202", "PayOrder", "post", "/api/v1/orders/{id}/pay", ID),
    ("post", "/api/v1/sales/{id}/purchase", "202", "CancelOrder", "post", "/api/v1/orders/{id}/cancel", ID),
    ("post", "/api/v1/sales/{id}/purchase", "202", "GetSale", "get", "/api/v1/sales/{id}", Pass::PathId("/sale_id")),
    ("get", "/api/v1/orders/{id}", "200", "PayOrder", "post", "/api/v1/orders/{id}/pay", ID),
    ("get", "/api/v1/orders/{id}", "200", "CancelOrder", "post", "/api/v1/orders/{id}/cancel", ID),
    ("post", "/api/v1/orders/{id}/pay", "202", "GetOrder", "get", "/api/v1/orders/{id}", ID),
    ("post", "/api/v1/orders/{id}/pay", "202", "CancelOrder", "post", "/api/v1/orders/{id}/cancel", ID),
    ("post", "/api/v1/orders/{id}/cancel", "200", "GetOrder", "get", "/api/v1/orders/{id}", ID),
    ("post", "/api/v1/orders/{id}/cancel", "200", "PayOrder", "post", "/api/v1/orders/{id}/pay", ID),
    ("post", "/api/v1/webhooks", "201", "GetWebhook", "get", "/api/v1/webhooks/{id}", ID),
    ("post", "/api/v1/webhooks", "201", "WebhookDeliveries", "get", "/api/v1/webhooks/{id}/deliveries", ID),
    ("post", "/api/v1/webhooks", "201", "DeleteWebhook", "delete", "/api/v1/webhooks/{id}", ID),
    ("post", "/api/v1/users", "201", "Login", "post", "/api/v1/sessions", Pass::Body(r##"{"email": "$response.body#/email"}"##)),
];

pub(crate) struct Links;

impl Modify for Links {
    fn modify(&self, document: &mut OpenApi) {
        for (method, path, status, name, to_method, to_path, pass) in LINKS {
            let Some(target) = operation_id(document, to_method, to_path) else {
                continue;
            };
            let mut link = LinkBuilder::new().operation_id(target);
            if let Pass::PathId(pointer) | Pass::PathIdWithBody(pointer, _) = pass {
                link = link.parameter("path.id", format!("$response.body#{pointer}"));
            }
            if let Some(body) = pass.body() {
                link = link.request_body(Some(body));
            }
            let response = document
                .paths
                .paths
                .get_mut(*path)
                .and_then(|item| operation_mut(item, method))
                .and_then(|op| op.responses.responses.get_mut(*status));
            if let Some(RefOr::T(response)) = response {
                response
                    .links
                    .insert((*name).to_owned(), link.build().into());
            }
        }
    }
}

/// The `operationId` of the operation at `method` `path`.
pub(crate) fn operation_id(document: &OpenApi, method: &str, path: &str) -> Option<String> {
    let item = document.paths.paths.get(path)?;
    let op = match method {
        "get" => item.get.as_ref(),
        "post" => item.post.as_ref(),
        "patch" => item.patch.as_ref(),
        "delete" => item.delete.as_ref(),
        _ => None,
    }?;
    op.operation_id.clone()
}

fn operation_mut<'a>(item: &'a mut PathItem, method: &str) -> Option<&'a mut Operation> {
    match method {
        "get" => item.get.as_mut(),
        "post" => item.post.as_mut(),
        "patch" => item.patch.as_mut(),
        "delete" => item.delete.as_mut(),
        _ => None,
    }
}
