//! The operations, each checked against the model as it is answered.

use stampede_app::AppError;
use stampede_app::auth::signature;
use stampede_app::payments::Confirmation;
use stampede_app::purchase::{PurchaseRequest, Purchased};
use stampede_domain::idempotency::IdempotencyKey;
use stampede_domain::order::{Order, OrderStatus};
use stampede_domain::payment::PaymentStatus;
use stampede_domain::quantity::Quantity;
use stampede_domain::stock::Refusal;

use super::{Check, Sim, user_id};
use crate::model::{Answer, Status};
use crate::node::WEBHOOK_SECRET;

impl Sim<'_> {
    /// A purchase with `key`: its first use, a replay, or (with `mismatch`)
    /// another quantity under the same key.
    pub(super) async fn purchase(&mut self, key: usize, mismatch: bool) -> Result<String, String> {
        let now = self.now();
        let k = &self.model.keys[key];
        let (user, sale, answer) = (k.user, k.sale, k.answer);
        // What the key's memory must answer, if it must.
        let remembered = match answer {
            Answer::Won(order) if self.model.remembers_win(order, now) => Some(Ok(order)),
            Answer::Refused { refusal, epoch, at }
                if self.model.remembers_refusal(epoch, at, now) =>
            {
                Some(Err(refusal))
            }
            _ => None,
        };
        let asked = if mismatch { k.qty % 3 + 1 } else { k.qty };
        // A key with no order and no answer remembered is anyone's: another
        // quantity under it is a new request (docs/api.md §4).
        let mismatch = match (mismatch, remembered, answer) {
            (true, None, Answer::None | Answer::Refused { .. }) => {
                self.model.keys[key].qty = asked;
                false
            }
            _ => mismatch,
        };
        let qty = self.model.keys[key].qty;
        let request = PurchaseRequest {
            user: user_id(user)?,
            key: IdempotencyKey::parse(&format!("k{key}")).map_err(|e| e.to_string())?,
            sale_id: self.model.sales[sale].id,
            quantity: Quantity::parse("quantity", asked.into()).map_err(|e| e.to_string())?,
            ticket: None,
        };
        let result = self.node()?.purchases.purchase(request).await;
        let faulted = self.plan_fired();
        let fresh = self.model.fresh(user, sale, qty);
        let slot = match &result {
            Ok(p) if p.replayed => 1,
            Ok(_) => 0,
            Err(AppError::Refused(_)) => 2,
            Err(_) => 3,
        };
        self.purchases[slot] += 1;
        if mismatch {
            return match (result, remembered) {
                (Err(AppError::IdempotencyMismatch), Some(_)) => Ok("mismatch".into()),
                (Err(AppError::Unavailable { .. }), _) if faulted => Ok("unavailable".into()),
                // A won key the ledger forgot: the store still holds its
                // order, or the ledger refuses first (docs/api.md §4).
                (Err(AppError::IdempotencyMismatch), None) => Ok("mismatch".into()),
                (Err(AppError::Refused(r)), None) if self.fresh_refusal(user, sale, asked, r) => {
                    Ok(format!("refused {r:?}"))
                }
                (other, _) => Err(format!(
                    "I4: key {key} reused with quantity {asked} answered {}",
                    show(&other)
                )),
            };
        }
        match result {
            Ok(p) => {
                let o = &p.order;
                if o.user_id.as_str() != user_id(user)?.as_str()
                    || o.sale_id != self.model.sales[sale].id
                    || o.quantity.get() != qty
                {
                    return Err(format!("key {key} answered someone else's order {}", o.id));
                }
                match (remembered, answer) {
                    (Some(Ok(order)), _) | (_, Answer::Won(order)) => {
                        if o.id != self.model.orders[order].id || !p.replayed {
                            return Err(format!(
                                "I4: key {key} won o{order} and now answered {} (replayed {})",
                                o.id, p.replayed
                            ));
                        }
                        self.same_status(order, o)?;
                        Ok(format!("replayed o{order}"))
                    }
                    (Some(Err(refusal)), _) => Err(format!(
                        "I4: key {key} was refused {refusal:?} and now won {}",
                        o.id
                    )),
                    (None, _) => {
                        if p.replayed {
                            return Err(format!("key {key} replayed an order it never won"));
                        }
                        if !fresh.win {
                            return Err(format!(
                                "I1/I3: key {key} won {qty} of sale {sale}, {} left, user holds {} (limit {})",
                                self.model.sales[sale].remaining,
                                self.model.holdings[user][sale],
                                self.model.sales[sale].limit
                            ));
                        }
                        let index = self.model.won(key, o.id, o.created_at, o.expires_at)?;
                        Ok(format!("won o{index}"))
                    }
                }
            }
            Err(AppError::Refused(refusal)) => {
                let fresh_ok = self.fresh_refusal(user, sale, qty, refusal);
                let ok = match remembered {
                    Some(Err(first)) => first == refusal,
                    Some(Ok(_)) => false,
                    None => fresh_ok,
                };
                if !ok {
                    return Err(format!(
                        "key {key} refused {refusal:?}: remembered {remembered:?}, fresh {fresh:?}"
                    ));
                }
                if !matches!(answer, Answer::Won(_)) {
                    self.model.refused(key, refusal, now);
                }
                Ok(format!("refused {refusal:?}"))
            }
            Err(AppError::Unavailable { .. }) if faulted => Ok("unavailable".into()),
            Err(other) => Err(format!("key {key} answered {other}")),
        }
    }

    pub(super) fn fresh_refusal(
        &self,
        user: usize,
        sale: usize,
        qty: u32,
        refusal: Refusal,
    ) -> bool {
        let fresh = self.model.fresh(user, sale, qty);
        match refusal {
            Refusal::SoldOut => fresh.sold_out,
            Refusal::LimitExceeded => fresh.limit,
            // The simulation's sales are never paused or ended.
            Refusal::SaleNotActive | Refusal::SalePaused => false,
        }
    }

    pub(super) fn plan_fired(&self) -> bool {
        // Peeked, not taken: the loop takes it after the step.
        self.plan.crashed() || self.plan_faults() > 0
    }

    pub(super) fn plan_faults(&self) -> u32 {
        self.plan.peek().faults
    }

    pub(super) fn same_status(&self, order: usize, seen: &Order) -> Check {
        let model = self.model.orders[order].status;
        match Status::of(seen.status) == model {
            true => Ok(()),
            false => Err(format!(
                "order o{order} is {:?} in the store, {model:?} in the model",
                seen.status
            )),
        }
    }

    pub(super) async fn cancel(&mut self, order: usize) -> Result<String, String> {
        let o = &self.model.orders[order];
        let (id, status) = (o.id, o.status);
        let caller = self.caller(o.user)?;
        let result = self.node()?.orders.cancel(&caller, id).await;
        let faulted = self.plan_fired();
        match (result, status) {
            (Ok(seen), Status::Open | Status::Cancelled)
                if seen.status == OrderStatus::Cancelled =>
            {
                self.model.transition(order, Status::Cancelled)?;
                Ok("cancelled".into())
            }
            (Err(AppError::InvalidState(_)), Status::Paid) => Ok("refused: paid".into()),
            (Err(AppError::Unavailable { .. }), _) if faulted => Ok("unavailable".into()),
            (other, _) => Err(format!(
                "I7: cancelling o{order} ({status:?}) answered {}",
                show_order(&other)
            )),
        }
    }

    pub(super) async fn pay(&mut self, order: usize) -> Result<String, String> {
        let o = &self.model.orders[order];
        let (id, status) = (o.id, o.status);
        let caller = self.caller(o.user)?;
        let result = self.node()?.payments.pay(&caller, id).await;
        let faulted = self.plan_fired();
        match (result, status) {
            (Ok(_), Status::Open) => {
                self.model.orders[order].paying = true;
                Ok("payment requested".into())
            }
            (Err(AppError::InvalidState(_)), Status::Paid | Status::Cancelled) => {
                Ok("refused: closed".into())
            }
            (Err(AppError::Unavailable { .. }), _) if faulted => Ok("unavailable".into()),
            (other, _) => Err(format!(
                "I7: paying o{order} ({status:?}) answered {}",
                show_order(&other)
            )),
        }
    }

    /// The provider answers the order's payment in flight, on the signed
    /// webhook.
    pub(super) async fn answer(&mut self, order: usize, approve: bool) -> Result<String, String> {
        let o = &self.model.orders[order];
        let (id, status) = (o.id, o.status);
        let node = self.node()?;
        let payments = match node.payments.payments_of(id).await {
            Ok(payments) => payments,
            Err(AppError::Unavailable { .. }) if self.plan_fired() => {
                return Ok("unavailable".into());
            }
            Err(err) => return Err(format!("payments of o{order}: {err}")),
        };
        let Some(payment) = payments.iter().find(|p| {
            matches!(
                p.status,
                PaymentStatus::Requested | PaymentStatus::Submitted
            )
        }) else {
            return Err(format!("o{order} has no payment in flight: {payments:?}"));
        };
        let body = serde_json::json!({
            "payment_id": payment.id.to_string(),
            "status": if approve { "approved" } else { "declined" },
            "provider_ref": "sim",
        })
        .to_string();
        let header = signature::sign(WEBHOOK_SECRET, body.as_bytes(), self.now());
        let result = node.payments.confirm(body.as_bytes(), Some(&header)).await;
        let faulted = self.plan_fired();
        let outcome = match (result, status, approve) {
            (Ok(Confirmation::Paid), Status::Open, true) => {
                self.model.transition(order, Status::Paid)?;
                "paid"
            }
            (Ok(Confirmation::RefundRequired), Status::Cancelled, true) => "refund required",
            (Ok(Confirmation::NotPaid), _, false) => "declined",
            (Err(AppError::Unavailable { .. }), _, _) if faulted => return Ok("unavailable".into()),
            (other, _, _) => {
                return Err(format!(
                    "I7: the provider's answer (approve {approve}) on o{order} ({status:?}) gave {other:?}"
                ));
            }
        };
        self.model.orders[order].paying = false;
        Ok(outcome.into())
    }

    /// Time passes; the sweep expires what is due (I6).
    pub(super) async fn expire(&mut self) -> Result<String, String> {
        self.clock.advance_millis(self.rng.i64(5_000..30_000));
        let now = self.now();
        let due: Vec<usize> = (0..self.model.orders.len())
            .filter(|&i| {
                let o = &self.model.orders[i];
                o.status == Status::Open && o.expires_at <= now
            })
            .collect();
        let mut expired = 0;
        loop {
            match self.node()?.expiry.sweep_once().await {
                Ok(0) => break,
                Ok(n) => expired += n,
                Err(AppError::Unavailable { .. }) if self.plan_fired() => {
                    return Ok("unavailable".into());
                }
                Err(err) => return Err(format!("expiry sweep: {err}")),
            }
        }
        if expired != due.len() {
            return Err(format!(
                "I6: {expired} orders expired, {} were due",
                due.len()
            ));
        }
        for order in due {
            self.model.transition(order, Status::Cancelled)?;
        }
        Ok(format!("expired {expired}"))
    }
}

fn show(result: &Result<Purchased, AppError>) -> String {
    match result {
        Ok(p) => format!("order {} (replayed {})", p.order.id, p.replayed),
        Err(err) => err.to_string(),
    }
}

fn show_order(result: &Result<Order, AppError>) -> String {
    match result {
        Ok(order) => format!("order {:?}", order.status),
        Err(err) => err.to_string(),
    }
}
