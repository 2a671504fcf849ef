//! The request guards that protect pages: `LtiInitial`, `LtiSession`, `LtiAny` and `Staff<G>`.
//!
//! A launch is signed over the whole form body, so the launch guards are data guards on POST
//! routes (and request guards on GET routes, for launches signed in the query string).

use std::ops::Deref;
use std::sync::Arc;

use percent_encoding::percent_decode;
use rocket::data::{self, Data, FromData, ToByteUnit};
use rocket::http::{Method, Status};
use rocket::outcome::Outcome;
use rocket::request::{self, FromRequest, Request};

use crate::error::LtiError;
use crate::lti::launch::LaunchData;
use crate::web::diagnosis::record_unreadable;
use crate::web::error::remember;
use crate::web::launch::{
    browser_session_id, check_body_encoding, check_form_content_type,
    end_session_after_failed_launch, end_session_refusing, first_live_session, launch, log_refusal,
    session_ids_of, BrowserSession, LaunchParams,
};
use crate::web::origin::{SecureCookies, SentAsHead};
use crate::web::AppState;

/// What every guard hands the page: the launch data, and the session it lives in.
pub struct LtiUser {
    /// The launch parameters (user, roles, context, custom and extension fields).
    pub launch: Arc<LaunchData>,
    /// The session id, which is also the cookie value: never store it (key your rows by
    /// `store::sessions::stored_id(&session_id)`, as the tool does) nor show or log it.
    pub session_id: String,
    /// True when this request was the launch itself.
    pub fresh_launch: bool,
    /// On a fresh launch, the single-use token that reopens this session in a new window.
    pub handoff_token: Option<String>,
    /// The token of this session's Log out forms (see `web::csrf`), for any page's header.
    pub logout_token: String,
}

impl Deref for LtiUser {
    type Target = LaunchData;
    fn deref(&self) -> &LaunchData {
        &self.launch
    }
}

/// Implemented by every guard, so `Staff<G>` can wrap any of them.
pub trait HasLtiUser {
    /// The user this guard let in.
    fn lti_user(&self) -> &LtiUser;
}

macro_rules! guard_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub struct $name(pub LtiUser);

        impl Deref for $name {
            type Target = LtiUser;
            fn deref(&self) -> &LtiUser {
                &self.0
            }
        }

        impl HasLtiUser for $name {
            fn lti_user(&self) -> &LtiUser {
                &self.0
            }
        }
    };
}

guard_type!(
    /// Only a valid launch in this very request (POST form, or GET signed in the query).
    LtiInitial
);
guard_type!(
    /// Only an existing session (from the cookie). A request carrying launch fields is refused
    /// (401) and ends the browser's session: it is a launch sent to the wrong page, whose user
    /// may not be the one whose session the browser holds. As a data guard it looks in the body
    /// too; as a request guard, at the query and an OAuth `Authorization` header.
    LtiSession
);
guard_type!(
    /// A launch when the request carries one (it then must be valid), else the existing session.
    LtiAny
);

fn state<'r>(req: &'r Request<'_>) -> Result<&'r AppState, LtiError> {
    req.rocket()
        .state::<AppState>()
        .ok_or_else(|| LtiError::Storage("application state missing".into()))
}

/// Reads the body of a POST (refusing it when over the limit).
pub(crate) async fn read_body(data: Data<'_>, state: &AppState) -> Result<Vec<u8>, LtiError> {
    match read_capped(data, state).await {
        Body::Complete(body) => Ok(body),
        Body::OverLimit(_) => Err(LtiError::BodyTooLarge(state.settings.launch_body_limit)),
        Body::Broken(_, e) => Err(e),
    }
}

/// A body read up to the limit.
enum Body {
    /// All of it.
    Complete(Vec<u8>),
    /// Its start: it goes on past the limit.
    OverLimit(Vec<u8>),
    /// What came before the client broke it off or broke its framing (a bad chunk), and why.
    Broken(Vec<u8>, LtiError),
}

async fn read_capped(data: Data<'_>, state: &AppState) -> Body {
    let stream = data.open(state.settings.launch_body_limit.bytes());
    let mut body = Vec::with_capacity(stream.hint());
    match stream.stream_to(&mut body).await {
        Ok(n) if n.complete => Body::Complete(body),
        Ok(_) => Body::OverLimit(body),
        Err(e) => Body::Broken(body, LtiError::BodyUnreadable(e.to_string())),
    }
}

/// Reads the body of a launch route. One over the limit, or broken off, is refused, and when
/// what was read of it carries launch fields, that is a failed launch (see `unreadable_launch`).
async fn read_launch_body(
    req: &Request<'_>,
    state: &AppState,
    data: Data<'_>,
) -> Result<Vec<u8>, LtiError> {
    match read_capped(data, state).await {
        Body::Complete(body) => Ok(body),
        Body::OverLimit(start) => {
            let e = LtiError::BodyTooLarge(state.settings.launch_body_limit);
            Err(unreadable_launch(req, state, Some(&start), e).await)
        }
        Body::Broken(start, e) => Err(unreadable_launch(req, state, Some(&start), e).await),
    }
}

/// The session named by the cookie, if it is still valid (of several cookies, the first that
/// names a live session).
async fn session_user(req: &Request<'_>, state: &AppState) -> Result<LtiUser, LtiError> {
    let ids = session_ids_of(req, SecureCookies::of(req, &state.settings));
    let session = match first_live_session(state, &ids).await? {
        BrowserSession::Live(session) => session,
        BrowserSession::None => return Err(LtiError::NoSession),
        BrowserSession::Expired(id) => {
            // A HEAD (a link checker) ends nothing, not even what has run out.
            if !SentAsHead::of(req) {
                end_session_refusing(req, state, Some(&id)).await;
            }
            return Err(LtiError::SessionExpired);
        }
    };
    Ok(LtiUser {
        logout_token: state.page_forms.token(&session.id),
        launch: session.launch,
        session_id: session.id,
        fresh_launch: false,
        handoff_token: None,
    })
}

async fn launch_user(
    req: &Request<'_>,
    state: &AppState,
    params: LaunchParams,
) -> Result<LtiUser, LtiError> {
    let launched = launch(req, state, params).await?;
    Ok(LtiUser {
        logout_token: state.page_forms.token(&launched.session_id),
        launch: launched.launch,
        session_id: launched.session_id,
        fresh_launch: true,
        handoff_token: Some(launched.handoff_token),
    })
}

async fn initial_from_body(req: &Request<'_>, data: Data<'_>) -> Result<LtiUser, LtiError> {
    let state = state(req)?;
    let body = read_launch_body(req, state, data).await?;
    let params = check_body_encoding(req, &body)
        .and_then(|()| check_form_content_type(req))
        .and_then(|()| LaunchParams::read(req, Some(&body)));
    match params {
        Ok(params) => launch_user(req, state, params).await,
        Err(e) => Err(unreadable_launch(req, state, Some(&body), e).await),
    }
}

async fn any_from_body(req: &Request<'_>, data: Data<'_>) -> Result<LtiUser, LtiError> {
    let state = state(req)?;
    let body = read_launch_body(req, state, data).await?;
    // A body that cannot be read may be a launch: never a session request.
    if let Err(e) = check_body_encoding(req, &body) {
        return Err(unreadable_launch(req, state, Some(&body), e).await);
    }
    if let Err(e) = check_form_content_type(req) {
        // Not a form: a session request, unless it tries to be a launch.
        return match mentions_launch(req, Some(&body)) {
            true => Err(unreadable_launch(req, state, Some(&body), e).await),
            false => session_user(req, state).await,
        };
    }
    any_from(req, state, Some(&body)).await
}

/// Refuses a launch that cannot even be read (too large, not a form, or not decodable). When it
/// carries launch fields, or is a body over the limit (no request but a launch posts that much to
/// a launch page, and its launch fields may come after the part read), it is a failed launch, and
/// like any other it ends the browser's session (a HEAD gets 405 instead, as for a readable
/// launch); otherwise the session is left alone.
async fn unreadable_launch(
    req: &Request<'_>,
    state: &AppState,
    body: Option<&[u8]>,
    error: LtiError,
) -> LtiError {
    let oversized = matches!(error, LtiError::BodyTooLarge(_));
    if !oversized && !carries_launch_fields(req, body) {
        return error;
    }
    // A HEAD of a launch is no launch at all, readable or not (see `launch`).
    if SentAsHead::of(req) {
        return LtiError::HeadLaunch;
    }
    log_refusal(req, state, None, &error);
    let old = browser_session_id(req, state).await;
    end_session_after_failed_launch(req, state, old.as_deref()).await;
    record_unreadable(req, state, body, &error).await;
    error
}

/// True when undecodable input has launch fields where a form has its field names (or an OAuth
/// `Authorization` header): a launch, not some text that merely mentions one. A body cut off at
/// the size limit counts by what was read of it.
fn carries_launch_fields(req: &Request<'_>, body: Option<&[u8]>) -> bool {
    let query = req.uri().query().map(|q| q.as_str().as_bytes());
    let multipart = req
        .content_type()
        .is_some_and(|ct| ct.top() == "multipart" && ct.sub() == "form-data");
    let body_names_one = |body: &[u8]| match multipart {
        true => names_a_launch_part(body),
        false => names_a_launch_field(body),
    };
    has_oauth_header(req)
        || query.is_some_and(names_a_launch_field)
        || body.is_some_and(body_names_one)
}

/// True for a launch field's name: `oauth_*` or `lti_message_type`.
fn is_launch_name(name: &[u8]) -> bool {
    name.starts_with(b"oauth_") || name == b"lti_message_type"
}

/// True when a form (or what was meant to be one) has a field whose name, percent-decoded as far
/// as it goes, is a launch field's.
fn names_a_launch_field(raw: &[u8]) -> bool {
    raw.split(|&b| b == b'&').any(|field| {
        let name = field.split(|&b| b == b'=').next().unwrap_or_default();
        // Long enough to tell; a flood of fields costs no allocation each.
        let mut decoded = [0u8; 17];
        let mut len = 0;
        for b in percent_decode(name).take(decoded.len()) {
            decoded[len] = b;
            len += 1;
        }
        is_launch_name(&decoded[..len])
    })
}

/// True when a multipart form has a part named like a launch field (`Content-Disposition:
/// form-data; name="oauth_..."`; a file name does not count).
fn names_a_launch_part(raw: &[u8]) -> bool {
    const HEADER: &[u8] = b"content-disposition:";
    raw.split(|&b| b == b'\n').any(|line| {
        let Some(value) = line
            .get(..HEADER.len())
            .filter(|h| h.eq_ignore_ascii_case(HEADER))
            .map(|_| String::from_utf8_lossy(&line[HEADER.len()..]))
        else {
            return false;
        };
        value.split(';').any(|param| {
            param
                .trim()
                .strip_prefix("name=")
                .is_some_and(|n| is_launch_name(n.trim_matches('"').as_bytes()))
        })
    })
}

/// True for an OAuth `Authorization` header with OAuth fields in it (`OAuth realm="x"` alone, as
/// some clients send, carries none).
fn has_oauth_header(req: &Request<'_>) -> bool {
    req.headers().get_one("Authorization").is_some_and(|h| {
        let h = h.trim_start();
        h.get(..5).is_some_and(|s| s.eq_ignore_ascii_case("oauth")) && h.contains("oauth_")
    })
}

async fn any_from_query(req: &Request<'_>) -> Result<LtiUser, LtiError> {
    any_from(req, state(req)?, None).await
}

/// `LtiAny`: a request carrying launch fields is a launch and must be valid; anything else,
/// even a form we cannot decode, is a session request.
async fn any_from(
    req: &Request<'_>,
    state: &AppState,
    body: Option<&[u8]>,
) -> Result<LtiUser, LtiError> {
    match LaunchParams::read(req, body) {
        Ok(params) if params.looks_like_launch() => launch_user(req, state, params).await,
        Ok(_) => session_user(req, state).await,
        Err(e) if mentions_launch(req, body) => Err(unreadable_launch(req, state, body, e).await),
        Err(_) => session_user(req, state).await,
    }
}

/// True when undecodable input mentions a launch anywhere: then it is refused, not read as a
/// session request.
fn mentions_launch(req: &Request<'_>, body: Option<&[u8]>) -> bool {
    let has = |raw: &[u8], marker: &[u8]| raw.windows(marker.len()).any(|w| w == marker);
    let query = req
        .uri()
        .query()
        .map(|q| q.as_str().as_bytes())
        .unwrap_or_default();
    carries_launch_fields(req, body)
        || [query, body.unwrap_or_default()]
            .iter()
            .any(|raw| has(raw, b"oauth_") || has(raw, b"lti_message_type"))
}

async fn initial_from_query(req: &Request<'_>) -> Result<LtiUser, LtiError> {
    let state = state(req)?;
    match LaunchParams::read(req, None) {
        Ok(params) => launch_user(req, state, params).await,
        Err(e) => Err(unreadable_launch(req, state, None, e).await),
    }
}

fn outcome<T, F>(
    req: &Request<'_>,
    result: Result<LtiUser, LtiError>,
    wrap: fn(LtiUser) -> T,
) -> Outcome<T, (Status, LtiError), F> {
    match result {
        Ok(user) => Outcome::Success(wrap(user)),
        Err(e) => Outcome::Error((remember(req, &e), e)),
    }
}

#[rocket::async_trait]
impl<'r> FromData<'r> for LtiInitial {
    type Error = LtiError;
    async fn from_data(req: &'r Request<'_>, data: Data<'r>) -> data::Outcome<'r, Self> {
        outcome(req, initial_from_body(req, data).await, LtiInitial)
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for LtiInitial {
    type Error = LtiError;
    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, LtiError> {
        outcome(req, initial_from_query(req).await, LtiInitial)
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for LtiSession {
    type Error = LtiError;
    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, LtiError> {
        let result = match state(req) {
            Ok(state) => session_only(req, state, None).await,
            Err(e) => Err(e),
        };
        outcome(req, result, LtiSession)
    }
}

#[rocket::async_trait]
impl<'r> FromData<'r> for LtiSession {
    type Error = LtiError;
    async fn from_data(req: &'r Request<'_>, data: Data<'r>) -> data::Outcome<'r, Self> {
        let result = match state(req) {
            Ok(state) => match read_capped(data, state).await {
                // Over the limit: refused, and a failed launch if what was read is a launch's.
                Body::OverLimit(body) if !carries_launch_fields(req, Some(&body)) => {
                    Err(LtiError::BodyTooLarge(state.settings.launch_body_limit))
                }
                Body::Complete(body) | Body::OverLimit(body) => {
                    session_only(req, state, Some(&body)).await
                }
                // Broken off: refused, and a failed launch if what came is a launch's.
                Body::Broken(start, e) => Err(unreadable_launch(req, state, Some(&start), e).await),
            },
            Err(e) => Err(e),
        };
        outcome(req, result, LtiSession)
    }
}

/// `LtiSession`: the session, unless the request carries a launch (see the type's docs).
async fn session_only(
    req: &Request<'_>,
    state: &AppState,
    body: Option<&[u8]>,
) -> Result<LtiUser, LtiError> {
    if carries_launch_fields(req, body) {
        return Err(unreadable_launch(req, state, body, LtiError::LaunchAtSessionPage).await);
    }
    session_user(req, state).await
}

#[rocket::async_trait]
impl<'r> FromData<'r> for LtiAny {
    type Error = LtiError;
    async fn from_data(req: &'r Request<'_>, data: Data<'r>) -> data::Outcome<'r, Self> {
        let result = if req.method() == Method::Post {
            any_from_body(req, data).await
        } else {
            any_from_query(req).await
        };
        outcome(req, result, LtiAny)
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for LtiAny {
    type Error = LtiError;
    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, LtiError> {
        outcome(req, any_from_query(req).await, LtiAny)
    }
}

/// Wraps any guard and lets in only course staff (see `Role::is_staff`); others get 403.
pub struct Staff<G>(pub G);

impl<G> Deref for Staff<G> {
    type Target = G;
    fn deref(&self) -> &G {
        &self.0
    }
}

impl<G: HasLtiUser> HasLtiUser for Staff<G> {
    fn lti_user(&self) -> &LtiUser {
        self.0.lti_user()
    }
}

/// Lets staff through. A fresh launch by someone else is a failed launch: its new session ends
/// at once, and the error page clears the cookie.
async fn staff_check<G: HasLtiUser>(
    req: &Request<'_>,
    inner: G,
) -> Result<Staff<G>, (Status, LtiError)> {
    let user = inner.lti_user();
    if user.is_staff() {
        return Ok(Staff(inner));
    }
    if user.fresh_launch {
        if let Ok(state) = state(req) {
            end_session_refusing(req, state, Some(&user.session_id)).await;
        }
    }
    let e = LtiError::NotStaff;
    Err((remember(req, &e), e))
}

#[rocket::async_trait]
impl<'r, G> FromRequest<'r> for Staff<G>
where
    G: FromRequest<'r, Error = LtiError> + HasLtiUser + Send,
{
    type Error = LtiError;
    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, LtiError> {
        match G::from_request(req).await {
            Outcome::Success(inner) => match staff_check(req, inner).await {
                Ok(staff) => Outcome::Success(staff),
                Err(e) => Outcome::Error(e),
            },
            Outcome::Error(e) => Outcome::Error(e),
            Outcome::Forward(f) => Outcome::Forward(f),
        }
    }
}

#[rocket::async_trait]
impl<'r, G> FromData<'r> for Staff<G>
where
    G: FromData<'r, Error = LtiError> + HasLtiUser + Send,
{
    type Error = LtiError;
    async fn from_data(req: &'r Request<'_>, data: Data<'r>) -> data::Outcome<'r, Self> {
        match G::from_data(req, data).await {
            Outcome::Success(inner) => match staff_check(req, inner).await {
                Ok(staff) => Outcome::Success(staff),
                Err(e) => Outcome::Error(e),
            },
            Outcome::Error(e) => Outcome::Error(e),
            Outcome::Forward(f) => Outcome::Forward(f),
        }
    }
}
