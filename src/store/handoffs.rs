//! The `handoffs` table: single-use, short-lived tokens that open a session in a new window.
//! Launches insert theirs in `launches::record_batch`.

use sqlx::Row;

use super::Db;
use crate::error::LtiError;

/// Seconds a hand-off token stays valid.
pub const HANDOFF_TTL: i64 = 300;

/// Takes a token, atomically: the row is deleted as it is read, so a second use finds nothing.
/// Returns the session id when the token existed and had not expired.
pub async fn take(db: &Db, token: &str, now: i64) -> Result<Option<String>, LtiError> {
    let row = sqlx::query("DELETE FROM handoffs WHERE token = ? RETURNING session_id, expires_at")
        .bind(token)
        .fetch_optional(db)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let expires_at: i64 = row.try_get("expires_at")?;
    Ok((expires_at > now)
        .then(|| row.try_get("session_id"))
        .transpose()?)
}

/// Deletes up to `batch` expired tokens; returns how many went.
pub async fn prune(db: &Db, now: i64, batch: i64) -> Result<u64, LtiError> {
    super::prune_expired_rows(db, "handoffs", now, batch).await
}
