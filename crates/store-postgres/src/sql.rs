//! Running one statement on a connection or in a transaction, through the
//! connection's prepared-statement cache, with errors in the port's terms.

use deadpool_postgres::GenericClient;
use stampede_app::ports::StoreError;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::error::Context;

pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

pub(crate) async fn query(
    client: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
    what: &str,
) -> Result<Vec<Row>, StoreError> {
    let statement = client.prepare_cached(sql).await.context(what)?;
    client.query(&statement, params).await.context(what)
}

pub(crate) async fn query_opt(
    client: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
    what: &str,
) -> Result<Option<Row>, StoreError> {
    let statement = client.prepare_cached(sql).await.context(what)?;
    client.query_opt(&statement, params).await.context(what)
}

pub(crate) async fn execute(
    client: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
    what: &str,
) -> Result<u64, StoreError> {
    let statement = client.prepare_cached(sql).await.context(what)?;
    client.execute(&statement, params).await.context(what)
}

/// Every row of `sql`, each through `map`.
pub(crate) async fn all<T>(
    client: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
    what: &str,
    map: impl FnMut(&Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    query(client, sql, params, what)
        .await?
        .iter()
        .map(map)
        .collect()
}

/// The first row of `sql` through `map`, if there is one.
pub(crate) async fn first<T>(
    client: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
    what: &str,
    map: impl FnOnce(&Row) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    query_opt(client, sql, params, what)
        .await?
        .as_ref()
        .map(map)
        .transpose()
}
