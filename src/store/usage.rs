//! Launch figures per consumer: successful launches (count, last) on the `consumers` row, and
//! refused launches per hour in `consumer_refusals`, for the admin's consumer list. Successful
//! launches are counted in `launches::record_batch`.

use sqlx::Row;

use super::Db;
use crate::error::LtiError;

const HOUR: i64 = 3600;

/// True for the refusals an admin should see: the LMS launches with a known key but gets
/// something wrong that fails every launch until it is fixed there (the secret, the clock, the
/// launch URL, the placement's LTI fields, the OAuth version or method), resends a launch, or
/// launches with a key that is disabled.
pub fn counts_as_refusal(error: &LtiError) -> bool {
    matches!(
        error,
        LtiError::BadSignature
            | LtiError::ReplayedNonce
            | LtiError::StaleTimestamp(_)
            | LtiError::NonceForgotten
            | LtiError::FutureTimestamp(_)
            | LtiError::InvalidLaunch { .. }
            | LtiError::UnsupportedSignatureMethod(_)
            | LtiError::UnsupportedOAuthVersion(_)
            | LtiError::LaunchAtSessionPage
            | LtiError::LaunchAtHomePage
            | LtiError::LaunchAtUnknownAddress(_)
            | LtiError::LaunchAtPageWithoutLaunch(_)
            | LtiError::LaunchNotPosted { .. }
            // Not a mistake, but whether the LMS still uses a key the admin turned off.
            | LtiError::DisabledConsumer
    )
}

/// Counts a refused launch of `consumer_key`, if the error is one that counts and the key is
/// known (unknown keys add no rows). Storage errors are logged and returned: the refusal stands
/// either way.
pub async fn count_refusal(
    db: &Db,
    consumer_key: Option<&str>,
    error: &LtiError,
    now: i64,
) -> Result<(), LtiError> {
    let Some(key) = consumer_key.filter(|_| counts_as_refusal(error)) else {
        return Ok(());
    };
    let done = sqlx::query(
        "INSERT INTO consumer_refusals (consumer_key, hour, refused) \
         SELECT consumer_key, ?, 1 FROM consumers WHERE consumer_key = ? \
         ON CONFLICT (consumer_key, hour) DO UPDATE SET refused = refused + 1",
    )
    .bind(now / HOUR)
    .bind(key)
    .execute(db)
    .await;
    done.map(|_| ()).map_err(|e| {
        log::error!("could not count a refused launch: {e}");
        e.into()
    })
}

/// One line of the admin's consumer list: no secret in it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConsumerFigures {
    /// The consumer key.
    pub key: String,
    /// Its human name.
    pub name: String,
    /// The admin's note.
    pub note: String,
    /// Whether launches are accepted.
    pub enabled: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last successful launch.
    pub last_launch_at: Option<i64>,
    /// Successful launches ever.
    pub launch_count: i64,
    /// Refused launches (`counts_as_refusal`: bad signature, replay, a timestamp outside the
    /// window, a nonce already pruned, a wrong address or wrong LTI fields, a disabled key) in the
    /// last 24 hours, counted by whole hours: the current hour and the 24 before
    /// it, so up to 25 hours.
    pub refused_24h: i64,
}

/// Every consumer with its figures, by key.
pub async fn overview(db: &Db, now: i64) -> Result<Vec<ConsumerFigures>, LtiError> {
    // Hourly buckets: the current hour plus the 24 before it cover at least the last 24 hours.
    let rows = sqlx::query(
        "SELECT c.consumer_key, c.name, c.note, c.enabled, c.created_at, c.last_launch_at, \
         c.launch_count, COALESCE((SELECT SUM(r.refused) FROM consumer_refusals r \
         WHERE r.consumer_key = c.consumer_key AND r.hour >= ?), 0) AS refused_24h \
         FROM consumers c ORDER BY c.consumer_key",
    )
    .bind(now / HOUR - 24)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ConsumerFigures {
                key: r.try_get("consumer_key")?,
                name: r.try_get("name")?,
                note: r.try_get("note")?,
                enabled: r.try_get::<i64, _>("enabled")? != 0,
                created_at: r.try_get("created_at")?,
                last_launch_at: r.try_get("last_launch_at")?,
                launch_count: r.try_get("launch_count")?,
                refused_24h: r.try_get("refused_24h")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(LtiError::from)
}

/// Deletes refusal counts older than a day; returns how many rows went.
pub async fn prune(db: &Db, now: i64) -> Result<u64, LtiError> {
    let done = sqlx::query("DELETE FROM consumer_refusals WHERE hour < ?")
        .bind(now / HOUR - 25)
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}

/// Deletes the refusal counts of a consumer being removed (in the removal's transaction).
pub async fn delete_for<'c, E>(executor: E, consumer_key: &str) -> Result<(), LtiError>
where
    E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
{
    sqlx::query("DELETE FROM consumer_refusals WHERE consumer_key = ?")
        .bind(consumer_key)
        .execute(executor)
        .await?;
    Ok(())
}
