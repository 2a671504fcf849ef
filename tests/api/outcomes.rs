//! Grade passback against a live outcomes endpoint on a loopback port (`mock_lms`): the client
//! on its own, then the learner's and the staff's pages through the app.

pub mod mock_lms;

use std::time::{Duration, Instant};

use rocket::http::Status;
use rocket_lti_tool::outcomes::{
    ClientConfig, CodeMajor, Credentials, OutcomeError, OutcomeTarget, OutcomesClient, ResultData,
};
use rocket_lti_tool::web::pages::visit_page;

use crate::helpers::*;
use mock_lms::{MockLms, KEY, SECRET};

/// A Moodle-style sourcedid: JSON, with the characters XML must escape.
const MOODLE_SOURCEDID: &str =
    r#"{"data":{"instanceid":"2","userid":"4","launchid":1},"hash":"a<b&c'd\"e"}"#;

const CREDS: Credentials<'static> = Credentials {
    key: KEY,
    secret: SECRET,
};

fn client() -> OutcomesClient {
    OutcomesClient::new(ClientConfig {
        timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(500),
        attempts: 3,
        backoff: Duration::from_millis(20),
        // The mock LMS listens on this machine.
        allow_local: true,
        ..ClientConfig::default()
    })
    .unwrap()
}

fn target(lms: &MockLms, path: &str, sourcedid: &str) -> OutcomeTarget {
    OutcomeTarget {
        service_url: lms.url(path),
        sourcedid: sourcedid.into(),
    }
}

#[rocket::async_test]
async fn replace_read_delete_round_trip_signed_as_an_lms_expects() {
    let lms = MockLms::start().await;
    let client = client();
    // Query parameters of the service URL are part of the signature.
    let t = target(&lms, "/ok?course=42&note=a%20b+c", MOODLE_SOURCEDID);

    let sent = client
        .replace_result(CREDS, &t, 0.85, Some(ResultData::Text("well done".into())))
        .await
        .unwrap();
    assert_eq!(sent.code_major, CodeMajor::Success);
    assert!(sent.description.contains("is now 0.85"), "{sent:?}");
    assert_eq!(lms.score_of(MOODLE_SOURCEDID).as_deref(), Some("0.85"));

    let read = client.read_result(CREDS, &t).await.unwrap();
    assert_eq!(read.score, Some(0.85));

    client.delete_result(CREDS, &t).await.unwrap();
    assert_eq!(lms.score_of(MOODLE_SOURCEDID), None);
    let read = client.read_result(CREDS, &t).await.unwrap();
    assert_eq!(read.score, None);

    lms.assert_all_valid();
    let received = lms.received();
    let ops: Vec<&str> = received.iter().map(|r| r.operation.as_str()).collect();
    assert_eq!(
        ops,
        ["replaceResult", "readResult", "deleteResult", "readResult"]
    );
    for r in &received {
        assert_eq!(r.sourcedid, MOODLE_SOURCEDID);
        assert_eq!(r.target, "/ok?course=42&note=a%20b+c");
        assert_eq!(r.content_type, "application/xml");
    }
    assert_eq!(received[0].score.as_deref(), Some("0.85"));
    assert_eq!(received[0].result_text.as_deref(), Some("well done"));
    assert_eq!(received[1].score, None);
    // Each request has its own message id too.
    assert_ne!(received[0].message_id, received[1].message_id);
}

#[rocket::async_test]
async fn the_endpoint_catches_a_wrong_secret() {
    // Proves the endpoint's checks are live: a request signed with another secret is refused.
    let lms = MockLms::start().await;
    let wrong = Credentials {
        key: KEY,
        secret: "not the secret",
    };
    let err = client()
        .replace_result(wrong, &target(&lms, "/ok", "s1"), 0.5, None)
        .await
        .unwrap_err();
    match err {
        OutcomeError::SignatureRefused { description, .. } => {
            assert!(description.contains("signature mismatch"), "{description}")
        }
        other => panic!("expected a refused signature, got {other:?}"),
    }
    assert_eq!(lms.received()[0].problems, ["signature mismatch"]);
    assert_eq!(lms.score_of("s1"), None);
}

#[rocket::async_test]
async fn an_out_of_range_score_is_never_sent() {
    let lms = MockLms::start().await;
    let client = client();
    let t = target(&lms, "/ok", "s1");
    for score in [-0.01, 1.01, f64::NAN, f64::INFINITY] {
        let err = client
            .replace_result(CREDS, &t, score, None)
            .await
            .unwrap_err();
        assert!(matches!(err, OutcomeError::ScoreOutOfRange(_)), "{err:?}");
    }
    assert!(lms.received().is_empty());
}

#[rocket::async_test]
async fn failure_unsupported_and_malformed_answers_are_typed_errors() {
    let lms = MockLms::start().await;
    let client = client();
    let err = client
        .replace_result(CREDS, &target(&lms, "/failure", "s1"), 0.5, None)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        OutcomeError::Failure {
            operation: "replaceResult",
            description: "Invalid sourcedid".into()
        }
    );
    let err = client
        .delete_result(CREDS, &target(&lms, "/unsupported", "s1"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        OutcomeError::Unsupported {
            operation: "deleteResult",
            description: "deleteResult is not supported".into()
        }
    );
    let err = client
        .read_result(CREDS, &target(&lms, "/malformed", "s1"))
        .await
        .unwrap_err();
    assert!(matches!(err, OutcomeError::MalformedResponse(_)), "{err:?}");
    let err = client
        .read_result(CREDS, &target(&lms, "/forbidden", "s1"))
        .await
        .unwrap_err();
    assert_eq!(err, OutcomeError::HttpStatus(403));
    // A refused signature keeps the LMS's words and the status that says what to check.
    let err = client
        .replace_result(CREDS, &target(&lms, "/signature-refused", "s1"), 0.5, None)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        OutcomeError::SignatureRefused {
            status: 401,
            description: "Request not authorised".into()
        }
    );
    assert!(err.nothing_recorded());
    // A read the LMS is still working on has no score yet: unknown, not malformed.
    let read = client
        .read_result(CREDS, &target(&lms, "/processing-bare", "s1"))
        .await
        .unwrap();
    assert_eq!((read.code_major, read.score), (CodeMajor::Processing, None));
    // Two statuses in one answer say nothing certain.
    let err = client
        .replace_result(CREDS, &target(&lms, "/two-codes", "s1"), 0.5, None)
        .await
        .unwrap_err();
    assert!(matches!(err, OutcomeError::MalformedResponse(_)), "{err:?}");
    // None of these is retried.
    assert_eq!(lms.received().len(), 7);
    lms.assert_all_valid();
}

#[rocket::async_test]
async fn an_answer_in_iso_8859_1_is_read_as_such() {
    let lms = MockLms::start().await;
    let sent = client()
        .replace_result(CREDS, &target(&lms, "/latin1", "s1"), 0.5, None)
        .await
        .unwrap();
    assert_eq!(sent.code_major, CodeMajor::Success);
    assert_eq!(sent.description, "Note enregistrée");
    assert_eq!(lms.score_of("s1").as_deref(), Some("0.5"));
}

#[rocket::async_test]
async fn an_answer_to_another_message_or_operation_is_not_taken() {
    let lms = MockLms::start().await;
    let client = client();
    // The log line says what the LMS echoed.
    for (path, echoed) in [
        ("/other-message", "\"an-earlier-message\""),
        ("/other-operation", "\"deleteResult\""),
    ] {
        let err = client
            .replace_result(CREDS, &target(&lms, path, "s1"), 0.5, None)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, OutcomeError::MalformedResponse(why) if why.contains("another") && why.contains(echoed)),
            "{path}: {err:?}"
        );
    }
    // An LMS echoing the request's element name (Moodle, Sakai) is believed...
    client
        .replace_result(CREDS, &target(&lms, "/moodle", "s1"), 0.5, None)
        .await
        .unwrap();
    // ...and a refusal is a refusal whatever it names, with the LMS's reason kept.
    let err = client
        .replace_result(CREDS, &target(&lms, "/moodle-refusal", "s1"), 0.5, None)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        OutcomeError::Failure {
            operation: "replaceResult",
            description: "Message signature not valid".into()
        }
    );
    // The same LMS echoing this request's own id and operation is believed.
    let ok = client
        .replace_result(CREDS, &target(&lms, "/ok", "s1"), 0.5, None)
        .await
        .unwrap();
    assert_eq!(
        ok.message_ref.as_deref(),
        lms.received().last().map(|r| r.message_id.as_str())
    );
    lms.assert_all_valid();
}

#[rocket::async_test]
async fn a_sourcedid_xml_cannot_carry_is_refused_before_sending() {
    let lms = MockLms::start().await;
    let err = client()
        .replace_result(CREDS, &target(&lms, "/ok", "sid\u{1}7"), 0.5, None)
        .await
        .unwrap_err();
    assert_eq!(err, OutcomeError::UnusableSourcedid);
    // Nor does the learner get a form that could only fail.
    let app = spawn_app().await;
    app.launch(&learner_launch(&lms, "/ok", "learner-1", "sid\u{1}7"))
        .await;
    let body = refused(app.get("/grade").await, Status::Conflict).await;
    assert!(body.contains("a control character"), "{body}");
    assert!(lms.received().is_empty());
}

#[rocket::async_test]
async fn a_service_url_is_signed_as_it_is_sent() {
    let lms = MockLms::start().await;
    // The HTTP client resolves dot segments (`%2e%2e` too) and drops a trailing space: the LMS
    // checks the signature against the request line it gets.
    client()
        .replace_result(
            CREDS,
            &target(&lms, "/x/../ok/%2e%2e/ok?course=7 ", "s1"),
            0.5,
            None,
        )
        .await
        .unwrap();
    assert_eq!(lms.received()[0].target, "/ok?course=7");
    lms.assert_all_valid();
}

#[rocket::async_test]
async fn a_slow_lms_times_out_without_a_retry() {
    let lms = MockLms::start().await;
    let started = Instant::now();
    let err = client()
        .replace_result(CREDS, &target(&lms, "/slow", "s1"), 0.5, None)
        .await
        .unwrap_err();
    assert_eq!(err, OutcomeError::Timeout);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(lms.received().len(), 1);
}

#[rocket::async_test]
async fn server_errors_are_retried_with_fresh_nonces_then_given_up() {
    let lms = MockLms::start().await;
    let client = client();
    // Two 500s, then success on the third attempt.
    let ok = client
        .replace_result(CREDS, &target(&lms, "/flaky", "s1"), 0.25, None)
        .await
        .unwrap();
    assert_eq!(ok.code_major, CodeMajor::Success);
    assert_eq!(lms.received().len(), 3);
    assert_eq!(lms.score_of("s1").as_deref(), Some("0.25"));
    // Always 500: three attempts, then the status.
    let err = client
        .read_result(CREDS, &target(&lms, "/down", "s1"))
        .await
        .unwrap_err();
    assert_eq!(err, OutcomeError::HttpStatus(500));
    assert_eq!(lms.received().len(), 6);
    // A 500, then a 403: the first may have been recorded, so it is what is reported (a 403
    // alone says nothing was).
    let err = client
        .replace_result(CREDS, &target(&lms, "/500-then-403", "s1"), 0.5, None)
        .await
        .unwrap_err();
    assert_eq!(err, OutcomeError::HttpStatus(500));
    assert!(!err.nothing_recorded());
    assert!(OutcomeError::HttpStatus(403).nothing_recorded());
    assert_eq!(lms.received().len(), 8);
    // So is a 500 then a refusal in words (even one that blames the signature): the refusal is
    // about the retry, not the first try, which may be in the gradebook.
    let err = client
        .replace_result(CREDS, &target(&lms, "/500-then-failure", "s1"), 0.5, None)
        .await
        .unwrap_err();
    assert_eq!(err, OutcomeError::HttpStatus(500));
    assert_eq!(lms.received().len(), 10);
    // A read changes nothing, so its refusal is its own.
    let err = client
        .read_result(CREDS, &target(&lms, "/500-then-failure-2", "s1"))
        .await
        .unwrap_err();
    assert!(err.is_refusal(), "{err:?}");
    assert_eq!(lms.received().len(), 12);
    lms.assert_all_valid();
}

#[rocket::async_test]
async fn connection_errors_are_retried_then_reported() {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let t = OutcomeTarget {
        service_url: format!("http://127.0.0.1:{port}/ok"),
        sourcedid: "s1".into(),
    };
    let started = Instant::now();
    let err = client().read_result(CREDS, &t).await.unwrap_err();
    assert!(matches!(err, OutcomeError::Unconnected(_)), "{err:?}");
    // Two pauses of 20 and 40 ms between the three attempts.
    assert!(started.elapsed() >= Duration::from_millis(60));
}

#[rocket::async_test]
async fn an_https_address_that_speaks_plain_http_is_reported_once_not_retried() {
    use rocket::tokio::io::{AsyncReadExt, AsyncWriteExt};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    // A plain http server: it answers whatever arrives (a TLS hello here) with an http error.
    let listener = rocket::tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    rocket::tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await;
            let _ = socket
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    });
    let t = OutcomeTarget {
        service_url: format!("https://127.0.0.1:{port}/ok"),
        sourcedid: "s1".into(),
    };
    let err = client().read_result(CREDS, &t).await.unwrap_err();
    assert!(matches!(err, OutcomeError::NotTls(_)), "{err:?}");
    assert!(err.nothing_recorded());
    // No second try: the port will not learn TLS in between.
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

// ---- Through the app ----

fn learner_launch(lms: &MockLms, path: &str, user: &str, sourcedid: &str) -> Launch {
    Launch::new("/any")
        .roles("Learner")
        .user(user)
        .set("lis_person_name_full", &format!("Learner {user}"))
        .set("lis_outcome_service_url", &lms.url(path))
        .set("lis_result_sourcedid", sourcedid)
}

/// The token of the header's Log out form.
fn logout_token_in(page: &str) -> String {
    let form = &page[page.find("action=\"/logout\"").expect("a Log out form")..];
    let start = form.find("name=\"csrf\" value=\"").expect("its token") + 19;
    form[start..].split('"').next().unwrap().to_string()
}

#[rocket::async_test]
async fn every_grade_page_leads_back_and_logs_out() {
    let lms = MockLms::start().await;
    let app = spawn_app().await;
    let launch = learner_launch(&lms, "/ok", "learner-9", "sourcedid-9");
    let landing = page(app.launch(&launch).await, Status::Ok).await;
    let token = grade_form_token(&app).await;
    let grade = page(app.get("/grade").await, Status::Ok).await;
    let confirm = page(
        app.post_form("/grade/delete", format!("csrf={token}"))
            .await,
        Status::Ok,
    )
    .await;
    let result = page(
        app.post_form("/grade", format!("score=0.5&csrf={token}"))
            .await,
        Status::Ok,
    )
    .await;
    for body in [&grade, &confirm, &result] {
        assert!(
            body.contains(&format!("<a href=\"{}\">Your page</a>", visit_page())),
            "{body}"
        );
        assert_eq!(logout_token_in(body), logout_token_in(&landing));
    }
    // The header's form logs out.
    let res = app
        .post_form("/logout", format!("csrf={}", logout_token_in(&result)))
        .await;
    assert!(res.status().code < 400, "{}", res.status());
    refused(app.get("/grade").await, Status::Unauthorized).await;
}

/// Posts `score` from the learner's grade page, with the page's own form token.
async fn post_score<'a>(
    app: &'a TestApp,
    score: &str,
) -> rocket::local::asynchronous::LocalResponse<'a> {
    let token = grade_form_token(app).await;
    app.post_form("/grade", format!("score={score}&csrf={token}"))
        .await
}

async fn grade_form_token(app: &TestApp) -> String {
    let body = page(app.get("/grade").await, Status::Ok).await;
    assert!(body.contains("name=\"score\""), "{body}");
    csrf_in(&body)
}

#[rocket::async_test]
async fn a_learner_posts_reads_and_deletes_a_grade_from_the_pages() {
    let lms = MockLms::start().await;
    let app = spawn_app().await;
    let launch = learner_launch(&lms, "/ok?course=7", "learner-1", MOODLE_SOURCEDID);
    let landing = page(app.launch(&launch).await, Status::Ok).await;
    assert!(landing.contains("href=\"/grade\""), "{landing}");
    assert!(
        !landing.contains("href=\"/grades\""),
        "learners get no staff link"
    );
    assert_eq!(app.count("outcome_targets").await, 1);

    let token = grade_form_token(&app).await;
    // Moodle does not list result data as accepted: no comment field, and a comment posted
    // anyway is refused before anything is sent (an LMS may refuse a score that carries one).
    assert!(!page(app.get("/grade").await, Status::Ok)
        .await
        .contains("name=\"result_data\""));
    let res = app
        .post_form(
            "/grade",
            format!("score=0.85&result_data=essay+done&csrf={token}"),
        )
        .await;
    let body = refused(res, Status::UnprocessableEntity).await;
    assert!(body.contains("does not take a comment"), "{body}");
    // Refused during a visit: the page leads back to it and still offers Log out.
    assert!(
        body.contains(&format!(
            "<a href=\"{}\">Back to your page</a>",
            visit_page()
        )),
        "{body}"
    );
    assert!(body.contains("action=\"/logout\""), "{body}");
    assert!(lms.received().is_empty());
    let body = page(
        app.post_form("/grade", format!("score=0.85&csrf={token}"))
            .await,
        Status::Ok,
    )
    .await;
    assert!(body.contains("Score sent"), "{body}");
    assert!(
        body.contains("<dd id=\"code-major\">success</dd>"),
        "{body}"
    );
    assert!(body.contains("is now 0.85"), "{body}");
    assert_eq!(lms.score_of(MOODLE_SOURCEDID).as_deref(), Some("0.85"));
    let sent = &lms.received()[0];
    assert_eq!(sent.operation, "replaceResult");
    assert_eq!(sent.sourcedid, MOODLE_SOURCEDID);
    assert_eq!(sent.result_text, None);
    // Header names in title case, as PyLTI sends them (some LMS servers refuse lower case).
    for name in ["Authorization", "Content-Type", "Content-Length", "Host"] {
        assert!(
            sent.header_names.iter().any(|n| n == name),
            "{name}: {:?}",
            sent.header_names
        );
    }

    let body = page(
        app.post_form("/grade/read", format!("csrf={token}")).await,
        Status::Ok,
    )
    .await;
    assert!(body.contains("<dd id=\"score\">0.85</dd>"), "{body}");

    // The form asks first (one click in a page framed over ours deletes nothing)...
    let sent = lms.received().len();
    let body = page(
        app.post_form("/grade/delete", format!("csrf={token}"))
            .await,
        Status::Ok,
    )
    .await;
    assert!(body.contains("Delete the score?"), "{body}");
    assert!(body.contains("name=\"confirmed\" value=\"true\""), "{body}");
    assert_eq!(lms.received().len(), sent);
    // ...and its confirmation deletes.
    let body = page(
        app.post_form("/grade/delete", format!("csrf={token}&confirmed=true"))
            .await,
        Status::Ok,
    )
    .await;
    assert!(body.contains("Score deleted"), "{body}");
    assert_eq!(lms.score_of(MOODLE_SOURCEDID), None);
    let body = page(
        app.post_form("/grade/read", format!("csrf={token}")).await,
        Status::Ok,
    )
    .await;
    assert!(body.contains("<dd id=\"score\">none</dd>"), "{body}");

    // A typed `-0` reaches the LMS as a plain decimal.
    let body = page(
        app.post_form("/grade", format!("score=-0&csrf={token}"))
            .await,
        Status::Ok,
    )
    .await;
    assert!(body.contains("<dd id=\"score\">0.0</dd>"), "{body}");
    assert_eq!(lms.score_of(MOODLE_SOURCEDID).as_deref(), Some("0.0"));

    let ops: Vec<String> = lms.received().into_iter().map(|r| r.operation).collect();
    assert_eq!(
        ops,
        [
            "replaceResult",
            "readResult",
            "deleteResult",
            "readResult",
            "replaceResult"
        ]
    );
    lms.assert_all_valid();
}

#[rocket::async_test]
async fn bad_scores_and_bad_tokens_send_nothing() {
    let lms = MockLms::start().await;
    let app = spawn_app().await;
    app.launch(&learner_launch(&lms, "/ok", "learner-1", "s1"))
        .await;
    let token = grade_form_token(&app).await;
    for score in ["1.5", "-1", "abc", "", "NaN", "0,5"] {
        let body = refused(
            app.post_form("/grade", format!("score={score}&csrf={token}"))
                .await,
            Status::UnprocessableEntity,
        )
        .await;
        assert!(body.contains("nothing was sent"), "{score}: {body}");
    }
    refused(
        app.post_form("/grade", "score=0.5".into()).await,
        Status::Forbidden,
    )
    .await;
    refused(
        app.post_form("/grade", "score=0.5&csrf=forged".into())
            .await,
        Status::Forbidden,
    )
    .await;
    refused(
        app.post_form("/grade/delete", "csrf=&confirmed=true".into())
            .await,
        Status::Forbidden,
    )
    .await;
    // Reading calls the LMS too: only the page's own form, never a GET another site can fire.
    let body = refused(
        app.post_form("/grade/read", "csrf=forged".into()).await,
        Status::Forbidden,
    )
    .await;
    // An expired form is opened again from the grade page its message points to.
    assert!(
        body.contains("<a href=\"/grade\">Back to the grade page</a>"),
        "{body}"
    );
    let res = app.get("/grade/read").await;
    assert_eq!(res.headers().get_one("Allow"), Some("POST"));
    refused(res, Status::MethodNotAllowed).await;
    // A token from another session does not work either.
    let other = spawn_app().await;
    other
        .launch(&learner_launch(&lms, "/ok", "learner-2", "s2"))
        .await;
    let foreign = grade_form_token(&other).await;
    refused(
        app.post_form("/grade", format!("score=0.5&csrf={foreign}"))
            .await,
        Status::Forbidden,
    )
    .await;
    assert!(lms.received().is_empty());
}

#[rocket::async_test]
async fn a_launch_without_an_outcome_service_says_so() {
    let app = spawn_app().await;
    let launch = Launch::new("/any").roles("Learner").user("learner-1");
    let landing = page(app.launch(&launch).await, Status::Ok).await;
    assert!(!landing.contains("href=\"/grade\""));
    assert_eq!(app.count("outcome_targets").await, 0);
    let body = refused(app.get("/grade").await, Status::Conflict).await;
    assert!(body.contains("lis_outcome_service_url"), "{body}");
    // The grade page itself failed: it is not offered as the way back.
    assert!(!body.contains("Back to the grade page"), "{body}");
    let token = done_token(&app.client);
    refused(
        app.post_form("/grade/read", format!("csrf={token}")).await,
        Status::Conflict,
    )
    .await;
    // Without a session at all, the grade pages refuse like every guarded page.
    let fresh = spawn_app().await;
    refused(fresh.get("/grade").await, Status::Unauthorized).await;
    refused(fresh.get("/grades").await, Status::Unauthorized).await;
}

#[rocket::async_test]
async fn lms_trouble_renders_the_error_page_not_a_500() {
    let lms = MockLms::start().await;
    let app = spawn_app_with(|f| f.merge(("outcomes_timeout", 0.3))).await;
    let cases = [
        ("/failure", Status::BadGateway, "Invalid sourcedid"),
        ("/500-failure", Status::BadGateway, "Gradebook locked"),
        ("/malformed", Status::BadGateway, "not a grade response"),
        ("/forbidden", Status::BadGateway, "HTTP 403"),
        (
            "/signature-refused",
            Status::BadGateway,
            "HTTP 401 (Request not authorised)",
        ),
        // Moodle's refusal of a bad signature comes with a 200.
        (
            "/moodle-refusal",
            Status::BadGateway,
            "Message signature not valid",
        ),
        (
            "/forbidden-policy",
            Status::BadGateway,
            "Course is concluded",
        ),
        ("/moved", Status::BadGateway, "HTTP 302"),
        ("/slow", Status::GatewayTimeout, "did not answer in time"),
    ];
    for (path, status, text) in cases {
        app.launch(&learner_launch(&lms, path, "learner-1", "s1"))
            .await;
        let body = refused(post_score(&app, "0.5").await, status).await;
        assert!(body.contains(text), "{path}: {body}");
        // The learner can try again from the grade page without reopening it by hand.
        assert!(
            body.contains("<a href=\"/grade\">Back to the grade page</a>"),
            "{body}"
        );
        match path {
            "/failure" => {}
            // A policy: the LMS's words, no advice about keys.
            "/forbidden-policy" => assert!(!body.contains("signature"), "{body}"),
            // A refusal: not retried.
            "/500-failure" => {
                let sent = lms
                    .received()
                    .iter()
                    .filter(|r| r.target.starts_with(path))
                    .count();
                assert_eq!(sent, 1, "{path}");
            }
            // Refused or sent elsewhere: the LMS did not take it, and the page says what to check.
            "/forbidden" | "/signature-refused" | "/moodle-refusal" | "/moved" => {
                assert!(body.contains("was not changed"), "{path}: {body}");
                assert!(!body.contains("may or may not"), "{path}: {body}");
                let hint = if path == "/moved" {
                    "http to https"
                } else {
                    "clock"
                };
                assert!(body.contains(hint), "{path}: {body}");
            }
            // The LMS got the request: whether it stored the score is unknown, and the page
            // says so.
            _ => {
                assert!(body.contains("may or may not"), "{path}: {body}");
                assert!(!body.contains("was not changed"), "{path}: {body}");
            }
        }
    }
    lms.assert_all_valid();
}

#[rocket::async_test]
async fn without_outcomes_allow_local_nothing_is_posted_to_this_machine() {
    let lms = MockLms::start().await;
    // The default outside the debug profile.
    let app = spawn_app_with(|f| f.merge(("outcomes_allow_local", false))).await;
    let port = lms
        .url("")
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    // An address, a name that resolves to one, and the same in other spellings.
    let urls = [
        lms.url("/ok"),
        format!("http://localhost:{port}/ok"),
        format!("http://[::ffff:127.0.0.1]:{port}/ok"),
        format!("http://2130706433:{port}/ok"),
    ];
    for (i, url) in urls.iter().enumerate() {
        let sourcedid = format!("s{i}");
        let launch = Launch::new("/any")
            .roles("Learner")
            .user(&format!("learner-{i}"))
            .set("lis_outcome_service_url", url)
            .set("lis_result_sourcedid", &sourcedid);
        assert_eq!(app.launch(&launch).await.status(), Status::Ok);
        let body = refused(post_score(&app, "0.5").await, Status::BadGateway).await;
        assert!(body.contains("cannot use"), "{url}: {body}");
        assert_eq!(lms.score_of(&sourcedid), None, "{url}");
    }
    assert!(lms.received().is_empty());
    // The debug profile's default lets the README's fake LMS on this machine in.
    let app = spawn_app().await;
    app.launch(&learner_launch(&lms, "/ok", "learner-9", "s9"))
        .await;
    let token = grade_form_token(&app).await;
    let res = app
        .post_form("/grade", format!("score=0.5&csrf={token}"))
        .await;
    assert_eq!(res.status(), Status::Ok);
    assert_eq!(lms.score_of("s9").as_deref(), Some("0.5"));
}

#[rocket::async_test]
async fn a_canvas_launch_takes_a_comment_with_the_score() {
    let lms = MockLms::start().await;
    let app = spawn_app().await;
    let launch = learner_launch(&lms, "/ok", "learner-1", "s1")
        .set("ext_outcome_data_values_accepted", "url,text");
    app.launch(&launch).await;
    let form = page(app.get("/grade").await, Status::Ok).await;
    assert!(form.contains("name=\"result_data\""), "{form}");
    let token = csrf_in(&form);
    let body = page(
        app.post_form(
            "/grade",
            format!("score=0.85&result_data=essay+done&csrf={token}"),
        )
        .await,
        Status::Ok,
    )
    .await;
    assert!(body.contains("Score sent"), "{body}");
    assert_eq!(lms.received()[0].result_text.as_deref(), Some("essay done"));
    lms.assert_all_valid();
}

#[rocket::async_test]
async fn a_grade_service_whose_certificate_is_not_trusted_gets_nothing_and_the_page_says_why() {
    let lms = MockLms::start_tls().await;
    let app = spawn_app().await;
    app.launch(&learner_launch(&lms, "/ok", "learner-1", "s1"))
        .await;
    let body = refused(post_score(&app, "0.5").await, Status::BadGateway).await;
    assert!(body.contains("certificate"), "{body}");
    assert!(body.contains("nothing was sent"), "{body}");
    // Tried once: a certificate does not become trusted on a retry.
    assert_eq!(lms.connections(), 1);
    assert!(lms.received().is_empty());
}

#[rocket::async_test]
async fn a_campus_ca_named_in_outcomes_ca_file_is_trusted_for_grades() {
    let lms = MockLms::start_tls().await;
    let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/campus-ca.pem");
    let app = spawn_app_with(|f| f.merge(("outcomes_ca_file", ca))).await;
    app.launch(&learner_launch(&lms, "/ok", "learner-1", "s1"))
        .await;
    let body = page(post_score(&app, "0.5").await, Status::Ok).await;
    assert!(body.contains("Score sent"), "{body}");
    assert_eq!(lms.score_of("s1").as_deref(), Some("0.5"));
    lms.assert_all_valid();
    // A trusted certificate for another name than the address: its own message (the address is
    // wrong, not the certificate authority), and nothing sent.
    let elsewhere = MockLms::start_tls_on("127.0.0.2").await;
    app.launch(&learner_launch(&elsewhere, "/ok", "learner-2", "s2"))
        .await;
    let body = refused(post_score(&app, "0.5").await, Status::BadGateway).await;
    assert!(body.contains("certificate for another name"), "{body}");
    assert!(!body.contains("certificate authority"), "{body}");
    assert!(elsewhere.received().is_empty());
    // A file with no certificate in it, or a certificate that does not decode, stops the start
    // before a database is created.
    let dir = temp_dir();
    let bad_cert = dir.join("bad.pem");
    std::fs::write(
        &bad_cert,
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let not_pem = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/vectors.json");
    for file in [not_pem, bad_cert.to_str().unwrap()] {
        let db = dir.join("never.db");
        let figment = app
            .client
            .rocket()
            .figment()
            .clone()
            .merge(("database_url", format!("sqlite://{}", db.display())))
            .merge(("outcomes_ca_file", file));
        match rocket::local::asynchronous::Client::untracked(rocket_lti_tool::build(figment)).await
        {
            Ok(_) => panic!("started with outcomes_ca_file {file}"),
            Err(e) => match e.kind() {
                rocket::error::ErrorKind::FailedFairings(failed) => {
                    assert_eq!(failed[0].name, "LTI state")
                }
                other => panic!("{other:?}"),
            },
        }
        assert!(!db.exists(), "{file}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[rocket::async_test]
async fn a_read_that_overlapped_a_write_does_not_put_the_old_score_back() {
    use rocket_lti_tool::store::outcomes::{forget_last_score, set_last_score, ResultOf};
    let lms = MockLms::start().await;
    let app = spawn_app().await;
    app.launch(&learner_launch(&lms, "/ok", "learner-1", "sid-1"))
        .await;
    let db = &app.state().db;
    let result = ResultOf {
        consumer_key: KEY,
        resource_link_id: "link-1",
        user_id: "learner-1",
        sourcedid: "sid-1",
    };
    let last = || async {
        sqlx::query_as::<_, (Option<f64>, Option<i64>)>(
            "SELECT last_score, score_known_at FROM outcome_targets",
        )
        .fetch_one(db)
        .await
        .unwrap()
    };
    // A staff read asked at 99 answers 0.1 after a learner's write of 0.9 confirmed at 100.
    set_last_score(db, result, Some(0.9), None, 100)
        .await
        .unwrap();
    set_last_score(db, result, Some(0.1), Some(99), 101)
        .await
        .unwrap();
    assert_eq!(last().await, (Some(0.9), Some(100)));
    // Asked in the same second as the write: not known to be newer either.
    set_last_score(db, result, Some(0.1), Some(100), 101)
        .await
        .unwrap();
    assert_eq!(last().await, (Some(0.9), Some(100)));
    // A read asked after it is newer; so is any write, whatever was read before.
    set_last_score(db, result, Some(0.5), Some(101), 102)
        .await
        .unwrap();
    assert_eq!(last().await, (Some(0.5), Some(102)));
    set_last_score(db, result, None, None, 102).await.unwrap();
    assert_eq!(last().await, (None, Some(102)));
    // Forgotten at 110 (a write the LMS may or may not have taken): a read asked before then, or
    // in that second, cannot bring its older answer back; one asked after can.
    forget_last_score(db, result, 110).await.unwrap();
    set_last_score(db, result, Some(0.4), Some(109), 112)
        .await
        .unwrap();
    set_last_score(db, result, Some(0.4), Some(110), 112)
        .await
        .unwrap();
    assert_eq!(last().await, (None, None));
    set_last_score(db, result, Some(0.9), Some(111), 112)
        .await
        .unwrap();
    assert_eq!(last().await, (Some(0.9), Some(112)));
}

#[rocket::async_test]
async fn relaunching_updates_the_stored_target_and_bad_launches_store_nothing() {
    let lms = MockLms::start().await;
    let app = spawn_app().await;
    let known = |app: &TestApp| {
        let db = app.state().db.clone();
        async move {
            sqlx::query_as::<_, (String, Option<f64>, Option<i64>)>(
                "SELECT sourcedid, last_score, score_known_at FROM outcome_targets",
            )
            .fetch_all(&db)
            .await
            .unwrap()
        }
    };
    app.launch(&learner_launch(&lms, "/ok", "learner-1", "old"))
        .await;
    post_score(&app, "0.75").await;
    let rows = known(&app).await;
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].0.as_str(), rows[0].1), ("old", Some(0.75)));
    assert!(rows[0].2.is_some());
    // A relaunch with the same sourcedid keeps the score; a new sourcedid forgets it.
    app.launch(&learner_launch(&lms, "/ok", "learner-1", "old"))
        .await;
    assert_eq!(known(&app).await[0].1, Some(0.75));
    app.launch(&learner_launch(&lms, "/ok", "learner-1", "new"))
        .await;
    assert_eq!(known(&app).await, [("new".to_string(), None, None)]);
    // Kept as the LMS got it: rounded to 12 places.
    post_score(&app, "0.6666666666666666").await;
    assert_eq!(lms.score_of("new").as_deref(), Some("0.666666666667"));
    assert_eq!(known(&app).await[0].1, Some(0.666666666667));
    let forged = learner_launch(&lms, "/ok", "learner-2", "x").consumer(KEY, "wrong");
    refused(app.launch(&forged).await, Status::Unauthorized).await;
    assert_eq!(app.count("outcome_targets").await, 1);
}

#[rocket::async_test]
async fn a_refresh_stops_calling_the_lms_at_its_deadline() {
    let lms = MockLms::start().await;
    // The deadline is two timeouts: 0.6 s. Each read of an LMS that answers 500 takes three
    // attempts and 0.75 s of pauses, so 12 learners read 4 at a time would take over 2 s.
    let app = spawn_app_with(|f| f.merge(("outcomes_timeout", 0.3))).await;
    for i in 0..12 {
        let user = format!("learner-{i}");
        app.launch(&learner_launch(&lms, "/down", &user, &format!("sid-{i}")))
            .await;
    }
    page(app.launch(&Launch::new("/initial_staff")).await, Status::Ok).await;
    let token = csrf_in(&page(app.get("/grades").await, Status::Ok).await);
    // One learner's score was confirmed before: a row not read now still shows it.
    sqlx::query(
        "UPDATE outcome_targets SET last_score = 0.7, score_known_at = ? WHERE user_id = ?",
    )
    .bind(now() as i64)
    .bind("learner-0")
    .execute(&app.state().db)
    .await
    .unwrap();
    let started = Instant::now();
    let body = page(
        app.post_form("/grades/refresh", format!("csrf={token}"))
            .await,
        Status::Ok,
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert!(
        body.contains("Not read now: the LMS was too slow"),
        "{body}"
    );
    assert_eq!(body.matches("<code>learner-").count(), 12, "{body}");
    let row = row_of(&body, "learner-0");
    assert!(
        row.contains("0.7") && row.contains("as of") && row.contains("Not read now"),
        "{row}"
    );
    // The headline does not claim the scores were read.
    assert!(!body.contains("Scores just read"), "{body}");
    assert!(body.contains("12 of 12 scores could not be read"), "{body}");
    // The reads still running were cancelled with the page: no call goes out afterwards.
    let sent = lms.received().len();
    assert!(sent < 36, "{sent}");
    rocket::tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(lms.received().len(), sent);
}

#[rocket::async_test]
async fn learners_whose_reads_keep_failing_do_not_hold_the_others_back() {
    let lms = MockLms::start().await;
    // Deadline 0.6 s; a read from `/down` takes three attempts and 0.75 s of pauses, so the four
    // `a` learners (first by name) fill every slot until the deadline.
    let app = spawn_app_with(|f| f.merge(("outcomes_timeout", 0.3))).await;
    for (who, path, n) in [("a", "/down", 4), ("b", "/ok", 8)] {
        for i in 0..n {
            let user = format!("{who}{i}");
            app.launch(&learner_launch(&lms, path, &user, &format!("sid-{user}")))
                .await;
        }
    }
    page(app.launch(&Launch::new("/initial_staff")).await, Status::Ok).await;
    let token = csrf_in(&page(app.get("/grades").await, Status::Ok).await);
    let refresh = || app.post_form("/grades/refresh", format!("csrf={token}"));
    let read = |who: &str| {
        lms.received()
            .iter()
            .filter(|r| r.sourcedid.starts_with(&format!("sid-{who}")))
            .count()
    };
    page(refresh().await, Status::Ok).await;
    assert!(read("a") > 0);
    assert_eq!(read("b"), 0, "the failing learners took every slot");
    // The next refresh starts with the learners not tried yet.
    let body = page(refresh().await, Status::Ok).await;
    assert_eq!(read("b"), 8, "{body}");
    assert!(!row_of(&body, "b7").contains("Not read"), "{body}");
}

#[rocket::async_test]
async fn a_refresh_shows_the_scores_read_even_when_it_cannot_note_whom_it_read() {
    let lms = MockLms::start().await;
    let app = spawn_app().await;
    for user in ["r0", "r1"] {
        app.launch(&learner_launch(&lms, "/ok", user, &format!("sid-{user}")))
            .await;
    }
    page(app.launch(&Launch::new("/initial_staff")).await, Status::Ok).await;
    let token = csrf_in(&page(app.get("/grades").await, Status::Ok).await);
    // The bookkeeping of one learner fails (a trigger stands in for a storage error).
    let db = &app.state().db;
    sqlx::query(
        "CREATE TRIGGER no_read_tried BEFORE UPDATE OF read_tried_at ON outcome_targets \
         WHEN NEW.user_id = 'r1' BEGIN SELECT RAISE(ABORT, 'refused'); END",
    )
    .execute(db)
    .await
    .unwrap();
    let body = page(
        app.post_form("/grades/refresh", format!("csrf={token}"))
            .await,
        Status::Ok,
    )
    .await;
    assert!(
        body.contains("<code>r0</code>") && body.contains("<code>r1</code>"),
        "{body}"
    );
    assert_eq!(lms.received().len(), 2);
    // All of it or none: no learner noted as read.
    let noted: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outcome_targets WHERE read_tried_at IS NOT NULL")
            .fetch_one(db)
            .await
            .unwrap();
    assert_eq!(noted, 0);
}

#[rocket::async_test]
async fn the_next_refresh_goes_on_with_the_reads_the_deadline_cut_off() {
    let lms = MockLms::start().await;
    // Deadline 1.4 s; a read from `/down` takes three attempts and 0.75 s of pauses: a refresh
    // ends the reads of the first four learners (with time to spare), cuts off the next four
    // (which cannot end before 1.5 s) and starts no more.
    let app = spawn_app_with(|f| f.merge(("outcomes_timeout", 0.7))).await;
    for i in 0..12 {
        let user = format!("l{i:02}");
        app.launch(&learner_launch(
            &lms,
            "/down",
            &user,
            &format!("sid-{user}"),
        ))
        .await;
    }
    page(app.launch(&Launch::new("/initial_staff")).await, Status::Ok).await;
    let token = csrf_in(&page(app.get("/grades").await, Status::Ok).await);
    let refresh = || app.post_form("/grades/refresh", format!("csrf={token}"));
    let calls = |from: usize, to: usize| -> Vec<usize> {
        let received = lms.received();
        (from..to)
            .map(|i| {
                let sid = format!("sid-l{i:02}");
                received.iter().filter(|r| r.sourcedid == sid).count()
            })
            .collect()
    };
    page(refresh().await, Status::Ok).await;
    assert_eq!(calls(0, 4), [3, 3, 3, 3]);
    assert!(calls(4, 8).iter().all(|&n| n > 0), "{:?}", calls(4, 8));
    assert_eq!(calls(8, 12), [0, 0, 0, 0]);
    let (ended, cut) = (calls(0, 4), calls(4, 8));
    // Next: the learners not tried, then those cut off, and not those whose reads ended.
    page(refresh().await, Status::Ok).await;
    assert_eq!(calls(8, 12), [3, 3, 3, 3]);
    let cut_again = calls(4, 8);
    assert!(
        cut_again.iter().zip(&cut).all(|(now, before)| now > before),
        "{cut:?} -> {cut_again:?}"
    );
    assert_eq!(calls(0, 4), ended);
}

#[rocket::async_test]
async fn one_session_cannot_turn_a_burst_of_clicks_into_a_burst_of_lms_calls() {
    let lms = MockLms::start().await;
    // `/slow` answers after 3 s: each call gives up after 0.5 s.
    let app = spawn_app_with(|f| f.merge(("outcomes_timeout", 0.5))).await;
    app.launch(&learner_launch(&lms, "/slow", "learner-1", "sid-1"))
        .await;
    let token = grade_form_token(&app).await;
    let clicks = (0..8).map(|_| app.post_form("/grade/read", format!("csrf={token}")));
    let statuses: Vec<Status> = rocket::futures::future::join_all(clicks)
        .await
        .iter()
        .map(|r| r.status())
        .collect();
    // One call at a time, two waiting their turn; the other five are refused without a call.
    let count = |s: Status| statuses.iter().filter(|&&x| x == s).count();
    assert_eq!(count(Status::GatewayTimeout), 3, "{statuses:?}");
    assert_eq!(count(Status::TooManyRequests), 5, "{statuses:?}");
    assert_eq!(lms.received().len(), 3);
    // Once they are done, the session calls the LMS again.
    refused(
        app.post_form("/grade/read", format!("csrf={token}")).await,
        Status::GatewayTimeout,
    )
    .await;
    assert_eq!(lms.received().len(), 4);
}

#[rocket::async_test]
async fn a_grade_call_waits_its_turn_only_as_long_as_leaves_it_55_seconds() {
    let lms = MockLms::start().await;
    // Three attempts of 18 s each and the pauses take 54.75 s: a second call may wait 0.25 s
    // for its turn, and `/slow` holds the first one for 3 s.
    let app = spawn_app_with(|f| f.merge(("outcomes_timeout", 18))).await;
    app.launch(&learner_launch(&lms, "/slow", "learner-1", "sid-1"))
        .await;
    let token = grade_form_token(&app).await;
    let read = || app.post_form("/grade/read", format!("csrf={token}"));
    let started = std::time::Instant::now();
    let timed = || async {
        let res = read().await;
        (res.status(), started.elapsed())
    };
    let (a, b) = rocket::tokio::join!(timed(), timed());
    // Either may get the turn; the other is refused after its wait, before the first call was
    // done, with nothing sent.
    let (sent, refused) = if a.0 == Status::Ok { (a, b) } else { (b, a) };
    assert_eq!(sent.0, Status::Ok);
    assert_eq!(refused.0, Status::TooManyRequests);
    assert!(refused.1 < std::time::Duration::from_secs(2), "{refused:?}");
    assert_eq!(lms.received().len(), 1);
    // The turn it gave up leaves nothing behind: the next call goes.
    assert_eq!(read().await.status(), Status::Ok);
    assert_eq!(lms.received().len(), 2);
}

#[rocket::async_test]
async fn a_grade_call_waiting_its_turn_is_not_sent_once_the_visit_was_logged_out() {
    let lms = MockLms::start().await;
    // `/slow` answers after 3 s: each call gives up after 0.5 s.
    let app = spawn_app_with(|f| f.merge(("outcomes_timeout", 0.5))).await;
    let launch = learner_launch(&lms, "/slow", "learner-1", "sid-1");
    let landing = page(app.launch(&launch).await, Status::Ok).await;
    let token = grade_form_token(&app).await;
    let logout = format!("csrf={}", logout_token_in(&landing));
    let (first, second, logged_out) = rocket::tokio::join!(
        app.post_form("/grade/read", format!("csrf={token}")),
        app.post_form("/grade/read", format!("csrf={token}")),
        async {
            // While the first call waits for the LMS and the second for its turn.
            rocket::tokio::time::sleep(std::time::Duration::from_millis(150)).await;
            app.post_form("/logout", logout.clone()).await
        },
    );
    assert!(logged_out.status().code < 400, "{}", logged_out.status());
    // Either may get the first turn; the other was never sent: its visit had ended (a learner
    // leaving a shared computer).
    let (sent, waited) = match first.status() {
        Status::GatewayTimeout => (first, second),
        _ => (second, first),
    };
    assert_eq!(sent.status(), Status::GatewayTimeout);
    let body = refused(waited, Status::Unauthorized).await;
    assert!(body.contains("ended"), "{body}");
    assert_eq!(lms.received().len(), 1);
}

#[rocket::async_test]
async fn teachers_launching_with_a_sourcedid_are_not_listed_as_learners() {
    let lms = MockLms::start().await;
    let app = spawn_app().await;
    // Moodle sends every role a sourcedid: a teacher's own launch records no grade target.
    let teacher = || {
        learner_launch(&lms, "/ok", "teacher-t", "sid-t")
            .roles("Instructor,urn:lti:sysrole:ims/lis/Administrator")
    };
    app.launch(&teacher()).await;
    assert_eq!(app.count("outcome_targets").await, 0);
    // A record of the same user from before (as a learner, or by an older version) goes at their
    // next launch as staff.
    app.launch(&learner_launch(&lms, "/ok", "teacher-t", "sid-t"))
        .await;
    assert_eq!(app.count("outcome_targets").await, 1);
    app.launch(&teacher()).await;
    assert_eq!(app.count("outcome_targets").await, 0);
    // Someone who is both (a teacher enrolled as a student too), and a launch with unknown roles
    // only, are learners to grade.
    app.launch(&learner_launch(&lms, "/ok", "both-b", "sid-b").roles("Instructor,Learner"))
        .await;
    app.launch(&learner_launch(&lms, "/ok", "odd-o", "sid-o").roles("urn:example:Guest"))
        .await;
    assert_eq!(app.count("outcome_targets").await, 2);
    let body = page(app.launch(&teacher()).await, Status::Ok).await;
    assert!(body.contains("href=\"/grades\""), "{body}");
    // Nor is a teacher offered a score of their own, or able to send one.
    assert!(!body.contains("href=\"/grade\""), "{body}");
    let refusal = refused(app.get("/grade").await, Status::Forbidden).await;
    assert!(refusal.contains("No score of your own"), "{refusal}");
    let token = done_token(&app.client);
    let sent = lms.received().len();
    let refusal = refused(
        app.post_form("/grade", format!("score=1&csrf={token}"))
            .await,
        Status::Forbidden,
    )
    .await;
    assert!(refusal.contains("No score of your own"), "{refusal}");
    assert_eq!(lms.received().len(), sent);
    let body = page(app.get("/grades").await, Status::Ok).await;
    assert!(
        body.contains("Learner both-b") && body.contains("Learner odd-o"),
        "{body}"
    );
    assert!(!body.contains("teacher-t"), "{body}");
}

#[rocket::async_test]
async fn a_score_the_lms_is_still_processing_is_not_shown_as_known() {
    let lms = MockLms::start().await;
    let app = spawn_app().await;
    app.launch(&learner_launch(&lms, "/processing", "learner-p", "sid-p"))
        .await;
    app.launch(&Launch::new("/initial_staff")).await;
    let token = csrf_in(&page(app.get("/grades").await, Status::Ok).await);
    let body = page(
        app.post_form(
            "/grades/set",
            format!("user_id=learner-p&score=0.5&csrf={token}"),
        )
        .await,
        Status::Ok,
    )
    .await;
    assert!(body.contains("processing"), "{body}");
    assert!(body.contains("read the score again"), "{body}");
    let body = page(app.get("/grades").await, Status::Ok).await;
    let row = row_of(&body, "learner-p");
    assert!(row.contains("unknown") && !row.contains("0.5"), "{row}");
    lms.assert_all_valid();
}

#[rocket::async_test]
async fn a_score_after_a_write_that_may_or_may_not_have_been_taken_is_unknown() {
    let lms = MockLms::start().await;
    let app = spawn_app().await;
    // Two learners known at 0.7; writes to the first fail after reaching the LMS (500s), to the
    // second before it (403): only the first gradebook may have changed.
    for (user, path) in [("learner-u", "/down"), ("learner-n", "/forbidden")] {
        app.launch(&learner_launch(&lms, path, user, &format!("sid-{user}")))
            .await;
    }
    sqlx::query("UPDATE outcome_targets SET last_score = 0.7, score_known_at = ?")
        .bind(now() as i64)
        .execute(&app.state().db)
        .await
        .unwrap();
    app.launch(&Launch::new("/initial_staff")).await;
    let token = csrf_in(&page(app.get("/grades").await, Status::Ok).await);
    for user in ["learner-u", "learner-n"] {
        let form = format!("user_id={user}&score=0.2&csrf={token}");
        let res = app.post_form("/grades/set", form).await;
        assert_eq!(res.status(), Status::BadGateway);
    }
    let body = page(app.get("/grades").await, Status::Ok).await;
    assert!(
        row_of(&body, "learner-u").contains("unknown"),
        "{}",
        row_of(&body, "learner-u")
    );
    assert!(
        row_of(&body, "learner-n").contains("0.7"),
        "{}",
        row_of(&body, "learner-n")
    );
    lms.assert_all_valid();
}

#[rocket::async_test]
async fn staff_see_and_set_the_grades_of_their_resource_link() {
    let lms = MockLms::start().await;
    let app = spawn_app().await;
    app.launch(&learner_launch(&lms, "/ok", "learner-a", "sid-a"))
        .await;
    app.launch(&learner_launch(&lms, "/ok", "learner-b", MOODLE_SOURCEDID))
        .await;
    // Someone on another resource link is not listed.
    app.launch(
        &learner_launch(&lms, "/ok", "learner-c", "sid-c").set("resource_link_id", "link-2"),
    )
    .await;
    // A learner's session cannot open the staff page.
    refused(app.get("/grades").await, Status::Forbidden).await;

    let landing = page(app.launch(&Launch::new("/initial_staff")).await, Status::Ok).await;
    assert!(landing.contains("href=\"/grades\""), "{landing}");
    let body = page(app.get("/grades").await, Status::Ok).await;
    assert!(body.contains("Learner learner-a") && body.contains("Learner learner-b"));
    assert!(!body.contains("learner-c"));
    assert!(body.contains("unknown"), "no score read yet: {body}");
    let token = csrf_in(&body);

    let body = page(
        app.post_form(
            "/grades/set",
            format!("user_id=learner-a&score=0.5&csrf={token}"),
        )
        .await,
        Status::Ok,
    )
    .await;
    assert!(
        body.contains("Learner learner-a") && body.contains("success"),
        "{body}"
    );
    assert_eq!(lms.score_of("sid-a").as_deref(), Some("0.5"));
    let body = refused(
        app.post_form(
            "/grades/set",
            format!("user_id=learner-a&score=2&csrf={token}"),
        )
        .await,
        Status::UnprocessableEntity,
    )
    .await;
    assert!(
        body.contains("<a href=\"/grades\">Back to the grade page</a>"),
        "{body}"
    );
    refused(
        app.post_form(
            "/grades/set",
            format!("user_id=learner-c&score=1&csrf={token}"),
        )
        .await,
        Status::NotFound,
    )
    .await;
    refused(
        app.post_form("/grades/set", "user_id=learner-a&score=1&csrf=x".into())
            .await,
        Status::Forbidden,
    )
    .await;

    // Read on demand: A has 0.5, B has none.
    // Reading every score calls the LMS: only with the page's token, never from a GET.
    let before = lms.received().len();
    refused(
        app.post_form("/grades/refresh", "csrf=forged".into()).await,
        Status::Forbidden,
    )
    .await;
    let body = page(app.get("/grades?refresh=true").await, Status::Ok).await;
    assert!(!body.contains("Scores just read from the LMS"), "{body}");
    assert_eq!(lms.received().len(), before);
    let body = page(
        app.post_form("/grades/refresh", format!("csrf={token}"))
            .await,
        Status::Ok,
    )
    .await;
    assert!(body.contains("Scores just read from the LMS"), "{body}");
    assert!(row_of(&body, "learner-a").contains("0.5"), "{body}");
    assert!(row_of(&body, "learner-b").contains("none"), "{body}");

    let sent = lms.received().len();
    let body = page(
        app.post_form("/grades/delete", format!("user_id=learner-a&csrf={token}"))
            .await,
        Status::Ok,
    )
    .await;
    assert!(body.contains("Delete the score?"), "{body}");
    assert!(body.contains("value=\"learner-a\""), "{body}");
    assert_eq!(lms.received().len(), sent);
    let body = page(
        app.post_form(
            "/grades/delete",
            format!("user_id=learner-a&csrf={token}&confirmed=true"),
        )
        .await,
        Status::Ok,
    )
    .await;
    assert!(body.contains("Score deleted"), "{body}");
    assert_eq!(lms.score_of("sid-a"), None);
    let body = page(app.get("/grades").await, Status::Ok).await;
    let row_a = row_of(&body, "learner-a");
    assert!(row_a.contains("none"), "{body}");

    let ops: Vec<String> = lms.received().into_iter().map(|r| r.operation).collect();
    assert_eq!(
        ops,
        ["replaceResult", "readResult", "readResult", "deleteResult"]
    );
    lms.assert_all_valid();
}

#[rocket::async_test]
async fn bad_outcomes_settings_stop_the_start() {
    use rocket::figment::Figment;
    type Configure = fn(Figment) -> Figment;
    let cases: [(&str, Configure); 6] = [
        ("timeout -1", |f| f.merge(("outcomes_timeout", -1.0))),
        ("timeout 0", |f| f.merge(("outcomes_timeout", 0))),
        ("timeout 1e19", |f| f.merge(("outcomes_timeout", 1e19))),
        ("timeout 3601", |f| f.merge(("outcomes_timeout", 3601))),
        ("attempts 0", |f| f.merge(("outcomes_attempts", 0))),
        ("attempts 100000", |f| {
            f.merge(("outcomes_attempts", 100_000))
        }),
    ];
    for (case, configure) in cases {
        let dir = temp_dir();
        let figment = rocket_lti_tool::figment()
            .merge((
                "database_url",
                format!("sqlite://{}", dir.join("t.sqlite").display()),
            ))
            .merge(("log_level", "off"));
        let started = rocket::local::asynchronous::Client::tracked(rocket_lti_tool::build(
            configure(figment),
        ))
        .await;
        match started {
            Ok(_) => panic!("{case} was accepted"),
            // Rocket panics on an error dropped unread.
            Err(e) => assert!(matches!(
                e.kind(),
                rocket::error::ErrorKind::FailedFairings(_)
            )),
        }
        let _ = std::fs::remove_dir_all(dir);
    }
    // Whole seconds and a retry count are fine (`spawn_app_with` asserts the start), and an
    // empty CA file (`ROCKET_OUTCOMES_CA_FILE=` in an env file) is none, as an empty public_url is.
    spawn_app_with(|f| {
        f.merge(("outcomes_timeout", 5))
            .merge(("outcomes_attempts", 1))
            .merge(("outcomes_ca_file", ""))
    })
    .await;
}

/// The README's example page (compiled and mounted; the test app has no `done` template, so the
/// test takes the token as that page would).
#[rocket::get("/done")]
fn done_page(
    lti: rocket_lti_tool::web::guards::LtiSession,
    outcomes: &rocket::State<rocket_lti_tool::web::grades::Outcomes>,
) -> rocket_dyn_templates::Template {
    let csrf = outcomes.csrf_token(&lti.session_id);
    rocket_dyn_templates::Template::render("done", rocket_dyn_templates::context! { csrf })
}

#[derive(rocket::FromForm)]
struct Done<'r> {
    csrf: Option<&'r str>,
}

/// The README's example, as a fork would mount it.
#[rocket::post("/done", data = "<form>")]
async fn done(
    lti: rocket_lti_tool::web::guards::LtiSession,
    outcomes: &rocket::State<rocket_lti_tool::web::grades::Outcomes>,
    form: rocket::form::Form<Done<'_>>,
) -> Result<&'static str, rocket_lti_tool::error::LtiError> {
    outcomes.check_csrf(&lti.session_id, form.csrf)?;
    lti.post_grade(outcomes, 0.8).await?;
    Ok("Your score was sent to the gradebook.")
}

/// The grade forms' token for the client's current session (as the pages put it in their forms).
fn done_token(client: &rocket::local::asynchronous::Client) -> String {
    let session = client
        .cookies()
        .get("lti_session")
        .expect("a session")
        .value()
        .to_string();
    let outcomes = client
        .rocket()
        .state::<rocket_lti_tool::web::grades::Outcomes>()
        .expect("outcomes state");
    outcomes.csrf_token(&session)
}

/// Where the tests mount the README's example routes.
const EXAMPLE: &str = "/readme-example";

/// A client of `app`'s configuration with `routes` mounted under [`EXAMPLE`]: a fork that adds
/// the examples to the app keeps its tests passing.
async fn example_client(
    app: &TestApp,
    routes: Vec<rocket::Route>,
) -> rocket::local::asynchronous::Client {
    rocket::local::asynchronous::Client::tracked(
        rocket_lti_tool::build(app.client.rocket().figment().clone()).mount(EXAMPLE, routes),
    )
    .await
    .unwrap()
}

/// A fork's page that grades every user's work and sends a score only where one can be sent.
#[rocket::get("/can-grade")]
fn can_grade(lti: rocket_lti_tool::web::guards::LtiSession) -> &'static str {
    match lti.can_post_grade() {
        true => "yes",
        false => "no",
    }
}

#[rocket::async_test]
async fn a_fork_can_ask_whether_a_launch_can_be_graded() {
    let lms = MockLms::start().await;
    let app = spawn_app().await;
    let client = example_client(&app, rocket::routes![can_grade]).await;
    let host = rocket::http::Header::new("Host", HOST);
    // Each launch has a nonce of its own.
    let learner = || learner_launch(&lms, "/ok", "learner-1", "sid-1");
    let cases = [
        (learner(), "yes"),
        // No grade passback set up for this link.
        (
            learner()
                .without("lis_outcome_service_url")
                .without("lis_result_sourcedid"),
            "no",
        ),
        // Staff have no score of their own.
        (learner().roles("Instructor"), "no"),
        // A result id that no grade request can carry.
        (learner().set("lis_result_sourcedid", "a\u{1b}b"), "no"),
    ];
    for (launch, expected) in cases {
        let res = client
            .post("/any")
            .header(host.clone())
            .header(rocket::http::ContentType::Form)
            .body(launch.signed_body())
            .dispatch()
            .await;
        assert_eq!(res.status(), Status::Ok);
        let res = client
            .get(format!("{EXAMPLE}/can-grade"))
            .header(host.clone())
            .dispatch()
            .await;
        assert_eq!(res.into_string().await.as_deref(), Some(expected));
    }
    assert!(lms.received().is_empty());
}

#[rocket::async_test]
async fn the_readme_example_posts_a_grade_from_a_fork() {
    let lms = MockLms::start().await;
    let app = spawn_app().await;
    let client = example_client(&app, rocket::routes![done_page, done]).await;
    let host = rocket::http::Header::new("Host", HOST);
    let launch = learner_launch(&lms, "/ok", "learner-1", "sid-1");
    let res = client
        .post("/any")
        .header(host.clone())
        .header(rocket::http::ContentType::Form)
        .body(launch.signed_body())
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    // Without the page's token (another site's form): refused, nothing sent.
    let res = client
        .post(format!("{EXAMPLE}/done"))
        .header(host.clone())
        .header(rocket::http::ContentType::Form)
        .body("csrf=forged")
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Forbidden);
    assert!(lms.received().is_empty());
    let res = client
        .post(format!("{EXAMPLE}/done"))
        .header(host.clone())
        .header(rocket::http::ContentType::Form)
        .body(format!("csrf={}", done_token(&client)))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    assert_eq!(
        res.into_string().await.unwrap(),
        "Your score was sent to the gradebook."
    );
    assert_eq!(lms.score_of("sid-1").as_deref(), Some("0.8"));
    lms.assert_all_valid();

    // A learner launched without grade passback gets the error page, not a 500.
    let plain = Launch::new("/any").roles("Learner").user("learner-2");
    client
        .post("/any")
        .header(host.clone())
        .header(rocket::http::ContentType::Form)
        .body(plain.signed_body())
        .dispatch()
        .await;
    let res = client
        .post(format!("{EXAMPLE}/done"))
        .header(host)
        .header(rocket::http::ContentType::Form)
        .body(format!("csrf={}", done_token(&client)))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Conflict);
    assert!(res
        .into_string()
        .await
        .unwrap()
        .contains("lis_outcome_service_url"));
}

/// The staff page's table row of a learner (empty when there is none).
fn row_of(body: &str, user: &str) -> String {
    body.split("<tr>")
        .find(|r| r.contains(&format!("<code>{user}</code>")))
        .unwrap_or_default()
        .to_string()
}
