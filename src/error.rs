//! The one error type of the tool (the Rocket-free cores' `ParamsError` and `OutcomeError` are
//! wrapped in it). Its HTTP status and page are chosen in `web::error`.

use crate::lti::params::ParamsError;
use crate::outcomes::OutcomeError;

/// Everything that can refuse a request, from a malformed launch to a database that is down.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub enum LtiError {
    /// The body is larger than the configured limit.
    #[error("request body over the {0}-byte limit")]
    BodyTooLarge(u64),
    /// The body could not be read (the client went away mid-request).
    #[error("request body unreadable: {0}")]
    BodyUnreadable(String),
    /// The form, query or header could not be decoded.
    #[error("malformed parameters: {0}")]
    MalformedParams(#[from] ParamsError),
    /// A launch POST that is not a form.
    #[error("unsupported content type {0}")]
    UnsupportedContentType(String),
    /// A POST body that is compressed or in a charset that is not ASCII-compatible.
    #[error("encoded body ({0})")]
    EncodedBody(String),
    /// The request has no Host header, or more than one, so the signed URL cannot be rebuilt.
    #[error("missing or repeated Host header")]
    MissingHost,
    /// A trusted proxy forwarded a host (`X-Forwarded-Host`, `Forwarded: host=`) that no URL could hold.
    #[error("unusable forwarded host from a trusted proxy (X-Forwarded-Host or Forwarded host=)")]
    BadForwardedHost,
    /// A required OAuth parameter is absent or empty.
    #[error("missing {0}")]
    MissingOAuthParam(&'static str),
    /// An OAuth parameter is longer than any real one (a consumer key over 255 bytes, say).
    #[error("{0} too long")]
    OAuthParamTooLong(&'static str),
    /// An OAuth parameter appears more than once.
    #[error("duplicated {0}")]
    DuplicateOAuthParam(&'static str),
    /// OAuth fields sent in more than one of the query, the body and the `Authorization` header
    /// (RFC 5849 section 3.5 allows one place only).
    #[error("OAuth fields in more than one of the query, the body and the Authorization header")]
    OAuthFieldsSplit,
    /// `oauth_timestamp` is not a number of seconds.
    #[error("oauth_timestamp is not a number")]
    MalformedTimestamp,
    /// Anything but HMAC-SHA1 (PLAINTEXT included).
    #[error("unsupported oauth_signature_method {0}")]
    UnsupportedSignatureMethod(String),
    /// `oauth_version` other than 1.0.
    #[error("unsupported oauth_version {0}")]
    UnsupportedOAuthVersion(String),
    /// The request carries no launch at all, on a page that needs one.
    #[error("not a launch")]
    NoLaunch,
    /// No consumer has this key.
    #[error("unknown consumer key")]
    UnknownConsumer,
    /// The consumer exists but is disabled.
    #[error("consumer key is disabled")]
    DisabledConsumer,
    /// The HMAC does not match.
    #[error("invalid signature")]
    BadSignature,
    /// The timestamp is older than the window allows (seconds behind).
    #[error(
        "timestamp {0} s behind the server clock (the LMS clock or the server clock may be wrong)"
    )]
    StaleTimestamp(i64),
    /// The timestamp is further ahead than the window allows (seconds ahead).
    #[error("timestamp {0} s ahead of the server clock (the LMS clock or the server clock may be wrong)")]
    FutureTimestamp(i64),
    /// The nonce was already used by this consumer.
    #[error("nonce already used")]
    ReplayedNonce,
    /// The launch was signed no later than a nonce of its consumer already pruned, or than the
    /// one mark an older build kept for all consumers (see `store::nonces`).
    #[error("signed no later than nonces already pruned (of this consumer, or of any before the upgrade to migration 14), so it may be a replay (was the server clock ahead when nonces were pruned, or this LMS's clock ahead and then set back?)")]
    NonceForgotten,
    /// A verified launch whose LTI fields are wrong; `log` names the parameter (`missing
    /// resource_link_id`), `return_url` is the signed `launch_presentation_return_url`, if any.
    #[error("{log}")]
    InvalidLaunch {
        /// What is wrong, naming the parameter.
        log: String,
        /// Where the LMS wants errors sent back.
        return_url: Option<String>,
    },
    /// No session cookie.
    #[error("no session")]
    NoSession,
    /// The session existed but has expired (its row, or, once that is pruned, its id's date says
    /// so).
    #[error("session expired")]
    SessionExpired,
    /// The cookie names a session that no longer exists and had not run out: logged out, or
    /// replaced by a newer launch in the same browser.
    #[error("session ended")]
    SessionEnded,
    /// A launch sent to a page that only continues a session (an LMS link with the wrong URL).
    #[error("a launch sent to a session-only page")]
    LaunchAtSessionPage,
    /// A launch sent to the tool's home page (an LMS given the tool's bare address).
    #[error("a launch sent to the home page, which is not a launch address")]
    LaunchAtHomePage,
    /// A launch sent to an address with no page for it (a launch URL mistyped in the LMS).
    #[error("a launch sent to {0}, an address with no page")]
    LaunchAtUnknownAddress(String),
    /// A launch sent with a method its address does not take (a POST to a page only opened by a
    /// GET, such as `/grades`): it cannot start a visit there.
    #[error("a launch sent to {0}, which takes no launch")]
    LaunchAtPageWithoutLaunch(String),
    /// A launch sent to a launch page with a method other than POST (a PUT or DELETE): LMSs
    /// POST their launches.
    #[error("a launch sent to {path} by {method}, not POST")]
    LaunchNotPosted {
        /// The method it came by.
        method: String,
        /// The launch page it was sent to.
        path: String,
    },
    /// A new-window token that is unknown, used or expired.
    #[error("hand-off token invalid, used or expired")]
    HandoffInvalid,
    /// The user's roles do not allow this page.
    #[error("role not allowed")]
    NotStaff,
    /// Grade passback failed, or was refused before sending (see `OutcomeError`).
    #[error("grade passback: {0}")]
    Outcome(#[from] OutcomeError),
    /// A form's CSRF token is missing or does not belong to this session.
    #[error("bad CSRF token")]
    BadCsrfToken,
    /// A form that another site's page posted (`Sec-Fetch-Site` / `Origin`) where only ours may.
    #[error("form posted from another site")]
    CrossSiteForm,
    /// A launch sent as a HEAD request (a link checker or prefetcher): never a session.
    #[error("a launch cannot be a HEAD request")]
    HeadLaunch,
    /// A launch a browser fetched as part of another page (an image, a script, a `fetch`), not
    /// opened as a page (`Sec-Fetch-Mode`).
    #[error("a launch fetched as part of another page, not opened as one")]
    LaunchNotNavigation,
    /// An admin page without a live admin session.
    #[error("admin login required")]
    AdminLoginRequired,
    /// An address under a route that names nothing (the 404 catcher's page).
    #[error("nothing at this address")]
    NotFound,
    /// An admin action on a consumer key that no consumer has (deleted meanwhile, or typed).
    #[error("no consumer with this key")]
    NoSuchConsumer,
    /// A new secret asked for by a form shown before the secret last changed (a reload or a
    /// resubmission of the rotation): the secret shown then is the one in use.
    #[error("the secret was already replaced since the form was shown")]
    SecretAlreadyReplaced,
    /// An admin form that does not name its consumer (a hand-made request).
    #[error("the form names no consumer")]
    ConsumerNotNamed,
    /// The demo consumer with its published secret, to be enabled while `seed_demo_consumer` is
    /// off (the next start outside the debug profile would refuse it).
    #[error("the demo consumer still has its published secret")]
    PublishedDemoConsumer,
    /// Too many failed admin logins from one address.
    #[error("too many failed logins")]
    TooManyLogins,
    /// So many admin logins wait for their password check that this one was not queued.
    #[error("too many admin logins being checked at once")]
    LoginsBusy,
    /// A session asked for more grade calls to the LMS while its earlier ones still run.
    #[error("too many grade requests of one session at once")]
    GradeCallsQueued,
    /// The database failed (busy, read-only, full or gone).
    #[error("storage error: {0}")]
    Storage(String),
    /// A refusal of a fork's own pages, with its status, title and message (see
    /// [`LtiError::page`]).
    #[error("{title}: {message}")]
    Page {
        /// The HTTP status (a 4xx or 5xx).
        status: u16,
        /// The error page's title.
        title: &'static str,
        /// What went wrong and what to do, for the user.
        message: String,
    },
}

impl LtiError {
    /// A refusal of a page of your own, rendered like every other on the templated error page:
    /// `Err(LtiError::page(409, "Quiz closed", "This quiz closed at 10:00."))`. A status that is
    /// not an error (below 400, or not one) becomes 500.
    pub fn page(status: u16, title: &'static str, message: impl Into<String>) -> LtiError {
        LtiError::Page {
            status: if (400..=599).contains(&status) {
                status
            } else {
                500
            },
            title,
            message: message.into(),
        }
    }

    /// A logout that storage trouble kept from being recorded (503), in words that say the
    /// session goes on: on a shared computer no one must leave thinking it ended. Other errors
    /// stay as they are.
    pub fn logout_not_recorded(self) -> LtiError {
        match self {
            LtiError::Storage(why) => {
                log::error!("logout not recorded, the session goes on: {why}");
                LtiError::page(
                    503,
                    "Still signed in",
                    "The tool could not record your logout because its database is unavailable \
                     right now: you are still signed in. Press Log out again in a few seconds.",
                )
            }
            other => other,
        }
    }
}

/// At most `max_chars` characters of `value`, marked when cut: what an error or a log line quotes
/// of a request, which anyone can send at any length. (`web::diagnosis` caps what a refusal
/// record stores in bytes instead.)
pub fn excerpt(value: &str, max_chars: usize) -> String {
    match value.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", &value[..end]),
        None => value.to_string(),
    }
}

/// What a storage error caused by a damaged database file adds to its message.
pub const DAMAGED_HINT: &str =
    " (the database file is damaged: stop the server and restore a backup, see the README's backups)";

/// What a storage error caused by a database SQLite could open only for reading adds.
pub const READ_ONLY_HINT: &str = " (can this user write the database file and its folder, and is \
    their file system writable?)";

/// What a storage error caused by another connection holding the write lock too long adds.
pub const BUSY_HINT: &str = " (another process held the database's write lock too long, say a \
    backup or another command: nothing was changed; try again)";

/// Whether SQLite gave up waiting for a lock (SQLITE_BUSY or SQLITE_LOCKED, in any extended form).
pub fn is_busy(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .and_then(|code| code.parse::<i64>().ok())
        .is_some_and(|code| matches!(code & 0xff, 5 | 6))
}

/// Whether SQLite refused a write because it has the database open read-only (SQLITE_READONLY,
/// in any extended form).
pub fn is_read_only(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| code & 0xff == 8)
}

/// Whether SQLite found the database file damaged: SQLITE_CORRUPT or SQLITE_NOTADB, in any extended
/// form (sqlx gives extended codes). Waiting does not help, unlike a lock or a full disk.
pub fn is_damaged(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .and_then(|code| code.parse::<i64>().ok())
        .is_some_and(|code| matches!(code & 0xff, 11 | 26))
}

impl From<sqlx::Error> for LtiError {
    fn from(e: sqlx::Error) -> Self {
        let hint = if is_damaged(&e) {
            DAMAGED_HINT
        } else if is_read_only(&e) {
            READ_ONLY_HINT
        } else if is_busy(&e) {
            BUSY_HINT
        } else {
            ""
        };
        LtiError::Storage(format!("{e}{hint}"))
    }
}

impl From<sqlx::migrate::MigrateError> for LtiError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        LtiError::Storage(e.to_string())
    }
}

/// Shows what `Display` shows, escaped as the tool's own log lines are. Rocket logs a failed
/// guard's error with `{:?}`, at every log level (`critical` included), so the fields behind the
/// message must not reach it (a refused launch's return URL carries Moodle's `sesskey`), and the
/// request values the message quotes must not break or turn its line around.
impl std::fmt::Debug for LtiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LtiError({})", self.to_string().escape_debug())
    }
}
