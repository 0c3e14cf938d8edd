//! The statements every uncached page or cart edit runs (a products page, products and
//! cart lines by id, the categories, the one-statement cart edit), run on PostgreSQL by
//! sqlx directly. SeaORM's connection builds one future for every backend it supports
//! and boxes it per statement: moving those futures was a sixth of the instructions of an
//! uncached add-to-cart (BENCHMARKS.md, session 14). The statements are SeaORM's own and
//! the rows are decoded by its models, so what runs and what comes back is what SeaORM's
//! path gives; SQLite takes that path.
use sea_orm::sqlx;
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, EntityTrait, FromQueryResult,
    QueryResult, QueryTrait, RuntimeErr, Select, Statement, Values,
};
use sea_query_sqlx::SqlxValues;
use std::sync::Arc;
use std::time::Instant;

/// The models `select` finds, as `select.all(db)` returns them.
pub async fn all<E: EntityTrait>(
    db: &DatabaseConnection,
    select: Select<E>,
) -> Result<Vec<E::Model>, DbErr> {
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return select.all(db).await;
    }
    fetch(db, select.build(DatabaseBackend::Postgres))
        .await?
        .iter()
        .map(|row| E::Model::from_query_result(row, ""))
        .collect()
}

/// The first row of `statement`, as `db.query_one_raw(statement)` returns it.
pub async fn one(
    db: &DatabaseConnection,
    statement: Statement,
) -> Result<Option<QueryResult>, DbErr> {
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return db.query_one_raw(statement).await;
    }
    Ok(fetch(db, statement).await?.into_iter().next())
}

/// Runs a PostgreSQL statement on the pool, counted like SeaORM's (`db::statements`).
async fn fetch(
    db: &DatabaseConnection,
    mut statement: Statement,
) -> Result<Vec<QueryResult>, DbErr> {
    // What is recorded of a statement is its SQL.
    let values = SqlxValues(statement.values.take().unwrap_or(Values(Vec::new())));
    let started = Instant::now();
    let rows = sqlx::query_with(sqlx::AssertSqlSafe(statement.sql.as_str()), values)
        .fetch_all(db.get_postgres_connection_pool())
        .await;
    super::statements::record(&sea_orm::metric::Info {
        elapsed: started.elapsed(),
        statement: &statement,
        failed: rows.is_err(),
    });
    Ok(rows
        .map_err(query_error)?
        .into_iter()
        .map(QueryResult::from)
        .collect())
}

/// The error SeaORM gives for the same failure, so that `db::is_transient` and the
/// API's error codes treat both paths alike.
fn query_error(err: sqlx::Error) -> DbErr {
    match err {
        sqlx::Error::PoolTimedOut => DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout),
        sqlx::Error::PoolClosed => {
            DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::ConnectionClosed)
        }
        err => DbErr::Query(RuntimeErr::SqlxError(Arc::new(err))),
    }
}
