//! The SQLite file that holds the registry and the embedded time series.
//!
//! One file (`<data_dir>/vigie.db`) in WAL mode: readers never block the writer, and
//! several processes (`vigie run` and `vigie user token`) can open it at once. Schema
//! changes are versioned migrations applied in order at open, recorded in
//! `PRAGMA user_version`. Blocking SQLite calls run on tokio's blocking pool through
//! [`Db::call`]; this module must never run a query on an async worker thread.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;

/// An error of the SQLite layer, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The file could not be opened or configured.
    #[error("cannot open store at {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A migration failed.
    #[error("cannot migrate store at {path} to version {version}: {source}")]
    Migrate {
        /// The file.
        path: PathBuf,
        /// The migration that failed.
        version: usize,
        /// Why.
        source: rusqlite::Error,
    },
    /// The file was written by a newer vigie.
    #[error(
        "store at {path} has schema version {found}, newer than this vigie ({known}); upgrade vigie"
    )]
    TooNew {
        /// The file.
        path: PathBuf,
        /// Version found in the file.
        found: usize,
        /// Latest version this binary knows.
        known: usize,
    },
    /// A query failed.
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The blocking task panicked or was cancelled.
    #[error("store task failed: {0}")]
    Task(String),
}

/// Migrations, in order; index + 1 is the schema version. Never edit one that shipped:
/// append a new one.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: registry, quarantine, raw samples.
    r#"
    CREATE TABLE members (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        kind TEXT NOT NULL DEFAULT 'commune',
        created_at INTEGER NOT NULL
    );
    CREATE TABLE buildings (
        id TEXT PRIMARY KEY,
        member_id TEXT NOT NULL REFERENCES members(id),
        name TEXT NOT NULL,
        address TEXT NOT NULL DEFAULT '',
        floor_area_m2 REAL,
        usage TEXT NOT NULL DEFAULT '',
        gas_pcs_kwh_per_m3 REAL NOT NULL DEFAULT 11.2
    );
    CREATE INDEX buildings_member ON buildings(member_id);
    CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        building_id TEXT REFERENCES buildings(id),
        kind TEXT NOT NULL,
        format TEXT NOT NULL DEFAULT 'native',
        room TEXT NOT NULL DEFAULT '',
        label TEXT NOT NULL DEFAULT '',
        last_seen INTEGER,
        online INTEGER,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX devices_building ON devices(building_id);
    CREATE TABLE series (
        id INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL REFERENCES devices(id),
        quantity TEXT NOT NULL,
        unit TEXT NOT NULL,
        kind TEXT NOT NULL,
        UNIQUE (device_id, quantity)
    );
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL,
        member_id TEXT REFERENCES members(id),
        password_hash TEXT,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE api_tokens (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        token_sha256 BLOB NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER
    );
    CREATE TABLE sessions (
        token_sha256 BLOB PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        csrf_token TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE TABLE quarantine (
        id INTEGER PRIMARY KEY,
        received_at INTEGER NOT NULL,
        last_received_at INTEGER NOT NULL,
        occurrences INTEGER NOT NULL DEFAULT 1,
        topic TEXT NOT NULL,
        device_id TEXT,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL,
        payload BLOB NOT NULL,
        payload_sha256 BLOB NOT NULL,
        UNIQUE (topic, payload_sha256, reason, detail)
    );
    CREATE INDEX quarantine_reason ON quarantine(reason);
    CREATE TABLE samples (
        series_id INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        value REAL NOT NULL,
        PRIMARY KEY (series_id, ts)
    ) WITHOUT ROWID;
    "#,
    // 2: time-series rollups (hourly = width 0, daily Europe/Paris = width 1), the last
    // sample dropped by retention per series, and store settings (retention watermark).
    r#"
    CREATE TABLE rollups (
        series_id INTEGER NOT NULL,
        width INTEGER NOT NULL,
        start INTEGER NOT NULL,
        steps INTEGER NOT NULL,
        consumption REAL NOT NULL,
        n INTEGER NOT NULL,
        sum REAL NOT NULL,
        min REAL NOT NULL,
        max REAL NOT NULL,
        last_ts INTEGER NOT NULL,
        last_value REAL NOT NULL,
        PRIMARY KEY (series_id, width, start)
    ) WITHOUT ROWID;
    CREATE TABLE retention_anchors (
        series_id INTEGER PRIMARY KEY,
        ts INTEGER NOT NULL,
        value REAL NOT NULL
    );
    CREATE TABLE store_meta (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    "#,
    // 3: MQTT credentials of devices (username = device id), as mosquitto password-file
    // hashes (`$7$101$salt$pbkdf2-sha512`), checked by the embedded broker and exported
    // by `vigie broker mosquitto-config`.
    r#"
    CREATE TABLE device_credentials (
        device_id TEXT PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
        password_hash TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    "#,
    // 4: per-meter normalisation settings (rollover, pulse factor, max flow; NULL =
    // default) and the devices heard from but not in the registry (provisioning).
    r#"
    CREATE TABLE meter_settings (
        device_id TEXT PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
        index_rollover REAL,
        pulse_factor REAL,
        max_flow_per_hour REAL
    );
    CREATE TABLE pending_devices (
        device_id TEXT PRIMARY KEY,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        topic TEXT NOT NULL,
        format TEXT NOT NULL,
        last_payload BLOB NOT NULL,
        messages INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX quarantine_device ON quarantine(device_id, reason);
    "#,
    // 5: compressed raw samples, one row per series and UTC day (first and last
    // instant, count, last value, encoded points); `samples` stays the hot tier.
    r#"
    CREATE TABLE sample_chunks (
        series_id INTEGER NOT NULL,
        start INTEGER NOT NULL,
        end INTEGER NOT NULL,
        n INTEGER NOT NULL,
        last_value REAL NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (series_id, start)
    ) WITHOUT ROWID;
    "#,
    // 6: index segments of meters swapped for one with a higher index: from `since`,
    // `index_offset` is subtracted from the published value; `replay_pending` marks the
    // device's out_of_range quarantine for replay. (IF NOT EXISTS: development builds
    // created it on first use.)
    r#"
    CREATE TABLE IF NOT EXISTS meter_segments (
        id INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
        quantity TEXT NOT NULL,
        since INTEGER NOT NULL,
        index_offset REAL NOT NULL,
        replay_pending INTEGER NOT NULL DEFAULT 0,
        UNIQUE (device_id, quantity, since)
    );
    "#,
    // 7: the store's recent tier, keyed by time so that a batch of live samples of
    // many series appends to a few pages (folded into `samples` every few thousand
    // rows), and the latest sample of each series (one row per series, kept by
    // writes), filled from both raw tiers.
    r#"
    CREATE TABLE samples_recent (
        ts INTEGER NOT NULL,
        series_id INTEGER NOT NULL,
        value REAL NOT NULL,
        PRIMARY KEY (ts, series_id)
    ) WITHOUT ROWID;
    CREATE TABLE series_latest (
        series_id INTEGER PRIMARY KEY,
        ts INTEGER NOT NULL,
        value REAL NOT NULL
    );
    INSERT INTO series_latest (series_id, ts, value)
        SELECT series_id, end, last_value FROM sample_chunks c
        WHERE start = (SELECT MAX(start) FROM sample_chunks WHERE series_id = c.series_id);
    INSERT INTO series_latest (series_id, ts, value)
        SELECT series_id, MAX(ts), value FROM samples WHERE true GROUP BY series_id
        ON CONFLICT (series_id) DO UPDATE SET ts = excluded.ts, value = excluded.value
        WHERE excluded.ts > series_latest.ts;
    "#,
    // 8: API tokens get an optional label and expiry instant (NULL: never expires, as
    // every token created before this version), and are listed per user; a password
    // change ends a user's sessions. The table is rebuilt rather than altered so that
    // its ids become AUTOINCREMENT: a revoked token's id is never given to a new token
    // (`vigie user revoke-token ID` retried, or run from a stale listing, must not
    // revoke somebody else's).
    r#"
    CREATE TABLE api_tokens_v8 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        token_sha256 BLOB NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER,
        label TEXT,
        expires_at INTEGER
    );
    INSERT INTO api_tokens_v8 (id, user_id, token_sha256, created_at, last_used_at)
        SELECT id, user_id, token_sha256, created_at, last_used_at FROM api_tokens;
    DROP TABLE api_tokens;
    ALTER TABLE api_tokens_v8 RENAME TO api_tokens;
    CREATE INDEX api_tokens_user ON api_tokens(user_id);
    CREATE INDEX IF NOT EXISTS sessions_user ON sessions(user_id);
    "#,
];

/// How long a connection waits for another's write lock before failing.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The latest schema version this binary knows.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// A handle on `vigie.db`: a small pool of connections, cheap to clone.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl Db {
    /// Opens (creating if needed) `<data_dir>/vigie.db` and applies pending migrations.
    pub fn open_dir(data_dir: &Path) -> Result<Db, DbError> {
        std::fs::create_dir_all(data_dir).map_err(|source| DbError::CreateDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        Db::open(&data_dir.join("vigie.db"))
    }

    /// Opens (creating if needed) the given file and applies pending migrations.
    pub fn open(path: &Path) -> Result<Db, DbError> {
        let db = Db {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                idle: Mutex::new(Vec::new()),
            }),
        };
        let mut conn = db.connect()?;
        db.migrate(&mut conn)?;
        db.put_back(conn);
        Ok(db)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn connect(&self) -> Result<Connection, DbError> {
        let path = &self.inner.path;
        let open = |source| DbError::Open {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(path).map_err(open)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open)?;
        // synchronous = FULL: ingest acknowledges MQTT messages once `commit` returns,
        // so a commit must survive a power cut, not only a process crash (NORMAL in WAL
        // mode may lose the last commits on power loss, after they were acknowledged).
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
             PRAGMA temp_store = MEMORY;",
        )
        .map_err(open)?;
        Ok(conn)
    }

    fn migrate(&self, conn: &mut Connection) -> Result<(), DbError> {
        let path = &self.inner.path;
        let found: usize = conn
            .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
            .map_err(|source| DbError::Open {
                path: path.clone(),
                source,
            })? as usize;
        if found > SCHEMA_VERSION {
            return Err(DbError::TooNew {
                path: path.clone(),
                found,
                known: SCHEMA_VERSION,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(found) {
            let version = i + 1;
            let fail = |source| DbError::Migrate {
                path: path.clone(),
                version,
                source,
            };
            let tx = conn.transaction().map_err(fail)?;
            tx.execute_batch(sql).map_err(fail)?;
            tx.pragma_update(None, "user_version", version as i64)
                .map_err(fail)?;
            tx.commit().map_err(fail)?;
        }
        Ok(())
    }

    fn take(&self) -> Result<Connection, DbError> {
        let pooled = self.inner.idle.lock().ok().and_then(|mut v| v.pop());
        match pooled {
            Some(c) => Ok(c),
            None => self.connect(),
        }
    }

    fn put_back(&self, conn: Connection) {
        if let Ok(mut idle) = self.inner.idle.lock()
            && idle.len() < 8
        {
            idle.push(conn);
        }
    }

    /// Runs `f` with a connection, on the calling thread (for the CLI and for code
    /// already on a blocking thread).
    pub fn call_blocking<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let mut conn = self.take()?;
        let out = f(&mut conn);
        self.put_back(conn);
        out
    }

    /// Runs the reads of `f` on tokio's blocking pool inside one read transaction, so
    /// that they all see the same committed state: a query spanning several tables
    /// (the store's tiers) never sees a write that commits between two statements.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        self.call(move |c| {
            // Deferred: the snapshot starts at the first read and ends when `tx` is
            // dropped (rolled back: nothing was written).
            let tx = c.transaction()?;
            f(&tx)
        })
        .await
    }

    /// Runs `f` with a connection on tokio's blocking pool.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.call_blocking(f))
            .await
            .map_err(|e| DbError::Task(e.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_twice_applies_migrations_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open_dir(dir.path()).expect("first open");
        drop(db);
        let db = Db::open_dir(dir.path()).expect("second open");
        let v: i64 = db
            .call_blocking(|c| Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0))?))
            .expect("version");
        assert_eq!(v as usize, SCHEMA_VERSION);
    }

    #[test]
    fn a_store_from_a_newer_vigie_is_refused_with_its_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("vigie.db");
        let c = Connection::open(&path).expect("open");
        c.pragma_update(None, "user_version", 999).expect("pragma");
        drop(c);
        let err = Db::open(&path).unwrap_err().to_string();
        assert!(err.contains("999") && err.contains("vigie.db"), "{err}");
    }

    #[tokio::test]
    async fn statements_of_one_read_see_the_same_state_despite_a_commit_between_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open_dir(dir.path()).expect("open");
        db.call_blocking(|c| Ok(c.execute_batch("CREATE TABLE t (x INTEGER)")?))
            .expect("create");
        let path = db.path().to_path_buf();
        let (first, second) = db
            .read(move |c| {
                let count = |c: &Connection| {
                    c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get::<_, i64>(0))
                };
                let first = count(c)?;
                // Another connection commits between the two statements.
                let other = Connection::open(&path)?;
                other.execute("INSERT INTO t VALUES (1)", [])?;
                let second = count(c)?;
                Ok((first, second))
            })
            .await
            .expect("read");
        assert_eq!((first, second), (0, 0));
        let after: i64 = db
            .read(|c| Ok(c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))?))
            .await
            .expect("read after");
        assert_eq!(after, 1, "the next read sees the commit");
    }
}
