//! Products and flash sales. A sale offers `quantity` units of one product at one
//! price, between `starts_at` and `ends_at`, at most `per_user_limit` units per
//! buyer; each order it creates must be paid within `payment_window_secs`.

use serde::Serialize;

use crate::ValidationError;
use crate::ids::{ProductId, SaleId};
use crate::money::{Cents, Currency};
use crate::quantity::Quantity;
use crate::time::Timestamp;

/// Something that can be sold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: ProductId,
    pub sku: String,
    pub name: String,
    pub price: Cents,
    pub currency: Currency,
    pub created_at: Timestamp,
}

impl Product {
    pub const MAX_SKU_LEN: usize = 64;
    pub const MAX_NAME_LEN: usize = 200;

    /// Validates a new product's fields and gives it a fresh id.
    pub fn create(
        sku: &str,
        name: &str,
        price_cents: i64,
        currency: &str,
        now: Timestamp,
    ) -> Result<Self, ValidationError> {
        let sku_ok = !sku.is_empty()
            && sku.len() <= Self::MAX_SKU_LEN
            && sku.bytes().all(|b| b.is_ascii_graphic());
        if !sku_ok {
            return Err(ValidationError::new(
                "sku",
                "must be 1 to 64 printable ASCII characters without spaces",
            ));
        }
        let name = name.trim();
        if name.is_empty() || name.chars().count() > Self::MAX_NAME_LEN {
            return Err(ValidationError::new(
                "name",
                "must be 1 to 200 characters, not only spaces",
            ));
        }
        Ok(Self {
            id: ProductId::generate(),
            sku: sku.to_owned(),
            name: name.to_owned(),
            price: Cents::parse("price_cents", price_cents)?,
            currency: Currency::parse(currency)?,
            created_at: now,
        })
    }
}

/// What an admin asks for when creating a sale; optional fields have defaults.
#[derive(Debug, Clone, Default)]
pub struct SaleRequest {
    pub price_cents: Option<i64>,
    pub quantity: i64,
    pub per_user_limit: Option<i64>,
    pub starts_at: Option<Timestamp>,
    pub ends_at: Option<Timestamp>,
    pub payment_window_secs: Option<i64>,
}

/// A flash sale of one product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sale {
    pub id: SaleId,
    pub product_id: ProductId,
    pub price: Cents,
    pub currency: Currency,
    /// Units put on sale; never changes.
    pub quantity: Quantity,
    pub per_user_limit: Quantity,
    pub starts_at: Timestamp,
    /// `None`: the sale runs until sold out.
    pub ends_at: Option<Timestamp>,
    pub payment_window_secs: u32,
    pub created_at: Timestamp,
}

/// Where a sale stands, as shown to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SaleStatus {
    Scheduled,
    Active,
    SoldOut,
    Ended,
}

impl Sale {
    pub const DEFAULT_PAYMENT_WINDOW_SECS: u32 = 900;
    /// A week: longer windows would keep stock locked for too long to be a flash sale.
    pub const MAX_PAYMENT_WINDOW_SECS: u32 = 7 * 24 * 3600;

    /// Validates a sale request for `product`; the price defaults to the product's.
    pub fn create(
        product: &Product,
        request: &SaleRequest,
        now: Timestamp,
    ) -> Result<Self, ValidationError> {
        let price = match request.price_cents {
            Some(cents) => Cents::parse("price_cents", cents)?,
            None => product.price,
        };
        let quantity = Quantity::parse("quantity", request.quantity)?;
        let per_user_limit =
            Quantity::parse("per_user_limit", request.per_user_limit.unwrap_or(1))?;
        let starts_at = request.starts_at.unwrap_or(now);
        if let Some(ends_at) = request.ends_at {
            if ends_at <= starts_at {
                return Err(ValidationError::new("ends_at", "must be after starts_at"));
            }
            if ends_at <= now {
                return Err(ValidationError::new("ends_at", "must be in the future"));
            }
        }
        let window = request
            .payment_window_secs
            .unwrap_or(i64::from(Self::DEFAULT_PAYMENT_WINDOW_SECS));
        let payment_window_secs = u32::try_from(window)
            .ok()
            .filter(|secs| (1..=Self::MAX_PAYMENT_WINDOW_SECS).contains(secs))
            .ok_or_else(|| {
                ValidationError::new(
                    "payment_window_secs",
                    format!(
                        "must be from 1 to {} seconds",
                        Self::MAX_PAYMENT_WINDOW_SECS
                    ),
                )
            })?;
        Ok(Self {
            id: SaleId::generate(),
            product_id: product.id,
            price,
            currency: product.currency,
            quantity,
            per_user_limit,
            starts_at,
            ends_at: request.ends_at,
            payment_window_secs,
            created_at: now,
        })
    }

    /// Whether purchases are accepted at `now` (stock aside).
    pub fn is_open(&self, now: Timestamp) -> bool {
        now >= self.starts_at && self.ends_at.is_none_or(|end| now < end)
    }

    pub fn has_ended(&self, now: Timestamp) -> bool {
        self.ends_at.is_some_and(|end| now >= end)
    }

    /// The status clients see, given what the stock ledger says is left.
    pub fn status(&self, remaining: u64, now: Timestamp) -> SaleStatus {
        if self.has_ended(now) {
            SaleStatus::Ended
        } else if now < self.starts_at {
            SaleStatus::Scheduled
        } else if remaining == 0 {
            SaleStatus::SoldOut
        } else {
            SaleStatus::Active
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);

    fn product() -> Product {
        Product::create("SKU-1", "Phone", 49_900, "EUR", NOW).unwrap()
    }

    fn request(quantity: i64) -> SaleRequest {
        SaleRequest {
            quantity,
            ..SaleRequest::default()
        }
    }

    #[test]
    fn products_need_a_sku_a_name_a_price_and_a_currency() {
        assert_eq!(
            Product::create("", "x", 1, "EUR", NOW).unwrap_err().field,
            "sku"
        );
        assert_eq!(
            Product::create("has space", "x", 1, "EUR", NOW)
                .unwrap_err()
                .field,
            "sku"
        );
        assert_eq!(
            Product::create("A", "   ", 1, "EUR", NOW)
                .unwrap_err()
                .field,
            "name"
        );
        assert_eq!(
            Product::create("A", "x", -1, "EUR", NOW).unwrap_err().field,
            "price_cents"
        );
        assert_eq!(
            Product::create("A", "x", 1, "euro", NOW).unwrap_err().field,
            "currency"
        );
    }

    #[test]
    fn a_sale_defaults_to_the_product_price_one_per_user_and_fifteen_minutes_to_pay() {
        let sale = Sale::create(&product(), &request(100), NOW).unwrap();
        assert_eq!(sale.price.get(), 49_900);
        assert_eq!(sale.per_user_limit.get(), 1);
        assert_eq!(sale.payment_window_secs, 900);
        assert_eq!(sale.starts_at, NOW);
        assert_eq!(sale.ends_at, None);
    }

    #[test]
    fn a_sale_must_end_after_it_starts_and_in_the_future() {
        let mut req = request(1);
        req.starts_at = Some(NOW.plus_secs(60));
        req.ends_at = Some(NOW.plus_secs(30));
        assert_eq!(
            Sale::create(&product(), &req, NOW).unwrap_err().field,
            "ends_at"
        );
        req.starts_at = Some(NOW.plus_millis(-10_000));
        req.ends_at = Some(NOW.plus_millis(-5_000));
        assert_eq!(
            Sale::create(&product(), &req, NOW).unwrap_err().field,
            "ends_at"
        );
    }

    #[test]
    fn payment_windows_run_from_one_second_to_a_week() {
        for (secs, ok) in [(0, false), (1, true), (604_800, true), (604_801, false)] {
            let mut req = request(1);
            req.payment_window_secs = Some(secs);
            assert_eq!(Sale::create(&product(), &req, NOW).is_ok(), ok, "{secs}");
        }
    }

    #[test]
    fn status_follows_time_and_stock() {
        let mut req = request(10);
        req.starts_at = Some(NOW.plus_secs(10));
        req.ends_at = Some(NOW.plus_secs(20));
        let sale = Sale::create(&product(), &req, NOW).unwrap();
        assert_eq!(sale.status(10, NOW), SaleStatus::Scheduled);
        assert_eq!(sale.status(10, NOW.plus_secs(10)), SaleStatus::Active);
        assert_eq!(sale.status(0, NOW.plus_secs(15)), SaleStatus::SoldOut);
        assert_eq!(sale.status(3, NOW.plus_secs(20)), SaleStatus::Ended);
        assert!(!sale.is_open(NOW));
        assert!(sale.is_open(NOW.plus_secs(10)));
        assert!(!sale.is_open(NOW.plus_secs(20)));
    }
}
