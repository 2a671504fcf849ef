//! Launches sent where no page takes them: to an address with no page at all (a launch URL
//! mistyped in the LMS: `/Any`, `/launch`, `/lti`) or with a method the address does not take (a
//! POST to `/grades`, which only opens; a PUT to a launch page). They get the answer any request
//! there gets (404; 401 "Not a launch address" where the address exists; 401 "Not a launch" for
//! launch fields in the query or an `Authorization` header of a launch page reached by another
//! method than POST, whose form body is never read: that gets 405), in words that say a launch arrived at the
//! wrong address and where launches go; as any failed launch, it ends the browser's session, and
//! the admin page's refused launches show it with the address it came to. Nothing is verified or
//! spent.
//!
//! The same fairing keeps the start of every other POST's body, which the catcher and
//! `LtiSession`'s guard read: the guard refuses a launch sent to a page that only continues a
//! visit (`/grade`'s forms; `LtiError::LaunchAtSessionPage`), and a body that breaks off within
//! its start is refused as broken.

use std::collections::HashSet;
use std::sync::OnceLock;

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::Method;
use rocket::{Data, Request};

use crate::error::{excerpt, LtiError};
use crate::web::catcher::route_methods;
use crate::web::error::remember;
use crate::web::head::SentAsHead;
use crate::web::launch_body::{
    body_names_a_field, carries_launch_fields, fail_unread_launch, names_a_field,
};
use crate::web::origin::is_navigation;
use crate::web::AppState;

/// How much of a body the catcher and `LtiSession`'s request guard get to see: neither can read
/// the body itself, so the fairing keeps its start (Rocket's most for a peek). Launch fields show
/// in the first few fields.
const PEEK: usize = 512;

/// The start of the body of a POST to an address that is not a launch page.
struct PeekedBody(Option<Vec<u8>>);

/// The start of the request's body, kept by the [`fairing`]: for a POST to any address but a
/// launch page (whose guard reads the whole body), else `None`. Only whole fields: those that
/// end within its first [`PEEK`] bytes.
pub(crate) fn peeked_body<'r>(req: &'r Request<'_>) -> Option<&'r [u8]> {
    req.local_cache(|| PeekedBody(None)).0.as_deref()
}

/// Set when the fairing saw the whole body, unbroken, within its first [`PEEK`] bytes.
struct SeenWhole(bool);

/// Whether the [`fairing`] saw the request's whole body, unbroken, within its first [`PEEK`]
/// bytes: a body no size limit can have refused.
pub(crate) fn seen_whole(req: &Request<'_>) -> bool {
    req.local_cache(|| SeenWhole(false)).0
}

/// The fairing that keeps the start of the body of a POST to an address that is not a launch
/// page.
pub fn fairing() -> KeepPeekedBodies {
    KeepPeekedBodies(OnceLock::new())
}

/// See [`fairing`]; holds the paths of the launch pages that read their body, made once (the
/// routes are fixed once the server runs).
pub struct KeepPeekedBodies(OnceLock<HashSet<String>>);

#[rocket::async_trait]
impl Fairing for KeepPeekedBodies {
    fn info(&self) -> Info {
        Info {
            name: "Stray launches",
            kind: Kind::Request,
        }
    }

    async fn on_request(&self, req: &mut Request<'_>, data: &mut Data<'_>) {
        if req.method() != Method::Post {
            return;
        }
        let launch_pages = self.0.get_or_init(|| {
            let mut paths = crate::web::pages::launch_paths();
            paths.push("/");
            // A fork's launch page without a POST route (the start warns) reads no body.
            let unserved = crate::web::pages::without_post_route(req.rocket(), &paths);
            paths
                .into_iter()
                .filter(|p| !unserved.contains(p))
                .map(|p| normalized(p.split('/')))
                .collect()
        });
        let path = normalized(req.uri().path().segments());
        if !launch_pages.contains(&path) {
            let start = data.peek(PEEK).await.to_vec();
            let complete = data.peek_complete();
            let length = req
                .headers()
                .get_one("Content-Length")
                .and_then(|n| n.trim().parse::<usize>().ok());
            // Fewer bytes than the body has, within the first PEEK.
            let short = length.is_some_and(|length| start.len() < length.min(PEEK));
            if (start.len() < PEEK && !complete) || short {
                // Rocket's peek drops a read error (a body broken off, a bad chunk), and the body
                // then reads as ended: a form route would take its start for the whole form. (When
                // Rocket's own look at a form's first bytes, for `_method`, took the error, the
                // body reads as complete, but shorter than it said.) No route takes TRACE (the README
                // asks forks to add none), so the catcher answers this one ([`broke_off`]).
                remember(req, &LtiError::BodyUnreadable("the body broke off".into()));
                req.local_cache(|| BrokeOff(true));
                req.set_method(Method::Trace);
            }
            if complete && start.len() < PEEK && !broke_off(req) {
                req.local_cache(|| SeenWhole(true));
            }
            // Cut short: PEEK bytes of a longer body (a local test client's says it is complete).
            let cut = start.len() >= PEEK && length != Some(start.len());
            let form = req.content_type().is_none_or(|ct| !ct.is_form_data());
            let start = match form && cut {
                true => whole_fields(start),
                false => start,
            };
            req.local_cache(|| PeekedBody(Some(start)));
        }
    }
}

/// The start of a form body the peek cut short, without the field it cut through (it would read
/// as another value: a consumer key cut short recorded as another key). A multipart body keeps
/// its start whole: its parts are told by their headers, not by `&`.
fn whole_fields(mut start: Vec<u8>) -> Vec<u8> {
    let end = start.iter().rposition(|&b| b == b'&').unwrap_or(0);
    start.truncate(end);
    start
}

/// Set when a POST's body broke off within its first [`PEEK`] bytes.
struct BrokeOff(bool);

/// Whether the request's body broke off before the fairing could keep its start: it is refused
/// (400) before any route sees what arrived.
pub(super) fn broke_off(req: &Request<'_>) -> bool {
    req.local_cache(|| BrokeOff(false)).0
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

/// Whether the request's address is one of the launch pages (the tool's or a fork's).
fn is_launch_page(req: &Request<'_>) -> bool {
    let path = normalized(req.uri().path().segments());
    crate::web::pages::launch_pages()
        .iter()
        .any(|(page, _)| normalized(page.split('/')) == path)
}

/// Whether the request names the field every launch has, percent-encoded or not (a bare
/// `oauth_*` field, as an OAuth 1 callback has, is no launch an admin needs to see).
fn names_a_launch(req: &Request<'_>, body: Option<&[u8]>) -> bool {
    fn every_launch_has(name: &[u8]) -> bool {
        name == b"oauth_consumer_key" || name == b"lti_message_type"
    }
    let query = req.uri().query().map(|q| q.as_str().as_bytes());
    let header = req.headers().get_one("Authorization");
    header.is_some_and(|h| h.contains("oauth_consumer_key"))
        || query.is_some_and(|q| names_a_field(q, every_launch_has))
        || body.is_some_and(|b| body_names_a_field(req, b, every_launch_has))
}

/// For a request no route took (Rocket's 404): when it is a launch sent to an address with no
/// page, or with a method the address does not take, the refusal that says so, else `None`. A
/// browser's launch (not a HEAD, nor another page's image) is a failed launch: it is logged as
/// one, ends the browser's session and is recorded for the admin page.
pub(super) async fn refusal(req: &Request<'_>) -> Option<LtiError> {
    let body = peeked_body(req);
    if !carries_launch_fields(req, body) || !names_a_launch(req, body) {
        return None;
    }
    // The routes are looked up only now: a launch to no page is rare, 404s are not.
    let methods = route_methods(req);
    let path = excerpt(req.uri().path().as_str(), 200);
    let error = if methods.is_empty() {
        LtiError::LaunchAtUnknownAddress(path)
    } else if !methods.contains(&req.method()) && !SentAsHead::of(req) {
        // (A HEAD gets the 405 with the methods the address takes, as at a launch page.)
        match methods.contains(&Method::Post) && is_launch_page(req) {
            true => LtiError::LaunchNotPosted {
                method: req.method().as_str().to_string(),
                path,
            },
            false => LtiError::LaunchAtPageWithoutLaunch(path),
        }
    } else {
        // A route for the method forwarded (its own refusal), or a HEAD.
        return None;
    };
    let state = req.rocket().state::<AppState>()?;
    if !SentAsHead::of(req) && is_navigation(req) {
        fail_unread_launch(req, state, body, &error).await;
    }
    Some(error)
}
