//! The order detail view: fan-out/fan-in (docs/design.md §6.4). The
//! order, its payments and its event history are fetched concurrently, then
//! its product and sale (which need the order's ids), all under one deadline.
//! The order is a hard part: if it fails, everything still running is dropped
//! (cancelled) and the request fails. The others are soft: a part that fails or
//! misses the deadline is `None` and named in `degraded`.

use crate::failure::Chain;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use stampede_domain::catalog::Product;
use stampede_domain::ids::OrderId;
use stampede_domain::order::Order;
use stampede_domain::payment::Payment;
use stampede_flow::deadline::Deadline;

use crate::auth::Caller;
use crate::catalog::{CatalogService, SaleView};
use crate::error::AppError;
use crate::orders::OrderService;
use crate::ports::{OutboxStore, PaymentStore, StoredEvent};

/// An order with everything around it.
#[derive(Debug)]
pub struct OrderDetail {
    pub order: Order,
    pub product: Option<Product>,
    pub sale: Option<SaleView>,
    pub payments: Option<Vec<Payment>>,
    pub events: Option<Vec<StoredEvent>>,
    /// The soft parts that are missing, by name.
    pub degraded: Vec<&'static str>,
}

pub struct DetailService {
    orders: Arc<OrderService>,
    catalog: Arc<CatalogService>,
    payments: Arc<dyn PaymentStore>,
    outbox: Arc<dyn OutboxStore>,
    /// The whole view's budget.
    budget: Duration,
}

/// A soft part: its value, or `None` (named in `degraded`) on error or
/// deadline.
async fn soft<T>(
    name: &'static str,
    deadline: Deadline,
    part: impl Future<Output = Result<T, AppError>>,
) -> Result<T, &'static str> {
    match deadline.run(part).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => {
            tracing::warn!(part = name, error = %Chain(&err), "order detail degraded");
            Err(name)
        }
        Err(_) => {
            tracing::warn!(part = name, "order detail degraded: deadline passed");
            Err(name)
        }
    }
}

impl DetailService {
    pub fn new(
        orders: Arc<OrderService>,
        catalog: Arc<CatalogService>,
        payments: Arc<dyn PaymentStore>,
        outbox: Arc<dyn OutboxStore>,
        budget: Duration,
    ) -> Self {
        Self {
            orders,
            catalog,
            payments,
            outbox,
            budget,
        }
    }

    #[tracing::instrument(skip_all, fields(order_id = %id))]
    pub async fn detail(&self, caller: &Caller, id: OrderId) -> Result<OrderDetail, AppError> {
        let deadline = Deadline::after(self.budget);
        let order = async {
            match deadline.run(self.orders.get(caller, id)).await {
                Ok(result) => result,
                Err(_) => Err(AppError::unavailable("the order did not load in time")),
            }
        };
        let around = async {
            tokio::join!(
                soft("payments", deadline, async {
                    Ok(self.payments.payments_of(id).await?)
                }),
                soft("events", deadline, async {
                    Ok(self.outbox.events_of(&id.to_string()).await?)
                }),
            )
        };
        // `try_join`: the first hard error returns at once and drops the rest.
        let (order, (payments, events)) = tokio::try_join!(order, async { Ok(around.await) })?;
        let (product, sale) = tokio::join!(
            soft("product", deadline, self.catalog.product(order.product_id)),
            soft("sale", deadline, self.catalog.sale(order.sale_id)),
        );
        let mut degraded = Vec::new();
        let payments = keep(&mut degraded, payments);
        let events = keep(&mut degraded, events);
        let product = keep(&mut degraded, product);
        let sale = keep(&mut degraded, sale);
        Ok(OrderDetail {
            order,
            product,
            sale,
            payments,
            events,
            degraded,
        })
    }
}

fn keep<T>(degraded: &mut Vec<&'static str>, part: Result<T, &'static str>) -> Option<T> {
    part.map_err(|name| degraded.push(name)).ok()
}
