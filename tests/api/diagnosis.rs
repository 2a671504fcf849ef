//! Refused launches are recorded with the hint that names their cause, and nothing private.

use rocket::http::{ContentType, Header, Status};
use rocket_lti_tool::lti::diagnosis::Hint;
use rocket_lti_tool::store::refusals::{self, Refusal, KEEP_PER_BUCKET};

use crate::helpers::*;

async fn only_refusal(app: &TestApp) -> Refusal {
    let all = refusals::recent(&app.state().db, None, 10).await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    all.into_iter().next().unwrap()
}

async fn hint_of(launch: Launch) -> Hint {
    let app = spawn_app().await;
    app.add_consumer("canvas-main", "canvas-secret-123456")
        .await;
    let res = app.launch(&launch).await;
    assert!(res.status().code >= 400);
    only_refusal(&app).await.hint
}

#[rocket::async_test]
async fn scheme_mismatch_behind_a_tls_proxy() {
    let hint = hint_of(Launch::new("/any").signed_for(&format!("https://{HOST}/any"))).await;
    assert_eq!(
        hint,
        Hint::SchemeMismatch {
            signed: format!("https://{HOST}/any"),
            seen: format!("http://{HOST}/any"),
            by_public_url: false,
        }
    );
    assert!(hint.advice().contains("public_url") && hint.advice().contains("trusted_proxies"));
}

#[rocket::async_test]
async fn host_mismatch_through_an_untrusted_proxy_and_a_wrong_public_url() {
    let app = spawn_app().await;
    let launch = Launch::new("/any").signed_for("https://tool.example.edu/any");
    let res = app
        .client
        .post("/any")
        .header(Header::new("Host", HOST))
        .header(Header::new("X-Forwarded-Proto", "https"))
        .header(Header::new("X-Forwarded-Host", "tool.example.edu"))
        .header(ContentType::Form)
        .body(launch.signed_body())
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Unauthorized);
    let hint = only_refusal(&app).await.hint;
    assert!(
        matches!(&hint, Hint::HostMismatch { signed, .. } if signed == "https://tool.example.edu/any"),
        "{hint:?}"
    );

    let app = spawn_app_with(|f| f.merge(("public_url", "https://wrong.example.edu"))).await;
    assert_eq!(
        app.launch(&Launch::new("/any")).await.status(),
        Status::Unauthorized
    );
    let hint = only_refusal(&app).await.hint;
    assert_eq!(
        hint,
        Hint::HostMismatch {
            signed: format!("http://{HOST}/any"),
            seen: "https://wrong.example.edu/any".into(),
            by_public_url: true,
        }
    );
    // The address is set: the advice points at the LMS's URL or that setting, not at a proxy.
    let advice = hint.advice();
    assert!(advice.contains("launch URL in the LMS"), "{advice}");
    assert!(!advice.contains("trusted_proxies"), "{advice}");
    // The same over https (a TLS proxy in front of a wrong public_url): a host mismatch too,
    // not a wrong secret.
    let app = spawn_app_with(|f| f.merge(("public_url", "https://wrong.example.edu"))).await;
    let https = Launch::new("/any").signed_for(&format!("https://{HOST}/any"));
    refused(app.launch(&https).await, Status::Unauthorized).await;
    assert!(
        matches!(only_refusal(&app).await.hint, Hint::HostMismatch { ref signed, .. } if *signed == format!("https://{HOST}/any")),
    );
}

#[rocket::async_test]
async fn path_mismatch() {
    let launch = Launch::new("/any").signed_for(&format!("http://{HOST}/initial"));
    let hint = hint_of(launch).await;
    assert_eq!(
        hint,
        Hint::PathMismatch {
            signed: format!("http://{HOST}/initial"),
            seen: format!("http://{HOST}/any")
        }
    );
}

#[rocket::async_test]
async fn a_launch_sent_to_a_page_that_takes_none_names_the_address() {
    for path in ["/", "/session"] {
        let hint = hint_of(Launch::new(path)).await;
        assert_eq!(
            hint,
            Hint::NotLaunchAddress {
                seen: format!("http://{HOST}{path}"),
                suggested: rocket_lti_tool::web::pages::suggested_launch_pages(),
            }
        );
        // Upstream: "such as /initial or /any" (a fork's launch pages come first).
        let pages = rocket_lti_tool::web::pages::suggested_launch_pages();
        assert!(pages.ends_with("/initial or /any"), "{pages}");
        assert!(
            hint.advice().contains(&format!("such as {pages}")),
            "{}",
            hint.advice()
        );
    }
}

#[rocket::async_test]
async fn timestamp_skew_in_seconds() {
    match hint_of(Launch::new("/any").timestamp(now() - 3600)).await {
        Hint::TimestampSkew { seconds } => assert!((3600..3610).contains(&seconds)),
        other => panic!("{other:?}"),
    }
    match hint_of(Launch::new("/any").timestamp(now() + 900)).await {
        Hint::TimestampSkew { seconds } => assert!((-900..=-890).contains(&seconds)),
        other => panic!("{other:?}"),
    }
}

#[rocket::async_test]
async fn replayed_nonce() {
    let app = spawn_app().await;
    let launch = Launch::new("/any");
    assert_eq!(app.launch(&launch).await.status(), Status::Ok);
    assert_eq!(app.launch(&launch).await.status(), Status::Unauthorized);
    assert_eq!(only_refusal(&app).await.hint, Hint::ReplayedNonce);
}

#[rocket::async_test]
async fn a_launch_signed_before_forgotten_ones_is_put_down_to_a_clock() {
    let app = spawn_app().await;
    sqlx::query("INSERT INTO nonce_prune_marks (consumer_key, signed_up_to) VALUES (?, ?)")
        .bind("__consumer_key__")
        .bind(now() as i64 + 60)
        .execute(&app.state().db)
        .await
        .unwrap();
    let launch = Launch::new("/any");
    assert_eq!(app.launch(&launch).await.status(), Status::Unauthorized);
    let hint = only_refusal(&app).await.hint;
    assert_eq!(hint, Hint::SignedBeforePruned);
    assert!(hint.advice().contains("clock"), "{}", hint.advice());
}

#[rocket::async_test]
async fn unknown_key_close_to_an_existing_one_and_unknown_key() {
    let hint = hint_of(Launch::new("/any").consumer("canvas-mian", "canvas-secret-123456")).await;
    assert_eq!(
        hint,
        Hint::UnknownKeyLike {
            similar: "canvas-main".into()
        }
    );
    let hint = hint_of(Launch::new("/any").consumer("blackboard", "x")).await;
    assert_eq!(hint, Hint::UnknownKey);
}

#[rocket::async_test]
async fn disabled_key_wrong_secret_and_missing_field() {
    let app = spawn_app().await;
    app.add_consumer("canvas-main", "canvas-secret-123456")
        .await;
    rocket_lti_tool::store::consumers::set_enabled(&app.state().db, "canvas-main", false)
        .await
        .unwrap();
    app.launch(&Launch::new("/any").consumer("canvas-main", "canvas-secret-123456"))
        .await;
    assert_eq!(only_refusal(&app).await.hint, Hint::DisabledKey);

    assert_eq!(
        hint_of(Launch::new("/any").consumer("canvas-main", "canvas-secret-12345")).await,
        Hint::WrongSecret
    );
    assert_eq!(
        hint_of(Launch::new("/any").without("resource_link_id")).await,
        Hint::MissingField {
            field: "resource_link_id".into()
        }
    );
    let app = spawn_app().await;
    let body = drop_field(&Launch::new("/any").signed_body(), "oauth_nonce");
    app.post_form("/any", body).await;
    assert_eq!(
        only_refusal(&app).await.hint,
        Hint::MissingField {
            field: "oauth_nonce".into()
        }
    );
}

#[rocket::async_test]
async fn the_log_keeps_no_user_values_and_no_secret() {
    let app = spawn_app().await;
    let launch = Launch::new("/any")
        .consumer("__consumer_key__", "wrong-secret")
        .user("alice-id-12345")
        .set("lis_person_contact_email_primary", "alice@example.edu")
        .set("lis_person_name_full", "Alice Example")
        // Fields only this LMS knows: kept by length whatever their names say.
        .set("custom_pin", "pin-1234")
        .set("custom_ssn", "123-45-6789")
        .set("ext_moodle_privatestuff", "private-stuff")
        // Moodle's return URL carries the user's sesskey.
        .set(
            "launch_presentation_return_url",
            "https://moodle.test/mod/lti/return.php?course=2&sesskey=Sk3y1234",
        );
    app.launch(&launch).await;
    let r = only_refusal(&app).await;
    let all = format!("{r:?}");
    for private in [
        "alice-id-12345",
        "alice@example.edu",
        "Alice",
        "__lti_secret__",
        "wrong-secret",
        "pin-1234",
        "123-45-6789",
        "private-stuff",
        "Sk3y1234",
    ] {
        assert!(!all.contains(private), "{private} in {all}");
    }
    assert!(
        r.base_string.contains("user_id%3D%255B14%2520chars%255D"),
        "{}",
        r.base_string
    );
    assert!(r.param_names.contains("lis_person_contact_email_primary"));
    assert!(r.param_names.contains("custom_pin"));
    // What describes the launch stays readable for the diagnosis.
    assert!(
        r.base_string.contains("resource_link_id%3D")
            && r.base_string.contains("roles%3D")
            && !r.base_string.contains("roles%3D%255B"),
        "{}",
        r.base_string
    );
    assert_eq!(r.signed_url, format!("http://{HOST}/any"));
    // The signature is in none of its forms: as sent (form-encoded), raw, or encoded once more
    // as a base string would have it.
    let sent = launch
        .signed_body()
        .split("oauth_signature=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_string();
    let raw = sent
        .replace("%2B", "+")
        .replace("%2F", "/")
        .replace("%3D", "=");
    assert!(raw.ends_with('=') && raw.len() == 28, "{raw}");
    let in_base_string = sent.replace('%', "%25");
    for form in [&sent, &raw, &in_base_string] {
        assert!(!all.contains(form.as_str()), "{form} in {all}");
    }
    assert!(
        !r.base_string.contains("oauth_signature%3D"),
        "{}",
        r.base_string
    );
}

#[rocket::async_test]
async fn the_log_stays_bounded_and_goes_with_its_consumer() {
    let app = spawn_app().await;
    let db = &app.state().db;
    let refusal = |key: &str| Refusal {
        at: 1,
        consumer_key: key.into(),
        reason: "invalid signature".into(),
        hint: Hint::WrongSecret,
        signed_url: String::new(),
        base_string: String::new(),
        param_names: String::new(),
        remote_addr: String::new(),
        user_agent: String::new(),
    };
    // Refusals of signed launches are kept apart: a flood of forgeries does not push them out.
    let signed = refusals::bucket(Some("__consumer_key__"), true);
    for _ in 0..3 {
        refusals::record(db, &signed, &refusal("__consumer_key__"))
            .await
            .unwrap();
    }
    for i in 0..5000 {
        refusals::record(db, "__consumer_key__", &refusal("__consumer_key__"))
            .await
            .unwrap();
        if i % 2 == 0 {
            refusals::record(db, "", &refusal(&format!("unknown-{i}")))
                .await
                .unwrap();
        }
    }
    assert_eq!(app.count("refusals").await, 2 * KEEP_PER_BUCKET + 3);
    // Nor do they push them off the admin page's list, the consumer's or everyone's.
    for key in [Some("__consumer_key__"), None] {
        let shown = refusals::recent(db, key, 200).await.unwrap();
        assert_eq!(shown.len(), 203, "{key:?}");
        assert!(shown.windows(2).all(|w| w[0].at >= w[1].at));
    }
    rocket_lti_tool::store::consumers::delete(db, "__consumer_key__")
        .await
        .unwrap();
    assert_eq!(app.count("refusals").await, KEEP_PER_BUCKET);
}

#[rocket::async_test]
async fn what_a_refusal_stores_stays_small() {
    let app = spawn_app().await;
    let big = Launch::new("/any")
        .consumer("nobody", "x")
        .set("resource_link_description", &"x".repeat(60_000));
    refused(app.launch(&big).await, Status::Unauthorized).await;
    let r = only_refusal(&app).await;
    assert!(r.base_string.len() < 9000, "{}", r.base_string.len());
    assert!(r.base_string.ends_with("(truncated)"));
    // Headers an error quotes are cut short too, wherever the refusal keeps them.
    for (name, value) in [
        ("Content-Type", format!("text/{}", "x".repeat(200_000))),
        ("Content-Encoding", "y".repeat(200_000)),
    ] {
        let res = app
            .client
            .post("/any?oauth_consumer_key=nobody")
            .header(Header::new("Host", HOST))
            .header(Header::new(name, value))
            .body("a=1")
            .dispatch()
            .await;
        refused(res, Status::UnsupportedMediaType).await;
    }
    // A host name of 300 KB (each label valid): with no `public_url`, the address a refusal names
    // comes from `Host`, and a proxy's claim from `X-Forwarded-Host`.
    let huge = format!("{}example", "a.".repeat(150_000));
    let res = app
        .client
        .post("/session")
        .header(Header::new("Host", huge.clone()))
        .header(ContentType::Form)
        .body("oauth_consumer_key=nobody")
        .dispatch()
        .await;
    assert!(res.status().code >= 400, "{}", res.status());
    // A real launch signed for that host, as one a student copied could be resent.
    let launch = Launch::new("/any").signed_for(&format!("http://{huge}/any"));
    let res = app
        .client
        .post("/any")
        .header(Header::new("Host", HOST))
        .header(Header::new("X-Forwarded-Host", huge))
        .header(ContentType::Form)
        .body(launch.signed_body())
        .dispatch()
        .await;
    refused(res, Status::Unauthorized).await;
    assert_eq!(app.count("refusals").await, 5);
    for r in refusals::recent(&app.state().db, None, 4).await.unwrap() {
        let stored = serde_json::to_string(&r).unwrap();
        assert!(
            stored.len() < 2000,
            "{} bytes: {:.300}",
            stored.len(),
            stored
        );
    }
}

/// `expected` refusals recorded, or (when the clock minute changed since `minute`) no more than
/// the next minute's budget adds.
async fn assert_recorded(app: &TestApp, expected: i64, minute: u64) {
    let recorded = app.count("refusals").await;
    if now() / 60 == minute {
        assert_eq!(recorded, expected);
    } else {
        assert!((expected..=2 * expected).contains(&recorded), "{recorded}");
    }
}

#[rocket::async_test]
async fn a_flood_of_refused_launches_is_recorded_only_up_to_a_budget() {
    // The budget is per clock minute (see its unit test): a run that crosses into the next one
    // may record up to twice as many.
    let minute = now() / 60;
    let app = spawn_app().await;
    // One key's refusals: 30 a minute recorded, every one still refused.
    for _ in 0..40 {
        let bad = Launch::new("/any").consumer("__consumer_key__", "wrong");
        refused(app.launch(&bad).await, Status::Unauthorized).await;
    }
    assert_recorded(&app, 30, minute).await;
    // Forgers cannot spend the share of launches refused after their signature passed: only
    // the LMS can send those (here, a clock behind).
    for _ in 0..5 {
        let late = Launch::new("/any").timestamp(now() - 3600);
        refused(app.launch(&late).await, Status::Unauthorized).await;
    }
    assert_recorded(&app, 35, minute).await;
    // Nor by sending one launch of theirs again and again: a launch is recorded there once.
    let kept = Launch::new("/any");
    assert_eq!(app.launch(&kept).await.status(), Status::Ok);
    for _ in 0..10 {
        refused(app.launch(&kept).await, Status::Unauthorized).await;
    }
    assert_recorded(&app, 36, minute).await;
    // While other launches that reuse its nonce (a broken nonce generator) are each recorded.
    for user in ["u-2", "u-3", "u-4"] {
        let mut reused = Launch::new("/any").user(user);
        reused.nonce = kept.nonce.clone();
        refused(app.launch(&reused).await, Status::Unauthorized).await;
    }
    assert_recorded(&app, 39, minute).await;
    // Made-up keys share one budget of 30, and cannot use up a real consumer's.
    for i in 0..200 {
        let unknown = Launch::new("/any").consumer(&format!("nobody-{i}"), "x");
        refused(app.launch(&unknown).await, Status::Unauthorized).await;
    }
    assert_recorded(&app, 69, minute).await;
    app.add_consumer("moodle", "moodle-secret-123456").await;
    for _ in 0..5 {
        let bad = Launch::new("/any").consumer("moodle", "wrong");
        refused(app.launch(&bad).await, Status::Unauthorized).await;
    }
    assert_recorded(&app, 74, minute).await;
}

#[rocket::async_test]
async fn a_refusal_names_the_client_behind_a_trusted_proxy_and_no_one_elses_claim() {
    let app = spawn_app_with(|f| f.merge(("trusted_proxies", ["10.0.0.1"]))).await;
    let bad = Launch::new("/any").consumer("__consumer_key__", "wrong");
    // The peer, the forwarding headers it sends, and the address the refusal should name.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 8] = [
        // Not a trusted proxy: its own address, whatever it claims.
        (
            "10.0.0.2:4000",
            &[("X-Forwarded-For", "192.0.2.9")],
            "10.0.0.2",
        ),
        // The last entry is the one the proxy added.
        (
            "10.0.0.1:4000",
            &[("X-Forwarded-For", "192.0.2.9, 198.51.100.7")],
            "198.51.100.7",
        ),
        // A proxy that appends its own line after the client's.
        (
            "10.0.0.1:4000",
            &[
                ("X-Forwarded-For", "192.0.2.66"),
                ("X-Forwarded-For", "198.51.100.8"),
            ],
            "198.51.100.8",
        ),
        // Addresses with ports, as some proxies write them.
        (
            "10.0.0.1:4000",
            &[("X-Forwarded-For", "198.51.100.9:5555")],
            "198.51.100.9",
        ),
        (
            "10.0.0.1:4000",
            &[("X-Forwarded-For", "[2001:db8::1]:443,")],
            "2001:db8::1",
        ),
        // RFC 7239 `Forwarded` is not read: a proxy that sets only it passes on a client's own
        // `X-Forwarded-For`, so whichever the request holds could be the client's choice.
        (
            "10.0.0.1:4000",
            &[(
                "Forwarded",
                "for=192.0.2.1, for=\"[2001:db8::2]:80\";proto=https",
            )],
            "10.0.0.1",
        ),
        // A dual-stack (`::`) listener sees IPv4 peers as `::ffff:a.b.c.d`: the same addresses.
        (
            "[::ffff:10.0.0.1]:4000",
            &[("X-Forwarded-For", "198.51.100.10")],
            "198.51.100.10",
        ),
        (
            "[::ffff:10.0.0.2]:4000",
            &[("X-Forwarded-For", "192.0.2.9")],
            "10.0.0.2",
        ),
    ];
    for (peer, headers, _) in cases {
        let mut req = app
            .client
            .post("/any")
            .remote(peer.parse().unwrap())
            .header(Header::new("Host", HOST))
            .header(ContentType::Form)
            .body(bad.signed_body());
        for (name, value) in headers {
            req = req.header(Header::new(*name, *value));
        }
        assert_eq!(req.dispatch().await.status(), Status::Unauthorized);
    }
    let all = refusals::recent(&app.state().db, None, 10).await.unwrap();
    let mut addresses: Vec<&str> = all.iter().map(|r| r.remote_addr.as_str()).collect();
    addresses.reverse(); // oldest first
    let expected: Vec<&str> = cases.iter().map(|c| c.2).collect();
    assert_eq!(addresses, expected);
}

#[rocket::async_test]
async fn a_launch_that_cannot_be_read_is_recorded_from_what_can_be_made_of_it() {
    let app = spawn_app().await;
    let post = |content_type: ContentType, body: Vec<u8>| {
        app.client
            .post("/any")
            .header(Header::new("Host", HOST))
            .header(content_type)
            .body(body)
            .dispatch()
    };
    // A Latin-1 name in an otherwise signed launch (some old LMSs).
    let latin1 = Launch::new("/any").signed_body().replace(
        "resource_link_id=",
        "lis_person_name_full=Jos%E9&resource_link_id=",
    );
    refused(
        post(ContentType::Form, latin1.into_bytes()).await,
        Status::BadRequest,
    )
    .await;
    let r = only_refusal(&app).await;
    assert_eq!(r.consumer_key, "__consumer_key__");
    assert!(matches!(r.hint, Hint::Malformed { .. }), "{:?}", r.hint);
    assert!(
        r.param_names.contains("lis_person_name_full"),
        "{}",
        r.param_names
    );
    assert!(!r.base_string.contains("Jos"), "{}", r.base_string);
    // Over the size limit: recorded from the part that was read.
    let big = format!(
        "oauth_consumer_key=__consumer_key__&custom_blob={}",
        "x".repeat(70_000)
    );
    refused(
        post(ContentType::Form, big.into_bytes()).await,
        Status::PayloadTooLarge,
    )
    .await;
    let all = refusals::recent(&app.state().db, None, 10).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].consumer_key, "__consumer_key__");
    assert!(all[0].reason.contains("65536"), "{}", all[0].reason);
    // A multipart launch over the limit: its body is not split as a form would be, so a value
    // holding `&` does not turn the user's text into a stored "field name".
    let part = |name: &str, value: &str| form_data_part("XX", name, value);
    let multipart = format!(
        "{}{}{}--XX--\r\n",
        part("oauth_consumer_key", "__consumer_key__"),
        part("lis_person_name_full", "Tom & Jerry Smith=x"),
        part("custom_blob", &"x".repeat(70_000))
    );
    refused(
        post(
            ContentType::new("multipart", "form-data").with_params(("boundary", "XX")),
            multipart.into_bytes(),
        )
        .await,
        Status::PayloadTooLarge,
    )
    .await;
    let all = refusals::recent(&app.state().db, None, 10).await.unwrap();
    assert_eq!(all.len(), 3);
    let stored = format!("{:?}", all[0]);
    assert!(!stored.contains("Jerry"), "{stored}");
}

#[rocket::async_test]
async fn a_refusal_right_after_a_consumer_change_names_the_change() {
    use rocket_lti_tool::store::consumers;
    let app = spawn_app().await;
    app.add_consumer("rk", "secret-A-0123456789").await;
    let stale = |secret: &str| {
        Launch::new("/any")
            .consumer("rk", secret)
            .timestamp(now() - 1000)
    };
    // Refused for its clock, with the consumer now in the cache.
    refused(
        app.launch(&stale("secret-A-0123456789")).await,
        Status::Unauthorized,
    )
    .await;
    // The command line rotates the secret, then disables the key: the next refusals say so,
    // not the clock the cached consumer would still point at.
    let db = &app.state().db;
    assert!(consumers::set_secret(db, "rk", "secret-B-0123456789")
        .await
        .unwrap());
    refused(
        app.launch(&stale("secret-A-0123456789")).await,
        Status::Unauthorized,
    )
    .await;
    assert!(consumers::set_enabled(db, "rk", false).await.unwrap());
    refused(
        app.launch(&stale("secret-B-0123456789")).await,
        Status::Unauthorized,
    )
    .await;
    let hints: Vec<Hint> = refusals::recent(db, None, 3)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.hint)
        .collect();
    assert!(
        matches!(
            hints.as_slice(),
            [
                Hint::DisabledKey,
                Hint::WrongSecret,
                Hint::TimestampSkew { .. }
            ]
        ),
        "{hints:?}"
    );
}

#[rocket::async_test]
async fn a_hint_this_version_cannot_read_does_not_hide_the_other_refusals() {
    let app = spawn_app().await;
    app.launch(&Launch::new("/any").consumer("__consumer_key__", "wrong"))
        .await;
    // As a newer build (before a downgrade) might have written it.
    sqlx::query("UPDATE refusals SET hint = '{\"kind\":\"from_the_future\"}'")
        .execute(&app.state().db)
        .await
        .unwrap();
    app.launch(&Launch::new("/any").consumer("no-such-key", "s"))
        .await;
    let all = refusals::recent(&app.state().db, None, 10).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(matches!(all[0].hint, Hint::UnknownKey), "{:?}", all[0].hint);
    assert_eq!(all[1].hint, Hint::Unknown);
    assert!(all[1].hint.advice().contains("another version"));
}
