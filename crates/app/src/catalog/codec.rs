//! How products and sales are kept in the shared cache (L2): JSON.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use stampede_domain::catalog::{Product, Sale, SaleState};
use stampede_domain::ids::{ProductId, SaleId};
use stampede_domain::money::{Cents, Currency};
use stampede_domain::quantity::Quantity;
use stampede_domain::time::Timestamp;

use crate::cache::L2Codec;

/// A product as the shared cache holds it.
#[derive(Serialize, Deserialize)]
struct ProductJson {
    id: String,
    sku: String,
    name: String,
    price_cents: i64,
    currency: String,
    created_at_ms: i64,
}

/// How products are stored in the shared cache.
pub fn product_codec() -> L2Codec<Product> {
    L2Codec {
        encode: |p| {
            serde_json::to_string(&ProductJson {
                id: p.id.to_string(),
                sku: p.sku.clone(),
                name: p.name.clone(),
                price_cents: p.price.get(),
                currency: p.currency.as_str().to_owned(),
                created_at_ms: p.created_at.as_millis(),
            })
            .unwrap_or_default()
        },
        decode: |text| {
            let p: ProductJson = serde_json::from_str(text).ok()?;
            Some(Product {
                id: ProductId::parse(&p.id)?,
                sku: p.sku,
                name: p.name,
                price: Cents::parse("price_cents", p.price_cents).ok()?,
                currency: Currency::parse(&p.currency).ok()?,
                created_at: Timestamp::from_millis(p.created_at_ms),
            })
        },
    }
}

/// A sale as the shared cache holds it.
#[derive(Serialize, Deserialize)]
struct SaleJson {
    id: String,
    product_id: String,
    price_cents: i64,
    currency: String,
    quantity: u32,
    per_user_limit: u32,
    starts_at_ms: i64,
    ends_at_ms: Option<i64>,
    payment_window_secs: u32,
    created_at_ms: i64,
    state: String,
    version: u64,
    /// Absent in entries cached before rooms existed.
    #[serde(default)]
    waiting_room: bool,
}

/// How sales are stored in the shared cache.
pub fn sale_codec() -> L2Codec<Arc<Sale>> {
    L2Codec {
        encode: |s| {
            serde_json::to_string(&SaleJson {
                id: s.id.to_string(),
                product_id: s.product_id.to_string(),
                price_cents: s.price.get(),
                currency: s.currency.as_str().to_owned(),
                quantity: s.quantity,
                per_user_limit: s.per_user_limit.get(),
                starts_at_ms: s.starts_at.as_millis(),
                ends_at_ms: s.ends_at.map(Timestamp::as_millis),
                payment_window_secs: s.payment_window_secs,
                created_at_ms: s.created_at.as_millis(),
                state: s.state.as_str().to_owned(),
                version: s.version,
                waiting_room: s.waiting_room,
            })
            .unwrap_or_default()
        },
        decode: |text| {
            let s: SaleJson = serde_json::from_str(text).ok()?;
            Some(Arc::new(Sale {
                id: SaleId::parse(&s.id)?,
                product_id: ProductId::parse(&s.product_id)?,
                price: Cents::parse("price_cents", s.price_cents).ok()?,
                currency: Currency::parse(&s.currency).ok()?,
                quantity: s.quantity,
                per_user_limit: Quantity::parse("per_user_limit", i64::from(s.per_user_limit))
                    .ok()?,
                starts_at: Timestamp::from_millis(s.starts_at_ms),
                ends_at: s.ends_at_ms.map(Timestamp::from_millis),
                payment_window_secs: s.payment_window_secs,
                created_at: Timestamp::from_millis(s.created_at_ms),
                state: SaleState::parse(&s.state)?,
                version: s.version,
                waiting_room: s.waiting_room,
            }))
        },
    }
}

#[cfg(test)]
mod tests {
    use stampede_domain::catalog::SaleRequest;

    use super::*;

    #[test]
    fn products_and_sales_round_trip_through_the_shared_cache_codec() {
        let now = Timestamp::from_millis(1_800_000_000_000);
        let product = Product::create("SKU-1", "Phone \"X\"", 49_900, "EUR", now).unwrap();
        let codec = product_codec();
        assert_eq!(
            (codec.decode)(&(codec.encode)(&product)),
            Some(product.clone())
        );
        let sale = Sale::create(
            &product,
            &SaleRequest {
                quantity: 10,
                per_user_limit: Some(2),
                ends_at: Some(now.plus_secs(60)),
                waiting_room: true,
                ..SaleRequest::default()
            },
            now,
        )
        .unwrap();
        let codec = sale_codec();
        let decoded = (codec.decode)(&(codec.encode)(&Arc::new(sale.clone())));
        assert_eq!(decoded.as_deref(), Some(&sale));
        assert!((codec.decode)("{\"id\": 1}").is_none());
        assert!((codec.decode)("null").is_none());
    }
}
