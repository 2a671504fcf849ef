//! Where every refusal becomes an HTTP status and the templated error page (or, for a verified
//! launch with bad LTI fields, a redirect back to the LMS). Restyle `templates/error.html.tera`.
//! (The admin area's 401 is its login page: `admin::session::unauthorized`.) The catcher that
//! answers what no route did (Rocket's own refusals, addresses without a page) is `web::catcher`.

use std::sync::Mutex;

use rocket::http::{Method, Status};
use rocket::request::Request;
use rocket::response::{self, Responder};
use rocket::serde::Serialize;
use rocket_dyn_templates::Template;

use crate::error::LtiError;
use crate::lti::oauth::encode;
use crate::outcomes::OutcomeError;
use crate::web::catcher::route_allow;

impl LtiError {
    /// The HTTP status for this error.
    pub fn status(&self) -> Status {
        use LtiError::*;
        match self {
            BodyTooLarge(_) => Status::PayloadTooLarge,
            UnsupportedContentType(_) | EncodedBody(_) => Status::UnsupportedMediaType,
            MalformedParams(_)
            | BodyUnreadable(_)
            | MissingHost
            | BadForwardedHost
            | MissingOAuthParam(_)
            | OAuthParamTooLong(_)
            | DuplicateOAuthParam(_)
            | OAuthFieldsSplit
            | MalformedTimestamp
            | UnsupportedSignatureMethod(_)
            | UnsupportedOAuthVersion(_)
            | InvalidLaunch { .. } => Status::BadRequest,
            NoLaunch
            | UnknownConsumer
            | DisabledConsumer
            | BadSignature
            | StaleTimestamp(_)
            | FutureTimestamp(_)
            | ReplayedNonce
            | NonceForgotten
            | NoSession
            | SessionExpired
            | SessionEnded
            | LaunchAtSessionPage
            | LaunchAtHomePage
            | LaunchAtPageWithoutLaunch(_)
            | LaunchNotPosted { .. }
            | HandoffInvalid
            | AdminLoginRequired => Status::Unauthorized,
            NotStaff | BadCsrfToken | CrossSiteForm | LaunchNotNavigation => Status::Forbidden,
            NoSuchConsumer | NotFound | LaunchAtUnknownAddress(_) => Status::NotFound,
            PublishedDemoConsumer | SecretAlreadyReplaced => Status::Conflict,
            ConsumerNotNamed => Status::UnprocessableEntity,
            HeadLaunch => Status::MethodNotAllowed,
            TooManyLogins | GradeCallsQueued => Status::TooManyRequests,
            LoginsBusy => Status::ServiceUnavailable,
            Outcome(e) => outcome_status(e),
            Storage(_) => Status::ServiceUnavailable,
            // Built directly rather than by `LtiError::page`, the status may be no error at all.
            Page { status, .. } => match *status {
                400..=599 => Status::new(*status),
                _ => Status::InternalServerError,
            },
        }
    }

    /// A short title and a plain explanation for the person in front of the browser. Never
    /// contains a secret, a signature or the base string.
    pub fn user_message(&self) -> (&'static str, String) {
        use LtiError::*;
        const ASK: &str = "Ask whoever manages this tool in your LMS to check its settings.";
        const AGAIN: &str = "Go back to your course and open the tool again.";
        match self {
            BodyTooLarge(limit) => ("Request too large", format!("The request was larger than the {limit} bytes this tool accepts.")),
            BodyUnreadable(_) => ("Malformed request", "The request body could not be read.".into()),
            MalformedParams(e) => ("Malformed launch", format!("The launch could not be read: {e}. {ASK}")),
            UnsupportedContentType(_) => ("Malformed launch", format!("A launch must be sent as an HTML form (application/x-www-form-urlencoded). {ASK}")),
            EncodedBody(how) => ("Malformed launch", format!("The launch's body is encoded ({how}): a launch must be sent as a plain HTML form (application/x-www-form-urlencoded, UTF-8, not compressed). {ASK}")),
            // Also on pages that take no launch (config.xml, the test launcher): worded for both.
            MissingHost => ("Bad request", "The request has no usable Host header (none, more than one, or not a host name and port). Without one, a launch's signature cannot be checked, nor this tool's address named.".into()),
            BadForwardedHost => ("Bad request", "The proxy in front of this tool forwarded a host (X-Forwarded-Host or Forwarded: host=) that is not a host name and port. Without one, a launch's signature cannot be checked, nor this tool's address named. Ask the people who run the proxy.".into()),
            OAuthParamTooLong(p) => (
                "Malformed launch",
                format!("The launch's {p} is longer than this tool accepts. {ASK}"),
            ),
            MissingOAuthParam(p) => ("Malformed launch", format!("The launch is missing the required parameter {p}. {ASK}")),
            DuplicateOAuthParam(p) => ("Malformed launch", format!("The launch carries the parameter {p} more than once. {ASK}")),
            OAuthFieldsSplit => ("Malformed launch", format!("The launch's OAuth fields (oauth_…) are spread over more than one of the address, the form and the Authorization header; OAuth allows one place only. {ASK}")),
            MalformedTimestamp => ("Malformed launch", format!("The launch's oauth_timestamp is not a number of seconds. {ASK}")),
            UnsupportedSignatureMethod(m) => ("Malformed launch", format!("The launch was signed with {m}; this tool only accepts HMAC-SHA1. {ASK}")),
            UnsupportedOAuthVersion(v) => ("Malformed launch", format!("The launch uses OAuth version {v}; this tool only accepts 1.0. {ASK}")),
            InvalidLaunch { log, .. } => ("Invalid LTI launch", format!("The LMS sent a launch this tool cannot use ({log}). {ASK}")),
            NoLaunch => ("Not launched from an LMS", format!("This address only opens from a launch by your LMS. {AGAIN}")),
            UnknownConsumer => ("Launch not trusted", format!("The consumer key of this launch is not registered with this tool. {ASK}")),
            DisabledConsumer => ("Launch not trusted", format!("The consumer key of this launch has been disabled by the tool's administrator. {ASK}")),
            BadSignature => ("Launch not trusted", format!("The launch's signature does not match: the consumer secret in the LMS may be wrong, or the LMS signed a different address than this tool sees. {ASK}")),
            StaleTimestamp(_) | NonceForgotten => ("Launch expired", format!("The launch is too old, or the LMS's clock or this tool's is wrong. {AGAIN}")),
            FutureTimestamp(_) => ("Launch not trusted", format!("The launch is dated in the future: the LMS's clock or this tool's is wrong. {ASK}")),
            ReplayedNonce => ("Launch already used", format!("This launch was already used once; each launch works only once. {AGAIN}")),
            NoSession => ("Not signed in", format!("You have no active session with this tool. {AGAIN} If this page comes right after opening the tool inside your course page, your browser is blocking this tool's cookie there: open the tool in a new window (your LMS may offer that), or allow this site's cookies.")),
            SessionExpired => ("Your visit has expired", format!("Your time with this tool ran out. {AGAIN}")),
            SessionEnded => ("Your visit has ended", format!("This visit to the tool was ended: you logged out, or the tool was opened again in this browser (perhaps in another tab), which started a new visit there. {AGAIN}")),
            LaunchAtSessionPage => ("Not a launch address", format!("This page continues a visit already open in the tool and does not start one, so the launch was not used. The link in the LMS should point at the tool's launch address, such as {}. {ASK}", crate::web::pages::suggested_launch_pages())),
            LaunchAtUnknownAddress(_) => ("Not a launch address", format!("There is no page at this address, so the launch was not used. The link in the LMS should point at the tool's launch address, such as {}, typed exactly (letter case counts). {ASK}", crate::web::pages::suggested_launch_pages())),
            LaunchAtPageWithoutLaunch(_) => ("Not a launch address", format!("This page does not start a visit, so the launch was not used. The link in the LMS should point at the tool's launch address, such as {}. {ASK}", crate::web::pages::suggested_launch_pages())),
            LaunchAtHomePage => ("Not a launch address", format!("This is the tool's home page, not a launch address, so the launch was not used. The link in the LMS should point at the tool's launch address, such as {}. {ASK}", crate::web::pages::suggested_launch_pages())),
            HandoffInvalid => ("Link expired", format!("This link to open the tool in a new window has expired or was already used. {AGAIN}")),
            NotStaff => ("Not allowed", "This page is only for the teachers and administrators of the course.".into()),
            BadCsrfToken => ("Form expired", "This form has no valid token: it belongs to another visit, the tool restarted, or it did not come from the tool's own page. Open its page again and send it from there: reloading this page would only send the old form again.".into()),
            CrossSiteForm => ("Form from another site", "This form was sent from another site's page, so it was ignored. Open the tool's own page and try again there.".into()),
            LaunchNotPosted { method, .. } => ("Not a launch", format!("An LMS sends a launch by POST; this one came by {method}, so it was not used and started no visit. Open the tool from the course page. {ASK}")),
            HeadLaunch => ("Not a launch", "A HEAD request (a link checker or a prefetch) never starts or ends a visit. Open the tool from the course page.".into()),
            LaunchNotNavigation => ("Not opened as a page", "A launch opens the tool in a window or frame; this one came as part of another page (an image, a script), so it started nothing. Open the tool from the course page.".into()),
            Outcome(e) => outcome_message(e),
            NotFound => ("Not found", "There is nothing at this address.".into()),
            NoSuchConsumer => ("No such consumer", "There is no consumer with this key (it may have been deleted). Nothing was changed.".into()),
            SecretAlreadyReplaced => ("Secret already replaced", "This consumer's secret changed after this form was shown (the page with the new secret was reloaded or sent again, another tab replaced it, or the command line did), so no other secret was made: the secret given out with that change is the one in use. To replace it again, start from the consumer list.".into()),
            ConsumerNotNamed => ("Bad request", "The form did not say which consumer. Nothing was changed.".into()),
            PublishedDemoConsumer => ("Not enabled", format!("{}.", crate::store::consumers::PUBLISHED_DEMO_REFUSED)),
            AdminLoginRequired => ("Log in first", "This page is for the tool's administrator: log in at /admin.".into()),
            TooManyLogins => ("Too many attempts", "Too many failed logins from your address. Please wait a minute before trying again.".into()),
            LoginsBusy => ("Busy", "Too many logins are being checked right now. Reload the admin page in a few seconds to try again; a browser that has logged in here before is let through.".into()),
            GradeCallsQueued => ("Still working", "Your earlier grade requests are still waiting for the LMS, so this one was not sent. Wait for them to finish, then check the gradebook.".into()),
            Storage(_) => ("Temporarily unavailable", "The tool cannot reach its database right now. Please try again in a few seconds.".into()),
            Page { title, message, .. } => (title, message.clone()),
        }
    }
}

/// The status for grade passback errors: a bad score is the user's (422), a launch without an
/// outcome service cannot be graded (409), and LMS trouble is a bad gateway (502, 504 on timeout).
fn outcome_status(e: &OutcomeError) -> Status {
    use OutcomeError::*;
    match e {
        ScoreOutOfRange(_) | ScoreNotANumber(_) | ResultDataNotAccepted(_) => {
            Status::UnprocessableEntity
        }
        NoOutcomeService | UnusableSourcedid | ConsumerUnavailable(_) => Status::Conflict,
        UnknownLearner => Status::NotFound,
        StaffHaveNoScore => Status::Forbidden,
        Timeout => Status::GatewayTimeout,
        BadServiceUrl(_)
        | Failure { .. }
        | Unsupported { .. }
        | HttpStatus(_)
        | SignatureRefused { .. }
        | MalformedResponse(_)
        | Unconnected(_)
        | Certificate(_)
        | NotTls(_)
        | Network(_) => Status::BadGateway,
    }
}

/// Whether an LMS's refusal is about the request's signature, key, nonce or clock (Moodle:
/// "Message signature not valid"), whatever status it came with.
fn names_the_signature(description: &str) -> bool {
    let said = description.to_ascii_lowercase();
    ["signature", "oauth", "nonce", "timestamp", "consumer key"]
        .iter()
        .any(|w| said.contains(w))
}

/// A title and a plain explanation of a grade passback error.
fn outcome_message(e: &OutcomeError) -> (&'static str, String) {
    use OutcomeError::*;
    const LATER: &str = "Your score was not changed; try again in a few minutes.";
    // The request may have reached the LMS (and been recorded) before the answer went wrong.
    const UNSURE: &str =
        "If you were changing a score, the LMS may or may not have recorded it; check the gradebook before trying again.";
    const SIGNATURE: &str = "The LMS did not accept the request's signature: check that the consumer key and secret match on both sides, and that this server's clock is right.";
    match e {
        ScoreOutOfRange(s) => ("Score out of range", format!("The score {s} is not between 0.0 and 1.0; nothing was sent to the LMS.")),
        ScoreNotANumber(s) => ("Score not a number", format!("The score {s:?} is not a number such as 0.85; nothing was sent to the LMS.")),
        NoOutcomeService => ("No gradebook for this launch", "The LMS did not set up grade passback for this launch (it sent no lis_outcome_service_url and lis_result_sourcedid), so no score can be sent. Open the tool from a graded assignment.".into()),
        UnusableSourcedid => ("No gradebook for this launch", "The LMS gave this tool a result id (lis_result_sourcedid) with a character that cannot be sent back in a grade request (a control character such as NUL or ESC). Nothing was sent.".into()),
        StaffHaveNoScore => ("No score of your own", "You are course staff here, so the gradebook keeps no score for you from this tool. Grade your learners on the Grades page instead.".into()),
        UnknownLearner => ("Learner not found", "This tool has no grade record for that learner on this resource link. They need to open the tool from the course once.".into()),
        ConsumerUnavailable(_) => ("Cannot sign grades", "The LMS's consumer key is no longer registered or enabled with this tool, so grades cannot be signed.".into()),
        // Trying again cannot help: the address comes with the launch.
        BadServiceUrl(_) => ("Gradebook unreachable", "The LMS gave this tool a grade service address it cannot use, so nothing was sent. Ask whoever manages the LMS or this tool to check the address (lis_outcome_service_url); the tool's log says what is wrong with it.".into()),
        // Moodle refuses a bad signature with a plain 200 and these words.
        Failure { description, .. } if names_the_signature(description) => ("The LMS refused the grade request", format!("The LMS answered: {description}. The score was not changed. {SIGNATURE}")),
        Failure { description, .. } => ("The LMS refused the grade", format!("The LMS answered: {}", if description.is_empty() { "failure (no reason given)" } else { description })),
        Unsupported { operation, description } => ("Not supported by the LMS", format!("The LMS does not support {operation}. {description}")),
        ResultDataNotAccepted(kind) => ("Not accepted by this LMS", format!("This LMS does not take a {} with the score (its launch did not list {kind} in ext_outcome_data_values_accepted); nothing was sent to the LMS.", if *kind == "url" { "link" } else { "comment" })),
        // A redirect or a client error: the LMS did not take the request.
        HttpStatus(401) => ("The LMS refused the grade request", format!("The LMS's grade service answered HTTP 401, so the score was not changed. {SIGNATURE}")),
        // A bare 403 may be a policy as well (a closed course): the signature is only a guess.
        HttpStatus(403) => ("The LMS refused the grade request", "The LMS's grade service answered HTTP 403 (forbidden), so the score was not changed. Some LMSs answer so to a signature they do not accept: if every grade is refused, check that the consumer key and secret match on both sides, and that this server's clock is right.".into()),
        SignatureRefused { status, description } => ("The LMS refused the grade request", format!("The LMS's grade service answered HTTP {status}{}, so the score was not changed. {SIGNATURE}", if description.is_empty() { String::new() } else { format!(" ({description})") })),
        HttpStatus(code @ 300..=399) => ("Gradebook moved", format!("The LMS's grade service answered HTTP {code} (it sends requests elsewhere, say from http to https), so the score was not changed. Ask whoever manages the LMS to check its address for this tool.")),
        HttpStatus(code @ 400..=499) => ("The LMS refused the grade request", format!("The LMS's grade service answered HTTP {code}, so the score was not changed.")),
        HttpStatus(code) => ("Gradebook error", format!("The LMS's grade service answered HTTP {code}. {UNSURE}")),
        MalformedResponse(_) => ("Gradebook error", format!("The LMS's grade service answered something that is not a grade response. {UNSURE}")),
        Timeout => ("Gradebook too slow", "The LMS's grade service did not answer in time. The score may or may not have been saved; check the gradebook.".into()),
        Unconnected(_) => ("Gradebook unreachable", format!("The tool could not connect to the LMS's grade service, so nothing was sent. {LATER}")),
        // rustls names the problem: a certificate for another name needs the LMS's address
        // fixed, not another certificate authority.
        Certificate(why) if why.contains("NotValidForName") || why.contains("not valid for name") => ("Gradebook certificate not valid", "The LMS's grade service presented a certificate for another name than the address the LMS gave this tool, so nothing was sent and the score was not changed. Ask whoever manages the LMS to check the grade service address (lis_outcome_service_url) or its certificate.".into()),
        Certificate(_) => ("Gradebook certificate not trusted", "The LMS's grade service presented a certificate this server does not trust (unknown authority, or expired), so nothing was sent and the score was not changed. If the LMS uses a campus or private certificate authority, whoever runs this tool can add it (README, Grade passback).".into()),
        NotTls(_) => ("Gradebook unreachable", "The LMS gave an https address for its grade service, but the service there does not speak https (it may serve plain http on that port), so nothing was sent and the score was not changed. Ask whoever manages the LMS to check the grade service address (lis_outcome_service_url).".into()),
        Network(_) => ("Gradebook unreachable", format!("The tool lost the LMS's grade service before its answer. {UNSURE}")),
    }
}

/// Keeps the error a guard refused with, so the catcher can explain it.
#[derive(Default)]
struct RefusalSlot(Mutex<Option<LtiError>>);

/// Logs a refusal and keeps it for the catcher; returns the status to fail with.
pub fn remember(req: &Request<'_>, error: &LtiError) -> Status {
    let status = error.status();
    // Errors quote request values: escape them so a crafted parameter cannot forge log lines.
    let what = error.to_string();
    let what = what.escape_debug();
    // The path may be as long as the HTTP layer allows (the router ignores repeated slashes).
    let path = crate::error::excerpt(req.uri().path().as_str(), 200);
    let (method, path) = (super::head::SentAsHead::method_of(req), path.escape_debug());
    let logged = req
        .local_cache(super::launch::RefusalLogged::default)
        .0
        .load(std::sync::atomic::Ordering::Relaxed);
    match error {
        // The launch pipeline logged it, with more to go on.
        _ if logged => {}
        LtiError::Storage(_) => log::error!("{method} {path}: {status}: {what}"),
        // A flood sends thousands a second: the login queue counts them and logs once a second.
        LtiError::LoginsBusy | LtiError::TooManyLogins => {}
        // Every visit to the login page: not worth a warning.
        LtiError::AdminLoginRequired => log::info!("{method} {path}: {status}: {what}"),
        _ => log::warn!("{method} {path}: {status}: {what}"),
    }
    if let Ok(mut slot) = req.local_cache(RefusalSlot::default).0.lock() {
        slot.get_or_insert_with(|| error.clone());
    }
    status
}

pub(super) fn remembered(req: &Request<'_>) -> Option<LtiError> {
    req.local_cache(RefusalSlot::default)
        .0
        .lock()
        .ok()
        .and_then(|s| s.clone())
}

/// Whether a refusal would be sent back to this `launch_presentation_return_url` (see
/// [`return_url_with_error`]) rather than shown on our own page.
pub fn is_followable_return_url(url: &str) -> bool {
    return_url_with_error(url, "", "").is_some()
}

/// A valid `launch_presentation_return_url` with `lti_errormsg` and `lti_errorlog` added to its
/// query (in place of any it had). Characters a URI cannot hold raw in its path, query or
/// fragment (non-ASCII, spaces, quotes, angle brackets…) are percent-encoded, as a browser would;
/// a host that is not plain ASCII, other whitespace and control characters make it unusable.
pub fn return_url_with_error(return_url: &str, message: &str, log: &str) -> Option<String> {
    // A browser ignores spaces around a URL.
    let return_url = return_url.trim_matches(' ');
    let lower = return_url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))?;
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let origin_end = return_url.len() - rest.len() + host_end;
    if rest[..host_end].is_empty()
        || !return_url[..origin_end].is_ascii()
        || return_url
            .chars()
            .any(|c| (c.is_whitespace() && c != ' ') || c.is_control())
    {
        return None;
    }
    let mut encoded = return_url[..origin_end].to_string();
    let mut in_fragment = false;
    for c in return_url[origin_end..].chars() {
        // A second `#` is part of the fragment: encoded, as a browser would.
        let fragment_hash = c == '#' && std::mem::replace(&mut in_fragment, true);
        if c.is_ascii() && !" \"<>\\^`{|}".contains(c) && !fragment_hash {
            encoded.push(c);
        } else {
            let mut utf8 = [0; 4];
            for b in c.encode_utf8(&mut utf8).bytes() {
                encoded.push_str(&format!("%{b:02X}"));
            }
        }
    }
    let return_url = encoded.as_str();
    let (base, fragment) = match return_url.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (return_url, None),
    };
    // An LMS that sent errors back before may have left its own.
    let base = match base.split_once('?') {
        Some((path, query)) if query.contains("lti_error") => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|pair| {
                    let name = pair.split('=').next().unwrap_or_default();
                    name != "lti_errormsg" && name != "lti_errorlog"
                })
                .collect();
            format!("{path}?{}", kept.join("&"))
        }
        _ => base.to_string(),
    };
    let sep = if !base.contains('?') {
        "?"
    } else if base.ends_with('?') || base.ends_with('&') {
        ""
    } else {
        "&"
    };
    let mut url = format!(
        "{base}{sep}lti_errormsg={}&lti_errorlog={}",
        encode(message),
        encode(log)
    );
    if let Some(f) = fragment {
        url.push('#');
        url.push_str(f);
    }
    // Only what Rocket can send as a Location header (no raw non-ASCII, quotes or brackets).
    rocket::http::uri::Reference::parse(&url).ok()?;
    Some(url)
}

/// The templated error page with its status.
pub struct ErrorPage {
    status: Status,
    title: String,
    message: String,
    /// The `Allow` header of a 405: the methods the address takes (empty: told from the routes).
    pub(super) allow: String,
    /// The `Retry-After` header of a 429 or 503, in seconds.
    retry_after: &'static str,
    /// A grade call that went wrong: the page offers the grade page it came from again.
    grade_call: bool,
}

impl ErrorPage {
    /// A page for a status, with our own words.
    pub fn new(status: Status, title: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorPage {
            status,
            title: title.into(),
            message: message.into(),
            // Told from the routes when the page is answered ([`route_allow`]).
            allow: String::new(),
            // The login throttle counts the failures of the last minute; storage trouble (a lock,
            // a full disk) is usually brief.
            retry_after: if status == Status::TooManyRequests {
                "60"
            } else {
                "5"
            },
            grade_call: false,
        }
    }
}

impl From<&LtiError> for ErrorPage {
    fn from(e: &LtiError) -> Self {
        let (title, message) = e.user_message();
        let mut page = ErrorPage::new(e.status(), title, message);
        if matches!(e, LtiError::GradeCallsQueued) {
            // A 429 like a login flood's, but the session's earlier grade calls take seconds.
            page.retry_after = "5";
        }
        // An expired form too: its message says to open the page again.
        page.grade_call = matches!(
            e,
            LtiError::Outcome(_) | LtiError::GradeCallsQueued | LtiError::BadCsrfToken
        );
        page
    }
}

impl<'r> Responder<'r, 'static> for ErrorPage {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        #[derive(Serialize)]
        #[serde(crate = "rocket::serde")]
        struct Ctx<'a> {
            code: u16,
            reason: &'a str,
            title: &'a str,
            message: &'a str,
            /// Set during a visit: the page links back to it and offers Log out.
            logout_token: Option<&'a str>,
            /// An admin page's refusal: the way back is the admin area.
            admin: bool,
            /// A double click's second launch: the way back only, to the visit the first began.
            way_back: bool,
            /// After a grade call, during a visit: the grade page to try again from.
            grade_page: Option<&'static str>,
        }
        // A launch its page refused: the session it started ends once this page is answered.
        let launched = crate::web::session_cookie::launched_a_session(req);
        let logout_token = crate::web::session_cookie::visit_of(req).filter(|_| !launched);
        let ctx = Ctx {
            code: self.status.code,
            reason: self.status.reason().unwrap_or(""),
            title: &self.title,
            message: &self.message,
            logout_token,
            admin: crate::web::admin::is_admin_request(req),
            way_back: crate::web::session_cookie::visit_may_go_on(req) && !launched,
            // Only after a form was posted: a grade page that fails to open has none to go back to.
            grade_page: grade_page(req.uri().path().as_str()).filter(|_| {
                self.grade_call && logout_token.is_some() && req.method() == Method::Post
            }),
        };
        let mut response = Template::render("error", &ctx).respond_to(req)?;
        response.set_status(self.status);
        // Set here as well as by the fairings: a request Rocket cannot parse (an unknown method)
        // gets this page without going through them.
        response.set_raw_header("X-Content-Type-Options", "nosniff");
        response.set_raw_header("Cache-Control", "no-store");
        response.set_raw_header("Referrer-Policy", "same-origin");
        response.set_raw_header("Content-Security-Policy", crate::web::BASE_CSP);
        if self.status == Status::MethodNotAllowed {
            // RFC 9110: a 405 says which methods the resource takes.
            let allow = match self.allow.is_empty() {
                true => route_allow(req),
                false => self.allow,
            };
            response.set_raw_header("Allow", allow);
        }
        if self.status == Status::Unauthorized {
            response.set_raw_header("WWW-Authenticate", crate::web::headers::challenge(req));
        }
        if matches!(
            self.status,
            Status::TooManyRequests | Status::ServiceUnavailable
        ) {
            response.set_raw_header("Retry-After", self.retry_after);
        }
        Ok(response)
    }
}

/// The grade page a grade call's address belongs to: the staff page's forms post under
/// `/grades/`, the learner's under `/grade`.
fn grade_page(path: &str) -> Option<&'static str> {
    let first = path.trim_start_matches('/').split('/').next()?;
    match first {
        "grades" => Some("/grades"),
        "grade" => Some("/grade"),
        _ => None,
    }
}

impl<'r> Responder<'r, 'static> for LtiError {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        remember(req, &self);
        ErrorPage::from(&self).respond_to(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_for_another_name_is_told_apart_from_an_unknown_authority() {
        let page = |why: &str| {
            LtiError::Outcome(OutcomeError::Certificate(why.into()))
                .user_message()
                .1
        };
        // As rustls 0.23 words it.
        let name = page(
            "client error (Connect): certificate not valid for name \"127.0.0.2\"; certificate \
             is only valid for DnsName(\"localhost\") or IpAddress(127.0.0.1)",
        );
        assert!(
            name.contains("another name") && !name.contains("authority"),
            "{name}"
        );
        let issuer = page("client error (Connect): invalid peer certificate: UnknownIssuer");
        assert!(issuer.contains("certificate authority"), "{issuer}");
        for message in [name, issuer] {
            assert!(message.contains("nothing was sent"), "{message}");
        }
    }

    #[test]
    fn return_url_keeps_its_query_and_fragment() {
        assert_eq!(
            return_url_with_error("http://lms/ret?x=1&y=2#top", "a b", "missing resource_link_id").as_deref(),
            Some("http://lms/ret?x=1&y=2&lti_errormsg=a%20b&lti_errorlog=missing%20resource_link_id#top")
        );
        assert_eq!(
            return_url_with_error("HTTPS://lms/ret", "m", "l").as_deref(),
            Some("HTTPS://lms/ret?lti_errormsg=m&lti_errorlog=l")
        );
        // As a browser would send them: percent-encoded.
        assert_eq!(
            return_url_with_error("https://lms.example/kurs/\u{fc}bung?n=\u{e9} <\"x\">", "m", "l")
                .as_deref(),
            Some("https://lms.example/kurs/%C3%BCbung?n=%C3%A9%20%3C%22x%22%3E&lti_errormsg=m&lti_errorlog=l")
        );
        assert_eq!(
            return_url_with_error(" http://lms/r#a#b ", "m", "l").as_deref(),
            Some("http://lms/r?lti_errormsg=m&lti_errorlog=l#a%23b")
        );
        // Errors sent back before are replaced, not repeated.
        assert_eq!(
            return_url_with_error("http://lms/r?lti_errormsg=old&a=1&lti_errorlog=x", "m", "l")
                .as_deref(),
            Some("http://lms/r?a=1&lti_errormsg=m&lti_errorlog=l")
        );
        for bad in [
            "https://l\u{e9}ms.example/",
            "https://lms.example/r\tx",
            "https://lms.example/r\nLocation: x",
            "",
            "javascript:alert(1)",
            "ftp://x/",
            "//evil",
            "http://",
            "http:///x",
            "/relative",
            "http://a b/",
            "http://a\u{e9}b/",
        ] {
            assert_eq!(return_url_with_error(bad, "m", "l"), None, "{bad}");
        }
    }
}
