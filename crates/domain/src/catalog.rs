//! Products and flash sales. A sale offers `quantity` units of one product at one
//! price, between `starts_at` and `ends_at`, at most `per_user_limit` units per
//! buyer; each order it creates must be paid within `payment_window_secs`.
//! While it runs an admin may pause, resume or end it, move its end, change
//! its limit, and add or withdraw units ([`SaleControl`]); each change bumps
//! its `version`, which is how every node and the stock ledger tell a newer
//! copy from an older one.

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
    /// Purchases go through a waiting room (tickets, a draw at the start).
    pub waiting_room: bool,
}

/// A flash sale of one product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sale {
    pub id: SaleId,
    pub product_id: ProductId,
    pub price: Cents,
    pub currency: Currency,
    /// Units on sale: set at creation, moved by adding and withdrawing
    /// stock (so it can reach 0). `quantity − sold = remaining` at rest.
    pub quantity: u32,
    pub per_user_limit: Quantity,
    pub starts_at: Timestamp,
    /// `None`: the sale runs until sold out.
    pub ends_at: Option<Timestamp>,
    pub payment_window_secs: u32,
    pub created_at: Timestamp,
    /// Where an admin has put it.
    pub state: SaleState,
    /// 1 at creation, one more per change an admin makes.
    pub version: u64,
    /// Buyers line up in a waiting room and buy with an admitted ticket
    /// (docs/admission.md §5); set at creation.
    pub waiting_room: bool,
}

/// Where an admin has put a sale. `Ended` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaleState {
    Running,
    Paused,
    Ended,
}

impl SaleState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Ended => "ended",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "running" => Some(Self::Running),
            "paused" => Some(Self::Paused),
            "ended" => Some(Self::Ended),
            _ => None,
        }
    }
}

/// Where a sale stands, as shown to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SaleStatus {
    Scheduled,
    Active,
    Paused,
    SoldOut,
    Ended,
}

/// A change an admin makes to a running sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaleControl {
    /// Purchases are answered `sale-paused` until it resumes.
    Pause,
    Resume,
    /// For good: purchases are answered `sale-not-active` from now on.
    End,
    /// New end and/or limit; `ends_at: Some(None)` lets it run until sold out.
    Amend {
        ends_at: Option<Option<Timestamp>>,
        per_user_limit: Option<Quantity>,
    },
    /// More units on sale.
    AddStock(Quantity),
    /// Fewer units on sale: only unsold ones (the store checks).
    WithdrawStock(Quantity),
}

impl SaleControl {
    /// The outbox event type announcing it.
    pub fn event_type(self) -> &'static str {
        match self {
            Self::Pause => "sale.paused",
            Self::Resume => "sale.resumed",
            Self::End => "sale.ended",
            Self::Amend { .. } => "sale.amended",
            Self::AddStock(_) => "sale.stock_added",
            Self::WithdrawStock(_) => "sale.stock_withdrawn",
        }
    }

    /// Units it puts on sale (positive) or takes off (negative).
    pub fn stock_delta(self) -> i64 {
        match self {
            Self::AddStock(n) => i64::from(n.get()),
            Self::WithdrawStock(n) => -i64::from(n.get()),
            _ => 0,
        }
    }
}

/// Why a control cannot apply to a sale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlRefusal {
    /// The sale has ended (by `/end` or its `ends_at`): nothing changes it.
    Ended,
    /// A withdrawal of more units than are unsold.
    InsufficientStock,
    /// The control's values do not fit the sale.
    Invalid(ValidationError),
}

impl From<ValidationError> for ControlRefusal {
    fn from(err: ValidationError) -> Self {
        Self::Invalid(err)
    }
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
        let quantity = Quantity::parse("quantity", request.quantity)?.get();
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
            state: SaleState::Running,
            version: 1,
            waiting_room: request.waiting_room,
        })
    }

    /// Whether purchases are accepted at `now` (stock aside).
    pub fn is_open(&self, now: Timestamp) -> bool {
        self.state == SaleState::Running
            && now >= self.starts_at
            && self.ends_at.is_none_or(|end| now < end)
    }

    /// Ended by an admin, or past its `ends_at`.
    pub fn has_ended(&self, now: Timestamp) -> bool {
        self.state == SaleState::Ended || self.ends_at.is_some_and(|end| now >= end)
    }

    /// The sale after `control` at `now` (its version one more), or `None`
    /// when the control changes nothing (pausing a paused sale, ending an
    /// ended one). Whether withdrawn units are unsold is the store's to
    /// check (it knows what is sold); this checks they are on sale at all.
    pub fn apply(
        &self,
        control: SaleControl,
        now: Timestamp,
    ) -> Result<Option<Sale>, ControlRefusal> {
        if self.has_ended(now) {
            return match control {
                SaleControl::End => Ok(None),
                _ => Err(ControlRefusal::Ended),
            };
        }
        let mut next = self.clone();
        match control {
            SaleControl::Pause => next.state = SaleState::Paused,
            SaleControl::Resume => next.state = SaleState::Running,
            SaleControl::End => {
                next.state = SaleState::Ended;
                // When it ended, for clients and for ledgers that go by time
                // (an end still ahead is brought forward to now).
                next.ends_at = Some(now);
            }
            SaleControl::Amend {
                ends_at,
                per_user_limit,
            } => {
                if ends_at.is_none() && per_user_limit.is_none() {
                    return Err(ValidationError::new(
                        "ends_at",
                        "give ends_at, per_user_limit or both",
                    )
                    .into());
                }
                if let Some(ends_at) = ends_at {
                    if let Some(end) = ends_at {
                        if end <= self.starts_at {
                            return Err(
                                ValidationError::new("ends_at", "must be after starts_at").into()
                            );
                        }
                        if end <= now {
                            return Err(
                                ValidationError::new("ends_at", "must be in the future").into()
                            );
                        }
                    }
                    next.ends_at = ends_at;
                }
                if let Some(limit) = per_user_limit {
                    next.per_user_limit = limit;
                }
            }
            SaleControl::AddStock(n) => {
                next.quantity = self
                    .quantity
                    .checked_add(n.get())
                    .filter(|q| *q <= Quantity::MAX)
                    .ok_or_else(|| {
                        ValidationError::new(
                            "add",
                            format!("would put more than {} units on sale", Quantity::MAX),
                        )
                    })?;
            }
            SaleControl::WithdrawStock(n) => {
                next.quantity = self
                    .quantity
                    .checked_sub(n.get())
                    .ok_or(ControlRefusal::InsufficientStock)?;
            }
        }
        if next == *self {
            return Ok(None);
        }
        next.version = self.version + 1;
        Ok(Some(next))
    }

    /// The status clients see, given what the stock ledger says is left.
    pub fn status(&self, remaining: u64, now: Timestamp) -> SaleStatus {
        if self.has_ended(now) {
            SaleStatus::Ended
        } else if self.state == SaleState::Paused {
            SaleStatus::Paused
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

    fn units(n: i64) -> Quantity {
        Quantity::parse("units", n).unwrap()
    }

    #[test]
    fn each_control_makes_the_next_version_and_one_that_changes_nothing_makes_none() {
        let sale = Sale::create(&product(), &request(10), NOW).unwrap();
        let paused = sale.apply(SaleControl::Pause, NOW).unwrap().unwrap();
        assert_eq!((paused.state, paused.version), (SaleState::Paused, 2));
        assert_eq!(paused.status(10, NOW), SaleStatus::Paused);
        assert!(!paused.is_open(NOW));
        assert_eq!(paused.apply(SaleControl::Pause, NOW), Ok(None));
        assert_eq!(sale.apply(SaleControl::Resume, NOW), Ok(None));
        let resumed = paused.apply(SaleControl::Resume, NOW).unwrap().unwrap();
        assert_eq!((resumed.state, resumed.version), (SaleState::Running, 3));

        let more = sale
            .apply(SaleControl::AddStock(units(5)), NOW)
            .unwrap()
            .unwrap();
        assert_eq!(more.quantity, 15);
        let fewer = sale
            .apply(SaleControl::WithdrawStock(units(10)), NOW)
            .unwrap()
            .unwrap();
        assert_eq!(fewer.quantity, 0);
        assert_eq!(
            sale.apply(SaleControl::WithdrawStock(units(11)), NOW),
            Err(ControlRefusal::InsufficientStock)
        );
        let too_many = units(i64::from(Quantity::MAX));
        assert!(matches!(
            sale.apply(SaleControl::AddStock(too_many), NOW),
            Err(ControlRefusal::Invalid(_))
        ));
    }

    #[test]
    fn an_ended_sale_takes_no_control_but_end() {
        let sale = Sale::create(&product(), &request(10), NOW).unwrap();
        let later = NOW.plus_secs(5);
        let ended = sale.apply(SaleControl::End, later).unwrap().unwrap();
        assert_eq!(
            (ended.state, ended.ends_at),
            (SaleState::Ended, Some(later))
        );
        assert_eq!(ended.status(10, later), SaleStatus::Ended);
        assert_eq!(ended.apply(SaleControl::End, later), Ok(None));
        for control in [
            SaleControl::Pause,
            SaleControl::Resume,
            SaleControl::AddStock(units(1)),
        ] {
            assert_eq!(ended.apply(control, later), Err(ControlRefusal::Ended));
        }
        // Past its end by time, too.
        let mut req = request(10);
        req.ends_at = Some(NOW.plus_secs(1));
        let timed = Sale::create(&product(), &req, NOW).unwrap();
        let after = NOW.plus_secs(2);
        assert_eq!(
            timed.apply(SaleControl::Pause, after),
            Err(ControlRefusal::Ended)
        );
        // Ending one whose end passed changes nothing.
        assert_eq!(timed.apply(SaleControl::End, after), Ok(None));
    }

    #[test]
    fn an_amendment_needs_a_field_and_an_end_that_is_ahead() {
        let sale = Sale::create(&product(), &request(10), NOW).unwrap();
        let nothing = SaleControl::Amend {
            ends_at: None,
            per_user_limit: None,
        };
        assert!(matches!(
            sale.apply(nothing, NOW),
            Err(ControlRefusal::Invalid(_))
        ));
        let past = SaleControl::Amend {
            ends_at: Some(Some(NOW.plus_millis(-1))),
            per_user_limit: None,
        };
        assert!(matches!(
            sale.apply(past, NOW),
            Err(ControlRefusal::Invalid(_))
        ));
        let amended = sale
            .apply(
                SaleControl::Amend {
                    ends_at: Some(Some(NOW.plus_secs(60))),
                    per_user_limit: Some(units(3)),
                },
                NOW,
            )
            .unwrap()
            .unwrap();
        assert_eq!(amended.ends_at, Some(NOW.plus_secs(60)));
        assert_eq!(amended.per_user_limit.get(), 3);
        let open_ended = amended
            .apply(
                SaleControl::Amend {
                    ends_at: Some(None),
                    per_user_limit: None,
                },
                NOW,
            )
            .unwrap()
            .unwrap();
        assert_eq!((open_ended.ends_at, open_ended.version), (None, 3));
    }
}
