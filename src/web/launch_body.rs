//! Reading a launch route's body, and refusing what cannot be read as a form: over the limit,
//! broken off, another encoding, not a form. At a launch page such a request is a failed launch
//! when it carries launch fields (it then ends the browser's session, as any failed launch does);
//! at `LtiAny`'s, one without them is a request for the session.

use percent_encoding::percent_decode;
use rocket::data::{Data, ToByteUnit};
use rocket::http::ContentType;
use rocket::request::Request;

use crate::error::LtiError;
use crate::lti::launch::{is_launch_field, LAUNCH_FIELD_MARKERS};
use crate::store::{self, usage};
use crate::web::diagnosis::{consumer_key_of, record_unreadable, unreadable_fields};
use crate::web::head::SentAsHead;
use crate::web::launch::log_refusal;
use crate::web::origin::is_navigation;
use crate::web::session_cookie::{browser_session_id, end_session_after_failed_launch};
use crate::web::AppState;

/// Reads the body of a POST (refusing it when over the limit).
pub(crate) async fn read_body(data: Data<'_>, state: &AppState) -> Result<Vec<u8>, LtiError> {
    match read_capped(data, state).await {
        Body::Complete(body) => Ok(body),
        Body::OverLimit(_) => Err(LtiError::BodyTooLarge(state.settings.launch_body_limit)),
        Body::Broken(_, e) => Err(e),
    }
}

/// A body read up to the limit.
pub(super) enum Body {
    /// All of it.
    Complete(Vec<u8>),
    /// Its start: it goes on past the limit.
    OverLimit(Vec<u8>),
    /// What came before the client broke it off or broke its framing (a bad chunk), and why.
    Broken(Vec<u8>, LtiError),
}

/// Reads a body up to `launch_body_limit`.
pub(super) async fn read_capped(data: Data<'_>, state: &AppState) -> Body {
    let stream = data.open(state.settings.launch_body_limit.bytes());
    let mut body = Vec::with_capacity(stream.hint());
    match stream.stream_to(&mut body).await {
        Ok(n) if n.complete => Body::Complete(body),
        Ok(_) => Body::OverLimit(body),
        Err(e) => Body::Broken(body, LtiError::BodyUnreadable(e.to_string())),
    }
}

/// Reads the body of a launch route. One over the limit, or broken off, is refused, and when
/// what was read of it carries launch fields, that is a failed launch (see `unreadable_launch`).
pub(super) async fn read_launch_body(
    req: &Request<'_>,
    state: &AppState,
    data: Data<'_>,
) -> Result<Vec<u8>, LtiError> {
    match read_capped(data, state).await {
        Body::Complete(body) => Ok(body),
        Body::OverLimit(start) => {
            let e = LtiError::BodyTooLarge(state.settings.launch_body_limit);
            Err(unreadable_launch(req, state, Some(&start), e).await)
        }
        Body::Broken(start, e) => Err(unreadable_launch(req, state, Some(&start), e).await),
    }
}

/// Refuses a launch that cannot even be read (too large, not a form, or not decodable). When it
/// carries launch fields, or is a body over the limit (no request but a launch posts that much to
/// a launch page, and its launch fields may come after the part read), it is a failed launch, and
/// like any other it ends the browser's session (a HEAD gets 405 instead, and another page's
/// image or script 403, as for a readable launch); otherwise the session is left alone.
pub(super) async fn unreadable_launch(
    req: &Request<'_>,
    state: &AppState,
    body: Option<&[u8]>,
    error: LtiError,
) -> LtiError {
    let oversized = matches!(error, LtiError::BodyTooLarge(_));
    if !oversized && !carries_launch_fields(req, body) {
        return error;
    }
    // A HEAD of a launch is no launch at all, readable or not (see `launch`).
    if SentAsHead::of(req) {
        return LtiError::HeadLaunch;
    }
    // Nor is one a browser fetched as another page's part, as for a readable launch: refused as
    // that (403), ending and recording nothing.
    if !is_navigation(req) {
        log::info!("an unreadable launch fetched as part of another page was refused");
        return LtiError::LaunchNotNavigation;
    }
    fail_unread_launch(req, state, body, &error).await;
    error
}

/// What any failed launch the launch pipeline did not read does: logs it, ends the browser's
/// session, counts it for its consumer and records it for the admin page, from the fields
/// readable in `body`.
pub(super) async fn fail_unread_launch(
    req: &Request<'_>,
    state: &AppState,
    body: Option<&[u8]>,
    error: &LtiError,
) {
    let fields = unreadable_fields(req, body, error);
    let key = consumer_key_of(&fields);
    log_refusal(req, state, key, error);
    let old = browser_session_id(req, state).await;
    end_session_after_failed_launch(req, state, old.as_deref()).await;
    // As for a readable launch (`launch`): no detailed record when the count could not be written.
    if usage::count_refusal(&state.db, key, error, store::now())
        .await
        .is_ok()
    {
        record_unreadable(req, state, fields, error).await;
    }
}

/// True when undecodable input has launch fields where a form has its field names (or an OAuth
/// `Authorization` header): a launch, not some text that merely mentions one. A body cut off at
/// the size limit counts by what was read of it.
pub(super) fn carries_launch_fields(req: &Request<'_>, body: Option<&[u8]>) -> bool {
    let query = req.uri().query().map(|q| q.as_str().as_bytes());
    has_oauth_header(req)
        || query.is_some_and(names_a_launch_field)
        || body.is_some_and(|body| body_names_a_launch_field(req, body))
}

/// True when a body names a launch field where its kind of form has field names.
fn body_names_a_launch_field(req: &Request<'_>, body: &[u8]) -> bool {
    body_names_a_field(req, body, is_launch_field)
}

/// True when a body has a field whose name passes `wanted`, where its kind of form (multipart or
/// not) has field names.
pub(super) fn body_names_a_field(
    req: &Request<'_>,
    body: &[u8],
    wanted: fn(&[u8]) -> bool,
) -> bool {
    let multipart = req
        .content_type()
        .is_some_and(|ct| ct.top() == "multipart" && ct.sub() == "form-data");
    match multipart {
        true => names_a_part(body, wanted),
        false => names_a_field(body, wanted),
    }
}

/// True when a form (or what was meant to be one) has a field whose name, percent-decoded as far
/// as it goes, is a launch field's.
fn names_a_launch_field(raw: &[u8]) -> bool {
    names_a_field(raw, is_launch_field)
}

/// True when a form has a field whose name, percent-decoded as far as it goes, passes `wanted`
/// (which sees at most [`NAME_SEEN`] bytes of it: enough to tell the launch fields).
pub(super) fn names_a_field(raw: &[u8], wanted: fn(&[u8]) -> bool) -> bool {
    raw.split(|&b| b == b'&').any(|field| {
        let name = field.split(|&b| b == b'=').next().unwrap_or_default();
        // A flood of fields costs no allocation each.
        let mut decoded = [0u8; NAME_SEEN];
        let mut len = 0;
        for b in percent_decode(name).take(decoded.len()) {
            decoded[len] = b;
            len += 1;
        }
        wanted(&decoded[..len])
    })
}

/// Bytes of a field name [`names_a_field`] decodes: one more than `oauth_consumer_key`, so a
/// longer name is told apart.
const NAME_SEEN: usize = 19;

/// True when a multipart form has a part whose name passes `wanted` (`Content-Disposition:
/// form-data; name="oauth_..."`; a file name does not count).
fn names_a_part(raw: &[u8], wanted: fn(&[u8]) -> bool) -> bool {
    const HEADER: &[u8] = b"content-disposition:";
    raw.split(|&b| b == b'\n').any(|line| {
        let Some(value) = line
            .get(..HEADER.len())
            .filter(|h| h.eq_ignore_ascii_case(HEADER))
            .map(|_| String::from_utf8_lossy(&line[HEADER.len()..]))
        else {
            return false;
        };
        value.split(';').any(|param| {
            param
                .trim()
                .strip_prefix("name=")
                .is_some_and(|n| wanted(n.trim_matches('"').as_bytes()))
        })
    })
}

/// True for an OAuth `Authorization` header with OAuth fields in it (`OAuth realm="x"` alone, as
/// some clients send, carries none).
fn has_oauth_header(req: &Request<'_>) -> bool {
    req.headers().get_one("Authorization").is_some_and(|h| {
        let h = h.trim_start();
        h.get(..5).is_some_and(|s| s.eq_ignore_ascii_case("oauth")) && h.contains("oauth_")
    })
}

fn mentions_a_marker(raw: &[u8]) -> bool {
    LAUNCH_FIELD_MARKERS
        .iter()
        .any(|m| raw.windows(m.len()).any(|w| w == *m))
}

/// True when undecodable input mentions a launch anywhere: then it is refused, not read as a
/// session request.
pub(super) fn mentions_launch(req: &Request<'_>, body: Option<&[u8]>) -> bool {
    let query = req
        .uri()
        .query()
        .map(|q| q.as_str().as_bytes())
        .unwrap_or_default();
    carries_launch_fields(req, body)
        || [query, body.unwrap_or_default()]
            .iter()
            .any(|raw| mentions_a_marker(raw))
}

/// A header value as an error may quote it: anyone can send one, and errors are logged and
/// recorded, so at most 100 characters of it.
fn header_excerpt(value: &str) -> String {
    crate::error::excerpt(value, 100)
}

/// Checks that a body can be read at all: no coding beyond `identity` in `Content-Encoding`, none
/// beyond one `chunked` (which the HTTP layer undoes) in `Transfer-Encoding`, and, for
/// a body read as a form, no NUL byte: a form never has one, and UTF-16 or UTF-32 text always
/// does. Its fields cannot be seen then, so it is refused rather than taken for a request
/// without launch fields.
pub(super) fn check_body_encoding(req: &Request<'_>, body: &[u8]) -> Result<(), LtiError> {
    for (header, undone) in [
        ("Content-Encoding", &["identity"][..]),
        ("Transfer-Encoding", &["chunked"]),
    ] {
        let codings = req.headers().get(header).flat_map(|line| line.split(','));
        let mut chunked = 0;
        for coding in codings.map(str::trim).filter(|c| !c.is_empty()) {
            chunked += usize::from(coding.eq_ignore_ascii_case("chunked"));
            // `chunked` twice is not allowed either (RFC 9112), though the HTTP layer lets it by.
            if chunked > 1 || !undone.iter().any(|u| coding.eq_ignore_ascii_case(u)) {
                let coding = header_excerpt(coding);
                return Err(LtiError::EncodedBody(format!("{header}: {coding}")));
            }
        }
    }
    if check_form_content_type(req).is_ok() && body.contains(&0) {
        return Err(LtiError::EncodedBody(
            "NUL bytes in a form (UTF-16, UTF-32 or binary)".into(),
        ));
    }
    Ok(())
}

/// Checks that a launch body is a form. A missing or blank Content-Type is read as one; one
/// Rocket cannot parse is judged by its media type alone.
pub(super) fn check_form_content_type(req: &Request<'_>) -> Result<(), LtiError> {
    match req.content_type() {
        // Rocket's parser is strict (`...; charset=utf-8;` fails it): judge such a header by its
        // media type alone, and a blank one as none.
        None => match req.headers().get_one("Content-Type").map(str::trim) {
            None | Some("") => Ok(()),
            Some(raw) => {
                let media_type = raw.split(';').next().unwrap_or_default().trim();
                match media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
                    true => Ok(()),
                    false => Err(LtiError::UnsupportedContentType(header_excerpt(raw))),
                }
            }
        },
        Some(ct) if ct.media_type() == ContentType::Form.media_type() => Ok(()),
        Some(ct) => Err(LtiError::UnsupportedContentType(header_excerpt(
            &ct.to_string(),
        ))),
    }
}
