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

/// One statement recording `count` nonces, each bound as (consumer_key, nonce, expires_at): it
/// returns the (consumer_key, nonce) of each one that was new; a pair seen before, or twice in
/// the statement, comes back at most once.
pub fn record_many_sql(count: usize) -> String {
    format!(
        "INSERT INTO nonces (consumer_key, nonce, expires_at) VALUES {} \
         ON CONFLICT (consumer_key, nonce) DO NOTHING RETURNING consumer_key, nonce",
        vec!["(?, ?, ?)"; count].join(", ")
    )
}
