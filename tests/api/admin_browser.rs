//! The admin area end to end in a real headless Chromium (through chromedriver), against the real
//! binary on a loopback port: set the password with the CLI, log in, create a consumer, read its
//! secret off the page, launch with it over HTTP, disable it in the browser, see launches refused.
//! Skips with a reason when chromium or chromedriver is missing, except under CI (`CI` set).

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use crate::helpers::{temp_dir, Launch};

const BIN: &str = env!("CARGO_BIN_EXE_lti-tool");

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// chromedriver in a process group of its own, killed with the browsers it started when the
/// test ends (a failed assertion never reaches `close()`, and would leave Chromium running).
struct KilledGroup(Child);

impl KilledGroup {
    fn spawn(command: &mut Command) -> std::io::Result<KilledGroup> {
        use std::os::unix::process::CommandExt;
        command.process_group(0).spawn().map(KilledGroup)
    }
}

impl Drop for KilledGroup {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.0.wait();
    }
}

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn wait_for_port(port: u16, what: &str) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let start = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what} did not listen on port {port} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `lti-tool ARGS` on the test's database, with `input` on standard input.
fn cli(env: &[(&str, String)], args: &[&str], input: &str) -> std::process::Output {
    let mut child = Command::new(BIN)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lti-tool runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("lti-tool ends")
}

async fn browser(driver_port: u16, profile: &Path, chromium: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--disable-crash-reporter", "--disable-breakpad",
                "--window-size=1200,900",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .expect("a chromium session through chromedriver")
}

/// POSTs a signed launch to the real server; returns the status and the page.
async fn launch(base: &str, key: &str, secret: &str) -> (u16, String) {
    let mut launch = Launch::new("/initial").consumer(key, secret);
    launch.url = format!("{base}/initial");
    let res = reqwest::Client::new()
        .post(&launch.url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(launch.signed_body())
        .send()
        .await
        .expect("the server answers");
    let status = res.status().as_u16();
    (status, res.text().await.unwrap_or_default())
}

async fn text(c: &Client, css: &str) -> String {
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .text()
        .await
        .expect("element text")
}

/// Waits until the page's `h1` reads `expected` (the click that leads there may not have
/// navigated yet, so the old page's heading is read again until it has).
async fn wait_heading(c: &Client, expected: &str) {
    let start = Instant::now();
    loop {
        let now = match c.find(Locator::Css("h1")).await {
            Ok(h1) => h1.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if now == expected {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the heading is {now:?}, not {expected:?}"
        );
        rocket::tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn screenshot(c: &Client, name: &str) {
    // Set ADMIN_E2E_SCREENSHOTS=dir to look at the pages.
    if let Some(dir) = std::env::var_os("ADMIN_E2E_SCREENSHOTS") {
        if let Ok(png) = c.screenshot().await {
            let _ = std::fs::write(Path::new(&dir).join(format!("{name}.png")), png);
        }
    }
}

#[rocket::async_test]
async fn admin_in_a_real_browser_creates_a_key_that_launches_then_disables_it() {
    let driver = on_path(&["chromedriver"]);
    let chromium = on_path(&["chromium", "chromium-browser", "google-chrome"]);
    let (Some(driver), Some(chromium)) = (driver, chromium) else {
        let why = "chromium and chromedriver are needed (apt-get install chromium chromium-driver)";
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the browser test: {why}"
        );
        eprintln!(
            "SKIPPED admin_in_a_real_browser_creates_a_key_that_launches_then_disables_it: {why}"
        );
        return;
    };

    let dir = temp_dir();
    let port = free_port();
    let env = vec![
        (
            "ROCKET_DATABASE_URL",
            format!("sqlite://{}", dir.join("db/e2e.sqlite").display()),
        ),
        ("ROCKET_PORT", port.to_string()),
        ("ROCKET_ADDRESS", "127.0.0.1".to_string()),
        (
            "ROCKET_SECRET_KEY",
            "hPRYyVRiMyxpw5sBB1XeCMN1kFsDCqKvBi2QJxBVHQk=".to_string(),
        ),
        ("ROCKET_LOG_LEVEL", "critical".to_string()),
    ];

    // The command line refuses mismatched or short passwords, then sets one.
    let out = cli(
        &env,
        &["admin", "set-password"],
        "first-password\nsecond-password\n",
    );
    assert!(!out.status.success(), "mismatched lines are refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("differ"));
    let out = cli(&env, &["admin", "set-password"], "short\n");
    assert!(!out.status.success(), "a short password is refused");
    let password = "e2e admin password";
    let out = cli(
        &env,
        &["admin", "set-password"],
        &format!("{password}\n{password}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let _server = Killed(
        Command::new(BIN)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the server starts"),
    );
    let driver_port = free_port();
    let _driver = KilledGroup::spawn(
        Command::new(&driver)
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .expect("chromedriver starts");
    wait_for_port(port, "lti-tool");
    wait_for_port(driver_port, "chromedriver");
    let base = format!("http://127.0.0.1:{port}");
    let c = browser(driver_port, &dir.join("chromium-profile"), &chromium).await;

    // Log in.
    c.goto(&format!("{base}/admin")).await.expect("open /admin");
    wait_heading(&c, "Admin login").await;
    screenshot(&c, "login").await;
    c.find(Locator::Css("#password"))
        .await
        .expect("password field")
        .send_keys(password)
        .await
        .expect("type the password");
    c.find(Locator::Css("form[action='/admin/login'] button"))
        .await
        .expect("log-in button")
        .click()
        .await
        .expect("log in");
    wait_heading(&c, "Consumer keys").await;

    // Create a consumer and read what the page shows.
    c.find(Locator::LinkText("Add a consumer key"))
        .await
        .expect("add link")
        .click()
        .await
        .expect("open the form");
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#key"))
        .await
        .expect("key field")
        .send_keys("e2e-lms")
        .await
        .expect("type the key");
    c.find(Locator::Css("#name"))
        .await
        .expect("name field")
        .send_keys("End-to-end LMS")
        .await
        .expect("type the name");
    screenshot(&c, "new").await;
    c.find(Locator::Css(
        "form[action='/admin/consumers'] button[type=submit]",
    ))
    .await
    .expect("create button")
    .click()
    .await
    .expect("create");
    let secret = text(&c, "#consumer-secret").await;
    assert_eq!(text(&c, "#consumer-key").await, "e2e-lms");
    assert!((16..=64).contains(&secret.len()), "{secret:?}");
    // Numbered as `launch_pages()` lists them (a fork's first).
    let initial = rocket_lti_tool::web::pages::launch_pages()
        .iter()
        .position(|(path, _)| *path == "/initial")
        .expect("/initial is a launch page")
        + 1;
    assert_eq!(
        text(&c, &format!("#launch-url-{initial}")).await,
        format!("{base}/initial")
    );
    // The copy buttons appear when scripts run.
    let copy = c
        .find(Locator::Css("button[data-copy='consumer-secret']"))
        .await
        .expect("copy button");
    assert!(copy.is_displayed().await.expect("displayed"));
    screenshot(&c, "secret").await;

    // The LMS, signing with what the page showed, is let in.
    let (status, body) = launch(&base, "e2e-lms", &secret).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Initial request"));

    // The list shows the launch but never the secret; disable the consumer there.
    c.goto(&format!("{base}/admin"))
        .await
        .expect("back to the list");
    let source = c.source().await.expect("page source");
    assert!(source.contains("End-to-end LMS"));
    assert!(!source.contains(&secret), "the list never shows a secret");
    screenshot(&c, "list").await;
    if std::env::var_os("ADMIN_E2E_SCREENSHOTS").is_some() {
        c.set_window_size(390, 844).await.expect("phone size");
        screenshot(&c, "list-phone").await;
        c.set_window_size(1200, 900).await.expect("laptop size");
    }
    c.find(Locator::Css("button[aria-label='Disable e2e-lms']"))
        .await
        .expect("disable button")
        .click()
        .await
        .expect("disable");
    let notice = text(&c, "p.notice").await;
    assert!(notice.contains("e2e-lms is disabled"), "{notice}");

    let (status, body) = launch(&base, "e2e-lms", &secret).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("disabled"));
    assert!(!body.contains(&secret));

    // Log out with the button: /admin asks for the password again.
    c.find(Locator::Css("form[action='/admin/logout'] button"))
        .await
        .expect("log-out button")
        .click()
        .await
        .expect("log out");
    wait_heading(&c, "Admin login").await;

    // Framed by another site (an LMS), a page asks its frame to fit it (Canvas's
    // lti.frameResize), with the page's height.
    let lms_page = dir.join("lms.html");
    std::fs::write(
        &lms_page,
        format!(
            "<!doctype html><script>window.asked = [];\
             addEventListener('message', e => asked.push(e.data));</script>\
             <iframe src='{base}/' width=700 height=300></iframe>"
        ),
    )
    .expect("write the framing page");
    c.goto(&format!("file://{}", lms_page.display()))
        .await
        .expect("open the framing page");
    let deadline = Instant::now() + Duration::from_secs(10);
    let asked = loop {
        let asked = c
            .execute("return window.asked", vec![])
            .await
            .expect("read the messages");
        let asked: Vec<String> = serde_json::from_value(asked).expect("strings");
        if !asked.is_empty() || Instant::now() > deadline {
            break asked;
        }
        rocket::tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let message: serde_json::Value =
        serde_json::from_str(asked.first().expect("a resize message")).expect("JSON");
    assert_eq!(message["subject"], "lti.frameResize", "{message}");
    let height = message["height"].as_u64().expect("a height");
    assert!(height > 300, "{message}");
    c.close().await.expect("close the browser");
    let _ = std::fs::remove_dir_all(&dir);
}

#[rocket::async_test]
async fn cli_rekey_re_encrypts_the_secrets_after_a_key_change() {
    let dir = temp_dir();
    let url = format!("sqlite://{}", dir.join("db/rekey.sqlite").display());
    let (key_a, key_b) = (
        "hPRYyVRiMyxpw5sBB1XeCMN1kFsDCqKvBi2QJxBVHQk=",
        "yTxL0aAkBGnUwQVR95xPzVYeyBs7QJP3bTpqPUVBdYw=",
    );
    let env = |key: &str| {
        vec![
            ("ROCKET_DATABASE_URL", url.clone()),
            ("ROCKET_SECRET_KEY", key.to_string()),
            ("ROCKET_LOG_LEVEL", "critical".to_string()),
        ]
    };
    let secret = "a-secret-of-twenty-chars";
    let args = ["consumer", "add", "k1", "--secret", secret];
    assert!(cli(&env(key_a), &args, "").status.success());
    // Under the new key, a wrong old key changes nothing; the right one re-encrypts.
    let out = cli(&env(key_b), &["admin", "rekey"], "not-the-old-key\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was changed"));
    let out = cli(&env(key_b), &["admin", "rekey"], &format!("{key_a}\n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("re-encrypted 1 "));

    let db = rocket_lti_tool::store::open(&url).await.unwrap();
    use rocket_lti_tool::crypto::{install, SecretCipher};
    install(&db, SecretCipher::from_key_material(key_b.as_bytes()));
    let found = rocket_lti_tool::store::consumers::find(&db, "k1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.secret, secret);
    db.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
