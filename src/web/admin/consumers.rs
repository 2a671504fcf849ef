//! The consumer pages of the admin area: the list with launch figures, create (secret shown
//! once), the confirmation step, rotate, enable / disable and delete.

use rocket::form::{Form, FromForm};
use rocket::http::{CookieJar, Status};
use rocket::response::Redirect;
use rocket::serde::Serialize;
use rocket::{get, post, State};
use rocket_dyn_templates::context;

use super::session::{
    has_password, login_again_page, login_page, Admin, AdminCookieSent, ClientAddress,
};
use super::{render, Page};
use crate::consumer_input;
use crate::error::LtiError;
use crate::store::{self, consumers, usage};
use crate::web::origin::{RequestOrigin, SecureCookies};
use crate::web::pages::launch_pages;
use crate::web::AppState;

const MAX_NOTE: usize = 2000;

/// A day and time in UTC, or "never".
fn when(ts: Option<i64>) -> String {
    ts.and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "never".into())
}

#[derive(Serialize)]
#[serde(crate = "rocket::serde")]
struct Row {
    key: String,
    name: String,
    note: String,
    enabled: bool,
    created: String,
    last_launch: String,
    launch_count: i64,
    refused_24h: i64,
}

/// The consumer list, with the notice of a change just made (`done`, `key`) when the list bears
/// it out: a crafted link cannot make the page call a key enabled or disabled that is not, and
/// "deleted" is said only of a valid key the list does not have (whose sessions are gone).
async fn list_page(
    state: &AppState,
    session: &Admin,
    done: Option<(&str, &str)>,
) -> Result<Page, LtiError> {
    let rows: Vec<Row> = usage::overview(&state.db, store::now())
        .await?
        .into_iter()
        .map(|c| Row {
            created: when(Some(c.created_at)),
            last_launch: when(c.last_launch_at),
            key: c.key,
            name: c.name,
            note: c.note,
            enabled: c.enabled,
            launch_count: c.launch_count,
            refused_24h: c.refused_24h,
        })
        .collect();
    let enabled = |k: &str| rows.iter().find(|r| r.key == k).map(|r| r.enabled);
    let notice = match done {
        Some(("enabled", k)) if enabled(k) == Some(true) => Some(format!(
            "Consumer {k} is enabled: its launches are accepted."
        )),
        Some(("disabled", k)) if enabled(k) == Some(false) => Some(format!(
            "Consumer {k} is disabled: its launches are refused. Visits it started go on until \
             they expire; to end them now (a leaked secret), delete the key."
        )),
        // Gone from the list, and a key that could have been there.
        Some(("deleted", k)) if enabled(k).is_none() && consumer_input::is_valid_key(k) => Some(
            format!("Consumer {k} is deleted and its sessions have ended."),
        ),
        _ => None,
    };
    Ok(render(
        Status::Ok,
        "admin/list",
        context! { csrf: &session.csrf(), consumers: rows, notice },
    ))
}

/// `/admin`: the consumer list when logged in, else the login (or set-up) page; with a cookie of
/// a session that has ended, the 401 login page that says so, as on every other admin page.
#[get("/?<done>&<key>")]
async fn home(
    state: &State<AppState>,
    session: Result<Admin, LtiError>,
    cookie: AdminCookieSent,
    secure: SecureCookies,
    cookies: &CookieJar<'_>,
    done: Option<&str>,
    key: Option<&str>,
) -> Result<Page, LtiError> {
    match session {
        Ok(session) => list_page(state, &session, done.zip(key)).await,
        Err(LtiError::AdminLoginRequired) if cookie.0 => {
            Ok(login_again_page(state, cookies, secure, true, false).await)
        }
        Err(LtiError::AdminLoginRequired) => {
            Ok(login_page(Status::Ok, has_password(state).await?, None))
        }
        Err(e) => Err(e),
    }
}

#[derive(FromForm, Default)]
struct NewConsumer {
    csrf: Option<String>,
    key: Option<String>,
    name: Option<String>,
    note: Option<String>,
}

/// The values typed into the create form, shown again with an error.
#[derive(Default, Serialize)]
#[serde(crate = "rocket::serde")]
struct Typed {
    key: String,
    name: String,
    note: String,
}

/// The create form; `error` names the field at fault (`key`, `name` or `note`) and what is wrong.
fn new_form(session: &Admin, status: Status, form: &Typed, error: Option<(&str, String)>) -> Page {
    let (error_field, error) = error.unzip();
    render(
        status,
        "admin/new",
        context! { csrf: &session.csrf(), form, error, error_field },
    )
}

/// The create form.
#[get("/consumers/new")]
fn new_consumer(session: Admin) -> Page {
    new_form(&session, Status::Ok, &Typed::default(), None)
}

/// Why a key cannot be used, in words for the admin.
fn key_problem(key: &str) -> Option<&'static str> {
    if key.is_empty() {
        Some("Enter a consumer key.")
    } else if key.len() > consumer_input::MAX_KEY {
        Some("The consumer key is too long: use at most 255 characters.")
    } else if !consumer_input::is_valid_key(key) {
        Some("The consumer key may only contain letters A-Z a-z, digits 0-9 and . _ : - (no spaces).")
    } else {
        None
    }
}

/// The page showing a secret once, with everything the LMS admin needs.
fn secret_page(
    session: &Admin,
    origin: &RequestOrigin,
    key: &str,
    secret: &str,
    rotated: bool,
    alike: &[String],
) -> Page {
    let urls: Vec<(String, &str)> = launch_pages()
        .into_iter()
        .map(|(path, who)| (format!("{}{path}", origin.url()), who))
        .collect();
    let passport_note = consumer_input::passport_note(key, secret);
    render(
        Status::Ok,
        "admin/secret",
        context! { csrf: &session.csrf(), key, secret, urls, rotated, alike, passport_note },
    )
}

/// Creates a consumer with a generated secret and shows it once.
#[post("/consumers", data = "<form>")]
async fn create(
    state: &State<AppState>,
    session: Admin,
    origin: RequestOrigin,
    address: ClientAddress,
    form: Form<NewConsumer>,
) -> Result<Page, LtiError> {
    session.check_csrf(form.csrf.as_deref())?;
    let field = |v: &Option<String>| v.as_deref().unwrap_or("").trim().to_string();
    let typed = Typed {
        key: field(&form.key),
        name: field(&form.name),
        note: field(&form.note),
    };
    let (key, name, note) = (&typed.key, typed.name.trim(), &typed.note);
    let problem = key_problem(key)
        .map(|p| ("key", p.to_string()))
        .or_else(|| consumer_input::name_problem(name).map(|p| ("name", format!("The name {p}."))))
        .or_else(|| {
            if note.chars().count() > MAX_NOTE {
                Some(format!(
                    "The note is too long: use at most {MAX_NOTE} characters."
                ))
            } else if !consumer_input::is_printable_label(note, true) {
                Some("The note must not contain control characters or invisible ones.".into())
            } else {
                None
            }
            .map(|p| ("note", p))
        });
    if let Some(problem) = problem {
        return Ok(new_form(
            &session,
            Status::BadRequest,
            &typed,
            Some(problem),
        ));
    }
    let name = if name.is_empty() { key } else { name };
    let secret = consumer_input::generate_secret();
    if !consumers::create(&state.db, key, &secret, name, note, store::now()).await? {
        let message = format!(
            "A consumer with the key {key} already exists. Nothing was changed: choose another key. \
             (If you have just created it and did not see its secret, give it a new secret from \
             the list.)"
        );
        return Ok(new_form(
            &session,
            Status::Conflict,
            &typed,
            Some(("key", message)),
        ));
    }
    log::warn!("admin created consumer {key:?} from {}", address.0);
    // Created all the same (keys are case-sensitive), with a word of warning on the page.
    // This page is the only one that shows the secret: a failed lookup only loses the warning.
    let alike = consumers::keys_differing_in_case(&state.db, key)
        .await
        .unwrap_or_else(|e| {
            log::warn!("could not compare consumer key {key:?} with the others: {e}");
            Vec::new()
        });
    Ok(secret_page(&session, &origin, key, &secret, false, &alike))
}

#[derive(FromForm)]
struct KeyForm {
    csrf: Option<String>,
    key: Option<String>,
}

impl KeyForm {
    /// The key, once the CSRF token is checked (first: a forged form learns nothing more).
    fn checked(&self, session: &Admin) -> Result<&str, LtiError> {
        session.check_csrf(self.csrf.as_deref())?;
        self.key.as_deref().ok_or(LtiError::ConsumerNotNamed)
    }
}

/// The two actions that ask first. Each has a GET route of its own, so that a GET of an address
/// that takes only a POST (`/admin/consumers/disable`) gets 405 with `Allow: POST`.
#[derive(Clone, Copy, Serialize)]
#[serde(crate = "rocket::serde", rename_all = "lowercase")]
enum Confirmed {
    Rotate,
    Delete,
}

/// The confirmation step before a rotation.
#[get("/consumers/rotate?<key>")]
async fn confirm_rotate(
    state: &State<AppState>,
    session: Admin,
    key: &str,
) -> Result<Page, LtiError> {
    confirm(state, session, Confirmed::Rotate, key).await
}

/// The confirmation step before a deletion.
#[get("/consumers/delete?<key>")]
async fn confirm_delete(
    state: &State<AppState>,
    session: Admin,
    key: &str,
) -> Result<Page, LtiError> {
    confirm(state, session, Confirmed::Delete, key).await
}

async fn confirm(
    state: &AppState,
    session: Admin,
    action: Confirmed,
    key: &str,
) -> Result<Page, LtiError> {
    let exists = usage::overview(&state.db, store::now())
        .await?
        .into_iter()
        .find(|c| c.key == key);
    let Some(consumer) = exists else {
        return Err(LtiError::NoSuchConsumer);
    };
    // The secret this form replaces: sent again (a reload of the new secret's page), it then
    // replaces nothing.
    let replaces = match action {
        Confirmed::Rotate => consumers::current_fingerprint(&state.db, key).await?,
        Confirmed::Delete => None,
    };
    Ok(render(
        Status::Ok,
        "admin/confirm",
        context! { csrf: &session.csrf(), action, key, name: consumer.name, replaces },
    ))
}

#[derive(FromForm)]
struct RotateForm {
    csrf: Option<String>,
    key: Option<String>,
    /// The fingerprint of the secret the confirmation showed this form for
    /// (`consumers::secret_fingerprint`). Without one (a script's request) the secret is replaced
    /// whatever it is; two are refused. A list, so that a repeated field is told apart.
    replaces: Vec<String>,
}

/// Replaces the secret and shows the new one once; the old one stops working at once.
#[post("/consumers/rotate", data = "<form>")]
async fn rotate(
    state: &State<AppState>,
    session: Admin,
    origin: RequestOrigin,
    address: ClientAddress,
    form: Form<RotateForm>,
) -> Result<Page, LtiError> {
    session.check_csrf(form.csrf.as_deref())?;
    let key = form.key.as_deref().ok_or(LtiError::ConsumerNotNamed)?;
    let secret = consumer_input::generate_secret();
    match form.replaces.as_slice() {
        [fingerprint] => consumers::replace_secret(&state.db, key, &secret, fingerprint).await?,
        [] if consumers::set_secret(&state.db, key, &secret).await? => {}
        [] => return Err(LtiError::NoSuchConsumer),
        _ => {
            return Err(LtiError::page(
                422,
                "Bad request",
                "The form names more than one secret to replace. Nothing was changed.",
            ))
        }
    }
    log::warn!(
        "admin rotated the secret of consumer {key:?} from {}",
        address.0
    );
    Ok(secret_page(&session, &origin, key, &secret, true, &[]))
}

async fn set_enabled(
    state: &AppState,
    session: &Admin,
    address: &ClientAddress,
    form: &KeyForm,
    enabled: bool,
) -> Result<Redirect, LtiError> {
    let key = form.checked(session)?;
    if enabled
        && !state.settings.seed_demo_consumer
        && consumers::is_published_demo(&state.db, key).await?
    {
        return Err(LtiError::PublishedDemoConsumer);
    }
    if !consumers::set_enabled(&state.db, key, enabled).await? {
        return Err(LtiError::NoSuchConsumer);
    }
    let done = if enabled { "enabled" } else { "disabled" };
    log::warn!("admin {done} consumer {key:?} from {}", address.0);
    Ok(Redirect::to(format!(
        "/admin?done={done}&key={}",
        crate::lti::oauth::encode(key)
    )))
}

/// Accepts the consumer's launches again.
#[post("/consumers/enable", data = "<form>")]
async fn enable(
    state: &State<AppState>,
    session: Admin,
    address: ClientAddress,
    form: Form<KeyForm>,
) -> Result<Redirect, LtiError> {
    set_enabled(state, &session, &address, &form, true).await
}

/// Refuses the consumer's launches (existing sessions run out on their own).
#[post("/consumers/disable", data = "<form>")]
async fn disable(
    state: &State<AppState>,
    session: Admin,
    address: ClientAddress,
    form: Form<KeyForm>,
) -> Result<Redirect, LtiError> {
    set_enabled(state, &session, &address, &form, false).await
}

/// Deletes the consumer and ends its sessions.
#[post("/consumers/delete", data = "<form>")]
async fn delete(
    state: &State<AppState>,
    session: Admin,
    address: ClientAddress,
    form: Form<KeyForm>,
) -> Result<Redirect, LtiError> {
    let key = form.checked(&session)?;
    if !consumers::delete(&state.db, key).await? {
        return Err(LtiError::NoSuchConsumer);
    }
    log::warn!("admin deleted consumer {key:?} from {}", address.0);
    Ok(Redirect::to(format!(
        "/admin?done=deleted&key={}",
        crate::lti::oauth::encode(key)
    )))
}

/// The routes of this module.
pub(super) fn routes() -> Vec<rocket::Route> {
    rocket::routes![
        home,
        new_consumer,
        create,
        confirm_rotate,
        confirm_delete,
        rotate,
        enable,
        disable,
        delete
    ]
}
