//! Recording verified launches: each launch's nonce, the session it starts and the session it
//! replaces, for many launches in one transaction (see `front` for who calls it and when).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use sqlx::{Row, SqliteConnection};

use super::{nonces, outcomes};
use crate::crypto::SecretCipher;
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
#[derive(Clone)]
pub struct LaunchWrite {
    /// The consumer that signed it.
    pub consumer_key: String,
    /// The secret its signature was verified with (it is written only if that is still the
    /// consumer's secret and the consumer is enabled).
    pub consumer_secret: String,
    /// Its `oauth_nonce`.
    pub nonce: String,
    /// When the nonce may be forgotten (its timestamp can no longer pass).
    pub nonce_expires_at: i64,
    /// The session it starts; `None` when it is refused even though its nonce is spent.
    pub session: Option<NewSession>,
    /// The browser's previous session, which an accepted launch ends.
    pub replaces: Option<String>,
    /// The single-use token that reopens the new session in another window, and its expiry.
    pub handoff: Option<(String, i64)>,
}

/// The outcome of recording a launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The nonce was new: it is spent and the session (if any) exists.
    Accepted,
    /// The consumer already used this nonce: nothing was written.
    Replayed,
    /// The consumer's secret or state is no longer the one the launch was verified with (the
    /// command line changed it meanwhile): nothing was written; verify again.
    ConsumerChanged,
}

/// Records launches in one transaction on `conn` (which must not be in one), in two round trips
/// whatever their number: lock, note other connections' commits, read the consumers as they are
/// now and record the nonces (a nonce seen before, or twice in the batch, makes that launch a
/// replay); then end the replaced sessions, start the new ones and commit. A launch whose
/// consumer is no longer enabled with the secret it was verified with writes nothing. Returns each launch's outcome and `PRAGMA data_version` as read
/// under the write lock. On error the transaction is rolled back explicitly (SQLite may or may
/// not have done it) and the caller must not reuse the connection.
pub async fn record_batch(
    conn: &mut SqliteConnection,
    cipher: &SecretCipher,
    writes: &[LaunchWrite],
) -> Result<(Vec<Recorded>, i64), LtiError> {
    let result = write_and_commit(conn, cipher, writes).await;
    if result.is_err() {
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    }
    result
}

fn placeholders(count: usize, one: &str) -> String {
    vec![one; count].join(", ")
}

async fn write_and_commit(
    conn: &mut SqliteConnection,
    cipher: &SecretCipher,
    writes: &[LaunchWrite],
) -> Result<(Vec<Recorded>, i64), LtiError> {
    // 1. Lock; note other connections' commits; read the consumers as they are now; record
    //    every nonce (the inserted ones come back). One round trip.
    let keys: BTreeSet<&str> = writes.iter().map(|w| w.consumer_key.as_str()).collect();
    let sql = format!(
        "BEGIN IMMEDIATE; PRAGMA data_version; \
         SELECT consumer_key, secret, secret_encrypted, enabled FROM consumers \
         WHERE consumer_key IN ({}); {}",
        placeholders(keys.len(), "?"),
        nonces::record_many_sql(writes.len())
    );
    let mut query = sqlx::query(&sql);
    for key in &keys {
        query = query.bind(*key);
    }
    for w in writes {
        query = query
            .bind(&w.consumer_key)
            .bind(&w.nonce)
            .bind(w.nonce_expires_at);
    }
    let mut version = None;
    let mut current = HashMap::new();
    let mut inserted = HashSet::new();
    for row in query.fetch_all(&mut *conn).await? {
        match row.len() {
            1 => version = Some(row.try_get::<i64, _>(0)?),
            2 => {
                inserted.insert((row.try_get::<String, _>(0)?, row.try_get::<String, _>(1)?));
            }
            _ => {
                let key: String = row.try_get(0)?;
                let stored: String = row.try_get(1)?;
                let secret = if row.try_get::<i64, _>(2)? != 0 {
                    // An unreadable secret (written under another secret_key) counts as a changed
                    // consumer: its launches are re-checked alone, the rest of the batch goes on.
                    match cipher.decrypt(&key, &stored) {
                        Ok(secret) => secret,
                        Err(_) => continue,
                    }
                } else {
                    stored
                };
                current.insert(key, (secret, row.try_get::<i64, _>(3)? != 0));
            }
        }
    }
    let version = version.ok_or_else(|| LtiError::Storage("no data_version".into()))?;

    // A nonce inserted by this batch belongs to the first launch that carries it; the others are
    // replays. A launch whose consumer changed since it was verified writes nothing: its nonce,
    // if this batch inserted it, is taken out again below.
    let mut unspent = Vec::new();
    let outcomes: Vec<Recorded> = writes
        .iter()
        .map(|w| {
            let ours = inserted.remove(&(w.consumer_key.clone(), w.nonce.clone()));
            let unchanged = matches!(
                current.get(&w.consumer_key),
                Some((secret, true)) if *secret == w.consumer_secret
            );
            match (unchanged, ours) {
                (true, true) => Recorded::Accepted,
                (true, false) => Recorded::Replayed,
                (false, ours) => {
                    if ours {
                        unspent.push(w);
                    }
                    Recorded::ConsumerChanged
                }
            }
        })
        .collect();

    let accepted = || {
        writes
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| **o == Recorded::Accepted)
            .map(|(w, _)| w)
    };
    let ended: Vec<&str> = accepted().filter_map(|w| w.replaces.as_deref()).collect();
    let started: Vec<&NewSession> = accepted().filter_map(|w| w.session.as_ref()).collect();
    let handoffs: Vec<(&str, &str, i64)> = accepted()
        .filter_map(|w| match (&w.session, &w.handoff) {
            (Some(s), Some((token, expires_at))) => {
                Some((token.as_str(), s.id.as_str(), *expires_at))
            }
            _ => None,
        })
        .collect();
    // Launch counts per consumer, as `usage::record_launch` keeps them, one update per consumer.
    let mut usage: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for s in &started {
        // Grade passback: where this learner's result lives (a no-op without outcome fields).
        outcomes::record_launch(conn, &s.launch, s.created_at).await?;
        let entry = usage.entry(s.consumer_key.as_str()).or_insert((0, 0));
        *entry = (entry.0 + 1, entry.1.max(s.created_at));
    }
    // 2. Everything else, and the commit. One round trip.
    let mut sql = String::new();
    for _ in &unspent {
        sql += "DELETE FROM nonces WHERE consumer_key = ? AND nonce = ?; ";
    }
    if !ended.is_empty() {
        sql += &format!(
            "DELETE FROM sessions WHERE id IN ({}); ",
            placeholders(ended.len(), "?")
        );
    }
    if !started.is_empty() {
        sql += &format!(
            "INSERT INTO sessions (id, consumer_key, user_id, roles, launch, created_at, expires_at) \
             VALUES {}; ",
            placeholders(started.len(), "(?, ?, ?, ?, ?, ?, ?)")
        );
    }
    if !handoffs.is_empty() {
        sql += &format!(
            "INSERT INTO handoffs (token, session_id, expires_at) VALUES {}; ",
            placeholders(handoffs.len(), "(?, ?, ?)")
        );
    }
    for _ in &usage {
        sql += "UPDATE consumers SET launch_count = launch_count + ?, last_launch_at = ? \
                WHERE consumer_key = ?; ";
    }
    sql += "COMMIT";
    let mut query = sqlx::query(&sql);
    for w in unspent {
        query = query.bind(&w.consumer_key).bind(&w.nonce);
    }
    for id in ended {
        query = query.bind(id);
    }
    for s in started {
        query = query
            .bind(&s.id)
            .bind(&s.consumer_key)
            .bind(&s.user_id)
            .bind(&s.roles)
            .bind(&s.launch_json)
            .bind(s.created_at)
            .bind(s.expires_at);
    }
    for (token, session_id, expires_at) in handoffs {
        query = query.bind(token).bind(session_id).bind(expires_at);
    }
    for (key, (count, last)) in usage {
        query = query.bind(count).bind(last).bind(key);
    }
    query.execute(&mut *conn).await?;
    Ok((outcomes, version))
}
