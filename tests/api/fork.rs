//! The README's "extending the tool" example, compiled and exercised: a fork adds pages with guards.

use rocket::http::Status;
use rocket::{get, post, routes};
use rocket_dyn_templates::{context, Template};
use rocket_lti_tool::error::LtiError;
use rocket_lti_tool::web::guards::{Gated, Learner, LtiAny, LtiSession, LtiUser, RoleRule, Staff};
use rocket_lti_tool::web::pages::Landing;

use crate::helpers::*;

#[get("/quiz")]
fn quiz(lti: LtiSession) -> String {
    format!(
        "quiz for {} in {:?}, color {:?}",
        lti.user_id(),
        lti.get("context_title"),
        lti.get("custom_color")
    )
}

#[post("/gradebook", data = "<lti>")]
fn gradebook(lti: Staff<LtiAny>) -> String {
    format!("{} may grade here", lti.display_name())
}

#[get("/gradebook")]
fn gradebook_visit(lti: Staff<LtiAny>) -> String {
    format!("{} may grade here", lti.display_name())
}

/// A fork's page for a launch in the query string (a GET launch) or a visit.
#[get("/report")]
fn report(lti: LtiAny) -> String {
    format!("report for {}", lti.user_id())
}

/// A fork's launch page with the part every launch page includes (the README's advice).
#[post("/landing", data = "<lti>")]
fn landing(lti: LtiAny) -> Template {
    Template::render(
        "launch_landing",
        context! { landing: Landing::of(&lti, "/readme-example/gradebook") },
    )
}

/// A fork's own refusal, on the shared error page.
#[get("/closed")]
fn closed() -> Result<String, LtiError> {
    Err(LtiError::page(
        409,
        "Quiz closed",
        "This quiz closed at <10:00>.",
    ))
}

/// Learners of the course only, by the tool's own rule.
#[post("/practice", data = "<lti>")]
fn practice(lti: Learner<LtiAny>) -> String {
    format!("{} may practise", lti.user_id())
}

/// A fork's own rule: teaching assistants only (the README's example).
pub struct TeachingAssistants;

impl RoleRule for TeachingAssistants {
    fn allows(user: &LtiUser) -> bool {
        user.roles().iter().any(|r| r.name == "TeachingAssistant")
    }
    fn refusal() -> LtiError {
        LtiError::page(403, "Not allowed", "This page is for teaching assistants.")
    }
}

#[post("/ta_room", data = "<lti>")]
fn ta_room(lti: Gated<LtiAny, TeachingAssistants>) -> String {
    format!("{} may help here", lti.user_id())
}

/// A check in the handler instead of a guard: the launch it refuses must still leave no session.
#[post("/checked_in_handler", data = "<lti>")]
fn checked_in_handler(lti: LtiAny) -> Result<String, LtiError> {
    match lti.get("custom_quiz_open") {
        Some("yes") => Ok(format!("{} may answer", lti.user_id())),
        _ => Err(LtiError::page(409, "Quiz closed", "This quiz is closed.")),
    }
}

/// A page whose address has a parameter, opened only by a GET.
#[get("/notes/<id>")]
fn note(id: u32) -> String {
    format!("note {id}")
}

/// A fork's static file, as the README shows.
static QUIZ_JS: std::sync::LazyLock<rocket_lti_tool::web::assets::Asset> =
    std::sync::LazyLock::new(|| {
        rocket_lti_tool::web::assets::Asset::new(
            "document.title = 'quiz';",
            rocket::http::ContentType::JavaScript,
        )
    });

#[get("/static/quiz.js")]
fn quiz_js() -> rocket_lti_tool::web::assets::Served {
    rocket_lti_tool::web::assets::Served(&QUIZ_JS)
}

#[rocket::async_test]
async fn a_fork_serves_a_static_file_of_its_own_with_the_tool_s_caching() {
    let app = spawn_app_with(|f| f).await;
    let client = with_examples(&app, routes![quiz_js]).await;
    let path = format!("{EXAMPLE}/static/quiz.js");
    let res = client.get(&path).dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    assert_eq!(
        res.content_type(),
        Some(rocket::http::ContentType::JavaScript)
    );
    assert_eq!(
        res.headers().get_one("Cache-Control"),
        Some("public, max-age=300")
    );
    let etag = res.headers().get_one("ETag").unwrap().to_string();
    assert_eq!(res.into_string().await.unwrap(), "document.title = 'quiz';");
    let res = client
        .get(&path)
        .header(rocket::http::Header::new("If-None-Match", etag))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::NotModified);
}

/// Where the test mounts the README's example routes.
const EXAMPLE: &str = "/readme-example";

/// A browser on the app of `app`'s configuration with `routes` mounted under [`EXAMPLE`].
async fn with_examples(
    app: &TestApp,
    routes: Vec<rocket::Route>,
) -> rocket::local::asynchronous::Client {
    rocket::local::asynchronous::Client::tracked(
        rocket_lti_tool::build(app.client.rocket().figment().clone()).mount(EXAMPLE, routes),
    )
    .await
    .unwrap()
}

#[rocket::async_test]
async fn a_fork_adds_guarded_pages() {
    let app = spawn_app_with(|f| f).await;
    // Under a prefix of its own: a fork that adds the example to the app keeps this passing.
    let routes = routes![
        quiz,
        gradebook,
        gradebook_visit,
        closed,
        landing,
        report,
        note
    ];
    let client = with_examples(&app, routes).await;
    let host = rocket::http::Header::new("Host", HOST);
    assert_eq!(
        client
            .get(format!("{EXAMPLE}/quiz"))
            .header(host.clone())
            .dispatch()
            .await
            .status(),
        Status::Unauthorized
    );

    let launch = Launch::new(&format!("{EXAMPLE}/gradebook")).set("custom_color", "blue");
    let res = client
        .post(format!("{EXAMPLE}/gradebook"))
        .header(host.clone())
        .header(rocket::http::ContentType::Form)
        .body(launch.signed_body())
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    assert_eq!(
        res.into_string().await.unwrap(),
        "teacher-1 (Ada Lovelace) may grade here"
    );
    // The visit it started goes on at the same address.
    let visit = client
        .get(format!("{EXAMPLE}/gradebook"))
        .header(host.clone())
        .dispatch()
        .await;
    assert_eq!(visit.status(), Status::Ok);
    let quiz = client
        .get(format!("{EXAMPLE}/quiz"))
        .header(host.clone())
        .dispatch()
        .await
        .into_string()
        .await
        .unwrap();
    assert_eq!(
        quiz,
        "quiz for teacher-1 in Some(\"Analytical Engines\"), color Some(\"blue\")"
    );

    // A launch page that includes `launch_landing` offers the new window, and turns its history
    // entry into its own visit address.
    let res = client
        .post(format!("{EXAMPLE}/landing"))
        .header(host.clone())
        .header(rocket::http::ContentType::Form)
        .body(Launch::new(&format!("{EXAMPLE}/landing")).signed_body())
        .dispatch()
        .await;
    let body = page(res, Status::Ok).await;
    assert!(body.contains(r#"action="/lti/continue""#), "{body}");
    assert!(body.contains(r#"name="token" value=""#), "{body}");
    assert!(
        body.contains(r#"data-visit-url="&#x2F;readme-example&#x2F;gradebook""#),
        "{body}"
    );
    let learner = Launch::new(&format!("{EXAMPLE}/gradebook")).roles("Learner");
    let res = client
        .post(format!("{EXAMPLE}/gradebook"))
        .header(host)
        .header(rocket::http::ContentType::Form)
        .body(learner.signed_body())
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Forbidden);

    // A HEAD that carries a launch launches nothing; its 405 names the methods the address's
    // routes take.
    for (path, allow) in [("gradebook", "GET, HEAD, POST"), ("report", "GET, HEAD")] {
        let path = format!("{EXAMPLE}/{path}");
        let res = client
            .head(Launch::new(&path).signed_get_path())
            .header(rocket::http::Header::new("Host", HOST))
            .dispatch()
            .await;
        assert_eq!(res.status(), Status::MethodNotAllowed, "{path}");
        assert_eq!(res.headers().get_one("Allow"), Some(allow), "{path}");
    }

    // An address a route has through a parameter exists: a launch sent there was sent to a page
    // that takes none (401), not to no page (404).
    let path = format!("{EXAMPLE}/notes/7");
    let res = client
        .post(&path)
        .header(rocket::http::Header::new("Host", HOST))
        .header(rocket::http::ContentType::Form)
        .body(Launch::new(&path).signed_body())
        .dispatch()
        .await;
    let page = refused(res, Status::Unauthorized).await;
    assert!(page.contains("does not start a visit"), "{page}");

    // A fork's own refusal gets its status and the templated page, escaped.
    let res = client
        .get(format!("{EXAMPLE}/closed"))
        .header(rocket::http::Header::new("Host", HOST))
        .dispatch()
        .await;
    let page = refused(res, Status::Conflict).await;
    assert!(page.contains("Quiz closed"), "{page}");
    assert!(page.contains("closed at &lt;10:00&gt;."), "{page}");
    assert_eq!(
        LtiError::page(200, "Odd", "not an error"),
        LtiError::page(500, "Odd", "not an error")
    );
}

#[rocket::async_test]
async fn a_launch_url_without_a_post_route_is_named_at_start_and_launches_there_fail() {
    use rocket_lti_tool::web::pages::without_post_route;
    let app = spawn_app_with(|f| f).await;
    let client = with_examples(&app, routes![quiz, gradebook, gradebook_visit]).await;
    // The README's `/quiz` takes no launch: listed in LAUNCH_PAGES, the start would warn.
    let (quiz, gradebook) = (format!("{EXAMPLE}/quiz"), format!("{EXAMPLE}/gradebook/"));
    let unserved = without_post_route(client.rocket(), &[&quiz, &gradebook, "/any"]);
    assert_eq!(unserved, [quiz.as_str()]);
    // A launch sent there anyway is a failed launch: it ends the visit open in the browser.
    let host = rocket::http::Header::new("Host", HOST);
    let post = |path: String, body: String| {
        client
            .post(path)
            .header(host.clone())
            .header(rocket::http::ContentType::Form)
            .body(body)
    };
    let launch = Launch::new(&format!("{EXAMPLE}/gradebook"));
    let res = post(format!("{EXAMPLE}/gradebook"), launch.signed_body())
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    let res = post(
        quiz.clone(),
        Launch::new(&quiz).user("another").signed_body(),
    )
    .dispatch()
    .await;
    assert!(clears_session_cookie(&res), "{:?}", res.headers());
    let page = refused(res, Status::Unauthorized).await;
    assert!(page.contains("Not a launch address"), "{page}");
    let visit = client
        .get(format!("{EXAMPLE}/gradebook"))
        .header(host.clone())
        .dispatch()
        .await;
    refused(visit, Status::Unauthorized).await;
}

#[rocket::async_test]
async fn role_gates_and_handler_refusals_leave_no_session_behind() {
    let app = spawn_app_with(|f| f).await;
    let client = with_examples(&app, routes![practice, ta_room, checked_in_handler]).await;
    let launch_to = |path: &str, launch: Launch| {
        client
            .post(format!("{EXAMPLE}{path}"))
            .header(rocket::http::Header::new("Host", HOST))
            .header(rocket::http::ContentType::Form)
            .body(launch.signed_body())
            .dispatch()
    };
    let session_status = || async {
        client
            .get("/session")
            .header(rocket::http::Header::new("Host", HOST))
            .dispatch()
            .await
            .status()
    };
    let at = |path: &str| Launch::new(&format!("{EXAMPLE}{path}"));

    let res = launch_to("/practice", at("/practice").roles("Learner")).await;
    assert_eq!(res.into_string().await.unwrap(), "teacher-1 may practise");
    assert_eq!(session_status().await, Status::Ok);
    // An instructor's launch at the learners' page: refused, and it ends the visit it started.
    let body = refused(
        launch_to("/practice", at("/practice")).await,
        Status::Forbidden,
    )
    .await;
    assert!(body.contains("only for the learners"), "{body}");
    assert_eq!(app.count("sessions").await, 0);
    assert_eq!(session_status().await, Status::Unauthorized);

    // A fork's rule.
    let ta = at("/ta_room").roles("urn:lti:role:ims/lis/TeachingAssistant");
    let res = launch_to("/ta_room", ta).await;
    assert_eq!(res.status(), Status::Ok);
    let res = launch_to("/ta_room", at("/ta_room").roles("Learner")).await;
    let body = refused(res, Status::Forbidden).await;
    assert!(body.contains("for teaching assistants"), "{body}");
    assert_eq!(app.count("sessions").await, 0);
    assert_eq!(session_status().await, Status::Unauthorized);

    // A handler's own refusal of a fresh launch ends the session the launch started, and the
    // answer clears its cookie instead of setting it.
    let open = at("/checked_in_handler").set("custom_quiz_open", "yes");
    let res = launch_to("/checked_in_handler", open).await;
    assert_eq!(res.status(), Status::Ok);
    assert_eq!(session_status().await, Status::Ok);
    let res = launch_to("/checked_in_handler", at("/checked_in_handler")).await;
    assert!(clears_session_cookie(&res), "{:?}", res.headers());
    let cookies: Vec<&str> = res.headers().get("Set-Cookie").collect();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    // Its page offers no way back to the visit it ends, as no failed launch's page does.
    let body = refused(res, Status::Conflict).await;
    assert!(
        !body.contains("Back to your page") && !body.contains(r#"action="/logout""#),
        "{body}"
    );
    assert_eq!(session_status().await, Status::Unauthorized);
    assert_eq!(app.count("sessions").await, 0);
    // A fork's visit page is a plain path, or pages would lead to /session instead.
    assert_eq!(
        rocket_lti_tool::web::pages::visit_page(),
        rocket_lti_tool::fork::VISIT_PAGE
    );
}

#[rocket::async_test]
async fn a_handler_refusal_clears_the_production_cookie_with_its_own_attributes() {
    let app = spawn_app_with(|f| {
        f.merge(("cookie_same_site", "none"))
            .merge(("cookie_secure", true))
    })
    .await;
    let client = with_examples(&app, routes![checked_in_handler]).await;
    let res = client
        .post(format!("{EXAMPLE}/checked_in_handler"))
        .header(rocket::http::Header::new("Host", HOST))
        .header(rocket::http::ContentType::Form)
        .body(Launch::new(&format!("{EXAMPLE}/checked_in_handler")).signed_body())
        .dispatch()
        .await;
    // One removal of the `__Host-` cookie, with the attributes it would have been set with
    // (browsers ignore a removal of a partitioned `SameSite=None` cookie without them).
    let cookies: Vec<&str> = res.headers().get("Set-Cookie").collect();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    for part in [
        "__Host-lti_session=;",
        "Max-Age=0",
        "Secure",
        "SameSite=None",
        "Partitioned",
        "Path=/",
    ] {
        assert!(cookies[0].contains(part), "{part}: {cookies:?}");
    }
    refused(res, Status::Conflict).await;
    assert_eq!(app.count("sessions").await, 0);
}

/// A fork's admin-only page: under `/admin` (the admin cookie's path), behind the `Admin` guard.
#[get("/report")]
fn admin_report(_admin: rocket_lti_tool::web::admin::Admin) -> &'static str {
    "launches per course"
}

#[rocket::async_test]
async fn a_fork_adds_an_admin_page_behind_the_admin_login() {
    let app = spawn_app().await;
    let client = rocket::local::asynchronous::Client::tracked(
        rocket_lti_tool::build(app.client.rocket().figment().clone())
            .mount("/admin/fork", routes![admin_report]),
    )
    .await
    .unwrap();
    let host = rocket::http::Header::new("Host", HOST);
    let get = || {
        client
            .get("/admin/fork/report")
            .header(host.clone())
            .dispatch()
    };
    let state = client
        .rocket()
        .state::<rocket_lti_tool::web::AppState>()
        .unwrap();
    let hash = rocket_lti_tool::crypto::hash_password("correct horse battery").unwrap();
    rocket_lti_tool::store::admin::set_password_hash(
        &state.db,
        &hash,
        rocket_lti_tool::store::now(),
    )
    .await
    .unwrap();
    // Not logged in: the admin login page, as at the tool's own admin pages.
    let body = refused(get().await, Status::Unauthorized).await;
    assert!(body.contains(r#"action="/admin/login""#), "{body}");
    let res = client
        .post("/admin/login")
        .header(host.clone())
        .header(rocket::http::ContentType::Form)
        .body("password=correct+horse+battery")
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::SeeOther);
    let res = get().await;
    assert_eq!(res.status(), Status::Ok);
    assert_eq!(res.into_string().await.unwrap(), "launches per course");
}
