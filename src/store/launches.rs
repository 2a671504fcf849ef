//! Recording verified launches: each launch's nonce, the session it starts and the session it
//! replaces, for many launches in one transaction (see `front` for who calls it and when).

use sqlx::SqliteConnection;

use super::{nonces, sessions};
use crate::error::LtiError;
use crate::lti::launch::LaunchData;

/// A session to store, already serialised by the request's own task.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The random id (the cookie value).
    pub id: String,
    /// The consumer that signed the launch.
    pub consumer_key: String,
    /// `user_id`, or empty.
    pub user_id: String,
    /// The raw `roles` parameter.
    pub roles: String,
    /// JSON of the launch parameters.
    pub launch_json: String,
    /// The launch itself (for the session cache).
    pub launch: LaunchData,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

impl NewSession {
    /// A session for a launch, created `now` and ending at `expires_at`.
    pub fn new(id: &str, launch: &LaunchData, now: i64, expires_at: i64) -> Result<Self, LtiError> {
        Ok(NewSession {
            id: id.to_string(),
            consumer_key: launch.consumer_key.clone(),
            user_id: launch.user_id().to_string(),
            roles: launch.get("roles").unwrap_or("").to_string(),
            launch_json: serde_json::to_string(&launch.params)
                .map_err(|e| LtiError::Storage(e.to_string()))?,
            launch: launch.clone(),
            created_at: now,
            expires_at,
        })
    }
}

/// What one verified launch writes.
#[derive(Debug, Clone)]
pub struct LaunchWrite {
    /// The consumer that signed it.
    pub consumer_key: String,
    /// Its `oauth_nonce`.
    pub nonce: String,
    /// When the nonce may be forgotten (its timestamp can no longer pass).
    pub nonce_expires_at: i64,
    /// The session it starts; `None` when it is refused even though its nonce is spent.
    pub session: Option<NewSession>,
    /// The browser's previous session, which an accepted launch ends.
    pub replaces: Option<String>,
}

/// The outcome of recording a launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The nonce was new: it is spent and the session (if any) exists.
    Accepted,
    /// The consumer already used this nonce: nothing was written.
    Replayed,
}

/// Records launches in one transaction on `conn`, which must not be in a transaction: nonces
/// first (a nonce seen before, or twice in the batch, makes that launch a replay), then the
/// sessions of the accepted ones. On error the transaction is rolled back explicitly (SQLite may
/// or may not have done it) and the caller must not reuse the connection.
pub async fn record_batch(
    conn: &mut SqliteConnection,
    writes: &[LaunchWrite],
) -> Result<Vec<Recorded>, LtiError> {
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    let result = write_and_commit(conn, writes).await;
    if result.is_err() {
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    }
    result
}

async fn write_and_commit(
    conn: &mut SqliteConnection,
    writes: &[LaunchWrite],
) -> Result<Vec<Recorded>, LtiError> {
    let fresh = nonces::record_many(
        conn,
        writes.iter().map(|w| {
            (
                w.consumer_key.as_str(),
                w.nonce.as_str(),
                w.nonce_expires_at,
            )
        }),
    )
    .await?;
    let accepted = || {
        writes
            .iter()
            .zip(&fresh)
            .filter(|(_, f)| **f)
            .map(|(w, _)| w)
    };
    let ended: Vec<&str> = accepted().filter_map(|w| w.replaces.as_deref()).collect();
    sessions::delete_many(conn, &ended).await?;
    let started: Vec<&NewSession> = accepted().filter_map(|w| w.session.as_ref()).collect();
    sessions::insert_many(conn, &started).await?;
    sqlx::query("COMMIT").execute(&mut *conn).await?;
    Ok(fresh
        .into_iter()
        .map(|f| {
            if f {
                Recorded::Accepted
            } else {
                Recorded::Replayed
            }
        })
        .collect())
}
