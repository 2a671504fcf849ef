//! What method a request was really sent with: HEAD is answered by GET routes, and Rocket takes
//! a form field `_method=…` for the method. A launch route must tell a HEAD (a link checker) from
//! a launch, and no form of ours overrides its method.

use rocket::http::Method;
use rocket::request::{self, FromRequest, Request};

/// Whether the request was sent as HEAD: it is routed as a GET, so `method_as_sent` records it
/// before routing. HEAD is a safe method: link checkers and prefetchers send it, and it must not
/// spend a nonce or end a session.
#[derive(Debug, Clone, Copy)]
pub struct SentAsHead(pub bool);

/// Gives every request back the method it was sent with, records HEAD requests for
/// [`SentAsHead`] (only those: nothing is stored for other requests) and routes them as the GET
/// they stand for; answers them without a body.
///
/// Rocket 0.5 takes a POST form whose first field is `_method=…` for that method. No form of
/// ours uses it, and it turned a POST into a HEAD (answered without the body the connection still
/// owed, so the client got nothing) or a GET (a launch posted that way read as a visit).
pub fn method_as_sent() -> MethodAsSent {
    MethodAsSent
}

/// The fairing of [`method_as_sent`] (a type of its own: it peeks at the body).
pub struct MethodAsSent;

/// A request that reads as a HEAD whose form body starts `_method=HEAD`: a POST Rocket took for
/// a HEAD, or a HEAD sent with such a body; nothing tells which, so its answer keeps its body.
struct HeadOrPost(bool);

#[rocket::async_trait]
impl rocket::fairing::Fairing for MethodAsSent {
    fn info(&self) -> rocket::fairing::Info {
        rocket::fairing::Info {
            name: "Method as sent",
            kind: rocket::fairing::Kind::Request | rocket::fairing::Kind::Response,
        }
    }

    async fn on_request(&self, req: &mut Request<'_>, data: &mut rocket::Data<'_>) {
        let head = req.method() == Method::Head;
        let overrode = req.method() != Method::Post && method_field_overrode(req, data).await;
        if head {
            req.local_cache(|| SentAsHead(true));
        }
        if head && overrode {
            // Either way it must change nothing: no route takes TRACE, so every address answers
            // 405 (the catcher's, with the address's `Allow`), and it is told as a HEAD.
            req.local_cache(|| HeadOrPost(true));
            req.set_method(Method::Trace);
        } else if overrode {
            req.set_method(Method::Post);
        } else if head {
            // Routed as the GET it stands for at once. Rocket would first look for HEAD routes,
            // find none, and log "No matching routes for HEAD <URL>" at every log level: a link
            // checker's HEAD of a signed GET launch, with its whole, still usable URL.
            req.set_method(Method::Get);
        }
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut rocket::Response<'r>) {
        // Hyper sends no body for a HEAD, and the `Content-Length` given here: Rocket, which took
        // it for a GET, would push the body into a connection that takes none, and log "Remote
        // left" for it at every log level.
        // A 304 or 204 has no length to keep (Rocket strips their bodies itself), nor does a
        // streamed body: those are left as they are.
        let bodiless = matches!(res.status().code, 204 | 304);
        if SentAsHead::of(req) && !req.local_cache(|| HeadOrPost(false)).0 && !bodiless {
            if let Some(size) = res.body_mut().size().await {
                res.set_sized_body(size, std::io::Cursor::new(&[][..]));
            }
        }
    }
}

/// True when Rocket took this request's method from a leading `_method` form field (the same
/// test as Rocket's own: `rocket::Rocket::preprocess_request`).
async fn method_field_overrode(req: &Request<'_>, data: &mut rocket::Data<'_>) -> bool {
    if !req.content_type().is_some_and(|ct| ct.is_form()) {
        return false;
    }
    let peeked = data.peek("_method=delete".len()).await;
    std::str::from_utf8(peeked)
        .ok()
        .and_then(|form| rocket::form::Form::values(form).next())
        .filter(|field| field.name == "_method")
        .and_then(|field| field.value.parse::<Method>().ok())
        == Some(req.method())
}

impl SentAsHead {
    /// True when `req` was sent as HEAD.
    pub fn of(req: &Request<'_>) -> bool {
        req.local_cache(|| SentAsHead(false)).0
    }

    /// The request's method as the client sent it, for log lines and pages.
    pub fn method_of(req: &Request<'_>) -> &'static str {
        match SentAsHead::of(req) {
            true => "HEAD",
            false => req.method().as_str(),
        }
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for SentAsHead {
    type Error = std::convert::Infallible;
    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        request::Outcome::Success(SentAsHead(SentAsHead::of(req)))
    }
}

/// Whether the browser fetched the page ahead of a visit that may never come (a prefetch or a
/// prerender: Chrome prerenders an address as it is typed). Like a HEAD, such a request must not
/// act: the user has not asked for it yet.
#[derive(Debug, Clone, Copy)]
pub struct Prefetched(pub bool);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Prefetched {
    type Error = std::convert::Infallible;
    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        let says = |name: &str, word: &str| {
            req.headers()
                .get(name)
                .any(|v| v.to_ascii_lowercase().contains(word))
        };
        // Chrome (`Sec-Purpose: prefetch;prerender`), older Chrome and Safari (`Purpose`),
        // Firefox (`X-Moz`), Safari's previews (`X-Purpose`).
        let prefetched = says("Sec-Purpose", "prefetch")
            || says("Purpose", "prefetch")
            || says("X-Moz", "prefetch")
            || says("X-Purpose", "preview");
        request::Outcome::Success(Prefetched(prefetched))
    }
}
