//! The `refusals` table: the last refused launches per consumer, for diagnosis on the admin page.

use serde::Serialize;
use sqlx::Row;

use super::Db;
use crate::error::LtiError;
use crate::lti::diagnosis::Hint;

/// How many refusals are kept per bucket ([`bucket`]).
pub const KEEP_PER_BUCKET: i64 = 1000;

/// What ends a signed share's name. A space: no consumer key has one, so no key's bucket is
/// another's.
const SIGNED: &str = " signed";

/// The share a refusal is counted in, for the recording budget and for what is kept: one per
/// known consumer, one more for each known consumer's launches refused after their signature
/// passed (which take a launch its LMS signed, so forged launches cannot push them out), and one
/// for every unknown key together.
pub fn bucket(known_key: Option<&str>, after_signature: bool) -> String {
    match (known_key, after_signature) {
        (Some(key), true) => format!("{key}{SIGNED}"),
        (Some(key), false) => key.to_string(),
        (None, _) => String::new(),
    }
}

/// One refused launch.
#[derive(Debug, Clone, Serialize)]
pub struct Refusal {
    /// Unix seconds.
    pub at: i64,
    /// The key as sent (may be unknown, or empty when absent).
    pub consumer_key: String,
    /// The refusal, as logged.
    pub reason: String,
    /// What probably went wrong.
    pub hint: Hint,
    /// The URL we checked the signature against.
    pub signed_url: String,
    /// The base string we computed, values of fields outside `lti::diagnosis::is_readable_field`
    /// (user fields, `custom_*`, the return URL…) replaced by their length.
    pub base_string: String,
    /// Parameter names received, comma-separated.
    pub param_names: String,
    /// The client's address.
    pub remote_addr: String,
    /// The client's User-Agent.
    pub user_agent: String,
}

/// Records a refusal in its [`bucket`] and trims that to [`KEEP_PER_BUCKET`] rows.
pub async fn record(db: &Db, bucket: &str, refusal: &Refusal) -> Result<(), LtiError> {
    let hint =
        serde_json::to_string(&refusal.hint).map_err(|e| LtiError::Storage(e.to_string()))?;
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO refusals (bucket, at, consumer_key, reason, hint, signed_url, base_string, param_names, \
         remote_addr, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(bucket)
    .bind(refusal.at)
    .bind(&refusal.consumer_key)
    .bind(&refusal.reason)
    .bind(hint)
    .bind(&refusal.signed_url)
    .bind(&refusal.base_string)
    .bind(&refusal.param_names)
    .bind(&refusal.remote_addr)
    .bind(&refusal.user_agent)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "DELETE FROM refusals WHERE bucket = ? AND id <= \
         (SELECT id FROM refusals WHERE bucket = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
    )
    .bind(bucket)
    .bind(bucket)
    .bind(KEEP_PER_BUCKET)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The newest `limit` refusals, of one consumer when `consumer_key` is given, plus the newest
/// `limit` of the signed shares ([`bucket`]) when older ones: a flood of forged launches, which
/// may fill the newest rows, hides no refusal of a launch the LMS signed. Newest first.
pub async fn recent(
    db: &Db,
    consumer_key: Option<&str>,
    limit: i64,
) -> Result<Vec<Refusal>, LtiError> {
    let rows = sqlx::query(
        "SELECT * FROM (SELECT * FROM refusals WHERE ?1 IS NULL OR consumer_key = ?1 \
             ORDER BY id DESC LIMIT ?2) \
         UNION \
         SELECT * FROM (SELECT * FROM refusals WHERE (?1 IS NULL OR consumer_key = ?1) \
             AND bucket LIKE '%' || ?3 ORDER BY id DESC LIMIT ?2) \
         ORDER BY id DESC",
    )
    .bind(consumer_key)
    .bind(limit)
    .bind(SIGNED)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|row| {
            let hint: String = row.try_get("hint")?;
            Ok(Refusal {
                at: row.try_get("at")?,
                consumer_key: row.try_get("consumer_key")?,
                reason: row.try_get("reason")?,
                // One a newer build recorded (a downgrade) must not hide all the others.
                hint: serde_json::from_str(&hint).unwrap_or(Hint::Unknown),
                signed_url: row.try_get("signed_url")?,
                base_string: row.try_get("base_string")?,
                param_names: row.try_get("param_names")?,
                remote_addr: row.try_get("remote_addr")?,
                user_agent: row.try_get("user_agent")?,
            })
        })
        .collect()
}

/// Deletes a consumer's refusals (when the consumer is deleted).
pub async fn delete_for<'c, E>(executor: E, consumer_key: &str) -> Result<(), LtiError>
where
    E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
{
    sqlx::query("DELETE FROM refusals WHERE bucket = ? OR consumer_key = ?")
        .bind(consumer_key)
        .bind(consumer_key)
        .execute(executor)
        .await?;
    Ok(())
}
