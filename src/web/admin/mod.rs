//! The admin area under `/admin`: password login (separate from LTI), the consumer list with
//! launch figures, create / rotate / enable / disable / delete (every form with a CSRF token), and
//! the refused-launch log with its hints.

pub mod consumers;
pub mod login_queue;
pub mod refusals;
pub mod session;

use rocket::http::{Header, Status};
use rocket::request::Request;
use rocket::serde::Serialize;
use rocket::{catchers, Catcher, Responder, Route};
use rocket_dyn_templates::Template;

pub use login_queue::LoginQueue;
/// The guard of an admin-only page, a fork's included (see the README's fork section).
pub use session::Admin;

/// An admin page with its status, never cached (it may show a secret, or a CSRF token).
#[derive(Responder)]
pub struct Page {
    page: (Status, Template),
    cache: Header<'static>,
}

fn render(status: Status, name: &'static str, ctx: impl Serialize) -> Page {
    Page {
        page: (status, Template::render(name, ctx)),
        cache: Header::new("Cache-Control", "no-store"),
    }
}

/// Whether a request is for the admin area (which has its own way back on its error pages). By
/// segment, as the router matches: `//admin` and `/%61dmin` reach it too.
pub fn is_admin_request(req: &Request<'_>) -> bool {
    req.uri().path().segments().next() == Some("admin")
}

/// The routes of the admin area (mounted at `/admin`).
pub fn routes() -> Vec<Route> {
    let mut routes = session::routes();
    routes.extend(consumers::routes());
    routes.extend(refusals::routes());
    routes
}

/// The catchers of the admin area (registered at `/admin`).
pub fn catchers() -> Vec<Catcher> {
    catchers![session::unauthorized]
}

/// Admin pages are never framed: the LTI pages live in LMS iframes, the admin area has no reason
/// to (clickjacking). Their forms post only to the tool itself (`form-action`), so injected
/// markup could not send a form, its token included, elsewhere. Attached after the fairing that
/// sets every page's CSP, which it replaces.
pub fn never_framed() -> impl rocket::fairing::Fairing {
    rocket::fairing::AdHoc::on_response("Admin pages are never framed", |req, res| {
        Box::pin(async move {
            if is_admin_request(req) {
                res.set_raw_header("X-Frame-Options", "DENY");
                res.set_raw_header(
                    "Content-Security-Policy",
                    format!(
                        "frame-ancestors 'none'; form-action 'self'; {}",
                        crate::web::BASE_CSP
                    ),
                );
            }
        })
    })
}
