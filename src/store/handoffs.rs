//! The `handoffs` table: single-use, short-lived tokens that open a session in a new window.
//! Launches insert theirs in `launches::record_batch`.
//!
//! A row holds the token's hash and the session's (see `sessions::stored_id`), and the session id
//! itself sealed under the token: the hand-off sets that id as the new window's cookie, and a copy
//! of the database without the token cannot.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::Aead;
use chacha20poly1305::{ChaCha20Poly1305, Key, KeyInit, Nonce};
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::sessions::stored_id;
use super::Db;
use crate::error::LtiError;

/// Seconds a hand-off token stays valid: within a minute, time enough to click the button the
/// page shows at once, too little for a token that leaked (a log, a screenshot) to be of use.
pub const HANDOFF_TTL: i64 = 60;

/// A hand-off token as a launch stores it.
#[derive(Debug, Clone)]
pub struct NewHandoff {
    /// The token's hash (`sessions::stored_id`).
    pub stored_token: String,
    /// The session's stored id.
    pub stored_session: String,
    /// The session id sealed under the token.
    pub sealed_session: String,
    /// Unix seconds.
    pub expires_at: i64,
}

impl NewHandoff {
    /// The row for `token`, which opens session `session_id` until `expires_at`.
    pub fn new(token: &str, session_id: &str, expires_at: i64) -> NewHandoff {
        // Encryption fails only for inputs of gigabytes; an empty seal would just never open.
        let sealed = cipher(token)
            .encrypt(&Nonce::default(), session_id.as_bytes())
            .unwrap_or_default();
        NewHandoff {
            stored_token: stored_id(token),
            stored_session: stored_id(session_id),
            sealed_session: URL_SAFE_NO_PAD.encode(sealed),
            expires_at,
        }
    }
}

/// The cipher that seals a session id under a token. Each token is random and seals one value
/// once, so its key is never reused and a fixed nonce is safe.
fn cipher(token: &str) -> ChaCha20Poly1305 {
    let key = Sha256::new_with_prefix(b"lti-tool hand-off v1\0")
        .chain_update(token)
        .finalize();
    ChaCha20Poly1305::new(Key::from_slice(&key))
}

/// The session a token opens, when the token exists and has not expired. Reads only: the caller
/// checks the session, then [`spend`]s the token, so a storage error on the way leaves it usable.
pub async fn open(db: &Db, token: &str, now: i64) -> Result<Option<String>, LtiError> {
    let row = sqlx::query("SELECT sealed_session, expires_at FROM handoffs WHERE token = ?")
        .bind(stored_id(token))
        .fetch_optional(db)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let expires_at: i64 = row.try_get("expires_at")?;
    if expires_at <= now {
        return Ok(None);
    }
    let sealed: String = row.try_get("sealed_session")?;
    let opened = URL_SAFE_NO_PAD
        .decode(sealed)
        .ok()
        .and_then(|bytes| {
            cipher(token)
                .decrypt(&Nonce::default(), bytes.as_slice())
                .ok()
        })
        .and_then(|plain| String::from_utf8(plain).ok());
    // Only the token's own launch wrote this row, so this is a damaged row, not an attack.
    if opened.is_none() {
        log::error!("a hand-off token's session could not be unsealed: the row is damaged");
    }
    Ok(opened)
}

/// Spends a token, atomically: true for the one caller whose delete removed its row, so of two
/// uses at once only one gets the session.
pub async fn spend(db: &Db, token: &str) -> Result<bool, LtiError> {
    let done = sqlx::query("DELETE FROM handoffs WHERE token = ?")
        .bind(stored_id(token))
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes up to `batch` expired tokens; returns how many went.
pub async fn prune(db: &Db, now: i64, batch: i64) -> Result<u64, LtiError> {
    super::prune_expired_rows(db, "handoffs", now, batch).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(key_from: &str, sealed: &str) -> Option<Vec<u8>> {
        let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        cipher(key_from)
            .decrypt(&Nonce::default(), bytes.as_slice())
            .ok()
    }

    #[test]
    fn a_session_id_is_sealed_under_its_token_and_nothing_the_row_holds() {
        let (token, session) = (super::super::sessions::new_id(), "0123456789ab-session");
        let row = NewHandoff::new(&token, session, 0);
        assert_eq!(
            open(&token, &row.sealed_session).as_deref(),
            Some(session.as_bytes())
        );
        // Not readable from the row: neither under its stored hashes nor as plain bytes.
        assert_eq!(open(&row.stored_token, &row.sealed_session), None);
        assert_eq!(open(&row.stored_session, &row.sealed_session), None);
        let bytes = URL_SAFE_NO_PAD.decode(&row.sealed_session).unwrap();
        assert_eq!(bytes.len(), session.len() + 16);
        assert!(!bytes
            .windows(8)
            .any(|w| session.as_bytes().windows(8).any(|s| s == w)));
        // Another token seals the same session differently.
        let other = NewHandoff::new(&super::super::sessions::new_id(), session, 0);
        assert_ne!(other.sealed_session, row.sealed_session);
        assert_ne!(row.stored_token, token);
    }
}
