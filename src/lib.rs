//! The reference LTI 1.1 tool provider: verified launches, sessions in SQLite, role-gated pages.
//!
//! `build(figment)` assembles the whole application; `main.rs` and the tests both use it. What
//! happens at start (settings checked, database opened, state built, pruning started) is in
//! `startup`; the headers every answer gets in `web::headers`.

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
mod startup;
pub mod store;
pub mod web;

use rocket::fairing::AdHoc;
use rocket::figment::Figment;
use rocket::shield::Shield;
use rocket::{Build, Rocket};
use rocket_dyn_templates::Template;

/// The demo consumer seeded in the debug profile: PyLTI's example key and secret.
pub const DEMO_CONSUMER: (&str, &str) = ("__consumer_key__", "__lti_secret__");

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

/// The application on Rocket's default configuration.
pub fn rocket() -> Rocket<Build> {
    build(figment())
}

/// The application on a given configuration (tests pass their own database URL here).
pub fn build(figment: Figment) -> Rocket<Build> {
    // An empty Shield in place of the default one Rocket attaches: of its headers, X-Frame-Options
    // would break the tool in its LMS iframe, `nosniff` is set by the error pages themselves
    // (some bypass the fairings) and by the fairing below, and `Permissions-Policy:
    // interest-cohort=()` names a feature browsers no longer know (Chrome logs an error for it in
    // the console of every page).
    let tool = rocket::custom(with_defaults(figment))
        .attach(web::headers::request_address_logged_safely())
        .attach(Shield::new())
        .attach(Template::custom(|engines| {
            // `fork::VISIT_PAGE` is fixed at build time and a plain path: the templates need no
            // per-request value for it.
            engines
                .tera
                .register_function("visit_page", |_: &_| Ok(web::pages::visit_page().into()));
            engines
                .tera
                .register_filter("visible", web::pages::visible_filter);
        }))
        .attach(web::head::method_as_sent())
        .attach(web::stray_launch::fairing())
        .attach(startup::lti_state())
        .attach(web::grades::fairing())
        .attach(startup::pruning())
        .attach(AdHoc::on_liftoff("Launch pages", |rocket| {
            Box::pin(async move { startup::warn_of_launch_pages_without_post_route(rocket) })
        }))
        .attach(web::headers::log_colours_stay_as_configured())
        .attach(web::headers::response_headers())
        .attach(web::admin::never_framed())
        .attach(web::session_cookie::refused_launches_end_their_session())
        .mount("/", web::pages::routes())
        .mount("/admin", web::admin::routes())
        .mount("/", web::handoff::routes())
        .mount("/", web::registration::routes())
        .mount("/", web::assets::routes())
        .mount("/", web::grades::routes())
        .register("/", web::catcher::catchers())
        .register("/admin", web::admin::catchers())
        .mount("/", fork::routes());
    fork::attach(tool)
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
