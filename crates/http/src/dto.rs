//! The JSON shapes of API.md, as the wire sees them. Requests are parsed into
//! domain types by the handlers; responses are built from domain types here.

use serde::{Deserialize, Deserializer, Serialize};
use stampede_app::accounts::Session;
use stampede_app::catalog::{SaleStats, SaleView};
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

/// `POST /api/v1/products`
#[derive(Debug, Deserialize, ToSchema)]
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
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SaleStatusBody {
    Scheduled,
    Active,
    SoldOut,
    Ended,
}

impl From<SaleStatus> for SaleStatusBody {
    fn from(s: SaleStatus) -> Self {
        match s {
            SaleStatus::Scheduled => Self::Scheduled,
            SaleStatus::Active => Self::Active,
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
}

impl From<&SaleView> for SaleBody {
    fn from(v: &SaleView) -> Self {
        let s = &v.sale;
        Self {
            id: s.id.to_string(),
            product_id: s.product_id.to_string(),
            price_cents: s.price.get(),
            currency: s.currency.to_string(),
            quantity: s.quantity.get(),
            remaining: v.remaining,
            per_user_limit: s.per_user_limit.get(),
            starts_at: s.starts_at.to_rfc3339(),
            ends_at: s.ends_at.map(|t| t.to_rfc3339()),
            payment_window_secs: s.payment_window_secs,
            status: v.status.into(),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
