//! Typed settings, read from the same figment as Rocket's own (Rocket.toml, then `ROCKET_*`).

use std::net::IpAddr;

use rocket::figment::Figment;
use rocket::http::SameSite;
use serde::Deserialize;

/// The settings file the configuration was read from, if one was found: Rocket looks for
/// `Rocket.toml` (or the file `ROCKET_CONFIG` names) in the working folder, then in each folder
/// above it.
pub fn settings_file(figment: &Figment) -> Option<std::path::PathBuf> {
    figment.metadata().find_map(|m| match &m.source {
        Some(rocket::figment::Source::File(path)) => Some(path.clone()),
        _ => None,
    })
}

/// A warning when Rocket found the settings file in a folder above the working folder (a stray
/// `/var/Rocket.toml` applies to a service run in `/var/lib/lti-tool`), else `None`.
pub fn settings_file_warning(figment: &Figment) -> Option<String> {
    let file = settings_file(figment)?;
    let working = std::env::current_dir().ok()?;
    let named = std::env::var("ROCKET_CONFIG").ok();
    found_above(&file, &working, named.as_deref().map(str::trim))
}

/// The warning of [`settings_file_warning`] for `file`, found for the name `named` (the
/// `ROCKET_CONFIG` setting, else `Rocket.toml`) from the folder `working`. An absolute name is
/// where the file is meant to be.
fn found_above(
    file: &std::path::Path,
    working: &std::path::Path,
    named: Option<&str>,
) -> Option<String> {
    let name = named.unwrap_or("Rocket.toml");
    if std::path::Path::new(name).is_absolute() || file == working.join(name) {
        return None;
    }
    Some(format!(
        "settings are read from {}, in a folder above the working folder {} (Rocket looks for \
         {name} in each folder above it): is that file meant for this tool? A relative \
         database_url, the default included, is still read from the working folder",
        file.display(),
        working.display()
    ))
}

/// Whether the settings are the debug profile's (`cargo run`), whose defaults suit a developer's
/// machine and never a server.
pub fn is_debug(figment: &Figment) -> bool {
    figment.profile() == "debug"
}

/// The cookie `SameSite` policy, as written in the configuration (in any letter case: the cookie
/// header writes `Lax`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSitePolicy {
    /// Sent on top-level navigation from other sites; fine on localhost over http.
    Lax,
    /// Never sent cross-site: breaks the tool inside an LMS iframe.
    Strict,
    /// Sent everywhere, including inside the LMS iframe; browsers require `Secure` with it.
    None,
}

impl<'de> Deserialize<'de> for SameSitePolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.to_ascii_lowercase().as_str() {
            "lax" => Ok(SameSitePolicy::Lax),
            "strict" => Ok(SameSitePolicy::Strict),
            "none" => Ok(SameSitePolicy::None),
            _ => Err(serde::de::Error::invalid_value(
                serde::de::Unexpected::Str(&text),
                &"lax, strict or none",
            )),
        }
    }
}

impl From<SameSitePolicy> for SameSite {
    fn from(p: SameSitePolicy) -> Self {
        match p {
            SameSitePolicy::Lax => SameSite::Lax,
            SameSitePolicy::Strict => SameSite::Strict,
            SameSitePolicy::None => SameSite::None,
        }
    }
}

/// Every problem in a configuration error, each with its key and where the value came from (a
/// `ROCKET_*` variable or Rocket.toml): figment's own `Display` shows only the first.
/// A bad `secret_key` is described without its value, which may be the real key mistyped.
pub fn describe(e: rocket::figment::Error) -> String {
    e.into_iter()
        .map(|e| {
            let secret = e
                .path
                .last()
                .is_some_and(|key| key.eq_ignore_ascii_case("secret_key"));
            // `trusted_proxies`, or one of its entries (`TRUSTED_PROXIES.0`).
            let proxies = e
                .path
                .iter()
                .any(|key| key.eq_ignore_ascii_case("trusted_proxies"));
            match (secret, &e.metadata) {
                // The form an environment variable needs is not obvious from "expected a sequence".
                (false, _) if proxies => format!(
                    "{e} (a list of single addresses, no ranges such as 10.0.0.0/8, e.g. \
                     ROCKET_TRUSTED_PROXIES='[\"127.0.0.1\"]' or trusted_proxies = [\"127.0.0.1\"] \
                     in Rocket.toml)"
                ),
                (false, _) => e.to_string(),
                (true, source) => format!(
                    "secret_key is not a usable key: 256 bits in base64 (44 characters) or hex \
                     (64), or 512 bits in base64 (88), e.g. from `openssl rand -base64 32`; the \
                     value is not shown{}",
                    source
                        .as_ref()
                        .map(|m| format!(" (from {})", m.name))
                        .unwrap_or_default()
                ),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Refuses what Rocket would panic on, before any of our code runs, when it builds its async
/// runtime: a broken Rocket.toml, or a bad `workers`, `max_blocking` or `shutdown.force`.
pub fn check_runtime_settings(figment: &Figment) -> Result<(), String> {
    for key in [rocket::Config::WORKERS, rocket::Config::MAX_BLOCKING] {
        let n: usize = figment.extract_inner(key).map_err(describe)?;
        if n == 0 {
            return Err(format!("{key} must be at least 1"));
        }
    }
    figment
        .focus(rocket::Config::SHUTDOWN)
        .extract_inner::<bool>("force")
        .map_err(describe)?;
    Ok(())
}

/// Refuses a bad Rocket setting (`port`, `address`, `secret_key`, `limits`…) by name, before the
/// database is touched: Rocket itself only says "failed to extract configuration", and later.
pub fn check_rocket_settings(figment: &Figment) -> Result<(), String> {
    check_runtime_settings(figment)?;
    figment
        .extract::<rocket::Config>()
        .map(drop)
        .map_err(describe)
}

/// Every setting something reads besides Rocket's own (`rocket::Config::PARAMETERS`): the fields of `RawSettings`,
/// grade passback's and the templates'. A setting added to the tool goes here too, or it
/// is reported as unknown at start.
const TOOL_KEYS: &[&str] = &[
    "database_url",
    "timestamp_window",
    "session_ttl",
    "outcome_target_ttl",
    "cookie_same_site",
    "cookie_secure",
    "seed_demo_consumer",
    "public_url",
    "trusted_proxies",
    "launch_body_limit",
    "admin_idle_timeout",
    "dev_launcher",
    "tool_title",
    "tool_description",
    "benchmark_routes",
    "outcomes_timeout",
    "outcomes_attempts",
    "outcomes_ca_file",
    "outcomes_allow_local",
    "template_dir",
];

/// The settings in the configuration that nothing reads: most likely misspelt (`trusted_proxy`),
/// which would otherwise leave the real setting at its default without a word.
pub fn unknown_settings(figment: &Figment) -> Vec<String> {
    use rocket::figment::value::Value;
    let Ok(all) = figment.extract::<std::collections::BTreeMap<String, Value>>() else {
        return Vec::new();
    };
    all.into_keys()
        .filter(|key| {
            let key = key.to_ascii_lowercase();
            !TOOL_KEYS.contains(&key.as_str())
                && !crate::fork::SETTINGS.contains(&key.as_str())
                && !rocket::Config::PARAMETERS.contains(&key.as_str())
                // Rocket's own, which Rocket warns about itself.
                && !["profile", "config", "env", "log", "read_timeout", "write_timeout", "mtls"]
                    .contains(&key.as_str())
        })
        .collect()
}

#[derive(Debug, Deserialize)]
struct RawSettings {
    database_url: Option<String>,
    timestamp_window: Option<i64>,
    session_ttl: Option<i64>,
    outcome_target_ttl: Option<i64>,
    cookie_same_site: Option<SameSitePolicy>,
    cookie_secure: Option<bool>,
    seed_demo_consumer: Option<bool>,
    public_url: Option<String>,
    #[serde(default)]
    trusted_proxies: Vec<IpAddr>,
    launch_body_limit: Option<u64>,
    admin_idle_timeout: Option<i64>,
    dev_launcher: Option<bool>,
    tool_title: Option<String>,
    tool_description: Option<String>,
    benchmark_routes: Option<bool>,
}

/// The tool's settings, with profile-dependent defaults filled in.
#[derive(Debug, Clone)]
pub struct Settings {
    /// SQLite URL, e.g. `sqlite://data/lti-tool.db`.
    pub database_url: String,
    /// Allowed clock difference, in seconds, between the LMS and us (both directions).
    pub timestamp_window: i64,
    /// Lifetime of a session, in seconds.
    pub session_ttl: i64,
    /// Seconds a learner's grade record (outcome service and result id) is kept after their last
    /// launch.
    pub outcome_target_ttl: i64,
    /// `SameSite` of the session cookie.
    pub cookie_same_site: SameSitePolicy,
    /// Whether the session cookie is marked `Secure` (https only).
    pub cookie_secure: bool,
    /// Whether to create PyLTI's demo consumer `__consumer_key__` / `__lti_secret__` at start.
    pub seed_demo_consumer: bool,
    /// The scheme, host and port the LMS uses to reach us (e.g. `https://tool.example.edu`).
    pub public_url: Option<Origin>,
    /// Addresses whose `X-Forwarded-Proto/-Host/-Port/-For` and RFC 7239 `Forwarded` headers
    /// are believed, in canonical form (IPv4 as IPv4, never `::ffff:a.b.c.d`).
    pub trusted_proxies: Vec<IpAddr>,
    /// Largest launch body accepted, in bytes.
    pub launch_body_limit: u64,
    /// Seconds of inactivity after which an admin is logged out.
    pub admin_idle_timeout: i64,
    /// Whether `/dev/launch` (the built-in test launcher) is served.
    pub dev_launcher: bool,
    /// The tool's name, in the LMS registration XML.
    pub tool_title: String,
    /// One sentence on the tool, in the LMS registration XML.
    pub tool_description: String,
    /// True in the debug profile (developer defaults), false otherwise.
    pub debug_profile: bool,
    /// Mounts the benchmark's baseline routes under `/bench` (off unless set; never in production).
    pub benchmark_routes: bool,
}

/// Scheme, host and optional port: the part of a signed URL that a TLS-terminating proxy changes
/// (the `public_url` setting, or what a request shows, see `web::origin`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: String,
    /// Host name or address, as the LMS wrote it.
    pub host: String,
    /// Explicit port, if any.
    pub port: Option<u16>,
}

impl Origin {
    /// `scheme://host[:port]`, without the scheme's default port: this is the address an admin
    /// pastes into the LMS (a proxy that forwards `X-Forwarded-Port: 443` must not add `:443`).
    pub fn to_url(&self) -> String {
        let default = match self.scheme.as_str() {
            "https" => 443,
            _ => 80,
        };
        match self.port.filter(|&p| p != default) {
            Some(p) => format!("{}://{}:{p}", self.scheme, self.host),
            None => format!("{}://{}", self.scheme, self.host),
        }
    }
}

/// Upper bound of every duration setting: a year, in seconds.
const MAX_SECONDS: i64 = 366 * 24 * 3600;

/// The default database, relative to the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/lti-tool.db";
/// Bounds of `launch_body_limit`, in bytes.
const MIN_LAUNCH_BODY: u64 = 4 * 1024;
const MAX_LAUNCH_BODY: u64 = 16 * 1024 * 1024;

/// Refuses a `database_url` that is not a SQLite file: another scheme would be read as a file
/// path (`postgres://x` made a folder `postgres:`), and an in-memory database is lost at exit and
/// out of the command line's reach.
fn check_database_url(url: &str) -> Result<(), String> {
    // As sqlx reads it: an optional `sqlite:` prefix, a percent-encoded path, then parameters.
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    // `mysql:x.db` would be a file of that name: a scheme of another kind of database is meant.
    let scheme_like = url.split_once(':').is_some_and(|(scheme, _)| {
        scheme.len() > 1
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
    });
    let other_scheme = rest == url && (url.contains("://") || scheme_like);
    // `file:` paths are SQLite URIs: the file made private up front would not be the one used.
    // The query is form-decoded, as sqlx decodes it (`mode=m%65mory` is `mode=memory` to it).
    let in_memory_or_other_vfs = form_urlencoded::parse(query.as_bytes())
        .any(|(key, value)| key == "vfs" || (key == "mode" && value == "memory"));
    let unusable = path.is_empty()
        || path.contains(":memory:")
        || path.starts_with("file:")
        || in_memory_or_other_vfs;
    if other_scheme || unusable {
        return Err(format!(
            "database_url must name a SQLite file, like {DEFAULT_DATABASE_URL} (got {url:?}; a \
             file whose name has a colon is ./name or sqlite:name)"
        ));
    }
    Ok(())
}

impl Origin {
    /// Parses the `public_url` setting, `scheme://host[:port]` with at most a trailing `/`: the
    /// tool's pages are at the root, so a path (or a query or fragment) could never be signed.
    pub fn parse(url: &str) -> Result<Origin, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("public_url {url:?} has no scheme"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(format!("public_url {url:?} must be http or https"));
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, after) = rest.split_at(end);
        if !after.is_empty() && after != "/" {
            return Err(format!(
                "public_url {url:?} has a path, query or fragment: give only scheme://host[:port] \
                 (the tool's pages are at the root of that address)"
            ));
        }
        if authority.contains('@') {
            return Err(format!(
                "public_url {url:?} has a user name: give only scheme://host[:port]"
            ));
        }
        // A port as digits only, without a sign or leading zeros.
        let port_written = |port: Option<u16>| {
            port.is_none_or(|p| p != 0 && authority.ends_with(&format!(":{p}")))
        };
        let (host, port) = crate::lti::oauth::split_host_port(authority)
            .filter(|(_, port)| port_written(*port))
            .ok_or_else(|| format!("public_url {url:?} has a bad port"))?;
        if host.is_empty() {
            return Err(format!("public_url {url:?} has no host"));
        }
        if !host.is_ascii() {
            // Browsers send, and LMSs sign, an international name in its ASCII form.
            return Err(format!(
                "public_url {url:?} has a host that is not ASCII: write it as browsers send \
                 it, in ASCII (an international domain name in its xn-- form)"
            ));
        }
        if !crate::lti::oauth::is_valid_host(host) {
            return Err(format!(
                "public_url {url:?} has a host that is not a name or an address"
            ));
        }
        Ok(Origin {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

/// The title LMSs show for the tool (`config.xml`): trimmed, not empty, and short enough for a
/// link's text.
fn tool_title(raw: Option<String>) -> Result<String, String> {
    let Some(title) = raw else {
        return Ok("Rocket LTI tool".into());
    };
    let title = title.trim();
    if title.is_empty() {
        return Err("tool_title must not be empty (leave it out for the default)".into());
    }
    if let Some(problem) = crate::consumer_input::name_problem(title) {
        return Err(format!("tool_title {problem}"));
    }
    Ok(title.to_string())
}

/// Adds where a setting refused by name came from (`session_ttl must be positive (from
/// `ROCKET_` environment variable(s))`), as figment's own type errors say it.
pub(crate) fn with_source(figment: &Figment, error: String) -> String {
    let key = error.split([' ', ':']).next().unwrap_or_default();
    let known = !key.is_empty() && !error.contains(" (from ") && !error.contains(" in ");
    match figment.find_metadata(key).filter(|_| known) {
        Some(m) => {
            let file = match &m.source {
                Some(rocket::figment::Source::File(path)) => format!(" {}", path.display()),
                _ => String::new(),
            };
            format!("{error} (from {}{file})", m.name)
        }
        None => error,
    }
}

/// Refuses a `ROCKET_CONFIG` that names no file: Rocket would quietly run on the defaults (and
/// the command line on another database) because of a typo, or of an empty value.
fn check_config_file() -> Result<(), String> {
    use rocket::figment::providers::{Env, Format, Toml};
    use rocket::figment::Provider;
    // Read and looked for as Rocket does (the name in any case, the value trimmed; a relative
    // file in this folder or any above it), by the same figment calls.
    let Some(named) = Env::var("ROCKET_CONFIG") else {
        return Ok(());
    };
    if named.is_empty() {
        return Err(
            "ROCKET_CONFIG is set but empty, so no Rocket.toml would be read: unset it, or name \
             the file"
                .into(),
        );
    }
    match Toml::file(&named).metadata().source {
        Some(_) => Ok(()),
        None => Err(format!(
            "ROCKET_CONFIG names {named}, which is not a file (here or in a folder above)"
        )),
    }
}

impl Settings {
    /// Extracts the settings from a (profile-selected) figment.
    pub fn from_figment(figment: &Figment) -> Result<Settings, String> {
        Settings::read(figment).map_err(|e| with_source(figment, e))
    }

    fn read(figment: &Figment) -> Result<Settings, String> {
        check_config_file()?;
        let raw: RawSettings = figment.extract().map_err(describe)?;
        let debug_profile = is_debug(figment);
        let public_url = raw
            .public_url
            .filter(|u| !u.trim().is_empty())
            .map(|u| Origin::parse(u.trim()))
            .transpose()?;
        // Bounded so that time arithmetic can never overflow.
        let positive = |v: Option<i64>, default: i64, name: &str| match v {
            Some(v) if v <= 0 => Err(format!("{name} must be positive")),
            Some(v) if v > MAX_SECONDS => {
                Err(format!("{name} must be at most {MAX_SECONDS} seconds"))
            }
            Some(v) => Ok(v),
            None => Ok(default),
        };
        let session_ttl = positive(raw.session_ttl, 8 * 3600, "session_ttl")?;
        // A year by default: staff grade after learners leave, and courses can run that long.
        let outcome_target_ttl =
            positive(raw.outcome_target_ttl, MAX_SECONDS, "outcome_target_ttl")?;
        if outcome_target_ttl < session_ttl {
            // A learner still in the tool would be missing from the staff page.
            return Err(format!(
                "outcome_target_ttl ({outcome_target_ttl} s) must be at least session_ttl \
                 ({session_ttl} s)"
            ));
        }
        let database_url = raw
            .database_url
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string());
        check_database_url(&database_url)?;
        let launch_body_limit = raw.launch_body_limit.unwrap_or(64 * 1024);
        if !(MIN_LAUNCH_BODY..=MAX_LAUNCH_BODY).contains(&launch_body_limit) {
            // Below a few KiB real launches are refused (413); above, one body is a memory risk.
            return Err(format!(
                "launch_body_limit must be between {MIN_LAUNCH_BODY} and {MAX_LAUNCH_BODY} bytes \
                 (LMS launches take 1-4 KiB)"
            ));
        }
        Ok(Settings {
            database_url,
            timestamp_window: positive(raw.timestamp_window, 300, "timestamp_window")?,
            session_ttl,
            outcome_target_ttl,
            cookie_same_site: raw.cookie_same_site.unwrap_or(if debug_profile {
                SameSitePolicy::Lax
            } else {
                SameSitePolicy::None
            }),
            cookie_secure: raw.cookie_secure.unwrap_or(!debug_profile),
            seed_demo_consumer: raw.seed_demo_consumer.unwrap_or(debug_profile),
            public_url,
            // As peers are compared: an IPv4 client of a dual-stack (`::`) listener arrives as
            // `::ffff:a.b.c.d`, and either spelling in the list means the IPv4 address.
            trusted_proxies: raw
                .trusted_proxies
                .iter()
                .map(IpAddr::to_canonical)
                .collect(),
            launch_body_limit,
            admin_idle_timeout: positive(raw.admin_idle_timeout, 30 * 60, "admin_idle_timeout")?,
            dev_launcher: raw.dev_launcher.unwrap_or(debug_profile),
            tool_title: tool_title(raw.tool_title)?,
            tool_description: raw.tool_description.unwrap_or_else(|| {
                "Reference LTI 1.1 tool provider: verified launches and role-gated pages.".into()
            }),
            debug_profile,
            benchmark_routes: raw.benchmark_routes.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_settings_file_above_the_working_folder_is_pointed_out() {
        use std::path::Path;
        let working = Path::new("/srv/lti/data");
        let above = |file: &str, named: Option<&str>| found_above(Path::new(file), working, named);
        let warning = above("/srv/Rocket.toml", None);
        assert!(warning.is_some_and(|w| w.contains("/srv/Rocket.toml")));
        let warning = above("/srv/conf/lti.toml", Some("conf/lti.toml"));
        assert!(warning.is_some_and(|w| w.contains("conf/lti.toml in each folder")));
        // Where it is looked for first, or where an absolute ROCKET_CONFIG points: meant.
        assert_eq!(above("/srv/lti/data/Rocket.toml", None), None);
        assert_eq!(
            above("/srv/lti/data/conf/lti.toml", Some("conf/lti.toml")),
            None
        );
        assert_eq!(above("/srv/lti/lti.toml", Some("/srv/lti/lti.toml")), None);
    }

    #[test]
    fn public_url_is_an_origin_and_nothing_more() {
        let parsed = Origin::parse("HTTPS://Tool.Example.edu:8443/").expect("valid");
        assert_eq!(parsed.to_url(), "https://tool.example.edu:8443");
        for (scheme, port, url) in [
            ("https", 443, "https://t.test"),
            ("http", 80, "http://t.test"),
            ("http", 443, "http://t.test:443"),
            ("https", 80, "https://t.test:80"),
        ] {
            let origin = Origin {
                scheme: scheme.into(),
                host: "t.test".into(),
                port: Some(port),
            };
            assert_eq!(origin.to_url(), url);
        }
        assert!(Origin::parse("http://tool.example.edu").is_ok());
        assert!(Origin::parse("http://127.0.0.1:8000").is_ok());
        assert!(Origin::parse("http://lti_tool:8000").is_ok());
        assert!(Origin::parse("https://[2001:db8::1]:8443").is_ok());
        for bad in [
            "https://tool.example.edu/lti",
            "https://tool.example.edu?x=1",
            "https://tool.example.edu/#top",
            "ftp://tool.example.edu",
            "tool.example.edu",
            "https://:443",
            "https://user@tool.example.edu",
            "https://user:pw@tool.example.edu",
            "https://tool.example.edu\\any",
            "https://tool.example.edu;x",
            "https://tool example.edu",
            "https://tool.example.edu:443:443",
            "https://tool.example.edu:0",
            "https://tool.example.edu:+443",
            "https://tool.example.edu:0443",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
        // An international name is asked for in the form browsers send and LMSs sign.
        let idn = Origin::parse("https://tööl.example").expect_err("not ASCII");
        assert!(idn.contains("xn--"), "{idn}");
        assert!(Origin::parse("https://xn--tl-fkaa.example").is_ok());
    }

    #[test]
    fn grade_records_outlive_sessions() {
        let settings = |pairs: &[(&str, i64)]| {
            let mut figment = Figment::new();
            for (name, value) in pairs {
                figment = figment.merge((*name, *value));
            }
            Settings::from_figment(&figment)
        };
        assert_eq!(
            settings(&[]).expect("defaults").outcome_target_ttl,
            MAX_SECONDS
        );
        let short = settings(&[("outcome_target_ttl", 90 * 24 * 3600)]).expect("90 days");
        assert_eq!(short.outcome_target_ttl, 90 * 24 * 3600);
        let err = settings(&[("session_ttl", 7200), ("outcome_target_ttl", 3600)]).unwrap_err();
        assert!(err.contains("at least session_ttl"), "{err}");
        assert!(settings(&[("outcome_target_ttl", 0)]).is_err());
        assert!(settings(&[("outcome_target_ttl", MAX_SECONDS + 1)]).is_err());
    }

    #[test]
    fn the_database_is_a_sqlite_file() {
        for good in [
            DEFAULT_DATABASE_URL,
            "sqlite:data/x.db",
            "sqlite:///var/lib/lti-tool/lti-tool.db",
            "sqlite://x.db?mode=rwc",
            // A plain path, as sqlx has always read it.
            "data/x.db",
            "/var/lib/lti-tool/lti-tool.db",
        ] {
            assert!(check_database_url(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "postgres://x",
            "sqlite://",
            "sqlite://%3Amemory%3A",
            "sqlite:",
            "sqlite::memory:",
            "sqlite://x.db?mode=memory",
            "sqlite://file::memory:",
            "sqlite://x.db?vfs=memdb",
            "sqlite://x.db?v%66s=memdb",
            "sqlite://x.db?cache=private&mode=m%65mory",
            "sqlite:file:x.db",
            "mysql:x.db",
            "SQLITE:///x.db",
        ] {
            let err = check_database_url(bad).unwrap_err();
            assert!(err.contains("must name a SQLite file"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_value_refused_by_name_says_where_it_came_from() {
        use rocket::figment::providers::{Format, Toml};
        let figment = Figment::new().merge(Toml::string("session_ttl = 0"));
        let err = Settings::from_figment(&figment).unwrap_err();
        assert!(
            err.starts_with("session_ttl must be positive (from TOML"),
            "{err}"
        );
        // The grade passback settings, checked elsewhere, get it the same way.
        let figment = Figment::new().merge(Toml::string("outcomes_attempts = 0"));
        let err = crate::web::grades::client_config(&figment).unwrap_err();
        let err = with_source(&figment, err);
        assert!(
            err.starts_with("outcomes_attempts must be between 1 and 10 (from TOML"),
            "{err}"
        );
    }

    #[test]
    fn the_tool_title_is_a_short_visible_label() {
        let with = |title: &str| {
            Settings::from_figment(&Figment::new().merge(("tool_title", title)))
                .map(|s| s.tool_title)
        };
        assert_eq!(with(" Quiz tool ").unwrap(), "Quiz tool");
        assert_eq!(
            Settings::from_figment(&Figment::new()).unwrap().tool_title,
            "Rocket LTI tool"
        );
        for bad in ["", "   ", &"t".repeat(201), "a\u{202e}b"] {
            let err = with(bad).unwrap_err();
            assert!(err.starts_with("tool_title "), "{bad:?}: {err}");
        }
    }

    #[test]
    fn same_site_is_read_in_either_case_and_proxy_ranges_are_explained() {
        for (value, policy) in [
            ("lax", SameSitePolicy::Lax),
            ("Lax", SameSitePolicy::Lax),
            ("None", SameSitePolicy::None),
            ("STRICT", SameSitePolicy::Strict),
            ("lAx", SameSitePolicy::Lax),
        ] {
            let figment = Figment::new().merge(("cookie_same_site", value));
            let settings = Settings::from_figment(&figment).expect(value);
            assert_eq!(settings.cookie_same_site, policy, "{value}");
        }
        let figment = Figment::new().merge(("cookie_same_site", "loose"));
        let err = Settings::from_figment(&figment).unwrap_err();
        assert!(err.contains("lax, strict or none"), "{err}");
        let figment = Figment::new().merge(("trusted_proxies", ["10.0.0.0/8"]));
        let err = Settings::from_figment(&figment).unwrap_err();
        assert!(err.contains("no ranges"), "{err}");
    }

    #[test]
    fn launch_body_limit_leaves_room_for_a_launch_and_no_more() {
        let with = |limit: u64| {
            Settings::from_figment(&Figment::new().merge(("launch_body_limit", limit)))
        };
        assert_eq!(with(8192).expect("8 KiB").launch_body_limit, 8192);
        for bad in [0, 10, MIN_LAUNCH_BODY - 1, MAX_LAUNCH_BODY + 1] {
            let err = with(bad).unwrap_err();
            assert!(
                err.contains("launch_body_limit must be between"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn runtime_settings_rocket_would_panic_on_are_refused_by_name() {
        let check = |key: &str, value: &str| {
            check_runtime_settings(&rocket::Config::figment().merge((key, value)))
        };
        assert!(check_runtime_settings(&rocket::Config::figment()).is_ok());
        assert!(check("workers", "abc").unwrap_err().contains("workers"));
        assert_eq!(
            check_runtime_settings(&rocket::Config::figment().merge(("workers", 0))).unwrap_err(),
            "workers must be at least 1"
        );
        assert!(check("max_blocking", "x")
            .unwrap_err()
            .contains("max_blocking"));
        let bad_port = rocket::Config::figment().merge(("port", 99999));
        let err = check_rocket_settings(&bad_port).unwrap_err();
        assert!(err.contains("port") && err.contains("99999"), "{err}");
    }

    #[test]
    fn misspelt_settings_are_reported_and_real_ones_are_not() {
        let figment = crate::figment()
            .merge(("trusted_proxy", "10.0.0.1"))
            .merge(("cookie_secur", true))
            .merge(("database_url", "sqlite://x.db"))
            .merge(("port", 8080))
            .merge(("outcomes_attempts", 2))
            .merge(("config", "/etc/lti-tool/Rocket.toml"));
        assert_eq!(
            unknown_settings(&figment),
            ["cookie_secur".to_string(), "trusted_proxy".to_string()]
        );
        let unknown = unknown_settings(&crate::figment());
        assert!(
            unknown.is_empty(),
            "Rocket.toml or ROCKET_* sets {unknown:?}, which nothing reads: misspelt, or a new \
             setting missing from TOOL_KEYS"
        );
    }

    #[test]
    fn a_bad_secret_key_is_described_without_its_value() {
        let key = "hunter2!hunter2!hunter2!hunter2!hunter2!abcd";
        let figment = rocket::Config::figment().merge(("secret_key", key));
        let err = check_rocket_settings(&figment).unwrap_err();
        assert!(err.contains("secret_key is not a usable key"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
