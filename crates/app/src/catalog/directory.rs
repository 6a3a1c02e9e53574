//! Every sale a node knows, by id: the newest version of each that this
//! node has seen applied to the stock ledger.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use stampede_domain::catalog::Sale;
use stampede_domain::ids::SaleId;

use super::codec::sale_codec;
use super::unshare;
use crate::cache::{CacheSettings, ReadCache};
use crate::error::AppError;
use crate::ports::{CatalogStore, SharedCache};

/// Every sale, by id. Filled at start, on creation and on each change; a
/// miss falls back to the store (a sale created by another node). Copies
/// only move forward: an older version never replaces a newer one.
pub struct SaleDirectory {
    sales: RwLock<HashMap<SaleId, Arc<Sale>>>,
    /// Ids not in `sales`: remembered as unknown, or found (another node's).
    pub(super) others: ReadCache<SaleId, Arc<Sale>>,
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

    /// Forgets what the shared cache holds of `id`: a remembered absence
    /// (it was just created) or an older version (it was just changed).
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

    /// Keeps `sale` unless a newer version is held; returns the one kept.
    pub(crate) fn insert(&self, sale: Sale) -> Arc<Sale> {
        let mut sales = self.sales.write().unwrap_or_else(|p| p.into_inner());
        match sales.get(&sale.id) {
            Some(held) if held.version >= sale.version => held.clone(),
            _ => {
                let sale = Arc::new(sale);
                sales.insert(sale.id, sale.clone());
                sale
            }
        }
    }

    /// The version held of `id`, if any.
    pub(crate) fn version(&self, id: SaleId) -> Option<u64> {
        self.cached(id).map(|sale| sale.version)
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
