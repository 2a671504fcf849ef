//! "Open in a new window": when the browser does not send the session cookie back inside the LMS
//! iframe (Safari, blocked third-party cookies), the launch page offers a button that POSTs a
//! single-use token to a new top-level window, which then gets an ordinary first-party cookie.
//! The token travels in a form body, never in a URL, so it never reaches a log.

use rocket::form::{Form, FromForm};
use rocket::http::{CookieJar, Status};
use rocket::request::{self, FromRequest, Request};
use rocket::response::Redirect;
use rocket::{get, post, routes, Route, State};

use crate::error::LtiError;
use crate::store::{self, handoffs, sessions};
use crate::web::guards::LtiSession;
use crate::web::origin::{FromOwnPage, SecureCookies};
use crate::web::session_cookie::{end_session, set_session_cookie, BrowserSessionId, NotedVisit};
use crate::web::AppState;

/// Where the new window lands unless the form names the page it came from.
const LANDING: &str = crate::web::pages::LAUNCH_PAGE;

#[derive(FromForm)]
struct Handoff {
    token: String,
    /// The visit address of the page that offered the new window (`web::pages::Landing`): a plain
    /// path of this tool, else ignored.
    next: Option<String>,
}

/// Trades a hand-off token for a session cookie in this (top-level) window.
#[post("/lti/continue", data = "<form>")]
async fn continue_in_window(
    form: Form<Handoff>,
    _same_site: FromOwnPage,
    secure: SecureCookies,
    browser: BrowserSessionId,
    // A token used twice (a double click) finds the window with the visit the first use gave it.
    _way_back: NotedVisit,
    state: &State<AppState>,
    cookies: &CookieJar<'_>,
) -> Result<Redirect, LtiError> {
    let session_id = handoffs::open(&state.db, &form.token, store::now())
        .await?
        .ok_or(LtiError::HandoffInvalid)?;
    // The session may have ended (logout, a newer launch) since the token was issued.
    match sessions::find(&state.db, &session_id).await? {
        Some(s) if s.expires_at > store::now() => {}
        _ => return Err(LtiError::HandoffInvalid),
    }
    // Spent only now: a storage error above leaves the token for the user's second click.
    if !handoffs::spend(&state.db, &form.token).await? {
        return Err(LtiError::HandoffInvalid);
    }
    // Like a launch, this replaces the browser's session: the one it had before ends.
    let before = browser.0.filter(|old| *old != session_id);
    end_session(state, cookies, before.as_deref(), secure).await;
    set_session_cookie(cookies, state, session_id, secure);
    let next = form
        .next
        .as_deref()
        .filter(|next| is_plain_path(next))
        .unwrap_or(LANDING);
    Ok(Redirect::to(next.to_string()))
}

/// A path of this site and nothing else (no other host, query, dot segment or odd character):
/// where the new window may be sent (only our own pages can post the form, see `FromOwnPage`).
/// Also what `fork::VISIT_PAGE` must be (else `/session` is used) and what the start checks
/// `fork::LAUNCH_PAGES` against (it warns).
pub(crate) fn is_plain_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && path.len() <= 200
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-._~".contains(&b))
        && !path
            .split('/')
            .any(|segment| segment == "." || segment == "..")
}

/// The header a page's script sends its logout token in (not the URL, which reaches logs).
pub const PAGE_TOKEN_HEADER: &str = "LTI-Page-Token";

/// The page's logout token, if the request carries one in [`PAGE_TOKEN_HEADER`].
struct PageToken(Option<String>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for PageToken {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        let token = req.headers().get_one(PAGE_TOKEN_HEADER).map(str::to_string);
        request::Outcome::Success(PageToken(token))
    }
}

/// 204 when the browser sent back a valid session cookie (and, given a page's logout token,
/// the session is that page's): the launch page's script asks this to learn whether the cookie
/// survived inside the iframe, and every session page when Back restores it from the browser's
/// back/forward cache (see `templates/logout_form.html.tera`).
#[get("/lti/session_check")]
fn session_check(session: LtiSession, token: PageToken, state: &State<AppState>) -> Status {
    match token.0 {
        Some(t) if !state.page_forms.verify(&session.session_id, &t) => Status::Unauthorized,
        _ => Status::NoContent,
    }
}

/// The routes of this module.
pub fn routes() -> Vec<Route> {
    routes![continue_in_window, session_check]
}
