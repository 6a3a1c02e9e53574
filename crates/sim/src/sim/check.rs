//! Comparing the store and the ledger with the model, and reading back
//! what an answer lost to a fault did.

use stampede_domain::idempotency::IdempotencyKey;
use stampede_domain::payment::PaymentStatus;

use super::{Check, Op, Sim, user_id};
use crate::model::{Answer, Status};

impl Sim<'_> {
    /// After a fault the answer may not tell what happened: read it from the
    /// store (without faults) and move the model to it, if the move is allowed.
    pub(super) async fn resolve(&mut self, op: &Op) -> Check {
        let store = self.node()?.store.clone();
        let orders: Vec<usize> = match *op {
            Op::Buy { key } | Op::Replay { key } | Op::Mismatch { key } => {
                let k = &self.model.keys[key];
                let key_text =
                    IdempotencyKey::parse(&format!("k{key}")).map_err(|e| e.to_string())?;
                let stored = store
                    .order_by_key(&user_id(k.user)?, &key_text)
                    .await
                    .map_err(|e| e.to_string())?;
                match (stored, k.answer) {
                    (Some(o), Answer::Won(order)) if o.id == self.model.orders[order].id => {}
                    (Some(o), Answer::Won(order)) => {
                        return Err(format!(
                            "I4: key {key} has o{order} and {} in the store",
                            o.id
                        ));
                    }
                    (Some(o), _) => {
                        if o.quantity.get() != k.qty || o.sale_id != self.model.sales[k.sale].id {
                            return Err(format!("key {key} has another request's order {}", o.id));
                        }
                        self.model.won(key, o.id, o.created_at, o.expires_at)?;
                    }
                    (None, Answer::Won(order)) => {
                        return Err(format!(
                            "I5: accepted order o{order} of key {key} is not in the store"
                        ));
                    }
                    (None, _) => {}
                }
                Vec::new()
            }
            Op::Cancel { order } | Op::Pay { order } | Op::Answer { order, .. } => vec![order],
            Op::Expire => {
                let now = self.now();
                (0..self.model.orders.len())
                    .filter(|&i| {
                        let o = &self.model.orders[i];
                        o.status == Status::Open && o.expires_at <= now
                    })
                    .collect()
            }
        };
        for order in orders {
            let id = self.model.orders[order].id;
            let stored = store
                .order(id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("accepted order o{order} is not in the store"))?;
            self.model.transition(order, Status::of(stored.status))?;
            let payments = store.payments_of(id).await.map_err(|e| e.to_string())?;
            self.model.orders[order].paying = payments.iter().any(|p| {
                matches!(
                    p.status,
                    PaymentStatus::Requested | PaymentStatus::Submitted
                )
            });
        }
        Ok(())
    }

    /// The store and the ledger against the model: stock (I1, I2), orders
    /// per status, and every order changed since the last check (I5–I7).
    pub(super) async fn check(&mut self) -> Check {
        let node = self.node()?;
        for (index, sale) in self.model.sales.iter().enumerate() {
            let counts = node
                .store
                .sale_counts(sale.id)
                .await
                .map_err(|e| e.to_string())?;
            if counts.sold > sale.quantity || counts.sold + counts.remaining != sale.quantity {
                return Err(format!(
                    "I1: sale {index} of {} sold {} with {} left",
                    sale.quantity, counts.sold, counts.remaining
                ));
            }
            if counts.remaining != sale.remaining {
                return Err(format!(
                    "sale {index}: {} left in the store, {} in the model",
                    counts.remaining, sale.remaining
                ));
            }
            let mut stored = [0u64; 3];
            for (status, n) in &counts.by_status {
                stored[Status::of(*status) as usize] += n;
            }
            let model = self.model.counts(index);
            if stored != model {
                return Err(format!(
                    "sale {index}: orders open/paid/cancelled {stored:?} in the store, {model:?} in the model"
                ));
            }
            let ledger = node
                .ledger
                .remaining(sale.id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("the ledger lost sale {index}"))?;
            let agrees = match self.model.ledger_short {
                true => ledger <= sale.remaining,
                false => ledger == sale.remaining,
            };
            if !agrees {
                return Err(format!(
                    "I2: sale {index} has {ledger} left in the ledger, {} in the store (ledger short: {})",
                    sale.remaining, self.model.ledger_short
                ));
            }
        }
        let mut touched = std::mem::take(&mut self.model.touched);
        touched.sort_unstable();
        touched.dedup();
        self.check_orders(&touched).await
    }

    pub(super) async fn check_orders(&self, orders: &[usize]) -> Check {
        let store = &self.node()?.store;
        for &order in orders {
            let id = self.model.orders[order].id;
            let stored = store
                .order(id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("I5: accepted order o{order} ({id}) is not in the store"))?;
            self.same_status(order, &stored)?;
        }
        Ok(())
    }

    /// At the end: every order, every won key (I4) and every user's holdings
    /// (I3), read back from the store.
    pub(super) async fn deep_check(&self) -> Check {
        let all: Vec<usize> = (0..self.model.orders.len()).collect();
        self.check_orders(&all).await?;
        let store = &self.node()?.store;
        for (index, key) in self.model.keys.iter().enumerate() {
            let Answer::Won(order) = key.answer else {
                continue;
            };
            let text = IdempotencyKey::parse(&format!("k{index}")).map_err(|e| e.to_string())?;
            let stored = store
                .order_by_key(&user_id(key.user)?, &text)
                .await
                .map_err(|e| e.to_string())?;
            if stored.map(|o| o.id) != Some(self.model.orders[order].id) {
                return Err(format!(
                    "I4: key {index} does not lead to its order o{order}"
                ));
            }
        }
        for user in 0..self.config.users {
            let orders = store
                .orders_of(&user_id(user)?, None, u32::MAX)
                .await
                .map_err(|e| e.to_string())?;
            let mut held = vec![0u32; self.model.sales.len()];
            for o in orders.iter().filter(|o| o.status.holds_stock()) {
                let sale = self
                    .model
                    .sales
                    .iter()
                    .position(|s| s.id == o.sale_id)
                    .ok_or_else(|| format!("order {} of an unknown sale", o.id))?;
                held[sale] += o.quantity.get();
            }
            for (sale, units) in held.iter().enumerate() {
                if *units > self.model.sales[sale].limit
                    || *units != self.model.holdings[user][sale]
                {
                    return Err(format!(
                        "I3: user {user} holds {units} of sale {sale} in the store, {} in the model (limit {})",
                        self.model.holdings[user][sale], self.model.sales[sale].limit
                    ));
                }
            }
        }
        Ok(())
    }
}
