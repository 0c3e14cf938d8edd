//! Raw SQL on either database: placeholders, the UTC day of a timestamp.
use crate::error::{AppError, AppResult};
use sea_orm::{ConnectionTrait, DatabaseBackend, FromQueryResult, Statement, Value};

#[derive(Clone, Copy)]
pub struct Dialect {
    pub backend: DatabaseBackend,
}

impl Dialect {
    pub fn of(db: &impl ConnectionTrait) -> Self {
        Self {
            backend: db.get_database_backend(),
        }
    }

    /// The UTC day (`YYYY-MM-DD`) of a timestamp column.
    pub fn day(&self, column: &str) -> String {
        migration::sales_aggregates::day_of(self.backend, column)
    }

    /// Numbered placeholders for PostgreSQL, `?` for SQLite.
    pub fn params(&self, sql: &str) -> String {
        if self.backend != DatabaseBackend::Postgres {
            return sql.to_owned();
        }
        let mut out = String::with_capacity(sql.len());
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                out.push_str(&format!("${n}"));
            } else {
                out.push(c);
            }
        }
        out
    }

    pub fn statement(&self, sql: &str, values: Vec<Value>) -> Statement {
        Statement::from_sql_and_values(self.backend, self.params(sql), values)
    }
}

/// `?, ?, …` for `n` values.
pub fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

pub async fn rows<T: FromQueryResult>(
    db: &impl ConnectionTrait,
    sql: &str,
    values: Vec<Value>,
) -> AppResult<Vec<T>> {
    let found = db
        .query_all_raw(Dialect::of(db).statement(sql, values))
        .await?;
    found
        .iter()
        .map(|row| T::from_query_result(row, ""))
        .collect::<Result<Vec<T>, _>>()
        .map_err(AppError::from)
}
