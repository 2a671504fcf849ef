//! The `handoffs` table: single-use, short-lived tokens that open a session in a new window.

use sqlx::{Row, SqliteConnection};

use super::Db;
use crate::error::LtiError;

/// Seconds a hand-off token stays valid.
pub const HANDOFF_TTL: i64 = 60;

/// Stores a token for a session (inside the launch's transaction).
pub async fn insert(
    conn: &mut SqliteConnection,
    token: &str,
    session_id: &str,
    expires_at: i64,
) -> Result<(), LtiError> {
    sqlx::query("INSERT INTO handoffs (token, session_id, expires_at) VALUES (?, ?, ?)")
        .bind(token)
        .bind(session_id)
        .bind(expires_at)
        .execute(conn)
        .await?;
    Ok(())
}

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
