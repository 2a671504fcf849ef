//! Verifying a launch request end to end: parameters, consumer, signature, freshness, nonce, LTI
//! fields; then a new session in place of the browser's old one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rocket::request::Request;

use crate::error::{excerpt, LtiError};
use crate::lti::launch::{
    check_lti_fields, check_oauth_in_one_place, check_timestamp, is_launch_field,
    read_oauth_fields, LaunchData, OAuthFields,
};
use crate::lti::oauth::{base_uri, signature_base_string, verify};
use crate::lti::params::{parse_authorization_header, parse_form, Params};
use crate::store::consumers::Consumer;
use crate::store::handoffs::NewHandoff;
use crate::store::launches::{LaunchWrite, NewSession, Recorded};
use crate::store::{self, handoffs, sessions, usage};
use crate::web::diagnosis::record_refusal;
use crate::web::error::is_followable_return_url;
use crate::web::head::SentAsHead;
use crate::web::origin::{client_address, is_navigation, signed_origin, SecureCookies};
use crate::web::session_cookie::{
    browser_session_id, end_session_after_failed_launch, note_launched_session, note_visit,
    note_visit_may_go_on, set_session_cookie,
};
use crate::web::AppState;

/// Where a launch's parameters came from, kept apart because the signature tolerances need it.
#[derive(Debug, Default)]
pub struct LaunchParams {
    /// From the URL's query string.
    pub query: Params,
    /// From the form body.
    pub body: Params,
    /// The fields of an `Authorization: OAuth` header (`oauth_*` from LMSs; see
    /// `parse_authorization_header`).
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
/// and sets its cookie. On failure the browser's current session ends too, but for the replays
/// that `replays_own_visit` leaves it to (a double click, the same user's Back button).
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
        Ok(launched) => {
            let secure = SecureCookies::of(req, &state.settings);
            set_session_cookie(req.cookies(), state, launched.session_id.clone(), secure);
            note_launched_session(req, &launched.session_id, secure);
        }
        // A request with no launch fields at all is not a failed launch: it leaves the session be.
        Err(e) if params.looks_like_launch() => {
            log_refusal(req, state, params.consumer_key(), e);
            match replays_own_visit(state, &params, e, old).await {
                // The Back button or a resubmitted form: the page leads back to that visit.
                KeptVisit::Live(id) => note_visit(req, &state.page_forms.token(&id)),
                // A double click: the first copy's visit goes on in this browser, most likely.
                KeptVisit::FirstCopyGoesOn => note_visit_may_go_on(req),
                KeptVisit::Ended => end_session_after_failed_launch(req, state, old).await,
            }
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

/// What a refused launch leaves of the browser's visit ([`replays_own_visit`]).
enum KeptVisit {
    /// Its session, live, of the same user.
    Live(String),
    /// None: the cookie names a session the first copy of this launch replaced, or the browser
    /// sent none (the first copy sets one).
    FirstCopyGoesOn,
    /// Nothing: the failed launch ends the browser's session.
    Ended,
}

/// What a refused launch leaves of the browser's visit. A replay leaves it be when its cookie
/// names no session any more, or it sent none (a double click or a proxy retrying the POST: the
/// first copy replaced that session, and set a new cookie that clearing this one's would remove),
/// or when the browser's live session is the same user's at the same consumer (the Back button, a
/// resubmitted form): ending it would sign that user out for nothing. Any other failed launch
/// ends the browser's session.
async fn replays_own_visit(
    state: &AppState,
    params: &LaunchParams,
    error: &LtiError,
    old_session: Option<&str>,
) -> KeptVisit {
    let LtiError::ReplayedNonce = error else {
        return KeptVisit::Ended;
    };
    // A double click on the first launch of this browser: its first copy brings the cookie.
    let Some(old) = old_session else {
        return KeptVisit::FirstCopyGoesOn;
    };
    let user_id = params
        .all()
        .find(|(n, _)| *n == "user_id")
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty());
    match state.front.session(&state.db, old).await {
        Ok(None) => KeptVisit::FirstCopyGoesOn,
        // Without a user id two people cannot be told apart. One that has run out ends anyway.
        Ok(Some(session))
            if user_id.is_some_and(|id| session.launch.get("user_id") == Some(id))
                && params.consumer_key() == Some(session.launch.consumer_key.as_str())
                && session.expires_at > store::now() =>
        {
            KeptVisit::Live(old.to_string())
        }
        Ok(Some(_)) | Err(_) => KeptVisit::Ended,
    }
}

/// The enabled consumer of `key` (from the cache, when `use_cache`).
async fn enabled_consumer(
    state: &AppState,
    key: &str,
    use_cache: bool,
) -> Result<Consumer, LtiError> {
    match state.front.consumer(&state.db, key, use_cache).await? {
        None => Err(LtiError::UnknownConsumer),
        Some(c) if !c.enabled => Err(LtiError::DisabledConsumer),
        Some(c) => Ok(c),
    }
}

/// Checks the signature against every tolerated reading of the request; `from_database` is the
/// last try, whose failure logs the URL checked.
fn check_signature(
    req: &Request<'_>,
    state: &AppState,
    params: &LaunchParams,
    oauth: &OAuthFields,
    secret: &str,
    from_database: bool,
) -> Result<(), LtiError> {
    let uris = candidate_uris(req, state)?;
    let sets = candidate_param_sets(params);
    if signature_matches(
        req.method().as_str(),
        &uris,
        &sets,
        secret,
        &oauth.signature,
    ) {
        return Ok(());
    }
    if from_database {
        log::info!(
            "signed URL we checked: {} (consumer key {:?})",
            excerpt(uris.first().map_or("", String::as_str), 2048),
            excerpt(&oauth.consumer_key, 100)
        );
    }
    Err(LtiError::BadSignature)
}

/// Verifies the launch (fields, consumer, signature, freshness) and records it: its nonce
/// spent, and when its LTI fields are right, its session started in place of `old_session`.
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
    check_oauth_in_one_place(&[&params.query, &params.body, &params.header])?;
    let all = params.combined();
    let oauth = read_oauth_fields(&all)?;
    let consumer = enabled_consumer(state, &oauth.consumer_key, use_consumer_cache).await?;
    check_signature(
        req,
        state,
        params,
        &oauth,
        &consumer.secret,
        !use_consumer_cache,
    )?;
    let now = store::now();
    let window = state.settings.timestamp_window;
    check_timestamp(oauth.timestamp, now, window)?;

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
        signed_at: oauth.timestamp,
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
        Recorded::Forgotten => return Err(LtiError::NonceForgotten),
        Recorded::ConsumerChanged => return Err(LtiError::BadSignature),
    }
    fields?;
    log::info!(
        "launch accepted: consumer key {:?}, user {:?}",
        excerpt(&launch.consumer_key, 100),
        excerpt(launch.user_id(), 200)
    );
    Ok(Launched {
        launch,
        session_id,
        handoff_token,
    })
}

/// Logs a refused launch once, with its consumer key and the client's address (`remember` then
/// leaves it out). Request values are escaped so a crafted one cannot forge log lines.
pub(crate) fn log_refusal(
    req: &Request<'_>,
    state: &AppState,
    consumer_key: Option<&str>,
    error: &LtiError,
) {
    let event = match error {
        LtiError::Storage(_) => "launch failed",
        _ => "launch refused",
    };
    log_launch_line(req, state, consumer_key, error, event);
}

/// Logs, as [`log_refusal`] does, a valid launch that a role gate (`Staff`, `Learner`, a fork's
/// rule) turned away: not a failed launch, and not counted as one.
pub(crate) fn log_role_refusal(
    req: &Request<'_>,
    state: &AppState,
    consumer_key: &str,
    error: &LtiError,
) {
    let event = match error {
        LtiError::NotStaff => "staff-only page refused a launch",
        _ => "role-gated page refused a launch",
    };
    log_launch_line(req, state, Some(consumer_key), error, event);
}

fn log_launch_line(
    req: &Request<'_>,
    state: &AppState,
    consumer_key: Option<&str>,
    error: &LtiError,
    event: &str,
) {
    let what = error.to_string();
    let what = what.escape_debug();
    let key = match consumer_key {
        // A key too long to be one is refused, but still as long as the request made it.
        Some(k) => format!("consumer key \"{}\"", excerpt(k, 100).escape_debug()),
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
    let line = format!("{event} ({answer}): {what} ({key}, from {from})");
    match error {
        LtiError::Storage(_) => log::error!("{line}"),
        _ => log::warn!("{line}"),
    }
    req.local_cache(RefusalLogged::default)
        .0
        .store(true, Ordering::Relaxed);
}

/// Set on a request whose refusal `log_refusal` has logged.
#[derive(Default)]
pub(crate) struct RefusalLogged(pub AtomicBool);
