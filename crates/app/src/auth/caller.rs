//! Who is asking.

use stampede_domain::account::Role;
use stampede_domain::ids::UserId;
use stampede_domain::order::Order;

/// Who is asking: the claims of a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user: UserId,
    pub role: Role,
}

impl Caller {
    /// Admins see every order; customers their own.
    pub(crate) fn may_see(&self, order: &Order) -> bool {
        self.role == Role::Admin || order.user_id == self.user
    }
}
