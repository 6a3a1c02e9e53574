//! Accounts: registration (with its `user.registered` event) and lookup by
//! e-mail for logging in.

use rusqlite::{Connection, params};
use stampede_app::ports::StoreError;
use stampede_domain::account::{Email, User};

use crate::error::Context;
use crate::outbox::{self, Event};
use crate::rows::{self, USER_COLUMNS};

pub(crate) fn insert_user(conn: &Connection, user: &User) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO users (id, email, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut statement| {
        statement.execute(params![
            user.id.as_str(),
            user.email.as_str(),
            user.password_hash,
            user.created_at.as_millis(),
        ])
    })
    .context("inserting user")?;
    outbox::record(conn, &Event::UserRegistered(user))
}

pub(crate) fn user_by_email(conn: &Connection, email: &Email) -> Result<Option<User>, StoreError> {
    let what = "reading user by e-mail";
    let mut statement = conn
        .prepare_cached(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE email = ?1"
        ))
        .context(what)?;
    rows::first(&mut statement, [email.as_str()], what, rows::user)
}
