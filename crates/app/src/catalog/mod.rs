//! Products and sales: admin writes, public reads. Sales change only by an
//! admin's controls ([`controls`]), rarely, so every node keeps them all in
//! memory ([`SaleDirectory`]) and polls the store for new versions; ids it
//! does not hold are looked up through a cache that remembers unknown ids
//! (a flood of made-up sale ids reaches the store once per id). Product
//! reads are cache-aside ([`ReadCache`]). In cluster mode both caches sit in
//! front of the shared cache (L2), where products and sales are JSON
//! ([`product_codec`], [`sale_codec`]); creating or changing one deletes its
//! L2 entry. Live `remaining` always comes from the stock ledger, never from
//! a copy.

mod codec;
mod controls;
mod directory;

use std::sync::Arc;

use stampede_domain::ValidationError;
use stampede_domain::catalog::{Product, Sale, SaleRequest, SaleStatus};
use stampede_domain::ids::{ProductId, SaleId};
use stampede_domain::order::OrderStatus;

use crate::cache::{CacheSettings, CacheStats, ReadCache};
use crate::error::AppError;
use crate::paging;
use crate::ports::{CatalogStore, Clock, OrderStore, SharedCache, StockLedger};

pub use codec::{product_codec, sale_codec};
pub use controls::SALE_SYNC_EVERY;
pub use directory::SaleDirectory;

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
        let remaining = u64::from(sale.quantity);
        Ok(SaleView {
            status: sale.status(remaining, now),
            sale,
            remaining,
        })
    }

    pub async fn sale(&self, id: SaleId) -> Result<SaleView, AppError> {
        let sale = self.sales.get(id).await?.ok_or(AppError::NotFound)?;
        let remaining = self.remaining(&sale).await?;
        Ok(self.view(sale, remaining))
    }

    fn view(&self, sale: Arc<Sale>, remaining: u64) -> SaleView {
        SaleView {
            status: sale.status(remaining, self.clock.now()),
            sale,
            remaining,
        }
    }

    /// For audits: the quantity is the store's (a node's copy may be a poll
    /// behind an admin's change on another node).
    pub async fn stats(&self, id: SaleId) -> Result<SaleStats, AppError> {
        self.sales.get(id).await?.ok_or(AppError::NotFound)?;
        let sale = self.store.sale(id).await?.ok_or(AppError::NotFound)?;
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
            quantity: sale.quantity,
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
                    quantity: u64::from(sale.quantity),
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

/// A load error shared by every caller that waited on the load.
pub(crate) fn unshare(err: Arc<AppError>) -> AppError {
    match Arc::try_unwrap(err) {
        Ok(err) => err,
        // Every waiter gets its own error, caused by the shared one.
        Err(shared) => match shared.is_retryable() {
            true => AppError::unavailable_because("loading from the catalog", shared),
            false => AppError::internal_because("loading from the catalog", shared),
        },
    }
}
