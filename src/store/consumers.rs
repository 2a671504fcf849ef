//! The `consumers` table: LMS consumer keys and their shared secrets.

use sqlx::Row;

use super::Db;
use crate::error::LtiError;

/// One tool consumer (an LMS, or a course in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    /// The `oauth_consumer_key` it signs with.
    pub key: String,
    /// The shared secret.
    pub secret: String,
    /// A human name.
    pub name: String,
    /// Free text for admins.
    pub note: String,
    /// Disabled consumers are refused.
    pub enabled: bool,
    /// Unix seconds.
    pub created_at: i64,
}

fn from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Consumer, sqlx::Error> {
    Ok(Consumer {
        key: row.try_get("consumer_key")?,
        secret: row.try_get("secret")?,
        name: row.try_get("name")?,
        note: row.try_get("note")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        created_at: row.try_get("created_at")?,
    })
}

const COLUMNS: &str = "consumer_key, secret, name, note, enabled, created_at";

/// Looks a consumer up by key.
pub async fn find(db: &Db, key: &str) -> Result<Option<Consumer>, LtiError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM consumers WHERE consumer_key = ?"
    ))
    .bind(key)
    .fetch_optional(db)
    .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// All consumers, by key.
pub async fn list(db: &Db) -> Result<Vec<Consumer>, LtiError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM consumers ORDER BY consumer_key"
    ))
    .fetch_all(db)
    .await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// Adds a consumer; returns false (and changes nothing) when the key exists.
pub async fn insert(
    db: &Db,
    key: &str,
    secret: &str,
    name: &str,
    now: i64,
) -> Result<bool, LtiError> {
    let done = sqlx::query(
        "INSERT INTO consumers (consumer_key, secret, name, enabled, created_at) VALUES (?, ?, ?, 1, ?) \
         ON CONFLICT (consumer_key) DO NOTHING",
    )
    .bind(key)
    .bind(secret)
    .bind(name)
    .bind(now)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Enables or disables a consumer; false when there is no such key.
pub async fn set_enabled(db: &Db, key: &str, enabled: bool) -> Result<bool, LtiError> {
    let done = sqlx::query("UPDATE consumers SET enabled = ? WHERE consumer_key = ?")
        .bind(enabled as i64)
        .bind(key)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Replaces a consumer's secret; false when there is no such key.
pub async fn set_secret(db: &Db, key: &str, secret: &str) -> Result<bool, LtiError> {
    let done = sqlx::query("UPDATE consumers SET secret = ? WHERE consumer_key = ?")
        .bind(secret)
        .bind(key)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes a consumer with its sessions, nonces and refused-launch log, in one transaction; false when there is no such key.
pub async fn delete(db: &Db, key: &str) -> Result<bool, LtiError> {
    let mut tx = db.begin().await?;
    let done = sqlx::query("DELETE FROM consumers WHERE consumer_key = ?")
        .bind(key)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM sessions WHERE consumer_key = ?")
        .bind(key)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM nonces WHERE consumer_key = ?")
        .bind(key)
        .execute(&mut *tx)
        .await?;
    super::refusals::delete_for(&mut *tx, key).await?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

/// True when `key` is a valid consumer key: 1 to 255 characters of `A-Za-z0-9._:-`.
pub fn is_valid_key(key: &str) -> bool {
    (1..=255).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

/// A new random secret: 40 characters of `A-Za-z0-9-_` (about 238 bits).
pub fn generate_secret() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::rngs::OsRng;
    (0..40)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}
