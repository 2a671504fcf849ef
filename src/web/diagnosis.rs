//! Recording refused launches with a hint for the administrator. The hint comes from evidence:
//! for a bad signature we re-check it against the URLs the LMS may have signed instead (the other
//! scheme, the host in forwarded headers we did not trust, the other pages). These re-checks only
//! explain a refusal; they never accept a launch.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use percent_encoding::percent_decode;
use rocket::request::Request;

use crate::error::{excerpt, LtiError};
use crate::lti::diagnosis::{redact, similar_key, Hint};
use crate::lti::oauth::{base_uri, signature_base_string, verify};
use crate::lti::params::{first, parse_authorization_header, Params, MAX_PARAMS};
use crate::store::{self, consumers, refusals};
use crate::web::launch::LaunchParams;
use crate::web::launch_body::check_form_content_type;
use crate::web::origin::{client_address, signed_origin, untrusted_forwarded_origin, Origin};
use crate::web::pages::launch_paths;
use crate::web::AppState;

/// Refused launches recorded in detail per minute for each known consumer, and for all unknown
/// keys together: enough to diagnose any LMS, too few for a flood of bad requests to keep the
/// log writing, and a flood under made-up keys leaves the registered consumers' share alone.
/// Signed launches (refused after their signature passed) have a share of their own, which
/// whoever forges launches under a known key cannot spend, and each of them is recorded there
/// once however often it is sent again: filling it takes as many launches from the LMS.
const RECORDS_PER_MINUTE: u32 = 30;

/// True for refusals that come after the signature check passed: they take a launch the LMS
/// signed (sent by the LMS, or sent again by whoever kept it), never a forged one.
fn after_signature(error: &LtiError) -> bool {
    matches!(
        error,
        LtiError::StaleTimestamp(_)
            | LtiError::FutureTimestamp(_)
            | LtiError::NonceForgotten
            | LtiError::ReplayedNonce
            | LtiError::InvalidLaunch { .. }
    )
}

/// Most bytes of a URL a refusal stores or logs (the path is the request's, of any length).
const URL_CAP: usize = 2048;

/// Signed launches whose refusal was recorded lately: each is recorded once in its consumer's
/// signed share, so whoever kept a launch form cannot fill that share by sending it again.
const SIGNED_REMEMBERED: usize = 4096;

/// How many more refused launches may be recorded this minute (every refusal is still logged).
#[derive(Default)]
pub struct RefusalBudget(Mutex<Spent>, Mutex<RecordedSignatures>);

/// The consumer keys and signatures of the last [`SIGNED_REMEMBERED`] signed launches recorded.
#[derive(Default)]
struct RecordedSignatures {
    seen: HashSet<(String, String)>,
    order: VecDeque<(String, String)>,
}

#[derive(Default)]
struct Spent {
    minute: i64,
    /// By bucket (`refusals::bucket`): per known consumer, its signed launches apart, and `""`
    /// for unknown and missing keys.
    per_bucket: HashMap<String, u32>,
    over: bool,
}

impl RefusalBudget {
    /// True when this launch (its consumer key and signature: the same form sent again) is
    /// among the last [`SIGNED_REMEMBERED`] signed launches recorded.
    fn recorded_before(&self, key: &str, signature: &str) -> bool {
        let recorded = self.1.lock().unwrap_or_else(|p| p.into_inner());
        recorded
            .seen
            .contains(&(key.to_string(), signature.to_string()))
    }

    /// Notes a signed launch as recorded (see [`Self::recorded_before`]).
    fn note_recorded(&self, key: &str, signature: &str) {
        let mut recorded = self.1.lock().unwrap_or_else(|p| p.into_inner());
        let entry = (key.to_string(), signature.to_string());
        if recorded.seen.insert(entry.clone()) {
            recorded.order.push_back(entry);
        }
        if recorded.order.len() > SIGNED_REMEMBERED {
            if let Some(oldest) = recorded.order.pop_front() {
                recorded.seen.remove(&oldest);
            }
        }
    }

    /// True when a refusal in this bucket may be recorded at Unix second `now`, and counts it.
    fn admit(&self, bucket: &str, now: i64) -> bool {
        // A panic while holding the lock cannot leave the counts inconsistent; carry on.
        let mut spent = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if spent.minute != now / 60 {
            *spent = Spent {
                minute: now / 60,
                ..Spent::default()
            };
        }
        let spent_here = spent.per_bucket.get(bucket).copied().unwrap_or(0);
        if spent_here >= RECORDS_PER_MINUTE {
            if !std::mem::replace(&mut spent.over, true) {
                log::warn!(
                    "refused launches are coming fast: the rest of this minute's are only logged, \
                     not recorded for the admin page"
                );
            }
            return false;
        }
        spent.per_bucket.insert(bucket.to_string(), spent_here + 1);
        true
    }
}

/// Records a refused launch with its hint, within the minute's budget. Failures to record are
/// logged, never raised: the user's refusal must not turn into a storage error.
pub async fn record_refusal(
    req: &Request<'_>,
    state: &AppState,
    params: &LaunchParams,
    error: &LtiError,
) {
    record(req, state, params.combined(), error).await;
}

/// Records a launch that could not be read (not UTF-8, over the size limit, not a form) from what
/// can be made of it: its query, its body when it was sent as a form (as far as it was read) and
/// its OAuth header, with bytes that do not decode replaced.
pub async fn record_unreadable(
    req: &Request<'_>,
    state: &AppState,
    fields: Params,
    error: &LtiError,
) {
    record(req, state, fields, error).await;
}

/// The fields of a launch that could not be read, as far as they can be made out (for the log
/// and [`record_unreadable`]).
pub fn unreadable_fields(req: &Request<'_>, body: Option<&[u8]>, error: &LtiError) -> Params {
    let mut all = lossy_fields(
        req.uri()
            .query()
            .map_or(&b""[..], |q| q.as_str().as_bytes()),
    );
    // Only a form's body splits into fields: in any other (multipart, say) a value's `&` would
    // start a "name" holding user text, and names are stored unmasked.
    let a_form = check_form_content_type(req).is_ok();
    if a_form && !matches!(error, LtiError::EncodedBody(_)) {
        all.extend(lossy_fields(body.unwrap_or_default()));
    }
    let header = req.headers().get_one("Authorization");
    if let Some(Ok(Some(fields))) = header.map(parse_authorization_header) {
        all.extend(fields);
    }
    all
}

/// The `oauth_consumer_key` among [`unreadable_fields`], if any.
pub fn consumer_key_of(fields: &Params) -> Option<&str> {
    fields
        .iter()
        .find(|(n, _)| n == "oauth_consumer_key")
        .map(|(_, v)| v.as_str())
}

/// A form's fields as far as they can be made out, for the log only.
fn lossy_fields(raw: &[u8]) -> Params {
    let lossy = |raw: &[u8]| {
        let spaced: Vec<u8> = raw
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        percent_decode(&spaced).decode_utf8_lossy().into_owned()
    };
    raw.split(|&b| b == b'&')
        .filter(|field| !field.is_empty())
        .take(MAX_PARAMS)
        .map(|field| {
            let mut parts = field.splitn(2, |&b| b == b'=');
            let name = parts.next().unwrap_or_default();
            (lossy(name), lossy(parts.next().unwrap_or_default()))
        })
        .collect()
}

/// Records a refused launch for the admin page, within the budget, and once per signature.
async fn record(req: &Request<'_>, state: &AppState, all: Params, error: &LtiError) {
    if matches!(error, LtiError::NoLaunch | LtiError::Storage(_)) {
        return;
    }
    let key = first(&all, "oauth_consumer_key").unwrap_or("").to_string();
    // From the consumer cache when it has it: the launch has just read this consumer (a bad
    // signature, from the database), so recording its refusal costs no further read.
    let consumer = match key.is_empty() {
        true => None,
        false => state
            .front
            .consumer(&state.db, &key, true)
            .await
            .ok()
            .flatten(),
    };
    let known = consumer.as_ref().map(|_| key.as_str());
    let signed = known.is_some() && after_signature(error);
    // A launch sent again (a replay, or a stale copy) has the same signature: recorded once.
    // Another launch that reuses a nonce (a broken nonce generator) is signed anew: recorded.
    let signature = first(&all, "oauth_signature").unwrap_or("").to_string();
    let budget = &state.refusal_budget;
    if signed && budget.recorded_before(&key, &signature) {
        return;
    }
    let bucket = refusals::bucket(known, signed);
    if !budget.admit(&bucket, store::now()) {
        return;
    }
    if signed {
        budget.note_recorded(&key, &signature);
    }
    let signed_url = signed_origin(req, &state.settings)
        .map(|o| base_uri(&o.scheme, &o.host, o.port, req.uri().path().as_str()))
        .unwrap_or_default();
    let hint = hint_for(req, state, error, &all, consumer.as_ref(), &signed_url).await;
    if matches!(error, LtiError::BadSignature) {
        // The refusal's own line says only "invalid signature": a wrong secret and a wrong
        // address need different fixes, and the log may be all an administrator reads.
        log::warn!(
            "why the signature failed (consumer key \"{}\", from {}): {}",
            excerpt(&key, 100).escape_debug(),
            client_address(req, &state.settings),
            without_controls(&hint.advice())
        );
    }
    let refusal = refusal_row(req, state, error, &all, hint, &signed_url);
    if let Err(e) = refusals::record(&state.db, &bucket, &refusal).await {
        log::error!("could not record a refused launch: {e}");
    }
}

/// The likely cause of a refused launch, from the evidence: the keys registered, the consumer's
/// secret (which readings of the request it signs), the address the launch came to.
async fn hint_for(
    req: &Request<'_>,
    state: &AppState,
    error: &LtiError,
    all: &Params,
    consumer: Option<&consumers::Consumer>,
    signed_url: &str,
) -> Hint {
    let path = req.uri().path().as_str();
    match error {
        LtiError::UnknownConsumer => {
            let key = first(all, "oauth_consumer_key").unwrap_or("");
            let keys = consumers::keys(&state.db).await.unwrap_or_default();
            match similar_key(key, keys.iter().map(String::as_str)) {
                Some(similar) => Hint::UnknownKeyLike {
                    similar: similar.to_string(),
                },
                None => Hint::UnknownKey,
            }
        }
        LtiError::DisabledConsumer => Hint::DisabledKey,
        LtiError::LaunchAtSessionPage
        | LtiError::LaunchAtHomePage
        | LtiError::LaunchAtPageWithoutLaunch(_)
        | LtiError::LaunchAtUnknownAddress(_) => Hint::NotLaunchAddress {
            // The path at least, when the host could not be told.
            seen: capped(
                if signed_url.is_empty() {
                    path
                } else {
                    signed_url
                },
                URL_CAP,
            ),
            suggested: crate::web::pages::suggested_launch_pages(),
        },
        LtiError::BadSignature => match (consumer, signed_origin(req, &state.settings)) {
            (Some(c), Ok(o)) => {
                let method = req.method().as_str();
                signature_evidence(req, state, method, &o, path, all, &c.secret)
            }
            _ => Hint::WrongSecret,
        },
        LtiError::StaleTimestamp(s) => Hint::TimestampSkew { seconds: *s },
        LtiError::FutureTimestamp(s) => Hint::TimestampSkew { seconds: -s },
        LtiError::ReplayedNonce => Hint::ReplayedNonce,
        LtiError::NonceForgotten => Hint::SignedBeforePruned,
        LtiError::MissingOAuthParam(field) => Hint::MissingField {
            field: field.to_string(),
        },
        LtiError::InvalidLaunch { log, .. } if log.starts_with("missing ") => Hint::MissingField {
            field: log.trim_start_matches("missing ").to_string(),
        },
        other => Hint::Malformed {
            detail: capped(&other.to_string(), 500),
        },
    }
}

/// The admin page's record of a refused launch: nothing secret or personal in it (values are
/// redacted in the base string, and only the parameters' names are kept).
fn refusal_row(
    req: &Request<'_>,
    state: &AppState,
    error: &LtiError,
    all: &Params,
    hint: Hint,
    signed_url: &str,
) -> refusals::Refusal {
    let redacted: Vec<(String, String)> = all
        .iter()
        .map(|(n, v)| (n.clone(), redact(n, v).into_owned()))
        .collect();
    let base_string = signature_base_string(
        req.method().as_str(),
        signed_url,
        redacted.iter().map(|(n, v)| (n.as_str(), v.as_str())),
    );
    let mut names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    names.dedup();
    let key = first(all, "oauth_consumer_key").unwrap_or("");
    refusals::Refusal {
        at: store::now(),
        consumer_key: capped(key, crate::consumer_input::MAX_KEY),
        reason: capped(&error.to_string(), 500),
        hint,
        signed_url: capped(signed_url, URL_CAP),
        base_string: capped(&base_string, 8192),
        param_names: capped(&names.join(", "), 4096),
        remote_addr: client_address(req, &state.settings),
        user_agent: req
            .headers()
            .get_one("User-Agent")
            .unwrap_or("")
            .chars()
            .take(300)
            .collect(),
    }
}

/// `s` with its control characters, line breaks and the characters that hide text or turn it
/// around escaped (`consumer_input::escape_hidden`), so a crafted value can neither forge log
/// lines nor make one read backwards, and nothing else: `escape_debug` would also put
/// backslashes before the advice's quotes.
fn without_controls(s: &str) -> String {
    crate::consumer_input::escape_hidden(s, false).into_owned()
}

/// At most `max` bytes of `s` (on a character boundary), marked when cut: a refusal is recorded
/// for anyone who can send a request, so what it stores must stay small. (Bytes, as the database
/// stores them; `error::excerpt` counts characters, for what a line or a page quotes.)
fn capped(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… (truncated)", &s[..end])
}

/// Re-checks a bad signature against the URLs the LMS may have meant, to name the mismatch.
fn signature_evidence(
    req: &Request<'_>,
    state: &AppState,
    method: &str,
    seen: &Origin,
    path: &str,
    params: &Params,
    secret: &str,
) -> Hint {
    let matches = |uri: &str| {
        let base = signature_base_string(
            method,
            uri,
            params.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        );
        verify(
            &base,
            secret,
            first(params, "oauth_signature").unwrap_or(""),
        )
    };
    let seen_full = base_uri(&seen.scheme, &seen.host, seen.port, path);
    let seen_url = capped(&seen_full, URL_CAP);
    let mut origins: Vec<Origin> = Vec::new();
    // The other scheme on the same host, with and without the port we saw.
    let flipped = if seen.scheme == "https" {
        "http"
    } else {
        "https"
    };
    origins.push(Origin {
        scheme: flipped.into(),
        host: seen.host.clone(),
        port: None,
    });
    origins.push(Origin {
        scheme: flipped.into(),
        host: seen.host.clone(),
        port: seen.port,
    });
    // What an untrusted proxy said, and (when public_url overrides it) the request's own Host,
    // over either scheme (a TLS proxy may be in front).
    origins.extend(untrusted_forwarded_origin(req));
    if state.settings.public_url.is_some() {
        let mut settings = state.settings.clone();
        settings.public_url = None;
        if let Ok(own) = signed_origin(req, &settings) {
            for scheme in ["http", "https"] {
                for port in [own.port, None] {
                    let (scheme, host) = (scheme.to_string(), own.host.clone());
                    origins.push(Origin { scheme, host, port });
                }
            }
        }
    }
    for o in origins {
        let url = base_uri(&o.scheme, &o.host, o.port, path);
        if url != seen_full && matches(&url) {
            let url = capped(&url, URL_CAP);
            let by_public_url = state.settings.public_url.is_some();
            return if o.host.eq_ignore_ascii_case(&seen.host) && o.scheme != seen.scheme {
                Hint::SchemeMismatch {
                    signed: url,
                    seen: seen_url,
                    by_public_url,
                }
            } else {
                Hint::HostMismatch {
                    signed: url,
                    seen: seen_url,
                    by_public_url,
                }
            };
        }
    }
    for other in launch_paths()
        .iter()
        .filter(|p| **p != path.trim_end_matches('/'))
    {
        let url = base_uri(&seen.scheme, &seen.host, seen.port, other);
        if matches(&url) {
            return Hint::PathMismatch {
                signed: url,
                seen: seen_url,
            };
        }
    }
    Hint::WrongSecret
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_text_escapes_what_could_forge_or_reverse_a_line() {
        let said = without_controls("lms\u{2028}Warning: x\r\n \u{202e}b\u{2066} 'quoted' é");
        assert_eq!(
            said,
            "lms\\u{2028}Warning: x\\r\\n \\u{202e}b\\u{2066} 'quoted' é"
        );
    }

    #[test]
    fn the_budget_is_per_bucket_and_per_minute() {
        let budget = RefusalBudget::default();
        let minute = 1_700_000_040; // a whole minute: 60 * 28_333_334
        assert!((0..30).all(|_| budget.admit("moodle", minute)));
        assert!(!budget.admit("moodle", minute + 59));
        // Other buckets have their own share.
        assert!(budget.admit("", minute));
        assert!(budget.admit("canvas", minute));
        // The next minute starts afresh.
        assert!(budget.admit("moodle", minute + 60));
    }
}
