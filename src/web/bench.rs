//! Baseline routes for the benchmark (`examples/bench.rs`): the same body read and the same page
//! as a launch, with no LTI work (no parsing, verifying or writing), so launch and session figures
//! can be given as ratios of what this server does anyway. Mounted only when the
//! `benchmark_routes` setting is on; otherwise these paths do not exist (404).

use rocket::data::Data;
use rocket::{get, post, routes, Build, Rocket, State};
use rocket_dyn_templates::Template;

use crate::error::LtiError;
use crate::lti::launch::LaunchData;
use crate::web::guards::LtiUser;
use crate::web::launch_body::read_body;
use crate::web::pages::page;
use crate::web::AppState;

/// The fixed users the baseline pages show, built once at start-up: as a launch's page shows its
/// user (with the landing part: the new-window offer and its script), and as a later visit's.
struct BaselineUsers {
    launch: LtiUser,
    visit: LtiUser,
}

const TITLE: &str = "Baseline page";

/// Reads the whole body (under the launch body limit) and answers the page.
#[post("/post", data = "<data>")]
async fn post_baseline(
    data: Data<'_>,
    state: &State<AppState>,
    users: &State<BaselineUsers>,
) -> Result<Template, LtiError> {
    // The same read as a launch guard's, so the ratio measures only the LTI work.
    read_body(data, state).await?;
    Ok(page(TITLE, &users.launch, state))
}

/// Answers the page.
#[get("/get")]
fn get_baseline(state: &State<AppState>, users: &State<BaselineUsers>) -> Template {
    page(TITLE, &users.visit, state)
}

/// Mounts the baseline routes under `/bench`, with the user they show.
pub fn mount(rocket: Rocket<Build>) -> Rocket<Build> {
    log::warn!("benchmark routes are mounted under /bench (benchmark_routes = true)");
    let params = [
        ("lti_message_type", "basic-lti-launch-request"),
        ("lti_version", "LTI-1p0"),
        ("resource_link_id", "bench-link"),
        ("user_id", "bench-user"),
        ("roles", "Learner"),
        ("lis_person_name_full", "Bench Mark"),
        ("context_id", "bench-course"),
        ("context_title", "Benchmarks"),
    ];
    let launch = LaunchData::new(
        "bench".into(),
        params
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
    );
    let launch = std::sync::Arc::new(launch);
    let visit = LtiUser {
        launch: std::sync::Arc::clone(&launch),
        session_id: String::new(),
        fresh_launch: false,
        handoff_token: None,
        // As long as a real one (a form token: 27 characters).
        logout_token: crate::store::sessions::new_id().chars().take(27).collect(),
    };
    let launch = LtiUser {
        launch,
        session_id: String::new(),
        fresh_launch: true,
        handoff_token: Some(crate::store::sessions::new_id()),
        logout_token: visit.logout_token.clone(),
    };
    rocket
        .manage(BaselineUsers { launch, visit })
        .mount("/bench", routes![post_baseline, get_baseline])
}
