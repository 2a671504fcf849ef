//! The request guards that protect pages: `LtiInitial`, `LtiSession`, `LtiAny`, and the role gates
//! `Staff<G>` and `Learner<G>` (any [`RoleRule`] through `Gated<G, R>`).
//!
//! A launch is signed over the whole form body, so the launch guards are data guards on POST
//! routes (and request guards on GET routes, for launches signed in the query string).

use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;

use rocket::data::{self, Data, FromData};
use rocket::http::{Method, Status};
use rocket::outcome::Outcome;
use rocket::request::{self, FromRequest, Request};

use crate::error::LtiError;
use crate::lti::launch::LaunchData;
use crate::web::error::remember;
use crate::web::head::SentAsHead;
use crate::web::launch::{launch, log_role_refusal, LaunchParams};
use crate::web::launch_body::{
    carries_launch_fields, check_body_encoding, check_form_content_type, mentions_launch,
    read_capped, read_launch_body, unreadable_launch, Body,
};
use crate::web::origin::SecureCookies;
use crate::web::session_cookie::{
    end_session_refusing, first_live_session, forget_session_refusing, note_visit,
    note_visit_of_unguarded, session_ids_of, BrowserSession,
};
use crate::web::stray_launch::peeked_body;
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

/// Implemented by every guard, so `Staff<G>` (any `Gated<G, R>`) can wrap any of them.
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
    /// Only an existing session (from the cookie). Launch fields in the request are ignored:
    /// nothing is verified or spent, and the page is the session's. One for another user is
    /// logged (the sign of an LMS link set to this page by mistake). Without a live session, a
    /// request carrying a launch is refused (401) as one sent to a page that takes none. As a
    /// data guard it looks in the body too; as a request guard (beside the route's own form), at
    /// the query, an OAuth `Authorization` header and the start of a POST's body.
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
        BrowserSession::Gone(id) => {
            if !SentAsHead::of(req) {
                forget_session_refusing(req, state, &id);
            }
            // Expired sessions are pruned within minutes: the id's date tells that from a
            // session that was ended (it says nothing else, and nothing is trusted from it).
            let ran_out = crate::store::sessions::created_at_of(&id)
                .is_some_and(|created| created + state.settings.session_ttl <= crate::store::now());
            return Err(match ran_out {
                true => LtiError::SessionExpired,
                false => LtiError::SessionEnded,
            });
        }
    };
    let logout_token = state.page_forms.token(&session.id);
    note_visit(req, &logout_token);
    Ok(LtiUser {
        logout_token,
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
    let launched = match launch(req, state, params).await {
        Ok(launched) => launched,
        Err(LtiError::NoLaunch) => {
            // A launch page opened without a launch (a bookmark, a typed address) leaves the
            // visit be: its page leads back to it, as a 404 during the visit does.
            note_visit_of_unguarded(req).await;
            return Err(LtiError::NoLaunch);
        }
        Err(e) => return Err(e),
    };
    let logout_token = state.page_forms.token(&launched.session_id);
    note_visit(req, &logout_token);
    Ok(LtiUser {
        logout_token,
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
            // A POST's form is the route's: only its start, to tell a launch sent here.
            Ok(state) => session_only(req, state, peeked_body(req)).await,
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
            // What was read only tells whether a request without a session was a launch; a body
            // broken off (or its framing broken) is a malformed request all the same.
            Ok(state) => match read_capped(data, state).await {
                Body::Complete(body) => session_only(req, state, Some(&body)).await,
                // Over the limit without a session: refused as such (413), and as a failed launch
                // when what was read is a launch's.
                Body::OverLimit(body) => match session_user(req, state).await {
                    Ok(user) => Ok(user),
                    Err(_) => {
                        let e = LtiError::BodyTooLarge(state.settings.launch_body_limit);
                        match carries_launch_fields(req, Some(&body)) {
                            true => Err(unreadable_launch(req, state, Some(&body), e).await),
                            false => Err(e),
                        }
                    }
                },
                Body::Broken(_, e) => Err(e),
            },
            Err(e) => Err(e),
        };
        outcome(req, result, LtiSession)
    }
}

/// `LtiSession`: the browser's session, whatever launch fields the request carries (see the
/// type's docs).
async fn session_only(
    req: &Request<'_>,
    state: &AppState,
    body: Option<&[u8]>,
) -> Result<LtiUser, LtiError> {
    let launch = carries_launch_fields(req, body);
    match session_user(req, state).await {
        Ok(user) => {
            if launch && names_another_user(req, body, &user) {
                log::warn!(
                    "a launch for another user arrived at {}, which takes none: its fields were \
                     ignored (is an LMS link set to this page?)",
                    crate::error::excerpt(req.uri().path().as_str(), 200).escape_debug()
                );
            }
            Ok(user)
        }
        Err(_) if launch => {
            Err(unreadable_launch(req, state, body, LtiError::LaunchAtSessionPage).await)
        }
        Err(e) => Err(e),
    }
}

/// Whether a request's launch fields that can be read (query, form body, OAuth header) name
/// another consumer or user than the session's: a launch sent to a page that takes none, for the
/// log. Fields that cannot be read (a multipart body) name no one.
fn names_another_user(req: &Request<'_>, body: Option<&[u8]>, user: &LtiUser) -> bool {
    let header = req
        .headers()
        .get_one("Authorization")
        .and_then(|h| {
            crate::lti::params::parse_authorization_header(h)
                .ok()
                .flatten()
        })
        .unwrap_or_default();
    let query = req.uri().query().map(|q| q.as_str().as_bytes());
    let mut fields = header;
    for part in [query, body].into_iter().flatten() {
        fields.extend(crate::lti::params::parse_form(part).unwrap_or_default());
    }
    let launch = &user.launch;
    fields.iter().any(|(name, value)| match name.as_str() {
        "oauth_consumer_key" => *value != launch.consumer_key,
        "user_id" => value != launch.user_id(),
        _ => false,
    })
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

/// The body of a POST to the home page, which takes no launch. A launch sent there (an LMS given
/// the tool's bare address instead of a launch URL) is refused as a failed launch, as at the
/// session page, and recorded with a hint for the admin; anything else gets the 405 a POST to a
/// page without a POST route gets. It never lets a request through, so it has no values.
pub enum LaunchAtHomePage {}

#[rocket::async_trait]
impl<'r> FromData<'r> for LaunchAtHomePage {
    type Error = LtiError;
    async fn from_data(req: &'r Request<'_>, data: Data<'r>) -> data::Outcome<'r, Self> {
        let state = match state(req) {
            Ok(state) => state,
            Err(e) => return Outcome::Error((remember(req, &e), e)),
        };
        let body = match read_capped(data, state).await {
            Body::Complete(body) | Body::OverLimit(body) | Body::Broken(body, _) => body,
        };
        if carries_launch_fields(req, Some(&body)) {
            let e = unreadable_launch(req, state, Some(&body), LtiError::LaunchAtHomePage).await;
            return Outcome::Error((remember(req, &e), e));
        }
        // Not this error's own status (401) on purpose: the catcher answers a 404 at an address
        // with routes for other methods with a 405, and leaves this route out of its `Allow`
        // header. The error itself is not shown.
        Outcome::Error((Status::NotFound, LtiError::NoLaunch))
    }
}

/// Who a role-gated guard ([`Gated`]) lets in. [`CourseStaff`] and [`CourseLearner`] are the
/// tool's; a fork implements it for a page of its own (say, teaching assistants only).
pub trait RoleRule: Send + Sync + 'static {
    /// Whether this user may see the page.
    fn allows(user: &LtiUser) -> bool;
    /// The refusal everyone else gets (a 403 page, say `LtiError::page(403, …)`).
    fn refusal() -> LtiError;
}

/// Course staff (see `Role::is_staff`): the rule of [`Staff`].
pub struct CourseStaff;

impl RoleRule for CourseStaff {
    fn allows(user: &LtiUser) -> bool {
        user.is_staff()
    }
    fn refusal() -> LtiError {
        LtiError::NotStaff
    }
}

/// Learners of the course (see `Role::is_learner`): the rule of [`Learner`].
pub struct CourseLearner;

impl RoleRule for CourseLearner {
    fn allows(user: &LtiUser) -> bool {
        user.roles().iter().any(|r| r.is_learner())
    }
    fn refusal() -> LtiError {
        LtiError::page(
            403,
            "Not allowed",
            "This page is only for the learners of the course.",
        )
    }
}

/// Wraps any guard and lets in only the users `R` allows; others get `R`'s refusal, and a fresh
/// launch by them ends the session it started (a refused launch leaves nothing behind).
pub struct Gated<G, R: RoleRule>(pub G, PhantomData<R>);

/// Wraps any guard and lets in only course staff; others get 403.
pub type Staff<G> = Gated<G, CourseStaff>;

/// Wraps any guard and lets in only learners of the course; others get 403.
pub type Learner<G> = Gated<G, CourseLearner>;

impl<G, R: RoleRule> Deref for Gated<G, R> {
    type Target = G;
    fn deref(&self) -> &G {
        &self.0
    }
}

impl<G: HasLtiUser, R: RoleRule> HasLtiUser for Gated<G, R> {
    fn lti_user(&self) -> &LtiUser {
        self.0.lti_user()
    }
}

/// Lets through whom `R` allows. A fresh launch by someone else is a failed launch: its new
/// session ends at once, and the error page clears the cookie.
async fn role_check<G: HasLtiUser, R: RoleRule>(
    req: &Request<'_>,
    inner: G,
) -> Result<Gated<G, R>, (Status, LtiError)> {
    let user = inner.lti_user();
    if R::allows(user) {
        return Ok(Gated(inner, PhantomData));
    }
    let e = R::refusal();
    if user.fresh_launch {
        if let Ok(state) = state(req) {
            // A launch refused for its roles: logged as the other refused launches are.
            log_role_refusal(req, state, &user.consumer_key, &e);
            end_session_refusing(req, state, Some(&user.session_id)).await;
        }
    }
    Err((remember(req, &e), e))
}

/// `Gated<G, R>`'s outcome from its inner guard's: the role check on a success.
async fn gated<G: HasLtiUser, R: RoleRule, F>(
    req: &Request<'_>,
    inner: Outcome<G, (Status, LtiError), F>,
) -> Outcome<Gated<G, R>, (Status, LtiError), F> {
    match inner {
        Outcome::Success(inner) => match role_check(req, inner).await {
            Ok(gated) => Outcome::Success(gated),
            Err(e) => Outcome::Error(e),
        },
        Outcome::Error(e) => Outcome::Error(e),
        Outcome::Forward(f) => Outcome::Forward(f),
    }
}

#[rocket::async_trait]
impl<'r, G, R> FromRequest<'r> for Gated<G, R>
where
    G: FromRequest<'r, Error = LtiError> + HasLtiUser + Send,
    R: RoleRule,
{
    type Error = LtiError;
    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, LtiError> {
        gated(req, G::from_request(req).await).await
    }
}

#[rocket::async_trait]
impl<'r, G, R> FromData<'r> for Gated<G, R>
where
    G: FromData<'r, Error = LtiError> + HasLtiUser + Send,
    R: RoleRule,
{
    type Error = LtiError;
    async fn from_data(req: &'r Request<'_>, data: Data<'r>) -> data::Outcome<'r, Self> {
        gated(req, G::from_data(req, data).await).await
    }
}
