//! The `nonces` table: each (consumer, nonce) pair is accepted once. Launches insert theirs in
//! `launches::record_batch`, where the primary key makes the check atomic; this module prunes.

use super::Db;
use crate::error::LtiError;

/// Deletes up to `batch` expired nonces; returns how many went.
pub async fn prune(db: &Db, now: i64, batch: i64) -> Result<u64, LtiError> {
    super::prune_expired_rows(db, "nonces", now, batch).await
}
