//! Recording verified launches: each launch's nonce, the session it starts and the session it
//! replaces, its hand-off token, its grade record (`outcome_targets`) and its consumer's launch
//! count, for many launches in one transaction (see `front` for who calls it and when).

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use sqlx::{Row, SqliteConnection};

use super::front::MAX_BATCH;
use super::handoffs::NewHandoff;
use super::outcomes::{self, TargetChange};
use crate::error::LtiError;
use crate::lti::launch::LaunchData;

/// A session to store, already serialised by the request's own task.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The random id (the cookie value).
    pub id: String,
    /// What the table keys it by (`sessions::stored_id`).
    pub stored_id: String,
    /// The consumer that signed the launch.
    pub consumer_key: String,
    /// `user_id`, or empty.
    pub user_id: String,
    /// The raw `roles` parameter.
    pub roles: String,
    /// JSON of the launch parameters.
    pub launch_json: String,
    /// The launch itself (for the session cache).
    pub launch: Arc<LaunchData>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

impl NewSession {
    /// A session for a launch, created `now` and ending at `expires_at`.
    pub fn new(
        id: &str,
        launch: &Arc<LaunchData>,
        now: i64,
        expires_at: i64,
    ) -> Result<Self, LtiError> {
        Ok(NewSession {
            id: id.to_string(),
            stored_id: super::sessions::stored_id(id),
            consumer_key: launch.consumer_key.clone(),
            user_id: launch.user_id().to_string(),
            roles: launch.get("roles").unwrap_or("").to_string(),
            launch_json: serde_json::to_string(&launch.params)
                .map_err(|e| LtiError::Storage(e.to_string()))?,
            launch: Arc::clone(launch),
            created_at: now,
            expires_at,
        })
    }
}

/// What one verified launch writes.
#[derive(Clone)]
pub struct LaunchWrite {
    /// The consumer that signed it.
    pub consumer_key: String,
    /// The consumer's secret as stored (`Consumer::stored_secret`) when the launch was verified:
    /// the launch is written only if that is still the stored secret and the consumer is enabled.
    pub stored_secret: String,
    /// Its `oauth_nonce`.
    pub nonce: String,
    /// When the nonce may be forgotten (its timestamp can no longer pass).
    pub nonce_expires_at: i64,
    /// Its `oauth_timestamp`: the launch is refused when its consumer has a pruned nonce signed
    /// as late or later (see `nonces`), as it could be a replay of one.
    pub signed_at: i64,
    /// The session it starts; `None` when it is refused even though its nonce is spent.
    pub session: Option<NewSession>,
    /// The browser's previous session, which an accepted launch ends.
    pub replaces: Option<String>,
    /// The single-use token that reopens the new session in another window.
    pub handoff: Option<NewHandoff>,
}

/// The outcome of recording a launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The nonce was new: it is spent and the session (if any) exists.
    Accepted,
    /// The consumer already used this nonce: nothing was written.
    Replayed,
    /// Its nonce may have been pruned already (by a clock that ran ahead, here or in another
    /// process: see `nonces`), so it cannot be told from a replay: nothing was written.
    Forgotten,
    /// The consumer's secret or state is no longer the one the launch was verified with (the
    /// command line changed it meanwhile): nothing was written; verify again.
    ConsumerChanged,
}

/// The launches of one round, one row each (TEMP: only the connection recording them sees it).
const BATCH_TABLE: &str = "CREATE TEMP TABLE IF NOT EXISTS launch_batch (
    seq INTEGER PRIMARY KEY, consumer_key TEXT NOT NULL, stored_secret TEXT NOT NULL,
    nonce TEXT NOT NULL, nonce_expires_at INTEGER NOT NULL, signed_at INTEGER NOT NULL,
    spent_by TEXT NOT NULL,
    replaces TEXT, session_id TEXT, user_id TEXT, roles TEXT, launch TEXT, created_at INTEGER,
    expires_at INTEGER, handoff_token TEXT, handoff_session TEXT, handoff_sealed TEXT,
    handoff_expires_at INTEGER, outcome_link TEXT,
    outcome_user TEXT, outcome_service_url TEXT, outcome_sourcedid TEXT, outcome_name TEXT,
    accepted INTEGER NOT NULL DEFAULT 0)";

/// Columns bound per launch, in `bind_batch` order.
const BATCH_COLUMNS: &str = "seq, consumer_key, stored_secret, nonce, nonce_expires_at, \
    signed_at, spent_by, \
    replaces, session_id, user_id, roles, launch, created_at, expires_at, handoff_token, \
    handoff_session, handoff_sealed, handoff_expires_at, outcome_link, outcome_user, outcome_service_url, outcome_sourcedid, \
    outcome_name";
const BATCH_ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// Records launches in one transaction on `conn` (which must not be in one), in one round trip
/// whatever their number. Under the write lock:
/// 1. each nonce is inserted, marked with the launch that spent it, if its consumer is still
///    enabled with the stored secret the launch was verified with, and if it was signed after
///    every pruned nonce of its consumer (`nonce_prune_marks`, which any process may have raised
///    since this one started, and `nonce_pruning.all_signed_up_to`); a nonce seen before, or
///    twice in the batch, keeps its first owner: the other launches are replays;
/// 2. the launches that own their nonce end the sessions they replace, start theirs with their
///    hand-off tokens and outcome services (staff forget theirs, see `outcomes::launch_target`),
///    and count towards their consumer's launches;
/// 3. one row comes back: `PRAGMA data_version` and each launch's outcome; then it commits.
///
/// Every insert and update is `OR FAIL` (the deletes can break no constraint): a broken constraint stops the script without undoing the statement's
/// earlier rows, so SQLite keeps no per-statement undo journal (about 5 % of a launch's CPU); the
/// whole transaction is rolled back on any error anyway.
///
/// Returns each launch's outcome and the data version. When the script fails, the transaction is
/// rolled back explicitly (SQLite may or may not have done it); on any error the caller must not
/// reuse the connection.
pub async fn record_batch(
    conn: &mut SqliteConnection,
    writes: &[LaunchWrite],
) -> Result<(Vec<Recorded>, i64), LtiError> {
    let sql = script(writes.len());
    let rows = match bind_batch(sql.as_ref(), writes).fetch_all(&mut *conn).await {
        Ok(rows) => rows,
        Err(e) => {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            return Err(e.into());
        }
    };
    // Committed: from here on nothing is undone. The row is built so that it cannot be missing
    // or short; if it were, these launches are stored but their answers are errors.
    read_outcomes(&rows, writes.len()).inspect_err(|e| {
        log::error!("a launch batch committed but its outcomes could not be read: {e}");
    })
}

/// Scripts already built, by launch count: each is built once, not for every round.
static SCRIPTS: [OnceLock<String>; MAX_BATCH + 1] = [const { OnceLock::new() }; MAX_BATCH + 1];

/// The script for `count` launches.
fn script(count: usize) -> Cow<'static, str> {
    match SCRIPTS.get(count) {
        Some(built) => Cow::Borrowed(built.get_or_init(|| build_script(count)).as_str()),
        None => Cow::Owned(build_script(count)),
    }
}

fn build_script(count: usize) -> String {
    let rows = vec![BATCH_ROW; count].join(", ");
    let upsert = outcomes::UPSERT;
    const MARK: &str = "max(coalesce((SELECT m.signed_up_to FROM nonce_prune_marks m \
        WHERE m.consumer_key = b.consumer_key), -1), \
        coalesce((SELECT all_signed_up_to FROM nonce_pruning WHERE id = 1), -1))";
    format!(
        "{BATCH_TABLE};
        BEGIN IMMEDIATE;
        DELETE FROM temp.launch_batch;
        INSERT OR FAIL INTO temp.launch_batch ({BATCH_COLUMNS}) VALUES {rows};
        INSERT OR FAIL INTO nonces (consumer_key, nonce, expires_at, signed_at, spent_by)
            SELECT b.consumer_key, b.nonce, b.nonce_expires_at, b.signed_at, b.spent_by
            FROM temp.launch_batch b JOIN consumers c ON c.consumer_key = b.consumer_key
                AND c.enabled = 1 AND c.secret = b.stored_secret
            WHERE b.signed_at > {MARK} ORDER BY b.seq
            ON CONFLICT (consumer_key, nonce) DO NOTHING;
        UPDATE OR FAIL temp.launch_batch SET accepted = 1 WHERE EXISTS (SELECT 1 FROM nonces n
            WHERE n.consumer_key = launch_batch.consumer_key AND n.nonce = launch_batch.nonce
            AND n.spent_by = launch_batch.spent_by);
        DELETE FROM sessions WHERE id IN
            (SELECT replaces FROM temp.launch_batch WHERE accepted = 1 AND session_id IS NOT NULL);
        INSERT OR FAIL INTO sessions (id, consumer_key, user_id, roles, launch, created_at, expires_at)
            SELECT session_id, consumer_key, user_id, roles, launch, created_at, expires_at
            FROM temp.launch_batch WHERE accepted = 1 AND session_id IS NOT NULL;
        INSERT OR FAIL INTO handoffs (token, session_id, sealed_session, expires_at)
            SELECT handoff_token, handoff_session, handoff_sealed, handoff_expires_at
            FROM temp.launch_batch
            WHERE accepted = 1 AND session_id IS NOT NULL AND handoff_token IS NOT NULL;
        DELETE FROM outcome_targets WHERE (consumer_key, resource_link_id, user_id) IN
            (SELECT consumer_key, outcome_link, outcome_user FROM temp.launch_batch
             WHERE accepted = 1 AND session_id IS NOT NULL AND outcome_link IS NOT NULL
                AND outcome_service_url IS NULL);
        INSERT OR FAIL INTO outcome_targets (consumer_key, resource_link_id, user_id, service_url,
                sourcedid, display_name, updated_at)
            SELECT consumer_key, outcome_link, outcome_user, outcome_service_url,
                outcome_sourcedid, outcome_name, created_at
            FROM temp.launch_batch
            WHERE accepted = 1 AND session_id IS NOT NULL AND outcome_service_url IS NOT NULL
            ORDER BY seq {upsert};
        UPDATE OR FAIL consumers SET launch_count = launch_count + u.launches, last_launch_at = u.last
            FROM (SELECT consumer_key, COUNT(*) AS launches, MAX(created_at) AS last
                  FROM temp.launch_batch WHERE accepted = 1 AND session_id IS NOT NULL
                  GROUP BY consumer_key) AS u
            WHERE consumers.consumer_key = u.consumer_key;
        SELECT (SELECT data_version FROM pragma_data_version()),
            coalesce(group_concat(CASE WHEN b.accepted = 1 THEN 'A'
                              WHEN c.consumer_key IS NULL THEN 'C'
                              WHEN b.signed_at <= {MARK} THEN 'F' ELSE 'R' END,
                          '' ORDER BY b.seq), '')
            FROM temp.launch_batch b LEFT JOIN consumers c ON c.consumer_key = b.consumer_key
                AND c.enabled = 1 AND c.secret = b.stored_secret;
        COMMIT"
    )
}

/// The script with every launch's values bound, in `BATCH_COLUMNS` order.
fn bind_batch<'q>(
    sql: &'q str,
    writes: &'q [LaunchWrite],
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    let mut query = sqlx::query(sql);
    for (seq, w) in writes.iter().enumerate() {
        let session = w.session.as_ref();
        let handoff = w.handoff.as_ref();
        let (link, user, outcome) = match session.and_then(|s| outcomes::launch_target(&s.launch)) {
            Some(TargetChange::Record(link, user, target, name)) => {
                (Some(link), Some(user), Some((target, name)))
            }
            Some(TargetChange::Forget(link, user)) => (Some(link), Some(user), None),
            None => (None, None, None),
        };
        query = query
            .bind(seq as i64)
            .bind(&w.consumer_key)
            .bind(&w.stored_secret)
            .bind(&w.nonce)
            .bind(w.nonce_expires_at)
            .bind(w.signed_at)
            // Marks the nonce as this launch's: random, so no credential is copied into `nonces`.
            .bind(super::sessions::new_id())
            .bind(w.replaces.as_deref().map(super::sessions::stored_id))
            .bind(session.map(|s| s.stored_id.as_str()))
            .bind(session.map(|s| s.user_id.as_str()))
            .bind(session.map(|s| s.roles.as_str()))
            .bind(session.map(|s| s.launch_json.as_str()))
            .bind(session.map(|s| s.created_at))
            .bind(session.map(|s| s.expires_at))
            .bind(handoff.map(|h| h.stored_token.as_str()))
            .bind(handoff.map(|h| h.stored_session.as_str()))
            .bind(handoff.map(|h| h.sealed_session.as_str()))
            .bind(handoff.map(|h| h.expires_at))
            .bind(link)
            .bind(user)
            .bind(outcome.as_ref().map(|(t, _)| t.service_url.clone()))
            .bind(outcome.as_ref().map(|(t, _)| t.sourcedid.clone()))
            .bind(outcome.map(|(_, name)| name));
    }
    query
}

/// Each launch's outcome and the data version, from the script's one row.
fn read_outcomes(
    rows: &[sqlx::sqlite::SqliteRow],
    launches: usize,
) -> Result<(Vec<Recorded>, i64), LtiError> {
    let row = rows
        .first()
        .ok_or_else(|| LtiError::Storage("the launch batch returned nothing".into()))?;
    let version: i64 = row.try_get(0)?;
    let codes: String = row.try_get(1)?;
    let outcomes: Vec<Recorded> = codes
        .chars()
        .map(|c| match c {
            'A' => Recorded::Accepted,
            'R' => Recorded::Replayed,
            'F' => Recorded::Forgotten,
            _ => Recorded::ConsumerChanged,
        })
        .collect();
    if outcomes.len() != launches {
        return Err(LtiError::Storage(format!(
            "the launch batch returned {} outcomes for {launches} launches",
            outcomes.len()
        )));
    }
    Ok((outcomes, version))
}
