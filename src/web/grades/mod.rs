//! Grade passback in the web app: the `Outcomes` state (one HTTP client, the CSRF key), the
//! PyLTI-style `post_grade` / `read_grade` / `delete_grade` on every guard, and the grade pages.
//!
//! Call the LMS only from a POST whose form carries the session's CSRF token (the session cookie
//! is `SameSite=None`, so another site could fire a GET with it):
//!
//! ```no_run
//! use rocket::form::{Form, FromForm};
//! use rocket::{post, State};
//! use rocket_lti_tool::{error::LtiError, web::grades::Outcomes, web::guards::LtiSession};
//!
//! #[derive(FromForm)]
//! struct Done<'r> {
//!     csrf: Option<&'r str>,
//! }
//!
//! #[post("/done", data = "<form>")]
//! async fn done(
//!     lti: LtiSession,
//!     outcomes: &State<Outcomes>,
//!     form: Form<Done<'_>>,
//! ) -> Result<&'static str, LtiError> {
//!     outcomes.check_csrf(&lti.session_id, form.csrf)?;
//!     lti.post_grade(outcomes, 0.8).await?;
//!     Ok("Your score was sent to the gradebook.")
//! }
//! ```

pub mod pages;
mod settings;
mod turns;

use rocket::fairing::{AdHoc, Fairing};

use crate::error::LtiError;
use crate::outcomes::{
    check_score, ClientConfig, CodeMajor, Credentials, OutcomeError, OutcomeTarget, OutcomesClient,
    Response, ResultData,
};
use crate::store::{self, consumers, outcomes::StoredTarget, Db};
use crate::web::csrf::CsrfKey;
use crate::web::guards::LtiUser;
use crate::web::AppState;

/// How soon a grade request should be answered, waits for the session's turn included: inside a
/// proxy's usual minute, with a few seconds for the database (a lock may hold a query up).
const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(55);

pub use pages::routes;
pub use settings::client_config;

/// Whose result an operation is about: the consumer that signs, and where the result lives.
/// The resource link and user say which stored row learns the confirmed score.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The consumer whose secret signs the request.
    pub consumer_key: &'a str,
    /// `resource_link_id`, when known.
    pub resource_link_id: Option<&'a str>,
    /// `user_id`, when known.
    pub user_id: Option<&'a str>,
    /// The outcome service and sourcedid.
    pub target: &'a OutcomeTarget,
}

impl<'a> Subject<'a> {
    /// The learner's grade record this call is about, when the resource link and user are known.
    fn result_of(&self) -> Option<store::outcomes::ResultOf<'a>> {
        Some(store::outcomes::ResultOf {
            consumer_key: self.consumer_key,
            resource_link_id: self.resource_link_id?,
            user_id: self.user_id?,
            sourcedid: &self.target.sourcedid,
        })
    }
}

impl<'a> From<&'a StoredTarget> for Subject<'a> {
    fn from(s: &'a StoredTarget) -> Self {
        Subject {
            consumer_key: &s.consumer_key,
            resource_link_id: Some(&s.resource_link_id),
            user_id: Some(&s.user_id),
            target: &s.target,
        }
    }
}

/// The grade passback state, managed by Rocket: built once at start-up.
pub struct Outcomes {
    client: OutcomesClient,
    db: Db,
    csrf: CsrfKey,
    turns: turns::Turns,
}

/// The fairing that builds `Outcomes`; attach it after the one that makes `AppState`.
pub fn fairing() -> impl Fairing {
    AdHoc::try_on_ignite("Grade passback", |rocket| async move {
        // Without the LTI state its own fairing has failed and said why, and the server does
        // not start: nothing to add here.
        let Some(state) = rocket.state::<AppState>() else {
            return Ok(rocket);
        };
        match Outcomes::from_figment(rocket.figment(), state.db.clone()) {
            Ok(outcomes) => Ok(rocket.manage(outcomes)),
            Err(e) => {
                log::error!("cannot start grade passback: {e}");
                Err(rocket)
            }
        }
    })
}

impl Outcomes {
    /// Builds the state from a client configuration.
    pub fn new(db: Db, config: ClientConfig) -> Result<Outcomes, OutcomeError> {
        Ok(Outcomes {
            client: OutcomesClient::new(config)?,
            db,
            csrf: CsrfKey::random(),
            turns: turns::Turns::default(),
        })
    }

    fn from_figment(figment: &rocket::figment::Figment, db: Db) -> Result<Outcomes, String> {
        let mut outcomes = Outcomes::new(db, client_config(figment)?).map_err(|e| e.to_string())?;
        let proxy_vars = [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
        ];
        if !outcomes.client().config().allow_local
            && proxy_vars.iter().any(|v| std::env::var_os(v).is_some())
        {
            log::warn!(
                "grade passback connects directly and ignores the HTTP(S)_PROXY/ALL_PROXY \
                 environment while outcomes_allow_local is off (a proxy would resolve the names it \
                 checks); set outcomes_allow_local = true to go through the proxy"
            );
        }
        if outcomes.client().config().allow_local && !crate::config::is_debug(figment) {
            log::warn!(
                "outcomes_allow_local is on outside the debug profile: a consumer's grade service \
                 address may be this machine (loopback) or its link (a cloud's metadata service)"
            );
        }
        outcomes.csrf = CsrfKey::from_figment(figment, b"grade form csrf v1");
        Ok(outcomes)
    }

    /// The client, for callers with their own targets.
    pub fn client(&self) -> &OutcomesClient {
        &self.client
    }

    /// Waits until the session has no other grade operation in flight; refuses when a few
    /// already wait (one learner's burst of clicks must not become a burst of signed calls).
    /// Held while calling the LMS; `post_grade` and friends take it themselves, so a caller that
    /// holds it must not call them (it would wait for itself).
    ///
    /// A call that had to wait goes only if its session is still live: one logged out (on a
    /// shared computer) or expired while it waited sends nothing.
    ///
    /// It waits only as long as leaves it [`ANSWER_WITHIN`] in all with its own longest
    /// operation; past that it is refused as queued, with nothing sent.
    pub(crate) async fn turn(&self, session_id: &str) -> Result<turns::Turn<'_>, LtiError> {
        let longest = self.client.config().longest_operation();
        let wait = ANSWER_WITHIN.saturating_sub(longest);
        let (turn, waited) = rocket::tokio::time::timeout(wait, self.turns.take(session_id))
            .await
            .map_err(|_| LtiError::GradeCallsQueued)??;
        if waited {
            match crate::store::sessions::find(&self.db, session_id).await? {
                Some(s) if s.expires_at > crate::store::now() => {}
                Some(_) => return Err(LtiError::SessionExpired),
                None => return Err(LtiError::SessionEnded),
            }
        }
        Ok(turn)
    }

    /// The CSRF token of a session's grade forms.
    pub fn csrf_token(&self, session_id: &str) -> String {
        self.csrf.token(session_id)
    }

    /// Refuses a form whose CSRF token is not this session's.
    pub fn check_csrf(&self, session_id: &str, token: Option<&str>) -> Result<(), LtiError> {
        match token {
            Some(t) if self.csrf.verify(session_id, t) => Ok(()),
            _ => Err(LtiError::BadCsrfToken),
        }
    }

    /// The key and secret of an enabled consumer.
    async fn credentials(&self, consumer_key: &str) -> Result<OwnedCredentials, LtiError> {
        match consumers::find(&self.db, consumer_key).await? {
            Some(c) if c.enabled => Ok(OwnedCredentials {
                key: c.key,
                secret: c.secret,
            }),
            _ => Err(OutcomeError::ConsumerUnavailable(consumer_key.to_string()).into()),
        }
    }

    /// Keeps the score the LMS confirmed (for a read, with the time it was asked: see
    /// `store::outcomes::set_last_score`), or forgets the one known when the LMS answered
    /// `processing` (it will make the change later); a storage failure is logged, not raised,
    /// since the LMS already did what was asked.
    async fn store_confirmed_score(
        &self,
        subject: Subject<'_>,
        response: &Response,
        score: Option<f64>,
        read_at: Option<i64>,
    ) {
        let Some(result) = subject.result_of() else {
            return;
        };
        let saved = if response.code_major == CodeMajor::Processing {
            store::outcomes::forget_last_score(&self.db, result, store::now()).await
        } else {
            store::outcomes::set_last_score(&self.db, result, score, read_at, store::now()).await
        };
        if let Err(e) = saved {
            log::error!("could not store a confirmed score: {e}");
        }
    }

    /// After a write whose answer leaves the gradebook unknown (it may or may not have taken
    /// it), forgets the score known before: the staff page shows it as unknown until read.
    async fn forget_score_if_unsure(&self, subject: Subject<'_>, error: &OutcomeError) {
        let Some(result) = subject.result_of().filter(|_| error.leaves_score_unknown()) else {
            return;
        };
        if let Err(e) = store::outcomes::forget_last_score(&self.db, result, store::now()).await {
            log::error!("could not forget a score the LMS may have changed: {e}");
        }
    }

    fn log(&self, operation: &str, subject: Subject<'_>, result: &Result<Response, OutcomeError>) {
        let user = subject.user_id.unwrap_or("?");
        match result {
            Ok(r) => log::info!(
                "{operation} for user {user:?} (consumer key {:?}): {:?} {}",
                subject.consumer_key,
                r.code_major,
                // The LMS's words: escaped, so they cannot forge log lines.
                r.description.escape_debug()
            ),
            Err(e) => log::warn!(
                "{operation} for user {user:?} (consumer key {:?}) failed: {}",
                subject.consumer_key,
                e.to_string().escape_debug()
            ),
        }
    }

    /// `replaceResult`: sends a score (0.0 to 1.0; anything else is refused before sending).
    pub async fn post(
        &self,
        subject: Subject<'_>,
        score: f64,
        data: Option<ResultData>,
    ) -> Result<Response, LtiError> {
        let score = check_score(score)?;
        let consumer = self.credentials(subject.consumer_key).await?;
        let result = self
            .client
            .replace_result(consumer.lend(), subject.target, score, data)
            .await;
        self.log("replaceResult", subject, &result);
        if let Err(e) = &result {
            self.forget_score_if_unsure(subject, e).await;
        }
        let response = result?;
        // As the LMS got it (rounded to the places it was sent with).
        let sent = crate::outcomes::xml::format_score(score)
            .parse()
            .unwrap_or(score);
        self.store_confirmed_score(subject, &response, Some(sent), None)
            .await;
        Ok(response)
    }

    /// `readResult`: the score in the gradebook is `response.score`.
    pub async fn read(&self, subject: Subject<'_>) -> Result<Response, LtiError> {
        let consumer = self.credentials(subject.consumer_key).await?;
        let asked_at = store::now();
        let result = self
            .client
            .read_result(consumer.lend(), subject.target)
            .await;
        self.log("readResult", subject, &result);
        let response = result?;
        self.store_confirmed_score(subject, &response, response.score, Some(asked_at))
            .await;
        Ok(response)
    }

    /// `deleteResult`: removes the score.
    pub async fn delete(&self, subject: Subject<'_>) -> Result<Response, LtiError> {
        let consumer = self.credentials(subject.consumer_key).await?;
        let result = self
            .client
            .delete_result(consumer.lend(), subject.target)
            .await;
        self.log("deleteResult", subject, &result);
        if let Err(e) = &result {
            self.forget_score_if_unsure(subject, e).await;
        }
        let response = result?;
        self.store_confirmed_score(subject, &response, None, None)
            .await;
        Ok(response)
    }
}

/// A consumer's key and secret as read from the store; lent to the client as `Credentials`.
struct OwnedCredentials {
    key: String,
    secret: String,
}

impl OwnedCredentials {
    fn lend(&self) -> Credentials<'_> {
        Credentials {
            key: &self.key,
            secret: &self.secret,
        }
    }
}

/// PyLTI's grade calls, on every guard (they all deref to `LtiUser`).
impl LtiUser {
    /// Where this launch's result lives, if the LMS set up grade passback.
    pub fn outcome_target(&self) -> Option<OutcomeTarget> {
        OutcomeTarget::from_launch(&self.launch)
    }

    /// Whether a score can be sent for this launch: the LMS set up grade passback with a result id
    /// that can be sent, and the user is not course staff only (what `post_grade` checks after the
    /// score, refusing with 409, or 403 for staff). A page that grades every user's work asks this.
    pub fn can_post_grade(&self) -> bool {
        self.target_or_refuse().is_ok()
    }

    /// Sends this learner's score (0.0 to 1.0) to the LMS gradebook.
    pub async fn post_grade(&self, outcomes: &Outcomes, score: f64) -> Result<Response, LtiError> {
        self.post_grade_with(outcomes, score, None).await
    }

    /// Sends a score with result data (text or a URL, shown by Canvas beside the score); refused
    /// before sending when the launch does not list that kind as accepted
    /// ([`LaunchData::accepts_result_data`](crate::lti::launch::LaunchData::accepts_result_data)).
    pub async fn post_grade_with(
        &self,
        outcomes: &Outcomes,
        score: f64,
        data: Option<ResultData>,
    ) -> Result<Response, LtiError> {
        let score = check_score(score)?;
        let target = self.target_or_refuse()?;
        if let Some(data) = &data {
            let kind = match data {
                ResultData::Text(_) => "text",
                ResultData::Url(_) => "url",
            };
            if !self.accepts_result_data(kind) {
                return Err(OutcomeError::ResultDataNotAccepted(kind).into());
            }
        }
        let _turn = outcomes.turn(&self.session_id).await?;
        outcomes.post(self.subject(&target), score, data).await
    }

    /// Reads this learner's score from the gradebook (`response.score`; `None` when empty).
    pub async fn read_grade(&self, outcomes: &Outcomes) -> Result<Response, LtiError> {
        let target = self.target_or_refuse()?;
        let _turn = outcomes.turn(&self.session_id).await?;
        outcomes.read(self.subject(&target)).await
    }

    /// Deletes this learner's score from the gradebook.
    pub async fn delete_grade(&self, outcomes: &Outcomes) -> Result<Response, LtiError> {
        let target = self.target_or_refuse()?;
        let _turn = outcomes.turn(&self.session_id).await?;
        outcomes.delete(self.subject(&target)).await
    }

    /// Where this launch's result lives, or why no score can be sent for it.
    pub(crate) fn target_or_refuse(&self) -> Result<OutcomeTarget, LtiError> {
        if self.is_staff_only() {
            return Err(OutcomeError::StaffHaveNoScore.into());
        }
        let target = self
            .outcome_target()
            .ok_or(LtiError::Outcome(OutcomeError::NoOutcomeService))?;
        target.check_sendable()?;
        Ok(target)
    }

    fn subject<'a>(&'a self, target: &'a OutcomeTarget) -> Subject<'a> {
        Subject {
            consumer_key: &self.consumer_key,
            resource_link_id: self.get("resource_link_id"),
            user_id: self.get("user_id"),
            target,
        }
    }
}
