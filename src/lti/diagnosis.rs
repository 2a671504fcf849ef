//! Why a launch was refused, as a concrete hint for the administrator: computed from the evidence
//! (what we tried, what matched), never from guesses about secrets.

use serde::{Deserialize, Serialize};

/// A hint naming the likely cause of a refused launch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Hint {
    /// The LMS signed another scheme (https behind a TLS proxy, typically).
    SchemeMismatch {
        /// The scheme the signature matches.
        signed: String,
        /// The scheme this tool saw.
        seen: String,
    },
    /// The LMS signed another host or port than the one this tool reconstructed.
    HostMismatch {
        /// The host (and port) the signature matches.
        signed: String,
        /// The host (and port) this tool saw.
        seen: String,
    },
    /// The launch was signed for another path of this tool.
    PathMismatch {
        /// The path the signature matches.
        signed: String,
        /// The path the launch arrived at.
        seen: String,
    },
    /// The LMS clock differs from ours by this many seconds (positive: LMS behind).
    TimestampSkew {
        /// Our clock minus the LMS's, in seconds.
        seconds: i64,
    },
    /// The same nonce arrived twice.
    ReplayedNonce,
    /// No consumer has the key, but one with a very similar key exists.
    UnknownKeyLike {
        /// The registered key it resembles.
        similar: String,
    },
    /// No consumer has the key.
    UnknownKey,
    /// The consumer is disabled.
    DisabledKey,
    /// A required field is absent or malformed.
    MissingField {
        /// The field's name.
        field: String,
    },
    /// The URL and parameters are as signed, so the secret must differ.
    WrongSecret,
    /// The launch is malformed in another way (repeated field, bad timestamp, PLAINTEXT...).
    Malformed {
        /// What is wrong, as the refusal said it.
        detail: String,
    },
}

impl Hint {
    /// A short code, stable for scripts.
    pub fn code(&self) -> &'static str {
        match self {
            Hint::SchemeMismatch { .. } => "scheme_mismatch",
            Hint::HostMismatch { .. } => "host_mismatch",
            Hint::PathMismatch { .. } => "path_mismatch",
            Hint::TimestampSkew { .. } => "timestamp_skew",
            Hint::ReplayedNonce => "replayed_nonce",
            Hint::UnknownKeyLike { .. } => "unknown_key_typo",
            Hint::UnknownKey => "unknown_key",
            Hint::DisabledKey => "disabled_key",
            Hint::MissingField { .. } => "missing_field",
            Hint::WrongSecret => "wrong_secret",
            Hint::Malformed { .. } => "malformed",
        }
    }

    /// What the administrator should check, in plain words.
    pub fn advice(&self) -> String {
        match self {
            Hint::SchemeMismatch { signed, seen } => format!(
                "The LMS signed {signed} but this tool saw {seen}: it is behind a TLS proxy. Set the public_url setting \
                 (ROCKET_PUBLIC_URL) to the address the LMS uses, or add the proxy's address to the trusted_proxies setting."
            ),
            Hint::HostMismatch { signed, seen } => format!(
                "The LMS signed {signed} but this tool saw {seen}. Set the public_url setting (ROCKET_PUBLIC_URL) to the \
                 address the LMS uses, or add the proxy's address to the trusted_proxies setting."
            ),
            Hint::PathMismatch { signed, seen } => format!(
                "The launch was signed for {signed} but arrived at {seen}: check the launch URL typed in the LMS."
            ),
            Hint::TimestampSkew { seconds } => {
                let (n, way) = if *seconds >= 0 { (*seconds, "behind") } else { (-seconds, "ahead of") };
                format!(
                    "The launch's timestamp is {n} seconds {way} this tool's clock: check the LMS clock (NTP), or this server's."
                )
            }
            Hint::ReplayedNonce => {
                "The same launch arrived twice: a double submit by the user, or a proxy retrying the POST.".into()
            }
            Hint::UnknownKeyLike { similar } => {
                format!("No consumer has this key, but {similar:?} does: probably a typo in the LMS's consumer key.")
            }
            Hint::UnknownKey => "No consumer has this key: add it, or fix the key in the LMS.".into(),
            Hint::DisabledKey => "This consumer key is disabled: enable it if the LMS should launch the tool.".into(),
            Hint::MissingField { field } => {
                format!("The launch lacks the required field {field}: check the LMS's tool settings.")
            }
            Hint::WrongSecret => "The URL and parameters match what this tool expects, so the shared secret in the LMS \
                                  differs from this consumer's: paste it again or rotate it."
                .into(),
            Hint::Malformed { detail } => format!("The launch is malformed ({detail}): check the LMS's tool settings."),
        }
    }
}

/// Edit distance between two short strings (keys are at most 255 characters).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The existing key closest to `key`, when it is close enough to be a typo (case, or two edits).
pub fn similar_key<'a>(key: &str, existing: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    existing
        .into_iter()
        .filter(|k| *k != key && k.len().abs_diff(key.len()) <= 2)
        .map(|k| {
            (
                k,
                if k.eq_ignore_ascii_case(key) {
                    0
                } else {
                    distance(k, key)
                },
            )
        })
        .filter(|(k, d)| *d <= 2 && *d < k.len().max(key.len()))
        .min_by_key(|(_, d)| *d)
        .map(|(k, _)| k)
}

/// True for fields whose values identify a person or hold a credential, kept out of the
/// refused-launch log: the standard ones and the LMS extensions that carry a user id, login, name
/// or email (Moodle's `ext_user_username`, Sakai's `ext_sakai_eid`, D2L's `ext_d2l_orgdefinedid`,
/// Canvas's `custom_canvas_user_id`, custom copies of `lis_person_*`, ...) or a credential (an
/// LMS session such as Sakai's `ext_sakai_session`, a token, password, secret, key, cookie,
/// authorization or JWT), matched by name since every LMS names its own. The OAuth fields and the
/// consumer's own `tool_consumer_*` fields (unless named like a credential) stay readable.
pub fn is_user_field(name: &str) -> bool {
    const PERSON: [&str; 10] = [
        "user",
        "person",
        "email",
        "login",
        "_eid",
        "mentor",
        "orgdefinedid",
        "displayid",
        "student",
        "learner",
    ];
    // The OAuth protocol fields are no secret (the signature never enters the base string).
    const OAUTH: [&str; 7] = [
        "oauth_consumer_key",
        "oauth_nonce",
        "oauth_timestamp",
        "oauth_signature_method",
        "oauth_version",
        "oauth_callback",
        "oauth_body_hash",
    ];
    let lower = name.to_ascii_lowercase();
    if OAUTH.contains(&lower.as_str()) {
        return false;
    }
    if is_credential(name) {
        return true;
    }
    if lower.starts_with("oauth_") || lower.starts_with("tool_consumer_") {
        return false;
    }
    // Course sourcedids and Canvas's list of grade formats are not about a person.
    let person_sourcedid = matches!(
        lower.as_str(),
        "lis_person_sourcedid" | "lis_result_sourcedid"
    ) || (lower.starts_with("custom_") && lower.contains("sourcedid"));
    person_sourcedid || PERSON.iter().any(|mark| lower.contains(mark))
}

/// True when a word of the name (split at `_`, `-`, `.` and camelCase) says it holds a
/// credential: a secret, password, token, key, cookie, authorization or session id. Whole words,
/// so `custom_passing_score`, `custom_keywords` or `custom_sidebar` stay readable.
fn is_credential(name: &str) -> bool {
    const WORDS: [&str; 21] = [
        "secret",
        "secrets",
        "password",
        "passwd",
        "passphrase",
        "pwd",
        "token",
        "credential",
        "credentials",
        "key",
        "apikey",
        "privatekey",
        "accesskey",
        "sesskey",
        "sessionid",
        "sid",
        "cookie",
        "jwt",
        "bearer",
        "auth",
        "authorization",
    ];
    // LMSs lower-case custom names and join words (`accessToken` arrives as
    // `custom_accesstoken`), so a word may also end in a credential or hold an unambiguous one.
    const INSIDE: [&str; 6] = ["secret", "passw", "credential", "cookie", "jwt", "bearer"];
    const ENDINGS: [&str; 10] = [
        "token",
        "tokens",
        "apikey",
        "accesskey",
        "privatekey",
        "secretkey",
        "sessionkey",
        "authkey",
        "sessionid",
        "sesskey",
    ];
    let words = words_of(name);
    let any = |w: &str| {
        WORDS.contains(&w)
            || w == "authz"
            || INSIDE.iter().any(|m| w.contains(m))
            || ENDINGS.iter().any(|e| w.ends_with(e))
    };
    // A session as the last word is an LMS session id (Sakai's `ext_sakai_session`), except
    // Sakai's term name `ext_sakai_academic_session`.
    let session = match words.as_slice() {
        [.., before, last] if last == "session" => before != "academic",
        [.., s, id] if s == "session" => id == "id" || id == "key",
        _ => false,
    };
    session || words.iter().any(|w| any(w))
}

/// The lower-case words of a field name, split at non-alphanumerics and camelCase humps.
fn words_of(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut previous_lower = false;
    for c in name.chars() {
        let hump = c.is_ascii_uppercase() && previous_lower;
        if (!c.is_ascii_alphanumeric() || hump) && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        if c.is_ascii_alphanumeric() {
            word.push(c.to_ascii_lowercase());
        }
        previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// Replaces the value of a user field by a placeholder that gives only its length.
pub fn redact<'a>(name: &str, value: &'a str) -> std::borrow::Cow<'a, str> {
    if is_user_field(name) {
        std::borrow::Cow::Owned(format!("[{} chars]", value.chars().count()))
    } else {
        std::borrow::Cow::Borrowed(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_typos_not_strangers() {
        let keys = ["canvas-main", "moodle", "ab"];
        assert_eq!(similar_key("canvas-mian", keys), Some("canvas-main"));
        assert_eq!(similar_key("Moodle", keys), Some("moodle"));
        assert_eq!(similar_key("blackboard", keys), None);
        assert_eq!(similar_key("xy", keys), None);
    }

    #[test]
    fn skew_is_a_plain_integer() {
        assert!(Hint::TimestampSkew { seconds: 3600 }
            .advice()
            .contains("3600 seconds behind"));
        assert!(Hint::TimestampSkew { seconds: -42 }
            .advice()
            .contains("42 seconds ahead"));
    }

    #[test]
    fn redacts_user_fields_only() {
        assert_eq!(redact("user_id", "alice"), "[5 chars]");
        assert_eq!(redact("context_title", "Maths"), "Maths");
        for name in [
            "lis_person_name_full",
            "lis_result_sourcedid",
            "user_image",
            "ext_user_username",
            "ext_d2l_username",
            "ext_sakai_eid",
            "ext_sakai_session",
            "custom_api_token",
            "custom_api_key",
            "custom_auth_header",
            "custom_jwt",
            "custom_passwd",
            "custom_pwd",
            "custom_credentials",
            "custom_cookie",
            "custom_apikey",
            "custom_access_key",
            "custom_private_key",
            "custom_authorization",
            "custom_privatekey",
            "custom_x-api-key",
            "custom_apiKey",
            "custom_auth",
            "custom_x.auth",
            "custom_authz",
            "custom_passphrase",
            "custom_bearer",
            "custom_sid",
            "custom_session_id",
            "custom_accesstoken",
            "custom_adminpassword",
            "custom_clientsecret",
            "custom_api_tokens",
            "tool_consumer_secret",
            "tool_consumer_instance_secret",
            "oauth_consumer_secret",
            "oauth_token_secret",
            "OAUTH_SECRET",
            "custom_canvas_user_id",
            "custom_canvas_user_login_id",
            "custom_lis_person_contact_email_primary",
            "role_scope_mentor",
            "lis_person_sourcedid",
            "custom_result_sourcedid",
            "ext_d2l_orgdefinedid",
            "ext_sakai_provider_displayid",
            "ext_sakai_provider_eid",
            "custom_student_id",
        ] {
            assert!(is_user_field(name), "{name}");
        }
        for name in [
            "oauth_consumer_key",
            "oauth_nonce",
            "roles",
            "resource_link_id",
            "context_id",
            "lis_outcome_service_url",
            "launch_presentation_return_url",
            "tool_consumer_instance_guid",
            "custom_author",
            "custom_authority",
            "ext_sakai_academic_session",
            "custom_passing_score",
            "custom_grade_passback",
            "custom_keywords",
            "custom_monkey",
            "custom_sidebar",
            "custom_considered",
            "custom_tokenizer_lang",
            "custom_oauth_version",
            "ext_oauth_body_hash_required",
            "oauth_callback",
            "tool_consumer_instance_contact_email",
            "lis_course_offering_sourcedid",
            "lis_course_section_sourcedid",
            "ext_ims_lis_resultvalue_sourcedids",
        ] {
            assert!(!is_user_field(name), "{name}");
        }
    }
}
