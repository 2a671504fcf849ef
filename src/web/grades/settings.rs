//! Grade passback's settings (`outcomes_*`), read and checked once at start.

use std::time::Duration;

use serde::Deserialize;

use crate::outcomes::{ClientConfig, OutcomesClient};

/// Optional settings (Rocket.toml / `ROCKET_*`): `outcomes_timeout` in seconds (default 10),
/// `outcomes_attempts` (default 3), `outcomes_ca_file` (PEM certificates of CAs to trust too),
/// `outcomes_allow_local` (grade services on this machine or its link; default on in debug only).
#[derive(Debug, Deserialize)]
struct OutcomesSettings {
    outcomes_timeout: Option<f64>,
    outcomes_attempts: Option<u32>,
    outcomes_ca_file: Option<std::path::PathBuf>,
    outcomes_allow_local: Option<bool>,
}

/// Most attempts per grade call `outcomes_attempts` may ask for.
const MAX_ATTEMPTS: u32 = 10;

/// The outcomes client's configuration from the settings, checked as far as building a client
/// with it (the LTI state fairing calls this before it opens the database, so that a bad value
/// creates nothing).
pub fn client_config(figment: &rocket::figment::Figment) -> Result<ClientConfig, String> {
    let raw: OutcomesSettings = figment.extract().map_err(crate::config::describe)?;
    let mut config = ClientConfig {
        // The README's fake LMS runs on the developer's machine; a production LMS does not.
        allow_local: raw
            .outcomes_allow_local
            .unwrap_or(crate::config::is_debug(figment)),
        ..ClientConfig::default()
    };
    if let Some(secs) = raw.outcomes_timeout {
        // At most an hour: a grader's page waits this long per attempt, and deadlines are
        // computed from it (no overflow).
        config.timeout = Duration::try_from_secs_f64(secs)
            .ok()
            .filter(|d| !d.is_zero() && d.as_secs_f64() <= 3600.0)
            .ok_or("outcomes_timeout must be a positive number of seconds, at most 3600")?;
        // Below the whole request's: a connection that never comes then reads as one (nothing
        // sent, retried), not as an LMS that took the request and did not answer.
        config.connect_timeout = config.connect_timeout.min(config.timeout / 2);
    }
    if let Some(n) = raw.outcomes_attempts {
        if !(1..=MAX_ATTEMPTS).contains(&n) {
            // Each attempt waits up to outcomes_timeout while the grader's page waits.
            return Err(format!(
                "outcomes_attempts must be between 1 and {MAX_ATTEMPTS}"
            ));
        }
        config.attempts = n;
    }
    // Empty is unset, as for `public_url` (an env file's `ROCKET_OUTCOMES_CA_FILE=`).
    if let Some(path) = raw
        .outcomes_ca_file
        .as_ref()
        .filter(|p| !p.as_os_str().is_empty())
    {
        config.extra_roots = read_ca_file(path)?;
        // A certificate that parses as PEM may still be unusable: the client says so only when
        // it is built.
        OutcomesClient::new(config.clone()).map_err(|e| {
            format!(
                "outcomes_ca_file {}: a certificate in it is not usable ({e})",
                path.display()
            )
        })?;
    }
    Ok(config)
}

/// The certificates of `outcomes_ca_file`, read once at start: a file that is missing or holds
/// no certificate stops the start rather than every grade call later.
fn read_ca_file(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, String> {
    let what = |e: String| format!("outcomes_ca_file {}: {e}", path.display());
    let pem = std::fs::read(path).map_err(|e| what(e.to_string()))?;
    let certificates =
        reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| what(e.to_string()))?;
    if certificates.is_empty() {
        return Err(what("no PEM certificate in it".into()));
    }
    Ok(certificates)
}
