//! The grade pages: a learner sends, reads or deletes their own score (`/grade`), and staff see
//! and set the scores of everyone on the current resource link (`/grades`).

use std::collections::HashMap;

use rocket::form::{Form, FromForm};
use rocket::futures::stream::{self, StreamExt};
use rocket::serde::Serialize;
use rocket::tokio::time::{sleep_until, timeout_at, Instant};
use rocket::{get, post, routes, Route, State};
use rocket_dyn_templates::{context, Template};

use super::{Outcomes, Subject};
use crate::error::LtiError;
use crate::outcomes::xml::format_score;
use crate::outcomes::{parse_score, CodeMajor, OutcomeError, Response, ResultData};
use crate::store::outcomes::{find, list_for_link, set_read_tried, StoredTarget};
use crate::web::guards::{LtiSession, LtiUser, Staff};
use crate::web::AppState;

/// How many learners' scores are read from the LMS at once on the staff page.
const READ_CONCURRENCY: usize = 4;
/// How many `outcomes_timeout`s a refresh of the staff page reads scores at most (20 s by
/// default): well inside the minute after which proxies give up, and a click cannot keep the tool
/// calling the LMS for long after the browser has gone.
const REFRESH_DEADLINE_TIMEOUTS: u32 = 2;
/// The row's note for a learner whose score was not read before the deadline.
const NOT_READ_IN_TIME: &str = "the LMS was too slow for this refresh";

/// A learner's score form.
#[derive(FromForm)]
struct ScoreForm {
    score: Option<String>,
    result_data: Option<String>,
    csrf: Option<String>,
}

/// A form that only carries its CSRF token.
#[derive(FromForm)]
struct CsrfForm {
    csrf: Option<String>,
}

/// A staff form about one learner.
#[derive(FromForm)]
struct LearnerForm {
    user_id: String,
    score: Option<String>,
    csrf: Option<String>,
    /// A deletion happens only from its confirmation page (see `confirm_deletion`).
    confirmed: Option<bool>,
}

/// A learner's form to delete their score.
#[derive(FromForm)]
struct DeleteForm {
    csrf: Option<String>,
    confirmed: Option<bool>,
}

/// The page that asks before a score is deleted: one click in a page that another site frames
/// over ours (the tool must be frameable by the LMS) cannot delete a grade.
fn confirm_deletion(
    lti: &LtiUser,
    learner: &str,
    user_id: Option<&str>,
    action: &str,
    back: &str,
    csrf: &str,
) -> Template {
    let logout_token = &lti.logout_token;
    Template::render(
        "grade_confirm",
        context! { learner, user_id, action, back, csrf, logout_token },
    )
}

/// What the LMS answered, for the result page.
#[derive(Serialize)]
#[serde(crate = "rocket::serde")]
struct Answer {
    title: &'static str,
    learner: String,
    code_major: &'static str,
    description: String,
    /// Shown when the operation is about a score: the score sent, or the one read.
    score: Option<String>,
    /// True after a read: `score` is what the gradebook holds.
    read: bool,
    back: &'static str,
    /// For the header's Log out form.
    logout_token: String,
}

fn code_name(code: CodeMajor) -> &'static str {
    match code {
        CodeMajor::Success => "success",
        CodeMajor::Processing => "processing",
        CodeMajor::Failure => "failure",
        CodeMajor::Unsupported => "unsupported",
    }
}

fn answer(
    lti: &LtiUser,
    title: &'static str,
    learner: String,
    response: &Response,
    back: &'static str,
) -> Answer {
    Answer {
        title,
        learner,
        code_major: code_name(response.code_major),
        description: response.description.clone(),
        score: None,
        read: false,
        back,
        logout_token: lti.logout_token.clone(),
    }
}

fn result_page(answer: Answer) -> Template {
    Template::render("grade_result", &answer)
}

/// The learner's grade page: a form to send a score, and buttons to read or delete it.
#[get("/grade")]
fn grade_page(lti: LtiSession, outcomes: &State<Outcomes>) -> Result<Template, LtiError> {
    lti.target_or_refuse()?;
    Ok(Template::render(
        "grade",
        context! {
            name: lti.display_name(),
            resource_link_title: lti.get("resource_link_title"),
            takes_comment: lti.accepts_result_data("text"),
            csrf: outcomes.csrf_token(&lti.session_id),
            logout_token: &lti.logout_token,
        },
    ))
}

#[post("/grade", data = "<form>")]
async fn grade_post(
    lti: LtiSession,
    outcomes: &State<Outcomes>,
    form: Form<ScoreForm>,
) -> Result<Template, LtiError> {
    outcomes.check_csrf(&lti.session_id, form.csrf.as_deref())?;
    let score = parse_score(form.score.as_deref().unwrap_or(""))?;
    let data = form
        .result_data
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| ResultData::Text(d.to_string()));
    let response = lti.post_grade_with(outcomes, score, data).await?;
    let mut page = answer(&lti, "Score sent", lti.display_name(), &response, "/grade");
    page.score = Some(format_score(score));
    Ok(result_page(page))
}

/// Reads the learner's score from the LMS: a POST with the page's token, since it calls the LMS
/// (the session cookie is `SameSite=None`, so another site's image could fire a GET).
#[post("/grade/read", data = "<form>")]
async fn grade_read(
    lti: LtiSession,
    outcomes: &State<Outcomes>,
    form: Form<CsrfForm>,
) -> Result<Template, LtiError> {
    outcomes.check_csrf(&lti.session_id, form.csrf.as_deref())?;
    let response = lti.read_grade(outcomes).await?;
    let mut page = answer(
        &lti,
        "Score in the gradebook",
        lti.display_name(),
        &response,
        "/grade",
    );
    page.score = response.score.map(format_score);
    page.read = true;
    Ok(result_page(page))
}

#[post("/grade/delete", data = "<form>")]
async fn grade_delete(
    lti: LtiSession,
    outcomes: &State<Outcomes>,
    form: Form<DeleteForm>,
) -> Result<Template, LtiError> {
    outcomes.check_csrf(&lti.session_id, form.csrf.as_deref())?;
    if form.confirmed != Some(true) {
        lti.target_or_refuse()?;
        let csrf = outcomes.csrf_token(&lti.session_id);
        let name = lti.display_name();
        return Ok(confirm_deletion(
            &lti,
            &name,
            None,
            "/grade/delete",
            "/grade",
            &csrf,
        ));
    }
    let response = lti.delete_grade(outcomes).await?;
    Ok(result_page(answer(
        &lti,
        "Score deleted",
        lti.display_name(),
        &response,
        "/grade",
    )))
}

/// One learner on the staff page.
#[derive(Serialize)]
#[serde(crate = "rocket::serde")]
struct LearnerRow {
    user_id: String,
    name: String,
    /// `None`: never asked; `Some("")`: the gradebook has none.
    score: Option<String>,
    known_at: Option<String>,
    /// Why the score could not be read just now.
    error: Option<String>,
}

fn row(stored: &StoredTarget, error: Option<String>) -> LearnerRow {
    LearnerRow {
        user_id: stored.user_id.clone(),
        name: stored.display_name.clone(),
        score: stored
            .last_score
            .map(|s| s.map(format_score).unwrap_or_default()),
        known_at: stored
            .score_known_at
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string()),
        error,
    }
}

/// The learners of the current resource link with their last known scores.
#[get("/grades")]
async fn grades_page(
    lti: Staff<LtiSession>,
    state: &State<AppState>,
    outcomes: &State<Outcomes>,
) -> Result<Template, LtiError> {
    grades_view(&lti, state, outcomes, false).await
}

/// The same page after reading every learner's score from the LMS: a POST with the page's token,
/// since it calls the LMS once per learner.
#[post("/grades/refresh", data = "<form>")]
async fn grades_refresh(
    lti: Staff<LtiSession>,
    state: &State<AppState>,
    outcomes: &State<Outcomes>,
    form: Form<CsrfForm>,
) -> Result<Template, LtiError> {
    outcomes.check_csrf(&lti.session_id, form.csrf.as_deref())?;
    grades_view(&lti, state, outcomes, true).await
}

async fn grades_view(
    lti: &LtiUser,
    state: &AppState,
    outcomes: &Outcomes,
    refresh: bool,
) -> Result<Template, LtiError> {
    let link = lti.resource_link_id();
    let mut stored = list_for_link(&state.db, &lti.consumer_key, link).await?;
    let mut not_read = HashMap::new();
    if refresh {
        not_read = refresh_scores(lti, state, outcomes, &stored).await?;
        stored = list_for_link(&state.db, &lti.consumer_key, link).await?;
    }
    let learners: Vec<LearnerRow> = stored
        .iter()
        .map(|s| row(s, not_read.get(&s.user_id).cloned()))
        .collect();
    Ok(Template::render(
        "grades",
        context! {
            not_read: not_read.len(),
            learners,
            refreshed: refresh,
            context_title: lti.get("context_title"),
            resource_link_title: lti.get("resource_link_title"),
            csrf: outcomes.csrf_token(&lti.session_id),
            logout_token: &lti.logout_token,
        },
    ))
}

/// Reads the learners' scores from the LMS (storing what it answers) until the refresh's
/// deadline; returns the learners whose scores were not read, with why.
async fn refresh_scores(
    lti: &LtiUser,
    state: &AppState,
    outcomes: &Outcomes,
    stored: &[StoredTarget],
) -> Result<HashMap<String, String>, LtiError> {
    // The deadline covers the wait for the session's turn too (a refresh queued behind
    // another one): the page answers within it either way.
    let deadline = Instant::now() + outcomes.client().config().timeout * REFRESH_DEADLINE_TIMEOUTS;
    let _turn = timeout_at(deadline, outcomes.turn(&lti.session_id))
        .await
        .map_err(|_| LtiError::GradeCallsQueued)??;
    // The learners tried longest ago (never first) go first, so that in a course too large
    // for one refresh the next one goes on where this one stopped, and learners whose reads
    // keep failing or hanging do not hold the others back.
    let mut order = stored.to_vec();
    order.sort_by_key(|s| s.score_known_at.max(s.read_tried_at).unwrap_or(i64::MIN));
    let started = std::sync::Mutex::new(Vec::new());
    let started = &started;
    // Owned rows: a stream of borrowed ones trips the `Send` check of the handler's future.
    // Reads still running at the deadline are dropped, which cancels their requests.
    let results: HashMap<String, Result<Response, LtiError>> = stream::iter(order)
        .map(|s| async move {
            if let Ok(mut started) = started.lock() {
                started.push(s.user_id.clone());
            }
            let result = outcomes.read(Subject::from(&s)).await;
            (s.user_id, result)
        })
        .buffer_unordered(READ_CONCURRENCY)
        .take_until(sleep_until(deadline))
        .collect()
        .await;
    // A read that ended (with a score or an error) goes to the back of the queue; one cut off
    // at the deadline just ahead of those, so that the next refresh starts with it after the
    // learners not tried at all (otherwise the same learners would be cut off at every
    // refresh, or reads that always outlast the deadline would take every one).
    let now = crate::store::now();
    let tried: Vec<(String, i64)> = started
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|user| match results.contains_key(&user) {
            true => (user, now),
            false => (user, now - 1),
        })
        .collect();
    // Only the order of the next refresh depends on it: the scores read are shown regardless.
    if let Err(e) =
        set_read_tried(&state.db, &lti.consumer_key, lti.resource_link_id(), &tried).await
    {
        log::warn!("could not record which learners' scores were read: {e}");
    }
    Ok(stored
        .iter()
        .filter_map(|s| {
            let why = match results.get(&s.user_id) {
                Some(Ok(_)) => return None,
                Some(Err(e)) => e.user_message().0.to_string(),
                None => NOT_READ_IN_TIME.to_string(),
            };
            Some((s.user_id.clone(), why))
        })
        .collect())
}

async fn learner(lti: &LtiUser, state: &AppState, user_id: &str) -> Result<StoredTarget, LtiError> {
    find(
        &state.db,
        &lti.consumer_key,
        lti.resource_link_id(),
        user_id,
    )
    .await?
    .ok_or_else(|| OutcomeError::UnknownLearner.into())
}

#[post("/grades/set", data = "<form>")]
async fn grades_set(
    lti: Staff<LtiSession>,
    state: &State<AppState>,
    outcomes: &State<Outcomes>,
    form: Form<LearnerForm>,
) -> Result<Template, LtiError> {
    outcomes.check_csrf(&lti.session_id, form.csrf.as_deref())?;
    let score = parse_score(form.score.as_deref().unwrap_or(""))?;
    let stored = learner(&lti, state, &form.user_id).await?;
    let _turn = outcomes.turn(&lti.session_id).await?;
    let response = outcomes.post(Subject::from(&stored), score, None).await?;
    let mut page = answer(
        &lti,
        "Score sent",
        stored.display_name,
        &response,
        "/grades",
    );
    page.score = Some(format_score(score));
    Ok(result_page(page))
}

#[post("/grades/delete", data = "<form>")]
async fn grades_delete(
    lti: Staff<LtiSession>,
    state: &State<AppState>,
    outcomes: &State<Outcomes>,
    form: Form<LearnerForm>,
) -> Result<Template, LtiError> {
    outcomes.check_csrf(&lti.session_id, form.csrf.as_deref())?;
    let stored = learner(&lti, state, &form.user_id).await?;
    if form.confirmed != Some(true) {
        let csrf = outcomes.csrf_token(&lti.session_id);
        let (name, user) = (&stored.display_name, Some(stored.user_id.as_str()));
        return Ok(confirm_deletion(
            &lti,
            name,
            user,
            "/grades/delete",
            "/grades",
            &csrf,
        ));
    }
    let _turn = outcomes.turn(&lti.session_id).await?;
    let response = outcomes.delete(Subject::from(&stored)).await?;
    Ok(result_page(answer(
        &lti,
        "Score deleted",
        stored.display_name,
        &response,
        "/grades",
    )))
}

/// The routes of the grade pages.
pub fn routes() -> Vec<Route> {
    routes![
        grade_page,
        grade_post,
        grade_read,
        grade_delete,
        grades_page,
        grades_refresh,
        grades_set,
        grades_delete
    ]
}
