//! Known-answer vectors from an independent implementation (oauthlib), in tests/fixtures/.

use rocket_lti_tool::lti::oauth::{base_uri_of_url, signature_base_string, verify};
use rocket_lti_tool::lti::params::{parse_form, Params};
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!("../fixtures/vectors.json")).expect("vectors.json parses")
}

/// Decodes a vector's URL query and body the way the server does.
fn request_params(v: &Value) -> Params {
    let url = v["url"].as_str().unwrap();
    let mut params = match url.split_once('?') {
        Some((_, q)) => parse_form(q.as_bytes()).unwrap(),
        None => Params::new(),
    };
    params.extend(parse_form(v["body"].as_str().unwrap().as_bytes()).unwrap());
    params
}

fn pairs(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn base_string(v: &Value, params: &Params) -> String {
    let uri = base_uri_of_url(v["url"].as_str().unwrap()).unwrap();
    signature_base_string(
        v["method"].as_str().unwrap(),
        &uri,
        params.iter().map(|(a, b)| (a.as_str(), b.as_str())),
    )
}

#[test]
fn every_valid_vector_verifies_with_the_expected_base_string() {
    let all = vectors();
    let valid = all["valid"].as_array().unwrap();
    assert!(valid.len() >= 10);
    for v in valid {
        let name = v["name"].as_str().unwrap();
        let params = request_params(v);
        // Our decoding of the wire format agrees with the vector's decoded parameters.
        let mut expected = pairs(&v["query_params"]);
        expected.extend(pairs(&v["body_params"]));
        assert_eq!(params, expected, "{name}: decoded parameters");
        assert_eq!(
            base_string(v, &params),
            v["base_string"].as_str().unwrap(),
            "{name}: base string"
        );
        let signature = v["oauth_signature"].as_str().unwrap();
        assert!(
            verify(
                v["base_string"].as_str().unwrap(),
                v["consumer_secret"].as_str().unwrap(),
                signature
            ),
            "{name}"
        );
    }
}

#[test]
fn every_invalid_vector_is_refused() {
    let all = vectors();
    let invalid = all["invalid"].as_array().unwrap();
    assert!(invalid.len() >= 8);
    for v in invalid {
        let name = v["name"].as_str().unwrap();
        let params = request_params(v);
        let base = base_string(v, &params);
        assert!(
            !verify(
                &base,
                v["consumer_secret"].as_str().unwrap(),
                v["oauth_signature"].as_str().unwrap()
            ),
            "{name} verified"
        );
    }
}

#[test]
fn rfc5849_example_base_string() {
    let all = vectors();
    for v in all["base_string_only"].as_array().unwrap() {
        let url = v["url"].as_str().unwrap();
        let mut params = parse_form(url.split_once('?').unwrap().1.as_bytes()).unwrap();
        params.extend(pairs(&v["params"]));
        assert_eq!(base_string(v, &params), v["base_string"].as_str().unwrap());
    }
}
