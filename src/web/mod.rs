//! The Rocket glue: application state, guards, pages, error pages.

pub mod error;
pub mod grades;
pub mod guards;
pub mod launch;
pub mod origin;
pub mod pages;

use crate::config::Settings;
use crate::store::Db;

/// What the handlers and guards share: the database pool and the settings.
pub struct AppState {
    /// The SQLite pool.
    pub db: Db,
    /// The tool's settings.
    pub settings: Settings,
}
