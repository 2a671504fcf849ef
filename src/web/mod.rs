//! The Rocket glue: application state, guards, pages, error pages.

pub mod admin;
pub mod assets;
pub mod bench;
pub mod catcher;
pub mod csrf;
pub mod dev_launcher;
pub mod diagnosis;
pub mod error;
pub mod grades;
pub mod guards;
pub mod handoff;
pub mod head;
pub(crate) mod headers;
pub mod launch;
pub mod launch_body;
pub mod origin;
pub mod pages;
pub mod registration;
pub mod session_cookie;
pub mod stray_launch;

/// The Content-Security-Policy of every page (the admin pages add to it): no plugins, and no
/// `<base>` to redirect relative links and forms.
pub const BASE_CSP: &str = "object-src 'none'; base-uri 'none'";

use crate::config::Settings;
use crate::store::front::StoreFront;
use crate::store::Db;

/// What the handlers and guards share, built once at start.
pub struct AppState {
    /// The SQLite pool.
    pub db: Db,
    /// The tool's settings.
    pub settings: Settings,
    /// Records launches (committing concurrent ones together) and caches consumers and sessions.
    pub front: StoreFront,
    /// The CSRF key of the LTI pages' own forms (logout).
    pub page_forms: csrf::CsrfKey,
    /// How many more refused launches are recorded for the admin page this minute.
    pub refusal_budget: diagnosis::RefusalBudget,
    /// Admin logins waiting for their password check.
    pub login_queue: admin::LoginQueue,
    /// Signs the cookie of browsers that logged in as admin (see `admin::session::DEVICE_COOKIE`).
    pub admin_devices: csrf::CsrfKey,
}
