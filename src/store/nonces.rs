//! The `nonces` table: each (consumer, nonce) pair is accepted once.

use sqlx::SqliteConnection;

use super::Db;
use crate::error::LtiError;

/// Records a nonce, atomically: returns false when this consumer already used it.
/// The primary key does the check, so two racing copies of a launch cannot both pass.
pub async fn record_once(
    conn: &mut SqliteConnection,
    consumer_key: &str,
    nonce: &str,
    expires_at: i64,
) -> Result<bool, LtiError> {
    let done = sqlx::query(
        "INSERT INTO nonces (consumer_key, nonce, expires_at) VALUES (?, ?, ?) \
         ON CONFLICT (consumer_key, nonce) DO NOTHING",
    )
    .bind(consumer_key)
    .bind(nonce)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes up to `batch` expired nonces; returns how many went.
pub async fn prune(db: &Db, now: i64, batch: i64) -> Result<u64, LtiError> {
    super::prune_expired_rows(db, "nonces", now, batch).await
}
