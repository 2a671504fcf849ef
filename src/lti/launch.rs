//! The fields of an LTI 1.1 basic launch: OAuth protocol fields, freshness and the LTI fields.

use serde::{Deserialize, Serialize};

use super::params::{first, Params};
use super::roles::{self, Role};
use crate::consumer_input::escape_hidden;
use crate::error::LtiError;

/// The OAuth protocol fields of a launch, checked for presence and form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthFields {
    /// `oauth_consumer_key`.
    pub consumer_key: String,
    /// `oauth_signature` (base64).
    pub signature: String,
    /// `oauth_nonce`.
    pub nonce: String,
    /// `oauth_timestamp`, seconds since the Unix epoch.
    pub timestamp: i64,
}

/// Longest nonce we store; real LMSs send 32 to 64 characters.
const MAX_NONCE_LEN: usize = 255;
/// Longest consumer key (the command line and admin page allow no longer ones).
const MAX_KEY_LEN: usize = crate::consumer_input::MAX_KEY;

fn single<'a>(params: &'a Params, name: &'static str) -> Result<Option<&'a str>, LtiError> {
    let mut values = params
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str());
    let first = values.next();
    if values.next().is_some() {
        return Err(LtiError::DuplicateOAuthParam(name));
    }
    Ok(first)
}

fn required<'a>(params: &'a Params, name: &'static str) -> Result<&'a str, LtiError> {
    match single(params, name)? {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(LtiError::MissingOAuthParam(name)),
    }
}

/// Refuses OAuth fields (any `oauth_` name) sent in more than one of `places` (the query, the
/// body, the `Authorization` header): RFC 5849 section 3.5 has a client use one only, and
/// oauthlib refuses such requests too.
pub fn check_oauth_in_one_place(places: &[&Params]) -> Result<(), LtiError> {
    let with_oauth = places
        .iter()
        .filter(|p| p.iter().any(|(n, _)| n.starts_with("oauth_")))
        .count();
    match with_oauth {
        0 | 1 => Ok(()),
        _ => Err(LtiError::OAuthFieldsSplit),
    }
}

/// Reads and checks the OAuth fields (RFC 5849 section 3.2: all present, none repeated, HMAC-SHA1
/// only, version 1.0 if given).
pub fn read_oauth_fields(params: &Params) -> Result<OAuthFields, LtiError> {
    let consumer_key = required(params, "oauth_consumer_key")?;
    let signature = required(params, "oauth_signature")?;
    let method = required(params, "oauth_signature_method")?;
    let timestamp = required(params, "oauth_timestamp")?;
    let nonce = required(params, "oauth_nonce")?;
    if method != "HMAC-SHA1" {
        return Err(LtiError::UnsupportedSignatureMethod(
            method.chars().take(40).collect(),
        ));
    }
    if let Some(version) = single(params, "oauth_version")? {
        if version != "1.0" {
            // Present but empty is refused too (RFC 5849 3.1: if present, "1.0").
            let shown = match version.is_empty() {
                true => "(empty)".to_string(),
                false => version.chars().take(40).collect(),
            };
            return Err(LtiError::UnsupportedOAuthVersion(shown));
        }
    }
    let timestamp = if timestamp.len() <= 12 && timestamp.bytes().all(|b| b.is_ascii_digit()) {
        timestamp
            .parse()
            .map_err(|_| LtiError::MalformedTimestamp)?
    } else {
        return Err(LtiError::MalformedTimestamp);
    };
    if nonce.len() > MAX_NONCE_LEN {
        return Err(LtiError::OAuthParamTooLong("oauth_nonce"));
    }
    if consumer_key.len() > MAX_KEY_LEN {
        return Err(LtiError::OAuthParamTooLong("oauth_consumer_key"));
    }
    Ok(OAuthFields {
        consumer_key: consumer_key.to_string(),
        signature: signature.to_string(),
        nonce: nonce.to_string(),
        timestamp,
    })
}

/// Refuses a timestamp more than `window` seconds away from `now`, in either direction.
pub fn check_timestamp(timestamp: i64, now: i64, window: i64) -> Result<(), LtiError> {
    let skew = now - timestamp;
    if skew > window {
        Err(LtiError::StaleTimestamp(skew))
    } else if -skew > window {
        Err(LtiError::FutureTimestamp(-skew))
    } else {
        Ok(())
    }
}

/// What marks a request as a launch: a field named `oauth_*` or `lti_message_type`.
pub const LAUNCH_FIELD_MARKERS: [&[u8]; 2] = [b"oauth_", b"lti_message_type"];

/// True for the name of a field that makes a request a launch ([`LAUNCH_FIELD_MARKERS`]).
pub fn is_launch_field(name: &[u8]) -> bool {
    name.starts_with(LAUNCH_FIELD_MARKERS[0]) || name == LAUNCH_FIELD_MARKERS[1]
}

/// The prefixes of the fields LTI 1.1 (and OAuth) define, which hold one value each.
const LTI_FIELD_PREFIXES: &[&str] = &[
    "lti_",
    "oauth_",
    "resource_link_",
    "context_",
    "lis_",
    "launch_presentation_",
    "tool_consumer_",
    "user_",
];

/// The fields LTI 1.1 defines that none of [`LTI_FIELD_PREFIXES`] covers.
const LTI_FIELDS: &[&str] = &["roles", "role_scope_mentor"];

/// Checks the LTI fields of a verified launch: message type, version and resource link, and that
/// no field is sent twice with different values.
pub fn check_lti_fields(params: &Params) -> Result<(), LtiError> {
    // The signature covers the set of parameters, not their order: with `roles` sent twice, whoever
    // reorders the form picks the value that counts. The fields LTI defines hold one value each
    // (Canvas repeats query parameters in the body, with the same values); `custom_*` and `ext_*`
    // are the LMS's own, and others (a query the tool's owner put in the launch URL) nobody's:
    // they may repeat.
    let lti_defined = |name: &str| {
        LTI_FIELD_PREFIXES.iter().any(|p| name.starts_with(p)) || LTI_FIELDS.contains(&name)
    };
    // Sorted by name, a field with two values has two of them side by side (a launch has a few
    // dozen fields: cheaper than hashing them).
    let mut defined: Vec<(&str, &str)> = params
        .iter()
        .filter(|(n, _)| lti_defined(n))
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    defined.sort_unstable();
    let twice = defined
        .windows(2)
        .find(|pair| pair[0].0 == pair[1].0 && pair[0].1 != pair[1].1);
    if let Some(&[(name, _), _]) = twice {
        // Which of two return URLs would be the reorderer's choice: then none is followed.
        let mut return_urls = defined
            .iter()
            .filter(|(n, _)| *n == "launch_presentation_return_url")
            .map(|(_, v)| *v);
        let first_url = return_urls.next();
        let return_url = first_url.filter(|url| return_urls.all(|other| other == *url));
        return Err(LtiError::InvalidLaunch {
            log: format!("field {name} is sent more than once with different values")
                .chars()
                .take(200)
                .collect(),
            return_url: return_url.map(str::to_string),
        });
    }
    let problem = match (
        first(params, "lti_message_type"),
        first(params, "lti_version"),
        first(params, "resource_link_id"),
    ) {
        (None | Some(""), _, _) => "missing lti_message_type".to_string(),
        (Some(t), _, _) if t != "basic-lti-launch-request" => {
            format!("unsupported lti_message_type {t}")
        }
        (_, None | Some(""), _) => "missing lti_version".to_string(),
        (_, Some(v), _) if v != "LTI-1p0" => format!("unsupported lti_version {v}"),
        (_, _, None | Some("")) => "missing resource_link_id".to_string(),
        _ => return Ok(()),
    };
    Err(LtiError::InvalidLaunch {
        log: problem.chars().take(200).collect(),
        return_url: first(params, "launch_presentation_return_url").map(str::to_string),
    })
}

/// What a launch told us about the user and the course; kept in the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchData {
    /// The consumer (LMS) that signed the launch.
    pub consumer_key: String,
    /// Every launch parameter but `oauth_signature`, in the order received.
    pub params: Params,
}

impl LaunchData {
    /// Keeps the launch parameters, dropping the signature (never to be shown or stored).
    pub fn new(consumer_key: String, params: Params) -> Self {
        let params = params
            .into_iter()
            .filter(|(n, _)| n != "oauth_signature")
            .collect();
        LaunchData {
            consumer_key,
            params,
        }
    }

    /// The first value of a parameter; empty values count as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        first(&self.params, name).filter(|v| !v.is_empty())
    }

    /// `user_id`, or an empty string for an anonymous launch.
    pub fn user_id(&self) -> &str {
        self.get("user_id").unwrap_or("")
    }

    /// `resource_link_id`: the LMS's id of the link that launched (required, so never empty after
    /// a verified launch); with the consumer key, it names the activity.
    pub fn resource_link_id(&self) -> &str {
        self.get("resource_link_id").unwrap_or("")
    }

    /// `context_id`: the LMS's id of the course, when it sent one.
    pub fn context_id(&self) -> Option<&str> {
        self.get("context_id")
    }

    /// True when the LMS takes result data of `kind` (`text`, `url`) with a score: it lists it in
    /// `ext_outcome_data_values_accepted` (Canvas's extension; other LMSs send none and may refuse
    /// a score that carries it).
    pub fn accepts_result_data(&self, kind: &str) -> bool {
        self.get("ext_outcome_data_values_accepted")
            .is_some_and(|list| list.split(',').any(|k| k.trim().eq_ignore_ascii_case(kind)))
    }

    /// The roles, parsed.
    pub fn roles(&self) -> Vec<Role> {
        roles::parse_roles(self.get("roles").unwrap_or(""))
    }

    /// True for course staff (see [`Role::is_staff`]).
    pub fn is_staff(&self) -> bool {
        roles::is_staff(&self.roles())
    }

    /// True for staff who are not also learners: they have no score of their own to send, though
    /// Moodle sends them a result id too.
    pub fn is_staff_only(&self) -> bool {
        let roles = self.roles();
        roles::is_staff(&roles) && !roles.iter().any(|r| r.is_learner())
    }

    /// `lis_person_contact_email_primary`.
    pub fn email(&self) -> Option<&str> {
        self.get("lis_person_contact_email_primary")
    }

    /// The full name, or given and family names joined.
    pub fn full_name(&self) -> Option<String> {
        if let Some(full) = self.get("lis_person_name_full") {
            return Some(full.to_string());
        }
        let parts: Vec<&str> = ["lis_person_name_given", "lis_person_name_family"]
            .iter()
            .filter_map(|n| self.get(n))
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    }

    /// PyLTI's user name: `lis_person_sourcedid`, else the email, else `user_id`.
    pub fn username(&self) -> &str {
        self.get("lis_person_sourcedid")
            .or_else(|| self.email())
            .unwrap_or_else(|| self.user_id())
    }

    /// The name to show: the username, followed by the full name when the LMS sent one, each with
    /// the characters that hide text or turn it around written as escapes (a right-to-left
    /// override in the full name would otherwise turn the parentheses around it).
    pub fn display_name(&self) -> String {
        let username = escape_hidden(self.username(), true);
        match self.full_name() {
            // An anonymous launch may still name its user: the name alone, not " (name)".
            Some(full) if self.username().is_empty() => escape_hidden(&full, true).into_owned(),
            Some(full) if full != self.username() => {
                format!("{username} ({})", escape_hidden(&full, true))
            }
            _ => username.into_owned(),
        }
    }

    /// Parameters whose names start with `prefix` (`custom_`, `ext_`), in the order received.
    pub fn with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.params
            .iter()
            .filter(move |(n, _)| n.starts_with(prefix))
            .map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    const OAUTH: &[(&str, &str)] = &[
        ("oauth_consumer_key", "k"),
        ("oauth_signature", "c2ln"),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", "1700000000"),
        ("oauth_nonce", "n"),
    ];

    #[test]
    fn oauth_fields_present_once_and_well_formed() {
        assert_eq!(
            read_oauth_fields(&params(OAUTH)).unwrap().timestamp,
            1_700_000_000
        );
        for (i, (name, _)) in OAUTH.iter().enumerate() {
            let mut p = params(OAUTH);
            p.remove(i);
            assert_eq!(
                read_oauth_fields(&p),
                Err(LtiError::MissingOAuthParam(name))
            );
            let mut p = params(OAUTH);
            p[i].1.clear();
            assert_eq!(
                read_oauth_fields(&p),
                Err(LtiError::MissingOAuthParam(name))
            );
        }
        let mut p = params(OAUTH);
        p.push(("oauth_nonce".into(), "m".into()));
        assert_eq!(
            read_oauth_fields(&p),
            Err(LtiError::DuplicateOAuthParam("oauth_nonce"))
        );
        let (all, none) = (params(OAUTH), Params::new());
        let (key, rest) = (params(&OAUTH[..1]), params(&OAUTH[1..]));
        assert_eq!(check_oauth_in_one_place(&[&none, &all, &none]), Ok(()));
        assert_eq!(check_oauth_in_one_place(&[&none, &none, &none]), Ok(()));
        assert_eq!(
            check_oauth_in_one_place(&[&key, &rest, &none]),
            Err(LtiError::OAuthFieldsSplit)
        );
        let mut p = params(OAUTH);
        p[2].1 = "PLAINTEXT".into();
        assert!(matches!(
            read_oauth_fields(&p),
            Err(LtiError::UnsupportedSignatureMethod(_))
        ));
        let mut p = params(OAUTH);
        p[3].1 = "17e8".into();
        assert_eq!(read_oauth_fields(&p), Err(LtiError::MalformedTimestamp));
        let mut p = params(OAUTH);
        p.push(("oauth_version".into(), "2.0".into()));
        assert!(matches!(
            read_oauth_fields(&p),
            Err(LtiError::UnsupportedOAuthVersion(_))
        ));
        // Sent but empty: refused, in words that say so.
        let mut p = params(OAUTH);
        p.push(("oauth_version".into(), String::new()));
        let refused = read_oauth_fields(&p).map(|_| ()).unwrap_err();
        assert_eq!(refused.to_string(), "unsupported oauth_version (empty)");
    }

    #[test]
    fn timestamp_window_both_ways() {
        assert!(check_timestamp(1000, 1300, 300).is_ok());
        assert!(check_timestamp(1600, 1300, 300).is_ok());
        assert_eq!(
            check_timestamp(999, 1300, 300),
            Err(LtiError::StaleTimestamp(301))
        );
        assert_eq!(
            check_timestamp(1601, 1300, 300),
            Err(LtiError::FutureTimestamp(301))
        );
    }

    #[test]
    fn lti_fields_name_the_parameter() {
        let ok = params(&[
            ("lti_message_type", "basic-lti-launch-request"),
            ("lti_version", "LTI-1p0"),
            ("resource_link_id", "r"),
        ]);
        assert!(check_lti_fields(&ok).is_ok());
        let log_of = |p: Params| match check_lti_fields(&p) {
            Err(LtiError::InvalidLaunch { log, .. }) => log,
            other => panic!("unexpected {other:?}"),
        };
        let mut p = ok.clone();
        p.remove(2);
        assert_eq!(log_of(p), "missing resource_link_id");
        let mut p = ok.clone();
        p[1].1 = "LTI-2p0".into();
        assert_eq!(log_of(p), "unsupported lti_version LTI-2p0");
        let mut p = ok.clone();
        p.remove(0);
        assert_eq!(log_of(p), "missing lti_message_type");
        // Sent twice: the same value passes (Canvas), different values do not, in either order;
        // the LMS's own fields may repeat.
        let mut p = ok.clone();
        p.extend(params(&[("roles", "Learner"), ("roles", "Learner")]));
        p.extend(params(&[("custom_tag", "a"), ("custom_tag", "b")]));
        p.extend(params(&[("ext_x", "a"), ("ext_x", "")]));
        // A query the tool's owner put in the launch URL (`/initial?tag=a&tag=b`) is no LTI field.
        p.extend(params(&[("tag", "a"), ("tag", "b")]));
        assert!(check_lti_fields(&p).is_ok());
        for field in [
            "user_id",
            "context_id",
            "lis_person_contact_email_primary",
            "role_scope_mentor",
        ] {
            let mut p = ok.clone();
            p.extend(params(&[(field, "a"), (field, "b")]));
            assert_eq!(
                log_of(p),
                format!("field {field} is sent more than once with different values")
            );
        }
        let mut p = ok.clone();
        p.extend(params(&[
            ("launch_presentation_return_url", "https://lms.test/a"),
            ("launch_presentation_return_url", "https://lms.test/b"),
        ]));
        assert!(matches!(
            check_lti_fields(&p),
            Err(LtiError::InvalidLaunch {
                return_url: None,
                ..
            })
        ));
        for (a, b) in [("Learner", "Instructor"), ("Instructor", "Learner")] {
            let mut p = ok.clone();
            p.extend(params(&[("roles", a), ("user_id", "u"), ("roles", b)]));
            assert_eq!(
                log_of(p),
                "field roles is sent more than once with different values"
            );
        }
    }

    #[test]
    fn names_follow_pylti() {
        let d = LaunchData::new(
            "k".into(),
            params(&[
                ("user_id", "u1"),
                ("lis_person_name_given", "Ann"),
                ("oauth_nonce", "x"),
                ("oauth_signature", "sig"),
            ]),
        );
        assert_eq!(d.username(), "u1");
        assert_eq!(d.get("oauth_nonce"), Some("x"));
        assert_eq!(d.display_name(), "u1 (Ann)");
        assert!(d.params.iter().all(|(n, _)| n != "oauth_signature"));
        let d = LaunchData::new(
            "k".into(),
            params(&[
                ("user_id", "u1"),
                ("lis_person_contact_email_primary", "a@b"),
                ("lis_person_sourcedid", ""),
            ]),
        );
        assert_eq!(d.username(), "a@b");
    }

    #[test]
    fn link_and_course_ids() {
        let d = LaunchData::new(
            "k".into(),
            params(&[("resource_link_id", "rl-9"), ("context_id", "")]),
        );
        assert_eq!(d.resource_link_id(), "rl-9");
        assert_eq!(d.context_id(), None);
        let d = LaunchData::new("k".into(), params(&[("context_id", "c-1")]));
        assert_eq!((d.resource_link_id(), d.context_id()), ("", Some("c-1")));
    }

    #[test]
    fn result_data_only_of_the_kinds_the_lms_lists() {
        let canvas = LaunchData::new(
            "k".into(),
            params(&[("ext_outcome_data_values_accepted", "url, Text")]),
        );
        assert!(canvas.accepts_result_data("text") && canvas.accepts_result_data("url"));
        assert!(!canvas.accepts_result_data("lti_launch_url"));
        let moodle = LaunchData::new("k".into(), params(&[("user_id", "u")]));
        assert!(!moodle.accepts_result_data("text"));
    }

    #[test]
    fn custom_fields_by_prefix_in_the_order_received() {
        let d = LaunchData::new(
            "k".into(),
            params(&[
                ("custom_b", "2"),
                ("user_id", "u"),
                ("custom_a", "1"),
                ("ext_custom_c", "3"),
            ]),
        );
        let custom: Vec<_> = d.with_prefix("custom_").collect();
        assert_eq!(custom, [("custom_b", "2"), ("custom_a", "1")]);
    }
}
