//! The `nonces` table: each (consumer, nonce) pair is accepted once. Launches insert theirs in
//! `launches::record_batch`, where the primary key makes the check atomic; this module prunes,
//! and keeps the watermark of how far it has (`nonce_prune_watermark`).

use super::Db;
use crate::error::LtiError;

/// Deletes up to `batch` nonces that expired before `now`; returns how many went. The watermark
/// moves to `now` first, so a launch is never checked against an older one than the deletes used.
pub async fn prune(db: &Db, now: i64, batch: i64) -> Result<u64, LtiError> {
    sqlx::query(
        "INSERT INTO nonce_prune_watermark (id, pruned_before) VALUES (1, ?) \
         ON CONFLICT (id) DO UPDATE SET pruned_before = max(pruned_before, excluded.pruned_before)",
    )
    .bind(now)
    .execute(db)
    .await?;
    super::prune_expired_rows(db, "nonces", now, batch).await
}

/// The latest time nonces were pruned up to (0 when never): a nonce that expired before it may be
/// gone, so its launch cannot be told from a replay.
pub async fn pruned_before(db: &Db) -> Result<i64, LtiError> {
    let watermark: Option<i64> =
        sqlx::query_scalar("SELECT pruned_before FROM nonce_prune_watermark WHERE id = 1")
            .fetch_optional(db)
            .await?;
    Ok(watermark.unwrap_or(0))
}
