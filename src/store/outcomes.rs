//! The `outcome_targets` table: each learner's outcome service and result sourcedid per
//! (consumer, resource link, user), and the last score the LMS confirmed. Launches insert and
//! replace their rows in `launches::record_batch`, through `UPSERT`; a fork's table written
//! on its own pages inserts from its own module.

use sqlx::Row;

use super::Db;
use crate::error::LtiError;
use crate::lti::launch::LaunchData;
use crate::outcomes::OutcomeTarget;

/// A learner's stored outcome service.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTarget {
    /// The consumer that launched.
    pub consumer_key: String,
    /// `resource_link_id`.
    pub resource_link_id: String,
    /// `user_id`.
    pub user_id: String,
    /// The name shown to staff.
    pub display_name: String,
    /// Where to send the grade.
    pub target: OutcomeTarget,
    /// The last score the LMS confirmed (`Some(None)`: it has none; `None`: never asked).
    pub last_score: Option<Option<f64>>,
    /// When `last_score` was learned (Unix seconds).
    pub score_known_at: Option<i64>,
    /// When the staff page last tried to read the score, successful or not (Unix seconds).
    pub read_tried_at: Option<i64>,
}

/// The upsert clause of a launch's insert: a relaunch updates the row, and a new sourcedid
/// forgets the old score.
pub(super) const UPSERT: &str =
    "ON CONFLICT (consumer_key, resource_link_id, user_id) DO UPDATE SET \
     last_score = CASE WHEN sourcedid = excluded.sourcedid THEN last_score ELSE NULL END, \
     score_known_at = CASE WHEN sourcedid = excluded.sourcedid THEN score_known_at ELSE NULL END, \
     service_url = excluded.service_url, sourcedid = excluded.sourcedid, \
     display_name = excluded.display_name, updated_at = excluded.updated_at";

/// What a launch does to its user's grade record on its resource link.
pub(super) enum TargetChange<'a> {
    /// Records the learner's outcome service (resource link, user, target, name shown to staff).
    Record(&'a str, &'a str, OutcomeTarget, String),
    /// Forgets the user's record (resource link, user): staff who are not also learners.
    Forget(&'a str, &'a str),
}

/// What a launch with a user and a resource link changes: a launch with an outcome service
/// records it, unless its user is staff and not also a learner. Moodle sends teachers a sourcedid
/// too, and they do not belong on the staff page's list of learners, so such a launch forgets
/// any record instead (one made before this rule, say). No roles, or only unknown ones, count as
/// a learner's.
pub(super) fn launch_target(launch: &LaunchData) -> Option<TargetChange<'_>> {
    let (link, user) = (launch.get("resource_link_id")?, launch.get("user_id")?);
    if launch.is_staff_only() {
        return Some(TargetChange::Forget(link, user));
    }
    let target = OutcomeTarget::from_launch(launch)?;
    Some(TargetChange::Record(
        link,
        user,
        target,
        launch.display_name(),
    ))
}

const COLUMNS: &str = "consumer_key, resource_link_id, user_id, service_url, sourcedid, \
                       display_name, last_score, score_known_at, read_tried_at";

fn from_row(row: &sqlx::sqlite::SqliteRow) -> Result<StoredTarget, sqlx::Error> {
    let known_at: Option<i64> = row.try_get("score_known_at")?;
    let score: Option<f64> = row.try_get("last_score")?;
    Ok(StoredTarget {
        consumer_key: row.try_get("consumer_key")?,
        resource_link_id: row.try_get("resource_link_id")?,
        user_id: row.try_get("user_id")?,
        display_name: row.try_get("display_name")?,
        target: OutcomeTarget {
            service_url: row.try_get("service_url")?,
            sourcedid: row.try_get("sourcedid")?,
        },
        last_score: known_at.map(|_| score),
        score_known_at: known_at,
        read_tried_at: row.try_get("read_tried_at")?,
    })
}

/// One learner's outcome service on a resource link.
pub async fn find(
    db: &Db,
    consumer_key: &str,
    resource_link_id: &str,
    user_id: &str,
) -> Result<Option<StoredTarget>, LtiError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM outcome_targets \
         WHERE consumer_key = ? AND resource_link_id = ? AND user_id = ?"
    ))
    .bind(consumer_key)
    .bind(resource_link_id)
    .bind(user_id)
    .fetch_optional(db)
    .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// Every learner with an outcome service on a resource link, by name.
pub async fn list_for_link(
    db: &Db,
    consumer_key: &str,
    resource_link_id: &str,
) -> Result<Vec<StoredTarget>, LtiError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM outcome_targets WHERE consumer_key = ? AND resource_link_id = ? \
         ORDER BY display_name, user_id"
    ))
    .bind(consumer_key)
    .bind(resource_link_id)
    .fetch_all(db)
    .await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// Which learner's result in the LMS: as a launch named it.
#[derive(Debug, Clone, Copy)]
pub struct ResultOf<'a> {
    /// The consumer that launched.
    pub consumer_key: &'a str,
    /// The resource link (activity) launched.
    pub resource_link_id: &'a str,
    /// The learner.
    pub user_id: &'a str,
    /// `lis_result_sourcedid`.
    pub sourcedid: &'a str,
}

/// Remembers the score the LMS just confirmed (`None`: it has none), unless a newer launch has
/// since changed the sourcedid. A score read in a call made at `read_at` is kept only if none
/// was learnt, nor forgotten ([`forget_last_score`]), in that second or later (a read that
/// overlapped a write must not put the old score back); a written one always is (one session's
/// writes go one at a time).
pub async fn set_last_score(
    db: &Db,
    result: ResultOf<'_>,
    score: Option<f64>,
    read_at: Option<i64>,
    now: i64,
) -> Result<(), LtiError> {
    let ResultOf {
        consumer_key,
        resource_link_id,
        user_id,
        sourcedid,
    } = result;
    sqlx::query(
        "UPDATE outcome_targets SET last_score = ?, score_known_at = ? \
         WHERE consumer_key = ? AND resource_link_id = ? AND user_id = ? AND sourcedid = ? \
         AND (?7 IS NULL OR ((score_known_at IS NULL OR score_known_at < ?7) \
              AND (score_forgotten_at IS NULL OR score_forgotten_at < ?7)))",
    )
    .bind(score)
    .bind(now)
    .bind(consumer_key)
    .bind(resource_link_id)
    .bind(user_id)
    .bind(sourcedid)
    .bind(read_at)
    .execute(db)
    .await?;
    Ok(())
}

/// Forgets this learner's score at `now`: the LMS took a change but has not made it yet
/// (`processing`), or may or may not have taken it, so the staff page shows the score as unknown
/// until it is read again by a call made after `now`.
pub async fn forget_last_score(db: &Db, result: ResultOf<'_>, now: i64) -> Result<(), LtiError> {
    sqlx::query(
        "UPDATE outcome_targets SET last_score = NULL, score_known_at = NULL, \
         score_forgotten_at = ? \
         WHERE consumer_key = ? AND resource_link_id = ? AND user_id = ? AND sourcedid = ?",
    )
    .bind(now)
    .bind(result.consumer_key)
    .bind(result.resource_link_id)
    .bind(result.user_id)
    .bind(result.sourcedid)
    .execute(db)
    .await?;
    Ok(())
}

/// Records when the staff page last tried to read each of these learners' scores on a resource
/// link, all in one transaction (one commit, and none of them on an error).
pub async fn set_read_tried(
    db: &Db,
    consumer_key: &str,
    resource_link_id: &str,
    tried: &[(String, i64)],
) -> Result<(), LtiError> {
    let mut tx = db.begin().await?;
    for (user_id, at) in tried {
        sqlx::query(
            "UPDATE outcome_targets SET read_tried_at = ? \
             WHERE consumer_key = ? AND resource_link_id = ? AND user_id = ?",
        )
        .bind(at)
        .bind(consumer_key)
        .bind(resource_link_id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Deletes up to `batch` learners' records whose last launch came before `launched_before`,
/// oldest first, through their index; returns how many went.
pub async fn prune(db: &Db, launched_before: i64, batch: i64) -> Result<u64, LtiError> {
    let done = sqlx::query(
        "DELETE FROM outcome_targets WHERE rowid IN (SELECT rowid FROM outcome_targets \
         WHERE updated_at < ? ORDER BY updated_at LIMIT ?)",
    )
    .bind(launched_before)
    .bind(batch)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Deletes every learner's record of a consumer (which is being deleted).
pub async fn delete_for<'c, E>(executor: E, consumer_key: &str) -> Result<(), LtiError>
where
    E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
{
    sqlx::query("DELETE FROM outcome_targets WHERE consumer_key = ?")
        .bind(consumer_key)
        .execute(executor)
        .await?;
    Ok(())
}
