//! `/dev/launch`: a built-in test launcher that signs launches exactly as an LMS does, so a
//! browser alone shows every page and every refusal. On in the debug profile, off (404) in release:
//! mounted only when `dev_launcher` is on (see `startup::lti_state`).

use rocket::form::{Form, FromForm};
use rocket::{get, post, routes, Route, State};
use rocket_dyn_templates::{context, Template};

use crate::error::LtiError;
use crate::lti::oauth::{base_uri, sign, signature_base_string};
use crate::lti::params::Params;
use crate::store::{self, consumers, usage};
use crate::web::origin::{FromOwnPage, RequestOrigin};
use crate::web::pages::{launch_paths, LAUNCH_PAGE};
use crate::web::AppState;

const ROLE_PRESETS: [&str; 9] = [
    "Instructor",
    "Learner",
    "urn:lti:role:ims/lis/Instructor",
    "urn:lti:role:ims/lis/Learner",
    "urn:lti:instrole:ims/lis/Administrator",
    "TeachingAssistant",
    "Instructor,urn:lti:instrole:ims/lis/Administrator",
    "Student",
    "",
];
const MODES: [(&str, &str); 7] = [
    ("valid", "A valid launch"),
    ("bad_signature", "Bad signature (wrong secret)"),
    ("stale", "Stale timestamp"),
    ("future", "Timestamp in the future"),
    ("replay", "Replay (the same launch sent twice)"),
    (
        "missing_resource_link",
        "Missing resource_link_id (sent back to the LMS)",
    ),
    ("unknown_key", "Unknown consumer key"),
];

#[get("/dev/launch?<lti_errormsg>&<lti_errorlog>")]
async fn form(
    state: &State<AppState>,
    lti_errormsg: Option<&str>,
    lti_errorlog: Option<&str>,
) -> Result<Template, LtiError> {
    // The figures, not the consumers: listing keys decrypts no secret.
    let keys: Vec<String> = usage::overview(&state.db, store::now())
        .await?
        .into_iter()
        .filter(|c| c.enabled)
        .map(|c| c.key)
        .collect();
    Ok(Template::render(
        "dev/launch",
        context! { keys, pages: launch_paths(), roles: ROLE_PRESETS, modes: MODES, lti_errormsg, lti_errorlog },
    ))
}

#[derive(FromForm)]
struct DevLaunch<'r> {
    page: &'r str,
    consumer_key: &'r str,
    roles: &'r str,
    user_id: &'r str,
    name: &'r str,
    email: &'r str,
    custom: &'r str,
    mode: &'r str,
    /// Grade passback: where the "LMS" takes scores (say a fake LMS of your own); none if empty.
    outcome_service_url: Option<&'r str>,
    /// The learner's result id there; a made-up one if empty.
    result_sourcedid: Option<&'r str>,
}

/// Reads `name=value` lines into `custom_name` parameters.
fn custom_params(text: &str) -> Params {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| {
            let name = name
                .trim()
                .to_ascii_lowercase()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "_");
            let name = if name.starts_with("custom_") {
                name
            } else {
                format!("custom_{name}")
            };
            (name, value.trim().to_string())
        })
        .collect()
}

#[post("/dev/launch", data = "<form>")]
async fn sign_launch(
    _own_page: FromOwnPage,
    form: Form<DevLaunch<'_>>,
    state: &State<AppState>,
    origin: RequestOrigin,
) -> Result<Template, LtiError> {
    let origin = origin.required()?;
    let page = launch_paths()
        .into_iter()
        .find(|p| *p == form.page)
        .unwrap_or(LAUNCH_PAGE);
    let secret = match form.mode {
        "unknown_key" => "not-registered".to_string(),
        _ => consumers::find(&state.db, form.consumer_key)
            .await?
            .map(|c| c.secret)
            .ok_or(LtiError::UnknownConsumer)?,
    };
    let key = if form.mode == "unknown_key" {
        "no-such-key"
    } else {
        form.consumer_key
    };
    let now = store::now();
    let window = state.settings.timestamp_window;
    let timestamp = match form.mode {
        "stale" => now - window - 60,
        "future" => now + window + 60,
        _ => now,
    };
    // Left empty, a teacher and a student get different ids: one id with both roles in turn
    // would have the staff launch forget the student's grade record (see `outcomes`).
    let user_id = match form.user_id.trim() {
        "" if crate::lti::roles::is_staff(&crate::lti::roles::parse_roles(form.roles)) => {
            "dev-instructor".to_string()
        }
        "" => "dev-learner".to_string(),
        _ => form.user_id.to_string(),
    };
    let mut params: Params = vec![
        ("lti_message_type".into(), "basic-lti-launch-request".into()),
        ("lti_version".into(), "LTI-1p0".into()),
        ("resource_link_id".into(), "dev-launcher-link".into()),
        ("resource_link_title".into(), "Dev launcher link".into()),
        ("context_id".into(), "dev-course".into()),
        ("context_title".into(), "Dev launcher course".into()),
        ("user_id".into(), user_id.clone()),
        ("roles".into(), form.roles.into()),
        ("lis_person_name_full".into(), form.name.into()),
        ("lis_person_contact_email_primary".into(), form.email.into()),
        (
            "launch_presentation_return_url".into(),
            format!("{}/dev/launch", origin.to_url()),
        ),
        (
            "launch_presentation_document_target".into(),
            "window".into(),
        ),
        (
            "tool_consumer_info_product_family_code".into(),
            "rocket-lti-tool-dev".into(),
        ),
        ("oauth_consumer_key".into(), key.into()),
        ("oauth_signature_method".into(), "HMAC-SHA1".into()),
        ("oauth_timestamp".into(), timestamp.to_string()),
        (
            "oauth_nonce".into(),
            uuid::Uuid::new_v4().simple().to_string(),
        ),
        ("oauth_version".into(), "1.0".into()),
        ("oauth_callback".into(), "about:blank".into()),
    ];
    if form.mode == "missing_resource_link" {
        params.retain(|(n, _)| n != "resource_link_id");
    }
    let outcome_service = form.outcome_service_url.map(str::trim).unwrap_or_default();
    if !outcome_service.is_empty() {
        let sourcedid = match form.result_sourcedid.map(str::trim).unwrap_or_default() {
            "" => format!("dev-sourcedid-{user_id}"),
            given => given.to_string(),
        };
        params.push(("lis_outcome_service_url".into(), outcome_service.into()));
        params.push(("lis_result_sourcedid".into(), sourcedid));
    }
    params.extend(custom_params(form.custom));
    let uri = base_uri(&origin.scheme, &origin.host, origin.port, page);
    let base = signature_base_string(
        "POST",
        &uri,
        params.iter().map(|(n, v)| (n.as_str(), v.as_str())),
    );
    let secret = if form.mode == "bad_signature" {
        format!("{secret}-wrong")
    } else {
        secret
    };
    params.push(("oauth_signature".into(), sign(&base, &secret)));
    Ok(Template::render(
        "dev/autosubmit",
        context! { action: page, params, replay: form.mode == "replay" },
    ))
}

/// The routes of this module.
pub fn routes() -> Vec<Route> {
    routes![form, sign_launch]
}
