//! The in-memory front of the store, for speed under bursts of launches.
//!
//! One task owns a connection of its own and does two things for all requests at once:
//! - it commits the launches that arrive together in one transaction (group commit), so
//!   concurrent launches neither queue on SQLite's write lock (whose busy handler sleeps) nor pay
//!   a commit each; a launch is answered only after the transaction with its own write committed;
//! - it keeps small caches of consumers and sessions honest: `PRAGMA data_version` on its
//!   connection changes when any *other* connection commits (the command line in another process,
//!   a logout, the pruning task), and then both caches are emptied. A cached session is served
//!   only after such a check that started after the request arrived, so a session ended before a
//!   request arrived is never served from memory. A cached consumer is used to verify a launch at
//!   once, but the launch is written only if, under the write lock, the consumer is still enabled
//!   with the same secret; otherwise it is verified again from SQLite.
//!   The task's own commits do not change the value; it updates the caches itself instead.
//!
//! sqlx runs each SQLite connection on a thread of its own, so every query costs two thread
//! switches; sharing one check and one commit among all waiting requests is what makes this fast.
//!
//! A second task copies committed pages from the WAL into the database file (a passive
//! checkpoint) soon after each commit, on another connection. Otherwise the writer does it itself,
//! and every launch waiting on that commit waits for the copy and its fsyncs. The writer's own
//! checkpoint stays on as the backstop that lets the WAL start over: passive checkpoints never
//! wait, so under a steady stream of commits only the writer finds the WAL fully copied between
//! two transactions. It runs every 10000 pages rather than SQLite's 1000 (`store::open` sets that
//! for every connection): under a burst that is about once a second instead of a dozen times,
//! each a stall of a few milliseconds for every launch in flight (launch p99 halved, launches/s up
//! by about 15 %).

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rocket::futures::FutureExt;
use rocket::tokio::sync::{mpsc, oneshot, watch};
use rocket::tokio::task::JoinHandle;
use sqlx::{ConnectOptions, Connection, SqliteConnection};

use super::consumers::{self, Consumer};
use super::launches::{record_batch, LaunchWrite, Recorded};
use super::sessions::{self, Session};
use super::Db;
use crate::error::LtiError;

/// Most jobs handled in one round (keeps statements short and the write lock held briefly).
pub(super) const MAX_BATCH: usize = 64;
/// Most scheduler passes a round of checks waits for more checks to join it.
const JOIN_PASSES: usize = 3;
/// Requests waiting for the task; more wait on the channel (back-pressure, not memory).
const QUEUE: usize = 1024;
/// Sessions kept in memory; past this, new ones are read from SQLite.
const MAX_SESSIONS: usize = 2048;
/// Bytes of launch parameters the cached sessions may hold in all: launches are 1-4 KiB, but a
/// body may carry up to `launch_body_limit`, and 2048 of those would take far more memory.
const MAX_SESSION_BYTES: usize = 8 << 20;
/// Consumers kept in memory.
const MAX_CONSUMERS: usize = 256;
/// How soon after a commit its pages are copied into the database file (see the module docs).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(20);

enum Job {
    Write(
        Box<LaunchWrite>,
        oneshot::Sender<Result<Recorded, LtiError>>,
    ),
    Check(oneshot::Sender<Result<(), LtiError>>),
    /// Closes the task's connections (and the checkpointer's) once the jobs before it are done.
    Close(oneshot::Sender<()>),
}

#[derive(Default)]
struct Caches {
    /// Bumped whenever the caches are emptied; a value read from SQLite under an older
    /// generation is not cached.
    generation: u64,
    consumers: HashMap<String, Consumer>,
    sessions: HashMap<String, Session>,
    /// What the cached sessions' launch parameters take ([`launch_bytes`]).
    session_bytes: usize,
}

impl Caches {
    fn clear(&mut self) {
        self.generation += 1;
        self.consumers.clear();
        self.sessions.clear();
        self.session_bytes = 0;
    }

    /// Caches a session unless that would pass either limit.
    fn insert_session(&mut self, session: Session) {
        let bytes = launch_bytes(&session);
        if self.sessions.len() < MAX_SESSIONS && self.session_bytes + bytes <= MAX_SESSION_BYTES {
            if let Some(old) = self.sessions.insert(session.id.clone(), session) {
                self.session_bytes -= launch_bytes(&old);
            }
            self.session_bytes += bytes;
        }
    }

    fn remove_session(&mut self, id: &str) {
        if let Some(old) = self.sessions.remove(id) {
            self.session_bytes -= launch_bytes(&old);
        }
    }
}

/// About what a session's launch parameters take in memory.
fn launch_bytes(session: &Session) -> usize {
    let params = &session.launch.params;
    params.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>() + 48 * params.len()
}

/// The handle requests use; cheap to clone.
#[derive(Clone)]
pub struct StoreFront {
    jobs: mpsc::Sender<Job>,
    caches: Arc<Mutex<Caches>>,
}

fn lock(caches: &Mutex<Caches>) -> MutexGuard<'_, Caches> {
    // A panic while holding the lock cannot leave the maps inconsistent; carry on.
    caches.lock().unwrap_or_else(|p| p.into_inner())
}

impl StoreFront {
    /// Opens the task's own connection (same settings as the pool) and starts the task.
    pub async fn start(db: &Db) -> Result<Self, LtiError> {
        // Batch statements differ by size: room for each size of each.
        let options = (*db.connect_options())
            .clone()
            .statement_cache_capacity(256)
            // Launches touch random pages of the nonce and session indexes.
            .pragma("cache_size", "-4096")
            // The batch table (see `launches`) never touches a file.
            .pragma("temp_store", "memory");
        let conn = options.connect().await?;
        let (jobs, queue) = mpsc::channel(QUEUE);
        let caches = Arc::new(Mutex::new(Caches::default()));
        let commits = Arc::new(AtomicU64::new(0));
        let checkpoints = (*db.connect_options()).clone();
        let (stop, stopped) = watch::channel(false);
        let checkpointer =
            rocket::tokio::spawn(checkpoint_forever(checkpoints, commits.clone(), stopped));
        let closing = Closing { stop, checkpointer };
        rocket::tokio::spawn(run(
            options,
            Some(conn),
            queue,
            caches.clone(),
            commits,
            closing,
        ));
        Ok(StoreFront { jobs, caches })
    }

    async fn send<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T, LtiError>>) -> Job,
    ) -> Result<T, LtiError> {
        let (reply, answer) = oneshot::channel();
        let closed = || LtiError::Storage("the store is closed (the server is stopping)".into());
        self.jobs.send(job(reply)).await.map_err(|_| closed())?;
        answer
            .await
            .map_err(|_| LtiError::Storage("the store task did not answer (see the log)".into()))?
    }

    /// Records a launch; returns once its transaction has committed.
    pub async fn record_launch(&self, write: LaunchWrite) -> Result<Recorded, LtiError> {
        self.send(|reply| Job::Write(Box::new(write), reply)).await
    }

    /// Closes the task's connection and the checkpointer's, for a server that has stopped serving
    /// (with any connection still open, SQLite leaves the `-wal` and `-shm` files behind).
    /// Requests sent later get a storage error.
    pub async fn close(&self) {
        let (reply, done) = oneshot::channel();
        if self.jobs.send(Job::Close(reply)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// Waits for a check of other connections' commits that started after this call.
    async fn fresh(&self) -> Result<u64, LtiError> {
        self.send(Job::Check).await?;
        Ok(lock(&self.caches).generation)
    }

    /// The consumer with this key: from memory when `cached` and it is there (a launch verified
    /// with it is written only if it is still current, see `record_batch`), else from SQLite.
    pub async fn consumer(
        &self,
        db: &Db,
        key: &str,
        cached: bool,
    ) -> Result<Option<Consumer>, LtiError> {
        let generation = {
            let caches = lock(&self.caches);
            if let Some(c) = caches.consumers.get(key).filter(|_| cached) {
                return Ok(Some(c.clone()));
            }
            caches.generation
        };
        let found = consumers::find(db, key).await?;
        let mut caches = lock(&self.caches);
        match &found {
            Some(c)
                if caches.generation == generation && caches.consumers.len() < MAX_CONSUMERS =>
            {
                caches.consumers.insert(key.to_string(), c.clone());
            }
            _ => {
                caches.consumers.remove(key);
            }
        }
        Ok(found)
    }

    /// The session with this id, expired or not, as the database has it now.
    pub async fn session(&self, db: &Db, id: &str) -> Result<Option<Session>, LtiError> {
        let generation = self.fresh().await?;
        if let Some(s) = lock(&self.caches).sessions.get(id) {
            return Ok(Some(s.clone()));
        }
        let found = sessions::find(db, id).await?;
        if let Some(s) = &found {
            let mut caches = lock(&self.caches);
            if caches.generation == generation {
                caches.insert_session(s.clone());
            }
        }
        Ok(found)
    }
}

/// How the task stops the checkpointer when it closes.
struct Closing {
    stop: watch::Sender<bool>,
    checkpointer: JoinHandle<()>,
}

async fn run(
    options: sqlx::sqlite::SqliteConnectOptions,
    mut conn: Option<SqliteConnection>,
    mut queue: mpsc::Receiver<Job>,
    caches: Arc<Mutex<Caches>>,
    commits: Arc<AtomicU64>,
    closing: Closing,
) {
    let mut seen_version = None;
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.recv().await {
        jobs.push(first);
        // Whatever queued up during the last round goes into this one. A round of checks alone
        // then gives requests that are ready to send theirs a few passes of the scheduler to
        // join it (it costs the same however many it carries), but only while that brings more
        // and the batch is not full: under a burst each pass waits for every runnable task.
        // A round with launches goes at once: waiting made rounds larger but kept the launches
        // already taken waiting, and launches were slower for it.
        let mut passes = 0;
        loop {
            let before = jobs.len();
            while jobs.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            let grew = passes == 0 || jobs.len() > before;
            let launches = jobs.iter().any(|j| matches!(j, Job::Write(..)));
            if launches || jobs.len() >= MAX_BATCH || !grew || passes == JOIN_PASSES {
                break;
            }
            rocket::tokio::task::yield_now().await;
            passes += 1;
        }
        let mut writes = Vec::new();
        let mut write_replies = Vec::new();
        let mut check_replies = Vec::new();
        let mut close = None;
        for job in jobs.drain(..) {
            match job {
                Job::Write(w, reply) => {
                    writes.push(*w);
                    write_replies.push(reply);
                }
                Job::Check(reply) => check_replies.push(reply),
                Job::Close(reply) => close = Some(reply),
            }
        }
        // A panic here (a log line whose stdout is gone panics in a debug build; a bug) must not
        // end the task, or every later launch would fail until a restart: the round's requests
        // that were not answered get a storage error (their replies are dropped), and the next
        // round starts from a new connection and empty caches.
        let answered = AssertUnwindSafe(async {
            match round(&options, &mut conn, &mut seen_version, &caches, &writes).await {
                Ok(outcomes) => {
                    if !writes.is_empty() {
                        commits.fetch_add(1, Ordering::Relaxed);
                    }
                    for reply in check_replies {
                        let _ = reply.send(Ok(()));
                    }
                    for (reply, outcome) in write_replies.into_iter().zip(outcomes) {
                        let _ = reply.send(Ok(outcome));
                    }
                }
                Err(e) => {
                    log::error!(
                        "store round failed ({} launches not recorded): {e}",
                        writes.len()
                    );
                    // Start again from a new connection and empty caches.
                    conn = None;
                    seen_version = None;
                    lock(&caches).clear();
                    // With the caches empty, a check's caller reads from SQLite, which often still
                    // serves reads when writes fail (a full disk, another writer holding the lock);
                    // when it does not, that read fails in turn.
                    for reply in check_replies {
                        let _ = reply.send(Ok(()));
                    }
                    for reply in write_replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        })
        .catch_unwind()
        .await;
        if answered.is_err() {
            conn = None;
            seen_version = None;
            lock(&caches).clear();
        }
        if let Some(reply) = close {
            queue.close();
            if let Some(conn) = conn.take() {
                let _ = conn.close().await;
            }
            let _ = closing.stop.send(true);
            let _ = closing.checkpointer.await;
            let _ = reply.send(());
            return;
        }
    }
}

/// One round: the launches, if any, else just the check for other connections' commits.
async fn round(
    options: &sqlx::sqlite::SqliteConnectOptions,
    conn: &mut Option<SqliteConnection>,
    seen_version: &mut Option<i64>,
    caches: &Mutex<Caches>,
    writes: &[LaunchWrite],
) -> Result<Vec<Recorded>, LtiError> {
    let conn = match conn {
        Some(c) => c,
        None => conn.insert(options.connect().await?),
    };
    let (outcomes, version) = if writes.is_empty() {
        let version = sqlx::query_scalar("PRAGMA data_version")
            .fetch_one(&mut *conn)
            .await?;
        (Vec::new(), version)
    } else {
        record_batch(conn, writes).await?
    };
    let mut caches = lock(caches);
    if *seen_version != Some(version) {
        caches.clear();
        *seen_version = Some(version);
    }
    for (write, outcome) in writes.iter().zip(&outcomes) {
        match outcome {
            Recorded::Accepted => {}
            Recorded::Replayed | Recorded::Forgotten => continue,
            Recorded::ConsumerChanged => {
                caches.consumers.remove(&write.consumer_key);
                continue;
            }
        }
        if let Some(old) = &write.replaces {
            caches.remove_session(old);
            // A read of `old` from SQLite still in flight must not put it back.
            caches.generation += 1;
        }
        if let Some(new) = &write.session {
            caches.insert_session(Session {
                id: new.id.clone(),
                launch: new.launch.clone(),
                expires_at: new.expires_at,
            });
        }
    }
    Ok(outcomes)
}

/// Runs a passive checkpoint on a connection of its own (not one a request could be waiting for)
/// shortly after the writer commits (see the module docs); does nothing while nothing is written.
/// Closes its connection and returns when `stop` turns true.
async fn checkpoint_forever(
    options: sqlx::sqlite::SqliteConnectOptions,
    commits: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = rocket::tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(rocket::tokio::time::MissedTickBehavior::Delay);
    let (mut conn, mut copied, mut failing) = (None::<SqliteConnection>, 0, false);
    loop {
        rocket::tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => {
                if let Some(conn) = conn.take() {
                    let _ = conn.close().await;
                }
                return;
            }
        }
        let now = commits.load(Ordering::Relaxed);
        if now == copied {
            continue;
        }
        match checkpoint(&options, &mut conn).await {
            // Done only when every page in the WAL is in the file; a reader or the writer may
            // have held some back, and then the next tick tries again.
            Ok(all_copied) => {
                if all_copied {
                    copied = now;
                }
                failing = false;
            }
            // Storage trouble shows in the launches' own errors; one line here is enough (and
            // a log line that cannot be written must not end the task: see `run`).
            Err(e) => {
                if !failing {
                    let _ = std::panic::catch_unwind(|| {
                        log::warn!(
                            "background checkpoint failed (the writer will do it itself): {e}"
                        )
                    });
                }
                failing = true;
                conn = None;
            }
        }
    }
}

/// One passive checkpoint: whether every page in the WAL is now in the database file.
async fn checkpoint(
    options: &sqlx::sqlite::SqliteConnectOptions,
    conn: &mut Option<SqliteConnection>,
) -> Result<bool, LtiError> {
    let conn = match conn {
        Some(c) => c,
        None => conn.insert(options.connect().await?),
    };
    // PASSIVE copies what it can without waiting for readers or writers.
    let (busy, log, checkpointed): (i64, i64, i64) =
        sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(conn)
            .await?;
    // While another connection's checkpoint runs, SQLite answers (1, -1, -1): nothing copied.
    Ok(busy == 0 && log == checkpointed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lti::launch::LaunchData;

    fn session(id: &str, value_len: usize) -> Session {
        let params = vec![("custom_big".to_string(), "x".repeat(value_len))];
        Session {
            id: id.into(),
            launch: Arc::new(LaunchData::new("k".into(), params)),
            expires_at: 0,
        }
    }

    #[test]
    fn the_session_cache_is_bounded_by_bytes_as_well_as_by_count() {
        let mut caches = Caches::default();
        // Sessions of the largest launches: far fewer than MAX_SESSIONS fit.
        for i in 0..MAX_SESSIONS {
            caches.insert_session(session(&format!("big-{i}"), 60_000));
        }
        assert!(caches.sessions.len() < MAX_SESSION_BYTES / 60_000 + 1);
        assert!(caches.session_bytes <= MAX_SESSION_BYTES);
        let full = caches.sessions.len();
        // The same id again does not count twice; a removal gives its room back.
        caches.insert_session(session("big-0", 60_000));
        assert_eq!(caches.sessions.len(), full);
        let before = caches.session_bytes;
        caches.remove_session("big-0");
        assert!(caches.session_bytes < before);
        caches.insert_session(session("small", 100));
        assert!(caches.sessions.contains_key("small"));
        caches.clear();
        assert_eq!((caches.sessions.len(), caches.session_bytes), (0, 0));
        // Ordinary launches still fill the cache up to its count.
        for i in 0..MAX_SESSIONS + 10 {
            caches.insert_session(session(&format!("s-{i}"), 1_500));
        }
        assert_eq!(caches.sessions.len(), MAX_SESSIONS);
    }
}
