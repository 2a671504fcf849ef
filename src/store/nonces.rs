//! The `nonces` table: each (consumer, nonce) pair is accepted once.

use std::collections::HashSet;

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
    let done = sqlx::query(
        "DELETE FROM nonces WHERE rowid IN \
         (SELECT rowid FROM nonces WHERE expires_at < ? ORDER BY expires_at LIMIT ?)",
    )
    .bind(now)
    .bind(batch)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Records many nonces in one statement; `true` for each one that was new. A pair that appears
/// twice is new only the first time.
pub async fn record_many<'a>(
    conn: &mut SqliteConnection,
    nonces: impl Iterator<Item = (&'a str, &'a str, i64)> + Clone,
) -> Result<Vec<bool>, LtiError> {
    let count = nonces.clone().count();
    if count == 0 {
        return Ok(Vec::new());
    }
    let sql = format!(
        "INSERT INTO nonces (consumer_key, nonce, expires_at) VALUES {} \
         ON CONFLICT (consumer_key, nonce) DO NOTHING RETURNING consumer_key, nonce",
        vec!["(?, ?, ?)"; count].join(", ")
    );
    let mut query = sqlx::query_as::<_, (String, String)>(&sql);
    for (key, nonce, expires_at) in nonces.clone() {
        query = query.bind(key).bind(nonce).bind(expires_at);
    }
    let mut inserted: HashSet<(String, String)> =
        query.fetch_all(conn).await?.into_iter().collect();
    Ok(nonces
        .map(|(key, nonce, _)| inserted.remove(&(key.to_string(), nonce.to_string())))
        .collect())
}
