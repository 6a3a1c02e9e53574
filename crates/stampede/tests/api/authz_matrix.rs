//! The authorization matrix: every operation of the served OpenAPI document,
//! asked by every kind of caller, against real objects, with the status each
//! must get. The table and the document must name the same operations, so a
//! new route cannot ship without a decision on who may call it.
//!
//! Requests are built to reach the authorization decision: path ids name a
//! real product, sale, order (the customer's) and webhook subscription, and
//! bodies are valid, so a caller who gets past the guard gets a success.
//! Operations that change their objects get fresh ones for every caller they
//! must succeed for.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;
use stampede_app::auth::JwtKey;
use stampede_domain::account::Role;
use stampede_domain::ids::UserId;
use stampede_domain::time::Timestamp;

use crate::helpers::{SECRET, TestApp, admin, customer, spawn_app_with, uuid_like};

/// Who calls, one column of the matrix each.
#[derive(Debug, Clone, Copy)]
enum Caller {
    Anonymous,
    /// The customer who owns the order in the path.
    Owner,
    /// Another customer, owner of nothing the request names.
    Other,
    Admin,
    /// Tokens signed with the server's secret whose `exp` has passed.
    Expired,
    /// Tokens signed with the server's secret whose `nbf` is ahead.
    NotYetValid,
    /// Tokens the server did not sign as they are: another secret, `alg`
    /// tricks, a tampered payload.
    Forged,
}

const CALLERS: [Caller; 7] = [
    Caller::Anonymous,
    Caller::Owner,
    Caller::Other,
    Caller::Admin,
    Caller::Expired,
    Caller::NotYetValid,
    Caller::Forged,
];

const OWNER: &str = "authz-owner";
/// The built-in purchase limit here: loose enough for the owner's many purchases.
const PURCHASES_PER_SEC: u32 = 1_000_000;
const OTHER: &str = "authz-other";

/// What a request sends as its body.
#[derive(Debug, Clone, Copy)]
enum Body {
    Empty,
    Product,
    Sale,
    Purchase,
    Subscription,
    Register,
    Login,
    /// A provider answer without its signature: a bearer token is no
    /// signature, whoever holds it.
    UnsignedProviderAnswer,
    /// The rate-limit rules the test server runs, unchanged.
    RateLimits,
    SalePatch,
    Stock,
    /// Asking for a purchase token with no proofs (the test server asks none).
    TokenRequest,
}

struct Row {
    method: &'static str,
    path: &'static str,
    body: Body,
    /// Changes the objects it names: each caller it succeeds for gets fresh ones.
    mutates: bool,
    /// Status by caller, in the order of [`CALLERS`].
    expect: [u16; 7],
}

const fn row(method: &'static str, path: &'static str, body: Body, expect: [u16; 7]) -> Row {
    Row {
        method,
        path,
        body,
        mutates: false,
        expect,
    }
}

const fn mutating(method: &'static str, path: &'static str, body: Body, expect: [u16; 7]) -> Row {
    Row {
        method,
        path,
        body,
        mutates: true,
        expect,
    }
}

/// Anyone, whatever token they bring (public routes do not look at it).
const fn public(status: u16) -> [u16; 7] {
    [status; 7]
}

/// Admins only.
const fn admin_only(status: u16) -> [u16; 7] {
    [401, 403, 403, status, 401, 401, 401]
}

/// The order's owner and admins; anyone else is told it does not exist.
const fn owner_or_admin(status: u16) -> [u16; 7] {
    [401, status, 404, status, 401, 401, 401]
}

#[rustfmt::skip]
const MATRIX: &[Row] = &[
    // Statuses in the order of CALLERS: anonymous, owner, other customer,
    // admin, expired, not yet valid, forged.
    row("post", "/api/v1/products", Body::Product, admin_only(201)),
    row("get", "/api/v1/products", Body::Empty, public(200)),
    row("get", "/api/v1/products/{id}", Body::Empty, public(200)),
    row("post", "/api/v1/sales", Body::Sale, admin_only(201)),
    row("get", "/api/v1/sales/{id}", Body::Empty, public(200)),
    row("get", "/api/v1/sales/{id}/stats", Body::Empty, admin_only(200)),
    mutating("post", "/api/v1/sales/{id}/pause", Body::Empty, admin_only(200)),
    mutating("post", "/api/v1/sales/{id}/resume", Body::Empty, admin_only(200)),
    mutating("post", "/api/v1/sales/{id}/end", Body::Empty, admin_only(200)),
    mutating("patch", "/api/v1/sales/{id}", Body::SalePatch, admin_only(200)),
    mutating("post", "/api/v1/sales/{id}/stock", Body::Stock, admin_only(200)),
    row("get", "/api/v1/sales/{id}/challenge", Body::Empty, [401, 200, 200, 403, 401, 401, 401]),
    row("post", "/api/v1/sales/{id}/token", Body::TokenRequest, [401, 200, 200, 403, 401, 401, 401]),
    // The fixture's sale has no waiting room: customers are told so.
    row("post", "/api/v1/sales/{id}/queue", Body::Empty, [401, 409, 409, 403, 401, 401, 401]),
    mutating("post", "/api/v1/sales/{id}/purchase", Body::Purchase, [401, 202, 202, 403, 401, 401, 401]),
    row("get", "/api/v1/orders", Body::Empty, [401, 200, 200, 200, 401, 401, 401]),
    row("get", "/api/v1/orders/{id}", Body::Empty, owner_or_admin(200)),
    row("get", "/api/v1/orders/{id}/detail", Body::Empty, owner_or_admin(200)),
    row("get", "/api/v1/orders/{id}/events", Body::Empty, owner_or_admin(200)),
    mutating("post", "/api/v1/orders/{id}/cancel", Body::Empty, owner_or_admin(200)),
    mutating("post", "/api/v1/orders/{id}/pay", Body::Empty, owner_or_admin(202)),
    row("post", "/api/v1/payments/webhook", Body::UnsignedProviderAnswer, public(401)),
    row("post", "/api/v1/webhooks", Body::Subscription, admin_only(201)),
    row("get", "/api/v1/webhooks", Body::Empty, admin_only(200)),
    row("get", "/api/v1/webhooks/{id}", Body::Empty, admin_only(200)),
    row("get", "/api/v1/webhooks/{id}/deliveries", Body::Empty, admin_only(200)),
    mutating("delete", "/api/v1/webhooks/{id}", Body::Empty, admin_only(204)),
    row("post", "/api/v1/users", Body::Register, public(201)),
    row("post", "/api/v1/sessions", Body::Login, public(201)),
    row("get", "/api/v1/admin/workers", Body::Empty, admin_only(200)),
    row("get", "/api/v1/admin/live", Body::Empty, admin_only(200)),
    row("get", "/api/v1/admin/rate-limits", Body::Empty, admin_only(200)),
    mutating("put", "/api/v1/admin/rate-limits", Body::RateLimits, admin_only(200)),
    row("get", "/api/v1/admin/rate-limits/hot", Body::Empty, admin_only(200)),
    // Records for its default 10 s when allowed.
    row("get", "/api/v1/admin/profile", Body::Empty, admin_only(200)),
    row("get", "/dashboard", Body::Empty, public(200)),
    row("get", "/api/v1/openapi.json", Body::Empty, public(200)),
    row("get", "/livez", Body::Empty, public(200)),
    row("get", "/readyz", Body::Empty, public(200)),
    row("get", "/startupz", Body::Empty, public(200)),
    row("get", "/metrics", Body::Empty, public(200)),
];

/// Real objects for the path ids: the owner's order in a sale, a webhook
/// subscription.
struct Fixture {
    product: String,
    sale: String,
    order: String,
    subscription: String,
}

impl Fixture {
    async fn create(app: &TestApp) -> Self {
        let sale = app.create_sale(10, 5, json!({})).await;
        let sale_id = sale["id"].as_str().unwrap().to_owned();
        let purchase = app
            .purchase(&customer(OWNER), &sale_id, &uuid_like(), 1)
            .await;
        assert_eq!(purchase.status(), StatusCode::ACCEPTED);
        let order: Value = purchase.json().await.unwrap();
        let response = app
            .post("/api/v1/webhooks", Some(&admin()), &subscription_body())
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let subscription: Value = response.json().await.unwrap();
        Self {
            product: sale["product_id"].as_str().unwrap().to_owned(),
            sale: sale_id,
            order: order["id"].as_str().unwrap().to_owned(),
            subscription: subscription["id"].as_str().unwrap().to_owned(),
        }
    }

    /// `path` with its `{id}` replaced by the object the segment before it names.
    fn fill(&self, path: &str) -> String {
        let Some((collection, _)) = path.split_once("/{id}") else {
            return path.to_owned();
        };
        let id = match collection.rsplit('/').next() {
            Some("products") => &self.product,
            Some("sales") => &self.sale,
            Some("orders") => &self.order,
            Some("webhooks") => &self.subscription,
            other => panic!("no fixture for the {{id}} of {path} ({other:?})"),
        };
        path.replacen("{id}", id, 1)
    }
}

fn subscription_body() -> Value {
    json!({"url": "https://hooks.example.com/authz", "event_types": ["order.paid"]})
}

/// An account registered once, to log in with.
const LOGIN_EMAIL: &str = "authz-login@example.com";
const PASSWORD: &str = "correct horse battery";

fn body(kind: Body, fixture: &Fixture) -> Option<Value> {
    match kind {
        Body::Empty => None,
        Body::Product => Some(json!({
            "sku": format!("AUTHZ-{}", uuid_like()), "name": "n", "price_cents": 100, "currency": "EUR",
        })),
        Body::Sale => Some(json!({"product_id": fixture.product, "quantity": 3})),
        Body::SalePatch => Some(json!({"per_user_limit": 2})),
        Body::Stock => Some(json!({"add": 1})),
        Body::TokenRequest => Some(json!({})),
        Body::Purchase => Some(json!({"quantity": 1})),
        Body::Subscription => Some(subscription_body()),
        Body::Register => Some(json!({
            "email": format!("authz-{}@example.com", uuid_like()), "password": PASSWORD,
        })),
        Body::Login => Some(json!({"email": LOGIN_EMAIL, "password": PASSWORD})),
        Body::UnsignedProviderAnswer => {
            Some(json!({"payment_id": uuid_like(), "status": "approved"}))
        }
        // The built-in purchase rule as the test server configures it: the
        // same rule keeps its state.
        Body::RateLimits => Some(json!([{
            "name": "per-user-purchase", "key": "user", "limit": PURCHASES_PER_SEC,
            "routes": ["POST /api/v1/sales/{id}/purchase"], "backend": "local",
        }])),
    }
}

fn now_secs() -> i64 {
    Timestamp::now().as_millis().div_euclid(1000)
}

/// A token with this header and payload, MAC'd with `key`.
fn hand_made(key: &[u8], header: &Value, payload: &Value) -> String {
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(signed.as_bytes());
    format!(
        "{signed}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

/// The tokens `caller` presents (none for an anonymous one). Bad tokens come
/// as the owner and as an admin, the two that could otherwise do most.
fn tokens(caller: Caller) -> Vec<Option<String>> {
    let server = JwtKey::new(SECRET.as_bytes());
    let now = now_secs();
    let as_both = |make: &dyn Fn(&str, &str) -> String| -> Vec<Option<String>> {
        vec![Some(make(OWNER, "customer")), Some(make("admin", "admin"))]
    };
    match caller {
        Caller::Anonymous => vec![None],
        Caller::Owner => vec![Some(customer(OWNER))],
        Caller::Other => vec![Some(customer(OTHER))],
        Caller::Admin => vec![Some(admin())],
        Caller::Expired => as_both(&|sub, role| {
            let role = Role::parse(role).unwrap();
            server.sign(&UserId::parse(sub).unwrap(), role, now - 60)
        }),
        Caller::NotYetValid => as_both(&|sub, role| {
            hand_made(
                SECRET.as_bytes(),
                &json!({"alg": "HS256", "typ": "JWT"}),
                &json!({"sub": sub, "role": role, "exp": now + 7200, "nbf": now + 3600}),
            )
        }),
        Caller::Forged => {
            let claims =
                |sub: &str, role: &str| json!({"sub": sub, "role": role, "exp": now + 3600});
            let mut forged = as_both(&|sub, role| {
                let user = UserId::parse(sub).unwrap();
                JwtKey::new(b"not the server's secret").sign(
                    &user,
                    Role::parse(role).unwrap(),
                    now + 3600,
                )
            });
            forged.extend(as_both(&|sub, role| {
                // `alg: none`, no signature.
                let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
                let payload = URL_SAFE_NO_PAD.encode(claims(sub, role).to_string());
                format!("{header}.{payload}.")
            }));
            forged.extend(as_both(&|sub, role| {
                // The right MAC under another algorithm's name.
                hand_made(
                    SECRET.as_bytes(),
                    &json!({"alg": "HS512"}),
                    &claims(sub, role),
                )
            }));
            // A customer's token with its payload swapped for an admin's.
            let genuine = customer(OWNER);
            let parts: Vec<&str> = genuine.split('.').collect();
            let promoted = URL_SAFE_NO_PAD.encode(claims(OWNER, "admin").to_string());
            forged.push(Some(format!("{}.{promoted}.{}", parts[0], parts[2])));
            forged
        }
    }
}

/// The (method, path) of every operation the server's document lists.
async fn documented_operations(app: &TestApp) -> Vec<(String, String)> {
    let response = app.get("/api/v1/openapi.json", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let document: Value = response.json().await.unwrap();
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ] {
            if item.get(method).is_some() {
                operations.push((method.to_owned(), path.clone()));
            }
        }
    }
    operations
}

/// One request as `token`; returns the status, checking that refusals are problems.
async fn ask(
    app: &TestApp,
    row: &Row,
    fixture: &Fixture,
    token: Option<&str>,
) -> Result<u16, String> {
    let method = Method::from_bytes(row.method.to_uppercase().as_bytes()).unwrap();
    let mut request = app.request(method, &fixture.fill(row.path), token);
    if matches!(row.body, Body::Purchase) {
        request = request.header("Idempotency-Key", uuid_like());
    }
    if let Some(body) = body(row.body, fixture) {
        request = request.json(&body);
    }
    // The answer's head is enough: an event stream is dropped open.
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if status >= 400 && content_type != "application/problem+json" {
        return Err(format!("{status} answered as {content_type:?}"));
    }
    // A refused bearer token is challenged; the provider's webhook asks for
    // a signature, not a token.
    let bearer = !matches!(row.body, Body::UnsignedProviderAnswer);
    if status == 401 && bearer && response.headers().get("www-authenticate").is_none() {
        return Err("401 without WWW-Authenticate".into());
    }
    Ok(status)
}

#[tokio::test]
async fn every_operation_answers_every_kind_of_caller_as_the_matrix_says() {
    // The built-in purchase rate limit stays on (it verifies tokens at the
    // edge), loose enough for the owner's many purchases here.
    let app =
        spawn_app_with(|config| config.http.purchases_per_user_per_sec = PURCHASES_PER_SEC).await;
    let mut failures = Vec::new();

    let documented = documented_operations(&app).await;
    for (method, path) in &documented {
        if !MATRIX.iter().any(|r| r.method == method && r.path == path) {
            failures.push(format!(
                "{method} {path}: documented, but the matrix has no row for it"
            ));
        }
    }
    for row in MATRIX {
        if !documented
            .iter()
            .any(|(m, p)| m == row.method && p == row.path)
        {
            failures.push(format!(
                "{} {}: in the matrix, but not in the document",
                row.method, row.path
            ));
        }
    }

    let register = json!({"email": LOGIN_EMAIL, "password": PASSWORD});
    let registered = app.post("/api/v1/users", None, &register).await;
    assert_eq!(registered.status(), StatusCode::CREATED);
    let shared = Fixture::create(&app).await;

    let mut asked = 0;
    for row in MATRIX {
        for (caller, expected) in CALLERS.iter().zip(row.expect) {
            for token in tokens(*caller) {
                let fresh;
                // A success changes its objects: the next caller gets fresh
                // ones. A refusal changes nothing (if it does, it is a
                // failure here already).
                let fixture = match row.mutates && expected < 300 {
                    true => {
                        fresh = Fixture::create(&app).await;
                        &fresh
                    }
                    false => &shared,
                };
                asked += 1;
                match ask(&app, row, fixture, token.as_deref()).await {
                    Ok(status) if status == expected => {}
                    Ok(status) => failures.push(format!(
                        "{} {} as {caller:?}: {status}, expected {expected}",
                        row.method, row.path
                    )),
                    Err(problem) => failures.push(format!(
                        "{} {} as {caller:?}: {problem}",
                        row.method, row.path
                    )),
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {asked} requests (and the coverage check) went wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
