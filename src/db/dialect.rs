//! Raw SQL on either database: placeholders, the UTC day of a timestamp.
use crate::error::{AppError, AppResult};
use sea_orm::{ConnectionTrait, DatabaseBackend, FromQueryResult, Statement, Value};
use std::fmt::Write as _;

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
        // Copies the text between placeholders whole: the one-statement cart edit is
        // long, and copying it a character at a time was 2 % of an uncached add.
        let mut pieces = sql.split('?');
        let mut out = String::with_capacity(sql.len() + 32);
        out.push_str(pieces.next().unwrap_or_default());
        for (n, piece) in pieces.enumerate() {
            let _ = write!(out, "${}", n + 1);
            out.push_str(piece);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_order_for_postgresql_and_kept_for_sqlite() {
        let pg = Dialect {
            backend: DatabaseBackend::Postgres,
        };
        let sql = "SELECT ? FROM t WHERE a = ? AND b IN (?, ?) OR c = ?";
        assert_eq!(
            pg.params(sql),
            "SELECT $1 FROM t WHERE a = $2 AND b IN ($3, $4) OR c = $5"
        );
        assert_eq!(pg.params("SELECT 1"), "SELECT 1");
        assert_eq!(pg.params("?"), "$1");
        let many = placeholders(12);
        assert!(
            pg.params(&many).ends_with("$11, $12"),
            "{}",
            pg.params(&many)
        );
        let sqlite = Dialect {
            backend: DatabaseBackend::Sqlite,
        };
        assert_eq!(sqlite.params(sql), sql);
    }
}
