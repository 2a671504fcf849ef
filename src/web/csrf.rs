//! Keyed tokens: CSRF tokens for the forms of LTI pages (the grade forms, logout), an HMAC of the
//! session id, and the admin's device marks, each under a key derived from Rocket's `secret_key`
//! for its one purpose (random per process when none is configured, in the debug profile), so a
//! token is valid only for its own session and purpose.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha1::Sha1;

/// A key behind tokens and marks (the forms' CSRF tokens, the admin's device marks): derived
/// from `secret_key` for one purpose, random per process when there is none. Held as an HMAC
/// already keyed, so no request pays for the key's set-up.
pub struct CsrfKey(Hmac<Sha1>);

impl CsrfKey {
    /// The key for `purpose` derived from the configured `secret_key`, or a random one when there
    /// is none.
    pub fn from_figment(figment: &rocket::figment::Figment, purpose: &[u8]) -> CsrfKey {
        crate::crypto::derived_key(figment, purpose)
            .map(CsrfKey::new)
            .unwrap_or_else(CsrfKey::random)
    }

    /// A fresh random key.
    pub fn random() -> CsrfKey {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        CsrfKey::new(key)
    }

    fn new(key: [u8; 32]) -> CsrfKey {
        // HMAC pads a key shorter than the hash's 64-byte block with zeros: the same MAC as
        // keying with the 32 bytes, by a constructor that cannot fail.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&key);
        CsrfKey(<Hmac<Sha1> as KeyInit>::new(&block.into()))
    }

    fn mac(&self, session_id: &str) -> Hmac<Sha1> {
        let mut mac = self.0.clone();
        mac.update(session_id.as_bytes());
        mac
    }

    /// The token for a session's forms.
    pub fn token(&self, session_id: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(session_id).finalize().into_bytes())
    }

    /// True when `token` is this session's token (compared in constant time).
    pub fn verify(&self, session_id: &str, token: &str) -> bool {
        match URL_SAFE_NO_PAD.decode(token.trim()) {
            Ok(given) => self.mac(session_id).verify_slice(&given).is_ok(),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_fits_only_its_session_and_key() {
        let key = CsrfKey::random();
        let token = key.token("session-a");
        assert!(key.verify("session-a", &token));
        assert!(!key.verify("session-b", &token));
        assert!(!CsrfKey::random().verify("session-a", &token));
        assert!(!key.verify("session-a", ""));
        assert!(!key.verify("session-a", "not base64 !"));
        assert!(!key.verify("session-a", &token[..token.len() - 2]));
    }

    #[test]
    fn tokens_are_the_hmac_of_the_32_byte_key() {
        // As before the key was kept padded: tokens and device marks given out by an older
        // version stay valid.
        let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(&[7; 32]).unwrap();
        mac.update(b"session-a");
        let want = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        assert_eq!(CsrfKey::new([7; 32]).token("session-a"), want);
    }

    #[test]
    fn the_key_follows_the_configured_secret_key() {
        use rocket::figment::Figment;
        let with = |k: &str| Figment::new().merge(("secret_key", k.to_string()));
        let key = |k: &str, purpose: &[u8]| CsrfKey::from_figment(&with(k), purpose);
        let token = key("key one", b"a").token("s");
        // Same secret_key (another process, or after a restart): same tokens.
        assert!(key("key one", b"a").verify("s", &token));
        assert!(!key("key one", b"b").verify("s", &token));
        assert!(!key("key two", b"a").verify("s", &token));
        assert!(!CsrfKey::from_figment(&Figment::new(), b"a").verify("s", &token));
    }
}
