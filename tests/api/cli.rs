//! The command line, run as the real binary against the database of a running app.

use std::process::{Command, Output};

use rocket::http::Status;
use rocket::local::asynchronous::Client;

use crate::helpers::*;

fn cli(database_url: &str, args: &[&str]) -> Output {
    cli_to(database_url, args, std::process::Stdio::piped())
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[rocket::async_test]
async fn consumer_commands_take_effect_on_the_running_server_at_once() {
    let app = spawn_app().await;
    let db = app.database_url();

    let out = cli(
        &db,
        &["consumer", "add", "moodle.school-1:x", "--name", "Moodle"],
    );
    assert!(out.status.success(), "{out:?}");
    let secret = printed_secret(&out);
    assert!((16..=64).contains(&secret.len()));
    assert!(secret
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));

    let launch = || Launch::new("/any").consumer("moodle.school-1:x", &secret);
    assert_eq!(app.launch(&launch()).await.status(), Status::Ok);

    // `--secret -` reads the secret from standard input, out of `ps` and the shell's history.
    let piped = cli_with_input(
        &[("ROCKET_DATABASE_URL", &db)],
        &["consumer", "add", "piped", "--secret", "-"],
        "piped-secret-0123456789\r\n",
    );
    assert!(piped.status.success(), "{piped:?}");
    assert!(!stdout(&piped).contains("piped-secret"));
    let res = app
        .launch(&Launch::new("/any").consumer("piped", "piped-secret-0123456789"))
        .await;
    assert_eq!(res.status(), Status::Ok);

    let list = stdout(&cli(&db, &["consumer", "list"]));
    assert!(
        list.contains("moodle.school-1:x") && list.contains("Moodle") && list.contains("enabled")
    );
    assert!(!list.contains(&secret) && !list.contains("__lti_secret__"));
    let out = cli(&db, &["consumer", "add", "ansi", "--name", "a\u{1b}[2Jb"]);
    assert!(!out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("control characters"));
    // A name stored before the check is printed escaped, not sent to the terminal.
    sqlx::query("UPDATE consumers SET name = 'a' || char(27) || '[2Jb' WHERE consumer_key = ?")
        .bind("moodle.school-1:x")
        .execute(&app.state().db)
        .await
        .unwrap();
    let list = stdout(&cli(&db, &["consumer", "list"]));
    assert!(
        list.contains("a\\u{1b}[2Jb") && !list.contains('\u{1b}'),
        "{list:?}"
    );

    assert!(cli(&db, &["consumer", "disable", "moodle.school-1:x"])
        .status
        .success());
    refused(app.launch(&launch()).await, Status::Unauthorized).await;
    assert!(cli(&db, &["consumer", "enable", "moodle.school-1:x"])
        .status
        .success());
    assert_eq!(app.launch(&launch()).await.status(), Status::Ok);

    let out = cli(&db, &["consumer", "rotate", "moodle.school-1:x"]);
    let new_secret = stdout(&out).split_whitespace().nth(4).unwrap().to_string();
    assert_ne!(new_secret, secret);
    refused(app.launch(&launch()).await, Status::Unauthorized).await;
    assert_eq!(
        app.launch(&Launch::new("/any").consumer("moodle.school-1:x", &new_secret))
            .await
            .status(),
        Status::Ok
    );

    // Removing the consumer ends its sessions.
    assert_eq!(app.get("/session").await.status(), Status::Ok);
    assert!(cli(&db, &["consumer", "remove", "moodle.school-1:x"])
        .status
        .success());
    refused(app.get("/session").await, Status::Unauthorized).await;
    // Gone: `delete` (the admin page's word) names the same command.
    assert!(!cli(&db, &["consumer", "delete", "moodle.school-1:x"])
        .status
        .success());
    assert!(cli(&db, &["consumer", "add", "short-lived"])
        .status
        .success());
    assert!(cli(&db, &["consumer", "delete", "short-lived"])
        .status
        .success());
    assert!(!stdout(&cli(&db, &["consumer", "list"])).contains("short-lived"));

    // A command run while the server reads the database says nothing about the WAL it leaves
    // to the server: that is the usual case, not a problem.
    let mut reader = app.state().db.acquire().await.unwrap();
    sqlx::query("BEGIN").execute(&mut *reader).await.unwrap();
    sqlx::query("SELECT count(*) FROM consumers")
        .execute(&mut *reader)
        .await
        .unwrap();
    let out = cli(&db, &["consumer", "add", "while-reading"]);
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!said.contains("WAL"), "{said}");
    sqlx::query("ROLLBACK").execute(&mut *reader).await.unwrap();
}

#[test]
fn any_command_starts_a_missing_database_and_says_where() {
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();
    // As issue 2 says, whichever starts first creates the database, a command that only reads
    // too; each says where, since run with the wrong environment it is not the server's.
    for args in [
        &["consumer", "list"][..],
        &["consumer", "disable", "k"],
        &["admin", "replace-lost-secrets"],
    ] {
        let dir = temp_dir();
        let file = dir.join("data/new.db");
        let out = cli(&format!("sqlite://{}", file.display()), args);
        assert!(
            stderr(&out).contains(&format!("created a new database at {}", file.display())),
            "{args:?}: {out:?}"
        );
        assert!(file.exists(), "{args:?} did not create the database");
        if args == ["consumer", "list"] {
            assert!(out.status.success(), "{out:?}");
            assert_eq!(stdout(&out), "", "{out:?}");
        }
        // It is complete: the next command uses it as it is.
        let again = cli(
            &format!("sqlite://{}", file.display()),
            &["consumer", "list"],
        );
        assert!(again.status.success(), "after {args:?}: {again:?}");
        assert!(
            !stderr(&again).contains("created"),
            "after {args:?}: {again:?}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
    let dir = temp_dir();
    let file = dir.join("typo.db");
    let url = format!("sqlite://{}", file.display());
    // Bad input is refused before a database is created.
    let out = cli(&url, &["consumer", "add", "bad key!"]);
    assert!(!out.status.success(), "{out:?}");
    assert!(!file.exists(), "a refused add created the database");
    let out = cli(&url, &["consumer", "add", "first"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stderr(&out).contains(&format!("created a new database at {}", file.display())),
        "{out:?}"
    );
    let out = cli(&url, &["consumer", "list"]);
    assert!(stdout(&out).contains("first\tenabled"), "{out:?}");
    assert!(!stderr(&out).contains("created"), "{out:?}");
    // Each run closes every connection, failed runs too: the database file alone is complete.
    for args in [
        &["consumer", "disable", "first"][..],
        &["consumer", "enable", "first"],
        &["consumer", "disable", "no-such-key"],
        &["consumer", "add", "second"],
        &["consumer", "rotate", "second"],
    ] {
        cli(&url, args);
        for leftover in ["typo.db-wal", "typo.db-shm"] {
            assert!(!dir.join(leftover).exists(), "{leftover} after {args:?}");
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn commands_started_at_once_on_a_new_database_all_work() {
    // Each finds the database missing; one creates and migrates it, the others wait for that
    // instead of migrating it again ("table already exists").
    for round in 0..3 {
        let dir = temp_dir();
        let url = format!("sqlite://{}", dir.join("data/new.db").display());
        let runs: Vec<_> = (0..4)
            .map(|i| {
                let url = url.clone();
                std::thread::spawn(move || match i {
                    0 => cli(&url, &["consumer", "list"]),
                    _ => cli(&url, &["consumer", "add", &format!("k{i}")]),
                })
            })
            .collect();
        let outs: Vec<Output> = runs.into_iter().map(|r| r.join().unwrap()).collect();
        for out in &outs {
            assert!(out.status.success(), "round {round}: {out:?}");
        }
        let created = outs
            .iter()
            .filter(|o| String::from_utf8_lossy(&o.stderr).contains("created a new database"))
            .count();
        assert_eq!(created, 1, "round {round}: {outs:?}");
        let list = stdout(&cli(&url, &["consumer", "list"]));
        assert!(
            ["k1", "k2", "k3"].iter().all(|k| list.contains(k)),
            "{list}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[rocket::async_test]
async fn without_a_key_in_release_the_command_line_refuses_before_creating_a_database() {
    let dir = temp_dir();
    let file = dir.join("data/lti.db");
    // Commands that read input say so before asking for it (standard input is empty here: were
    // it read first, that would be the complaint).
    for args in [
        &["consumer", "list"][..],
        &["consumer", "add", "k", "--secret", "-"],
        &["admin", "set-password"],
        &["admin", "rekey"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_lti-tool"))
            .args(args)
            .env("ROCKET_PROFILE", "release")
            .env(
                "ROCKET_DATABASE_URL",
                format!("sqlite://{}", file.display()),
            )
            .env("ROCKET_LOG_LEVEL", "off")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("lti-tool runs");
        assert!(!out.status.success(), "{args:?}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("secret_key"),
            "{args:?}: {out:?}"
        );
        assert!(!file.exists() && !dir.join("data").exists(), "{args:?}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[rocket::async_test]
async fn bad_keys_duplicates_and_short_secrets() {
    let dir = temp_dir();
    // The command line creates the database and its folders when it runs first.
    let db = format!("sqlite://{}", dir.join("nested/deeper/lti.db").display());
    let out = cli(&db, &["consumer", "add", "school", "--secret", "short"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning"));
    assert!(
        !stdout(&out).contains("short"),
        "a given secret is not echoed"
    );
    assert!(dir.join("nested/deeper/lti.db").exists());
    assert!(
        !cli(&db, &["consumer", "add", "school"]).status.success(),
        "duplicate key"
    );
    for bad in ["", "has space", "ünï", "a/b", &"k".repeat(256)] {
        assert!(
            !cli(&db, &["consumer", "add", bad]).status.success(),
            "{bad:?}"
        );
    }
    assert!(!cli(&db, &["consumer", "add", "x", "--secret", ""])
        .status
        .success());
    assert!(!cli(&db, &["consumer", "disable", "nobody"])
        .status
        .success());
    // An LMS form trims a pasted secret: one with outer blanks would never verify.
    for padded in [" secret-0123456789abcdef", "secret-0123456789abcdef\t"] {
        let out = cli(&db, &["consumer", "add", "padded", "--secret", padded]);
        assert!(!out.status.success(), "{padded:?}");
    }
    // A secret may start with a hyphen (one an LMS already holds), given as `--secret=…`; an
    // option after `--secret` is never taken for its value (an empty `--secret $VAR`).
    let out = cli(
        &db,
        &[
            "consumer",
            "add",
            "hyphen",
            "--secret=-Z2DsGedlehO0R9-abcdef",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let out = cli(
        &db,
        &["consumer", "add", "swallowed", "--secret", "--name=Canvas"],
    );
    assert!(!out.status.success(), "{out:?}");
    let out = cli(
        &db,
        &["consumer", "add", "tip", "--secret", "-abc0123456789"],
    );
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is given as --secret=-"),
        "{out:?}"
    );
    // Brightspace keeps 100 characters of a secret: a longer one is accepted, with a warning.
    let out = cli(
        &db,
        &["consumer", "add", "long", "--secret", &"s".repeat(120)],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Brightspace"));
    // A blank name is the key, as on the admin page; a name is at most 200 characters.
    assert!(cli(&db, &["consumer", "add", "blank", "--name", "   "])
        .status
        .success());
    assert!(stdout(&cli(&db, &["consumer", "list"])).contains("blank\tenabled"));
    let listed = stdout(&cli(&db, &["consumer", "list"]));
    let blank = listed.lines().find(|l| l.starts_with("blank\t")).unwrap();
    assert!(blank.ends_with("\tblank"), "{blank}");
    assert!(!cli(
        &db,
        &["consumer", "add", "named", "--name", &"n".repeat(201)]
    )
    .status
    .success());
    // A key of up to 255 characters is its own name, however long, as on the admin page.
    let long_key = "k".repeat(255);
    let out = cli(&db, &["consumer", "add", &long_key]);
    assert!(out.status.success(), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("only in case"));
    // Keys are case-sensitive: one that differs only in case is added, with a warning.
    let out = cli(&db, &["consumer", "add", "BLANK"]);
    assert!(out.status.success(), "{out:?}");
    let warned = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        warned.contains("\"blank\" differs from \"BLANK\" only in case"),
        "{warned}"
    );
    assert!(!warned.contains("Open edX"), "{warned}");
    // A colon in a key or a secret: Open edX's passports (id:key:secret) would split there.
    for args in [
        &["consumer", "add", "edx:1"][..],
        &[
            "consumer",
            "add",
            "edx-2",
            "--secret",
            "has:a-colon-0123456789",
        ],
    ] {
        let out = cli(&db, args);
        assert!(out.status.success(), "{out:?}");
        let warned = String::from_utf8_lossy(&out.stderr);
        assert!(
            warned.contains("Open edX cannot use this"),
            "{args:?}: {warned}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// The command line with its standard output sent to `out` (`/dev/full`, `/dev/null`, a pipe).
fn cli_to(database_url: &str, args: &[&str], out: std::process::Stdio) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lti-tool"))
        .args(args)
        .env("ROCKET_DATABASE_URL", database_url)
        .env("ROCKET_LOG_LEVEL", "off")
        .stdout(out)
        .output()
        .expect("lti-tool runs")
}

#[cfg(unix)]
#[rocket::async_test]
async fn a_new_secret_that_cannot_be_printed_is_not_saved() {
    let app = spawn_app().await;
    let db = app.database_url();
    let full = || std::process::Stdio::from(std::fs::File::create("/dev/full").unwrap());
    let null = std::process::Stdio::null;
    let listed = || stdout(&cli(&db, &["consumer", "list"]));
    // A full disk or /dev/null: the command fails, and no consumer exists with a secret nobody saw.
    for (name, out) in [("full", full()), ("null", null())] {
        let res = cli_to(&db, &["consumer", "add", name], out);
        assert!(!res.status.success(), "{res:?}");
        let said = String::from_utf8_lossy(&res.stderr);
        assert!(said.contains("nothing was changed"), "{said}");
        assert!(!said.contains("panicked"), "{said}");
        assert!(!listed().contains(name), "{name}");
    }
    // A rotation that cannot be printed keeps the old secret working.
    let out = cli(&db, &["consumer", "add", "kept"]);
    let secret = printed_secret(&out);
    for out in [full(), null()] {
        let res = cli_to(&db, &["consumer", "rotate", "kept"], out);
        assert!(!res.status.success(), "{res:?}");
    }
    let launch = Launch::new("/any").consumer("kept", &secret);
    assert_eq!(app.launch(&launch).await.status(), Status::Ok);
    // A list that cannot be printed (a full disk) fails; a reader that stops early (`| head`)
    // does not make it fail.
    let res = cli_to(&db, &["consumer", "list"], full());
    assert!(!res.status.success(), "{res:?}");
    assert!(String::from_utf8_lossy(&res.stderr).contains("could not print the list"));
    // A given secret is not printed, so where the output goes does not matter.
    let given = &[
        "consumer",
        "add",
        "given",
        "--secret",
        "given-secret-0123456789",
    ];
    assert!(cli_to(&db, given, null()).status.success());
    // Line breaks and tabs cannot be typed into an LMS's settings form.
    for odd in ["given-secret\n0123456789", "given-secret\t0123456789"] {
        let res = cli(&db, &["consumer", "add", "odd", "--secret", odd]);
        assert!(!res.status.success(), "{odd:?}");
    }
}

#[test]
fn an_empty_list_prints_no_key_and_an_overlong_password_is_refused() {
    let dir = temp_dir();
    let db = format!("sqlite://{}", dir.join("lti.db").display());
    let out = cli_with_input(
        &[("ROCKET_DATABASE_URL", &db)],
        &["admin", "set-password"],
        &format!("{}\n", "p".repeat(1001)),
    );
    assert!(!out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("too long"));
    let out = cli_with_input(
        &[("ROCKET_DATABASE_URL", &db)],
        &["admin", "set-password"],
        &format!("{}\n", "p".repeat(1000)),
    );
    assert!(out.status.success(), "{out:?}");
    let out = cli(&db, &["consumer", "list"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "", "a script reads every line as a key");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no consumers"));
    // Nothing to re-encrypt is said as such, not as a key left in the settings.
    let out = rekey(&db, TEST_SECRET_KEY, "development");
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out).contains("no consumer secrets to re-encrypt"),
        "{out:?}"
    );
    // A misspelt ROCKET_CONFIG would mean the defaults, and another database: refused.
    let out = cli_with_input(
        &[
            ("ROCKET_DATABASE_URL", &db),
            ("ROCKET_CONFIG", "/nonexistent/Rocket.tom1"),
        ],
        &["consumer", "list"],
        "",
    );
    assert!(!out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("ROCKET_CONFIG names"));
    // A misspelt setting is named, as the server names it.
    let out = cli_with_input(
        &[
            ("ROCKET_DATABASE_URL", &db),
            ("ROCKET_DATABSE_URL", "sqlite://elsewhere.db"),
        ],
        &["consumer", "list"],
        "",
    );
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("unknown setting `databse_url`"), "{said}");
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(unix)]
#[test]
fn an_argument_that_is_not_utf8_gets_clap_s_message_not_a_panic() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let dir = temp_dir();
    let db = format!("sqlite://{}", dir.join("lti.db").display());
    let bad = OsStr::from_bytes(b"k\xff");
    for args in [
        vec![OsStr::new("consumer"), OsStr::new("add"), bad],
        vec![OsStr::new("consumer"), OsStr::new("disable"), bad],
        vec![bad],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_lti-tool"))
            .args(&args)
            .env("ROCKET_DATABASE_URL", &db)
            .output()
            .expect("runs");
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {said}");
        assert!(!said.contains("panicked"), "{args:?}: {said}");
        assert!(
            said.contains("invalid UTF-8") || said.contains("unrecognized subcommand"),
            "{args:?}: {said}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_port_in_use_is_named_at_every_log_level() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = temp_dir();
    let db = format!("sqlite://{}", dir.join("lti.db").display());
    let out = cli_with_input(
        &[
            ("ROCKET_DATABASE_URL", &db),
            ("ROCKET_ADDRESS", "127.0.0.1"),
            // Logging is off (`cli_with_input`): only the command line's own message shows.
            ("ROCKET_PORT", &port),
        ],
        &[],
        "",
    );
    assert!(!out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&format!("cannot listen on 127.0.0.1:{port}"))
            && said.contains("already running"),
        "{said}"
    );
    // Refused before any start-up work: a second server changes nothing in the database.
    assert!(!dir.join("lti.db").exists());
    drop(taken);
    let _ = std::fs::remove_dir_all(dir);
}

/// `lti-tool admin rekey` with `old` on standard input and `secret_key` configured.
fn rekey(database_url: &str, secret_key: &str, old: &str) -> Output {
    cli_with_input(
        &[
            ("ROCKET_DATABASE_URL", database_url),
            ("ROCKET_SECRET_KEY", secret_key),
        ],
        &["admin", "rekey"],
        &format!("{old}\n"),
    )
}

/// `lti-tool` with `args`, these settings and `input` on standard input.
fn cli_with_input(env: &[(&str, &str)], args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_lti-tool"))
        .args(args)
        .envs(env.iter().copied())
        .env("ROCKET_LOG_LEVEL", "off")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("lti-tool runs");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).expect("input written");
    drop(stdin);
    child.wait_with_output().expect("lti-tool ends")
}

/// Whether the app starts on this database with this key (it refuses when secrets do not decrypt).
async fn starts_with_key(database_url: &str, secret_key: &str) -> bool {
    starts_in("debug", database_url, secret_key).await
}

/// Whether the release server starts on this database with this key.
async fn release_starts(database_url: &str, secret_key: &str) -> bool {
    starts_in("release", database_url, secret_key).await
}

/// The app's configuration in this profile, on this database, with this key.
fn app_figment(profile: &str, database_url: &str, secret_key: &str) -> rocket::figment::Figment {
    rocket_lti_tool::figment()
        .select(profile)
        .merge(("database_url", database_url))
        .merge(("secret_key", secret_key))
        .merge(("log_level", "off"))
}

/// The release server on this database with this key, which must start.
async fn release_server(database_url: &str, secret_key: &str) -> Client {
    let figment = app_figment("release", database_url, secret_key);
    Client::untracked(rocket_lti_tool::build(figment))
        .await
        .expect("starts")
}

/// A launch of consumer `key` with `secret` to `/initial` of `server`.
async fn launch_status(server: &Client, key: &str, secret: &str) -> Status {
    server
        .post("/initial")
        .header(rocket::http::Header::new("Host", HOST))
        .header(rocket::http::ContentType::Form)
        .body(Launch::new("/initial").consumer(key, secret).signed_body())
        .dispatch()
        .await
        .status()
}

/// The secret a `consumer add` or `rotate` printed.
fn printed_secret(out: &Output) -> String {
    stdout(out)
        .lines()
        .find_map(|l| l.strip_prefix("secret: "))
        .expect("secret printed")
        .trim()
        .to_string()
}

/// A valid `secret_key` that is not the server's.
const OTHER_KEY: &str =
    "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4fIA==";

/// Whether the app starts in this profile, on this database, with this key.
async fn starts_in(profile: &str, database_url: &str, secret_key: &str) -> bool {
    let figment = app_figment(profile, database_url, secret_key);
    match Client::untracked(rocket_lti_tool::build(figment)).await {
        Ok(_) => true,
        // Looking at the error marks it handled (Rocket panics on dropping an unhandled one).
        Err(e) => match e.kind() {
            rocket::error::ErrorKind::FailedFairings(_) => false,
            other => panic!("the app failed to start for another reason: {other:?}"),
        },
    }
}

#[rocket::async_test]
async fn a_debug_database_moves_to_a_real_key_with_rekey_development() {
    let dir = temp_dir();
    let db = format!("sqlite://{}", dir.join("lti.db").display());
    // Debug without a key: the development key.
    assert!(cli(&db, &["consumer", "add", "school"]).status.success());
    assert!(!starts_with_key(&db, TEST_SECRET_KEY).await);
    let out = rekey(&db, TEST_SECRET_KEY, "not-the-old-key");
    assert!(!out.status.success(), "{out:?}");
    // Inside rekey, "see `lti-tool admin rekey`" would be no help.
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("check the old key"), "{said}");
    assert!(!said.contains("see `lti-tool admin rekey`"), "{said}");
    let out = rekey(&db, TEST_SECRET_KEY, "development");
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out).contains("re-encrypted 1 consumer secrets"),
        "{out:?}"
    );
    assert!(starts_with_key(&db, TEST_SECRET_KEY).await);
    // Run again, it says nothing needed doing and what the usual mistake is.
    let out = rekey(&db, TEST_SECRET_KEY, "development");
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out).contains("nothing was re-encrypted (put the new key"),
        "{out:?}"
    );

    // What older builds wrote under Rocket's all-zero placeholder is recovered the same way.
    let old_build = rocket_lti_tool::crypto::SecretCipher::from_key_material(&[0; 32]);
    let pool = rocket_lti_tool::store::open(&db).await.unwrap();
    sqlx::query("UPDATE consumers SET secret = ? WHERE consumer_key = 'school'")
        .bind(old_build.encrypt("school", "old-build-secret").unwrap())
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert!(!starts_with_key(&db, TEST_SECRET_KEY).await);
    let out = rekey(&db, TEST_SECRET_KEY, "development");
    assert!(out.status.success(), "{out:?}");
    assert!(starts_with_key(&db, TEST_SECRET_KEY).await);
    let _ = std::fs::remove_dir_all(dir);
}

#[rocket::async_test]
async fn the_command_line_writes_no_secret_under_another_key() {
    let dir = temp_dir();
    let db = format!("sqlite://{}", dir.join("lti.db").display());
    let with_key = |key: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_lti-tool"))
            .args(args)
            .env("ROCKET_DATABASE_URL", &db)
            .env("ROCKET_SECRET_KEY", key)
            .env("ROCKET_LOG_LEVEL", "off")
            .output()
            .expect("lti-tool runs")
    };
    assert!(with_key(TEST_SECRET_KEY, &["consumer", "add", "school"])
        .status
        .success());
    // Run without the server's environment, with a key of its own: it refuses to add or rotate,
    // which would leave a secret the server cannot read (and a server that does not start).
    let other = OTHER_KEY;
    for args in [
        &["consumer", "add", "intruder"][..],
        &["consumer", "rotate", "school"][..],
    ] {
        let out = with_key(other, args);
        assert!(!out.status.success(), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        // The first run that wrote a secret sealed the key check (no server has started here).
        assert!(
            err.contains("not the one the server last started with"),
            "{err}"
        );
    }
    // What does not write a secret still works, and nothing was written.
    let out = with_key(other, &["consumer", "list"]);
    assert!(out.status.success(), "{out:?}");
    assert!(!stdout(&out).contains("intruder"), "{}", stdout(&out));
    assert!(starts_with_key(&db, TEST_SECRET_KEY).await);
    // Without the key check, the secrets themselves still tell: a consumer under the first key
    // refuses a second key.
    let pool = rocket_lti_tool::store::open(&db).await.unwrap();
    sqlx::query("DELETE FROM secret_key_check")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let err = String::from_utf8_lossy(&with_key(other, &["consumer", "add", "intruder"]).stderr)
        .into_owned();
    assert!(err.contains("not the one the database's secrets"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_command_line_refuses_a_secret_key_the_server_would_refuse() {
    let dir = temp_dir();
    let db = format!("sqlite://{}", dir.join("lti.db").display());
    for key in ["xyzzy-key", &TEST_SECRET_KEY[..TEST_SECRET_KEY.len() - 1]] {
        let out = Command::new(env!("CARGO_BIN_EXE_lti-tool"))
            .args(["consumer", "add", "school"])
            .env("ROCKET_DATABASE_URL", &db)
            .env("ROCKET_PROFILE", "release")
            .env("ROCKET_SECRET_KEY", key)
            .env("ROCKET_LOG_LEVEL", "off")
            .output()
            .expect("lti-tool runs");
        assert!(!out.status.success(), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("secret_key"), "{err}");
        assert!(!err.contains(key), "the key is not shown: {err}");
        // Nothing printed, nothing written: not even the database file.
        assert!(out.stdout.is_empty(), "{out:?}");
        assert!(!dir.join("lti.db").exists());
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[rocket::async_test]
async fn a_new_installation_refuses_a_command_line_under_another_key_before_any_consumer_exists() {
    let dir = temp_dir();
    let db = format!("sqlite://{}", dir.join("lti.db").display());
    // The release server starts first, on a database with no consumer at all.
    let server = release_server(&db, TEST_SECRET_KEY).await;
    let run = |key: Option<&str>, args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lti-tool"));
        cmd.args(args)
            .env("ROCKET_DATABASE_URL", &db)
            .env("ROCKET_LOG_LEVEL", "off");
        if let Some(key) = key {
            cmd.env("ROCKET_PROFILE", "release")
                .env("ROCKET_SECRET_KEY", key);
        }
        cmd.output().expect("lti-tool runs")
    };
    let other = OTHER_KEY;
    // Another key, or the debug build's development key: refused, and nothing written.
    for key in [Some(other), None] {
        let out = run(key, &["consumer", "add", "intruder"]);
        assert!(!out.status.success(), "{key:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("not the one the server last started with"),
            "{err}"
        );
    }
    let out = run(Some(TEST_SECRET_KEY), &["consumer", "list"]);
    assert!(!stdout(&out).contains("intruder"), "{out:?}");
    // The server's own key works, and the consumer it adds launches on the running server.
    let out = run(Some(TEST_SECRET_KEY), &["consumer", "add", "school"]);
    assert!(out.status.success(), "{out:?}");
    let secret = printed_secret(&out);
    assert_eq!(launch_status(&server, "school", &secret).await, Status::Ok);
    drop(server);
    // A key change is carried over by rekey, after which the command line uses the new key.
    let out = rekey(&db, other, TEST_SECRET_KEY);
    assert!(out.status.success(), "{out:?}");
    assert!(run(Some(other), &["consumer", "add", "second"])
        .status
        .success());
    assert!(!run(Some(TEST_SECRET_KEY), &["consumer", "add", "third"])
        .status
        .success());
    let _ = std::fs::remove_dir_all(dir);
}

#[rocket::async_test]
async fn a_server_starting_under_another_key_waits_for_a_secret_being_written_and_refuses_it() {
    use rocket_lti_tool::store::consumers::{self, KeyCheck};
    let dir = temp_dir();
    let db = format!("sqlite://{}", dir.join("lti.db").display());
    // The command line's side, held open: the key check passed and a secret is written under the
    // first key, but not yet committed, on a database no server has started on.
    let figment = app_figment("release", &db, TEST_SECRET_KEY);
    let pool = rocket_lti_tool::store::open(&db).await.unwrap();
    let cipher = rocket_lti_tool::crypto::SecretCipher::from_figment(&figment).unwrap();
    rocket_lti_tool::crypto::install_cipher(&pool, cipher)
        .await
        .unwrap();
    let cipher = rocket_lti_tool::crypto::cipher_for(&pool).unwrap();
    let (mut tx, check) = consumers::begin_under_key_check(&pool, false)
        .await
        .unwrap();
    assert_eq!(check, KeyCheck::Sealed);
    let (key, secret, now) = ("late", "late-secret-0123456789", 1_700_000_000);
    assert!(
        consumers::create_on(&mut *tx, &cipher, key, secret, key, "", now)
            .await
            .unwrap()
    );
    // Meanwhile a server starts under another key. It finds no secret it cannot read (the write
    // is not committed), so only the check under the write lock can catch the new consumer.
    let server = rocket::tokio::spawn({
        let db = db.clone();
        async move { starts_in("release", &db, OTHER_KEY).await }
    });
    rocket::tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    tx.commit().await.unwrap();
    assert!(
        !server.await.unwrap(),
        "the server sealed its key over a secret it cannot read"
    );
    pool.close().await;
    // The consumer works under the key it was written with.
    let server = release_server(&db, TEST_SECRET_KEY).await;
    assert_eq!(launch_status(&server, key, secret).await, Status::Ok);
    let _ = std::fs::remove_dir_all(dir);
}

/// `lti-tool` in the release profile with this key.
fn release_cli(database_url: &str, secret_key: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lti-tool"))
        .args(args)
        .env("ROCKET_PROFILE", "release")
        .env("ROCKET_DATABASE_URL", database_url)
        .env("ROCKET_SECRET_KEY", secret_key)
        .env("ROCKET_LOG_LEVEL", "off")
        .output()
        .expect("lti-tool runs")
}

#[rocket::async_test]
async fn a_lost_key_is_survived_by_giving_the_consumers_new_secrets() {
    let dir = temp_dir();
    let db = format!("sqlite://{}", dir.join("lti.db").display());
    let lost = OTHER_KEY;
    assert!(release_starts(&db, lost).await);
    assert!(release_cli(&db, lost, &["consumer", "add", "school"])
        .status
        .success());
    // The key is lost: a new one reads no secret, so the server does not start.
    assert!(!release_starts(&db, TEST_SECRET_KEY).await);
    // Without --confirm it names what it would replace and changes nothing.
    let out = release_cli(&db, TEST_SECRET_KEY, &["admin", "replace-lost-secrets"]);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("school"),
        "{out:?}"
    );
    assert!(!release_starts(&db, TEST_SECRET_KEY).await);
    let out = release_cli(
        &db,
        TEST_SECRET_KEY,
        &["admin", "replace-lost-secrets", "--confirm"],
    );
    assert!(out.status.success(), "{out:?}");
    let secret = stdout(&out)
        .lines()
        .find_map(|l| l.strip_prefix("school\t"))
        .expect("the new secret printed")
        .to_string();
    assert_eq!(secret.len(), 40);
    // The server starts under the new key, and the LMS launches with the new secret.
    let server = release_server(&db, TEST_SECRET_KEY).await;
    assert_eq!(launch_status(&server, "school", &secret).await, Status::Ok);
    drop(server);
    // And the command line works under the new key.
    assert!(
        release_cli(&db, TEST_SECRET_KEY, &["consumer", "add", "second"])
            .status
            .success()
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[rocket::async_test]
async fn a_debug_database_brought_to_production_must_lose_the_public_demo_consumer() {
    let dir = temp_dir();
    let db = format!("sqlite://{}", dir.join("lti.db").display());
    // The debug server seeds PyLTI's demo consumer; the README's rekey moves the database over.
    let debug = rocket_lti_tool::figment()
        .merge(("database_url", &db))
        .merge(("log_level", "off"));
    drop(
        rocket::local::asynchronous::Client::untracked(rocket_lti_tool::build(debug))
            .await
            .expect("debug starts"),
    );
    assert!(rekey(&db, TEST_SECRET_KEY, "development").status.success());
    assert!(!release_starts(&db, TEST_SECRET_KEY).await);
    let out = release_cli(
        &db,
        TEST_SECRET_KEY,
        &["consumer", "disable", "__consumer_key__"],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(release_starts(&db, TEST_SECRET_KEY).await);
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(unix)]
#[rocket::async_test]
async fn a_new_database_and_its_folder_are_private_to_the_server() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir();
    let folder = dir.join("data");
    let file = folder.join("lti.db");
    let pool = rocket_lti_tool::store::open(&format!("sqlite://{}", file.display()))
        .await
        .expect("opens");
    sqlx::query("INSERT INTO nonces (consumer_key, nonce, expires_at) VALUES ('k', 'n', 0)")
        .execute(&pool)
        .await
        .expect("written");
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    // It holds live session ids and learners' names: no other local user may read it.
    assert_eq!(mode(&folder), 0o700);
    for name in ["lti.db", "lti.db-wal", "lti.db-shm"] {
        assert_eq!(mode(&folder.join(name)), 0o600, "{name}");
    }
    pool.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[rocket::async_test]
async fn outside_debug_the_demo_consumer_cannot_be_enabled_with_its_published_secret() {
    let dir = temp_dir();
    let db = format!("sqlite://{}", dir.join("lti.db").display());
    let (key, secret) = rocket_lti_tool::DEMO_CONSUMER;
    assert!(release_starts(&db, TEST_SECRET_KEY).await);
    // Added with that secret: refused (the server would refuse to start with it).
    let out = release_cli(
        &db,
        TEST_SECRET_KEY,
        &["consumer", "add", key, "--secret", secret],
    );
    assert!(!out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("published"), "{out:?}");
    // The refusal alone: no warning about its length first, as if it were a secret of its own.
    assert!(!said.contains("easy to guess"), "{out:?}");
    // Added disabled under that secret (as a debug database moved over has it), enabling is
    // refused too, until the secret is rotated.
    let pool = rocket_lti_tool::store::open(&db).await.unwrap();
    let figment = app_figment("release", &db, TEST_SECRET_KEY);
    let cipher = rocket_lti_tool::crypto::SecretCipher::from_figment(&figment).unwrap();
    rocket_lti_tool::crypto::install_cipher(&pool, cipher)
        .await
        .unwrap();
    let consumers = rocket_lti_tool::store::consumers::insert;
    assert!(consumers(&pool, key, secret, "demo", 1_700_000_000)
        .await
        .unwrap());
    rocket_lti_tool::store::consumers::set_enabled(&pool, key, false)
        .await
        .unwrap();
    pool.close().await;
    let out = release_cli(&db, TEST_SECRET_KEY, &["consumer", "enable", key]);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rotate its secret"),
        "{out:?}"
    );
    assert!(release_starts(&db, TEST_SECRET_KEY).await);
    assert!(
        release_cli(&db, TEST_SECRET_KEY, &["consumer", "rotate", key])
            .status
            .success()
    );
    assert!(
        release_cli(&db, TEST_SECRET_KEY, &["consumer", "enable", key])
            .status
            .success()
    );
    assert!(release_starts(&db, TEST_SECRET_KEY).await);
    let _ = std::fs::remove_dir_all(dir);
}

#[rocket::async_test]
async fn no_shipped_migration_is_edited_and_each_new_one_is_pinned() {
    // sqlx refuses to start on a database whose applied migration has another checksum, so an
    // edit to a shipped file locks every database that applied it out of the upgrade.
    let pinned: Vec<(i64, String)> = include_str!("../fixtures/shipped_migrations.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_once(' '))
        .map(|(v, sum)| (v.parse().expect("a version"), sum.to_string()))
        .collect();
    let dir = temp_dir();
    let db = format!("sqlite://{}", dir.join("lti.db").display());
    let pool = rocket_lti_tool::store::open(&db).await.unwrap();
    let applied: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE version < 1000")
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    let applied: Vec<(i64, String)> = applied
        .into_iter()
        .map(|(v, sum)| (v, sum.iter().map(|b| format!("{b:02x}")).collect()))
        .collect();
    for (version, sum) in &applied {
        match pinned.iter().find(|(v, _)| v == version) {
            Some((_, shipped)) => assert_eq!(
                sum, shipped,
                "migration {version} differs from the one that shipped: add a new migration instead"
            ),
            None => panic!(
                "migration {version} is not in tests/fixtures/shipped_migrations.txt: add \
                 `{version} {sum}` there (and never edit the file again once it is on main)"
            ),
        }
    }
    assert_eq!(applied.len(), pinned.len(), "a shipped migration is gone");
    let _ = std::fs::remove_dir_all(dir);
}

#[rocket::async_test]
async fn an_upgrade_says_which_migrations_it_ran_and_an_older_build_says_it_is_older() {
    let dir = temp_dir();
    let db = format!("sqlite://{}", dir.join("lti.db").display());
    assert!(cli(&db, &["consumer", "add", "school"]).status.success());
    // A database as the build before the last migration left it (upstream's own migrations are
    // numbered below 1000, a fork's above: see the README's "Your own data").
    let pool = rocket_lti_tool::store::open(&db).await.unwrap();
    let last: i64 =
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE version < 1000")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(last, 14, "the undo below is migration 14's");
    // Its one mark for all consumers, as that build left it after pruning (timestamp window 300).
    for undo in [
        "DROP TABLE nonce_prune_marks",
        "ALTER TABLE nonces DROP COLUMN signed_at",
        "ALTER TABLE nonce_pruning RENAME TO nonce_prune_watermark",
        "ALTER TABLE nonce_prune_watermark DROP COLUMN all_signed_up_to",
        "ALTER TABLE nonce_prune_watermark ADD COLUMN pruned_before INTEGER NOT NULL DEFAULT 0",
        "INSERT OR REPLACE INTO nonce_prune_watermark (id, pruned_before, window) \
         VALUES (1, 1700000000, 300)",
        "DELETE FROM _sqlx_migrations WHERE version = 14",
    ] {
        sqlx::query(undo).execute(&pool).await.unwrap();
    }
    pool.close().await;
    let out = cli(&db, &["consumer", "list"]);
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("upgraded the database: migration 14 (nonce marks by consumer)"),
        "{said}"
    );
    assert!(stdout(&out).contains("school"), "{out:?}");
    // That mark refused launches signed 302 s or more before it: for every key, it still does.
    let pool = rocket_lti_tool::store::open(&db).await.unwrap();
    let kept: (i64, i64) =
        sqlx::query_as("SELECT all_signed_up_to, window FROM nonce_pruning WHERE id = 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(kept, (1_700_000_000 - 302, 300));
    pool.close().await;
    // Nothing more to run: nothing said.
    let out = cli(&db, &["consumer", "list"]);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("upgraded"),
        "{out:?}"
    );
    // A database a newer build migrated further: this one says so, and changes nothing.
    let pool = rocket_lti_tool::store::open(&db).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (9999, 'from the future', true, x'00', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let out = cli(&db, &["consumer", "list"]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(
            "was upgraded by a newer version of this tool or a fork of it (its migration 9999"
        ) && said.contains("restore the backup"),
        "{said}"
    );
    // A database that applied another migration under one of this build's numbers (a build
    // between two landings, a fork's clash): said as such, not as sqlx's "modified".
    let pool = rocket_lti_tool::store::open(&db).await;
    assert!(pool.is_err());
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 9999")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE _sqlx_migrations SET checksum = x'00' WHERE version = 12")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let out = cli(&db, &["consumer", "list"]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("applied another migration 12 than this build has")
            && said.contains("restore a backup"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
