//! The OpenAPI 3.1 document, generated from the handlers' annotations. Error
//! answers are added here from one table, so each operation declares every
//! problem status it can answer and the table is the one place to keep true.
//! The document serves itself ([`openapi_json`]): routes never import it.

use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::dto;
use crate::openapi_links::Links;
use crate::problem::{CONTENT_TYPE, Problem};
use crate::routes::{
    accounts, anti_abuse, catalog, live, ops, orders, payments, profile, purchase, rate_limits,
    sale_controls, waiting_room, webhooks,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "Stampede", description = "Flash-sale order platform: API version 1 (see docs/api.md)."),
    paths(
        catalog::create_product, catalog::get_product, catalog::list_products,
        catalog::create_sale, catalog::get_sale, catalog::sale_stats,
        sale_controls::pause_sale, sale_controls::resume_sale, sale_controls::end_sale,
        sale_controls::patch_sale, sale_controls::change_stock,
        waiting_room::join_queue, anti_abuse::challenge, anti_abuse::token, purchase::purchase,
        orders::get_order, orders::list_orders, orders::cancel_order,
        orders::detail, orders::events, payments::pay, payments::webhook,
        webhooks::create, webhooks::list, webhooks::get, webhooks::delete, webhooks::deliveries,
        accounts::register, accounts::login,
        ops::livez, ops::readyz, ops::startupz, ops::metrics, openapi_json, ops::workers, ops::hot_keys,
        rate_limits::rules, rate_limits::replace,
        live::live, live::dashboard, profile::profile,
    ),
    components(schemas(Problem, dto::ProductBody, dto::SaleBody, dto::OrderBody)),
    modifiers(&Security, &Problems, &Links),
    tags(
        (name = "catalog", description = "Products"),
        (name = "sales", description = "Flash sales and purchases"),
        (name = "orders", description = "The caller's orders"),
        (name = "accounts", description = "Optional accounts and sessions"),
        (name = "payments", description = "The payment provider's webhook"),
        (name = "webhooks", description = "Event notifications to your endpoints"),
        (name = "operations", description = "Probes, metrics, this document"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("HS256 JWT with `sub`, `role` and `exp` claims"))
                    .build(),
            ),
        );
    }
}

/// An operation and the problems it can answer: (method, path, [(status, slugs)]).
type OperationProblems = (&'static str, &'static str, &'static [(u16, &'static str)]);

/// Which problems each operation can answer.
#[rustfmt::skip]
const PROBLEMS: &[OperationProblems] = &[
    ("post", "/api/v1/products", &[(400, "bad-request"), (401, "unauthorized"), (403, "forbidden"), (409, "conflict"), (413, "payload-too-large"), (415, "unsupported-media-type"), (422, "validation"), (500, "internal"), (503, "unavailable")]),
    ("get", "/api/v1/products/{id}", &[(404, "not-found"), (500, "internal"), (503, "unavailable")]),
    ("get", "/api/v1/products", &[(400, "bad-request"), (422, "validation"), (500, "internal"), (503, "unavailable")]),
    ("post", "/api/v1/sales", &[(400, "bad-request"), (401, "unauthorized"), (403, "forbidden"), (413, "payload-too-large"), (415, "unsupported-media-type"), (422, "validation"), (500, "internal"), (503, "unavailable")]),
    ("get", "/api/v1/sales/{id}", &[(404, "not-found"), (500, "internal"), (503, "unavailable")]),
    ("get", "/api/v1/sales/{id}/stats", &[(401, "unauthorized"), (403, "forbidden"), (404, "not-found"), (500, "internal"), (503, "unavailable")]),
    ("post", "/api/v1/sales/{id}/pause", &[(400, "bad-request"), (401, "unauthorized"), (403, "forbidden"), (404, "not-found"), (409, "sale-not-active"), (412, "precondition-failed"), (500, "internal"), (503, "unavailable")]),
    ("post", "/api/v1/sales/{id}/resume", &[(400, "bad-request"), (401, "unauthorized"), (403, "forbidden"), (404, "not-found"), (409, "sale-not-active"), (412, "precondition-failed"), (500, "internal"), (503, "unavailable")]),
    ("post", "/api/v1/sales/{id}/end", &[(400, "bad-request"), (401, "unauthorized"), (403, "forbidden"), (404, "not-found"), (412, "precondition-failed"), (500, "internal"), (503, "unavailable")]),
    ("patch", "/api/v1/sales/{id}", &[(400, "bad-request"), (401, "unauthorized"), (403, "forbidden"), (404, "not-found"), (409, "sale-not-active"), (412, "precondition-failed"), (413, "payload-too-large"), (415, "unsupported-media-type"), (422, "validation"), (500, "internal"), (503, "unavailable")]),
    ("post", "/api/v1/sales/{id}/stock", &[(400, "bad-request"), (401, "unauthorized"), (403, "forbidden"), (404, "not-found"), (409, "sale-not-active, insufficient-stock"), (412, "precondition-failed"), (413, "payload-too-large"), (415, "unsupported-media-type"), (422, "validation"), (500, "internal"), (503, "unavailable")]),
    ("post", "/api/v1/sales/{id}/queue", &[(401, "unauthorized"), (403, "forbidden"), (404, "not-found"), (409, "no-waiting-room, sold-out, sale-not-active"), (500, "internal"), (503, "overloaded, unavailable")]),
    ("get", "/api/v1/sales/{id}/challenge", &[(401, "unauthorized"), (403, "forbidden"), (404, "not-found"), (500, "internal"), (503, "unavailable")]),
    ("post", "/api/v1/sales/{id}/token", &[(400, "bad-request"), (401, "unauthorized"), (403, "forbidden, verification-failed"), (404, "not-found"), (409, "too-early, sale-not-active"), (413, "payload-too-large"), (415, "unsupported-media-type"), (422, "validation"), (500, "internal"), (503, "unavailable")]),
    ("post", "/api/v1/sales/{id}/purchase", &[(400, "bad-request"), (401, "unauthorized"), (403, "forbidden, queue-ticket, purchase-token"), (404, "not-found"), (409, "sold-out, limit-exceeded, sale-not-active, sale-paused, not-your-turn"), (413, "payload-too-large"), (415, "unsupported-media-type"), (422, "validation, idempotency-mismatch"), (500, "internal"), (503, "overloaded, unavailable")]),
    ("get", "/api/v1/orders/{id}", &[(401, "unauthorized"), (404, "not-found"), (500, "internal"), (503, "unavailable")]),
    ("get", "/api/v1/orders", &[(400, "bad-request"), (401, "unauthorized"), (422, "validation"), (500, "internal"), (503, "unavailable")]),
    ("post", "/api/v1/orders/{id}/cancel", &[(401, "unauthorized"), (404, "not-found"), (409, "invalid-state"), (500, "internal"), (503, "unavailable")]),
    ("post", "/api/v1/orders/{id}/pay", &[(401, "unauthorized"), (404, "not-found"), (409, "invalid-state"), (500, "internal"), (503, "unavailable")]),
    ("get", "/api/v1/orders/{id}/detail", &[(401, "unauthorized"), (404, "not-found"), (500, "internal"), (503, "unavailable")]),
    ("get", "/api/v1/orders/{id}/events", &[(401, "unauthorized"), (404, "not-found"), (500, "internal"), (503, "unavailable")]),
    ("post", "/api/v1/payments/webhook", &[(400, "bad-request"), (401, "unauthorized"), (404, "not-found"), (413, "payload-too-large"), (422, "validation"), (500, "internal"), (503, "unavailable")]),
    ("post", "/api/v1/webhooks", &[(400, "bad-request"), (401, "unauthorized"), (403, "forbidden"), (413, "payload-too-large"), (415, "unsupported-media-type"), (422, "validation"), (500, "internal"), (503, "unavailable")]),
    ("get", "/api/v1/webhooks", &[(401, "unauthorized"), (403, "forbidden"), (500, "internal"), (503, "unavailable")]),
    ("get", "/api/v1/webhooks/{id}", &[(401, "unauthorized"), (403, "forbidden"), (404, "not-found"), (500, "internal"), (503, "unavailable")]),
    ("delete", "/api/v1/webhooks/{id}", &[(401, "unauthorized"), (403, "forbidden"), (404, "not-found"), (500, "internal"), (503, "unavailable")]),
    ("get", "/api/v1/webhooks/{id}/deliveries", &[(400, "bad-request"), (401, "unauthorized"), (403, "forbidden"), (404, "not-found"), (422, "validation"), (500, "internal"), (503, "unavailable")]),
    ("post", "/api/v1/users", &[(400, "bad-request"), (409, "conflict"), (413, "payload-too-large"), (415, "unsupported-media-type"), (422, "validation"), (500, "internal"), (503, "overloaded, unavailable")]),
    ("post", "/api/v1/sessions", &[(400, "bad-request"), (401, "unauthorized"), (413, "payload-too-large"), (415, "unsupported-media-type"), (422, "validation"), (500, "internal"), (503, "overloaded, unavailable")]),
    ("get", "/api/v1/admin/workers", &[(401, "unauthorized"), (403, "forbidden"), (500, "internal"), (503, "unavailable")]),
    ("get", "/api/v1/admin/rate-limits", &[(401, "unauthorized"), (403, "forbidden"), (500, "internal"), (503, "unavailable")]),
    ("put", "/api/v1/admin/rate-limits", &[(400, "bad-request"), (401, "unauthorized"), (403, "forbidden"), (413, "payload-too-large"), (415, "unsupported-media-type"), (422, "validation"), (500, "internal"), (503, "unavailable")]),
    ("get", "/api/v1/admin/rate-limits/hot", &[(400, "bad-request"), (401, "unauthorized"), (403, "forbidden"), (422, "validation"), (500, "internal"), (503, "unavailable")]),
    ("get", "/api/v1/admin/profile", &[(400, "bad-request"), (401, "unauthorized"), (403, "forbidden"), (422, "validation"), (429, "rate-limited"), (500, "internal"), (503, "unavailable")]),
    ("get", "/api/v1/admin/live", &[(401, "unauthorized"), (403, "forbidden"), (429, "rate-limited"), (500, "internal"), (503, "overloaded, unavailable")]),
    ("get", "/readyz", &[(503, "unavailable")]),
    ("get", "/startupz", &[(503, "unavailable")]),
];

/// Operations that answer no problem of their own (only the framework's).
#[cfg(test)]
const WITHOUT_PROBLEMS: &[&str] = &["/livez", "/metrics", "/api/v1/openapi.json", "/dashboard"];

/// Problems the protection layer (`protect.rs`) can answer on every API
/// operation before its handler runs: a rate limit, load shedding, a passed
/// deadline. Merged into each `/api/v1` row.
const PROTECTION: &[(u16, &str)] = &[(429, "rate-limited"), (503, "overloaded, unavailable")];

/// The rows of `problems`, with the protection layer's merged in for API paths.
fn with_protection(path: &str, problems: &[(u16, &'static str)]) -> Vec<(u16, &'static str)> {
    let mut rows = problems.to_vec();
    if path.starts_with("/api/v1/") {
        for (status, slugs) in PROTECTION {
            match rows.iter_mut().find(|(s, _)| s == status) {
                Some(row) => row.1 = slugs,
                None => rows.push((*status, slugs)),
            }
        }
    }
    rows
}

struct Problems;

impl Modify for Problems {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (method, path, problems) in PROBLEMS {
            let Some(operation) = openapi
                .paths
                .paths
                .get_mut(*path)
                .and_then(|item| operation(item, method))
            else {
                continue;
            };
            for (status, slugs) in with_protection(path, problems) {
                let response = ResponseBuilder::new()
                    .description(format!("Problem: {slugs}"))
                    .content(
                        CONTENT_TYPE,
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("Problem")))
                            .build(),
                    )
                    .build();
                operation
                    .responses
                    .responses
                    .insert(status.to_string(), response.into());
            }
        }
    }
}

/// The operation of `item` for a lower-case method name.
fn operation<'a>(item: &'a mut PathItem, method: &str) -> Option<&'a mut Operation> {
    match method {
        "get" => item.get.as_mut(),
        "post" => item.post.as_mut(),
        "put" => item.put.as_mut(),
        "patch" => item.patch.as_mut(),
        "delete" => item.delete.as_mut(),
        _ => None,
    }
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
pub async fn openapi_json() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        document_json(),
    )
        .into_response()
}

/// The document, rendered once.
pub fn document_json() -> String {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT
        .get_or_init(|| {
            ApiDoc::openapi()
                .to_json()
                .unwrap_or_else(|_| "{}".to_owned())
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_row_names_a_documented_operation() {
        let mut doc = ApiDoc::openapi();
        for (method, path, _) in PROBLEMS {
            let item = doc
                .paths
                .paths
                .get_mut(*path)
                .unwrap_or_else(|| panic!("{path} undocumented"));
            assert!(
                operation(item, method).is_some(),
                "{method} {path} undocumented"
            );
        }
    }

    #[test]
    fn every_operation_has_a_row_in_the_problem_table() {
        let doc = ApiDoc::openapi();
        for (path, item) in &doc.paths.paths {
            if WITHOUT_PROBLEMS.contains(&path.as_str()) {
                continue;
            }
            for (method, op) in [
                ("get", &item.get),
                ("post", &item.post),
                ("put", &item.put),
                ("patch", &item.patch),
                ("delete", &item.delete),
            ] {
                if op.is_some() {
                    assert!(
                        PROBLEMS.iter().any(|(m, p, _)| *m == method && p == path),
                        "{method} {path} has no row in PROBLEMS"
                    );
                }
            }
        }
    }

    #[test]
    fn the_document_is_openapi_3_1() {
        let json: serde_json::Value = serde_json::from_str(&document_json()).unwrap();
        assert_eq!(json["openapi"], "3.1.0");
        assert!(
            json["paths"]["/api/v1/sales/{id}/purchase"]["post"]["responses"]["409"].is_object()
        );
    }

    #[test]
    fn every_request_body_refuses_unknown_members() {
        let json: serde_json::Value = serde_json::from_str(&document_json()).unwrap();
        let mut bodies = 0;
        for (path, item) in json["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let schema = &op["requestBody"]["content"]["application/json"]["schema"];
                let Some(reference) = schema["$ref"].as_str() else {
                    continue;
                };
                let name = reference.trim_start_matches("#/components/schemas/");
                let schema = &json["components"]["schemas"][name];
                // A body of several shapes (`oneOf`): each shape refuses them.
                let shapes: Vec<&serde_json::Value> = match schema["oneOf"].as_array() {
                    Some(shapes) => shapes.iter().collect(),
                    None => vec![schema],
                };
                for shape in shapes {
                    let shape = match shape["$ref"].as_str() {
                        Some(r) => {
                            &json["components"]["schemas"]
                                [r.trim_start_matches("#/components/schemas/")]
                        }
                        None => shape,
                    };
                    assert_eq!(shape["type"], "object", "{method} {path}");
                    assert_eq!(
                        shape["additionalProperties"], false,
                        "{method} {path}: {name}"
                    );
                }
                bodies += 1;
            }
        }
        assert!(bodies >= 5, "{bodies} request bodies found");
    }

    #[test]
    fn every_link_leaves_a_documented_answer_for_an_operation_that_takes_what_it_passes() {
        use crate::openapi_links::{LINKS, Pass, operation_id};
        let doc = ApiDoc::openapi();
        let json: serde_json::Value = serde_json::from_str(&document_json()).unwrap();
        let mut ids: Vec<String> = Vec::new();
        for item in json["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                ids.push(op["operationId"].as_str().unwrap().to_owned());
            }
        }
        for (method, path, status, name, to_method, to_path, pass) in LINKS {
            let target = operation_id(&doc, to_method, to_path)
                .unwrap_or_else(|| panic!("{name}: {to_method} {to_path} undocumented"));
            assert_eq!(
                ids.iter().filter(|id| **id == target).count(),
                1,
                "{target} not unique"
            );
            let link = &json["paths"][*path][*method]["responses"][*status]["links"][*name];
            assert_eq!(
                link["operationId"],
                target.as_str(),
                "{method} {path} {status} {name}"
            );
            let to = &json["paths"][*to_path][*to_method];
            if let Pass::PathId(_) | Pass::PathIdWithBody(..) = pass {
                let params = to["parameters"].as_array().unwrap();
                assert!(
                    params
                        .iter()
                        .any(|p| p["name"] == "id" && p["in"] == "path"),
                    "{name}: {to_path} takes no path id"
                );
            }
            if let Pass::PathIdWithBody(_, body) | Pass::Body(body) = pass {
                let body: serde_json::Value = serde_json::from_str(body).unwrap();
                assert_eq!(link["requestBody"], body, "{name}");
                let schema = &to["requestBody"]["content"]["application/json"]["schema"]["$ref"];
                let schema = schema
                    .as_str()
                    .unwrap()
                    .trim_start_matches("#/components/schemas/");
                for member in body.as_object().unwrap().keys() {
                    assert!(
                        json["components"]["schemas"][schema]["properties"][member].is_object(),
                        "{name}: {schema} has no {member}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_event_stream_documents_its_frames_whose_data_is_an_event() {
        // schemathesis found the stream described by its data: each SSE
        // frame (`id`, `event`, `data`) failed the schema of an Event.
        let json: serde_json::Value = serde_json::from_str(&document_json()).unwrap();
        let answer = &json["paths"]["/api/v1/orders/{id}/events"]["get"]["responses"]["200"];
        let schema = answer["content"]["text/event-stream"]["schema"]["$ref"]
            .as_str()
            .unwrap()
            .trim_start_matches("#/components/schemas/");
        let frame = &json["components"]["schemas"][schema];
        for member in ["id", "event", "data"] {
            assert_eq!(frame["properties"][member]["type"], "string", "{member}");
        }
        assert!(frame["properties"]["type"].is_null());
    }

    #[test]
    fn every_api_operation_documents_the_protection_layers_refusals() {
        let json: serde_json::Value = serde_json::from_str(&document_json()).unwrap();
        let orders = &json["paths"]["/api/v1/orders/{id}"]["get"]["responses"];
        assert!(orders["429"].is_object());
        assert_eq!(
            orders["503"]["description"],
            "Problem: overloaded, unavailable"
        );
        assert!(json["paths"]["/livez"]["get"]["responses"]["429"].is_null());
    }
}
