//! Products and sales: admin writes, public reads. Sales never change once
//! created, so every node keeps them all in memory ([`SaleDirectory`]), and
//! ids it does not hold are looked up through a cache that remembers unknown
//! ids (a flood of made-up sale ids reaches the store once per id). Product
//! reads are cache-aside ([`ReadCache`]). In cluster mode both caches sit in
//! front of the shared cache (L2), where products and sales are JSON
//! ([`product_codec`], [`sale_codec`]); creating one deletes its L2 entry,
//! which could only be a remembered absence. Live `remaining` always comes
//! from the stock ledger, never from a copy.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use stampede_domain::ValidationError;
use stampede_domain::catalog::{Product, Sale, SaleRequest, SaleStatus};
use stampede_domain::ids::{ProductId, SaleId};
use stampede_domain::money::{Cents, Currency};
use stampede_domain::order::OrderStatus;
use stampede_domain::quantity::Quantity;
use stampede_domain::time::Timestamp;

use crate::cache::{CacheSettings, CacheStats, L2Codec, ReadCache};
use crate::error::AppError;
use crate::paging;
use crate::ports::{CatalogStore, Clock, OrderStore, SharedCache, StockLedger};

/// Every sale, by id. Filled at start and on creation; a miss falls back to
/// the store (a sale created by another node).
pub struct SaleDirectory {
    sales: RwLock<HashMap<SaleId, Arc<Sale>>>,
    /// Ids not in `sales`: remembered as unknown, or found (another node's).
    others: ReadCache<SaleId, Arc<Sale>>,
    store: Arc<dyn CatalogStore>,
}

impl SaleDirectory {
    pub fn new(
        store: Arc<dyn CatalogStore>,
        sales: impl IntoIterator<Item = Sale>,
        cache: CacheSettings,
        l2: Option<Arc<dyn SharedCache>>,
    ) -> Self {
        let sales = sales.into_iter().map(|s| (s.id, Arc::new(s))).collect();
        Self {
            sales: RwLock::new(sales),
            others: ReadCache::with_l2("sale", cache, l2.map(|l2| (l2, sale_codec()))),
            store,
        }
    }

    /// Forgets a remembered absence of `id` (it was just created).
    pub(crate) async fn forget_unknown(&self, id: SaleId) {
        self.others.invalidate(&id).await;
    }

    fn cached(&self, id: SaleId) -> Option<Arc<Sale>> {
        self.sales
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    pub(crate) fn insert(&self, sale: Sale) -> Arc<Sale> {
        let sale = Arc::new(sale);
        self.sales
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sale.id, sale.clone());
        sale
    }

    pub(crate) async fn get(&self, id: SaleId) -> Result<Option<Arc<Sale>>, AppError> {
        if let Some(sale) = self.cached(id) {
            return Ok(Some(sale));
        }
        let found = self
            .others
            .get_or_load(id, || async {
                Ok(self.store.sale(id).await?.map(Arc::new))
            })
            .await
            .map_err(unshare)?;
        Ok(found.map(|sale| self.insert((*sale).clone())))
    }

    pub(crate) fn all(&self) -> Vec<Arc<Sale>> {
        self.sales
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

/// A sale with its live numbers.
#[derive(Debug, Clone)]
pub struct SaleView {
    pub sale: Arc<Sale>,
    pub remaining: u64,
    pub status: SaleStatus,
}

/// A live sale's stock as the ledger has it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveStock {
    pub sale: SaleId,
    pub quantity: u64,
    /// Units not taken: `quantity − remaining` are bought or being bought.
    pub remaining: u64,
}

/// A sale's numbers for an audit: the ledger's `remaining` beside the store's
/// counts. At rest, `quantity − sold = remaining` (I2).
#[derive(Debug, Clone)]
pub struct SaleStats {
    pub quantity: u32,
    pub remaining: u64,
    pub sold: u64,
    pub orders: Vec<(OrderStatus, u64)>,
}

/// What an admin sends to create a product.
#[derive(Debug, Clone)]
pub struct NewProduct {
    pub sku: String,
    pub name: String,
    pub price_cents: i64,
    pub currency: String,
}

/// What the catalog's read caches answered on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogCacheStats {
    pub products: CacheStats,
    pub sales: CacheStats,
}

pub struct CatalogService {
    store: Arc<dyn CatalogStore>,
    products: ReadCache<ProductId, Product>,
    orders: Arc<dyn OrderStore>,
    ledger: Arc<dyn StockLedger>,
    sales: Arc<SaleDirectory>,
    clock: Arc<dyn Clock>,
}

impl CatalogService {
    pub fn new(
        store: Arc<dyn CatalogStore>,
        orders: Arc<dyn OrderStore>,
        ledger: Arc<dyn StockLedger>,
        sales: Arc<SaleDirectory>,
        clock: Arc<dyn Clock>,
        cache: CacheSettings,
        l2: Option<Arc<dyn SharedCache>>,
    ) -> Self {
        Self {
            store,
            products: ReadCache::with_l2("product", cache, l2.map(|l2| (l2, product_codec()))),
            orders,
            ledger,
            sales,
            clock,
        }
    }

    /// This node's product and sale cache figures (`/metrics` has the
    /// process's).
    pub fn cache_stats(&self) -> CatalogCacheStats {
        CatalogCacheStats {
            products: self.products.stats(),
            sales: self.sales.others.stats(),
        }
    }

    pub async fn create_product(&self, new: NewProduct) -> Result<Product, AppError> {
        let product = Product::create(
            &new.sku,
            &new.name,
            new.price_cents,
            &new.currency,
            self.clock.now(),
        )?;
        self.store.insert_product(&product).await?;
        // A read of this id may have cached it as unknown.
        self.products.invalidate(&product.id).await;
        Ok(product)
    }

    pub async fn product(&self, id: ProductId) -> Result<Product, AppError> {
        self.products
            .get_or_load(id, || async { Ok(self.store.product(id).await?) })
            .await
            .map_err(unshare)?
            .ok_or(AppError::NotFound)
    }

    /// A page of products in creation order, and the cursor of the next page.
    pub async fn products(
        &self,
        after: Option<ProductId>,
        limit: u32,
    ) -> Result<(Vec<Product>, Option<ProductId>), AppError> {
        let items = self.store.products(after, limit + 1).await?;
        Ok(paging::split(items, limit, |p| p.id))
    }

    pub async fn create_sale(
        &self,
        product_id: ProductId,
        request: SaleRequest,
    ) -> Result<SaleView, AppError> {
        let product = self.store.product(product_id).await?.ok_or_else(|| {
            AppError::Validation(ValidationError::new("product_id", "no such product"))
        })?;
        let now = self.clock.now();
        let sale = Sale::create(&product, &request, now)?;
        self.store.insert_sale(&sale).await?;
        // Ledger before directory: a purchase that finds the sale finds it open.
        self.ledger.open_sale(&sale).await?;
        self.sales.forget_unknown(sale.id).await;
        let sale = self.sales.insert(sale);
        let remaining = u64::from(sale.quantity.get());
        Ok(SaleView {
            status: sale.status(remaining, now),
            sale,
            remaining,
        })
    }

    pub async fn sale(&self, id: SaleId) -> Result<SaleView, AppError> {
        let sale = self.sales.get(id).await?.ok_or(AppError::NotFound)?;
        let remaining = self.remaining(&sale).await?;
        Ok(SaleView {
            status: sale.status(remaining, self.clock.now()),
            sale,
            remaining,
        })
    }

    pub async fn stats(&self, id: SaleId) -> Result<SaleStats, AppError> {
        let sale = self.sales.get(id).await?.ok_or(AppError::NotFound)?;
        let remaining = self.remaining(&sale).await?;
        let counts = self.orders.sale_counts(id).await?;
        let orders = OrderStatus::ALL
            .iter()
            .map(|status| {
                let n = counts
                    .by_status
                    .iter()
                    .find(|(s, _)| s == status)
                    .map_or(0, |(_, n)| *n);
                (*status, n)
            })
            .collect();
        Ok(SaleStats {
            quantity: sale.quantity.get(),
            remaining,
            sold: counts.sold,
            orders,
        })
    }

    /// The stock of every sale that has not ended, for the metrics gauges
    /// and the live page.
    pub async fn live_stock(&self) -> Vec<LiveStock> {
        let now = self.clock.now();
        let mut live = Vec::new();
        for sale in self.sales.all() {
            if sale.has_ended(now) {
                continue;
            }
            if let Ok(Some(remaining)) = self.ledger.remaining(sale.id).await {
                live.push(LiveStock {
                    sale: sale.id,
                    quantity: u64::from(sale.quantity.get()),
                    remaining,
                });
            }
        }
        live
    }

    async fn remaining(&self, sale: &Sale) -> Result<u64, AppError> {
        self.ledger.remaining(sale.id).await?.ok_or_else(|| {
            AppError::unavailable(format!("sale {} is not open in the stock ledger", sale.id))
        })
    }
}

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
                quantity: s.quantity.get(),
                per_user_limit: s.per_user_limit.get(),
                starts_at_ms: s.starts_at.as_millis(),
                ends_at_ms: s.ends_at.map(Timestamp::as_millis),
                payment_window_secs: s.payment_window_secs,
                created_at_ms: s.created_at.as_millis(),
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
                quantity: Quantity::parse("quantity", i64::from(s.quantity)).ok()?,
                per_user_limit: Quantity::parse("per_user_limit", i64::from(s.per_user_limit))
                    .ok()?,
                starts_at: Timestamp::from_millis(s.starts_at_ms),
                ends_at: s.ends_at_ms.map(Timestamp::from_millis),
                payment_window_secs: s.payment_window_secs,
                created_at: Timestamp::from_millis(s.created_at_ms),
            }))
        },
    }
}

/// A load error shared by every caller that waited on the load.
fn unshare(err: Arc<AppError>) -> AppError {
    match Arc::try_unwrap(err) {
        Ok(err) => err,
        // Every waiter gets its own error, caused by the shared one.
        Err(shared) => match shared.is_retryable() {
            true => AppError::unavailable_because("loading from the catalog", shared),
            false => AppError::internal_because("loading from the catalog", shared),
        },
    }
}

#[cfg(test)]
mod tests {
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
