//! Launches sent to an address with no page at all: a launch URL mistyped in the LMS (`/Any`,
//! `/launch`, `/lti`). They get the 404 any request there gets, but the page says that a launch
//! arrived at the wrong address and where launches go; as any failed launch, it ends the browser's
//! session, and the admin page's refused launches show it with the address it came to. Nothing is
//! verified or spent.

use std::collections::HashSet;
use std::sync::OnceLock;

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::Method;
use rocket::{Data, Request};

use crate::error::{excerpt, LtiError};
use crate::web::diagnosis::{consumer_key_of, record_unreadable, unreadable_fields};
use crate::web::error::path_matches;
use crate::web::head::SentAsHead;
use crate::web::launch::log_refusal;
use crate::web::launch_body::carries_launch_fields;
use crate::web::origin::is_navigation;
use crate::web::session_cookie::{browser_session_id, end_session_after_failed_launch};
use crate::web::AppState;

/// How much of a body the catcher gets to see: it cannot read the body itself, so the fairing
/// keeps its start (Rocket's most for a peek). Launch fields show in the first few fields.
const PEEK: usize = 512;

/// The start of the body of a POST to an address with no route.
struct StrayBody(Option<Vec<u8>>);

/// The fairing that keeps the start of the body of a POST to an address with no route.
pub fn fairing() -> KeepStrayBodies {
    KeepStrayBodies(OnceLock::new())
}

/// See [`fairing`]; holds the route paths, read once (the routes are fixed once the server runs).
pub struct KeepStrayBodies(OnceLock<RoutePaths>);

#[rocket::async_trait]
impl Fairing for KeepStrayBodies {
    fn info(&self) -> Info {
        Info {
            name: "Stray launches",
            kind: Kind::Request,
        }
    }

    async fn on_request(&self, req: &mut Request<'_>, data: &mut Data<'_>) {
        let paths = self.0.get_or_init(|| RoutePaths::of(req.rocket()));
        if req.method() == Method::Post && !paths.has(req) {
            let start = data.peek(PEEK).await.to_vec();
            req.local_cache(|| StrayBody(Some(start)));
        }
    }
}

/// The paths the app's routes have: fixed ones to look up, and those with parameters to match.
struct RoutePaths {
    fixed: HashSet<String>,
    with_parameters: Vec<String>,
}

impl RoutePaths {
    fn of<P: rocket::Phase>(rocket: &rocket::Rocket<P>) -> Self {
        let (mut fixed, mut with_parameters) = (HashSet::new(), Vec::new());
        for route in rocket.routes() {
            let path = route.uri.path();
            match path.contains('<') {
                true => with_parameters.push(path.to_string()),
                false => {
                    fixed.insert(normalized(path.split('/')));
                }
            }
        }
        RoutePaths {
            fixed,
            with_parameters,
        }
    }

    /// Whether any route, of any method, has the request's path (then a launch there is sent
    /// with the wrong method, or refused by that route: no stray).
    fn has(&self, req: &Request<'_>) -> bool {
        let segments: Vec<&str> = req.uri().path().segments().collect();
        self.fixed.contains(&normalized(segments.iter().copied()))
            || self
                .with_parameters
                .iter()
                .any(|route| path_matches(route, &segments))
    }
}

/// A path as the router compares it: its non-empty segments.
fn normalized<'a>(segments: impl Iterator<Item = &'a str>) -> String {
    let mut path = String::new();
    for segment in segments.filter(|s| !s.is_empty()) {
        path.push('/');
        path.push_str(segment);
    }
    path
}

/// Whether the request names the field every launch has (a bare `oauth_*` field, as an OAuth 1
/// callback has, is no launch an admin needs to see).
fn names_a_launch(req: &Request<'_>, body: Option<&[u8]>) -> bool {
    let query = req.uri().query().map(|q| q.as_str().as_bytes());
    let header = req.headers().get_one("Authorization").map(str::as_bytes);
    let has = |raw: &[u8], what: &[u8]| raw.windows(what.len()).any(|w| w == what);
    [query, body, header]
        .into_iter()
        .flatten()
        .any(|raw| has(raw, b"oauth_consumer_key") || has(raw, b"lti_message_type"))
}

/// For a request to an address with no route: when it is a launch, the refusal that says so,
/// else `None`. A browser's launch (not a HEAD, nor another page's image) is a failed launch: it
/// is logged as one, ends the browser's session and is recorded for the admin page.
pub(super) async fn refusal(req: &Request<'_>) -> Option<LtiError> {
    let body = req.local_cache(|| StrayBody(None)).0.as_deref();
    if !carries_launch_fields(req, body) || !names_a_launch(req, body) {
        return None;
    }
    // A GET's path is looked up only now: a launch to no page is rare, 404s are not.
    let unrouted = match req.method() {
        Method::Post => body.is_some(),
        _ => !RoutePaths::of(req.rocket()).has(req),
    };
    if !unrouted {
        return None;
    }
    let path = excerpt(req.uri().path().as_str(), 200);
    let error = LtiError::LaunchAtUnknownAddress(path);
    let state = req.rocket().state::<AppState>()?;
    if !SentAsHead::of(req) && is_navigation(req) {
        let fields = unreadable_fields(req, body, &error);
        log_refusal(req, state, consumer_key_of(&fields), &error);
        let old = browser_session_id(req, state).await;
        end_session_after_failed_launch(req, state, old.as_deref()).await;
        record_unreadable(req, state, fields, &error).await;
    }
    Some(error)
}
