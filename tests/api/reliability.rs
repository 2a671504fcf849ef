//! The real binary under races, crashes, shutdown and storage trouble: each test spawns
//! `lti-tool` on a free loopback port with a fresh database and talks plain HTTP to it.
//! Launches are signed by `oauth1-request` for `http://tool.test` (the server's `public_url`),
//! so a restarted server on another port still checks the same signatures.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use crate::helpers::{csrf_in, temp_dir, Launch, HOST};

/// A spawned `lti-tool serve`, killed when dropped.
struct Server {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Server {
    /// Starts the server on the database in `dir` (created if new).
    fn start(dir: &Path) -> Server {
        Server::start_with(dir, |_| {})
    }

    fn start_with(dir: &Path, configure: impl FnOnce(&mut Command)) -> Server {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lti-tool"));
        cmd.env("ROCKET_PROFILE", "debug")
            .env("ROCKET_ADDRESS", "127.0.0.1")
            .env("ROCKET_PORT", port.to_string())
            .env("ROCKET_DATABASE_URL", db_url(dir))
            .env("ROCKET_PUBLIC_URL", format!("http://{HOST}"))
            .env("ROCKET_LOG_LEVEL", "normal")
            .env("ROCKET_CLI_COLORS", "false")
            .stdin(Stdio::null())
            // Through pipes, not straight into a file: the storage test limits the server's
            // file sizes, and its log must still get out.
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        configure(&mut cmd);
        let mut child = cmd.spawn().expect("lti-tool starts");
        // (Unless `configure` sent them elsewhere.)
        let out = child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>);
        let err = child
            .stderr
            .take()
            .map(|e| Box::new(e) as Box<dyn Read + Send>);
        for mut pipe in [out, err].into_iter().flatten() {
            let mut log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("server.log"))
                .expect("log file");
            std::thread::spawn(move || std::io::copy(&mut pipe, &mut log));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("lti-tool exited at start ({status}): {}", log_of(dir));
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "lti-tool did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Server {
            child,
            port,
            dir: dir.to_path_buf(),
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn log(&self) -> String {
        log_of(&self.dir)
    }

    /// The log once it holds `needle` (or after 10 s): it reaches its file through threads of
    /// the test, which lag on a busy machine.
    fn log_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if log.contains(needle) || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How it exits (after a SIGTERM): fails the test when it takes longer than `limit`.
    fn exit_status_within(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`: no shutdown code runs.
    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn post(&self, path: &str, body: &str) -> std::io::Result<Answer> {
        post(self.port, path, body)
    }

    fn get(&self, path: &str, cookie: Option<&str>) -> std::io::Result<Answer> {
        let cookie = cookie
            .map(|c| format!("Cookie: lti_session={c}\r\n"))
            .unwrap_or_default();
        send(
            self.port,
            format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\n{cookie}Connection: close\r\n\r\n")
                .as_bytes(),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn db_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("db.sqlite").display())
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// An HTTP answer, read to the end of the connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn session_cookie(&self) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (name, v) = l.split_once(": ")?;
            if !name.eq_ignore_ascii_case("set-cookie") {
                return None;
            }
            let v = v.strip_prefix("lti_session=")?;
            let v = v.split(';').next()?;
            (!v.is_empty()).then(|| v.to_string())
        })
    }

    fn is_error_page(&self, title: &str) -> bool {
        self.head
            .to_ascii_lowercase()
            .contains("content-type: text/html")
            && self.body.contains(title)
    }
}

fn send(port: u16, raw: &[u8]) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(raw)?;
    read_answer(&mut stream)
}

/// Sends `raw` and closes the sending side (a client that stops short of its body), then reads
/// the answer.
fn send_then_close(port: u16, raw: &[u8]) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(raw)?;
    stream.shutdown(std::net::Shutdown::Write)?;
    read_answer(&mut stream)
}

fn read_answer(stream: &mut TcpStream) -> std::io::Result<Answer> {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no HTTP answer: {text:?}")))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    Ok(Answer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    })
}

fn post_head(path: &str, length: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {length}\r\nConnection: close\r\n\r\n"
    )
}

fn post(port: u16, path: &str, body: &str) -> std::io::Result<Answer> {
    send(
        port,
        format!("{}{body}", post_head(path, body.len())).as_bytes(),
    )
}

/// Runs SQL against a database file from outside the server.
fn query_db(dir: &Path, sql: &str) -> String {
    let url = db_url(dir);
    let sql = sql.to_string();
    let runtime = rocket::tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("open");
        let value: String = sqlx::query_scalar(&sql)
            .fetch_one(&mut conn)
            .await
            .expect("query");
        value
    })
}

#[test]
fn replayed_launch_raced_fifty_times_succeeds_exactly_once() {
    let dir = temp_dir();
    let server = Server::start(&dir);
    let body = Launch::new("/initial").signed_body();
    let barrier = Arc::new(Barrier::new(50));
    let port = server.port;
    let threads: Vec<_> = (0..50)
        .map(|_| {
            let (barrier, body) = (barrier.clone(), body.clone());
            std::thread::spawn(move || {
                let request = format!("{}{body}", post_head("/initial", body.len()));
                let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                stream
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .expect("timeout");
                barrier.wait();
                stream.write_all(request.as_bytes()).expect("send");
                read_answer(&mut stream).expect("answer")
            })
        })
        .collect();
    let answers: Vec<Answer> = threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    let ok = answers.iter().filter(|a| a.status == 200).count();
    let replays = answers
        .iter()
        .filter(|a| a.status == 401 && a.is_error_page("Launch already used"))
        .count();
    assert_eq!(
        ok,
        1,
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    assert_eq!(replays, 49);
    assert!(answers.iter().all(|a| a.status < 500));
    assert_eq!(
        query_db(&dir, "SELECT CAST(COUNT(*) AS TEXT) FROM sessions"),
        "1"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A launch that was answered 200: its body (to replay) and the session cookie it set.
struct Accepted {
    user: String,
    body: String,
    cookie: String,
}

fn launch_as(server_port: u16, user: &str) -> std::io::Result<Option<Accepted>> {
    let body = Launch::new("/initial").user(user).signed_body();
    let answer = post(server_port, "/initial", &body)?;
    Ok(match (answer.status, answer.session_cookie()) {
        (200, Some(cookie)) => Some(Accepted {
            user: user.to_string(),
            body,
            cookie,
        }),
        _ => None,
    })
}

#[test]
fn a_cookie_name_that_only_decodes_to_the_session_cookie_is_not_read() {
    let dir = temp_dir();
    let server = Server::start(&dir);
    let victim = launch_as(server.port, "victim-1").unwrap().expect("launch");
    let attacker = launch_as(server.port, "attacker-1")
        .unwrap()
        .expect("launch");
    // Another site can set these names (browsers hold only the literal `__Host-` prefix to its
    // rules), and Rocket's own cookie jar decodes and trims them into `__Host-lti_session`.
    for planted in ["%5F_Host-lti_session", "__Host%2Dlti_session"] {
        let cookie = format!(
            "lti_session={}; {planted}={}",
            victim.cookie, attacker.cookie
        );
        let answer = send(
            server.port,
            format!(
                "GET /session HTTP/1.1\r\nHost: {HOST}\r\nCookie: {cookie}\r\n\
                 Connection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(answer.status, 200, "{planted}: {answer:?}");
        assert!(
            answer.body.contains("victim-1") && !answer.body.contains("attacker-1"),
            "{planted}: {}",
            answer.body
        );
    }
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_launch_whose_chunked_body_breaks_off_is_a_failed_launch_and_ends_the_session() {
    let dir = temp_dir();
    let server = Server::start(&dir);
    // On a launch page a failed launch; on the session page, which ignores launch fields, a
    // malformed request that leaves the visit be.
    for (path, visit_goes_on) in [("/any", false), ("/session", true)] {
        let visit = launch_as(server.port, "earlier-user")
            .unwrap()
            .expect("launch");
        let launch = Launch::new(path).user("next-user").signed_body();
        // The launch in a first chunk, then a chunk size that is not one.
        let raw = format!(
            "POST {path} HTTP/1.1\r\nHost: {HOST}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\n\
             Cookie: lti_session={}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
             {:x}\r\n{launch}\r\nzz\r\n",
            visit.cookie,
            launch.len()
        );
        let answer = send(server.port, raw.as_bytes()).unwrap();
        assert_eq!(answer.status, 400, "{path}: {answer:?}");
        // Like any failed launch on a shared computer: the earlier user's visit is over.
        let answer = server.get("/session", Some(&visit.cookie)).unwrap();
        let status = if visit_goes_on { 200 } else { 401 };
        assert_eq!(answer.status, status, "{path}: {answer:?}");
    }
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_form_whose_body_breaks_off_is_refused_not_taken_for_its_start() {
    let dir = temp_dir();
    let server = Server::start(&dir);
    let visit = launch_as(server.port, "learner").unwrap().expect("launch");
    // A form cut short: its start must not pass for the whole form (a score of 0.9 for 0.95, a
    // key cut in two), at any address a form is posted to. A chunked one only past Rocket's own
    // look at the first 14 bytes of a form, for `_method`: it drops an error there, and the body
    // then reads as ended, as the README says; with a length, the shortfall tells.
    const FORM: &str = "csrf=0123456789abcdef&score=0.9";
    for path in [
        "/logout",
        "/grade",
        "/grades/set",
        "/admin/login",
        "/lti/continue",
    ] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {HOST}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nCookie: lti_session={}\r\n",
            visit.cookie
        );
        // The sender stops half way (and closes its side), or sends a chunk size that is none.
        let stopped_at = |start: &str| {
            let raw = format!("{head}Content-Length: 100\r\nConnection: close\r\n\r\n{start}");
            send_then_close(server.port, raw.as_bytes()).unwrap()
        };
        let (closed, closed_early) = (stopped_at(FORM), stopped_at("csrf="));
        let chunked = send(
            server.port,
            format!(
                "{head}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{FORM}\r\nzz\r\n",
                FORM.len()
            )
            .as_bytes(),
        )
        .unwrap();
        for answer in [closed, closed_early, chunked] {
            assert_eq!(answer.status, 400, "{path}: {answer:?}");
            assert!(
                answer.is_error_page("Malformed request"),
                "{path}: {answer:?}"
            );
        }
    }
    // Nothing was done with them: the visit goes on.
    let answer = server.get("/session", Some(&visit.cookie)).unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    let log = server.log_with("POST /lti/continue: 400");
    assert!(log.contains("POST /grades/set: 400"), "{log}");
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_small_malformed_multipart_form_is_a_bad_request_however_it_is_framed() {
    let dir = temp_dir();
    let server = Server::start(&dir);
    // Rocket answers a multipart body it cannot parse as too large (413): three bytes are not.
    let head = format!(
        "POST /admin/login HTTP/1.1\r\nHost: {HOST}\r\n\
         Content-Type: multipart/form-data; boundary=X\r\nConnection: close\r\n"
    );
    for framing in [
        "Content-Length: 3\r\n\r\na=1",
        "Transfer-Encoding: chunked\r\n\r\n3\r\na=1\r\n0\r\n\r\n",
    ] {
        let answer = send(server.port, format!("{head}{framing}").as_bytes()).unwrap();
        assert_eq!(answer.status, 400, "{framing:?}: {answer:?}");
        assert!(answer.is_error_page("Bad request"), "{answer:?}");
    }
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

/// Copies the folder `from` into `to`, subfolders included.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let path = entry.path();
        match path.is_dir() {
            true => copy_dir(&path, &to.join(entry.file_name())),
            false => {
                std::fs::copy(&path, to.join(entry.file_name())).unwrap();
            }
        }
    }
}

#[test]
fn templates_of_another_version_are_warned_about_at_start() {
    let warning = "templates unlike this build's";
    let dir = temp_dir();
    // The templates it was built with: nothing said.
    let server = Server::start(&dir);
    assert_eq!(server.get("/", None).unwrap().status, 200);
    let log = server.log_with("GET /");
    assert!(log.contains("GET /") && !log.contains(warning), "{log}");
    drop(server);
    // An older version's set, left installed by an upgrade: one changed, one missing.
    let templates = dir.join("templates");
    copy_dir(Path::new("templates"), &templates);
    std::fs::write(templates.join("page.html.tera"), "{{ role.raw }}").unwrap();
    std::fs::remove_file(templates.join("admin/refusals.html.tera")).unwrap();
    // A checkout with CRLF line ends holds the same templates: not named.
    let index = std::fs::read_to_string(templates.join("index.html.tera")).unwrap();
    std::fs::write(
        templates.join("index.html.tera"),
        index.replace('\n', "\r\n"),
    )
    .unwrap();
    let server = Server::start_with(&dir, |cmd| {
        cmd.env("ROCKET_TEMPLATE_DIR", &templates);
    });
    let log = server.log_with(warning);
    assert!(
        log.contains("templates unlike this build's (differ: page.html.tera; missing: admin/refusals.html.tera)"),
        "{log}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn values_a_refusal_quotes_cannot_forge_or_reverse_rocket_s_guard_line() {
    let dir = temp_dir();
    // The production log level: Rocket still logs a failed data guard's error.
    let server = Server::start_with(&dir, |cmd| {
        cmd.env("ROCKET_LOG_LEVEL", "critical");
    });
    // Unsigned, from anyone: the refusal quotes the method it does not support.
    let body = "oauth_signature_method=x%0D%0AError%3A+forged+by+anyone%E2%80%AE&\
                oauth_consumer_key=nobody&oauth_timestamp=1&oauth_nonce=n&oauth_signature=s&\
                lti_message_type=basic-lti-launch-request&lti_version=LTI-1p0&resource_link_id=r";
    let answer = server.post("/any", body).unwrap();
    assert_eq!(answer.status, 400, "{answer:?}");
    let log = server.log_with("Data guard");
    assert!(log.contains("Data guard"), "{log}");
    assert!(
        !log.lines()
            .any(|l| l.trim_start().starts_with("Error: forged")),
        "{log}"
    );
    assert!(!log.contains('\u{202e}'), "{log}");
    // Raw UTF-8 in the address, which hyper takes and Rocket logs as it came ("No matching
    // routes for GET /…", at `critical` too): a line separator, a NEL, a bidi override.
    for (path, status) in [
        ("/x\u{2028}Warning:\u{a0}admin\u{a0}logged\u{a0}in", 404),
        ("/nowhere/\u{202e}nigol.nimda\u{85}Error:", 404),
        // The same page to the router.
        ("/lti/config.xml?q=\u{2029}", 200),
    ] {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
        let answer = send(server.port, raw.as_bytes()).unwrap();
        assert_eq!(answer.status, status, "{path:?}: {answer:?}");
    }
    let log = server.log_with("%E2%80%AE");
    assert!(log.contains("/x%E2%80%A8Warning:"), "{log}");
    assert!(
        !log.contains(['\u{2028}', '\u{2029}', '\u{85}', '\u{202e}']),
        "{log}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_malformed_content_type_does_not_turn_colour_codes_on_in_the_log() {
    let dir = temp_dir();
    // `ROCKET_CLI_COLORS=false`, and the log goes to a pipe.
    let server = Server::start(&dir);
    // Rocket's media type parser refuses the space before `;` and the quoted value.
    let answer = send(
        server.port,
        format!(
            "POST /session HTTP/1.1\r\nHost: {HOST}\r\n\
             Content-Type: application/x-www-form-urlencoded ; charset=\"utf-8\"\r\n\
             Content-Length: 3\r\nConnection: close\r\n\r\na=b"
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(answer.status, 401, "{answer:?}");
    // Nor an Accept header it cannot parse, read by the catcher of an unknown page.
    let answer = send(
        server.port,
        format!("GET /nope HTTP/1.1\r\nHost: {HOST}\r\nAccept: \"\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(answer.status, 404, "{answer:?}");
    for _ in 0..3 {
        assert_eq!(server.get("/", None).unwrap().status, 200);
    }
    let log = server.log_with("GET /");
    assert!(log.contains("GET /"), "{log}");
    assert!(!log.contains('\u{1b}'), "{log}");
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn local_grade_services_allowed_in_production_are_warned_about_at_start() {
    let warning = "outcomes_allow_local is on outside the debug profile";
    let dir = temp_dir();
    let server = Server::start_with(&dir, |cmd| {
        cmd.env("ROCKET_PROFILE", "release")
            .env(
                "ROCKET_SECRET_KEY",
                "x7IfNM9mHbuyBk3PhwUZWdDMO0QLsNrg0n05ZnDMr7s=",
            )
            .env("ROCKET_OUTCOMES_ALLOW_LOCAL", "true");
    });
    assert_eq!(server.get("/", None).unwrap().status, 200);
    let log = server.log_with(warning);
    assert!(log.contains(warning), "{log}");
    drop(server);
    std::fs::remove_file(dir.join("server.log")).unwrap();
    // Not in the debug profile, where it is the default (the README's fake LMS is local).
    let server = Server::start(&dir);
    assert_eq!(server.get("/", None).unwrap().status, 200);
    let log = server.log_with("GET /");
    assert!(log.contains("GET /") && !log.contains(warning), "{log}");
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn cleartext_http2_is_not_spoken() {
    // Rocket 0.5's HTTP/2 takes unlimited streams of 16 MiB header lists each; no browser speaks
    // it without TLS, so the server must answer the HTTP/2 preface as HTTP/1.1 does any garbage.
    let dir = temp_dir();
    let server = Server::start(&dir);
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    // An HTTP/2 server answers with a SETTINGS frame (type 4), never with a status line.
    assert!(
        raw.is_empty() || raw.starts_with(b"HTTP/1.1 4"),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    // And HTTP/1.1 still works on the next connection.
    assert_eq!(server.get("/", None).unwrap().status, 200);
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_method_field_does_not_turn_a_post_into_a_head_without_an_answer() {
    let dir = temp_dir();
    let server = Server::start(&dir);
    // Rocket 0.5 reads a leading `_method` form field as the method; as a HEAD, the POST got no
    // answer at all (the connection was cut).
    for path in ["/", "/any", "/logout", "/admin/login"] {
        let body = "_method=HEAD&x=1";
        let answer = send(
            server.port,
            format!("{}{body}", post_head(path, body.len())).as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(answer.status >= 200, "{path}: {answer:?}");
    }
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_method_rocket_cannot_parse_gets_the_error_page_with_its_headers() {
    let dir = temp_dir();
    let server = Server::start(&dir);
    // Rocket answers these before routing, without running the fairings that add headers.
    for method in ["FOO", "PROPFIND"] {
        let answer = send(
            server.port,
            format!("{method} /initial HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(answer.status, 400, "{method}: {answer:?}");
        assert!(answer.is_error_page("Bad request"), "{method}: {answer:?}");
        let head = answer.head.to_ascii_lowercase();
        assert!(head.contains("x-content-type-options: nosniff"), "{head}");
        assert!(head.contains("cache-control: no-store"), "{head}");
        assert!(head.contains("referrer-policy: same-origin"), "{head}");
        assert!(head.contains("object-src 'none'"), "{head}");
    }
    // Answers that do go through the fairings get the header once, with no warning in the log.
    for path in ["/no-such-page", "/static/style.css", "/"] {
        let answer = server.get(path, None).unwrap();
        let head = answer.head.to_ascii_lowercase();
        assert_eq!(
            head.matches("x-content-type-options: nosniff").count(),
            1,
            "{path}: {head}"
        );
    }
    let log = server.log();
    assert!(!log.contains("Refusing to overwrite"), "{log}");
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn kill_9_mid_load_loses_no_answered_launch() {
    let dir = temp_dir();
    let mut server = Server::start(&dir);
    let accepted = Arc::new(Mutex::new(Vec::new()));
    for i in 0..20 {
        let done = launch_as(server.port, &format!("before-{i}")).expect("launch");
        accepted.lock().unwrap().push(done.expect("accepted"));
    }
    // Eight clients launch as fast as they can; the server is killed while they do.
    let stop = Arc::new(AtomicBool::new(false));
    let port = server.port;
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let (accepted, stop) = (accepted.clone(), stop.clone());
            std::thread::spawn(move || {
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match launch_as(port, &format!("load-{c}-{i}")) {
                        Ok(Some(a)) => accepted.lock().unwrap().push(a),
                        Ok(None) => panic!("a valid launch was refused under load"),
                        Err(_) => break, // the server is gone
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while accepted.lock().unwrap().len() < 60 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client");
    }
    let accepted = std::mem::take(&mut *accepted.lock().unwrap());
    assert!(accepted.len() > 20, "no launch completed under load");

    let server = Server::start(&dir);
    assert_eq!(query_db(&dir, "PRAGMA integrity_check"), "ok");
    for a in &accepted {
        let page = server.get("/session", Some(&a.cookie)).expect("GET");
        assert_eq!(page.status, 200, "session of {} lost", a.user);
        assert!(page.body.contains(&a.user));
        let replay = server.post("/initial", &a.body).expect("replay");
        assert_eq!(replay.status, 401, "nonce of {} forgotten", a.user);
        assert!(replay.is_error_page("Launch already used"));
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn launches_reach_the_database_file_soon_without_waiting_for_a_full_wal() {
    let dir = temp_dir();
    let server = Server::start(&dir);
    let db_file = dir.join("db.sqlite");
    let size = || std::fs::metadata(&db_file).expect("database file").len();
    let before = size();
    for i in 0..30 {
        launch_as(server.port, &format!("copied-{i}"))
            .expect("launch")
            .expect("accepted");
    }
    // Thirty launches are far from the writer's own 10000-page checkpoint: only the background
    // checkpoint copies their pages out of the WAL this soon.
    let deadline = Instant::now() + Duration::from_secs(5);
    while size() <= before {
        assert!(
            Instant::now() < deadline,
            "the database file stayed at {before} bytes: launches live only in the WAL"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[rocket::async_test]
async fn closing_the_store_leaves_the_whole_database_in_its_file() {
    let dir = temp_dir();
    let url = db_url(&dir);
    let db = rocket_lti_tool::store::open(&url).await.expect("open");
    // A connection outside the pool stays open, as the launch writer's may when the process ends.
    let mut other = {
        use sqlx::Connection;
        sqlx::SqliteConnection::connect(&url)
            .await
            .expect("connect")
    };
    sqlx::query("SELECT count(*) FROM nonces")
        .fetch_one(&mut other)
        .await
        .expect("read");
    sqlx::query("INSERT INTO nonces (consumer_key, nonce, expires_at) VALUES ('k', 'n', 1)")
        .execute(&db)
        .await
        .expect("write");
    let wal = || std::fs::metadata(dir.join("db.sqlite-wal")).map_or(0, |m| m.len());
    assert!(wal() > 0, "the write is in the WAL");
    rocket_lti_tool::store::close(&db).await;
    assert_eq!(wal(), 0, "the WAL was emptied into the database file");
    // The file alone, copied as a hasty backup would, holds the write.
    let copy = temp_dir();
    std::fs::copy(dir.join("db.sqlite"), copy.join("db.sqlite")).expect("copy");
    drop(other);
    let count: i64 = {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&db_url(&copy))
            .await
            .expect("open the copy");
        sqlx::query_scalar("SELECT count(*) FROM nonces")
            .fetch_one(&mut conn)
            .await
            .expect("read the copy")
    };
    assert_eq!(count, 1);
    let _ = std::fs::remove_dir_all(&copy);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_request_that_outlives_the_shutdown_grace_is_cut_off_and_the_database_still_closes() {
    let runtime = rocket::tokio::runtime::Runtime::new().expect("runtime");
    // It answers /slow after 3 s, longer than the grace period and the mercy below.
    let lms = runtime.block_on(crate::outcomes::mock_lms::MockLms::start());
    let dir = temp_dir();
    let mut server = Server::start_with(&dir, |c| {
        c.env("ROCKET_SHUTDOWN", "{grace=1,mercy=0}");
    });
    let body = Launch::new("/any")
        .roles("Learner")
        .user("slow")
        .set("lis_outcome_service_url", &lms.url("/slow"))
        .set("lis_result_sourcedid", "s1")
        .signed_body();
    let cookie = server
        .post("/any", &body)
        .expect("launch")
        .session_cookie()
        .expect("cookie");
    let page = server.get("/grade", Some(&cookie)).expect("grade page");
    let form = format!("score=0.5&csrf={}", csrf_in(&page.body));
    let port = server.port;
    let grading = std::thread::spawn(move || {
        send(
            port,
            format!(
                "POST /grade HTTP/1.1\r\nHost: {HOST}\r\nCookie: lti_session={cookie}\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{form}",
                form.len()
            )
            .as_bytes(),
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) on our own child's pid, which has not been waited for yet.
    assert_eq!(unsafe { libc::kill(server.pid(), libc::SIGTERM) }, 0);
    let status = server.exit_status_within(Duration::from_secs(15));
    let _ = grading.join();
    let log = server.log_with("were cut off");
    assert!(status.success(), "exit status {status}: {log}");
    assert!(log.contains("were cut off"), "{log}");
    for leftover in ["db.sqlite-wal", "db.sqlite-shm"] {
        assert!(!dir.join(leftover).exists(), "{leftover} is left: {log}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn each_refused_launch_is_logged_once_with_its_key_and_address() {
    let dir = temp_dir();
    let server = Server::start(&dir);
    let cases = [
        (
            Launch::new("/any").consumer("__consumer_key__", "not-the-secret"),
            "(401 Unauthorized): invalid signature (consumer key \"__consumer_key__\"",
        ),
        (
            Launch::new("/any").consumer("no-such-key", "s"),
            "(401 Unauthorized): unknown consumer key (consumer key \"no-such-key\"",
        ),
        (
            Launch::new("/any")
                .without("resource_link_id")
                .set("launch_presentation_return_url", "https://lms.example/back"),
            "(sent back to the LMS): missing resource_link_id (consumer key \"__consumer_key__\"",
        ),
    ];
    for (launch, _) in &cases {
        let answer = server.post("/any", &launch.signed_body()).expect("answer");
        assert!(matches!(answer.status, 401 | 303), "{}", answer.status);
    }
    // A launch that cannot even be read (a field that is not UTF-8).
    let unreadable = format!("{}&custom_x=%FF", Launch::new("/any").signed_body());
    assert_eq!(
        server.post("/any", &unreadable).expect("answer").status,
        400
    );
    // One sent to an address with no page.
    let stray = Launch::new("/launch").signed_body();
    assert_eq!(server.post("/launch", &stray).expect("answer").status, 404);
    // A key far too long to be one: refused, and quoted only in part.
    let long_key = Launch::new("/any")
        .consumer(&"k".repeat(65_000), "s")
        .signed_body();
    assert_eq!(server.post("/any", &long_key).expect("answer").status, 400);
    // A valid launch refused for its roles.
    let learner = Launch::new("/initial_staff").roles("Learner").signed_body();
    assert_eq!(
        server
            .post("/initial_staff", &learner)
            .expect("answer")
            .status,
        403
    );
    let long_key_line = format!(
        "(400 Bad Request): oauth_consumer_key too long (consumer key \"{}…\"",
        "k".repeat(100)
    );
    let expected: Vec<&str> = cases
        .iter()
        .map(|(_, e)| *e)
        .chain([
            // Its key is read as far as the body can be made out, as the admin page records it.
            "(400 Bad Request): malformed parameters: a parameter is not valid UTF-8 (consumer key \"__consumer_key__\"",
            "(404 Not Found): a launch sent to /launch, an address with no page (consumer key \"__consumer_key__\"",
            &long_key_line,
            "staff-only page refused a launch (403 Forbidden): role not allowed (consumer key \"__consumer_key__\"",
        ])
        .collect();
    // The log reaches its file through a thread of the test: wait for it (a busy machine).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut log = server.log();
    while log.matches("refused").count() < expected.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        log = server.log();
    }
    // Then a little longer, so a line logged twice would be there too.
    std::thread::sleep(Duration::from_millis(200));
    let log = server.log();
    let refusals: Vec<&str> = log.lines().filter(|l| l.contains("refused")).collect();
    assert_eq!(refusals.len(), expected.len(), "{log}");
    for (expected, line) in expected.iter().zip(&refusals) {
        assert!(line.contains(expected), "{line:?} lacks {expected:?}");
        assert!(line.ends_with("from 127.0.0.1)"), "{line:?}");
    }
    // A refusal Rocket makes before our code runs (a form without the field it needs) is
    // logged too.
    assert_eq!(
        server
            .post("/lti/continue", "next=%2Fany")
            .expect("answer")
            .status,
        422
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let unexplained = "POST /lti/continue: 422 Unprocessable Entity";
    while !server.log().contains(unexplained) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.log().contains(unexplained), "{}", server.log());
    // The bad signature's line is followed by what the evidence says: here, the secret.
    let why: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("why the signature failed"))
        .collect();
    assert_eq!(why.len(), 1, "{log}");
    assert!(
        why[0].contains("consumer key \"__consumer_key__\", from 127.0.0.1)")
            && why[0].contains("the shared secret in the LMS differs")
            // Only control characters are escaped: no backslash before "consumer's".
            && why[0].contains("this consumer's secret"),
        "{why:?}"
    );
    // Not again as a plain error line of the request.
    assert!(!log.contains("POST /any: 40"), "{log}");
    assert!(!log.contains("POST /initial_staff: 403"), "{log}");
    // A path the router reads as /session however long it is: its refusal quotes a part of it.
    let long = format!("{}session", "/".repeat(3000));
    assert_eq!(server.get(&long, None).expect("answer").status, 401);
    let log = server.log_with("//…: 401 Unauthorized");
    let line = log
        .lines()
        .find(|l| l.contains(": 401 Unauthorized"))
        .expect("the refusal's line");
    assert!(line.len() < 400, "{} characters: {line:.300}", line.len());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_lets_the_request_in_flight_finish_then_exits_cleanly() {
    let dir = temp_dir();
    let mut server = Server::start(&dir);
    let body = Launch::new("/initial").user("in-flight").signed_body();
    let (first, rest) = body.split_at(body.len() / 2);
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    stream
        .write_all(format!("{}{first}", post_head("/initial", body.len())).as_bytes())
        .expect("send half");
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: kill(2) on our own child's pid, which has not been waited for yet.
    assert_eq!(unsafe { libc::kill(server.pid(), libc::SIGTERM) }, 0);
    std::thread::sleep(Duration::from_millis(300));
    stream.write_all(rest.as_bytes()).expect("send the rest");
    let answer = read_answer(&mut stream).expect("answer after SIGTERM");
    assert_eq!(answer.status, 200);
    assert!(answer.body.contains("in-flight"));

    let status = server.exit_status_within(Duration::from_secs(15));
    assert!(status.success(), "exit status {status}: {}", server.log());
    assert!(!server.log().contains("panicked"));
    // Everything is in the database file itself, and every connection was closed (SQLite then
    // removes the WAL and its index): a copy of that file alone holds the session.
    for leftover in ["db.sqlite-wal", "db.sqlite-shm"] {
        assert!(
            !dir.join(leftover).exists(),
            "{leftover} is left after a clean exit"
        );
    }
    let copy = temp_dir();
    std::fs::copy(dir.join("db.sqlite"), copy.join("db.sqlite")).expect("copy");
    assert_eq!(query_db(&copy, "PRAGMA integrity_check"), "ok");
    assert_eq!(
        query_db(
            &copy,
            "SELECT CAST(count(*) AS TEXT) FROM sessions WHERE user_id = 'in-flight'"
        ),
        "1"
    );
    let _ = std::fs::remove_dir_all(&copy);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sets the server's largest file size (RLIMIT_FSIZE): at 0 every write to the database fails
/// with EFBIG, as on a full disk; reads still work.
fn limit_file_size(pid: i32, bytes: libc::rlim_t) {
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: prlimit(2) on our own child with a valid rlimit and no old-value pointer.
    let done = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &limit, std::ptr::null_mut()) };
    assert_eq!(done, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// Three launches while storage is failing: each gets the templated 503 page and no cookie.
fn launches_get_503_pages(server: &Server, user_prefix: &str) {
    for i in 0..3 {
        let body = Launch::new("/initial")
            .user(&format!("{user_prefix}-{i}"))
            .signed_body();
        let answer = server
            .post("/initial", &body)
            .unwrap_or_else(|e| panic!("{e}: {}", server.log()));
        assert_eq!(answer.status, 503, "{}", answer.body);
        assert!(answer.is_error_page("Temporarily unavailable"));
        assert!(answer.session_cookie().is_none());
    }
}

/// Waits (up to 5 s) for the log line of a storage error answered with 503.
fn wait_for_storage_error_log(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server
        .log()
        .contains("503 Service Unavailable): storage error")
    {
        assert!(Instant::now() < deadline, "no log line: {}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_log_file_on_a_full_disk_changes_nothing_but_the_log() {
    let dir = temp_dir();
    // The log straight into a file on the disk that fills up, as the README's recipe without
    // systemd has it (and as a test harness often has it). A debug build's logger panics on a
    // line it cannot write: every request would end unanswered, the launch writer's task would
    // end, and a SIGTERM be lost. The server passes its log on through a pipe instead.
    let log = std::fs::File::create(dir.join("direct.log")).expect("log file");
    let mut server = Server::start_with(&dir, |cmd| {
        cmd.stdout(log.try_clone().expect("log file")).stderr(log);
    });
    assert!(launch_as(server.port, "before").expect("launch").is_some());
    limit_file_size(server.pid(), 0);
    launches_get_503_pages(&server, "full");
    limit_file_size(server.pid(), libc::RLIM_INFINITY);
    let after = launch_as(server.port, "after")
        .expect("launch")
        .expect("accepted once the disk has room");
    assert_eq!(
        server
            .get("/session", Some(&after.cookie))
            .expect("GET")
            .status,
        200
    );
    // SAFETY: kill(2) on our own child's pid, which has not been waited for yet.
    assert_eq!(unsafe { libc::kill(server.pid(), libc::SIGTERM) }, 0);
    let status = server.exit_status_within(Duration::from_secs(15));
    let written = std::fs::read_to_string(dir.join("direct.log")).unwrap_or_default();
    assert!(status.success(), "exit status {status}: {written}");
    // Lines from after the full disk reached the file, after a word that some did not.
    let (_, after) = written
        .split_once("[log lines were dropped here")
        .unwrap_or_else(|| panic!("no mark of dropped lines: {written}"));
    assert!(
        after.contains("launch accepted") && after.contains("\"after\""),
        "{written}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn full_disk_gives_503_pages_then_recovers() {
    let dir = temp_dir();
    // Over the file-size limit the kernel sends SIGXFSZ, which kills by default: the server
    // ignores it itself (a `ulimit -f` or systemd's `LimitFSIZE=` must not kill it), so the
    // write fails with EFBIG instead, as it would with ENOSPC on a full disk.
    let server = Server::start(&dir);
    let before = launch_as(server.port, "before-full")
        .expect("launch")
        .expect("accepted");

    limit_file_size(server.pid(), 0);
    launches_get_503_pages(&server, "full");
    // Reading still works: the session from before is served, also while launches fail beside it
    // (a page view's check for other connections' commits may share the failing launches' round).
    let port = server.port;
    let failing = std::thread::spawn(move || {
        for i in 0..20 {
            let body = Launch::new("/initial")
                .user(&format!("full-bg-{i}"))
                .signed_body();
            let _ = post(port, "/initial", &body);
        }
    });
    let views: Vec<u16> = (0..30)
        .map(|_| {
            server
                .get("/session", Some(&before.cookie))
                .expect("GET")
                .status
        })
        .collect();
    failing.join().expect("launches");
    assert!(views.iter().all(|s| *s == 200), "{views:?}");
    // A logout that cannot be recorded: the 503 page keeps the visit's way back and Log out.
    let out = server.get("/logout", Some(&before.cookie)).expect("logout");
    assert_eq!(out.status, 503, "{}", out.body);
    assert!(
        out.body.contains("action=\"/logout\"") && out.body.contains("Back to your page"),
        "{}",
        out.body
    );
    // In words a student leaving a shared computer cannot take for a logout.
    assert!(out.body.contains("you are still signed in"), "{}", out.body);

    limit_file_size(server.pid(), libc::RLIM_INFINITY);
    let after = launch_as(server.port, "after-full")
        .expect("launch")
        .expect("accepted once storage is back");
    let page = server.get("/session", Some(&after.cookie)).expect("GET");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("after-full"));
    // Every launch answered 200 is in the database, and no refused one is.
    assert_eq!(
        query_db(
            &dir,
            "SELECT group_concat(user_id, ',') FROM (SELECT user_id FROM sessions ORDER BY user_id)"
        ),
        "after-full,before-full"
    );

    wait_for_storage_error_log(&server);
    assert!(!server.log().contains("panicked"), "{}", server.log());
    drop(server);
    assert_eq!(query_db(&dir, "PRAGMA integrity_check"), "ok");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The database and its log marked immutable (`chattr +i`) while it lives: every write to them,
/// even through a file the server already has open, fails with EPERM, as on storage gone
/// read-only. (Not the `-shm` index: SQLite maps it into memory, where a refused write is a
/// SIGBUS; on storage that is read-only from the start SQLite maps it read-only instead.)
struct ReadOnly(Vec<PathBuf>);

impl ReadOnly {
    /// `None` where the file system or the user cannot set the flag.
    fn set(dir: &Path) -> Option<ReadOnly> {
        let files: Vec<PathBuf> = ["db.sqlite", "db.sqlite-wal"]
            .iter()
            .map(|f| dir.join(f))
            .filter(|f| f.exists())
            .collect();
        let done = Command::new("chattr")
            .arg("+i")
            .args(&files)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        let guard = ReadOnly(files);
        done.then_some(guard)
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").args(&self.0).status();
    }
}

#[test]
fn read_only_storage_gives_503_pages_then_recovers() {
    let dir = temp_dir();
    let server = Server::start(&dir);
    assert!(launch_as(server.port, "before-read-only")
        .expect("launch")
        .is_some());
    let Some(read_only) = ReadOnly::set(&dir) else {
        eprintln!("SKIPPED: chattr +i is not available here (needs root on ext4 or similar)");
        return;
    };
    launches_get_503_pages(&server, "read-only");
    drop(read_only);
    let after = launch_as(server.port, "after-read-only")
        .expect("launch")
        .expect("accepted once storage is writable again");
    let page = server.get("/session", Some(&after.cookie)).expect("GET");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("after-read-only"));
    wait_for_storage_error_log(&server);
    assert!(!server.log().contains("panicked"), "{}", server.log());
    drop(server);
    // Every launch answered 200 is in the database, and no refused one is.
    assert_eq!(
        query_db(
            &dir,
            "SELECT group_concat(user_id, ',') FROM (SELECT user_id FROM sessions ORDER BY user_id)"
        ),
        "after-read-only,before-read-only"
    );
    assert_eq!(query_db(&dir, "PRAGMA integrity_check"), "ok");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn connections_opened_while_the_file_was_read_only_do_not_outlast_it() {
    let dir = temp_dir();
    let runtime = rocket::tokio::runtime::Runtime::new().expect("runtime");
    let db = runtime
        .block_on(rocket_lti_tool::store::open(&db_url(&dir)))
        .expect("open");
    let insert = "INSERT INTO admin_login_failures (address, at) VALUES ('a', 1)";
    // Eight at once, each holding its connection until all are done: the pool opens new ones.
    let all_at_once = |db: &rocket_lti_tool::store::Db| {
        runtime.block_on(async {
            let done = Arc::new(rocket::tokio::sync::Barrier::new(8));
            let mut tasks = rocket::tokio::task::JoinSet::new();
            for _ in 0..8 {
                let (db, done) = (db.clone(), done.clone());
                tasks.spawn(async move {
                    let result = match db.acquire().await {
                        Ok(mut conn) => {
                            let written = sqlx::query(insert).execute(&mut *conn).await;
                            done.wait().await;
                            written.map(|_| ())
                        }
                        Err(e) => {
                            done.wait().await;
                            Err(e)
                        }
                    };
                    result
                });
            }
            tasks.join_all().await
        })
    };
    let Some(read_only) = ReadOnly::set(&dir) else {
        eprintln!("SKIPPED: chattr +i is not available here (needs root on ext4 or similar)");
        return;
    };
    // Writes fail at once; reads still work (a database left read-only can still be listed).
    let during = all_at_once(&db);
    assert!(during.iter().all(|r| r.is_err()), "{during:?}");
    let read: Result<i64, _> = runtime
        .block_on(sqlx::query_scalar("SELECT COUNT(*) FROM admin_login_failures").fetch_one(&db));
    assert!(read.is_ok(), "{read:?}");
    drop(read_only);
    // Writable again: every connection writes, none of them left read-only by SQLite.
    let after = all_at_once(&db);
    assert!(after.iter().all(|r| r.is_ok()), "{after:?}");
    runtime.block_on(rocket_lti_tool::store::close(&db));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `lti-tool consumer ...` in its own process on the server's database.
fn cli(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_lti-tool"))
        .args(args)
        .env("ROCKET_PROFILE", "debug")
        .env("ROCKET_DATABASE_URL", db_url(dir))
        .env("ROCKET_LOG_LEVEL", "off")
        .output()
        .expect("lti-tool runs");
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn a_new_installation_is_told_what_it_still_needs_at_every_log_level() {
    let dir = temp_dir();
    let quiet = |cmd: &mut Command| {
        cmd.env("ROCKET_LOG_LEVEL", "critical")
            .env("ROCKET_SEED_DEMO_CONSUMER", "false");
    };
    let server = Server::start_with(&dir, quiet);
    let log = server.log_with("no password yet");
    assert!(
        log.contains("no consumer keys yet") && log.contains("`lti-tool admin set-password`"),
        "{log}"
    );
    drop(server);
    let _ = std::fs::remove_file(dir.join("server.log"));
    cli(
        &dir,
        &[
            "consumer",
            "add",
            "first",
            "--secret",
            "first-secret-0123456789",
        ],
    );
    let out = Command::new(env!("CARGO_BIN_EXE_lti-tool"))
        .args(["admin", "set-password"])
        .env("ROCKET_PROFILE", "debug")
        .env("ROCKET_DATABASE_URL", db_url(&dir))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .and_then(|mut child| {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(b"a-good-password\n")?;
            child.wait()
        })
        .expect("set-password runs");
    assert!(out.success());
    let server = Server::start_with(&dir, quiet);
    // Started, with the start-up lines written: nothing is missing now.
    let log = server.log_with("public_url");
    assert!(log.contains("public_url"), "{log}");
    assert!(
        !log.contains("no consumer keys yet") && !log.contains("no password yet"),
        "{log}"
    );
    drop(server);
    // Keys that are all disabled refuse every launch as surely as none.
    cli(&dir, &["consumer", "disable", "first"]);
    let _ = std::fs::remove_file(dir.join("server.log"));
    let server = Server::start_with(&dir, quiet);
    let log = server.log_with("every consumer key is disabled");
    assert!(log.contains("`lti-tool consumer enable KEY`"), "{log}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_misspelt_profile_is_named_at_start() {
    let dir = temp_dir();
    let server = Server::start_with(&dir, |cmd| {
        cmd.env("ROCKET_PROFILE", "prod")
            .env("ROCKET_SECRET_KEY", crate::helpers::TEST_SECRET_KEY);
    });
    let log = server.log_with("profile `prod`");
    assert!(log.contains("profile `prod` has no section"), "{log}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn command_line_changes_apply_at_once_despite_the_caches() {
    let dir = temp_dir();
    let server = Server::start(&dir);
    let old_secret = "first-secret-0123456789";
    cli(
        &dir,
        &["consumer", "add", "course-2", "--secret", old_secret],
    );
    let launch = |secret: &str, user: &str| {
        let launch = Launch::new("/initial")
            .consumer("course-2", secret)
            .user(user);
        server
            .post("/initial", &launch.signed_body())
            .expect("launch")
    };
    // These put the consumer and the session in the server's caches.
    let first = launch(old_secret, "u1");
    assert_eq!(first.status, 200);
    let cookie = first.session_cookie().expect("cookie");
    assert_eq!(launch(old_secret, "u2").status, 200);
    assert_eq!(
        server.get("/session", Some(&cookie)).expect("GET").status,
        200
    );

    // A logout ends a cached session for a replayed cookie too.
    let other = launch(old_secret, "u-logout")
        .session_cookie()
        .expect("cookie");
    assert_eq!(
        server.get("/session", Some(&other)).expect("GET").status,
        200
    );
    assert_eq!(
        server.get("/logout", Some(&other)).expect("logout").status,
        200
    );
    assert_eq!(
        server.get("/session", Some(&other)).expect("GET").status,
        401
    );

    let rotated = cli(&dir, &["consumer", "rotate", "course-2"]);
    let new_secret = rotated
        .lines()
        .find_map(|l| l.split(": ").nth(1))
        .expect("new secret")
        .trim()
        .to_string();
    assert_eq!(launch(old_secret, "u3").status, 401);
    assert_eq!(launch(&new_secret, "u4").status, 200);

    cli(&dir, &["consumer", "disable", "course-2"]);
    let refused = launch(&new_secret, "u5");
    assert_eq!(refused.status, 401);
    assert!(refused.body.contains("disabled"));
    cli(&dir, &["consumer", "enable", "course-2"]);
    assert_eq!(launch(&new_secret, "u6").status, 200);

    // Removing the consumer ends its sessions, cached or not.
    assert_eq!(
        server.get("/session", Some(&cookie)).expect("GET").status,
        200
    );
    cli(&dir, &["consumer", "remove", "course-2"]);
    assert_eq!(
        server.get("/session", Some(&cookie)).expect("GET").status,
        401
    );
    assert_eq!(launch(&new_secret, "u7").status, 401);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads one answer of a kept-alive connection: its head, then as many body bytes as its
/// `Content-Length` says (none for a HEAD).
fn read_one(stream: &mut TcpStream, head_request: bool) -> (String, Vec<u8>) {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).expect("answer"), 1, "{raw:?}");
        raw.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&raw).to_string();
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(": ")?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; if head_request { 0 } else { length }];
    stream.read_exact(&mut body).expect("body");
    (head, body)
}

#[test]
fn the_production_log_holds_no_usable_launch_and_no_return_url() {
    let dir = temp_dir();
    let server = Server::start_with(&dir, |cmd| {
        cmd.env("ROCKET_LOG_LEVEL", "critical");
    });
    // A link checker's HEAD of a signed GET launch: refused, its nonce unspent, so its URL would
    // still open a session; then, on the same connection, a page.
    let launch = Launch::new("/initial").user("head-checked");
    let path = launch.signed_get_path();
    let signature = path
        .split('&')
        .find_map(|f| f.strip_prefix("oauth_signature="))
        .expect("signed")
        .to_string();
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let ask =
        |method: &str, path: &str| format!("{method} {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    stream
        .write_all(ask("HEAD", &path).as_bytes())
        .expect("send");
    let (head, _) = read_one(&mut stream, true);
    assert!(head.starts_with("HTTP/1.1 405"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("set-cookie"), "{head}");
    stream.write_all(ask("HEAD", "/").as_bytes()).expect("send");
    let (head, _) = read_one(&mut stream, true);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-length: "),
        "{head}"
    );
    for _ in 0..5 {
        stream
            .write_all(ask("HEAD", "/static/style.css").as_bytes())
            .expect("send");
        let (head, _) = read_one(&mut stream, true);
        assert!(head.contains("content-length: "), "{head}");
    }
    // Unchanged: a 304 carries no length (RFC 9110 8.6), for a HEAD as for a GET.
    let (head, _) = {
        stream
            .write_all(ask("HEAD", "/static/style.css").as_bytes())
            .expect("send");
        read_one(&mut stream, true)
    };
    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .expect("an ETag")
        .to_string();
    let revalidate =
        format!("HEAD /static/style.css HTTP/1.1\r\nHost: {HOST}\r\nIf-None-Match: {etag}\r\n\r\n");
    stream.write_all(revalidate.as_bytes()).expect("send");
    let (head, _) = read_one(&mut stream, true);
    assert!(head.starts_with("HTTP/1.1 304"), "{head}");
    assert!(!head.contains("content-length"), "{head}");
    stream.write_all(ask("GET", "/").as_bytes()).expect("send");
    let (head, body) = read_one(&mut stream, false);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(String::from_utf8_lossy(&body).contains("</html>"));
    // A verified launch refused for its LTI fields goes back to the LMS's return URL, which in
    // Moodle carries the user's sesskey.
    let refused = Launch::new("/any")
        .without("resource_link_id")
        .set(
            "launch_presentation_return_url",
            "https://moodle.example/mod/lti/return.php?course=2&sesskey=SeSsKeY4711",
        )
        .signed_body();
    assert_eq!(server.post("/any", &refused).expect("answer").status, 303);
    let log = server.log_with("missing resource_link_id");
    assert!(log.contains("missing resource_link_id"), "{log}");
    assert!(!log.contains("SeSsKeY4711"), "{log}");
    assert!(
        !log.contains(&signature) && !log.contains("head-checked"),
        "{log}"
    );
    // The HEADs' bodies were never pushed at a connection that takes none.
    assert!(!log.contains("Remote left"), "{log}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_ended_visit_leaves_no_readable_trace_in_the_database_file() {
    let dir = temp_dir();
    let mut server = Server::start(&dir);
    // Over a page (4 KiB), a launch spills onto pages of its own, which deleting it frees.
    let body = Launch::new("/initial")
        .user("gone-learner-7Q3x")
        .set("custom_notes", &"gone-notes-9Kp2 ".repeat(1500))
        .signed_body();
    let answer = post(server.port, "/initial", &body).expect("launch");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let cookie = answer.session_cookie().expect("session");
    let out = server.get("/logout", Some(&cookie)).expect("logout");
    assert_eq!(out.status, 200, "{}", out.body);
    let page = server.get("/session", Some(&cookie)).expect("page");
    assert_eq!(page.status, 401);
    // SAFETY: kill(2) on our own child's pid, which has not been waited for yet.
    assert_eq!(unsafe { libc::kill(server.pid(), libc::SIGTERM) }, 0);
    assert!(server.exit_status_within(Duration::from_secs(15)).success());
    // Stopped cleanly, the file is all there is; the session's rows were zeroed, not just freed.
    assert!(!dir.join("db.sqlite-wal").exists());
    let file = std::fs::read(dir.join("db.sqlite")).expect("database file");
    for needle in [&b"gone-learner-7Q3x"[..], b"gone-notes-9Kp2"] {
        assert!(!file.windows(needle.len()).any(|w| w == needle));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
