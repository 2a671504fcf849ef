//! Consumer secrets encrypted at rest (ChaCha20-Poly1305 under a key derived from Rocket's
//! `secret_key`), and the admin password hash (Argon2id).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::{Argon2, PasswordVerifier};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rocket::figment::Figment;

use crate::error::LtiError;
use crate::store::Db;

/// The key used in the debug profile when no `secret_key` is configured. Rocket would make up a
/// random one per start, which would leave every stored secret unreadable after a restart.
/// Public knowledge: never for production (the release profile refuses to start without a key).
pub const DEVELOPMENT_SECRET_KEY: &str =
    "lti-tool development key: not secret, never use in production";

/// What older builds encrypted under by mistake when no `secret_key` was set (the debug server, or
/// the command line in any profile): Rocket's all-zero placeholder. Debug databases are adopted at
/// start (see `startup::unreadable_secrets`); `admin rekey` tries it when given "development".
pub const LEGACY_DEBUG_KEY_MATERIAL: [u8; 32] = [0; 32];

/// Whether consumer secrets use the development key (the debug profile without a `secret_key`).
pub fn uses_development_key(figment: &Figment) -> bool {
    secret_key_material(figment).is_none() && crate::config::is_debug(figment)
}

/// Encrypts and decrypts consumer secrets.
pub struct SecretCipher {
    aead: ChaCha20Poly1305,
}

impl SecretCipher {
    /// A cipher whose key is derived (HKDF-SHA256) from the `secret_key` material as configured.
    pub fn from_key_material(material: &[u8]) -> SecretCipher {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"lti-tool consumer secrets"), material);
        let mut key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit: this cannot fail.
        let _ = hk.expand(b"chacha20poly1305 v1", &mut key);
        SecretCipher {
            aead: ChaCha20Poly1305::new(Key::from_slice(&key)),
        }
    }

    /// The cipher for a configuration: its `secret_key`, or the development key in the debug
    /// profile when none is set. An error when a non-debug profile has no key.
    pub fn from_figment(figment: &Figment) -> Result<SecretCipher, String> {
        match secret_key_material(figment) {
            Some(material) => Ok(SecretCipher::from_key_material(&material)),
            None if crate::config::is_debug(figment) => {
                log::warn!(
                    "no secret_key configured: consumer secrets are encrypted under the public \
                     development key (debug profile only)"
                );
                Ok(SecretCipher::from_key_material(
                    DEVELOPMENT_SECRET_KEY.as_bytes(),
                ))
            }
            None => Err(
                "secret_key is not set (or is Rocket's all-zero placeholder): consumer secrets \
                 cannot be read or stored (set ROCKET_SECRET_KEY, e.g. from `openssl rand -base64 32`)"
                    .into(),
            ),
        }
    }

    /// Encrypts a secret for the row of `consumer_key` (bound as associated data, so a
    /// ciphertext copied to another row does not decrypt).
    pub fn encrypt(&self, consumer_key: &str, secret: &str) -> Result<String, LtiError> {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .aead
            .encrypt(
                &nonce,
                Payload {
                    msg: secret.as_bytes(),
                    aad: consumer_key.as_bytes(),
                },
            )
            .map_err(|_| LtiError::Storage("cannot encrypt a consumer secret".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(STANDARD.encode(out))
    }

    /// Decrypts what `encrypt` stored; an error when the key differs or the value was altered.
    pub fn decrypt(&self, consumer_key: &str, stored: &str) -> Result<String, LtiError> {
        let unreadable = || {
            LtiError::Storage(format!(
                "the secret of consumer {consumer_key:?} cannot be decrypted: has secret_key \
                 changed? (see `lti-tool admin rekey`)"
            ))
        };
        let bytes = STANDARD.decode(stored).map_err(|_| unreadable())?;
        if bytes.len() < 12 {
            return Err(unreadable());
        }
        let (nonce, sealed) = bytes.split_at(12);
        let plain = self
            .aead
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: consumer_key.as_bytes(),
                },
            )
            .map_err(|_| unreadable())?;
        String::from_utf8(plain).map_err(|_| unreadable())
    }
}

/// A 32-byte key for `purpose`, derived (HKDF-SHA256) from the configured `secret_key`, so that
/// it survives restarts and is shared by every instance; `None` when no key is configured.
pub fn derived_key(figment: &Figment, purpose: &[u8]) -> Option<[u8; 32]> {
    let material = secret_key_material(figment)?;
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"lti-tool derived keys"), &material);
    let mut key = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's limit: this cannot fail.
    let _ = hk.expand(purpose, &mut key);
    Some(key)
}

/// The `secret_key` as configured (a string as written, or an array of bytes), if any. A key that
/// Rocket reads as all zeros is no key: its own defaults (`rocket::Config::figment()`) carry such a
/// placeholder, and 64 hex `0`s or the base64 of 32 zero bytes decode to it; Rocket then makes up a
/// random key per start in debug and refuses to start otherwise.
fn secret_key_material(figment: &Figment) -> Option<Vec<u8>> {
    let rockets = figment.extract_inner::<rocket::config::SecretKey>("secret_key");
    if rockets.is_ok_and(|key| key.is_zero()) {
        return None;
    }
    if let Ok(s) = figment.extract_inner::<String>("secret_key") {
        return (!s.trim().is_empty()).then(|| s.trim().as_bytes().to_vec());
    }
    figment
        .extract_inner::<Vec<u8>>("secret_key")
        .ok()
        .filter(|b| b.iter().any(|&byte| byte != 0))
}

/// The cipher of each open database, by file. A registry rather than a parameter so that
/// `store::consumers` keeps taking just the pool (the launch pipeline and the command line call
/// it as before); keyed by file so that tests may run several apps in one process.
type Registry = RwLock<HashMap<PathBuf, Arc<SecretCipher>>>;

fn registry() -> &'static Registry {
    static REGISTRY: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

fn db_file(db: &Db) -> PathBuf {
    db.connect_options().get_filename().to_path_buf()
}

/// Makes `cipher` the one used for the secrets of this database.
pub fn install(db: &Db, cipher: SecretCipher) {
    if let Ok(mut map) = registry().write() {
        map.insert(db_file(db), Arc::new(cipher));
    }
}

/// The cipher installed for this database.
pub fn cipher_for(db: &Db) -> Result<Arc<SecretCipher>, LtiError> {
    registry()
        .read()
        .ok()
        .and_then(|map| map.get(&db_file(db)).cloned())
        .ok_or_else(|| LtiError::Storage("no secret key installed for this database".into()))
}

/// Installs `cipher` (the configuration's: [`SecretCipher::from_figment`], made before the
/// database is opened so that a missing key creates no file) for `db`, and encrypts any secrets
/// still in plaintext.
pub async fn install_cipher(db: &Db, cipher: SecretCipher) -> Result<(), String> {
    install(db, cipher);
    let n = crate::store::consumers::encrypt_plaintext_secrets(db)
        .await
        .map_err(|e| e.to_string())?;
    if n > 0 {
        log::info!("encrypted {n} consumer secrets stored in plaintext");
    }
    Ok(())
}

/// An Argon2id PHC string for a password (slow on purpose: call it off the async threads).
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// True when `password` matches the PHC string (slow on purpose: call it off the async threads).
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rockets_placeholder_is_no_key_and_a_set_key_is_one() {
        use rocket::figment::providers::Serialized;
        for defaults in [
            rocket::Config::debug_default(),
            rocket::Config::release_default(),
        ] {
            let figment = Figment::from(defaults);
            assert_eq!(secret_key_material(&figment), None);
            assert!(derived_key(&figment, b"x").is_none());
            let set = figment
                .clone()
                .merge(Serialized::default("secret_key", "k".repeat(44)));
            assert_eq!(secret_key_material(&set), Some("k".repeat(44).into_bytes()));
            // Zeros written out are Rocket's placeholder too, not a key.
            let zero_b64 = STANDARD.encode([0u8; 32]);
            for zeros in ["0".repeat(64), zero_b64] {
                let set = figment
                    .clone()
                    .merge(Serialized::default("secret_key", zeros.clone()));
                assert_eq!(secret_key_material(&set), None, "{zeros}");
            }
        }
        let debug = Figment::from(rocket::Config::debug_default());
        assert!(SecretCipher::from_figment(&debug).is_ok());
        let release = Figment::from(rocket::Config::release_default())
            .select(rocket::Config::RELEASE_PROFILE);
        assert!(SecretCipher::from_figment(&release).is_err());
    }

    #[test]
    fn secrets_round_trip_and_are_bound_to_key_and_row() {
        let a = SecretCipher::from_key_material(b"key a");
        let b = SecretCipher::from_key_material(b"key b");
        let stored = a.encrypt("moodle", "s3cret-value").unwrap();
        assert!(!stored.contains("s3cret-value"));
        assert_ne!(
            stored,
            a.encrypt("moodle", "s3cret-value").unwrap(),
            "fresh nonce"
        );
        assert_eq!(a.decrypt("moodle", &stored).unwrap(), "s3cret-value");
        assert!(b.decrypt("moodle", &stored).is_err(), "other key");
        assert!(a.decrypt("canvas", &stored).is_err(), "other row");
        assert!(a.decrypt("moodle", "not base64!").is_err());
        assert!(a.decrypt("moodle", "AAAA").is_err());
    }

    #[test]
    fn passwords_verify_only_when_equal() {
        let phc = hash_password("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("correct hors", &phc));
        assert!(!verify_password("correct horse", "garbage"));
    }
}
