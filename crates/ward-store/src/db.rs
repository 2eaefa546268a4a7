//! One SQL text, two backends: the connection enum and the macros that run a query on either.
//!
//! Queries use `$1`-style placeholders, which both SQLite and PostgreSQL accept, so each
//! statement is written once; only the executor differs.

use sqlx::{PgConnection, SqliteConnection};

/// A borrowed connection to whichever backend the store was opened on.
pub(crate) enum Conn<'a> {
    Sqlite(&'a mut SqliteConnection),
    Pg(&'a mut PgConnection),
}

impl Conn<'_> {
    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self, Conn::Pg(_))
    }
}

/// Runs a statement; evaluates to `Result<u64 /* rows affected */, sqlx::Error>`.
macro_rules! exec {
    ($conn:expr, $sql:expr $(, $arg:expr)* $(,)?) => {
        match $conn {
            $crate::db::Conn::Sqlite(c) => sqlx::query($sql)$(.bind($arg))*.execute(&mut **c).await.map(|r| r.rows_affected()),
            $crate::db::Conn::Pg(c) => sqlx::query($sql)$(.bind($arg))*.execute(&mut **c).await.map(|r| r.rows_affected()),
        }
    };
}

/// Fetches rows as `$ty` (a `sqlx::FromRow` struct); `$how` is `fetch_one`, `fetch_optional` or `fetch_all`.
macro_rules! fetch {
    ($how:ident, $conn:expr, $ty:ty, $sql:expr $(, $arg:expr)* $(,)?) => {
        match $conn {
            $crate::db::Conn::Sqlite(c) => sqlx::query_as::<_, $ty>($sql)$(.bind($arg))*.$how(&mut **c).await,
            $crate::db::Conn::Pg(c) => sqlx::query_as::<_, $ty>($sql)$(.bind($arg))*.$how(&mut **c).await,
        }
    };
}

/// Fetches a single column as `$ty`; `$how` is `fetch_one`, `fetch_optional` or `fetch_all`.
macro_rules! scalar {
    ($how:ident, $conn:expr, $ty:ty, $sql:expr $(, $arg:expr)* $(,)?) => {
        match $conn {
            $crate::db::Conn::Sqlite(c) => sqlx::query_scalar::<_, $ty>($sql)$(.bind($arg))*.$how(&mut **c).await,
            $crate::db::Conn::Pg(c) => sqlx::query_scalar::<_, $ty>($sql)$(.bind($arg))*.$how(&mut **c).await,
        }
    };
}

pub(crate) use {exec, fetch, scalar};
