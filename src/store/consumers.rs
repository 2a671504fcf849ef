//! The `consumers` table: LMS consumer keys and their shared secrets (encrypted at rest with
//! the database's cipher from `crypto`; callers only ever see plaintext). A pool from
//! `store::open` alone has no cipher: call `crypto::install_cipher` on it first. Launches count
//! themselves in `launch_count` and `last_launch_at` (`launches::record_batch`); `usage` reads
//! those with the refusal counts.

use sqlx::Row;

use super::Db;
use crate::crypto::{cipher_for, SecretCipher};
use crate::error::LtiError;

/// One tool consumer (an LMS, or a course in it). Its `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Consumer {
    /// The `oauth_consumer_key` it signs with.
    pub key: String,
    /// The shared secret.
    pub secret: String,
    /// The secret as the table stores it (sealed): the launch writer compares it to tell
    /// whether the consumer changed since it was read.
    pub stored_secret: String,
    /// A human name.
    pub name: String,
    /// Free text for admins.
    pub note: String,
    /// Disabled consumers are refused.
    pub enabled: bool,
    /// Unix seconds.
    pub created_at: i64,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A `{:?}` in a log line must not write the secret out.
        f.debug_struct("Consumer")
            .field("key", &self.key)
            .field("secret", &"[hidden]")
            .field("stored_secret", &"[hidden]")
            .field("name", &self.name)
            .field("note", &self.note)
            .field("enabled", &self.enabled)
            .field("created_at", &self.created_at)
            .finish()
    }
}

fn from_row(row: &sqlx::sqlite::SqliteRow, cipher: &SecretCipher) -> Result<Consumer, LtiError> {
    let key: String = row.try_get("consumer_key")?;
    let stored: String = row.try_get("secret")?;
    let secret = if row.try_get::<i64, _>("secret_encrypted")? != 0 {
        cipher.decrypt(&key, &stored)?
    } else {
        // A row from before encryption that the start-up migration has not reached yet.
        stored.clone()
    };
    Ok(Consumer {
        key,
        secret,
        stored_secret: stored,
        name: row.try_get("name")?,
        note: row.try_get("note")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        created_at: row.try_get("created_at")?,
    })
}

const COLUMNS: &str = "consumer_key, secret, secret_encrypted, name, note, enabled, created_at";

/// Looks a consumer up by key.
pub async fn find(db: &Db, key: &str) -> Result<Option<Consumer>, LtiError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM consumers WHERE consumer_key = ?"
    ))
    .bind(key)
    .fetch_optional(db)
    .await?;
    match row {
        Some(row) => Ok(Some(from_row(&row, &*cipher_for(db)?)?)),
        None => Ok(None),
    }
}

/// Whether `key` is PyLTI's demo consumer with its published secret (`crate::DEMO_CONSUMER`):
/// enabled, anyone could launch as any user. Where `seed_demo_consumer` is off the command line
/// and the admin page refuse to enable it; a server outside the debug profile also refuses to
/// start with it enabled (`startup::init_state`).
pub async fn is_published_demo(db: &Db, key: &str) -> Result<bool, LtiError> {
    let (demo_key, demo_secret) = crate::DEMO_CONSUMER;
    Ok(key == demo_key
        && find(db, key)
            .await?
            .is_some_and(|c| c.secret == demo_secret))
}

/// Why the demo consumer with its published secret may not be enabled, and what to do instead.
pub const PUBLISHED_DEMO_REFUSED: &str = "The demo consumer __consumer_key__ still has its \
    published (PyLTI example) secret, with which anyone could launch as any user, and \
    seed_demo_consumer is off (outside the debug profile the server would refuse to start): \
    rotate its secret first, or remove it";

/// Why the demo consumer may not be added with its published secret.
pub const PUBLISHED_DEMO_NOT_ADDED: &str = "The demo consumer __consumer_key__ may not be added \
    with its published (PyLTI example) secret while seed_demo_consumer is off: anyone could \
    launch as any user with it. Leave --secret out (one is generated)";

/// How many consumers there are, and how many of them are enabled.
pub async fn enabled_count(db: &Db) -> Result<(i64, i64), LtiError> {
    Ok(
        sqlx::query_as("SELECT COUNT(*), COALESCE(SUM(enabled = 1), 0) FROM consumers")
            .fetch_one(db)
            .await?,
    )
}

/// All consumer keys, without touching the secrets.
pub async fn keys(db: &Db) -> Result<Vec<String>, LtiError> {
    Ok(
        sqlx::query_scalar("SELECT consumer_key FROM consumers ORDER BY consumer_key")
            .fetch_all(db)
            .await?,
    )
}

/// The other keys that differ from `key` only in the case of ASCII letters: keys are
/// case-sensitive, so both are valid, but such a pair is usually a typing mistake.
pub async fn keys_differing_in_case(db: &Db, key: &str) -> Result<Vec<String>, LtiError> {
    Ok(sqlx::query_scalar(
        "SELECT consumer_key FROM consumers
         WHERE consumer_key = ? COLLATE NOCASE AND consumer_key <> ? ORDER BY consumer_key",
    )
    .bind(key)
    .bind(key)
    .fetch_all(db)
    .await?)
}

/// Adds a consumer; returns false (and changes nothing) when the key exists.
pub async fn insert(
    db: &Db,
    key: &str,
    secret: &str,
    name: &str,
    now: i64,
) -> Result<bool, LtiError> {
    create(db, key, secret, name, "", now).await
}

/// Adds an enabled consumer with a note; returns false (and changes nothing) when the key exists.
pub async fn create(
    db: &Db,
    key: &str,
    secret: &str,
    name: &str,
    note: &str,
    now: i64,
) -> Result<bool, LtiError> {
    create_on(db, &*cipher_for(db)?, key, secret, name, note, now).await
}

/// [`create`] on any executor (a transaction), sealing the secret with `cipher`.
pub async fn create_on<'c, E>(
    executor: E,
    cipher: &SecretCipher,
    key: &str,
    secret: &str,
    name: &str,
    note: &str,
    now: i64,
) -> Result<bool, LtiError>
where
    E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
{
    let done = sqlx::query(
        "INSERT INTO consumers (consumer_key, secret, secret_encrypted, name, note, enabled, created_at) \
         VALUES (?, ?, 1, ?, ?, 1, ?) ON CONFLICT (consumer_key) DO NOTHING",
    )
    .bind(key)
    .bind(cipher.encrypt(key, secret)?)
    .bind(name)
    .bind(note)
    .bind(now)
    .execute(executor)
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
    set_secret_on(db, &*cipher_for(db)?, key, secret).await
}

/// [`set_secret`] on any executor (a transaction), sealing the secret with `cipher`.
pub async fn set_secret_on<'c, E>(
    executor: E,
    cipher: &SecretCipher,
    key: &str,
    secret: &str,
) -> Result<bool, LtiError>
where
    E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
{
    let done =
        sqlx::query("UPDATE consumers SET secret = ?, secret_encrypted = 1 WHERE consumer_key = ?")
            .bind(cipher.encrypt(key, secret)?)
            .bind(key)
            .execute(executor)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// A short fingerprint of a consumer's stored (sealed) secret: the rotation form carries it, so
/// that sending that form again does not replace the secret it already replaced.
pub fn secret_fingerprint(stored_secret: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(stored_secret.as_bytes())[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A consumer's secret as stored (sealed), if the consumer exists.
async fn stored_secret(db: &Db, key: &str) -> Result<Option<String>, LtiError> {
    Ok(
        sqlx::query_scalar("SELECT secret FROM consumers WHERE consumer_key = ?")
            .bind(key)
            .fetch_optional(db)
            .await?,
    )
}

/// The fingerprint ([`secret_fingerprint`]) of a consumer's secret as stored now, if it exists.
pub async fn current_fingerprint(db: &Db, key: &str) -> Result<Option<String>, LtiError> {
    Ok(stored_secret(db, key)
        .await?
        .as_deref()
        .map(secret_fingerprint))
}

/// Replaces a consumer's secret if the one stored now has the `fingerprint` the caller was shown.
/// The update itself checks that the secret is still the one compared, so of two such calls at
/// once only one replaces it. Errors: `NoSuchConsumer`, `SecretAlreadyReplaced`.
pub async fn replace_secret(
    db: &Db,
    key: &str,
    secret: &str,
    fingerprint: &str,
) -> Result<(), LtiError> {
    let stored = stored_secret(db, key)
        .await?
        .ok_or(LtiError::NoSuchConsumer)?;
    if secret_fingerprint(&stored) != fingerprint {
        return Err(LtiError::SecretAlreadyReplaced);
    }
    let done = sqlx::query(
        "UPDATE consumers SET secret = ?, secret_encrypted = 1 \
         WHERE consumer_key = ? AND secret = ?",
    )
    .bind(cipher_for(db)?.encrypt(key, secret)?)
    .bind(key)
    .bind(&stored)
    .execute(db)
    .await?;
    match done.rows_affected() {
        1 => Ok(()),
        _ => Err(LtiError::SecretAlreadyReplaced),
    }
}

/// Deletes a consumer with its sessions, its learners' grade records and its refused-launch log,
/// in one transaction; false when there is no such key.
pub async fn delete(db: &Db, key: &str) -> Result<bool, LtiError> {
    let mut tx = db.begin().await?;
    let done = sqlx::query("DELETE FROM consumers WHERE consumer_key = ?")
        .bind(key)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        // Nothing else is deleted either: unknown keys' refusals are kept under `""` and under
        // the key they named, and are not this (missing) consumer's to take.
        return Ok(false);
    }
    super::sessions::delete_for(&mut *tx, key).await?;
    // Nonces stay until they expire: a consumer re-added with the same secret must still refuse
    // replays of its recent launches.
    // Learners' names and result ids go too; and a new LMS given the same key later must not
    // see them on its staff pages (Moodle's resource link ids are small numbers, easily reused).
    super::outcomes::delete_for(&mut *tx, key).await?;
    super::refusals::delete_for(&mut *tx, key).await?;
    super::usage::delete_for(&mut *tx, key).await?;
    crate::fork::forget_consumer(&mut tx, key).await?;
    tx.commit().await?;
    Ok(true)
}

/// Encrypts the secrets still stored in plaintext (rows from before migration 0002); returns
/// how many were encrypted.
pub async fn encrypt_plaintext_secrets(db: &Db) -> Result<u64, LtiError> {
    let cipher = cipher_for(db)?;
    // IMMEDIATE: a read, then writes; deferred, a write made meanwhile by another process
    // would fail the first write at once ("database is locked") instead of waiting.
    let mut tx = db.begin_with("BEGIN IMMEDIATE").await?;
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT consumer_key, secret FROM consumers WHERE secret_encrypted = 0")
            .fetch_all(&mut *tx)
            .await?;
    for (key, secret) in &rows {
        sqlx::query("UPDATE consumers SET secret = ?, secret_encrypted = 1 WHERE consumer_key = ?")
            .bind(cipher.encrypt(key, secret)?)
            .bind(key)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(rows.len() as u64)
}

/// The keys whose stored secret the database's cipher cannot decrypt (after a key change).
pub async fn unreadable_secrets(db: &Db) -> Result<Vec<String>, LtiError> {
    unreadable_under(db, &*cipher_for(db)?).await
}

/// The keys of the consumers whose stored secrets `cipher` cannot decrypt.
pub async fn unreadable_under<'c, E>(
    executor: E,
    cipher: &SecretCipher,
) -> Result<Vec<String>, LtiError>
where
    E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
{
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT consumer_key, secret FROM consumers WHERE secret_encrypted = 1")
            .fetch_all(executor)
            .await?;
    Ok(rows
        .into_iter()
        .filter(|(key, stored)| cipher.decrypt(key, stored).is_err())
        .map(|(key, _)| key)
        .collect())
}

/// The row the key check is sealed for: no consumer key is empty, so no secret can stand in for it.
const KEY_CHECK_ROW: &str = "";
/// What the key check holds.
const KEY_CHECK_TEXT: &str = "lti-tool secret_key check";

async fn write_key_check_on<'c, E>(executor: E, cipher: &SecretCipher) -> Result<(), LtiError>
where
    E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
{
    sqlx::query(
        "INSERT INTO secret_key_check (id, sealed) VALUES (1, ?) \
         ON CONFLICT (id) DO UPDATE SET sealed = excluded.sealed",
    )
    .bind(cipher.encrypt(KEY_CHECK_ROW, KEY_CHECK_TEXT)?)
    .execute(executor)
    .await?;
    Ok(())
}

/// Whether the server last started on this database under the `secret_key` of the database's
/// current cipher; `None` when no server has started on it yet.
pub async fn key_check(db: &Db) -> Result<Option<bool>, LtiError> {
    key_check_on(db, &*cipher_for(db)?).await
}

async fn key_check_on<'c, E>(executor: E, cipher: &SecretCipher) -> Result<Option<bool>, LtiError>
where
    E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
{
    let sealed: Option<String> = sqlx::query_scalar("SELECT sealed FROM secret_key_check")
        .fetch_optional(executor)
        .await?;
    Ok(sealed.map(|s| cipher.decrypt(KEY_CHECK_ROW, &s).is_ok()))
}

/// How the key check stands, read under the write lock by [`begin_under_key_check`].
#[derive(Debug, PartialEq, Eq)]
pub enum KeyCheck {
    /// Sealed under the database's current cipher (sealed in the transaction if it was missing,
    /// or stale and replaceable): secrets may be written.
    Sealed,
    /// Sealed under another key, and not replaceable: nothing was written.
    OtherKey,
    /// It was missing or stale, and these consumers' secrets do not decrypt under the current
    /// cipher: nothing was written.
    Unreadable(Vec<String>),
}

/// Begins a write transaction (`BEGIN IMMEDIATE`: it takes the write lock at once) and brings
/// the key check up to date in it: when it is missing, or stale and `replace_stale` (the server
/// starting under a new key), it is sealed under the current cipher if every stored secret
/// decrypts under it. Holding the lock from check to commit is what keeps a server starting under
/// another key and a command line writing a secret from passing each other's checks. The caller
/// writes under [`KeyCheck::Sealed`] and commits; dropping the transaction undoes the seal.
pub async fn begin_under_key_check(
    db: &Db,
    replace_stale: bool,
) -> Result<(sqlx::Transaction<'static, sqlx::Sqlite>, KeyCheck), LtiError> {
    let cipher = cipher_for(db)?;
    let mut tx = db.begin_with("BEGIN IMMEDIATE").await?;
    let check = match key_check_on(&mut *tx, &cipher).await? {
        Some(true) => KeyCheck::Sealed,
        Some(false) if !replace_stale => KeyCheck::OtherKey,
        _ => {
            let unreadable = unreadable_under(&mut *tx, &cipher).await?;
            if unreadable.is_empty() {
                write_key_check_on(&mut *tx, &cipher).await?;
                KeyCheck::Sealed
            } else {
                KeyCheck::Unreadable(unreadable)
            }
        }
    };
    Ok((tx, check))
}

/// What [`reencrypt_secrets`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rekeyed {
    /// Done: how many secrets there are, and how many of them were re-encrypted (the others
    /// already decrypted under the current key).
    Done {
        /// Secrets stored.
        secrets: u64,
        /// Secrets re-encrypted.
        changed: u64,
    },
    /// Nothing changed: this consumer's secret decrypts under neither key.
    OldKeyWrong(String),
}

/// Re-encrypts every secret from the `old` cipher to the database's current one, in one
/// transaction: nothing changes unless every secret decrypts under `old` (or already under the
/// current key). The key check is sealed under the current key too.
pub async fn reencrypt_secrets(db: &Db, old: &SecretCipher) -> Result<Rekeyed, LtiError> {
    let new = cipher_for(db)?;
    // IMMEDIATE: a read, then writes (see `encrypt_plaintext_secrets`).
    let mut tx = db.begin_with("BEGIN IMMEDIATE").await?;
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT consumer_key, secret FROM consumers WHERE secret_encrypted = 1")
            .fetch_all(&mut *tx)
            .await?;
    let mut changed = 0;
    for (key, stored) in &rows {
        if new.decrypt(key, stored).is_ok() {
            continue;
        }
        let Ok(plain) = old.decrypt(key, stored) else {
            return Ok(Rekeyed::OldKeyWrong(key.clone()));
        };
        sqlx::query("UPDATE consumers SET secret = ? WHERE consumer_key = ?")
            .bind(new.encrypt(key, &plain)?)
            .bind(key)
            .execute(&mut *tx)
            .await?;
        changed += 1;
    }
    write_key_check_on(&mut *tx, &new).await?;
    tx.commit().await?;
    Ok(Rekeyed::Done {
        secrets: rows.len() as u64,
        changed,
    })
}

/// Gives every consumer whose secret does not decrypt under the database's cipher a new random
/// secret, and seals the key check under that cipher, in one transaction: the way out when the
/// old `secret_key` is lost. With `apply` false nothing is written. Returns each such consumer's
/// key and its new secret (or, without `apply`, an empty one), with the transaction still open:
/// the caller shows the secrets, then commits (if they cannot be shown, nothing is changed).
pub async fn replace_unreadable_secrets(
    db: &Db,
    apply: bool,
) -> Result<
    (
        sqlx::Transaction<'static, sqlx::Sqlite>,
        Vec<(String, String)>,
    ),
    LtiError,
> {
    let cipher = cipher_for(db)?;
    // IMMEDIATE: a read, then writes (see `encrypt_plaintext_secrets`); a dry run only reads.
    let mut tx = db
        .begin_with(if apply { "BEGIN IMMEDIATE" } else { "BEGIN" })
        .await?;
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT consumer_key, secret FROM consumers WHERE secret_encrypted = 1")
            .fetch_all(&mut *tx)
            .await?;
    let mut replaced = Vec::new();
    for (key, stored) in rows {
        if cipher.decrypt(&key, &stored).is_ok() {
            continue;
        }
        let secret = if apply {
            let secret = crate::consumer_input::generate_secret();
            sqlx::query("UPDATE consumers SET secret = ? WHERE consumer_key = ?")
                .bind(cipher.encrypt(&key, &secret)?)
                .bind(&key)
                .execute(&mut *tx)
                .await?;
            secret
        } else {
            String::new()
        };
        replaced.push((key, secret));
    }
    if apply {
        write_key_check_on(&mut *tx, &cipher).await?;
    }
    Ok((tx, replaced))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_secret() {
        let consumer = Consumer {
            key: "moodle".into(),
            secret: "s3cret-value".into(),
            stored_secret: "sealed-value".into(),
            name: "Moodle".into(),
            note: String::new(),
            enabled: true,
            created_at: 0,
        };
        let shown = format!("{consumer:?}");
        assert!(shown.contains("moodle"), "{shown}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("sealed"),
            "{shown}"
        );
    }
}
