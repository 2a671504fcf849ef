//! `lti-tool admin ...`: the admin password and re-encryption of secrets after a key change.

use std::io::{BufRead, IsTerminal};

use clap::Subcommand;

use crate::crypto::{self, SecretCipher, DEVELOPMENT_SECRET_KEY};
use crate::store::consumers::{self, Rekeyed};
use crate::store::{self, admin};

/// Shortest admin password accepted.
const MIN_PASSWORD: usize = 8;
/// Longest admin password accepted (the login form must still carry it).
const MAX_PASSWORD: usize = 1000;

/// What `lti-tool admin` does.
#[derive(Debug, Subcommand)]
pub enum AdminAction {
    /// Set the admin password (asked twice on a terminal; otherwise line 1 of standard input,
    /// and line 2, if given, must match). Ends every admin session; a running server uses it at once.
    SetPassword,
    /// Re-encrypt the consumer secrets after `secret_key` changed: run it with the new key
    /// configured and give the old key on standard input ("development" for the built-in one).
    Rekey,
    /// When the old `secret_key` is lost: give every consumer whose secret does not decrypt under
    /// the configured key a new secret, printed once (each LMS must then be given its new one).
    /// Without --confirm it only lists them.
    ReplaceLostSecrets {
        /// Replace them (otherwise only list them).
        #[arg(long)]
        confirm: bool,
    },
}

/// Runs an admin command.
pub async fn run(action: AdminAction) -> Result<(), String> {
    match action {
        AdminAction::SetPassword => set_password().await,
        AdminAction::Rekey => rekey().await,
        AdminAction::ReplaceLostSecrets { confirm } => replace_lost_secrets(confirm).await,
    }
}

/// Up to two lines of standard input, without their line endings.
fn stdin_lines() -> Result<(String, Option<String>), String> {
    let mut lines = std::io::stdin().lock().lines();
    let first = lines
        .next()
        .transpose()
        .map_err(|e| format!("cannot read standard input: {e}"))?
        .ok_or("nothing on standard input")?;
    let second = lines
        .next()
        .transpose()
        .map_err(|e| format!("cannot read standard input: {e}"))?;
    Ok((first, second))
}

fn read_new_password() -> Result<String, String> {
    let (first, second) = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("New admin password: ")
            .map_err(|e| format!("cannot read the password: {e}"))?;
        let second = rpassword::prompt_password("Same password again: ")
            .map_err(|e| format!("cannot read the password: {e}"))?;
        (first, Some(second))
    } else {
        stdin_lines()?
    };
    if second.is_some_and(|s| s != first) {
        return Err("the two passwords differ; nothing was changed".into());
    }
    // The login form takes up to 32 KiB; 1000 characters fit however they are encoded.
    if first.chars().count() > MAX_PASSWORD {
        return Err(format!(
            "the password is too long: use at most {MAX_PASSWORD} characters; nothing was changed"
        ));
    }
    if first.chars().count() < MIN_PASSWORD {
        return Err(format!(
            "the password is too short: use at least {MIN_PASSWORD} characters; nothing was changed"
        ));
    }
    Ok(first)
}

async fn set_password() -> Result<(), String> {
    super::settings_and_cipher()?;
    let password = read_new_password()?;
    let hash = rocket::tokio::task::spawn_blocking(move || crypto::hash_password(&password))
        .await
        .map_err(|e| e.to_string())??;
    super::with_db(async |db| {
        admin::set_password_hash(db, &hash, store::now())
            .await
            .map_err(|e| e.to_string())
    })
    .await?;
    super::say("admin password set; log in at /admin (existing admin sessions have ended)");
    Ok(())
}

async fn rekey() -> Result<(), String> {
    super::settings_and_cipher()?;
    // One line, not echoed: it is a key.
    let old = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(
            "Old secret_key (as it was configured; \"development\" for the built-in key): ",
        )
        .map_err(|e| format!("cannot read the old key: {e}"))?
    } else {
        super::first_line_of_stdin()?
    };
    let old = old.trim();
    if old.is_empty() {
        return Err("no old secret_key given; nothing was changed".into());
    }
    // "development" also covers what older builds wrote by mistake under Rocket's all-zero
    // placeholder key (debug databases, or the command line run without a key).
    let candidates = if old == "development" {
        vec![
            SecretCipher::from_key_material(DEVELOPMENT_SECRET_KEY.as_bytes()),
            SecretCipher::from_key_material(&crypto::LEGACY_DEBUG_KEY_MATERIAL),
        ]
    } else {
        vec![SecretCipher::from_key_material(old.as_bytes())]
    };
    let done = super::with_db(async |db| {
        let mut outcome = Rekeyed::OldKeyWrong(String::new());
        // Each try changes nothing unless every secret decrypts, so trying the next is safe.
        for old in &candidates {
            outcome = consumers::reencrypt_secrets(db, old)
                .await
                .map_err(|e| format!("{e}; nothing was changed"))?;
            if matches!(outcome, Rekeyed::Done { .. }) {
                break;
            }
        }
        Ok(outcome)
    })
    .await?;
    match done {
        // Inside `rekey`, the usual advice for an unreadable secret (run `rekey`) would go round
        // in circles.
        Rekeyed::OldKeyWrong(key) => {
            return Err(format!(
                "the old key given does not decrypt the secret of consumer {key:?} either: check \
                 the old key (as it was configured); nothing was changed"
            ))
        }
        Rekeyed::Done { secrets: 0, .. } => {
            super::say("there are no consumer secrets to re-encrypt")
        }
        Rekeyed::Done { changed: 0, .. } => super::say(
            "every consumer secret already decrypts under the configured secret_key: nothing \
             was re-encrypted (put the new key in the server's settings first, then run this \
             with them)",
        ),
        Rekeyed::Done { changed, .. } => super::say(&format!(
            "re-encrypted {changed} consumer secrets under the configured secret_key"
        )),
    }
    Ok(())
}

async fn replace_lost_secrets(confirm: bool) -> Result<(), String> {
    let replaced = super::with_db(async |db| {
        let (tx, replaced) = consumers::replace_unreadable_secrets(db, confirm)
            .await
            .map_err(|e| e.to_string())?;
        if confirm && !replaced.is_empty() {
            let mut text: String = replaced
                .iter()
                .map(|(key, secret)| format!("{key}\t{secret}\n"))
                .collect();
            text.push_str(&format!(
                "(new secrets for {} consumer(s), shown once: enter each in its LMS now)\n",
                replaced.len()
            ));
            super::show_before_commit(&text)?;
        }
        // Without --confirm nothing was written; the commit only ends the transaction.
        tx.commit()
            .await
            .map_err(super::not_saved(confirm && !replaced.is_empty()))?;
        Ok(replaced)
    })
    .await?;
    if replaced.is_empty() {
        super::say(
            "every consumer secret decrypts under the configured secret_key: nothing to replace",
        );
        return Ok(());
    }
    if !confirm {
        let keys: Vec<&str> = replaced.iter().map(|(k, _)| k.as_str()).collect();
        return Err(format!(
            "{} consumer(s) have secrets that do not decrypt under the configured secret_key: {}. \
             If the old key is lost, run again with --confirm to give each a new secret (each LMS \
             must then be given its new one); if it is not, use `lti-tool admin rekey`. Nothing \
             was changed.",
            replaced.len(),
            keys.join(", ")
        ));
    }
    Ok(())
}
