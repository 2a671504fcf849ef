//! The tool's pages: the four guarded pages of the PyLTI example, the index and logout.

use std::collections::HashMap;

use rocket::form::{Form, FromForm};
use rocket::http::{CookieJar, Status};
use rocket::request::{self, FromRequest, Request};
use rocket::serde::Serialize;
use rocket::{get, post, routes, Route, State};
use rocket_dyn_templates::{context, tera, Template};

use crate::consumer_input::escape_hidden;
use crate::error::LtiError;
use crate::lti::inspect::{explain_roles, group_params, missing_recommended, Group, RoleReading};
use crate::web::guards::{LaunchAtHomePage, LtiAny, LtiInitial, LtiSession, LtiUser, Staff};
use crate::web::head::{Prefetched, SentAsHead};
use crate::web::origin::{RequestOrigin, SecureCookies, StartedElsewhere};
use crate::web::session_cookie::{
    end_session_or_fail, first_live_session, note_visit, BrowserSession, BrowserSessionId,
};
use crate::web::AppState;

#[derive(Serialize)]
#[serde(crate = "rocket::serde")]
struct PageView<'a> {
    title: &'a str,
    user_id: &'a str,
    name: String,
    /// Each role as sent (the page shows no more of it), the first [`MAX_ROLES_SHOWN`].
    roles: Vec<String>,
    /// How many roles past those were sent.
    roles_not_shown: usize,
    is_staff: bool,
    consumer_key: &'a str,
    context_title: Option<&'a str>,
    resource_link_title: Option<&'a str>,
    fresh_launch: bool,
    outcome_service: bool,
    landing: Landing<'a>,
    /// Lets the page's own "Log out" button through even where the browser reports it as coming
    /// from another site (a sandboxed frame).
    logout_token: &'a str,
    inspector: Option<Inspector<'a>>,
}

/// What `templates/launch_landing.html.tera` needs, as `landing` in the context of every page a
/// launch lands on (a fork's launch pages too, with `{% include "launch_landing" %}`).
#[derive(Serialize)]
#[serde(crate = "rocket::serde")]
pub struct Landing<'a> {
    /// On a launch, the token of the "Open in a new window" offer (shown when the browser does
    /// not send the new session cookie back).
    handoff_token: Option<&'a str>,
    /// On a launch, where Back or a reload should go instead of sending the launch again.
    visit_url: Option<&'a str>,
}

impl<'a> Landing<'a> {
    /// For a page showing `user`, whose visit (a GET with the session) is at `visit_url`
    /// (`/session` for the tool's pages).
    pub fn of(user: &'a LtiUser, visit_url: &'a str) -> Self {
        Landing {
            handoff_token: user.handoff_token.as_deref(),
            visit_url: user.fresh_launch.then_some(visit_url),
        }
    }
}

/// The "What the LMS sent" panel.
#[derive(Serialize)]
#[serde(crate = "rocket::serde")]
struct Inspector<'a> {
    groups: Vec<Group<'a>>,
    /// The first [`MAX_ROLES_SHOWN`] roles' readings.
    roles: Vec<RoleReading>,
    missing: Vec<(&'static str, &'static str)>,
}

/// Roles listed on a page: LMSs send a handful, and a launch may carry thousands (its signer's
/// choice), each a table row in the panel, on every view of the visit.
const MAX_ROLES_SHOWN: usize = 50;

fn inspector(user: &LtiUser) -> Inspector<'_> {
    let params = user.params.iter().map(|(n, v)| (n.as_str(), v.as_str()));
    let mut roles = user.roles();
    roles.truncate(MAX_ROLES_SHOWN);
    Inspector {
        groups: group_params(params),
        roles: explain_roles(&roles),
        missing: missing_recommended(|name| user.get(name).is_some()),
    }
}

/// Renders a guarded page for a user; staff (and everyone in the debug profile) also see what the
/// LMS sent.
pub(crate) fn page(title: &str, user: &LtiUser, state: &AppState) -> Template {
    let is_staff = user.is_staff();
    let roles = user.roles();
    let view = PageView {
        title,
        user_id: user.user_id(),
        name: user.display_name(),
        roles_not_shown: roles.len().saturating_sub(MAX_ROLES_SHOWN),
        roles: roles
            .into_iter()
            .take(MAX_ROLES_SHOWN)
            .map(|r| r.raw)
            .collect(),
        is_staff,
        consumer_key: &user.consumer_key,
        context_title: user.get("context_title"),
        resource_link_title: user.get("resource_link_title"),
        fresh_launch: user.fresh_launch,
        outcome_service: user.outcome_target().is_some() && !user.is_staff_only(),
        landing: Landing::of(user, SESSION_PAGE),
        logout_token: &user.logout_token,
        inspector: (is_staff || state.settings.debug_profile).then(|| inspector(user)),
    };
    Template::render("page", &view)
}

/// The launch URL to give an LMS by default: it accepts launches and existing sessions.
pub const LAUNCH_PAGE: &str = "/any";

/// The tool's launch URLs, with who gets in (a fork lists its own in `fork::LAUNCH_PAGES`).
pub const LAUNCH_PAGES: &[(&str, &str)] = &[
    (LAUNCH_PAGE, "a launch, or an existing visit"),
    ("/initial", "a launch only"),
    ("/initial_staff", "a launch by course staff only"),
];

/// The launch URL the registration XML gives an LMS (for every course member: Canvas shows it in
/// the course navigation): a fork's first launch page, else [`LAUNCH_PAGE`].
pub fn main_launch_page() -> &'static str {
    crate::fork::LAUNCH_PAGES
        .first()
        .map_or(LAUNCH_PAGE, |(path, _)| path)
}

/// Where a refused launch's page says LMS links should point: a fork's launch pages, then the
/// tool's usual two.
pub fn suggested_launch_pages() -> String {
    let mut pages: Vec<&str> = crate::fork::LAUNCH_PAGES.iter().map(|(p, _)| *p).collect();
    pages.extend(["/initial", LAUNCH_PAGE]);
    let last = pages.pop().unwrap_or(LAUNCH_PAGE);
    match pages.is_empty() {
        true => last.to_string(),
        false => format!("{} or {last}", pages.join(", ")),
    }
}

/// The LTI page that only continues a visit: it takes no launch, so it is no launch URL.
pub const SESSION_PAGE: &str = "/session";

/// Where a visit's pages lead back to ("Your page", "Back to your page", the header's home link):
/// `fork::VISIT_PAGE` when it is a plain path of this tool, else [`SESSION_PAGE`]. Templates ask
/// for it as `visit_page()`.
pub fn visit_page() -> &'static str {
    match crate::web::handoff::is_plain_path(crate::fork::VISIT_PAGE) {
        true => crate::fork::VISIT_PAGE,
        false => SESSION_PAGE,
    }
}

/// The `visible` template filter: text an LMS (or an old row) sent, with the characters that hide
/// text or turn it around written as escapes (`\u{202e}`), so that a user id holding a
/// right-to-left override cannot read as someone else's. Line breaks and tabs stay (a page shows
/// them as spaces, or as lines where its style says so). Anything but a string passes through.
pub fn visible_filter(
    value: &tera::Value,
    _: &HashMap<String, tera::Value>,
) -> tera::Result<tera::Value> {
    Ok(match value.as_str() {
        Some(text) => escape_hidden(text, true).into_owned().into(),
        None => value.clone(),
    })
}

/// Every launch URL an LMS can be given, the fork's first (as in the registration XML), then the
/// tool's, with who gets in: for the index page, the page showing a new key, the test launcher
/// and the refusal hints.
pub fn launch_pages() -> Vec<(&'static str, &'static str)> {
    crate::fork::LAUNCH_PAGES
        .iter()
        .chain(LAUNCH_PAGES)
        .copied()
        .collect()
}

/// The paths of [`launch_pages`] and [`SESSION_PAGE`]: where the test launcher can send a launch
/// (to `/session`, to show that it starts no visit), and where a refused launch may have been
/// signed.
pub fn launch_paths() -> Vec<&'static str> {
    let mut paths: Vec<&str> = launch_pages().into_iter().map(|(path, _)| path).collect();
    paths.push(SESSION_PAGE);
    paths
}

/// Those of `paths` that no POST route of `rocket` serves: an LMS launch there could only be
/// refused ("Not a launch address"), so the start warns about a fork's launch page among them.
pub fn without_post_route<'a, P: rocket::Phase>(
    rocket: &rocket::Rocket<P>,
    paths: &[&'a str],
) -> Vec<&'a str> {
    let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
    paths
        .iter()
        .copied()
        .filter(|path| {
            !rocket
                .routes()
                .any(|r| r.method == rocket::http::Method::Post && same(r.uri.path(), path))
        })
        .collect()
}

const ANY: &str = "Landing page";
const INITIAL: &str = "Initial request";
const SESSION: &str = "Session request";
const STAFF: &str = "Staff page";

#[post("/any", data = "<lti>")]
fn any_post(lti: LtiAny, state: &State<AppState>) -> Template {
    page(ANY, &lti, state)
}

#[get("/any")]
fn any_get(lti: LtiAny, state: &State<AppState>) -> Template {
    page(ANY, &lti, state)
}

#[post("/initial", data = "<lti>")]
fn initial_post(lti: LtiInitial, state: &State<AppState>) -> Template {
    page(INITIAL, &lti, state)
}

#[get("/initial")]
fn initial_get(lti: LtiInitial, state: &State<AppState>) -> Template {
    page(INITIAL, &lti, state)
}

#[post("/session", data = "<lti>")]
fn session_post(lti: LtiSession, state: &State<AppState>) -> Template {
    page(SESSION, &lti, state)
}

#[get("/session")]
fn session_get(lti: LtiSession, state: &State<AppState>) -> Template {
    page(SESSION, &lti, state)
}

#[post("/initial_staff", data = "<lti>")]
fn initial_staff_post(lti: Staff<LtiInitial>, state: &State<AppState>) -> Template {
    page(STAFF, &lti, state)
}

#[get("/initial_staff")]
fn initial_staff_get(lti: Staff<LtiInitial>, state: &State<AppState>) -> Template {
    page(STAFF, &lti, state)
}

/// What this tool is, and its launch URLs as the LMS should be given them.
#[get("/")]
fn index(origin: RequestOrigin) -> Template {
    Template::render(
        "index",
        context! { base: origin.url(), pages: launch_pages(), session_page: SESSION_PAGE },
    )
}

/// The route that refuses launches sent to the home page (see `LaunchAtHomePage`); not a method
/// the home page takes, so a 405's `Allow` header leaves it out.
pub(crate) const LAUNCH_AT_HOME_ROUTE: &str = "launch_at_home";

#[post("/", data = "<refused>")]
fn launch_at_home(refused: LaunchAtHomePage) -> Status {
    match refused {}
}

/// The session a logout ends ([`BrowserSessionId`]), noted for the error page when it is live:
/// when ending it fails (a 503), that page offers Log out again, as the page the user came from
/// did. A made-up or ended cookie gets no way back to a visit it does not have.
struct LogoutTarget(Option<String>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for LogoutTarget {
    type Error = std::convert::Infallible;
    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        let id = req
            .guard::<BrowserSessionId>()
            .await
            .succeeded()
            .and_then(|b| b.0);
        if let (Some(id), Some(state)) = (&id, req.rocket().state::<AppState>()) {
            let ids = std::slice::from_ref(id);
            // One that cannot be read may still be live, as `logout` takes it.
            if let Ok(BrowserSession::Live(_)) | Err(_) = first_live_session(state, ids).await {
                note_visit(req, &state.page_forms.token(id));
            }
        }
        request::Outcome::Success(LogoutTarget(id))
    }
}

#[derive(FromForm)]
struct LogoutForm {
    csrf: Option<String>,
}

/// Ends the session, if any. POST from the page's button; GET for a typed address.
#[post("/logout", data = "<form>")]
async fn logout_post(
    elsewhere: StartedElsewhere,
    secure: SecureCookies,
    browser: LogoutTarget,
    form: Option<Form<LogoutForm>>,
    state: &State<AppState>,
    cookies: &CookieJar<'_>,
) -> Result<Template, LtiError> {
    let token = form.and_then(|f| f.into_inner().csrf);
    logout(elsewhere, secure, browser, token.as_deref(), state, cookies).await
}

#[get("/logout")]
async fn logout_get(
    elsewhere: StartedElsewhere,
    secure: SecureCookies,
    browser: LogoutTarget,
    head: SentAsHead,
    prefetched: Prefetched,
    state: &State<AppState>,
    cookies: &CookieJar<'_>,
) -> Result<Template, LtiError> {
    if head.0 {
        // A link checker's HEAD gets the confirmation's headers and ends nothing.
        return Ok(Template::render(
            "logout_confirm",
            context! { token: None::<String> },
        ));
    }
    if prefetched.0 {
        // Nor does a prefetch or a prerender (the address typed, not opened yet): the user who
        // does open it is asked.
        let token = confirmation_token(state, browser.0.as_deref()).await;
        return Ok(Template::render(
            "logout_confirm",
            context! { token, ahead: true },
        ));
    }
    logout(elsewhere, secure, browser, None, state, cookies).await
}

/// The token of the confirmation's Log out button: only for a visit that goes on (the question
/// offers to stay only then).
async fn confirmation_token(state: &AppState, id: Option<&str>) -> Option<String> {
    let live = match id {
        // Storage trouble: offered all the same (the logout itself then says so).
        Some(id) => matches!(
            first_live_session(state, &[id.to_string()]).await,
            Ok(BrowserSession::Live(_)) | Err(_)
        ),
        None => false,
    };
    id.filter(|_| live).map(|id| state.page_forms.token(id))
}

async fn logout(
    elsewhere: StartedElsewhere,
    secure: SecureCookies,
    browser: LogoutTarget,
    token: Option<&str>,
    state: &AppState,
    cookies: &CookieJar<'_>,
) -> Result<Template, LtiError> {
    let id = browser.0;
    // Only a page of this session has its token.
    let from_our_page =
        matches!((&id, token), (Some(id), Some(t)) if state.page_forms.verify(id, t));
    // The session cookie is sent cross-site (SameSite=None, for the LMS iframe), so another
    // site's link, image or form could end a student's visit: ask first instead.
    if elsewhere.0 && !from_our_page {
        log::warn!("logout started by another site: asking for confirmation");
        let token = confirmation_token(state, id.as_deref()).await;
        return Ok(Template::render("logout_confirm", context! { token }));
    }
    // Storage trouble is a 503 page that says so, with the cookie kept for another try: in
    // words that say the visit goes on (on a shared computer, a student must not leave thinking
    // it ended).
    end_session_or_fail(state, cookies, id.as_deref(), secure)
        .await
        .map_err(LtiError::logout_not_recorded)?;
    // Without a cookie (blocked in the LMS frame) nothing was ended here: say so, rather than
    // let a student on a shared computer believe a window opened by the hand-off is closed too.
    Ok(Template::render("logout", context! { ended: id.is_some() }))
}

/// The routes of this module.
pub fn routes() -> Vec<Route> {
    routes![
        any_post,
        any_get,
        initial_post,
        initial_get,
        session_post,
        session_get,
        initial_staff_post,
        initial_staff_get,
        index,
        launch_at_home,
        logout_post,
        logout_get,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_home_page_launch_refusal_is_found_by_its_name() {
        // `route_methods` leaves this route out of a 405's `Allow` by its name: renaming the
        // function must not silently put POST in it.
        let named: Vec<Route> = routes()
            .into_iter()
            .filter(|route| route.name.as_deref() == Some(LAUNCH_AT_HOME_ROUTE))
            .collect();
        assert_eq!(named.len(), 1);
        assert_eq!(named[0].uri.path(), "/");
        assert_eq!(named[0].method, rocket::http::Method::Post);
    }
}
