//! The session cookie: which session a browser's cookies name, setting and clearing the cookie,
//! and ending the session it names (logout, a failed launch, a refusal). Also what a request
//! found of its visit (`note_visit` and the way back an error page offers), since each refusal
//! that ends a session must also take that way back off the page.

use std::sync::OnceLock;

use rocket::fairing::{AdHoc, Fairing};
use rocket::http::{Cookie, CookieJar, Method};
use rocket::request::{self, FromRequest, Request};

use crate::config::SameSitePolicy;
use crate::error::LtiError;
use crate::store::{self, sessions};
use crate::web::origin::{is_navigation, started_by_another_site, SecureCookies};
use crate::web::AppState;

/// Name of the session cookie over plain http (the debug profile's default).
pub const SESSION_COOKIE: &str = "lti_session";

/// Name of the session cookie whenever it is `Secure`. Browsers take a `__Host-` cookie only from
/// the host itself (`Secure`, `Path=/`, no `Domain`), so a sibling subdomain (a student's pages on
/// `*.example.edu`) cannot plant one of its own sessions in a student's browser.
pub const SECURE_SESSION_COOKIE: &str = "__Host-lti_session";

/// The session cookie's name for a request: [`SECURE_SESSION_COOKIE`] when it is `Secure`.
pub fn session_cookie_name(secure: SecureCookies) -> &'static str {
    if secure.0 {
        SECURE_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    }
}

/// The session id in the browser's cookie, if it sent one. The `__Host-` cookie always counts (a
/// browser keeps one only from this host over https, so nobody else can have set it), even when
/// this request is worked out as plain http (a proxy missing from `trusted_proxies`); the plain
/// one counts only on a request that is not `Secure`: over https it may come from a sibling
/// subdomain. Read as [`cookies_named`] reads them (so another site's `%5F_Host-lti_session`
/// does not read as ours).
pub fn session_id_of(req: &Request<'_>, secure: SecureCookies) -> Option<String> {
    session_ids_of(req, secure).into_iter().next()
}

/// Most session cookies of one request looked up ([`session_ids_of`]).
const MAX_SESSION_COOKIES: usize = 4;

/// Every session id the browser sent, in [`session_id_of`]'s order (at most a few): a browser may
/// hold two cookies of one name, one partitioned (set inside an LMS iframe) and one not (set in a
/// window of its own), and sends the older first, which may be a session that has ended.
pub fn session_ids_of(req: &Request<'_>, secure: SecureCookies) -> Vec<String> {
    let mut ids = cookies_named(req, SECURE_SESSION_COOKIE, MAX_SESSION_COOKIES);
    if !secure.0 {
        ids.extend(cookies_named(req, SESSION_COOKIE, MAX_SESSION_COOKIES));
    }
    ids.truncate(MAX_SESSION_COOKIES);
    ids
}

/// The values of the cookies called exactly `wanted`, in the order sent (at most `max`), read
/// from the `Cookie` headers: Rocket's jar percent-decodes and trims names, and keeps only the
/// last of a name. Only a request with no `Cookie` header at all is read from the jar (Rocket's
/// local test client hands its cookies over that way).
pub fn cookies_named(req: &Request<'_>, wanted: &str, max: usize) -> Vec<String> {
    match req.headers().contains("Cookie") {
        true => req
            .headers()
            .get("Cookie")
            .flat_map(|header| header.split(';'))
            .filter_map(|pair| pair.trim_matches([' ', '\t']).split_once('='))
            .filter(|(name, _)| *name == wanted)
            .map(|(_, value)| value.trim_matches([' ', '\t']).to_string())
            // An empty value names nothing: as if the cookie were not there.
            .filter(|value| !value.is_empty())
            .take(max)
            .collect(),
        false => req
            .cookies()
            .get(wanted)
            .map(|c| c.value().to_string())
            .filter(|value| !value.is_empty())
            .into_iter()
            .collect(),
    }
}

/// The session the browser's cookies stand for: of several ([`session_ids_of`]), the first that
/// names a live session, which is the one its pages show (`guards::session_user`), so that a
/// logout or a failed launch ends that one; else the first. One cookie costs no lookup.
pub async fn browser_session_id(req: &Request<'_>, state: &AppState) -> Option<String> {
    let ids = session_ids_of(req, SecureCookies::of(req, &state.settings));
    if ids.len() > 1 {
        if let Ok(BrowserSession::Live(s)) = first_live_session(state, &ids).await {
            return Some(s.id);
        }
    }
    ids.into_iter().next()
}

/// What the browser's session ids ([`session_ids_of`]) name, taken in order.
pub enum BrowserSession {
    /// The first that names a live session.
    Live(sessions::Session),
    /// None is live; this one names a session that has run out.
    Expired(String),
    /// None is live or expired; this one names a session that no longer exists (ended, or
    /// pruned after it ran out).
    Gone(String),
    /// No cookie.
    None,
}

/// The first of `ids` that names a live session, else the first that names an expired one,
/// else the first that names none.
pub async fn first_live_session(
    state: &AppState,
    ids: &[String],
) -> Result<BrowserSession, LtiError> {
    let mut expired = None;
    for id in ids {
        match state.front.session(&state.db, id).await? {
            Some(s) if s.expires_at > store::now() => return Ok(BrowserSession::Live(s)),
            Some(_) => {
                expired.get_or_insert_with(|| id.clone());
            }
            None => {}
        }
    }
    Ok(match (expired, ids.first()) {
        (Some(id), _) => BrowserSession::Expired(id),
        (None, Some(id)) => BrowserSession::Gone(id.clone()),
        (None, None) => BrowserSession::None,
    })
}

/// Request guard: the session id the browser sent ([`browser_session_id`]).
pub struct BrowserSessionId(pub Option<String>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for BrowserSessionId {
    type Error = std::convert::Infallible;
    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        let id = match req.rocket().state::<AppState>() {
            Some(state) => browser_session_id(req, state).await,
            None => session_id_of(req, SecureCookies::of_request(req)),
        };
        request::Outcome::Success(BrowserSessionId(id))
    }
}

/// Gives the browser a new session cookie; one of the other name that would still be read
/// ([`session_id_of`]) goes.
pub fn set_session_cookie(
    cookies: &CookieJar<'_>,
    state: &AppState,
    id: String,
    secure: SecureCookies,
) {
    if !secure.0 {
        clear_secure_session_cookie(cookies, state);
    }
    cookies.add(session_cookie(state, id, secure));
}

/// Clears the browser's session cookie: the `__Host-` one if it sent one, and, on a request that
/// is not `Secure`, the plain one.
pub fn clear_session_cookie(cookies: &CookieJar<'_>, state: &AppState, secure: SecureCookies) {
    clear_secure_session_cookie(cookies, state);
    if !secure.0 {
        cookies.remove(session_cookie(state, String::new(), secure));
    }
}

fn clear_secure_session_cookie(cookies: &CookieJar<'_>, state: &AppState) {
    if cookies.get(SECURE_SESSION_COOKIE).is_some() {
        // Browsers take a `__Host-` removal only with `Secure` and `Path=/`, as the cookie was set.
        cookies.remove(session_cookie(state, String::new(), SecureCookies(true)));
    }
}

/// The session cookie, with the configured `SameSite` policy and `secure` as worked out for the
/// request. A `Secure` cookie for the LMS iframe (`SameSite=None`) is also `Partitioned` (CHIPS):
/// the browser keeps it for this LMS's pages only, and so keeps it even when it blocks
/// third-party cookies (Chrome, Edge), where an ordinary one would be dropped. A removal carries
/// the same attributes, or it would not match the cookie.
fn session_cookie(state: &AppState, value: String, secure: SecureCookies) -> Cookie<'static> {
    let same_site = state.settings.cookie_same_site;
    Cookie::build((session_cookie_name(secure), value))
        .path("/")
        .http_only(true)
        .same_site(same_site.into())
        .secure(secure.0)
        .partitioned(secure.0 && same_site == SameSitePolicy::None)
        .build()
}

/// Ends a session: the row goes and the cookie is cleared (with the `Secure` flag it was set with:
/// browsers ignore a `SameSite=None` removal without it). Storage errors are logged, not raised:
/// the cookie is cleared either way and the row expires on its own.
pub async fn end_session(
    state: &AppState,
    cookies: &CookieJar<'_>,
    id: Option<&str>,
    secure: SecureCookies,
) {
    if let Err(e) = end_session_or_fail(state, cookies, id, secure).await {
        log::error!("could not delete a session: {e}");
        clear_session_cookie(cookies, state, secure);
    }
}

/// Ends a session as [`end_session`] does, but when the row cannot be deleted, says so and leaves
/// the cookie: a logout must not claim to have ended a session that still works.
pub async fn end_session_or_fail(
    state: &AppState,
    cookies: &CookieJar<'_>,
    id: Option<&str>,
    secure: SecureCookies,
) -> Result<(), LtiError> {
    if let Some(id) = id {
        sessions::delete(&state.db, id).await?;
        clear_session_cookie(cookies, state, secure);
    }
    Ok(())
}

/// Marks a request that ended the browser's session on its way to a refusal.
struct EndedBeforeRefusal(OnceLock<(SecureCookies, String)>);

/// Ends the browser's session while refusing a request. Rocket drops a guard's cookie changes
/// before the catcher runs, so this also leaves a mark from which the error page clears the
/// cookie again (`clear_cookie_on_refusal`); otherwise the browser keeps an id that leads nowhere.
pub async fn end_session_refusing(req: &Request<'_>, state: &AppState, id: Option<&str>) {
    let secure = SecureCookies::of(req, &state.settings);
    end_session(state, req.cookies(), id, secure).await;
    if let Some(id) = id {
        mark_ended_before_refusal(req, secure, id);
    }
}

/// Clears the cookie of a session that no longer exists while refusing a request, as
/// [`end_session_refusing`] does, with nothing to delete (so a made-up cookie costs no write).
pub fn forget_session_refusing(req: &Request<'_>, state: &AppState, id: &str) {
    let secure = SecureCookies::of(req, &state.settings);
    clear_session_cookie(req.cookies(), state, secure);
    mark_ended_before_refusal(req, secure, id);
}

fn mark_ended_before_refusal(req: &Request<'_>, secure: SecureCookies, id: &str) {
    let _ = req
        .local_cache(|| EndedBeforeRefusal(OnceLock::new()))
        .0
        .set((secure, id.to_string()));
}

/// The session this request's launch started, with how its cookie was set.
struct LaunchedSession(OnceLock<(String, SecureCookies)>);

/// Notes the session this request's launch started ([`refused_launches_end_their_session`]).
pub fn note_launched_session(req: &Request<'_>, id: &str, secure: SecureCookies) {
    let _ = req
        .local_cache(|| LaunchedSession(OnceLock::new()))
        .0
        .set((id.to_string(), secure));
}

/// Whether this request's launch started a session: any error page it gets ends that session
/// (see [`refused_launches_end_their_session`]), so the page offers no way back to it.
pub fn launched_a_session(req: &Request<'_>) -> bool {
    req.local_cache(|| LaunchedSession(OnceLock::new()))
        .0
        .get()
        .is_some()
}

/// Ends the session a launch started when the page refuses the request anyway (an error status
/// from its handler: a fork's own role check or `LtiError::page`, a storage error; or a later
/// guard's refusal), so a refused launch leaves no session behind wherever it was refused. The
/// role gates end it themselves. The answer's cookie for that session becomes a removal.
pub fn refused_launches_end_their_session() -> impl Fairing {
    AdHoc::on_response("Refused launches end their session", |req, res| {
        Box::pin(async move {
            let status = res.status();
            let launched = req.local_cache(|| LaunchedSession(OnceLock::new())).0.get();
            let (Some((id, secure)), true) = (launched, status.code >= 400) else {
                return;
            };
            // A role gate ended it already (and its page cleared the cookie).
            let ended = req
                .local_cache(|| EndedBeforeRefusal(OnceLock::new()))
                .0
                .get();
            if ended.is_some_and(|(_, ended)| ended == id) {
                return;
            }
            let Some(state) = req.rocket().state::<AppState>() else {
                return;
            };
            if let Err(e) = sessions::delete(&state.db, id).await {
                log::error!("could not delete the session of a refused launch: {e}");
            }
            let name = session_cookie_name(*secure);
            let others: Vec<String> = res
                .headers()
                .get("Set-Cookie")
                .filter(|c| c.split_once('=').is_none_or(|(n, _)| n.trim() != name))
                .map(str::to_string)
                .collect();
            res.remove_header("Set-Cookie");
            for cookie in others {
                res.adjoin_raw_header("Set-Cookie", cookie);
            }
            let mut removal = session_cookie(state, String::new(), *secure);
            removal.make_removal();
            res.adjoin_header(removal);
            log::warn!("the page refused the launch that opened it ({status}): its session ended");
        })
    })
}

/// Ends the browser's session after a failed launch, so that a launch refused on a shared
/// computer never leaves the previous user's session behind. Only a form an LMS could have sent
/// counts: an image or script of another page (`Sec-Fetch-Mode`), or another site's link or frame
/// (a GET: LMSs launch with a POST form), say `<img src="/any?oauth_x=1">` or an `<iframe>` in a
/// forum post, is refused without ending anything, or any page could log its viewers out.
pub async fn end_session_after_failed_launch(
    req: &Request<'_>,
    state: &AppState,
    id: Option<&str>,
) {
    let from_a_page =
        !is_navigation(req) || (req.method() != Method::Post && started_by_another_site(req));
    if id.is_some() && from_a_page {
        log::info!("a failed launch from another page's image, frame or link kept the session");
        return;
    }
    end_session_refusing(req, state, id).await;
}

/// The page-form token of the session the request's cookie names, once a guard found it live (or
/// the logout route is about to end it): its error page then offers the way back and the Log out
/// button, unless the refusal ended the session. The token works only with that cookie.
struct VisitOnPage(OnceLock<String>);

/// Notes the page-form token of the session this request's cookie names (see `VisitOnPage`).
pub fn note_visit(req: &Request<'_>, logout_token: &str) {
    let _ = req
        .local_cache(|| VisitOnPage(OnceLock::new()))
        .0
        .set(logout_token.to_string());
}

/// Notes the visit of a request no guard looked at (an address that does not exist, a method it
/// does not take) when its cookie names a live session: a mistyped or stale link inside the tool
/// then still leads back. The admin area has its own way back.
pub async fn note_visit_of_unguarded(req: &Request<'_>) {
    let Some(state) = req.rocket().state::<AppState>() else {
        return;
    };
    if crate::web::admin::is_admin_request(req) || visit_of(req).is_some() {
        return;
    }
    let ids = session_ids_of(req, SecureCookies::of(req, &state.settings));
    if ids.is_empty() {
        return;
    }
    if let Ok(BrowserSession::Live(session)) = first_live_session(state, &ids).await {
        note_visit(req, &state.page_forms.token(&session.id));
    }
}

/// Request guard that notes the visit of the browser's live session, as
/// [`note_visit_of_unguarded`] does, for a route whose refusals should keep the way back to it
/// (a new-window link used twice: the window already has the visit the first use gave it).
pub struct NotedVisit;

#[rocket::async_trait]
impl<'r> FromRequest<'r> for NotedVisit {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        note_visit_of_unguarded(req).await;
        request::Outcome::Success(NotedVisit)
    }
}

/// Marks a replayed launch whose first copy most likely started a visit in this browser (a double
/// click): its page offers the way back, though not Log out (this request's cookie names no
/// session, so there is no token to give).
struct VisitMayGoOn(OnceLock<()>);

/// Notes that the browser's visit may go on: a double click's second launch (its page offers
/// the way back, not Log out).
pub fn note_visit_may_go_on(req: &Request<'_>) {
    let _ = req.local_cache(|| VisitMayGoOn(OnceLock::new())).0.set(());
}

/// Whether [`note_visit_may_go_on`] noted this request.
pub fn visit_may_go_on(req: &Request<'_>) -> bool {
    req.local_cache(|| VisitMayGoOn(OnceLock::new()))
        .0
        .get()
        .is_some()
}

/// The token `note_visit` noted, unless the request then ended that session.
pub fn visit_of<'r>(req: &'r Request<'_>) -> Option<&'r str> {
    let ended = req.local_cache(|| EndedBeforeRefusal(OnceLock::new()));
    if ended.0.get().is_some() {
        return None;
    }
    req.local_cache(|| VisitOnPage(OnceLock::new()))
        .0
        .get()
        .map(String::as_str)
}

/// Clears the session cookie in an error page's answer when the refused request ended the session.
pub fn clear_cookie_on_refusal(req: &Request<'_>) {
    let ended = req.local_cache(|| EndedBeforeRefusal(OnceLock::new()));
    if let (Some((secure, _)), Some(state)) = (ended.0.get(), req.rocket().state::<AppState>()) {
        clear_session_cookie(req.cookies(), state, *secure);
    }
}
