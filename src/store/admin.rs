//! The admin tables: the password hash, admin sessions and failed logins (for throttling).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::Db;
use crate::error::LtiError;

/// The stored admin password hash (Argon2id PHC string), if a password was set.
pub async fn password_hash(db: &Db) -> Result<Option<String>, LtiError> {
    Ok(
        sqlx::query_scalar("SELECT hash FROM admin_password WHERE id = 1")
            .fetch_optional(db)
            .await?,
    )
}

/// Stores a new admin password hash and ends every admin session, in one transaction.
pub async fn set_password_hash(db: &Db, hash: &str, now: i64) -> Result<(), LtiError> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO admin_password (id, hash, updated_at) VALUES (1, ?, ?) \
         ON CONFLICT (id) DO UPDATE SET hash = excluded.hash, updated_at = excluded.updated_at",
    )
    .bind(hash)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM admin_sessions")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// 256 random bits, URL-safe base64.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Sessions are stored under the hash of their cookie value.
fn session_id(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

/// An admin session as the guard sees it.
#[derive(Debug, Clone)]
pub struct AdminSession {
    /// The stored id (hash of the cookie value).
    pub id: String,
    /// The CSRF token every form of this session must carry.
    pub csrf: String,
}

/// Starts an admin session; returns the cookie value.
pub async fn start_session(db: &Db, now: i64, idle: i64) -> Result<String, LtiError> {
    let token = random_token();
    sqlx::query(
        "INSERT INTO admin_sessions (id, csrf, created_at, expires_at) VALUES (?, ?, ?, ?)",
    )
    .bind(session_id(&token))
    .bind(random_token())
    .bind(now)
    .bind(now + idle)
    .execute(db)
    .await?;
    Ok(token)
}

/// Seconds an admin session lasts however busy it is: a login a day, and a session (or its CSRF
/// token) someone took over does not last for ever.
pub const SESSION_MAX_AGE: i64 = 12 * 3600;

/// The live session for a cookie value, its idle expiry pushed back by `idle` (but not past
/// [`SESSION_MAX_AGE`] after the login); None when unknown, idle for too long or too old.
pub async fn touch_session(
    db: &Db,
    token: &str,
    now: i64,
    idle: i64,
) -> Result<Option<AdminSession>, LtiError> {
    let id = session_id(token);
    let csrf: Option<String> = sqlx::query_scalar(
        "UPDATE admin_sessions SET expires_at = min(?1 + ?2, created_at + ?3) \
         WHERE id = ?4 AND expires_at > ?1 AND created_at + ?3 > ?1 RETURNING csrf",
    )
    .bind(now)
    .bind(idle)
    .bind(SESSION_MAX_AGE)
    .bind(&id)
    .fetch_optional(db)
    .await?;
    Ok(csrf.map(|csrf| AdminSession { id, csrf }))
}

/// Ends an admin session.
pub async fn end_session(db: &Db, id: &str) -> Result<(), LtiError> {
    sqlx::query("DELETE FROM admin_sessions WHERE id = ?")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// What `begin_attempt` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Counted as failed, under this row id, until `forget_attempt` clears it.
    Counted(i64),
    /// Not counted: the bucket's attempts of the last minute (this one left out) are at the
    /// limit; so many are counted.
    OverLimit(i64),
}

/// Counts a login attempt from `address` as failed until `forget_attempt` clears it, unless the
/// failed attempts of the last minute, this one included, would be over `limit`. One
/// transaction, so parallel attempts cannot all slip under the limit. Failures dated after `now`
/// (by a clock that ran ahead and was set back) are not counted: they would lock the address out
/// for as long as the clock was wrong.
pub async fn begin_attempt(
    db: &Db,
    address: &str,
    now: i64,
    limit: i64,
) -> Result<Attempt, LtiError> {
    let mut tx = db.begin().await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO admin_login_failures (address, at) VALUES (?, ?) RETURNING rowid",
    )
    .bind(address)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let recent: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM admin_login_failures WHERE address = ? AND at > ? AND at <= ?",
    )
    .bind(address)
    .bind(now - 60)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    if recent > limit {
        tx.rollback().await?;
        return Ok(Attempt::OverLimit(recent - 1));
    }
    tx.commit().await?;
    Ok(Attempt::Counted(id))
}

/// Uncounts an attempt that succeeded.
pub async fn forget_attempt(db: &Db, id: i64) -> Result<(), LtiError> {
    sqlx::query("DELETE FROM admin_login_failures WHERE rowid = ?")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// Deletes expired admin sessions, and failures older than a minute or dated more than a minute
/// ahead (by a clock since set back: they are never counted); returns how many went.
pub async fn prune(db: &Db, now: i64) -> Result<u64, LtiError> {
    let sessions = sqlx::query("DELETE FROM admin_sessions WHERE expires_at <= ?")
        .bind(now)
        .execute(db)
        .await?;
    let failures = sqlx::query("DELETE FROM admin_login_failures WHERE at <= ? OR at > ?")
        .bind(now - 60)
        .bind(now + 60)
        .execute(db)
        .await?;
    Ok(sessions.rows_affected() + failures.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rocket::async_test]
    async fn failures_dated_ahead_by_a_clock_since_set_back_lock_nobody_out() {
        let dir =
            std::env::temp_dir().join(format!("lti-admin-{}", super::super::sessions::new_id()));
        let url = format!("sqlite://{}", dir.join("db.sqlite").display());
        let db = super::super::open(&url).await.unwrap();
        let now = 1_700_000_000;
        // Six failures counted while the clock was a day ahead, over the limit of 5.
        for _ in 0..6 {
            sqlx::query("INSERT INTO admin_login_failures (address, at) VALUES ('a', ?)")
                .bind(now + 86_400)
                .execute(&db)
                .await
                .unwrap();
        }
        let attempt = begin_attempt(&db, "a", now, 5).await.unwrap();
        assert!(matches!(attempt, Attempt::Counted(_)), "{attempt:?}");
        // Pruning takes them; the attempt just counted stays for its minute.
        assert_eq!(prune(&db, now).await.unwrap(), 6);
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM admin_login_failures")
            .fetch_one(&db)
            .await
            .unwrap();
        assert_eq!(left, 1);
        db.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
