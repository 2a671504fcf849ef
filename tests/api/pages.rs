//! The four guarded pages, each against launches, sessions and roles.

use rocket::http::{ContentType, Header, Method, Status};

use crate::helpers::*;

const PAGES: [(&str, &str); 4] = [
    ("/any", "Landing page"),
    ("/initial", "Initial request"),
    ("/session", "Session request"),
    ("/initial_staff", "Staff page"),
];

#[rocket::async_test]
async fn without_launch_or_session_every_page_refuses_on_get_and_post() {
    let app = spawn_app().await;
    for (path, _) in PAGES {
        refused(app.get(path).await, Status::Unauthorized).await;
        refused(app.post(path).await, Status::Unauthorized).await;
        refused(
            app.post_form(path, "foo=bar".into()).await,
            Status::Unauthorized,
        )
        .await;
    }
}

#[rocket::async_test]
async fn a_valid_launch_opens_the_launch_pages() {
    let app = spawn_app().await;
    for (path, text) in [PAGES[0], PAGES[1], PAGES[3]] {
        let body = page(app.launch(&Launch::new(path)).await, Status::Ok).await;
        assert!(body.contains(text), "{path}");
        assert!(body.contains("teacher-1"));
    }
}

#[rocket::async_test]
async fn session_page_ignores_launch_fields_and_needs_a_session() {
    let app = spawn_app().await;
    // A launch posted to /session is not a launch there: no session, no entry.
    refused(
        app.launch(&Launch::new("/session")).await,
        Status::Unauthorized,
    )
    .await;
    assert_eq!(app.count("sessions").await, 0);
    assert_eq!(app.launch(&Launch::new("/any")).await.status(), Status::Ok);
    for res in [app.get("/session").await, app.post("/session").await] {
        let body = page(res, Status::Ok).await;
        assert!(body.contains("Session request"));
        assert!(body.contains("teacher-1"));
    }
}

#[rocket::async_test]
async fn an_existing_session_opens_any_but_not_initial() {
    let app = spawn_app().await;
    assert_eq!(
        app.launch(&Launch::new("/initial")).await.status(),
        Status::Ok
    );
    let body = page(app.get("/any").await, Status::Ok).await;
    assert!(body.contains("Landing page"));
    let body = page(app.post_form("/any", "note=hello".into()).await, Status::Ok).await;
    assert!(body.contains("Landing page"));
    refused(app.get("/initial").await, Status::Unauthorized).await;
    refused(app.post("/initial_staff").await, Status::Unauthorized).await;
}

#[rocket::async_test]
async fn an_invalid_launch_on_any_does_not_fall_back_to_the_session() {
    let app = spawn_app().await;
    assert_eq!(app.launch(&Launch::new("/any")).await.status(), Status::Ok);
    let forged = Launch::new("/any").consumer("__consumer_key__", "guess");
    refused(app.launch(&forged).await, Status::Unauthorized).await;
    // ... and the failed launch ended the session.
    refused(app.get("/any").await, Status::Unauthorized).await;
}

#[rocket::async_test]
async fn a_second_launch_in_the_same_browser_replaces_the_first() {
    let app = spawn_app().await;
    assert_eq!(
        app.launch(&Launch::new("/initial_staff")).await.status(),
        Status::Ok
    );
    assert_eq!(
        app.launch(&Launch::new("/any").user("student-2").roles("Learner"))
            .await
            .status(),
        Status::Ok
    );
    let body = page(app.get("/session").await, Status::Ok).await;
    assert!(body.contains("student-2"));
    assert!(!body.contains("teacher-1"));
    assert_eq!(
        app.count("sessions").await,
        1,
        "the first session was deleted"
    );

    // A role-less second launch is not staff, whatever the first one was.
    assert_eq!(
        app.launch(&Launch::new("/initial_staff")).await.status(),
        Status::Ok
    );
    let roleless = Launch::new("/any").user("anon").without("roles");
    let body = page(app.launch(&roleless).await, Status::Ok).await;
    assert!(body.contains("anon"));
    assert!(body.contains("Course staff</dt><dd>no"), "{body}");
    refused(app.get("/initial_staff").await, Status::Unauthorized).await;

    // Refused on the staff page, a launch leaves no session behind, not even the previous one.
    assert_eq!(app.launch(&Launch::new("/any")).await.status(), Status::Ok);
    let roleless = Launch::new("/initial_staff").user("anon").without("roles");
    refused(app.launch(&roleless).await, Status::Forbidden).await;
    refused(app.get("/session").await, Status::Unauthorized).await;
    assert_eq!(app.count("sessions").await, 0);
}

#[rocket::async_test]
async fn staff_page_refuses_learners_and_roleless_and_unknown_roles() {
    let app = spawn_app().await;
    for roles in [
        "Learner",
        "",
        "instructor",
        "TeachingAssistant",
        "ContentDeveloper,Mentor",
        "urn:lti:instrole:ims/lis/Instructor",
        "urn:non:ims/something/Else,NotALearner",
        "Student",
    ] {
        let body = refused(
            app.launch(&Launch::new("/initial_staff").roles(roles))
                .await,
            Status::Forbidden,
        )
        .await;
        assert!(body.contains("teachers and administrators"), "{roles}");
    }
    refused(
        app.launch(&Launch::new("/initial_staff").without("roles"))
            .await,
        Status::Forbidden,
    )
    .await;
}

#[rocket::async_test]
async fn staff_page_accepts_urn_institution_and_system_admin_roles() {
    let app = spawn_app().await;
    for roles in [
        "Instructor",
        "urn:lti:role:ims/lis/Instructor",
        "urn:lti:role:ims/lis/Instructor/Lecturer",
        "Learner, Instructor",
        "urn:lti:role:ims/lis/Administrator",
        "urn:lti:instrole:ims/lis/Administrator",
        "urn:lti:sysrole:ims/lis/Administrator",
        "Instructor,Administrator,urn:lti:instrole:ims/lis/Administrator,urn:lti:sysrole:ims/lis/Administrator",
    ] {
        let body = page(app.launch(&Launch::new("/initial_staff").roles(roles)).await, Status::Ok).await;
        assert!(body.contains("Staff page"), "{roles}");
    }
}

#[rocket::async_test]
async fn a_launch_with_thousands_of_roles_lists_fifty_and_counts_them_all() {
    let app = spawn_app().await;
    // The staff role comes last: it counts, though it is not listed.
    let mut roles: Vec<String> = (0..2000).map(|i| format!("urn:example:role{i}")).collect();
    roles.push("Instructor".into());
    let launch = Launch::new("/initial_staff").roles(&roles.join(","));
    let body = page(app.launch(&launch).await, Status::Ok).await;
    assert!(body.contains("Staff page"), "{body:.300}");
    assert!(body.contains("urn:example:role49<"), "{body:.300}");
    assert!(!body.contains("urn:example:role50<"));
    assert!(body.contains("and 1951 more not listed here"));
    assert!(body.contains("1951 more roles were sent"));
    let mut roles: Vec<String> = (0..50).map(|i| format!("urn:example:role{i}")).collect();
    roles.push("Instructor".into());
    let launch = Launch::new("/initial_staff").roles(&roles.join(","));
    let body = page(app.launch(&launch).await, Status::Ok).await;
    assert!(
        body.contains("1 more role was sent and is not listed"),
        "{body}"
    );
    // The page stays small: the roles themselves are in the launch (about 40 KB).
    assert!(body.len() < 120_000, "{}", body.len());
}

#[test]
fn the_launch_inspector_escapes_parameter_names() {
    // A parameter's name as the LMS sent it (no signer here can sign such a name: a form's
    // names go unencoded in `oauth1-request`), rendered by the template the pages use.
    use rocket_dyn_templates::tera::{Context, Tera};
    let mut tera = Tera::default();
    // As the app's engine has it (by the file's path, with the app's filter).
    tera.autoescape_on(vec![".html.tera"]);
    tera.register_filter("visible", rocket_lti_tool::web::pages::visible_filter);
    tera.add_template_file("templates/inspector.html.tera", Some("inspector.html"))
        .unwrap();
    let inspector = serde_json::json!({
        "groups": [{"name": "Custom", "params": [
            ["custom_<b>x</b>", "<i>v</i>"],
            ["custom_\u{202e}eman", "v\u{200b}"],
        ]}],
        "roles": [],
        "missing": [],
    });
    let mut context = Context::new();
    context.insert("inspector", &inspector);
    let html = tera.render("inspector.html", &context).unwrap();
    // Whole, as sent: a search of the page for a name finds it.
    assert!(
        html.contains("<code>custom_&lt;b&gt;x&lt;&#x2F;b&gt;</code>"),
        "{html}"
    );
    assert!(html.contains("&lt;i&gt;v&lt;&#x2F;i&gt;"), "{html}");
    assert!(!html.contains("<b>") && !html.contains("<i>"), "{html}");
    // What hides text or turns it around is shown as an escape.
    assert!(html.contains(r"<code>custom_\u{202e}eman</code>"), "{html}");
    assert!(html.contains(r"v\u{200b}"), "{html}");
    assert!(
        !html.contains('\u{202e}') && !html.contains('\u{200b}'),
        "{html}"
    );
}

#[rocket::async_test]
async fn staff_see_what_the_lms_sent_escaped_and_learners_do_not() {
    let app = spawn_release_app().await;
    let launch = |roles: &str| {
        Launch::new("/any")
            .consumer("release-key", "release-secret-123456")
            .roles(roles)
            .set("custom_note", "<script>alert(1)</script>")
            .set("ext_lms", "moodle")
            .without("lis_person_name_full")
    };
    let staff = launch("Instructor,urn:lti:instrole:ims/lis/Instructor");
    let signed = staff.signed_body();
    let signature = signed
        .split("oauth_signature=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_string();
    let body = page(app.post_form("/any", signed).await, Status::Ok).await;
    assert!(body.contains("What the LMS sent"));
    assert!(body.contains("&lt;script&gt;alert(1)&lt;&#x2F;script&gt;"));
    assert!(!body.contains("<script>alert(1)"));
    for text in [
        "Custom",
        "Extensions",
        "OAuth",
        "ext_lms",
        "oauth_nonce",
        "not necessarily this course",
    ] {
        assert!(body.contains(text), "{text}");
    }
    // The name was not sent: the panel says so and why.
    assert!(body.contains("lis_person_name_full</code>: no name"));
    // Each role cell names its column, for the one-role-per-block layout of a phone's width.
    assert!(
        body.contains(
            r#"<td><span class="cell-label" aria-hidden="true">Read as</span>course role Instructor</td><td><span class="cell-label" aria-hidden="true">Staff</span>yes</td>"#
        ),
        "{body}"
    );
    assert!(!body.contains("<code>oauth_signature</code>"));
    let signature = signature
        .replace("%2B", "+")
        .replace("%2F", "/")
        .replace("%3D", "=");
    assert!(!body.contains(&signature) && !body.contains(&signature.replace('/', "&#x2F;")));
    assert!(!body.contains("release-secret-123456"));

    let body = page(app.launch(&launch("Learner")).await, Status::Ok).await;
    assert!(!body.contains("What the LMS sent"));
    assert!(!body.contains("custom_note"));

    // In the debug profile everyone sees it.
    let debug = spawn_app().await;
    let body = page(
        debug.launch(&Launch::new("/any").roles("Learner")).await,
        Status::Ok,
    )
    .await;
    assert!(body.contains("What the LMS sent"));
}

#[rocket::async_test]
async fn what_hides_text_or_turns_it_around_shows_as_escapes_on_the_page() {
    // The debug profile shows everyone the panel of what the LMS sent.
    let app = spawn_app().await;
    let launch = Launch::new("/any")
        .user("\u{202e}redael-rotcurtsni")
        .set("lis_person_name_full", "\u{202e}eciffO snoissimdA")
        .roles("Learner,\u{202e}rotcurtsnI")
        .set("custom_code", "\u{feff}abc")
        .set("custom_zone", "zero\u{200b}width")
        .set("custom_poem", "line one\nline two\u{7}")
        .set("context_title", "جامعة القاهرة");
    let body = page(app.launch(&launch).await, Status::Ok).await;
    for hidden in ['\u{202e}', '\u{feff}', '\u{200b}', '\u{7}'] {
        assert!(!body.contains(hidden), "{hidden:?} in {body}");
    }
    for shown in [
        r#"<dd id="user-id">\u{202e}redael-rotcurtsni</dd>"#,
        // The override in the full name cannot turn the parentheses around.
        r#"<dd id="user-name">\u{202e}redael-rotcurtsni (\u{202e}eciffO snoissimdA)</dd>"#,
        r"<code>\u{202e}rotcurtsnI</code>",
        r"\u{feff}abc",
        r"zero\u{200b}width",
        "line one\nline two\\u{7}",
        r#"<dd>جامعة القاهرة</dd>"#,
    ] {
        assert!(body.contains(shown), "{shown} not in {body}");
    }
}

#[rocket::async_test]
async fn logout_ends_the_session() {
    let app = spawn_app().await;
    let page_of_visit = page(app.launch(&Launch::new("/any")).await, Status::Ok).await;
    // Restored by Back from the back/forward cache, a page asks whether its own visit goes on.
    let token = page_of_visit
        .split("\"LTI-Page-Token\": \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page's check")
        .to_string();
    let app = &app;
    let check = |token: String| async move {
        app.client
            .get("/lti/session_check")
            .header(Header::new("LTI-Page-Token", token))
            .dispatch()
            .await
            .status()
    };
    assert_eq!(check(token.clone()).await, Status::NoContent);
    assert_eq!(check("another-page".into()).await, Status::Unauthorized);
    let res = app.post("/logout").await;
    assert_eq!(res.status(), Status::Ok);
    assert!(res.into_string().await.unwrap().contains("Logged out"));
    assert_eq!(check(token).await, Status::Unauthorized);
    refused(app.get("/session").await, Status::Unauthorized).await;
    assert_eq!(app.count("sessions").await, 0);
    // Without a session cookie (blocked in the LMS frame) nothing was ended, and the page says
    // so: a window opened by the hand-off may still hold the visit.
    let body = app.post("/logout").await.into_string().await.unwrap();
    assert!(
        body.contains("No visit to end") && !body.contains("Logged out"),
        "{body}"
    );
}

#[rocket::async_test]
async fn a_logout_the_database_cannot_record_says_so_and_can_be_tried_again() {
    use sqlx::{ConnectOptions, Connection};
    let app = spawn_app().await;
    assert_eq!(app.launch(&Launch::new("/any")).await.status(), Status::Ok);
    // Another process holds the database's write lock for longer than the tool waits (5 s).
    let options: sqlx::sqlite::SqliteConnectOptions = app.database_url().parse().unwrap();
    let mut lock = options.connect().await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut lock)
        .await
        .unwrap();
    // Beside it, a browser with a made-up cookie (it waits for the lock too).
    let forged = app
        .client
        .post("/logout")
        .header(Header::new("Host", HOST))
        .header(Header::new(
            "Cookie",
            "lti_session=made-up-session-id-000000",
        ))
        .dispatch();
    let (res, forged) = rocket::tokio::join!(app.post("/logout"), forged);
    assert!(!clears_session_cookie(&res), "{:?}", res.headers());
    assert_eq!(res.headers().get_one("Retry-After"), Some("5"));
    let body = refused(res, Status::ServiceUnavailable).await;
    assert!(!body.contains("Logged out"), "{body}");
    // The visit's page offers Log out again and the way back; the made-up cookie's, neither.
    assert!(
        body.contains(r#"action="/logout""#) && body.contains("Back to your page"),
        "{body}"
    );
    let body = refused(forged, Status::ServiceUnavailable).await;
    assert!(
        !body.contains(r#"action="/logout""#) && !body.contains("Back to your page"),
        "{body}"
    );
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    lock.close().await.unwrap();
    // The session still works, and the next try ends it.
    assert_eq!(app.get("/session").await.status(), Status::Ok);
    assert_eq!(app.post("/logout").await.status(), Status::Ok);
    refused(app.get("/session").await, Status::Unauthorized).await;
}

/// A logout request with these headers (and form body, for a POST); the 200 page it answers.
async fn logout_page(app: &TestApp, post: bool, headers: &[(&str, &str)], form: &str) -> String {
    use rocket::http::Header;
    let mut req = if post {
        app.client
            .post("/logout")
            .header(ContentType::Form)
            .body(form)
    } else {
        app.client.get("/logout")
    };
    req = req.header(Header::new("Host", HOST));
    for (name, value) in headers {
        req = req.header(Header::new(name.to_string(), value.to_string()));
    }
    page(req.dispatch().await, Status::Ok).await
}

#[rocket::async_test]
async fn a_prefetched_or_prerendered_logout_ends_nothing_and_asks_when_opened() {
    let app = spawn_app().await;
    let get = false;
    assert_eq!(app.launch(&Launch::new("/any")).await.status(), Status::Ok);
    // Chrome prerenders an address as it is typed into the address bar.
    for ahead in [
        [
            ("Sec-Purpose", "prefetch;prerender"),
            ("Sec-Fetch-Site", "none"),
        ],
        [
            ("Sec-Purpose", "prefetch"),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        [("Purpose", "prefetch"), ("Sec-Fetch-Site", "none")],
        [("X-Moz", "prefetch"), ("Sec-Fetch-Site", "none")],
    ] {
        let body = logout_page(&app, get, &ahead, "").await;
        assert!(
            body.contains("Log out?") && body.contains("continues unless you log out here"),
            "{ahead:?}: {body}"
        );
        assert!(!body.contains("Another site"), "{body}");
        assert_eq!(app.get("/session").await.status(), Status::Ok, "{ahead:?}");
    }
    assert_eq!(app.count("sessions").await, 1);
    // Its button logs out (it carries the visit's token).
    let body = logout_page(&app, get, &[("Sec-Purpose", "prefetch")], "").await;
    let confirmed = format!("csrf={}", csrf_in(&body));
    assert!(
        logout_page(&app, true, &[("Sec-Fetch-Site", "same-origin")], &confirmed)
            .await
            .contains("Logged out")
    );
    assert_eq!(app.count("sessions").await, 0);
    // Without a visit, there is nothing to ask.
    let body = logout_page(&app, get, &[("Sec-Purpose", "prefetch")], "").await;
    assert!(body.contains("nothing to log out of"), "{body}");
}

#[rocket::async_test]
async fn another_site_cannot_end_the_session_it_only_gets_a_question() {
    let app = spawn_app().await;
    let (get, post) = (false, true);
    let cross_site = ("Sec-Fetch-Site", "cross-site");
    // With no visit in this browser there is nothing to confirm.
    let body = logout_page(&app, get, &[cross_site], "").await;
    assert!(
        body.contains("nothing to log out of") && !body.contains("Stay"),
        "{body}"
    );
    // Nor with a visit that has run out.
    assert_eq!(app.launch(&Launch::new("/any")).await.status(), Status::Ok);
    sqlx::query("UPDATE sessions SET expires_at = 1")
        .execute(&app.state().db)
        .await
        .unwrap();
    let body = logout_page(&app, get, &[cross_site], "").await;
    assert!(!body.contains("Stay"), "{body}");
    assert_eq!(app.launch(&Launch::new("/any")).await.status(), Status::Ok);
    // An image or link on another site, and a form posted from one.
    let body = logout_page(&app, get, &[cross_site], "").await;
    assert!(
        body.contains("Log out?") && body.contains("Stay: back to your page"),
        "{body}"
    );
    assert!(body.contains(r#"<form method="post" action="/logout">"#));
    // The confirmation carries the session's token.
    let token = csrf_in(&body);
    let body = logout_page(&app, post, &[("Origin", "https://evil.example")], "").await;
    assert!(body.contains("Log out?"), "{body}");
    // An opaque origin (a sandboxed frame) is not ours either.
    assert!(logout_page(&app, post, &[("Origin", "null")], "")
        .await
        .contains("Log out?"));
    assert_eq!(app.get("/session").await.status(), Status::Ok);
    assert_eq!(app.count("sessions").await, 1);
    // A wrong token from another site changes nothing.
    let forged = format!("csrf={token}x");
    assert!(logout_page(&app, post, &[cross_site], &forged)
        .await
        .contains("Log out?"));
    assert_eq!(app.count("sessions").await, 1);
    // The confirmation's own form, even where the browser calls it cross-site (a sandboxed
    // frame), ends the session: it carries the session's token.
    let confirmed = format!("csrf={token}");
    assert!(logout_page(&app, post, &[cross_site], &confirmed)
        .await
        .contains("Logged out"));
    assert_eq!(app.count("sessions").await, 0);
    assert_eq!(app.launch(&Launch::new("/any")).await.status(), Status::Ok);
    // The button on the page (same origin) and a typed address do end it.
    let own = [
        ("Sec-Fetch-Site", "same-origin"),
        ("Origin", "http://tool.test"),
    ];
    assert!(logout_page(&app, post, &own, "")
        .await
        .contains("Logged out"));
    refused(app.get("/session").await, Status::Unauthorized).await;
    assert_eq!(app.launch(&Launch::new("/any")).await.status(), Status::Ok);
    assert!(logout_page(&app, get, &[("Sec-Fetch-Site", "none")], "")
        .await
        .contains("Logged out"));
    assert_eq!(app.count("sessions").await, 0);
    // Older browsers on a link or image send only the page's address.
    assert_eq!(app.launch(&Launch::new("/any")).await.status(), Status::Ok);
    let evil_page = [("Referer", "https://evil.example/page?x=1")];
    assert!(logout_page(&app, get, &evil_page, "")
        .await
        .contains("Log out?"));
    assert_eq!(app.count("sessions").await, 1);
    let own_page = [("Referer", "http://tool.test/session")];
    assert!(logout_page(&app, get, &own_page, "")
        .await
        .contains("Logged out"));
    assert_eq!(app.count("sessions").await, 0);
    // Older browsers send only `Origin`: ours, also with the scheme a TLS proxy in front changed.
    for own in ["http://tool.test", "https://tool.test"] {
        assert_eq!(app.launch(&Launch::new("/any")).await.status(), Status::Ok);
        let body = logout_page(&app, post, &[("Origin", own)], "").await;
        assert!(body.contains("Logged out"), "{own}");
        assert_eq!(app.count("sessions").await, 0, "{own}");
    }
}

#[rocket::async_test]
async fn index_and_404_are_templated() {
    let app = spawn_app().await;
    let body = page(app.get("/").await, Status::Ok).await;
    assert!(
        body.contains("http:&#x2F;&#x2F;tool.test&#x2F;initial_staff"),
        "{body}"
    );
    // And the registration file an LMS can import instead.
    assert!(
        body.contains(r#"<a href="/lti/config.xml"><code>http:&#x2F;&#x2F;tool.test/lti/config.xml</code></a>"#),
        "{body}"
    );
    // Every launch page is offered, with who gets in: the tool's, and a fork's (`fork::LAUNCH_PAGES`).
    let pages = rocket_lti_tool::web::pages::launch_pages();
    assert!(pages.len() >= rocket_lti_tool::web::pages::LAUNCH_PAGES.len());
    for (path, who) in pages {
        let row = format!(
            "{}</code></td><td>{}</td>",
            html_escaped(&format!("tool.test{path}")),
            html_escaped(who)
        );
        assert!(body.contains(&row), "{row} in {body}");
    }
    // `/session` is named, but not as a launch URL.
    assert!(
        !body.contains("&#x2F;session</code></td>"),
        "no launch URL: {body}"
    );
    assert!(
        body.contains("&#x2F;session</code> continues a visit"),
        "{body}"
    );
    let res = app.get("/nope").await;
    assert_eq!(res.headers().get_one("Cache-Control"), Some("no-store"));
    refused(res, Status::NotFound).await;
    // The stylesheet and icon: kept for five minutes, then revalidated by their ETag (a 304
    // while unchanged), at the addresses the pages link.
    let home = page(app.get("/").await, Status::Ok).await;
    for (file, content_type) in [
        ("style.css", ContentType::CSS),
        ("icon.svg", ContentType::SVG),
    ] {
        let path = format!("/static/{file}");
        assert!(home.contains(&format!("href=\"{path}\"")), "{home}");
        let res = app.get(&path).await;
        assert_eq!(res.status(), Status::Ok);
        assert_eq!(res.content_type(), Some(content_type));
        assert_eq!(
            res.headers().get_one("Cache-Control"),
            Some("public, max-age=300")
        );
        let etag = res.headers().get_one("ETag").expect("an ETag").to_string();
        assert!(!res.into_bytes().await.unwrap().is_empty());
        let conditional = |tag: String| {
            app.client
                .get(path.clone())
                .header(Header::new("Host", HOST))
                .header(Header::new("If-None-Match", tag))
                .dispatch()
        };
        let res = conditional(format!("W/\"x\", {etag}")).await;
        assert_eq!(res.status(), Status::NotModified, "{path}");
        assert_eq!(res.headers().get_one("ETag"), Some(etag.as_str()));
        assert!(res.into_bytes().await.unwrap_or_default().is_empty());
        let res = conditional("\"0000\"".into()).await;
        assert_eq!(res.status(), Status::Ok, "{path}");
    }
    // Only the files may be cached, not an error page under /static.
    let res = app.get("/static/nope.css").await;
    assert_eq!(res.headers().get_one("Cache-Control"), Some("no-store"));
    refused(res, Status::NotFound).await;
}

#[rocket::async_test]
async fn a_wrong_method_on_an_existing_address_is_405_with_allow() {
    let app = spawn_app().await;
    let cases = [
        (Method::Put, "/any", "GET, HEAD, POST"),
        (Method::Delete, "/session", "GET, HEAD, POST"),
        (Method::Options, "/initial_staff", "GET, HEAD, POST"),
        (Method::Get, "/grade/read", "POST"),
        (Method::Head, "/lti/continue", "POST"),
        (Method::Post, "/lti/config.xml", "GET, HEAD"),
        (Method::Delete, "/admin/consumers/rotate", "GET, HEAD, POST"),
        (Method::Put, "/static/style.css", "GET, HEAD"),
        // The home page's POST route only refuses launches (see `launch.rs`): not listed.
        (Method::Post, "/", "GET, HEAD"),
        (Method::Put, "/", "GET, HEAD"),
    ];
    for (method, path, allow) in cases {
        let res = app
            .client
            .req(method, path)
            .header(Header::new("Host", HOST))
            .dispatch()
            .await;
        assert_eq!(
            res.headers().get_one("Allow"),
            Some(allow),
            "{method} {path} {}",
            res.status()
        );
        if method != Method::Head {
            let body = refused(res, Status::MethodNotAllowed).await;
            assert!(body.contains("does not take"), "{method} {path}: {body}");
        } else {
            assert_eq!(res.status(), Status::MethodNotAllowed, "{method} {path}");
        }
    }
    // An address no route has, whatever the method, stays a 404 without `Allow`.
    for method in [Method::Get, Method::Put] {
        let res = app
            .client
            .req(method, "/nowhere")
            .header(Header::new("Host", HOST))
            .dispatch()
            .await;
        assert_eq!(res.headers().get_one("Allow"), None);
        refused(res, Status::NotFound).await;
    }
}

#[rocket::async_test]
async fn visiting_a_launch_page_without_a_launch_keeps_the_session() {
    let app = spawn_app().await;
    assert_eq!(app.launch(&Launch::new("/any")).await.status(), Status::Ok);
    for path in ["/initial", "/initial_staff"] {
        refused(app.get(path).await, Status::Unauthorized).await;
        refused(app.post(path).await, Status::Unauthorized).await;
    }
    assert_eq!(app.get("/session").await.status(), Status::Ok);
}

#[rocket::async_test]
async fn any_treats_undecodable_non_launch_input_as_a_session_request() {
    let app = spawn_app().await;
    assert_eq!(app.launch(&Launch::new("/any")).await.status(), Status::Ok);
    assert_eq!(app.get("/any?x=%ff").await.status(), Status::Ok);
    assert_eq!(
        app.post_form("/any", "comment=%E9t%E9".into())
            .await
            .status(),
        Status::Ok
    );
    let many: Vec<String> = (0..3000).map(|i| format!("q{i}=1")).collect();
    assert_eq!(
        app.get(&format!("/any?{}", many.join("&"))).await.status(),
        Status::Ok
    );
    // ...but undecodable input that tries to be a launch is refused.
    refused(
        app.post_form("/any", "oauth_nonce=%FF".into()).await,
        Status::BadRequest,
    )
    .await;
}

#[rocket::async_test]
async fn an_address_that_does_not_exist_still_leads_back_to_the_visit() {
    let app = spawn_app().await;
    // No visit: nothing to go back to.
    let body = refused(app.get("/nope").await, Status::NotFound).await;
    assert!(
        !body.contains("Back to your page") && !body.contains("/logout"),
        "{body}"
    );
    assert_eq!(app.launch(&Launch::new("/any")).await.status(), Status::Ok);
    let body = refused(app.get("/nope").await, Status::NotFound).await;
    assert!(
        body.contains("Back to your page") && body.contains(r#"action="/logout""#),
        "{body}"
    );
    let res = app
        .client
        .put("/any")
        .header(Header::new("Host", HOST))
        .dispatch()
        .await;
    let body = refused(res, Status::MethodNotAllowed).await;
    assert!(body.contains("Back to your page"), "{body}");
    // The admin area leads back to itself, not to the visit, however its address is spelt.
    for path in ["/admin/nope", "//admin/nope", "/%61dmin/nope"] {
        let body = refused(app.get(path).await, Status::NotFound).await;
        assert!(
            !body.contains("Back to your page") && body.contains("Back to the admin area"),
            "{path}: {body}"
        );
    }
}

#[rocket::async_test]
async fn the_benchmark_baselines_answer_the_pages_a_launch_and_a_visit_get() {
    // The launch's own page carries the new-window offer and the history entry for its visit.
    let landing = ["id=\"new-window\"", "history.replaceState"];
    let app = spawn_app_with(|f| f.merge(("benchmark_routes", true))).await;
    let launched = page(app.launch(&Launch::new("/any")).await, Status::Ok).await;
    let visit = page(app.get("/any").await, Status::Ok).await;
    let body = Launch::new("/any").signed_body();
    let post_baseline = page(app.post_form("/bench/post", body).await, Status::Ok).await;
    let get_baseline = page(app.get("/bench/get").await, Status::Ok).await;
    for part in landing {
        assert!(
            launched.contains(part) && post_baseline.contains(part),
            "{part}"
        );
        assert!(
            !visit.contains(part) && !get_baseline.contains(part),
            "{part}"
        );
    }
    // The baseline launched nothing.
    assert_eq!(app.count("nonces").await, 1);
    // Off by default.
    let app = spawn_app().await;
    assert_eq!(app.get("/bench/get").await.status(), Status::NotFound);
    let body = Launch::new("/any").signed_body();
    assert_eq!(
        app.post_form("/bench/post", body).await.status(),
        Status::NotFound
    );
}

#[rocket::async_test]
async fn a_cookie_of_a_session_that_is_gone_is_told_apart_from_none_and_cleared() {
    let app = spawn_app().await;
    let get_with = |cookie: String, head: bool| {
        let req = match head {
            true => app.client.head("/session"),
            false => app.client.get("/session"),
        };
        // Through the client's jar: Rocket's local client reads no `Cookie` header into it.
        req.header(Header::new("Host", HOST))
            .cookie(rocket::http::Cookie::new("lti_session", cookie))
            .dispatch()
    };
    let res = app.launch(&Launch::new("/any")).await;
    let cookie = res
        .cookies()
        .get("lti_session")
        .expect("session cookie")
        .value()
        .to_string();
    assert_eq!(app.post("/logout").await.status(), Status::Ok);
    // The cookie of a visit that was ended (logged out, or replaced in another tab).
    let res = get_with(cookie.clone(), false).await;
    assert!(clears_session_cookie(&res), "{:?}", res.headers());
    let body = refused(res, Status::Unauthorized).await;
    assert!(body.contains("Your visit has ended"), "{body}");
    assert!(!body.contains("blocking"), "{body}");
    // One that ran out and was pruned since: its id's date says it expired.
    let nine_hours_ago = (now() - 9 * 3600) * 1000;
    let old = format!("{nine_hours_ago:012x}{}", &cookie[12..]);
    let res = get_with(old.clone(), false).await;
    assert!(clears_session_cookie(&res), "{:?}", res.headers());
    let body = refused(res, Status::Unauthorized).await;
    assert!(body.contains("Your visit has expired"), "{body}");
    // A HEAD clears nothing.
    let res = get_with(old, true).await;
    assert_eq!(res.status(), Status::Unauthorized);
    assert!(res.headers().get_one("Set-Cookie").is_none());
    // An empty one is none.
    let body = refused(get_with(String::new(), false).await, Status::Unauthorized).await;
    assert!(body.contains("Not signed in"), "{body}");
    // No cookie at all: the advice about blocked cookies.
    let res = app
        .client
        .get("/session")
        .header(Header::new("Host", HOST))
        .dispatch()
        .await;
    // With the challenge RFC 9110 asks of a 401: an LTI launch's.
    assert_eq!(
        res.headers().get_one("WWW-Authenticate"),
        Some("OAuth realm=\"lti\"")
    );
    let body = refused(res, Status::Unauthorized).await;
    assert!(
        body.contains("Not signed in") && body.contains("blocking"),
        "{body}"
    );
}

#[rocket::async_test]
async fn an_anonymous_launch_says_so_rather_than_showing_blanks() {
    let app = spawn_app().await;
    // LTI 1.1 recommends user_id but does not require it: an LMS may hide who launched.
    let anonymous = Launch::new("/any")
        .without("user_id")
        .without("lis_person_name_full")
        .roles("Learner");
    let body = page(app.launch(&anonymous).await, Status::Ok).await;
    assert!(
        body.contains(r#"<dd id="user-id"><em>none sent</em></dd>"#),
        "{body}"
    );
    assert!(
        body.contains(r#"<dd id="user-name"><em>not sent</em></dd>"#),
        "{body}"
    );
    let body = page(app.get("/session").await, Status::Ok).await;
    assert!(body.contains("none sent"), "{body}");
    // No user id but a name: the name alone, not " (name)".
    let named = Launch::new("/any").without("user_id").roles("Learner");
    let body = page(app.launch(&named).await, Status::Ok).await;
    assert!(
        body.contains(r#"<dd id="user-name">Ada Lovelace</dd>"#),
        "{body}"
    );
    // A named launch shows its values as sent.
    let body = page(app.launch(&Launch::new("/any")).await, Status::Ok).await;
    assert!(
        body.contains(r#"<dd id="user-id">teacher-1</dd>"#),
        "{body}"
    );
    assert!(!body.contains("none sent"), "{body}");
}
