//! The store contract: Users.

use super::*;

pub async fn a_user_reads_back_by_email(store: Arc<dyn Store>) {
    let ada = user("ada@example.com");
    store.insert_user(&ada).await.unwrap();
    let email = Email::parse("ada@example.com").unwrap();
    assert_eq!(store.user_by_email(&email).await.unwrap(), Some(ada));
    let other = Email::parse("bob@example.com").unwrap();
    assert_eq!(store.user_by_email(&other).await.unwrap(), None);
}

pub async fn a_second_user_with_the_same_email_is_an_email_conflict(store: Arc<dyn Store>) {
    let first = user("ada@example.com");
    store.insert_user(&first).await.unwrap();
    let err = store
        .insert_user(&user("ada@example.com"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { field: "email" }),
        "{err:?}"
    );
    let email = Email::parse("ada@example.com").unwrap();
    assert_eq!(store.user_by_email(&email).await.unwrap(), Some(first));
}
