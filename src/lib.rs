//! The reference LTI 1.1 tool provider: verified launches, sessions in SQLite, role-gated pages.
//!
//! `build(figment)` assembles the whole application; `main.rs` and the tests both use it.

// Every public item says what it is in a line (CI's clippy run denies warnings).
#![warn(missing_docs)]

pub mod cli;
pub mod config;
pub mod consumer_input;
pub mod crypto;
pub mod error;
pub mod fork;
pub mod lti;
pub mod outcomes;
pub mod store;
pub mod web;

use std::sync::Arc;
use std::time::Duration;

use rocket::fairing::{AdHoc, Fairing};
use rocket::figment::Figment;
use rocket::shield::{Frame, NoSniff, Shield};
use rocket::{Build, Rocket};
use rocket_dyn_templates::Template;

use crate::config::Settings;
use crate::web::AppState;

/// The demo consumer seeded in the debug profile: PyLTI's example key and secret.
pub const DEMO_CONSUMER: (&str, &str) = ("__consumer_key__", "__lti_secret__");

/// How often expired rows are pruned (see `store::prune_expired`).
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Rocket's figment (Rocket.toml + `ROCKET_*`), with our defaults for what is not set.
pub fn figment() -> Figment {
    with_defaults(rocket::Config::figment())
}

fn with_defaults(figment: Figment) -> Figment {
    // Templates ship with the source; a deployment elsewhere sets `template_dir`. In the default
    // profile, under any the configuration sets: a plain pair is global and would beat Rocket.toml.
    figment.join(rocket::figment::providers::Serialized::default(
        "template_dir",
        concat!(env!("CARGO_MANIFEST_DIR"), "/templates"),
    ))
}

/// Refuses to start when the page templates cannot be read: a folder the server's user may not
/// read (copied under a strict umask) leaves Rocket running with no pages, every answer a bare 500.
fn check_templates(figment: &Figment) -> Result<(), String> {
    let dir = figment
        .extract_inner::<rocket::figment::value::magic::RelativePathBuf>("template_dir")
        .map_err(config::describe)?
        .relative();
    for name in ["base.html.tera", "error.html.tera", "page.html.tera"] {
        std::fs::read(dir.join(name)).map_err(|e| {
            let advice = match e.kind() {
                std::io::ErrorKind::NotFound => "set template_dir to the folder of the templates",
                _ => "the server's user must be able to read the templates",
            };
            format!(
                "template_dir {}: cannot read {name} ({e}): {advice}",
                dir.display()
            )
        })?;
    }
    Ok(())
}

/// The application on Rocket's default configuration.
pub fn rocket() -> Rocket<Build> {
    build(figment())
}

/// The application on a given configuration (tests pass their own database URL here).
pub fn build(figment: Figment) -> Rocket<Build> {
    // The tool lives in an LMS iframe: X-Frame-Options would break it. `nosniff` is set by the
    // error pages themselves (some bypass the fairings) and by the fairing below: Shield would log
    // a warning for each error page, as it will not overwrite a header.
    let shield = Shield::default().disable::<Frame>().disable::<NoSniff>();
    let tool = rocket::custom(with_defaults(figment))
        .attach(shield)
        .attach(Template::custom(|engines| {
            // `fork::VISIT_PAGE` is fixed at build time and a plain path: the templates need no
            // per-request value for it.
            engines
                .tera
                .register_function("visit_page", |_: &_| Ok(web::pages::visit_page().into()));
        }))
        .attach(web::head::method_as_sent())
        .attach(web::stray_launch::fairing())
        .attach(lti_state())
        .attach(web::grades::fairing())
        .attach(pruning())
        .attach(AdHoc::on_liftoff("Launch pages", |rocket| {
            Box::pin(async move { warn_of_launch_pages_without_post_route(rocket) })
        }))
        .attach(log_colours_stay_as_configured())
        .attach(response_headers())
        .attach(web::admin::never_framed())
        .attach(web::session_cookie::refused_launches_end_their_session())
        .mount("/", web::pages::routes())
        .mount("/admin", web::admin::routes())
        .mount("/", web::handoff::routes())
        .mount("/", web::registration::routes())
        .mount("/", web::grades::routes())
        .register("/", web::error::catchers())
        .register("/admin", web::admin::catchers())
        .mount("/", fork::routes());
    fork::attach(tool)
}

/// Warns of a fork launch page no POST route serves (checked once every route is mounted, a
/// fork's ignite fairings' included): an LMS launch there can only be refused.
fn warn_of_launch_pages_without_post_route(rocket: &Rocket<rocket::Orbit>) {
    let fork_pages: Vec<&str> = fork::LAUNCH_PAGES.iter().map(|(p, _)| *p).collect();
    for path in web::pages::without_post_route(rocket, &fork_pages) {
        log::warn!(
            "fork::LAUNCH_PAGES names {path:?}, but no POST route serves it: an LMS launch there \
             is refused as \"Not a launch address\" (a launch URL needs a POST route with a \
             launch guard, LtiInitial or LtiAny)"
        );
    }
}

/// Reads the settings, opens the database and builds the shared state; mounts the routes that
/// settings turn on (off, they do not exist at all: 404 for any method).
fn lti_state() -> impl Fairing {
    AdHoc::try_on_ignite("LTI state", |rocket| async move {
        match init_state(rocket.figment()).await {
            Ok(state) => {
                let mut rocket = rocket;
                if state.settings.dev_launcher {
                    rocket = rocket.mount("/", web::dev_launcher::routes());
                }
                if state.settings.benchmark_routes {
                    rocket = web::bench::mount(rocket);
                }
                Ok(rocket.manage(state))
            }
            Err(e) => {
                log::error!("cannot start: {e}");
                Err(rocket)
            }
        }
    })
}

/// Starts the pruning task once the server is up.
fn pruning() -> impl Fairing {
    AdHoc::on_liftoff("Pruning", |rocket| {
        Box::pin(async move {
            if let Some(state) = rocket.state::<AppState>() {
                rocket::tokio::spawn(prune_forever(
                    state.db.clone(),
                    state.settings.outcome_target_ttl,
                    state.nonce_watermark.clone(),
                ));
            }
        })
    })
}

/// Rocket parses every request's Content-Type before the fairings run (and its Accept when a
/// route or catcher asks), and formatting a parse error (pear's `Display`) turns colour codes
/// back on for the whole process: one request with a malformed header would put escape codes in
/// every later log line, whatever `cli_colors` says. Accept is parsed here (Rocket keeps the
/// result), then Rocket's own rule is applied again.
fn log_colours_stay_as_configured() -> impl Fairing {
    AdHoc::on_request("Log colours stay as configured", |req, _| {
        Box::pin(async move {
            let unparseable = (req.content_type().is_none()
                && req.headers().contains("Content-Type"))
                || (req.accept().is_none() && req.headers().contains("Accept"));
            if unparseable {
                let colors =
                    req.rocket().config().cli_colors && yansi::Condition::stdouterr_are_tty();
                yansi::whenever(yansi::Condition::cached(colors));
            }
        })
    })
}

/// The headers of every answer: no sniffing, no caching of pages, no referrer to other sites, no
/// plug-ins or base URL (framing stays open for the LMS's iframe; `web::admin::never_framed`
/// closes it for the admin area).
fn response_headers() -> impl Fairing {
    AdHoc::on_response(
        "No sniffing, no caching of pages, no referrer elsewhere",
        |req, res| {
            Box::pin(async move {
                res.set_raw_header("X-Content-Type-Options", "nosniff");
                // Pages carry a user's data: shared caches and the back button must not keep
                // them. Only files served from /static may be cached, not the error pages there.
                let static_file = req.uri().path().starts_with("/static/")
                    && res.status().class() == rocket::http::StatusClass::Success;
                if !static_file && res.headers().get_one("Cache-Control").is_none() {
                    res.set_raw_header("Cache-Control", "no-store");
                }
                // Our own pages' addresses reach only ourselves (older browsers' `Referer` is
                // how `web::origin` tells our forms from other sites'), never the LMS.
                if res.headers().get_one("Referrer-Policy").is_none() {
                    res.set_raw_header("Referrer-Policy", "same-origin");
                }
                if res.headers().get_one("Content-Security-Policy").is_none() {
                    res.set_raw_header("Content-Security-Policy", web::BASE_CSP);
                }
            })
        },
    )
}

/// The keys of the consumers whose secrets do not decrypt under the configured `secret_key`, after
/// adopting (re-encrypting under the development key) a debug database of an older build, whose
/// secrets are all under its all-zero key.
pub(crate) async fn unreadable_secrets(
    db: &store::Db,
    figment: &Figment,
) -> Result<Vec<String>, String> {
    let unreadable = store::consumers::unreadable_secrets(db)
        .await
        .map_err(|e| e.to_string())?;
    if unreadable.is_empty() || !crypto::uses_development_key(figment) {
        return Ok(unreadable);
    }
    let legacy = crypto::SecretCipher::from_key_material(&crypto::LEGACY_DEBUG_KEY_MATERIAL);
    let not_legacy = store::consumers::unreadable_under(db, &legacy)
        .await
        .map_err(|e| e.to_string())?;
    // Adopted only when every unreadable secret is an older debug build's.
    if unreadable.iter().any(|key| not_legacy.contains(key)) {
        return Ok(unreadable);
    }
    match store::consumers::reencrypt_secrets(db, &legacy)
        .await
        .map_err(|e| e.to_string())?
    {
        store::consumers::Rekeyed::Done { changed, .. } => {
            log::warn!(
                "re-encrypted {changed} consumer secrets of an older debug build under the \
                 development key"
            );
            Ok(Vec::new())
        }
        // Checked above: every unreadable secret was an older build's. Changed meanwhile.
        store::consumers::Rekeyed::OldKeyWrong(_) => Ok(unreadable),
    }
}

/// Refuses to serve with the demo consumer enabled under its published secret (a debug database
/// moved to production): anyone could launch as any user with any role.
async fn refuse_public_demo_consumer(db: &store::Db) -> Result<(), String> {
    let (key, secret) = DEMO_CONSUMER;
    let demo = store::consumers::find(db, key)
        .await
        .map_err(|e| e.to_string())?;
    if demo.is_some_and(|c| c.enabled && c.secret == secret) {
        return Err(format!(
            "the demo consumer {key:?} is enabled with its published (PyLTI example) secret: \
             anyone could launch as any user. Remove it (`lti-tool consumer remove {key}`), disable it or \
             rotate its secret; or set seed_demo_consumer = true to keep it on purpose"
        ));
    }
    Ok(())
}

/// Why the server refuses to start when some consumers' secrets do not decrypt.
fn unreadable_at_start(keys: &[String]) -> String {
    format!(
        "the secrets of {} consumer(s) ({}) do not decrypt under this secret_key: if the key \
         changed, run `lti-tool admin rekey` (see the README); a consumer added by a command \
         line run under another key is removed with `lti-tool consumer remove KEY`",
        keys.len(),
        keys.join(", ")
    )
}

/// Warns about settings that work but are probably not what was meant.
fn warn_about_settings(settings: &Settings) {
    let https_public_url = settings
        .public_url
        .as_ref()
        .is_some_and(|url| url.scheme == "https");
    if settings.cookie_same_site == config::SameSitePolicy::None
        && !settings.cookie_secure
        && !https_public_url
    {
        log::warn!("cookie_same_site = \"none\" without cookie_secure: browsers will drop the session cookie of launches over plain http (https launches get Secure anyway)");
    }
    if settings.cookie_same_site != config::SameSitePolicy::None && !settings.debug_profile {
        log::warn!("cookie_same_site is not \"none\": browsers do not send the session cookie inside an LMS iframe (another site), so every click after a launch there is refused");
    }
    let behind_https = https_public_url || !settings.trusted_proxies.is_empty();
    if settings.cookie_secure && !behind_https {
        log::warn!("cookie_secure is on but neither an https public_url nor trusted_proxies is set: served over plain http (other than on localhost), browsers drop the Secure session cookie and every click after a launch is refused");
    }
    if settings.dev_launcher && !settings.debug_profile {
        log::warn!(
            "dev_launcher is on outside the debug profile: anyone can sign launches at /dev/launch"
        );
    }
    for (path, _) in fork::LAUNCH_PAGES {
        if !web::handoff::is_plain_path(path) {
            log::warn!(
                "fork::LAUNCH_PAGES names {path:?}, not a plain path of this tool (such as \"/quiz\"): \
                 the launch URLs shown and the registration XML would be wrong"
            );
        }
    }
    if web::pages::visit_page() != fork::VISIT_PAGE {
        log::warn!(
            "fork::VISIT_PAGE {:?} is not a plain path of this tool: pages lead back to {} instead",
            fork::VISIT_PAGE,
            web::pages::SESSION_PAGE
        );
    }
}

/// Every secret reads under this key: from now on the command line must use it too. Sealed
/// under the write lock after reading every secret again, so that a command line run under
/// another key cannot add one between the two.
async fn seal_secret_key_check(db: &store::Db) -> Result<(), String> {
    let (tx, check) = store::consumers::begin_under_key_check(db, true)
        .await
        .map_err(|e| e.to_string())?;
    match check {
        store::consumers::KeyCheck::Sealed => tx.commit().await.map_err(|e| e.to_string()),
        store::consumers::KeyCheck::Unreadable(keys) => Err(unreadable_at_start(&keys)),
        store::consumers::KeyCheck::OtherKey => {
            Err("the secret_key check could not be sealed".into())
        }
    }
}

/// Adds PyLTI's demo consumer unless it is there (`seed_demo_consumer`, the debug default).
async fn seed_demo_consumer(db: &store::Db) -> Result<(), String> {
    let (key, secret) = DEMO_CONSUMER;
    let added = store::consumers::insert(db, key, secret, "PyLTI demo consumer", store::now())
        .await
        .map_err(|e| e.to_string())?;
    if added {
        log::warn!(
            "seeded the demo consumer {key:?}: its secret is PyLTI's published one (see the \
             README), so anyone can launch with it (seed_demo_consumer is on; the default only \
             in debug)"
        );
    } else {
        log::info!("demo consumer {key:?} present (seed_demo_consumer is on)");
    }
    Ok(())
}

async fn init_state(figment: &Figment) -> Result<AppState, String> {
    config::check_rocket_settings(figment)?;
    // Before the settings are read: a misspelt key may be why one is missing.
    if figment.find_value("tls").is_ok() || figment.find_value("mtls").is_ok() {
        log::warn!("this build has no TLS: the tls settings are ignored and the server speaks plain http; terminate TLS in a proxy (README, \"Running in production\")");
    }
    // `ROCKET_PROFILE=prod` for `release`: no section of its own applies, quietly.
    let profile = figment.profile();
    let usual = profile == "debug" || profile == "release";
    if !usual && !figment.profiles().any(|p| p == profile) {
        log::warn!(
            "profile `{profile}` has no section in the configuration: only [default] and \
             [global] apply (misspelt? the usual profiles are debug and release)"
        );
    }
    for key in config::unknown_settings(figment) {
        log::warn!(
            "unknown setting `{key}` is ignored (misspelt? see the README's configuration \
             table; a setting of your own goes in SETTINGS, src/fork.rs)"
        );
    }
    let settings = Settings::from_figment(figment)?;
    warn_about_settings(&settings);
    // Refuses a missing key, bad grade passback settings or unreadable templates before a
    // database file is created for nothing.
    check_templates(figment)?;
    let cipher = crypto::SecretCipher::from_figment(figment)?;
    web::grades::client_config(figment)
        .map_err(|e| format!("grade passback: {}", config::with_source(figment, e)))?;
    let store::Opened {
        db,
        created,
        upgraded,
    } = store::open_telling(&settings.database_url)
        .await
        .map_err(|e| e.to_string())?;
    if created {
        log::warn!("created a new, empty database");
    }
    for migration in upgraded {
        log::warn!("upgraded the database: migration {migration}");
    }
    crypto::install_cipher(&db, cipher).await?;
    // What an admin checks first when the command line and the server seem to disagree.
    let public_url = match &settings.public_url {
        Some(origin) => origin.to_url(),
        None if settings.trusted_proxies.is_empty() => "not set (each request's Host)".into(),
        None => "not set (each request's Host, or a trusted proxy's X-Forwarded-* headers)".into(),
    };
    let settings_file = config::settings_file(figment);
    log::info!(
        "settings from {} and ROCKET_* variables; database {}; public_url {public_url}; \
         trusted_proxies {:?}",
        settings_file
            .as_deref()
            .map_or("no Rocket.toml".into(), |f| f.display().to_string()),
        db.connect_options().get_filename().display(),
        settings.trusted_proxies
    );
    if let (Some(file), Ok(working)) = (&settings_file, std::env::current_dir()) {
        if let Some(warning) = config::settings_file_warning(file, &working) {
            log::warn!("{warning}");
        }
    }
    let unreadable = unreadable_secrets(&db, figment).await?;
    if !unreadable.is_empty() {
        return Err(unreadable_at_start(&unreadable));
    }
    seal_secret_key_check(&db).await?;
    if !settings.debug_profile && !settings.seed_demo_consumer {
        refuse_public_demo_consumer(&db).await?;
    }
    if settings.seed_demo_consumer {
        seed_demo_consumer(&db).await?;
    }
    say_what_is_missing(&db).await;
    let nonce_watermark = store::nonces::NonceWatermark::load(&db, settings.timestamp_window)
        .await
        .map_err(|e| e.to_string())?;
    let front = store::front::StoreFront::start(&db)
        .await
        .map_err(|e| e.to_string())?;
    Ok(AppState {
        db,
        settings,
        front,
        page_forms: web::csrf::CsrfKey::from_figment(figment, b"page form csrf v1"),
        refusal_budget: web::diagnosis::RefusalBudget::default(),
        login_queue: web::admin::LoginQueue::default(),
        nonce_watermark: Arc::new(nonce_watermark),
        admin_devices: web::csrf::CsrfKey::from_figment(figment, b"admin device v1"),
    })
}

/// Tells a new installation's admin, at every log level, what it still needs before an LMS can
/// use it: a consumer key, and the admin page's password. A failed read only loses the hint.
async fn say_what_is_missing(db: &store::Db) {
    match store::consumers::enabled_count(db).await {
        Ok((0, _)) => log::warn!(
            "no consumer keys yet, so every launch is refused: add one with `lti-tool consumer \
             add KEY` (run with the server's settings) or on the admin page"
        ),
        Ok((_, 0)) => log::warn!(
            "every consumer key is disabled, so every launch is refused: enable one with \
             `lti-tool consumer enable KEY` (run with the server's settings) or on the admin page"
        ),
        _ => {}
    }
    if store::admin::password_hash(db)
        .await
        .is_ok_and(|h| h.is_none())
    {
        log::warn!(
            "the admin page (/admin) has no password yet: set one with `lti-tool admin \
             set-password` (run with the server's settings)"
        );
    }
}

/// Prunes every minute; also says, once, when the database file has been removed or replaced.
async fn prune_forever(
    db: store::Db,
    outcome_target_ttl: i64,
    nonce_mark: Arc<store::nonces::NonceWatermark>,
) {
    let mut tick = rocket::tokio::time::interval(PRUNE_EVERY);
    let opened = store::FileIdentity::of(&db).ok().flatten();
    let mut file_gone = false;
    loop {
        tick.tick().await;
        // Errors other than a missing file (a folder made unreadable) leave the last answer.
        if let (Some(opened), Ok(now)) = (opened, store::FileIdentity::of(&db)) {
            let gone = now != Some(opened);
            if gone && !file_gone {
                log::error!(
                    "the database file {} was removed or replaced while the server runs: what \
                     it records from now on is lost when it stops. Stop the server, put the file \
                     back (or restore a backup) and start it again",
                    db.connect_options().get_filename().display()
                );
            }
            file_gone = gone;
        }
        match store::prune_expired(&db, store::now(), outcome_target_ttl, &nonce_mark).await {
            Ok(0) => {}
            Ok(n) => {
                log::info!("pruned {n} expired rows (nonces, sessions, tokens, grade records)")
            }
            // A stop closes the pool under a pruning pass: that is no failure.
            Err(_) if db.is_closed() => return,
            Err(e) => log::warn!("pruning failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use rocket::figment::providers::{Format, Toml};

    use super::*;

    fn template_dir(figment: &Figment) -> String {
        figment.extract_inner("template_dir").unwrap()
    }

    #[test]
    fn template_dir_is_a_default_that_rocket_toml_overrides() {
        let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");
        // Rocket's defaults without the environment's ROCKET_* or a Rocket.toml.
        let toml = |text: &str| {
            Figment::from(rocket::Config::default()).merge(Toml::string(text).nested())
        };
        assert_eq!(
            template_dir(&with_defaults(toml("[default]\nport = 1"))),
            shipped
        );
        let set = with_defaults(toml("[default]\ntemplate_dir = \"/srv/t\""));
        assert_eq!(template_dir(&set), "/srv/t");
        // In the selected profile's section too, and the environment beats both.
        let release = toml("[release]\ntemplate_dir = \"/srv/r\"").select("release");
        assert_eq!(template_dir(&with_defaults(release.clone())), "/srv/r");
        let env = release.merge(("template_dir", "/srv/env"));
        assert_eq!(template_dir(&with_defaults(env)), "/srv/env");
    }
}
