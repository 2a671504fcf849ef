//! Launches sent to an address with no page for them: a launch URL mistyped in the LMS (`/Any`,
//! `/launch`, `/lti`). They get the 404 (or 405) any request there gets, but the page says that a
//! launch arrived at the wrong address and where launches go, and the admin page's refused
//! launches show it with the address it came to. Nothing is verified or spent.

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::Method;
use rocket::{Data, Request};

use crate::error::LtiError;
use crate::web::diagnosis::record_unreadable;
use crate::web::error::path_matches;
use crate::web::head::SentAsHead;
use crate::web::launch_body::carries_launch_fields;
use crate::web::origin::is_navigation;
use crate::web::AppState;

/// How much of a body the catcher gets to see: it cannot read the body itself, so the fairing
/// keeps its start (Rocket's most for a peek). Launch fields show in the first few fields.
const PEEK: usize = 512;

/// The start of the body of a POST that no route takes.
struct StrayBody(Option<Vec<u8>>);

/// The fairing that keeps the start of the body of a POST to an address no POST route has.
pub fn fairing() -> KeepStrayBodies {
    KeepStrayBodies
}

/// See [`fairing`].
pub struct KeepStrayBodies;

#[rocket::async_trait]
impl Fairing for KeepStrayBodies {
    fn info(&self) -> Info {
        Info {
            name: "Stray launches",
            kind: Kind::Request,
        }
    }

    async fn on_request(&self, req: &mut Request<'_>, data: &mut Data<'_>) {
        if req.method() == Method::Post && !has_route(req, Method::Post) {
            let start = data.peek(PEEK).await.to_vec();
            req.local_cache(|| StrayBody(Some(start)));
        }
    }
}

/// Whether any route takes `method` at the request's path.
fn has_route(req: &Request<'_>, method: Method) -> bool {
    let path: Vec<&str> = req.uri().path().segments().collect();
    req.rocket()
        .routes()
        .any(|route| route.method == method && path_matches(route.uri.path(), &path))
}

/// For a request no route takes: when it carries launch fields, the refusal that says so (logged,
/// and recorded for the admin page when a browser navigated there), else `None`.
pub(super) async fn refusal(req: &Request<'_>) -> Option<LtiError> {
    let body = req.local_cache(|| StrayBody(None)).0.as_deref();
    let unrouted = match req.method() {
        Method::Post => body.is_some(),
        method => !has_route(req, method),
    };
    if !unrouted || !carries_launch_fields(req, body) {
        return None;
    }
    let error = LtiError::LaunchAtUnknownAddress;
    // A link checker's HEAD or another page's image is no launch an admin needs to hear about.
    if let Some(state) = req.rocket().state::<AppState>() {
        if !SentAsHead::of(req) && is_navigation(req) {
            record_unreadable(req, state, body, &error).await;
        }
    }
    Some(error)
}
