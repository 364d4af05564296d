//! One store type for a server whichever database `--database` names.

use std::path::{Path, PathBuf};

use crate::tx::Tx;
use crate::{PostgresStore, SqliteStore, Store, StoreError, StoreResult};

/// SQLite (embedded, the default) or PostgreSQL (shared by several server instances).
// One per server process, behind an Arc: the size of the larger variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

/// What a `--database` value names, before anything is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseLocation {
    SqliteFile(PathBuf),
    SqliteMemory,
    Postgres(String),
}

const ACCEPTED: &str = "a file path or sqlite:<path> (SQLite, the default), sqlite::memory: (SQLite in memory, lost at exit), \
                        or postgres://user@host:port/database (also postgresql://)";

impl DatabaseLocation {
    /// Read a `--database` value: empty: SQLite at `default_sqlite_path`; `sqlite:<path>` or a
    /// plain path: SQLite; `sqlite::memory:`: SQLite in memory; `postgres://...` or
    /// `postgresql://...`: PostgreSQL. Anything else is refused with the accepted forms.
    pub fn parse(database: &str, default_sqlite_path: &Path) -> StoreResult<DatabaseLocation> {
        let database = database.trim();
        if database.is_empty() {
            return Ok(DatabaseLocation::SqliteFile(default_sqlite_path.to_path_buf()));
        }
        if database.starts_with("postgres://") || database.starts_with("postgresql://") {
            return Ok(DatabaseLocation::Postgres(database.to_string()));
        }
        if let Some(rest) = database.strip_prefix("sqlite:") {
            if rest == ":memory:" {
                return Ok(DatabaseLocation::SqliteMemory);
            }
            // sqlite:///abs/path and sqlite://rel/path, as URLs write them.
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(StoreError::Database(format!("--database sqlite: names no file; expected {ACCEPTED}")));
            }
            return Ok(DatabaseLocation::SqliteFile(PathBuf::from(path)));
        }
        // Anything that looks like a URL scheme (two letters or more, so that C:\ stays a path).
        if let Some((scheme, _)) = database.split_once(':') {
            let looks_like_scheme = scheme.len() >= 2
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
            if looks_like_scheme {
                return Err(StoreError::Database(format!(
                    "--database {scheme}:... is not a database this server can use; expected {ACCEPTED}"
                )));
            }
        }
        Ok(DatabaseLocation::SqliteFile(PathBuf::from(database)))
    }
}

impl AnyStore {
    /// Open (creating and migrating if needed) the database that `database` names; see
    /// [`DatabaseLocation::parse`] for the forms.
    pub fn open(database: &str, default_sqlite_path: &Path) -> StoreResult<AnyStore> {
        match DatabaseLocation::parse(database, default_sqlite_path)? {
            DatabaseLocation::SqliteFile(path) => SqliteStore::open(&path).map(AnyStore::Sqlite),
            DatabaseLocation::SqliteMemory => SqliteStore::open_in_memory().map(AnyStore::Sqlite),
            DatabaseLocation::Postgres(url) => PostgresStore::connect(&url).map(AnyStore::Postgres),
        }
    }

    /// Wake-ups announced by other instances (PostgreSQL only: an SQLite database has one
    /// server process, whose own wakers suffice).
    pub fn listen_wakes(
        &self,
        on_wake: impl Fn(idlegrid_types::SessionId) + Send + 'static,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) {
        if let AnyStore::Postgres(store) = self {
            store.listen_wakes(on_wake, stop);
        }
    }

    /// "sqlite" or "postgres", for logs and health reports.
    pub fn kind(&self) -> &'static str {
        match self {
            AnyStore::Sqlite(_) => "sqlite",
            AnyStore::Postgres(_) => "postgres",
        }
    }
}

impl Store for AnyStore {
    fn write<R, E: From<StoreError>>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<R, E>) -> Result<R, E> {
        match self {
            AnyStore::Sqlite(store) => store.write(f),
            AnyStore::Postgres(store) => store.write(f),
        }
    }

    fn read<R, E: From<StoreError>>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<R, E>) -> Result<R, E> {
        match self {
            AnyStore::Sqlite(store) => store.read(f),
            AnyStore::Postgres(store) => store.read(f),
        }
    }

    fn write_retrying<R, E: From<StoreError>>(&self, f: impl FnMut(&mut dyn Tx) -> Result<R, E>) -> Result<R, E> {
        match self {
            AnyStore::Sqlite(store) => store.write_retrying(f),
            AnyStore::Postgres(store) => store.write_retrying(f),
        }
    }
}

impl From<SqliteStore> for AnyStore {
    fn from(store: SqliteStore) -> AnyStore {
        AnyStore::Sqlite(store)
    }
}

impl From<PostgresStore> for AnyStore {
    fn from(store: PostgresStore) -> AnyStore {
        AnyStore::Postgres(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_values_name_their_store() {
        let default = Path::new("/data/state.db");
        let parse = |text: &str| DatabaseLocation::parse(text, default);
        assert_eq!(parse("").unwrap(), DatabaseLocation::SqliteFile(default.into()));
        assert_eq!(parse("state.db").unwrap(), DatabaseLocation::SqliteFile("state.db".into()));
        assert_eq!(parse("/var/lib/x.db").unwrap(), DatabaseLocation::SqliteFile("/var/lib/x.db".into()));
        assert_eq!(parse("sqlite:x.db").unwrap(), DatabaseLocation::SqliteFile("x.db".into()));
        assert_eq!(parse("sqlite:///abs/x.db").unwrap(), DatabaseLocation::SqliteFile("/abs/x.db".into()));
        assert_eq!(parse("sqlite::memory:").unwrap(), DatabaseLocation::SqliteMemory);
        assert_eq!(parse("C:\\data\\x.db").unwrap(), DatabaseLocation::SqliteFile("C:\\data\\x.db".into()));
        let url = "postgres://postgres@127.0.0.1:5432/test";
        assert_eq!(parse(url).unwrap(), DatabaseLocation::Postgres(url.into()));
        assert_eq!(parse("postgresql://h/db").unwrap(), DatabaseLocation::Postgres("postgresql://h/db".into()));
        for bad in ["mysql://h/db", "postgres:h/db", "sqlite:", "redis:x"] {
            let error = parse(bad).unwrap_err().to_string();
            assert!(error.contains("postgres://") && error.contains("sqlite:"), "{bad}: {error}");
        }
    }

    #[test]
    fn any_store_delegates() {
        let store = AnyStore::open("sqlite::memory:", Path::new("unused")).unwrap();
        assert_eq!(store.kind(), "sqlite");
        crate::conformance::parties_are_unique(&store);
    }
}
