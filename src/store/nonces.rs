//! The `nonces` table: each (consumer, nonce) pair is accepted once. Launches insert theirs in
//! `launches::record_batch`, where the primary key makes the check atomic; this module prunes,
//! and keeps per consumer the mark of how far it has (`nonce_prune_marks`).
//!
//! A nonce is stored until `max(timestamp, now) + window + 1`. Once it is pruned, a replay of its
//! launch could pass; the timestamp check refuses that replay as long as the clock that pruned
//! was right. The mark covers the rest (a clock that ran ahead when it pruned, restarts and other
//! servers on the same database included): a launch signed no later than the latest timestamp of
//! its consumer's pruned nonces is refused, as it cannot be told from a replay of one.
//! `record_batch` checks that under the write lock, as it spends the nonce. (Databases from before
//! migration 0014 had one mark for all consumers: it stays, as `nonce_pruning.all_signed_up_to`.)
//!
//! The mark comes from what the consumer's LMS signed, not from the server's clock, and is kept
//! per consumer: a server clock that ran ahead, or one LMS's fast clock, locks out no other
//! consumer's right launches. Only launches of the same key signed earlier than its pruned ones
//! wait: an LMS whose own clock ran ahead and was set back, until its clock passes what it signed
//! then (those launches stay refused: their nonces are gone); LMS nodes sharing a key with clocks
//! apart, for at most that difference. Without a clock jump no launch waits: a pruned nonce was
//! signed well before any timestamp the window still accepts.

use super::Db;
use crate::error::LtiError;

/// Adopts `window` (the configured `timestamp_window`) for the stored nonces: when it is wider
/// than the one they were stored under, their expiries move by the difference, so the wider
/// window cannot reach a nonce pruned early. Called at start, before any launch.
pub async fn adopt_window(db: &Db, window: i64) -> Result<(), LtiError> {
    // IMMEDIATE: a read, then writes (see `consumers::encrypt_plaintext_secrets`).
    let mut tx = db.begin_with("BEGIN IMMEDIATE").await?;
    let stored: Option<i64> = sqlx::query_scalar("SELECT window FROM nonce_pruning WHERE id = 1")
        .fetch_optional(&mut *tx)
        .await?;
    let wider = window - stored.unwrap_or(window);
    if wider > 0 {
        sqlx::query("UPDATE nonces SET expires_at = expires_at + ?")
            .bind(wider)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(
        "INSERT INTO nonce_pruning (id, window) VALUES (1, ?) \
         ON CONFLICT (id) DO UPDATE SET window = excluded.window",
    )
    .bind(window)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Deletes up to `batch` nonces that expired before `now`; returns how many went. In one
/// transaction, each of their consumers' marks first moves past what they were signed at.
pub async fn prune(db: &Db, now: i64, batch: i64) -> Result<u64, LtiError> {
    let latest: Option<i64> = sqlx::query_scalar(
        "SELECT max(expires_at) FROM \
         (SELECT expires_at FROM nonces WHERE expires_at < ? ORDER BY expires_at LIMIT ?)",
    )
    .bind(now)
    .bind(batch)
    .fetch_one(db)
    .await?;
    let Some(latest) = latest else { return Ok(0) };
    let mut tx = db.begin_with("BEGIN IMMEDIATE").await?;
    // Every nonce up to `latest`, a few more than the delete may take (ties): a mark too far only
    // refuses launches older than those. Nonces stored before migration 0014 have no timestamp:
    // their expiry is at least window + 1 past it (0 when no window was ever stored).
    sqlx::query(
        "INSERT INTO nonce_prune_marks (consumer_key, signed_up_to) \
         SELECT consumer_key, max(coalesce(signed_at, expires_at - 1 - \
             coalesce((SELECT window FROM nonce_pruning WHERE id = 1), 0))) \
         FROM nonces WHERE expires_at <= ? GROUP BY consumer_key \
         ON CONFLICT (consumer_key) DO UPDATE \
         SET signed_up_to = max(signed_up_to, excluded.signed_up_to)",
    )
    .bind(latest)
    .execute(&mut *tx)
    .await?;
    let done = sqlx::query(
        "DELETE FROM nonces WHERE rowid IN \
         (SELECT rowid FROM nonces WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)",
    )
    .bind(latest)
    .bind(batch)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected())
}
