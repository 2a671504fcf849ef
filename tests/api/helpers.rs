//! Test harness: an app on its own fresh database, and a launch signer that is not our verifier
//! (the `oauth1-request` crate), so a test passes only if both implementations agree.

#![allow(dead_code)]

use std::num::NonZeroU64;
use std::path::PathBuf;

use oauth1_request as oauth;
use rocket::figment::Figment;
use rocket::http::{ContentType, Header, Status};
use rocket::local::asynchronous::{Client, LocalResponse};
use rocket_lti_tool::store::{self, consumers};
use rocket_lti_tool::web::AppState;

/// The host the tests pretend to be reached at; signatures are computed for it.
pub const HOST: &str = "tool.test";

/// A running app (through Rocket's local client) on a database of its own.
pub struct TestApp {
    pub client: Client,
    pub dir: PathBuf,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh temporary folder.
pub fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lti-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The app with the default (debug) settings and a fresh database.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|f| f).await
}

/// The app with extra settings merged over the defaults.
pub async fn spawn_app_with(configure: impl FnOnce(Figment) -> Figment) -> TestApp {
    let dir = temp_dir();
    let url = format!("sqlite://{}", dir.join("db/test.sqlite").display());
    let figment = rocket_lti_tool::figment()
        .merge(("database_url", url))
        .merge(("log_level", "off"));
    let client = Client::tracked(rocket_lti_tool::build(configure(figment)))
        .await
        .expect("app starts");
    TestApp { client, dir }
}

/// A Rocket secret key for tests that run the release profile.
pub const TEST_SECRET_KEY: &str =
    "hPRYyVRiMyxpw5sBB1XeCMN1kFsDCqKvBi2QJxBVHQk6hPRYyVRiMyxpw5sBB1XeCMN1kFsDCqKvBi2QJxBVHQk=";

/// The app in the release profile (no demo consumer: it adds `release-key` / `release-secret-123456`).
pub async fn spawn_release_app() -> TestApp {
    let app = spawn_app_with(|f| f.select("release").merge(("secret_key", TEST_SECRET_KEY))).await;
    app.add_consumer("release-key", "release-secret-123456")
        .await;
    app
}

impl TestApp {
    /// The database URL this app uses (for the command line in the same test).
    pub fn database_url(&self) -> String {
        format!("sqlite://{}", self.dir.join("db/test.sqlite").display())
    }

    pub fn state(&self) -> &AppState {
        self.client.rocket().state::<AppState>().expect("state")
    }

    pub async fn add_consumer(&self, key: &str, secret: &str) {
        assert!(
            consumers::insert(&self.state().db, key, secret, key, store::now())
                .await
                .unwrap()
        );
    }

    /// POSTs a launch signed by the independent signer.
    pub async fn launch(&self, launch: &Launch) -> LocalResponse<'_> {
        self.post_form(&launch.path, launch.signed_body()).await
    }

    /// POSTs a form body as is.
    pub async fn post_form(&self, path: &str, body: String) -> LocalResponse<'_> {
        self.client
            .post(path.to_string())
            .header(Header::new("Host", HOST))
            .header(ContentType::Form)
            .body(body)
            .dispatch()
            .await
    }

    pub async fn get(&self, path: &str) -> LocalResponse<'_> {
        self.client
            .get(path.to_string())
            .header(Header::new("Host", HOST))
            .dispatch()
            .await
    }

    pub async fn post(&self, path: &str) -> LocalResponse<'_> {
        self.client
            .post(path.to_string())
            .header(Header::new("Host", HOST))
            .dispatch()
            .await
    }

    /// Number of rows in a table.
    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&self.state().db)
            .await
            .unwrap()
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A launch to sign: starts as a valid instructor launch with the demo consumer.
#[derive(Clone, Debug)]
pub struct Launch {
    pub path: String,
    pub url: String,
    pub key: String,
    pub secret: String,
    pub params: Vec<(String, String)>,
    pub timestamp: u64,
    pub nonce: String,
}

impl Launch {
    pub fn new(path: &str) -> Self {
        Launch {
            path: path.to_string(),
            url: format!("http://{HOST}{path}"),
            key: "__consumer_key__".into(),
            secret: "__lti_secret__".into(),
            params: [
                ("lti_message_type", "basic-lti-launch-request"),
                ("lti_version", "LTI-1p0"),
                ("resource_link_id", "link-1"),
                ("user_id", "teacher-1"),
                ("roles", "Instructor"),
                ("lis_person_name_full", "Ada Lovelace"),
                ("context_id", "course-1"),
                ("context_title", "Analytical Engines"),
            ]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
            timestamp: now(),
            nonce: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    /// Sets a parameter, replacing every earlier value.
    pub fn set(mut self, name: &str, value: &str) -> Self {
        self.params.retain(|(n, _)| n != name);
        self.params.push((name.into(), value.into()));
        self
    }

    /// Adds a value (repeated names are kept).
    pub fn add(mut self, name: &str, value: &str) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    pub fn without(mut self, name: &str) -> Self {
        self.params.retain(|(n, _)| n != name);
        self
    }

    pub fn roles(self, roles: &str) -> Self {
        self.set("roles", roles)
    }

    pub fn user(self, id: &str) -> Self {
        self.set("user_id", id)
    }

    pub fn consumer(mut self, key: &str, secret: &str) -> Self {
        self.key = key.into();
        self.secret = secret.into();
        self
    }

    /// Signs for this absolute URL (as the LMS knows the tool) instead of `http://HOST/path`.
    pub fn signed_for(mut self, url: &str) -> Self {
        self.url = url.to_string();
        self
    }

    pub fn timestamp(mut self, ts: u64) -> Self {
        self.timestamp = ts;
        self
    }

    fn builder(&self) -> oauth::Builder<'_, oauth::HmacSha1, &str> {
        let mut b = oauth::Builder::new(
            oauth::Credentials::new(self.key.as_str(), self.secret.as_str()),
            oauth::HmacSha1::new(),
        );
        b.nonce(self.nonce.as_str())
            .timestamp(NonZeroU64::new(self.timestamp))
            .version(true);
        b
    }

    fn list(&self) -> oauth::ParameterList<&str, &str, Vec<(&str, &str)>> {
        oauth::ParameterList::new(
            self.params
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect(),
        )
    }

    /// The form body with the OAuth fields, signed with HMAC-SHA1 by `oauth1-request`.
    pub fn signed_body(&self) -> String {
        // `to_form` writes only the protocol fields (with the signature over everything); the
        // request parameters are serialised separately.
        let list = self.list();
        format!(
            "{}&{}",
            oauth::to_form(&list),
            self.builder().to_form("POST", &self.url, &list)
        )
    }

    /// The launch's own fields as a form body, and its OAuth fields, signed by `oauth1-request`,
    /// as an `Authorization: OAuth` header value instead: `(header, body)`.
    pub fn signed_header(&self) -> (String, String) {
        let list = self.list();
        (self.builder().post(&self.url, &list), oauth::to_form(&list))
    }

    /// The same, signed with PLAINTEXT (which we must refuse).
    pub fn plaintext_body(&self) -> String {
        let mut b: oauth::Builder<'_, _, &str> = oauth::Builder::new(
            oauth::Credentials::new(self.key.as_str(), self.secret.as_str()),
            oauth::Plaintext::new(),
        );
        b.nonce(self.nonce.as_str())
            .timestamp(NonZeroU64::new(self.timestamp))
            .version(true);
        let list = self.list();
        format!(
            "{}&{}",
            oauth::to_form(&list),
            b.to_form("POST", &self.url, &list)
        )
    }

    /// A GET launch: the path with every parameter, signed, in the query string.
    pub fn signed_get_path(&self) -> String {
        let list = self.list();
        let signed = self.builder().to_query("GET", self.url.clone(), &list);
        let oauth_fields = signed.split_once('?').map(|(_, q)| q).unwrap_or_default();
        format!("{}?{}&{oauth_fields}", self.path, oauth::to_form(&list))
    }
}

/// One part of a `multipart/form-data` body with this boundary (the closing `--{boundary}--`
/// follows the last).
pub fn form_data_part(boundary: &str, name: &str, value: &str) -> String {
    format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
}

/// Replaces one form field's value in an encoded body (for tampering after signing).
pub fn tamper(body: &str, name: &str, new_value: &str) -> String {
    body.split('&')
        .map(|pair| match pair.split_once('=') {
            Some((n, _)) if n == name => format!("{n}={new_value}"),
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Removes one form field from an encoded body.
pub fn drop_field(body: &str, name: &str) -> String {
    body.split('&')
        .filter(|pair| pair.split('=').next() != Some(name))
        .collect::<Vec<_>>()
        .join("&")
}

/// Asserts the status and that the body is our HTML page; returns the body.
pub async fn page(response: LocalResponse<'_>, status: Status) -> String {
    assert_eq!(response.status(), status);
    assert_eq!(response.content_type(), Some(ContentType::HTML));
    response.into_string().await.unwrap_or_default()
}

/// The four granted-page texts; a refusal must show none of them.
pub const PAGE_TEXTS: [&str; 4] = [
    "Landing page",
    "Initial request",
    "Session request",
    "Staff page",
];

/// True when the answer removes the session cookie.
pub fn clears_session_cookie(res: &LocalResponse<'_>) -> bool {
    res.headers()
        .get("Set-Cookie")
        .any(|c| c.starts_with("lti_session=;") && c.contains("Max-Age=0"))
}

/// The CSRF token in a page's first form in `<main>` (the header's is for logging out).
pub fn csrf_in(page: &str) -> String {
    let main = &page[page.find("<main>").expect("a main element")..];
    let start = main.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    main[start..].split('"').next().unwrap().to_string()
}

/// `text` as Tera's autoescaping writes it into a page (a fork's paths and descriptions included).
pub fn html_escaped(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&#x27;".to_string(),
            '/' => "&#x2F;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// Asserts a refusal: the status, the error page, and no granted-page text.
pub async fn refused(response: LocalResponse<'_>, status: Status) -> String {
    let body = page(response, status).await;
    for text in PAGE_TEXTS {
        assert!(!body.contains(text), "a refusal shows {text:?}: {body}");
    }
    assert!(!body.contains("__lti_secret__"));
    body
}
