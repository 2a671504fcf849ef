//! Verifying a launch request end to end: parameters, consumer, signature, freshness, nonce, LTI
//! fields; then a new session in place of the browser's old one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use rocket::http::{Cookie, CookieJar, Method};
use rocket::request::{self, FromRequest, Request};

use crate::config::SameSitePolicy;
use crate::error::LtiError;
use crate::lti::launch::{
    check_lti_fields, check_timestamp, is_launch_field, read_oauth_fields, LaunchData,
};
use crate::lti::oauth::{base_uri, signature_base_string, verify};
use crate::lti::params::{parse_authorization_header, parse_form, Params};
use crate::store::handoffs::NewHandoff;
use crate::store::launches::{LaunchWrite, NewSession, Recorded};
use crate::store::{self, handoffs, sessions, usage};
use crate::web::diagnosis::record_refusal;
use crate::web::error::is_followable_return_url;
use crate::web::origin::{
    client_address, is_navigation, signed_origin, started_by_another_site, SecureCookies,
    SentAsHead,
};
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

/// Where a launch's parameters came from, kept apart because the signature tolerances need it.
#[derive(Debug, Default)]
pub struct LaunchParams {
    /// From the URL's query string.
    pub query: Params,
    /// From the form body.
    pub body: Params,
    /// `oauth_*` fields of an `Authorization: OAuth` header.
    pub header: Params,
}

impl LaunchParams {
    /// Reads the query string, the header and (when given) the form body of a request.
    pub fn read(req: &Request<'_>, body: Option<&[u8]>) -> Result<Self, LtiError> {
        let query = match req.uri().query() {
            Some(q) => parse_form(q.as_str().as_bytes())?,
            None => Params::new(),
        };
        let header = match req.headers().get_one("Authorization") {
            Some(h) => parse_authorization_header(h)?.unwrap_or_default(),
            None => Params::new(),
        };
        let body = match body {
            Some(b) => parse_form(b)?,
            None => Params::new(),
        };
        Ok(LaunchParams {
            query,
            body,
            header,
        })
    }

    /// True when the request tries to be a launch (it carries OAuth or LTI launch fields).
    pub fn looks_like_launch(&self) -> bool {
        self.all().any(|(n, _)| is_launch_field(n.as_bytes()))
    }

    /// The `oauth_consumer_key` sent, if any.
    pub fn consumer_key(&self) -> Option<&str> {
        self.all()
            .find(|(n, _)| *n == "oauth_consumer_key")
            .map(|(_, v)| v)
    }

    fn all(&self) -> impl Iterator<Item = (&str, &str)> {
        self.query
            .iter()
            .chain(&self.body)
            .chain(&self.header)
            .map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Query, body and header parameters together, in that order.
    pub fn combined(&self) -> Params {
        self.query
            .iter()
            .chain(&self.body)
            .chain(&self.header)
            .cloned()
            .collect()
    }
}

/// The session id in the browser's cookie, if it sent one. The `__Host-` cookie always counts (a
/// browser keeps one only from this host over https, so nobody else can have set it), even when
/// this request is worked out as plain http (a proxy missing from `trusted_proxies`); the plain
/// one counts only on a request that is not `Secure`: over https it may come from a sibling
/// subdomain. Read from the `Cookie` headers, by exact name: Rocket's jar percent-decodes and
/// trims names, so another site's `%5F_Host-lti_session`, which no browser holds to the `__Host-`
/// rules, would read as ours. Only a request with no `Cookie` header at all is read from the jar:
/// Rocket's local test client hands its cookies over that way.
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
            .take(max)
            .collect(),
        false => req
            .cookies()
            .get(wanted)
            .map(|c| c.value().to_string())
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
    /// None names a session.
    None,
}

/// The first of `ids` that names a live session, else the first that names an expired one.
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
    Ok(expired.map_or(BrowserSession::None, BrowserSession::Expired))
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

/// The base string URIs to try: the path as sent, then with its trailing slash toggled (admins
/// type launch URLs both ways; the HMAC still has to match one of them).
fn candidate_uris(req: &Request<'_>, state: &AppState) -> Result<Vec<String>, LtiError> {
    let origin = signed_origin(req, &state.settings)?;
    let path = req.uri().path().as_str();
    let toggled = match path.strip_suffix('/') {
        Some(p) if !p.is_empty() => p.to_string(),
        Some(_) => path.to_string(),
        None => format!("{path}/"),
    };
    let mut uris = vec![base_uri(&origin.scheme, &origin.host, origin.port, path)];
    if toggled != path {
        uris.push(base_uri(
            &origin.scheme,
            &origin.host,
            origin.port,
            &toggled,
        ));
    }
    Ok(uris)
}

/// A reading of the request's parameters, borrowed from it.
type ParamSet<'a> = Vec<(&'a str, &'a str)>;

/// The parameter sets to try: all of them, then (when Canvas copied launch-URL query parameters
/// into the body) with each query parameter that reappears in the body with the same value counted once.
fn candidate_param_sets(params: &LaunchParams) -> Vec<ParamSet<'_>> {
    let all = params.all().collect();
    let duplicated = |q: &&(String, String)| params.body.contains(q);
    if !params.query.iter().any(|q| duplicated(&q)) {
        return vec![all];
    }
    let deduped = params
        .query
        .iter()
        .filter(|q| !duplicated(q))
        .chain(&params.body)
        .chain(&params.header)
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    vec![all, deduped]
}

/// True when the signature matches any of the tolerated readings of the request.
fn signature_matches(
    method: &str,
    uris: &[String],
    sets: &[ParamSet<'_>],
    secret: &str,
    signature: &str,
) -> bool {
    uris.iter().any(|uri| {
        sets.iter().any(|set| {
            let base = signature_base_string(method, uri, set.iter().copied());
            verify(&base, secret, signature)
        })
    })
}

/// A verified launch and the session it started.
pub struct Launched {
    /// What the launch said.
    pub launch: Arc<LaunchData>,
    /// The new session's id.
    pub session_id: String,
    /// A single-use token that opens the session in a new window (see `web::handoff`).
    pub handoff_token: String,
}

/// Verifies a launch and, when it passes, starts a new session (replacing the browser's old one)
/// and sets its cookie. On failure the browser's current session ends too.
pub async fn launch(
    req: &Request<'_>,
    state: &AppState,
    params: LaunchParams,
) -> Result<Launched, LtiError> {
    // Before anything else: a HEAD request neither spends the nonce nor ends the current session.
    // One without launch fields is answered as its GET would be (no launch: 401).
    if SentAsHead::of(req) && params.looks_like_launch() {
        log::info!("a HEAD request to a launch route was answered without launching");
        return Err(LtiError::HeadLaunch);
    }
    // Nor does a launch a browser fetched as another page's part (an image or script in a forum
    // post): otherwise any page could sign its viewers in as whoever's launch it embeds.
    if params.looks_like_launch() && !is_navigation(req) {
        log::info!("a launch fetched as part of another page was refused without launching");
        return Err(LtiError::LaunchNotNavigation);
    }
    let old_session = browser_session_id(req, state).await;
    let old = old_session.as_deref();
    // First against the consumer cache; a refusal that may come from a cached consumer being out
    // of date (the command line just changed it) is decided again from the database. That
    // includes a timestamp refusal: with the consumer as it is now, the launch may be refused for
    // its signature or a disabled key instead, which is what the admin needs to see.
    let result = match verify_and_record(req, state, &params, old, true).await {
        Err(
            LtiError::BadSignature
            | LtiError::DisabledConsumer
            | LtiError::StaleTimestamp(_)
            | LtiError::FutureTimestamp(_),
        ) => verify_and_record(req, state, &params, old, false).await,
        other => other,
    };
    match &result {
        Ok(launched) => set_session_cookie(
            req.cookies(),
            state,
            launched.session_id.clone(),
            SecureCookies::of(req, &state.settings),
        ),
        // A request with no launch fields at all is not a failed launch: it leaves the session be.
        Err(e) if params.looks_like_launch() => {
            log_refusal(req, state, params.consumer_key(), e);
            end_session_after_failed_launch(req, state, old).await;
            // Exact counts for the admin's list, and the bounded detailed log with its hint.
            let counted =
                usage::count_refusal(&state.db, params.consumer_key(), e, store::now()).await;
            // When the count could not be written (a lock, a full disk), neither can the log:
            // the refusal is answered now instead of after a second wait for the lock.
            if counted.is_ok() {
                record_refusal(req, state, &params, e).await;
            }
        }
        Err(_) => {}
    }
    result
}

async fn verify_and_record(
    req: &Request<'_>,
    state: &AppState,
    params: &LaunchParams,
    old_session: Option<&str>,
    use_consumer_cache: bool,
) -> Result<Launched, LtiError> {
    if !params.looks_like_launch() {
        return Err(LtiError::NoLaunch);
    }
    let all = params.combined();
    let oauth = read_oauth_fields(&all)?;
    let consumer = state
        .front
        .consumer(&state.db, &oauth.consumer_key, use_consumer_cache)
        .await?;
    let consumer = match consumer {
        None => return Err(LtiError::UnknownConsumer),
        Some(c) if !c.enabled => return Err(LtiError::DisabledConsumer),
        Some(c) => c,
    };
    let uris = candidate_uris(req, state)?;
    let sets = candidate_param_sets(params);
    if !signature_matches(
        req.method().as_str(),
        &uris,
        &sets,
        &consumer.secret,
        &oauth.signature,
    ) {
        if !use_consumer_cache {
            log::info!(
                "signed URL we checked: {} (consumer key {:?})",
                uris[0],
                oauth.consumer_key
            );
        }
        return Err(LtiError::BadSignature);
    }
    let now = store::now();
    let window = state.settings.timestamp_window;
    check_timestamp(oauth.timestamp, now, window)?;
    // A nonce that would have expired before one already pruned (by a clock that ran ahead):
    // a replay of this launch could not be told apart.
    if state.nonce_watermark.may_be_pruned(oauth.timestamp, window) {
        return Err(LtiError::NonceForgotten);
    }

    // Nonces outlive the window on both sides, so a replay is refused for as long as its
    // timestamp would still be accepted.
    let nonce_expiry = oauth.timestamp.max(now) + window + 1;
    let fields = check_lti_fields(&all);
    let launch = Arc::new(LaunchData::new(oauth.consumer_key.clone(), all));
    let session_id = sessions::new_id();
    let handoff_token = sessions::new_id();

    // The nonce is spent even when the LTI fields are wrong: the request was genuine.
    let session = match &fields {
        Ok(()) => Some(NewSession::new(
            &session_id,
            &launch,
            now,
            now + state.settings.session_ttl,
        )?),
        Err(_) => None,
    };
    let write = LaunchWrite {
        consumer_key: oauth.consumer_key.clone(),
        stored_secret: consumer.stored_secret.clone(),
        nonce: oauth.nonce.clone(),
        nonce_expires_at: nonce_expiry,
        replaces: old_session
            .filter(|_| session.is_some())
            .map(str::to_string),
        handoff: session
            .as_ref()
            .map(|_| NewHandoff::new(&handoff_token, &session_id, now + handoffs::HANDOFF_TTL)),
        session,
    };
    match state.front.record_launch(write).await? {
        Recorded::Accepted => {}
        Recorded::Replayed => return Err(LtiError::ReplayedNonce),
        Recorded::ConsumerChanged => return Err(LtiError::BadSignature),
    }
    fields?;
    log::info!(
        "launch accepted: consumer key {:?}, user {:?}",
        launch.consumer_key,
        launch.user_id()
    );
    Ok(Launched {
        launch,
        session_id,
        handoff_token,
    })
}

/// Logs a refused launch once, with its consumer key and the client's address (`remember` then
/// leaves it out). Request values are escaped so a crafted one cannot forge log lines.
pub fn log_refusal(
    req: &Request<'_>,
    state: &AppState,
    consumer_key: Option<&str>,
    error: &LtiError,
) {
    let what = error.to_string();
    let what = what.escape_debug();
    let key = match consumer_key {
        Some(k) => format!("consumer key \"{}\"", k.escape_debug()),
        None => "consumer key not read".into(),
    };
    let from = client_address(req, &state.settings);
    let answer = match error {
        LtiError::InvalidLaunch {
            return_url: Some(url),
            ..
        } if is_followable_return_url(url) => "sent back to the LMS".to_string(),
        _ => error.status().to_string(),
    };
    let line = |verb| format!("launch {verb} ({answer}): {what} ({key}, from {from})");
    match error {
        LtiError::Storage(_) => log::error!("{}", line("failed")),
        _ => log::warn!("{}", line("refused")),
    }
    req.local_cache(RefusalLogged::default)
        .0
        .store(true, Ordering::Relaxed);
}

/// Set on a request whose refusal `log_refusal` has logged.
#[derive(Default)]
pub struct RefusalLogged(pub AtomicBool);

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
struct EndedBeforeRefusal(OnceLock<SecureCookies>);

/// Ends the browser's session while refusing a request. Rocket drops a guard's cookie changes
/// before the catcher runs, so this also leaves a mark from which the error page clears the
/// cookie again (`clear_cookie_on_refusal`); otherwise the browser keeps an id that leads nowhere.
pub async fn end_session_refusing(req: &Request<'_>, state: &AppState, id: Option<&str>) {
    let secure = SecureCookies::of(req, &state.settings);
    end_session(state, req.cookies(), id, secure).await;
    if id.is_some() {
        let _ = req
            .local_cache(|| EndedBeforeRefusal(OnceLock::new()))
            .0
            .set(secure);
    }
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

/// Clears the session cookie in an error page's answer when the refused request ended the session.
pub fn clear_cookie_on_refusal(req: &Request<'_>) {
    let ended = req.local_cache(|| EndedBeforeRefusal(OnceLock::new()));
    if let (Some(secure), Some(state)) = (ended.0.get(), req.rocket().state::<AppState>()) {
        clear_session_cookie(req.cookies(), state, *secure);
    }
}
