//! The `sessions` table: server-side LTI sessions, keyed by a hash of the random id held in a
//! cookie.
//! Launches insert theirs in `launches::record_batch`.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::Db;
use crate::error::LtiError;
use crate::lti::launch::LaunchData;

/// A stored session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The random id (the cookie value).
    pub id: String,
    /// What the launch said (shared: the session cache hands out copies).
    pub launch: Arc<LaunchData>,
    /// Unix seconds.
    pub expires_at: i64,
}

/// A fresh session id (also used for hand-off tokens): the time in milliseconds as 12 hex
/// digits, then 256 bits from a cryptographically secure generator, URL-safe base64. The random
/// part makes it unguessable; the time prefix makes new ids sort after old ones, so each insert
/// lands on the last page of the table's index instead of a random page (a launch writes and
/// later checkpoints fewer pages).
pub fn new_id() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let millis = chrono::Utc::now().timestamp_millis().max(0);
    format!("{millis:012x}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// When a session id from [`new_id`] was made, in Unix seconds (`None` for any other string).
pub fn created_at_of(id: &str) -> Option<i64> {
    let prefix = id.get(..12)?;
    if !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    i64::from_str_radix(prefix, 16)
        .ok()
        .map(|millis| millis / 1000)
}

/// What the `sessions` table keys a session id (or `handoffs` a token) by: its time prefix, then
/// the SHA-256 of the whole id. A copy of the database (a backup) then holds no cookie that opens
/// a session, as for admin sessions, while new rows still sort after old ones (see [`new_id`]).
pub fn stored_id(id: &str) -> String {
    let prefix = id.get(..12).unwrap_or_default();
    format!("{prefix}.{}", URL_SAFE_NO_PAD.encode(Sha256::digest(id)))
}

/// Finds a session by id, expired or not (the caller decides what expiry means).
pub async fn find(db: &Db, id: &str) -> Result<Option<Session>, LtiError> {
    let row = sqlx::query("SELECT consumer_key, launch, expires_at FROM sessions WHERE id = ?")
        .bind(stored_id(id))
        .fetch_optional(db)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let json: String = row.try_get("launch")?;
    let params = serde_json::from_str(&json).map_err(|e| LtiError::Storage(e.to_string()))?;
    Ok(Some(Session {
        id: id.to_string(),
        launch: Arc::new(LaunchData {
            consumer_key: row.try_get("consumer_key")?,
            params,
        }),
        expires_at: row.try_get("expires_at")?,
    }))
}

/// Deletes one session (no error when it is already gone).
pub async fn delete<'c, E>(executor: E, id: &str) -> Result<(), LtiError>
where
    E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
{
    sqlx::query("DELETE FROM sessions WHERE id = ?")
        .bind(stored_id(id))
        .execute(executor)
        .await?;
    Ok(())
}

/// Deletes up to `batch` expired sessions; returns how many went.
pub async fn prune(db: &Db, now: i64, batch: i64) -> Result<u64, LtiError> {
    super::prune_expired_rows(db, "sessions", now, batch).await
}

/// Deletes the sessions of a consumer being removed (in the removal's transaction).
pub async fn delete_for<'c, E>(executor: E, consumer_key: &str) -> Result<(), LtiError>
where
    E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
{
    sqlx::query("DELETE FROM sessions WHERE consumer_key = ?")
        .bind(consumer_key)
        .execute(executor)
        .await?;
    Ok(())
}
