//! The admin area under `/admin`: password login (separate from LTI), the consumer list with
//! launch figures, and create / rotate / enable / disable / delete, every form with a CSRF token.

use std::net::IpAddr;

use rocket::form::{Form, FromForm};
use rocket::http::{Cookie, CookieJar, Header, Status};
use rocket::request::{self, FromRequest, Request};
use rocket::response::Redirect;
use rocket::serde::Serialize;
use rocket::{catch, catchers, get, post, routes, Catcher, Responder, Route, State};
use rocket_dyn_templates::{context, Template};
use subtle::ConstantTimeEq;

use crate::crypto;
use crate::error::LtiError;
use crate::store::{self, admin, consumers, usage};
use crate::web::error::{remember, ErrorPage};
use crate::web::origin::RequestOrigin;
use crate::web::AppState;

/// Name of the admin session cookie (distinct from the LTI session's).
pub const ADMIN_COOKIE: &str = "lti_admin";

/// Failed logins allowed per address per minute; the next attempt gets 429.
pub const MAX_FAILURES_PER_MINUTE: i64 = 5;

/// The launch URLs an LMS can be given, with who gets in (as on the index page).
const LAUNCH_PAGES: [(&str, &str); 4] = [
    ("/any", "a launch, or an existing visit"),
    ("/initial", "a launch only"),
    ("/session", "an existing visit only"),
    ("/initial_staff", "a launch by course staff only"),
];

const MAX_NAME: usize = 200;
const MAX_NOTE: usize = 2000;

/// Request guard: a live admin session (its idle expiry is pushed back on each use). Without
/// one it fails with 401, which the `/admin` catcher answers with the login page.
pub struct Admin(admin::AdminSession);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Admin {
    type Error = LtiError;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        let fail = |e: LtiError| request::Outcome::Error((remember(req, &e), e));
        let Some(state) = req.rocket().state::<AppState>() else {
            return fail(LtiError::Storage("no state".into()));
        };
        let Some(token) = req
            .cookies()
            .get(ADMIN_COOKIE)
            .map(|c| c.value().to_string())
        else {
            return fail(LtiError::AdminLoginRequired);
        };
        let idle = state.settings.admin_idle_timeout;
        match admin::touch_session(&state.db, &token, store::now(), idle).await {
            Ok(Some(session)) => request::Outcome::Success(Admin(session)),
            Ok(None) => {
                req.cookies().remove(admin_cookie(state, String::new()));
                fail(LtiError::AdminLoginRequired)
            }
            Err(e) => fail(e),
        }
    }
}

impl Admin {
    /// Refuses (403) a form whose token is not this session's; compared in constant time.
    fn check_csrf(&self, token: Option<&str>) -> Result<(), LtiError> {
        let expected = self.0.csrf.as_bytes();
        match token {
            Some(t) if bool::from(t.as_bytes().ct_eq(expected)) => Ok(()),
            _ => Err(LtiError::BadCsrfToken),
        }
    }
}

/// Request guard: the client's address for login throttling (the proxy's client when the
/// peer is a trusted proxy; never a header from anyone else).
pub struct ClientAddress(String);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for ClientAddress {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        let trusted = req
            .rocket()
            .state::<AppState>()
            .map(|s| &s.settings.trusted_proxies);
        let address = match req.remote() {
            Some(peer) if trusted.is_some_and(|t| t.contains(&peer.ip())) => req
                .headers()
                .get_one("X-Forwarded-For")
                .and_then(|h| h.rsplit(',').next())
                .and_then(|ip| ip.trim().parse::<IpAddr>().ok())
                .unwrap_or(peer.ip())
                .to_string(),
            Some(peer) => peer.ip().to_string(),
            None => "unknown".to_string(),
        };
        request::Outcome::Success(ClientAddress(address))
    }
}

/// The admin cookie: HttpOnly, SameSite=Strict, only sent to `/admin`, Secure as configured.
fn admin_cookie(state: &AppState, value: String) -> Cookie<'static> {
    Cookie::build((ADMIN_COOKIE, value))
        .path("/admin")
        .http_only(true)
        .same_site(rocket::http::SameSite::Strict)
        .secure(state.settings.cookie_secure)
        .build()
}

/// An admin page with its status, never cached (it may show a secret, or a CSRF token).
#[derive(Responder)]
pub struct Page {
    page: (Status, Template),
    cache: Header<'static>,
}

fn render(status: Status, name: &'static str, ctx: impl Serialize) -> Page {
    Page {
        page: (status, Template::render(name, ctx)),
        cache: Header::new("Cache-Control", "no-store"),
    }
}

/// The login page, or the set-up explanation when no admin password exists yet.
fn login_page(status: Status, has_password: bool, error: Option<&str>) -> Page {
    if has_password {
        render(status, "admin/login", context! { error })
    } else {
        render(status, "admin/setup", context! {})
    }
}

async fn has_password(state: &AppState) -> Result<bool, LtiError> {
    Ok(admin::password_hash(&state.db).await?.is_some())
}

/// What an admin action answers.
#[derive(Responder)]
pub enum Reply {
    /// A page.
    Page(Page),
    /// Back to the list (after a change), or to the login page.
    Redirect(Redirect),
}

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

async fn list_page(
    state: &AppState,
    session: &Admin,
    notice: Option<String>,
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
    Ok(render(
        Status::Ok,
        "admin/list",
        context! { csrf: &session.0.csrf, consumers: rows, notice },
    ))
}

/// `/admin`: the consumer list when logged in, else the login (or set-up) page.
#[get("/?<done>&<key>")]
async fn home(
    state: &State<AppState>,
    session: Result<Admin, LtiError>,
    done: Option<&str>,
    key: Option<&str>,
) -> Result<Page, LtiError> {
    match session {
        Ok(session) => {
            let notice = match (done, key) {
                (Some("enabled"), Some(k)) => Some(format!(
                    "Consumer {k} is enabled: its launches are accepted."
                )),
                (Some("disabled"), Some(k)) => Some(format!(
                    "Consumer {k} is disabled: its launches are refused."
                )),
                (Some("deleted"), Some(k)) => Some(format!(
                    "Consumer {k} is deleted and its sessions have ended."
                )),
                _ => None,
            };
            list_page(state, &session, notice).await
        }
        Err(LtiError::AdminLoginRequired) => {
            Ok(login_page(Status::Ok, has_password(state).await?, None))
        }
        Err(e) => Err(e),
    }
}

#[derive(FromForm)]
struct LoginForm {
    password: Option<String>,
}

/// Checks the password (Argon2id, off the async threads); throttled per address.
#[post("/login", data = "<form>")]
async fn login(
    state: &State<AppState>,
    cookies: &CookieJar<'_>,
    address: ClientAddress,
    form: Form<LoginForm>,
) -> Result<Reply, LtiError> {
    let now = store::now();
    let address = address.0;
    let Some(hash) = admin::password_hash(&state.db).await? else {
        return Ok(Reply::Page(login_page(Status::Ok, false, None)));
    };
    // Counted as failed before the check, so parallel guesses cannot outrun the throttle.
    let Some(attempt) =
        admin::begin_attempt(&state.db, &address, now, MAX_FAILURES_PER_MINUTE).await?
    else {
        log::warn!("admin login refused: too many failures from {address}");
        return Err(LtiError::TooManyLogins);
    };
    let password = form.into_inner().password.unwrap_or_default();
    let ok = rocket::tokio::task::spawn_blocking(move || crypto::verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    if !ok {
        log::warn!("admin login failed from {address}");
        return Ok(Reply::Page(login_page(
            Status::Unauthorized,
            true,
            Some("That password is not right."),
        )));
    }
    admin::forget_attempt(&state.db, attempt).await?;
    let token = admin::start_session(&state.db, now, state.settings.admin_idle_timeout).await?;
    cookies.add(admin_cookie(state, token));
    log::info!("admin logged in from {address}");
    Ok(Reply::Redirect(Redirect::to("/admin")))
}

#[derive(FromForm)]
struct CsrfForm {
    csrf: Option<String>,
}

/// Ends the admin session.
#[post("/logout", data = "<form>")]
async fn logout(
    state: &State<AppState>,
    cookies: &CookieJar<'_>,
    session: Admin,
    form: Form<CsrfForm>,
) -> Result<Redirect, LtiError> {
    session.check_csrf(form.csrf.as_deref())?;
    admin::end_session(&state.db, &session.0.id).await?;
    cookies.remove(admin_cookie(state, String::new()));
    Ok(Redirect::to("/admin"))
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

fn new_form(session: &Admin, status: Status, form: &Typed, error: Option<String>) -> Page {
    render(
        status,
        "admin/new",
        context! { csrf: &session.0.csrf, form, error },
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
    } else if key.len() > 255 {
        Some("The consumer key is too long: use at most 255 characters.")
    } else if !consumers::is_valid_key(key) {
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
) -> Page {
    let urls: Vec<(String, &str)> = LAUNCH_PAGES
        .iter()
        .map(|(path, who)| (format!("{}{path}", origin.0), *who))
        .collect();
    render(
        Status::Ok,
        "admin/secret",
        context! { csrf: &session.0.csrf, key, secret, urls, rotated },
    )
}

/// Creates a consumer with a generated secret and shows it once.
#[post("/consumers", data = "<form>")]
async fn create(
    state: &State<AppState>,
    session: Admin,
    origin: RequestOrigin,
    form: Form<NewConsumer>,
) -> Result<Page, LtiError> {
    session.check_csrf(form.csrf.as_deref())?;
    let field = |v: &Option<String>| v.as_deref().unwrap_or("").trim().to_string();
    let typed = Typed {
        key: field(&form.key),
        name: field(&form.name),
        note: field(&form.note),
    };
    let (key, name, note) = (&typed.key, &typed.name, &typed.note);
    let problem = key_problem(key).map(str::to_string).or_else(|| {
        if name.chars().count() > MAX_NAME {
            Some(format!(
                "The name is too long: use at most {MAX_NAME} characters."
            ))
        } else if note.chars().count() > MAX_NOTE {
            Some(format!(
                "The note is too long: use at most {MAX_NOTE} characters."
            ))
        } else {
            None
        }
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
    let secret = consumers::generate_secret();
    if !consumers::create(&state.db, key, &secret, name, note, store::now()).await? {
        let message = format!(
            "A consumer with the key {key} already exists. Nothing was changed: choose another key."
        );
        return Ok(new_form(&session, Status::Conflict, &typed, Some(message)));
    }
    log::info!("admin created consumer {key:?}");
    Ok(secret_page(&session, &origin, key, &secret, false))
}

#[derive(FromForm)]
struct KeyForm {
    csrf: Option<String>,
    key: Option<String>,
}

impl KeyForm {
    /// The key, once the CSRF token is checked.
    fn checked(&self, session: &Admin) -> Result<&str, LtiError> {
        session.check_csrf(self.csrf.as_deref())?;
        Ok(self.key.as_deref().unwrap_or(""))
    }
}

fn no_such_consumer() -> ErrorPage {
    ErrorPage::new(
        Status::NotFound,
        "No such consumer",
        "There is no consumer with this key (it may have been deleted). Nothing was changed.",
    )
}

/// An admin action's refusal: our error page, or the `LtiError`'s.
#[derive(Responder)]
pub enum Refused {
    /// A refusal of its own words.
    Page(ErrorPage),
    /// A refusal from the error enum.
    Error(LtiError),
}

impl From<LtiError> for Refused {
    fn from(e: LtiError) -> Self {
        Refused::Error(e)
    }
}

/// The confirmation step before a rotation or deletion.
#[get("/consumers/<action>?<key>")]
async fn confirm(
    state: &State<AppState>,
    session: Admin,
    action: &str,
    key: &str,
) -> Result<Page, Refused> {
    if action != "rotate" && action != "delete" {
        return Err(Refused::Page(ErrorPage::new(
            Status::NotFound,
            "Not found",
            "There is nothing at this address.",
        )));
    }
    let exists = usage::overview(&state.db, store::now())
        .await?
        .into_iter()
        .find(|c| c.key == key);
    let Some(consumer) = exists else {
        return Err(Refused::Page(no_such_consumer()));
    };
    Ok(render(
        Status::Ok,
        "admin/confirm",
        context! { csrf: &session.0.csrf, action, key, name: consumer.name },
    ))
}

/// Replaces the secret and shows the new one once; the old one stops working at once.
#[post("/consumers/rotate", data = "<form>")]
async fn rotate(
    state: &State<AppState>,
    session: Admin,
    origin: RequestOrigin,
    form: Form<KeyForm>,
) -> Result<Page, Refused> {
    let key = form.checked(&session)?;
    let secret = consumers::generate_secret();
    if !consumers::set_secret(&state.db, key, &secret).await? {
        return Err(Refused::Page(no_such_consumer()));
    }
    log::info!("admin rotated the secret of consumer {key:?}");
    Ok(secret_page(&session, &origin, key, &secret, true))
}

async fn set_enabled(
    state: &AppState,
    session: &Admin,
    form: &KeyForm,
    enabled: bool,
) -> Result<Redirect, Refused> {
    let key = form.checked(session)?;
    if !consumers::set_enabled(&state.db, key, enabled).await? {
        return Err(Refused::Page(no_such_consumer()));
    }
    let done = if enabled { "enabled" } else { "disabled" };
    log::info!("admin {done} consumer {key:?}");
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
    form: Form<KeyForm>,
) -> Result<Redirect, Refused> {
    set_enabled(state, &session, &form, true).await
}

/// Refuses the consumer's launches (existing sessions run out on their own).
#[post("/consumers/disable", data = "<form>")]
async fn disable(
    state: &State<AppState>,
    session: Admin,
    form: Form<KeyForm>,
) -> Result<Redirect, Refused> {
    set_enabled(state, &session, &form, false).await
}

/// Deletes the consumer and ends its sessions.
#[post("/consumers/delete", data = "<form>")]
async fn delete(
    state: &State<AppState>,
    session: Admin,
    form: Form<KeyForm>,
) -> Result<Redirect, Refused> {
    let key = form.checked(&session)?;
    if !consumers::delete(&state.db, key).await? {
        return Err(Refused::Page(no_such_consumer()));
    }
    log::info!("admin deleted consumer {key:?}");
    Ok(Redirect::to(format!(
        "/admin?done=deleted&key={}",
        crate::lti::oauth::encode(key)
    )))
}

/// Any admin address without a live admin session: the login page (or set-up page), with 401.
#[catch(401)]
async fn unauthorized(req: &Request<'_>) -> Page {
    let has = match req.rocket().state::<AppState>() {
        Some(state) => has_password(state).await.unwrap_or(true),
        None => true,
    };
    login_page(Status::Unauthorized, has, None)
}

/// The routes of the admin area (mounted at `/admin`).
pub fn routes() -> Vec<Route> {
    routes![
        home,
        login,
        logout,
        new_consumer,
        create,
        confirm,
        rotate,
        enable,
        disable,
        delete
    ]
}

/// The catchers of the admin area (registered at `/admin`).
pub fn catchers() -> Vec<Catcher> {
    catchers![unauthorized]
}
