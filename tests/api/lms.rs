//! Launches shaped like real LMSs send them, proxies and `public_url`, errors sent back to the
//! LMS, the registration XML, the new-window hand-off and the test launcher.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rocket::http::{ContentType, Header, Status};
use rocket::local::asynchronous::{Client, LocalResponse};
use rocket_lti_tool::lti::params::parse_form;
use rocket_lti_tool::store::sessions;
use rocket_lti_tool::web::pages::visit_page;

use crate::helpers::*;

#[rocket::async_test]
async fn canvas_copies_query_parameters_into_the_body() {
    let app = spawn_app().await;
    // Canvas signs the parameters once, but posts to the launch URL with its query string *and*
    // copies those parameters into the body.
    let launch = Launch::new("/any")
        .set("course", "101")
        .set("section", "a b")
        .roles("Instructor,urn:lti:instrole:ims/lis/Administrator")
        .set("tool_consumer_info_product_family_code", "canvas")
        .set("custom_canvas_course_id", "101");
    let res = app
        .post_form("/any?course=101&section=a%20b", launch.signed_body())
        .await;
    let body = page(res, Status::Ok).await;
    assert!(body.contains("Course staff</dt><dd>yes"));
    // The tolerance needs the same value: a query value that differs from the body's is counted
    // and breaks the signature.
    let launch = Launch::new("/any").set("course", "101");
    refused(
        app.post_form("/any?course=102", launch.signed_body()).await,
        Status::Unauthorized,
    )
    .await;
}

#[rocket::async_test]
async fn query_parameters_signed_with_the_body_still_verify() {
    let app = spawn_app().await;
    // An LMS that signs query and body parameters together (each counted once, as RFC 5849 says).
    let launch = Launch::new("/any").set("course", "101");
    let body = launch.signed_body();
    let body = body.replace("course=101&", "");
    assert!(!body.contains("course="));
    assert_eq!(
        app.post_form("/any?course=101", body).await.status(),
        Status::Ok
    );
}

#[rocket::async_test]
async fn moodle_empty_parameters_and_trailing_slash() {
    let app = spawn_app().await;
    let moodle = |path: &str| {
        Launch::new(path)
            .set("lis_person_name_given", "")
            .set("lis_person_name_family", "")
            .set("context_label", "")
            .set("lis_result_sourcedid", r#"{"data":{"instanceid":"1","userid":"2","typeid":"","launchid":123},"hash":"abc"}"#)
            .set("tool_consumer_info_product_family_code", "moodle")
            .set("ext_lms", "moodle-2")
    };
    // The admin typed the URL with a trailing slash: the LMS signs and posts it that way.
    let typed = moodle("/any").signed_for(&format!("http://{HOST}/any/"));
    assert_eq!(
        app.post_form("/any/", typed.signed_body()).await.status(),
        Status::Ok
    );
    // Typed with a slash but reached without one (a proxy normalised it): still the HMAC decides.
    let typed = moodle("/any").signed_for(&format!("http://{HOST}/any/"));
    assert_eq!(
        app.post_form("/any", typed.signed_body()).await.status(),
        Status::Ok
    );
    // ...and the other way round.
    let typed = moodle("/any");
    assert_eq!(
        app.post_form("/any/", typed.signed_body()).await.status(),
        Status::Ok
    );
    // A different path is not a trailing-slash variant.
    let typed = moodle("/any").signed_for(&format!("http://{HOST}/anyx"));
    refused(
        app.post_form("/any", typed.signed_body()).await,
        Status::Unauthorized,
    )
    .await;
}

#[rocket::async_test]
async fn sakai_superuser_and_blackboard_urn_roles() {
    let app = spawn_app().await;
    let sakai = Launch::new("/initial_staff")
        .roles("Instructor,Administrator,urn:lti:instrole:ims/lis/Administrator,urn:lti:sysrole:ims/lis/Administrator")
        .set("ext_sakai_server", "https://sakai.example.edu")
        .set("ext_sakai_serverid", "sakai1");
    assert_eq!(app.launch(&sakai).await.status(), Status::Ok);
    let bb = Launch::new("/initial_staff")
        .roles("urn:lti:role:ims/lis/Instructor,urn:lti:sysrole:ims/lis/User")
        .set("tool_consumer_info_product_family_code", "learn");
    assert_eq!(app.launch(&bb).await.status(), Status::Ok);
    let bb_learner = Launch::new("/initial_staff")
        .roles("urn:lti:role:ims/lis/Learner,urn:lti:instrole:ims/lis/Student");
    // The learner's launch ended its own new session: the error page clears the cookie.
    let res = app.launch(&bb_learner).await;
    assert!(clears_session_cookie(&res), "{:?}", res.headers());
    refused(res, Status::Forbidden).await;
    assert_eq!(app.count("sessions").await, 0);
}

#[rocket::async_test]
async fn open_edx_empty_return_url_and_student_role() {
    let app = spawn_app().await;
    let edx = Launch::new("/any")
        .roles("Student")
        .set("launch_presentation_return_url", "");
    let body = page(app.launch(&edx).await, Status::Ok).await;
    assert!(body.contains("Course staff</dt><dd>no"));
    // A refused launch with an empty return URL gets our page, not a redirect.
    let bad = Launch::new("/any")
        .roles("Student")
        .set("launch_presentation_return_url", "")
        .without("resource_link_id");
    refused(app.launch(&bad).await, Status::BadRequest).await;
}

#[rocket::async_test]
async fn ims_certification_role_strings() {
    let app = spawn_app().await;
    for (roles, staff) in [
        ("Instructor", true),
        ("urn:lti:role:ims/lis/Instructor", true),
        ("urn:lti:role:ims/lis/Instructor/PrimaryInstructor", true),
        ("Administrator", true),
        ("urn:lti:instrole:ims/lis/Administrator", true),
        ("Learner", false),
        ("urn:lti:role:ims/lis/Learner", false),
        ("urn:lti:role:ims/lis/Learner/NonCreditLearner", false),
        ("urn:lti:role:ims/lis/TeachingAssistant", false),
        ("urn:lti:role:ims/lis/Mentor/Advisor", false),
        ("urn:lti:instrole:ims/lis/Faculty", false),
        ("urn:lti:sysrole:ims/lis/SysAdmin", false),
        ("Learner,urn:lti:role:ims/lis/Instructor", true),
    ] {
        let status = app
            .launch(&Launch::new("/initial_staff").roles(roles))
            .await
            .status();
        let want = if staff { Status::Ok } else { Status::Forbidden };
        assert_eq!(status, want, "{roles}");
    }
}

async fn proxied<'a>(
    app: &'a TestApp,
    remote: &str,
    body: String,
    headers: &[(&str, &str)],
) -> LocalResponse<'a> {
    proxied_post(app, "/any", remote, body, headers).await
}

/// POSTs a form to `path` as if through the proxy (or client) at `remote`, with extra headers.
async fn proxied_post<'a>(
    app: &'a TestApp,
    path: &str,
    remote: &str,
    body: String,
    headers: &[(&str, &str)],
) -> LocalResponse<'a> {
    let mut req = app
        .client
        .post(path.to_string())
        .remote(remote.parse().unwrap())
        .header(Header::new("Host", "10.0.0.5:8000"))
        .header(ContentType::Form)
        .body(body);
    for (name, value) in headers {
        req = req.header(Header::new(name.to_string(), value.to_string()));
    }
    req.dispatch().await
}

#[rocket::async_test]
async fn the_session_cookie_is_secure_whenever_the_launch_came_over_https() {
    // `cookie_secure` is off (debug profile), yet a browser behind an https proxy needs `Secure`
    // for a `SameSite=None` cookie.
    let app = spawn_app_with(|f| {
        f.merge(("trusted_proxies", ["10.0.0.1"]))
            .merge(("cookie_same_site", "none"))
    })
    .await;
    let cookie = |res: &rocket::local::asynchronous::LocalResponse<'_>| {
        res.headers()
            .get_one("Set-Cookie")
            .expect("session cookie")
            .to_string()
    };
    let xff = [
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "tool.example.edu"),
    ];
    let https = Launch::new("/any").signed_for("https://tool.example.edu/any");
    let res = proxied(&app, "10.0.0.1:40000", https.signed_body(), &xff).await;
    assert_eq!(res.status(), Status::Ok);
    assert!(cookie(&res).contains("; Secure"), "{}", cookie(&res));
    // Logging out through the proxy clears it with a Secure removal too: browsers ignore a
    // SameSite=None removal without it.
    let set = cookie(&res);
    let session = set.split(';').next().expect("name=value").to_string();
    let with_cookie = [xff[0], xff[1], ("Cookie", session.as_str())];
    let res = proxied_post(
        &app,
        "/logout",
        "10.0.0.1:40000",
        String::new(),
        &with_cookie,
    )
    .await;
    assert_eq!(res.status(), Status::Ok);
    let removal = cookie(&res);
    assert!(removal.contains("Max-Age=0"), "{removal}");
    assert!(removal.contains("; Secure"), "{removal}");
    // A partitioned cookie is removed only by a partitioned removal.
    assert!(set.contains("Partitioned"), "{set}");
    assert!(removal.contains("Partitioned"), "{removal}");
    // Plain http stays without it (a browser would refuse a Secure cookie from http).
    let res = app.launch(&Launch::new("/any")).await;
    assert_eq!(res.status(), Status::Ok);
    assert!(!cookie(&res).contains("Secure"), "{}", cookie(&res));
    // An untrusted client claiming https changes nothing.
    let direct = Launch::new("/any").signed_for("http://10.0.0.5:8000/any");
    let res = proxied(&app, "10.0.0.2:40000", direct.signed_body(), &xff).await;
    assert_eq!(res.status(), Status::Ok);
    assert!(!cookie(&res).contains("Secure"), "{}", cookie(&res));
    // An https public_url means the browser is on https.
    let app = spawn_app_with(|f| f.merge(("public_url", "https://tool.example.edu"))).await;
    let res = app
        .post_form(
            "/any",
            Launch::new("/any")
                .signed_for("https://tool.example.edu/any")
                .signed_body(),
        )
        .await;
    assert_eq!(res.status(), Status::Ok);
    assert!(cookie(&res).contains("; Secure"), "{}", cookie(&res));
}

#[rocket::async_test]
async fn over_https_only_the_host_only_cookie_names_a_session() {
    let app = spawn_app_with(|f| f.merge(("trusted_proxies", ["10.0.0.1"]))).await;
    let set_cookie = |res: &LocalResponse<'_>| {
        res.headers()
            .get_one("Set-Cookie")
            .expect("session cookie")
            .to_string()
    };
    let https = [
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "tool.example.edu"),
    ];
    // A plain `lti_session`, as a sibling subdomain could set for the whole domain: here the
    // attacker's own session, launched over http (the client sends it with every request below).
    let res = app.launch(&Launch::new("/any").user("attacker")).await;
    assert_eq!(res.status(), Status::Ok);
    let plain = set_cookie(&res);
    assert!(plain.starts_with("lti_session="), "{plain}");
    // Over https it names no session.
    let res = proxied_post(&app, "/session", "10.0.0.1:40000", String::new(), &https).await;
    refused(res, Status::Unauthorized).await;
    // An https launch gets a host-only cookie, which does.
    let launch = Launch::new("/any")
        .user("student-7")
        .signed_for("https://tool.example.edu/any");
    let res = proxied(&app, "10.0.0.1:40000", launch.signed_body(), &https).await;
    assert_eq!(res.status(), Status::Ok);
    let host_only = set_cookie(&res);
    assert!(host_only.starts_with("__Host-lti_session="), "{host_only}");
    assert!(
        host_only.contains("Path=/")
            && host_only.contains("Secure")
            && !host_only.contains("Domain"),
        "{host_only}"
    );
    let res = proxied_post(&app, "/session", "10.0.0.1:40000", String::new(), &https).await;
    let body = page(res, Status::Ok).await;
    assert!(
        body.contains("student-7") && !body.contains("attacker"),
        "{body}"
    );
    // Through a proxy missing from `trusted_proxies` the request looks like plain http, yet the
    // host-only cookie still names the session, and a logout there ends it and clears it.
    let res = proxied_post(&app, "/session", "10.0.0.9:40000", String::new(), &https).await;
    let body = page(res, Status::Ok).await;
    assert!(body.contains("student-7"), "{body}");
    assert_eq!(app.count("sessions").await, 2);
    let res = proxied_post(&app, "/logout", "10.0.0.9:40000", String::new(), &https).await;
    let removals: Vec<String> = res.headers().get("Set-Cookie").map(String::from).collect();
    assert!(
        removals
            .iter()
            .any(|c| c.starts_with("__Host-lti_session=;")
                && c.contains("Max-Age=0")
                && c.contains("Secure")
                && c.contains("Path=/")),
        "{removals:?}"
    );
    page(res, Status::Ok).await;
    assert_eq!(
        app.count("sessions").await,
        1,
        "only the attacker's is left"
    );
}

#[rocket::async_test]
async fn forwarded_headers_count_only_from_trusted_proxies() {
    let app = spawn_app_with(|f| f.merge(("trusted_proxies", ["10.0.0.1"]))).await;
    let public = |_: ()| Launch::new("/any").signed_for("https://tool.example.edu/any");
    let xff = [
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "tool.example.edu"),
    ];
    let res = proxied(&app, "10.0.0.1:40000", public(()).signed_body(), &xff).await;
    assert_eq!(res.status(), Status::Ok);
    // RFC 7239 `Forwarded` from a proxy that sets no X-Forwarded-* header (its last element,
    // quoted or not, names in any case).
    for forwarded in [
        r#"for=192.0.2.60;proto=https;host="tool.example.edu""#,
        "for=198.51.100.1;host=evil.example, for=192.0.2.60;Proto=https;Host=tool.example.edu",
        // Separators and escaped quotes inside quoted values (a client's own text a proxy
        // copied there) are part of the value, not parameters or elements of their own.
        r#"for="a;proto=http";proto=https;host="tool.example.edu""#,
        r#"for="a,proto=http;host=evil.example";proto=https;host=tool.example.edu"#,
        r#"for="a\";proto=http;x=\"";proto=https;host=tool.example.edu"#,
    ] {
        let rfc7239 = [("Forwarded", forwarded)];
        let res = proxied(&app, "10.0.0.1:40000", public(()).signed_body(), &rfc7239).await;
        assert_eq!(res.status(), Status::Ok, "{forwarded}");
    }
    // With a port in its host too.
    let launch = Launch::new("/any").signed_for("https://tool.example.edu:8443/any");
    let rfc7239 = [("Forwarded", "proto=https;host=\"tool.example.edu:8443\"")];
    assert_eq!(
        proxied(&app, "10.0.0.1:40000", launch.signed_body(), &rfc7239)
            .await
            .status(),
        Status::Ok
    );
    let with_port = [
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "tool.example.edu"),
        ("X-Forwarded-Port", "8443"),
    ];
    let launch = Launch::new("/any").signed_for("https://tool.example.edu:8443/any");
    assert_eq!(
        proxied(&app, "10.0.0.1:40000", launch.signed_body(), &with_port)
            .await
            .status(),
        Status::Ok
    );

    // A dual-stack (`::`) listener sees the proxy as `::ffff:10.0.0.1`: still trusted.
    let res = proxied(
        &app,
        "[::ffff:10.0.0.1]:40000",
        public(()).signed_body(),
        &xff,
    )
    .await;
    assert_eq!(res.status(), Status::Ok);

    // The same headers from anyone else are ignored: the URL is the one the request came to.
    let res = proxied(&app, "10.0.0.2:40000", public(()).signed_body(), &xff).await;
    refused(res, Status::Unauthorized).await;
    let direct = Launch::new("/any").signed_for("http://10.0.0.5:8000/any");
    assert_eq!(
        proxied(&app, "10.0.0.2:40000", direct.signed_body(), &xff)
            .await
            .status(),
        Status::Ok
    );

    // An entry written as an IPv4-mapped address means the IPv4 peer too.
    let mapped = spawn_app_with(|f| f.merge(("trusted_proxies", ["::ffff:10.0.0.1"]))).await;
    let res = proxied(&mapped, "10.0.0.1:40000", public(()).signed_body(), &xff).await;
    assert_eq!(res.status(), Status::Ok);

    // Default: trust no one.
    let app = spawn_app().await;
    refused(
        proxied(&app, "10.0.0.1:40000", public(()).signed_body(), &xff).await,
        Status::Unauthorized,
    )
    .await;
}

#[rocket::async_test]
async fn a_client_behind_a_trusted_proxy_cannot_choose_the_signed_url() {
    // A launch another tool got, signed with the same key and secret, must not verify here.
    let app = spawn_app_with(|f| f.merge(("trusted_proxies", ["10.0.0.1"]))).await;
    let ours = || Launch::new("/any").signed_for("https://tool.example.edu/any");
    let theirs = || Launch::new("/any").signed_for("https://other-tool.example/any");
    let cases: [&[(&str, &str)]; 3] = [
        // The client's own `Forwarded`, passed on by a proxy that sets X-Forwarded-*.
        &[
            ("Forwarded", "proto=https;host=other-tool.example"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "tool.example.edu"),
        ],
        // A proxy that appends to what the client sent, as a list or as a line of its own.
        &[
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "other-tool.example, tool.example.edu"),
        ],
        &[
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "other-tool.example"),
            ("X-Forwarded-Host", "tool.example.edu"),
        ],
    ];
    for headers in cases {
        let res = proxied(&app, "10.0.0.1:40000", theirs().signed_body(), headers).await;
        refused(res, Status::Unauthorized).await;
        let res = proxied(&app, "10.0.0.1:40000", ours().signed_body(), headers).await;
        assert_eq!(res.status(), Status::Ok, "{headers:?}");
    }
}

#[rocket::async_test]
async fn an_unusable_forwarded_host_is_blamed_on_the_proxy_not_on_host() {
    let app = spawn_app_with(|f| f.merge(("trusted_proxies", ["10.0.0.1"]))).await;
    let launch = || Launch::new("/any").signed_for("https://tool.example.edu/any");
    for headers in [
        &[("X-Forwarded-Host", "ev<il>.example")][..],
        &[("X-Forwarded-Host", "tool.example.edu:99999")],
        &[("Forwarded", "host=\"ev<il>\"")],
    ] {
        let res = proxied(&app, "10.0.0.1:40000", launch().signed_body(), headers).await;
        let page = refused(res, Status::BadRequest).await;
        assert!(page.contains("proxy in front of this tool"), "{headers:?}");
        assert!(!page.contains("Host header"), "{headers:?}");
    }
    // Without a proxy's claim, it is the request's own Host header that is wrong.
    let res = proxied(&app, "10.0.0.9:40000", launch().signed_body(), &[]).await;
    assert_eq!(res.status(), Status::Unauthorized, "its own Host is fine");
}

#[rocket::async_test]
async fn public_url_decides_the_signed_origin() {
    let app = spawn_app_with(|f| f.merge(("public_url", "https://lti.example.edu"))).await;
    let launch = Launch::new("/any").signed_for("https://lti.example.edu/any");
    assert_eq!(app.launch(&launch).await.status(), Status::Ok);
    refused(app.launch(&Launch::new("/any")).await, Status::Unauthorized).await;
}

#[rocket::async_test]
async fn verified_launch_with_bad_lti_fields_goes_back_to_the_lms() {
    let app = spawn_app().await;
    let return_url = "https://lms.example.com/return?a=1&b=x%20y";
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
            Launch::new("/any").without("lti_message_type"),
            "missing lti_message_type",
        ),
        (
            Launch::new("/initial").set("lti_message_type", "wrong"),
            "unsupported lti_message_type wrong",
        ),
    ] {
        let res = app
            .launch(&launch.set("launch_presentation_return_url", return_url))
            .await;
        assert!(
            matches!(res.status().code, 302 | 303),
            "{log}: {}",
            res.status()
        );
        let location = res.headers().get_one("Location").unwrap().to_string();
        assert!(
            location.starts_with("https://lms.example.com/return?a=1&b=x%20y&"),
            "{location}"
        );
        let query = parse_form(location.split_once('?').unwrap().1.as_bytes()).unwrap();
        let get = |n: &str| query.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(get("a").as_deref(), Some("1"));
        assert_eq!(get("b").as_deref(), Some("x y"));
        assert_eq!(get("lti_errorlog").as_deref(), Some(log));
        assert!(get("lti_errormsg").unwrap().contains(log));
    }
    assert_eq!(app.count("sessions").await, 0);
}

#[rocket::async_test]
async fn unverified_or_non_http_return_urls_are_never_followed() {
    let app = spawn_app().await;
    let evil = "https://evil.example.com/phish";
    let unsigned = Launch::new("/any")
        .without("resource_link_id")
        .set("launch_presentation_return_url", evil);
    let forged = unsigned.clone().consumer("__consumer_key__", "guess");
    let res = app.launch(&forged).await;
    assert_eq!(res.headers().get_one("Location"), None);
    refused(res, Status::Unauthorized).await;
    let unknown = unsigned.clone().consumer("nobody", "x");
    refused(app.launch(&unknown).await, Status::Unauthorized).await;
    for url in [
        "javascript:alert(1)",
        "ftp://lms.example.com/",
        "/relative",
        "https://",
        "https://l\u{e9}ms.example.com/ret",
        "https://lms.example.com/ret\r\nSet-Cookie: x=1",
        "https://lms.example.com/r\tx",
    ] {
        let launch = Launch::new("/any")
            .without("resource_link_id")
            .set("launch_presentation_return_url", url);
        let res = app.launch(&launch).await;
        assert_eq!(res.headers().get_one("Location"), None, "{url}");
        refused(res, Status::BadRequest).await;
    }
    // What a URL cannot hold raw goes percent-encoded, as a browser sends it.
    let launch = Launch::new("/any").without("resource_link_id").set(
        "launch_presentation_return_url",
        "https://lms.example.com/kurs/\u{fc}bung?q=\"x y\"",
    );
    let res = app.launch(&launch).await;
    assert_eq!(res.status(), Status::SeeOther);
    let location = res.headers().get_one("Location").unwrap_or_default();
    assert!(
        location.starts_with("https://lms.example.com/kurs/%C3%BCbung?q=%22x%20y%22&lti_errormsg="),
        "{location}"
    );
}

#[rocket::async_test]
async fn config_xml_is_a_well_formed_cartridge() {
    for (app, base) in [
        (spawn_app().await, format!("http://{HOST}")),
        (
            spawn_app_with(|f| f.merge(("public_url", "https://lti.example.edu"))).await,
            "https://lti.example.edu".to_string(),
        ),
        (
            spawn_app_with(|f| f.merge(("public_url", "https://LTI.example.edu:8443"))).await,
            "https://lti.example.edu:8443".to_string(),
        ),
    ] {
        let res = app.get("/lti/config.xml").await;
        assert_eq!(res.status(), Status::Ok);
        assert_eq!(res.content_type(), Some(ContentType::XML));
        let xml = res.into_string().await.unwrap();
        let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "cartridge_basiclti_link");
        assert_eq!(
            root.tag_name().namespace(),
            Some("http://www.imsglobal.org/xsd/imslticc_v1p0")
        );
        const BLTI: &str = "http://www.imsglobal.org/xsd/imsbasiclti_v1p0";
        const LTICM: &str = "http://www.imsglobal.org/xsd/imslticm_v1p0";
        const LTICP: &str = "http://www.imsglobal.org/xsd/imslticp_v1p0";
        let text = |ns: &str, name: &str| {
            doc.descendants()
                .find(|n| n.tag_name().name() == name && n.tag_name().namespace() == Some(ns))
                .and_then(|n| n.text())
                .map(str::to_string)
        };
        assert_eq!(text(BLTI, "title").as_deref(), Some("Rocket LTI tool"));
        assert!(text(BLTI, "description").is_some());
        // The fork's first launch page, when it lists any.
        let launch_url = format!("{base}{}", rocket_lti_tool::web::pages::main_launch_page());
        assert_eq!(text(BLTI, "launch_url"), Some(launch_url.clone()));
        assert_eq!(text(BLTI, "icon"), Some(format!("{base}/static/icon.svg")));
        assert_eq!(
            text(BLTI, "secure_launch_url").is_some(),
            base.starts_with("https")
        );
        assert_eq!(text(LTICP, "code").as_deref(), Some("rocket-lti-tool"));
        // In the order of the IMS schema (a sequence: an importer that validates refuses another).
        const ORDER: [&str; 9] = [
            "title",
            "description",
            "custom",
            "extensions",
            "launch_url",
            "secure_launch_url",
            "icon",
            "secure_icon",
            "vendor",
        ];
        let positions: Vec<usize> = root
            .children()
            .filter(|n| n.tag_name().namespace() == Some(BLTI))
            .map(|n| {
                ORDER
                    .iter()
                    .position(|&o| o == n.tag_name().name())
                    .expect("an element of the schema")
            })
            .collect();
        assert!(positions.is_sorted(), "{positions:?}");
        let ext = doc
            .descendants()
            .find(|n| n.tag_name().name() == "extensions")
            .unwrap();
        assert_eq!(ext.attribute("platform"), Some("canvas.instructure.com"));
        let property = |parent: roxmltree::Node, name: &str| {
            parent
                .children()
                .find(|n| {
                    n.tag_name().namespace() == Some(LTICM) && n.attribute("name") == Some(name)
                })
                .and_then(|n| n.text())
                .map(str::to_string)
        };
        assert_eq!(property(ext, "privacy_level").as_deref(), Some("public"));
        // Canvas then signs a launch URL's query as it sends it, rather than copying it into the
        // body and signing the URL without it.
        assert_eq!(property(ext, "oauth_compliant").as_deref(), Some("true"));
        // Canvas matches the tool's other URLs against the domain with their port, when they
        // name one: a port that is not the scheme's default belongs in it.
        let authority = base.split_once("://").unwrap().1;
        assert_eq!(property(ext, "domain").as_deref(), Some(authority));
        let nav = ext
            .children()
            .find(|n| n.attribute("name") == Some("course_navigation"))
            .unwrap();
        assert_eq!(property(nav, "url"), Some(launch_url));
        assert_eq!(property(nav, "enabled").as_deref(), Some("true"));
        let icon = app.get("/static/icon.svg").await;
        assert_eq!(icon.status(), Status::Ok);
        // Browsers ask for /favicon.ico on pages that name no icon, like this one.
        let favicon = app.get("/favicon.ico").await;
        assert_eq!(favicon.status(), Status::PermanentRedirect);
        assert_eq!(
            favicon.headers().get_one("Location"),
            Some("/static/icon.svg")
        );
    }
}

#[rocket::async_test]
async fn config_xml_escapes_what_it_is_given() {
    let app = spawn_app_with(|f| {
        f.merge(("trusted_proxies", ["10.0.0.1"]))
            .merge(("tool_title", "Maths & <Physics>"))
    })
    .await;
    let get = |forwarded_host: &'static str| {
        app.client
            .get("/lti/config.xml")
            .remote("10.0.0.1:4000".parse().unwrap())
            .header(Header::new("Host", HOST))
            .header(Header::new("X-Forwarded-Host", forwarded_host))
            .dispatch()
    };
    let res = get("tool.example.edu").await;
    assert_eq!(res.status(), Status::Ok);
    let xml = res.into_string().await.unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("well-formed despite the hostile values");
    let text = |name: &str| {
        doc.descendants()
            .find(|n| n.tag_name().name() == name)
            .and_then(|n| n.text())
            .map(str::to_string)
    };
    assert_eq!(text("title").as_deref(), Some("Maths & <Physics>"));
    let launch_page = rocket_lti_tool::web::pages::main_launch_page();
    assert_eq!(
        text("launch_url"),
        Some(format!("http://tool.example.edu{launch_page}"))
    );
    // Host names are not case-sensitive: written as `public_url` would be.
    let xml = get("Tool.EXAMPLE.edu:8080")
        .await
        .into_string()
        .await
        .unwrap();
    assert!(
        xml.contains(&format!(
            "<blti:launch_url>http://tool.example.edu:8080{launch_page}<"
        )),
        "{xml}"
    );
    assert!(
        xml.contains(">tool.example.edu:8080</lticm:property>"),
        "{xml}"
    );
    // A host no URL could hold is no origin: the error page, with nothing of it in it.
    for hostile in ["evil\"><x>&y", "a b", "[::1", "tool.example.edu:"] {
        let res = get(hostile).await;
        assert_eq!(res.status(), Status::BadRequest, "{hostile}");
        let page = res.into_string().await.unwrap();
        assert!(!page.contains("<x>") && page.contains("Host"), "{page}");
    }
}

/// Pulls the hand-off token out of a launch page.
fn handoff_token(body: &str) -> String {
    let start = body
        .find(r#"name="token" value=""#)
        .expect("the page offers a new window")
        + 20;
    body[start..].split('"').next().unwrap().to_string()
}

/// Another browser on the same app: it has none of the first one's cookies.
async fn new_browser(app: &TestApp) -> Client {
    Client::tracked(rocket_lti_tool::build(
        app.client.rocket().figment().clone(),
    ))
    .await
    .unwrap()
}

/// Posts a hand-off token to `/lti/continue` from `client`, with extra headers.
async fn continue_with<'c>(
    client: &'c Client,
    token: &str,
    headers: &[(&str, String)],
) -> LocalResponse<'c> {
    let mut req = client
        .post("/lti/continue")
        .header(ContentType::Form)
        .body(format!("token={token}"));
    if !headers.iter().any(|(name, _)| *name == "Host") {
        req = req.header(Header::new("Host", HOST));
    }
    for (name, value) in headers {
        req = req.header(Header::new(name.to_string(), value.clone()));
    }
    req.dispatch().await
}

#[rocket::async_test]
async fn the_new_window_opens_at_the_visit_address_of_the_page_that_offered_it() {
    let app = spawn_app().await;
    for (next, lands) in [
        ("%2Fsession", "/session"),
        ("%2Fgradebook", "/gradebook"),
        ("https%3A%2F%2Fevil.example%2F", "/any"),
        ("%2F%2Fevil.example", "/any"),
        ("%2F%5Cevil.example", "/any"),
        ("%2Fsession%3Fx%3D1", "/any"),
        ("%2F..%2Fadmin", "/any"),
        ("", "/any"),
    ] {
        let body = page(app.launch(&Launch::new("/any")).await, Status::Ok).await;
        // The page names its own visit address in the form.
        assert!(
            body.contains(r#"<input type="hidden" name="next" value="&#x2F;session">"#),
            "{body}"
        );
        let token = handoff_token(&body);
        let window = new_browser(&app).await;
        let res = continue_with(&window, &format!("{token}&next={next}"), &[]).await;
        assert_eq!(res.status(), Status::SeeOther, "{next}");
        assert_eq!(res.headers().get_one("Location"), Some(lands), "{next}");
    }
}

#[rocket::async_test]
async fn a_new_window_token_survives_a_storage_error_while_it_is_used() {
    let app = spawn_app().await;
    let body = page(app.launch(&Launch::new("/any")).await, Status::Ok).await;
    let token = handoff_token(&body);
    let db = &app.state().db;
    // The session table out of reach while the token is used: a 503, and nothing spent.
    sqlx::query("ALTER TABLE sessions RENAME TO sessions_away")
        .execute(db)
        .await
        .unwrap();
    let window = new_browser(&app).await;
    let res = continue_with(&window, &token, &[]).await;
    assert_eq!(res.status(), Status::ServiceUnavailable);
    sqlx::query("ALTER TABLE sessions_away RENAME TO sessions")
        .execute(db)
        .await
        .unwrap();
    // The second click works, once.
    let res = continue_with(&window, &token, &[]).await;
    assert_eq!(res.status(), Status::SeeOther);
    let third = new_browser(&app).await;
    let res = continue_with(&third, &token, &[]).await;
    assert_eq!(res.status(), Status::Unauthorized);
}

#[rocket::async_test]
async fn new_window_token_works_once() {
    let app = spawn_app().await;
    let body = page(app.launch(&Launch::new("/initial")).await, Status::Ok).await;
    assert!(body.contains("Open in a new window"));
    let token = handoff_token(&body);
    assert!(token.len() >= 22);
    // The notice comes first (a phone-sized frame shows it), announced to screen readers; and
    // the launch page turns its history entry into a GET, so Back or a reload does not send the
    // launch again (refused as used, which would end the visit).
    let notice = body.find("id=\"new-window\"").expect("the notice");
    assert!(
        notice < body.find("<dl>").expect("the launch data"),
        "{body}"
    );
    // Shown without scripts (valid markup: no style inside noscript), hidden at once by the
    // script that checks the cookie.
    assert!(!body.contains("<noscript>"), "{body}");
    assert!(
        body.contains(r#"<div id="new-window" class="notice">"#)
            && body.contains(r#"document.getElementById("new-window").hidden = true;"#),
        "{body}"
    );
    // Without scripts it says "if"; the script, told by the check that no session came back,
    // swaps that sentence for a definite one: the text it replaces is the page's own.
    let hedged =
        "If your browser blocks this tool's cookie inside the LMS page, the next click here will";
    assert_eq!(body.matches(hedged).count(), 2, "{body}");
    assert!(body.contains("offerNewWindow(r.status === 401)"), "{body}");
    // The live region is on the page from the start (one revealed from hidden goes unheard).
    assert!(
        body.contains(r#"<p id="new-window-said" class="visually-hidden" role="status"></p>"#),
        "{body}"
    );
    assert!(
        body.contains(r#"<script data-visit-url="&#x2F;session">"#)
            && body.contains(
                "history.replaceState(null, \"\", document.currentScript.dataset.visitUrl)"
            ),
        "{body}"
    );
    // Which is what a reload then asks for: the visit, not the launch again.
    assert_eq!(app.get("/session").await.status(), Status::Ok);
    let later = page(app.get("/session").await, Status::Ok).await;
    assert!(!later.contains("history.replaceState"), "{later}");
    // The header's home link keeps a student in the visit (`/` is the registration page).
    let home = format!(r#"<header><a href="{}">"#, visit_page());
    assert!(later.contains(&home), "{later}");
    let index = page(app.get("/").await, Status::Ok).await;
    assert!(index.contains(r#"<header><a href="/">"#), "{index}");

    // The iframe check: with the cookie, the session answers 204.
    assert_eq!(
        app.get("/lti/session_check").await.status(),
        Status::NoContent
    );

    // A new window (a browser without the iframe's cookie) trades the token for a session.
    let window = new_browser(&app).await;
    let check = window
        .get("/lti/session_check")
        .header(Header::new("Host", HOST));
    assert_eq!(check.dispatch().await.status(), Status::Unauthorized);
    let res = continue_with(&window, &token, &[]).await;
    assert_eq!(res.status(), Status::SeeOther);
    assert_eq!(res.headers().get_one("Location"), Some("/any"));
    let res = window
        .get("/any")
        .header(Header::new("Host", HOST))
        .dispatch()
        .await;
    let body = page(res, Status::Ok).await;
    assert!(body.contains("teacher-1"));

    // Twice: refused; a made-up token too.
    let again = new_browser(&app).await;
    refused(
        continue_with(&again, &token, &[]).await,
        Status::Unauthorized,
    )
    .await;
    refused(
        continue_with(&again, "made-up", &[]).await,
        Status::Unauthorized,
    )
    .await;
    assert!(!body_of_refusal(&again, &token)
        .await
        .contains("Back to your page"));
    // A double click: the window the first use opened keeps its way back to the visit.
    let body = body_of_refusal(&window, &token).await;
    assert!(
        body.contains("Link expired")
            && body.contains("Back to your page")
            && body.contains(r#"action="/logout""#),
        "{body}"
    );
}

/// The error page `/lti/continue` answers `token` with in `client`'s browser (a 401).
async fn body_of_refusal(client: &Client, token: &str) -> String {
    refused(
        continue_with(client, token, &[]).await,
        Status::Unauthorized,
    )
    .await
}

#[rocket::async_test]
async fn a_new_window_token_ends_the_session_the_window_had() {
    let app = spawn_app().await;
    let body = page(app.launch(&Launch::new("/initial")).await, Status::Ok).await;
    let token = handoff_token(&body);
    // The new window's browser already holds someone else's session.
    let window = new_browser(&app).await;
    let res = window
        .post("/any")
        .header(Header::new("Host", HOST))
        .header(ContentType::Form)
        .body(Launch::new("/any").user("someone-else").signed_body())
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    assert_eq!(app.count("sessions").await, 2);
    let res = continue_with(&window, &token, &[]).await;
    assert_eq!(res.status(), Status::SeeOther);
    assert_eq!(app.count("sessions").await, 1);
    let res = window
        .get("/any")
        .header(Header::new("Host", HOST))
        .dispatch()
        .await;
    let body = page(res, Status::Ok).await;
    assert!(body.contains("teacher-1") && !body.contains("someone-else"));
}

/// Launches, ages the page's hand-off token by `seconds`, then trades it for a new window.
async fn hand_off_after(app: &TestApp, seconds: i64) -> LocalResponse<'_> {
    let body = page(app.launch(&Launch::new("/any")).await, Status::Ok).await;
    let token = handoff_token(&body);
    let aged = sqlx::query("UPDATE handoffs SET expires_at = expires_at - ? WHERE token = ?")
        .bind(seconds)
        .bind(sessions::stored_id(&token))
        .execute(&app.state().db)
        .await
        .unwrap();
    assert_eq!(aged.rows_affected(), 1);
    app.post_form("/lti/continue", format!("token={token}"))
        .await
}

#[rocket::async_test]
async fn the_database_holds_no_session_cookie_or_hand_off_token() {
    let app = spawn_app().await;
    let res = app.launch(&Launch::new("/any")).await;
    let cookie = res
        .cookies()
        .get("lti_session")
        .expect("a session cookie")
        .value()
        .to_string();
    let token = handoff_token(&page(res, Status::Ok).await);
    // A copy of the database (a backup) names neither, anywhere in the two tables' rows.
    for value in [&cookie, &token] {
        let found: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM sessions WHERE instr(id || launch, ?1) > 0) + \
             (SELECT COUNT(*) FROM handoffs \
              WHERE instr(token || session_id || sealed_session, ?1) > 0)",
        )
        .bind(value)
        .fetch_one(&app.state().db)
        .await
        .unwrap();
        assert_eq!(found, 0, "{value} is stored");
    }
    // The session id the token opens is there only sealed: as many bytes and a tag, none of
    // them the cookie's (an encoding of the cookie would pass the search above).
    let sealed: String = sqlx::query_scalar("SELECT sealed_session FROM handoffs")
        .fetch_one(&app.state().db)
        .await
        .unwrap();
    let sealed = URL_SAFE_NO_PAD.decode(sealed).unwrap();
    assert_eq!(sealed.len(), cookie.len() + 16);
    assert!(!sealed
        .windows(8)
        .any(|w| cookie.as_bytes().windows(8).any(|c| c == w)));
    // Yet the token opens the session in a new window, once.
    let res = app
        .post_form("/lti/continue", format!("token={token}"))
        .await;
    assert_eq!(res.status(), Status::SeeOther);
    let handed = res
        .cookies()
        .get("lti_session")
        .map(|c| c.value().to_string());
    assert_eq!(handed.as_deref(), Some(cookie.as_str()));
    refused(
        app.post_form("/lti/continue", format!("token={token}"))
            .await,
        Status::Unauthorized,
    )
    .await;
}

#[rocket::async_test]
async fn new_window_token_expires() {
    let app = spawn_app().await;
    // Within a minute (issue 4), as the notice says; not a second more.
    assert_eq!(hand_off_after(&app, 55).await.status(), Status::SeeOther);
    refused(hand_off_after(&app, 61).await, Status::Unauthorized).await;
    // Session pages (not launches) carry no token.
    let body = page(app.get("/session").await, Status::Ok).await;
    assert!(!body.contains("name=\"token\""));
}

#[rocket::async_test]
async fn dev_launcher_gives_staff_and_learners_different_users_by_default() {
    // A teacher launch of the learner's own user id would forget their grade record.
    let app = spawn_app_with(|f| f.merge(("dev_launcher", true))).await;
    for (roles, user) in [
        ("Learner", "dev-learner"),
        ("Instructor", "dev-instructor"),
        (
            "urn%3Alti%3Arole%3Aims%2Flis%2FInstructor",
            "dev-instructor",
        ),
        ("Learner", "dev-learner"),
    ] {
        let res = app
            .post_form(
                "/dev/launch",
                format!("page=%2Fany&consumer_key=__consumer_key__&roles={roles}&user_id=&name=Dev&email=&custom=&mode=valid"),
            )
            .await;
        let auto = page(res, Status::Ok).await;
        assert!(
            auto.contains(&format!(r#"name="user_id" value="{user}""#)),
            "{roles}: {auto}"
        );
    }
}

#[rocket::async_test]
async fn dev_launcher_signs_real_launches_in_debug_and_is_gone_in_release() {
    // On as in the debug profile, even for a fork whose Rocket.toml turns it off.
    let app = spawn_app_with(|f| f.merge(("dev_launcher", true))).await;
    let form = page(app.get("/dev/launch").await, Status::Ok).await;
    assert!(form.contains("__consumer_key__"));
    let res = app
        .post_form(
            "/dev/launch",
            "page=%2Finitial_staff&consumer_key=__consumer_key__&roles=Instructor&user_id=u-9&name=Dev&email=d%40x.edu&custom=color%3Dblue&mode=valid&outcome_service_url=http%3A%2F%2F127.0.0.1%3A9%2Foutcomes&result_sourcedid=".into(),
        )
        .await;
    let auto = page(res, Status::Ok).await;
    // Another site cannot make it sign a launch for a visitor (to log them in as anyone).
    let cross_site = app
        .client
        .post("/dev/launch")
        .header(Header::new("Host", HOST))
        .header(ContentType::Form)
        .header(Header::new("Sec-Fetch-Site", "cross-site"))
        .body("page=%2Fany&consumer_key=__consumer_key__&roles=Instructor&user_id=u-9&name=&email=&custom=&mode=valid")
        .dispatch()
        .await;
    refused(cross_site, Status::Forbidden).await;
    // Replay the auto-submitting form as a browser would.
    let mut fields = Vec::new();
    let mut pairs = Vec::new();
    for part in auto.split(r#"<input type="hidden" name=""#).skip(1) {
        let (name, rest) = part.split_once(r#"" value=""#).unwrap();
        let value = rest.split('"').next().unwrap();
        let unescape = |s: &str| {
            s.replace("&#x2F;", "/")
                .replace("&amp;", "&")
                .replace("&quot;", "\"")
                .replace("&#x27;", "'")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
        };
        fields.push(format!(
            "{}={}",
            rocket_lti_tool::lti::oauth::encode(&unescape(name)),
            rocket_lti_tool::lti::oauth::encode(&unescape(value))
        ));
        pairs.push((unescape(name), unescape(value)));
    }
    // Its signature is the one an independent signer (`oauth1-request`) makes of its fields.
    let field = |name: &str| {
        let found = pairs.iter().find(|(n, _)| n == name);
        found.map(|(_, v)| v.clone()).unwrap_or_default()
    };
    let (nonce, timestamp) = (field("oauth_nonce"), field("oauth_timestamp"));
    let callback = field("oauth_callback");
    let list = oauth1_request::ParameterList::new(
        pairs
            .iter()
            .filter(|(n, _)| !n.starts_with("oauth_"))
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
    );
    let mut signer = oauth1_request::Builder::<_, &str>::new(
        oauth1_request::Credentials::new("__consumer_key__", "__lti_secret__"),
        oauth1_request::HmacSha1::new(),
    );
    signer
        .nonce(nonce.as_str())
        .timestamp(std::num::NonZeroU64::new(timestamp.parse().unwrap()))
        .callback(callback.as_str())
        .version(true);
    let signed = signer.to_form("POST", format!("http://{HOST}/initial_staff"), &list);
    let expected = parse_form(signed.as_bytes()).unwrap();
    let expected = expected.iter().find(|(n, _)| n == "oauth_signature");
    assert_eq!(
        expected.map(|(_, v)| v.clone()),
        Some(field("oauth_signature"))
    );
    let body = page(
        app.post_form("/initial_staff", fields.join("&")).await,
        Status::Ok,
    )
    .await;
    assert!(body.contains("Staff page") && body.contains("u-9") && body.contains("custom_color"));
    // Grade passback fields for a fake LMS of one's own, with a made-up result id.
    assert!(
        auto.contains(r#"name="lis_outcome_service_url""#) && auto.contains("dev-sourcedid-u-9"),
        "{auto}"
    );

    let off = spawn_app_with(|f| f.merge(("dev_launcher", false))).await;
    refused(off.get("/dev/launch").await, Status::NotFound).await;
}

#[rocket::async_test]
async fn release_profile_defaults() {
    // 64 bytes of key, base64: the release profile refuses to start without one.
    let key =
        "hPRYyVRiMyxpw5sBB1XeCMN1kFsDCqKvBi2QJxBVHQk6hPRYyVRiMyxpw5sBB1XeCMN1kFsDCqKvBi2QJxBVHQk=";
    let app = spawn_app_with(|f| f.select("release").merge(("secret_key", key))).await;
    // No demo consumer, no test launcher.
    refused(app.launch(&Launch::new("/any")).await, Status::Unauthorized).await;
    refused(app.get("/dev/launch").await, Status::NotFound).await;
    refused(
        app.post_form("/dev/launch", "page=%2Fany".into()).await,
        Status::NotFound,
    )
    .await;
    // Not even a 405 that would tell it exists.
    let res = app
        .client
        .put("/dev/launch")
        .header(Header::new("Host", HOST))
        .dispatch()
        .await;
    refused(res, Status::NotFound).await;
    // The session cookie is made for an LMS iframe over https.
    app.add_consumer("school", "school-secret-123456").await;
    let res = app
        .launch(&Launch::new("/any").consumer("school", "school-secret-123456"))
        .await;
    assert_eq!(res.status(), Status::Ok);
    let cookie = res.headers().get_one("Set-Cookie").unwrap().to_string();
    assert!(
        cookie.contains("SameSite=None")
            && cookie.contains("Secure")
            && cookie.contains("HttpOnly"),
        "{cookie}"
    );
}

#[rocket::async_test]
async fn release_profile_refuses_to_start_without_a_secret_key() {
    let dir = temp_dir();
    let figment = rocket_lti_tool::figment()
        .select("release")
        .merge((
            "database_url",
            format!("sqlite://{}", dir.join("x.db").display()),
        ))
        .merge(("log_level", "off"));
    match rocket::local::asynchronous::Client::untracked(rocket_lti_tool::build(figment)).await {
        Ok(_) => panic!("release started without a secret_key"),
        // Our own start-up check (consumer secrets need the key) runs before Rocket's own.
        Err(e) => match e.kind() {
            rocket::error::ErrorKind::FailedFairings(failed) => {
                assert_eq!(failed.len(), 1);
                assert_eq!(failed[0].name, "LTI state");
            }
            other => panic!("{other:?}"),
        },
    }
    // Before a database file is created for nothing.
    assert!(!dir.join("x.db").exists());
    // And the check is about the key (not the template folder or the database).
    let release = rocket_lti_tool::figment().select("release");
    let refused = rocket_lti_tool::crypto::SecretCipher::from_figment(&release).err();
    assert!(refused.is_some_and(|e| e.contains("secret_key is not set")));
    let _ = std::fs::remove_dir_all(dir);
}

#[rocket::async_test]
async fn unreadable_templates_stop_the_start_before_the_database() {
    // A template folder the server cannot read whole (copied under a strict umask, or only in
    // part) would leave it answering every page with a bare 500.
    let dir = temp_dir();
    let templates = dir.join("templates");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/templates/base.html.tera"),
        templates.join("base.html.tera"),
    )
    .unwrap();
    let db = dir.join("x.db");
    let figment = rocket_lti_tool::figment()
        .merge(("database_url", format!("sqlite://{}", db.display())))
        .merge(("template_dir", templates.display().to_string()))
        .merge(("log_level", "off"));
    match rocket::local::asynchronous::Client::untracked(rocket_lti_tool::build(figment)).await {
        Ok(_) => panic!("started without its templates"),
        Err(e) => match e.kind() {
            rocket::error::ErrorKind::FailedFairings(failed) => {
                assert_eq!(failed[0].name, "LTI state")
            }
            other => panic!("{other:?}"),
        },
    }
    assert!(!db.exists());
    let _ = std::fs::remove_dir_all(dir);
}

#[rocket::async_test]
async fn another_site_cannot_post_a_new_window_token() {
    let app = spawn_app().await;
    let body = page(app.launch(&Launch::new("/any")).await, Status::Ok).await;
    let token = handoff_token(&body);
    let cross = |origin: &str| {
        vec![
            ("Sec-Fetch-Site", "cross-site".to_string()),
            ("Origin", origin.to_string()),
        ]
    };
    for headers in [
        vec![("Sec-Fetch-Site", "cross-site".to_string())],
        vec![("Origin", "https://evil.example".to_string())],
        cross("https://evil.example"),
        // A sibling site, and a sandboxed frame's opaque origin.
        vec![
            ("Sec-Fetch-Site", "same-site".to_string()),
            ("Origin", "http://pages.test".to_string()),
        ],
        cross("null"),
    ] {
        let res = continue_with(&app.client, &token, &headers).await;
        // Said as it is: the token is not spent, the form came from elsewhere.
        let body = refused(res, Status::Forbidden).await;
        assert!(body.contains("another site"), "{headers:?}: {body}");
    }
    // The tool's own page (same origin, as browsers say it) still works, once.
    let own = [
        ("Sec-Fetch-Site", "same-origin".to_string()),
        ("Origin", format!("http://{HOST}")),
    ];
    assert_eq!(
        continue_with(&app.client, &token, &own).await.status(),
        Status::SeeOther
    );
    // WebKit (Safari) says `cross-site` for any form posted into a new window, the tool's own
    // button included; its `Origin` is the tool's.
    let body = page(app.launch(&Launch::new("/any")).await, Status::Ok).await;
    let token = handoff_token(&body);
    let webkit = cross(&format!("http://{HOST}"));
    let res = continue_with(&app.client, &token, &webkit).await;
    assert_eq!(res.status(), Status::SeeOther, "{webkit:?}");
}

#[rocket::async_test]
async fn with_a_public_url_its_host_under_another_scheme_is_not_the_tool() {
    let public = "https://tool.example.edu";
    let app = spawn_app_with(|f| f.merge(("public_url", public))).await;
    let launch = || Launch::new("/any").signed_for(&format!("{public}/any"));
    let token = handoff_token(&page(app.launch(&launch()).await, Status::Ok).await);
    let from = |host: &str, origin: &str, fetch_site: Option<&str>| {
        let mut headers = vec![("Host", host.to_string()), ("Origin", origin.to_string())];
        if let Some(site) = fetch_site {
            headers.push(("Sec-Fetch-Site", site.to_string()));
        }
        headers
    };
    // A page served over plain http on the public host is not the tool, whatever the request's
    // Host says (without a public_url it would count, for a TLS proxy not configured).
    for fetch_site in [None, Some("cross-site")] {
        for host in ["tool.example.edu", HOST] {
            let headers = from(host, "http://tool.example.edu", fetch_site);
            let res = continue_with(&app.client, &token, &headers).await;
            refused(res, Status::Forbidden).await;
        }
    }
    // An internal address the tool is also reached at (an admin on 10.0.0.5) is still its own.
    let internal = from("10.0.0.5:8000", "http://10.0.0.5:8000", None);
    let res = continue_with(&app.client, &token, &internal).await;
    assert_eq!(res.status(), Status::SeeOther);
    let token = handoff_token(&page(app.launch(&launch()).await, Status::Ok).await);
    let own = from(HOST, public, Some("cross-site"));
    let res = continue_with(&app.client, &token, &own).await;
    assert_eq!(res.status(), Status::SeeOther);
}
