//! Why a launch was refused, as a concrete hint for the administrator: computed from the evidence
//! (what we tried, what matched), never from guesses about secrets.

use serde::{Deserialize, Serialize};

/// A hint naming the likely cause of a refused launch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Hint {
    /// The LMS signed another scheme (https behind a TLS proxy, typically).
    SchemeMismatch {
        /// The URL the signature matches (its scheme differs).
        signed: String,
        /// The URL this tool checked.
        seen: String,
        /// Whether `seen` came from the `public_url` setting (then the LMS's URL is the likely
        /// culprit, not a proxy). Absent in hints recorded by older builds.
        #[serde(default)]
        by_public_url: bool,
    },
    /// The LMS signed another host or port than the one this tool reconstructed.
    HostMismatch {
        /// The URL the signature matches (its host or port differs).
        signed: String,
        /// The URL this tool checked.
        seen: String,
        /// Whether `seen` came from the `public_url` setting.
        #[serde(default)]
        by_public_url: bool,
    },
    /// The launch was signed for another path of this tool.
    PathMismatch {
        /// The URL the signature matches (its path differs).
        signed: String,
        /// The URL the launch arrived at.
        seen: String,
    },
    /// The launch was sent to an address of this tool that takes none (the home page, a
    /// session-only page without a session, an address with no page).
    NotLaunchAddress {
        /// Where the launch arrived.
        seen: String,
        /// The launch pages to use instead, in words ("/initial or /any"); empty in hints
        /// recorded before it was kept.
        #[serde(default)]
        suggested: String,
    },
    /// The LMS clock differs from ours by this many seconds (positive: LMS behind).
    TimestampSkew {
        /// Our clock minus the LMS's, in seconds.
        seconds: i64,
    },
    /// The same nonce arrived twice.
    ReplayedNonce,
    /// The launch was signed no later than launches of its consumer whose nonces were already
    /// pruned (by a clock that was ahead), so it cannot be told from a replay of one.
    SignedBeforePruned,
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
    /// A hint of a kind this version does not know (recorded by a newer one).
    #[serde(other)]
    Unknown,
}

impl Hint {
    /// A short code, stable for scripts.
    pub fn code(&self) -> &'static str {
        match self {
            Hint::SchemeMismatch { .. } => "scheme_mismatch",
            Hint::HostMismatch { .. } => "host_mismatch",
            Hint::PathMismatch { .. } => "path_mismatch",
            Hint::NotLaunchAddress { .. } => "not_launch_address",
            Hint::TimestampSkew { .. } => "timestamp_skew",
            Hint::ReplayedNonce => "replayed_nonce",
            Hint::SignedBeforePruned => "signed_before_pruned",
            Hint::UnknownKeyLike { .. } => "unknown_key_typo",
            Hint::UnknownKey => "unknown_key",
            Hint::DisabledKey => "disabled_key",
            Hint::MissingField { .. } => "missing_field",
            Hint::WrongSecret => "wrong_secret",
            Hint::Malformed { .. } => "malformed",
            Hint::Unknown => "unknown",
        }
    }

    /// What the administrator should check, in plain words.
    pub fn advice(&self) -> String {
        match self {
            Hint::SchemeMismatch { signed, seen, by_public_url: true }
            | Hint::HostMismatch { signed, seen, by_public_url: true } => format!(
                "The LMS signed {signed} but this tool's address is {seen} (its public_url setting): correct the launch \
                 URL in the LMS, or public_url (ROCKET_PUBLIC_URL) if that is not the address the LMS should use."
            ),
            Hint::SchemeMismatch { signed, seen, .. } | Hint::HostMismatch { signed, seen, .. } => format!(
                "The LMS signed {signed} but this tool saw {seen}, typically behind a proxy. Set the public_url setting \
                 (ROCKET_PUBLIC_URL) to the address the LMS uses; or, if the address this came from is your own proxy's, \
                 list it in the trusted_proxies setting and have it send X-Forwarded-Proto, -Host and -Port as the LMS \
                 reaches it (forwarded headers from any other address are ignored on purpose)."
            ),
            Hint::PathMismatch { signed, seen } => format!(
                "The launch was signed for {signed} but arrived at {seen}: check the launch URL typed in the LMS."
            ),
            Hint::NotLaunchAddress { seen, suggested } if !suggested.is_empty() => format!(
                "The launch arrived at {seen}, which is not a launch address of this tool: set the launch URL in the LMS \
                 to one of its launch pages, such as {suggested} (the tool's home page lists them all)."
            ),
            Hint::NotLaunchAddress { seen, .. } => format!(
                "The launch arrived at {seen}, which is not a launch address of this tool: set the launch URL in the LMS \
                 to one of its launch pages (the tool's home page lists them)."
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
            Hint::SignedBeforePruned => "The launch was signed no later than launches of this key that this tool has \
                                         already forgotten, so it could be a copy of one: a clock was ahead when they \
                                         were forgotten (this server's, or the LMS's, since set back). Launches the LMS \
                                         signs later pass: check both clocks (NTP). A new consumer key for the LMS \
                                         works at once, unless every key is refused (the mark a build before \
                                         migration 14 left holds for all); removing and adding this key again \
                                         does not."
                .into(),
            Hint::UnknownKeyLike { similar } => {
                format!("No consumer has this key, but {similar:?} does: probably a typo in the LMS's consumer key.")
            }
            Hint::UnknownKey => "No consumer has this key: add it, or fix the key in the LMS.".into(),
            Hint::DisabledKey => "This consumer key is disabled: enable it if the LMS should launch the tool.".into(),
            Hint::MissingField { field } => {
                format!("The launch lacks the required field {field}: check the LMS's tool settings.")
            }
            Hint::WrongSecret => "The signature fails with this consumer's secret at every address this tool could be \
                                  reached at, and nothing else is wrong with the launch: most likely the shared secret in \
                                  the LMS differs from this consumer's (paste it again or rotate it); otherwise the LMS \
                                  signed an address this tool cannot guess (check the launch URL in the LMS, its host in lower case, as some \
                                  LMSs sign it as typed; a proxy that serves the tool under a path prefix changes the \
                                  signed path: its pages must be at the root)."
                .into(),
            Hint::Malformed { detail } => format!("The launch is malformed ({detail}): check the LMS's tool settings."),
            Hint::Unknown => "This refusal was recorded by another version of the tool, whose hint this one cannot read.".into(),
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
    // Lengths in characters, as the distance counts: an invisible character added to a key is
    // three bytes but one edit.
    let chars = key.chars().count();
    existing
        .into_iter()
        .filter(|k| *k != key && k.chars().count().abs_diff(chars) <= 2)
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
        .filter(|(k, d)| *d <= 2 && *d < k.chars().count().max(chars))
        .min_by_key(|(_, d)| *d)
        .map(|(k, _)| k)
}

/// True for the fields whose values the refused-launch log keeps: the OAuth protocol fields (the
/// signature never enters the base string) and the LTI fields that describe the launch, the course
/// and the LMS, none of them about a person or a credential. Every other value (the user fields,
/// `custom_*`, unknown `ext_*`, the return URL, which carries Moodle's `sesskey`) is logged only by
/// its length: an allow-list, since every LMS names its own fields and a list of dangerous names
/// always misses one (`custom_pin`, `custom_ssn`...).
pub fn is_readable_field(name: &str) -> bool {
    const READABLE: [&str; 36] = [
        "oauth_consumer_key",
        "oauth_nonce",
        "oauth_timestamp",
        "oauth_signature_method",
        "oauth_version",
        "oauth_callback",
        "oauth_body_hash",
        "lti_message_type",
        "lti_version",
        "resource_link_id",
        "resource_link_title",
        "resource_link_description",
        "roles",
        "context_id",
        "context_type",
        "context_title",
        "context_label",
        "launch_presentation_locale",
        "launch_presentation_document_target",
        "launch_presentation_width",
        "launch_presentation_height",
        "launch_presentation_css_url",
        "lis_outcome_service_url",
        "lis_course_offering_sourcedid",
        "lis_course_section_sourcedid",
        "tool_consumer_info_product_family_code",
        "tool_consumer_info_version",
        "tool_consumer_instance_guid",
        "tool_consumer_instance_name",
        "tool_consumer_instance_description",
        "tool_consumer_instance_url",
        "ext_lms",
        "ext_roles",
        "ext_ims_lis_basic_outcome_url",
        "ext_ims_lis_resultvalue_sourcedids",
        "ext_ims_lis_memberships_url",
    ];
    READABLE.contains(&name)
}

/// Replaces the value of any field that is not [`is_readable_field`] by a placeholder that gives
/// only its length.
pub fn redact<'a>(name: &str, value: &'a str) -> std::borrow::Cow<'a, str> {
    if is_readable_field(name) {
        std::borrow::Cow::Borrowed(value)
    } else {
        std::borrow::Cow::Owned(format!("[{} chars]", value.chars().count()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_recorded_by_older_builds_still_read() {
        let old =
            r#"{"kind":"host_mismatch","signed":"https://a.edu/any","seen":"http://b.edu/any"}"#;
        let hint: Hint = serde_json::from_str(old).expect("reads");
        assert_eq!(
            hint,
            Hint::HostMismatch {
                signed: "https://a.edu/any".into(),
                seen: "http://b.edu/any".into(),
                by_public_url: false,
            }
        );
        assert!(hint.advice().contains("trusted_proxies"));
        let old = r#"{"kind":"not_launch_address","seen":"https://a.edu/Any"}"#;
        let hint: Hint = serde_json::from_str(old).expect("reads");
        assert!(hint
            .advice()
            .contains("one of its launch pages (the tool's home page"));
    }

    #[test]
    fn finds_typos_not_strangers() {
        let keys = ["canvas-main", "moodle", "ab"];
        assert_eq!(similar_key("canvas-mian", keys), Some("canvas-main"));
        assert_eq!(similar_key("Moodle", keys), Some("moodle"));
        assert_eq!(similar_key("blackboard", keys), None);
        assert_eq!(similar_key("xy", keys), None);
        // Invisible or text-direction characters are edits too, however many bytes they take.
        assert_eq!(similar_key("moo\u{200b}dle", keys), Some("moodle"));
        assert_eq!(similar_key("mood\u{202e}le", keys), Some("moodle"));
        assert_eq!(similar_key("\u{2066}moodle\u{2069}", keys), Some("moodle"));
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
    fn keeps_only_the_values_of_descriptive_fields() {
        assert_eq!(redact("user_id", "alice"), "[5 chars]");
        assert_eq!(redact("context_title", "Maths"), "Maths");
        for name in [
            "user_id",
            "lis_person_name_full",
            "lis_person_contact_email_primary",
            "lis_person_sourcedid",
            "lis_result_sourcedid",
            "user_image",
            "role_scope_mentor",
            "launch_presentation_return_url",
            "ext_user_username",
            "ext_d2l_orgdefinedid",
            "ext_sakai_eid",
            "ext_sakai_session",
            "ext_ims_lis_memberships_id",
            "custom_canvas_user_id",
            "custom_api_token",
            "custom_pin",
            "custom_otp",
            "custom_ssn",
            "custom_dob",
            "custom_phone",
            "custom_address",
            "custom_access_code",
            "custom_passing_score",
            "tool_consumer_instance_contact_email",
            "tool_consumer_secret",
            "oauth_token",
            "oauth_consumer_secret",
            "OAUTH_NONCE",
            "Roles",
        ] {
            assert!(!is_readable_field(name), "{name}");
        }
        for name in [
            "oauth_consumer_key",
            "oauth_nonce",
            "oauth_timestamp",
            "oauth_signature_method",
            "oauth_version",
            "oauth_callback",
            "oauth_body_hash",
            "lti_message_type",
            "lti_version",
            "roles",
            "resource_link_id",
            "context_id",
            "lis_outcome_service_url",
            "lis_course_offering_sourcedid",
            "tool_consumer_instance_guid",
            "tool_consumer_info_product_family_code",
            "ext_lms",
            "ext_ims_lis_resultvalue_sourcedids",
        ] {
            assert!(is_readable_field(name), "{name}");
        }
    }
}
