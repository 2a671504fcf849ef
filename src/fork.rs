//! Where a fork plugs in its own pages, launch URLs, settings and tables. Upstream keeps every
//! hook here empty, so a fork that adds its code here (and its modules under `src/fork/`) pulls
//! upstream changes with few conflicts: besides this file, its code meets upstream's only in its
//! tests' `mod` lines in `tests/api/main.rs`, its crates in `Cargo.toml`, and whatever settings
//! and templates it changes (`Rocket.toml`, a restyled page). See the README, "Extending the tool
//! when you fork it".

use rocket::{Build, Rocket, Route};
use sqlx::SqliteConnection;

use crate::error::LtiError;
use crate::store::Db;

/// The fork's routes, mounted at `/` (e.g. `quiz::routes()` for a `pub mod quiz;` here).
pub fn routes() -> Vec<Route> {
    Vec::new()
}

/// The fork's launch URLs, with who gets in, offered beside the tool's own, e.g.
/// `&[("/gradebook", "a launch by course staff, or their visit")]`.
///
/// The index page, the page that shows a new key, the test launcher and the refusal pages list
/// them. The first is the launch URL of the registration XML (`/lti/config.xml`, which otherwise
/// names `/any`), which Canvas shows every course member: list first a page everyone may open.
pub const LAUNCH_PAGES: &[(&str, &str)] = &[];

/// Where the pages of a visit lead back to ("Your page", "Back to your page" on error pages, the
/// header's home link): a page of the fork's that shows a visit (a GET route with `LtiSession` or
/// `LtiAny`), e.g. `"/quiz"`. A plain path only (letters, digits, `/-._~`); otherwise `/session`.
pub const VISIT_PAGE: &str = "/session";

/// The names of the fork's own settings, in lowercase, so the start does not call them unknown.
///
/// They are read from the same `Rocket.toml` / `ROCKET_*` as the tool's.
pub const SETTINGS: &[&str] = &[];

/// Adds the fork's fairings and managed state, e.g. `.attach(AdHoc::config::<QuizSettings>())`.
pub fn attach(rocket: Rocket<Build>) -> Rocket<Build> {
    rocket
}

/// Deletes the fork's rows of a consumer being removed, in the removal's transaction.
pub async fn forget_consumer(
    _tx: &mut SqliteConnection,
    _consumer_key: &str,
) -> Result<(), LtiError> {
    Ok(())
}

/// Deletes the fork's expired rows, every minute; returns how many went. Delete a few hundred rows
/// a statement, looping until fewer come back, so that no statement holds the write lock long.
pub async fn prune(_db: &Db, _now: i64) -> Result<u64, LtiError> {
    Ok(0)
}
