//! The admin area from the outside: login, throttling, CSRF, every consumer action logged in and
//! logged out, and what each change does to launches.

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use rocket::http::{ContentType, Header, Status};
use rocket::local::asynchronous::{LocalRequest, LocalResponse};
use rocket_lti_tool::crypto;
use rocket_lti_tool::store::{self, admin, consumers};

use crate::helpers::*;

const PASSWORD: &str = "correct horse battery";

/// Stores an admin password as `lti-tool admin set-password` would.
async fn set_password(app: &TestApp, password: &str) {
    let hash = crypto::hash_password(password).unwrap();
    admin::set_password_hash(&app.state().db, &hash, store::now())
        .await
        .unwrap();
}

fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(n, v)| format!("{n}={}", utf8_percent_encode(v, NON_ALPHANUMERIC)))
        .collect::<Vec<_>>()
        .join("&")
}

async fn post<'a>(app: &'a TestApp, path: &str, fields: &[(&str, &str)]) -> LocalResponse<'a> {
    app.post_form(path, form(fields)).await
}

async fn login<'a>(app: &'a TestApp, password: &str) -> LocalResponse<'a> {
    post(app, "/admin/login", &[("password", password)]).await
}

/// An app with an admin password, logged in (the tracked client keeps the cookie).
async fn logged_in() -> TestApp {
    let app = spawn_app().await;
    set_password(&app, PASSWORD).await;
    assert_eq!(login(&app, PASSWORD).await.status(), Status::SeeOther);
    app
}

/// The text between `start` and the next `end`.
fn between<'a>(body: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = body.find(start)? + start.len();
    let len = body[from..].find(end)?;
    Some(&body[from..from + len])
}

/// The CSRF token on the logged-in list page.
async fn csrf(app: &TestApp) -> String {
    let body = page(app.get("/admin").await, Status::Ok).await;
    between(&body, r#"name="csrf" value=""#, "\"")
        .expect("a CSRF field")
        .to_string()
}

fn is_login_page(body: &str) -> bool {
    body.contains("Admin login") && body.contains(r#"action="/admin/login""#)
}

/// Creates a consumer through the admin; returns the secret shown.
async fn create(app: &TestApp, key: &str) -> String {
    let token = csrf(app).await;
    let res = post(app, "/admin/consumers", &[("csrf", &token), ("key", key)]).await;
    let body = page(res, Status::Ok).await;
    between(&body, r#"<code id="consumer-secret">"#, "</code>")
        .expect("the secret is shown")
        .to_string()
}

async fn stored(app: &TestApp, key: &str) -> Option<consumers::Consumer> {
    consumers::find(&app.state().db, key).await.unwrap()
}

#[rocket::async_test]
async fn without_a_password_admin_explains_how_to_set_one_and_offers_nothing() {
    let app = spawn_app().await;
    let body = page(app.get("/admin").await, Status::Ok).await;
    assert!(body.contains("lti-tool admin set-password"), "{body}");
    assert!(!body.contains("<input"), "no form at all: {body}");
    let res = login(&app, "anything at all").await;
    assert!(res.headers().get_one("Set-Cookie").is_none());
    let body = page(res, Status::Ok).await;
    assert!(body.contains("lti-tool admin set-password"));
    assert_eq!(app.count("admin_sessions").await, 0);
}

#[rocket::async_test]
async fn login_sets_a_strict_admin_only_cookie_and_logout_ends_the_session() {
    let app = spawn_app().await;
    set_password(&app, PASSWORD).await;
    let body = page(app.get("/admin").await, Status::Ok).await;
    assert!(is_login_page(&body));
    let body = page(app.get("/admin/").await, Status::Ok).await;
    assert!(is_login_page(&body), "with a trailing slash too");

    let res = login(&app, "wrong password").await;
    assert!(res.headers().get_one("Set-Cookie").is_none());
    // The challenge RFC 9110 asks of a 401, of a scheme no browser asks a password for.
    assert_eq!(
        res.headers().get_one("WWW-Authenticate"),
        Some("Cookie realm=\"admin\"")
    );
    let body = page(res, Status::Unauthorized).await;
    assert!(is_login_page(&body) && body.contains("not right"));
    assert!(
        !body.contains("wrong password"),
        "the password is not echoed"
    );

    let res = login(&app, PASSWORD).await;
    assert_eq!(res.status(), Status::SeeOther);
    assert_eq!(res.headers().get_one("Location"), Some("/admin"));
    let cookie = res
        .headers()
        .get("Set-Cookie")
        .find(|c| c.starts_with("lti_admin="))
        .expect("the admin cookie")
        .to_string();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
        assert!(cookie.contains(part), "{part} in {cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "debug profile serves plain http"
    );
    let body = page(app.get("/admin").await, Status::Ok).await;
    assert!(body.contains("Consumer keys") && body.contains("__consumer_key__"));
    // The cookie value is not what the database holds.
    let value = cookie["lti_admin=".len()..].split(';').next().unwrap();
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM admin_sessions")
        .fetch_all(&app.state().db)
        .await
        .unwrap();
    assert_eq!(ids.len(), 1);
    assert_ne!(ids[0], value);

    // Logout needs the CSRF token too.
    let res = post(&app, "/admin/logout", &[]).await;
    assert_eq!(res.status(), Status::Forbidden);
    assert_eq!(app.count("admin_sessions").await, 1);
    let token = csrf(&app).await;
    let res = post(&app, "/admin/logout", &[("csrf", &token)]).await;
    assert_eq!(res.status(), Status::SeeOther);
    assert_eq!(app.count("admin_sessions").await, 0);
    let body = page(app.get("/admin").await, Status::Ok).await;
    assert!(is_login_page(&body));
    // The old cookie, replayed, is dead.
    let res = app
        .client
        .get("/admin")
        .header(Header::new("Host", HOST))
        .cookie(rocket::http::Cookie::new("lti_admin", value.to_string()))
        .dispatch()
        .await;
    let body = page(res, Status::Unauthorized).await;
    assert!(is_login_page(&body) && body.contains("has ended"), "{body}");
}

#[rocket::async_test]
async fn the_admin_cookie_is_secure_when_cookies_are() {
    let app = spawn_app_with(|f| f.merge(("cookie_secure", true))).await;
    set_password(&app, PASSWORD).await;
    let res = login(&app, PASSWORD).await;
    let cookie = res
        .headers()
        .get("Set-Cookie")
        .find(|c| c.contains("lti_admin="))
        .expect("the admin cookie")
        .to_string();
    assert!(cookie.contains("Secure"), "{cookie}");
    // `__Secure-` cookies (browsers take them only with Secure, from an https page), scoped to
    // the admin pages, for this host alone.
    let set: Vec<String> = res.headers().get("Set-Cookie").map(String::from).collect();
    for name in ["__Secure-lti_admin=", "__Secure-lti_admin_device="] {
        let c = set
            .iter()
            .find(|c| c.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {set:?}"));
        let attributes: Vec<&str> = c.split(';').skip(1).map(str::trim).collect();
        assert!(attributes.contains(&"Secure"), "{c}");
        assert!(attributes.contains(&"HttpOnly"), "{c}");
        assert!(attributes.contains(&"SameSite=Strict"), "{c}");
        assert!(attributes.contains(&"Path=/admin"), "{c}");
        assert!(!c.to_ascii_lowercase().contains("domain="), "{c}");
    }
    let value = cookie["__Secure-lti_admin=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let admin_page = |cookies: String| {
        app.client
            .get("/admin")
            .header(Header::new("Host", HOST))
            .header(Header::new("Cookie", cookies))
            .dispatch()
    };
    let live = format!("__Secure-lti_admin={value}");
    assert!(!is_login_page(
        &page(admin_page(live.clone()).await, Status::Ok).await
    ));
    // A sibling subdomain over https can set one for the whole domain; sent first or last, it
    // does not lock the admin out.
    for planted in [
        format!("__Secure-lti_admin=planted; {live}"),
        format!("{live}; __Secure-lti_admin=planted"),
    ] {
        let res = admin_page(planted.clone()).await;
        assert!(!is_login_page(&page(res, Status::Ok).await), "{planted}");
    }
    // Cookies another subdomain could set (`Domain=example.edu`, sent last), or names that only
    // decode to ours, neither replace the real one nor count on their own.
    for planted in ["lti_admin=planted", "%5F_Secure-lti_admin=planted"] {
        let res = admin_page(format!("{live}; {planted}")).await;
        assert!(res.headers().get_one("Set-Cookie").is_none(), "{planted}");
        assert!(!is_login_page(&page(res, Status::Ok).await), "{planted}");
        let alone = page(
            admin_page(planted.replace("planted", &value)).await,
            Status::Ok,
        )
        .await;
        assert!(is_login_page(&alone), "{planted}");
    }
}

#[rocket::async_test]
async fn an_idle_admin_is_logged_out() {
    // Two seconds: whole-second timestamps leave the first check at least a second of margin.
    let app = spawn_app_with(|f| f.merge(("admin_idle_timeout", 2))).await;
    set_password(&app, PASSWORD).await;
    assert_eq!(login(&app, PASSWORD).await.status(), Status::SeeOther);
    assert!(!is_login_page(
        &page(app.get("/admin").await, Status::Ok).await
    ));
    let token = csrf(&app).await;
    rocket::tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    // A form sent after the session ended: the login page says why, and that nothing was saved.
    let res = post(
        &app,
        "/admin/consumers",
        &[("csrf", &token), ("key", "late")],
    )
    .await;
    let body = page(res, Status::Unauthorized).await;
    assert!(is_login_page(&body), "{body}");
    assert!(
        body.contains("Your admin session has ended (after 2 seconds without use")
            && body.contains("was not saved"),
        "{body}"
    );
    assert!(stored(&app, "late").await.is_none());
    assert!(is_login_page(
        &page(app.get("/admin").await, Status::Ok).await
    ));
    // The admin area's own address says so too (the cookie cleared, it is the plain login then).
    assert_eq!(login(&app, PASSWORD).await.status(), Status::SeeOther);
    rocket::tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let body = page(app.get("/admin").await, Status::Unauthorized).await;
    assert!(
        is_login_page(&body)
            && body.contains("Your admin session has ended")
            && !body.contains("was not saved"),
        "{body}"
    );
    assert!(!page(app.get("/admin").await, Status::Ok)
        .await
        .contains("has ended"));
}

#[rocket::async_test]
async fn a_busy_admin_session_still_ends_twelve_hours_after_the_login() {
    use rocket_lti_tool::store::admin::{start_session, touch_session, SESSION_MAX_AGE};
    let app = spawn_app().await;
    let db = &app.state().db;
    let (login_at, idle) = (rocket_lti_tool::store::now(), 1800);
    let token = start_session(db, login_at, idle).await.expect("session");
    // Used every 25 minutes: alive until its twelfth hour is over, not a second longer.
    let mut at = login_at;
    while at + 1500 < login_at + SESSION_MAX_AGE {
        at += 1500;
        let touched = touch_session(db, &token, at, idle).await.expect("touch");
        assert!(touched.is_some(), "ended after {} s", at - login_at);
    }
    let last = touch_session(db, &token, login_at + SESSION_MAX_AGE, idle)
        .await
        .expect("touch");
    assert!(last.is_none());
}

#[rocket::async_test]
async fn a_new_password_takes_effect_at_once_and_ends_admin_sessions() {
    let app = logged_in().await;
    set_password(&app, "another password").await;
    assert_eq!(app.count("admin_sessions").await, 0);
    let body = page(app.get("/admin").await, Status::Unauthorized).await;
    assert!(
        is_login_page(&body) && body.contains("a logout or password change elsewhere"),
        "{body}"
    );
    assert_eq!(login(&app, PASSWORD).await.status(), Status::Unauthorized);
    assert_eq!(
        login(&app, "another password").await.status(),
        Status::SeeOther
    );
}

#[rocket::async_test]
async fn a_login_form_posted_from_another_site_is_refused() {
    let app = spawn_app().await;
    set_password(&app, PASSWORD).await;
    let attempt = |headers: &[(&'static str, &'static str)]| {
        let mut req = app
            .client
            .post("/admin/login")
            .header(Header::new("Host", HOST))
            .header(ContentType::Form)
            .body(form(&[("password", PASSWORD)]));
        for (name, value) in headers {
            req = req.header(Header::new(*name, *value));
        }
        req.dispatch()
    };
    for foreign in [
        &[("Origin", "https://evil.example")][..],
        &[("Sec-Fetch-Site", "cross-site")][..],
    ] {
        let res = attempt(foreign).await;
        assert!(res.cookies().get("lti_admin").is_none());
        let body = page(res, Status::Forbidden).await;
        assert!(body.contains("Form from another site"), "{body}");
        // Not logged in by it.
        assert!(is_login_page(
            &page(app.get("/admin").await, Status::Ok).await
        ));
    }
    // The same form from the tool's own login page logs in.
    let res = attempt(&[
        ("Origin", "http://tool.test"),
        ("Sec-Fetch-Site", "same-origin"),
    ])
    .await;
    assert_eq!(res.status(), Status::SeeOther);
    assert!(res.cookies().get("lti_admin").is_some());
}

/// A login form posted from the client address `addr` (`ip:port`).
fn login_from<'c>(app: &'c TestApp, addr: &str) -> LocalRequest<'c> {
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    app.client
        .post("/admin/login")
        .header(Header::new("Host", HOST))
        .header(ContentType::Form)
        .remote(addr)
}

#[rocket::async_test]
async fn failed_logins_are_throttled_per_address() {
    let app = spawn_app().await;
    set_password(&app, PASSWORD).await;
    let from = |addr: &str| login_from(&app, addr);
    for _ in 0..5 {
        let res = from("192.0.2.7:5000")
            .body("password=nope")
            .dispatch()
            .await;
        assert_eq!(res.status(), Status::Unauthorized);
    }
    let res = from("192.0.2.7:5001")
        .body("password=nope")
        .dispatch()
        .await;
    assert_eq!(res.headers().get_one("Retry-After"), Some("60"));
    let body = page(res, Status::TooManyRequests).await;
    assert!(body.contains("Too many attempts"), "{body}");
    // Even the right password waits: guessing must not go on.
    let res = from("192.0.2.7:5002")
        .body(form(&[("password", PASSWORD)]))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::TooManyRequests);
    assert!(res.headers().get_one("Set-Cookie").is_none());
    assert_eq!(app.count("admin_sessions").await, 0);
    // Another address is not affected.
    let res = from("198.51.100.9:5000")
        .body(form(&[("password", PASSWORD)]))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::SeeOther);
}

#[rocket::async_test]
async fn an_ipv6_client_cannot_rotate_through_its_slash_64_to_keep_guessing() {
    let app = spawn_app().await;
    set_password(&app, PASSWORD).await;
    let from = |addr: &str| login_from(&app, addr);
    // One host usually holds a whole /64: each guess from a new address in it.
    for i in 1..=5 {
        let res = from(&format!("[2001:db8:7:7::{i:x}]:5000"))
            .body("password=nope")
            .dispatch()
            .await;
        assert_eq!(res.status(), Status::Unauthorized);
    }
    let res = from("[2001:db8:7:7:abcd::99]:5000")
        .body(form(&[("password", PASSWORD)]))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::TooManyRequests);
    // The next /64 is someone else.
    let res = from("[2001:db8:7:8::1]:5000")
        .body(form(&[("password", PASSWORD)]))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::SeeOther);
}

#[rocket::async_test]
async fn logged_out_requests_get_the_login_page_and_change_nothing() {
    let app = spawn_app().await;
    set_password(&app, PASSWORD).await;
    let before = stored(&app, "__consumer_key__").await.unwrap();
    let key = "__consumer_key__";
    for path in [
        "/admin/consumers/new",
        "/admin/consumers/rotate?key=__consumer_key__",
        "/admin/consumers/delete?key=__consumer_key__",
    ] {
        let body = page(app.get(path).await, Status::Unauthorized).await;
        assert!(is_login_page(&body), "{path}: {body}");
    }
    for (path, fields) in [
        ("/admin/consumers", vec![("key", "new-key")]),
        ("/admin/consumers/rotate", vec![("key", key)]),
        ("/admin/consumers/disable", vec![("key", key)]),
        ("/admin/consumers/delete", vec![("key", key)]),
        ("/admin/logout", vec![]),
    ] {
        // A forged CSRF field changes nothing either.
        let mut fields = fields.clone();
        fields.push(("csrf", "forged"));
        let body = page(post(&app, path, &fields).await, Status::Unauthorized).await;
        assert!(is_login_page(&body), "{path}: {body}");
    }
    assert_eq!(stored(&app, key).await, Some(before));
    assert_eq!(app.count("consumers").await, 1);
    // A disabled consumer stays disabled too.
    consumers::set_enabled(&app.state().db, key, false)
        .await
        .unwrap();
    let res = post(&app, "/admin/consumers/enable", &[("key", key)]).await;
    assert_eq!(res.status(), Status::Unauthorized);
    assert!(!stored(&app, key).await.unwrap().enabled);
}

#[rocket::async_test]
async fn actions_without_the_sessions_csrf_token_are_403_and_change_nothing() {
    let app = logged_in().await;
    let key = "__consumer_key__";
    let before = stored(&app, key).await.unwrap();
    for token in [None, Some("wrong"), Some("")] {
        for (path, fields) in [
            ("/admin/consumers", vec![("key", "new-key")]),
            ("/admin/consumers/rotate", vec![("key", key)]),
            ("/admin/consumers/disable", vec![("key", key)]),
            ("/admin/consumers/delete", vec![("key", key)]),
            ("/admin/logout", vec![]),
        ] {
            let mut fields = fields.clone();
            if let Some(t) = token {
                fields.push(("csrf", t));
            }
            let body = page(post(&app, path, &fields).await, Status::Forbidden).await;
            assert!(body.contains("Form expired"), "{path}: {body}");
        }
    }
    assert_eq!(stored(&app, key).await, Some(before));
    assert_eq!(app.count("consumers").await, 1);
    assert_eq!(app.count("admin_sessions").await, 1);
    // Another admin session's token is no good either.
    admin::start_session(&app.state().db, store::now(), 600)
        .await
        .unwrap();
    let tokens: Vec<String> = sqlx::query_scalar("SELECT csrf FROM admin_sessions")
        .fetch_all(&app.state().db)
        .await
        .unwrap();
    let mine = csrf(&app).await;
    let theirs = tokens.into_iter().find(|t| *t != mine).unwrap();
    let res = post(
        &app,
        "/admin/consumers/disable",
        &[("csrf", &theirs), ("key", key)],
    )
    .await;
    assert_eq!(res.status(), Status::Forbidden);
    assert!(stored(&app, key).await.unwrap().enabled);
}

#[rocket::async_test]
async fn a_created_consumer_shows_its_secret_once_and_can_launch() {
    let app = logged_in().await;
    let body = page(app.get("/admin/consumers/new").await, Status::Ok).await;
    for label in [
        r#"<label for="key">"#,
        r#"<label for="name">"#,
        r#"<label for="note">"#,
    ] {
        assert!(body.contains(label), "{label}");
    }
    let token = csrf(&app).await;
    let res = post(
        &app,
        "/admin/consumers",
        &[
            ("csrf", &token),
            ("key", "canvas-1"),
            ("name", ""),
            ("note", ""),
        ],
    )
    .await;
    assert_eq!(res.headers().get_one("Cache-Control"), Some("no-store"));
    let body = page(res, Status::Ok).await;
    let secret = between(&body, r#"<code id="consumer-secret">"#, "</code>").unwrap();
    assert!((16..=64).contains(&secret.len()), "{secret}");
    assert!(secret
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert!(body.contains("shown only once"));
    assert!(body.contains(r#"<code id="consumer-key">canvas-1</code>"#));
    for path in ["any", "initial", "initial_staff"] {
        assert!(
            body.contains(&format!("http:&#x2F;&#x2F;{HOST}&#x2F;{path}</code>")),
            "launch URL for {path}: {body}"
        );
    }
    // `/session` takes no launch: it is not offered as a launch URL.
    assert!(!body.contains("&#x2F;session</code>"), "{body}");
    let created = stored(&app, "canvas-1").await.unwrap();
    assert_eq!(created.name, "canvas-1", "the name defaults to the key");
    assert!(created.enabled);
    assert_eq!(created.secret, secret);

    // The LMS, with what the page showed, is let in; the list counts the launch.
    let res = app
        .launch(&Launch::new("/initial").consumer("canvas-1", secret))
        .await;
    assert!(page(res, Status::Ok).await.contains("Initial request"));
    let list = page(app.get("/admin").await, Status::Ok).await;
    assert!(!list.contains(secret), "the list never shows a secret");
    let row = between(&list, "<code>canvas-1</code>", "</tr>").unwrap();
    assert!(row.contains(r#"Launches</span><div>1<"#), "{row}");
    assert!(!row.contains(r#"Last launch</span><div>never"#), "{row}");

    // At rest the secret is encrypted.
    let raw: String = sqlx::query_scalar("SELECT secret FROM consumers WHERE consumer_key = ?")
        .bind("canvas-1")
        .fetch_one(&app.state().db)
        .await
        .unwrap();
    assert!(!raw.contains(secret), "{raw}");
    let demo: String = sqlx::query_scalar("SELECT secret FROM consumers WHERE consumer_key = ?")
        .bind("__consumer_key__")
        .fetch_one(&app.state().db)
        .await
        .unwrap();
    assert!(!demo.contains("__lti_secret__"));
}

#[rocket::async_test]
async fn a_duplicate_key_gets_a_clear_message_and_changes_nothing() {
    let app = logged_in().await;
    let secret = create(&app, "moodle").await;
    let before = stored(&app, "moodle").await.unwrap();
    let token = csrf(&app).await;
    let res = post(
        &app,
        "/admin/consumers",
        &[("csrf", &token), ("key", "moodle"), ("name", "Other")],
    )
    .await;
    let body = page(res, Status::Conflict).await;
    assert!(body.contains("already exists"), "{body}");
    assert!(body.contains("Nothing was changed"));
    assert!(!body.contains("consumer-secret"));
    assert_eq!(stored(&app, "moodle").await, Some(before));
    let res = app
        .launch(&Launch::new("/initial").consumer("moodle", &secret))
        .await;
    assert_eq!(res.status(), Status::Ok);
    // A key that differs only in case is another key, created with a warning on its page.
    let token = csrf(&app).await;
    let res = post(
        &app,
        "/admin/consumers",
        &[("csrf", &token), ("key", "Moodle")],
    )
    .await;
    let body = page(res, Status::Ok).await;
    assert!(body.contains("consumer-secret"), "{body}");
    assert!(
        body.contains("<code>moodle</code> differs from <code>Moodle</code> only in case"),
        "{body}"
    );
    assert!(stored(&app, "Moodle").await.is_some());
    // The first one's page had no such warning.
    let token = csrf(&app).await;
    let res = post(
        &app,
        "/admin/consumers",
        &[("csrf", &token), ("key", "canvas")],
    )
    .await;
    let body = page(res, Status::Ok).await;
    assert!(!body.contains("only in case"), "{body}");
    assert!(!body.contains("Open edX cannot"), "{body}");
    // A key with a colon works everywhere but Open edX, whose passports split at colons.
    let token = csrf(&app).await;
    let res = post(
        &app,
        "/admin/consumers",
        &[("csrf", &token), ("key", "edx:course-1")],
    )
    .await;
    let body = page(res, Status::Ok).await;
    assert!(body.contains("Open edX cannot use this key"), "{body}");
}

#[rocket::async_test]
async fn empty_over_long_and_invalid_keys_are_refused_with_a_message() {
    let app = logged_in().await;
    let token = csrf(&app).await;
    let long = "k".repeat(256);
    for (key, message) in [
        ("", "Enter a consumer key"),
        ("   ", "Enter a consumer key"),
        (long.as_str(), "too long"),
        ("has space", "may only contain"),
        ("<script>alert(1)</script>", "may only contain"),
    ] {
        let res = post(&app, "/admin/consumers", &[("csrf", &token), ("key", key)]).await;
        let body = page(res, Status::BadRequest).await;
        assert!(body.contains(message), "{key:?}: {body}");
        assert!(!body.contains("<script>alert"), "escaped: {body}");
    }
    let res = post(
        &app,
        "/admin/consumers",
        &[
            ("csrf", &token),
            ("key", "ok-key"),
            ("name", &"n".repeat(201)),
        ],
    )
    .await;
    let body = page(res, Status::BadRequest).await;
    assert!(body.contains("name is too long"), "{body}");
    // The field at fault is the one marked (and focused), not the key.
    assert!(
        body.contains(r#"id="name" name="name" maxlength="200" value=""#)
            && body.contains(r#"autofocus aria-invalid="true" aria-describedby="form-error">"#)
            && !body.contains(r#"id="key" name="key" required maxlength="255" autocomplete="off" value="ok-key" autofocus"#),
        "{body}"
    );
    assert_eq!(app.count("consumers").await, 1);
    // Control characters would reach the terminal of whoever runs `consumer list`.
    for (name, note) in [
        ("ok\u{1b}]0;pwned\u{7}\u{1b}[2J", ""),
        ("tab\tname", ""),
        ("C1\u{9b}31m", ""),
        ("moodle\u{202e}lacol", ""),
        ("zero\u{200b}width", ""),
        ("fine", "line\u{2028}separator"),
        ("\u{3164}", ""),
        ("soft\u{ad}hyphen", ""),
        ("\u{e0041}\u{e007f}", ""),
        ("\u{200d}", ""),
        ("private\u{e000}", ""),
        ("fine", "nonchar\u{ffff}"),
        ("fine", "\u{2800}"),
        ("fine", "bell\u{7}"),
    ] {
        let res = post(
            &app,
            "/admin/consumers",
            &[
                ("csrf", &token),
                ("key", "ok-key"),
                ("name", name),
                ("note", note),
            ],
        )
        .await;
        let body = page(res, Status::BadRequest).await;
        assert!(
            body.contains("control characters"),
            "{name:?} {note:?}: {body}"
        );
    }
    assert_eq!(app.count("consumers").await, 1);
    // A note may span lines.
    let res = post(
        &app,
        "/admin/consumers",
        &[
            ("csrf", &token),
            ("key", "multi-line"),
            ("note", "line one\r\nline two\tand a tab"),
        ],
    )
    .await;
    assert_eq!(res.status(), Status::Ok);
    // The longest valid key is fine.
    let res = post(
        &app,
        "/admin/consumers",
        &[("csrf", &token), ("key", &"k".repeat(255))],
    )
    .await;
    assert_eq!(res.status(), Status::Ok);
}

#[rocket::async_test]
async fn names_and_notes_are_escaped_everywhere() {
    let app = logged_in().await;
    let token = csrf(&app).await;
    let res = post(
        &app,
        "/admin/consumers",
        &[
            ("csrf", &token),
            ("key", "x1"),
            ("name", "<img src=x onerror=alert(1)>"),
            ("note", "\"><script>alert(2)</script>"),
        ],
    )
    .await;
    assert_eq!(res.status(), Status::Ok);
    let list = page(app.get("/admin").await, Status::Ok).await;
    assert!(!list.contains("<img src=x"), "{list}");
    assert!(!list.contains("<script>alert(2)"), "{list}");
    assert!(list.contains("&lt;img src=x"));
    let confirm = page(app.get("/admin/consumers/delete?key=x1").await, Status::Ok).await;
    assert!(!confirm.contains("<img src=x"));
}

#[rocket::async_test]
async fn disabling_refuses_launches_and_enabling_restores_them() {
    let app = logged_in().await;
    let secret = create(&app, "lms").await;
    let token = csrf(&app).await;
    let res = post(
        &app,
        "/admin/consumers/disable",
        &[("csrf", &token), ("key", "lms")],
    )
    .await;
    assert_eq!(res.status(), Status::SeeOther);
    let location = res.headers().get_one("Location").unwrap().to_string();
    assert!(!stored(&app, "lms").await.unwrap().enabled);
    let list = page(app.get(&location).await, Status::Ok).await;
    assert!(list.contains("Consumer lms is disabled"));
    let res = app
        .launch(&Launch::new("/initial").consumer("lms", &secret))
        .await;
    let body = refused(res, Status::Unauthorized).await;
    assert!(body.contains("disabled"));

    let res = post(
        &app,
        "/admin/consumers/enable",
        &[("csrf", &token), ("key", "lms")],
    )
    .await;
    assert_eq!(res.status(), Status::SeeOther);
    let res = app
        .launch(&Launch::new("/initial").consumer("lms", &secret))
        .await;
    assert_eq!(res.status(), Status::Ok);
    // An unknown key is a 404 page, and nothing is created.
    let res = post(
        &app,
        "/admin/consumers/disable",
        &[("csrf", &token), ("key", "nobody")],
    )
    .await;
    assert_eq!(res.status(), Status::NotFound);
    assert_eq!(app.count("consumers").await, 2);
}

#[rocket::async_test]
async fn a_rotated_secret_is_shown_once_and_the_old_one_is_refused() {
    let app = logged_in().await;
    let old = create(&app, "bb").await;
    let body = page(app.get("/admin/consumers/rotate?key=bb").await, Status::Ok).await;
    assert!(body.contains("New secret for bb?"));
    assert_eq!(
        stored(&app, "bb").await.unwrap().secret,
        old,
        "confirming first"
    );
    let token = csrf(&app).await;
    // The form names the secret it replaces.
    let replaces = between(&body, r#"name="replaces" value=""#, "\"")
        .expect("the form names the secret it replaces")
        .to_string();
    let form = [
        ("csrf", token.as_str()),
        ("key", "bb"),
        ("replaces", replaces.as_str()),
    ];
    let rotate = || post(&app, "/admin/consumers/rotate", &form);
    let body = page(rotate().await, Status::Ok).await;
    let new = between(&body, r#"<code id="consumer-secret">"#, "</code>")
        .unwrap()
        .to_string();
    assert_ne!(new, old);
    // Sent again (a reload of the page with the new secret), it replaces nothing.
    let again = refused(rotate().await, Status::Conflict).await;
    assert!(again.contains("already replaced"), "{again}");
    assert!(!again.contains(&new));
    assert_eq!(stored(&app, "bb").await.unwrap().secret, new);
    // Nor does a form that names two.
    let current = rocket_lti_tool::store::consumers::current_fingerprint(&app.state().db, "bb")
        .await
        .unwrap()
        .unwrap();
    let two = [
        ("csrf", token.as_str()),
        ("key", "bb"),
        ("replaces", &current),
        ("replaces", &current),
    ];
    let res = post(&app, "/admin/consumers/rotate", &two).await;
    assert_eq!(res.status(), Status::UnprocessableEntity);
    assert_eq!(stored(&app, "bb").await.unwrap().secret, new);
    // A script's request that names none replaces whatever secret there is.
    let res = post(
        &app,
        "/admin/consumers/rotate",
        &[("csrf", &token), ("key", "bb")],
    )
    .await;
    let body = page(res, Status::Ok).await;
    let newer = between(&body, r#"<code id="consumer-secret">"#, "</code>").unwrap();
    assert_ne!(newer, new);
    assert_eq!(stored(&app, "bb").await.unwrap().secret, newer);
    let new = newer.to_string();
    let res = app
        .launch(&Launch::new("/initial").consumer("bb", &old))
        .await;
    refused(res, Status::Unauthorized).await;
    let res = app
        .launch(&Launch::new("/initial").consumer("bb", &new))
        .await;
    assert_eq!(res.status(), Status::Ok);
    // The refused launch with the old secret shows on the list.
    let list = page(app.get("/admin").await, Status::Ok).await;
    assert!(!list.contains(&new));
    let row = between(&list, "<code>bb</code>", "</tr>").unwrap();
    assert!(row.contains(r#"<strong class="bad">1</strong>"#), "{row}");
}

#[rocket::async_test]
async fn deleting_asks_first_then_ends_the_consumers_sessions_and_forgets_its_learners() {
    let app = logged_in().await;
    let secret = create(&app, "gone").await;
    let graded = Launch::new("/initial")
        .consumer("gone", &secret)
        .roles("Learner")
        .add("lis_outcome_service_url", "https://lms.example.edu/grades")
        .add("lis_result_sourcedid", "result-1");
    let res = app.launch(&graded).await;
    assert_eq!(res.status(), Status::Ok);
    assert_eq!(app.count("sessions").await, 1);
    assert_eq!(app.count("outcome_targets").await, 1);
    let body = page(
        app.get("/admin/consumers/delete?key=gone").await,
        Status::Ok,
    )
    .await;
    assert!(body.contains("Delete gone?"));
    assert!(
        stored(&app, "gone").await.is_some(),
        "the GET changes nothing"
    );
    let token = csrf(&app).await;
    let res = post(
        &app,
        "/admin/consumers/delete",
        &[("csrf", &token), ("key", "gone")],
    )
    .await;
    assert_eq!(res.status(), Status::SeeOther);
    assert!(stored(&app, "gone").await.is_none());
    assert_eq!(app.count("sessions").await, 0);
    // A new LMS given the key later must not find these learners on its staff pages.
    assert_eq!(app.count("outcome_targets").await, 0);
    // The browser's LTI session is over.
    refused(app.get("/session").await, Status::Unauthorized).await;
    let res = app
        .launch(&Launch::new("/initial").consumer("gone", &secret))
        .await;
    refused(res, Status::Unauthorized).await;
    let res = app.get("/admin/consumers/delete?key=gone").await;
    assert_eq!(res.status(), Status::NotFound);
    assert!(res
        .into_string()
        .await
        .unwrap()
        .contains("No such consumer"));
    // Only deleting and rotating ask first: the other actions take only their POST, with or
    // without a key, and a method no route takes is told which one is.
    for path in ["/admin/consumers/enable?key=x1", "/admin/consumers/disable"] {
        let res = app.get(path).await;
        assert_eq!(res.status(), Status::MethodNotAllowed, "{path}");
        assert_eq!(res.headers().get_one("Allow"), Some("POST"), "{path}");
        let body = res.into_string().await.unwrap();
        // An admin page's refusal leads back to the admin area.
        assert!(
            body.contains(r#"<a href="/admin">Back to the admin area</a>"#),
            "{body}"
        );
    }
    let res = app
        .client
        .req(rocket::http::Method::Put, "/admin/consumers/rotate")
        .dispatch()
        .await;
    assert_eq!(res.headers().get_one("Allow"), Some("GET, HEAD, POST"));
    let res = app.get("/admin/consumers/frobnicate?key=x1").await;
    assert_eq!(res.status(), Status::NotFound);
}

#[rocket::async_test]
async fn deleting_a_consumer_that_does_not_exist_keeps_the_unknown_keys_refusals() {
    let app = logged_in().await;
    let res = app
        .launch(&Launch::new("/initial").consumer("nobody", "s"))
        .await;
    refused(res, Status::Unauthorized).await;
    assert_eq!(app.count("refusals").await, 1);
    let token = csrf(&app).await;
    // A form without a key (hand-made): 422, and nothing goes.
    let res = post(&app, "/admin/consumers/delete", &[("csrf", &token)]).await;
    assert_eq!(res.status(), Status::UnprocessableEntity);
    assert!(res
        .into_string()
        .await
        .unwrap_or_default()
        .contains("Nothing was changed"));
    // The key the refused launch named, which no consumer has: 404, and its refusal stays.
    for key in ["nobody", ""] {
        let res = post(
            &app,
            "/admin/consumers/delete",
            &[("csrf", &token), ("key", key)],
        )
        .await;
        assert_eq!(res.status(), Status::NotFound, "{key:?}");
    }
    assert_eq!(app.count("refusals").await, 1);
    assert!(!consumers::delete(&app.state().db, "")
        .await
        .expect("delete"));
    assert_eq!(app.count("refusals").await, 1);
}

/// The refused launches counted for `key` (all hours).
async fn refused_count(app: &TestApp, key: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT COALESCE(SUM(refused), 0) FROM consumer_refusals WHERE consumer_key = ?",
    )
    .bind(key)
    .fetch_one(&app.state().db)
    .await
    .unwrap()
}

#[rocket::async_test]
async fn refused_launches_are_counted_for_known_keys_only() {
    let app = logged_in().await;
    let secret = create(&app, "clocky").await;
    let stale = now() - 3600;
    for launch in [
        Launch::new("/initial").consumer("clocky", "wrong secret"),
        Launch::new("/initial")
            .consumer("clocky", &secret)
            .timestamp(stale),
        Launch::new("/initial").consumer("unknown-key", "x"),
    ] {
        let res = app.launch(&launch).await;
        assert_eq!(res.status(), Status::Unauthorized);
    }
    // What fails every launch of a placement until the LMS is fixed counts too: a launch URL
    // that is one of ours but takes no launch (without a live session, which a
    // later launch here starts), and a signed launch with wrong LTI fields.
    for (launch, status) in [
        (Launch::new("/session"), Status::Unauthorized),
        (Launch::new("/"), Status::Unauthorized),
        (Launch::new("/Any"), Status::NotFound),
        (
            Launch::new("/initial").without("resource_link_id"),
            Status::BadRequest,
        ),
        (
            Launch::new("/initial").set("lti_version", "LTI-2p0"),
            Status::BadRequest,
        ),
    ] {
        let before = refused_count(&app, "clocky").await;
        let launch = launch.consumer("clocky", &secret);
        let res = app.launch(&launch).await;
        assert_eq!(res.status(), status, "{}", launch.path);
        // Each once: not missed, not counted twice.
        assert_eq!(
            refused_count(&app, "clocky").await,
            before + 1,
            "{}",
            launch.path
        );
    }
    let plaintext = Launch::new("/initial").consumer("clocky", &secret);
    let res = app.post_form("/initial", plaintext.plaintext_body()).await;
    assert_eq!(res.status(), Status::BadRequest);
    assert_eq!(refused_count(&app, "clocky").await, 8);
    // A malformed launch (here, no nonce) is listed on the refusals page but not counted.
    let body = drop_field(
        &Launch::new("/initial")
            .consumer("clocky", &secret)
            .signed_body(),
        "oauth_nonce",
    );
    let res = app.post_form("/initial", body).await;
    assert_eq!(res.status(), Status::BadRequest);
    assert_eq!(refused_count(&app, "clocky").await, 8);
    let replay = Launch::new("/initial").consumer("clocky", &secret);
    assert_eq!(app.launch(&replay).await.status(), Status::Ok);
    assert_eq!(app.launch(&replay).await.status(), Status::Unauthorized);
    let list = page(app.get("/admin").await, Status::Ok).await;
    let row = between(&list, "<code>clocky</code>", "</tr>").unwrap();
    assert!(row.contains(r#"<strong class="bad">9</strong>"#), "{row}");
    assert!(row.contains(r#"Launches</span><div>1<"#), "{row}");
    assert!(!list.contains("unknown-key"));
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT consumer_key FROM consumer_refusals")
            .fetch_all(&app.state().db)
            .await
            .unwrap();
    assert_eq!(keys, vec!["clocky".to_string()]);
    // A disabled key's launches count too: whether the LMS still uses it.
    let secret = create(&app, "retired").await;
    let token = csrf(&app).await;
    let res = post(
        &app,
        "/admin/consumers/disable",
        &[("csrf", &token), ("key", "retired")],
    )
    .await;
    assert_eq!(res.status(), Status::SeeOther);
    let launch = Launch::new("/initial").consumer("retired", &secret);
    refused(app.launch(&launch).await, Status::Unauthorized).await;
    let list = page(app.get("/admin").await, Status::Ok).await;
    let row = between(&list, "<code>retired</code>", "</tr>").unwrap();
    assert!(row.contains(r#"<strong class="bad">1</strong>"#), "{row}");
}

/// Two apps, one after the other, on the same database file with a given `secret_key`.
async fn start_on(
    url: &str,
    secret_key: Option<&str>,
) -> Result<rocket::local::asynchronous::Client, String> {
    let mut figment = rocket_lti_tool::figment()
        .merge(("database_url", url))
        .merge(("log_level", "off"));
    if let Some(k) = secret_key {
        figment = figment.merge(("secret_key", k));
    }
    rocket::local::asynchronous::Client::tracked(rocket_lti_tool::build(figment))
        .await
        .map_err(|e| e.to_string())
}

/// The database of an app started by `start_on`.
fn db_of(client: &rocket::local::asynchronous::Client) -> &store::Db {
    &client
        .rocket()
        .state::<rocket_lti_tool::web::AppState>()
        .expect("app state")
        .db
}

#[rocket::async_test]
async fn plaintext_secrets_from_before_are_encrypted_at_start_and_keep_working() {
    let dir = temp_dir();
    let url = format!("sqlite://{}", dir.join("db.sqlite").display());
    let client = start_on(&url, None).await.unwrap();
    let db = db_of(&client);
    // A row as migration 0001 wrote it.
    sqlx::query(
        "INSERT INTO consumers (consumer_key, secret, name, created_at, secret_encrypted) \
         VALUES ('old', 'plain-old-secret-1234', 'old', 0, 0)",
    )
    .execute(db)
    .await
    .unwrap();
    client.terminate().await;
    let client = start_on(&url, None).await.unwrap();
    let db = db_of(&client);
    let (raw, flag): (String, i64) =
        sqlx::query_as("SELECT secret, secret_encrypted FROM consumers WHERE consumer_key = 'old'")
            .fetch_one(db)
            .await
            .unwrap();
    assert_eq!(flag, 1);
    assert!(!raw.contains("plain-old-secret"));
    let found = consumers::find(db, "old").await.unwrap().unwrap();
    assert_eq!(found.secret, "plain-old-secret-1234");
    let _ = std::fs::remove_dir_all(dir);
}

#[rocket::async_test]
async fn a_debug_database_of_an_older_build_is_adopted_under_the_development_key() {
    let dir = temp_dir();
    let url = format!("sqlite://{}", dir.join("db.sqlite").display());
    let client = start_on(&url, None).await.unwrap();
    let db = db_of(&client);
    // Older debug builds encrypted under Rocket's all-zero placeholder key.
    let legacy = crypto::SecretCipher::from_key_material(&[0; 32]);
    let sealed = legacy
        .encrypt("__consumer_key__", "__lti_secret__")
        .unwrap();
    sqlx::query("UPDATE consumers SET secret = ? WHERE consumer_key = '__consumer_key__'")
        .bind(&sealed)
        .execute(db)
        .await
        .unwrap();
    client.terminate().await;
    let client = start_on(&url, None).await.unwrap();
    let db = db_of(&client);
    let (raw,): (String,) =
        sqlx::query_as("SELECT secret FROM consumers WHERE consumer_key = '__consumer_key__'")
            .fetch_one(db)
            .await
            .unwrap();
    assert_ne!(raw, sealed, "re-encrypted");
    let demo = consumers::find(db, "__consumer_key__")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(demo.secret, "__lti_secret__");
    client.terminate().await;
    // With a key configured, nothing is adopted: the zero key is no key.
    let sealed = legacy
        .encrypt("__consumer_key__", "__lti_secret__")
        .unwrap();
    let db = store::open(&url).await.unwrap();
    sqlx::query("UPDATE consumers SET secret = ? WHERE consumer_key = '__consumer_key__'")
        .bind(&sealed)
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    let key = "hPRYyVRiMyxpw5sBB1XeCMN1kFsDCqKvBi2QJxBVHQk=";
    assert!(start_on(&url, Some(key)).await.is_err());
    let _ = std::fs::remove_dir_all(dir);
}

#[rocket::async_test]
async fn a_changed_secret_key_refuses_to_start_until_the_secrets_are_rekeyed() {
    let dir = temp_dir();
    let url = format!("sqlite://{}", dir.join("db.sqlite").display());
    let key_a = "hPRYyVRiMyxpw5sBB1XeCMN1kFsDCqKvBi2QJxBVHQk=";
    let key_b = "yTxL0aAkBGnUwQVR95xPzVYeyBs7QJP3bTpqPUVBdYw=";
    let client = start_on(&url, Some(key_a)).await.unwrap();
    client.terminate().await;
    assert!(
        start_on(&url, Some(key_b)).await.is_err(),
        "a key that does not decrypt the stored secrets refuses to start"
    );
    // Re-encrypt with the library call behind `lti-tool admin rekey`.
    let db = store::open(&url).await.unwrap();
    crypto::install(
        &db,
        crypto::SecretCipher::from_key_material(key_b.as_bytes()),
    );
    let old = crypto::SecretCipher::from_key_material(key_a.as_bytes());
    assert_eq!(
        consumers::reencrypt_secrets(&db, &old).await.unwrap(),
        consumers::Rekeyed::Done {
            secrets: 1,
            changed: 1
        }
    );
    db.close().await;
    let client = start_on(&url, Some(key_b)).await.unwrap();
    let db = db_of(&client);
    let demo = consumers::find(db, "__consumer_key__")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(demo.secret, "__lti_secret__");
    let _ = std::fs::remove_dir_all(dir);
}

/// The statuses of logins with `passwords`, all sent at once from `address`.
async fn logins_at_once(
    app: &TestApp,
    address: &str,
    passwords: impl Iterator<Item = String>,
) -> Vec<Status> {
    let logins = passwords.map(|p| {
        login_from(app, address)
            .body(format!("password={p}"))
            .dispatch()
    });
    rocket::futures::future::join_all(logins)
        .await
        .iter()
        .map(|r| r.status())
        .collect()
}

#[rocket::async_test]
async fn parallel_guesses_cannot_outrun_the_throttle() {
    let app = spawn_app().await;
    set_password(&app, PASSWORD).await;
    let guesses = (0..20).map(|i| format!("guess-{i}"));
    let statuses = logins_at_once(&app, "203.0.113.5:4000", guesses).await;
    let tried = statuses
        .iter()
        .filter(|s| **s == Status::Unauthorized)
        .count();
    let throttled = statuses
        .iter()
        .filter(|s| **s == Status::TooManyRequests)
        .count();
    // The rest wait for the first five's checks, holding no place in the queue, then are
    // throttled: none is told the queue is full.
    assert_eq!(tried, 5, "{statuses:?}");
    assert_eq!(throttled, 15, "{statuses:?}");
}

#[rocket::async_test]
async fn right_passwords_sent_at_once_all_get_in_and_lock_nothing() {
    let app = spawn_app().await;
    set_password(&app, PASSWORD).await;
    // More than the failure limit, and than the queue's places, at once: none is a failure.
    let rights = (0..20).map(|_| PASSWORD.to_string());
    let statuses = logins_at_once(&app, "203.0.113.6:4000", rights).await;
    assert!(
        statuses.iter().all(|s| *s == Status::SeeOther),
        "{statuses:?}"
    );
    let next = login_from(&app, "203.0.113.6:4000")
        .body(format!("password={PASSWORD}"))
        .dispatch()
        .await;
    assert_eq!(next.status(), Status::SeeOther, "the address is not locked");
}

#[rocket::async_test]
async fn an_admin_sees_why_a_launch_was_refused_fixes_it_and_the_next_launch_works() {
    let app = logged_in().await;
    let secret = create(&app, "canvas-main").await;
    // The LMS admin typed the key wrong, then signed for https behind a proxy we do not trust.
    let typo = Launch::new("/any").consumer("canvas-mian", &secret);
    refused(app.launch(&typo).await, Status::Unauthorized).await;
    let https = Launch::new("/any")
        .consumer("canvas-main", &secret)
        .signed_for(&format!("https://{HOST}/any"));
    refused(app.launch(&https).await, Status::Unauthorized).await;

    let list = page(app.get("/admin").await, Status::Ok).await;
    assert!(list.contains("/admin/refusals?key=canvas%2Dmain"), "{list}");
    let body = page(app.get("/admin/refusals?key=canvas-main").await, Status::Ok).await;
    assert!(body.contains(r#"data-hint="scheme_mismatch""#), "{body}");
    assert!(body.contains("public_url") && body.contains("trusted_proxies"));
    assert!(!body.contains(&secret));
    let all = page(app.get("/admin/refusals").await, Status::Ok).await;
    assert!(all.contains(r#"data-hint="unknown_key_typo""#) && all.contains("canvas-main"));

    // Fixed in the LMS: the right key and URL.
    assert_eq!(
        app.launch(&Launch::new("/any").consumer("canvas-main", &secret))
            .await
            .status(),
        Status::Ok
    );

    let json = app.get("/admin/refusals.json?key=canvas-main").await;
    assert_eq!(json.status(), Status::Ok);
    assert_eq!(json.content_type(), Some(ContentType::JSON));
    let list: serde_json::Value = serde_json::from_str(&json.into_string().await.unwrap()).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["hint"], "scheme_mismatch");
    assert_eq!(list[0]["signed_url"], format!("http://{HOST}/any"));
}

#[rocket::async_test]
async fn the_refused_launch_log_is_for_logged_in_admins_and_escaped() {
    let app = spawn_app().await;
    set_password(&app, PASSWORD).await;
    let hostile = Launch::new("/any").consumer("<script>x</script>", "x");
    refused(app.launch(&hostile).await, Status::Unauthorized).await;
    for path in ["/admin/refusals", "/admin/refusals.json"] {
        let res = app.get(path).await;
        assert_eq!(res.status(), Status::Unauthorized);
        assert!(is_login_page(&res.into_string().await.unwrap()));
    }
    assert_eq!(login(&app, PASSWORD).await.status(), Status::SeeOther);
    let body = page(app.get("/admin/refusals").await, Status::Ok).await;
    assert!(!body.contains("<script>x</script>"));
    assert!(body.contains("&lt;script&gt;x&lt;&#x2F;script&gt;"));
}

#[rocket::async_test]
async fn a_key_that_only_looks_like_a_registered_one_shows_what_hides_in_it() {
    let app = logged_in().await;
    let secret = create(&app, "canvas-main").await;
    // A field the refusal's advice quotes, and its error page.
    let quoted = Launch::new("/any")
        .consumer("canvas-main", &secret)
        .set("lti_version", "LTI-1p0\u{202e}x");
    let error_page = refused(app.launch(&quoted).await, Status::BadRequest).await;
    assert!(error_page.contains(r"LTI-1p0\u{202e}x"), "{error_page}");
    assert!(!error_page.contains('\u{202e}'), "{error_page}");
    // Anyone may send these (no secret needed): each looks like "canvas-main" on a page.
    for (key, shown) in [
        ("canvas\u{200b}-main", r"canvas\u{200b}-main"),
        ("canvas-ma\u{202e}in", r"canvas-ma\u{202e}in"),
        (
            "\u{2066}canvas-main\u{2069}",
            r"\u{2066}canvas-main\u{2069}",
        ),
    ] {
        let forged = Launch::new("/any")
            .consumer(key, "x")
            .set("custom_\u{202e}eman", "v");
        refused(app.launch(&forged).await, Status::Unauthorized).await;
        let body = page(app.get("/admin/refusals").await, Status::Ok).await;
        assert!(body.contains(&format!("<code>{shown}</code>")), "{body}");
        // Named as the near miss it is, not as a stranger.
        assert!(body.contains(r#"data-hint="unknown_key_typo""#), "{body}");
        assert!(body.contains(r"custom_\u{202e}eman"), "{body}");
        assert!(body.contains(r"LTI-1p0\u{202e}x"), "{body}");
        for hidden in ['\u{200b}', '\u{202e}', '\u{2066}', '\u{2069}'] {
            assert!(!body.contains(hidden), "{hidden:?} in {body}");
        }
    }
    // Scripts get the key as it was sent.
    let json = app.get("/admin/refusals.json").await;
    let list: serde_json::Value = serde_json::from_str(&json.into_string().await.unwrap()).unwrap();
    assert_eq!(list[0]["consumer_key"], "\u{2066}canvas-main\u{2069}");
}

#[rocket::async_test]
async fn a_form_sent_as_something_else_is_told_so() {
    let app = spawn_app().await;
    set_password(&app, PASSWORD).await;
    let res = app
        .client
        .post("/admin/login")
        .header(Header::new("Host", HOST))
        .header(ContentType::JSON)
        .body(r#"{"password":"x"}"#)
        .dispatch()
        .await;
    let body = refused(res, Status::UnsupportedMediaType).await;
    assert!(body.contains("must be sent as a web form"), "{body}");
}

#[rocket::async_test]
async fn the_admin_cookie_is_secure_whenever_the_login_came_over_https() {
    // `cookie_secure` is off (debug profile); the login comes through a trusted https proxy.
    let app = spawn_app_with(|f| f.merge(("trusted_proxies", ["10.0.0.1"]))).await;
    set_password(&app, PASSWORD).await;
    let login = |remote: &'static str, https: bool| {
        let mut req = app
            .client
            .post("/admin/login")
            .remote(remote.parse().unwrap())
            .header(Header::new("Host", HOST))
            .header(ContentType::Form)
            .body(form(&[("password", PASSWORD)]));
        if https {
            req = req.header(Header::new("X-Forwarded-Proto", "https"));
        }
        req.dispatch()
    };
    // The admin cookie and the device cookie alike.
    let cookie = |res: &LocalResponse<'_>| {
        let set: Vec<&str> = res.headers().get("Set-Cookie").collect();
        assert_eq!(set.len(), 2, "{set:?}");
        let secure = set.iter().filter(|c| c.contains("; Secure")).count();
        assert!(secure == 0 || secure == 2, "{set:?}");
        // Secure cookies take the `__Secure-` names.
        let name = if secure == 2 {
            "__Secure-lti_admin="
        } else {
            "lti_admin="
        };
        assert!(set.iter().any(|c| c.starts_with(name)), "{set:?}");
        secure == 2
    };
    let res = login("10.0.0.1:40000", true).await;
    assert_eq!(res.status(), Status::SeeOther);
    assert!(cookie(&res), "over https through the proxy");
    let res = login("10.0.0.1:40001", false).await;
    assert!(!cookie(&res), "plain http");
    // A client that is not a trusted proxy cannot claim https.
    let res = login("10.0.0.2:40000", true).await;
    assert!(!cookie(&res), "untrusted claim");
}

#[rocket::async_test]
async fn admin_pages_refuse_to_be_framed_but_lti_pages_do_not() {
    let app = logged_in().await;
    for path in ["/admin", "/admin/refusals", "/admin/nope", "/%61dmin"] {
        let res = app.get(path).await;
        assert_eq!(
            res.headers().get_one("X-Frame-Options"),
            Some("DENY"),
            "{path}"
        );
        assert_eq!(
            res.headers().get_one("Content-Security-Policy"),
            Some("frame-ancestors 'none'; form-action 'self'; object-src 'none'; base-uri 'none'"),
            "{path}"
        );
    }
    // The login page too, logged out.
    let fresh = spawn_app().await;
    let res = fresh.get("/admin").await;
    assert_eq!(res.headers().get_one("X-Frame-Options"), Some("DENY"));
    // Neither do other paths that merely start alike, nor the tool itself, which runs inside the
    // LMS's iframe.
    let res = app.get("/administrator").await;
    assert!(res.headers().get_one("X-Frame-Options").is_none());
    let res = app.launch(&Launch::new("/any")).await;
    assert_eq!(res.status(), Status::Ok);
    assert!(res.headers().get_one("X-Frame-Options").is_none());
    let csp = res.headers().get_one("Content-Security-Policy");
    assert!(!csp.unwrap_or("").contains("frame-ancestors"), "{csp:?}");
}

#[rocket::async_test]
async fn a_crafted_link_cannot_make_the_list_claim_a_change() {
    let app = logged_in().await;
    create(&app, "canvas-1").await;
    let notice = |path: &'static str| {
        let app = &app;
        async move {
            let body = page(app.get(path).await, Status::Ok).await;
            between(&body, r#"<p class="notice" role="status">"#, "</p>").map(str::to_string)
        }
    };
    // canvas-1 is enabled: only the true notice shows.
    let shown = notice("/admin?done=enabled&key=canvas-1").await;
    assert!(shown.is_some_and(|n| n.contains("canvas-1 is enabled")));
    // The page's title says it too (read first by a screen reader on the new page).
    let body = page(
        app.get("/admin?done=enabled&key=canvas-1").await,
        Status::Ok,
    )
    .await;
    let title = between(&body, "<title>", "</title>").unwrap_or_default();
    assert!(title.contains("canvas-1 is enabled"), "{title}");
    assert_eq!(notice("/admin?done=disabled&key=canvas-1").await, None);
    assert_eq!(notice("/admin?done=deleted&key=canvas-1").await, None);
    assert_eq!(notice("/admin?done=enabled&key=ghost").await, None);
    let shown = notice("/admin?done=deleted&key=ghost").await;
    assert!(shown.is_some_and(|n| n.contains("ghost is deleted")));
    // Not even a key: no claim.
    assert_eq!(
        notice("/admin?done=deleted&key=all%20your%20data").await,
        None
    );
}

#[rocket::async_test]
async fn a_stale_admin_cookie_is_cleared_by_the_login_page() {
    let app = logged_in().await;
    assert_eq!(app.get("/admin/refusals").await.status(), Status::Ok);
    sqlx::query("UPDATE admin_sessions SET expires_at = 0")
        .execute(&app.state().db)
        .await
        .unwrap();
    let res = app.get("/admin/refusals").await;
    let cleared = res
        .headers()
        .get("Set-Cookie")
        .any(|c| c.starts_with("lti_admin=;") && c.contains("Max-Age=0"));
    assert!(cleared, "{:?}", res.headers());
    let body = page(res, Status::Unauthorized).await;
    assert!(is_login_page(&body), "{body}");
}

#[rocket::async_test]
async fn a_flood_of_guesses_from_many_addresses_queues_a_bounded_number_of_checks() {
    let app = spawn_app().await;
    set_password(&app, PASSWORD).await;
    let guess = |i: usize| {
        app.client
            .post("/admin/login")
            .remote(
                format!("10.7.{}.{}:4000", i / 200, i % 200)
                    .parse()
                    .unwrap(),
            )
            .header(Header::new("Host", HOST))
            .header(ContentType::Form)
            .body(form(&[("password", "not the password")]))
            .dispatch()
    };
    let answers = rocket::futures::future::join_all((0..40).map(guess)).await;
    let (mut wrong, mut busy) = (0, 0);
    for res in answers {
        match res.status() {
            Status::Unauthorized => wrong += 1,
            Status::ServiceUnavailable => {
                assert_eq!(res.headers().get_one("Retry-After"), Some("5"));
                busy += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    // At most 16 wait for the one-at-a-time check at any moment; the rest are told to come back.
    assert!(busy >= 1 && wrong < 40, "{wrong} checked, {busy} busy");
    // Only the checked guesses count against their addresses.
    assert_eq!(app.count("admin_login_failures").await, wrong);
    // The flood over, the admin gets in, and the browser is marked as one that knows the
    // password: its later logins skip the cap (see the unit tests of `LoginQueue`).
    let res = login(&app, PASSWORD).await;
    assert_eq!(res.status(), Status::SeeOther);
    let device = res
        .headers()
        .get("Set-Cookie")
        .find(|c| c.starts_with("lti_admin_device="))
        .expect("a device cookie")
        .to_string();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/admin", "Max-Age="] {
        assert!(device.contains(part), "{device}");
    }
}

#[rocket::async_test]
async fn a_browser_that_logged_in_before_is_not_locked_out_by_guesses_from_its_address() {
    // The admin's browser (keeps cookies) and an attacker behind the same address (a shared NAT,
    // keeps none), two clients on one database and key.
    let admin_browser = spawn_app_with(|f| f.merge(("secret_key", TEST_SECRET_KEY))).await;
    let figment = admin_browser.client.rocket().figment().clone();
    let attacker = rocket::local::asynchronous::Client::untracked(rocket_lti_tool::build(figment))
        .await
        .expect("second client");
    set_password(&admin_browser, PASSWORD).await;
    fn from_nat<'c>(
        client: &'c rocket::local::asynchronous::Client,
        password: &str,
    ) -> LocalRequest<'c> {
        client
            .post("/admin/login")
            .header(Header::new("Host", HOST))
            .header(ContentType::Form)
            .remote("192.0.2.1:5000".parse().unwrap())
            .body(form(&[("password", password)]))
    }
    /// Six wrong passwords from the shared address, as `client`.
    async fn six_guesses(client: &rocket::local::asynchronous::Client) -> Vec<Status> {
        let mut statuses = Vec::new();
        for i in 0..6 {
            let guess = format!("guess-{i}");
            statuses.push(from_nat(client, &guess).dispatch().await.status());
        }
        statuses
    }
    let admin_logs_in = || async {
        from_nat(&admin_browser.client, PASSWORD)
            .dispatch()
            .await
            .status()
    };
    assert_eq!(admin_logs_in().await, Status::SeeOther);
    // The attacker uses up the address's failures.
    let statuses = six_guesses(&attacker).await;
    assert_eq!(
        statuses.last(),
        Some(&Status::TooManyRequests),
        "{statuses:?}"
    );
    // The marked browser still gets in from there; its own failures count on their own.
    assert_eq!(admin_logs_in().await, Status::SeeOther);
    let own = six_guesses(&admin_browser.client).await;
    assert_eq!(own[..5], [Status::Unauthorized; 5], "{own:?}");
    assert_eq!(
        own[5],
        Status::TooManyRequests,
        "a stolen mark allows few guesses"
    );
    // A forged mark counts for nothing: throttled with the address.
    let forged = from_nat(&attacker, PASSWORD)
        .cookie(rocket::http::Cookie::new("lti_admin_device", "id-1.AAAA"))
        .dispatch()
        .await;
    assert_eq!(forged.status(), Status::TooManyRequests);
}

#[rocket::async_test]
async fn a_device_mark_under_the_plain_name_still_counts_over_https() {
    // Secure cookies: the mark is `__Secure-lti_admin_device`, but a browser may still hold one
    // set under the plain name; it is signed and bound to the password, so it still counts.
    let app = spawn_app_with(|f| {
        f.merge(("secret_key", TEST_SECRET_KEY))
            .merge(("cookie_secure", true))
    })
    .await;
    set_password(&app, PASSWORD).await;
    let client = rocket::local::asynchronous::Client::untracked(rocket_lti_tool::build(
        app.client.rocket().figment().clone(),
    ))
    .await
    .expect("client");
    let login = |password: &str, cookie: Option<String>| {
        let mut req = client
            .post("/admin/login")
            .header(Header::new("Host", HOST))
            .header(ContentType::Form)
            .remote("192.0.2.7:5000".parse().unwrap())
            .body(form(&[("password", password)]));
        if let Some(cookie) = cookie {
            req = req.header(Header::new("Cookie", cookie));
        }
        req.dispatch()
    };
    let res = login(PASSWORD, None).await;
    assert_eq!(res.status(), Status::SeeOther);
    let mark = res
        .headers()
        .get("Set-Cookie")
        .find_map(|c| c.strip_prefix("__Secure-lti_admin_device="))
        .and_then(|c| c.split(';').next())
        .expect("a device mark")
        .to_string();
    // Guesses from the address use up its failures.
    for i in 0..6 {
        login(&format!("guess-{i}"), None).await;
    }
    assert_eq!(
        login(PASSWORD, None).await.status(),
        Status::TooManyRequests
    );
    let old = Some(format!("lti_admin_device={mark}"));
    assert_eq!(login(PASSWORD, old).await.status(), Status::SeeOther);
    let forged = Some("lti_admin_device=id-1.AAAA".to_string());
    assert_eq!(
        login(PASSWORD, forged).await.status(),
        Status::TooManyRequests
    );
}

#[rocket::async_test]
async fn without_seed_demo_consumer_the_demo_consumer_is_not_enabled_with_its_published_secret() {
    let app = spawn_app_with(|f| f.merge(("seed_demo_consumer", false))).await;
    set_password(&app, PASSWORD).await;
    assert_eq!(login(&app, PASSWORD).await.status(), Status::SeeOther);
    let (key, secret) = rocket_lti_tool::DEMO_CONSUMER;
    let db = &app.state().db;
    assert!(consumers::insert(db, key, secret, "demo", store::now())
        .await
        .unwrap());
    consumers::set_enabled(db, key, false).await.unwrap();
    let token = csrf(&app).await;
    let res = post(
        &app,
        "/admin/consumers/enable",
        &[("csrf", &token), ("key", key)],
    )
    .await;
    let body = refused(res, Status::Conflict).await;
    assert!(body.contains("rotate its secret"), "{body}");
    assert!(!stored(&app, key).await.unwrap().enabled);
    // Another consumer is enabled as ever.
    assert!(
        consumers::insert(db, "school", "school-secret-0123456789", "", store::now())
            .await
            .unwrap()
    );
    consumers::set_enabled(db, "school", false).await.unwrap();
    let res = post(
        &app,
        "/admin/consumers/enable",
        &[("csrf", &token), ("key", "school")],
    )
    .await;
    assert_eq!(res.status(), Status::SeeOther);
    assert!(stored(&app, "school").await.unwrap().enabled);
}
