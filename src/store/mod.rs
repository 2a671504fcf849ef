//! SQLite storage: opening the pool, migrations, and one module per table (`consumer_refusals` is
//! `usage`'s, `secret_key_check` `consumers`', `nonce_pruning` and `nonce_prune_marks`
//! `nonces`'). `launches` writes a verified launch's rows in several tables in one script, for
//! speed (see `front`).

pub mod admin;
pub mod consumers;
pub mod front;
pub mod handoffs;
pub mod launches;
pub mod nonces;
pub mod outcomes;
pub mod refusals;
pub mod sessions;
pub mod usage;

use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, SqlitePool};

use crate::error::LtiError;

/// WAL pages after which a committing connection copies them into the database file itself,
/// rather than SQLite's 1000: the launch writer's background checkpoint does that copying soon after
/// each commit, and under a burst of launches the WAL passes 1000 pages many times a second, each
/// time a stall of a few milliseconds for whoever commits (see `front`). The price is a WAL file
/// of up to about 40 MiB beside the database.
const AUTOCHECKPOINT_PAGES: &str = "10000";
/// Bytes the WAL file is cut back to when it starts over: a long read can let it grow past the
/// checkpoint size, and SQLite would otherwise keep that space.
const WAL_SIZE_LIMIT: &str = "67108864";

/// The connection pool, shared by the server and the command line.
pub type Db = SqlitePool;

/// Opens (creating the file and its folder if needed) and migrates the database. The
/// `consumers` functions need the secret key's cipher installed for it as well
/// (`crypto::install_cipher`, which the server's start-up and the command line call); without it they answer
/// `Storage("no secret key installed …")`.
pub async fn open(database_url: &str) -> Result<Db, LtiError> {
    Ok(open_telling(database_url).await?.db)
}

/// A database [`open_telling`] opened, and what the opening did to it.
pub struct Opened {
    /// The pool.
    pub db: Db,
    /// Whether this call created the database's file.
    pub created: bool,
    /// The migrations this call ran on a database that had a schema ("14 (nonce marks by
    /// consumer)"): an upgrade, for the log.
    pub upgraded: Vec<String>,
}

/// Opens the database as [`open`] does, and says what the opening did.
pub async fn open_telling(database_url: &str) -> Result<Opened, LtiError> {
    // The file is created below (private), never by a connection: a pool connection opened after
    // the file was removed would otherwise start an empty database beside the lost one.
    let options = SqliteConnectOptions::from_str(database_url)?
        .create_if_missing(false)
        .journal_mode(SqliteJournalMode::Wal)
        // WAL + NORMAL is durable across process crashes; only an OS crash can lose the last commits.
        .synchronous(SqliteSynchronous::Normal)
        // Every connection, not only the launch writer (see `front`): a commit on a connection
        // whose WAL holds its limit copies the pages itself, with two fsyncs, in that request.
        .pragma("wal_autocheckpoint", AUTOCHECKPOINT_PAGES)
        .pragma("journal_size_limit", WAL_SIZE_LIMIT)
        // A deleted row (an ended session's launch data, a removed consumer's learners) is
        // zeroed, not left readable in the file and its backups; `fast` would leave whole freed
        // pages readable (those a launch over 4 KiB spills onto, leaves pruning empties).
        .pragma("secure_delete", "on")
        .busy_timeout(Duration::from_secs(5))
        // A statement slowed by a lock or a full disk fails with its own error line; sqlx's
        // warning would add the whole multi-line statement to the log.
        .log_slow_statements(log::LevelFilter::Debug, Duration::from_secs(1));
    let file = options.get_filename().to_owned();
    if asks_for_no_new_file(database_url) && !file.exists() {
        return Err(LtiError::Storage(format!(
            "there is no database at {} (its URL asks not to create one: mode=ro, mode=rw or \
             immutable)",
            file.display()
        )));
    }
    let created = file.to_str() != Some(":memory:") && create_private(&file).await?;
    // SQLite's messages ("unable to open database file") do not say which file, nor that the
    // usual cause is a file or folder made by another user (a command run as root first).
    let named = |e: &dyn std::fmt::Display, damaged: bool| {
        let message = e.to_string();
        let hint = if damaged {
            crate::error::DAMAGED_HINT
        } else if message.contains("unable to open") || message.contains("readonly") {
            " (can this user read and write it, and its folder?)"
        } else if message.contains("disk I/O error") {
            " (is its file system full, or read-only?)"
        } else {
            ""
        };
        LtiError::Storage(format!("the database {}: {e}{hint}", file.display()))
    };
    let opened = async {
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(|conn, _| Box::pin(note_if_read_only(conn)))
            .after_release(|conn, _| Box::pin(may_be_reused(conn)))
            .connect_with(options)
            .await
            .map_err(|e| named(&e, crate::error::is_damaged(&e)))?;
        match migrate(&pool).await {
            Ok(upgraded) => Ok((pool, upgraded)),
            Err(sqlx::migrate::MigrateError::VersionMissing(version)) => {
                pool.close().await;
                Err(LtiError::Storage(format!(
                    "the database {} was upgraded by a newer version of this tool or a fork of it \
                     (its migration {version} is unknown to this one): run that version, or \
                     restore the backup taken before the upgrade",
                    file.display()
                )))
            }
            Err(sqlx::migrate::MigrateError::VersionMismatch(version)) => {
                pool.close().await;
                Err(LtiError::Storage(format!(
                    "the database {} applied another migration {version} than this build has (an \
                     unreleased build's, or a fork's that took an upstream number): run the build \
                     that made it, or restore a backup",
                    file.display()
                )))
            }
            Err(e) => {
                pool.close().await;
                let damaged = match &e {
                    sqlx::migrate::MigrateError::Execute(inner)
                    | sqlx::migrate::MigrateError::ExecuteMigration(inner, _) => {
                        crate::error::is_damaged(inner)
                    }
                    _ => false,
                };
                Err(named(&e, damaged))
            }
        }
    };
    let (db, upgraded) = opened.await?;
    Ok(Opened {
        db,
        created,
        upgraded,
    })
}

/// The schema's migrations, embedded in the binary.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Runs the embedded migrations under the database's write lock, taken first (SQLite waits
/// `busy_timeout` for it): a server and commands started at once on a new database would
/// otherwise each find it unmigrated and all but one fail on "table already exists". Whoever
/// comes second finds the migrations done. With none pending, nothing takes the lock. Returns the
/// migrations run on a database that had a schema already (an upgrade).
async fn migrate(pool: &Db) -> Result<Vec<String>, sqlx::migrate::MigrateError> {
    let migrator = &MIGRATOR;
    let mut conn = pool.acquire().await?;
    let applied = applied_migrations(&mut conn).await;
    if migrator.iter().all(|m| applied.contains(&m.version)) {
        // Checks the applied ones' checksums; writes nothing.
        migrator.run_direct(&mut *conn).await?;
        return Ok(Vec::new());
    }
    let mut tx = conn.begin_with("BEGIN EXCLUSIVE").await?;
    // Read again under the lock: another process may have migrated meanwhile.
    let applied = applied_migrations(&mut tx).await;
    // Each migration runs in a savepoint of this transaction, so a migration that must run
    // outside one (`-- no-transaction`: VACUUM, say) cannot be added.
    migrator.run_direct(&mut *tx).await?;
    tx.commit().await?;
    if applied.is_empty() {
        return Ok(Vec::new());
    }
    Ok(migrator
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .map(|m| format!("{} ({})", m.version, m.description))
        .collect())
}

/// The versions of the migrations applied to the database (none for a new one, which has no
/// table for them yet).
async fn applied_migrations(conn: &mut sqlx::SqliteConnection) -> Vec<i64> {
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = true")
        .fetch_all(conn)
        .await
        .unwrap_or_default()
}

/// When a pool connection was last opened read-only (Unix seconds; 0: never).
static READ_ONLY_OPENED_AT: AtomicI64 = AtomicI64::new(0);

/// How long after that returned connections are checked: sqlx closes any connection after 30
/// minutes, so none opened read-only is older.
const READ_ONLY_WATCH: i64 = 30 * 60;

/// Notes a connection SQLite opened read-only. It does that by itself when the file cannot be
/// opened for writing just then (storage remounted read-only, `chattr +i`), and such a connection
/// stays read-only after the file is writable again. It is served all the same (reads work; a
/// database that stays read-only says so on its first write), but from now on returned
/// connections are checked, and read-only ones are closed (`may_be_reused`).
async fn note_if_read_only(conn: &mut sqlx::SqliteConnection) -> Result<(), sqlx::Error> {
    if is_read_only_connection(conn).await? {
        READ_ONLY_OPENED_AT.store(now(), Ordering::Relaxed);
    }
    Ok(())
}

/// Whether SQLite has this connection's database open read-only: a write that changes nothing
/// is refused (BEGIN IMMEDIATE is not, in WAL mode). A write lock held elsewhere answers "busy"
/// (so this connection could write), at once: nothing waits for another writer here. The table
/// is sqlx's own, and does not exist yet in a new database (no such table: that one is writable).
async fn is_read_only_connection(conn: &mut sqlx::SqliteConnection) -> Result<bool, sqlx::Error> {
    sqlx::query("PRAGMA busy_timeout = 0")
        .execute(&mut *conn)
        .await?;
    let tried = sqlx::query("DELETE FROM _sqlx_migrations WHERE 0")
        .execute(&mut *conn)
        .await;
    sqlx::query("PRAGMA busy_timeout = 5000")
        .execute(&mut *conn)
        .await?;
    Ok(matches!(tried, Err(e) if crate::error::is_read_only(&e)))
}

/// Whether a connection coming back to the pool may be used again: in step with SQLite
/// (`still_in_step`), and, while read-only connections may be about, not read-only.
async fn may_be_reused(conn: &mut sqlx::SqliteConnection) -> Result<bool, sqlx::Error> {
    if !still_in_step(conn).await? {
        return Ok(false);
    }
    let watching = now() - READ_ONLY_OPENED_AT.load(Ordering::Relaxed) < READ_ONLY_WATCH;
    Ok(!(watching && is_read_only_connection(conn).await?))
}

/// Whether a returned connection is in step with SQLite: not when sqlx still counts a
/// transaction that SQLite already ended. A full disk makes SQLite roll a transaction back by
/// itself; sqlx's own ROLLBACK then fails, and sqlx keeps counting it as open. Its next
/// transaction on that connection would be a savepoint, whose rollback leaves a real transaction
/// open: the write lock held, every other writer refused, until the connection is closed.
async fn still_in_step(conn: &mut sqlx::SqliteConnection) -> Result<bool, sqlx::Error> {
    use sqlx::{Sqlite, TransactionManager};
    let depth = |conn: &sqlx::SqliteConnection| {
        <Sqlite as sqlx::Database>::TransactionManager::get_transaction_depth(conn)
    };
    if depth(conn) == 0 {
        return Ok(true);
    }
    // The rollback of a transaction just dropped may still be on its way to the connection's
    // thread: once a query sent after it is answered, the count is current.
    sqlx::query("SELECT 1").execute(&mut *conn).await?;
    let in_step = depth(conn) == 0;
    if !in_step {
        log::warn!("closed a database connection whose transaction SQLite had already ended");
    }
    Ok(in_step)
}

/// The file a database URL names; `None` for an in-memory database.
pub fn file_of(database_url: &str) -> Result<Option<std::path::PathBuf>, LtiError> {
    let file = SqliteConnectOptions::from_str(database_url)?
        .get_filename()
        .to_owned();
    Ok(Some(file).filter(|f| f.to_str() != Some(":memory:")))
}

/// What [`close`] could not do; nothing is lost either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseNote {
    /// Another process was reading (the server, when the command line closes; a backup): the WAL
    /// stays beside the database, to be copied in later.
    WalKept,
    /// The last checkpoint failed.
    CheckpointFailed(String),
}

impl std::fmt::Display for CloseNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseNote::WalKept => f.write_str(
                "the WAL is kept beside the database: another process was reading it (it is \
                 copied in later, or replayed at the next start)",
            ),
            CloseNote::CheckpointFailed(e) => write!(
                f,
                "the last checkpoint failed (the WAL is replayed at the next start): {e}"
            ),
        }
    }
}

/// Copies everything in the WAL into the database file and empties the WAL, then closes the pool:
/// for a server that has stopped serving. A stopped server's database file is then complete on
/// its own, so copying only that file (a hasty backup) loses nothing; unless another process was
/// reading it just then (see below): what the caller should then say (the server logs it, the
/// command line prints it).
pub async fn close(db: &Db) -> Option<CloseNote> {
    // While TRUNCATE waits for readers it keeps every writer out, and another process may be
    // reading for long (the server, when the command line closes; a backup): it waits briefly.
    // If it gives up, the WAL stays, to be copied later or replayed; nothing is lost. Its
    // connection, with that short wait, is not given back to the pool.
    let checkpoint = async {
        let mut conn = db.acquire().await?.detach();
        sqlx::query("PRAGMA busy_timeout = 100")
            .execute(&mut conn)
            .await?;
        let done: Result<(i64, i64, i64), sqlx::Error> =
            sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(&mut conn)
                .await;
        let _ = conn.close().await;
        done
    };
    let note = match checkpoint.await {
        Ok((0, _, _)) => None,
        Ok(_) => Some(CloseNote::WalKept),
        Err(e) => Some(CloseNote::CheckpointFailed(e.to_string())),
    };
    db.close().await;
    // A connection on its way back to the pool (sqlx does that in a task of its own) can reach
    // the idle list just after `close` swept it, and stay open: SQLite then keeps the -wal and
    // -shm files. Sweep again until every connection is closed (within a second).
    for _ in 0..200 {
        if db.size() == 0 {
            break;
        }
        rocket::tokio::time::sleep(Duration::from_millis(5)).await;
        db.close().await;
    }
    // Two connections closing at once (sqlx closes one that came back late in a task of its own)
    // each see the other's lock, and neither removes the files. One connection opened and
    // closed on its own then does.
    let file = db.connect_options().get_filename().to_owned();
    let wal = std::path::PathBuf::from(format!("{}-wal", file.display()));
    if file.to_str() != Some(":memory:") && wal.exists() {
        if let Ok(alone) = (*db.connect_options()).clone().connect().await {
            let _ = alone.close().await;
        }
    }
    note
}

/// Whether the URL asks SQLite not to create the file (`?mode=ro`, `?mode=rw`, `?immutable=1`).
/// The query is read as sqlx reads it: form-decoded (`mode=r%6F` is `mode=ro`); `ro` once makes
/// it read-only, `rwc` once lets it create (`rw` changes neither), and the last `immutable` holds.
fn asks_for_no_new_file(database_url: &str) -> bool {
    let query = database_url.split_once('?').map_or("", |(_, q)| q);
    let (mut read_only, mut rw, mut rwc, mut immutable) = (false, false, false, false);
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match (&*key, &*value) {
            ("mode", "ro") => read_only = true,
            ("mode", "rw") => rw = true,
            ("mode", "rwc") => rwc = true,
            ("immutable", "1" | "true") => immutable = true,
            ("immutable", "0" | "false") => immutable = false,
            _ => {}
        }
    }
    read_only || immutable || (rw && !rwc)
}

/// Creates the database file, and its folder, readable only by the server's user, unless they
/// exist: the file holds live session ids and learners' names, and SQLite gives its `-wal` and
/// `-shm` files the database file's permissions. An existing file or folder is left as it is.
/// Returns whether it created the file.
///
/// The file is made and migrated under a temporary name, in WAL mode, then linked into place
/// (which fails if another process got there first): it never appears half-made. An empty file
/// in its place would be switched to WAL by every process opening it, and SQLite does not wait
/// for the lock that takes: a server and a command started together on a new database would
/// fail at once ("database is locked").
async fn create_private(file: &std::path::Path) -> Result<bool, LtiError> {
    let mut new_file = std::fs::OpenOptions::new();
    new_file.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut new_file, 0o600);
    let parent = file.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(parent) = parent {
        create_private_folder(parent)?;
    }
    // SQLite would only say "unable to open database file".
    if file.is_dir() {
        return Err(LtiError::Storage(format!(
            "the database {} is a folder, not a file: name a file in it",
            file.display()
        )));
    }
    if file.exists() {
        return Ok(false);
    }
    if file.symlink_metadata().is_ok() {
        return Err(LtiError::Storage(format!(
            "the database {} is a link to a file that does not exist",
            file.display()
        )));
    }
    // A short name of its own, so that a long database file name still fits.
    let temporary = parent
        .unwrap_or(std::path::Path::new(""))
        .join(format!(".lti-tool-new-{:08x}", rand::random::<u32>()));
    new_file
        .open(&temporary)
        .map_err(|e| cannot_create(file, &e))?;
    let made = migrate_new_file(&temporary).await;
    let linked = made.map(|()| std::fs::hard_link(&temporary, file));
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut leftover = temporary.clone().into_os_string();
        leftover.push(suffix);
        let _ = std::fs::remove_file(leftover);
    }
    match linked {
        Ok(Ok(())) => Ok(true),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        // A file system without hard links: an empty file, which its first opener switches.
        Ok(Err(_)) => match new_file.open(file) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(cannot_create(file, &e)),
        },
        Err(e) => Err(cannot_create(file, &e)),
    }
}

/// "cannot create …", with a hint when the disk is full.
fn cannot_create(what: &std::path::Path, e: &dyn std::fmt::Display) -> LtiError {
    let message = e.to_string();
    let hint = if message.contains("disk is full") || message.contains("No space") {
        " (is its file system full?)"
    } else {
        ""
    };
    LtiError::Storage(format!("cannot create {}: {message}{hint}", what.display()))
}

/// Creates `folder` and those above it that are missing, readable only by the server's user.
fn create_private_folder(folder: &std::path::Path) -> Result<(), LtiError> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.recursive(true).create(folder).map_err(|e| {
        // "File exists" alone would not say what stands where a folder must be.
        let blocking = folder
            .ancestors()
            .find(|a| a.symlink_metadata().is_ok())
            .filter(|a| !a.is_dir());
        match blocking {
            Some(b) if !b.exists() => LtiError::Storage(format!(
                "cannot create the folder {}: {} is a link to nothing",
                folder.display(),
                b.display()
            )),
            Some(b) => LtiError::Storage(format!(
                "cannot create the folder {}: {} is a file",
                folder.display(),
                b.display()
            )),
            None => cannot_create(folder, &e),
        }
    })
}

/// Sets up the empty file at `path` as a database: WAL mode and every migration.
async fn migrate_new_file(path: &std::path::Path) -> Result<(), String> {
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let migrated = MIGRATOR
        .run_direct(&mut conn)
        .await
        .map_err(|e| e.to_string());
    let closed = conn.close().await.map_err(|e| e.to_string());
    migrated.and(closed)
}

/// Which file the database is (device and inode), to notice it being removed or replaced under a
/// running server: SQLite goes on writing to the open file, and all of that is lost at the stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity(u64, u64);

impl FileIdentity {
    /// The identity of the pool's database file now: `Ok(None)` when there is no such file (or
    /// no way to tell, off Unix); other errors (a folder made unreadable) say nothing about it.
    pub fn of(db: &Db) -> std::io::Result<Option<FileIdentity>> {
        let meta = match std::fs::metadata(db.connect_options().get_filename()) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Ok(Some(FileIdentity(meta.dev(), meta.ino())))
        }
        #[cfg(not(unix))]
        {
            let _ = meta;
            Ok(None)
        }
    }
}

/// The current time in Unix seconds.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Seconds nonces are kept past their expiry: more than any launch waits between its timestamp
/// check and its nonce's insert (the store waits at most 5 s for a lock), so a prune can never
/// delete the nonce a launch in flight is a replay of.
const NONCE_PRUNE_LAG: i64 = 60;

/// Rows deleted per table and statement when pruning: each delete holds the write lock briefly.
const PRUNE_BATCH: u64 = 500;

/// Deletes up to `batch` rows of `table` whose `expires_at` has passed, oldest first, through the
/// table's expiry index (each table with an `expires_at` column has one).
async fn prune_expired_rows(
    db: &Db,
    table: &'static str,
    now: i64,
    batch: i64,
) -> Result<u64, LtiError> {
    let done = sqlx::query(&format!(
        "DELETE FROM {table} WHERE rowid IN \
         (SELECT rowid FROM {table} WHERE expires_at < ? ORDER BY expires_at LIMIT ?)"
    ))
    .bind(now)
    .bind(batch)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Deletes expired rows: first admin sessions, admin login failures and old refusal counts (one
/// statement each), and the fork's rows (`fork::prune`); then, in small batches through their
/// indexes, nonces, sessions, hand-off tokens and the grade records of learners who last launched
/// more than `outcome_target_ttl` seconds ago, pausing between full batches so that launches never
/// wait long behind it. A clock that ran ahead cannot make a pruned nonce's launch replayable: see
/// `nonces`.
pub async fn prune_expired(db: &Db, now: i64, outcome_target_ttl: i64) -> Result<u64, LtiError> {
    let mut total = admin::prune(db, now).await?
        + usage::prune(db, now).await?
        + crate::fork::prune(db, now).await?;
    let batch = PRUNE_BATCH as i64;
    loop {
        let counts = [
            nonces::prune(db, now - NONCE_PRUNE_LAG, batch).await?,
            sessions::prune(db, now, batch).await?,
            handoffs::prune(db, now, batch).await?,
            outcomes::prune(db, now - outcome_target_ttl, batch).await?,
        ];
        total += counts.iter().sum::<u64>();
        if counts.iter().all(|&n| n < PRUNE_BATCH) {
            return Ok(total);
        }
        // More to go: let the launch writer take the write lock in between.
        rocket::tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rocket::async_test]
    async fn a_folder_where_the_file_goes_or_a_file_where_a_folder_goes_is_named() {
        let dir = std::env::temp_dir().join(format!("lti-blocked-{}", sessions::new_id()));
        std::fs::create_dir_all(dir.join("folder")).unwrap();
        std::fs::write(dir.join("file"), "").unwrap();
        let said = |result: Result<bool, LtiError>| match result {
            Err(LtiError::Storage(said)) => said,
            other => panic!("{other:?}"),
        };
        let folder = said(create_private(&dir.join("folder")).await);
        assert!(folder.ends_with("folder is a folder, not a file: name a file in it"));
        let under_file = said(create_private(&dir.join("file/sub/db.sqlite")).await);
        assert!(under_file.contains("file/sub: "), "{under_file}");
        assert!(under_file.ends_with("file is a file"), "{under_file}");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.join("gone"), dir.join("link")).unwrap();
            let as_file = said(create_private(&dir.join("link")).await);
            assert!(as_file.ends_with("link is a link to a file that does not exist"));
            let as_folder = said(create_private(&dir.join("link/db.sqlite")).await);
            assert!(
                as_folder.ends_with("link is a link to nothing"),
                "{as_folder}"
            );
            assert!(
                !dir.join("gone").exists(),
                "nothing is made through the link"
            );
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn urls_that_ask_for_no_new_file_are_read_as_sqlx_reads_them() {
        for (url, no_new_file) in [
            ("sqlite://a.db", false),
            ("sqlite://a.db?mode=rwc", false),
            ("sqlite://a.db?mode=ro", true),
            ("sqlite://a.db?mode=r%6F", true),
            ("sqlite://a.db?mo%64e=rw", true),
            ("sqlite://a.db?mode=rw&mode=rwc", false),
            ("sqlite://a.db?mode=rwc&mode=rw", false),
            ("sqlite://a.db?mode=ro&mode=rwc", true),
            ("sqlite://a.db?cache=private&immutable=1", true),
            ("sqlite://a.db?immutable=true&immutable=false", false),
        ] {
            assert_eq!(asks_for_no_new_file(url), no_new_file, "{url}");
            // sqlx accepts each of them, so these are the options it will open with.
            let sqlx_says = SqliteConnectOptions::from_str(url).unwrap().to_url_lossy();
            let sqlx_read_only = sqlx_says
                .query_pairs()
                .any(|(k, v)| k == "mode" && v == "ro")
                || sqlx_says.query_pairs().any(|(k, _)| k == "immutable");
            if sqlx_read_only {
                assert!(no_new_file, "{url}");
            }
        }
    }

    #[rocket::async_test]
    async fn a_new_database_file_appears_already_in_wal_mode_and_only_once() {
        let dir = std::env::temp_dir().join(format!("lti-new-{}", sessions::new_id()));
        let file = dir.join("data/new.db");
        assert!(create_private(&file).await.unwrap(), "created");
        // Bytes 18 and 19 of the header are 2 in WAL mode: nobody opening it switches it.
        let header = std::fs::read(&file).unwrap();
        assert!(header.len() >= 100 && header[18] == 2 && header[19] == 2);
        assert!(!create_private(&file).await.unwrap(), "found, not created");
        let names: Vec<_> = std::fs::read_dir(dir.join("data"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["new.db"], "no temporary file is left");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[cfg(unix)]
    #[rocket::async_test]
    async fn a_removed_or_replaced_database_file_changes_identity() {
        let dir = std::env::temp_dir().join(format!("lti-identity-{}", sessions::new_id()));
        let file = dir.join("db.sqlite");
        let db = open(&format!("sqlite://{}", file.display())).await.unwrap();
        let first = FileIdentity::of(&db).unwrap();
        assert!(first.is_some());
        assert_eq!(FileIdentity::of(&db).unwrap(), first);
        // Renamed over by another file (as a restore does), then removed.
        let other = dir.join("other");
        std::fs::write(&other, b"").unwrap();
        std::fs::rename(&other, &file).unwrap();
        let replaced = FileIdentity::of(&db).unwrap();
        assert!(replaced.is_some() && replaced != first);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(FileIdentity::of(&db).unwrap(), None);
        db.close().await;
    }

    #[rocket::async_test]
    async fn a_database_that_cannot_be_set_up_leaves_no_file_behind() {
        let dir = std::env::temp_dir().join(format!("lti-unmade-{}", sessions::new_id()));
        let file = dir.join("db.sqlite");
        // Read-only: a new file could not be given its schema, so none is made.
        let e = open(&format!("sqlite://{}?mode=ro", file.display()))
            .await
            .expect_err("read-only");
        assert!(e.to_string().contains(&*file.to_string_lossy()), "{e}");
        assert!(!file.exists());
        std::fs::create_dir_all(&dir).unwrap();
        // An existing file is never removed.
        std::fs::write(&file, b"").unwrap();
        assert!(open(&format!("sqlite://{}?mode=ro", file.display()))
            .await
            .is_err());
        assert!(file.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[rocket::async_test]
    async fn a_damaged_database_says_so() {
        let dir = std::env::temp_dir().join(format!("lti-damaged-{}", sessions::new_id()));
        let file = dir.join("db.sqlite");
        let url = format!("sqlite://{}", file.display());
        let db = open(&url).await.unwrap();
        for at in 0..2000 {
            sqlx::query(
                "INSERT INTO admin_login_failures (address, at) VALUES ('some address', ?)",
            )
            .bind(at)
            .execute(&db)
            .await
            .unwrap();
        }
        close(&db).await;
        // Every page but the first (the header and the schema) overwritten.
        let mut bytes = std::fs::read(&file).unwrap();
        let page = 4096;
        for b in &mut bytes[page..] {
            *b = 0x5a;
        }
        std::fs::write(&file, bytes).unwrap();
        let mut conn = SqliteConnectOptions::from_str(&url)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let e = sqlx::query("SELECT COUNT(*) FROM admin_login_failures")
            .execute(&mut conn)
            .await
            .expect_err("damaged");
        let said = LtiError::from(e).to_string();
        assert!(said.contains("damaged"), "{said}");
        conn.close().await.unwrap();
        // Met at start (or by the command line), too.
        let e = open(&url).await.expect_err("damaged");
        assert!(e.to_string().contains("damaged"), "{e}");
        // A file that is no database at all.
        std::fs::write(&file, vec![0x5a; 8192]).unwrap();
        let e = open(&url).await.expect_err("not a database");
        assert!(e.to_string().contains("damaged"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[rocket::async_test]
    async fn a_write_lock_held_too_long_says_nothing_changed_and_to_try_again() {
        let dir = std::env::temp_dir().join(format!("lti-busy-{}", sessions::new_id()));
        let url = format!("sqlite://{}", dir.join("db.sqlite").display());
        let db = open(&url).await.unwrap();
        let mut holder = db.acquire().await.unwrap().detach();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut holder)
            .await
            .unwrap();
        let mut other = db.acquire().await.unwrap().detach();
        sqlx::query("PRAGMA busy_timeout = 10")
            .execute(&mut other)
            .await
            .unwrap();
        let refused = sqlx::query("INSERT INTO admin_login_failures (address, at) VALUES ('a', 1)")
            .execute(&mut other)
            .await
            .unwrap_err();
        assert!(crate::error::is_busy(&refused), "{refused}");
        let said = LtiError::from(refused).to_string();
        assert!(said.contains("nothing was changed; try again"), "{said}");
        sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[rocket::async_test]
    async fn closing_keeps_no_writer_waiting_on_a_long_reader() {
        let dir = std::env::temp_dir().join(format!("lti-close-{}", sessions::new_id()));
        let url = format!("sqlite://{}", dir.join("db.sqlite").display());
        let server = open(&url).await.unwrap();
        let insert = "INSERT INTO admin_login_failures (address, at) VALUES ('a', 1)";
        sqlx::query(insert).execute(&server).await.unwrap();
        // A backup reads from an older snapshot while the server writes on.
        let mut backup = server.acquire().await.unwrap().detach();
        sqlx::query("BEGIN").execute(&mut backup).await.unwrap();
        sqlx::query("SELECT COUNT(*) FROM admin_login_failures")
            .execute(&mut backup)
            .await
            .unwrap();
        sqlx::query(insert).execute(&server).await.unwrap();
        // The command line closes its database meanwhile: quickly, and the server's next write
        // does not wait for it.
        let cli = open(&url).await.unwrap();
        let started = std::time::Instant::now();
        let (note, written) = rocket::tokio::join!(close(&cli), async {
            rocket::tokio::time::sleep(Duration::from_millis(20)).await;
            let started = std::time::Instant::now();
            sqlx::query(insert).execute(&server).await.unwrap();
            started.elapsed()
        });
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(written < Duration::from_secs(1), "{written:?}");
        // Said to whoever closed (the server logs it).
        assert_eq!(note, Some(CloseNote::WalKept));
        sqlx::query("ROLLBACK").execute(&mut backup).await.unwrap();
        backup.close().await.unwrap();
        server.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[rocket::async_test]
    async fn a_connection_whose_transaction_sqlite_ended_is_not_reused() {
        let dir = std::env::temp_dir().join(format!("lti-step-{}", sessions::new_id()));
        let file = dir.join("db.sqlite");
        let db = open(&format!("sqlite://{}", file.display())).await.unwrap();
        // What a full disk does: SQLite ends the transaction by itself, sqlx's rollback fails.
        let mut tx = db.begin().await.unwrap();
        sqlx::query("ROLLBACK").execute(&mut *tx).await.unwrap();
        drop(tx);
        // Until it is back in the pool (or closed), so the next transaction would get it.
        for _ in 0..100 {
            if db.num_idle() > 0 {
                break;
            }
            rocket::tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // The next transactions fail and are dropped (errors in the middle of a request).
        for n in 0..3 {
            let mut tx = db.begin().await.unwrap();
            sqlx::query("INSERT INTO admin_login_failures (address, at) VALUES ('a', ?)")
                .bind(n)
                .execute(&mut *tx)
                .await
                .unwrap();
            drop(tx);
        }
        // Another writer (the command line) gets the write lock at once: none is left held.
        let mut other = SqliteConnectOptions::from_str(&format!("sqlite://{}", file.display()))
            .unwrap()
            .busy_timeout(Duration::from_millis(200))
            .connect()
            .await
            .unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .expect("the write lock is free");
        sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
        other.close().await.unwrap();
        db.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
