//! The `nonces` table: each (consumer, nonce) pair is accepted once. Launches insert theirs in
//! `launches::record_batch`, where the primary key makes the check atomic; this module prunes,
//! and keeps the mark of how far it has (`nonce_prune_watermark`).
//!
//! A nonce is stored until `max(timestamp, now) + window + 1`. Once it is pruned, a replay of its
//! launch could pass; the timestamp check refuses that replay as long as the clock that pruned
//! was right. The mark covers the rest (a clock that ran ahead when it pruned, restarts
//! included): a launch whose nonce would have expired before the latest pruned nonce did is
//! refused. It comes from the pruned nonces' own expiries, so a clock that ran ahead locks out
//! at most the launches whose nonces really went early.
//!
//! The stored mark is what counts: `launches::record_batch` checks each launch against it under
//! the write lock, so a mark raised by another process on the same database (or by this one's
//! pruning while the launch was on its way) is seen. [`NonceWatermark`] is this process's copy,
//! which refuses such launches early, before their consumer and signature are looked at again.

use std::sync::atomic::{AtomicI64, Ordering};

use super::Db;
use crate::error::LtiError;

/// Every pruned nonce expired before `pruned_before` (Unix seconds).
#[derive(Debug, Default)]
pub struct NonceWatermark {
    pruned_before: AtomicI64,
}

impl NonceWatermark {
    /// The mark as stored, after adopting `window` (the configured `timestamp_window`): when it
    /// is wider than the one the stored nonces were stored under, their expiries and the mark
    /// move by the difference, so the wider window cannot reach a pruned nonce.
    pub async fn load(db: &Db, window: i64) -> Result<NonceWatermark, LtiError> {
        // IMMEDIATE: a read, then writes (see `consumers::encrypt_plaintext_secrets`).
        let mut tx = db.begin_with("BEGIN IMMEDIATE").await?;
        let row: Option<(i64, i64)> =
            sqlx::query_as("SELECT pruned_before, window FROM nonce_prune_watermark WHERE id = 1")
                .fetch_optional(&mut *tx)
                .await?;
        let (mut pruned_before, stored_window) = row.unwrap_or((0, window));
        let wider = window - stored_window;
        if wider > 0 {
            sqlx::query("UPDATE nonces SET expires_at = expires_at + ?")
                .bind(wider)
                .execute(&mut *tx)
                .await?;
            if pruned_before > 0 {
                pruned_before += wider;
            }
        }
        sqlx::query(
            "INSERT INTO nonce_prune_watermark (id, pruned_before, window) VALUES (1, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET pruned_before = excluded.pruned_before, \
             window = excluded.window",
        )
        .bind(pruned_before)
        .bind(window)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(NonceWatermark {
            pruned_before: AtomicI64::new(pruned_before),
        })
    }

    /// Whether the nonce of a launch signed at `timestamp` may have been pruned: it expires
    /// `window` + 1 seconds after that at the earliest.
    pub fn may_be_pruned(&self, timestamp: i64, window: i64) -> bool {
        timestamp.saturating_add(window + 1) < self.pruned_before.load(Ordering::Relaxed)
    }
}

/// Deletes up to `batch` nonces that expired before `now`; returns how many went. The mark moves
/// first (in memory, then stored), so no launch is checked against an older one than the delete.
pub async fn prune(db: &Db, now: i64, batch: i64, mark: &NonceWatermark) -> Result<u64, LtiError> {
    let latest: Option<i64> = sqlx::query_scalar(
        "SELECT max(expires_at) FROM \
         (SELECT expires_at FROM nonces WHERE expires_at < ? ORDER BY expires_at LIMIT ?)",
    )
    .bind(now)
    .bind(batch)
    .fetch_one(db)
    .await?;
    let Some(latest) = latest else { return Ok(0) };
    mark.pruned_before.fetch_max(latest + 1, Ordering::Relaxed);
    // A database whose mark was never loaded gets window 0: the next load widens conservatively.
    sqlx::query(
        "INSERT INTO nonce_prune_watermark (id, pruned_before, window) VALUES (1, ?, 0) \
         ON CONFLICT (id) DO UPDATE SET pruned_before = max(pruned_before, excluded.pruned_before)",
    )
    .bind(latest + 1)
    .execute(db)
    .await?;
    let done = sqlx::query(
        "DELETE FROM nonces WHERE rowid IN \
         (SELECT rowid FROM nonces WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)",
    )
    .bind(latest)
    .bind(batch)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}
