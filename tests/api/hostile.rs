//! Hostile input. Property tests (proptest) on the protocol core: arbitrary bytes never panic the
//! parsers, every parameter set signed by the independent signer (`oauth1-request`) verifies,
//! and no single-byte change to a signed body that changes what it says still verifies. Then
//! arbitrary bodies, headers and cookies through the app, and floods refused quickly with 4xx.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use rocket::http::{ContentType, Header, Status};
use rocket::local::blocking::Client;
use rocket_lti_tool::lti::launch::read_oauth_fields;
use rocket_lti_tool::lti::oauth::{signature_base_string, verify};
use rocket_lti_tool::lti::params::{parse_authorization_header, parse_form, Params};

use crate::helpers::{form_data_part, temp_dir, Launch, HOST};

const URL: &str = "http://tool.test/any";

/// What our verifier says about a form body POSTed to [`URL`].
fn verifies(body: &[u8], secret: &str) -> bool {
    let Ok(params) = parse_form(body) else {
        return false;
    };
    let Ok(oauth) = read_oauth_fields(&params) else {
        return false;
    };
    let base = signature_base_string(
        "POST",
        URL,
        params.iter().map(|(n, v)| (n.as_str(), v.as_str())),
    );
    verify(&base, secret, &oauth.signature)
}

fn sorted(mut params: Params) -> Params {
    params.sort();
    params
}

/// Parameter names and values: any Unicode, with the characters that need encoding made likely.
fn text() -> impl Strategy<Value = String> {
    prop_oneof!["\\PC{0,12}", "[a-z_ &=+%~.\\-/?#\"'<>ü€😀]{0,12}",]
}

/// Launch parameters as `oauth1-request` can sign them: it puts names into the base string
/// as given, so they are RFC 3986 unreserved characters (as every LTI name is), and it orders
/// repeated names by raw rather than encoded value, so names are distinct. Values are anything.
fn launch_params() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::btree_map("[A-Za-z0-9._~-]{1,12}", text(), 0..12).prop_map(|pairs| {
        pairs
            .into_iter()
            .filter(|(name, _)| !name.starts_with("oauth_"))
            .collect()
    })
}

fn signed(params: Vec<(String, String)>, secret: &str) -> String {
    let mut launch = Launch::new("/any").consumer("k", secret);
    launch.params = params;
    launch.signed_body()
}

/// `body` with the byte at `at` set to `byte`, when that changes what the launch says: `None` for
/// no change, or one that decodes to the same parameters (`%2f` for `%2F`, a raw space for `+`),
/// which is the same launch.
fn changed_launch(body: &[u8], at: proptest::sample::Index, byte: u8) -> Option<Vec<u8>> {
    let i = at.index(body.len());
    let mut changed = body.to_vec();
    changed[i] = byte;
    let same = match (parse_form(body), parse_form(&changed)) {
        (Ok(a), Ok(b)) => sorted(a) == sorted(b),
        _ => false,
    };
    (body[i] != byte && !same).then_some(changed)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(raw in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(params) = parse_form(&raw) {
            let _ = read_oauth_fields(&params);
            let _ = rocket_lti_tool::lti::launch::check_lti_fields(&params);
        }
        let _ = parse_authorization_header(&String::from_utf8_lossy(&raw));
        let _ = parse_authorization_header(&format!("OAuth {}", String::from_utf8_lossy(&raw)));
    }

    #[test]
    fn every_independently_signed_parameter_set_verifies(params in launch_params(), secret in "\\PC{1,20}") {
        let body = signed(params, &secret);
        prop_assert!(verifies(body.as_bytes(), &secret), "{}", body);
    }

    #[test]
    fn a_single_changed_byte_that_changes_the_launch_never_verifies(
        params in launch_params(),
        at in any::<proptest::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let body = signed(params, "s3cret").into_bytes();
        // A change that leaves the same launch proves nothing; any other must break the signature.
        let changed = changed_launch(&body, at, byte);
        prop_assume!(changed.is_some());
        let changed = changed.unwrap_or_default();
        prop_assert!(!verifies(&changed, "s3cret"), "{}", String::from_utf8_lossy(&changed));
    }
}

/// The app (debug settings, fresh database) through Rocket's blocking local client.
fn blocking_app() -> (Client, std::path::PathBuf) {
    let dir = temp_dir();
    let figment = rocket_lti_tool::figment()
        .merge((
            "database_url",
            format!("sqlite://{}", dir.join("db.sqlite").display()),
        ))
        .merge(("log_level", "off"));
    let client = Client::tracked(rocket_lti_tool::build(figment)).expect("app starts");
    (client, dir)
}

/// Any answer to hostile input is ours, below 500, and not a granted page.
fn assert_refused_cleanly(status: Status, body: &str) {
    assert!(
        status.code >= 400 && status.code < 500,
        "status {status}: {body}"
    );
    assert!(body.contains("<html"), "not the templated page: {body}");
    assert!(!body.contains("Landing page") && !body.contains("Initial request"));
}

#[test]
fn a_single_changed_byte_never_launches_through_the_app() {
    // The property above, through the whole app: its tolerances (the trailing slash toggled,
    // Canvas's copied query) must not open a way around the signature.
    let (client, dir) = blocking_app();
    let config = ProptestConfig {
        cases: 48,
        ..ProptestConfig::default()
    };
    proptest!(config, |(
        params in launch_params(),
        slash in any::<bool>(),
        at in any::<proptest::sample::Index>(),
        byte in any::<u8>(),
    )| {
        let mut launch = Launch::new("/any");
        if slash {
            launch = launch.signed_for(&format!("http://{HOST}/any/"));
        }
        launch.params.extend(params);
        let body = launch.signed_body().into_bytes();
        let changed = changed_launch(&body, at, byte);
        prop_assume!(changed.is_some());
        let changed = changed.unwrap_or_default();
        let res = client
            .post("/any")
            .header(Header::new("Host", HOST))
            .header(ContentType::Form)
            .body(&changed)
            .dispatch();
        let status = res.status();
        assert_refused_cleanly(status, &res.into_string().unwrap_or_default());
        // While the launch as signed goes through (its nonce was not spent by the other).
        let res = client
            .post("/any")
            .header(Header::new("Host", HOST))
            .header(ContentType::Form)
            .body(&body)
            .dispatch();
        prop_assert_eq!(res.status(), Status::Ok);
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn arbitrary_bodies_headers_and_cookies_get_a_4xx_page() {
    let (client, dir) = blocking_app();
    let config = ProptestConfig {
        cases: 48,
        ..ProptestConfig::default()
    };
    proptest!(config, |(
        body in proptest::collection::vec(any::<u8>(), 0..256),
        header in "[ -~]{0,80}",
        cookie in "[!#-+\\--:<-\\[\\]-~]{0,80}",
        path in prop_oneof![Just("/any"), Just("/initial"), Just("/initial_staff"), Just("/session")],
    )| {
        let res = client
            .post(path)
            .header(Header::new("Host", HOST))
            .header(ContentType::Form)
            .body(&body)
            .dispatch();
        let status = res.status();
        assert_refused_cleanly(status, &res.into_string().unwrap_or_default());

        let res = client
            .post(path)
            .header(Header::new("Host", HOST))
            .header(Header::new("Authorization", format!("OAuth {header}")))
            .header(ContentType::Form)
            .dispatch();
        let status = res.status();
        assert_refused_cleanly(status, &res.into_string().unwrap_or_default());

        let res = client
            .get(path)
            .header(Header::new("Host", HOST))
            .header(Header::new("Cookie", format!("lti_session={cookie}")))
            .dispatch();
        let status = res.status();
        assert_refused_cleanly(status, &res.into_string().unwrap_or_default());
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn floods_are_refused_quickly_with_4xx() {
    let (client, dir) = blocking_app();
    let signed_with = |name: &str, value: &str| Launch::new("/any").set(name, value).signed_body();
    let floods: Vec<(&str, String, Status)> = vec![
        (
            "oversized body",
            signed_with("custom_big", &"x".repeat(1024 * 1024)),
            Status::PayloadTooLarge,
        ),
        (
            "thousands of parameters",
            "a=1&".repeat(5000) + &Launch::new("/any").signed_body(),
            Status::BadRequest,
        ),
        (
            "a very long value, unsigned",
            Launch::new("/any").signed_body() + &format!("&custom_long={}", "y".repeat(60_000)),
            Status::Unauthorized,
        ),
        (
            "deep percent-encoding",
            Launch::new("/any").signed_body() + &format!("&custom_deep={}41", "%25".repeat(20_000)),
            Status::Unauthorized,
        ),
        (
            "deep percent-encoding in a name",
            format!("{}=1", "%25".repeat(20_000)),
            Status::Unauthorized,
        ),
    ];
    for (what, body, want) in floods {
        let started = Instant::now();
        let res = client
            .post("/any")
            .header(Header::new("Host", HOST))
            .header(ContentType::Form)
            .body(body)
            .dispatch();
        let status = res.status();
        let page = res.into_string().unwrap_or_default();
        let took = started.elapsed();
        assert_eq!(status, want, "{what}");
        assert_refused_cleanly(status, &page);
        assert!(took < Duration::from_secs(2), "{what} took {took:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_malformed_multipart_form_is_a_bad_request_not_too_large() {
    let (client, dir) = blocking_app();
    let multipart = ContentType::new("multipart", "form-data").with_params(("boundary", "X"));
    let part = |value: &str| form_data_part("X", "password", value) + "--X--\r\n";
    // A few bytes that are no multipart body at all, and one cut before its closing boundary.
    let cut = part("hunter2");
    let cut = &cut[..cut.len() - 8];
    for (body, want) in [
        ("a=1".to_string(), Status::BadRequest),
        (cut.to_string(), Status::BadRequest),
    ] {
        let res = client
            .post("/admin/login")
            .header(Header::new("Host", HOST))
            .header(multipart.clone())
            .header(Header::new("Content-Length", body.len().to_string()))
            .body(&body)
            .dispatch();
        let status = res.status();
        let page = res.into_string().unwrap_or_default();
        assert_eq!(status, want, "{body:.40}: {page}");
        assert_refused_cleanly(status, &page);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
