//! Refused launches for admins: the newest first, per consumer, each with the hint that names
//! its likely cause; the same list as JSON for scripts.

use rocket::http::{ContentType, Status};
use rocket::serde::Serialize;
use rocket::{get, State};
use rocket_dyn_templates::context;

use super::session::Admin;
use super::{render, Page};
use crate::error::LtiError;
use crate::store::refusals::{self, Refusal};
use crate::web::AppState;

/// How many refusals one page shows.
const SHOWN: i64 = 200;

/// A refusal as shown: the stored evidence plus the hint's code and advice.
#[derive(Serialize)]
#[serde(crate = "rocket::serde")]
struct View {
    at: i64,
    time: String,
    consumer_key: String,
    reason: String,
    hint: &'static str,
    advice: String,
    signed_url: String,
    base_string: String,
    param_names: String,
    remote_addr: String,
    user_agent: String,
}

impl From<Refusal> for View {
    fn from(r: Refusal) -> Self {
        View {
            time: chrono::DateTime::from_timestamp(r.at, 0)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_default(),
            at: r.at,
            hint: r.hint.code(),
            advice: r.hint.advice(),
            consumer_key: r.consumer_key,
            reason: r.reason,
            signed_url: r.signed_url,
            base_string: r.base_string,
            param_names: r.param_names,
            remote_addr: r.remote_addr,
            user_agent: r.user_agent,
        }
    }
}

async fn views(state: &AppState, key: Option<&str>) -> Result<Vec<View>, LtiError> {
    let key = key.filter(|k| !k.is_empty());
    Ok(refusals::recent(&state.db, key, SHOWN)
        .await?
        .into_iter()
        .map(View::from)
        .collect())
}

/// `/admin/refusals`: the newest refused launches (of one consumer with `?key=`).
#[get("/refusals?<key>")]
async fn page(
    session: Admin,
    state: &State<AppState>,
    key: Option<&str>,
) -> Result<Page, LtiError> {
    let refusals = views(state, key).await?;
    Ok(render(
        Status::Ok,
        "admin/refusals",
        context! { csrf: &session.csrf(), key, refusals },
    ))
}

/// `/admin/refusals.json`: the same list for scripts.
#[get("/refusals.json?<key>")]
async fn json(
    _session: Admin,
    state: &State<AppState>,
    key: Option<&str>,
) -> Result<(ContentType, String), LtiError> {
    let refusals = views(state, key).await?;
    let body =
        serde_json::to_string_pretty(&refusals).map_err(|e| LtiError::Storage(e.to_string()))?;
    Ok((ContentType::JSON, body))
}

/// The routes of this module.
pub(super) fn routes() -> Vec<rocket::Route> {
    rocket::routes![page, json]
}
