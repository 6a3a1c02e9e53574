//! The purchase path (docs/design.md §4), from an authenticated request
//! to a durable order: idempotency and reservation in the ledger, then the
//! group commit. Losers are answered by the ledger and never reach the store.

mod answered;
pub(crate) mod commit;

use std::sync::Arc;
use std::time::Instant;

use metrics::{Counter, counter};
use stampede_domain::catalog::Sale;
use stampede_domain::idempotency::{Answer, Fingerprint, IdempotencyKey};
use stampede_domain::ids::{OrderId, SaleId, UserId};
use stampede_domain::order::Order;
use stampede_domain::quantity::Quantity;
use stampede_domain::stock::Refusal;
use tokio::sync::oneshot;

pub use answered::AnsweredKeys;
pub use commit::CommitSettings;
use commit::{Committed, GroupCommitter, Job, Rejected};

use crate::admission::SaleGates;
use crate::catalog::SaleDirectory;
use crate::error::AppError;
use crate::ledger::LedgerRepair;
use crate::lifecycle::Lifecycle;
use crate::ports::{
    Attempt, Clock, Decision, EventBus, LedgerError, OrderStore, Settlement, StockLedger,
};
use crate::room::{Standing, WaitingRoom};

/// A purchase as the HTTP edge hands it over: every part already validated.
#[derive(Debug, Clone)]
pub struct PurchaseRequest {
    pub user: UserId,
    pub key: IdempotencyKey,
    pub sale_id: SaleId,
    pub quantity: Quantity,
    /// The `Queue-Ticket` shown, for a sale with a waiting room.
    pub ticket: Option<String>,
}

/// A successful purchase: the order, and whether this was a repeat of an
/// earlier request with the same key.
#[derive(Debug, Clone)]
pub struct Purchased {
    pub order: Order,
    pub replayed: bool,
}

/// How often a request waits for an in-flight request with its key before
/// giving up; each wait ends when that request is committed or abandoned.
const MAX_WAITS: usize = 8;

/// Purchase outcomes by reason, as counters made once (`won` is counted by
/// the commit stage).
struct Outcomes {
    replayed: Counter,
    sold_out: Counter,
    limit_exceeded: Counter,
    sale_not_active: Counter,
    mismatch: Counter,
    overloaded: Counter,
    unavailable: Counter,
    not_found: Counter,
    sale_paused: Counter,
    not_your_turn: Counter,
    queue_ticket: Counter,
    error: Counter,
}

impl Outcomes {
    fn new() -> Self {
        let c = |outcome: &'static str| counter!("stampede_purchases_total", "outcome" => outcome);
        Self {
            replayed: c("replayed"),
            sold_out: c("sold_out"),
            limit_exceeded: c("limit_exceeded"),
            sale_not_active: c("sale_not_active"),
            mismatch: c("idempotency_mismatch"),
            overloaded: c("overloaded"),
            unavailable: c("unavailable"),
            not_found: c("not_found"),
            sale_paused: c("sale_paused"),
            not_your_turn: c("not_your_turn"),
            queue_ticket: c("queue_ticket"),
            error: c("error"),
        }
    }

    fn count(&self, result: &Result<Purchased, AppError>) {
        let counter = match result {
            Ok(p) if p.replayed => &self.replayed,
            Ok(_) => return,
            Err(AppError::Refused(Refusal::SoldOut)) => &self.sold_out,
            Err(AppError::Refused(Refusal::LimitExceeded)) => &self.limit_exceeded,
            Err(AppError::Refused(Refusal::SaleNotActive)) => &self.sale_not_active,
            Err(AppError::Refused(Refusal::SalePaused)) => &self.sale_paused,
            Err(AppError::IdempotencyMismatch) => &self.mismatch,
            Err(AppError::Overloaded(_)) => &self.overloaded,
            Err(AppError::Unavailable { .. }) => &self.unavailable,
            Err(AppError::NotFound) => &self.not_found,
            Err(AppError::NotYourTurn(_)) => &self.not_your_turn,
            Err(AppError::QueueTicket(_)) => &self.queue_ticket,
            Err(_) => &self.error,
        };
        counter.increment(1);
    }
}

pub struct PurchaseService {
    sales: Arc<SaleDirectory>,
    ledger: Arc<dyn StockLedger>,
    store: Arc<dyn OrderStore>,
    committer: GroupCommitter,
    clock: Arc<dyn Clock>,
    lifecycle: Arc<Lifecycle>,
    repair: Arc<LedgerRepair>,
    answered: Arc<AnsweredKeys>,
    gates: Arc<SaleGates>,
    room: Arc<WaitingRoom>,
    outcomes: Outcomes,
}

impl PurchaseService {
    /// `repair` holds the ledger purchases are decided in; `answered` is
    /// shared with the edge, which lets known keys past its limits.
    #[allow(clippy::too_many_arguments)] // The path's collaborators, each once.
    pub fn new(
        sales: Arc<SaleDirectory>,
        repair: Arc<LedgerRepair>,
        store: Arc<dyn OrderStore>,
        bus: Arc<dyn EventBus>,
        clock: Arc<dyn Clock>,
        lifecycle: Arc<Lifecycle>,
        settings: CommitSettings,
        answered: Arc<AnsweredKeys>,
        room: Arc<WaitingRoom>,
    ) -> Self {
        let ledger = repair.ledger().clone();
        let gates = Arc::new(SaleGates::new(settings.attempts_per_unit));
        let committer = GroupCommitter::start(store.clone(), ledger.clone(), bus, settings);
        Self {
            sales,
            ledger,
            store,
            committer,
            clock,
            lifecycle,
            repair,
            answered,
            gates,
            room,
            outcomes: Outcomes::new(),
        }
    }

    /// Each sale's inventory-aware gate; the `sale-sync` poll tells them
    /// what the ledger has left.
    pub fn gates(&self) -> &Arc<SaleGates> {
        &self.gates
    }

    /// The waiting rooms of the sales that have one.
    pub fn room(&self) -> &Arc<WaitingRoom> {
        &self.room
    }

    /// Joins `user` to the sale's waiting room, or tells them where they
    /// stand (the same ticket every time).
    pub async fn join_room(&self, sale_id: SaleId, user: &UserId) -> Result<Standing, AppError> {
        if self.lifecycle.is_draining() {
            return Err(AppError::unavailable("shutting down"));
        }
        let sale = self.sales.get(sale_id).await?.ok_or(AppError::NotFound)?;
        self.room.join(&sale, user).await
    }

    /// Buys: answers from the key's memory, refuses in the ledger, or reserves
    /// and returns once the order is committed.
    #[tracing::instrument(name = "purchase", skip_all, fields(sale_id = %request.sale_id))]
    pub async fn purchase(&self, request: PurchaseRequest) -> Result<Purchased, AppError> {
        let result = self.decide_and_commit(request).await;
        self.outcomes.count(&result);
        result
    }

    /// The answers this node gave, by key: the edge asks it first.
    pub fn answered(&self) -> &Arc<AnsweredKeys> {
        &self.answered
    }

    /// Orders waiting for a commit.
    pub fn queue_depth(&self) -> usize {
        self.committer.depth()
    }

    /// Commits what is queued and stops the commit workers.
    pub(crate) async fn shutdown(&self) {
        self.committer.shutdown().await;
    }

    async fn decide_and_commit(&self, request: PurchaseRequest) -> Result<Purchased, AppError> {
        if self.lifecycle.is_draining() {
            return Err(AppError::unavailable("shutting down"));
        }
        let sale = self
            .sales
            .get(request.sale_id)
            .await?
            .ok_or(AppError::NotFound)?;
        let attempt = Attempt {
            user: request.user,
            key: request.key,
            fingerprint: Fingerprint {
                sale_id: request.sale_id,
                quantity: request.quantity,
            },
            now: self.clock.now(),
        };
        // Answered here before: no ledger call for a refusal.
        match self.answered.answer(
            &attempt.user,
            &attempt.key,
            &attempt.fingerprint,
            attempt.now,
        ) {
            Some(Answer::Refused(refusal)) => return Err(AppError::Refused(refusal)),
            Some(Answer::Won(order_id)) => return self.replay_won(order_id).await,
            None => {}
        }
        if !sale.waiting_room {
            return self.decide(&sale, request.quantity, attempt).await;
        }
        let user = &attempt.user;
        (self.room)
            .check(&sale, user, request.ticket.as_deref())
            .await?;
        let answer = self.decide(&sale, request.quantity, attempt).await;
        match &answer {
            // A paused sale is decided afresh after the resume: not served.
            Err(AppError::Refused(Refusal::SalePaused)) => {}
            Ok(_) | Err(AppError::Refused(_)) => self.room.served(sale.id),
            Err(_) => {}
        }
        match &answer {
            // The room ends: every ticket is answered at once.
            Err(AppError::Refused(Refusal::SoldOut)) => self.room.learn_left(sale.id, Some(0)),
            // A unit gone: what is left caps the room's admissions and the
            // waits it tells, and none left ends it now rather than at its
            // next step (one ledger read per unit sold, bounded by the stock).
            Ok(purchased) if !purchased.replayed => {
                if let Ok(Some(left)) = self.ledger.remaining(sale.id).await {
                    self.room.learn_left(sale.id, Some(left));
                }
            }
            _ => {}
        }
        answer
    }

    /// The decision in the ledger and, for a winner, the commit.
    async fn decide(
        &self,
        sale: &Sale,
        quantity: Quantity,
        attempt: Attempt,
    ) -> Result<Purchased, AppError> {
        // Held until the answer: the decision and, for a winner, its commit.
        let _pass = self.gates.enter(sale.id).await.map_err(|_| {
            AppError::Overloaded(
                "the sale's queue would not admit this purchase within its deadline",
            )
        })?;
        let mut waits = 0;
        loop {
            let decision = match self.ledger.decide(&attempt).await {
                Ok(decision) => decision,
                // Unreachable, or lost this sale: if lost, the store has it.
                Err(err @ LedgerError::Unavailable { .. }) => {
                    self.repair.rebuild_soon(sale.id);
                    return Err(err.into());
                }
                Err(err) => return Err(err.into()),
            };
            match decision {
                Decision::Reserved => {
                    (self.gates).took(sale.id, quantity.get());
                    break;
                }
                Decision::Replay(Answer::Won(order_id)) => {
                    let replayed = self.replay_won(order_id).await;
                    return self.remembered(replayed);
                }
                Decision::Replay(Answer::Refused(refusal)) | Decision::Refused(refusal) => {
                    if matches!(decision, Decision::Refused(Refusal::SoldOut)) {
                        // Sold out now: every waiter of this sale can be
                        // answered at once.
                        self.gates.learn(sale.id, 0);
                    }
                    // What the ledger remembers, this node remembers too (a
                    // replay again: it may be another node's answer); a
                    // pause is remembered by neither.
                    let answer = Answer::Refused(refusal);
                    let (user, key) = (&attempt.user, &attempt.key);
                    (self.answered).record(user, key, attempt.fingerprint, answer, attempt.now);
                    return Err(AppError::Refused(refusal));
                }
                Decision::Mismatch => return Err(AppError::IdempotencyMismatch),
                Decision::Wait(wait) => {
                    waits += 1;
                    if waits > MAX_WAITS {
                        return Err(AppError::unavailable(
                            "another request with this key is still being decided",
                        ));
                    }
                    wait.await;
                }
                Decision::UnknownSale => {
                    self.repair.rebuild_soon(sale.id);
                    return Err(AppError::unavailable(
                        "the stock ledger is loading this sale",
                    ));
                }
            }
        }

        let order = Order::place(
            sale,
            attempt.user.clone(),
            quantity,
            attempt.key.clone(),
            attempt.now,
        );
        let (reply, answer) = oneshot::channel();
        let job = Job {
            order,
            attempt,
            reply,
            queued: Instant::now(),
            trace: stampede_trace::current(),
        };
        if let Err(rejected) = self.committer.submit(job) {
            let (job, err) = match rejected {
                Rejected::Full(job) => (job, AppError::Overloaded("the order queue is full")),
                Rejected::Late(job) => (
                    job,
                    AppError::Overloaded(
                        "the order queue would not commit this purchase within its deadline",
                    ),
                ),
                Rejected::Closed(job) => (job, AppError::unavailable("shutting down")),
            };
            self.ledger
                .settle(&job.attempt, Settlement::Abandoned)
                .await?;
            return Err(err);
        }
        // The worker settles the reservation whatever happens to this request.
        let purchased = match answer.await {
            Ok(Ok(Committed::Created(order))) => Ok(Purchased {
                order,
                replayed: false,
            }),
            Ok(Ok(Committed::Existing(order))) => Ok(Purchased {
                order,
                replayed: true,
            }),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(AppError::unavailable("the order was not committed")),
        };
        self.remembered(purchased)
    }

    /// Remembers a won key's answer on this node, from its order (the
    /// attempt went with the order to the commit).
    fn remembered(&self, purchased: Result<Purchased, AppError>) -> Result<Purchased, AppError> {
        if let Ok(Purchased { order, .. }) = &purchased {
            let fingerprint = Fingerprint {
                sale_id: order.sale_id,
                quantity: order.quantity,
            };
            let answer = Answer::Won(order.id);
            let (user, key) = (&order.user_id, &order.idempotency_key);
            (self.answered).record(user, key, fingerprint, answer, self.clock.now());
        }
        purchased
    }

    /// The order a won key made, as it is now.
    async fn replay_won(&self, order_id: OrderId) -> Result<Purchased, AppError> {
        let order =
            self.store.order(order_id).await?.ok_or_else(|| {
                AppError::internal(format!("remembered order {order_id} is missing"))
            })?;
        Ok(Purchased {
            order,
            replayed: true,
        })
    }
}
