//! Accounts: registration (with its event) and the lookup behind sign-in.

use deadpool_postgres::{GenericClient, Transaction};
use stampede_app::events::Event;
use stampede_app::ports::StoreError;
use stampede_domain::account::{Email, User};

use crate::rows::{self, USER_COLUMNS};
use crate::{outbox, sql};

pub(crate) async fn insert_user(tx: &Transaction<'_>, user: &User) -> Result<(), StoreError> {
    sql::execute(
        tx,
        "INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4)",
        &[
            &user.id.as_str(),
            &user.email.as_str(),
            &user.password_hash,
            &user.created_at.as_millis(),
        ],
        "inserting user",
    )
    .await?;
    outbox::record(tx, &[Event::UserRegistered(user)]).await
}

pub(crate) async fn user_by_email(
    client: &impl GenericClient,
    email: &Email,
) -> Result<Option<User>, StoreError> {
    sql::first(
        client,
        &format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1"),
        &[&email.as_str()],
        "reading user by e-mail",
        rows::user,
    )
    .await
}
