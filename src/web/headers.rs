//! The headers every answer gets, and the fairings that keep Rocket's log lines as configured:
//! colours, and request addresses that cannot break or turn a line around.

use rocket::fairing::{AdHoc, Fairing};
use rocket::http::Status;
use rocket::Request;

/// Rocket logs a request's address as it arrived ("No matching routes for GET /…" even at
/// `critical`), and hyper takes raw UTF-8 in it: a line separator (U+2028, NEL) would split the
/// line for a log reader, a bidi control turn it around. Such an address is taken as its
/// percent-encoded form (all its non-ASCII: a parsed address holds none), the same address to
/// the router (it decodes segments), before Rocket logs it. Addresses without such characters,
/// accents and all, stay as sent. Attached first, so later fairings see the same address as the
/// routes.
pub(crate) fn request_address_logged_safely() -> impl Fairing {
    AdHoc::on_request("Request address logged safely", |req, _| {
        Box::pin(async move {
            // Checked without a copy: almost every address is ASCII.
            let hidden = |s: &str| !s.is_ascii() && s.chars().any(crate::consumer_input::is_hidden);
            let uri = req.uri();
            if !hidden(uri.path().as_str()) && !uri.query().is_some_and(|q| hidden(q.as_str())) {
                return;
            }
            let uri = uri.to_string();
            let mut encoded = String::with_capacity(uri.len() + 16);
            for c in uri.chars() {
                match c.is_ascii() {
                    false => {
                        let mut buf = [0u8; 4];
                        for b in c.encode_utf8(&mut buf).bytes() {
                            encoded.push_str(&format!("%{b:02X}"));
                        }
                    }
                    true => encoded.push(c),
                }
            }
            if let Ok(origin) = rocket::http::uri::Origin::parse_owned(encoded) {
                req.set_uri(origin);
            }
        })
    })
}

/// Rocket parses every request's Content-Type before the fairings run (and its Accept when a
/// route or catcher asks), and formatting a parse error (pear's `Display`) turns colour codes
/// back on for the whole process: one request with a malformed header would put escape codes in
/// every later log line, whatever `cli_colors` says. Accept is parsed here (Rocket keeps the
/// result), then Rocket's own rule is applied again.
pub(crate) fn log_colours_stay_as_configured() -> impl Fairing {
    AdHoc::on_request("Log colours stay as configured", |req, _| {
        Box::pin(async move {
            let unparseable = (req.content_type().is_none()
                && req.headers().contains("Content-Type"))
                || (req.accept().is_none() && req.headers().contains("Accept"));
            if unparseable {
                let colors =
                    req.rocket().config().cli_colors && yansi::Condition::stdouterr_are_tty();
                yansi::whenever(yansi::Condition::cached(colors));
            }
        })
    })
}

/// The headers of every answer: no sniffing, no caching of pages, no referrer to other sites, no
/// plug-ins or base URL (framing stays open for the LMS's iframe; `web::admin::never_framed`
/// closes it for the admin area).
pub(crate) fn response_headers() -> impl Fairing {
    AdHoc::on_response(
        "No sniffing, no caching of pages, no referrer elsewhere",
        |req, res| {
            Box::pin(async move {
                res.set_raw_header("X-Content-Type-Options", "nosniff");
                // Pages carry a user's data: shared caches and the back button must not keep
                // them. Only files served from /static may be cached, not the error pages there.
                let static_file = req.uri().path().starts_with("/static/")
                    && res.status().class() == rocket::http::StatusClass::Success;
                if !static_file && res.headers().get_one("Cache-Control").is_none() {
                    res.set_raw_header("Cache-Control", "no-store");
                }
                // Our own pages' addresses reach only ourselves (older browsers' `Referer` is
                // how `web::origin` tells our forms from other sites'), never the LMS.
                if res.headers().get_one("Referrer-Policy").is_none() {
                    res.set_raw_header("Referrer-Policy", "same-origin");
                }
                if res.headers().get_one("Content-Security-Policy").is_none() {
                    res.set_raw_header("Content-Security-Policy", super::BASE_CSP);
                }
                if res.status() == Status::Unauthorized
                    && res.headers().get_one("WWW-Authenticate").is_none()
                {
                    res.set_raw_header("WWW-Authenticate", challenge(req));
                }
            })
        },
    )
}

/// The `WWW-Authenticate` challenge of a 401, which RFC 9110 asks for: the tool's pages take an
/// LTI launch (OAuth 1.0, whose challenge this is), the admin area a login form that sets a
/// cookie. No browser shows a dialog for either scheme (only for Basic and the like).
pub(crate) fn challenge(req: &Request<'_>) -> &'static str {
    match crate::web::admin::is_admin_request(req) {
        true => "Cookie realm=\"admin\"",
        false => "OAuth realm=\"lti\"",
    }
}
