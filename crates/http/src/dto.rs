//! The JSON shapes of docs/api.md, as the wire sees them. Requests are parsed into
//! domain types by the handlers; responses are built from domain types here.
//! Request bodies refuse members they do not know (`deny_unknown_fields`, shown
//! as `additionalProperties: false` in the OpenAPI document): a misspelt
//! optional member would otherwise be dropped without a word.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use stampede_app::accounts::Session;
use stampede_app::catalog::{SaleStats, SaleView};
use stampede_app::workers::WorkerReport;
use stampede_domain::account::User;
use stampede_domain::catalog::{Product, SaleStatus};
use stampede_domain::order::{Order, OrderStatus};
use utoipa::ToSchema;

/// JSON Schema's `integer` includes numbers written with a zero fraction, such
/// as `2.0`; serde's integers do not. These accept both, and nothing else.
mod whole {
    use super::{Deserialize, Deserializer};

    fn to_i64<E: serde::de::Error>(number: serde_json::Number) -> Result<i64, E> {
        if let Some(n) = number.as_i64() {
            return Ok(n);
        }
        match number.as_f64() {
            Some(f) if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 => {
                Ok(f as i64)
            }
            _ => Err(E::custom(format!(
                "expected a whole number in range, got {number}"
            ))),
        }
    }

    pub fn number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        to_i64(serde_json::Number::deserialize(deserializer)?)
    }

    pub fn optional<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
        Option::<serde_json::Number>::deserialize(deserializer)?
            .map(to_i64)
            .transpose()
    }
}

/// A field that may be absent (`None`), `null` (`Some(None)`) or a value.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// `POST /api/v1/products`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProductBody {
    /// 1–64 printable ASCII characters without spaces, unique.
    #[schema(
        example = "PHONE-X-128",
        min_length = 1,
        max_length = 64,
        pattern = r"^[!-~]+$"
    )]
    pub sku: String,
    /// 1–200 characters, not only spaces.
    #[schema(
        example = "Phone X 128 GB",
        min_length = 1,
        max_length = 200,
        pattern = r"\S"
    )]
    pub name: String,
    /// Integer minor units, 0 to 10^12.
    #[schema(example = 49900, minimum = 0, maximum = 1_000_000_000_000_i64)]
    #[serde(deserialize_with = "whole::number")]
    pub price_cents: i64,
    /// ISO 4217 code.
    #[schema(example = "EUR", pattern = r"^[A-Z]{3}$")]
    pub currency: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProductBody {
    pub id: String,
    pub sku: String,
    pub name: String,
    pub price_cents: i64,
    pub currency: String,
    pub created_at: String,
}

impl From<&Product> for ProductBody {
    fn from(p: &Product) -> Self {
        Self {
            id: p.id.to_string(),
            sku: p.sku.clone(),
            name: p.name.clone(),
            price_cents: p.price.get(),
            currency: p.currency.to_string(),
            created_at: p.created_at.to_rfc3339(),
        }
    }
}

/// `POST /api/v1/sales`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSaleBody {
    /// An existing product; an unknown one is a `validation` problem.
    #[schema(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub product_id: String,
    /// Defaults to the product's price.
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    #[serde(default, deserialize_with = "whole::optional")]
    pub price_cents: Option<i64>,
    /// Units on sale, 1 to 10^9.
    #[schema(example = 100, minimum = 1, maximum = 1_000_000_000)]
    #[serde(deserialize_with = "whole::number")]
    pub quantity: i64,
    /// Most units one user may hold; defaults to 1.
    #[schema(example = 1, minimum = 1, maximum = 1_000_000_000)]
    #[serde(default, deserialize_with = "whole::optional")]
    pub per_user_limit: Option<i64>,
    /// RFC 3339; defaults to now.
    #[schema(format = DateTime)]
    pub starts_at: Option<String>,
    /// RFC 3339, after `starts_at` and in the future; absent: no end.
    #[schema(format = DateTime)]
    pub ends_at: Option<String>,
    /// 1 to 604800; defaults to 900.
    #[schema(minimum = 1, maximum = 604_800)]
    #[serde(default, deserialize_with = "whole::optional")]
    pub payment_window_secs: Option<i64>,
    /// Buyers line up in a waiting room (`POST /sales/{id}/queue`) and buy
    /// with an admitted ticket; defaults to `false`.
    pub waiting_room: Option<bool>,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SaleStatusBody {
    Scheduled,
    Active,
    Paused,
    SoldOut,
    Ended,
}

impl From<SaleStatus> for SaleStatusBody {
    fn from(s: SaleStatus) -> Self {
        match s {
            SaleStatus::Scheduled => Self::Scheduled,
            SaleStatus::Active => Self::Active,
            SaleStatus::Paused => Self::Paused,
            SaleStatus::SoldOut => Self::SoldOut,
            SaleStatus::Ended => Self::Ended,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SaleBody {
    pub id: String,
    pub product_id: String,
    pub price_cents: i64,
    pub currency: String,
    pub quantity: u32,
    /// What purchases can still take, from the stock ledger.
    pub remaining: u64,
    pub per_user_limit: u32,
    pub starts_at: String,
    pub ends_at: Option<String>,
    pub payment_window_secs: u32,
    pub status: SaleStatusBody,
    /// 1 at creation, one more per control an admin applied.
    pub version: u64,
    /// Whether buyers go through the waiting room.
    pub waiting_room: bool,
}

impl From<&SaleView> for SaleBody {
    fn from(v: &SaleView) -> Self {
        let s = &v.sale;
        Self {
            id: s.id.to_string(),
            product_id: s.product_id.to_string(),
            price_cents: s.price.get(),
            currency: s.currency.to_string(),
            quantity: s.quantity,
            remaining: v.remaining,
            per_user_limit: s.per_user_limit.get(),
            starts_at: s.starts_at.to_rfc3339(),
            ends_at: s.ends_at.map(|t| t.to_rfc3339()),
            payment_window_secs: s.payment_window_secs,
            status: v.status.into(),
            version: s.version,
            waiting_room: s.waiting_room,
        }
    }
}

/// `PATCH /api/v1/sales/{id}`: at least one field.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SalePatchBody {
    /// RFC 3339, after `starts_at` and in the future; `null`: no end.
    #[schema(format = DateTime, value_type = Option<String>)]
    #[serde(default, deserialize_with = "present")]
    pub ends_at: Option<Option<String>>,
    /// Most units one user may hold from now on (holdings above it stay).
    #[schema(example = 2, minimum = 1, maximum = 1_000_000_000)]
    #[serde(default, deserialize_with = "whole::optional")]
    pub per_user_limit: Option<i64>,
}

/// `POST /api/v1/sales/{id}/stock`: exactly one of `add` and `withdraw`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum StockChangeBody {
    Add(StockAddBody),
    Withdraw(StockWithdrawBody),
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StockAddBody {
    /// Units to put on sale, 1 to 10^9.
    #[schema(example = 200, minimum = 1, maximum = 1_000_000_000)]
    #[serde(deserialize_with = "whole::number")]
    pub add: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StockWithdrawBody {
    /// Unsold units to take off sale, 1 to 10^9; more than are unsold is
    /// `409 insufficient-stock`.
    #[schema(example = 20, minimum = 1, maximum = 1_000_000_000)]
    #[serde(deserialize_with = "whole::number")]
    pub withdraw: i64,
}

/// Orders of a sale by status, counted in the store.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct OrderCountsBody {
    pub pending: u64,
    pub awaiting_payment: u64,
    pub paid: u64,
    pub fulfilled: u64,
    pub cancelled: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SaleStatsBody {
    pub quantity: u32,
    /// From the stock ledger. At rest, `quantity − sold = remaining`.
    pub remaining: u64,
    /// Units in orders that are not cancelled, counted in the store.
    pub sold: u64,
    pub orders: OrderCountsBody,
}

impl From<&SaleStats> for SaleStatsBody {
    fn from(s: &SaleStats) -> Self {
        let mut orders = OrderCountsBody::default();
        for (status, n) in &s.orders {
            let slot = match status {
                OrderStatus::Pending => &mut orders.pending,
                OrderStatus::AwaitingPayment => &mut orders.awaiting_payment,
                OrderStatus::Paid => &mut orders.paid,
                OrderStatus::Fulfilled => &mut orders.fulfilled,
                OrderStatus::Cancelled => &mut orders.cancelled,
            };
            *slot = *n;
        }
        Self {
            quantity: s.quantity,
            remaining: s.remaining,
            sold: s.sold,
            orders,
        }
    }
}

/// `POST /api/v1/sales/{id}/purchase`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurchaseBody {
    /// Units to buy; defaults to 1.
    #[serde(default = "one", deserialize_with = "whole::number")]
    #[schema(example = 1, minimum = 1, maximum = 1_000_000_000)]
    pub quantity: i64,
}

fn one() -> i64 {
    1
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatusBody {
    Pending,
    AwaitingPayment,
    Paid,
    Fulfilled,
    Cancelled,
}

impl From<OrderStatus> for OrderStatusBody {
    fn from(s: OrderStatus) -> Self {
        match s {
            OrderStatus::Pending => Self::Pending,
            OrderStatus::AwaitingPayment => Self::AwaitingPayment,
            OrderStatus::Paid => Self::Paid,
            OrderStatus::Fulfilled => Self::Fulfilled,
            OrderStatus::Cancelled => Self::Cancelled,
        }
    }
}

/// What a purchase token of a sale asks for.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChallengeBody {
    /// Hash it with a nonce (`SHA-256("<challenge>:<nonce>")`) until the
    /// digest starts with `bits` zero bits; `null` when no proof is asked.
    /// Good for ten minutes.
    pub challenge: Option<String>,
    pub bits: u8,
    /// A captcha answer must come with the request.
    pub captcha: bool,
    /// Tokens are issued from then on (RFC 3339).
    pub token_from: String,
}

/// `POST /api/v1/sales/{id}/token`: the proofs asked, if any.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TokenRequestBody {
    #[schema(max_length = 64)]
    pub challenge: Option<String>,
    #[schema(max_length = 64)]
    pub nonce: Option<String>,
    /// What the captcha widget gave you.
    #[schema(max_length = 4096)]
    pub captcha: Option<String>,
}

/// A buyer's purchase token for one sale.
#[derive(Debug, Serialize, ToSchema)]
pub struct PurchaseTokenBody {
    /// Send it as `Purchase-Token` when buying; yours and this sale's only.
    pub token: String,
}

/// Where a buyer stands in a sale's waiting room.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueBody {
    /// Send it in `Queue-Ticket` when buying; it is yours and this sale's only.
    pub ticket: String,
    pub status: QueueStatusBody,
    /// 1 first; `null` until the draw at the sale's start.
    pub position: Option<u64>,
    /// Places before yours not admitted yet; `null` until the draw.
    pub ahead: Option<u64>,
    /// When to ask again, in milliseconds (`Retry-After` rounds it up to
    /// seconds); 0 once admitted.
    pub retry_after_ms: u64,
    /// Purchases answered a second, recently: how fast the line moves.
    pub served_per_sec: f64,
    /// When places are drawn: the sale's start (RFC 3339).
    pub draw_at: String,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QueueStatusBody {
    /// Not your turn yet: ask again after `retry_after_ms`.
    Waiting,
    /// Buy now, with the ticket.
    Admitted,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderBody {
    pub id: String,
    pub user_id: String,
    pub sale_id: String,
    pub product_id: String,
    pub quantity: u32,
    pub amount_cents: i64,
    pub currency: String,
    pub status: OrderStatusBody,
    pub created_at: String,
    /// When the payment window closes.
    pub expires_at: String,
}

impl From<&Order> for OrderBody {
    fn from(o: &Order) -> Self {
        Self {
            id: o.id.to_string(),
            user_id: o.user_id.to_string(),
            sale_id: o.sale_id.to_string(),
            product_id: o.product_id.to_string(),
            quantity: o.quantity.get(),
            amount_cents: o.amount_cents,
            currency: o.currency.to_string(),
            status: o.status.into(),
            created_at: o.created_at.to_rfc3339(),
            expires_at: o.expires_at.to_rfc3339(),
        }
    }
}

/// A page of a listing; pass `next_cursor` as `cursor` for the next one.
#[derive(Debug, Serialize, ToSchema)]
pub struct PageBody<T: ToSchema> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// `POST /api/v1/users` and `POST /api/v1/sessions`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialsBody {
    /// Compared case-insensitively.
    #[schema(
        example = "ada@example.com",
        max_length = 254,
        pattern = r"^[^@\s\u0000-\u001f\u007f-\u009f]+@[^@.\s\u0000-\u001f\u007f-\u009f][^@\s\u0000-\u001f\u007f-\u009f]*\.[^@\s\u0000-\u001f\u007f-\u009f]*[^@.\s\u0000-\u001f\u007f-\u009f]$"
    )]
    pub email: String,
    /// 8 to 256 characters.
    #[schema(min_length = 8, max_length = 256)]
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserBody {
    pub id: String,
    pub email: String,
}

impl From<&User> for UserBody {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.to_string(),
            email: u.email.to_string(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionBody {
    /// A customer bearer token.
    pub token: String,
    pub expires_at: String,
}

impl From<&Session> for SessionBody {
    fn from(s: &Session) -> Self {
        Self {
            token: s.token.clone(),
            expires_at: s.expires_at.to_rfc3339(),
        }
    }
}

/// Liveness, readiness and start-up probes.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthBody {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Readiness: `ok`, and each dependency checked (`store`, in cluster mode
/// also `ledger` and `bus`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyBody {
    #[schema(example = "ok")]
    pub status: &'static str,
    #[schema(example = json!({"store": "ok"}))]
    pub checks: BTreeMap<&'static str, &'static str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_event_types_are_the_subscribable_ones() {
        let schema =
            serde_json::to_value(<EventTypeName as utoipa::PartialSchema>::schema()).unwrap();
        let mut documented: Vec<String> = serde_json::from_value(schema["enum"].clone()).unwrap();
        documented.sort();
        let mut known: Vec<String> = stampede_domain::webhook::EVENT_TYPES
            .iter()
            .map(|t| (*t).to_owned())
            .collect();
        known.push("*".to_owned());
        known.sort();
        assert_eq!(documented, known);
    }

    #[test]
    fn whole_numbers_may_carry_a_zero_fraction_and_nothing_else_gets_in() {
        let body: PurchaseBody = serde_json::from_str(r#"{"quantity": 2.0}"#).unwrap();
        assert_eq!(body.quantity, 2);
        let body: PurchaseBody = serde_json::from_str("{}").unwrap();
        assert_eq!(body.quantity, 1);
        for bad in [
            r#"{"quantity": 2.5}"#,
            r#"{"quantity": "2"}"#,
            r#"{"quantity": 1e30}"#,
            r#"{"quantity": null}"#,
            r#"{"quantity": 1, "quantiy": 5}"#,
        ] {
            assert!(serde_json::from_str::<PurchaseBody>(bad).is_err(), "{bad}");
        }
        let sale: NewSaleBody =
            serde_json::from_str(r#"{"product_id": "p", "quantity": 5, "per_user_limit": null}"#)
                .unwrap();
        assert_eq!(sale.per_user_limit, None);
        assert_eq!(sale.payment_window_secs, None);
    }
}

/// One attempt to pay an order.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentBody {
    pub id: String,
    pub order_id: String,
    pub amount_cents: i64,
    pub currency: String,
    /// `requested`, `submitted`, `approved`, `declined` or `failed`.
    pub status: &'static str,
    pub provider_ref: Option<String>,
    /// Approved after the order was cancelled or expired: to be refunded.
    pub refund_required: bool,
    pub reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&stampede_domain::payment::Payment> for PaymentBody {
    fn from(p: &stampede_domain::payment::Payment) -> Self {
        Self {
            id: p.id.to_string(),
            order_id: p.order_id.to_string(),
            amount_cents: p.amount_cents,
            currency: p.currency.to_string(),
            status: p.status.as_str(),
            provider_ref: p.provider_ref.clone(),
            refund_required: p.refund_required,
            reason: p.reason.clone(),
            created_at: p.created_at.to_rfc3339(),
            updated_at: p.updated_at.to_rfc3339(),
        }
    }
}

/// One server-sent event of an order's stream, as framed on the wire: the
/// schema of a `text/event-stream` answer describes its frames, not their data.
#[derive(Debug, ToSchema)]
pub struct EventFrameBody {
    /// The event's position: `Last-Event-ID` resumes after it.
    pub id: String,
    /// The event type, e.g. `order.paid`.
    pub event: String,
    /// The event as JSON (an `EventBody`: `{"id", "type", "created_at", "data"}`).
    pub data: String,
}

/// An event, as webhooks and event streams carry it.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventBody {
    /// Unique: consumers deduplicate by it.
    pub id: String,
    /// e.g. `order.paid`.
    #[serde(rename = "type")]
    pub type_: String,
    pub created_at: String,
    /// The entity as it was after the change.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

impl From<&stampede_app::ports::StoredEvent> for EventBody {
    fn from(e: &stampede_app::ports::StoredEvent) -> Self {
        Self {
            id: e.id.to_string(),
            type_: e.event_type.clone(),
            created_at: e.created_at.to_rfc3339(),
            data: e.payload.clone(),
        }
    }
}

/// An order with everything around it; missing parts are `null` and named
/// in `degraded`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderDetailBody {
    pub order: OrderBody,
    pub product: Option<ProductBody>,
    pub sale: Option<SaleBody>,
    pub payments: Option<Vec<PaymentBody>>,
    pub events: Option<Vec<EventBody>>,
    /// Parts that failed or missed the deadline: `product`, `sale`, `payments`, `events`.
    pub degraded: Vec<&'static str>,
}

impl From<&stampede_app::detail::OrderDetail> for OrderDetailBody {
    fn from(d: &stampede_app::detail::OrderDetail) -> Self {
        Self {
            order: OrderBody::from(&d.order),
            product: d.product.as_ref().map(ProductBody::from),
            sale: d.sale.as_ref().map(SaleBody::from),
            payments: d
                .payments
                .as_ref()
                .map(|ps| ps.iter().map(PaymentBody::from).collect()),
            events: d
                .events
                .as_ref()
                .map(|es| es.iter().map(EventBody::from).collect()),
            degraded: d.degraded.clone(),
        }
    }
}

/// `POST /api/v1/webhooks`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSubscriptionBody {
    /// An absolute `http` or `https` URL with a host, read by the WHATWG URL
    /// rules and kept normalised (`WebhookUrl::parse`): exactly `//` after
    /// the scheme, no backslash, tab, newline, unencoded `@` in credentials,
    /// or leading or trailing space. Its host must be a public address:
    /// loopback, private, link-local and other special addresses — in any
    /// notation, and `localhost` — are `422` unless the operator allows them
    /// (`--webhook-allow-hosts`); a name is checked when it is resolved, at
    /// delivery. The pattern is what can be told from the text alone.
    #[schema(
        example = "https://hooks.example.com/stampede",
        max_length = 2048,
        pattern = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\x00-\x20/\\?#]([^\t\n\r]*[^\x00-\x20])?$"
    )]
    pub url: String,
    /// Event types, or `["*"]` for all of them.
    #[schema(value_type = Vec<EventTypeName>, example = json!(["order.paid", "order.expired"]), min_items = 1, max_items = 32)]
    pub event_types: Vec<String>,
    /// Signing secret (16–256 printable characters); generated when absent.
    #[schema(min_length = 16, max_length = 256, pattern = r"^[!-~]+$")]
    pub secret: Option<String>,
}

/// An event type a subscription can ask for (the OpenAPI document's view of
/// `stampede_domain::webhook::EVENT_TYPES`; a test keeps the two equal).
#[derive(Debug, Serialize, ToSchema)]
pub enum EventTypeName {
    #[serde(rename = "*")]
    All,
    #[serde(rename = "order.created")]
    OrderCreated,
    #[serde(rename = "order.paid")]
    OrderPaid,
    #[serde(rename = "order.cancelled")]
    OrderCancelled,
    #[serde(rename = "order.expired")]
    OrderExpired,
    #[serde(rename = "payment.requested")]
    PaymentRequested,
    #[serde(rename = "payment.submitted")]
    PaymentSubmitted,
    #[serde(rename = "payment.declined")]
    PaymentDeclined,
    #[serde(rename = "payment.failed")]
    PaymentFailed,
    #[serde(rename = "payment.refund_required")]
    PaymentRefundRequired,
    #[serde(rename = "product.created")]
    ProductCreated,
    #[serde(rename = "sale.created")]
    SaleCreated,
    #[serde(rename = "sale.paused")]
    SalePaused,
    #[serde(rename = "sale.resumed")]
    SaleResumed,
    #[serde(rename = "sale.ended")]
    SaleEnded,
    #[serde(rename = "sale.amended")]
    SaleAmended,
    #[serde(rename = "sale.stock_added")]
    SaleStockAdded,
    #[serde(rename = "sale.stock_withdrawn")]
    SaleStockWithdrawn,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionBody {
    pub id: String,
    /// The URL as given, normalised (`HTTPS://Example.COM:443/a/../b` is
    /// `https://example.com/b`).
    pub url: String,
    pub event_types: Vec<String>,
    pub created_at: String,
    /// Only in the answer to its creation: keep it to verify signatures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl SubscriptionBody {
    /// `secret`: the clear secret, given only in the answer to a creation.
    pub fn of(
        s: &stampede_domain::webhook::Subscription,
        secret: Option<&stampede_domain::webhook::SigningSecret>,
    ) -> Self {
        Self {
            id: s.id.to_string(),
            url: s.url.as_str().to_owned(),
            event_types: s.events.types().to_vec(),
            created_at: s.created_at.to_rfc3339(),
            secret: secret.map(|secret| secret.expose().to_owned()),
        }
    }
}

/// One event for one subscription.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryBody {
    pub id: String,
    pub subscription_id: String,
    pub event_id: String,
    pub event_type: String,
    /// `pending`, `delivered` or `dead` (a dead letter: every attempt failed).
    pub status: &'static str,
    pub attempts: u32,
    pub next_attempt_at: String,
    /// Why the last attempt failed: `answered <status>`, no answer in time,
    /// `connection failed`, or `destination refused: not a public address`
    /// (nothing was sent: the URL's host is, or resolved to, an address
    /// subscribers may not be at).
    pub last_error: Option<String>,
    pub last_status: Option<u16>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&stampede_domain::webhook::Delivery> for DeliveryBody {
    fn from(d: &stampede_domain::webhook::Delivery) -> Self {
        Self {
            id: d.id.to_string(),
            subscription_id: d.subscription_id.to_string(),
            event_id: d.event_id.to_string(),
            event_type: d.event_type.clone(),
            status: d.status.as_str(),
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at.to_rfc3339(),
            last_error: d.last_error.clone(),
            last_status: d.last_status,
            created_at: d.created_at.to_rfc3339(),
            updated_at: d.updated_at.to_rfc3339(),
        }
    }
}

/// What the payment webhook did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConfirmationBody {
    /// `paid`, `refund_required`, `not_paid` or `already_settled`.
    pub outcome: &'static str,
}

/// One background worker of the node that answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerBody {
    pub name: String,
    /// `busy`, `idle`, `backing_off` (after a failed step) or `stopped`.
    pub state: &'static str,
    /// Steps finished, successful or not.
    pub steps: u64,
    pub failures: u64,
    /// When the last step finished (RFC 3339); absent before the first.
    pub last_run_at: Option<String>,
    /// The last failure with its causes, kept after later successes.
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
}

impl From<&WorkerReport> for WorkerBody {
    fn from(report: &WorkerReport) -> Self {
        Self {
            name: report.name.clone(),
            state: report.state.as_str(),
            steps: report.steps,
            failures: report.failures,
            last_run_at: report.last_run_at.map(|at| at.to_rfc3339()),
            last_error: report.last_error.clone(),
            last_error_at: report.last_error_at.map(|at| at.to_rfc3339()),
        }
    }
}

/// The node's background workers, in the order they started.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkersBody {
    pub workers: Vec<WorkerBody>,
}
