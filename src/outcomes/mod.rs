//! LTI 1.1 Basic Outcomes (grade passback), with no Rocket types: the XML envelopes, the signed
//! HTTP client, and the typed errors. The Rocket glue lives in `web::grades`.

pub mod client;
pub mod xml;

pub use client::{ClientConfig, Credentials, OutcomesClient};
pub use xml::{CodeMajor, Operation, Response, ResultData};

use crate::lti::launch::LaunchData;

/// Why a grade could not be sent, read or deleted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutcomeError {
    /// The score is not within 0.0..=1.0 (nothing was sent).
    #[error("score {0} is outside 0.0 to 1.0")]
    ScoreOutOfRange(String),
    /// The score is not a number (nothing was sent).
    #[error("score {0:?} is not a number")]
    ScoreNotANumber(String),
    /// The launch carried no `lis_outcome_service_url` + `lis_result_sourcedid`.
    #[error(
        "the launch has no outcome service (lis_outcome_service_url and lis_result_sourcedid)"
    )]
    NoOutcomeService,
    /// Course staff (not also learners) asked to send, read or delete a score of their own.
    #[error("course staff have no score of their own here")]
    StaffHaveNoScore,
    /// The `lis_result_sourcedid` holds characters XML 1.0 cannot carry (nothing was sent).
    #[error("the result id holds characters XML cannot carry")]
    UnusableSourcedid,
    /// No stored outcome service for this learner on this resource link.
    #[error("no outcome service recorded for this learner")]
    UnknownLearner,
    /// The consumer that launched is gone or disabled, so there is no secret to sign with.
    #[error("consumer {0:?} is unknown or disabled")]
    ConsumerUnavailable(String),
    /// `lis_outcome_service_url` is not an http(s) URL we can sign and call.
    #[error("unusable outcome service URL: {0}")]
    BadServiceUrl(String),
    /// The LMS answered `imsx_codeMajor` = failure.
    #[error("the LMS refused {operation}: {description}")]
    Failure {
        /// `replaceResult`, `readResult` or `deleteResult`.
        operation: &'static str,
        /// `imsx_description`.
        description: String,
    },
    /// The LMS answered `imsx_codeMajor` = unsupported.
    #[error("the LMS does not support {operation}: {description}")]
    Unsupported {
        /// `replaceResult`, `readResult` or `deleteResult`.
        operation: &'static str,
        /// `imsx_description`.
        description: String,
    },
    /// The LMS answered 401 with a failure envelope: its words, and the status that says the
    /// signature (or the key, or the clock) was not accepted.
    #[error("the LMS answered HTTP {status}: {description}")]
    SignatureRefused {
        /// 401.
        status: u16,
        /// `imsx_description`.
        description: String,
    },
    /// The LMS answered an HTTP error status without an outcomes envelope.
    #[error("the LMS answered HTTP {0}")]
    HttpStatus(u16),
    /// The LMS answered something that is not an outcomes response envelope. (Shown cut: the
    /// reason may quote an LMS's element, entity or charset name of any length.)
    #[error("malformed LMS response: {}", crate::error::excerpt(.0, 300))]
    MalformedResponse(String),
    /// The LMS did not answer within the timeout.
    #[error("the LMS did not answer in time")]
    Timeout,
    /// The LMS could not be reached (nothing was sent).
    #[error("cannot connect: {0}")]
    Unconnected(String),
    /// The LMS's TLS certificate is not trusted (nothing was sent).
    #[error("untrusted certificate: {0}")]
    Certificate(String),
    /// An https service URL where no TLS is spoken (plain http on that port, say): nothing
    /// was sent.
    #[error("no TLS at the https address: {0}")]
    NotTls(String),
    /// The connection failed after the request was sent, or the answer was lost.
    #[error("network error: {0}")]
    Network(String),
    /// Result data of a kind the launch did not list in `ext_outcome_data_values_accepted`
    /// (nothing was sent).
    #[error("the LMS does not accept result data of kind {0:?}")]
    ResultDataNotAccepted(&'static str),
}

impl OutcomeError {
    /// True when the LMS certainly did not record the request: it never reached the LMS (no
    /// connection, an untrusted certificate) or the LMS turned it away unprocessed (a redirect,
    /// a 4xx). Other failures after sending (5xx, a malformed answer, a lost connection, a
    /// timeout) leave it unknown.
    pub fn nothing_recorded(&self) -> bool {
        match self {
            OutcomeError::Unconnected(_)
            | OutcomeError::Certificate(_)
            | OutcomeError::NotTls(_) => true,
            OutcomeError::HttpStatus(code) => (300..500).contains(code),
            OutcomeError::SignatureRefused { .. } => true,
            _ => false,
        }
    }

    /// Whether a write reached the LMS and its answer leaves unknown what the gradebook holds
    /// now (a 5xx, a malformed answer, a lost connection, a timeout).
    pub fn leaves_score_unknown(&self) -> bool {
        matches!(
            self,
            OutcomeError::HttpStatus(500..=599)
                | OutcomeError::MalformedResponse(_)
                | OutcomeError::Network(_)
                | OutcomeError::Timeout
        )
    }

    /// Whether the LMS answered with a refusal in words (`failure` or `unsupported`): this
    /// request was not taken, whatever an earlier one was.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            OutcomeError::Failure { .. } | OutcomeError::Unsupported { .. }
        )
    }
}

/// Checks that a score is a finite number within 0.0..=1.0; a negative zero becomes a plain one.
pub fn check_score(score: f64) -> Result<f64, OutcomeError> {
    if (0.0..=1.0).contains(&score) {
        // `-0.0 + 0.0` is `0.0`: the LMS gets `0`, never `-0`.
        Ok(score + 0.0)
    } else {
        Err(OutcomeError::ScoreOutOfRange(score.to_string()))
    }
}

/// Reads a score typed into a form (`0.85`, ` 1 `), then checks its range.
pub fn parse_score(text: &str) -> Result<f64, OutcomeError> {
    let text = text.trim();
    let score = text
        .parse::<f64>()
        .map_err(|_| OutcomeError::ScoreNotANumber(text.chars().take(40).collect()))?;
    check_score(score)
}

/// Where a learner's result lives: the LMS's outcome service and the result's sourcedid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeTarget {
    /// `lis_outcome_service_url`.
    pub service_url: String,
    /// `lis_result_sourcedid`.
    pub sourcedid: String,
}

impl OutcomeTarget {
    /// The target of a launch, when it carries both fields.
    pub fn from_launch(launch: &LaunchData) -> Option<OutcomeTarget> {
        Some(OutcomeTarget {
            service_url: launch.get("lis_outcome_service_url")?.to_string(),
            sourcedid: launch.get("lis_result_sourcedid")?.to_string(),
        })
    }

    /// Refuses a sourcedid that no request can carry (characters XML 1.0 does not allow):
    /// changing an identifier would send the score elsewhere or nowhere.
    pub fn check_sendable(&self) -> Result<(), OutcomeError> {
        match self.sourcedid.chars().all(xml::is_xml_char) {
            true => Ok(()),
            false => Err(OutcomeError::UnusableSourcedid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_outside_the_range_or_not_numbers_are_refused() {
        for ok in ["0", "1", "0.5", " 0.25 ", "1.0", "0e0"] {
            assert!(parse_score(ok).is_ok(), "{ok}");
        }
        for out in ["-0.1", "1.0001", "NaN", "inf", "-inf", "2"] {
            assert!(
                matches!(parse_score(out), Err(OutcomeError::ScoreOutOfRange(_))),
                "{out}"
            );
        }
        for nan in ["", "abc", "0,5", "1/2", "0.5x"] {
            assert!(
                matches!(parse_score(nan), Err(OutcomeError::ScoreNotANumber(_))),
                "{nan}"
            );
        }
        assert!(check_score(f64::NAN).is_err());
        // A negative zero is a plain zero: the LMS is sent `0.0`, never `-0`.
        for zero in ["-0", "-0.0", "-0e5"] {
            let score = parse_score(zero).unwrap();
            assert!(score.is_sign_positive(), "{zero}");
            assert_eq!(xml::format_score(score), "0.0");
        }
        assert_eq!(xml::format_score(-0.0), "0.0");
        // Plain decimals of at most 12 places, trailing zeros trimmed down to one.
        for (score, sent) in [
            (0.85, "0.85"),
            (1.0, "1.0"),
            (0.1 + 0.2, "0.3"),
            (2.0 / 3.0, "0.666666666667"),
            (5e-324, "0.0"),
            (1e-12, "0.000000000001"),
        ] {
            assert_eq!(xml::format_score(score), sent, "{score:e}");
        }
    }

    #[test]
    fn a_target_needs_both_fields() {
        let launch = |params: &[(&str, &str)]| LaunchData {
            consumer_key: "k".into(),
            params: params
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        };
        assert_eq!(
            OutcomeTarget::from_launch(&launch(&[
                ("lis_outcome_service_url", "http://lms/o"),
                ("lis_result_sourcedid", "s1"),
            ])),
            Some(OutcomeTarget {
                service_url: "http://lms/o".into(),
                sourcedid: "s1".into()
            })
        );
        assert_eq!(
            OutcomeTarget::from_launch(&launch(&[("lis_outcome_service_url", "http://lms/o")])),
            None
        );
        assert_eq!(
            OutcomeTarget::from_launch(&launch(&[
                ("lis_outcome_service_url", ""),
                ("lis_result_sourcedid", "s1"),
            ])),
            None
        );
    }
}
