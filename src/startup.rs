//! What happens once at start: the settings are checked (with warnings for what is probably not
//! meant), the database is opened, upgraded and its secrets checked against the key, the shared
//! state is built, and the pruning task is started.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use rocket::fairing::{AdHoc, Fairing};
use rocket::figment::Figment;
use rocket::futures::FutureExt;
use rocket::Rocket;

use crate::config::{self, Settings};
use crate::web::AppState;
use crate::{crypto, fork, store, web, DEMO_CONSUMER};

/// How often expired rows are pruned (see `store::prune_expired`).
const PRUNE_EVERY: Duration = Duration::from_secs(60);

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
    let unlike = templates_unlike_the_build(&dir);
    if !unlike.is_empty() {
        let said: Vec<String> = unlike
            .iter()
            .map(|(how, names)| format!("{how}: {}", names.join(", ")))
            .collect();
        log::warn!(
            "template_dir {}: templates unlike this build's ({}): restyled ones are fine, but \
             another version's make pages fail with 500 (install the templates of this version)",
            dir.display(),
            said.join("; ")
        );
    }
    Ok(())
}

include!(concat!(env!("OUT_DIR"), "/built_templates.rs"));

/// The templates this build was made with that `dir` holds otherwise, lacks or cannot be read
/// (each kind with its names, those at the top first: they make the pages learners see). Line
/// ends do not count: a checkout with CRLF holds the same templates.
fn templates_unlike_the_build(dir: &std::path::Path) -> Vec<(&'static str, Vec<&'static str>)> {
    let same = |a: &[u8], b: &[u8]| {
        a.iter()
            .filter(|&&c| c != b'\r')
            .eq(b.iter().filter(|&&c| c != b'\r'))
    };
    let mut names: Vec<&(&str, &[u8])> = BUILT_TEMPLATES.iter().collect();
    names.sort_by_key(|(name, _)| (name.contains('/'), *name));
    let mut unlike: Vec<(&str, Vec<&str>)> = vec![
        ("differ", vec![]),
        ("missing", vec![]),
        ("unreadable", vec![]),
    ];
    for (name, built) in names {
        let kind = match std::fs::read(dir.join(name)) {
            Ok(installed) if same(&installed, built) => continue,
            Ok(_) => 0,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 1,
            Err(_) => 2,
        };
        unlike[kind].1.push(name);
    }
    unlike.retain(|(_, names)| !names.is_empty());
    unlike
}

/// Warns of a fork launch page no POST route serves (checked once every route is mounted, a
/// fork's ignite fairings' included): an LMS launch there can only be refused.
pub(crate) fn warn_of_launch_pages_without_post_route(rocket: &Rocket<rocket::Orbit>) {
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
pub(crate) fn lti_state() -> impl Fairing {
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
pub(crate) fn pruning() -> impl Fairing {
    AdHoc::on_liftoff("Pruning", |rocket| {
        Box::pin(async move {
            if let Some(state) = rocket.state::<AppState>() {
                rocket::tokio::spawn(prune_forever(
                    state.db.clone(),
                    state.settings.outcome_target_ttl,
                ));
            }
        })
    })
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
fn unreadable_at_start(keys: &[String], development_key: bool) -> String {
    let key = match development_key {
        true => "the development key (no secret_key is set)",
        false => "this secret_key",
    };
    format!(
        "the secrets of {} consumer(s) ({}) do not decrypt under {key}: if the key changed, run \
         `lti-tool admin rekey` (see the README); a consumer added by a command line run under \
         another key is removed with `lti-tool consumer remove KEY`",
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
async fn seal_secret_key_check(db: &store::Db, development_key: bool) -> Result<(), String> {
    let (tx, check) = store::consumers::begin_under_key_check(db, true)
        .await
        .map_err(|e| e.to_string())?;
    match check {
        store::consumers::KeyCheck::Sealed => tx.commit().await.map_err(|e| e.to_string()),
        store::consumers::KeyCheck::Unreadable(keys) => {
            Err(unreadable_at_start(&keys, development_key))
        }
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

/// Reads and checks the settings, opens the database and builds the shared state.
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
        "settings file {}; database {}; public_url {public_url}; trusted_proxies {:?}",
        settings_file
            .as_deref()
            .map_or("none (ROCKET_* variables and defaults)".into(), |f| {
                f.display().to_string()
            }),
        db.connect_options().get_filename().display(),
        settings.trusted_proxies
    );
    if let Some(warning) = config::settings_file_warning(figment) {
        log::warn!("{warning}");
    }
    let development_key = crypto::uses_development_key(figment);
    let unreadable = unreadable_secrets(&db, figment).await?;
    if !unreadable.is_empty() {
        return Err(unreadable_at_start(&unreadable, development_key));
    }
    seal_secret_key_check(&db, development_key).await?;
    if !settings.debug_profile && !settings.seed_demo_consumer {
        refuse_public_demo_consumer(&db).await?;
    }
    if settings.seed_demo_consumer {
        seed_demo_consumer(&db).await?;
    }
    say_what_is_missing(&db).await;
    store::nonces::adopt_window(&db, settings.timestamp_window)
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
async fn prune_forever(db: store::Db, outcome_target_ttl: i64) {
    let mut tick = rocket::tokio::time::interval(PRUNE_EVERY);
    let opened = store::FileIdentity::of(&db).ok().flatten();
    let mut file_gone = false;
    loop {
        tick.tick().await;
        // A panic (a log line whose stdout is gone panics in a debug build) skips one pass, not
        // every pass to come.
        let pass = prune_pass(&db, outcome_target_ttl, opened, &mut file_gone);
        if let Ok(Pass::Stopped) = AssertUnwindSafe(pass).catch_unwind().await {
            return;
        }
    }
}

/// Whether the pruning task goes on.
enum Pass {
    Done,
    /// The server stopped (its pool is closed).
    Stopped,
}

/// One pass of [`prune_forever`].
async fn prune_pass(
    db: &store::Db,
    outcome_target_ttl: i64,
    opened: Option<store::FileIdentity>,
    file_gone: &mut bool,
) -> Pass {
    // Errors other than a missing file (a folder made unreadable) leave the last answer.
    if let (Some(opened), Ok(now)) = (opened, store::FileIdentity::of(db)) {
        let gone = now != Some(opened);
        if gone && !*file_gone {
            log::error!(
                "the database file {} was removed or replaced while the server runs: what \
                 it records from now on is lost when it stops. Stop the server, put the file \
                 back (or restore a backup) and start it again",
                db.connect_options().get_filename().display()
            );
        }
        *file_gone = gone;
    }
    match store::prune_expired(db, store::now(), outcome_target_ttl).await {
        Ok(0) => {}
        Ok(n) => log::info!("pruned {n} expired rows"),
        // A stop closes the pool under a pruning pass: that is no failure.
        Err(_) if db.is_closed() => return Pass::Stopped,
        Err(e) => log::warn!("pruning failed: {e}"),
    }
    Pass::Done
}
