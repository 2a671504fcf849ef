//! The catcher: every status a route did not answer itself (Rocket's own refusals, an address
//! with no page or none for the method, a launch sent where no page takes it) gets the templated
//! error page, a 405 with its `Allow` header.

use rocket::http::{Method, Status};
use rocket::request::Request;
use rocket::response::Redirect;
use rocket::{catch, catchers, Catcher, Responder};

use crate::error::LtiError;
use crate::web::error::{remember, remembered, return_url_with_error, ErrorPage};
use crate::web::head::SentAsHead;
use crate::web::pages::LAUNCH_AT_HOME_ROUTE;

/// What the catcher answers: the error page, or a redirect back to the LMS.
#[derive(Responder)]
pub enum Refusal {
    /// Back to the LMS's return URL with `lti_errormsg` / `lti_errorlog`.
    Redirect(Box<Redirect>),
    /// Our own page.
    Page(ErrorPage),
}

fn refusal(status: Status, req: &Request<'_>) -> Refusal {
    match remembered(req) {
        Some(LtiError::InvalidLaunch {
            log,
            return_url: Some(url),
        }) => {
            let (_, message) = LtiError::InvalidLaunch {
                log: log.clone(),
                return_url: None,
            }
            .user_message();
            match return_url_with_error(&url, &message, &log) {
                Some(target) => Refusal::Redirect(Box::new(Redirect::to(target))),
                None => Refusal::Page(ErrorPage::new(status, "Invalid LTI launch", message)),
            }
        }
        Some(error) if error.status() == status => Refusal::Page(ErrorPage::from(&error)),
        _ => Refusal::Page(generic(status)),
    }
}

fn generic(status: Status) -> ErrorPage {
    let (title, message) = match status.code {
        404 => ("Not found", "There is nothing at this address."),
        413 => (
            "Request too large",
            "The request was larger than this tool accepts.",
        ),
        415 => (
            "Not a web form",
            "This request must be sent as a web form (application/x-www-form-urlencoded).",
        ),
        422 | 400 => ("Bad request", "The request could not be understood."),
        429 => (
            "Too many attempts",
            "Please wait a minute before trying again.",
        ),
        500 => (
            "Something went wrong",
            "The tool hit an unexpected problem. Please try again later.",
        ),
        503 => (
            "Temporarily unavailable",
            "The tool cannot serve this right now. Please try again in a few seconds.",
        ),
        _ => ("Request refused", "The tool could not serve this request."),
    };
    ErrorPage::new(status, title, message)
}

/// The methods the app's routes take at the request's path, as an `Allow` value: `None` when no
/// route has the path, or one has it for the request's own method (and forwarded or failed).
fn allowed_methods(req: &Request<'_>) -> Option<String> {
    let methods = methods_with_head(req);
    if methods.is_empty() || methods.contains(&req.method()) {
        return None;
    }
    Some(allow_value(methods))
}

/// The `Allow` header of a 405 a route refused with (a HEAD that carries a launch, or a fork's
/// `LtiError::page(405, …)`): the methods of the address's routes, as the catcher's 405 says
/// them (a plain HEAD is still served there, so it is listed).
pub(super) fn route_allow(req: &Request<'_>) -> String {
    allow_value(methods_with_head(req))
}

/// [`route_methods`], with HEAD where there is a GET route: Rocket answers HEAD with it.
fn methods_with_head(req: &Request<'_>) -> Vec<Method> {
    let mut methods = route_methods(req);
    if methods.contains(&Method::Get) {
        methods.push(Method::Head);
    }
    methods
}

/// Methods as an `Allow` header says them: each once, in order.
fn allow_value(mut methods: Vec<Method>) -> String {
    methods.sort_by_key(|m| m.as_str());
    methods.dedup();
    let allow: Vec<&str> = methods.iter().map(|m| m.as_str()).collect();
    allow.join(", ")
}

/// The methods of the routes at the request's path (none: an address with no page). The home
/// page's launch refusal is left out: it takes only launches, which a 405 is not about.
pub(crate) fn route_methods(req: &Request<'_>) -> Vec<Method> {
    let path: Vec<&str> = req.uri().path().segments().collect();
    req.rocket()
        .routes()
        .filter(|route| path_matches(route.uri.path(), &path))
        .filter(|route| {
            route.name.as_deref() != Some(LAUNCH_AT_HOME_ROUTE) || route.uri.path() != "/"
        })
        .map(|route| route.method)
        .collect()
}

/// Whether a route's path (`/notes/<id>`, `/files/<path..>`) matches the request's
/// (decoded, non-empty) segments.
fn path_matches(route: &str, request: &[&str]) -> bool {
    let mut want = route.split('/').filter(|s| !s.is_empty());
    let mut have = request.iter();
    loop {
        match (want.next(), have.next()) {
            (None, None) => return true,
            (Some(w), _) if w.starts_with('<') && w.ends_with("..>") => return true,
            (Some(w), Some(h)) if w.starts_with('<') || w == *h => continue,
            _ => return false,
        }
    }
}

#[catch(default)]
async fn default_catcher(status: Status, req: &Request<'_>) -> Refusal {
    crate::web::session_cookie::clear_cookie_on_refusal(req);
    if crate::web::stray_launch::broke_off(req) {
        let broken = LtiError::BodyUnreadable("the body broke off".into());
        return Refusal::Page(ErrorPage::from(&broken));
    }
    if status == Status::NotFound && remembered(req).is_none() {
        crate::web::session_cookie::note_visit_of_unguarded(req).await;
    }
    // A launch sent to an address with no page: the same 404, in words that say where launches
    // go (and, having ended the session, without the way back to it).
    if status == Status::NotFound && remembered(req).is_none() {
        if let Some(error) = crate::web::stray_launch::refusal(req).await {
            remember(req, &error);
            crate::web::session_cookie::clear_cookie_on_refusal(req);
            return Refusal::Page(ErrorPage::from(&error));
        }
    }
    let unexplained = remembered(req).is_none();
    // Rocket answers a multipart form it cannot parse (cut short, no closing boundary) with 413,
    // as if it were too large: one smaller than any limit that could apply is malformed instead.
    let status = match status == Status::PayloadTooLarge && unexplained && small_multipart(req) {
        true => Status::BadRequest,
        false => status,
    };
    if status == Status::NotFound {
        if let Some(allow) = allowed_methods(req) {
            if unexplained {
                log_unexplained(Status::MethodNotAllowed, req);
            }
            let method = SentAsHead::method_of(req);
            // RFC 9110: the address exists, only not for this method.
            let mut page = ErrorPage::new(
                Status::MethodNotAllowed,
                "Method not allowed",
                format!("This address does not take {method} requests."),
            );
            page.allow = allow;
            return Refusal::Page(page);
        }
    }
    if unexplained {
        log_unexplained(status, req);
    }
    refusal(status, req)
}

/// Whether the request is a multipart form whose `Content-Length` is under every limit Rocket
/// applies to one or its parts (a field's `string` limit is the smallest, 8 KiB by default), or
/// whose whole body (chunked, say) the start seen by `stray_launch` held.
fn small_multipart(req: &Request<'_>) -> bool {
    let multipart = req.content_type().is_some_and(|ct| ct.is_form_data());
    let length = req
        .headers()
        .get_one("Content-Length")
        .and_then(|n| n.trim().parse::<u64>().ok());
    let limits = req.limits();
    let smallest = ["string", "bytes", "file", "data-form"]
        .iter()
        .filter_map(|name| limits.get(*name))
        .map(|limit| limit.as_u64())
        .min()
        .unwrap_or(0);
    let seen_whole = crate::web::stray_launch::seen_whole(req);
    multipart && (seen_whole || length.is_some_and(|length| length < smallest))
}

/// Logs a refusal that no code of ours explained (`remember`): Rocket's own, such as a form field
/// missing (422), a body that is not a form (415), or an address with no route for the method
/// (404 and 405, only at the info level: scanners send thousands).
fn log_unexplained(status: Status, req: &Request<'_>) {
    let path = crate::error::excerpt(req.uri().path().as_str(), 200);
    let method = SentAsHead::method_of(req);
    let path = path.escape_debug();
    match status.code {
        404 | 405 => log::info!("{method} {path}: {status}"),
        _ => log::warn!("{method} {path}: {status}"),
    }
}

/// The catchers: every status renders the templated error page.
pub fn catchers() -> Vec<Catcher> {
    catchers![default_catcher]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_paths_match_as_rockets_router_does() {
        let yes = [
            ("/any", &["any"][..]),
            ("/", &[][..]),
            ("/notes/<id>", &["notes", "7"][..]),
            ("/files/<path..>", &["files", "css", "style.css"][..]),
            ("/files/<path..>", &["files"][..]),
        ];
        for (route, request) in yes {
            assert!(path_matches(route, request), "{route} {request:?}");
        }
        let no = [
            ("/any", &["anything"][..]),
            ("/any", &["any", "more"][..]),
            ("/notes/<id>", &["notes"][..]),
            ("/grade/read", &["grade"][..]),
            ("/", &["any"][..]),
        ];
        for (route, request) in no {
            assert!(!path_matches(route, request), "{route} {request:?}");
        }
    }
}
