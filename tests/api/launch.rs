//! Launch verification from the outside: what an LMS or an attacker sends, through HTTP.

use rocket::futures::future::join_all;
use rocket::http::{ContentType, Header, Status};
use rocket::local::asynchronous::{LocalRequest, LocalResponse};

use crate::helpers::*;

#[rocket::async_test]
async fn valid_launch_gets_the_page_directly_with_a_session_cookie() {
    let app = spawn_app().await;
    let res = app.launch(&Launch::new("/initial")).await;
    assert_eq!(res.status(), Status::Ok);
    let cookie = res
        .headers()
        .get_one("Set-Cookie")
        .expect("session cookie")
        .to_string();
    assert!(cookie.starts_with("lti_session="));
    assert!(cookie.contains("HttpOnly"));
    assert!(cookie.contains("SameSite=Lax"));
    assert!(
        !cookie.contains("Secure") && !cookie.contains("Partitioned"),
        "debug profile serves plain http"
    );
    // The id is long and random: at least 128 bits.
    let id = cookie
        .trim_start_matches("lti_session=")
        .split(';')
        .next()
        .unwrap();
    assert!(id.len() >= 22, "{id}");
    let body = page(res, Status::Ok).await;
    assert!(body.contains("Initial request"));
    assert!(body.contains("teacher-1"));
    assert!(body.contains("Ada Lovelace"));
    // Framing by the LMS is allowed.
    let res = app.launch(&Launch::new("/any")).await;
    assert_eq!(res.headers().get_one("X-Frame-Options"), None);
    // Nor a Permissions-Policy for a feature browsers no longer know (an error in their console).
    assert_eq!(res.headers().get_one("Permissions-Policy"), None);
    let csp = res
        .headers()
        .get_one("Content-Security-Policy")
        .unwrap_or("");
    assert!(!csp.contains("frame-ancestors"), "{csp}");
    assert!(csp.contains("object-src 'none'"), "{csp}");
    // The page's address goes to no other site (the LMS included).
    assert_eq!(
        res.headers().get_one("Referrer-Policy"),
        Some("same-origin")
    );
    // The second launch in the same browser replaced the first session.
    assert_eq!(app.count("sessions").await, 1);
}

#[rocket::async_test]
async fn production_cookie_policy_is_samesite_none_and_secure() {
    let app = spawn_app_with(|f| {
        f.merge(("cookie_same_site", "none"))
            .merge(("cookie_secure", true))
    })
    .await;
    let res = app.launch(&Launch::new("/any")).await;
    let cookie = res.headers().get_one("Set-Cookie").unwrap().to_string();
    assert!(cookie.starts_with("__Host-lti_session="), "{cookie}");
    assert!(cookie.contains("SameSite=None"), "{cookie}");
    // Kept per LMS even where third-party cookies are blocked (CHIPS).
    assert!(cookie.contains("Partitioned"), "{cookie}");
    assert!(cookie.contains("Secure"), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
}

#[rocket::async_test]
async fn get_launch_signed_in_the_query_is_accepted_on_initial() {
    let app = spawn_app().await;
    let path = Launch::new("/initial").signed_get_path();
    assert!(path.contains("oauth_signature="));
    let body = page(app.get(&path).await, Status::Ok).await;
    assert!(body.contains("Initial request"));
}

#[rocket::async_test]
async fn a_head_request_neither_launches_nor_ends_the_session() {
    let app = spawn_app().await;
    let res = app.launch(&Launch::new("/initial").user("first")).await;
    assert_eq!(res.status(), Status::Ok);
    assert_eq!(app.count("sessions").await, 1);
    let head = |path: String| app.client.head(path).header(Header::new("Host", HOST));
    // A link checker sends HEAD to a signed GET launch: 405, no cookie, no nonce spent.
    let path = Launch::new("/initial").user("second").signed_get_path();
    let res = head(path.clone()).dispatch().await;
    assert_eq!(res.status(), Status::MethodNotAllowed);
    // A plain HEAD is served there, so it is listed, as in the catcher's 405 at that address.
    assert_eq!(res.headers().get_one("Allow"), Some("GET, HEAD, POST"));
    assert!(res.headers().get_one("Set-Cookie").is_none());
    assert_eq!(app.count("nonces").await, 1);
    assert_eq!(app.count("sessions").await, 1);
    // Without launch fields a HEAD gets what its GET gets (a link checker probing the URL).
    for path in ["/initial", "/initial_staff"] {
        let res = head(path.into()).dispatch().await;
        assert_eq!(res.status(), Status::Unauthorized, "{path}");
        assert_eq!(app.get(path).await.status(), Status::Unauthorized, "{path}");
    }
    assert_eq!(app.count("sessions").await, 1);
    // ... nor does a HEAD of /logout end the session.
    let res = head("/logout".into()).dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    assert_eq!(app.count("sessions").await, 1);
    let body = page(app.get("/session").await, Status::Ok).await;
    assert!(body.contains("first"));
    // The real GET of the same launch still works once.
    let body = page(app.get(&path).await, Status::Ok).await;
    assert!(body.contains("second"));
}

#[rocket::async_test]
async fn bad_signature_wrong_secret_and_tampering_are_refused() {
    let app = spawn_app().await;
    let wrong_secret = Launch::new("/any").consumer("__consumer_key__", "not-the-secret");
    refused(app.launch(&wrong_secret).await, Status::Unauthorized).await;

    // Signed for the staff page by a learner, then made an instructor: refused there.
    let body = Launch::new("/initial_staff").roles("Learner").signed_body();
    let tampered = tamper(&body, "roles", "Instructor");
    refused(
        app.post_form("/initial_staff", tampered).await,
        Status::Unauthorized,
    )
    .await;
    let body = Launch::new("/any").roles("Learner").signed_body();
    refused(
        app.post_form("/any", tamper(&body, "roles", "Instructor"))
            .await,
        Status::Unauthorized,
    )
    .await;

    let body = Launch::new("/any").signed_body();
    refused(
        app.post_form(
            "/any",
            tamper(&body, "oauth_signature", "AAAAAAAAAAAAAAAAAAAAAAAAAAA%3D"),
        )
        .await,
        Status::Unauthorized,
    )
    .await;
    refused(
        app.post_form("/any", format!("{body}&extra=1")).await,
        Status::Unauthorized,
    )
    .await;
    // Signed for another page.
    refused(app.post_form("/initial", body).await, Status::Unauthorized).await;
    assert_eq!(app.count("sessions").await, 0);
}

#[rocket::async_test]
async fn unknown_and_disabled_keys_are_refused() {
    let app = spawn_app().await;
    let unknown = Launch::new("/any").consumer("nobody", "x");
    let body = refused(app.launch(&unknown).await, Status::Unauthorized).await;
    assert!(body.contains("not registered"));

    app.add_consumer("school", "school-secret-1234").await;
    let launch = Launch::new("/any").consumer("school", "school-secret-1234");
    assert_eq!(app.launch(&launch).await.status(), Status::Ok);
    rocket_lti_tool::store::consumers::set_enabled(&app.state().db, "school", false)
        .await
        .unwrap();
    let again = Launch::new("/any").consumer("school", "school-secret-1234");
    let body = refused(app.launch(&again).await, Status::Unauthorized).await;
    assert!(body.contains("disabled"));
}

#[rocket::async_test]
async fn each_missing_oauth_field_is_a_clear_400() {
    let app = spawn_app().await;
    for field in [
        "oauth_consumer_key",
        "oauth_signature",
        "oauth_signature_method",
        "oauth_timestamp",
        "oauth_nonce",
    ] {
        let body = drop_field(&Launch::new("/any").signed_body(), field);
        let page = refused(app.post_form("/any", body).await, Status::BadRequest).await;
        assert!(page.contains(field), "{field} not named: {page}");
    }
    // Empty values and duplicates are malformed too.
    let body = tamper(&Launch::new("/any").signed_body(), "oauth_nonce", "");
    refused(app.post_form("/any", body).await, Status::BadRequest).await;
    let body = Launch::new("/any").signed_body();
    refused(
        app.post_form("/any", format!("{body}&oauth_nonce=again"))
            .await,
        Status::BadRequest,
    )
    .await;
    let body = tamper(
        &Launch::new("/any").signed_body(),
        "oauth_timestamp",
        "soon",
    );
    refused(app.post_form("/any", body).await, Status::BadRequest).await;
    let body = tamper(&Launch::new("/any").signed_body(), "oauth_version", "2.0");
    refused(app.post_form("/any", body).await, Status::BadRequest).await;
}

#[rocket::async_test]
async fn plaintext_is_refused() {
    let app = spawn_app().await;
    let body = Launch::new("/any").plaintext_body();
    assert!(body.contains("oauth_signature_method=PLAINTEXT"));
    let page = refused(app.post_form("/any", body).await, Status::BadRequest).await;
    assert!(page.contains("HMAC-SHA1"));
}

#[rocket::async_test]
async fn stale_and_future_timestamps_are_refused_but_the_window_is_honoured() {
    let app = spawn_app().await;
    refused(
        app.launch(&Launch::new("/any").timestamp(now() - 301 - 5))
            .await,
        Status::Unauthorized,
    )
    .await;
    refused(
        app.launch(&Launch::new("/any").timestamp(now() + 301 + 5))
            .await,
        Status::Unauthorized,
    )
    .await;
    refused(
        app.launch(&Launch::new("/any").timestamp(now() + 86_400 * 365))
            .await,
        Status::Unauthorized,
    )
    .await;
    assert_eq!(
        app.launch(&Launch::new("/any").timestamp(now() - 250))
            .await
            .status(),
        Status::Ok
    );
    assert_eq!(
        app.launch(&Launch::new("/any").timestamp(now() + 250))
            .await
            .status(),
        Status::Ok
    );

    let narrow = spawn_app_with(|f| f.merge(("timestamp_window", 10))).await;
    refused(
        narrow
            .launch(&Launch::new("/any").timestamp(now() - 60))
            .await,
        Status::Unauthorized,
    )
    .await;
}

#[rocket::async_test]
async fn a_replayed_nonce_is_refused() {
    let app = spawn_app().await;
    let launch = Launch::new("/any");
    assert_eq!(app.launch(&launch).await.status(), Status::Ok);
    let body = refused(app.launch(&launch).await, Status::Unauthorized).await;
    assert!(body.contains("already used"));
    // From a browser without a cookie (a double click on a first launch: the first copy's
    // answer brings one), the page offers the way back, but no Log out.
    let browser = rocket::local::asynchronous::Client::untracked(rocket_lti_tool::build(
        app.client.rocket().figment().clone(),
    ))
    .await
    .unwrap();
    let res = browser
        .post("/any")
        .header(Header::new("Host", HOST))
        .header(ContentType::Form)
        .body(launch.signed_body())
        .dispatch()
        .await;
    let body = refused(res, Status::Unauthorized).await;
    assert!(
        body.contains("Back to your page</a>, if an earlier click opened it")
            && !body.contains(r#"action="/logout""#),
        "{body}"
    );
    // The same nonce from another consumer is a different nonce.
    app.add_consumer("other", "other-secret-123456").await;
    let mut other = launch.clone().consumer("other", "other-secret-123456");
    other.nonce = launch.nonce.clone();
    assert_eq!(app.launch(&other).await.status(), Status::Ok);
}

#[rocket::async_test]
async fn a_replay_from_the_browser_whose_visit_it_started_keeps_that_visit() {
    let app = spawn_app().await;
    // The Back button posts the launch again: refused, but the user's visit goes on.
    let launch = Launch::new("/any").user("student-a");
    assert_eq!(app.launch(&launch).await.status(), Status::Ok);
    let res = app.launch(&launch).await;
    assert!(!clears_session_cookie(&res), "{:?}", res.headers());
    let body = refused(res, Status::Unauthorized).await;
    // Its page leads back to the visit, with Log out, as the visit's own pages do.
    assert!(
        body.contains("Back to your page") && body.contains(r#"action="/logout""#),
        "{body}"
    );
    assert_eq!(app.get("/session").await.status(), Status::Ok);
    // A double click: both copies carry the old cookie; the refused one must not clear the
    // cookie the accepted one set.
    let body = Launch::new("/any").user("student-a").signed_body();
    let copies = (0..2).map(|_| {
        app.client
            .post("/any")
            .header(Header::new("Host", HOST))
            .header(ContentType::Form)
            .body(body.clone())
            .dispatch()
    });
    let answers = join_all(copies).await;
    assert!(answers.iter().any(|r| r.status() == Status::Ok));
    let refused_copy = answers
        .into_iter()
        .find(|r| r.status() == Status::Unauthorized)
        .expect("one copy refused");
    assert!(
        !clears_session_cookie(&refused_copy),
        "{:?}",
        refused_copy.headers()
    );
    // The browser shows the second copy's page: it leads back to the visit the first began
    // (its cookie is not this request's, so there is no Log out to offer).
    let body = refused(refused_copy, Status::Unauthorized).await;
    assert!(
        body.contains("Back to your page") && !body.contains(r#"action="/logout""#),
        "{body}"
    );
    assert_eq!(app.count("sessions").await, 1);
    // A replay of someone else's launch still ends the visit the browser holds.
    let other = Launch::new("/any").user("student-b");
    assert_eq!(app.launch(&other).await.status(), Status::Ok);
    assert_eq!(
        app.launch(&Launch::new("/any").user("student-a"))
            .await
            .status(),
        Status::Ok
    );
    let res = app.launch(&other).await;
    assert!(clears_session_cookie(&res), "{:?}", res.headers());
    let body = refused(res, Status::Unauthorized).await;
    assert!(!body.contains("Back to your page"), "{body}");
    refused(app.get("/session").await, Status::Unauthorized).await;
}

#[rocket::async_test]
async fn the_same_launch_sent_20_times_concurrently_is_accepted_once() {
    let app = spawn_app().await;
    let body = Launch::new("/initial").signed_body();
    let requests = (0..20).map(|_| {
        app.client
            .post("/initial")
            .header(Header::new("Host", HOST))
            .header(ContentType::Form)
            .body(body.clone())
            .dispatch()
    });
    let statuses: Vec<Status> = join_all(requests)
        .await
        .iter()
        .map(|r| r.status())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == Status::Ok).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == Status::Unauthorized)
            .count(),
        19,
        "{statuses:?}"
    );
    assert_eq!(app.count("nonces").await, 1);
}

#[rocket::async_test]
async fn non_ascii_and_reserved_characters_and_repeated_names_verify() {
    let app = spawn_app().await;
    let launch = Launch::new("/any")
        .set("lis_person_name_full", "Zoë Ñúñez 李小龙 🦀")
        .set("custom_query", "a=1&b=2+3 %20 ~!*'()")
        .add("custom_tag", "b")
        .add("custom_tag", "a")
        .add("custom_tag", "")
        .set("custom_empty", "");
    let body = page(app.launch(&launch).await, Status::Ok).await;
    assert!(body.contains("Zoë Ñúñez 李小龙 🦀"));
    assert!(body.contains("a=1&amp;b=2+3 %20 ~!*&#x27;()"), "{body}");
}

#[rocket::async_test]
async fn invalid_utf8_and_garbage_bodies_are_400_not_500() {
    let app = spawn_app().await;
    for body in [
        "roles=%FF%FE",
        "oauth_consumer_key=%C3%28",
        "%%%===&&&=",
        "\u{0}",
    ] {
        let res = app.post_form("/any", body.to_string()).await;
        assert!(
            res.status().code >= 400 && res.status().code < 500,
            "{body}: {}",
            res.status()
        );
    }
    let res = app
        .client
        .post("/initial")
        .header(Header::new("Host", HOST))
        .header(ContentType::Form)
        .body(b"oauth_nonce=\xff\xfe")
        .dispatch()
        .await;
    refused(res, Status::BadRequest).await;
    // A JSON launch is not a form.
    let res = app
        .client
        .post("/initial")
        .header(Header::new("Host", HOST))
        .header(ContentType::JSON)
        .body("{}")
        .dispatch()
        .await;
    refused(res, Status::UnsupportedMediaType).await;
}

#[rocket::async_test]
async fn an_oversized_body_is_413_and_writes_nothing() {
    let app = spawn_app().await;
    assert_eq!(app.launch(&Launch::new("/any")).await.status(), Status::Ok);
    let launch = Launch::new("/any").set("resource_link_description", &"x".repeat(70 * 1024));
    let res = app.launch(&launch).await;
    // Nothing of it is written, but what was read of it (`lti_message_type` comes before the big
    // field) says it was a launch: like any failed one it ends the session.
    assert!(clears_session_cookie(&res), "{:?}", res.headers());
    refused(res, Status::PayloadTooLarge).await;
    assert_eq!(app.count("nonces").await, 1);
    assert_eq!(app.count("sessions").await, 0);
    // The same when every launch field comes after the limit (a big custom field first): no
    // request but a launch posts that much to a launch page, so it ends the session too.
    assert_eq!(app.launch(&Launch::new("/any")).await.status(), Status::Ok);
    let body = format!(
        "custom_pad={}&{}",
        "x".repeat(70 * 1024),
        Launch::new("/any").signed_body()
    );
    let res = app.post_form("/any", body).await;
    assert!(clears_session_cookie(&res), "{:?}", res.headers());
    refused(res, Status::PayloadTooLarge).await;
    assert_eq!(app.count("sessions").await, 0);
}

#[rocket::async_test]
async fn no_host_header_is_a_400() {
    let app = spawn_app().await;
    let res = app
        .client
        .post("/any")
        .header(ContentType::Form)
        .body(Launch::new("/any").signed_body())
        .dispatch()
        .await;
    refused(res, Status::BadRequest).await;
}

#[rocket::async_test]
async fn a_host_no_url_could_hold_is_a_400() {
    let app = spawn_app().await;
    for host in ["a b", "[::1", "x]]><x/>", "tool.test:", "tool.test:99999"] {
        let res = app
            .client
            .post("/any")
            .header(ContentType::Form)
            .header(Header::new("Host", host))
            .body(Launch::new("/any").signed_body())
            .dispatch()
            .await;
        let body = refused(res, Status::BadRequest).await;
        assert!(body.contains("not a host name"), "{host}: {body}");
    }
    assert_eq!(app.count("nonces").await, 0);
}

#[rocket::async_test]
async fn two_host_headers_are_a_400_whichever_was_signed() {
    let app = spawn_app().await;
    for hosts in [[HOST, "evil.test"], ["evil.test", HOST]] {
        let res = app
            .client
            .post("/any")
            .header(ContentType::Form)
            .header(Header::new("Host", hosts[0]))
            .header(Header::new("Host", hosts[1]))
            .body(Launch::new("/any").signed_body())
            .dispatch()
            .await;
        let body = refused(res, Status::BadRequest).await;
        assert!(body.contains("more than one"), "{body}");
    }
    assert_eq!(app.count("sessions").await, 0);
    assert_eq!(app.count("nonces").await, 0);
}

#[rocket::async_test]
async fn lti_fields_are_checked_after_the_signature() {
    let app = spawn_app().await;
    for (launch, log) in [
        (
            Launch::new("/any").without("resource_link_id"),
            "missing resource_link_id",
        ),
        (
            Launch::new("/any").set("lti_version", "LTI-2p0"),
            "unsupported lti_version LTI-2p0",
        ),
        (
            Launch::new("/any").set("lti_message_type", "ContentItemSelectionRequest"),
            "unsupported lti_message_type",
        ),
        (
            Launch::new("/any").without("lti_version"),
            "missing lti_version",
        ),
    ] {
        let body = refused(app.launch(&launch).await, Status::BadRequest).await;
        assert!(body.contains(log), "{log}: {body}");
    }
    assert_eq!(app.count("sessions").await, 0);
}

#[rocket::async_test]
async fn a_field_signed_twice_with_different_values_is_refused_whatever_the_order() {
    let app = spawn_app().await;
    // The signature covers the set of fields, not their order: a student who reorders the form
    // must not choose which `roles` counts.
    let signed = || {
        Launch::new("/initial_staff")
            .roles("Learner")
            .add("roles", "Instructor")
            .signed_body()
    };
    // Each its own launch (a refused genuine launch still spends its nonce).
    let (body, other) = (signed(), signed());
    let mut fields: Vec<&str> = other.split('&').collect();
    let roles: Vec<usize> = (0..fields.len())
        .filter(|&i| fields[i].starts_with("roles="))
        .collect();
    assert_eq!(roles.len(), 2, "{other}");
    fields.swap(roles[0], roles[1]);
    let swapped = fields.join("&");
    assert_ne!(swapped, other);
    for body in [body, swapped] {
        let res = app.post_form("/initial_staff", body).await;
        let page = refused(res, Status::BadRequest).await;
        assert!(page.contains("more than once"), "{page}");
    }
    assert_eq!(app.count("sessions").await, 0);
    // Two return URLs are the reorderer's choice too, whichever field is reported: none is
    // followed (bb119: with `context_id` repeated as well, the first was).
    let two_urls = Launch::new("/any")
        .add("context_id", "other-course")
        .set("launch_presentation_return_url", "https://lms.example/a")
        .add("launch_presentation_return_url", "https://evil.example/b");
    let res = app.launch(&two_urls).await;
    assert_eq!(res.headers().get_one("Location"), None);
    refused(res, Status::BadRequest).await;
    // With one return URL, the refusal goes back to it.
    let one_url = Launch::new("/any")
        .add("context_id", "other-course")
        .set("launch_presentation_return_url", "https://lms.example/a");
    let res = app.launch(&one_url).await;
    assert_eq!(res.status(), Status::SeeOther);
    assert!(res
        .headers()
        .get_one("Location")
        .is_some_and(|l| l.starts_with("https://lms.example/a?")));
    // Canvas's copy of a field with the same value is still a launch.
    let same = Launch::new("/initial_staff").add("roles", "Instructor");
    assert_eq!(app.launch(&same).await.status(), Status::Ok);
}

#[rocket::async_test]
async fn a_launch_page_opened_without_a_launch_during_a_visit_leads_back_to_it() {
    let app = spawn_app().await;
    // Without a visit: no way back to offer.
    let body = refused(app.get("/initial").await, Status::Unauthorized).await;
    assert!(!body.contains("Back to your page"), "{body}");
    assert_eq!(app.launch(&Launch::new("/any")).await.status(), Status::Ok);
    for res in [
        app.get("/initial").await,
        app.get("/initial_staff").await,
        app.post_form("/initial", String::new()).await,
    ] {
        // The visit goes on, and its page offers the way back to it and Log out.
        assert!(res.headers().get_one("Set-Cookie").is_none());
        let body = refused(res, Status::Unauthorized).await;
        assert!(body.contains("Not launched from an LMS"), "{body}");
        assert!(
            body.contains("Back to your page") && body.contains(r#"action="/logout""#),
            "{body}"
        );
    }
    assert_eq!(app.get("/session").await.status(), Status::Ok);
}

#[rocket::async_test]
async fn a_failed_launch_ends_the_current_session() {
    let app = spawn_app().await;
    assert_eq!(app.launch(&Launch::new("/any")).await.status(), Status::Ok);
    assert_eq!(app.get("/session").await.status(), Status::Ok);
    let bad = Launch::new("/any").consumer("__consumer_key__", "wrong");
    let res = app.launch(&bad).await;
    // The error page clears the cookie too (Rocket drops a guard's own cookie changes).
    assert!(clears_session_cookie(&res), "{:?}", res.headers());
    let body = refused(res, Status::Unauthorized).await;
    // No visit left to go back to or log out of.
    assert!(
        !body.contains("/logout") && !body.contains("Back to your page"),
        "{body}"
    );
    refused(app.get("/session").await, Status::Unauthorized).await;
    assert_eq!(app.count("sessions").await, 0);
    // A learner's launch at the staff page starts no visit either.
    let res = app
        .launch(&Launch::new("/initial_staff").roles("Learner"))
        .await;
    let body = refused(res, Status::Forbidden).await;
    assert!(
        !body.contains("/logout") && !body.contains("Back to your page"),
        "{body}"
    );
    assert_eq!(app.count("sessions").await, 0);
    // A refusal that ends no session leaves the cookies alone.
    let res = app.launch(&bad).await;
    assert!(res.headers().get_one("Set-Cookie").is_none());
}

#[rocket::async_test]
async fn a_method_field_does_not_turn_a_launch_into_a_visit() {
    let app = spawn_app().await;
    assert_eq!(app.launch(&Launch::new("/any")).await.status(), Status::Ok);
    // Rocket 0.5 would read this POST as a GET (a session request, launch fields ignored).
    let body = format!(
        "_method=GET&{}",
        Launch::new("/any").user("other").signed_body()
    );
    let res = app.post_form("/any", body).await;
    // A launch, with a field the LMS did not sign: refused, and the visit ends with it.
    assert!(clears_session_cookie(&res), "{:?}", res.headers());
    refused(res, Status::Unauthorized).await;
    refused(app.get("/session").await, Status::Unauthorized).await;
}

#[rocket::async_test]
async fn a_head_with_a_method_field_in_its_body_launches_nothing() {
    let app = spawn_app().await;
    // A signed launch whose first field is `_method=HEAD`, sent as a HEAD.
    let launch = Launch::new("/initial").add("_method", "HEAD");
    let body = launch.signed_body();
    let (method, rest): (Vec<&str>, Vec<&str>) =
        body.split('&').partition(|f| f.starts_with("_method="));
    let first = [&method[..], &rest[..]].concat().join("&");
    let res = app
        .client
        .head("/initial")
        .header(Header::new("Host", HOST))
        .header(ContentType::Form)
        .body(first)
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::MethodNotAllowed);
    assert!(res.headers().get_one("Set-Cookie").is_none());
    // Its nonce is unspent: the same launch posted is accepted (with `_method` last, since a POST
    // starting with it reads the same as that HEAD).
    let last = [rest, method].concat().join("&");
    assert_eq!(app.post_form("/initial", last).await.status(), Status::Ok);
}

#[rocket::async_test]
async fn a_head_with_a_method_field_in_its_body_changes_nothing_at_any_page() {
    let app = spawn_app().await;
    page(app.launch(&Launch::new("/any")).await, Status::Ok).await;
    // Read as a POST, it would log out (no sign of another site): it is refused as a HEAD.
    let res = app
        .client
        .head("/logout")
        .header(Header::new("Host", HOST))
        .header(ContentType::Form)
        .body("_method=HEAD")
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::MethodNotAllowed);
    assert_eq!(res.headers().get_one("Allow"), Some("GET, HEAD, POST"));
    page(app.get("/session").await, Status::Ok).await;
    assert_eq!(app.count("sessions").await, 1);
}

#[rocket::async_test]
async fn a_launch_sent_to_the_home_page_is_refused_as_not_a_launch_address() {
    let app = spawn_app().await;
    assert_eq!(app.launch(&Launch::new("/any")).await.status(), Status::Ok);
    // An LMS given the tool's bare address: a refused launch, not "does not take POST".
    let res = app.launch(&Launch::new("/")).await;
    assert!(clears_session_cookie(&res), "{:?}", res.headers());
    let body = refused(res, Status::Unauthorized).await;
    assert!(body.contains("Not a launch address"), "{body}");
    assert!(body.contains("home page"), "{body}");
    refused(app.get("/session").await, Status::Unauthorized).await;
    // Any other POST to the home page is still a 405 and leaves the session be.
    assert_eq!(app.launch(&Launch::new("/any")).await.status(), Status::Ok);
    let res = app
        .client
        .post("/")
        .header(ContentType::Form)
        .body("note=hello")
        .dispatch()
        .await;
    assert_eq!(res.headers().get_one("Allow"), Some("GET, HEAD"));
    refused(res, Status::MethodNotAllowed).await;
    assert_eq!(app.get("/session").await.status(), Status::Ok);
}

#[rocket::async_test]
async fn a_launch_sent_to_an_address_with_no_page_says_where_launches_go() {
    use rocket_lti_tool::store::refusals;
    let app = spawn_app().await;
    // A launch URL typed with a capital, or made up: still 404, but it says what went wrong. As
    // any failed launch it ends the visit open in the browser (another person's, perhaps).
    for path in ["/Any", "/lti/launch"] {
        assert_eq!(app.launch(&Launch::new("/any")).await.status(), Status::Ok);
        let launch = Launch::new(path).user("someone-else");
        let res = app.launch(&launch).await;
        assert!(clears_session_cookie(&res), "{:?}", res.headers());
        let page = refused(res, Status::NotFound).await;
        assert!(page.contains("Not a launch address"), "{page}");
        assert!(page.contains("letter case"), "{page}");
        // Where launches go: the fork's launch pages first (none upstream), then the tool's.
        let suggested = rocket_lti_tool::web::pages::suggested_launch_pages();
        assert!(suggested.ends_with("/initial or /any"), "{suggested}");
        assert!(page.contains(&html_escaped(&suggested)), "{page}");
        assert!(!page.contains("Back to your page"), "{page}");
        refused(app.get("/session").await, Status::Unauthorized).await;
        let res = app.get(&launch.signed_get_path()).await;
        let page = refused(res, Status::NotFound).await;
        assert!(page.contains("Not a launch address"), "{page}");
    }
    // The admin page shows them, with the address they came to (its path alone when the host
    // cannot be told).
    let res = app
        .client
        .post("/Initial")
        .header(ContentType::Form)
        .body(Launch::new("/Initial").signed_body())
        .dispatch()
        .await;
    refused(res, Status::NotFound).await;
    let recorded = refusals::recent(&app.state().db, None, 10).await.unwrap();
    assert_eq!(recorded.len(), 5);
    assert!(recorded.iter().any(|r| r.signed_url.ends_with("/Any")));
    assert!(recorded
        .iter()
        .all(|r| r.reason.contains(", an address with no page")));
    let hints: Vec<String> = recorded
        .iter()
        .map(|r| serde_json::to_string(&r.hint).unwrap())
        .collect();
    assert!(
        hints.iter().all(|h| h.contains("not_launch_address")),
        "{hints:?}"
    );
    assert!(hints[0].contains("/Initial"), "{hints:?}");
    // Nothing was verified or spent.
    assert_eq!(app.count("nonces").await, 2);
    // (An address a route has through a parameter is a page: `fork::a_fork_adds_guarded_pages`.)
    // Other requests to no page keep their 404: an OAuth 1 callback's fields are no launch.
    assert_eq!(app.launch(&Launch::new("/any")).await.status(), Status::Ok);
    for res in [
        app.post_form("/nope", "a=1".into()).await,
        app.get("/nope?a=1").await,
        app.get("/callback?oauth_token=t&oauth_verifier=v").await,
    ] {
        let page = refused(res, Status::NotFound).await;
        assert!(!page.contains("launch"), "{page}");
    }
    assert_eq!(app.get("/session").await.status(), Status::Ok);
    let recorded = refusals::recent(&app.state().db, None, 10).await.unwrap();
    assert_eq!(recorded.len(), 5);
    // A launch whose field names are percent-encoded (as launch pages read them) is one too.
    let body = Launch::new("/lti/launch")
        .signed_body()
        .replace("oauth_consumer_key=", "oauth%5Fconsumer%5Fkey=")
        .replace("lti_message_type=", "lti%5Fmessage%5Ftype=");
    assert!(body.contains("%5Fconsumer"), "{body}");
    let res = app.post_form("/lti/launch", body).await;
    assert!(clears_session_cookie(&res), "{:?}", res.headers());
    let page = refused(res, Status::NotFound).await;
    assert!(page.contains("Not a launch address"), "{page}");
    refused(app.get("/session").await, Status::Unauthorized).await;
    let recorded = refusals::recent(&app.state().db, None, 10).await.unwrap();
    assert_eq!(recorded.len(), 6);
}

#[rocket::async_test]
async fn a_stray_launch_is_recorded_without_a_field_cut_at_the_end_of_what_was_seen() {
    use rocket_lti_tool::store::refusals;
    let app = spawn_app().await;
    // Of a POST to no page only the first 512 bytes are seen: here the consumer key's value
    // runs past them. Recorded cut short, it would file the refusal under another key.
    let start = "lti_message_type=basic-lti-launch-request&oauth_nonce=n&custom_pad=";
    let key = "&oauth_consumer_key=";
    let pad = "x".repeat(512 - start.len() - key.len() - 3);
    let body = format!("{start}{pad}{key}__consumer_key__&oauth_signature=s");
    refused(app.post_form("/Any", body).await, Status::NotFound).await;
    let recorded = refusals::recent(&app.state().db, None, 10).await.unwrap();
    assert_eq!(recorded.len(), 1);
    assert_eq!(
        recorded[0].consumer_key, "",
        "{:?}",
        recorded[0].param_names
    );
    assert!(
        recorded[0].param_names.ends_with("custom_pad"),
        "{}",
        recorded[0].param_names
    );
    // A multipart body has no `&` between its parts: its start is kept whole.
    let part = |name: &str, value: &str| form_data_part("XyZ", name, value);
    let body = format!(
        "{}{}{}--XyZ--\r\n",
        part("oauth_consumer_key", "__consumer_key__"),
        part("lti_message_type", "basic-lti-launch-request"),
        part("custom_pad", &"x".repeat(700))
    );
    let res = app
        .client
        .post("/Any")
        .header(ContentType::new("multipart", "form-data").with_params(("boundary", "XyZ")))
        .body(body)
        .dispatch()
        .await;
    let page = refused(res, Status::NotFound).await;
    assert!(page.contains("Not a launch address"), "{page}");
}

#[rocket::async_test]
async fn a_launch_sent_to_a_page_that_takes_none_is_a_failed_launch() {
    use rocket_lti_tool::store::refusals;
    let app = spawn_app().await;
    // A page only opened by a GET (the staff's grade page, the registration XML): a launch
    // POSTed there (an LMS link set to it) is refused as not a launch address, not with "does
    // not take POST", and as any failed launch it ends the visit open in the browser.
    for path in ["/grades", "/lti/config.xml"] {
        assert_eq!(app.launch(&Launch::new("/any")).await.status(), Status::Ok);
        let res = app.launch(&Launch::new(path).user("someone-else")).await;
        assert!(clears_session_cookie(&res), "{path}: {:?}", res.headers());
        let page = refused(res, Status::Unauthorized).await;
        assert!(page.contains("Not a launch address"), "{page}");
        assert!(page.contains("does not start a visit"), "{page}");
        assert!(!page.contains("Back to your page"), "{page}");
        refused(app.get("/session").await, Status::Unauthorized).await;
    }
    // A page whose form guard only continues a visit (the learner's grade form), without one:
    // not "Not signed in" (which blames the browser's cookies) but where launches go.
    let page = refused(
        app.launch(&Launch::new("/grade")).await,
        Status::Unauthorized,
    )
    .await;
    assert!(page.contains("Not a launch address"), "{page}");
    let recorded = refusals::recent(&app.state().db, None, 10).await.unwrap();
    let reasons: Vec<&str> = recorded.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(recorded.len(), 3, "{reasons:?}");
    assert!(
        reasons[2].contains("/grades, which takes no launch"),
        "{reasons:?}"
    );
    assert!(reasons[0].contains("session-only page"), "{reasons:?}");
    // Nothing was verified or spent but the two launches that opened visits.
    assert_eq!(app.count("nonces").await, 2);
    // A HEAD keeps its 405 with the methods the address takes, and ends nothing; a request
    // that is no launch keeps its own answer.
    assert_eq!(app.launch(&Launch::new("/any")).await.status(), Status::Ok);
    let launch = Launch::new("/grade/read");
    let res = app.client.head(launch.signed_get_path()).dispatch().await;
    assert_eq!(res.status(), Status::MethodNotAllowed);
    assert_eq!(res.headers().get_one("Allow"), Some("POST"));
    let res = app.post_form("/grades", "note=hello".into()).await;
    assert_eq!(res.headers().get_one("Allow"), Some("GET, HEAD"));
    refused(res, Status::MethodNotAllowed).await;
    assert_eq!(app.get("/session").await.status(), Status::Ok);
    assert_eq!(
        refusals::recent(&app.state().db, None, 10)
            .await
            .unwrap()
            .len(),
        3
    );
    // A launch sent to a launch page by another method than POST is told so, not that the page
    // starts no visit; as a failed launch it ends the visit.
    let put = Launch::new("/any").user("someone-else").signed_get_path();
    let res = app.client.put(put).dispatch().await;
    assert!(clears_session_cookie(&res), "{:?}", res.headers());
    let page = refused(res, Status::Unauthorized).await;
    assert!(page.contains("came by PUT"), "{page}");
    assert!(!page.contains("does not start a visit"), "{page}");
    refused(app.get("/session").await, Status::Unauthorized).await;
}

#[rocket::async_test]
async fn the_session_page_ignores_launch_fields_and_refuses_a_launch_without_a_session() {
    let app = spawn_app().await;
    // Without a session, a launch sent to /session (an LMS link set to it by mistake) is refused
    // as one sent to a page that takes none, and starts nothing.
    let res = app.launch(&Launch::new("/session").user("student-b")).await;
    let body = refused(res, Status::Unauthorized).await;
    assert!(body.contains("Not a launch address"), "{body}");
    let get = Launch::new("/session").user("student-b").signed_get_path();
    let body = refused(app.get(&get).await, Status::Unauthorized).await;
    assert!(body.contains("Not a launch address"), "{body}");
    // So is a body over the launch limit (413), as at a launch page.
    let res = app
        .client
        .post("/session")
        .header(ContentType::Form)
        .body(format!("oauth_consumer_key=k&note={}", "x".repeat(70_000)))
        .dispatch()
        .await;
    refused(res, Status::PayloadTooLarge).await;
    assert_eq!(app.count("sessions").await, 0);
    assert_eq!(app.count("nonces").await, 0);
    // With one, launch fields are ignored (LtiSession's contract): whoever they name, in the
    // body or the query, the page is the session's, and nothing is verified or spent.
    let launch = Launch::new("/any").user("student-a");
    assert_eq!(app.launch(&launch).await.status(), Status::Ok);
    let forged = Launch::new("/session")
        .user("student-a")
        .consumer(rocket_lti_tool::DEMO_CONSUMER.0, "not the secret");
    for res in [
        app.launch(&Launch::new("/session").user("student-b")).await,
        app.get(&get).await,
        app.launch(&Launch::new("/session").user("student-a")).await,
        app.launch(&forged).await,
    ] {
        assert_eq!(res.status(), Status::Ok);
        assert!(res.headers().get_one("Set-Cookie").is_none());
        let page = res.into_string().await.unwrap();
        assert!(
            page.contains("student-a") && !page.contains("student-b"),
            "{page}"
        );
    }
    assert_eq!(app.count("sessions").await, 1);
    assert_eq!(app.count("nonces").await, 1);
    // A form of the tool's own posted to /session is a session request.
    let res = app
        .client
        .post("/session")
        .header(ContentType::Form)
        .body("note=hello&page=2")
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    // So is a request whose client sends a bare OAuth realm, with no OAuth fields, and one with
    // a body over the launch limit.
    let res = app
        .client
        .get("/session")
        .header(Header::new("Authorization", r#"OAuth realm="lms""#))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    let res = app
        .client
        .post("/session")
        .header(ContentType::Form)
        .body(format!("oauth_consumer_key=k&note={}", "x".repeat(70_000)))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    assert_eq!(app.get("/session").await.status(), Status::Ok);
}

#[rocket::async_test]
async fn of_two_session_cookies_the_one_naming_a_live_session_counts() {
    let app = spawn_app().await;
    let res = app.launch(&Launch::new("/any").user("learner-2")).await;
    assert_eq!(res.status(), Status::Ok);
    let live = res
        .cookies()
        .get("lti_session")
        .expect("a session cookie")
        .value()
        .to_string();
    // A partitioned cookie and an unpartitioned one of the same name: the older, for a session
    // that has ended, comes first.
    let with_cookies = |header: String| {
        app.client
            .get("/session")
            .header(Header::new("Host", HOST))
            .header(Header::new("Cookie", header))
            .dispatch()
    };
    let both = format!("lti_session=ended-session; lti_session={live}");
    let res = with_cookies(both.clone()).await;
    assert_eq!(res.status(), Status::Ok);
    let page = res.into_string().await.unwrap();
    assert!(page.contains("learner-2"));
    let res = with_cookies("lti_session=ended-1; lti_session=ended-2".into()).await;
    refused(res, Status::Unauthorized).await;
    // Logging out from that page ends the session it showed.
    let start = page.find("name=\"csrf\" value=\"").expect("a logout token") + 19;
    let token = page[start..].split('"').next().unwrap().to_string();
    let res = app
        .client
        .post("/logout")
        .header(Header::new("Host", HOST))
        .header(Header::new("Cookie", both.clone()))
        .header(ContentType::Form)
        .body(format!("csrf={token}"))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    assert_eq!(app.count("sessions").await, 0);
    // So does a failed launch, on a shared computer.
    let res = app.launch(&Launch::new("/any").user("learner-3")).await;
    let live = res
        .cookies()
        .get("lti_session")
        .unwrap()
        .value()
        .to_string();
    let bad = Launch::new("/any").consumer("__consumer_key__", "wrong");
    let res = app
        .client
        .post("/any")
        .header(Header::new("Host", HOST))
        .header(Header::new(
            "Cookie",
            format!("lti_session=old; lti_session={live}"),
        ))
        .header(ContentType::Form)
        .body(bad.signed_body())
        .dispatch()
        .await;
    refused(res, Status::Unauthorized).await;
    assert_eq!(app.count("sessions").await, 0);
}

/// Sends a request to the tool with the `Sec-Fetch-*` headers a browser adds (`("Mode",
/// "navigate")`, ...): how it fetches (for a page's part, or as a navigation) and from which site.
async fn fetched<'c>(req: LocalRequest<'c>, fetch: &[(&str, &str)]) -> LocalResponse<'c> {
    let mut req = req.header(Header::new("Host", HOST));
    for (name, value) in fetch {
        req = req.header(Header::new(format!("Sec-Fetch-{name}"), value.to_string()));
    }
    req.dispatch().await
}

#[rocket::async_test]
async fn another_page_cannot_end_the_session_with_an_image_or_frame_of_a_failed_launch() {
    let app = spawn_app().await;
    assert_eq!(app.launch(&Launch::new("/any")).await.status(), Status::Ok);
    let bad = Launch::new("/any").consumer("__consumer_key__", "wrong");
    let get = |fetch| fetched(app.client.get("/any?oauth_x=1"), fetch);
    let post = |fetch, body: String| {
        fetched(
            app.client.post("/any").header(ContentType::Form).body(body),
            fetch,
        )
    };
    // A page's parts are refused, and the session stays.
    let res = get(&[("Mode", "no-cors"), ("Dest", "image")]).await;
    assert!(!clears_session_cookie(&res), "{:?}", res.headers());
    refused(res, Status::Forbidden).await;
    let res = post(
        &[("Mode", "cors")],
        "oauth_consumer_key=k&user_id=%FF".into(),
    )
    .await;
    assert!(!clears_session_cookie(&res), "{:?}", res.headers());
    // Unreadable or not, a page's part is refused as that.
    assert!(refused(res, Status::Forbidden)
        .await
        .contains("Not opened as a page"));
    let res = post(&[("Mode", "no-cors")], bad.signed_body()).await;
    refused(res, Status::Forbidden).await;
    // Nor does a valid launch fetched as a page's part start a visit (any page could sign its
    // viewers in as whoever's launch it embeds): refused before its nonce is spent.
    let someone = Launch::new("/any").user("someone-else");
    let body = someone.signed_body();
    let res = post(&[("Mode", "no-cors"), ("Dest", "image")], body.clone()).await;
    assert!(res.headers().get_one("Set-Cookie").is_none());
    let page_text = refused(res, Status::Forbidden).await;
    assert!(page_text.contains("Not opened as a page"), "{page_text}");
    assert!(!page(app.get("/session").await, Status::Ok)
        .await
        .contains("someone-else"));
    // Another site's frame or link is a navigation, but a GET: LMSs launch with a form.
    let frame = [
        ("Mode", "navigate"),
        ("Site", "cross-site"),
        ("Dest", "iframe"),
    ];
    let res = get(&frame).await;
    assert!(!clears_session_cookie(&res), "{:?}", res.headers());
    refused(res, Status::BadRequest).await;
    assert_eq!(app.count("sessions").await, 1);
    assert_eq!(app.get("/session").await.status(), Status::Ok);
    // The same failed launch as a navigation (a form into the window or a frame) ends it.
    let res = post(&[("Mode", "navigate")], bad.signed_body()).await;
    assert!(clears_session_cookie(&res), "{:?}", res.headers());
    refused(res, Status::Unauthorized).await;
    assert_eq!(app.count("sessions").await, 0);
    // So does a failed GET launch typed into the address bar (no other site involved).
    assert_eq!(app.launch(&Launch::new("/any")).await.status(), Status::Ok);
    let res = get(&[("Mode", "navigate"), ("Site", "none")]).await;
    assert!(clears_session_cookie(&res), "{:?}", res.headers());
    refused(res, Status::BadRequest).await;
    assert_eq!(app.count("sessions").await, 0);
    // The launch the image carried spent nothing: opened as a page, it works.
    let res = post(&[("Mode", "navigate")], body).await;
    assert!(page(res, Status::Ok).await.contains("someone-else"));
    // Chrome 76-79 called a frame's navigation `nested-navigate`.
    let framed = Launch::new("/any").user("framed").signed_body();
    let res = post(&[("Mode", "nested-navigate")], framed).await;
    assert!(page(res, Status::Ok).await.contains("framed"));
    // A page's part asking for a launch page with no launch in it is no launch at all (401).
    let res = fetched(app.client.get("/initial"), &[("Mode", "no-cors")]).await;
    refused(res, Status::Unauthorized).await;
}

#[rocket::async_test]
async fn an_encoded_body_is_refused_not_taken_for_a_session_request() {
    let app = spawn_app().await;
    let post_to = |path: &'static str,
                   codings: &[(&'static str, &'static str)],
                   content_type: ContentType,
                   body| {
        let mut req = app
            .client
            .post(path)
            .header(Header::new("Host", HOST))
            .header(content_type)
            .body(body);
        for (name, value) in codings {
            req = req.header(Header::new(*name, *value));
        }
        req.dispatch()
    };
    let page_of = |codings, content_type, body| post_to("/any", codings, content_type, body);
    assert_eq!(app.launch(&Launch::new("/any")).await.status(), Status::Ok);
    // A launch for someone else, compressed (these bytes stand for gzip) or in UTF-16 under any
    // label: its fields cannot be read, so it is refused instead of showing the current session.
    // No NUL in it, so only the header can refuse it.
    let gzipped = vec![0x1f, 0x8b, 0x08, 0x08, 0xff, 0x13, 0x37];
    for codings in [
        &[("Content-Encoding", "gzip")][..],
        &[
            ("Content-Encoding", "identity"),
            ("Content-Encoding", "gzip"),
        ],
        &[("Content-Encoding", "identity, deflate")],
        &[("Transfer-Encoding", "gzip, chunked")],
        &[("Content-Encoding", "chunked")],
        &[("Transfer-Encoding", "chunked, chunked")],
        &[("Transfer-Encoding", "identity, chunked")],
    ] {
        let res = page_of(codings, ContentType::Form, gzipped.clone()).await;
        refused(res, Status::UnsupportedMediaType).await;
    }
    let launch = Launch::new("/any").user("bob").signed_body();
    let utf16: Vec<u8> = launch.encode_utf16().flat_map(u16::to_le_bytes).collect();
    // Nor is one sent as another kind of body (JSON, say). The session page ignores launch
    // fields, read or not: it shows the session.
    let json = r#"{"oauth_consumer_key":"any","user_id":"bob"}"#;
    for (path, status) in [
        ("/any", Status::UnsupportedMediaType),
        ("/session", Status::Ok),
    ] {
        for label in ["UTF-16LE", "unicode", "csUnicode"] {
            let form = ContentType::new("application", "x-www-form-urlencoded");
            let with_label = form.with_params(("charset", label));
            let res = post_to(path, &[], with_label, utf16.clone()).await;
            assert_eq!(res.status(), status, "{path}");
        }
        let res = post_to(path, &[], ContentType::JSON, json.as_bytes().to_vec()).await;
        assert_eq!(res.status(), status, "{path}");
        // Binary data that is not sent as a form is no launch: a session request, as before.
        let binary = ContentType::new("application", "octet-stream");
        let res = post_to(path, &[], binary, vec![0, 1, 2, 0]).await;
        assert_eq!(res.status(), Status::Ok, "{path}");
    }
    assert_eq!(app.count("sessions").await, 1);
    // A plain body is refused too when it says it is encoded; its launch fields show, so it is a
    // failed launch, which ends the session. Nothing was launched.
    let br = [("Content-Encoding", "br")];
    let res = page_of(&br, ContentType::Form, launch.clone().into_bytes()).await;
    assert!(clears_session_cookie(&res), "{:?}", res.headers());
    let page = refused(res, Status::UnsupportedMediaType).await;
    // It says how the body was encoded, not merely that a launch is a form (it was one).
    assert!(page.contains("encoded (Content-Encoding: br)"), "{page}");
    assert_eq!(app.count("sessions").await, 0);
    assert_eq!(app.count("nonces").await, 1);
    // `identity` is no coding at all, and the HTTP layer undoes `chunked`.
    let undone = [
        ("Content-Encoding", "identity"),
        ("Transfer-Encoding", "chunked"),
    ];
    let res = page_of(&undone, ContentType::Form, launch.into_bytes()).await;
    assert_eq!(res.status(), Status::Ok);
    assert_eq!(app.count("nonces").await, 2);
}

#[rocket::async_test]
async fn sessions_expire() {
    // Two seconds: times are whole seconds, so one could run out before the first page.
    let app = spawn_app_with(|f| f.merge(("session_ttl", 2))).await;
    assert_eq!(app.launch(&Launch::new("/any")).await.status(), Status::Ok);
    assert_eq!(app.get("/session").await.status(), Status::Ok);
    rocket::tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let res = app.get("/session").await;
    assert!(clears_session_cookie(&res), "{:?}", res.headers());
    let body = refused(res, Status::Unauthorized).await;
    assert!(body.contains("expired"));
}

#[rocket::async_test]
async fn authorization_header_launches_verify() {
    // Some consumers put the OAuth fields in the Authorization header instead of the body.
    let app = spawn_app().await;
    // A realm (not signed) may be any RFC 2617 quoted string, commas included.
    for realm in ["", r#"realm="Photos, Inc.", "#] {
        let (header, body) = Launch::new("/any").signed_header();
        let header = header.replacen("OAuth ", &format!("OAuth {realm}"), 1);
        let res = app
            .client
            .post("/any")
            .header(Header::new("Host", HOST))
            .header(Header::new("Authorization", header))
            .header(ContentType::Form)
            .body(body)
            .dispatch()
            .await;
        assert_eq!(res.status(), Status::Ok, "{realm}");
    }
}

#[rocket::async_test]
async fn oauth_fields_split_between_header_and_body_are_400_and_spend_nothing() {
    // RFC 5849 section 3.5: the OAuth fields travel in one place. Moving one of a correctly
    // signed header's fields into the body keeps the signed set, so only that rule refuses it.
    let app = spawn_app().await;
    let (header, body) = Launch::new("/any").signed_header();
    let key_field = r#"oauth_consumer_key="__consumer_key__","#;
    assert!(header.contains(key_field), "{header}");
    let send = |header: String, body: String| {
        app.client
            .post("/any")
            .header(Header::new("Host", HOST))
            .header(Header::new("Authorization", header))
            .header(ContentType::Form)
            .body(body)
            .dispatch()
    };
    let split = send(
        header.replacen(key_field, "", 1),
        format!("{body}&oauth_consumer_key=__consumer_key__"),
    )
    .await;
    let page = refused(split, Status::BadRequest).await;
    assert!(page.contains("more than one"), "{page}");
    // The same launch sent as signed, all in the header: its nonce was not spent.
    assert_eq!(send(header, body).await.status(), Status::Ok);
}

#[rocket::async_test]
async fn over_long_oauth_fields_are_400() {
    let app = spawn_app().await;
    let long_key = "k".repeat(256);
    let page = refused(
        app.launch(&Launch::new("/any").consumer(&long_key, "x"))
            .await,
        Status::BadRequest,
    )
    .await;
    assert!(page.contains("oauth_consumer_key"));
    let mut launch = Launch::new("/any");
    launch.nonce = "n".repeat(300);
    refused(app.launch(&launch).await, Status::BadRequest).await;
}

#[rocket::async_test]
async fn nonces_outlive_their_consumer() {
    let app = spawn_app().await;
    app.add_consumer("school", "school-secret-123456").await;
    let launch = Launch::new("/any").consumer("school", "school-secret-123456");
    assert_eq!(app.launch(&launch).await.status(), Status::Ok);
    let db = &app.state().db;
    assert!(rocket_lti_tool::store::consumers::delete(db, "school")
        .await
        .unwrap());
    app.add_consumer("school", "school-secret-123456").await;
    refused(app.launch(&launch).await, Status::Unauthorized).await;
}

#[rocket::async_test]
async fn a_non_form_post_to_any_is_a_session_request_unless_it_tries_to_launch() {
    let app = spawn_app().await;
    assert_eq!(app.launch(&Launch::new("/any")).await.status(), Status::Ok);
    let post = |body: String| {
        app.client
            .post("/any")
            .header(Header::new("Host", HOST))
            .header(ContentType::JSON)
            .body(body)
            .dispatch()
    };
    assert_eq!(post(r#"{"note":"hi"}"#.into()).await.status(), Status::Ok);
    // JSON that names a launch field is refused, but it is no form launch: the session stays.
    let res = post(r#"{"oauth_consumer_key":"x"}"#.into()).await;
    assert!(!clears_session_cookie(&res), "{:?}", res.headers());
    refused(res, Status::UnsupportedMediaType).await;
    assert_eq!(app.get("/session").await.status(), Status::Ok);
    // A form launch sent with the wrong Content-Type is a failed launch: it ends the session.
    let res = post(Launch::new("/any").signed_body()).await;
    assert!(clears_session_cookie(&res), "{:?}", res.headers());
    refused(res, Status::UnsupportedMediaType).await;
    refused(app.get("/session").await, Status::Unauthorized).await;
}

#[rocket::async_test]
async fn an_undecodable_launch_ends_the_session_but_undecodable_junk_does_not() {
    let app = spawn_app().await;
    let post = |path: &'static str, content_type: &ContentType, body: &'static [u8]| {
        app.client
            .post(path)
            .header(Header::new("Host", HOST))
            .header(content_type.clone())
            .body(body)
            .dispatch()
    };
    let form = |path, body| post(path, &ContentType::Form, body);
    for path in ["/initial", "/any"] {
        assert_eq!(app.launch(&Launch::new("/any")).await.status(), Status::Ok);
        // Junk that does not try to be a launch: refused (or a session request), session kept.
        let res = form(path, b"note=%FF").await;
        assert!(!clears_session_cookie(&res), "{path}: {:?}", res.headers());
        assert_eq!(app.count("sessions").await, 1, "{path}");
        // A launch with a field that is not UTF-8: 400, and the session ends.
        let res = form(path, b"oauth_consumer_key=k&user_id=%FF").await;
        assert!(clears_session_cookie(&res), "{path}: {:?}", res.headers());
        refused(res, Status::BadRequest).await;
        assert_eq!(app.count("sessions").await, 0, "{path}");
        refused(app.get("/session").await, Status::Unauthorized).await;
    }
    // Launch field names percent-encoded, or sent as multipart parts, are launch fields too.
    let encoded = "oauth%5Fconsumer%5Fkey=k&x=%FF";
    let multipart = "--XX\r\nContent-Disposition: form-data; name=\"oauth_consumer_key\"\r\n\r\nk\r\n--XX--\r\n";
    for (content_type, body, status) in [
        (ContentType::Form, encoded, Status::BadRequest),
        (ContentType::JSON, encoded, Status::UnsupportedMediaType),
        (
            ContentType::new("multipart", "form-data").with_params(("boundary", "XX")),
            multipart,
            Status::UnsupportedMediaType,
        ),
    ] {
        assert_eq!(app.launch(&Launch::new("/any")).await.status(), Status::Ok);
        let res = post("/any", &content_type, body.as_bytes()).await;
        assert!(
            clears_session_cookie(&res),
            "{content_type}: {:?}",
            res.headers()
        );
        refused(res, status).await;
        assert_eq!(app.count("sessions").await, 0, "{content_type}");
    }
    // A text that merely mentions a launch field is refused on /any but ends nothing: JSON, a
    // snippet of HTML, an upload whose file (not part) is named like one.
    assert_eq!(app.launch(&Launch::new("/any")).await.status(), Status::Ok);
    let upload = "--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"oauth_notes.txt\"\r\n\r\nhi\r\n--XX--\r\n";
    for (content_type, body) in [
        (
            ContentType::JSON,
            r#"{"note":"see oauth_token and lti_message_type"}"#,
        ),
        (
            ContentType::Plain,
            r#"see <input name="oauth_consumer_key">"#,
        ),
        (
            ContentType::new("multipart", "form-data").with_params(("boundary", "XX")),
            upload,
        ),
    ] {
        let res = post("/any", &content_type, body.as_bytes()).await;
        assert!(
            !clears_session_cookie(&res),
            "{content_type}: {:?}",
            res.headers()
        );
        refused(res, Status::UnsupportedMediaType).await;
        assert_eq!(
            app.get("/session").await.status(),
            Status::Ok,
            "{content_type}"
        );
    }
    // The same for a GET launch signed in the query: HEAD is 405 and ends nothing, as for a
    // readable launch; GET ends the session.
    let path = "/initial?oauth_consumer_key=k&user_id=%FF";
    let res = app
        .client
        .head(path)
        .header(Header::new("Host", HOST))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::MethodNotAllowed);
    assert!(res.headers().get_one("Set-Cookie").is_none());
    assert_eq!(app.count("sessions").await, 1);
    let res = app.get(path).await;
    assert!(clears_session_cookie(&res), "{:?}", res.headers());
    refused(res, Status::BadRequest).await;
    assert_eq!(app.count("sessions").await, 0);
}

#[rocket::async_test]
async fn content_types_a_strict_parser_refuses_are_judged_by_their_media_type() {
    let app = spawn_app().await;
    let send = |content_type: &'static str, user: &str| {
        app.client
            .post("/initial")
            .header(Header::new("Host", HOST))
            .header(Header::new("Content-Type", content_type))
            .body(Launch::new("/initial").user(user).signed_body())
            .dispatch()
    };
    // Blank is read as none (a form); a trailing `;` or spaces around `=` still say "form".
    for (i, ct) in [
        "",
        "application/x-www-form-urlencoded; charset=UTF-8;",
        "Application/X-WWW-Form-Urlencoded ; charset = utf-8",
    ]
    .into_iter()
    .enumerate()
    {
        let res = send(ct, &format!("user-{i}")).await;
        assert_eq!(res.status(), Status::Ok, "{ct:?}");
    }
    assert_eq!(app.count("sessions").await, 1);
    // Anything else that does not parse is not a form: 415, no nonce spent, session ended.
    let res = send("garbage", "user-x").await;
    assert!(clears_session_cookie(&res), "{:?}", res.headers());
    refused(res, Status::UnsupportedMediaType).await;
    assert_eq!(app.count("nonces").await, 3);
    assert_eq!(app.count("sessions").await, 0);
}

#[rocket::async_test]
async fn absurd_durations_stop_the_start() {
    let dir = temp_dir();
    let figment = rocket_lti_tool::figment()
        .merge((
            "database_url",
            format!("sqlite://{}", dir.join("x.db").display()),
        ))
        .merge(("log_level", "off"))
        .merge(("timestamp_window", 9_000_000_000_000_000_000i64));
    match rocket::local::asynchronous::Client::untracked(rocket_lti_tool::build(figment)).await {
        Ok(_) => panic!("started with a timestamp window of 285 billion years"),
        Err(e) => assert!(
            matches!(e.kind(), rocket::error::ErrorKind::FailedFairings(_)),
            "{e}"
        ),
    }
    let _ = std::fs::remove_dir_all(dir);
}
